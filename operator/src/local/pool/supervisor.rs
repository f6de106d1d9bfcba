//! The pool supervisor: starts one supervisor per cluster (each an ordinary local cluster's,
//! restarted if it exits), then keeps the directory, the pool document and the pool's proxies,
//! measures each tenant cluster's load every 2 s and adds a cluster when the pool is busy.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lagless_core::topology::Topology;
use lagless_directory::placement::{self, ClusterLoad, ClusterState};
use lagless_directory::{Directory, DirectoryError};
use tokio::sync::watch;

use crate::crd::MySQLTenantPool;
use crate::crd::tenant_pool::directory_name;
use crate::local::LocalError;
use crate::local::mariadb::{self, Binaries};
use crate::local::process::spawn_tied;
use crate::local::process_table::{
    ProxyLaunch, ProxyProc, await_proxies, own_command, proxy_command, spawn_proxy_command,
    start_proxies, stop_together,
};
use crate::local::restart::backoff;
use crate::local::shared::Journal;
use crate::local::state::{LocalCredentials, read_json, write_json};
use crate::local::status::Status;
use crate::local::status_report::{connect_info, write_every_half_second};
use crate::orchestrate::view::CaSource;
use crate::pool::growth::{self, Growth};
use crate::pool::load::{self, RateMeter};
use crate::tls::files::TlsFiles;

use super::layout::{self, LocalCluster};
use super::rebalancer::{RebalanceStatus, Rebalancer};
use super::status::{PoolCluster, PoolStatus};
use super::{PoolDir, PoolSettings, cluster_dirs};

/// How often the loop runs: restarts, and the cluster being added.
const ROUND: Duration = Duration::from_millis(500);
/// How often each tenant cluster's load is measured.
const MEASURE_EVERY: Duration = Duration::from_secs(2);
/// How long one cluster's measurement may take.
const MEASURE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the clusters may take to elect their primaries at start (servers are initialised
/// and started one cluster beside the other on small machines).
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a cluster supervisor may take to stop its servers.
const CLUSTER_STOP: Duration = Duration::from_secs(150);

/// What does not change while the pool supervisor runs.
#[derive(Debug)]
pub struct PoolRuntime {
    pub dir: PoolDir,
    pub pool: MySQLTenantPool,
    pub creds: LocalCredentials,
    pub bins: Binaries,
    /// The pool's certificate files, shared by every cluster, when the template asks for TLS.
    pub tls: Option<TlsFiles>,
    /// The log filter cluster supervisors are started with.
    pub log_filter: String,
}

/// One cluster's supervisor process.
#[derive(Debug)]
struct ClusterProc {
    name: String,
    child: Option<Child>,
    restarts: u32,
    restart_at: Option<Instant>,
}

/// What the pool supervisor and its status writer share.
#[derive(Debug, Default)]
pub struct RunningPool {
    pub journal: Journal,
    clusters: Vec<ClusterProc>,
    proxies: Vec<ProxyProc>,
    /// The directory's last word on each tenant cluster.
    loads: Vec<ClusterLoad>,
    /// The write rates measured here, shown before the directory is read back.
    rates: BTreeMap<String, f64>,
    rebalance: RebalanceStatus,
}

impl RunningPool {
    /// Logs an event and keeps it (the last 100) for the status.
    pub fn note(&mut self, message: impl Into<String>) {
        self.journal.note("pool", message.into());
    }

    pub fn set_step(&mut self, phase: &str, step: impl Into<String>) {
        self.journal.set_step(phase, step.into());
    }
}

/// [`RunningPool`] behind a mutex that is never held across an await.
#[derive(Debug, Clone, Default)]
pub struct SharedPool(Arc<Mutex<RunningPool>>);

impl SharedPool {
    pub fn lock(&self) -> MutexGuard<'_, RunningPool> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs one pool until `stop` turns true; then stops every process it started.
pub struct PoolSupervisor {
    rt: Arc<PoolRuntime>,
    settings: PoolSettings,
    shared: SharedPool,
    /// Every cluster, the directory's first.
    clusters: Vec<LocalCluster>,
    /// The tenant clusters in the directory and the pool document, in order.
    registered: Vec<String>,
    /// A cluster being added: started, not yet registered.
    adding: Option<String>,
    /// The directory, and the primary it was reached at.
    directory: Option<(String, u16, Directory)>,
    meters: BTreeMap<String, RateMeter>,
    measured: Option<Instant>,
    /// Warnings of the last measuring round, and of this one: each is noted when it starts,
    /// not at every round while it lasts.
    warnings: BTreeSet<String>,
    fresh_warnings: BTreeSet<String>,
    rebalancer: Rebalancer,
}

impl PoolSupervisor {
    pub fn new(
        rt: PoolRuntime,
        settings: PoolSettings,
        shared: SharedPool,
    ) -> Result<Self, LocalError> {
        let clusters = layout::local_clusters(&rt.pool, &settings, |name| {
            cluster_dirs::previous_settings(&rt.dir, name)
        })?;
        let rebalancer = Rebalancer::new(rt.dir.root(), &rt.log_filter);
        Ok(Self {
            rt: Arc::new(rt),
            settings,
            shared,
            clusters,
            registered: Vec::new(),
            adding: None,
            directory: None,
            meters: BTreeMap::new(),
            measured: None,
            warnings: BTreeSet::new(),
            fresh_warnings: BTreeSet::new(),
            rebalancer,
        })
    }

    pub fn runtime(&self) -> Arc<PoolRuntime> {
        self.rt.clone()
    }

    fn directory_name(&self) -> String {
        directory_name(self.rt.pool.name())
    }

    /// Starts everything, runs until `stop`, stops everything.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), LocalError> {
        let started = self.start(&mut stop).await;
        match &started {
            Ok(()) => {
                // Measured once before the pool says it runs, so that its status shows every
                // cluster's state and load from the start.
                self.measured = Some(Instant::now());
                self.measure().await;
                self.shared.lock().set_step("running", "running");
                let (clusters, proxies) = (self.registered.len(), self.shared.lock().proxies.len());
                self.shared.lock().note(format!(
                    "pool {} is up: {clusters} tenant clusters, {proxies} proxies",
                    self.rt.pool.name()
                ));
                while !*stop.borrow() {
                    self.round().await;
                    tokio::select! {
                        _ = tokio::time::sleep(ROUND) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "the pool did not start"),
        }
        self.shared
            .lock()
            .set_step("stopping", "stopping proxies and clusters");
        self.stop_all().await;
        if let Some((_, _, directory)) = self.directory.take() {
            directory.close().await;
        }
        self.shared.lock().set_step("stopped", "stopped");
        started
    }

    async fn start(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), LocalError> {
        let rt = self.rt.clone();
        let fresh = !rt.dir.template().join("ready").is_file();
        self.shared.lock().set_step(
            "starting",
            if fresh {
                "initialising the data directory template (mariadb-install-db)"
            } else {
                "checking the data directory template"
            },
        );
        mariadb::ensure_template(&rt.bins, &rt.dir.template(), &rt.creds).await?;
        let names: Vec<String> = self.clusters.iter().map(|c| c.name().to_string()).collect();
        self.shared.lock().set_step(
            "starting",
            format!("starting {} clusters: {}", names.len(), names.join(", ")),
        );
        for name in &names {
            let child = spawn_cluster(&rt, name)?;
            self.shared.lock().clusters.push(ClusterProc {
                name: name.clone(),
                child: Some(child),
                restarts: 0,
                restart_at: None,
            });
        }
        self.shared
            .lock()
            .set_step("starting", "waiting for every cluster to elect a primary");
        let began = Instant::now();
        loop {
            let waiting: Vec<&String> = names
                .iter()
                .filter(|n| primary_of(&rt.dir, n).is_none())
                .collect();
            if waiting.is_empty() {
                break;
            }
            if *stop.borrow() {
                return Err(LocalError::Other("stopped while starting".into()));
            }
            if let Some(exited) = self.exited_cluster() {
                let log = rt.dir.cluster(&exited).log();
                return Err(LocalError::Other(format!(
                    "cluster {exited} did not start; last lines of {}:\n{}",
                    log.display(),
                    mariadb::tail(&log, 15)
                )));
            }
            if began.elapsed() > START_TIMEOUT {
                let waiting: Vec<&str> = waiting.iter().map(|n| n.as_str()).collect();
                return Err(LocalError::Other(format!(
                    "no primary within {} s in {}; see their operator.log under {}",
                    START_TIMEOUT.as_secs(),
                    waiting.join(", "),
                    rt.dir.clusters().display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.shared.lock().note(format!(
            "{} clusters have a primary in {:.1} s",
            names.len(),
            began.elapsed().as_secs_f64()
        ));

        self.shared
            .lock()
            .set_step("starting", "preparing the directory");
        self.prepare_directory().await?;
        self.write_document()?;
        self.shared
            .lock()
            .set_step("starting", "starting the proxies");
        self.start_proxies().await
    }

    /// A cluster supervisor that exited while the pool starts, if any.
    fn exited_cluster(&self) -> Option<String> {
        let mut shared = self.shared.lock();
        shared.clusters.iter_mut().find_map(|c| {
            let exited = c
                .child
                .as_mut()
                .is_none_or(|child| !matches!(child.try_wait(), Ok(None)));
            exited.then(|| c.name.clone())
        })
    }

    /// Creates the directory's tables and registers every tenant cluster: new ones open (or
    /// filling, for a cluster added by growth before a restart), known ones with their state
    /// kept and the spec's capacity.
    async fn prepare_directory(&mut self) -> Result<(), LocalError> {
        let directory = self
            .directory()
            .ok_or_else(|| LocalError::Other("the directory's cluster has no primary".into()))?;
        let failed = |e: DirectoryError| LocalError::Other(e.to_string());
        directory.ensure_schema().await.map_err(failed)?;
        let known = directory.clusters().await.map_err(failed)?;
        let spec = &self.rt.pool.spec;
        let min = u32::try_from(spec.clusters.min).unwrap_or(1);
        // The directory's cluster comes first and holds no tenants.
        let tenant_clusters: Vec<String> = self
            .clusters
            .iter()
            .skip(1)
            .map(|c| c.name().to_string())
            .collect();
        for (index, name) in tenant_clusters.iter().enumerate() {
            let state = known
                .iter()
                .find(|l| l.name == *name)
                .map(|l| l.state)
                .unwrap_or_else(|| {
                    growth::joining_state(u32::try_from(index).unwrap_or(u32::MAX), min)
                });
            directory
                .register_cluster(
                    name,
                    state,
                    spec.capacity_bytes(),
                    spec.placement.write_capacity,
                )
                .await
                .map_err(failed)?;
            tracing::info!(cluster = %name, state = %state, "cluster registered");
        }
        self.registered = tenant_clusters;
        Ok(())
    }

    /// The directory on its cluster's current primary, connecting anew after a failover.
    fn directory(&mut self) -> Option<Directory> {
        let (host, port) = primary_of(&self.rt.dir, &self.directory_name())?;
        match &self.directory {
            Some((h, p, directory)) if *h == host && *p == port => Some(directory.clone()),
            _ => {
                let opts = admin_opts(&self.rt, &host, port);
                let directory = Directory::new(opts);
                tracing::info!(%host, port, "directory reached at its primary");
                self.directory = Some((host, port, directory.clone()));
                Some(directory)
            }
        }
    }

    fn write_document(&self) -> Result<(), LocalError> {
        let path = self.rt.dir.document();
        layout::document(&self.rt.pool, &self.registered)
            .write(&path)
            .map_err(LocalError::io(&path))
    }

    async fn start_proxies(&mut self) -> Result<(), LocalError> {
        let count = usize::try_from(self.rt.pool.spec.proxy.replicas.max(1)).unwrap_or(1);
        start_proxies(
            count,
            |index| self.settings.proxy_ports(index),
            |index, port, admin_port| spawn_pool_proxy(&self.rt, index, port, admin_port),
            |proxy| self.shared.lock().proxies.push(proxy),
        )?;
        let shared = self.shared.clone();
        let ports: Vec<(usize, u16)> = (shared.lock().proxies.iter())
            .map(|p| (p.index, p.port))
            .collect();
        let dir = self.rt.dir.clone();
        await_proxies(
            ports,
            move |index| (shared.lock().proxies.get_mut(index)).is_none_or(ProxyProc::exited),
            move |index| dir.proxy(index).join("proxy.log"),
        )
        .await
    }

    /// One round of the steady-state loop.
    async fn round(&mut self) {
        self.reap_and_restart();
        self.finish_adding().await;
        if self.measured.is_none_or(|at| at.elapsed() >= MEASURE_EVERY) {
            self.measured = Some(Instant::now());
            self.measure().await;
            // A warning not seen again in this round has cleared; it is noted if it returns.
            self.warnings = std::mem::take(&mut self.fresh_warnings);
        }
        self.rebalance();
    }

    /// Moves tenants by itself when `spec.rebalance` asks for it (see [`Rebalancer`]).
    fn rebalance(&mut self) {
        // The directory's cluster too: every step of a move changes the directory.
        let mut names = vec![self.directory_name()];
        names.extend(self.registered.iter().cloned());
        let dir = &self.rt.dir;
        let notes = self.rebalancer.round(
            &self.rt.pool.spec.rebalance,
            || cluster_statuses(dir, &names),
            crate::clock::unix_ms(),
        );
        let mut shared = self.shared.lock();
        shared.rebalance = self.rebalancer.status.clone();
        for note in notes {
            shared.note(note);
        }
    }

    /// Restarts cluster supervisors and proxies that exited, after a growing delay.
    fn reap_and_restart(&mut self) {
        let now = Instant::now();
        let rt = self.rt.clone();
        let mut shared = self.shared.lock();
        let mut notes = Vec::new();
        for c in &mut shared.clusters {
            if let Some(child) = c.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                c.child = None;
                let delay = backoff(c.restarts);
                c.restart_at = Some(now + delay);
                notes.push(format!(
                    "cluster {}'s supervisor exited ({status}); restarting it in {} s",
                    c.name,
                    delay.as_secs()
                ));
            }
            if c.child.is_none() && c.restart_at.is_some_and(|at| at <= now) {
                c.restart_at = None;
                c.restarts = c.restarts.saturating_add(1);
                match spawn_cluster(&rt, &c.name) {
                    Ok(child) => {
                        c.child = Some(child);
                        notes.push(format!("cluster {}'s supervisor restarted", c.name));
                    }
                    Err(e) => {
                        c.restart_at = Some(now + backoff(c.restarts));
                        notes.push(format!("cluster {} did not restart: {e}", c.name));
                    }
                }
            }
        }
        for p in &mut shared.proxies {
            p.reap_and_restart(
                now,
                |p| spawn_pool_proxy(&rt, p.index, p.port, p.admin_port),
                &mut notes,
            );
        }
        for note in notes {
            shared.note(note);
        }
    }

    /// Measures every registered tenant cluster, records the loads in the directory, and
    /// grows the pool when it is busy.
    async fn measure(&mut self) {
        let Some(directory) = self.directory() else {
            self.warn("the directory's cluster has no primary: loads are not recorded".into());
            return;
        };
        let tenants = match directory.tenant_counts().await {
            Ok(counts) => counts,
            Err(e) => return self.warn(format!("cannot count tenants: {e}")),
        };
        let like = load::like_pattern(&self.rt.pool.spec.tenant_database);
        for name in self.registered.clone() {
            let Some((host, port)) = primary_of(&self.rt.dir, &name) else {
                continue;
            };
            let Some(domain) = self
                .clusters
                .iter()
                .find(|c| c.name() == name)
                .map(|c| c.settings.gtid_domain_id)
            else {
                continue;
            };
            let opts = admin_opts(&self.rt, &host, port);
            let reading = match load::read(opts, &like, domain, MEASURE_TIMEOUT).await {
                Ok(reading) => reading,
                Err(e) => {
                    self.warn(format!("cannot measure {name} at {host}:{port}: {e}"));
                    continue;
                }
            };
            let rate = self
                .meters
                .entry(name.clone())
                .or_default()
                .observe(reading.seq, Instant::now());
            let count = tenants.get(&name).copied().unwrap_or(0);
            if let Err(e) = directory
                .update_load(&name, reading.bytes, rate, count)
                .await
            {
                self.warn(format!("cannot record {name}'s load: {e}"));
                continue;
            }
            self.shared.lock().rates.insert(name.clone(), rate);
            tracing::debug!(cluster = %name, bytes = reading.bytes, rate, tenants = count, "load");
        }
        let loads = match directory.clusters().await {
            Ok(loads) => loads,
            Err(e) => return self.warn(format!("cannot read the clusters' loads: {e}")),
        };
        self.shared.lock().loads = loads.clone();
        let rt = self.rt.clone();
        let spec = &rt.pool.spec;
        let max = u32::try_from(spec.clusters.max).unwrap_or(0);
        match growth::next(
            &loads,
            spec.placement.grow_threshold,
            self.settings.clusters,
            max,
            self.adding.is_some(),
        ) {
            Growth::Nothing => {}
            Growth::Open(name) => {
                match directory.set_cluster_state(&name, ClusterState::Open).await {
                    Ok(()) => self
                        .shared
                        .lock()
                        .note(format!("{name} has caught up with the others: open")),
                    Err(e) => self.warn(format!("cannot open {name}: {e}")),
                }
            }
            Growth::Add => {
                let utilisation = placement::pool_utilisation(&loads);
                match self.add_cluster() {
                    Ok(name) => self.shared.lock().note(format!(
                        "the pool is {:.0}% used (threshold {:.0}%): adding {name}",
                        utilisation * 100.0,
                        spec.placement.grow_threshold * 100.0
                    )),
                    Err(e) => self.warn(format!("cannot add a cluster: {e}")),
                }
            }
        }
    }

    /// Writes the next tenant cluster's state directory and starts its supervisor; it joins
    /// the directory once it has a primary ([`Self::finish_adding`]).
    fn add_cluster(&mut self) -> Result<String, LocalError> {
        let mut next = self.settings.clone();
        next.clusters = next.clusters.saturating_add(1);
        let clusters = layout::local_clusters(&self.rt.pool, &next, |name| {
            cluster_dirs::previous_settings(&self.rt.dir, name)
        })?;
        let new = clusters
            .last()
            .filter(|c| !self.clusters.iter().any(|known| known.name() == c.name()))
            .cloned()
            .ok_or_else(|| LocalError::Other("the pool is at spec.clusters.max".into()))?;
        for i in 0..new.settings.replicas {
            let port = new
                .settings
                .member_port(i)
                .ok_or_else(|| LocalError::Other("--base-port is too high".into()))?;
            crate::local::ports::ensure_free(port, &new.settings.member_name(i))?;
        }
        cluster_dirs::write(&self.rt.dir, &new, &self.rt.creds, self.rt.tls.is_some())?;
        write_json(&self.rt.dir.settings(), &next, 0o644)?;
        self.settings = next;
        let child = spawn_cluster(&self.rt, new.name())?;
        let name = new.name().to_string();
        self.shared.lock().clusters.push(ClusterProc {
            name: name.clone(),
            child: Some(child),
            restarts: 0,
            restart_at: None,
        });
        self.clusters.push(new);
        self.adding = Some(name.clone());
        Ok(name)
    }

    /// Registers the cluster being added once it has a primary: filling, so new tenants go
    /// there first, and in the pool document.
    async fn finish_adding(&mut self) {
        let Some(name) = self.adding.clone() else {
            return;
        };
        if primary_of(&self.rt.dir, &name).is_none() {
            return;
        }
        let Some(directory) = self.directory() else {
            return;
        };
        let spec = &self.rt.pool.spec;
        if let Err(e) = directory
            .register_cluster(
                &name,
                ClusterState::Filling,
                spec.capacity_bytes(),
                spec.placement.write_capacity,
            )
            .await
        {
            return self.warn(format!("cannot register {name}: {e}"));
        }
        self.registered.push(name.clone());
        if let Err(e) = self.write_document() {
            self.registered.pop();
            return self.warn(format!("cannot write the pool document: {e}"));
        }
        self.adding = None;
        self.shared.lock().note(format!(
            "{name} is up and takes new tenants first (filling)"
        ));
    }

    /// Notes a warning unless it was already noted and has lasted since.
    fn warn(&mut self, message: String) {
        if !self.warnings.contains(&message) && !self.fresh_warnings.contains(&message) {
            tracing::warn!(%message, "pool");
            self.shared.lock().note(format!("warning: {message}"));
        }
        self.fresh_warnings.insert(message);
    }

    /// Stops the proxies first (no client is routed to a cluster that is going), then every
    /// cluster, all at once.
    async fn stop_all(&mut self) {
        // A move stopped here resumes from its record at the next start.
        self.rebalancer.stop().await;
        let proxies: Vec<Child> = self
            .shared
            .lock()
            .proxies
            .iter_mut()
            .filter_map(|p| p.child.take())
            .collect();
        stop_together(proxies, Duration::from_secs(10)).await;
        let clusters: Vec<Child> = self
            .shared
            .lock()
            .clusters
            .iter_mut()
            .filter_map(|c| {
                c.restart_at = None;
                c.child.take()
            })
            .collect();
        stop_together(clusters, CLUSTER_STOP).await;
    }
}

/// Connection options for the pool's administrator on `host:port`, verifying the pool's CA
/// when it runs TLS.
fn admin_opts(rt: &PoolRuntime, host: &str, port: u16) -> mysql_async::Opts {
    load::admin_opts(
        host,
        port,
        &rt.creds.admin_user,
        &rt.creds.admin_password,
        rt.tls.as_ref().map(|t| CaSource::File(t.ca())).as_ref(),
    )
}

/// The primary cluster `name` of the pool publishes now, once its supervisor runs it.
fn primary_of(dir: &PoolDir, name: &str) -> Option<(String, u16)> {
    let state = dir.cluster(name);
    let status: Status = read_json(&state.status()).ok()?;
    if status.phase != "running" {
        return None;
    }
    let topology = Topology::read(&state.topology()).ok()?;
    topology.primary.map(|p| (p.host, p.port))
}

/// Starts cluster `name`'s supervisor: `lagless-operator local up --supervise` on its state
/// directory, tied to this process (if the pool supervisor dies, so do its clusters).
fn spawn_cluster(rt: &PoolRuntime, name: &str) -> Result<Child, LocalError> {
    let state = rt.dir.cluster(name);
    let mut cmd = own_command(&state.log())?;
    cmd.arg("local")
        .arg("--state-dir")
        .arg(state.root())
        .args(["up", "--supervise"])
        .env("LAGLESS_LOG", &rt.log_filter);
    tracing::info!(cluster = %name, "starting the cluster's supervisor");
    spawn_tied(cmd).map_err(|e| LocalError::Command {
        command: format!("lagless-operator local up --supervise ({name})"),
        detail: e.to_string(),
    })
}

/// Starts one of the pool's proxies: it follows the directory cluster's topology and the pool
/// document, and reaches the directory with the pool's administrator.
fn spawn_pool_proxy(
    rt: &PoolRuntime,
    index: usize,
    port: u16,
    admin_port: u16,
) -> Result<Child, LocalError> {
    let directory = rt.dir.cluster(&directory_name(rt.pool.name()));
    let mut cmd = proxy_command(&ProxyLaunch {
        dir: &rt.dir.proxy(index),
        port,
        admin_port,
        topology: &directory.topology(),
        consistency: &rt.pool.spec.proxy.default_consistency,
        creds: &rt.creds,
        tls: rt.tls.as_ref(),
    })?;
    cmd.arg(format!("--pool={}", rt.dir.document().display()))
        .env("LAGLESS_PROXY_DIRECTORY_USER", &rt.creds.admin_user)
        .env("LAGLESS_PROXY_DIRECTORY_PASSWORD", &rt.creds.admin_password);
    spawn_proxy_command(cmd)
}

/// The pool supervisor's own view: loads, proxies, events (each cluster's part is in its own
/// `status.json`).
pub fn status(shared: &RunningPool, rt: &PoolRuntime, settings: &PoolSettings) -> PoolStatus {
    let name = rt.pool.name();
    let directory = directory_name(name);
    let mut clusters = vec![PoolCluster {
        name: directory.clone(),
        role: "directory".into(),
        ..PoolCluster::default()
    }];
    for c in shared.clusters.iter().filter(|c| c.name != directory) {
        let load = shared.loads.iter().find(|l| l.name == c.name);
        clusters.push(PoolCluster {
            name: c.name.clone(),
            role: "tenants".into(),
            state: load.map(|l| l.state.to_string()),
            tenants: load.map(|l| l.tenants),
            bytes: load.map(|l| l.bytes),
            write_rate: shared
                .rates
                .get(&c.name)
                .copied()
                .or(load.map(|l| l.write_rate)),
            utilisation: load.map(ClusterLoad::utilisation),
            ..PoolCluster::default()
        });
    }
    let proxies = shared.proxies.iter().map(ProxyProc::status).collect();
    PoolStatus {
        pool: name.to_string(),
        phase: shared.journal.phase.clone(),
        step: shared.journal.step.clone(),
        progress: shared.journal.progress.clone(),
        supervisor_pid: std::process::id(),
        updated_unix_ms: crate::clock::unix_ms(),
        directory,
        utilisation: (!shared.loads.is_empty()).then(|| placement::pool_utilisation(&shared.loads)),
        clusters,
        proxies,
        // Read from the state directory by `local status`, where `tenant move` keeps them.
        moves: Vec::new(),
        rebalance: Some(shared.rebalance.clone()),
        events: shared.journal.events.iter().cloned().collect(),
        connect: settings
            .proxy_ports(0)
            .map(|(port, _)| connect_info(port, &rt.creds, &rt.dir.credentials(), rt.tls.as_ref())),
    }
}

/// Each cluster's own status, `None` for one whose supervisor does not run.
pub fn cluster_statuses(dir: &PoolDir, names: &[String]) -> Vec<(String, Option<Status>)> {
    names
        .iter()
        .map(|name| {
            let state = dir.cluster(name);
            let status = state
                .running()
                .then(|| read_json::<Status>(&state.status()).ok())
                .flatten();
            (name.clone(), status)
        })
        .collect()
}

/// Writes `status.json` every half second until `stop`: the pool's own view, which readers
/// complete with each cluster's ([`PoolStatus::with_clusters`]).
pub async fn write_status_until(
    shared: SharedPool,
    rt: Arc<PoolRuntime>,
    settings: PoolSettings,
    stop: watch::Receiver<bool>,
) {
    let path = rt.dir.status();
    let status = move || status(&shared.lock(), &rt, &settings);
    write_every_half_second(&path, status, "the pool status", stop).await;
}
