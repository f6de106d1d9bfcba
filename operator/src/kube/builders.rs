//! Object builders: pure functions from a `MySQLCluster` to the Kubernetes objects that run it.
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
//! | proxy Deployment | `c-proxy` |
//! | client Service (what applications connect to) | `c` |
//! | topology ConfigMap | `c-topology` |
//! | proxy users Secret (given by the user) | `c-proxy-users` |
//! | credential Secrets (when the spec names none) | `c-admin`, `c-replication` |
//! | seeding agent token Secret (always generated) | `c-agent` |
//! | the proxies' lookup and monitor accounts (always generated) | `c-lookup`, `c-monitor` |
//! | the token topologies are pushed to the proxies with (always generated) | `c-proxy-admin` |
//! | NetworkPolicy of the members | `c-mysql` |
//! | NetworkPolicy of the proxies | `c-proxy` |
//!
//! The builders assume a spec that passed [`MySQLCluster::validate`]: server options are
//! written as given.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ::kube::Resource as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
    StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, KeyToPath,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    Secret, SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lagless_proxy::topology::Topology;

use crate::agent::RESEED_MARKER;
use crate::crd::{Flavor, MySQLCluster, MySQLClusterSpec, Resources, ServiceType};

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

/// Where a member pod's containers find the agent program (an `emptyDir` filled by the
/// `agent-install` init container).
const AGENT_BIN_MOUNT: &str = "/lagless/bin";

/// Where the agent token Secret is mounted; the token is the file `token` in it.
const AGENT_TOKEN_MOUNT: &str = "/etc/lagless/agent";

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

/// Where the data volume is mounted in a database server container.
const DATA_MOUNT: &str = "/var/lib/mysql";

/// The directory both images include option files from.
const CONFIG_MOUNT: &str = "/etc/mysql/conf.d";

/// The directory both images run initialization scripts from, on an empty data directory.
const INIT_MOUNT: &str = "/docker-entrypoint-initdb.d";

/// Time for InnoDB to shut down cleanly before the kubelet kills the server.
const MYSQL_TERMINATION_GRACE_SECONDS: i64 = 120;

/// The proxy's own `--shutdown-timeout` (30 s) plus a margin.
const PROXY_TERMINATION_GRACE_SECONDS: i64 = 45;

/// The uid and gid of the `mysql` user of the official MariaDB and MySQL images. Every
/// container of a member pod runs as it: the server owns the data directory (its directories
/// are mode 0700), and the seeding agent and init step read and write the same files.
pub const MYSQL_UID: i64 = 999;

/// The `nonroot` user of the distroless images the proxy and the operator ship in.
pub const NONROOT_UID: i64 = 65532;

/// Where the server puts its socket and pid file (each image's configured directory); the
/// root filesystem is read-only.
fn run_mount(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mariadb => "/run/mysqld",
        Flavor::Mysql => "/var/run/mysqld",
    }
}

/// The system's temporary directory: the server's `tmpdir`, the entrypoint's here-documents,
/// and `mariadb-backup`'s spool of the redo log while it streams.
const TMP_MOUNT: &str = "/tmp";

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
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Mysql => "mysql",
            Component::Proxy => "proxy",
        }
    }
}

/// An account the operator's servers use, held in a Secret with keys `username` and
/// `password`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    /// The operator's administrative account.
    Admin,
    /// The account replicas connect to their source with.
    Replication,
    /// The seeding agents' token (the Secret's `password`); never named by the spec.
    Agent,
    /// The proxies read accounts with it: `SELECT` on `mysql.global_priv`, nothing else.
    Lookup,
    /// The proxies read positions with it: replication status, nothing else.
    Monitor,
    /// The token the operator pushes new topologies to the proxies with (the Secret's
    /// `password`); never named by the spec.
    ProxyAdmin,
}

impl Credential {
    pub const ALL: [Credential; 6] = [
        Credential::Admin,
        Credential::Replication,
        Credential::Agent,
        Credential::Lookup,
        Credential::Monitor,
        Credential::ProxyAdmin,
    ];

    /// The purpose, as the key of the generated passwords and the suffix of generated names.
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::Admin => "admin",
            Credential::Replication => "replication",
            Credential::Agent => "agent",
            Credential::Lookup => "lookup",
            Credential::Monitor => "monitor",
            Credential::ProxyAdmin => "proxy-admin",
        }
    }

    /// The user name a generated Secret holds.
    pub fn default_username(self) -> &'static str {
        match self {
            Credential::Admin => "lagless_admin",
            Credential::Replication => "lagless_repl",
            Credential::Agent => "lagless-agent",
            Credential::Lookup => "lagless_lookup",
            Credential::Monitor => "lagless_monitor",
            Credential::ProxyAdmin => "lagless-operator",
        }
    }

    /// The Secret that holds this credential for `cluster`: the one the spec names, or the
    /// generated `<cluster>-<purpose>`.
    pub fn secret_name(self, cluster: &MySQLCluster) -> Result<String, BuildError> {
        let name = name(cluster)?;
        let credentials = &cluster.spec.credentials;
        Ok(match self {
            Credential::Admin => credentials.admin_secret(name),
            Credential::Replication => credentials.replication_secret(name),
            Credential::Agent => agent_secret_name(name),
            Credential::Lookup | Credential::Monitor | Credential::ProxyAdmin => {
                format!("{name}-{}", self.as_str())
            }
        })
    }

    /// Whether the spec names a Secret for this credential (else it is generated).
    pub fn is_user_supplied(self, spec: &MySQLClusterSpec) -> bool {
        match self {
            Credential::Admin => spec.credentials.admin_secret_name.is_some(),
            Credential::Replication => spec.credentials.replication_secret_name.is_some(),
            Credential::Agent
            | Credential::Lookup
            | Credential::Monitor
            | Credential::ProxyAdmin => false,
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
        let owner = OwnerReference {
            api_version: MySQLCluster::api_version(&()).into_owned(),
            kind: MySQLCluster::kind(&()).into_owned(),
            name: name.to_string(),
            uid,
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        Ok(Self {
            name,
            namespace,
            owner,
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
        Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: PodAffinityTerm {
                            label_selector: Some(self.selector(component)),
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

/// The server binary and admin client of a flavor's image.
fn server_binary(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mariadb => "mariadbd",
        Flavor::Mysql => "mysqld",
    }
}

fn admin_client(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mariadb => "mariadb-admin",
        Flavor::Mysql => "mysqladmin",
    }
}

/// The health check of a database server: does it answer on its TCP port? `ping` succeeds
/// even when the login is refused, so it needs no credentials. It says nothing about
/// replication: a replica that lags is still a healthy member and a candidate for promotion.
fn ping_command(flavor: Flavor) -> Vec<String> {
    vec![
        admin_client(flavor).into(),
        "--host=127.0.0.1".into(),
        format!("--port={MYSQL_PORT}"),
        "--connect-timeout=3".into(),
        "ping".into(),
    ]
}

/// Renders the option file every member starts with: the replication settings the operator
/// relies on, then the spec's `serverConfig`. The server id is not in it: it differs per
/// member and is given on the command line (see [`statefulset`]).
pub fn render_server_config(cluster: &MySQLCluster) -> Result<String, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(render_config(&ctx))
}

fn render_config(ctx: &Context<'_>) -> String {
    let spec = ctx.spec;
    let mut s = String::new();
    s.push_str(
        "# Written by lagless-operator from the MySQLCluster spec; edits are overwritten.\n",
    );
    s.push_str("[mysqld]\n");
    s.push_str("log_bin=mysql-bin\nrelay_log=relay-bin\nrelay_log_recovery=ON\n");
    // Every member starts read-only; the operator makes the primary writable.
    s.push_str("read_only=ON\nskip_name_resolve=ON\n");
    // Replicas notice a silent primary within seconds, which failure detection waits for.
    let _ = writeln!(
        s,
        "slave_net_timeout={}",
        crate::orchestrate::act::NET_TIMEOUT_SECS
    );
    match spec.flavor {
        Flavor::Mariadb => {
            let _ = writeln!(
                s,
                "gtid_domain_id={}",
                spec.gtid_domain_id(ctx.namespace, ctx.name)
            );
            s.push_str("log_slave_updates=ON\ngtid_strict_mode=ON\nbinlog_format=ROW\n");
            if spec.replication.semi_sync_on(spec.replicas) {
                // The operator enables the primary's side when it publishes a primary.
                s.push_str(
                    "rpl_semi_sync_slave_enabled=ON\nrpl_semi_sync_master_wait_point=AFTER_SYNC\n",
                );
            }
        }
        Flavor::Mysql => {
            // Row-based logging is MySQL's default (and setting binlog_format is deprecated).
            s.push_str("gtid_mode=ON\nenforce_gtid_consistency=ON\nlog_replica_updates=ON\n");
            if spec.replication.semi_sync_on(spec.replicas) {
                s.push_str(
                    "plugin_load_add=semisync_source.so\nplugin_load_add=semisync_replica.so\n\
                     rpl_semi_sync_replica_enabled=ON\nrpl_semi_sync_source_wait_point=AFTER_SYNC\n",
                );
                let _ = writeln!(
                    s,
                    "rpl_semi_sync_source_wait_for_replica_count={}",
                    spec.replication.semi_sync_acks.max(1)
                );
            }
        }
    }
    if !spec.server_config.is_empty() {
        s.push_str("# spec.serverConfig\n");
        for (key, value) in &spec.server_config {
            let _ = writeln!(s, "{key}={value}");
        }
    }
    s
}

/// Creates the operator's accounts on a new data directory, without writing them to the
/// binary log (each member creates its own; replicated copies would collide under strict GTID
/// mode). Sourced by the image's entrypoint, which provides `docker_process_sql`.
const INIT_SCRIPT: &str = r#"# Written by lagless-operator: creates the admin and replication accounts.
lagless_sql_string() {
	local s=${1//\\/\\\\}
	printf "'%s'" "${s//\'/\'\'}"
}
docker_process_sql <<EOSQL
SET SESSION sql_log_bin=0;
CREATE USER IF NOT EXISTS $(lagless_sql_string "$LAGLESS_ADMIN_USER")@'%' IDENTIFIED BY $(lagless_sql_string "$LAGLESS_ADMIN_PASSWORD");
GRANT ALL PRIVILEGES ON *.* TO $(lagless_sql_string "$LAGLESS_ADMIN_USER")@'%' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS $(lagless_sql_string "$LAGLESS_REPLICATION_USER")@'%' IDENTIFIED BY $(lagless_sql_string "$LAGLESS_REPLICATION_PASSWORD");
GRANT REPLICATION SLAVE ON *.* TO $(lagless_sql_string "$LAGLESS_REPLICATION_USER")@'%';
EOSQL
"#;

/// The ConfigMap `<cluster>-mysql-config`: the option file ([`SERVER_CONFIG_KEY`]) and the
/// account script ([`INIT_SCRIPT_KEY`]) the members mount.
pub fn server_configmap(cluster: &MySQLCluster) -> Result<ConfigMap, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(ConfigMap {
        metadata: ctx.meta(server_config_name(ctx.name), Component::Mysql),
        data: Some(BTreeMap::from([
            (SERVER_CONFIG_KEY.to_string(), render_config(&ctx)),
            (INIT_SCRIPT_KEY.to_string(), INIT_SCRIPT.to_string()),
        ])),
        ..ConfigMap::default()
    })
}

/// FNV-1a, 64 bits: a stable hash of the configuration for [`CONFIG_HASH_ANNOTATION`].
fn config_hash(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The shell preamble the server container runs: member N (pod `<cluster>-N`) gets
/// `server_id = serverIdBase + N` and reports its stable DNS name to the replicas.
/// A member the agent seeded (see [`crate::agent`]) left the copy's GTID position in the data
/// directory: its first start sets `gtid_slave_pos` there through an init file, so the
/// operator's rejoin (`MASTER_USE_GTID=current_pos`) replicates from exactly that point. The
/// position file is renamed once used: a later restart must not move the position back.
const SEEDED_START: &str = r#"datadir="${LAGLESS_DATADIR:-/var/lib/mysql}"
position="$datadir/lagless-seed-position"
seed=""
if [ -e "$position" ]; then
  pos=$(tr -d ' \n' < "$position")
  case "$pos" in
    *[!0-9,-]*) echo "$position: not a GTID position: $pos" >&2; exit 1 ;;
  esac
  if [ -n "$pos" ]; then
    # The copy's binary log state too, so the member can serve replicas if promoted first.
    printf "RESET MASTER;\nSET GLOBAL gtid_binlog_state = '%s';\nSET GLOBAL gtid_slave_pos = '%s';\n" \
      "$pos" "$pos" > "$datadir/lagless-seed.sql"
    seed="--init-file=$datadir/lagless-seed.sql"
  fi
  mv "$position" "$position.used"
fi
"#;

fn server_command(ctx: &Context<'_>) -> Vec<String> {
    let headless = headless_service_name(ctx.name);
    let script = format!(
        r#"set -eu
ordinal="${{HOSTNAME##*-}}"
case "$ordinal" in
  ''|*[!0-9]*) echo "cannot find the member ordinal in HOSTNAME=$HOSTNAME" >&2; exit 1 ;;
esac
server_id=$(( LAGLESS_SERVER_ID_BASE + 10#$ordinal ))
{seeded}exec docker-entrypoint.sh {binary} --server-id="$server_id" --report-host="$HOSTNAME.{headless}.{namespace}.svc" --port={MYSQL_PORT}{seed_arg}
"#,
        binary = server_binary(ctx.spec.flavor),
        namespace = ctx.namespace,
        seeded = match ctx.spec.flavor {
            Flavor::Mariadb => SEEDED_START,
            Flavor::Mysql => "",
        },
        seed_arg = match ctx.spec.flavor {
            Flavor::Mariadb => " $seed",
            Flavor::Mysql => "",
        },
    );
    vec!["bash".into(), "-c".into(), script]
}

fn server_env(ctx: &Context<'_>, cluster: &MySQLCluster) -> Result<Vec<EnvVar>, BuildError> {
    let admin = Credential::Admin.secret_name(cluster)?;
    let replication = Credential::Replication.secret_name(cluster)?;
    let (root_password, root_host) = match ctx.spec.flavor {
        Flavor::Mariadb => ("MARIADB_ROOT_PASSWORD", "MARIADB_ROOT_HOST"),
        Flavor::Mysql => ("MYSQL_ROOT_PASSWORD", "MYSQL_ROOT_HOST"),
    };
    Ok(vec![
        env(
            "LAGLESS_SERVER_ID_BASE",
            ctx.spec.server_id_base(ctx.namespace, ctx.name).to_string(),
        ),
        env_from_secret("LAGLESS_ADMIN_USER", &admin, "username"),
        env_from_secret("LAGLESS_ADMIN_PASSWORD", &admin, "password"),
        env_from_secret("LAGLESS_REPLICATION_USER", &replication, "username"),
        env_from_secret("LAGLESS_REPLICATION_PASSWORD", &replication, "password"),
        // The image's own root account stays local to the pod; the operator uses its admin.
        env_from_secret(root_password, &admin, "password"),
        env(root_host, "localhost"),
    ])
}

/// The init step of a MariaDB member: on an empty data directory, except member 0's (which
/// initializes a new cluster), or on one marked for a re-seed (any member's), copy a member's
/// data with `agent fetch`: from the published topology's members when there is one (never a
/// quarantined member), else from any member. The donors are tried
/// in order, this pod skipped; while none answers the step fails and the kubelet retries it.
fn seed_command(ctx: &Context<'_>) -> Vec<String> {
    let mut from = String::new();
    // Every member a cluster can have, not the current count: the pod template must not change
    // with `replicas`, or scaling would roll every pod, the primary's included. Names that do
    // not resolve (yet) are skipped by `agent fetch`.
    for ordinal in 0..crate::crd::MAX_MEMBERS.unsigned_abs() {
        let host = member_host(ctx.name, ctx.namespace, ordinal);
        let _ = write!(from, " --from http://{host}:{AGENT_PORT}");
    }
    let script = format!(
        r#"set -eu
ordinal="${{HOSTNAME##*-}}"
if [ "$ordinal" = 0 ] && [ ! -e {DATA_MOUNT}/{RESEED_MARKER} ]; then exit 0; fi
exec {AGENT_BIN_MOUNT}/lagless-operator agent fetch --if-empty --datadir {DATA_MOUNT} --token-file {AGENT_TOKEN_MOUNT}/token --topology {TOPOLOGY_MOUNT}/{TOPOLOGY_KEY}{from}
"#
    );
    vec!["bash".into(), "-c".into(), script]
}

/// The seeding containers of a MariaDB member (see [`crate::agent`]): `agent-install` copies
/// the agent from the operator image, `seed` fills an empty data directory from a donor (both
/// init containers), and the `agent` sidecar serves this member's backups. The agent runs in
/// the server's image, which has the matching `mariadb-backup`.
fn agent_containers(
    ctx: &Context<'_>,
    cluster: &MySQLCluster,
    operator_image: &str,
) -> Result<(Vec<Container>, Container), BuildError> {
    let admin = Credential::Admin.secret_name(cluster)?;
    let image = ctx.spec.image().to_string();
    let install = Container {
        name: "agent-install".into(),
        image: Some(operator_image.to_string()),
        command: Some(vec![
            "lagless-operator".into(),
            "agent".into(),
            "install".into(),
            format!("{AGENT_BIN_MOUNT}/lagless-operator"),
        ]),
        volume_mounts: Some(vec![mount("agent-bin", AGENT_BIN_MOUNT, false)]),
        security_context: Some(container_security(MYSQL_UID)),
        ..Container::default()
    };
    let seed = Container {
        name: "seed".into(),
        image: Some(image.clone()),
        command: Some(seed_command(ctx)),
        resources: resources(&ctx.spec.resources),
        volume_mounts: Some(vec![
            mount("data", DATA_MOUNT, false),
            mount("agent-bin", AGENT_BIN_MOUNT, true),
            mount("agent-token", AGENT_TOKEN_MOUNT, true),
            mount("topology", TOPOLOGY_MOUNT, true),
            mount("agent-tmp", TMP_MOUNT, false),
        ]),
        security_context: Some(container_security(MYSQL_UID)),
        ..Container::default()
    };
    let agent = Container {
        name: "agent".into(),
        image: Some(image),
        command: Some(vec![
            format!("{AGENT_BIN_MOUNT}/lagless-operator"),
            "agent".into(),
            "--listen".into(),
            format!("0.0.0.0:{AGENT_PORT}"),
            "--datadir".into(),
            DATA_MOUNT.into(),
            "--mysql-port".into(),
            MYSQL_PORT.to_string(),
            "--token-file".into(),
            format!("{AGENT_TOKEN_MOUNT}/token"),
        ]),
        env: Some(vec![
            env_from_secret("LAGLESS_ADMIN_USER", &admin, "username"),
            env_from_secret("LAGLESS_ADMIN_PASSWORD", &admin, "password"),
        ]),
        ports: Some(vec![port("agent", AGENT_PORT)]),
        volume_mounts: Some(vec![
            mount("data", DATA_MOUNT, false),
            mount("agent-bin", AGENT_BIN_MOUNT, true),
            mount("agent-token", AGENT_TOKEN_MOUNT, true),
            mount("agent-tmp", TMP_MOUNT, false),
        ]),
        security_context: Some(container_security(MYSQL_UID)),
        ..Container::default()
    };
    Ok((vec![install, seed], agent))
}

/// The volumes of [`agent_containers`].
fn agent_volumes(ctx: &Context<'_>) -> [Volume; 4] {
    [
        // The published topology, so the init step copies from a member the orchestration
        // trusts; optional, as a new cluster has published none yet.
        Volume {
            name: "topology".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: topology_configmap_name(ctx.name),
                optional: Some(true),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir("agent-bin"),
        // Apart from the server's: the backup's private files are not in a directory the
        // server's processes share.
        empty_dir("agent-tmp"),
        Volume {
            name: "agent-token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(agent_secret_name(ctx.name)),
                items: Some(vec![KeyToPath {
                    key: "password".into(),
                    path: "token".into(),
                    ..KeyToPath::default()
                }]),
                // Group-readable: the group is the pod's fsGroup, the agent's.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

/// The StatefulSet of database servers: `spec.replicas` members started in parallel, each
/// read-only with its own server id, the cluster's GTID domain and binary log, and a data
/// volume from `spec.storage`. A MariaDB member also runs the seeding agent (program from
/// `operator_image`, e.g. [`DEFAULT_OPERATOR_IMAGE`]): a new member copies its data from
/// another before its server starts.
pub fn statefulset(
    cluster: &MySQLCluster,
    operator_image: &str,
) -> Result<StatefulSet, BuildError> {
    let ctx = Context::new(cluster)?;
    let spec = ctx.spec;
    let flavor = spec.flavor;
    let config = render_config(&ctx);
    let mut pod_labels = labels(ctx.name, Component::Mysql);
    pod_labels.remove("app.kubernetes.io/managed-by");
    let container = Container {
        name: "mysql".into(),
        image: Some(spec.image().to_string()),
        command: Some(server_command(&ctx)),
        env: Some(server_env(&ctx, cluster)?),
        ports: Some(vec![port("mysql", MYSQL_PORT)]),
        resources: resources(&spec.resources),
        volume_mounts: Some(vec![
            mount("data", DATA_MOUNT, false),
            mount("config", CONFIG_MOUNT, true),
            mount("init", INIT_MOUNT, true),
            mount("run", run_mount(flavor), false),
            mount("tmp", TMP_MOUNT, false),
        ]),
        // The image's entrypoint writes only to the data directory, the socket directory and
        // the temporary directory, each a volume, so the root filesystem can be read-only.
        // Started as the `mysql` user it does not switch users, and needs no capability.
        security_context: Some(container_security(MYSQL_UID)),
        // Crash recovery of a large InnoDB may take long: the startup probe allows an hour
        // before liveness takes over.
        startup_probe: Some(exec_probe(ping_command(flavor), 10, 5, 360)),
        readiness_probe: Some(exec_probe(ping_command(flavor), 5, 5, 3)),
        liveness_probe: Some(exec_probe(ping_command(flavor), 10, 10, 6)),
        ..Container::default()
    };
    let mut containers = vec![container];
    let mut init_containers = None;
    let mut volumes = Vec::new();
    // The MySQL image has no mariadb-backup: its members are not seeded yet.
    if flavor == Flavor::Mariadb {
        let (init, agent) = agent_containers(&ctx, cluster, operator_image)?;
        containers.push(agent);
        init_containers = Some(init);
        volumes.extend(agent_volumes(&ctx));
    }
    let pod = PodSpec {
        containers,
        init_containers,
        volumes: Some(
            vec![
                configmap_volume(
                    "config",
                    server_config_name(ctx.name),
                    &[SERVER_CONFIG_KEY],
                    None,
                ),
                // Not executable: the entrypoint then sources the script, which gives it
                // `docker_process_sql`.
                configmap_volume(
                    "init",
                    server_config_name(ctx.name),
                    &[INIT_SCRIPT_KEY],
                    Some(0o444),
                ),
                empty_dir("run"),
                empty_dir("tmp"),
            ]
            .into_iter()
            .chain(volumes)
            .collect(),
        ),
        affinity: Some(ctx.spread_over_nodes(Component::Mysql)),
        termination_grace_period_seconds: Some(MYSQL_TERMINATION_GRACE_SECONDS),
        // fsGroup makes the data volume, and the agent token (mode 0440), the `mysql` group's.
        security_context: Some(pod_security(MYSQL_UID, Some(MYSQL_UID))),
        ..PodSpec::default()
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(labels(ctx.name, Component::Mysql)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(spec.storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    Ok(StatefulSet {
        metadata: ctx.meta(statefulset_name(ctx.name), Component::Mysql),
        spec: StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(headless_service_name(ctx.name)),
            pod_management_policy: Some("Parallel".into()),
            selector: ctx.selector(Component::Mysql),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash(&[&config, INIT_SCRIPT]),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    })
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

/// The headless Service `<cluster>-headless` that gives member N the DNS name
/// `<cluster>-N.<cluster>-headless.<namespace>.svc`. Not-ready members are published too: the
/// operator must reach a member that is starting or failing its checks.
pub fn headless_service(cluster: &MySQLCluster) -> Result<Service, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(Service {
        metadata: ctx.meta(headless_service_name(ctx.name), Component::Mysql),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(ctx.name, Component::Mysql)),
            ports: Some(vec![mysql_service_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The Service `<cluster>` that applications connect to: the proxies, on port 3306, of the
/// type `spec.proxy.serviceType`.
pub fn client_service(cluster: &MySQLCluster) -> Result<Service, BuildError> {
    let ctx = Context::new(cluster)?;
    let type_ = match ctx.spec.proxy.service_type {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Ok(Service {
        metadata: ctx.meta(client_service_name(ctx.name), Component::Proxy),
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(selector_labels(ctx.name, Component::Proxy)),
            ports: Some(vec![mysql_service_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The proxy Deployment `<cluster>-proxy`: `spec.proxy.replicas` pods of `lagless-proxy`
/// (image `proxy_image`, e.g. [`DEFAULT_PROXY_IMAGE`]). Each reads the topology from the
/// topology ConfigMap mounted as a directory (never `subPath`, which would freeze it), its
/// users from the Secret `<cluster>-proxy-users`, looks up other users with the lookup
/// account and reads positions with the monitor account: the administrator's account never
/// reaches a proxy.
pub fn proxy_deployment(
    cluster: &MySQLCluster,
    proxy_image: &str,
) -> Result<Deployment, BuildError> {
    let ctx = Context::new(cluster)?;
    let lookup = Credential::Lookup.secret_name(cluster)?;
    let monitor = Credential::Monitor.secret_name(cluster)?;
    let push_token = Credential::ProxyAdmin.secret_name(cluster)?;
    let mut pod_labels = labels(ctx.name, Component::Proxy);
    pod_labels.remove("app.kubernetes.io/managed-by");
    let args = vec![
        "--topology".to_string(),
        format!("{TOPOLOGY_MOUNT}/{TOPOLOGY_KEY}"),
        "--users".to_string(),
        format!("{PROXY_USERS_MOUNT}/{PROXY_USERS_KEY}"),
        "--listen".to_string(),
        format!("0.0.0.0:{MYSQL_PORT}"),
        "--admin-listen".to_string(),
        format!("0.0.0.0:{PROXY_ADMIN_PORT}"),
        "--consistency".to_string(),
        ctx.spec.proxy.default_consistency.clone(),
    ];
    let container = Container {
        name: "lagless-proxy".into(),
        image: Some(proxy_image.to_string()),
        args: Some(args),
        env: Some(vec![
            env_from_secret("LAGLESS_PROXY_LOOKUP_USER", &lookup, "username"),
            env_from_secret("LAGLESS_PROXY_LOOKUP_PASSWORD", &lookup, "password"),
            env_from_secret("LAGLESS_PROXY_MONITOR_USER", &monitor, "username"),
            env_from_secret("LAGLESS_PROXY_MONITOR_PASSWORD", &monitor, "password"),
            // The operator pushes each new topology with it, faster than the kubelet
            // refreshes the mounted ConfigMap.
            env_from_secret("LAGLESS_PROXY_ADMIN_TOKEN", &push_token, "password"),
        ]),
        ports: Some(vec![
            port("mysql", MYSQL_PORT),
            port("admin", PROXY_ADMIN_PORT),
        ]),
        resources: resources(&ctx.spec.proxy.resources),
        volume_mounts: Some(vec![
            mount("topology", TOPOLOGY_MOUNT, true),
            mount("users", PROXY_USERS_MOUNT, true),
        ]),
        readiness_probe: Some(http_probe("/readyz", 5, 3, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 5, 6)),
        // The proxy only reads its mounted files.
        security_context: Some(container_security(NONROOT_UID)),
        ..Container::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(vec![
            Volume {
                name: "topology".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: topology_configmap_name(ctx.name),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "users".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(proxy_users_secret_name(ctx.name)),
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        affinity: Some(ctx.spread_over_nodes(Component::Proxy)),
        termination_grace_period_seconds: Some(PROXY_TERMINATION_GRACE_SECONDS),
        // fsGroup: the users file (passwords) is readable by the proxy's group only.
        security_context: Some(pod_security(NONROOT_UID, Some(NONROOT_UID))),
        ..PodSpec::default()
    };
    Ok(Deployment {
        metadata: ctx.meta(proxy_deployment_name(ctx.name), Component::Proxy),
        spec: DeploymentSpec {
            replicas: Some(ctx.spec.proxy.replicas),
            selector: ctx.selector(Component::Proxy),
            // A new proxy is ready before an old one goes: capacity never drops in a rollout.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    })
}

/// The ConfigMap `<cluster>-topology` with `topology` under [`TOPOLOGY_KEY`].
pub fn topology_configmap(
    cluster: &MySQLCluster,
    topology: &Topology,
) -> Result<ConfigMap, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(ConfigMap {
        metadata: ctx.meta(topology_configmap_name(ctx.name), Component::Proxy),
        data: Some(BTreeMap::from([(
            TOPOLOGY_KEY.to_string(),
            topology.to_json_pretty(),
        )])),
        ..ConfigMap::default()
    })
}

/// The PodDisruptionBudget `<cluster>-mysql`: a voluntary disruption (a node drain) takes at
/// most one member at a time.
pub fn pod_disruption_budget(cluster: &MySQLCluster) -> Result<PodDisruptionBudget, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(PodDisruptionBudget {
        metadata: ctx.meta(pod_disruption_budget_name(ctx.name), Component::Mysql),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(ctx.selector(Component::Mysql)),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
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

/// The NetworkPolicy `<cluster>-mysql`: the members accept connections only on the MySQL
/// port, from pods of their namespace (proxies, sidecar proxies, the other members) and from
/// the operator's pods ([`operator_pod_labels`] in `operator_namespace`), and on the agent
/// port only from the operator (which asks for re-seeds) and the cluster's own members (whose
/// init step copies from a donor's agent).
pub fn network_policy(
    cluster: &MySQLCluster,
    operator_namespace: &str,
) -> Result<NetworkPolicy, BuildError> {
    let ctx = Context::new(cluster)?;
    let operator = operator_peer(operator_namespace);
    let members = NetworkPolicyPeer {
        pod_selector: Some(ctx.selector(Component::Mysql)),
        ..NetworkPolicyPeer::default()
    };
    Ok(NetworkPolicy {
        metadata: ctx.meta(network_policy_name(ctx.name), Component::Mysql),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(ctx.selector(Component::Mysql)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![same_namespace(), operator.clone()]),
                    ports: Some(vec![tcp(MYSQL_PORT)]),
                },
                // A backup of the whole database is served here (to holders of the token).
                NetworkPolicyIngressRule {
                    from: Some(vec![members, operator]),
                    ports: Some(vec![tcp(AGENT_PORT)]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    })
}

/// The NetworkPolicy `<cluster>-proxy`: the proxies accept clients on the MySQL port from
/// pods of their namespace, or from anywhere when `spec.proxy.serviceType` publishes them
/// outside the cluster (NodePort, LoadBalancer: the clients' addresses are not known); and on
/// the admin port (`/metrics`, `/topology`, probes) only from the operator and pods of their
/// namespace, never from outside. A Prometheus in another namespace is admitted by a
/// NetworkPolicy of the user's own: policies add up.
pub fn proxy_network_policy(
    cluster: &MySQLCluster,
    operator_namespace: &str,
) -> Result<NetworkPolicy, BuildError> {
    let ctx = Context::new(cluster)?;
    let clients = match ctx.spec.proxy.service_type {
        ServiceType::ClusterIP => Some(vec![same_namespace()]),
        // No `from`: every source.
        ServiceType::NodePort | ServiceType::LoadBalancer => None,
    };
    Ok(NetworkPolicy {
        metadata: ctx.meta(proxy_network_policy_name(ctx.name), Component::Proxy),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(ctx.selector(Component::Proxy)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: clients,
                    ports: Some(vec![tcp(MYSQL_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![same_namespace(), operator_peer(operator_namespace)]),
                    ports: Some(vec![tcp(PROXY_ADMIN_PORT)]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    })
}

/// The credential Secrets to create for the credentials the spec names no Secret for:
/// `<cluster>-admin` and `<cluster>-replication`, and always `<cluster>-agent` (the agent
/// token), `<cluster>-lookup`, `<cluster>-monitor` and `<cluster>-proxy-admin`, each with
/// `username` (see [`Credential::default_username`]) and `password`. `generated` maps each
/// purpose ([`Credential::as_str`]) to a password the caller generated; a
/// purpose the spec covers needs none. The caller must generate each password once and keep
/// the Secret: a new password does not change the accounts already created.
pub fn credentials_secrets(
    cluster: &MySQLCluster,
    generated: &BTreeMap<String, String>,
) -> Result<Vec<Secret>, BuildError> {
    let ctx = Context::new(cluster)?;
    let mut secrets = Vec::new();
    for credential in Credential::ALL {
        if credential.is_user_supplied(ctx.spec) {
            continue;
        }
        let password = generated
            .get(credential.as_str())
            .filter(|p| !p.is_empty())
            .ok_or(BuildError::MissingPassword(credential.as_str()))?;
        secrets.push(Secret {
            metadata: ctx.meta(credential.secret_name(cluster)?, Component::Mysql),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([
                (
                    "username".to_string(),
                    ByteString(credential.default_username().as_bytes().to_vec()),
                ),
                (
                    "password".to_string(),
                    ByteString(password.as_bytes().to_vec()),
                ),
            ])),
            ..Secret::default()
        });
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests;
