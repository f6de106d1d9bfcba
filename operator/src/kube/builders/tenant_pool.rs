//! A `MySQLTenantPool`'s objects: the `MySQLCluster`s it expands into, the pool document the
//! proxies follow, the pool's proxies (Deployment, client Service, PodDisruptionBudget,
//! NetworkPolicy), the accounts every cluster of the pool shares and the certificate they
//! share with TLS. Each is owned by the pool and labelled with it.
//!
//! Names, for pool `p` (its clusters `p-directory`, `p-c0`, `p-c1`, … are ordinary
//! `MySQLCluster`s and get their own objects, see [`super`]):
//!
//! | object | name |
//! | --- | --- |
//! | pool document ConfigMap (`pool.json`) | `p-pool` |
//! | proxy Deployment | `p-proxy` |
//! | client Service (what applications connect to) | `p` |
//! | PodDisruptionBudget of the proxies | `p-proxy` |
//! | NetworkPolicy of the proxies | `p-proxy` |
//! | proxy users Secret (given by the user) | `p-proxy-users` |
//! | shared accounts (when the template names none) | `p-admin`, `p-replication`, `p-lookup`, `p-monitor` |
//! | with TLS: the certificate every member and proxy uses | `p-tls` (and the operator's CA `p-tls-ca`) |

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, KeyToPath, Secret, Service, Volume,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;

use crate::crd::tenant_pool::{
    self, MySQLTenantPool, POOL_LABEL, directory_name, tenant_cluster_name,
};
use crate::crd::{MySQLCluster, MySQLClusterSpec, TlsSpec};
use crate::tls::authority::{Authority, Issued};

use super::members::config_hash;
use super::proxy::{ProxyPods, client_service_object, proxy_network_policy_object, proxy_pods};
use super::secrets::credential_secret;
use super::{
    BuildError, Component, Credential, PROXY_USERS_KEY, PROXY_USERS_MOUNT, TOPOLOGY_KEY,
    controller_reference, env_from_secret, headless_service_name, labels, mount, selector_labels,
    tls, topology_configmap_name,
};

/// The key of the pool document in the pool ConfigMap.
pub const POOL_DOCUMENT_KEY: &str = "pool.json";

/// Where the pool's proxies mount the pool ConfigMap, as a directory.
pub const POOL_MOUNT: &str = "/etc/lagless/pool";

/// Where the pool's proxies mount each cluster's topology ConfigMap: cluster `c`'s at
/// `<CLUSTERS_MOUNT>/c`, as a directory.
pub const CLUSTERS_MOUNT: &str = "/etc/lagless/clusters";

/// The annotation on a self-issued pool certificate: a hash of the names it carries, so a
/// pool that may grow to more clusters gets a certificate for them.
pub const NAMES_ANNOTATION: &str = "lagless.dev/names-hash";

/// The ConfigMap with the pool document.
pub fn pool_configmap_name(pool: &str) -> String {
    format!("{pool}-pool")
}

/// The pool's proxy Deployment, and its PodDisruptionBudget and NetworkPolicy.
pub fn pool_proxy_name(pool: &str) -> String {
    format!("{pool}-proxy")
}

/// The Service applications connect to.
pub fn pool_service_name(pool: &str) -> String {
    pool.to_string()
}

/// The Secret with the pool proxies' users file (key [`PROXY_USERS_KEY`]), made by the user.
pub fn pool_users_secret_name(pool: &str) -> String {
    format!("{pool}-proxy-users")
}

/// Where the pool's proxies find cluster `cluster`'s topology.
pub fn pool_topology_path(cluster: &str) -> PathBuf {
    PathBuf::from(CLUSTERS_MOUNT)
        .join(cluster)
        .join(TOPOLOGY_KEY)
}

/// The Secret of the certificate the pool's members and proxies share: the template's
/// `tls.secretName`, else `<pool>-tls`.
pub fn pool_tls_secret_name(pool: &MySQLTenantPool) -> String {
    pool.spec
        .cluster_template
        .tls
        .clone()
        .unwrap_or_default()
        .secret(pool.name())
}

/// The Secret of the pool's own CA, with a self-issued certificate.
pub fn pool_ca_secret_name(pool: &str) -> String {
    format!("{pool}-tls-ca")
}

/// The Secret that holds the shared account `credential` of the pool's clusters: the one the
/// template names, else `<pool>-<purpose>`. `None` for the accounts each cluster keeps to
/// itself (the agent token, the topology push token).
pub fn pool_credential_secret_name(
    pool: &MySQLTenantPool,
    credential: Credential,
) -> Option<String> {
    let credentials = &pool.spec.cluster_template.credentials;
    let name = pool.name();
    match credential {
        Credential::Admin => Some(credentials.admin_secret(name)),
        Credential::Replication => Some(credentials.replication_secret(name)),
        Credential::Lookup => Some(credentials.lookup_secret(name)),
        Credential::Monitor => Some(credentials.monitor_secret(name)),
        Credential::Agent | Credential::ProxyAdmin => None,
    }
}

/// Whether the template names the Secret of shared account `credential` (else the operator
/// generates it).
fn user_supplied(pool: &MySQLTenantPool, credential: Credential) -> bool {
    let credentials = &pool.spec.cluster_template.credentials;
    match credential {
        Credential::Admin => credentials.admin_secret_name.is_some(),
        Credential::Replication => credentials.replication_secret_name.is_some(),
        Credential::Lookup => credentials.lookup_secret_name.is_some(),
        Credential::Monitor => credentials.monitor_secret_name.is_some(),
        Credential::Agent | Credential::ProxyAdmin => true,
    }
}

/// The shared accounts whose Secrets the operator generates for `pool`.
pub fn generated_pool_credentials(pool: &MySQLTenantPool) -> Vec<(Credential, String)> {
    Credential::ALL
        .into_iter()
        .filter(|c| !user_supplied(pool, *c))
        .filter_map(|c| Some((c, pool_credential_secret_name(pool, c)?)))
        .collect()
}

/// What every pool builder needs from the pool's metadata.
struct PoolContext<'a> {
    name: &'a str,
    namespace: &'a str,
    owner: OwnerReference,
}

impl<'a> PoolContext<'a> {
    fn new(pool: &'a MySQLTenantPool) -> Result<Self, BuildError> {
        let present = |value: Option<&'a String>, field| {
            value
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .ok_or(BuildError::MissingPoolMetadata(field))
        };
        let name = present(pool.metadata.name.as_ref(), "name")?;
        let namespace = present(pool.metadata.namespace.as_ref(), "namespace")?;
        let uid = present(pool.metadata.uid.as_ref(), "uid")?;
        Ok(Self {
            name,
            namespace,
            owner: controller_reference::<MySQLTenantPool>(name, uid),
        })
    }

    fn meta(&self, name: String, component: Component) -> ObjectMeta {
        let mut labels = labels(self.name, component);
        labels.insert(POOL_LABEL.to_string(), self.name.to_string());
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    fn proxy_selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: Some(selector_labels(self.name, Component::Proxy)),
            ..LabelSelector::default()
        }
    }
}

/// The `MySQLCluster`s of `pool` with `count` tenant clusters: the directory's first. Each is
/// owned by the pool and runs no proxies of its own; with TLS, all of them use the pool's one
/// certificate ([`pool_tls_secret_name`]), so the pool's proxies verify every member against
/// one CA.
pub fn pool_clusters(pool: &MySQLTenantPool, count: u32) -> Result<Vec<MySQLCluster>, BuildError> {
    let ctx = PoolContext::new(pool)?;
    let tls = pool.spec.cluster_template.tls.as_ref().map(|_| TlsSpec {
        secret_name: Some(pool_tls_secret_name(pool)),
        issuer_ref: None,
    });
    Ok(tenant_pool::clusters_with(pool, count)
        .into_iter()
        .map(|mut cluster| {
            cluster.metadata.namespace = Some(ctx.namespace.to_string());
            cluster
                .metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(
                    "app.kubernetes.io/managed-by".into(),
                    "lagless-operator".into(),
                );
            cluster.spec.tls.clone_from(&tls);
            cluster
        })
        .collect())
}

/// The names of `pool`'s first `count` tenant clusters.
pub fn tenant_cluster_names(pool: &MySQLTenantPool, count: u32) -> Vec<String> {
    (0..count)
        .map(|i| tenant_cluster_name(pool.name(), i))
        .collect()
}

/// The ConfigMap `<pool>-pool` with the pool document ([`POOL_DOCUMENT_KEY`]) of `pool` with
/// `count` tenant clusters, each one's topology where the pool's proxies mount it.
pub fn pool_configmap(pool: &MySQLTenantPool, count: u32) -> Result<ConfigMap, BuildError> {
    let ctx = PoolContext::new(pool)?;
    let document = crate::pool::document::document(
        pool,
        &tenant_cluster_names(pool, count),
        pool_topology_path,
    );
    let mut json =
        serde_json::to_string_pretty(&document).map_err(|e| BuildError::Document(e.to_string()))?;
    json.push('\n');
    Ok(ConfigMap {
        metadata: ctx.meta(pool_configmap_name(ctx.name), Component::Proxy),
        data: Some(BTreeMap::from([(POOL_DOCUMENT_KEY.to_string(), json)])),
        ..ConfigMap::default()
    })
}

/// The volume name of cluster `cluster`'s topology in the pool's proxy pods.
fn topology_volume(pool: &str, cluster: &str) -> String {
    let suffix = cluster
        .strip_prefix(pool)
        .and_then(|s| s.strip_prefix('-'))
        .unwrap_or(cluster);
    format!("{suffix}-topology")
}

/// A cluster's topology ConfigMap as a directory volume: `optional` for tenant clusters,
/// whose topology appears once they have a primary (the proxies take a cluster up when its
/// file appears); required for the directory's, which the proxies cannot start without.
fn topology_volume_of(pool: &str, cluster: &str, optional: bool) -> Volume {
    Volume {
        name: topology_volume(pool, cluster),
        config_map: Some(ConfigMapVolumeSource {
            name: topology_configmap_name(cluster),
            items: Some(vec![KeyToPath {
                key: TOPOLOGY_KEY.into(),
                path: TOPOLOGY_KEY.into(),
                ..KeyToPath::default()
            }]),
            optional: optional.then_some(true),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The Deployment `<pool>-proxy`: `spec.proxy.replicas` pods of `lagless-proxy`, each with
/// the pool document and the topology of the directory and of every tenant cluster the pool
/// may grow to (`clusters.max`, so growing never rolls the proxies), all mounted as
/// directories (never `subPath`, which would freeze them). They follow the directory
/// cluster's topology (`--topology`) and the pool document (`--pool`), read the directory
/// with the pool's administrator, and look users up and read positions with the lookup and
/// monitor accounts every cluster of the pool shares.
pub fn pool_proxy_deployment(
    pool: &MySQLTenantPool,
    proxy_image: &str,
) -> Result<Deployment, BuildError> {
    let ctx = PoolContext::new(pool)?;
    let credentials = &pool.spec.cluster_template.credentials;
    let (admin, lookup, monitor) = (
        credentials.admin_secret(ctx.name),
        credentials.lookup_secret(ctx.name),
        credentials.monitor_secret(ctx.name),
    );
    let spec = proxy_spec(pool)?;
    let directory = directory_name(ctx.name);
    let max = u32::try_from(pool.spec.clusters.max.max(0)).unwrap_or(0);
    let tenant_clusters = tenant_cluster_names(pool, max);
    let mut volumes = vec![
        Volume {
            name: "pool".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: pool_configmap_name(ctx.name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        topology_volume_of(ctx.name, &directory, false),
    ];
    volumes.extend(
        tenant_clusters
            .iter()
            .map(|c| topology_volume_of(ctx.name, c, true)),
    );
    let mounts = [("pool".to_string(), POOL_MOUNT.to_string())]
        .into_iter()
        .chain(
            std::iter::once(&directory)
                .chain(&tenant_clusters)
                .map(|c| {
                    (
                        topology_volume(ctx.name, c),
                        format!("{CLUSTERS_MOUNT}/{c}"),
                    )
                }),
        )
        .map(|(volume, path)| mount(&volume, &path, true))
        .collect();
    let mut pod_labels = selector_labels(ctx.name, Component::Proxy);
    pod_labels.insert(POOL_LABEL.to_string(), ctx.name.to_string());
    Ok(proxy_pods(ProxyPods {
        meta: ctx.meta(pool_proxy_name(ctx.name), Component::Proxy),
        selector: ctx.proxy_selector(),
        pod_labels,
        spec: &spec,
        replicas: pool.spec.proxy.replicas,
        image: proxy_image,
        args: vec![
            "--topology".to_string(),
            pool_topology_path(&directory).display().to_string(),
            "--pool".to_string(),
            format!("{POOL_MOUNT}/{POOL_DOCUMENT_KEY}"),
            "--users".to_string(),
            format!("{PROXY_USERS_MOUNT}/{PROXY_USERS_KEY}"),
        ],
        env: vec![
            env_from_secret("LAGLESS_PROXY_LOOKUP_USER", &lookup, "username"),
            env_from_secret("LAGLESS_PROXY_LOOKUP_PASSWORD", &lookup, "password"),
            env_from_secret("LAGLESS_PROXY_MONITOR_USER", &monitor, "username"),
            env_from_secret("LAGLESS_PROXY_MONITOR_PASSWORD", &monitor, "password"),
            // The directory is read and written (tenants placed) with the administrator.
            env_from_secret("LAGLESS_PROXY_DIRECTORY_USER", &admin, "username"),
            env_from_secret("LAGLESS_PROXY_DIRECTORY_PASSWORD", &admin, "password"),
        ],
        mounts,
        volumes,
        users_secret: pool_users_secret_name(ctx.name),
        tls_name: ctx.name,
    }))
}

/// The spec the pool's proxies are built from: the directory cluster's (its TLS is the
/// pool's), with the pool's proxy settings.
fn proxy_spec(pool: &MySQLTenantPool) -> Result<MySQLClusterSpec, BuildError> {
    let directory = pool_clusters(pool, 0)?
        .into_iter()
        .next()
        .ok_or(BuildError::MissingPoolMetadata("name"))?;
    let mut spec = directory.spec;
    spec.proxy = pool.spec.proxy.clone();
    Ok(spec)
}

/// The Service `<pool>` that applications connect to: the pool's proxies, on port 3306, of
/// the type `spec.proxy.serviceType`.
pub fn pool_client_service(pool: &MySQLTenantPool) -> Result<Service, BuildError> {
    let ctx = PoolContext::new(pool)?;
    Ok(client_service_object(
        ctx.meta(pool_service_name(ctx.name), Component::Proxy),
        ctx.name,
        &pool.spec.proxy.service_type,
    ))
}

/// The PodDisruptionBudget `<pool>-proxy`: a node drain takes at most one of the pool's
/// proxies at a time.
pub fn pool_pod_disruption_budget(
    pool: &MySQLTenantPool,
) -> Result<PodDisruptionBudget, BuildError> {
    let ctx = PoolContext::new(pool)?;
    Ok(PodDisruptionBudget {
        metadata: ctx.meta(pool_proxy_name(ctx.name), Component::Proxy),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(ctx.proxy_selector()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

/// The NetworkPolicy `<pool>-proxy`, as a cluster's proxies have: clients on the MySQL port
/// from pods of the namespace, or from anywhere when the Service is published outside the
/// Kubernetes cluster; the admin port only from the namespace and the operator.
pub fn pool_proxy_network_policy(
    pool: &MySQLTenantPool,
    operator_namespace: &str,
) -> Result<NetworkPolicy, BuildError> {
    let ctx = PoolContext::new(pool)?;
    Ok(proxy_network_policy_object(
        ctx.meta(pool_proxy_name(ctx.name), Component::Proxy),
        ctx.proxy_selector(),
        &pool.spec.proxy.service_type,
        operator_namespace,
    ))
}

/// The Secrets of the shared accounts the template names none for ([`generated_pool_credentials`]),
/// each with `username` and `password`; `generated` maps each purpose
/// ([`Credential::as_str`]) to a password the caller generated once.
pub fn pool_credentials_secrets(
    pool: &MySQLTenantPool,
    generated: &BTreeMap<String, String>,
) -> Result<Vec<Secret>, BuildError> {
    let ctx = PoolContext::new(pool)?;
    generated_pool_credentials(pool)
        .into_iter()
        .map(|(credential, name)| {
            credential_secret(ctx.meta(name, Component::Mysql), credential, generated)
        })
        .collect()
}

/// The names the pool's certificate carries: every member of the directory and of every
/// tenant cluster the pool may grow to, the pool's client Service, and the loopback (the
/// agent's backup reaches its own server there).
pub fn pool_tls_names(pool: &MySQLTenantPool) -> Result<Vec<String>, BuildError> {
    let ctx = PoolContext::new(pool)?;
    let ns = ctx.namespace;
    let max = u32::try_from(pool.spec.clusters.max.max(0)).unwrap_or(0);
    let clusters = std::iter::once(directory_name(ctx.name)).chain(tenant_cluster_names(pool, max));
    let mut names = Vec::new();
    for cluster in clusters {
        let headless = headless_service_name(&cluster);
        names.push(format!("*.{headless}.{ns}.svc"));
        names.push(format!("*.{headless}.{ns}.svc.cluster.local"));
    }
    let service = pool_service_name(ctx.name);
    names.extend([
        service.clone(),
        format!("{service}.{ns}"),
        format!("{service}.{ns}.svc"),
        format!("{service}.{ns}.svc.cluster.local"),
        "localhost".into(),
        "127.0.0.1".into(),
    ]);
    Ok(names)
}

/// A hash of `names`, for [`NAMES_ANNOTATION`].
pub fn names_hash(names: &[String]) -> String {
    let parts: Vec<&str> = names.iter().map(String::as_str).collect();
    config_hash(&parts)
}

/// The cert-manager `Certificate` `<pool>-tls`, when the template's `tls.issuerRef` names an
/// issuer: the names of [`pool_tls_names`], issued into the Secret every member and proxy of
/// the pool mounts.
pub fn pool_certificate(pool: &MySQLTenantPool) -> Result<Option<DynamicObject>, BuildError> {
    let Some(issuer) = pool
        .spec
        .cluster_template
        .tls
        .as_ref()
        .and_then(|t| t.issuer_ref.as_ref())
    else {
        return Ok(None);
    };
    let ctx = PoolContext::new(pool)?;
    Ok(Some(tls::certificate_object(
        ctx.meta(tls::certificate_name(ctx.name), Component::Mysql),
        &pool_tls_secret_name(pool),
        issuer,
        pool_tls_names(pool)?,
    )))
}

/// The Secret `<pool>-tls-ca` holding the operator's own CA for the pool.
pub fn pool_ca_secret(pool: &MySQLTenantPool, authority: &Authority) -> Result<Secret, BuildError> {
    let ctx = PoolContext::new(pool)?;
    Ok(tls::ca_secret_object(
        ctx.meta(pool_ca_secret_name(ctx.name), Component::Mysql),
        authority,
    ))
}

/// The Secret `<pool>-tls` of a certificate for `names` the pool's CA issued, annotated with
/// the names' hash.
pub fn pool_issued_secret(
    pool: &MySQLTenantPool,
    authority: &Authority,
    issued: &Issued,
    names: &[String],
) -> Result<Secret, BuildError> {
    let ctx = PoolContext::new(pool)?;
    let mut meta = ctx.meta(pool_tls_secret_name(pool), Component::Mysql);
    meta.annotations = Some(BTreeMap::from([(
        NAMES_ANNOTATION.to_string(),
        names_hash(names),
    )]));
    Ok(tls::issued_secret_object(meta, authority, issued))
}

#[cfg(test)]
mod tests;
