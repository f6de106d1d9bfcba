//! The per-cluster orchestration task: an [`Orchestrator`] ticking against the members' MySQL
//! endpoints (through the headless Service's DNS names), publishing each topology into the
//! cluster's topology ConfigMap, turning its events into Kubernetes Events, and leaving a
//! [`Snapshot`] for the reconciler's status.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::kube::api::{Api, Patch, PatchParams};
use ::kube::runtime::events::Recorder;
use ::kube::{Client, ResourceExt};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use lagless_core::topology::Topology;
use tokio::sync::watch;

use super::accounts::Accounts;
use super::backups::Backups;
use super::builders::{self, Credential, MYSQL_PORT, TOPOLOGY_KEY};
use super::common::{self, FIELD_MANAGER, cluster_key, credentials, lock};
use super::metrics::Metrics;
use super::metrics::cluster as cluster_metrics;
use super::push;
use super::reseed::{ReseedTarget, Reseeder};
use super::roll::Roller;
use super::status::{self, ClusterEvent, Snapshot};
use super::tasks::Tasks;
use crate::agent::tls::AgentTls;
use crate::clock;
use crate::crd::MySQLCluster;
use crate::orchestrate::MemberView;
use crate::orchestrate::act::{ProxyAccount, ProxyRole, Stored, TopologySink};
use crate::orchestrate::run::{Orchestrator, TimedEvent};
use crate::orchestrate::view::{CaSource, ServerTls};
use crate::orchestrate::{ClusterSpec, Event};

/// How often a cluster is observed: a dead primary is declared after three failed probes,
/// so this bounds how soon a failover starts.
pub const TICK: Duration = Duration::from_millis(500);

/// How long one re-seed step (agent and API calls) may take.
const RESEED_STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the roll takes a step, and how long one (API calls) may take.
const ROLL_INTERVAL: Duration = Duration::from_secs(1);
const ROLL_STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long publishing one topology may take before the action counts as failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts, updates and stops the orchestration of clusters.
pub trait Orchestrations: Send + Sync {
    /// Runs the orchestration of `cluster` with its current spec (starting it if needed), and
    /// returns what it last saw.
    fn ensure(&self, cluster: &MySQLCluster) -> Snapshot;
    /// Stops the orchestration of cluster `namespace/name`, if it runs.
    fn stop(&self, key: &str);
}

/// Runs one task per cluster on the current tokio runtime (which must be multi-threaded: see
/// [`ConfigMapSink`]).
pub struct OrchestrationTasks {
    client: Client,
    recorder: Recorder,
    metrics: Metrics,
    tasks: Tasks<MySQLCluster, Snapshot>,
}

impl OrchestrationTasks {
    pub fn new(client: Client, recorder: Recorder, metrics: Metrics) -> Self {
        Self {
            client,
            recorder,
            metrics,
            tasks: Tasks::default(),
        }
    }
}

impl Orchestrations for OrchestrationTasks {
    fn ensure(&self, cluster: &MySQLCluster) -> Snapshot {
        self.tasks.ensure(
            cluster_key(cluster),
            |current| {
                let changed = current.spec != cluster.spec;
                if changed {
                    *current = cluster.clone();
                }
                changed
            },
            || cluster.clone(),
            |receiver, snapshot| {
                let runner = Runner {
                    client: self.client.clone(),
                    recorder: self.recorder.clone(),
                    metrics: self.metrics.clone(),
                    cluster: receiver,
                    snapshot,
                };
                runner.run()
            },
        )
    }

    fn stop(&self, key: &str) {
        self.tasks.stop(key);
        if let Some((namespace, name)) = key.split_once('/') {
            self.metrics.clusters.forget(namespace, name);
        }
    }
}

/// The orchestrator's members for `cluster`: `<name>-<ordinal>` at its stable DNS name.
pub fn cluster_spec(cluster: &MySQLCluster) -> ClusterSpec {
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_default();
    let count = u32::try_from(cluster.spec.replicas.max(0)).unwrap_or(0);
    let port = u16::try_from(MYSQL_PORT).unwrap_or(3306);
    let members = (0..count)
        .map(|i| {
            (
                builders::member_name(&name, i),
                builders::member_host(&name, &namespace, i),
                port,
            )
        })
        .collect();
    cluster.spec.to_cluster_spec(&name, members)
}

/// The events recorded after `before` (the last one seen), oldest first.
pub fn events_after<'a>(
    events: impl Iterator<Item = &'a TimedEvent>,
    before: Option<&TimedEvent>,
) -> Vec<TimedEvent> {
    let all: Vec<&TimedEvent> = events.collect();
    // The log is bounded: search from the end, where the last seen event is.
    let start = before
        .and_then(|b| all.iter().rposition(|e| *e == b))
        .map_or(0, |i| i + 1);
    all[start..].iter().map(|e| (*e).clone()).collect()
}

struct Runner {
    client: Client,
    recorder: Recorder,
    metrics: Metrics,
    cluster: watch::Receiver<MySQLCluster>,
    snapshot: Arc<Mutex<Snapshot>>,
}

impl Runner {
    async fn run(mut self) {
        let mut orchestrator = loop {
            let cluster = self.cluster.borrow_and_update().clone();
            match start(&self.client, &cluster).await {
                Ok(orchestrator) => break orchestrator,
                Err(why) => {
                    tracing::warn!(cluster = %cluster_key(&cluster), %why, "cannot orchestrate yet");
                    lock(&self.snapshot).blocked = Some(why);
                    if self.wait().await.is_none() {
                        return;
                    }
                }
            }
        };
        let mut durability = None;
        let mut tls_read = std::time::Instant::now();
        let mut reseeder = Reseeder::new(
            self.client.clone(),
            &self.cluster.borrow(),
            crate::agent::AGENT_PORT,
            clock::unix_ms(),
        );
        reseeder.set_tls(agent_tls(orchestrator.spec.tls.as_ref()));
        let mut roller = Roller::new(self.client.clone(), &self.cluster.borrow());
        let mut accounts = Accounts::new(self.client.clone(), &self.cluster.borrow());
        let mut backups = Backups::new(
            self.client.clone(),
            self.recorder.clone(),
            self.metrics.clone(),
            &self.cluster.borrow(),
        );
        let mut roll_due = std::time::Instant::now();
        // The orchestration's events since the roll's last step (it watches its hand-over).
        let mut roll_seen: Vec<TimedEvent> = Vec::new();
        loop {
            let before = orchestrator.events().last().cloned();
            roller.adjust(&mut orchestrator.spec, &self.cluster.borrow().spec.cordoned);
            orchestrator.tick().await;
            let new = events_after(orchestrator.events(), before.as_ref());
            roll_seen.extend(new.iter().cloned());
            let cluster = self.cluster.borrow().clone();
            // Said once when the cluster starts or its spec changes it, not every tick.
            let now_durability = cluster.spec.durability();
            if durability.replace(now_durability) != Some(now_durability)
                && let Some(event) = status::durability_event(now_durability)
            {
                common::publish(&self.recorder, &cluster, event).await;
            }
            // A re-seed replaces a pod: orchestration, which a paused cluster does not get; and
            // none starts while a roll has a member down (one in progress goes on).
            let reseed_events =
                if cluster.spec.paused || (roller.in_flight() && !reseeder.in_progress()) {
                    Vec::new()
                } else {
                    self.reseed(&mut reseeder, &cluster, &mut orchestrator)
                        .await
                };
            // One roll step a second, none while a re-seed replaces a pod.
            let roll_events = if std::time::Instant::now() >= roll_due && !reseeder.in_progress() {
                roll_due = std::time::Instant::now() + ROLL_INTERVAL;
                let seen = std::mem::take(&mut roll_seen);
                let step = roller.tick(&cluster, &orchestrator, &seen);
                tokio::time::timeout(ROLL_STEP_TIMEOUT, step)
                    .await
                    .unwrap_or_else(|_| {
                        tracing::warn!(cluster = %cluster_key(&cluster), "a roll step timed out; retried next tick");
                        Vec::new()
                    })
            } else {
                Vec::new()
            };
            accounts.tick(&cluster, &orchestrator);
            backups.tick(&cluster, &orchestrator);
            {
                let mut snapshot = lock(&self.snapshot);
                snapshot.blocked = None;
                snapshot.failing = orchestrator.failing().map(str::to_string);
                snapshot.state = orchestrator.last_plan_state();
                snapshot.view = orchestrator.last_view().cloned();
                snapshot.published = orchestrator.published().cloned();
                snapshot.quarantined = orchestrator.history().quarantined.clone();
                snapshot.last_reseed = reseeder.record().cloned();
                snapshot.roll = roller.report().cloned();
                snapshot.backups = backups.seen();
                snapshot.restore_failing = backups.restore_failing();
                fold_events(&mut snapshot, &new);
                self.metrics.clusters.observe(
                    &cluster.namespace().unwrap_or_default(),
                    &cluster.name_any(),
                    &cluster_metrics::gauges(&snapshot, &cluster.spec),
                );
            }
            for timed in &new {
                record_event(&self.recorder, &self.metrics, &cluster, &timed.event).await;
            }
            for event in reseed_events.into_iter().chain(roll_events) {
                common::publish(&self.recorder, &cluster, event).await;
            }
            let Some(changed) = self.wait().await else {
                return;
            };
            if changed {
                let cluster = self.cluster.borrow_and_update().clone();
                let tls = orchestrator.spec.tls.take();
                orchestrator.spec = cluster_spec(&cluster);
                orchestrator.spec.tls = tls;
            }
            // The CA is read again when the spec changes and every minute, so a renewed or
            // replaced CA is followed without a restart.
            if changed || tls_read.elapsed() >= TLS_CA_READ_INTERVAL {
                tls_read = std::time::Instant::now();
                let cluster = self.cluster.borrow().clone();
                match server_tls(&self.client, &cluster).await {
                    Ok(tls) => {
                        reseeder.set_tls(agent_tls(tls.as_ref()));
                        orchestrator.spec.tls = tls;
                    }
                    Err(why) => {
                        tracing::warn!(cluster = %cluster_key(&cluster), %why, "keeping the CA read before")
                    }
                }
            }
        }
    }

    /// One step of the cluster's re-seed request, if it has one; bounded, so an agent or an
    /// API call that hangs never holds up failure detection.
    async fn reseed(
        &self,
        reseeder: &mut Reseeder,
        cluster: &MySQLCluster,
        orchestrator: &mut Orchestrator,
    ) -> Vec<ClusterEvent> {
        // Read when an agent is called, so a rotated token is used.
        let token = || async {
            let namespace = cluster.namespace()?;
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
            credentials(&secrets, cluster, Credential::Agent)
                .await
                .map_err(|why| tracing::warn!(cluster = %cluster_key(cluster), %why, "agent token"))
                .ok()
                .map(|c| c.password)
        };
        let now = clock::rfc3339();
        let step = reseeder.tick(cluster, orchestrator, token, clock::unix_ms(), &now);
        tokio::time::timeout(RESEED_STEP_TIMEOUT, step)
            .await
            .unwrap_or_else(|_| {
                tracing::warn!(cluster = %cluster_key(cluster), "a re-seed step timed out; retried next tick");
                Vec::new()
            })
    }

    /// Waits one tick, or less when the spec changes: whether it changed; `None` when its
    /// [`OrchestrationTasks`] is gone.
    async fn wait(&mut self) -> Option<bool> {
        next_tick(&mut self.cluster, TICK).await
    }
}

/// Waits `tick`, or less when `rx` gets a value: `Some(true)` when one came that the caller
/// has not read yet (it reads it with `borrow_and_update`), `None` once the sender is gone.
/// (`changed()` marks the value seen, so whether it changed must come from here, not from a
/// later `has_changed()`.)
async fn next_tick<T>(rx: &mut watch::Receiver<T>, tick: Duration) -> Option<bool> {
    tokio::select! {
        () = tokio::time::sleep(tick) => rx.has_changed().ok(),
        changed = rx.changed() => changed.ok().map(|()| true),
    }
}

/// Folds one tick's new events into the snapshot the reconciler reads: each promotion becomes
/// the last failover or switchover, at the time it was recorded.
pub(crate) fn fold_events(snapshot: &mut Snapshot, new: &[TimedEvent]) {
    for timed in new {
        let time = clock::rfc3339_at(timed.unix_ms);
        status::record_promotion(snapshot, &timed.event, &time);
    }
}

/// Records an orchestration event as a Kubernetes Event on its cluster, counting failovers.
pub(crate) async fn record_event(
    recorder: &Recorder,
    metrics: &Metrics,
    cluster: &MySQLCluster,
    event: &Event,
) {
    if let Event::Promoted { cause, .. } = event {
        if *cause == crate::orchestrate::Cause::Failover {
            metrics.failovers.inc();
        }
        let namespace = cluster.namespace().unwrap_or_default();
        metrics
            .clusters
            .promoted(&namespace, &cluster.name_any(), cause);
    }
    common::publish(recorder, cluster, status::cluster_event(event)).await;
}

/// The id of the switchover request the status reports done: a new leader or a restarted
/// operator must not switch over again for it.
fn completed_switchover(cluster: &MySQLCluster) -> Option<String> {
    cluster
        .status
        .as_ref()?
        .last_switchover
        .as_ref()?
        .id
        .clone()
}

impl ReseedTarget for Orchestrator {
    fn primary(&self) -> Option<String> {
        self.published()?.primary.as_ref().map(|p| p.name.clone())
    }

    fn serving(&self, member: &str) -> bool {
        let published = self
            .published()
            .is_some_and(|t| t.replicas.iter().any(|r| r.name == member));
        let replicating = self
            .last_view()
            .and_then(|v| v.member(member))
            .is_some_and(MemberView::replicates_cleanly);
        published && replicating
    }

    fn host(&self, member: &str) -> Option<String> {
        self.spec.member(member).map(|m| m.host.clone())
    }

    /// A published replica that replicates cleanly (the published ones are never quarantined),
    /// else the primary.
    fn donor_for(&self, member: &str) -> Option<String> {
        let published = self.published()?;
        published
            .replicas
            .iter()
            .map(|r| r.name.as_str())
            .find(|r| *r != member && self.serving(r))
            .map(str::to_string)
            .or_else(|| ReseedTarget::primary(self).filter(|p| p != member))
    }

    fn release(&mut self, member: &str) {
        if self.release_for_reseed(member) {
            tracing::info!(%member, "quarantine lifted: the member's data is being replaced");
        }
    }
}

/// How often the cluster's CA is read again from its Secret.
const TLS_CA_READ_INTERVAL: Duration = Duration::from_secs(60);

/// The CA certificate (`ca.crt`) in the TLS Secret `name`.
pub(crate) fn secret_ca(secret: &Secret, name: &str) -> Result<Vec<u8>, String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(crate::tls::CA_FILE))
        .map(|v| v.0.clone())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("TLS Secret {name} has no {}", crate::tls::CA_FILE))
}

/// TLS to the members as `spec.tls` asks: the CA from the cluster's TLS Secret (`ca.crt`),
/// and its path in the member pods for replication.
async fn server_tls(client: &Client, cluster: &MySQLCluster) -> Result<Option<ServerTls>, String> {
    let Some(tls) = &cluster.spec.tls else {
        return Ok(None);
    };
    let namespace = cluster
        .namespace()
        .ok_or_else(|| "the MySQLCluster has no namespace".to_string())?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let name = tls.secret(&cluster.name_any());
    let secret = secrets
        .get_opt(&name)
        .await
        .map_err(|e| format!("reading Secret {name}: {e}"))?
        .ok_or_else(|| format!("TLS Secret {name} not found (yet)"))?;
    Ok(Some(ServerTls {
        ca: CaSource::Pem(secret_ca(&secret, &name)?),
        member_ca_path: format!("{}/{}", builders::tls::TLS_MOUNT, crate::tls::CA_FILE),
        watch: None,
    }))
}

/// TLS to the seeding agents, verified against the cluster's CA.
fn agent_tls(tls: Option<&ServerTls>) -> Option<AgentTls> {
    let CaSource::Pem(pem) = &tls?.ca else {
        return None;
    };
    AgentTls::from_ca_pem(pem)
        .map_err(|e| tracing::warn!(error = %e, "the cluster's CA does not load for the agents"))
        .ok()
}

/// Reads the credentials and the published topology, and builds the orchestrator.
async fn start(client: &Client, cluster: &MySQLCluster) -> Result<Orchestrator, String> {
    let namespace = cluster
        .namespace()
        .ok_or_else(|| "the MySQLCluster has no namespace".to_string())?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let admin = credentials(&secrets, cluster, Credential::Admin).await?;
    let replication = credentials(&secrets, cluster, Credential::Replication).await?;
    let mut proxy_accounts = Vec::new();
    for (credential, role) in [
        (Credential::Lookup, ProxyRole::Lookup),
        (Credential::Monitor, ProxyRole::Monitor),
    ] {
        proxy_accounts.push(ProxyAccount {
            role,
            creds: credentials(&secrets, cluster, credential).await?,
        });
    }
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let name = builders::topology_configmap_name(&cluster.name_any());
    let published = configmaps
        .get_opt(&name)
        .await
        .map_err(|e| format!("reading ConfigMap {name}: {e}"))?
        .and_then(|cm| cm.data)
        .and_then(|data| data.get(TOPOLOGY_KEY).cloned())
        .and_then(|json| match Topology::parse(json.as_bytes()) {
            Ok(topology) => Some(topology),
            Err(e) => {
                // Treated as never published: the plan recovers or adopts the running primary.
                tracing::warn!(configmap = %name, error = %e, "ignoring an unreadable topology");
                None
            }
        });
    let sink = ConfigMapSink::new(client.clone(), cluster.clone())?;
    let mut spec = cluster_spec(cluster);
    spec.tls = server_tls(client, cluster).await?;
    Ok(Orchestrator::with_defaults(
        spec,
        cluster.spec.flavor.into(),
        admin,
        replication,
        Box::new(sink),
        published,
    )
    .with_completed_switchover(completed_switchover(cluster))
    .with_proxy_accounts(proxy_accounts)
    .with_max_epoch(recorded_epoch(cluster)))
}

/// The epoch the status last recorded: a topology ConfigMap deleted while the operator was
/// away must not make the next epoch lower than the proxies' current one.
fn recorded_epoch(cluster: &MySQLCluster) -> u64 {
    cluster
        .status
        .as_ref()
        .and_then(|s| s.topology_epoch)
        .and_then(|e| u64::try_from(e).ok())
        .unwrap_or(0)
}

/// Publishes topologies into the cluster's topology ConfigMap by server-side apply, then
/// pushes them to the proxies.
pub struct ConfigMapSink {
    api: Api<ConfigMap>,
    client: Client,
    cluster: MySQLCluster,
}

impl ConfigMapSink {
    pub fn new(client: Client, cluster: MySQLCluster) -> Result<Self, String> {
        let namespace = cluster
            .namespace()
            .ok_or_else(|| "the MySQLCluster has no namespace".to_string())?;
        Ok(Self {
            api: Api::namespaced(client.clone(), &namespace),
            client,
            cluster,
        })
    }
}

impl ConfigMapSink {
    async fn read(&self) -> Stored {
        let name = builders::topology_configmap_name(&self.cluster.name_any());
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.api.get_opt(&name)).await {
            Ok(Ok(None)) => Stored::Missing,
            Ok(Ok(Some(cm))) => match cm.data.as_ref().and_then(|d| d.get(TOPOLOGY_KEY)) {
                None => Stored::Missing,
                Some(json) => match Topology::parse(json.as_bytes()) {
                    Ok(topology) => Stored::Found(topology),
                    Err(e) => Stored::Unreadable(e.to_string()),
                },
            },
            // The API server not answering says nothing about the document.
            Ok(Err(_)) | Err(_) => Stored::Unknown,
        }
    }

    async fn write(&self, topology: &Topology) -> Result<(), String> {
        let configmap =
            builders::topology_configmap(&self.cluster, topology).map_err(|e| e.to_string())?;
        let name = builders::topology_configmap_name(&self.cluster.name_any());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(configmap);
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.api.patch(&name, &params, &patch)).await {
            Ok(Ok(_)) => {
                // Then straight to the proxies, which would otherwise wait for the kubelet.
                let document = serde_json::to_vec(topology).map_err(|e| e.to_string())?;
                let push = push::push_all(&self.client, &self.cluster, &document);
                let took = tokio::time::timeout(push::PUSH_TIMEOUT * 2, push).await;
                tracing::debug!(epoch = topology.epoch, proxies = ?took.ok(), "topology pushed");
                Ok(())
            }
            Ok(Err(e)) => Err(format!("ConfigMap {name}: {e}")),
            Err(_) => Err(format!(
                "ConfigMap {name}: no answer within {} s",
                PUBLISH_TIMEOUT.as_secs()
            )),
        }
    }
}

impl TopologySink for ConfigMapSink {
    fn stored(&self) -> BoxFuture<'_, Stored> {
        Box::pin(self.read())
    }

    fn publish<'a>(&'a self, topology: &'a Topology) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.write(topology))
    }
}

/// Orchestrates nothing: for running the reconciler alone (tests, dry runs).
#[derive(Debug, Default)]
pub struct Disabled;

impl Orchestrations for Disabled {
    fn ensure(&self, _cluster: &MySQLCluster) -> Snapshot {
        Snapshot::default()
    }

    fn stop(&self, _key: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrate::Event;

    fn timed(ms: u64, member: &str) -> TimedEvent {
        TimedEvent {
            unix_ms: ms,
            event: Event::Seeded {
                member: member.into(),
                donor: "db-0".into(),
            },
        }
    }

    #[test]
    fn only_events_after_the_last_seen_are_new() {
        let log = [timed(1, "a"), timed(2, "b"), timed(3, "c")];
        assert_eq!(events_after(log.iter(), Some(&log[0])), log[1..].to_vec());
        assert_eq!(events_after(log.iter(), Some(&log[2])), Vec::new());
        assert_eq!(events_after(log.iter(), None), log.to_vec());
    }

    #[test]
    fn a_switchover_the_status_reports_done_is_remembered() {
        let mut cluster = MySQLCluster::new(
            "db",
            serde_json::from_value(serde_json::json!({
                "replicas": 2, "switchover": {"id": "move-1", "primary": "best"}
            }))
            .unwrap(),
        );
        assert_eq!(completed_switchover(&cluster), None);
        cluster.status = Some(crate::crd::MySQLClusterStatus {
            last_switchover: Some(crate::crd::PromotionRecord {
                time: "2026-01-01T00:00:00Z".into(),
                from: Some("db-0".into()),
                to: "db-1".into(),
                id: Some("move-1".into()),
                error: None,
            }),
            ..Default::default()
        });
        assert_eq!(completed_switchover(&cluster).as_deref(), Some("move-1"));
    }

    #[test]
    fn members_are_the_statefulset_pods() {
        let mut cluster = MySQLCluster::new(
            "db",
            serde_json::from_value(serde_json::json!({"replicas": 2})).unwrap(),
        );
        cluster.metadata.namespace = Some("prod".into());
        let spec = cluster_spec(&cluster);
        let members: Vec<_> = spec
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.host.as_str(), m.port))
            .collect();
        assert_eq!(
            members,
            [
                ("db-0", "db-0.db-headless.prod.svc", 3306),
                ("db-1", "db-1.db-headless.prod.svc", 3306)
            ]
        );
    }

    #[tokio::test]
    async fn a_spec_change_is_reported_once_to_the_orchestration_loop() {
        let (tx, mut rx) = tokio::sync::watch::channel(1);
        let tick = std::time::Duration::from_millis(20);
        assert_eq!(
            super::next_tick(&mut rx, tick).await,
            Some(false),
            "nothing new"
        );
        tx.send(2).unwrap();
        assert_eq!(super::next_tick(&mut rx, tick).await, Some(true));
        assert_eq!(*rx.borrow_and_update(), 2);
        assert_eq!(super::next_tick(&mut rx, tick).await, Some(false));
        // A change while the loop was busy (not waiting) is seen at its next wait.
        tx.send(3).unwrap();
        assert_eq!(super::next_tick(&mut rx, tick).await, Some(true));
        drop(tx);
        assert_eq!(super::next_tick(&mut rx, tick).await, None);
    }
}
