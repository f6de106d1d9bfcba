//! The Kubernetes controller of `MySQLTenantMove`s: each move runs in a task of the
//! operator, the same mover as `lagless-operator tenant move` ([`crate::pool::moves`]),
//! reaching the servers of the pool's clusters as the pool's administrator at the addresses
//! their topology ConfigMaps publish, and the directory on its cluster's primary. The mover's
//! record is kept in the move's status after every step, so an operator that restarts (or a
//! standby that takes the Lease) goes on from there.
//!
//! - One move of a pool runs at a time ([`status::waits_for`]); the others are `pending`.
//! - A move that cannot start (no such pool, tenant or cluster, a pool with TLS) is `aborted`
//!   with the reason, having changed nothing. Once started, nothing makes the controller give
//!   up: what it cannot reach it waits for, and the mover alone ends the move, done or rolled
//!   back.
//! - Deleting a running move waits (a finalizer) until it has ended either way.
//! - The channel's filter lives in the target primary's memory only: members start with
//!   `skip_slave_start`, and the mover sets the filter again before it restarts the channel.

pub mod status;

use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, ListParams};
use ::kube::runtime::controller::{Action, Controller};
use ::kube::runtime::events::Recorder;
use ::kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use ::kube::runtime::watcher;
use ::kube::{Client, ResourceExt};
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use lagless_core::topology::{Member, Topology};
use lagless_directory::{Directory, TenantId, TenantNaming};
use mysql_async::prelude::Queryable;

use super::common::{self, object_key};
use super::reconcile::{Error, apply_status};
use super::status::ClusterEvent;
use super::tasks::Tasks;
use crate::clock;
use crate::crd::tenant_move::{MySQLTenantMove, MySQLTenantMoveStatus};
use crate::crd::tenant_pool::{MySQLTenantPool, directory_name};
use crate::pool::load;
use crate::pool::moves::steps::snapshot_server;
use crate::pool::moves::{
    Endpoint, MoveContext, MoveLimits, MoveRecord, Phase, SaveRecord, run_move,
};

/// The finalizer that holds a deleted move until it has ended.
pub const FINALIZER: &str = "lagless.dev/tenant-move";

/// How long saving the record may hold a frozen tenant's move.
const FROZEN_SAVE: Duration = Duration::from_secs(1);

/// How often a waiting or running move is looked at again.
const RETRY: Duration = Duration::from_secs(10);

/// What every move's reconcile shares.
pub struct MoveControllerContext {
    pub client: Client,
    pub recorder: Recorder,
    /// Each move's task; its input says the move was deleted.
    tasks: Tasks<bool, ()>,
}

impl MoveControllerContext {
    pub fn new(client: Client, recorder: Recorder) -> Self {
        Self {
            client,
            recorder,
            tasks: Tasks::default(),
        }
    }
}

/// Runs the controller until the process is told to stop.
pub async fn run(client: Client, namespace: Option<&str>, recorder: Recorder) {
    let api: Api<MySQLTenantMove> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let context = Arc::new(MoveControllerContext::new(client, recorder));
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(lagless_serve::until_terminated())
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(tenant_move = %object, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "tenant move controller"),
            }
        })
        .await;
}

pub fn error_policy(
    mv: Arc<MySQLTenantMove>,
    error: &Error,
    _ctx: Arc<MoveControllerContext>,
) -> Action {
    tracing::warn!(tenant_move = %object_key(mv.as_ref()), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

pub async fn reconcile(
    mv: Arc<MySQLTenantMove>,
    ctx: Arc<MoveControllerContext>,
) -> Result<Action, Error> {
    let namespace = mv.namespace().unwrap_or_default();
    let api: Api<MySQLTenantMove> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, mv, |event| async {
        match event {
            FinalizerEvent::Apply(mv) => apply(&api, &mv, &ctx).await,
            FinalizerEvent::Cleanup(mv) => cleanup(&api, &mv, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// A deleted move: one that has started ends first, done or rolled back, whoever deleted it
/// and whether or not an operator ran then (its task runs, and the finalizer stays until
/// the move has ended); one that has not started is let go, its task told so. A move whose
/// pool is gone (or going) is let go at once: its clusters and directory go with the pool.
async fn cleanup(
    api: &Api<MySQLTenantMove>,
    mv: &MySQLTenantMove,
    ctx: &Arc<MoveControllerContext>,
) -> Result<Action, Error> {
    let key = object_key(mv);
    let running = ctx
        .tasks
        .update(&key, |deleted| !std::mem::replace(deleted, true));
    let pools: Api<MySQLTenantPool> =
        Api::namespaced(ctx.client.clone(), &mv.namespace().unwrap_or_default());
    let pool_going = pools
        .get_opt(&mv.spec.pool)
        .await?
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
    if pool_going {
        ctx.tasks.stop(&key);
        return Ok(Action::await_change());
    }
    // The cache may be behind the task's last write.
    let fresh = api.get_opt(&mv.name_any()).await?;
    let status = fresh
        .as_ref()
        .and_then(|m| m.status.clone())
        .unwrap_or_default();
    if status.record.is_some() && !status.is_final() {
        if let Some(fresh) = &fresh {
            start(api, fresh, ctx);
        }
        return Err(Error::Held(format!(
            "MySQLTenantMove {key} is deleted while it runs: it is removed once the move has \
             ended"
        )));
    }
    if running && !status.is_final() {
        // Told it was deleted, the task ends unless it has just started the move (then the
        // next look finds its record).
        return Err(Error::Held(format!(
            "MySQLTenantMove {key} is deleted: waiting for its task to stop"
        )));
    }
    ctx.tasks.stop(&key);
    Ok(Action::await_change())
}

async fn apply(
    api: &Api<MySQLTenantMove>,
    mv: &MySQLTenantMove,
    ctx: &Arc<MoveControllerContext>,
) -> Result<Action, Error> {
    let key = object_key(mv);
    let current = mv.status.clone().unwrap_or_default();
    if current.is_final() {
        // Its task, if any, ends by itself once it has said so (an Event after the status).
        return Ok(Action::await_change());
    }
    if ctx.tasks.is_running(&key) {
        return Ok(Action::requeue(RETRY));
    }
    let all = api.list(&ListParams::default()).await?;
    let queued: Vec<status::Queued> = all
        .items
        .iter()
        .map(|m| status::Queued {
            name: m.name_any(),
            pool: m.spec.pool.clone(),
            finished: m.status.as_ref().is_some_and(|s| s.is_final()),
            started: ctx.tasks.is_running(&object_key(m))
                || m.status.as_ref().is_some_and(|s| s.record.is_some()),
            created: m
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| format!("{:.0}", t.0))
                .unwrap_or_default(),
        })
        .collect();
    if let Some(first) = status::waits_for(&mv.name_any(), &queued) {
        let message = format!(
            "waiting for MySQLTenantMove {} (one move of pool {} at a time)",
            first.name, mv.spec.pool
        );
        if current.message.as_deref() != Some(message.as_str()) {
            let next = status::not_started(&current, false, &message, &clock::rfc3339());
            apply_status(api, &mv.name_any(), &next).await?;
        }
        return Ok(Action::requeue(RETRY));
    }
    // The task reads its move fresh before it runs anything: the cache may be behind a task
    // that has just ended it.
    start(api, mv, ctx);
    Ok(Action::requeue(RETRY))
}

/// Starts the task of `mv` unless one runs.
fn start(api: &Api<MySQLTenantMove>, mv: &MySQLTenantMove, ctx: &MoveControllerContext) {
    let mover = Mover {
        client: ctx.client.clone(),
        recorder: ctx.recorder.clone(),
        api: api.clone(),
        mv: mv.clone(),
    };
    ctx.tasks.ensure(
        object_key(mv),
        |_| false,
        || false,
        |deleted, _| mover.drive(deleted),
    );
}

/// Why a move cannot run now.
enum NotNow {
    /// It cannot start at all: it ends `aborted`, having changed nothing.
    Refused(String),
    /// Something it needs is not there yet (a primary, a Secret): it waits.
    Waiting(String),
}

/// The task of one move.
struct Mover {
    client: Client,
    recorder: Recorder,
    api: Api<MySQLTenantMove>,
    mv: MySQLTenantMove,
}

impl Mover {
    async fn drive(self, mut deleted: tokio::sync::watch::Receiver<bool>) {
        let key = object_key(&self.mv);
        // The cache may be behind a task that has just ended the move: never run it again.
        let fresh = match self.api.get_opt(&self.mv.name_any()).await {
            Ok(Some(fresh)) => fresh,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(tenant_move = %key, error = %e, "cannot read the move; it is looked at again");
                return;
            }
        };
        let mut status = fresh.status.clone().unwrap_or_default();
        if status.is_final() {
            return;
        }
        let started_at = status.started_at.clone().unwrap_or_else(clock::rfc3339);
        // The record the last attempt ended with: newer than the status it was written to.
        let mut last: Option<MoveRecord> = None;
        loop {
            let started = last.is_some() || status.record.is_some();
            if *deleted.borrow() && !started {
                tracing::info!(tenant_move = %key, "deleted before it started");
                return;
            }
            let prepared = self.prepare(&status, last.clone()).await;
            let (cx, record) = match prepared {
                Ok(prepared) => prepared,
                Err(NotNow::Refused(why)) => {
                    tracing::warn!(tenant_move = %key, %why, "tenant move refused");
                    let next = status::not_started(&status, true, &why, &clock::rfc3339());
                    self.write(&next).await;
                    self.event(true, "MoveRefused", why).await;
                    return;
                }
                Err(NotNow::Waiting(why)) => {
                    tracing::info!(tenant_move = %key, %why, "tenant move waits");
                    if status.message.as_deref() != Some(why.as_str()) {
                        status = match &last {
                            Some(record) => self.status_of(record, &started_at),
                            // Started: its phase stays what it is.
                            None if status.record.is_some() => status.clone(),
                            None => status::not_started(&status, false, &why, &clock::rfc3339()),
                        };
                        status.message = Some(why);
                        self.write(&status).await;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => {}
                        _ = deleted.changed() => {}
                    }
                    continue;
                }
            };
            if !started && *deleted.borrow() {
                cx.directory.close().await;
                return;
            }
            if !started {
                let note = format!(
                    "moving tenant {} from {} to {}",
                    record.tenant, record.from, record.to
                );
                self.event(false, "MoveStarted", note).await;
            }
            // Every change of the record is in the status before the move goes on.
            let mut saver = StatusSaver {
                mover: &self,
                started_at: &started_at,
            };
            saver.save(&record).await;
            let ended = run_move(&cx, record, &mut saver).await;
            cx.directory.close().await;
            status = self.status_of(&ended, &started_at);
            self.write(&status).await;
            match ended.phase {
                Phase::Done => {
                    let note = format!(
                        "tenant {} moved from {} to {} (statements held {} ms)",
                        ended.tenant,
                        ended.from,
                        ended.to,
                        ended.frozen_ms.unwrap_or(0)
                    );
                    self.event(false, "Moved", note).await;
                    return;
                }
                Phase::Aborted => {
                    let note = format!(
                        "tenant {} stays on {}: {}",
                        ended.tenant,
                        ended.from,
                        ended.error.clone().unwrap_or_default()
                    );
                    self.event(true, "MoveAborted", note).await;
                    return;
                }
                _ => {
                    // Left in its phase after repeated failures: tried again from there.
                    last = Some(ended);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    fn status_of(&self, record: &MoveRecord, started_at: &str) -> MySQLTenantMoveStatus {
        match status::of_record(record, started_at, &clock::rfc3339()) {
            Ok(status) => status,
            // A record is strings and numbers: it always serializes.
            Err(e) => MySQLTenantMoveStatus {
                message: Some(format!("the move's record cannot be written: {e}")),
                ..Default::default()
            },
        }
    }

    /// Writes the status, trying again for as long as the API server cannot take it (the
    /// move waits meanwhile): the record it holds is what a restarted operator goes on from.
    /// Only a move that is gone is given up on.
    async fn write(&self, status: &MySQLTenantMoveStatus) {
        let name = self.mv.name_any();
        let mut attempt = 0u32;
        loop {
            match apply_status(&self.api, &name, status).await {
                Ok(()) => return,
                Err(Error::Apply {
                    source: ::kube::Error::Api(e),
                    ..
                }) if e.code == 404 => {
                    tracing::warn!(tenant_move = %object_key(&self.mv), "the move is gone; its status is not written");
                    return;
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(tenant_move = %object_key(&self.mv), error = %e, attempt, "cannot write the move's status; trying again");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt.min(10)))).await;
                }
            }
        }
    }

    async fn event(&self, warning: bool, reason: &'static str, note: String) {
        let event = ClusterEvent {
            warning,
            reason,
            action: "Move",
            note,
        };
        common::publish(&self.recorder, &self.mv, event).await;
    }

    /// The move's context, from the pool, its Secrets and its clusters' topologies, and its
    /// record: `last`, else the status's, else a new one from the directory.
    async fn prepare(
        &self,
        status: &MySQLTenantMoveStatus,
        last: Option<MoveRecord>,
    ) -> Result<(MoveContext, MoveRecord), NotNow> {
        let record = match last {
            Some(record) => Some(record),
            None => status::record_of(status).map_err(NotNow::Waiting)?,
        };
        // Once started, a move is never refused: the mover alone ends it.
        let started = record.is_some();
        let refuse = |why: String| {
            if started {
                NotNow::Waiting(why)
            } else {
                NotNow::Refused(why)
            }
        };
        let spec = &self.mv.spec;
        let namespace = self.mv.namespace().unwrap_or_default();
        let pools: Api<MySQLTenantPool> = Api::namespaced(self.client.clone(), &namespace);
        let pool = pools
            .get_opt(&spec.pool)
            .await
            .map_err(|e| NotNow::Waiting(format!("reading MySQLTenantPool {}: {e}", spec.pool)))?
            .ok_or_else(|| refuse(format!("no MySQLTenantPool {} in {namespace}", spec.pool)))?;
        if pool.spec.cluster_template.tls.is_some() {
            return Err(refuse(format!(
                "pool {} uses TLS, which tenant moves do not support yet",
                spec.pool
            )));
        }
        let tenant = TenantId::parse(&spec.tenant).map_err(|e| refuse(e.to_string()))?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let credentials = &pool.spec.cluster_template.credentials;
        let admin = common::account(&secrets, &credentials.admin_secret(&spec.pool))
            .await
            .map_err(NotNow::Waiting)?;
        let replication = common::account(&secrets, &credentials.replication_secret(&spec.pool))
            .await
            .map_err(NotNow::Waiting)?;
        let configmaps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &namespace);
        let endpoint = |m: &Member| Endpoint {
            host: m.host.clone(),
            port: m.port,
            user: admin.user.clone(),
            password: admin.password.clone(),
        };
        let directory_topology = topology(&configmaps, &directory_name(&spec.pool)).await?;
        let directory_primary = primary(&directory_topology)?;
        let directory = Directory::new(load::admin_opts(
            &directory_primary.host,
            directory_primary.port,
            &admin.user,
            &admin.password,
            None,
        ));
        let record = match record {
            Some(record) => record,
            None => {
                let begun = new_record(&directory, &tenant, &spec.to, &spec.pool).await;
                match begun {
                    Ok(record) => record,
                    Err(e) => {
                        directory.close().await;
                        return Err(e);
                    }
                }
            }
        };
        let within = async {
            let source = topology(&configmaps, &record.from).await?;
            let target = topology(&configmaps, &record.to).await?;
            let source_primary = endpoint(primary(&source)?);
            let target_primary = endpoint(primary(&target)?);
            let snapshot_from = snapshot_server(
                &record,
                &source_primary,
                source.replicas.first().map(endpoint),
            );
            let mut conn = source_primary.conn().await.map_err(NotNow::Waiting)?;
            let domain: Option<u32> = conn
                .query_first("SELECT @@gtid_domain_id")
                .await
                .map_err(|e| NotNow::Waiting(format!("the source's GTID domain: {e}")))?;
            let _ = conn.disconnect().await;
            let rate = spec
                .copy_rate_mib
                .unwrap_or(pool.spec.rebalance.copy_rate_mib);
            Ok::<_, NotNow>(MoveContext {
                database: TenantNaming::parse(&pool.spec.tenant_database)
                    .unwrap_or_default()
                    .database(&tenant),
                tenant: tenant.clone(),
                directory: directory.clone(),
                source_primary,
                snapshot_from,
                source_domain: domain.unwrap_or(0),
                replication: (replication.user.clone(), replication.password.clone()),
                target_primary,
                target_replicas: target.replicas.iter().map(endpoint).collect(),
                filter_file: None,
                limits: MoveLimits {
                    copy_rate: u64::from(rate) << 20,
                    latency_allowance: f64::from(spec.copy_latency_allowance.unwrap_or(0)) / 100.0,
                    ..MoveLimits::default()
                },
            })
        }
        .await;
        match within {
            Ok(cx) => Ok((cx, record)),
            Err(e) => {
                directory.close().await;
                Err(e)
            }
        }
    }
}

/// Keeps a running move's record in its status, before the move goes on.
struct StatusSaver<'a> {
    mover: &'a Mover,
    started_at: &'a str,
}

impl SaveRecord for StatusSaver<'_> {
    fn save<'b>(&'b mut self, record: &'b MoveRecord) -> BoxFuture<'b, ()> {
        Box::pin(async move {
            let status = self.mover.status_of(record, self.started_at);
            // While the tenant is frozen (its writes held in every proxy) the move does not
            // wait for the API server: a record lost there is safe (a resumed move finds the
            // flip in the directory, or rolls back).
            if matches!(record.phase, Phase::Frozen | Phase::Fenced) {
                if tokio::time::timeout(FROZEN_SAVE, self.mover.write(&status))
                    .await
                    .is_err()
                {
                    tracing::warn!(tenant_move = %object_key(&self.mover.mv), phase = %record.phase, "the move's record was not written in time; the move goes on");
                }
            } else {
                self.mover.write(&status).await;
            }
        })
    }
}

/// A new move's record: the tenant found in the directory and the target one of its clusters.
async fn new_record(
    directory: &Directory,
    tenant: &TenantId,
    to: &str,
    pool: &str,
) -> Result<MoveRecord, NotNow> {
    let waiting = |e: lagless_directory::DirectoryError| NotNow::Waiting(e.to_string());
    let route = directory
        .lookup(tenant)
        .await
        .map_err(waiting)?
        .ok_or_else(|| {
            NotNow::Refused(format!("tenant {tenant} is not in pool {pool}'s directory"))
        })?;
    let clusters = directory.clusters().await.map_err(waiting)?;
    if !clusters.iter().any(|c| c.name == to) {
        return Err(NotNow::Refused(format!(
            "cluster {to} is not one of pool {pool}'s clusters in its directory"
        )));
    }
    if route.cluster == to {
        return Err(NotNow::Refused(format!(
            "tenant {tenant} is on {to} already"
        )));
    }
    Ok(MoveRecord::new(tenant, &route.cluster, to))
}

/// The topology cluster `cluster` publishes.
async fn topology(configmaps: &Api<ConfigMap>, cluster: &str) -> Result<Topology, NotNow> {
    common::published_topology(configmaps, cluster)
        .await
        .map_err(NotNow::Waiting)?
        .ok_or_else(|| NotNow::Waiting(format!("cluster {cluster} has published no topology yet")))
}

fn primary(topology: &Topology) -> Result<&Member, NotNow> {
    topology
        .primary
        .as_ref()
        .ok_or_else(|| NotNow::Waiting(format!("cluster {} has no primary", topology.cluster)))
}
