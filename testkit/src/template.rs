//! The template data directory every member is copied from.
//!
//! `mariadb-install-db` takes seconds; copying its result takes milliseconds. The template is
//! built once per MariaDB version and kit revision, under the cargo target directory (so it
//! survives between runs and never litters the temp directory), built in a private directory
//! and renamed into place so concurrent test processes never see half of one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::sync::OnceCell;

use crate::binaries::Binaries;
use crate::config::INNODB_LOG_FILE_SIZE;
use crate::error::{KitError, Result};
use crate::{
    ADMIN_PASSWORD, ADMIN_USER, APP_DATABASE, APP_PASSWORD, APP_USER, ED25519_PASSWORD,
    ED25519_USER, REPL_PASSWORD, REPL_USER,
};

/// Bump when the users or settings baked into the template change.
const REVISION: u32 = 4;

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
    // The local runtime's builder: install, then the users without any GTID history.
    let runtime_bins = lagless_mariadbd::Binaries {
        mariadbd: bins.mariadbd.clone(),
        install_db: bins.install_db.clone(),
    };
    let options = [format!("--innodb-log-file-size={INNODB_LOG_FILE_SIZE}")];
    lagless_mariadbd::build_template(&runtime_bins, work.path(), &options, &user_sql())
        .await
        .map_err(|e| KitError::Command {
            command: "building the template data directory".into(),
            detail: e.to_string(),
        })?;
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
