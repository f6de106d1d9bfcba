//! Object builders: pure functions from a `MySQLCluster` (or a `MySQLTenantPool`) to the
//! Kubernetes objects that run it.
//!
//! Every object carries the common labels ([`labels`]) and a controller owner reference to the
//! `MySQLCluster`, so deleting the cluster deletes them (the data volumes, made by the
//! StatefulSet from its claim template, are kept, as StatefulSets do by default).
//!
//! Names, for cluster `c`:
//!
//! | object | name |
//! | --- | --- |
//! | StatefulSet of database servers (pods `c-0`, `c-1`, …) | `c` |
//! | headless Service of the members | `c-headless` |
//! | server configuration ConfigMap | `c-mysql-config` |
//! | PodDisruptionBudget of the members | `c-mysql` |
//! | proxy Deployment (not applied without proxies) | `c-proxy` |
//! | client Service (what applications connect to; not applied without proxies) | `c` |
//! | topology ConfigMap | `c-topology` |
//! | proxy users Secret (given by the user) | `c-proxy-users` |
//! | credential Secrets (when the spec names none) | `c-admin`, `c-replication` |
//! | seeding agent token Secret (always generated) | `c-agent` |
//! | the proxies' lookup and monitor accounts (when the spec names none) | `c-lookup`, `c-monitor` |
//! | the token topologies are pushed to the proxies with (always generated) | `c-proxy-admin` |
//! | NetworkPolicy of the members | `c-mysql` |
//! | NetworkPolicy of the proxies | `c-proxy` |
//!
//! The builders assume a spec that passed [`MySQLCluster::validate`]: server options are
//! written as given.
//!
//! The builders are grouped by the objects they make: [`members`] (the StatefulSet, its
//! server configuration, the headless Service, the PodDisruptionBudget, the members'
//! NetworkPolicy and the seeding agent's containers), [`proxy`] (the Deployment, the client
//! Service, the proxies' NetworkPolicy and the topology ConfigMap), [`secrets`] (credentials)
//! and [`tls`]; [`tenant_pool`] builds a `MySQLTenantPool`'s own objects (its clusters, pool
//! document and proxies). This file holds what they share: names, labels, the `Context` taken
//! from the cluster's metadata, and small pieces of pods and containers.

use std::collections::BTreeMap;

use ::kube::Resource;
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ExecAction, HTTPGetAction, KeyToPath, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecurityContext, ServicePort, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::{MySQLCluster, MySQLClusterSpec, Resources};

pub mod backups;
pub mod members;
pub mod proxy;
pub mod secrets;
pub mod tenant_pool;
pub mod tls;

pub use backups::*;
pub use members::*;
pub use proxy::*;
pub use secrets::*;

/// The port MySQL clients use, on the servers and on the proxies.
pub const MYSQL_PORT: i32 = 3306;

/// The proxy's admin HTTP port (`/healthz`, `/readyz`, `/metrics`, `/topology`).
pub const PROXY_ADMIN_PORT: i32 = 9104;

/// The seeding agent's port in a member pod (see [`crate::agent`]).
pub const AGENT_PORT: i32 = crate::agent::AGENT_PORT as i32;

/// The operator image used when the operator is given none: the operator of this release. A
/// member pod takes the agent program from it.
pub const DEFAULT_OPERATOR_IMAGE: &str = concat!(
    "ghcr.io/lagless-dev/lagless-operator:",
    env!("CARGO_PKG_VERSION")
);

/// The proxy image used when the operator is given none: the proxy of this release.
pub const DEFAULT_PROXY_IMAGE: &str = concat!(
    "ghcr.io/lagless-dev/lagless-proxy:",
    env!("CARGO_PKG_VERSION")
);

/// The key of the topology document in the topology ConfigMap.
pub const TOPOLOGY_KEY: &str = "topology.json";

/// Where the proxy mounts the topology ConfigMap, as a directory.
pub const TOPOLOGY_MOUNT: &str = "/etc/lagless/topology";

/// The key of the users file in the proxy users Secret.
pub const PROXY_USERS_KEY: &str = "users.json";

/// Where the proxy mounts the users Secret, as a directory.
pub const PROXY_USERS_MOUNT: &str = "/etc/lagless/users";

/// The key of the server option file in the server configuration ConfigMap.
pub const SERVER_CONFIG_KEY: &str = "lagless.cnf";

/// The key of the script, in the server configuration ConfigMap, that creates the operator's
/// accounts when a data directory is initialized.
pub const INIT_SCRIPT_KEY: &str = "lagless-accounts.sh";

/// The pod template annotation that carries a hash of the server configuration, so a change
/// of configuration rolls the members.
pub const CONFIG_HASH_ANNOTATION: &str = "lagless.dev/config-hash";

/// The uid and gid of the `mysql` user of the official MariaDB and MySQL images. Every
/// container of a member pod runs as it: the server owns the data directory (its directories
/// are mode 0700), and the seeding agent and init step read and write the same files.
pub const MYSQL_UID: i64 = 999;

/// The `nonroot` user of the distroless images the proxy and the operator ship in.
pub const NONROOT_UID: i64 = 65532;

/// The labels the operator's pods carry whatever the chart's `nameOverride` (see
/// `charts/lagless/templates/deployment.yaml`); with the operator's namespace they are how
/// the NetworkPolicies admit it.
pub fn operator_pod_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/part-of".to_string(),
            "lagless".to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "operator".to_string(),
        ),
    ])
}

/// Why an object could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The `MySQLCluster` lacks a metadata field every object needs (`name`, `namespace` or
    /// `uid`, for the names and owner references).
    #[error("the MySQLCluster has no metadata.{0}")]
    MissingMetadata(&'static str),
    /// The same of a `MySQLTenantPool`.
    #[error("the MySQLTenantPool has no metadata.{0}")]
    MissingPoolMetadata(&'static str),
    /// The pool document could not be written out.
    #[error("the pool document: {0}")]
    Document(String),
    /// A credential Secret is to be generated but the caller supplied no password for it.
    #[error("no generated password for the {0} credentials")]
    MissingPassword(&'static str),
}

/// What a pod does in the cluster, for the `app.kubernetes.io/component` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// A database server (a member).
    Mysql,
    /// A `lagless-proxy`.
    Proxy,
    /// The binary log archiver (`spec.backup.archiveBinlogs`).
    Archiver,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Mysql => "mysql",
            Component::Proxy => "proxy",
            Component::Archiver => "archiver",
        }
    }
}

/// The labels every object of cluster `cluster` carries.
pub fn labels(cluster: &str, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster, component);
    labels.insert(
        "app.kubernetes.io/managed-by".into(),
        "lagless-operator".into(),
    );
    labels
}

/// The labels that select the pods of one component of cluster `cluster` (a subset of
/// [`labels`], stable for the life of the cluster: selectors cannot change).
pub fn selector_labels(cluster: &str, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "lagless".to_string()),
        (
            "app.kubernetes.io/instance".to_string(),
            cluster.to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            component.as_str().to_string(),
        ),
    ])
}

/// The StatefulSet's name, which is also the cluster's name.
pub fn statefulset_name(cluster: &str) -> String {
    cluster.to_string()
}

/// The headless Service that gives each member a stable DNS name.
pub fn headless_service_name(cluster: &str) -> String {
    format!("{cluster}-headless")
}

/// The ConfigMap with the servers' option file.
pub fn server_config_name(cluster: &str) -> String {
    format!("{cluster}-mysql-config")
}

/// The ConfigMap the operator publishes the topology in.
pub fn topology_configmap_name(cluster: &str) -> String {
    format!("{cluster}-topology")
}

/// The proxy Deployment.
pub fn proxy_deployment_name(cluster: &str) -> String {
    format!("{cluster}-proxy")
}

/// The Service applications connect to.
pub fn client_service_name(cluster: &str) -> String {
    cluster.to_string()
}

/// The Secret with the proxy's users file (key [`PROXY_USERS_KEY`]); it must exist before
/// the proxies can start.
pub fn proxy_users_secret_name(cluster: &str) -> String {
    format!("{cluster}-proxy-users")
}

/// The Secret the operator keeps for the cluster's declarative accounts (`kube::accounts`):
/// the proxies' managed users file ([`PROXY_USERS_KEY`]) and what was made on the primary
/// ([`ACCOUNTS_INVENTORY_KEY`]).
pub fn accounts_secret_name(cluster: &str) -> String {
    format!("{cluster}-accounts")
}

/// The key of [`accounts_secret_name`] that records what was made.
pub const ACCOUNTS_INVENTORY_KEY: &str = "inventory.json";

/// The Secret with the seeding agents' token (key `password`).
pub fn agent_secret_name(cluster: &str) -> String {
    format!("{cluster}-agent")
}

/// The NetworkPolicy of the members.
pub fn network_policy_name(cluster: &str) -> String {
    format!("{cluster}-mysql")
}

/// The NetworkPolicy of the proxies.
pub fn proxy_network_policy_name(cluster: &str) -> String {
    format!("{cluster}-proxy")
}

/// The PodDisruptionBudget of the members.
pub fn pod_disruption_budget_name(cluster: &str) -> String {
    format!("{cluster}-mysql")
}

/// The pod name of member `ordinal`.
pub fn member_name(cluster: &str, ordinal: u32) -> String {
    format!("{cluster}-{ordinal}")
}

/// The stable DNS name of member `ordinal`, through the headless Service.
pub fn member_host(cluster: &str, namespace: &str, ordinal: u32) -> String {
    format!(
        "{}.{}.{namespace}.svc",
        member_name(cluster, ordinal),
        headless_service_name(cluster)
    )
}

fn name(cluster: &MySQLCluster) -> Result<&str, BuildError> {
    cluster
        .metadata
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or(BuildError::MissingMetadata("name"))
}

/// Makes the `K` called `name` (with `uid`) the controller of the object it is set on: deleting
/// it deletes the object.
fn controller_reference<K: Resource<DynamicType = ()>>(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What every builder needs from the cluster's metadata.
struct Context<'a> {
    name: &'a str,
    namespace: &'a str,
    owner: OwnerReference,
    spec: &'a MySQLClusterSpec,
}

impl<'a> Context<'a> {
    fn new(cluster: &'a MySQLCluster) -> Result<Self, BuildError> {
        let name = name(cluster)?;
        let namespace = cluster
            .metadata
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or(BuildError::MissingMetadata("namespace"))?;
        let uid = cluster
            .metadata
            .uid
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or(BuildError::MissingMetadata("uid"))?;
        Ok(Self {
            name,
            namespace,
            owner: controller_reference::<MySQLCluster>(name, &uid),
            spec: &cluster.spec,
        })
    }

    fn meta(&self, name: String, component: Component) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.to_string()),
            labels: Some(labels(self.name, component)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    fn selector(&self, component: Component) -> LabelSelector {
        LabelSelector {
            match_labels: Some(selector_labels(self.name, component)),
            ..LabelSelector::default()
        }
    }

    /// Prefer spreading the pods of `component` over nodes; never required, so a small
    /// cluster still schedules everything.
    fn spread_over_nodes(&self, component: Component) -> Affinity {
        spread_over_nodes(&self.selector(component))
    }
}

/// Prefer spreading the pods `selector` selects over nodes; never required, so a small
/// Kubernetes cluster still schedules everything.
fn spread_over_nodes(selector: &LabelSelector) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(selector.clone()),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn quantities(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, Quantity>> {
    (!map.is_empty()).then(|| {
        map.iter()
            .map(|(k, v)| (k.clone(), Quantity(v.clone())))
            .collect()
    })
}

fn resources(resources: &Resources) -> Option<ResourceRequirements> {
    (!resources.is_empty()).then(|| ResourceRequirements {
        requests: quantities(&resources.requests),
        limits: quantities(&resources.limits),
        ..ResourceRequirements::default()
    })
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// What every container runs with: never root, no capabilities, no way to gain privileges,
/// and a read-only root filesystem (whatever a program writes goes to a volume).
fn container_security(uid: i64) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        ..SecurityContext::default()
    }
}

/// The pod-level half: the same user, the runtime's default seccomp profile, and `fs_group`
/// owning the pod's volumes.
fn pod_security(uid: i64, fs_group: Option<i64>) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group,
        // A large data volume is not walked at every start, only when its root is not the
        // group's yet.
        fs_group_change_policy: fs_group.map(|_| "OnRootMismatch".into()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// The directory of a destination that is one (`/path` or `file:///path`).
fn directory(destination: &str) -> Option<String> {
    match crate::backup::location::Location::parse(destination).ok()? {
        crate::backup::location::Location::Dir(path) => Some(path.display().to_string()),
        _ => None,
    }
}

/// A PersistentVolumeClaim as the volume `name`.
fn claim_volume(name: &str, claim: &str, read_only: bool) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(
            k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_string(),
                read_only: Some(read_only),
            },
        ),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// A volume of some keys of a ConfigMap, mounted as a directory so updates reach the pod.
fn configmap_volume(volume: &str, configmap: String, keys: &[&str], mode: Option<i32>) -> Volume {
    Volume {
        name: volume.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: configmap,
            items: Some(
                keys.iter()
                    .map(|k| KeyToPath {
                        key: (*k).into(),
                        path: (*k).into(),
                        mode,
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn exec_probe(command: Vec<String>, period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn http_probe(path: &str, period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn mysql_service_port() -> ServicePort {
    ServicePort {
        name: Some("mysql".into()),
        port: MYSQL_PORT,
        target_port: Some(IntOrString::String("mysql".into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The operator's pods: those with [`operator_pod_labels`] in the namespace
/// `operator_namespace`. Both in one peer, so they must hold together: a pod with those labels
/// in another namespace is not the operator.
fn operator_peer(operator_namespace: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        // Set by the API server on every namespace, so it cannot be forged by a label edit.
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                operator_namespace.to_string(),
            )])),
            ..LabelSelector::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(operator_pod_labels()),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// Every pod of the policy's own namespace (a pod selector without a namespace selector).
fn same_namespace() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    }
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

#[cfg(test)]
mod tests;
