//! The supervisor: owns one local cluster's processes and drives it.
//!
//! It starts the members from the template, lets the orchestration core bootstrap them,
//! starts the proxies, then loops: restart crashed processes (as a StatefulSet or Deployment
//! would; see [`super::process_table`]), take switchover, scale and reseed requests
//! ([`requests`]), run one orchestration tick, take the next step of a configuration roll
//! ([`roll`]). Copies (seeding) run in tasks of their own (see
//! [`super::seeder`]); a separate task writes `status.json` twice a second (see
//! [`super::status_report`]).

mod requests;
mod roll;

use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lagless_core::topology::{Flavor, Topology};
use tokio::sync::watch;

use crate::crd::{Durability, MySQLCluster};
use crate::orchestrate::act::FileSink;
use crate::orchestrate::observe::Credentials;
use crate::orchestrate::run::Orchestrator;
use crate::orchestrate::view::{CaSource, ServerTls};
use crate::orchestrate::view::{ClusterSpec, Probe, Switchover};
use crate::orchestrate::{ClusterState, Plan};

use super::LocalError;
use super::archive::ArchiveTask;
use super::mariadb::{self, ServerLayout};
use super::process_table::{
    MemberProc, Process, ProxyProc, Runtime, await_proxies, spawn_proxy, start_proxies,
    stop_together,
};
use super::scheduled::ScheduleTask;
use super::seeder::LocalSeeder;
use super::shared::{LastTick, SharedState};
use super::state::Settings;
use super::status::EventLine;
use requests::Pending;
use roll::RollState;

/// How long after one failover another may happen automatically. Shorter than in Kubernetes
/// (where flapping costs more): local clusters are for trying failures out.
const FAILOVER_COOLDOWN: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(250);
/// How often the certificate's expiry is checked.
const TLS_RENEW_CHECK: Duration = Duration::from_secs(3600);

/// Runs one cluster until `stop` turns true; then stops every process it started.
pub struct Supervisor {
    rt: Arc<Runtime>,
    cluster: MySQLCluster,
    settings: Settings,
    shared: SharedState,
    orchestrator: Option<Orchestrator>,
    switchover: Option<Switchover>,
    pending: Option<Pending>,
    /// A `serverConfig` change being rolled through the members.
    roll: RollState,
    last_warning: Option<String>,
    /// When the certificate was last checked for renewal.
    tls_checked: Instant,
    archive: Option<ArchiveTask>,
    schedule: Option<ScheduleTask>,
    drills: Option<ScheduleTask>,
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
            roll: RollState::default(),
            tls_checked: Instant::now(),
            last_warning: None,
            archive: None,
            schedule: None,
            drills: None,
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
        // `pause` and `resume` change it while running; the file gives it at `up -f`.
        spec.paused = self.settings.paused;
        // `cordon` and `uncordon` change it while running; the file gives it at `up -f`.
        spec.cordoned = self.settings.cordoned.iter().cloned().collect();
        // The member a roll restarts is out of read routing until it has caught up.
        if let Some(rolling) = &self.roll.rolling {
            spec.cordoned.insert(rolling.member.clone());
        }
        // `read-only on|off` changes it while running; the file gives it at `up -f`.
        spec.read_only = self.settings.read_only;
        // Switchovers are requested with `local switchover`; a request kept in the file would
        // be carried out again after every restart.
        spec.switchover = self.switchover.clone();
        spec.tls = self.rt.tls.as_ref().map(|files| ServerTls {
            ca: CaSource::File(files.ca()),
            member_ca_path: files.ca().display().to_string(),
            watch: Some(files.dir.clone()),
        });
        Ok(spec)
    }

    /// Starts everything, runs until `stop`, stops everything.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), LocalError> {
        let started = self.start(&mut stop).await;
        if started.is_ok() {
            self.shared
                .lock()
                .set_step("running", "running".to_string());
            self.start_archive();
            let proxies = self.shared.lock().processes.proxies.len();
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
        for task in [self.schedule.take(), self.drills.take()]
            .into_iter()
            .flatten()
        {
            task.stop().await;
        }
        if let Some(archive) = self.archive.take() {
            // Before the servers: what the primary wrote last is stored.
            archive.stop().await;
        }
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
            .with_proxy_accounts(self.rt.creds.proxy_accounts().into())
            .with_seeder(Arc::new(seeder)),
        );
        self.shared.lock().paused = self.settings.paused;
        self.shared.lock().read_only = self.settings.read_only;
        if self.settings.paused {
            // Nothing is orchestrated, so nothing is waited for: members as they come back
            // (a restarted primary stays read-only) and the proxies on the kept topology.
            self.tick().await;
            self.shared.lock().note(format!(
                "orchestration of {} is paused: its members are observed and reported, nothing \
                 is changed on them until `resume`",
                self.settings.cluster
            ));
            return self.start_proxies_unless_pooled().await;
        }
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
        self.start_proxies_unless_pooled().await
    }

    async fn start_proxies_unless_pooled(&mut self) -> Result<(), LocalError> {
        if self.settings.pool.is_some() {
            // A pool's proxies serve all its clusters; the pool's supervisor runs them.
            return Ok(());
        }
        self.shared
            .lock()
            .set_step("starting", "starting the proxies");
        self.start_proxies().await
    }

    /// Registers a member and starts its server (from the template if it has no data yet).
    async fn add_member(&mut self, layout: ServerLayout) -> Result<(), LocalError> {
        mariadb::init_member_data(&self.rt.dir.template(), &layout).await?;
        let child = self.rt.spawn_member(&layout)?;
        self.shared
            .lock()
            .processes
            .members
            .insert(layout.name.clone(), MemberProc::starting(layout, child));
        Ok(())
    }

    async fn wait_members_ready(&mut self, layouts: &[ServerLayout]) -> Result<(), LocalError> {
        let taken: Vec<(ServerLayout, Option<Child>)> = {
            let mut shared = self.shared.lock();
            layouts
                .iter()
                .map(|l| {
                    let child = shared
                        .processes
                        .members
                        .get_mut(&l.name)
                        .and_then(|m| m.child.take());
                    (l.clone(), child)
                })
                .collect()
        };
        let creds = &self.rt.creds;
        let tls = self.rt.tls.as_ref();
        let waits = taken.into_iter().map(|(layout, child)| async move {
            let result = match child {
                Some(mut child) => {
                    let r = mariadb::wait_ready(&mut child, &layout, creds, tls).await;
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
            if let Some(m) = shared.processes.members.get_mut(&layout.name) {
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
        start_proxies(
            count,
            |index| self.settings.proxy_ports(index),
            |index, port, admin_port| spawn_proxy(&self.rt, index, port, admin_port),
            |proxy| self.shared.lock().processes.proxies.push(proxy),
        )?;
        let shared = self.shared.clone();
        let ports: Vec<(usize, u16)> = (shared.lock().processes.proxies.iter())
            .map(|p| (p.index, p.port))
            .collect();
        let dir = self.rt.dir.clone();
        await_proxies(
            ports,
            move |index| {
                (shared.lock().processes.proxies.get_mut(index)).is_none_or(ProxyProc::exited)
            },
            move |index| dir.proxy(index).join("proxy.log"),
        )
        .await
    }

    /// One round of the steady-state loop.
    async fn round(&mut self) {
        self.reap_and_restart();
        self.take_request().await;
        let plan = self.tick().await;
        self.finish_removals().await;
        self.check_request(plan.as_ref());
        self.roll(plan.as_ref()).await;
        self.renew_tls();
    }

    /// Renews the certificate when it is due (the orchestrator then has the members reload
    /// it, and the proxies reload it themselves).
    fn renew_tls(&mut self) {
        let Some(files) = &self.rt.tls else {
            return;
        };
        if self.tls_checked.elapsed() < TLS_RENEW_CHECK {
            return;
        }
        self.tls_checked = Instant::now();
        match files.ensure(
            &self.settings.cluster,
            &crate::tls::local_names(),
            std::time::SystemTime::now(),
        ) {
            Ok(true) => self
                .shared
                .lock()
                .note("TLS certificate renewed".to_string()),
            Ok(false) => {}
            Err(e) => self
                .shared
                .lock()
                .note(format!("warning: TLS certificate not renewed: {e}")),
        }
    }

    fn start_archive(&mut self) {
        match super::archive::start(&self.rt, &self.cluster, &self.settings) {
            Ok(Some(task)) => {
                let destination = task.status().destination;
                self.shared
                    .lock()
                    .note(format!("archiving the binary log to {destination}"));
                self.archive = Some(task);
            }
            Ok(None) => {}
            Err(e) => self
                .shared
                .lock()
                .note(format!("warning: the binary log is not archived: {e}")),
        }
        use super::scheduled::Job;
        for job in [Job::Backup, Job::Drill] {
            match super::scheduled::start(
                job,
                &self.rt.dir,
                &self.cluster,
                &self.settings,
                &self.rt.creds,
            ) {
                Ok(Some(task)) => {
                    let s = task.status();
                    let what = match job {
                        Job::Backup => "backups",
                        Job::Drill => "restore drills",
                    };
                    self.shared.lock().note(format!(
                        "{what} scheduled `{}` from {}",
                        s.schedule, s.destination
                    ));
                    match job {
                        Job::Backup => self.schedule = Some(task),
                        Job::Drill => self.drills = Some(task),
                    }
                }
                Ok(None) => {}
                Err(e) => self
                    .shared
                    .lock()
                    .note(format!("warning: no scheduled {job:?}: {e}")),
            }
        }
    }

    async fn tick(&mut self) -> Option<Plan> {
        let orchestrator = self.orchestrator.as_mut()?;
        let plan = orchestrator.tick().await;
        for event in &plan.events {
            if let Some(message) = event.warning() {
                self.last_warning = Some(message.to_string());
            }
        }
        let last_tick = LastTick {
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
        if let Some(archive) = &self.archive {
            archive.follow(last_tick.published.as_ref());
        }
        let mut shared = self.shared.lock();
        shared.archive = self.archive.as_ref().map(ArchiveTask::status);
        shared.backups = self.schedule.as_ref().map(ScheduleTask::status);
        shared.drills = self.drills.as_ref().map(ScheduleTask::status);
        for m in shared.processes.members.values_mut() {
            let answered = last_tick
                .view
                .as_ref()
                .and_then(|v| v.member(&m.layout.name))
                .is_some_and(|v| v.probe == Probe::Ok);
            if m.process == Process::Starting && answered {
                m.process = Process::Running;
            }
        }
        shared.last_tick = last_tick;
        Some(plan)
    }

    /// Notices exited processes and restarts them after a growing delay, the way Kubernetes
    /// restarts a crashed container.
    fn reap_and_restart(&mut self) {
        let mut shared = self.shared.lock();
        let notes = shared.processes.reap_and_restart(&self.rt, Instant::now());
        for note in notes {
            shared.note(note);
        }
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
            let published = shared.last_tick.published.clone();
            let names: Vec<String> = shared
                .processes
                .members
                .values()
                .filter(|m| m.removing && !listed(published.as_ref(), &m.layout.name))
                .map(|m| m.layout.name.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| shared.processes.members.remove(&n))
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
        // A member a roll is restarting goes back into the table first, to be stopped cleanly.
        self.finish_roll_restart(Duration::from_secs(10)).await;
        let proxies: Vec<Child> = self
            .shared
            .lock()
            .processes
            .proxies
            .iter_mut()
            .filter_map(|p| p.child.take())
            .collect();
        stop_together(proxies, Duration::from_secs(10)).await;
        let members: Vec<Child> = {
            let mut shared = self.shared.lock();
            shared
                .processes
                .members
                .values_mut()
                .filter_map(|m| {
                    m.process = Process::Stopped;
                    m.child.take()
                })
                .collect()
        };
        stop_together(members, Duration::from_secs(60)).await;
    }
}

impl Supervisor {
    pub fn runtime(&self) -> Arc<Runtime> {
        self.rt.clone()
    }
}
