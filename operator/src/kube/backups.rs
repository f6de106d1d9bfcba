//! A cluster's backups in Kubernetes (`spec.backup`, `MySQLBackup`): every [`INTERVAL`] the
//! cluster's orchestration task starts a pass, in a task of its own (a backup runs for
//! minutes; failure detection must not wait), that creates the `MySQLBackup`s the schedules
//! (`spec.backup.schedule`, `drillSchedule`) have due, follows a job an earlier operator left
//! running, then starts the oldest `MySQLBackup` not yet run (backups before drills) in the
//! cluster's backup pod (`agent archive`, [`crate::agent::archive::jobs`]) and follows it
//! there to its end: the pod copies the chosen member's agent stream to storage with the
//! manifest last and applies the retention, and this pass deletes the `MySQLBackup`s of the
//! backups it removed. Each backup's status says where it stands; the cluster gets Events, a
//! status summary (with the archive's, asked of the pod) and metrics.

pub mod decide;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use ::kube::runtime::events::Recorder;
use ::kube::{Client, ResourceExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde_json::json;

use super::builders::{self, Credential};
use super::common::{self, cluster_key, credentials, lock};
use super::metrics::Metrics;
use super::status::ClusterEvent;
use crate::agent::archive::AgentStatus;
use crate::agent::archive::jobs::JobResult;
use crate::agent::client::{Url, call};
use crate::backup::archiver::ArchiveStatus;
use crate::backup::schedule::Schedule;
use crate::clock;
use crate::crd::backup::{BackupPhase, MySQLBackup, MySQLBackupStatus};
use crate::crd::{ArchiveReport, BackupSpec, BackupsStatus, MySQLCluster};
use crate::orchestrate::run::Orchestrator;
use decide::SourceMember;

/// How often a cluster's backups are looked at while none runs.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How long a backup may wait for a member to take it from before it fails.
const SOURCE_WAIT: Duration = Duration::from_secs(600);
/// How long a restore drill may run.
const DRILL_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long a backup may run.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// The archiver pod's jobs.
#[derive(Debug, Clone, Copy)]
enum Job {
    Backup,
    Drill,
}

/// A job the backup pod took: its id, and the pod's uid.
struct Started {
    request: String,
    pod: String,
}
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
            source: decide::choose_source_for(
                orchestrator.last_view(),
                orchestrator.published(),
                members,
                cluster
                    .spec
                    .backup
                    .as_ref()
                    .and_then(|b| b.member.as_deref()),
            ),
            snapshot: decide::drill_source(
                orchestrator.last_view(),
                orchestrator.published(),
                members,
            ),
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
        self.archiver_pod().await.map(|(ip, _)| ip)
    }

    /// The address and uid of the backup pod that runs, or why there is none.
    async fn archiver_pod(&self) -> Result<(String, String), String> {
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
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .find_map(|p| Some((p.status.as_ref()?.pod_ip.clone()?, p.uid()?)))
            .ok_or_else(|| "the backup pod is not running".to_string())
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
        // No pass runs now, so one still Running was left by an operator that stopped: it is
        // followed to its end when the backup pod still knows it, else it is over.
        for b in decide::interrupted(&mine) {
            self.resume(cluster, b).await;
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
            self.take(cluster, spec, next, &source).await;
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

    /// Asks the archiver pod for a job of `kind` against `member`; the job's request id, and
    /// the pod's address, once it started. Anything that keeps it from starting leaves
    /// `backup` waiting (or fails it after [`SOURCE_WAIT`]).
    async fn start_job(
        &self,
        cluster: &MySQLCluster,
        backup: &MySQLBackup,
        kind: &str,
        member: &SourceMember,
        extra: &str,
    ) -> Option<Started> {
        let name = backup.name_any();
        // One id per attempt: a retry never reads an earlier attempt's result.
        let request = format!("{}-{}", backup.uid().unwrap_or_default(), clock::unix_ms());
        let (ip, pod) = match self.archiver_pod().await {
            Ok(found) => found,
            Err(why) => {
                self.wait_or_fail(cluster, backup, &why).await;
                return None;
            }
        };
        let url = Url {
            host: ip,
            port: builders::ARCHIVER_PORT,
        };
        let path = format!(
            "/{kind}?request={request}&member={}&host={}&port={}{extra}",
            member.name, member.host, member.port
        );
        let token = match self.agent_token(cluster).await {
            Ok(token) => token,
            Err(why) => {
                self.wait_or_fail(cluster, backup, &why).await;
                return None;
            }
        };
        match call(&url, "POST", &path, Some(&token)).await {
            Ok((200, _)) => Some(Started { request, pod }),
            Ok((status, body)) if status == 409 || status == 503 => {
                let why = String::from_utf8_lossy(&body).trim().to_string();
                self.wait_or_fail(cluster, backup, &why).await;
                None
            }
            Ok((status, body)) => {
                let message = format!(
                    "the archiver's pod refused the {kind} ({status}): {}",
                    String::from_utf8_lossy(&body).trim()
                );
                self.finish_failed(cluster, &name, &message, backup.spec.drill)
                    .await;
                None
            }
            Err(why) => {
                self.wait_or_fail(cluster, backup, &why).await;
                None
            }
        }
    }

    /// A restore drill, run by the archiver pod against `member`, followed to its end.
    async fn drill(&self, cluster: &MySQLCluster, backup: &MySQLBackup, member: &SourceMember) {
        let name = &backup.name_any();
        let extra = backup
            .spec
            .backup_id
            .as_deref()
            .map(|id| format!("&backup={id}"))
            .unwrap_or_default();
        let Some(started_job) = self
            .start_job(cluster, backup, "drill", member, &extra)
            .await
        else {
            return;
        };
        let started = clock::unix_ms();
        self.patch(
            name,
            MySQLBackupStatus {
                phase: Some(BackupPhase::Running),
                member: Some(member.name.clone()),
                started_at: Some(clock::rfc3339_at(started)),
                message: Some(format!("restoring and comparing with {}", member.name)),
                request: Some(started_job.request.clone()),
                ..MySQLBackupStatus::default()
            },
        )
        .await;
        let result = self.job_result(Job::Drill, &started_job).await;
        self.drill_done(cluster, name, started, result).await;
    }

    /// Records how a drill ended.
    async fn drill_done(
        &self,
        cluster: &MySQLCluster,
        name: &str,
        started: u64,
        result: Result<JobResult, String>,
    ) {
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

    /// Waits for the backup pod to report the end of `job`. The pod is looked up at every
    /// poll: one replaced meanwhile (a new template, an eviction) ran no part of it to the end,
    /// and one gone for a minute is given up on.
    async fn job_result(&self, job: Job, started: &Started) -> Result<JobResult, String> {
        let began = Instant::now();
        let limit = match job {
            Job::Backup => BACKUP_TIMEOUT,
            Job::Drill => DRILL_TIMEOUT,
        };
        let request = started.request.as_str();
        let mut last_error = String::new();
        let mut unreachable_since: Option<Instant> = None;
        while began.elapsed() < limit {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let answer = match self.archiver_pod().await {
                Ok((_, uid)) if uid != started.pod => {
                    return Err(
                        "the backup pod was replaced while it ran; nothing of it is kept".into(),
                    );
                }
                Ok((ip, _)) => {
                    let url = Url {
                        host: ip,
                        port: builders::ARCHIVER_PORT,
                    };
                    call(&url, "GET", "/status", None).await
                }
                Err(e) => Err(e),
            };
            match answer {
                Ok((200, body)) => match serde_json::from_slice::<AgentStatus>(&body) {
                    Ok(status) => {
                        unreachable_since = None;
                        let state = match job {
                            Job::Backup => status.backup,
                            Job::Drill => status.drill,
                        };
                        if let Some(last) = state.last.filter(|l| l.request == request) {
                            return Ok(last);
                        }
                        if state.running.as_deref() != Some(request) {
                            return Err("the backup pod no longer runs it (restarted?)".into());
                        }
                        continue;
                    }
                    Err(e) => last_error = format!("the backup pod's status does not parse: {e}"),
                },
                Ok((status, _)) => last_error = format!("the backup pod answered {status}"),
                Err(e) => last_error = e,
            }
            let since = *unreachable_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(60) {
                return Err(format!("the backup pod does not answer: {last_error}"));
            }
        }
        Err(format!("no result in {} s ({last_error})", limit.as_secs()))
    }

    /// A backup or drill an earlier operator started: followed to its end when the backup pod
    /// still runs or reports it, else failed as interrupted.
    async fn resume(&self, cluster: &MySQLCluster, backup: &MySQLBackup) {
        let name = backup.name_any();
        let job = if backup.spec.drill {
            Job::Drill
        } else {
            Job::Backup
        };
        let request = backup.status.as_ref().and_then(|s| s.request.clone());
        let known = match (&request, self.archiver_pod().await) {
            (Some(request), Ok((ip, pod))) => {
                let url = Url {
                    host: ip,
                    port: builders::ARCHIVER_PORT,
                };
                let status = match call(&url, "GET", "/status", None).await {
                    Ok((200, body)) => serde_json::from_slice::<AgentStatus>(&body).ok(),
                    _ => None,
                };
                status
                    .map(|s| match job {
                        Job::Backup => s.backup,
                        Job::Drill => s.drill,
                    })
                    .filter(|state| {
                        state.running.as_deref() == Some(request.as_str())
                            || state.last.as_ref().is_some_and(|l| l.request == *request)
                    })
                    .map(|_| Started {
                        request: request.clone(),
                        pod,
                    })
            }
            _ => None,
        };
        let Some(started) = known else {
            let message = "interrupted: the operator stopped while it ran, and the backup pod \
                           no longer knows it; nothing of it is kept (an S3 multipart upload \
                           may stay open until the bucket's lifecycle rule ends it)";
            return self
                .finish_failed(cluster, &name, message, backup.spec.drill)
                .await;
        };
        tracing::info!(cluster = %self.name, backup = %name, "following a job an earlier operator started");
        let began = backup
            .status
            .as_ref()
            .and_then(|s| s.started_at.as_deref())
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .and_then(|t| u64::try_from(t.as_millisecond()).ok())
            .unwrap_or_else(clock::unix_ms);
        let result = self.job_result(job, &started).await;
        match job {
            Job::Drill => self.drill_done(cluster, &name, began, result).await,
            Job::Backup => {
                self.backup_done(cluster, cluster.spec.backup.as_ref(), &name, result)
                    .await
            }
        }
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

    /// A full backup, taken by the archiver pod from `source`'s agent, followed to its end;
    /// the retention applied there after it, and the `MySQLBackup`s of the backups it deleted
    /// removed here.
    async fn take(
        &self,
        cluster: &MySQLCluster,
        spec: &BackupSpec,
        backup: &MySQLBackup,
        source: &SourceMember,
    ) {
        let name = &backup.name_any();
        let mut extra = String::new();
        if let Some(keep) = spec.keep {
            extra.push_str(&format!("&keep={keep}"));
        }
        if let Some(days) = spec.keep_days {
            extra.push_str(&format!("&keepDays={days}"));
        }
        let Some(started_job) = self
            .start_job(cluster, backup, "backup", source, &extra)
            .await
        else {
            return;
        };
        let started = clock::unix_ms();
        self.patch(
            name,
            MySQLBackupStatus {
                phase: Some(BackupPhase::Running),
                destination: Some(spec.destination.clone()),
                member: Some(source.name.clone()),
                started_at: Some(clock::rfc3339_at(started)),
                message: Some(format!("streaming from {}", source.name)),
                request: Some(started_job.request.clone()),
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
        let result = self.job_result(Job::Backup, &started_job).await;
        self.backup_done(cluster, Some(spec), name, result).await;
    }

    /// Records how a backup ended.
    async fn backup_done(
        &self,
        cluster: &MySQLCluster,
        spec: Option<&BackupSpec>,
        name: &str,
        result: Result<JobResult, String>,
    ) {
        let ns = self.namespace.clone();
        let done = match result {
            Ok(r) if r.passed => r,
            // The agent was serving a seed: the backup waits for the next pass.
            Ok(r) if r.message.ends_with(crate::agent::client::BUSY) => {
                self.patch(name, pending(&r.message)).await;
                return;
            }
            Ok(r) => return self.finish_failed(cluster, name, &r.message, false).await,
            Err(why) => return self.finish_failed(cluster, name, &why, false).await,
        };
        let Some(manifest) = done.manifest.clone() else {
            let message = "the archiver's pod reported a backup without its manifest";
            return self.finish_failed(cluster, name, message, false).await;
        };
        let secs = manifest
            .finished_unix_ms
            .saturating_sub(manifest.started_unix_ms) as f64
            / 1000.0;
        let status = MySQLBackupStatus {
            phase: Some(BackupPhase::Succeeded),
            backup_id: Some(manifest.id.clone()),
            destination: spec.map(|s| s.destination.clone()),
            member: Some(manifest.member.clone()),
            gtid_position: Some(manifest.gtid_position.clone()),
            stored_bytes: i64::try_from(manifest.stored_bytes).ok(),
            stream_bytes: i64::try_from(manifest.stream_bytes).ok(),
            started_at: Some(manifest.started_at.clone()),
            finished_at: Some(manifest.finished_at.clone()),
            duration: Some(format!("{secs:.1}s")),
            message: Some(done.message.clone()),
            request: None,
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
        self.retained(cluster, &done.removed, done.retention_error.as_deref())
            .await;
    }

    /// Removes the `MySQLBackup`s of the backups the retention deleted (never a drill's), and
    /// says what it did.
    async fn retained(&self, cluster: &MySQLCluster, removed: &[String], error: Option<&str>) {
        if !removed.is_empty() {
            if let Ok(list) = self.api().list(&ListParams::default()).await {
                for b in list.items.iter().filter(|b| {
                    b.spec.cluster_ref.name == self.name
                        && !b.spec.drill
                        && b.status
                            .as_ref()
                            .and_then(|s| s.backup_id.as_ref())
                            .is_some_and(|id| removed.contains(id))
                }) {
                    if let Err(e) = self.api().delete(&b.name_any(), &Default::default()).await {
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
        if let Some(e) = error {
            self.event(
                cluster,
                true,
                "RetentionFailed",
                format!("older backups could not all be deleted: {e}"),
            )
            .await;
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
