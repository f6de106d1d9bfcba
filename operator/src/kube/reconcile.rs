//! The reconciler of one `MySQLCluster`: validate, hold a finalizer, server-side apply every
//! object the builders make, and report status.
//!
//! The orchestration itself (observing the members, failovers, publishing topologies) is not
//! done here: it runs as a per-cluster task that the reconciler starts, updates and stops
//! through [`Orchestrations`], and whose latest [`Snapshot`] the status is made from. The
//! reconciler requeues itself every [`STATUS_INTERVAL`] so the status follows the task.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use ::kube::runtime::controller::Action;
use ::kube::runtime::events::Recorder;
use ::kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use ::kube::{Client, Resource, ResourceExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::builders::{self, BuildError, Credential};
use super::common::{self, FIELD_MANAGER, cluster_key};
use super::metrics::Metrics;
use super::orchestration::Orchestrations;
use super::status::{self, ClusterEvent};
use crate::clock;
use crate::crd::{Condition, MySQLCluster, MySQLClusterStatus};

/// The finalizer the operator holds on every `MySQLCluster` it has acted on.
pub const FINALIZER: &str = "lagless.dev/cleanup";

/// How often a healthy cluster is reconciled again, so its status follows the orchestration.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// How often an invalid spec is looked at again (a fix to it triggers a reconcile anyway).
pub const INVALID_INTERVAL: Duration = Duration::from_secs(300);

/// The first retry delay after a failed reconcile; it doubles per failure up to
/// [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(5);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why a reconcile failed; each is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] ::kube::Error),
    #[error("building objects: {0}")]
    Build(#[from] BuildError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("generating a password: {0}")]
    Random(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// The lagless-proxy image of each cluster's proxy Deployment.
    pub proxy_image: String,
    /// The operator image, whose agent program the member pods run.
    pub operator_image: String,
    /// The namespace the operator runs in, which the NetworkPolicies admit its pods from.
    pub operator_namespace: String,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub orchestrations: Arc<dyn Orchestrations>,
    /// Consecutive failures per cluster (`namespace/name`), for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        proxy_image: String,
        recorder: Recorder,
        metrics: Metrics,
        orchestrations: Arc<dyn Orchestrations>,
    ) -> Self {
        Self {
            // In a pod, the client's default namespace is the pod's own (its service account's).
            operator_namespace: client.default_namespace().to_string(),
            client,
            proxy_image,
            operator_image: builders::DEFAULT_OPERATOR_IMAGE.to_string(),
            recorder,
            metrics,
            orchestrations,
            failures: Mutex::default(),
        }
    }

    /// The operator image the member pods take the agent from (else
    /// [`builders::DEFAULT_OPERATOR_IMAGE`]).
    pub fn with_operator_image(mut self, image: String) -> Self {
        self.operator_image = image;
        self
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A panic elsewhere while holding the lock leaves plain counters: still usable.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The retry delay after `failures` consecutive failures (1 or more).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    MIN_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// The controller's error policy: retry with exponential backoff per cluster.
pub fn error_policy(cluster: Arc<MySQLCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = cluster_key(&cluster);
    let failures = {
        let mut map = ctx.failures();
        let n = map.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(failures);
    tracing::warn!(cluster = %key, %error, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Reconciles one `MySQLCluster`, recording metrics.
pub async fn reconcile(cluster: Arc<MySQLCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = cluster_key(&cluster);
    let result = reconcile_inner(cluster, &ctx).await;
    ctx.metrics.observe(started.elapsed(), result.is_err());
    if result.is_ok() {
        ctx.failures().remove(&key);
    }
    result
}

async fn reconcile_inner(cluster: Arc<MySQLCluster>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let namespace = cluster
        .namespace()
        .ok_or(BuildError::MissingMetadata("namespace"))?;
    let api: Api<MySQLCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    // A bad spec is reported before the finalizer is added: nothing was created, so nothing
    // needs cleaning up. A cluster being deleted is cleaned up whatever its spec.
    if cluster.metadata.deletion_timestamp.is_none()
        && let Err(errors) = cluster.validate()
    {
        return report_invalid(&api, &cluster, &errors.to_string(), ctx).await;
    }
    finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            FinalizerEvent::Apply(cluster) => apply(&api, &cluster, ctx).await,
            FinalizerEvent::Cleanup(cluster) => cleanup(&cluster, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn publish_event(ctx: &Context, cluster: &MySQLCluster, event: ClusterEvent) {
    common::publish(&ctx.recorder, cluster, event).await;
}

async fn patch_status(
    api: &Api<MySQLCluster>,
    cluster: &MySQLCluster,
    status: MySQLClusterStatus,
) -> Result<(), Error> {
    if cluster.status.as_ref() == Some(&status) {
        return Ok(());
    }
    // Server-side apply of the whole status: fields the operator stops reporting (a primary
    // that is gone) are removed, which a merge patch would leave behind.
    let body = serde_json::json!({
        "apiVersion": MySQLCluster::api_version(&()),
        "kind": MySQLCluster::kind(&()),
        "metadata": { "name": cluster.name_any() },
        "status": status,
    });
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

async fn report_invalid(
    api: &Api<MySQLCluster>,
    cluster: &MySQLCluster,
    message: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    let previous = cluster.status.clone().unwrap_or_default();
    let already_reported = previous.conditions.iter().any(|c| {
        c.type_ == Condition::DEGRADED && c.reason == "InvalidSpec" && c.message == message
    });
    if !already_reported {
        publish_event(
            ctx,
            cluster,
            ClusterEvent {
                warning: true,
                reason: "InvalidSpec",
                action: "Validate",
                note: message.to_string(),
            },
        )
        .await;
    }
    let status = status::invalid_status(
        &previous,
        message,
        cluster.metadata.generation,
        &clock::rfc3339(),
    );
    patch_status(api, cluster, status).await?;
    Ok(Action::requeue(INVALID_INTERVAL))
}

/// Server-side applies `object` with the operator's field manager, taking over conflicting
/// fields: the operator owns these objects.
async fn apply_object<K>(client: &Client, namespace: &str, object: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let name = object
        .meta()
        .name
        .clone()
        .ok_or(BuildError::MissingMetadata("name"))?;
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// 32 random characters from `[A-Za-z0-9]` (about 190 bits).
fn random_password() -> Result<String, Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    // 256 is not a multiple of 62, so a few characters are slightly likelier; at 32 characters
    // the password keeps far more entropy than an attacker can search.
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

/// The generated credential Secrets that do not exist yet. An existing one is never
/// re-applied: a new password would not change the accounts the servers already created.
async fn missing_credentials(
    client: &Client,
    namespace: &str,
    cluster: &MySQLCluster,
) -> Result<Vec<Secret>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut generated = BTreeMap::new();
    let mut missing = Vec::new();
    for credential in Credential::ALL {
        if credential.is_user_supplied(&cluster.spec) {
            continue;
        }
        let name = credential.secret_name(cluster)?;
        if api.get_opt(&name).await?.is_none() {
            generated.insert(credential.as_str().to_string(), random_password()?);
            missing.push(name);
        } else {
            // The builder wants a password for each generated Secret; this one is discarded.
            generated.insert(credential.as_str().to_string(), "unused".to_string());
        }
    }
    Ok(builders::credentials_secrets(cluster, &generated)?
        .into_iter()
        .filter(|s| {
            s.metadata
                .name
                .as_ref()
                .is_some_and(|n| missing.contains(n))
        })
        .collect())
}

/// The cluster's certificate, as `spec.tls` says: a cert-manager `Certificate` to apply, or
/// the operator's own CA and a certificate it issues (again when a third of its lifetime is
/// left), or nothing when the user keeps the Secret.
async fn ensure_tls(client: &Client, namespace: &str, cluster: &MySQLCluster) -> Result<(), Error> {
    let Some(tls) = &cluster.spec.tls else {
        return Ok(());
    };
    if let Some(certificate) = builders::tls::certificate(cluster)? {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "cert-manager.io",
            "v1",
            "Certificate",
        ));
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let name = builders::tls::certificate_name(&cluster.name_any());
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&certificate),
        )
        .await
        .map_err(|e| {
            Error::Tls(format!(
                "applying cert-manager Certificate {name} (is cert-manager installed?): {e}"
            ))
        })?;
        return Ok(());
    }
    if !tls.self_issued() {
        return Ok(());
    }
    let name = cluster.name_any();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let now = std::time::SystemTime::now();
    let ca_name = builders::tls::ca_secret_name(&name);
    let authority = match secrets
        .get_opt(&ca_name)
        .await?
        .and_then(|s| builders::tls::authority_from(&name, &s))
    {
        Some(authority) => authority,
        None => {
            let authority = crate::tls::authority::Authority::create(&name, now)
                .map_err(|e| Error::Tls(e.to_string()))?;
            apply_object(
                client,
                namespace,
                &builders::tls::ca_secret(cluster, &authority)?,
            )
            .await?;
            authority
        }
    };
    let current = secrets.get_opt(&tls.secret(&name)).await?;
    let issued_by_this_ca = current
        .as_ref()
        .and_then(|s| s.data.as_ref()?.get(crate::tls::CA_FILE).cloned())
        .is_some_and(|ca| ca.0 == authority.cert_pem.as_bytes());
    let due = current
        .as_ref()
        .and_then(builders::tls::not_after)
        .is_none_or(|t| crate::tls::authority::due(t, now));
    if due || !issued_by_this_ca {
        let names = crate::kube::builders::tls::kubernetes_names(&name, namespace);
        let issued = authority
            .issue(&names, now)
            .map_err(|e| Error::Tls(e.to_string()))?;
        apply_object(
            client,
            namespace,
            &builders::tls::issued_secret(cluster, &authority, &issued)?,
        )
        .await?;
        tracing::info!(cluster = %cluster_key(cluster), not_after = issued.not_after, "TLS certificate issued");
    }
    Ok(())
}

async fn apply(
    api: &Api<MySQLCluster>,
    cluster: &MySQLCluster,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = cluster
        .namespace()
        .ok_or(BuildError::MissingMetadata("namespace"))?;
    let client = &ctx.client;
    // Build everything before applying anything: a cluster that cannot be built is left as
    // it is rather than half-updated.
    let secrets = missing_credentials(client, &namespace, cluster).await?;
    let server_config = builders::server_configmap(cluster)?;
    let headless = builders::headless_service(cluster)?;
    let statefulset = builders::statefulset(cluster, &ctx.operator_image)?;
    let network_policy = builders::network_policy(cluster, &ctx.operator_namespace)?;
    let proxy_network_policy = builders::proxy_network_policy(cluster, &ctx.operator_namespace)?;
    let pdb = builders::pod_disruption_budget(cluster)?;
    let client_service = builders::client_service(cluster)?;
    let proxy = builders::proxy_deployment(cluster, &ctx.proxy_image)?;

    for secret in &secrets {
        apply_object(client, &namespace, secret).await?;
    }
    // The certificate before the pods that mount it.
    ensure_tls(client, &namespace, cluster).await?;
    apply_object(client, &namespace, &server_config).await?;
    apply_object(client, &namespace, &headless).await?;
    apply_object(client, &namespace, &network_policy).await?;
    apply_object(client, &namespace, &statefulset).await?;
    apply_object(client, &namespace, &pdb).await?;
    apply_object(client, &namespace, &client_service).await?;
    apply_object(client, &namespace, &proxy_network_policy).await?;
    apply_object(client, &namespace, &proxy).await?;
    // The topology ConfigMap is written only by the orchestration's sink: applying it here
    // could put back an older epoch than the proxies already follow.

    let snapshot = ctx.orchestrations.ensure(cluster);
    let previous = cluster.status.clone().unwrap_or_default();
    let status = status::cluster_status(
        &previous,
        &snapshot,
        &cluster.spec,
        cluster.metadata.generation,
        &clock::rfc3339(),
    );
    patch_status(api, cluster, status).await?;
    Ok(Action::requeue(STATUS_INTERVAL))
}

async fn cleanup(cluster: &MySQLCluster, ctx: &Context) -> Result<Action, Error> {
    ctx.orchestrations.stop(&cluster_key(cluster));
    publish_event(
        ctx,
        cluster,
        ClusterEvent {
            warning: false,
            reason: "Deleting",
            action: "Cleanup",
            note: "orchestration stopped; the owned objects are garbage-collected, the data \
                   volumes are kept"
                .to_string(),
        },
    )
    .await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests;
