//! The template data directory every member is copied from.
//!
//! `mariadb-install-db` takes seconds; copying its result takes milliseconds. The template is
//! built once per MariaDB version and kit revision, under the cargo target directory (so it
//! survives between runs and never litters the temp directory), built in a private directory
//! and renamed into place so concurrent test processes never see half of one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use tokio::sync::OnceCell;

use crate::binaries::Binaries;
use crate::config::INNODB_LOG_FILE_SIZE;
use crate::error::{KitError, Result};
use crate::process::{is_root, signal, spawn_tied};
use crate::{
    ADMIN_PASSWORD, ADMIN_USER, APP_DATABASE, APP_PASSWORD, APP_USER, ED25519_PASSWORD,
    ED25519_USER, REPL_PASSWORD, REPL_USER,
};

/// Bump when the users or settings baked into the template change.
const REVISION: u32 = 3;

const APP_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, \
    REFERENCES, INDEX, ALTER, SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, \
    CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER";

static TEMPLATE: OnceCell<PathBuf> = OnceCell::const_new();

/// The template's data directory, built on first use.
pub async fn template(bins: &Binaries) -> Result<PathBuf> {
    TEMPLATE
        .get_or_try_init(|| async {
            let dir = cache_dir().join(format!("template-{:016x}", key(bins)));
            if !dir.join("data").is_dir() {
                build(bins, &dir).await?;
            }
            Ok(dir.join("data"))
        })
        .await
        .cloned()
}

fn key(bins: &Binaries) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (REVISION, &bins.version, &bins.mariadbd).hash(&mut h);
    h.finish()
}

/// `$LAGLESS_TESTKIT_CACHE`, else `<cargo target dir>/lagless-testkit`, else the temp dir.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAGLESS_TESTKIT_CACHE") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(|target| target.join("lagless-testkit"))
        .unwrap_or_else(|| std::env::temp_dir().join("lagless-testkit-cache"))
}

async fn build(bins: &Binaries, dest: &Path) -> Result<()> {
    let started = Instant::now();
    let parent = dest.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(KitError::io(parent))?;
    let work = tempfile::Builder::new()
        .prefix(".template-build-")
        .tempdir_in(parent)
        .map_err(KitError::io(parent))?;
    let data = work.path().join("data");
    install_db(bins, &data)?;
    add_users(bins, work.path()).await?;
    // Another process may have finished first; its template is as good as ours.
    match std::fs::rename(work.path(), dest) {
        Ok(()) => {
            // The rename moved the directory away; nothing is left for TempDir to delete.
            let _ = work.keep();
        }
        Err(_) if dest.join("data").is_dir() => {}
        Err(e) => return Err(KitError::io(dest)(e)),
    }
    tracing::info!(elapsed = ?started.elapsed(), path = %dest.display(), "built template data directory");
    Ok(())
}

fn install_db(bins: &Binaries, data: &Path) -> Result<()> {
    // A temporary directory of its own: concurrent installs sharing /tmp sometimes remove
    // each other's temporary tables and fail.
    let tmp = data.with_file_name("tmp");
    std::fs::create_dir_all(&tmp).map_err(KitError::io(&tmp))?;
    let mut cmd = Command::new(&bins.install_db);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg(format!("--innodb-log-file-size={INNODB_LOG_FILE_SIZE}"));
    if is_root() {
        cmd.arg("--user=root");
    }
    let out = cmd.output().map_err(|e| KitError::Command {
        command: bins.install_db.display().to_string(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(KitError::Command {
            command: format!("{} --datadir={}", bins.install_db.display(), data.display()),
            detail: format!(
                "{}\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}

/// Starts the template once without networking or binary log, so the users exist in every
/// member without any GTID history.
async fn add_users(bins: &Binaries, work: &Path) -> Result<()> {
    let socket = work.join("s.sock");
    let log = work.join("error.log");
    let mut cmd = Command::new(&bins.mariadbd);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", work.join("data").display()))
        .arg(format!("--tmpdir={}", work.join("tmp").display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--log-error={}", log.display()))
        .arg(format!("--pid-file={}", work.join("t.pid").display()))
        .arg(format!("--innodb-log-file-size={INNODB_LOG_FILE_SIZE}"))
        .args(["--skip-networking", "--skip-log-bin"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if is_root() {
        cmd.arg("--user=root");
    }
    let mut child = spawn_tied(cmd).map_err(|e| KitError::Command {
        command: bins.mariadbd.display().to_string(),
        detail: e.to_string(),
    })?;
    let result = run_user_sql(&socket, &log, &mut child).await;
    let _ = signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn run_user_sql(socket: &Path, log: &Path, child: &mut std::process::Child) -> Result<()> {
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .socket(Some(socket.to_string_lossy().into_owned()))
        .user(Some("root"))
        .into();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(KitError::Start {
                member: 0,
                reason: format!("template server exited: {status}"),
                log: log.to_path_buf(),
                tail: crate::cluster::tail(log, 30),
            });
        }
        if let Ok(conn) = mysql_async::Conn::new(opts.clone()).await {
            break conn;
        }
        if Instant::now() > deadline {
            return Err(KitError::Start {
                member: 0,
                reason: "template server did not accept connections within 60 s".into(),
                log: log.to_path_buf(),
                tail: crate::cluster::tail(log, 30),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for stmt in user_sql() {
        conn.query_drop(&stmt)
            .await
            .map_err(|source| KitError::Sql { member: 0, source })?;
    }
    let _ = conn.disconnect().await;
    Ok(())
}

fn user_sql() -> Vec<String> {
    vec![
        "INSTALL SONAME 'auth_ed25519'".into(),
        format!("CREATE USER '{ADMIN_USER}'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}'"),
        format!("GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'%' WITH GRANT OPTION"),
        format!("CREATE USER '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}'"),
        format!("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{REPL_USER}'@'%'"),
        format!("CREATE DATABASE {APP_DATABASE} CHARACTER SET utf8mb4"),
        format!("CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'"),
        format!("GRANT {APP_PRIVILEGES} ON *.* TO '{APP_USER}'@'%'"),
        format!(
            "CREATE USER '{ED25519_USER}'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('{ED25519_PASSWORD}')"
        ),
        format!("GRANT {APP_PRIVILEGES} ON *.* TO '{ED25519_USER}'@'%'"),
    ]
}
