//! Running `mariadbd` for the local runtime: finding the programs, the template data
//! directory every member starts from, option files, start-up and shutdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::LocalError;
use super::process::{is_root, spawn_tied};
use super::state::LocalCredentials;
use crate::tls::files::TlsFiles;
pub use lagless_mariadbd::{
    Binaries, build_template, connect_while_alive, find, on_path, stop, stop_discarding, tail,
};

/// What differs between members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLayout {
    pub name: String,
    pub port: u16,
    pub server_id: u32,
    pub gtid_domain_id: u32,
    /// `members/<name>`: my.cnf, data/, error.log, the socket.
    pub dir: PathBuf,
}

impl ServerLayout {
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }
    /// Option files the server reads after its own (a tenant move's channel filter).
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.join("conf.d")
    }
}

/// The option file: what replication and the orchestration rely on, then the spec's
/// `serverConfig` (validation already refused options the runtime manages).
/// How a member's server is configured, beyond its layout.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions<'a> {
    /// `spec.serverConfig`.
    pub server_config: &'a BTreeMap<String, String>,
    /// Replicas acknowledge (lossless semi-sync).
    pub semi_sync: bool,
    /// Serve TLS from these files and refuse unencrypted TCP connections.
    pub tls: Option<&'a TlsFiles>,
}

pub fn render_config(layout: &ServerLayout, options: &ServerOptions<'_>) -> String {
    let ServerOptions {
        server_config,
        semi_sync,
        tls,
    } = *options;
    let dir = layout.dir.display();
    let mut s = String::new();
    s.push_str(
        "# Written by lagless-operator local from the MySQLCluster spec; edits are overwritten.\n",
    );
    s.push_str("[mariadbd]\n");
    let _ = writeln!(s, "datadir={dir}/data");
    let _ = writeln!(s, "socket={dir}/mariadbd.sock");
    let _ = writeln!(s, "pid-file={dir}/mariadbd.pid");
    let _ = writeln!(s, "log-error={dir}/error.log");
    let _ = writeln!(s, "tmpdir={dir}/tmp");
    let _ = writeln!(s, "port={}", layout.port);
    s.push_str("bind-address=127.0.0.1\n");
    let _ = writeln!(s, "server_id={}", layout.server_id);
    let _ = writeln!(s, "gtid_domain_id={}", layout.gtid_domain_id);
    let _ = writeln!(s, "log_bin={dir}/data/binlog");
    let _ = writeln!(s, "relay_log={dir}/data/relay");
    // Every member starts read-only; the orchestration makes the primary writable.
    s.push_str(
        "read_only=ON\nlog_slave_updates=ON\ngtid_strict_mode=ON\nbinlog_format=ROW\n\
         relay_log_recovery=ON\nskip_name_resolve=ON\n",
    );
    // Replication starts when the orchestration says so (a replica's at the next tick), never
    // by itself: a former primary restarted after a failover must not run a channel of its
    // own (a tenant move's) before it is told what it is now.
    s.push_str("skip_slave_start=ON\n");
    // Replicas notice a silent primary within seconds, which failure detection waits for.
    let _ = writeln!(
        s,
        "slave_net_timeout={}",
        crate::orchestrate::act::NET_TIMEOUT_SECS
    );
    s.push_str("innodb_buffer_pool_size=128M\nperformance_schema=OFF\n");
    s.push_str("character_set_server=utf8mb4\ncollation_server=utf8mb4_general_ci\n");
    if semi_sync {
        s.push_str("rpl_semi_sync_slave_enabled=ON\nrpl_semi_sync_master_wait_point=AFTER_SYNC\n");
    }
    if let Some(tls) = tls {
        // Encrypted TCP only; the Unix socket stays for local administration.
        let _ = writeln!(s, "ssl_ca={}", tls.ca().display());
        let _ = writeln!(s, "ssl_cert={}", tls.cert().display());
        let _ = writeln!(s, "ssl_key={}", tls.key().display());
        s.push_str("require_secure_transport=ON\n");
    }
    if !server_config.is_empty() {
        s.push_str("# spec.serverConfig\n");
        for (key, value) in server_config {
            let _ = writeln!(s, "{key}={value}");
        }
    }
    // Last, so that nothing above overrides what is kept there.
    let _ = writeln!(s, "!includedir {dir}/conf.d");
    s
}

const APP_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, \
    REFERENCES, INDEX, ALTER, SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, \
    CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER";

/// Builds `template/data` once per cluster: `mariadb-install-db`, then the accounts and the
/// application database, created without a binary log so that members start with no GTID
/// history (a member with history of its own would look errant to the others).
pub async fn ensure_template(
    bins: &Binaries,
    template: &Path,
    creds: &LocalCredentials,
) -> Result<(), LocalError> {
    let ready = template.join("ready");
    if ready.is_file() {
        return Ok(());
    }
    if template.exists() {
        std::fs::remove_dir_all(template).map_err(LocalError::io(template))?;
    }
    build_template(bins, template, &[], &account_sql(creds)).await?;
    std::fs::write(&ready, b"").map_err(LocalError::io(&ready))
}

fn account_sql(c: &LocalCredentials) -> Vec<String> {
    vec![
        format!(
            "CREATE USER '{}'@'%' IDENTIFIED BY '{}'",
            c.admin_user, c.admin_password
        ),
        format!(
            "GRANT ALL PRIVILEGES ON *.* TO '{}'@'%' WITH GRANT OPTION",
            c.admin_user
        ),
        format!(
            "CREATE USER '{}'@'%' IDENTIFIED BY '{}'",
            c.replication_user, c.replication_password
        ),
        format!(
            "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{}'@'%'",
            c.replication_user
        ),
        format!("CREATE DATABASE `{}` CHARACTER SET utf8mb4", c.database),
        format!(
            "CREATE USER '{}'@'%' IDENTIFIED BY '{}'",
            c.app_user, c.app_password
        ),
        format!("GRANT {APP_PRIVILEGES} ON *.* TO '{}'@'%'", c.app_user),
        // The proxies' accounts come with the first primary (see `ProxyAccount`).
        // Only the accounts above remain: no password-less superuser.
        "DROP USER IF EXISTS 'root'@'localhost'".into(),
    ]
}

/// The accounts and database of [`account_sql`] for data that may hold them already (a
/// restored backup): replaced, so this cluster's passwords are the ones that work.
pub fn replacing_account_sql(c: &LocalCredentials) -> Vec<String> {
    account_sql(c)
        .into_iter()
        .map(|sql| {
            if let Some(rest) = sql.strip_prefix("CREATE USER ") {
                format!("CREATE OR REPLACE USER {rest}")
            } else if let Some(rest) = sql.strip_prefix("CREATE DATABASE ") {
                format!("CREATE DATABASE IF NOT EXISTS {rest}")
            } else {
                sql
            }
        })
        .collect()
}

/// Gives a new member its data directory: a copy of the template, made under another name
/// and renamed, so an interrupted copy is never mistaken for a data directory.
pub async fn init_member_data(template: &Path, layout: &ServerLayout) -> Result<(), LocalError> {
    let data = layout.data_dir();
    if data.is_dir() {
        return Ok(());
    }
    let from = template.join("data");
    let dir = layout.dir.clone();
    blocking(move || {
        std::fs::create_dir_all(&dir).map_err(LocalError::io(&dir))?;
        let partial = dir.join("data.partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(LocalError::io(&partial))?;
        }
        copy_dir(&from, &partial)?;
        std::fs::rename(&partial, &data).map_err(LocalError::io(&data))
    })
    .await
}

/// Copies data directory `from` to `to` (which must not exist), under another name first, so
/// an interrupted copy is never mistaken for a data directory.
pub async fn copy_data(from: &Path, to: &Path) -> Result<(), LocalError> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    blocking(move || {
        let partial = to.with_extension("partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(LocalError::io(&partial))?;
        }
        copy_dir(&from, &partial)?;
        std::fs::rename(&partial, &to).map_err(LocalError::io(&to))
    })
    .await
}

/// Removes a directory tree if it exists.
pub async fn remove_dir(path: &Path) -> Result<(), LocalError> {
    let path = path.to_path_buf();
    blocking(move || match std::fs::remove_dir_all(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LocalError::io(&path)(e)),
    })
    .await
}

/// Runs file-system work off the async workers (data directories are large).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LocalError> + Send + 'static,
) -> Result<T, LocalError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LocalError::Other(format!("file-system task failed: {e}")))?
}

/// Copies a directory tree (data directories hold only plain files and directories).
fn copy_dir(from: &Path, to: &Path) -> Result<(), LocalError> {
    std::fs::create_dir_all(to).map_err(LocalError::io(to))?;
    for entry in std::fs::read_dir(from).map_err(LocalError::io(from))? {
        let entry = entry.map_err(LocalError::io(from))?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(LocalError::io(&entry.path()))?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).map_err(LocalError::io(&target))?;
        }
    }
    Ok(())
}

/// Writes the option file and starts the server. It is not ready yet: see [`wait_ready`].
pub fn spawn(
    bins: &Binaries,
    layout: &ServerLayout,
    options: &ServerOptions<'_>,
) -> Result<Child, LocalError> {
    let cnf = layout.config_file();
    std::fs::write(&cnf, render_config(layout, options)).map_err(LocalError::io(&cnf))?;
    for dir in [layout.dir.join("tmp"), layout.conf_dir()] {
        std::fs::create_dir_all(&dir).map_err(LocalError::io(&dir))?;
    }
    let out = layout.dir.join("mariadbd.out");
    let stdout = std::fs::File::create(&out).map_err(LocalError::io(&out))?;
    let stderr = stdout.try_clone().map_err(LocalError::io(&out))?;
    let mut cmd = Command::new(&bins.mariadbd);
    cmd.arg(format!("--defaults-file={}", cnf.display()))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if is_root() {
        cmd.arg("--user=root");
    }
    spawn_tied(cmd).map_err(|e| LocalError::Command {
        command: format!(
            "{} --defaults-file={}",
            bins.mariadbd.display(),
            cnf.display()
        ),
        detail: e.to_string(),
    })
}

/// Waits until the server accepts the admin account over TCP; fails at once, with the error
/// log's tail, if it exits.
pub async fn wait_ready(
    child: &mut Child,
    layout: &ServerLayout,
    creds: &LocalCredentials,
    tls: Option<&TlsFiles>,
) -> Result<(), LocalError> {
    let mut opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(layout.port)
        .user(Some(creds.admin_user.clone()))
        .pass(Some(creds.admin_password.clone()))
        .prefer_socket(false);
    if let Some(tls) = tls {
        opts = opts.ssl_opts(Some(
            mysql_async::SslOpts::default()
                .with_root_certs(vec![tls.ca().into()])
                .with_disable_built_in_roots(true),
        ));
    }
    let opts: mysql_async::Opts = opts.into();
    let conn = connect_while_alive(child, opts, &layout.error_log(), &layout.name).await?;
    let _ = conn.disconnect().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_replication_settings_then_the_spec() {
        let layout = ServerLayout {
            name: "shop-1".into(),
            port: 3308,
            server_id: 1002,
            gtid_domain_id: 10,
            dir: PathBuf::from("/s/members/shop-1"),
        };
        let mut extra = BTreeMap::new();
        extra.insert("max_connections".to_string(), "500".to_string());
        let options = |semi_sync| ServerOptions {
            server_config: &extra,
            semi_sync,
            tls: None,
        };
        let cnf = render_config(&layout, &options(true));
        for line in [
            "datadir=/s/members/shop-1/data",
            "port=3308",
            "server_id=1002",
            "gtid_domain_id=10",
            "read_only=ON",
            "gtid_strict_mode=ON",
            "rpl_semi_sync_slave_enabled=ON",
            "max_connections=500",
        ] {
            assert!(
                cnf.lines().any(|l| l == line),
                "{line} missing from:\n{cnf}"
            );
        }
        // The spec comes last, so it can override defaults such as the buffer pool size.
        let pool = cnf.find("innodb_buffer_pool_size").unwrap();
        assert!(cnf.find("max_connections=500").unwrap() > pool);
        // A tenant move's filter is read after everything else.
        assert_eq!(
            cnf.lines().last(),
            Some("!includedir /s/members/shop-1/conf.d")
        );
        assert!(!cnf.contains("ssl_"), "no TLS unless asked");
        assert!(!render_config(&layout, &options(false)).contains("semi_sync"));
        let tls = TlsFiles::new("/s/tls");
        let with_tls = render_config(
            &layout,
            &ServerOptions {
                tls: Some(&tls),
                ..options(true)
            },
        );
        for line in [
            "ssl_ca=/s/tls/ca.crt",
            "ssl_cert=/s/tls/tls.crt",
            "ssl_key=/s/tls/tls.key",
            "require_secure_transport=ON",
        ] {
            assert!(with_tls.lines().any(|l| l == line), "{line} missing");
        }
    }

    #[test]
    fn accounts_leave_no_passwordless_root() {
        let creds = LocalCredentials::generate().unwrap();
        let sql = account_sql(&creds);
        assert!(
            sql.last()
                .unwrap()
                .contains("DROP USER IF EXISTS 'root'@'localhost'")
        );
        assert!(sql.iter().any(|s| s.contains(&creds.app_password)));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("e.log");
        std::fs::write(&log, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&log, 2), "b\nc");
        assert_eq!(tail(&dir.path().join("none"), 2), "");
    }
}
