//! What every supervisor process does the same way, a cluster's or a pool's: log to a file and
//! stop on SIGTERM or SIGINT.

use std::path::Path;

use tokio::sync::watch;

use super::LocalError;

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
