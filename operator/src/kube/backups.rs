//! A cluster's backups in Kubernetes (`spec.backup`, `MySQLBackup`): every [`INTERVAL`] the
//! cluster's orchestration task starts a pass, in a task of its own (a backup streams for
//! minutes; failure detection must not wait), that creates the `MySQLBackup` a schedule
//! (`spec.backup.schedule`) has due, then takes the oldest `MySQLBackup` not yet run: the
//! copy is streamed from a caught-up replica's agent (`GET /backup`, the seeding stream),
//! compressed and stored with its manifest written last, as the local runtime does
//! (`crate::backup`). After a success the retention (`keep`, `keepDays`) deletes the backups
//! it no longer keeps, and their `MySQLBackup`s. Each backup's status says where it stands;
//! the cluster gets Events, a status summary and metrics.

pub mod decide;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use ::kube::runtime::events::Recorder;
use ::kube::{Client, ResourceExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use mysql_async::prelude::Queryable as _;
use serde_json::json;

use super::builders::{self, Credential};
use super::common::{self, cluster_key, credentials, lock};
use super::metrics::Metrics;
use super::status::ClusterEvent;
use crate::agent::archive::{AgentStatus, DrillResult};
use crate::agent::client::{Url, call, open_backup};
use crate::agent::tls::AgentTls;
use crate::backup::BackupError;
use crate::backup::archiver::ArchiveStatus;
use crate::backup::location::{ACCESS_KEY_ID, Location, S3Credentials, SECRET_ACCESS_KEY};
use crate::backup::pipeline::compress_into;
use crate::backup::s3::S3Options;
use crate::backup::schedule::Schedule;
use crate::backup::store::Store;
use crate::backup::take::{Taking, complete};
use crate::clock;
use crate::crd::backup::{BackupPhase, MySQLBackup, MySQLBackupStatus};
use crate::crd::{ArchiveReport, BackupSpec, BackupsStatus, MySQLCluster, S3Spec};
use crate::orchestrate::observe::opts;
use crate::orchestrate::run::Orchestrator;
use crate::orchestrate::view::ServerTls;
use decide::SourceMember;

/// How often a cluster's backups are looked at while none runs.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How long a backup may wait for a member to take it from before it fails.
const SOURCE_WAIT: Duration = Duration::from_secs(600);
/// How long a restore drill may run.
const DRILL_TIMEOUT: Duration = Duration::from_secs(1800);
/// How many scheduled drills' `MySQLBackup`s are kept.
const DRILLS_KEPT: usize = 3;

/// A cluster's backups, kept by its orchestration task: one pass at a time, and the
/// archiver's status asked beside it.
pub struct Backups {
    pass: Pass,
    due: Instant,
    running: Option<tokio::task::JoinHandle<()>>,
    archive_due: Instant,
    archive_probe: Option<tokio::task::JoinHandle<()>>,
    restore_probe: Option<tokio::task::JoinHandle<()>>,
    restore_due: Instant,
    /// Why the restore of a cluster that starts from a backup fails, as last read.
    restore_failing: Arc<Mutex<Option<String>>>,
}

/// What a pass needs, cloned into its task.
#[derive(Clone)]
struct Pass {
    client: Client,
    recorder: Recorder,
    metrics: Metrics,
    namespace: String,
    name: String,
    /// What the passes saw, for the cluster's status.
    seen: Arc<Mutex<Option<BackupsStatus>>>,
}

/// What the orchestration knows that a pass needs.
struct Now {
    source: Result<SourceMember, String>,
    /// The member a drill compares with.
    snapshot: Result<SourceMember, String>,
    tls: Option<ServerTls>,
}

impl Backups {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Metrics,
        cluster: &MySQLCluster,
    ) -> Self {
        // The last success an earlier operator reported, until this one sees a backup.
        if let Some(at) = cluster
            .status
            .as_ref()
            .and_then(|s| s.backups.as_ref())
            .and_then(|b| b.last_success_time.as_deref())
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .and_then(|t| u64::try_from(t.as_second()).ok())
        {
            metrics.clusters.backup_succeeded_at(
                &cluster.namespace().unwrap_or_default(),
                &cluster.name_any(),
                at,
            );
        }
        Self {
            pass: Pass {
                client,
                recorder,
                metrics,
                namespace: cluster.namespace().unwrap_or_default(),
                name: cluster.name_any(),
                seen: Arc::default(),
            },
            due: Instant::now(),
            running: None,
            archive_due: Instant::now(),
            archive_probe: None,
            restore_probe: None,
            restore_due: Instant::now(),
            restore_failing: Arc::default(),
        }
    }

    /// Starts a pass when one is due and none runs.
    pub fn tick(&mut self, cluster: &MySQLCluster, orchestrator: &Orchestrator) {
        self.probe_archive(cluster);
        self.probe_restore(cluster, orchestrator.published().is_some());
        if self.running.as_ref().is_some_and(|t| !t.is_finished()) || Instant::now() < self.due {
            return;
        }
        self.due = Instant::now() + INTERVAL;
        let members = usize::try_from(cluster.spec.replicas.max(0)).unwrap_or(0);
        let now = Now {
            source: decide::choose_source(
                orchestrator.last_view(),
                orchestrator.published(),
                members,
            ),
            snapshot: decide::drill_source(
                orchestrator.last_view(),
                orchestrator.published(),
                members,
            ),
            tls: orchestrator.spec.tls.clone(),
        };
        let pass = self.pass.clone();
        let cluster = cluster.clone();
        self.running = Some(tokio::spawn(async move { pass.run(&cluster, now).await }));
    }

    /// Asks the archiver where the archive stands, every [`INTERVAL`], in a task of its own.
    fn probe_archive(&mut self, cluster: &MySQLCluster) {
        if self
            .archive_probe
            .as_ref()
            .is_some_and(|t| !t.is_finished())
            || Instant::now() < self.archive_due
        {
            return;
        }
        self.archive_due = Instant::now() + INTERVAL;
        let pass = self.pass.clone();
        let archiving = cluster
            .spec
            .backup
            .as_ref()
            .is_some_and(|b| b.archive_binlogs);
        self.archive_probe = Some(tokio::spawn(async move {
            let report = if archiving {
                Some(pass.archive_report().await)
            } else {
                None
            };
            let health = report
                .as_ref()
                .map(|r| (r.error.is_none(), r.lag_ms.map(|ms| ms as f64 / 1000.0)));
            pass.metrics
                .clusters
                .archive(&pass.namespace, &pass.name, health);
            pass.note(|s| s.archive = report);
        }));
    }

    /// While a cluster that starts from a backup is not published yet, reads why its first
    /// member's restore step fails, if it does (the step's message in the pod's status), every
    /// [`INTERVAL`]; says each new reason in a Warning Event.
    fn probe_restore(&mut self, cluster: &MySQLCluster, published: bool) {
        if cluster.spec.from_backup().is_none() || published {
            if let Ok(mut failing) = self.restore_failing.lock() {
                *failing = None;
            }
            return;
        }
        if self
            .restore_probe
            .as_ref()
            .is_some_and(|t| !t.is_finished())
            || Instant::now() < self.restore_due
        {
            return;
        }
        self.restore_due = Instant::now() + INTERVAL;
        let pass = self.pass.clone();
        let failing = self.restore_failing.clone();
        let cluster = cluster.clone();
        self.restore_probe = Some(tokio::spawn(async move {
            let now = pass.restore_error().await;
            let changed = {
                let Ok(mut last) = failing.lock() else {
                    return;
                };
                let changed = now.is_some() && *last != now;
                last.clone_from(&now);
                changed
            };
            if let (true, Some(why)) = (changed, now) {
                pass.event(&cluster, true, "RestoreFailing", why).await;
            }
        }));
    }

    /// Why the restore fails, while it does.
    pub fn restore_failing(&self) -> Option<String> {
        self.restore_failing.lock().ok().and_then(|f| f.clone())
    }

    /// What the passes saw since the operator started.
    pub fn seen(&self) -> Option<BackupsStatus> {
        lock(&self.pass.seen).clone()
    }
}

impl Drop for Backups {
    fn drop(&mut self) {
        for task in self
            .running
            .iter()
            .chain(&self.archive_probe)
            .chain(&self.restore_probe)
        {
            task.abort();
        }
    }
}

impl Pass {
    fn api(&self) -> Api<MySQLBackup> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The message of the first member's restore step, when its last run failed.
    async fn restore_error(&self) -> Option<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pod = pods
            .get_opt(&builders::member_name(&self.name, 0))
            .await
            .ok()??;
        let seed = pod
            .status?
            .init_container_statuses?
            .into_iter()
            .find(|c| c.name == "seed")?;
        // A step running again, or done, is no longer failing.
        if seed.state.as_ref().is_some_and(|s| {
            s.running.is_some() || s.terminated.as_ref().is_some_and(|t| t.exit_code == 0)
        }) {
            return None;
        }
        let last = seed.last_state?.terminated?;
        if last.exit_code == 0 {
            return None;
        }
        let message = last.message.unwrap_or_default();
        // The step's own last line says why ("agent restore: …").
        let why = message
            .lines()
            .rev()
            .find(|l| l.contains("agent restore:"))
            .unwrap_or(message.lines().last().unwrap_or_default())
            .trim()
            .to_string();
        Some(if why.is_empty() {
            format!("the restore step exited with {}", last.exit_code)
        } else {
            why
        })
    }

    /// The agents' token (read at each use, so a rotated one is used).
    async fn agent_token(&self, cluster: &MySQLCluster) -> Result<String, String> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(credentials(&secrets, cluster, Credential::Agent)
            .await?
            .password)
    }

    /// The address of the archiver's pod, or why there is none.
    async fn archiver_ip(&self) -> Result<String, String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = builders::selector_labels(&self.name, builders::Component::Archiver)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let listed = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| format!("listing the archiver's pod: {e}"))?
            .items;
        listed
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .find_map(|p| p.status.as_ref()?.pod_ip.clone())
            .ok_or_else(|| "the archiver's pod is not running".to_string())
    }

    /// The archiver pod's `/status`, or why it cannot be had.
    async fn archive_report(&self) -> ArchiveReport {
        let failed = |error: String| ArchiveReport {
            error: Some(error),
            ..ArchiveReport::default()
        };
        let ip = match self.archiver_ip().await {
            Ok(ip) => ip,
            Err(why) => return failed(why),
        };
        let url = Url {
            host: ip,
            port: builders::ARCHIVER_PORT,
        };
        match call(&url, "GET", "/status", None).await {
            Ok((200, body)) => match serde_json::from_slice::<ArchiveStatus>(&body) {
                Ok(s) => ArchiveReport {
                    reading: s.reading,
                    position: Some(s.position).filter(|p| !p.is_empty()),
                    lag_ms: i64::try_from(s.lag_ms).ok(),
                    segments_stored: i64::try_from(s.segments_stored).ok(),
                    error: s.error,
                },
                Err(e) => failed(format!("the archiver's status does not parse: {e}")),
            },
            Ok((status, _)) => failed(format!("the archiver answered {status}")),
            Err(e) => failed(format!("asking the archiver: {e}")),
        }
    }

    async fn run(&self, cluster: &MySQLCluster, now: Now) {
        let spec = cluster.spec.backup.as_ref();
        if let Some(schedule) = spec.and_then(|b| b.schedule.as_deref()) {
            self.schedule(cluster, schedule, false).await;
        }
        if let Some(schedule) = spec.and_then(|b| b.drill_schedule.as_deref()) {
            self.schedule(cluster, schedule, true).await;
        }
        let all = match self.api().list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                tracing::debug!(cluster = %self.name, error = %e, "MySQLBackups not listed (is the CRD installed?)");
                return;
            }
        };
        let mine: Vec<MySQLBackup> = all
            .into_iter()
            .filter(|b| b.spec.cluster_ref.name == self.name)
            .collect();
        // No pass runs now, so one still Running was cut off by an operator that stopped.
        for b in decide::interrupted(&mine) {
            let message = "interrupted: the operator stopped while it ran; nothing of it is kept \
                           (an S3 multipart upload may stay open until the bucket's lifecycle \
                           rule ends it)";
            self.finish_failed(cluster, &b.name_any(), message, b.spec.drill)
                .await;
        }
        let Some(next) = decide::next_to_run(&mine) else {
            return;
        };
        let name = next.name_any();
        let drill = next.spec.drill;
        let Some(spec) = spec else {
            let message = "the cluster has no spec.backup: nowhere to store a backup";
            self.finish_failed(cluster, &name, message, drill).await;
            return;
        };
        if drill && !spec.archive_binlogs {
            let message = "restore drills run in the cluster's archiver pod and roll the backup \
                           forward with the binary log archive: set spec.backup.archiveBinlogs";
            self.finish_failed(cluster, &name, message, drill).await;
            return;
        }
        let source = match if drill { now.snapshot } else { now.source } {
            Ok(source) => source,
            Err(why) => {
                self.wait_or_fail(cluster, next, &why).await;
                return;
            }
        };
        if drill {
            self.drill(cluster, next, &source).await;
        } else {
            self.take(cluster, spec, &name, &source, now.tls.as_ref())
                .await;
        }
    }

    /// Leaves `backup` `Pending` saying why it waits, or fails it once it has waited
    /// [`SOURCE_WAIT`] since it was made: nothing waits forever, holding up the ones after it.
    async fn wait_or_fail(&self, cluster: &MySQLCluster, backup: &MySQLBackup, why: &str) {
        let name = backup.name_any();
        let created_ms = backup
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| u64::try_from(t.0.as_millisecond()).ok())
            .unwrap_or_else(clock::unix_ms);
        let waited_ms = clock::unix_ms().saturating_sub(created_ms);
        if waited_ms > SOURCE_WAIT.as_millis() as u64 {
            let message = format!("could not start for {} s: {why}", SOURCE_WAIT.as_secs());
            self.finish_failed(cluster, &name, &message, backup.spec.drill)
                .await;
        } else {
            self.patch(&name, pending(why)).await;
        }
    }

    /// A restore drill, run by the archiver pod against `member`, followed to its end.
    async fn drill(&self, cluster: &MySQLCluster, backup: &MySQLBackup, member: &SourceMember) {
        let name = &backup.name_any();
        let request = format!("{name}.{}", backup.uid().unwrap_or_default());
        let backup_id = backup.spec.backup_id.as_deref();
        let ip = match self.archiver_ip().await {
            Ok(ip) => ip,
            Err(why) => {
                self.wait_or_fail(cluster, backup, &why).await;
                return;
            }
        };
        let url = Url {
            host: ip,
            port: builders::ARCHIVER_PORT,
        };
        let mut path = format!(
            "/drill?request={request}&member={}&host={}&port={}",
            member.name, member.host, member.port
        );
        if let Some(id) = backup_id {
            path.push_str(&format!("&backup={id}"));
        }
        let token = match self.agent_token(cluster).await {
            Ok(token) => token,
            Err(why) => {
                self.wait_or_fail(cluster, backup, &why).await;
                return;
            }
        };
        match call(&url, "POST", &path, Some(&token)).await {
            Ok((200, _)) => {}
            Ok((409, body)) => {
                let why = String::from_utf8_lossy(&body).trim().to_string();
                self.wait_or_fail(cluster, backup, &why).await;
                return;
            }
            Ok((status, body)) => {
                let message = format!(
                    "the archiver refused the drill ({status}): {}",
                    String::from_utf8_lossy(&body).trim()
                );
                self.finish_failed(cluster, name, &message, true).await;
                return;
            }
            Err(why) => {
                self.wait_or_fail(cluster, backup, &why).await;
                return;
            }
        }
        let started = clock::unix_ms();
        self.patch(
            name,
            MySQLBackupStatus {
                phase: Some(BackupPhase::Running),
                member: Some(member.name.clone()),
                started_at: Some(clock::rfc3339_at(started)),
                message: Some(format!("restoring and comparing with {}", member.name)),
                ..MySQLBackupStatus::default()
            },
        )
        .await;
        let result = self.drill_result(&url, &request).await;
        let secs = clock::unix_ms().saturating_sub(started) as f64 / 1000.0;
        let duration = Some(format!("{secs:.1}s"));
        match result {
            Ok(r) if r.passed => {
                self.patch(
                    name,
                    MySQLBackupStatus {
                        phase: Some(BackupPhase::Succeeded),
                        backup_id: r.backup.clone(),
                        finished_at: Some(r.finished_at.clone()),
                        duration,
                        message: Some(r.message.clone()),
                        ..MySQLBackupStatus::default()
                    },
                )
                .await;
                self.note(|s| {
                    s.last_drill = Some(format!("passed: {}", r.message));
                    s.last_drill_time = Some(r.finished_at.clone());
                });
                self.event(
                    cluster,
                    false,
                    "DrillPassed",
                    format!("{name}: {}", r.message),
                )
                .await;
            }
            Ok(r) => self.finish_failed(cluster, name, &r.message, true).await,
            Err(why) => self.finish_failed(cluster, name, &why, true).await,
        }
        self.prune_drills().await;
    }

    /// Waits for the archiver to report the end of drill `request`.
    async fn drill_result(&self, url: &Url, request: &str) -> Result<DrillResult, String> {
        let began = Instant::now();
        let mut last_error = String::new();
        while began.elapsed() < DRILL_TIMEOUT {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match call(url, "GET", "/status", None).await {
                Ok((200, body)) => match serde_json::from_slice::<AgentStatus>(&body) {
                    Ok(status) => {
                        if let Some(last) = status.drill.last.filter(|l| l.request == request) {
                            return Ok(last);
                        }
                        if status.drill.running.as_deref() != Some(request) {
                            return Err(
                                "the archiver's pod no longer runs the drill (restarted?)".into()
                            );
                        }
                    }
                    Err(e) => last_error = format!("the archiver's status does not parse: {e}"),
                },
                Ok((status, _)) => last_error = format!("the archiver answered {status}"),
                Err(e) => last_error = e,
            }
        }
        Err(format!(
            "no result in {} s ({last_error})",
            DRILL_TIMEOUT.as_secs()
        ))
    }

    /// Keeps the newest [`DRILLS_KEPT`] scheduled drills' `MySQLBackup`s.
    async fn prune_drills(&self) {
        let Ok(list) = self
            .api()
            .list(&ListParams::default().labels(builders::SCHEDULED_LABEL))
            .await
        else {
            return;
        };
        let mut drills: Vec<&MySQLBackup> = list
            .items
            .iter()
            .filter(|b| b.spec.cluster_ref.name == self.name && b.spec.drill)
            .filter(|b| {
                b.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(BackupPhase::is_final)
            })
            .collect();
        drills.sort_by_key(|b| {
            std::cmp::Reverse(b.metadata.creation_timestamp.as_ref().map(|t| t.0))
        });
        for old in drills.iter().skip(DRILLS_KEPT) {
            let _ = self
                .api()
                .delete(&old.name_any(), &Default::default())
                .await;
        }
    }

    /// Creates the `MySQLBackup` of the schedule's due run (a drill's with `drill`), if it is
    /// not there yet.
    async fn schedule(&self, cluster: &MySQLCluster, text: &str, drill: bool) {
        let Ok(schedule) = Schedule::parse(text) else {
            return; // The reconciler's validation reports it.
        };
        let created = cluster
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| u64::try_from(t.0.as_second()).unwrap_or(0));
        let now_s = clock::unix_ms() / 1000;
        let (due, next) = decide::scheduled_runs(&schedule, created, now_s);
        let next = next.map(|n| clock::rfc3339_at(n * 1000));
        self.note(|s| {
            if drill {
                s.next_drill = next;
            } else {
                s.next_scheduled = next;
            }
        });
        let Some(at) = due else {
            return;
        };
        let backup = match builders::scheduled_backup(cluster, at, drill) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(cluster = %self.name, error = %e, "the scheduled backup");
                return;
            }
        };
        match self.api().create(&PostParams::default(), &backup).await {
            Ok(_) => {
                tracing::info!(cluster = %self.name, backup = %backup.name_any(), "scheduled backup created")
            }
            Err(::kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                tracing::warn!(cluster = %self.name, error = %e, "creating the scheduled backup")
            }
        }
    }

    async fn take(
        &self,
        cluster: &MySQLCluster,
        spec: &BackupSpec,
        name: &str,
        source: &SourceMember,
        tls: Option<&ServerTls>,
    ) {
        let started = clock::unix_ms();
        self.patch(
            name,
            MySQLBackupStatus {
                phase: Some(BackupPhase::Running),
                destination: Some(spec.destination.clone()),
                member: Some(source.name.clone()),
                started_at: Some(clock::rfc3339_at(started)),
                message: Some(format!("streaming from {}", source.name)),
                ..MySQLBackupStatus::default()
            },
        )
        .await;
        self.event(
            cluster,
            false,
            "BackupStarted",
            format!("backup {name} started from {}", source.name),
        )
        .await;
        let taken = self.stream(cluster, spec, source, tls, started).await;
        let ns = self.namespace.clone();
        match taken {
            // The agent was serving a seed: the backup waits for the next pass.
            Err(e) if e.ends_with(crate::agent::client::BUSY) => {
                self.patch(name, pending(&e)).await;
            }
            Ok(manifest) => {
                let secs = manifest
                    .finished_unix_ms
                    .saturating_sub(manifest.started_unix_ms) as f64
                    / 1000.0;
                let status = MySQLBackupStatus {
                    phase: Some(BackupPhase::Succeeded),
                    backup_id: Some(manifest.id.clone()),
                    destination: Some(spec.destination.clone()),
                    member: Some(manifest.member.clone()),
                    gtid_position: Some(manifest.gtid_position.clone()),
                    stored_bytes: i64::try_from(manifest.stored_bytes).ok(),
                    stream_bytes: i64::try_from(manifest.stream_bytes).ok(),
                    started_at: Some(manifest.started_at.clone()),
                    finished_at: Some(manifest.finished_at.clone()),
                    duration: Some(format!("{secs:.1}s")),
                    message: Some(format!(
                        "{:.1} MiB stored ({:.0} MB/s of the copy)",
                        manifest.stored_bytes as f64 / 1_048_576.0,
                        manifest.stream_bytes as f64 / 1e6 / secs.max(1e-3)
                    )),
                };
                self.patch(name, status).await;
                self.metrics.clusters.backup_finished(
                    &ns,
                    &self.name,
                    Some(manifest.finished_unix_ms / 1000),
                );
                self.note(|s| {
                    s.last_success = Some(manifest.id.clone());
                    s.last_success_time = Some(manifest.finished_at.clone());
                });
                self.event(
                    cluster,
                    false,
                    "BackupSucceeded",
                    format!(
                        "backup {} taken from {} at GTID position {} in {secs:.1} s",
                        manifest.id, manifest.member, manifest.gtid_position
                    ),
                )
                .await;
                if spec.keep.is_some() || spec.keep_days.is_some() {
                    self.retain(cluster, spec).await;
                }
            }
            Err(e) => self.finish_failed(cluster, name, &e, false).await,
        }
    }

    /// The copy itself: the agent's stream into the store.
    async fn stream(
        &self,
        cluster: &MySQLCluster,
        spec: &BackupSpec,
        source: &SourceMember,
        tls: Option<&ServerTls>,
        started: u64,
    ) -> Result<crate::backup::manifest::Manifest, String> {
        let store = self.store(&spec.destination, spec.s3.as_ref()).await?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let admin = credentials(&secrets, cluster, Credential::Admin).await?;
        let token = self.agent_token(cluster).await?;
        let version = server_version(source, &admin, tls).await?;
        let taking = Taking::new(&self.name, &source.name, version, started);
        // Opening the object first: storage that cannot be written fails before the copy.
        let mut writer = store
            .writer(&taking.object())
            .await
            .map_err(|e| e.to_string())?;
        let url = Url {
            host: source.host.clone(),
            port: crate::agent::AGENT_PORT,
        };
        let agent_tls = tls.and_then(agent_tls);
        let (body, decode) = match open_backup(&url, &token, agent_tls.as_ref()).await {
            Ok(opened) => opened,
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        tracing::info!(cluster = %self.name, id = %taking.id, member = %source.name, "backup started");
        let stored = compress_into(body, &mut writer, Arc::new(AtomicU64::new(0))).await;
        let decoded = match decode.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(BackupError::Storage {
                location: source.name.clone(),
                detail: e,
            }),
            Err(e) => Err(BackupError::Storage {
                location: source.name.clone(),
                detail: e.to_string(),
            }),
        };
        complete(&store, &taking, writer, stored, decoded)
            .await
            .map_err(|e| e.to_string())
    }

    /// The store at `destination`, S3 credentials from the Secret `s3.credentialsSecret`.
    async fn store(&self, destination: &str, s3: Option<&S3Spec>) -> Result<Store, String> {
        store_at(&self.client, &self.namespace, destination, s3).await
    }

    /// Deletes the backups the policy no longer keeps, and their `MySQLBackup`s.
    async fn retain(&self, cluster: &MySQLCluster, spec: &BackupSpec) {
        let result = async {
            let store = self.store(&spec.destination, spec.s3.as_ref()).await?;
            let location = Location::parse(&spec.destination).map_err(|e| e.to_string())?;
            let archive = Store::open(
                &crate::backup::archive::location(&location, &self.name),
                s3_options(&self.client, &self.namespace, &location, spec.s3.as_ref())
                    .await?
                    .as_ref(),
            )
            .map_err(|e| e.to_string())?;
            crate::local::backup::retain(
                &store,
                Some(&archive),
                &self.name,
                spec.keep,
                spec.keep_days,
            )
            .await
            .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => {
                if let Ok(list) = self.api().list(&ListParams::default()).await {
                    for b in list.items.iter().filter(|b| {
                        b.spec.cluster_ref.name == self.name
                            && !b.spec.drill
                            && b.status
                                .as_ref()
                                .and_then(|s| s.backup_id.as_ref())
                                .is_some_and(|id| removed.contains(id))
                    }) {
                        if let Err(e) = self.api().delete(&b.name_any(), &Default::default()).await
                        {
                            tracing::warn!(backup = %b.name_any(), error = %e, "deleting an expired MySQLBackup");
                        }
                    }
                }
                self.event(
                    cluster,
                    false,
                    "BackupsDeleted",
                    format!(
                        "older backups deleted by the retention policy: {}",
                        removed.join(", ")
                    ),
                )
                .await;
            }
            Err(e) => {
                self.event(
                    cluster,
                    true,
                    "RetentionFailed",
                    format!("older backups could not be deleted: {e}"),
                )
                .await;
            }
        }
    }

    async fn finish_failed(&self, cluster: &MySQLCluster, name: &str, message: &str, drill: bool) {
        let now = clock::rfc3339();
        self.patch(
            name,
            MySQLBackupStatus {
                phase: Some(BackupPhase::Failed),
                finished_at: Some(now.clone()),
                message: Some(message.to_string()),
                ..MySQLBackupStatus::default()
            },
        )
        .await;
        if drill {
            self.note(|s| {
                s.last_drill = Some(format!("failed: {name}: {message}"));
                s.last_drill_time = Some(now.clone());
            });
            self.event(
                cluster,
                true,
                "DrillFailed",
                format!("restore drill {name} failed: {message}"),
            )
            .await;
            return;
        }
        self.metrics
            .clusters
            .backup_finished(&self.namespace, &self.name, None);
        self.note(|s| {
            s.last_failure = Some(format!("{name}: {message}"));
            s.last_failure_time = Some(now.clone());
        });
        self.event(
            cluster,
            true,
            "BackupFailed",
            format!("backup {name} failed: {message}"),
        )
        .await;
    }

    /// Merges `status` into the backup's status (fields left `None` are kept); tried three
    /// times, so a backup that succeeded is not left `Running` (and later called interrupted)
    /// by one failed API call.
    async fn patch(&self, name: &str, status: MySQLBackupStatus) {
        let patch = Patch::Merge(json!({ "status": status }));
        for attempt in 1..=3 {
            match self
                .api()
                .patch_status(name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => return,
                // Deleted meanwhile: nothing to say.
                Err(::kube::Error::Api(e)) if e.code == 404 => return,
                Err(e) => {
                    tracing::warn!(cluster = %self.name, backup = %name, attempt, error = %e, "writing a MySQLBackup's status");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn note(&self, update: impl FnOnce(&mut BackupsStatus)) {
        let mut seen = lock(&self.seen);
        update(seen.get_or_insert_with(BackupsStatus::default));
    }

    async fn event(
        &self,
        cluster: &MySQLCluster,
        warning: bool,
        reason: &'static str,
        note: String,
    ) {
        let action = if reason.starts_with("Backups") || reason.starts_with("Retention") {
            "Retain"
        } else if reason.starts_with("Drill") {
            "Drill"
        } else {
            "Backup"
        };
        common::publish(
            &self.recorder,
            cluster,
            ClusterEvent {
                warning,
                reason,
                action,
                note,
            },
        )
        .await;
        tracing::info!(cluster = %cluster_key(cluster), reason, "backup event");
    }
}

fn pending(why: &str) -> MySQLBackupStatus {
    MySQLBackupStatus {
        phase: Some(BackupPhase::Pending),
        message: Some(format!("waiting: {why}")),
        ..MySQLBackupStatus::default()
    }
}

/// TLS to the agents, verified against the cluster's CA.
fn agent_tls(tls: &ServerTls) -> Option<AgentTls> {
    let crate::orchestrate::view::CaSource::Pem(pem) = &tls.ca else {
        return None;
    };
    AgentTls::from_ca_pem(pem).ok()
}

async fn server_version(
    source: &SourceMember,
    admin: &crate::orchestrate::observe::Credentials,
    tls: Option<&ServerTls>,
) -> Result<String, String> {
    let options = opts(&source.host, source.port, admin, tls);
    let mut conn = tokio::time::timeout(Duration::from_secs(5), mysql_async::Conn::new(options))
        .await
        .map_err(|_| format!("connecting to {} timed out", source.name))?
        .map_err(|e| format!("connecting to {}: {e}", source.name))?;
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| format!("{}: {e}", source.name))?;
    let _ = conn.disconnect().await;
    Ok(version.unwrap_or_default())
}

/// The S3 settings for `location` (none for a directory): the key from the Secret
/// `s3.credentialsSecret` in `namespace`, else the operator's own `AWS_*` environment.
pub async fn s3_options(
    client: &Client,
    namespace: &str,
    location: &Location,
    s3: Option<&S3Spec>,
) -> Result<Option<S3Options>, String> {
    if matches!(location, Location::Dir(_)) {
        return Ok(None);
    }
    let credentials = match s3.and_then(|s| s.credentials_secret.as_deref()) {
        Some(name) => {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let secret = secrets
                .get_opt(name)
                .await
                .map_err(|e| format!("reading Secret {name}: {e}"))?
                .ok_or_else(|| format!("the S3 credentials Secret {name} is not there"))?;
            let key = |k: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .and_then(|v| String::from_utf8(v.0.clone()).ok())
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("the Secret {name} has no {k}"))
            };
            S3Credentials {
                access_key: key(ACCESS_KEY_ID)?,
                secret_key: key(SECRET_ACCESS_KEY)?,
            }
        }
        // Never the operator's own keys: a cluster's owner must not reach a bucket with
        // credentials they were not given.
        None => {
            return Err(format!(
                "{location} needs credentials: spec.backup.s3.credentialsSecret (a Secret \
                 with {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY})"
            ));
        }
    };
    Ok(Some(S3Options {
        endpoint: s3.and_then(|s| s.endpoint.clone()),
        region: s3
            .and_then(|s| s.region.clone())
            .unwrap_or_else(|| "us-east-1".into()),
        credentials,
    }))
}

/// The store at `destination` as the operator reaches it.
pub async fn store_at(
    client: &Client,
    namespace: &str,
    destination: &str,
    s3: Option<&S3Spec>,
) -> Result<Store, String> {
    let location = Location::parse(destination).map_err(|e| e.to_string())?;
    let options = s3_options(client, namespace, &location, s3).await?;
    Store::open(&location, options.as_ref()).map_err(|e| e.to_string())
}
