//! The `MySQLTenantPool` custom resource (`lagless.dev/v1alpha1`): many small clusters that
//! share tenants, one database per tenant, found through a directory.
//!
//! A pool is a template and a count. It expands ([`clusters`]) into ordinary `MySQLCluster`s
//! it owns: `<pool>-directory`, which holds the directory (which cluster each tenant lives on),
//! and the tenant clusters `<pool>-c0`, `<pool>-c1`, … Each gets a GTID domain and a
//! `server_id` range of its own inside the pool ([`PoolIds`]), so a tenant's database can later
//! be copied from one cluster to another over replication without the channels colliding.
//!
//! The pool's proxies are its own: its clusters run none.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{CustomResource, KubeSchema, Resource};
use lagless_core::ConsistencyMode;
use lagless_directory::TenantNaming;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::is_quantity;
use super::{
    Condition, CredentialsSpec, Flavor, MAX_MEMBERS, MySQLCluster, MySQLClusterSpec, ProxySpec,
    ReplicationSpec, Resources, SpecError, SpecErrors, StorageSpec, TlsSpec, fnv1a,
};

/// The most tenant clusters a pool may have.
pub const MAX_POOL_CLUSTERS: i32 = 100;

/// `server_id`s kept for each cluster of a pool: room for the most members a cluster may have.
pub const SERVER_IDS_PER_CLUSTER: u32 = 10;

/// The longest pool name: `<pool>-directory` must still be a valid cluster name (40).
pub const MAX_POOL_NAME: usize = 40 - "-directory".len();

/// The label every cluster of a pool carries, with the pool's name.
pub const POOL_LABEL: &str = "lagless.dev/pool";

/// The label that says what a pool's cluster is for: `directory` or `tenants`.
pub const POOL_ROLE_LABEL: &str = "lagless.dev/pool-role";

/// Many MariaDB clusters that share tenants: each tenant's database lives on one of them, a
/// directory says which, and the pool's proxies route each connection to its tenant's cluster.
// Printer columns of one type repeat `type_`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lagless.dev",
    version = "v1alpha1",
    kind = "MySQLTenantPool",
    plural = "mysqltenantpools",
    shortname = "tenantpool",
    shortname = "mtp",
    namespaced,
    status = "MySQLTenantPoolStatus",
    derive = "PartialEq",
    doc = "Many MariaDB clusters sharing tenants, one database per tenant, run by Lagless.",
    printcolumn(
        name = "Clusters",
        type_ = "integer",
        description = "Tenant clusters",
        json_path = ".status.clusterCount"
    ),
    printcolumn(
        name = "Tenants",
        type_ = "integer",
        description = "Tenants placed on the pool's clusters",
        json_path = ".status.tenants"
    ),
    printcolumn(
        name = "Utilisation",
        type_ = "string",
        description = "Load over capacity, bytes or writes, of the whole pool",
        json_path = ".status.utilisation"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        description = "What the pool is doing",
        json_path = ".status.phase"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.clusters) || self.clusters.max >= self.clusters.min")
        .message("spec.clusters.max must be at least spec.clusters.min")
        .field_path(".clusters.max")
)]
#[serde(rename_all = "camelCase")]
pub struct MySQLTenantPoolSpec {
    /// What every tenant cluster is made of. Members are spread over nodes, as every
    /// MySQLCluster's are.
    #[serde(default)]
    pub cluster_template: ClusterTemplate,

    /// How many tenant clusters: `min` are made at once, more are added while the pool is
    /// busier than `placement.growThreshold`, up to `max`.
    #[serde(default)]
    pub clusters: ClusterCount,

    /// The small cluster that holds the directory (which cluster each tenant lives on) and
    /// every database that belongs to no tenant.
    #[serde(default)]
    pub directory: DirectorySpec,

    /// How a tenant's database is named: `{id}` stands for the tenant's id.
    #[serde(default = "default_tenant_database")]
    #[schemars(
        length(min = 5, max = 20),
        regex(pattern = r"^[A-Za-z0-9_$]*\{id\}[A-Za-z0-9_$]*$")
    )]
    pub tenant_database: String,

    /// How the proxies find the tenant of a connection.
    #[serde(default)]
    pub routing: RoutingSpec,

    /// Where new tenants go and when the pool grows.
    #[serde(default)]
    pub placement: PlacementSpec,

    /// Tenants moved by the operator itself when the clusters' use of space drifts apart.
    #[serde(default)]
    pub rebalance: RebalanceSpec,

    /// The pool's proxies: every client connects to them, whichever cluster its tenant is on.
    #[serde(default)]
    pub proxy: ProxySpec,

    /// The first GTID domain of the pool: the directory takes it, tenant cluster `i` the
    /// domain `i + 1` after it. Derived from the namespace and name when absent. Cannot be
    /// changed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967295_i64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.gtidDomainIdBase cannot be changed"))]
    pub gtid_domain_id_base: Option<i64>,

    /// The first `server_id` of the pool: the directory takes the 10 from it, tenant cluster
    /// `i` the 10 from `serverIdBase + 10 * (i + 1)`. Derived from the namespace and name when
    /// absent. Cannot be changed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295_i64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.serverIdBase cannot be changed"))]
    pub server_id_base: Option<i64>,
}

/// What every tenant cluster is made of: a MySQLCluster spec without what the pool decides
/// (identity, ids, proxies, one-off requests).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTemplate {
    /// Members of each tenant cluster: 2 or 3.
    #[serde(default = "default_template_replicas")]
    #[schemars(range(min = 2, max = 3))]
    pub replicas: i32,
    /// The server image; defaults to MariaDB 10.11.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Each member's data volume.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Compute resources of each database server container.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Server options written to each member's configuration file, as in a MySQLCluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 200))]
    pub server_config: BTreeMap<String, String>,
    /// Secrets with the accounts of every cluster of the pool; each one absent is generated
    /// as `<pool>-<purpose>`. One set for the whole pool, so a proxy logs in to any cluster
    /// with the same accounts.
    #[serde(default, skip_serializing_if = "CredentialsSpec::is_empty")]
    pub credentials: CredentialsSpec,
    /// Replication options, as in a MySQLCluster (per-member options are not taken: members
    /// are named after their cluster).
    #[serde(default)]
    pub replication: TemplateReplication,
    /// TLS on every connection, as in a MySQLCluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

fn default_template_replicas() -> i32 {
    2
}

impl Default for ClusterTemplate {
    fn default() -> Self {
        Self {
            replicas: default_template_replicas(),
            image: None,
            storage: StorageSpec::default(),
            resources: Resources::default(),
            server_config: BTreeMap::new(),
            credentials: CredentialsSpec::default(),
            replication: TemplateReplication::default(),
            tls: None,
        }
    }
}

/// Replication options of a pool's clusters.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TemplateReplication {
    /// Lossless semi-synchronous replication; on by default whenever a cluster has a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync: Option<bool>,
}

/// How many tenant clusters the pool may have.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCount {
    /// Clusters made at once.
    #[serde(default = "default_min_clusters")]
    #[schemars(range(min = 1, max = 100))]
    pub min: i32,
    /// The most the pool grows to.
    #[serde(default = "default_max_clusters")]
    #[schemars(range(min = 1, max = 100))]
    pub max: i32,
}

fn default_min_clusters() -> i32 {
    1
}

fn default_max_clusters() -> i32 {
    8
}

impl Default for ClusterCount {
    fn default() -> Self {
        Self {
            min: default_min_clusters(),
            max: default_max_clusters(),
        }
    }
}

/// The directory's cluster, `<pool>-directory`. It is made from the cluster template with
/// these differences.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DirectorySpec {
    /// Members: 1 to 3. One member has no failover: while it is down, new tenants cannot be
    /// placed and proxies route from what they have cached.
    #[serde(default = "default_directory_replicas")]
    #[schemars(range(min = 1, max = 3))]
    pub replicas: i32,
    /// Each member's data volume; the template's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// The directory cluster's GTID domain; the first of the pool's when absent. Must lie
    /// outside the tenant clusters' domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967295_i64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.directory.gtidDomainId cannot be changed"))]
    pub gtid_domain_id: Option<i64>,
    /// The directory cluster's first `server_id`; the first range of the pool's when absent.
    /// Must lie outside the tenant clusters' ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967287_i64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.directory.serverIdBase cannot be changed"))]
    pub server_id_base: Option<i64>,
}

fn default_directory_replicas() -> i32 {
    2
}

impl Default for DirectorySpec {
    fn default() -> Self {
        Self {
            replicas: default_directory_replicas(),
            storage: None,
            gtid_domain_id: None,
            server_id_base: None,
        }
    }
}

fn default_tenant_database() -> String {
    "t_{id}".into()
}

/// Where a proxy looks for the tenant of a statement.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TenantSource {
    /// The database the statement names or the session uses (`t_42`).
    Database,
    /// A comment: `/* lagless tenant=42 */`.
    Hint,
    /// A connection attribute sent at login (`routing.attribute`).
    Attribute,
}

impl TenantSource {
    /// The name in the spec, the pool document's.
    pub fn as_str(self) -> &'static str {
        lagless_directory::TenantSource::from(self).as_str()
    }
}

/// The same source in the pool document the proxies follow.
impl From<TenantSource> for lagless_directory::TenantSource {
    fn from(source: TenantSource) -> Self {
        match source {
            TenantSource::Database => Self::Database,
            TenantSource::Hint => Self::Hint,
            TenantSource::Attribute => Self::Attribute,
        }
    }
}

/// How the proxies find the tenant of a connection.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {
    /// Where to look, in order; the first that names a tenant wins.
    #[serde(default = "default_sources")]
    #[schemars(length(min = 1, max = 3))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub sources: Vec<TenantSource>,
    /// The connection attribute that names the tenant.
    #[serde(default = "default_attribute")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub attribute: String,
}

fn default_sources() -> Vec<TenantSource> {
    vec![
        TenantSource::Database,
        TenantSource::Hint,
        TenantSource::Attribute,
    ]
}

fn default_attribute() -> String {
    "lagless_tenant".into()
}

impl Default for RoutingSpec {
    fn default() -> Self {
        Self {
            sources: default_sources(),
            attribute: default_attribute(),
        }
    }
}

/// Where new tenants go and when the pool grows. A cluster's utilisation is the larger of
/// its bytes over `capacityBytes` and its write rate over `writeCapacity`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// The data one cluster is meant to hold: a quantity (`100Gi`) or a number of bytes.
    #[serde(default = "default_capacity")]
    pub capacity_bytes: ByteQuantity,
    /// The writes one cluster is meant to take, in transactions per second.
    #[serde(default = "default_write_capacity")]
    #[schemars(range(min = 0.001))]
    pub write_capacity: f64,
    /// The pool's utilisation above which a cluster is added (0 to 1).
    #[serde(default = "default_grow_threshold")]
    #[schemars(range(min = 0.01, max = 1.0))]
    pub grow_threshold: f64,
}

fn default_capacity() -> ByteQuantity {
    ByteQuantity::Text("100Gi".into())
}

fn default_write_capacity() -> f64 {
    1000.0
}

fn default_grow_threshold() -> f64 {
    0.7
}

impl Default for PlacementSpec {
    fn default() -> Self {
        Self {
            capacity_bytes: default_capacity(),
            write_capacity: default_write_capacity(),
            grow_threshold: default_grow_threshold(),
        }
    }
}

/// Moving tenants between the pool's clusters without being asked: while the fullest
/// cluster's utilisation (bytes over `placement.capacityBytes`) exceeds the emptiest open one's
/// by more than `margin`, its largest tenant that narrows the gap moves there, one move at a
/// time, only while every cluster is healthy and its replicas keep up. Local pools only for now.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceSpec {
    /// Whether the operator moves tenants by itself (off: `tenant rebalance` on request).
    #[serde(default)]
    pub enabled: bool,
    /// Utilisations closer than this count as even (a fraction, 0.01 to 1).
    #[serde(default = "default_rebalance_margin")]
    #[schemars(range(min = 0.01, max = 1.0))]
    pub margin: f64,
    /// Seconds between two looks at the pool (and after a move ends before the next).
    #[serde(default = "default_rebalance_interval")]
    #[schemars(range(min = 5, max = 86400))]
    pub interval_seconds: u32,
    /// Moves planned at each look, run one after another.
    #[serde(default = "default_rebalance_moves")]
    #[schemars(range(min = 1, max = 10))]
    pub max_moves: u32,
    /// MiB a second a move's snapshot is loaded into its target at most (0: unpaced).
    #[serde(default = "default_rebalance_copy_rate")]
    #[schemars(range(min = 0, max = 10240))]
    pub copy_rate_mib: u32,
    /// A move starts only while no replica of any tenant cluster is further behind than this
    /// many seconds.
    #[serde(default = "default_rebalance_lag")]
    #[schemars(range(min = 0, max = 3600))]
    pub max_replica_lag_seconds: u32,
}

fn default_rebalance_margin() -> f64 {
    0.10
}

fn default_rebalance_interval() -> u32 {
    300
}

fn default_rebalance_moves() -> u32 {
    1
}

fn default_rebalance_copy_rate() -> u32 {
    4
}

fn default_rebalance_lag() -> u32 {
    2
}

impl Default for RebalanceSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            margin: default_rebalance_margin(),
            interval_seconds: default_rebalance_interval(),
            max_moves: default_rebalance_moves(),
            copy_rate_mib: default_rebalance_copy_rate(),
            max_replica_lag_seconds: default_rebalance_lag(),
        }
    }
}

/// A size in bytes: a Kubernetes quantity (`100Gi`, `500M`) or a plain number of bytes.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum ByteQuantity {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for ByteQuantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteQuantity;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a quantity such as 100Gi or a whole number of bytes")
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(ByteQuantity::Bytes(n))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
                i64::try_from(n)
                    .map(ByteQuantity::Bytes)
                    .map_err(|_| E::custom(format!("{n} bytes is too large")))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(ByteQuantity::Text(text.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl ByteQuantity {
    /// The number of bytes, if it is a whole, positive number of them.
    pub fn bytes(&self) -> Option<u64> {
        match self {
            Self::Bytes(n) => u64::try_from(*n).ok().filter(|n| *n > 0),
            Self::Text(text) => quantity_bytes(text),
        }
    }
}

impl std::fmt::Display for ByteQuantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(n) => write!(f, "{n}"),
            Self::Text(text) => f.write_str(text),
        }
    }
}

impl JsonSchema for ByteQuantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteQuantity".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // The shape of Kubernetes' own int-or-string fields: any other combination of types is
        // not a structural schema.
        schemars::json_schema!({
            "description": "A size in bytes: a Kubernetes quantity (100Gi, 500M) or a number of bytes.",
            "x-kubernetes-int-or-string": true,
            // kube marks optional int-or-string fields nullable; a size is never null.
            "nullable": false,
        })
    }
}

/// The whole number of bytes a quantity stands for (`1.5Gi`, `100M`, `1e9`, `42`): `None`
/// for anything else, for fractions below one byte and for sizes beyond `u64`.
pub fn quantity_bytes(text: &str) -> Option<u64> {
    if !is_quantity(text) {
        return None;
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    // The number as mantissa / 10^fraction digits, exactly.
    let mantissa: u128 = format!("{whole}{fraction}").parse().ok()?;
    let mut denominator: u128 = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let mut numerator = mantissa;
    let binary = |power: u32| 1024u128.pow(power);
    let decimal = |power: u32| 1000u128.pow(power);
    match suffix {
        "" => {}
        "Ki" => numerator = numerator.checked_mul(binary(1))?,
        "Mi" => numerator = numerator.checked_mul(binary(2))?,
        "Gi" => numerator = numerator.checked_mul(binary(3))?,
        "Ti" => numerator = numerator.checked_mul(binary(4))?,
        "Pi" => numerator = numerator.checked_mul(binary(5))?,
        "Ei" => numerator = numerator.checked_mul(binary(6))?,
        "k" => numerator = numerator.checked_mul(decimal(1))?,
        "M" => numerator = numerator.checked_mul(decimal(2))?,
        "G" => numerator = numerator.checked_mul(decimal(3))?,
        "T" => numerator = numerator.checked_mul(decimal(4))?,
        "P" => numerator = numerator.checked_mul(decimal(5))?,
        "E" => numerator = numerator.checked_mul(decimal(6))?,
        "m" => denominator = denominator.checked_mul(decimal(1))?,
        "u" => denominator = denominator.checked_mul(decimal(2))?,
        "n" => denominator = denominator.checked_mul(decimal(3))?,
        exponent => {
            let exponent = exponent.strip_prefix(['e', 'E'])?;
            let (negative, digits) = match exponent.strip_prefix('-') {
                Some(digits) => (true, digits),
                None => (false, exponent.strip_prefix('+').unwrap_or(exponent)),
            };
            let power = 10u128.checked_pow(digits.parse().ok()?)?;
            if negative {
                denominator = denominator.checked_mul(power)?;
            } else {
                numerator = numerator.checked_mul(power)?;
            }
        }
    }
    u64::try_from(numerator / denominator)
        .ok()
        .filter(|n| *n > 0)
}

/// What the operator reports about a pool.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MySQLTenantPoolStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PoolPhase>,
    /// Tenant clusters made so far (the directory's not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_count: Option<i32>,
    /// Tenants placed on the pool's clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<i64>,
    /// The whole pool's load over its capacity, as `43%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilisation: Option<String>,
    /// Each tenant cluster's tenants and load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub clusters: Vec<PoolClusterStatus>,
    /// `Available`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What a pool is doing, in one word.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolPhase {
    /// The clusters are being made.
    Pending,
    /// Every cluster has a primary and the proxies route.
    Running,
    /// A cluster is being added.
    Growing,
    /// Some cluster has no primary, or the directory is out of reach.
    Degraded,
    /// The spec is invalid; the `Degraded` condition says why and nothing is changed.
    Invalid,
}

/// One tenant cluster of a pool.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PoolClusterStatus {
    /// The MySQLCluster, `<pool>-c<i>`.
    pub name: String,
    /// Whether new tenants are placed there.
    pub state: PoolClusterState,
    /// Its member that takes writes, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Tenants placed on it.
    pub tenants: i64,
    /// Bytes of the tenants' databases (data and indexes) on its primary.
    pub bytes: i64,
    /// Transactions per second written in its GTID domain.
    pub write_rate: f64,
    /// The larger of bytes over capacity and writes over capacity.
    pub utilisation: f64,
}

/// Whether new tenants are placed on a cluster.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolClusterState {
    /// Takes new tenants, the less loaded of two random clusters each time.
    Open,
    /// Just added: takes new tenants first, until it is as full as the others.
    Filling,
    /// Takes no new tenants.
    Closed,
}

/// The GTID domains and `server_id` ranges of a pool's clusters. The directory takes slot 0
/// (unless the spec gives it ids of its own) and tenant cluster `i` takes slot `i + 1`, so
/// raising `clusters.max` never moves a cluster that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolIds {
    pub gtid_domain_base: u32,
    pub server_id_base: u32,
    /// The directory's `(gtid_domain_id, server_id_base)`.
    pub directory: (u32, u32),
}

impl PoolIds {
    /// Tenant cluster `index`'s `(gtid_domain_id, server_id_base)`.
    pub fn tenant_cluster(&self, index: u32) -> (u32, u32) {
        let slot = index.saturating_add(1);
        (
            self.gtid_domain_base.saturating_add(slot),
            self.server_id_base
                .saturating_add(slot.saturating_mul(SERVER_IDS_PER_CLUSTER)),
        )
    }
}

impl MySQLTenantPoolSpec {
    /// The ids of pool `namespace/name`'s clusters: as the spec gives them, else derived from
    /// the namespace and name (stable, and apart from other pools' but for a small chance).
    pub fn ids(&self, namespace: &str, name: &str) -> PoolIds {
        // Salted, so a pool and a MySQLCluster of the same name derive different ids.
        let hash = fnv1a(namespace, &format!("{name}/tenant-pool"));
        let gtid_domain_base = self
            .gtid_domain_id_base
            .and_then(|id| u32::try_from(id).ok())
            // Below 2^31, never 0, with room above for every cluster.
            .unwrap_or((hash % 0x7fff_0000) + 1);
        let server_id_base = self
            .server_id_base
            .and_then(|id| u32::try_from(id).ok())
            // Blocks of 1024 ids, enough for the most clusters a pool may have.
            .unwrap_or((hash % 0x003f_ffff) * 1024 + 1);
        let directory = (
            self.directory
                .gtid_domain_id
                .and_then(|id| u32::try_from(id).ok())
                .unwrap_or(gtid_domain_base),
            self.directory
                .server_id_base
                .and_then(|id| u32::try_from(id).ok())
                .unwrap_or(server_id_base),
        );
        PoolIds {
            gtid_domain_base,
            server_id_base,
            directory,
        }
    }

    /// The capacity of one cluster in bytes (the default's when the spec's is not valid,
    /// which `validate` reports).
    pub fn capacity_bytes(&self) -> u64 {
        self.placement
            .capacity_bytes
            .bytes()
            .or_else(|| default_capacity().bytes())
            .unwrap_or(u64::MAX)
    }

    /// Checks the spec of pool `namespace/name`. Returns every problem found, each naming its
    /// field.
    pub fn validate(&self, namespace: &str, name: &str) -> Result<(), SpecErrors> {
        let mut errors = Vec::new();
        let mut add = |field: &str, message: String| {
            errors.push(SpecError {
                field: field.to_string(),
                message,
            });
        };
        if name.len() > MAX_POOL_NAME {
            add(
                "metadata.name",
                format!(
                    "must be at most {MAX_POOL_NAME} characters: `{name}-directory` names a cluster"
                ),
            );
        }
        let template = &self.cluster_template;
        if !(2..=3).contains(&template.replicas) {
            add(
                "spec.clusterTemplate.replicas",
                format!("must be 2 or 3, not {}", template.replicas),
            );
        }
        let ClusterCount { min, max } = self.clusters;
        if !(1..=MAX_POOL_CLUSTERS).contains(&min) {
            add(
                "spec.clusters.min",
                format!("must be between 1 and {MAX_POOL_CLUSTERS}, not {min}"),
            );
        }
        if !(1..=MAX_POOL_CLUSTERS).contains(&max) {
            add(
                "spec.clusters.max",
                format!("must be between 1 and {MAX_POOL_CLUSTERS}, not {max}"),
            );
        } else if max < min {
            add(
                "spec.clusters.max",
                format!("must be at least spec.clusters.min ({min}), not {max}"),
            );
        }
        if !(1..=3).contains(&self.directory.replicas) {
            add(
                "spec.directory.replicas",
                format!("must be between 1 and 3, not {}", self.directory.replicas),
            );
        }
        if let Some(storage) = &self.directory.storage
            && !is_quantity(&storage.size)
        {
            add(
                "spec.directory.storage.size",
                format!(
                    "`{}` is not a Kubernetes quantity such as 1Gi",
                    storage.size
                ),
            );
        }
        if let Err(why) = check_tenant_database(&self.tenant_database) {
            add("spec.tenantDatabase", why);
        }
        let mut seen = Vec::new();
        for (i, source) in self.routing.sources.iter().enumerate() {
            if seen.contains(source) {
                add(
                    &format!("spec.routing.sources[{i}]"),
                    format!("{} is listed twice", source.as_str()),
                );
            }
            seen.push(*source);
        }
        if self.routing.sources.is_empty() {
            add(
                "spec.routing.sources",
                "must name at least one of database, hint, attribute".into(),
            );
        }
        let attribute = &self.routing.attribute;
        if attribute.is_empty()
            || attribute.len() > 64
            || !attribute
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            add(
                "spec.routing.attribute",
                format!(
                    "`{attribute}` is not a connection attribute name (letters, digits, _ . -, at most 64)"
                ),
            );
        }
        if self.placement.capacity_bytes.bytes().is_none() {
            add(
                "spec.placement.capacityBytes",
                format!(
                    "`{}` is not a size: write a quantity such as 100Gi or a number of bytes",
                    self.placement.capacity_bytes
                ),
            );
        }
        let write_capacity = self.placement.write_capacity;
        if !(write_capacity.is_finite() && write_capacity > 0.0) {
            add(
                "spec.placement.writeCapacity",
                format!(
                    "must be a positive number of transactions per second, not {write_capacity}"
                ),
            );
        }
        let threshold = self.placement.grow_threshold;
        if !(threshold > 0.0 && threshold <= 1.0) {
            add(
                "spec.placement.growThreshold",
                format!("must be above 0 and at most 1, not {threshold}"),
            );
        }
        let rebalance = &self.rebalance;
        if rebalance.enabled && self.cluster_template.tls.is_some() {
            add(
                "spec.rebalance.enabled",
                "tenant moves do not run with TLS yet: rebalancing needs them".into(),
            );
        }
        if !(rebalance.margin >= 0.01 && rebalance.margin <= 1.0) {
            add(
                "spec.rebalance.margin",
                format!("must be between 0.01 and 1, not {}", rebalance.margin),
            );
        }
        if !(5..=86400).contains(&rebalance.interval_seconds) {
            add(
                "spec.rebalance.intervalSeconds",
                format!(
                    "must be between 5 and 86400, not {}",
                    rebalance.interval_seconds
                ),
            );
        }
        if !(1..=10).contains(&rebalance.max_moves) {
            add(
                "spec.rebalance.maxMoves",
                format!("must be between 1 and 10, not {}", rebalance.max_moves),
            );
        }
        if rebalance.copy_rate_mib > 10240 {
            add(
                "spec.rebalance.copyRateMib",
                format!("must be at most 10240, not {}", rebalance.copy_rate_mib),
            );
        }
        if rebalance.max_replica_lag_seconds > 3600 {
            add(
                "spec.rebalance.maxReplicaLagSeconds",
                format!(
                    "must be at most 3600, not {}",
                    rebalance.max_replica_lag_seconds
                ),
            );
        }
        if !(0..=100).contains(&self.proxy.replicas) {
            add("spec.proxy.replicas", "must be between 0 and 100".into());
        }
        if let Err(err) = self.proxy.default_consistency.parse::<ConsistencyMode>() {
            add("spec.proxy.defaultConsistency", err.to_string());
        }
        for error in self.check_ids(namespace, name) {
            add(&error.field, error.message);
        }
        // The template is checked as the MySQLCluster it becomes, its errors named by the
        // template's fields.
        let cluster = tenant_cluster_spec(self, namespace, name, 0);
        if let Err(template_errors) = cluster.validate(&tenant_cluster_name(name, 0)) {
            for error in template_errors.0 {
                let field = match error.field.strip_prefix("spec.") {
                    Some(rest) => format!("spec.clusterTemplate.{rest}"),
                    None => error.field,
                };
                add(&field, error.message);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SpecErrors(errors))
        }
    }

    /// The id ranges: explicit bases leave room for every cluster, and the directory's own ids
    /// do not fall among the tenant clusters'.
    fn check_ids(&self, namespace: &str, name: &str) -> Vec<SpecError> {
        let mut errors = Vec::new();
        let add = |errors: &mut Vec<SpecError>, field: &str, message: String| {
            errors.push(SpecError {
                field: field.to_string(),
                message,
            });
        };
        let slots = i64::from(self.clusters.max.clamp(1, MAX_POOL_CLUSTERS)) + 1;
        let per_cluster = i64::from(SERVER_IDS_PER_CLUSTER);
        let highest_domain = i64::from(u32::MAX) - (slots - 1);
        if let Some(base) = self.gtid_domain_id_base
            && !(0..=highest_domain).contains(&base)
        {
            add(
                &mut errors,
                "spec.gtidDomainIdBase",
                format!(
                    "must be between 0 and {highest_domain}: the pool's {slots} clusters take \
                     the domains from it up"
                ),
            );
        }
        let highest_server = i64::from(u32::MAX) - slots * per_cluster + 1;
        if let Some(base) = self.server_id_base
            && !(1..=highest_server).contains(&base)
        {
            add(
                &mut errors,
                "spec.serverIdBase",
                format!(
                    "must be between 1 and {highest_server}: the pool's {slots} clusters take \
                     {per_cluster} server ids each from it up"
                ),
            );
        }
        if let Some(id) = self.directory.gtid_domain_id
            && !(0..=i64::from(u32::MAX)).contains(&id)
        {
            add(
                &mut errors,
                "spec.directory.gtidDomainId",
                format!("must be between 0 and {}", u32::MAX),
            );
        }
        let highest_directory = i64::from(u32::MAX) - i64::from(MAX_MEMBERS - 1);
        if let Some(id) = self.directory.server_id_base
            && !(1..=highest_directory).contains(&id)
        {
            add(
                &mut errors,
                "spec.directory.serverIdBase",
                format!("must be between 1 and {highest_directory}"),
            );
        }
        if !errors.is_empty() {
            return errors;
        }
        let ids = self.ids(namespace, name);
        let tenant_domains =
            i64::from(ids.gtid_domain_base) + 1..=i64::from(ids.gtid_domain_base) + slots - 1;
        let (directory_domain, directory_server) = ids.directory;
        if self.directory.gtid_domain_id.is_some()
            && tenant_domains.contains(&i64::from(directory_domain))
        {
            add(
                &mut errors,
                "spec.directory.gtidDomainId",
                format!(
                    "{directory_domain} is a tenant cluster's domain (the tenant clusters take \
                     {} to {})",
                    tenant_domains.start(),
                    tenant_domains.end()
                ),
            );
        }
        let tenant_servers = i64::from(ids.server_id_base) + per_cluster
            ..i64::from(ids.server_id_base) + slots * per_cluster;
        let directory_servers =
            i64::from(directory_server)..i64::from(directory_server) + per_cluster;
        if self.directory.server_id_base.is_some()
            && directory_servers.start < tenant_servers.end
            && tenant_servers.start < directory_servers.end
        {
            add(
                &mut errors,
                "spec.directory.serverIdBase",
                format!(
                    "the directory's server ids {} to {} overlap the tenant clusters' ({} to {})",
                    directory_servers.start,
                    directory_servers.end - 1,
                    tenant_servers.start,
                    tenant_servers.end - 1
                ),
            );
        }
        errors
    }
}

/// Checks a tenant database pattern by the rule the proxies apply.
fn check_tenant_database(pattern: &str) -> Result<(), String> {
    TenantNaming::parse(pattern)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl MySQLTenantPool {
    /// Checks the spec against this resource's namespace and name; see
    /// [`MySQLTenantPoolSpec::validate`].
    pub fn validate(&self) -> Result<(), SpecErrors> {
        self.spec.validate(self.namespace_or_default(), self.name())
    }

    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    fn namespace_or_default(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// The ids of this pool's clusters.
    pub fn ids(&self) -> PoolIds {
        self.spec.ids(self.namespace_or_default(), self.name())
    }

    /// Tenant clusters that exist: as many as the status reports, at least `clusters.min`
    /// and at most `clusters.max`.
    pub fn tenant_cluster_count(&self) -> u32 {
        let reported = self
            .status
            .as_ref()
            .and_then(|s| s.cluster_count)
            .unwrap_or(0);
        let ClusterCount { min, max } = self.spec.clusters;
        u32::try_from(reported.max(min).min(max)).unwrap_or(0)
    }
}

/// The name of pool `pool`'s directory cluster.
pub fn directory_name(pool: &str) -> String {
    format!("{pool}-directory")
}

/// The name of pool `pool`'s tenant cluster `index`.
pub fn tenant_cluster_name(pool: &str, index: u32) -> String {
    format!("{pool}-c{index}")
}

/// The clusters of `pool`: its directory first, then its tenant clusters (as many as
/// [`MySQLTenantPool::tenant_cluster_count`] says).
pub fn clusters(pool: &MySQLTenantPool) -> Vec<MySQLCluster> {
    clusters_with(pool, pool.tenant_cluster_count())
}

/// The clusters of `pool` with `count` tenant clusters (at most `clusters.max`).
pub fn clusters_with(pool: &MySQLTenantPool, count: u32) -> Vec<MySQLCluster> {
    let name = pool.name();
    let namespace = pool.namespace_or_default();
    let max = u32::try_from(pool.spec.clusters.max).unwrap_or(0);
    let mut out = vec![member_cluster(
        pool,
        directory_name(name),
        "directory",
        directory_spec(&pool.spec, namespace, name),
    )];
    for index in 0..count.min(max) {
        out.push(member_cluster(
            pool,
            tenant_cluster_name(name, index),
            "tenants",
            tenant_cluster_spec(&pool.spec, namespace, name, index),
        ));
    }
    out
}

/// A MySQLCluster of the pool: in its namespace, labelled with it and, in Kubernetes (where
/// the pool has a uid), owned by it.
fn member_cluster(
    pool: &MySQLTenantPool,
    name: String,
    role: &str,
    spec: MySQLClusterSpec,
) -> MySQLCluster {
    let owner = pool.metadata.uid.as_ref().map(|uid| OwnerReference {
        api_version: MySQLTenantPool::api_version(&()).into_owned(),
        kind: MySQLTenantPool::kind(&()).into_owned(),
        name: pool.name().to_string(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    });
    let labels = BTreeMap::from([
        (POOL_LABEL.to_string(), pool.name().to_string()),
        (POOL_ROLE_LABEL.to_string(), role.to_string()),
    ]);
    MySQLCluster {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: pool.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// The spec every cluster of the pool shares, with `replicas` members and the given ids.
fn base_spec(
    pool: &MySQLTenantPoolSpec,
    pool_name: &str,
    replicas: i32,
    (gtid_domain_id, server_id_base): (u32, u32),
) -> MySQLClusterSpec {
    let template = &pool.cluster_template;
    // One set of accounts for the whole pool: a proxy logs in to every cluster as the client.
    let credentials = CredentialsSpec {
        admin_secret_name: Some(template.credentials.admin_secret(pool_name)),
        replication_secret_name: Some(template.credentials.replication_secret(pool_name)),
        lookup_secret_name: Some(template.credentials.lookup_secret(pool_name)),
        monitor_secret_name: Some(template.credentials.monitor_secret(pool_name)),
    };
    MySQLClusterSpec {
        replicas,
        flavor: Flavor::Mariadb,
        image: template.image.clone(),
        storage: template.storage.clone(),
        resources: template.resources.clone(),
        server_config: template.server_config.clone(),
        credentials,
        gtid_domain_id: Some(i64::from(gtid_domain_id)),
        server_id_base: Some(i64::from(server_id_base)),
        replication: ReplicationSpec {
            // Nothing to acknowledge with one member.
            semi_sync: template.replication.semi_sync.filter(|_| replicas > 1),
            ..ReplicationSpec::default()
        },
        // The pool's proxies serve every cluster; the clusters run none of their own.
        proxy: ProxySpec {
            replicas: 0,
            default_consistency: pool.proxy.default_consistency.clone(),
            ..ProxySpec::default()
        },
        // Each cluster is paused on its own (the pool never sets this field).
        paused: false,
        bootstrap: None,
        cordoned: Vec::new(),
        // Each cluster is made read-only on its own (the pool never sets this field).
        read_only: false,
        switchover: None,
        reseed: None,
        tls: template.tls.clone(),
        // Pools' clusters are not archived yet.
        backup: None,
    }
}

fn directory_spec(pool: &MySQLTenantPoolSpec, namespace: &str, name: &str) -> MySQLClusterSpec {
    let ids = pool.ids(namespace, name);
    let mut spec = base_spec(pool, name, pool.directory.replicas, ids.directory);
    if let Some(storage) = &pool.directory.storage {
        spec.storage = storage.clone();
    }
    spec
}

fn tenant_cluster_spec(
    pool: &MySQLTenantPoolSpec,
    namespace: &str,
    name: &str,
    index: u32,
) -> MySQLClusterSpec {
    let ids = pool.ids(namespace, name);
    base_spec(
        pool,
        name,
        pool.cluster_template.replicas,
        ids.tenant_cluster(index),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLTenantPool
metadata: {name: demo, namespace: apps}
spec:
  clusterTemplate: {replicas: 2}
  clusters: {min: 3, max: 6}
  directory: {replicas: 1}
  gtidDomainIdBase: 100
  serverIdBase: 1000
";

    fn pool(yaml: &str) -> MySQLTenantPool {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn errors(pool: &MySQLTenantPool) -> SpecErrors {
        pool.validate().unwrap_err()
    }

    #[test]
    fn an_empty_spec_gets_defaults_and_is_valid() {
        let spec: MySQLTenantPoolSpec = serde_saphyr::from_str("{}").unwrap();
        assert_eq!(spec.cluster_template.replicas, 2);
        assert_eq!(spec.clusters, ClusterCount { min: 1, max: 8 });
        assert_eq!(spec.directory.replicas, 2);
        assert_eq!(spec.tenant_database, "t_{id}");
        assert_eq!(spec.routing.sources, default_sources());
        assert_eq!(spec.routing.attribute, "lagless_tenant");
        assert_eq!(spec.capacity_bytes(), 100 << 30);
        assert_eq!(spec.placement.write_capacity, 1000.0);
        assert_eq!(spec.placement.grow_threshold, 0.7);
        assert_eq!(spec.proxy.replicas, 2);
        assert_eq!(spec.rebalance, RebalanceSpec::default());
        assert!(
            !spec.rebalance.enabled,
            "moves only on request unless asked"
        );
        assert_eq!(spec.validate("default", "pool"), Ok(()));
    }

    #[test]
    fn the_pool_expands_to_a_directory_and_its_tenant_clusters() {
        let demo = pool(DEMO);
        assert_eq!(demo.validate(), Ok(()));
        let clusters = clusters(&demo);
        let names: Vec<_> = clusters
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["demo-directory", "demo-c0", "demo-c1", "demo-c2"]);
        let ids: Vec<_> = clusters
            .iter()
            .map(|c| {
                (
                    c.spec.replicas,
                    c.spec.gtid_domain_id,
                    c.spec.server_id_base,
                )
            })
            .collect();
        assert_eq!(
            ids,
            [
                (1, Some(100), Some(1000)),
                (2, Some(101), Some(1010)),
                (2, Some(102), Some(1020)),
                (2, Some(103), Some(1030)),
            ]
        );
        for cluster in &clusters {
            assert_eq!(cluster.metadata.namespace.as_deref(), Some("apps"));
            assert_eq!(
                cluster.spec.proxy.replicas, 0,
                "the pool's proxies serve it"
            );
            assert_eq!(cluster.spec.credentials.admin_secret("x"), "demo-admin");
            assert_eq!(cluster.spec.credentials.lookup_secret("x"), "demo-lookup");
            assert_eq!(cluster.spec.credentials.monitor_secret("x"), "demo-monitor");
            assert_eq!(
                cluster.metadata.labels.as_ref().unwrap()[POOL_LABEL],
                "demo"
            );
            // Locally there is no uid, so no owner.
            assert!(cluster.metadata.owner_references.is_none());
            assert_eq!(cluster.validate(), Ok(()), "{:?}", cluster.metadata.name);
        }
        assert_eq!(
            clusters[0].metadata.labels.as_ref().unwrap()[POOL_ROLE_LABEL],
            "directory"
        );
        // One member, nothing to acknowledge, even when the template asks for semi-sync.
        let mut semi = demo.clone();
        semi.spec.cluster_template.replication.semi_sync = Some(true);
        let expanded = clusters_with(&semi, 1);
        assert_eq!(expanded[0].spec.replication.semi_sync, None);
        assert_eq!(expanded[1].spec.replication.semi_sync, Some(true));
        assert_eq!(expanded[0].validate(), Ok(()));
    }

    #[test]
    fn the_count_follows_the_status_within_min_and_max() {
        let mut demo = pool(DEMO);
        assert_eq!(demo.tenant_cluster_count(), 3);
        demo.status = Some(MySQLTenantPoolStatus {
            cluster_count: Some(5),
            ..Default::default()
        });
        assert_eq!(demo.tenant_cluster_count(), 5);
        assert_eq!(clusters(&demo).len(), 6);
        demo.status.as_mut().unwrap().cluster_count = Some(60);
        assert_eq!(demo.tenant_cluster_count(), 6);
        assert_eq!(clusters_with(&demo, 60).len(), 7);
    }

    #[test]
    fn clusters_are_owned_by_a_pool_with_a_uid() {
        let mut demo = pool(DEMO);
        demo.metadata.uid = Some("u-1".into());
        for cluster in clusters(&demo) {
            let owners = cluster.metadata.owner_references.unwrap();
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].kind, "MySQLTenantPool");
            assert_eq!(owners[0].api_version, "lagless.dev/v1alpha1");
            assert_eq!(
                (owners[0].name.as_str(), owners[0].uid.as_str()),
                ("demo", "u-1")
            );
            assert_eq!(owners[0].controller, Some(true));
        }
    }

    #[test]
    fn derived_ids_are_stable_distinct_and_leave_room() {
        let spec: MySQLTenantPoolSpec = serde_saphyr::from_str("{}").unwrap();
        let a = spec.ids("prod", "tenants");
        assert_eq!(a, spec.ids("prod", "tenants"));
        assert_ne!(
            a.gtid_domain_base,
            spec.ids("prod", "other").gtid_domain_base
        );
        assert_ne!(
            a.server_id_base,
            spec.ids("staging", "tenants").server_id_base
        );
        assert_eq!(a.directory, (a.gtid_domain_base, a.server_id_base));
        let (domain, server) = a.tenant_cluster(u32::try_from(MAX_POOL_CLUSTERS).unwrap());
        assert!(domain < 0x8000_0000);
        assert!(server.checked_add(SERVER_IDS_PER_CLUSTER).is_some());
        assert_eq!(a.server_id_base % 1024, 1);
        // Not the ids a MySQLCluster of the same name derives.
        let cluster: MySQLClusterSpec = serde_saphyr::from_str("replicas: 1").unwrap();
        assert_ne!(
            cluster.gtid_domain_id("prod", "tenants"),
            a.gtid_domain_base
        );
    }

    #[test]
    fn explicit_ids_must_fit_and_the_directory_must_stay_apart() {
        let mut demo = pool(DEMO);
        demo.spec.gtid_domain_id_base = Some(i64::from(u32::MAX) - 3);
        demo.spec.server_id_base = Some(0);
        let err = errors(&demo);
        assert!(err.mentions("spec.gtidDomainIdBase"), "{err}");
        assert!(err.mentions("spec.serverIdBase"), "{err}");

        let mut demo = pool(DEMO);
        demo.spec.directory.gtid_domain_id = Some(103);
        demo.spec.directory.server_id_base = Some(1055);
        let err = errors(&demo);
        assert!(err.mentions("spec.directory.gtidDomainId"), "{err}");
        assert!(err.mentions("spec.directory.serverIdBase"), "{err}");
        assert!(err.to_string().contains("overlap"), "{err}");

        // Beyond the last slot (max 6: domains 101..=106, ids 1010..=1069) they are fine.
        demo.spec.directory.gtid_domain_id = Some(107);
        demo.spec.directory.server_id_base = Some(1070);
        assert_eq!(demo.validate(), Ok(()));
        let expanded = clusters(&demo);
        assert_eq!(expanded[0].spec.gtid_domain_id, Some(107));
        assert_eq!(expanded[0].spec.server_id_base, Some(1070));
        demo.spec.directory.server_id_base = Some(1001);
        assert!(errors(&demo).mentions("spec.directory.serverIdBase"));
        demo.spec.directory.server_id_base = Some(991);
        assert_eq!(demo.validate(), Ok(()));
    }

    #[test]
    fn bad_fields_are_named() {
        let demo = pool(
            "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLTenantPool
metadata: {name: a-pool-name-much-too-long-for-a-cluster}
spec:
  clusterTemplate:
    replicas: 4
    serverConfig: {server_id: '3'}
    storage: {size: lots}
  clusters: {min: 4, max: 2}
  directory: {replicas: 0, storage: {size: x}}
  tenantDatabase: 'tenant-{id}'
  routing: {sources: [hint, hint], attribute: 'bad attr'}
  placement: {capacityBytes: 100GB, writeCapacity: 0, growThreshold: 1.5}
  proxy: {replicas: 101, defaultConsistency: soon}
  rebalance: {enabled: true, margin: 0, intervalSeconds: 1, maxMoves: 0, copyRateMib: 20000, maxReplicaLagSeconds: 4000}
",
        );
        let err = errors(&demo);
        for field in [
            "metadata.name",
            "spec.clusterTemplate.replicas",
            "spec.clusterTemplate.serverConfig.server_id",
            "spec.clusterTemplate.storage.size",
            "spec.clusters.max",
            "spec.directory.replicas",
            "spec.directory.storage.size",
            "spec.tenantDatabase",
            "spec.routing.sources[1]",
            "spec.routing.attribute",
            "spec.placement.capacityBytes",
            "spec.placement.writeCapacity",
            "spec.placement.growThreshold",
            "spec.proxy.replicas",
            "spec.proxy.defaultConsistency",
            "spec.rebalance.margin",
            "spec.rebalance.intervalSeconds",
            "spec.rebalance.maxMoves",
            "spec.rebalance.copyRateMib",
            "spec.rebalance.maxReplicaLagSeconds",
        ] {
            assert!(err.mentions(field), "{field}: {err}");
        }
    }

    #[test]
    fn rebalancing_is_refused_with_tls() {
        let mut demo = pool(DEMO);
        demo.spec.rebalance.enabled = true;
        assert_eq!(demo.validate(), Ok(()));
        demo.spec.cluster_template.tls = Some(TlsSpec {
            secret_name: Some("pool-tls".into()),
            issuer_ref: None,
        });
        let err = errors(&demo);
        assert!(err.mentions("spec.rebalance.enabled"), "{err}");
    }

    #[test]
    fn tenant_database_patterns() {
        for good in ["t_{id}", "{id}_tenant", "Shop$_{id}_db"] {
            assert_eq!(check_tenant_database(good), Ok(()), "{good}");
        }
        let long = format!("{}{{id}}", "x".repeat(17));
        for bad in ["t_", "{id}", "t_{id}_{id}", "t-{id}", &long] {
            assert!(check_tenant_database(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capacities_are_quantities_or_bytes() {
        let bytes = |yaml: &str| {
            serde_saphyr::from_str::<PlacementSpec>(yaml)
                .unwrap()
                .capacity_bytes
                .bytes()
        };
        assert_eq!(bytes("capacityBytes: 100Gi"), Some(100 << 30));
        assert_eq!(bytes("capacityBytes: 1048576"), Some(1 << 20));
        assert_eq!(bytes("capacityBytes: '1.5Ki'"), Some(1536));
        assert_eq!(bytes("capacityBytes: 2M"), Some(2_000_000));
        assert_eq!(bytes("capacityBytes: '1e9'"), Some(1_000_000_000));
        // A number that is not whole is refused, as Kubernetes refuses it.
        let err = serde_saphyr::from_str::<PlacementSpec>("capacityBytes: 1.5").unwrap_err();
        assert!(err.to_string().contains("whole number of bytes"), "{err}");
        assert_eq!(bytes("capacityBytes: -5"), None);
        assert_eq!(bytes("capacityBytes: 500m"), None);
        assert_eq!(bytes("capacityBytes: 100GB"), None);
        assert_eq!(quantity_bytes("1500m"), Some(1));
        assert_eq!(quantity_bytes("12e-1"), Some(1));
        assert_eq!(quantity_bytes("16Ei"), None, "beyond u64");
        assert_eq!(quantity_bytes("1e40"), None);
    }

    #[test]
    fn crd_has_identity_and_columns() {
        use kube::CustomResourceExt;
        let crd = MySQLTenantPool::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("mysqltenantpools.lagless.dev")
        );
        assert_eq!(
            crd.spec.names.short_names,
            Some(vec!["tenantpool".to_string(), "mtp".to_string()])
        );
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            ["Clusters", "Tenants", "Utilisation", "Phase", "Age"]
        );
        let schema = serde_json::to_value(&version.schema).unwrap();
        let capacity = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["placement"]
            ["properties"]["capacityBytes"];
        assert_eq!(capacity["x-kubernetes-int-or-string"], true, "{capacity}");
    }
}
