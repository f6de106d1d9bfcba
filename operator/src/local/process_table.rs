//! The processes one supervisor manages: every member's `mariadbd` and every proxy, with
//! their child handles, restart counts and when each is due to be started again.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::crd::ReplicationSpec;
use crate::tls::files::TlsFiles;

use super::LocalError;
use super::mariadb::{self, Binaries, ServerLayout, ServerOptions};
use super::process::spawn_tied;
use super::restart::backoff;
use super::state::{LocalCredentials, StateDir};

/// What does not change while the supervisor runs.
#[derive(Debug)]
pub struct Runtime {
    pub dir: StateDir,
    pub bins: Binaries,
    pub creds: LocalCredentials,
    pub server_config: BTreeMap<String, String>,
    pub replication: ReplicationSpec,
    pub consistency: String,
    /// The certificate files, when the spec asks for TLS.
    pub tls: Option<TlsFiles>,
}

impl Runtime {
    /// How members' servers are configured.
    pub fn server_options(&self) -> ServerOptions<'_> {
        ServerOptions {
            server_config: &self.server_config,
            semi_sync: self.replicas_acknowledge(),
            tls: self.tls.as_ref(),
        }
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
                match mariadb::spawn(&rt.bins, &m.layout, &rt.server_options()) {
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
            if let Some(child) = p.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                p.child = None;
                let delay = backoff(p.restarts);
                p.restart_at = Some(now + delay);
                notes.push(format!("proxy-{} exited ({status}); restarting", p.index));
            }
            if p.child.is_none() && p.restart_at.is_some_and(|at| at <= now) {
                p.restart_at = None;
                p.restarts = p.restarts.saturating_add(1);
                match spawn_proxy(rt, p.index, p.port, p.admin_port) {
                    Ok(child) => p.child = Some(child),
                    Err(e) => {
                        p.restart_at = Some(now + backoff(p.restarts));
                        notes.push(format!("proxy-{} did not restart: {e}", p.index));
                    }
                }
            }
        }
        notes
    }
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

/// The command that runs a proxy, its output appended to `proxy.log`. Credentials travel in
/// the environment, not on the command line.
pub fn proxy_command(launch: &ProxyLaunch<'_>) -> Result<Command, LocalError> {
    let dir = launch.dir;
    std::fs::create_dir_all(dir).map_err(LocalError::io(dir))?;
    let log_path = dir.join("proxy.log");
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(LocalError::io(&log_path))?;
    let err = log.try_clone().map_err(LocalError::io(&log_path))?;
    let exe = std::env::current_exe().map_err(|e| LocalError::Other(e.to_string()))?;
    let creds = launch.creds;
    let mut cmd = Command::new(exe);
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
        .env("LAGLESS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
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
