//! What every supervisor process does the same way, a cluster's or a pool's: claim its state
//! directory, log to a file, keep its own certificate authority and stop on SIGTERM or SIGINT.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::tls::files::TlsFiles;

use super::LocalError;
use super::process::FileLock;

/// Takes the `lock` of `name`'s supervisor (held while the returned lock lives), records this
/// process's PID in `pid` and sends its log to `log`. `running_pid` names the supervisor that
/// holds the lock already, if any.
pub fn claim(
    lock: &Path,
    pid: &Path,
    log: &Path,
    log_filter: &str,
    name: &str,
    running_pid: impl Fn() -> Option<u32>,
) -> Result<FileLock, LocalError> {
    let Some(held) = FileLock::try_acquire(lock).map_err(LocalError::io(lock))? else {
        return Err(LocalError::AlreadyRunning(
            name.to_string(),
            running_pid().unwrap_or(0),
        ));
    };
    std::fs::write(pid, std::process::id().to_string()).map_err(LocalError::io(pid))?;
    init_file_logging(log, log_filter)?;
    Ok(held)
}

/// The PID the supervisor holding `lock` recorded in `pid`, if one runs.
pub fn running_pid(lock: &Path, pid: &Path) -> Option<u32> {
    if !FileLock::is_held(lock) {
        return None;
    }
    std::fs::read_to_string(pid).ok()?.trim().parse().ok()
}

/// The certificates in `dir`, issued for `name` by a CA kept there: the local runtime is its
/// own certificate authority, whatever source the spec names for Kubernetes.
pub fn local_tls(dir: PathBuf, name: &str) -> Result<TlsFiles, LocalError> {
    let files = TlsFiles::new(dir);
    files
        .ensure(name, &crate::tls::local_names(), SystemTime::now())
        .map_err(|e| LocalError::Other(e.to_string()))?;
    Ok(files)
}

/// Sends the process's `tracing` output to `path` (appended), filtered by `filter`.
pub fn init_file_logging(path: &Path, filter: &str) -> Result<(), LocalError> {
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(LocalError::io(path))?;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

/// Turns `stop` true on the first SIGTERM or SIGINT.
pub fn spawn_signal_handler(stop: watch::Sender<bool>, what: &'static str) {
    tokio::spawn(async move {
        match lagless_serve::terminated().await {
            Ok(signal) => tracing::info!("{signal}: stopping the {what}"),
            Err(e) => tracing::error!(error = %e, "cannot install signal handlers"),
        }
        let _ = stop.send(true);
    });
}
