//! The supervisor: owns one local cluster's processes and drives it.
//!
//! It starts the members from the template, lets the orchestration core bootstrap them,
//! starts the proxies, then loops: restart crashed processes (as a StatefulSet or Deployment
//! would), take switchover, scale and reseed requests, run one orchestration tick. Copies
//! (seeding) run in tasks of their own (see [`super::seeder`]); a separate task writes
//! `status.json` twice a second.

use std::collections::{BTreeMap, VecDeque};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lagless_proxy::topology::{Flavor, Topology};
use tokio::sync::watch;

use crate::crd::{Durability, MySQLCluster, ReplicationSpec};
use crate::orchestrate::act::{FileSink, ProxyAccount, ProxyRole};
use crate::orchestrate::observe::Credentials;
use crate::orchestrate::run::Orchestrator;
use crate::orchestrate::view::{ClusterSpec, Probe, Switchover, SwitchoverTarget};
use crate::orchestrate::{ClusterState, Event, Plan};

use super::LocalError;
use super::mariadb::{self, Binaries, ServerLayout};
use super::process::spawn_tied;
use super::request::{Request, RequestKind};
use super::seeder::LocalSeeder;
use super::state::{LocalCredentials, Settings, StateDir, write_json};
use super::status::{
    ConnectInfo, EventLine, MemberStatus, ProxyStatus, RequestResult, SeedingStatus, Status,
    now_unix_ms,
};

/// How long after one failover another may happen automatically. Shorter than in Kubernetes
/// (where flapping costs more): local clusters are for trying failures out.
const FAILOVER_COOLDOWN: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(250);

/// What does not change while the supervisor runs.
#[derive(Debug)]
pub struct Runtime {
    pub dir: StateDir,
    pub bins: Binaries,
    pub creds: LocalCredentials,
    pub server_config: BTreeMap<String, String>,
    pub replication: ReplicationSpec,
    pub consistency: String,
}

impl Runtime {
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
    fn as_str(self) -> &'static str {
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
    restart_at: Option<Instant>,
    /// Scaled away: stopped and deleted once the topology no longer lists it.
    removing: bool,
}

impl MemberProc {
    /// No process: let the restart logic start one on the next round.
    pub fn crashed_now(&mut self) {
        self.child = None;
        self.process = Process::Crashed;
        self.restart_at = Some(Instant::now());
    }
}

#[derive(Debug)]
struct ProxyProc {
    index: usize,
    port: u16,
    admin_port: u16,
    child: Option<Child>,
    restarts: u32,
    restart_at: Option<Instant>,
}

/// A seeding in progress.
#[derive(Debug)]
pub struct Seeding {
    pub member: String,
    pub donor: String,
    pub bytes: Arc<AtomicU64>,
    pub started: Instant,
}

/// What the orchestration last saw and did, copied after each tick.
#[derive(Debug, Default)]
struct Snapshot {
    state: Option<ClusterState>,
    view: Option<crate::orchestrate::ClusterView>,
    published: Option<Topology>,
    quarantined: Vec<String>,
    events: Vec<EventLine>,
    failing: Option<String>,
}

/// State shared between the loop, the seeder and the status writer.
#[derive(Debug, Default)]
pub struct Shared {
    phase: String,
    step: String,
    /// The start's steps in order (see [`Status::progress`]).
    progress: Vec<String>,
    pub members: BTreeMap<String, MemberProc>,
    proxies: Vec<ProxyProc>,
    pub seeding: Option<Seeding>,
    /// The member whose copy last completed, and when.
    pub last_seeded: Option<(String, Instant)>,
    snapshot: Snapshot,
    events: VecDeque<EventLine>,
    requests: Vec<RequestResult>,
}

/// [`Shared`] behind a mutex that is never held across an await.
#[derive(Debug, Clone, Default)]
pub struct SharedState(Arc<Mutex<Shared>>);

impl SharedState {
    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Shared {
    fn note(&mut self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(%message, "cluster event");
        self.events.push_back(EventLine {
            unix_ms: now_unix_ms(),
            message,
        });
        while self.events.len() > 100 {
            self.events.pop_front();
        }
    }

    fn set_step(&mut self, phase: &str, step: impl Into<String>) {
        self.phase = phase.to_string();
        self.step = step.into();
        if phase == "starting" && self.progress.len() < 32 {
            self.progress.push(self.step.clone());
        }
        tracing::info!(phase, step = %self.step, "progress");
    }
}

/// A request being carried out.
#[derive(Debug)]
struct Pending {
    request: Request,
    started: Instant,
    /// Members a scale-up added, each to be seen replicating.
    added: Vec<String>,
}

/// Runs one cluster until `stop` turns true; then stops every process it started.
pub struct Supervisor {
    rt: Arc<Runtime>,
    cluster: MySQLCluster,
    settings: Settings,
    shared: SharedState,
    orchestrator: Option<Orchestrator>,
    switchover: Option<Switchover>,
    pending: Option<Pending>,
    last_warning: Option<String>,
}

impl Supervisor {
    pub fn new(
        rt: Runtime,
        cluster: MySQLCluster,
        settings: Settings,
        shared: SharedState,
    ) -> Self {
        Self {
            rt: Arc::new(rt),
            cluster,
            settings,
            shared,
            orchestrator: None,
            switchover: None,
            pending: None,
            last_warning: None,
        }
    }

    fn layout(&self, index: u32) -> Result<ServerLayout, LocalError> {
        let name = self.settings.member_name(index);
        let port = self
            .settings
            .member_port(index)
            .ok_or_else(|| LocalError::Other(format!("no port for member {index}")))?;
        Ok(ServerLayout {
            dir: self.rt.dir.member(&name),
            name,
            port,
            server_id: self.settings.server_id_base.saturating_add(index),
            gtid_domain_id: self.settings.gtid_domain_id,
        })
    }

    fn cluster_spec(&self) -> Result<ClusterSpec, LocalError> {
        let members = (0..self.settings.replicas)
            .map(|i| {
                self.layout(i)
                    .map(|l| (l.name, "127.0.0.1".to_string(), l.port))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut spec = self
            .cluster
            .spec
            .to_cluster_spec(&self.settings.cluster, members);
        spec.failover_cooldown = FAILOVER_COOLDOWN;
        // Switchovers are requested with `local switchover`; a request kept in the file would
        // be carried out again after every restart.
        spec.switchover = self.switchover.clone();
        Ok(spec)
    }

    /// Starts everything, runs until `stop`, stops everything.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), LocalError> {
        let started = self.start(&mut stop).await;
        if started.is_ok() {
            self.shared
                .lock()
                .set_step("running", "running".to_string());
            let proxies = self.shared.lock().proxies.len();
            self.shared.lock().note(format!(
                "cluster {} is up: {} members, {proxies} proxies",
                self.settings.cluster, self.settings.replicas,
            ));
            while !*stop.borrow() {
                self.round().await;
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        self.shared
            .lock()
            .set_step("stopping", "stopping proxies and servers");
        self.stop_all().await;
        self.shared.lock().set_step("stopped", "stopped");
        started
    }

    async fn start(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), LocalError> {
        let fresh = !self.rt.dir.template().join("ready").is_file();
        self.shared.lock().set_step(
            "starting",
            if fresh {
                "initialising the data directory template (mariadb-install-db)"
            } else {
                "checking the data directory template"
            },
        );
        let began = Instant::now();
        mariadb::ensure_template(&self.rt.bins, &self.rt.dir.template(), &self.rt.creds).await?;
        if fresh {
            self.shared.lock().note(format!(
                "template data directory ready in {:.1} s",
                began.elapsed().as_secs_f64()
            ));
        }
        let layouts = (0..self.settings.replicas)
            .map(|i| self.layout(i))
            .collect::<Result<Vec<_>, _>>()?;
        self.shared.lock().set_step(
            "starting",
            format!("starting {} mariadbd servers", layouts.len()),
        );
        let began = Instant::now();
        for layout in &layouts {
            self.add_member(layout.clone()).await?;
        }
        self.wait_members_ready(&layouts).await?;
        self.shared.lock().note(format!(
            "{} servers accepting connections in {:.1} s",
            layouts.len(),
            began.elapsed().as_secs_f64()
        ));

        let spec = self.cluster_spec()?;
        let replicas = i32::try_from(self.settings.replicas).unwrap_or(i32::MAX);
        let durability = Durability::of(&self.rt.replication, replicas);
        if durability == Durability::SemiSyncOff {
            self.shared
                .lock()
                .note(format!("warning: {}", durability.message()));
        }
        let published = Topology::read(&self.rt.dir.topology()).ok();
        let sink = FileSink(self.rt.dir.topology());
        let recorded_epoch = sink.recorded_epoch();
        let seeder = LocalSeeder::new(self.rt.clone(), self.shared.clone());
        self.orchestrator = Some(
            Orchestrator::with_defaults(
                spec,
                Flavor::Mariadb,
                Credentials {
                    user: self.rt.creds.admin_user.clone(),
                    password: self.rt.creds.admin_password.clone(),
                },
                Credentials {
                    user: self.rt.creds.replication_user.clone(),
                    password: self.rt.creds.replication_password.clone(),
                },
                Box::new(sink),
                published,
            )
            .with_max_epoch(recorded_epoch)
            .with_proxy_accounts(vec![
                ProxyAccount {
                    role: ProxyRole::Lookup,
                    creds: Credentials {
                        user: self.rt.creds.lookup_user.clone(),
                        password: self.rt.creds.lookup_password.clone(),
                    },
                },
                ProxyAccount {
                    role: ProxyRole::Monitor,
                    creds: Credentials {
                        user: self.rt.creds.monitor_user.clone(),
                        password: self.rt.creds.monitor_password.clone(),
                    },
                },
            ])
            .with_seeder(Arc::new(seeder)),
        );
        self.shared
            .lock()
            .set_step("starting", "electing a primary and starting replication");
        let began = Instant::now();
        let deadline = began + Duration::from_secs(120);
        loop {
            let plan = self.tick().await;
            let ready = self
                .orchestrator
                .as_ref()
                .and_then(Orchestrator::published)
                .is_some_and(|t| t.primary.is_some())
                && plan
                    .as_ref()
                    .is_some_and(|p| p.state == ClusterState::Healthy);
            if ready {
                break;
            }
            if *stop.borrow() {
                return Err(LocalError::Other("stopped while starting".into()));
            }
            if Instant::now() > deadline {
                return Err(LocalError::Other(format!(
                    "the cluster did not become healthy within 120 s; last: {}",
                    self.last_warning.as_deref().unwrap_or("no warning")
                )));
            }
            self.reap_and_restart();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.shared.lock().note(format!(
            "replication running in {:.1} s",
            began.elapsed().as_secs_f64()
        ));
        self.shared
            .lock()
            .set_step("starting", "starting the proxies");
        self.start_proxies().await
    }

    /// Registers a member and starts its server (from the template if it has no data yet).
    async fn add_member(&mut self, layout: ServerLayout) -> Result<(), LocalError> {
        mariadb::init_member_data(&self.rt.dir.template(), &layout).await?;
        let child = mariadb::spawn(
            &self.rt.bins,
            &layout,
            &self.rt.server_config,
            self.rt.replicas_acknowledge(),
        )?;
        self.shared.lock().members.insert(
            layout.name.clone(),
            MemberProc {
                layout,
                child: Some(child),
                process: Process::Starting,
                restarts: 0,
                restart_at: None,
                removing: false,
            },
        );
        Ok(())
    }

    async fn wait_members_ready(&mut self, layouts: &[ServerLayout]) -> Result<(), LocalError> {
        let taken: Vec<(ServerLayout, Option<Child>)> = {
            let mut shared = self.shared.lock();
            layouts
                .iter()
                .map(|l| {
                    let child = shared.members.get_mut(&l.name).and_then(|m| m.child.take());
                    (l.clone(), child)
                })
                .collect()
        };
        let creds = &self.rt.creds;
        let waits = taken.into_iter().map(|(layout, child)| async move {
            let result = match child {
                Some(mut child) => {
                    let r = mariadb::wait_ready(&mut child, &layout, creds).await;
                    (Some(child), r)
                }
                None => (
                    None,
                    Err(LocalError::Other(format!("{} has no process", layout.name))),
                ),
            };
            (layout, result)
        });
        let results = futures::future::join_all(waits).await;
        let mut first_error = None;
        let mut shared = self.shared.lock();
        for (layout, (child, result)) in results {
            if let Some(m) = shared.members.get_mut(&layout.name) {
                m.child = child;
                m.process = if result.is_ok() {
                    Process::Running
                } else {
                    Process::Crashed
                };
            }
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn start_proxies(&mut self) -> Result<(), LocalError> {
        let count = usize::try_from(self.cluster.spec.proxy.replicas.max(1)).unwrap_or(1);
        for index in 0..count {
            let (port, admin_port) = self
                .settings
                .proxy_ports(index)
                .ok_or_else(|| LocalError::Other(format!("no port for proxy {index}")))?;
            let child = spawn_proxy(&self.rt, index, port, admin_port)?;
            self.shared.lock().proxies.push(ProxyProc {
                index,
                port,
                admin_port,
                child: Some(child),
                restarts: 0,
                restart_at: None,
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let ports: Vec<(usize, u16)> = self
            .shared
            .lock()
            .proxies
            .iter()
            .map(|p| (p.index, p.port))
            .collect();
        for (index, port) in ports {
            loop {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    break;
                }
                let exited = self
                    .shared
                    .lock()
                    .proxies
                    .get_mut(index)
                    .and_then(|p| p.child.as_mut())
                    .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
                if exited || Instant::now() > deadline {
                    let log = self.rt.dir.proxy(index).join("proxy.log");
                    return Err(LocalError::ServerStart {
                        member: format!("proxy-{index}"),
                        reason: format!("lagless-proxy did not listen on 127.0.0.1:{port}"),
                        tail: mariadb::tail(&log, 10),
                        log,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// One round of the steady-state loop.
    async fn round(&mut self) {
        self.reap_and_restart();
        self.take_request().await;
        let plan = self.tick().await;
        self.finish_removals().await;
        self.check_request(plan.as_ref());
    }

    async fn tick(&mut self) -> Option<Plan> {
        let orchestrator = self.orchestrator.as_mut()?;
        let plan = orchestrator.tick().await;
        for event in &plan.events {
            if let Event::Warning { message } = event {
                self.last_warning = Some(message.clone());
            }
        }
        let snapshot = Snapshot {
            state: Some(plan.state),
            view: orchestrator.last_view().cloned(),
            published: orchestrator.published().cloned(),
            quarantined: orchestrator.history().quarantined.keys().cloned().collect(),
            events: orchestrator
                .events()
                .map(|e| EventLine {
                    unix_ms: e.unix_ms,
                    message: e.event.to_string(),
                })
                .collect(),
            failing: orchestrator.failing().map(str::to_string),
        };
        let mut shared = self.shared.lock();
        for m in shared.members.values_mut() {
            let answered = snapshot
                .view
                .as_ref()
                .and_then(|v| v.member(&m.layout.name))
                .is_some_and(|v| v.probe == Probe::Ok);
            if m.process == Process::Starting && answered {
                m.process = Process::Running;
            }
        }
        shared.snapshot = snapshot;
        Some(plan)
    }

    /// Notices exited processes and restarts them after a growing delay, the way Kubernetes
    /// restarts a crashed container.
    fn reap_and_restart(&mut self) {
        let now = Instant::now();
        let mut shared = self.shared.lock();
        let mut notes = Vec::new();
        for m in shared.members.values_mut() {
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
                match mariadb::spawn(
                    &self.rt.bins,
                    &m.layout,
                    &self.rt.server_config,
                    self.rt.replicas_acknowledge(),
                ) {
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
        for p in &mut shared.proxies {
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
                match spawn_proxy(&self.rt, p.index, p.port, p.admin_port) {
                    Ok(child) => p.child = Some(child),
                    Err(e) => {
                        p.restart_at = Some(now + backoff(p.restarts));
                        notes.push(format!("proxy-{} did not restart: {e}", p.index));
                    }
                }
            }
        }
        for note in notes {
            shared.note(note);
        }
    }

    /// Picks up the oldest request file, if no request is being carried out.
    async fn take_request(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let Some(request) = super::request::next(&self.rt.dir) else {
            return;
        };
        tracing::info!(?request, "request");
        let before = self.settings.replicas;
        let outcome = match &request.kind {
            RequestKind::Switchover { to } => self.begin_switchover(&request.id, to.as_deref()),
            RequestKind::Scale { replicas } => self.begin_scale(*replicas).await,
            RequestKind::Reseed { member } => self.begin_reseed(member).await,
        };
        match outcome {
            Ok(Some(done)) => self.finish(&request.id, true, done),
            Ok(None) => {
                // The members this request must see replicating before it is done.
                let added = match &request.kind {
                    RequestKind::Scale { replicas } => (before..*replicas)
                        .map(|i| self.settings.member_name(i))
                        .collect(),
                    RequestKind::Reseed { member } => vec![member.clone()],
                    RequestKind::Switchover { .. } => Vec::new(),
                };
                self.pending = Some(Pending {
                    request,
                    started: Instant::now(),
                    added,
                });
            }
            Err(e) => self.finish(&request.id, false, e.to_string()),
        }
    }

    /// Stops `member`, replaces its data with an empty template copy and starts it again;
    /// the plan then seeds it like a new member.
    async fn begin_reseed(&mut self, member: &str) -> Result<Option<String>, LocalError> {
        if self.current_primary().as_deref() == Some(member) {
            return Err(LocalError::Other(format!(
                "{member} is the primary: switch over first (`local switchover`)"
            )));
        }
        let (layout, child) = {
            let mut shared = self.shared.lock();
            let m = shared
                .members
                .get_mut(member)
                .filter(|m| !m.removing)
                .ok_or_else(|| LocalError::Other(format!("no member {member}")))?;
            m.process = Process::Stopped;
            m.restart_at = None;
            (m.layout.clone(), m.child.take())
        };
        if let Some(mut child) = child {
            mariadb::stop_discarding(&mut child).await;
        }
        let emptied = async {
            mariadb::remove_dir(&layout.data_dir()).await?;
            mariadb::init_member_data(&self.rt.dir.template(), &layout).await?;
            mariadb::spawn(
                &self.rt.bins,
                &layout,
                &self.rt.server_config,
                self.rt.replicas_acknowledge(),
            )
        }
        .await;
        let mut shared = self.shared.lock();
        let m = shared
            .members
            .get_mut(member)
            .ok_or_else(|| LocalError::Other(format!("no member {member}")))?;
        match emptied {
            Ok(child) => {
                m.child = Some(child);
                m.process = Process::Starting;
            }
            Err(e) => {
                m.crashed_now();
                return Err(e);
            }
        }
        shared.note(format!("{member} emptied for a re-seed"));
        drop(shared);
        if let Some(o) = self.orchestrator.as_mut() {
            o.release_for_reseed(member);
        }
        Ok(None)
    }

    fn finish(&mut self, id: &str, ok: bool, message: String) {
        let mut shared = self.shared.lock();
        shared.note(format!(
            "request {id} {}: {message}",
            if ok { "done" } else { "failed" }
        ));
        shared.requests.push(RequestResult {
            id: id.to_string(),
            ok,
            message,
        });
        let excess = shared.requests.len().saturating_sub(20);
        shared.requests.drain(..excess);
    }

    /// `Ok(Some(message))`: nothing to do; `Ok(None)`: under way.
    fn begin_switchover(
        &mut self,
        id: &str,
        to: Option<&str>,
    ) -> Result<Option<String>, LocalError> {
        let primary = self.current_primary();
        let target = match to {
            Some(name) => {
                if !(0..self.settings.replicas).any(|i| self.settings.member_name(i) == name) {
                    return Err(LocalError::Other(format!(
                        "{name} is not a member of {}",
                        self.settings.cluster
                    )));
                }
                if primary.as_deref() == Some(name) {
                    return Ok(Some(format!("{name} is the primary already")));
                }
                SwitchoverTarget::Member(name.to_string())
            }
            None => SwitchoverTarget::Best,
        };
        self.switchover = Some(Switchover {
            id: id.to_string(),
            to: target,
        });
        self.apply_spec()?;
        Ok(None)
    }

    async fn begin_scale(&mut self, replicas: u32) -> Result<Option<String>, LocalError> {
        let max = u32::try_from(crate::crd::MAX_MEMBERS).unwrap_or(9);
        if !(1..=max).contains(&replicas) {
            return Err(LocalError::Other(format!(
                "replicas must be between 1 and {max}"
            )));
        }
        let current = self.settings.replicas;
        if replicas == current {
            return Ok(Some(format!("{current} members already")));
        }
        if replicas > current {
            for i in current..replicas {
                let layout = self.layout(i)?;
                super::ports::ensure_free(layout.port, &layout.name)?;
                self.add_member(layout).await?;
            }
        } else {
            let mut shared = self.shared.lock();
            for i in replicas..current {
                if let Some(m) = shared.members.get_mut(&self.settings.member_name(i)) {
                    m.removing = true;
                }
            }
        }
        self.settings.replicas = replicas;
        write_json(&self.rt.dir.settings(), &self.settings, 0o644)?;
        self.apply_spec()?;
        Ok(None)
    }

    fn apply_spec(&mut self) -> Result<(), LocalError> {
        let spec = self.cluster_spec()?;
        if let Some(o) = self.orchestrator.as_mut() {
            o.spec = spec;
        }
        Ok(())
    }

    fn current_primary(&self) -> Option<String> {
        self.orchestrator
            .as_ref()?
            .published()?
            .primary
            .as_ref()
            .map(|p| p.name.clone())
    }

    /// Completes the pending request when its effect is visible.
    fn check_request(&mut self, plan: Option<&Plan>) {
        let Some(pending) = &self.pending else {
            return;
        };
        let id = pending.request.id.clone();
        let elapsed = pending.started.elapsed();
        let outcome: Option<(bool, String)> = match &pending.request.kind {
            RequestKind::Switchover { .. } => {
                let done = self
                    .orchestrator
                    .as_ref()
                    .and_then(|o| o.history().completed_switchover.clone())
                    .is_some_and(|c| c == id);
                let refused = plan
                    .into_iter()
                    .flat_map(|p| &p.events)
                    .find_map(|e| match e {
                        Event::Warning { message } if message.contains("switchover") => {
                            Some(message.clone())
                        }
                        Event::SwitchoverFailed {
                            request: Some(r), ..
                        } if *r == id => Some(e.to_string()),
                        _ => None,
                    });
                if done {
                    let epoch = self
                        .orchestrator
                        .as_ref()
                        .and_then(Orchestrator::published)
                        .map_or(0, |t| t.epoch);
                    Some((
                        true,
                        format!(
                            "{} is the primary (epoch {epoch}), switched in {} ms",
                            self.current_primary().unwrap_or_default(),
                            elapsed.as_millis()
                        ),
                    ))
                } else if let Some(why) = refused {
                    Some((false, why))
                } else if elapsed > Duration::from_secs(120) {
                    Some((false, "switchover did not finish within 120 s".into()))
                } else {
                    None
                }
            }
            RequestKind::Reseed { member } => {
                let shared = self.shared.lock();
                let seeded = shared
                    .last_seeded
                    .as_ref()
                    .is_some_and(|(m, at)| m == member && *at >= pending.started);
                let replicating = shared
                    .snapshot
                    .published
                    .as_ref()
                    .is_some_and(|t| t.replicas.iter().any(|r| r.name == *member));
                if seeded && replicating {
                    Some((
                        true,
                        format!(
                            "{member} re-seeded and replicating, in {:.1} s",
                            elapsed.as_secs_f64()
                        ),
                    ))
                } else if elapsed > Duration::from_secs(1800) {
                    Some((false, "re-seeding did not finish within 30 min".into()))
                } else {
                    None
                }
            }
            RequestKind::Scale { replicas } => {
                let shared = self.shared.lock();
                let published = shared.snapshot.published.as_ref();
                let replicating = |name: &str| {
                    published.is_some_and(|t| t.replicas.iter().any(|r| r.name == name))
                };
                let joined = pending.added.iter().all(|m| replicating(m));
                let removed = shared.members.values().all(|m| !m.removing);
                if joined && removed {
                    Some((
                        true,
                        format!("{replicas} members, in {:.1} s", elapsed.as_secs_f64()),
                    ))
                } else if elapsed > Duration::from_secs(1800) {
                    Some((false, "scaling did not finish within 30 min".into()))
                } else {
                    None
                }
            }
        };
        if let Some((ok, message)) = outcome {
            if matches!(pending.request.kind, RequestKind::Switchover { .. }) && !ok {
                self.switchover = None;
                let _ = self.apply_spec();
            }
            self.pending = None;
            self.finish(&id, ok, message);
        }
    }

    /// Stops and deletes members scaled away, once no topology lists them.
    async fn finish_removals(&mut self) {
        let listed = |t: Option<&Topology>, name: &str| {
            t.is_some_and(|t| {
                t.primary.as_ref().is_some_and(|p| p.name == name)
                    || t.replicas.iter().any(|r| r.name == name)
            })
        };
        let gone: Vec<(String, Option<Child>, std::path::PathBuf)> = {
            let mut shared = self.shared.lock();
            let published = shared.snapshot.published.clone();
            let names: Vec<String> = shared
                .members
                .values()
                .filter(|m| m.removing && !listed(published.as_ref(), &m.layout.name))
                .map(|m| m.layout.name.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| shared.members.remove(&n))
                .map(|m| (m.layout.name, m.child, m.layout.dir))
                .collect()
        };
        for (name, child, dir) in gone {
            if let Some(mut child) = child {
                mariadb::stop(&mut child, Duration::from_secs(60)).await;
            }
            match mariadb::remove_dir(&dir).await {
                Ok(()) => self.shared.lock().note(format!("{name} removed")),
                Err(e) => self
                    .shared
                    .lock()
                    .note(format!("{name} stopped; its files were not removed: {e}")),
            }
        }
    }

    async fn stop_all(&mut self) {
        let proxies: Vec<Child> = self
            .shared
            .lock()
            .proxies
            .iter_mut()
            .filter_map(|p| p.child.take())
            .collect();
        let stops = proxies.into_iter().map(|mut c| async move {
            mariadb::stop(&mut c, Duration::from_secs(10)).await;
        });
        futures::future::join_all(stops).await;
        let members: Vec<Child> = {
            let mut shared = self.shared.lock();
            shared
                .members
                .values_mut()
                .filter_map(|m| {
                    m.process = Process::Stopped;
                    m.child.take()
                })
                .collect()
        };
        let stops = members.into_iter().map(|mut c| async move {
            mariadb::stop(&mut c, Duration::from_secs(60)).await;
        });
        futures::future::join_all(stops).await;
    }
}

fn backoff(restarts: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(restarts.min(5)).min(30))
}

/// Starts one proxy: this same program's `proxy` subcommand, so one installed binary is
/// enough. Credentials travel in the environment, not on the command line.
fn spawn_proxy(
    rt: &Runtime,
    index: usize,
    port: u16,
    admin_port: u16,
) -> Result<Child, LocalError> {
    let dir = rt.dir.proxy(index);
    std::fs::create_dir_all(&dir).map_err(LocalError::io(&dir))?;
    let log_path = dir.join("proxy.log");
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(LocalError::io(&log_path))?;
    let err = log.try_clone().map_err(LocalError::io(&log_path))?;
    let exe = std::env::current_exe().map_err(|e| LocalError::Other(e.to_string()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("proxy")
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
        .arg(format!("--topology={}", rt.dir.topology().display()))
        .arg(format!("--consistency={}", rt.consistency))
        .arg("--shutdown-timeout=5")
        // Least privilege: the administrator's account never reaches a proxy.
        .env("LAGLESS_PROXY_LOOKUP_USER", &rt.creds.lookup_user)
        .env("LAGLESS_PROXY_LOOKUP_PASSWORD", &rt.creds.lookup_password)
        .env("LAGLESS_PROXY_MONITOR_USER", &rt.creds.monitor_user)
        .env("LAGLESS_PROXY_MONITOR_PASSWORD", &rt.creds.monitor_password)
        .env("LAGLESS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    spawn_tied(cmd).map_err(|e| LocalError::Command {
        command: "lagless-operator proxy".into(),
        detail: e.to_string(),
    })
}

/// Builds the status document from the shared state.
pub fn status(shared: &Shared, rt: &Runtime, settings: &Settings) -> Status {
    let snap = &shared.snapshot;
    let published = snap.published.as_ref();
    let view = snap.view.as_ref();
    let primary_name = published
        .and_then(|t| t.primary.as_ref())
        .map(|p| p.name.clone());
    let primary_exec = primary_name
        .as_deref()
        .and_then(|p| view?.member(p)?.executed.clone());
    let members = shared
        .members
        .values()
        .map(|m| {
            let name = m.layout.name.as_str();
            let v = view.and_then(|v| v.member(name));
            let role = if m.removing {
                "removing"
            } else if primary_name.as_deref() == Some(name) {
                "primary"
            } else if snap.quarantined.iter().any(|q| q == name) {
                "quarantined"
            } else if published.is_some_and(|t| t.replicas.iter().any(|r| r.name == name)) {
                "replica"
            } else if m.process == Process::Running || m.process == Process::Seeding {
                "joining"
            } else {
                "down"
            };
            let error = v.and_then(|v| {
                v.io_error
                    .as_ref()
                    .or(v.sql_error.as_ref())
                    .map(|e| format!("replication error {}: {}", e.code, e.message))
            });
            MemberStatus {
                name: name.to_string(),
                role: role.to_string(),
                port: m.layout.port,
                pid: m.child.as_ref().map(Child::id),
                process: m.process.as_str().to_string(),
                health: v
                    .map_or("unknown", |v| match v.probe {
                        Probe::Ok => "ok",
                        Probe::Unreachable => "unreachable",
                        Probe::Hung => "hung",
                    })
                    .to_string(),
                gtid: v.and_then(|v| v.executed.as_ref()).map(ToString::to_string),
                behind: v
                    .and_then(|v| v.holdings())
                    .zip(primary_exec.as_ref())
                    .and_then(|(held, p)| held.transactions_behind(p)),
                lag_seconds: v.and_then(|v| v.lag_seconds),
                replicating: v
                    .filter(|v| v.source.is_some())
                    .map(|v| v.io_running == Some(true) && v.sql_running == Some(true)),
                error,
                restarts: m.restarts,
            }
        })
        .collect();
    let proxies = shared
        .proxies
        .iter()
        .map(|p| ProxyStatus {
            name: format!("proxy-{}", p.index),
            port: p.port,
            admin_port: p.admin_port,
            pid: p.child.as_ref().map(Child::id),
            running: p.child.is_some(),
            restarts: p.restarts,
        })
        .collect();
    let mut events: Vec<EventLine> = shared
        .events
        .iter()
        .cloned()
        .chain(snap.events.iter().cloned())
        .collect();
    events.sort_by_key(|e| e.unix_ms);
    let excess = events.len().saturating_sub(50);
    events.drain(..excess);
    Status {
        cluster: settings.cluster.clone(),
        phase: shared.phase.clone(),
        step: shared.step.clone(),
        progress: shared.progress.clone(),
        state: snap.state.map(|s| format!("{s:?}")),
        supervisor_pid: std::process::id(),
        updated_unix_ms: now_unix_ms(),
        epoch: published.map(|t| t.epoch),
        durability: {
            let replicas = i32::try_from(settings.replicas).unwrap_or(i32::MAX);
            let durability = Durability::of(&rt.replication, replicas);
            (!durability.is_lossless()).then(|| durability.message())
        },
        failing: snap.failing.clone(),
        primary: primary_name,
        consistency: published.and_then(|t| t.consistency.clone()),
        members,
        proxies,
        seeding: shared.seeding.as_ref().map(|s| SeedingStatus {
            member: s.member.clone(),
            donor: s.donor.clone(),
            bytes: s.bytes.load(Ordering::Relaxed),
            elapsed_ms: u64::try_from(s.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }),
        events,
        connect: settings.proxy_ports(0).map(|(port, _)| ConnectInfo {
            host: "127.0.0.1".into(),
            port,
            user: rt.creds.app_user.clone(),
            database: rt.creds.database.clone(),
            credentials_file: rt.dir.credentials().display().to_string(),
        }),
        requests: shared.requests.clone(),
    }
}

/// Writes `status.json` every half second until `stop`, and once more at the end.
pub async fn write_status_until(
    shared: SharedState,
    rt: Arc<Runtime>,
    settings: Settings,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let doc = status(&shared.lock(), &rt, &settings);
        if let Err(e) = write_json(&rt.dir.status(), &doc, 0o644) {
            tracing::warn!(error = %e, "cannot write status");
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => {}
        }
    }
}

impl Supervisor {
    pub fn runtime(&self) -> Arc<Runtime> {
        self.rt.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delay_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(50), Duration::from_secs(30));
    }
}
