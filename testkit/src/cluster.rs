//! A running replication cluster and its members.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::binaries::Binaries;
use crate::config::{self, ServerConfig};
use crate::error::{KitError, Result};
use crate::process::{alive, is_root, signal, spawn_tied};
use crate::{
    ADMIN_PASSWORD, ADMIN_USER, APP_DATABASE, APP_PASSWORD, APP_USER, REPL_PASSWORD, REPL_USER,
    ports, sql, template,
};

const DIR_PREFIX: &str = "lagless-kit-";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The role a member was started in. Orchestration under test may change roles later; ask the
/// server (`positions().read_only`) for the current truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

/// Where a member runs: a Linux network namespace (made by the caller) and the address it
/// listens on there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub netns: String,
    pub host: String,
}

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    members: usize,
    domain_id: u32,
    server_id_base: u32,
    replicate: bool,
    extra_config: Vec<String>,
    mariadbd: Option<PathBuf>,
    placements: Vec<Placement>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            members: 3,
            domain_id: 1,
            server_id_base: 100,
            replicate: true,
            extra_config: Vec::new(),
            mariadbd: None,
            placements: Vec::new(),
        }
    }
}

impl ClusterBuilder {
    /// Number of members: one primary and `n - 1` replicas.
    pub fn members(mut self, n: usize) -> Self {
        self.members = n;
        self
    }

    /// The cluster's `gtid_domain_id`.
    pub fn domain_id(mut self, id: u32) -> Self {
        self.domain_id = id;
        self
    }

    /// Member `i` gets `server_id = base + i`.
    pub fn server_id_base(mut self, base: u32) -> Self {
        self.server_id_base = base;
        self
    }

    /// With `false`, every member starts writable and unconfigured (for bootstrap tests).
    pub fn replicate(mut self, on: bool) -> Self {
        self.replicate = on;
        self
    }

    /// An extra `my.cnf` line for every member, e.g. `"rpl_semi_sync_master_enabled=ON"`.
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    /// Member `i` runs in `placements[i]` (members beyond the list on loopback), so that
    /// tests can cut the network between members.
    pub fn placements(mut self, placements: Vec<Placement>) -> Self {
        self.placements = placements;
        self
    }

    /// Runs this `mariadbd` instead of the one found on the system.
    pub fn mariadbd(mut self, path: impl Into<PathBuf>) -> Self {
        self.mariadbd = Some(path.into());
        self
    }

    /// Starts the members, waits until they accept connections and, unless disabled, until
    /// every replica's IO and SQL threads run.
    pub async fn start(self) -> Result<Cluster> {
        if self.members == 0 {
            return Err(KitError::Invalid(
                "a cluster needs at least one member".into(),
            ));
        }
        let started = Instant::now();
        let bins = Binaries::locate_with(self.mariadbd.as_deref())?;
        reap_stale_dirs();
        let template = template::template(&bins).await?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(KitError::io(std::env::temp_dir()))?;

        let mut members = Vec::with_capacity(self.members);
        for index in 0..self.members {
            let role = if index == 0 {
                Role::Primary
            } else {
                Role::Replica
            };
            let member = Member::create(
                &bins,
                dir.path(),
                &template,
                index,
                self.server_id_base + index as u32,
                self.domain_id,
                self.replicate && role == Role::Replica,
                self.extra_config.clone(),
                role,
                self.placements.get(index).cloned(),
            )?;
            members.push(member);
        }
        let cluster = Cluster {
            members,
            bins,
            dir,
            started_in: Duration::ZERO,
        };
        futures::future::try_join_all(cluster.members.iter().map(Member::start_process)).await?;
        if self.replicate {
            let primary = &cluster.members[0];
            for replica in &cluster.members[1..] {
                replica
                    .replicate_from_host(&primary.host, primary.port)
                    .await?;
            }
            for replica in &cluster.members[1..] {
                replica.wait_threads_running(START_TIMEOUT).await?;
            }
        }
        let started_in = started.elapsed();
        tracing::info!(members = self.members, ?started_in, dir = %cluster.dir.path().display(), "cluster up");
        Ok(Cluster {
            started_in,
            ..cluster
        })
    }
}

/// A running cluster. Dropping it kills every member and removes its directory.
#[derive(Debug)]
pub struct Cluster {
    // Members drop (and kill their processes) before the directory is removed.
    members: Vec<Member>,
    bins: Binaries,
    dir: tempfile::TempDir,
    started_in: Duration,
}

impl Cluster {
    /// A 3-member cluster builder with default settings.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Member 0, the primary the cluster started with.
    pub fn primary(&self) -> &Member {
        &self.members[0]
    }

    /// The members that started as replicas.
    pub fn replicas(&self) -> &[Member] {
        &self.members[1..]
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Member `i`; panics when out of range (a bug in the test).
    pub fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }

    /// The cluster's directory (one sub-directory per member).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The MariaDB programs this cluster runs.
    pub fn binaries(&self) -> &Binaries {
        &self.bins
    }

    /// Wall-clock time `start()` took, template build included.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Waits until every running replica has applied the primary's current binlog position.
    pub async fn wait_replicated(&self, timeout: Duration) -> Result<()> {
        let head = self.primary().positions().await?.gtid_binlog_pos;
        for replica in self.replicas() {
            if replica.is_running() {
                replica.wait_for_gtid(&head, timeout).await?;
            }
        }
        Ok(())
    }
}

/// What a member reports about its replication position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions {
    /// `@@gtid_binlog_pos`: what this server wrote to its binary log.
    pub gtid_binlog_pos: String,
    /// `@@gtid_slave_pos`: what the replication SQL thread applied.
    pub gtid_slave_pos: String,
    /// `@@gtid_current_pos`: the union the server reports as its position.
    pub gtid_current_pos: String,
    /// `Gtid_IO_Pos` of `SHOW SLAVE STATUS`: what the IO thread retrieved (empty when none).
    pub gtid_io_pos: String,
    pub read_only: bool,
    pub io_running: Option<String>,
    pub sql_running: Option<String>,
    pub last_io_error: String,
    pub last_sql_error: String,
}

/// One `mariadbd` of a cluster.
#[derive(Debug)]
pub struct Member {
    index: usize,
    server_id: u32,
    host: String,
    netns: Option<String>,
    port: u16,
    dir: PathBuf,
    role: Role,
    mariadbd: PathBuf,
    /// The data a fresh server starts from (see [`Member::wipe`]).
    template: PathBuf,
    process: Mutex<Option<Child>>,
}

impl Member {
    #[allow(clippy::too_many_arguments)]
    fn create(
        bins: &Binaries,
        cluster_dir: &Path,
        template: &Path,
        index: usize,
        server_id: u32,
        domain_id: u32,
        read_only: bool,
        extra: Vec<String>,
        role: Role,
        placement: Option<Placement>,
    ) -> Result<Self> {
        let dir = cluster_dir.join(format!("m{index}"));
        copy_dir(template, &dir.join("data"))?;
        let port = ports::free_port()?;
        let (netns, host) = match placement {
            Some(p) => (Some(p.netns), p.host),
            None => (None, "127.0.0.1".to_string()),
        };
        let member = Self {
            index,
            server_id,
            host,
            netns,
            port,
            dir,
            role,
            mariadbd: bins.mariadbd.clone(),
            template: template.to_path_buf(),
            process: Mutex::new(None),
        };
        let cnf = config::render(&ServerConfig {
            dir: &member.dir,
            host: &member.host,
            port,
            server_id,
            domain_id,
            read_only,
            extra: &extra,
        });
        let path = member.dir.join("my.cnf");
        std::fs::write(&path, cnf).map_err(KitError::io(&path))?;
        let tmp = member.dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(KitError::io(&tmp))?;
        Ok(member)
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address it listens on: `127.0.0.1` unless placed in a network namespace.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The role the member started in.
    pub fn initial_role(&self) -> Role {
        self.role
    }

    /// The member's directory: `my.cnf`, `error.log`, `data/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    /// The PID of the running process, if any.
    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(Child::id)
    }

    /// Whether the process has been started and has not exited.
    pub fn is_running(&self) -> bool {
        let mut guard = self.lock();
        match guard.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                *guard = None;
                false
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection as the application user to the `app` database.
    pub async fn app_conn(&self) -> Result<Conn> {
        self.conn_as(APP_USER, APP_PASSWORD, Some(APP_DATABASE))
            .await
    }

    /// A connection as the admin user.
    pub async fn admin_conn(&self) -> Result<Conn> {
        self.conn_as(ADMIN_USER, ADMIN_PASSWORD, None).await
    }

    pub async fn conn_as(&self, user: &str, password: &str, db: Option<&str>) -> Result<Conn> {
        sql::connect_to(&self.host, self.port, user, password, db)
            .await
            .map_err(|source| KitError::Sql {
                member: self.index,
                source,
            })
    }

    /// Runs statements as the admin user.
    pub async fn exec(&self, statements: &str) -> Result<()> {
        let mut conn = self.admin_conn().await?;
        conn.query_drop(statements)
            .await
            .map_err(|source| KitError::Sql {
                member: self.index,
                source,
            })?;
        let _ = conn.disconnect().await;
        Ok(())
    }

    /// Runs a query as the admin user and returns its rows.
    pub async fn query(&self, query: &str) -> Result<Vec<Row>> {
        let mut conn = self.admin_conn().await?;
        let rows = conn.query(query).await.map_err(|source| KitError::Sql {
            member: self.index,
            source,
        })?;
        let _ = conn.disconnect().await;
        Ok(rows)
    }

    /// Reads the member's GTID positions, `read_only` and replication thread states.
    pub async fn positions(&self) -> Result<Positions> {
        let mut conn = self.admin_conn().await?;
        let err = |source| KitError::Sql {
            member: self.index,
            source,
        };
        let row: Option<(String, String, String, i64)> = conn
            .query_first(
                "SELECT @@gtid_binlog_pos, @@gtid_slave_pos, @@gtid_current_pos, @@read_only",
            )
            .await
            .map_err(err)?;
        let (binlog, slave, current, read_only) = row.unwrap_or_default();
        let status: Option<Row> = conn.query_first("SHOW SLAVE STATUS").await.map_err(err)?;
        let _ = conn.disconnect().await;
        let field = |name: &str| -> Option<String> {
            status
                .as_ref()
                .and_then(|r| r.get_opt::<Option<String>, _>(name))
                .and_then(|v| v.ok())
                .flatten()
        };
        Ok(Positions {
            gtid_binlog_pos: binlog,
            gtid_slave_pos: slave,
            gtid_current_pos: current,
            gtid_io_pos: field("Gtid_IO_Pos").unwrap_or_default(),
            read_only: read_only != 0,
            io_running: field("Slave_IO_Running"),
            sql_running: field("Slave_SQL_Running"),
            last_io_error: field("Last_IO_Error").unwrap_or_default(),
            last_sql_error: field("Last_SQL_Error").unwrap_or_default(),
        })
    }

    /// Waits with `MASTER_GTID_WAIT` until this member has applied `pos`.
    pub async fn wait_for_gtid(&self, pos: &str, timeout: Duration) -> Result<()> {
        let mut conn = self.admin_conn().await?;
        let result: Option<i64> = conn
            .exec_first(
                "SELECT MASTER_GTID_WAIT(?, ?)",
                (pos, timeout.as_secs_f64()),
            )
            .await
            .map_err(|source| KitError::Sql {
                member: self.index,
                source,
            })?;
        let _ = conn.disconnect().await;
        match result {
            Some(0) => Ok(()),
            _ => Err(KitError::Timeout {
                what: format!("member {} applying GTID position {pos}", self.index),
                secs: timeout.as_secs_f64(),
                detail: String::new(),
            }),
        }
    }

    /// Points this member at `127.0.0.1:source_port` with GTID replication and starts it.
    pub async fn replicate_from(&self, source_port: u16) -> Result<()> {
        self.replicate_from_host("127.0.0.1", source_port).await
    }

    /// Points this member at `host:port` with GTID replication and starts it.
    pub async fn replicate_from_host(&self, host: &str, source_port: u16) -> Result<()> {
        self.exec(&format!(
            "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='{host}', MASTER_PORT={source_port}, \
             MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', \
             MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=0.25; \
             SET GLOBAL read_only=ON; START SLAVE"
        ))
        .await
    }

    /// Waits until both replication threads report `Yes`.
    pub async fn wait_threads_running(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let p = self.positions().await?;
            if p.io_running.as_deref() == Some("Yes") && p.sql_running.as_deref() == Some("Yes") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(KitError::Timeout {
                    what: format!("member {} replication threads running", self.index),
                    secs: timeout.as_secs_f64(),
                    detail: format!(
                        ": IO={:?} SQL={:?} io_error={:?} sql_error={:?}",
                        p.io_running, p.sql_running, p.last_io_error, p.last_sql_error
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop_sql_thread(&self) -> Result<()> {
        self.exec("STOP SLAVE SQL_THREAD").await
    }

    pub async fn start_sql_thread(&self) -> Result<()> {
        self.exec("START SLAVE SQL_THREAD").await
    }

    pub async fn stop_io_thread(&self) -> Result<()> {
        self.exec("STOP SLAVE IO_THREAD").await
    }

    pub async fn start_io_thread(&self) -> Result<()> {
        self.exec("START SLAVE IO_THREAD").await
    }

    /// Makes this replica apply each event `secs` seconds after the source committed it.
    pub async fn set_master_delay(&self, secs: u32) -> Result<()> {
        self.exec(&format!(
            "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY={secs}; START SLAVE"
        ))
        .await
    }

    /// `kill -9`: the process dies at once, as in a crash.
    pub fn kill9(&self) -> Result<()> {
        let mut guard = self.lock();
        if let Some(mut child) = guard.take() {
            signal(child.id(), libc::SIGKILL).map_err(KitError::io(&self.dir))?;
            let _ = child.wait();
        }
        Ok(())
    }

    /// `SIGSTOP`: the process hangs with its sockets open.
    pub fn pause(&self) -> Result<()> {
        self.send(libc::SIGSTOP)
    }

    /// `SIGCONT` after [`Member::pause`].
    pub fn resume(&self) -> Result<()> {
        self.send(libc::SIGCONT)
    }

    fn send(&self, sig: libc::c_int) -> Result<()> {
        match self.pid() {
            Some(pid) => signal(pid, sig).map_err(KitError::io(&self.dir)),
            None => Err(KitError::Invalid(format!(
                "member {} is not running",
                self.index
            ))),
        }
    }

    /// Shuts the server down cleanly (SIGTERM) and waits for it to exit.
    pub async fn shutdown(&self) -> Result<()> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        signal(pid, libc::SIGCONT).map_err(KitError::io(&self.dir))?;
        signal(pid, libc::SIGTERM).map_err(KitError::io(&self.dir))?;
        let deadline = Instant::now() + START_TIMEOUT;
        while self.is_running() {
            if Instant::now() > deadline {
                return self.kill9();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Starts the member again on its own data and port (after [`Member::kill9`] or
    /// [`Member::shutdown`]); a running member is shut down first.
    pub async fn restart(&self) -> Result<()> {
        self.shutdown().await?;
        self.start_process().await
    }

    /// Replaces the member's data with a fresh server's (as a lost disk would be replaced)
    /// and starts it: empty, read-only as configured, replicating from nothing.
    pub async fn wipe(&self) -> Result<()> {
        self.shutdown().await?;
        let data = self.data_dir();
        std::fs::remove_dir_all(&data).map_err(KitError::io(&data))?;
        copy_dir(&self.template, &data)?;
        self.start_process().await
    }

    /// The last `n` lines of the error log.
    pub fn error_log_tail(&self, n: usize) -> String {
        tail(&self.error_log(), n)
    }

    async fn start_process(&self) -> Result<()> {
        // Another process may grab the port between our check and the server's bind;
        // a few retries on the same port ride out TIME_WAIT and short races.
        let mut last = None;
        for _ in 0..5 {
            match self.try_start().await {
                Ok(()) => return Ok(()),
                Err(e @ KitError::Start { .. }) if self.bind_failed() => last = Some(e),
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(last.unwrap_or_else(|| KitError::Invalid("start failed".into())))
    }

    fn bind_failed(&self) -> bool {
        let log = self.error_log_tail(20);
        log.contains("Address already in use") || log.contains("Do you already have another")
    }

    async fn try_start(&self) -> Result<()> {
        // In a namespace through `ip netns exec`, which execs the server: same process.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.mariadbd);
                c
            }
            None => Command::new(&self.mariadbd),
        };
        cmd.arg(format!(
            "--defaults-file={}",
            self.dir.join("my.cnf").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if is_root() {
            cmd.arg("--user=root");
        }
        let child = spawn_tied(cmd).map_err(|e| self.start_error(e.to_string()))?;
        *self.lock() = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.is_running() {
                return Err(self.start_error("mariadbd exited during start-up".into()));
            }
            if let Ok(conn) =
                sql::connect_to(&self.host, self.port, ADMIN_USER, ADMIN_PASSWORD, None).await
            {
                let _ = conn.disconnect().await;
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.kill9();
                return Err(self.start_error(format!(
                    "no connection on port {} within {} s",
                    self.port,
                    START_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn start_error(&self, reason: String) -> KitError {
        KitError::Start {
            member: self.index,
            reason,
            log: self.error_log(),
            tail: self.error_log_tail(30),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// The last `n` lines of a file, or a note that it could not be read.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(KitError::io(to))?;
    for entry in std::fs::read_dir(from).map_err(KitError::io(from))? {
        let entry = entry.map_err(KitError::io(from))?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(KitError::io(entry.path()))?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).map_err(KitError::io(&target))?;
        }
    }
    Ok(())
}

/// Removes cluster directories whose test process is gone (it was killed before its
/// handles could drop), ending any server still running in them.
fn reap_stale_dirs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
                continue;
            };
            let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if owner.is_some_and(alive) {
                continue;
            }
            kill_members_in(&entry.path());
            let _ = std::fs::remove_dir_all(entry.path());
        }
    });
}

fn kill_members_in(cluster_dir: &Path) {
    let Ok(members) = std::fs::read_dir(cluster_dir) else {
        return;
    };
    for m in members.flatten() {
        let pid = std::fs::read_to_string(m.path().join("mariadbd.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            // Only a process that was started from this directory: PIDs get reused.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*m.path().to_string_lossy()) {
                let _ = signal(pid, libc::SIGKILL);
            }
        }
    }
}
