//! The processes one supervisor manages: every member's `mariadbd` and every proxy, with
//! their child handles, restart counts and when each is due to be started again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use lagless_mariadbd::ServerError;

use crate::crd::ReplicationSpec;
use crate::tls::files::TlsFiles;

use super::LocalError;
use super::mariadb::{self, Binaries, ServerLayout, ServerOptions};
use super::process::spawn_tied;
use super::restart::backoff;
use super::state::{LocalCredentials, StateDir, read_json, write_json};
use super::status::ProxyStatus;

/// What does not change while the supervisor runs.
#[derive(Debug)]
pub struct Runtime {
    pub dir: StateDir,
    pub bins: Binaries,
    pub creds: LocalCredentials,
    /// `spec.serverConfig` as wanted now: what new members start with, and what a roll
    /// brings the others to (`apply` changes it).
    pub server_config: RwLock<BTreeMap<String, String>>,
    pub replication: ReplicationSpec,
    pub consistency: String,
    /// The certificate files, when the spec asks for TLS.
    pub tls: Option<TlsFiles>,
}

impl Runtime {
    /// How a member's server is configured, with `server_config` from the spec.
    pub fn server_options<'a>(
        &'a self,
        server_config: &'a BTreeMap<String, String>,
    ) -> ServerOptions<'a> {
        ServerOptions {
            server_config,
            semi_sync: self.replicas_acknowledge(),
            tls: self.tls.as_ref(),
        }
    }

    /// `spec.serverConfig` as wanted now.
    pub fn wanted_config(&self) -> BTreeMap<String, String> {
        self.server_config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_wanted_config(&self, config: BTreeMap<String, String>) {
        *self
            .server_config
            .write()
            .unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// How a member's server was last started (kept beside its data), if it ever was.
    pub fn member_record(&self, layout: &ServerLayout) -> Option<ServerRecord> {
        read_json(&server_record(layout)).ok()
    }

    /// The `serverConfig` a member's server was last started with, or the wanted one for a
    /// member never started.
    pub fn member_config(&self, layout: &ServerLayout) -> BTreeMap<String, String> {
        self.member_record(layout)
            .map_or_else(|| self.wanted_config(), |r| r.server_config)
    }

    /// When the `mariadbd` program was last replaced, in milliseconds: a package upgrade
    /// replaces the file, a version switch re-points a symbolic link (`$LAGLESS_MARIADBD`);
    /// members started before run the older one.
    pub fn program_changed_ms(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let path = &self.bins.mariadbd;
        [std::fs::symlink_metadata(path), std::fs::metadata(path)]
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|m| {
                let secs = u64::try_from(m.ctime()).ok()?;
                let ms = u64::try_from(m.ctime_nsec()).ok()? / 1_000_000;
                secs.checked_mul(1000)?.checked_add(ms)
            })
            .max()
    }

    /// Starts a member's server with the configuration it ran before: a restart after a
    /// crash changes nothing (as a container restarted in its pod); only a roll does.
    pub fn spawn_member(&self, layout: &ServerLayout) -> Result<Child, LocalError> {
        self.spawn_member_with(layout, &self.member_config(layout))
    }

    /// Starts a member's server with `server_config`, recorded as what it runs.
    pub fn spawn_member_with(
        &self,
        layout: &ServerLayout,
        server_config: &BTreeMap<String, String>,
    ) -> Result<Child, LocalError> {
        record_config(layout, server_config)?;
        self.spawn_unrecorded(layout, server_config)
    }

    /// Starts `layout` with `server_config` without recording it as the member's: a trial,
    /// recorded by the caller once the server is up (a member that fails to start keeps the
    /// configuration it ran, also for a supervisor started after this one died).
    pub fn spawn_unrecorded(
        &self,
        layout: &ServerLayout,
        server_config: &BTreeMap<String, String>,
    ) -> Result<Child, LocalError> {
        mariadb::spawn(&self.bins, layout, &self.server_options(server_config))
    }

    /// Whether members' option files make replicas acknowledge: unless semi-sync is turned
    /// off, so that a single member scaled up later needs no restart.
    pub fn replicas_acknowledge(&self) -> bool {
        self.replication.semi_sync != Some(false)
    }
}

/// A member's process, as the supervisor manages it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Starting,
    Running,
    Crashed,
    Seeding,
    Stopped,
}

impl Process {
    pub fn as_str(self) -> &'static str {
        match self {
            Process::Starting => "starting",
            Process::Running => "running",
            Process::Crashed => "crashed",
            Process::Seeding => "seeding",
            Process::Stopped => "stopped",
        }
    }
}

#[derive(Debug)]
pub struct MemberProc {
    pub layout: ServerLayout,
    pub child: Option<Child>,
    pub process: Process,
    pub restarts: u32,
    pub restart_at: Option<Instant>,
    /// Scaled away: stopped and deleted once the topology no longer lists it.
    pub removing: bool,
}

impl MemberProc {
    /// A member whose server was just spawned.
    pub fn starting(layout: ServerLayout, child: Child) -> Self {
        Self {
            layout,
            child: Some(child),
            process: Process::Starting,
            restarts: 0,
            restart_at: None,
            removing: false,
        }
    }

    /// No process: let the restart logic start one on the next round.
    pub fn crashed_now(&mut self) {
        self.child = None;
        self.process = Process::Crashed;
        self.restart_at = Some(Instant::now());
    }
}

#[derive(Debug)]
pub struct ProxyProc {
    pub index: usize,
    pub port: u16,
    pub admin_port: u16,
    pub child: Option<Child>,
    pub restarts: u32,
    pub restart_at: Option<Instant>,
}

impl ProxyProc {
    /// Whether the proxy's process is gone (or was never started).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// Notices that the proxy exited and starts it again with `spawn` after a growing delay
    /// (see [`backoff`]); what happened goes to `notes`, one line each.
    pub fn reap_and_restart(
        &mut self,
        now: Instant,
        spawn: impl FnOnce(&Self) -> Result<Child, LocalError>,
        notes: &mut Vec<String>,
    ) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.child = None;
            let delay = backoff(self.restarts);
            self.restart_at = Some(now + delay);
            notes.push(format!(
                "proxy-{} exited ({status}); restarting",
                self.index
            ));
        }
        if self.child.is_none() && self.restart_at.is_some_and(|at| at <= now) {
            self.restart_at = None;
            self.restarts = self.restarts.saturating_add(1);
            match spawn(self) {
                Ok(child) => self.child = Some(child),
                Err(e) => {
                    self.restart_at = Some(now + backoff(self.restarts));
                    notes.push(format!("proxy-{} did not restart: {e}", self.index));
                }
            }
        }
    }

    /// What `status.json` says of this proxy.
    pub fn status(&self) -> ProxyStatus {
        ProxyStatus {
            name: format!("proxy-{}", self.index),
            port: self.port,
            admin_port: self.admin_port,
            pid: self.child.as_ref().map(Child::id),
            running: self.child.is_some(),
            restarts: self.restarts,
        }
    }
}

/// The members by name, and the proxies by index.
#[derive(Debug, Default)]
pub struct ProcessTable {
    pub members: BTreeMap<String, MemberProc>,
    pub proxies: Vec<ProxyProc>,
}

impl ProcessTable {
    /// Notices exited processes and restarts them after a growing delay (see
    /// [`backoff`]), the way Kubernetes restarts a crashed container. Members being
    /// removed are not restarted. Returns what happened, one line each.
    pub fn reap_and_restart(&mut self, rt: &Runtime, now: Instant) -> Vec<String> {
        let mut notes = Vec::new();
        for m in self.members.values_mut() {
            if let Some(child) = m.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                m.child = None;
                m.process = Process::Crashed;
                let delay = backoff(m.restarts);
                m.restart_at = Some(now + delay);
                notes.push(format!(
                    "{} exited ({status}); restarting in {} s",
                    m.layout.name,
                    delay.as_secs()
                ));
            }
            if m.process == Process::Crashed
                && !m.removing
                && m.restart_at.is_some_and(|at| at <= now)
            {
                m.restart_at = None;
                match rt.spawn_member(&m.layout) {
                    Ok(child) => {
                        m.child = Some(child);
                        m.process = Process::Starting;
                        m.restarts = m.restarts.saturating_add(1);
                        notes.push(format!("{} restarted", m.layout.name));
                    }
                    Err(e) => {
                        m.restarts = m.restarts.saturating_add(1);
                        m.restart_at = Some(now + backoff(m.restarts));
                        notes.push(format!("{} did not restart: {e}", m.layout.name));
                    }
                }
            }
        }
        for p in &mut self.proxies {
            p.reap_and_restart(
                now,
                |p| spawn_proxy(rt, p.index, p.port, p.admin_port),
                &mut notes,
            );
        }
        notes
    }
}

/// How a member's server was last started.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ServerRecord {
    /// The `spec.serverConfig` in its option file.
    pub server_config: BTreeMap<String, String>,
    pub started_unix_ms: u64,
}

/// Where a member's [`ServerRecord`] is kept.
fn server_record(layout: &ServerLayout) -> PathBuf {
    layout.dir.join("server.json")
}

/// Records that `layout`'s member is started now with `server_config`.
pub fn record_config(
    layout: &ServerLayout,
    server_config: &BTreeMap<String, String>,
) -> Result<(), LocalError> {
    std::fs::create_dir_all(&layout.dir).map_err(LocalError::io(&layout.dir))?;
    let record = ServerRecord {
        server_config: server_config.clone(),
        started_unix_ms: crate::clock::unix_ms(),
    };
    write_json(&server_record(layout), &record, 0o644)
}

/// Stops `children` all at once, each given `grace` to exit before it is killed.
pub async fn stop_together(children: Vec<Child>, grace: Duration) {
    let stops = children.into_iter().map(|mut c| async move {
        mariadb::stop(&mut c, grace).await;
    });
    futures::future::join_all(stops).await;
}

/// Starts `count` proxies with `spawn`, proxy `i` on the ports `ports(i)` gives, handing each
/// to `keep` as it starts (so that one started before a failure is stopped with the rest).
pub fn start_proxies(
    count: usize,
    ports: impl Fn(usize) -> Option<(u16, u16)>,
    spawn: impl Fn(usize, u16, u16) -> Result<Child, LocalError>,
    mut keep: impl FnMut(ProxyProc),
) -> Result<(), LocalError> {
    for index in 0..count {
        let (port, admin_port) =
            ports(index).ok_or_else(|| LocalError::Other(format!("no port for proxy {index}")))?;
        let child = spawn(index, port, admin_port)?;
        keep(ProxyProc {
            index,
            port,
            admin_port,
            child: Some(child),
            restarts: 0,
            restart_at: None,
        });
    }
    Ok(())
}

/// Waits (up to 30 s) until each proxy of `ports` (index, port) listens; fails, with the end
/// of its log (`log(index)`), as soon as one has exited (`exited(index)`).
pub async fn await_proxies(
    ports: Vec<(usize, u16)>,
    exited: impl Fn(usize) -> bool,
    log: impl Fn(usize) -> PathBuf,
) -> Result<(), LocalError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for (index, port) in ports {
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if exited(index) || Instant::now() > deadline {
                let log = log(index);
                return Err(LocalError::Server(ServerError::ServerStart {
                    member: format!("proxy-{index}"),
                    reason: format!("lagless-proxy did not listen on 127.0.0.1:{port}"),
                    tail: mariadb::tail(&log, 10),
                    log,
                }));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Starts one proxy of a cluster: this same program's `proxy` subcommand, so one installed
/// binary is enough.
pub fn spawn_proxy(
    rt: &Runtime,
    index: usize,
    port: u16,
    admin_port: u16,
) -> Result<Child, LocalError> {
    let cmd = proxy_command(&ProxyLaunch {
        dir: &rt.dir.proxy(index),
        port,
        admin_port,
        topology: &rt.dir.topology(),
        consistency: &rt.consistency,
        creds: &rt.creds,
        tls: rt.tls.as_ref(),
    })?;
    spawn_proxy_command(cmd)
}

/// What a proxy is started with.
#[derive(Debug, Clone, Copy)]
pub struct ProxyLaunch<'a> {
    /// Where its log goes (`proxy.log`).
    pub dir: &'a Path,
    pub port: u16,
    pub admin_port: u16,
    pub topology: &'a Path,
    pub consistency: &'a str,
    pub creds: &'a LocalCredentials,
    pub tls: Option<&'a TlsFiles>,
}

/// This program as a child command, with no input and its output appended to `log`.
pub fn own_command(log: &std::path::Path) -> Result<Command, LocalError> {
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(LocalError::io(log))?;
    let err = out.try_clone().map_err(LocalError::io(log))?;
    let exe = std::env::current_exe().map_err(|e| LocalError::Other(e.to_string()))?;
    let mut cmd = Command::new(exe);
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    Ok(cmd)
}

/// The command that runs a proxy, its output appended to `proxy.log`. Credentials travel in
/// the environment, not on the command line.
pub fn proxy_command(launch: &ProxyLaunch<'_>) -> Result<Command, LocalError> {
    let dir = launch.dir;
    std::fs::create_dir_all(dir).map_err(LocalError::io(dir))?;
    let creds = launch.creds;
    let mut cmd = own_command(&dir.join("proxy.log"))?;
    cmd.arg("proxy")
        .arg(format!("--listen=127.0.0.1:{}", launch.port))
        .arg(format!("--admin-listen=127.0.0.1:{}", launch.admin_port))
        .arg(format!("--topology={}", launch.topology.display()))
        .arg(format!("--consistency={}", launch.consistency))
        .arg("--shutdown-timeout=5")
        // Least privilege: the administrator's account never reaches a proxy.
        .env("LAGLESS_PROXY_LOOKUP_USER", &creds.lookup_user)
        .env("LAGLESS_PROXY_LOOKUP_PASSWORD", &creds.lookup_password)
        .env("LAGLESS_PROXY_MONITOR_USER", &creds.monitor_user)
        .env("LAGLESS_PROXY_MONITOR_PASSWORD", &creds.monitor_password)
        .env("LAGLESS_LOG", "info");
    if let Some(tls) = launch.tls {
        // Clients must use TLS; members are verified by certificate and address. The proxy
        // reloads the files when they are renewed.
        cmd.arg(format!("--tls-cert={}", tls.cert().display()))
            .arg(format!("--tls-key={}", tls.key().display()))
            .arg("--require-tls")
            .arg("--backend-tls=verify")
            .arg(format!("--backend-ca={}", tls.ca().display()));
    }
    Ok(cmd)
}

/// Starts a proxy built by [`proxy_command`], tied to this process's life.
pub fn spawn_proxy_command(cmd: Command) -> Result<Child, LocalError> {
    spawn_tied(cmd).map_err(|e| LocalError::Command {
        command: "lagless-operator proxy".into(),
        detail: e.to_string(),
    })
}
