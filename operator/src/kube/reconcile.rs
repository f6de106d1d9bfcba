//! The reconciler of one `MySQLCluster`: validate, hold a finalizer, server-side apply every
//! object the builders make, and report status.
//!
//! The orchestration itself (observing the members, failovers, publishing topologies) is not
//! done here: it runs as a per-cluster task that the reconciler starts, updates and stops
//! through [`Orchestrations`], and whose latest [`Snapshot`] the status is made from. The
//! reconciler requeues itself every [`STATUS_INTERVAL`] so the status follows the task.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use ::kube::runtime::controller::Action;
use ::kube::runtime::events::Recorder;
use ::kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use ::kube::{Client, Resource, ResourceExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::apis::Apis;
use super::builders::{self, BuildError, Credential};
use super::common::{self, FIELD_MANAGER, cluster_key};
use super::metrics::Metrics;
use super::orchestration::Orchestrations;
use super::status::{self, ClusterEvent};
use crate::clock;
use crate::crd::{Condition, MySQLCluster, MySQLClusterStatus};
use crate::tls::authority::{Authority, Issued};

pub mod memory;

use memory::Memory;

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
    /// Applying one object failed.
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: ::kube::Error,
    },
    /// Reading one object failed.
    #[error("reading {kind} {name}: {source}")]
    Read {
        kind: String,
        name: String,
        #[source]
        source: ::kube::Error,
    },
    #[error("building objects: {0}")]
    Build(#[from] BuildError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("generating a password: {0}")]
    Random(String),
    #[error("TLS: {0}")]
    Tls(String),
    /// A deletion waits for work under way (a tenant move) to end.
    #[error("{0}")]
    Held(String),
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
    /// What the API server serves of the APIs the controller can do without.
    pub apis: Apis,
    memory: Memory,
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
            apis: Apis::default(),
            memory: Memory::default(),
        }
    }

    /// The optional APIs the API server serves, as discovery found them (else all of them).
    pub fn with_apis(mut self, apis: Apis) -> Self {
        self.apis = apis;
        self
    }

    /// The operator image the member pods take the agent from (else
    /// [`builders::DEFAULT_OPERATOR_IMAGE`]).
    pub fn with_operator_image(mut self, image: String) -> Self {
        self.operator_image = image;
        self
    }
}

impl Error {
    /// The error as a sentence for a status condition or an Event: the object's kind and name
    /// and the API server's own message, without the client's debug dump.
    pub fn for_people(&self) -> String {
        let (verb, kind, name, source) = match self {
            Error::Apply { kind, name, source } => ("applying", kind, name, source),
            Error::Read { kind, name, source } => ("reading", kind, name, source),
            Error::Finalizer(e) => {
                return match e.as_ref() {
                    finalizer::Error::ApplyFailed(inner)
                    | finalizer::Error::CleanupFailed(inner) => inner.for_people(),
                    other => other.to_string(),
                };
            }
            other => return other.to_string(),
        };
        match source {
            ::kube::Error::Api(status) => format!(
                "{verb} {kind} {name}: {} ({} {})",
                status.message, status.code, status.reason
            ),
            other => format!("{verb} {kind} {name}: {other}"),
        }
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
    let (failures, delay) = ctx.memory.failed(&key);
    tracing::warn!(cluster = %key, error = %error.for_people(), failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Reconciles one `MySQLCluster`, recording metrics.
pub async fn reconcile(cluster: Arc<MySQLCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = cluster_key(&cluster);
    let result = reconcile_inner(cluster, &ctx).await;
    ctx.metrics.observe(started.elapsed(), result.is_err());
    if result.is_ok() {
        ctx.memory.succeeded(&key);
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
    apply_status(api, &cluster.name_any(), &status).await
}

/// Server-side applies the whole `status` of object `name`: fields the operator stops
/// reporting (a primary that is gone) are removed, which a merge patch would leave behind.
pub(crate) async fn apply_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl Serialize,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name },
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: format!("{} status", K::kind(&())),
        name: name.to_string(),
        source,
    })?;
    Ok(())
}

async fn report_invalid(
    api: &Api<MySQLCluster>,
    cluster: &MySQLCluster,
    message: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    let previous = cluster.status.clone().unwrap_or_default();
    warn_invalid(&ctx.recorder, cluster, &previous.conditions, message).await;
    let status = status::invalid_status(
        &previous,
        message,
        cluster.metadata.generation,
        &clock::rfc3339(),
    );
    patch_status(api, cluster, status).await?;
    Ok(Action::requeue(INVALID_INTERVAL))
}

/// Records an `InvalidSpec` warning on `object` (a cluster or a tenant pool), unless its
/// `conditions` report `message` already.
pub(crate) async fn warn_invalid<K>(
    recorder: &Recorder,
    object: &K,
    conditions: &[Condition],
    message: &str,
) where
    K: Resource<DynamicType = ()>,
{
    let already_reported = conditions.iter().any(|c| {
        c.type_ == Condition::DEGRADED && c.reason == "InvalidSpec" && c.message == message
    });
    if !already_reported {
        let event = ClusterEvent {
            warning: true,
            reason: "InvalidSpec",
            action: "Validate",
            note: message.to_string(),
        };
        common::publish(recorder, object, event).await;
    }
}

/// Server-side applies `object` with the operator's field manager, taking over conflicting
/// fields: the operator owns these objects. An error names the object's kind and name.
pub(crate) async fn apply_object<K>(
    client: &Client,
    namespace: &str,
    object: &K,
) -> Result<(), Error>
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
    .await
    .map_err(|source| Error::Apply {
        kind: K::kind(&()).into_owned(),
        name: name.clone(),
        source,
    })?;
    Ok(())
}

/// Reads `name`, if it exists; an error names the object's kind and name.
pub(crate) async fn read_object<K>(api: &Api<K>, name: &str) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    api.get_opt(name).await.map_err(|source| Error::Read {
        kind: K::kind(&()).into_owned(),
        name: name.to_string(),
        source,
    })
}

/// Scales the proxy Deployment `name`, left from when its cluster or pool ran proxies, down
/// to none; nothing when there is none. A merge patch, so a missing Deployment is not
/// created.
pub(crate) async fn scale_down_proxies(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(), Error> {
    let name = name.to_string();
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({ "spec": { "replicas": 0 } });
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(%namespace, deployment = %name, "proxies off: the proxy Deployment is scaled to 0");
            Ok(())
        }
        Err(::kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Apply {
            kind: "Deployment".into(),
            name,
            source,
        }),
    }
}

/// 32 random characters from `[A-Za-z0-9]` (about 190 bits).
pub(crate) fn random_password() -> Result<String, Error> {
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

/// The cluster's generated credential Secrets that do not exist yet.
async fn missing_cluster_credentials(
    client: &Client,
    namespace: &str,
    cluster: &MySQLCluster,
) -> Result<Vec<Secret>, Error> {
    let mut generated = Vec::new();
    for credential in Credential::ALL {
        if !credential.is_user_supplied(&cluster.spec) {
            generated.push((credential, credential.secret_name(cluster)?));
        }
    }
    missing_credentials(client, namespace, generated, |passwords| {
        builders::credentials_secrets(cluster, passwords)
    })
    .await
}

/// Of the `generated` credentials' Secrets (credential, Secret name), those that do not exist
/// yet, as `build` makes them from a password per credential. An existing one is never
/// re-applied: a new password would not change the accounts the servers already created.
pub(crate) async fn missing_credentials(
    client: &Client,
    namespace: &str,
    generated: Vec<(Credential, String)>,
    build: impl FnOnce(&BTreeMap<String, String>) -> Result<Vec<Secret>, BuildError>,
) -> Result<Vec<Secret>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut passwords = BTreeMap::new();
    let mut missing = Vec::new();
    for (credential, name) in generated {
        if read_object(&api, &name).await?.is_none() {
            passwords.insert(credential.as_str().to_string(), random_password()?);
            missing.push(name);
        } else {
            // The builder wants a password for each generated Secret; this one is discarded.
            passwords.insert(credential.as_str().to_string(), "unused".to_string());
        }
    }
    Ok(build(&passwords)?
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
        return apply_certificate(client, namespace, &certificate).await;
    }
    if !tls.self_issued() {
        return Ok(());
    }
    let name = cluster.name_any();
    ensure_self_issued(
        client,
        namespace,
        SelfIssued {
            owner: &name,
            ca_secret: builders::tls::ca_secret_name(&name),
            cert_secret: tls.secret(&name),
            names: builders::tls::kubernetes_names(&name, namespace),
            names_hash: None,
        },
        |authority| builders::tls::ca_secret(cluster, authority),
        |authority, issued, _| builders::tls::issued_secret(cluster, authority, issued),
    )
    .await
}

/// Applies a cert-manager `Certificate`.
pub(crate) async fn apply_certificate(
    client: &Client,
    namespace: &str,
    certificate: &DynamicObject,
) -> Result<(), Error> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "cert-manager.io",
        "v1",
        "Certificate",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let name = certificate.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(certificate),
    )
    .await
    .map_err(|e| {
        Error::Tls(format!(
            "applying cert-manager Certificate {name} (is cert-manager installed?): {e}"
        ))
    })?;
    Ok(())
}

/// A certificate the operator issues from a CA of its own, both kept in Secrets.
pub(crate) struct SelfIssued<'a> {
    /// Whose it is: the CA's subject, and the object named in logs.
    pub owner: &'a str,
    pub ca_secret: String,
    pub cert_secret: String,
    pub names: Vec<String>,
    /// For names that can change: the annotation of the certificate's Secret that holds a
    /// hash of them, and the hash of `names`. A certificate with another is issued again.
    pub names_hash: Option<(&'static str, String)>,
}

/// Keeps a self-issued certificate current: the CA made once (kept in `ca_secret`, built by
/// `ca_secret_object`), the certificate issued again when a third of its lifetime is left,
/// when another CA issued it, or when its names changed.
pub(crate) async fn ensure_self_issued(
    client: &Client,
    namespace: &str,
    issue: SelfIssued<'_>,
    ca_secret_object: impl Fn(&Authority) -> Result<Secret, BuildError>,
    issued_secret_object: impl Fn(&Authority, &Issued, &[String]) -> Result<Secret, BuildError>,
) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let now = std::time::SystemTime::now();
    let authority = match read_object(&secrets, &issue.ca_secret)
        .await?
        .and_then(|s| builders::tls::authority_from(issue.owner, &s))
    {
        Some(authority) => authority,
        None => {
            let authority =
                Authority::create(issue.owner, now).map_err(|e| Error::Tls(e.to_string()))?;
            apply_object(client, namespace, &ca_secret_object(&authority)?).await?;
            authority
        }
    };
    let current = read_object(&secrets, &issue.cert_secret).await?;
    let issued_by_this_ca = current
        .as_ref()
        .and_then(|s| s.data.as_ref()?.get(crate::tls::CA_FILE).cloned())
        .is_some_and(|ca| ca.0 == authority.cert_pem.as_bytes());
    let due = current
        .as_ref()
        .and_then(builders::tls::not_after)
        .is_none_or(|t| crate::tls::authority::due(t, now));
    let renamed = issue.names_hash.as_ref().is_some_and(|(annotation, hash)| {
        current
            .as_ref()
            .and_then(|s| s.metadata.annotations.as_ref()?.get(*annotation))
            != Some(hash)
    });
    if due || !issued_by_this_ca || renamed {
        let issued = authority
            .issue(&issue.names, now)
            .map_err(|e| Error::Tls(e.to_string()))?;
        apply_object(
            client,
            namespace,
            &issued_secret_object(&authority, &issued, &issue.names)?,
        )
        .await?;
        tracing::info!(owner = issue.owner, %namespace, secret = %issue.cert_secret, not_after = issued.not_after, "TLS certificate issued");
    }
    Ok(())
}

async fn apply(
    api: &Api<MySQLCluster>,
    cluster: &MySQLCluster,
    ctx: &Context,
) -> Result<Action, Error> {
    let previous = cluster.status.clone().unwrap_or_default();
    if let Err(error) = apply_objects(cluster, ctx).await {
        report_apply_failure(api, cluster, &previous, &error, ctx).await;
        return Err(error);
    }
    let snapshot = ctx.orchestrations.ensure(cluster);
    let now = clock::rfc3339();
    let mut status = status::cluster_status(
        &previous,
        &snapshot,
        &cluster.spec,
        cluster.metadata.generation,
        &now,
    );
    if let Some(event) = status::pause_event(&previous, cluster.spec.paused) {
        publish_event(ctx, cluster, event).await;
    }
    for event in status::cordon_events(&previous.members, &status.members) {
        publish_event(ctx, cluster, event).await;
    }
    if let Some(event) = status::read_only_event(&previous, &status) {
        publish_event(ctx, cluster, event).await;
    }
    if let Some(no_budget) = status::disruption_budget(ctx.apis.policy_v1) {
        let reported = previous
            .conditions
            .iter()
            .any(|c| c.type_ == Condition::DISRUPTION_BUDGET && c.message == no_budget.message);
        if !reported {
            let event = ClusterEvent {
                warning: true,
                reason: "NoDisruptionBudget",
                action: "Apply",
                note: no_budget.message.clone(),
            };
            publish_event(ctx, cluster, event).await;
        }
        status.conditions.extend(status::merge_conditions(
            &previous.conditions,
            vec![no_budget],
            cluster.metadata.generation,
            &now,
        ));
    }
    patch_status(api, cluster, status).await?;
    Ok(Action::requeue(STATUS_INTERVAL))
}

/// Says why applying failed, naming the object, in the `Degraded` condition and (once per
/// distinct failure) a Warning Event. The error itself is returned to the controller, which
/// retries with backoff.
async fn report_apply_failure(
    api: &Api<MySQLCluster>,
    cluster: &MySQLCluster,
    previous: &MySQLClusterStatus,
    error: &Error,
    ctx: &Context,
) {
    let message = error.for_people();
    if !status::already_degraded(&previous.conditions, status::APPLY_FAILED, &message) {
        let event = ClusterEvent {
            warning: true,
            reason: status::APPLY_FAILED,
            action: "Apply",
            note: message.clone(),
        };
        publish_event(ctx, cluster, event).await;
    }
    let status = status::apply_failed_status(
        previous,
        &message,
        cluster.metadata.generation,
        &clock::rfc3339(),
    );
    // The apply error is what the controller acts on; a status that cannot be written (the
    // same fault, often) is only logged.
    if let Err(e) = patch_status(api, cluster, status).await {
        tracing::warn!(cluster = %cluster_key(cluster), error = %e, "reporting a failed apply");
    }
}

/// Applies the members' StatefulSet. One made by a release whose StatefulSets rolled
/// themselves has the API server's default `rollingUpdate` beside its `RollingUpdate` type; no
/// field manager owns it, so an apply of `OnDelete` leaves it, and the API server refuses the
/// pair. That one gets the strategy replaced by a merge patch (once), then the apply again.
async fn apply_statefulset(
    client: &Client,
    namespace: &str,
    statefulset: &StatefulSet,
) -> Result<(), Error> {
    match apply_object(client, namespace, statefulset).await {
        Err(Error::Apply {
            source: ::kube::Error::Api(e),
            ..
        }) if e.code == 422 && e.message.contains("rollingUpdate") => {
            let name = statefulset.name_any();
            tracing::info!(%namespace, %name, "StatefulSet of an earlier release: rolled by the operator from now on");
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
            let patch = serde_json::json!({
                "spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}
            });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|source| Error::Apply {
                    kind: "StatefulSet".into(),
                    name: name.clone(),
                    source,
                })?;
            apply_object(client, namespace, statefulset).await
        }
        other => other,
    }
}

/// Applies every object of the cluster, stopping at the first that fails.
async fn apply_objects(cluster: &MySQLCluster, ctx: &Context) -> Result<(), Error> {
    let namespace = cluster
        .namespace()
        .ok_or(BuildError::MissingMetadata("namespace"))?;
    let client = &ctx.client;
    // Build everything before applying anything: a cluster that cannot be built is left as
    // it is rather than half-updated.
    let secrets = missing_cluster_credentials(client, &namespace, cluster).await?;
    let server_config = builders::server_configmap(cluster)?;
    let headless = builders::headless_service(cluster)?;
    let statefulset = builders::statefulset(cluster, &ctx.operator_image)?;
    let network_policy = builders::network_policy(cluster, &ctx.operator_namespace)?;
    let archiver = builders::archiver_deployment(cluster, &ctx.operator_image)?;
    // Not on an API server without policy/v1 (before Kubernetes 1.21): see `apis`.
    let pdb = if ctx.apis.policy_v1 {
        Some(builders::pod_disruption_budget(cluster)?)
    } else {
        None
    };
    // `proxy.replicas: 0`: no proxy objects (a tenant pool's clusters, or proxies run as
    // sidecars).
    let proxies = if cluster.spec.proxy.replicas > 0 {
        Some((
            builders::client_service(cluster)?,
            builders::proxy_network_policy(cluster, &ctx.operator_namespace)?,
            builders::proxy_deployment(cluster, &ctx.proxy_image)?,
            ctx.apis
                .policy_v1
                .then(|| builders::proxy_pod_disruption_budget(cluster))
                .transpose()?,
        ))
    } else {
        None
    };

    for secret in &secrets {
        apply_object(client, &namespace, secret).await?;
    }
    // The certificate before the pods that mount it.
    ensure_tls(client, &namespace, cluster).await?;
    apply_object(client, &namespace, &server_config).await?;
    apply_object(client, &namespace, &headless).await?;
    apply_object(client, &namespace, &network_policy).await?;
    apply_statefulset(client, &namespace, &statefulset).await?;
    if let Some(pdb) = &pdb {
        apply_object(client, &namespace, pdb).await?;
    }
    apply_object(client, &namespace, &archiver).await?;
    match &proxies {
        Some((client_service, proxy_network_policy, proxy, proxy_pdb)) => {
            apply_object(client, &namespace, client_service).await?;
            apply_object(client, &namespace, proxy_network_policy).await?;
            apply_object(client, &namespace, proxy).await?;
            if let Some(pdb) = proxy_pdb {
                apply_object(client, &namespace, pdb).await?;
            }
        }
        // Once per spec: a Deployment from when the cluster ran proxies is scaled down.
        None if ctx
            .memory
            .proxies_off_pending(&cluster_key(cluster), cluster.metadata.generation) =>
        {
            let name = builders::proxy_deployment_name(&cluster.name_any());
            scale_down_proxies(client, &namespace, &name).await?;
            ctx.memory
                .proxies_off_done(&cluster_key(cluster), cluster.metadata.generation);
        }
        None => {}
    }
    // The topology ConfigMap is written only by the orchestration's sink: applying it here
    // could put back an older epoch than the proxies already follow.
    Ok(())
}

async fn cleanup(cluster: &MySQLCluster, ctx: &Context) -> Result<Action, Error> {
    ctx.orchestrations.stop(&cluster_key(cluster));
    ctx.memory.forget_proxies_off(&cluster_key(cluster));
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
