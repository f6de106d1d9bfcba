//! The reconciler of one `MySQLTenantPool`: validate, hold a finalizer, server-side apply the
//! pool's objects (its `MySQLCluster`s, the shared accounts and certificate, the pool
//! document, the pool's proxies), start its loop and report status.
//!
//! How many tenant clusters the pool has comes from its status, the directory and growth
//! ([`decide::cluster_count`]); the loop ([`PoolLoops`]) asks for one more by its snapshot,
//! and the next reconcile applies it. The reconciler requeues itself every
//! [`STATUS_INTERVAL`] so the status and the pool's size follow the loop.

use std::sync::Arc;
use std::time::Instant;

use ::kube::api::Api;
use ::kube::runtime::controller::Action;
use ::kube::runtime::events::Recorder;
use ::kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use ::kube::{Client, ResourceExt};

use super::decide;
use super::operate::PoolLoops;
use super::status;
use crate::clock;
use crate::crd::tenant_pool::{MySQLTenantPool, MySQLTenantPoolStatus};
use crate::kube::apis::Apis;
use crate::kube::builders::BuildError;
use crate::kube::builders::tenant_pool::{
    self as pool_builders, NAMES_ANNOTATION, generated_pool_credentials, pool_ca_secret_name,
    pool_proxy_name, pool_tls_secret_name,
};
use crate::kube::common::{self, object_key};
use crate::kube::metrics::Metrics;
use crate::kube::reconcile::memory::Memory;
use crate::kube::reconcile::{
    Error, FINALIZER, INVALID_INTERVAL, STATUS_INTERVAL, SelfIssued, apply_certificate,
    apply_object, apply_status, ensure_self_issued, missing_credentials, scale_down_proxies,
    warn_invalid,
};
use crate::kube::status::ClusterEvent;

/// What every pool reconcile shares.
pub struct PoolContext {
    pub client: Client,
    /// The lagless-proxy image of each pool's proxy Deployment.
    pub proxy_image: String,
    /// The namespace the operator runs in, which the NetworkPolicies admit its pods from.
    pub operator_namespace: String,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub loops: Arc<dyn PoolLoops>,
    /// What the API server serves of the APIs the controller can do without.
    pub apis: Apis,
    memory: Memory,
}

impl PoolContext {
    pub fn new(
        client: Client,
        proxy_image: String,
        recorder: Recorder,
        metrics: Metrics,
        loops: Arc<dyn PoolLoops>,
    ) -> Self {
        Self {
            // In a pod, the client's default namespace is the pod's own.
            operator_namespace: client.default_namespace().to_string(),
            client,
            proxy_image,
            recorder,
            metrics,
            loops,
            apis: Apis::default(),
            memory: Memory::default(),
        }
    }

    /// The optional APIs the API server serves, as discovery found them (else all of them).
    pub fn with_apis(mut self, apis: Apis) -> Self {
        self.apis = apis;
        self
    }
}

/// The controller's error policy: retry with exponential backoff per pool.
pub fn error_policy(pool: Arc<MySQLTenantPool>, error: &Error, ctx: Arc<PoolContext>) -> Action {
    let key = object_key(pool.as_ref());
    let (failures, delay) = ctx.memory.failed(&key);
    tracing::warn!(pool = %key, %error, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Reconciles one `MySQLTenantPool`, recording metrics.
pub async fn reconcile(pool: Arc<MySQLTenantPool>, ctx: Arc<PoolContext>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = object_key(pool.as_ref());
    let result = reconcile_inner(pool, &ctx).await;
    ctx.metrics.observe(started.elapsed(), result.is_err());
    if result.is_ok() {
        ctx.memory.succeeded(&key);
    }
    result
}

async fn reconcile_inner(
    pool: Arc<MySQLTenantPool>,
    ctx: &Arc<PoolContext>,
) -> Result<Action, Error> {
    let namespace = pool
        .namespace()
        .ok_or(BuildError::MissingPoolMetadata("namespace"))?;
    let api: Api<MySQLTenantPool> = Api::namespaced(ctx.client.clone(), &namespace);
    if pool.metadata.deletion_timestamp.is_none()
        && let Err(message) = validate(&pool, ctx)
    {
        return report_invalid(&api, &pool, &message, ctx).await;
    }
    finalizer(&api, FINALIZER, pool, |event| async {
        match event {
            FinalizerEvent::Apply(pool) => apply(&api, &pool, ctx).await,
            FinalizerEvent::Cleanup(pool) => cleanup(&pool, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The spec's own checks, and a `clusters.max` that would drop clusters the pool has.
fn validate(pool: &MySQLTenantPool, ctx: &PoolContext) -> Result<(), String> {
    pool.validate().map_err(|e| e.to_string())?;
    let registered = ctx
        .loops
        .snapshot(&object_key(pool))
        .map(|s| s.registered())
        .unwrap_or_default();
    decide::check_max(pool, &registered)
}

async fn patch_status(
    api: &Api<MySQLTenantPool>,
    pool: &MySQLTenantPool,
    status: MySQLTenantPoolStatus,
) -> Result<(), Error> {
    if pool.status.as_ref() == Some(&status) {
        return Ok(());
    }
    apply_status(api, &pool.name_any(), &status).await
}

async fn report_invalid(
    api: &Api<MySQLTenantPool>,
    pool: &MySQLTenantPool,
    message: &str,
    ctx: &PoolContext,
) -> Result<Action, Error> {
    let previous = pool.status.clone().unwrap_or_default();
    warn_invalid(&ctx.recorder, pool, &previous.conditions, message).await;
    let status = status::invalid_pool_status(
        &previous,
        message,
        pool.metadata.generation,
        &clock::rfc3339(),
    );
    patch_status(api, pool, status).await?;
    Ok(Action::requeue(INVALID_INTERVAL))
}

/// The certificate every member and proxy of the pool shares, as the template's `tls` says:
/// a cert-manager `Certificate`, or the operator's own CA and a certificate it issues (again
/// when the pool may grow to clusters it does not name), or nothing when the user keeps the
/// Secret.
async fn ensure_tls(client: &Client, namespace: &str, pool: &MySQLTenantPool) -> Result<(), Error> {
    let Some(tls) = &pool.spec.cluster_template.tls else {
        return Ok(());
    };
    if let Some(certificate) = pool_builders::pool_certificate(pool)? {
        return apply_certificate(client, namespace, &certificate).await;
    }
    if !tls.self_issued() {
        return Ok(());
    }
    let names = pool_builders::pool_tls_names(pool)?;
    let name = pool.name_any();
    ensure_self_issued(
        client,
        namespace,
        SelfIssued {
            owner: &name,
            ca_secret: pool_ca_secret_name(&name),
            cert_secret: pool_tls_secret_name(pool),
            names_hash: Some((NAMES_ANNOTATION, pool_builders::names_hash(&names))),
            names,
        },
        |authority| pool_builders::pool_ca_secret(pool, authority),
        |authority, issued, names| {
            pool_builders::pool_issued_secret(pool, authority, issued, names)
        },
    )
    .await
}

async fn apply(
    api: &Api<MySQLTenantPool>,
    pool: &MySQLTenantPool,
    ctx: &PoolContext,
) -> Result<Action, Error> {
    let namespace = pool
        .namespace()
        .ok_or(BuildError::MissingPoolMetadata("namespace"))?;
    let client = &ctx.client;
    let key = object_key(pool);
    let snapshot = ctx.loops.snapshot(&key).unwrap_or_default();
    let count = decide::cluster_count(pool, &snapshot.registered(), snapshot.wanted);
    // Build everything before applying anything: a pool that cannot be built is left as it
    // is rather than half-updated.
    // The shared accounts' Secrets that do not exist yet.
    let secrets = missing_credentials(
        client,
        &namespace,
        generated_pool_credentials(pool),
        |passwords| pool_builders::pool_credentials_secrets(pool, passwords),
    )
    .await?;
    let clusters = pool_builders::pool_clusters(pool, count)?;
    let document = pool_builders::pool_configmap(pool, count)?;
    let proxies = if pool.spec.proxy.replicas > 0 {
        Some((
            // Not on an API server without policy/v1 (before Kubernetes 1.21): see `apis`.
            ctx.apis
                .policy_v1
                .then(|| pool_builders::pool_pod_disruption_budget(pool))
                .transpose()?,
            pool_builders::pool_client_service(pool)?,
            pool_builders::pool_proxy_network_policy(pool, &ctx.operator_namespace)?,
            pool_builders::pool_proxy_deployment(pool, &ctx.proxy_image)?,
        ))
    } else {
        None
    };

    // The accounts and the certificate before the clusters and proxies that use them.
    for secret in &secrets {
        apply_object(client, &namespace, secret).await?;
    }
    ensure_tls(client, &namespace, pool).await?;
    for cluster in &clusters {
        apply_object(client, &namespace, cluster).await?;
    }
    // The document before the proxies that mount it: a new proxy knows every cluster.
    apply_object(client, &namespace, &document).await?;
    match &proxies {
        Some((pdb, service, network_policy, deployment)) => {
            if let Some(pdb) = pdb {
                apply_object(client, &namespace, pdb).await?;
            }
            apply_object(client, &namespace, service).await?;
            apply_object(client, &namespace, network_policy).await?;
            apply_object(client, &namespace, deployment).await?;
        }
        None if ctx
            .memory
            .proxies_off_pending(&key, pool.metadata.generation) =>
        {
            scale_down_proxies(client, &namespace, &pool_proxy_name(&pool.name_any())).await?;
            ctx.memory.proxies_off_done(&key, pool.metadata.generation);
        }
        None => {}
    }

    let snapshot = ctx.loops.ensure(pool, count);
    let previous = pool.status.clone().unwrap_or_default();
    let status = status::pool_status(
        &previous,
        &snapshot,
        pool,
        count,
        pool.metadata.generation,
        &clock::rfc3339(),
    );
    patch_status(api, pool, status).await?;
    Ok(Action::requeue(STATUS_INTERVAL))
}

async fn cleanup(pool: &MySQLTenantPool, ctx: &PoolContext) -> Result<Action, Error> {
    let key = object_key(pool);
    ctx.loops.stop(&key);
    ctx.memory.forget_proxies_off(&key);
    let event = ClusterEvent {
        warning: false,
        reason: "Deleting",
        action: "Cleanup",
        note: "the pool's loop stopped; its clusters and other objects are garbage-collected, \
               the data volumes are kept"
            .to_string(),
    };
    common::publish(&ctx.recorder, pool, event).await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests;
