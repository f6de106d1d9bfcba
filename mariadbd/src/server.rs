//! Starting and stopping `mariadbd`: finding the programs, building a template data
//! directory, waiting until a server accepts connections, stopping it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::process::{is_root, signal, spawn_tied};

/// Why a server or one of the MariaDB programs could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "`{name}` was not found: install MariaDB (`sudo apt-get install mariadb-server \
         mariadb-backup`) or point ${env} at it"
    )]
    MissingProgram {
        name: &'static str,
        env: &'static str,
    },
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{member}: {message}")]
    Sql { member: String, message: String },
    #[error("{member} did not start: {reason}\n--- last lines of {log} ---\n{tail}", log = log.display())]
    ServerStart {
        member: String,
        reason: String,
        log: PathBuf,
        tail: String,
    },
}

impl ServerError {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + use<> {
        let path = path.to_path_buf();
        move |source| Self::Io { path, source }
    }
}

/// The MariaDB programs the runtime needs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub mariadbd: PathBuf,
    pub install_db: PathBuf,
}

impl Binaries {
    /// Finds `mariadbd` and `mariadb-install-db` on `PATH` (and in `/usr/sbin`);
    /// `$LAGLESS_MARIADBD` and `$LAGLESS_MARIADB_INSTALL_DB` override the search.
    pub fn locate() -> Result<Self, ServerError> {
        Ok(Self {
            mariadbd: find("mariadbd", "LAGLESS_MARIADBD")?,
            install_db: find("mariadb-install-db", "LAGLESS_MARIADB_INSTALL_DB")?,
        })
    }
}

/// Finds a program, or says how to install it.
pub fn find(name: &'static str, env: &'static str) -> Result<PathBuf, ServerError> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(ServerError::MissingProgram { name, env })
        };
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/mysql/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or(ServerError::MissingProgram { name, env })
}

/// Whether `path` is a file someone may execute.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Builds a template data directory in `dir/data`: `mariadb-install-db`, then one start
/// without networking or binary log to run `sql`, so no GTID history is left. `options` go
/// to both (e.g. `--innodb-log-file-size=...`). Shared with the test kit.
pub async fn build_template(
    bins: &Binaries,
    dir: &Path,
    options: &[String],
    sql: &[String],
) -> Result<(), ServerError> {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(ServerError::io(&tmp))?;
    let data = dir.join("data");
    let mut cmd = Command::new(&bins.install_db);
    // A temporary directory of its own: concurrent installs sharing /tmp sometimes remove
    // each other's temporary tables and fail ("Unknown table 'mysql.tmp_user_sys'").
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .args(options);
    if is_root() {
        cmd.arg("--user=root");
    }
    let command = bins.install_db.display().to_string();
    // Off the async workers: the install takes seconds.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| ServerError::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?
        .map_err(|e| ServerError::Command {
            command,
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ServerError::Command {
            command: format!("{} --datadir={}", bins.install_db.display(), data.display()),
            detail: format!(
                "{}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    run_once(bins, dir, options, sql).await
}

/// Starts the server of `dir/data` on a socket only, runs `sql` as root and stops it.
async fn run_once(
    bins: &Binaries,
    dir: &Path,
    options: &[String],
    sql: &[String],
) -> Result<(), ServerError> {
    let socket = dir.join("init.sock");
    let log = dir.join("init.log");
    let mut cmd = Command::new(&bins.mariadbd);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--tmpdir={}", dir.join("tmp").display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--log-error={}", log.display()))
        .arg(format!("--pid-file={}", dir.join("init.pid").display()))
        .args(options)
        .args(["--skip-networking", "--skip-log-bin"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if is_root() {
        cmd.arg("--user=root");
    }
    let mut child = spawn_tied(cmd).map_err(|e| ServerError::Command {
        command: bins.mariadbd.display().to_string(),
        detail: e.to_string(),
    })?;
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .socket(Some(socket.to_string_lossy().into_owned()))
        .user(Some("root"))
        .into();
    let result = async {
        let mut conn = connect_while_alive(&mut child, opts, &log, "template").await?;
        for statement in sql {
            conn.query_drop(statement)
                .await
                .map_err(|e| ServerError::Sql {
                    member: "template".into(),
                    message: e.to_string(),
                })?;
        }
        let _ = conn.disconnect().await;
        Ok(())
    }
    .await;
    stop(&mut child, Duration::from_secs(30)).await;
    result
}

/// Finds a program the way `Command::new(name)` will: on `PATH`, or says how to install it.
pub fn on_path(name: &'static str) -> Result<PathBuf, ServerError> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or(ServerError::MissingProgram { name, env: "PATH" })
}

pub async fn connect_while_alive(
    child: &mut Child,
    opts: mysql_async::Opts,
    log: &Path,
    member: &str,
) -> Result<mysql_async::Conn, ServerError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ServerError::ServerStart {
                member: member.to_string(),
                reason: format!("mariadbd exited ({status})"),
                log: log.to_path_buf(),
                tail: tail(log, 20),
            });
        }
        if let Ok(Ok(conn)) =
            tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(opts.clone())).await
        {
            return Ok(conn);
        }
        if Instant::now() > deadline {
            return Err(ServerError::ServerStart {
                member: member.to_string(),
                reason: "mariadbd did not accept connections within 120 s".into(),
                log: log.to_path_buf(),
                tail: tail(log, 20),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops a server whose data is about to be replaced: SIGKILL at once. Nothing of its data is
/// kept, and a server still starting (crash recovery after a kill) ignores SIGTERM until it
/// is ready, which held a re-seed up for the whole grace period.
pub async fn stop_discarding(child: &mut Child) {
    stop(child, Duration::ZERO).await;
}

/// Clean shutdown (SIGTERM), then SIGKILL after `grace`; reaps the process.
pub async fn stop(child: &mut Child, grace: Duration) {
    let _ = signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_that_is_not_a_program_is_refused_with_how_to_install() {
        // A variable nothing sets.
        let missing = "LAGLESS_TEST_NO_SUCH_PROGRAM";
        let error = find("no-such-mariadb-program", missing)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("`no-such-mariadb-program` was not found"),
            "{error}"
        );
        assert!(error.contains("apt-get install mariadb-server"), "{error}");
        assert!(error.contains(missing), "{error}");
    }

    #[test]
    fn a_server_that_exits_is_reported_with_its_log() {
        let dir =
            std::env::temp_dir().join(format!("lagless-mariadbd-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("error.log");
        std::fs::write(&log, "one\ntwo\nthe reason it stopped\n").expect("log");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut child = Command::new("true").spawn().expect("spawn");
        let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(1)
            .into();
        let result = runtime.block_on(connect_while_alive(&mut child, opts, &log, "m0"));
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.starts_with("m0 did not start: mariadbd exited"),
            "{message}"
        );
        assert!(message.ends_with("the reason it stopped"), "{message}");
        assert_eq!(tail(&log, 2), "two\nthe reason it stopped");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
