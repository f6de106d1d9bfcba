//! The `MySQLCluster` custom resource (`lagless.dev/v1alpha1`): what a user asks for and what
//! the operator reports back.
//!
//! The types are the source of truth: the CRD in `crds/mysqlcluster.yaml` is generated from them
//! (`lagless-operator crd`) and a test fails when the two differ.
//!
//! Validation happens twice. The schema rejects what it can express (ranges, enums, patterns and
//! CEL rules in `x-kubernetes-validations`) so `kubectl apply` fails with a message; the same
//! rules, and a few the schema cannot express, are checked again by
//! [`MySQLClusterSpec::validate`], because a CRD installed from an older version (or a cluster
//! without CEL) may let a bad spec through, and the reconciler must then report it in status
//! rather than act on it.

pub mod accounts;
pub mod backup;
pub mod tenant_move;
pub mod tenant_pool;
mod validate;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use lagless_core::ConsistencyMode;
use lagless_core::topology;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::orchestrate::{ClusterSpec, MemberSpec, SemiSync, Switchover, SwitchoverTarget};

pub use tenant_pool::{MySQLTenantPool, MySQLTenantPoolSpec, MySQLTenantPoolStatus};
pub use validate::{SpecError, SpecErrors};

/// The most members a cluster may have.
pub const MAX_MEMBERS: i32 = 9;

/// The switchover target that lets the operator choose the member.
pub const BEST: &str = "best";

/// The image used for a MariaDB cluster that names none.
pub const DEFAULT_MARIADB_IMAGE: &str = "docker.io/library/mariadb:10.11";

/// The image used for a MySQL cluster that names none.
pub const DEFAULT_MYSQL_IMAGE: &str = "docker.io/library/mysql:8.4";

/// A Kubernetes quantity (`10Gi`, `500m`, `1.5`, `1e3`), as the API server's own pattern for
/// `resource.Quantity`.
const QUANTITY_PATTERN: &str = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// The consistency modes the proxy understands, in their lower-case text form.
const CONSISTENCY_PATTERN: &str =
    r"^(strict|session|proxy|eventual|bounded(\( *[0-9]+ *(ms|s)? *\)|=[0-9]+(ms|s)?)?)$";

/// A MySQL or MariaDB replication cluster: one primary, replicas that follow it over GTID
/// replication, and proxies that route each read to a replica that has seen what it must see.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lagless.dev",
    version = "v1alpha1",
    kind = "MySQLCluster",
    plural = "mysqlclusters",
    shortname = "mysqlc",
    namespaced,
    status = "MySQLClusterStatus",
    derive = "PartialEq",
    doc = "A MySQL or MariaDB replication cluster run by Lagless.",
    printcolumn(
        name = "Primary",
        type_ = "string",
        description = "The member that takes writes",
        json_path = ".status.primary"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Healthy members over desired members",
        json_path = ".status.ready"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        description = "What the cluster is doing",
        json_path = ".status.phase"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(
        "!has(self.spec.switchover) || self.spec.switchover.primary == 'best' || \
         (self.spec.switchover.primary.startsWith(self.metadata.name + '-') && \
          self.spec.switchover.primary.substring(size(self.metadata.name) + 1).matches('^(0|[1-9][0-9]*)$') && \
          int(self.spec.switchover.primary.substring(size(self.metadata.name) + 1)) < self.spec.replicas)"
    )
    .message("spec.switchover.primary must be 'best' or a member of this cluster: <name>-<ordinal> with ordinal < spec.replicas")
    .field_path(".spec.switchover.primary"),
    validation = Rule::new(
        "!has(self.spec.replication) || !has(self.spec.replication.members) || \
         self.spec.replication.members.all(m, m.name.startsWith(self.metadata.name + '-') && \
          m.name.substring(size(self.metadata.name) + 1).matches('^(0|[1-9][0-9]*)$'))"
    )
    .message("spec.replication.members[].name must name a member of this cluster: <name>-<ordinal>")
    .field_path(".spec.replication.members"),
    validation = Rule::new(
        "!has(self.spec.reseed) || \
         (self.spec.reseed.member.startsWith(self.metadata.name + '-') && \
          self.spec.reseed.member.substring(size(self.metadata.name) + 1).matches('^(0|[1-9][0-9]*)$') && \
          int(self.spec.reseed.member.substring(size(self.metadata.name) + 1)) < self.spec.replicas)"
    )
    .message("spec.reseed.member must be a member of this cluster: <name>-<ordinal> with ordinal < spec.replicas")
    .field_path(".spec.reseed.member")
)]
#[x_kube(
    validation = Rule::new(
        "!has(self.replication) || !has(self.replication.semiSyncAcks) || \
         self.replication.semiSyncAcks < self.replicas || \
         (has(self.replication.semiSync) ? !self.replication.semiSync : self.replicas == 1)"
    )
    .message("spec.replication.semiSyncAcks must be less than spec.replicas: the primary cannot acknowledge its own writes")
    .field_path(".replication.semiSyncAcks"),
    validation = Rule::new(
        "!has(self.replication) || !has(self.replication.semiSyncAcks) || \
         self.replication.semiSyncAcks <= 1 || (has(self.flavor) && self.flavor == 'mysql')"
    )
    .message("spec.replication.semiSyncAcks must be 1 with flavor mariadb: MariaDB waits for exactly one acknowledgement")
    .field_path(".replication.semiSyncAcks"),
    validation = Rule::new(
        "!has(self.switchover) || !has(self.replication) || !has(self.replication.members) || \
         !self.replication.members.exists(m, m.name == self.switchover.primary && \
          has(m.neverPromote) && m.neverPromote)"
    )
    .message("spec.switchover.primary names a member with neverPromote set")
    .field_path(".switchover.primary"),
    validation = Rule::new("!has(self.reseed) || !has(self.flavor) || self.flavor == 'mariadb'")
        .message("spec.reseed needs flavor mariadb: MySQL members have no seeding agent")
        .field_path(".reseed")
)]
#[serde(rename_all = "camelCase")]
pub struct MySQLClusterSpec {
    /// Number of database servers (members), one of which is the primary.
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,

    /// The server family: `mariadb` or `mysql`. Cannot be changed after creation.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.flavor cannot be changed"))]
    pub flavor: Flavor,

    /// The server image; defaults to MariaDB 10.11 (`docker.io/library/mariadb:10.11`) or, for
    /// the `mysql` flavor, MySQL 8.4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Each member's data volume.
    #[serde(default)]
    pub storage: StorageSpec,

    /// Compute resources of each database server container.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,

    /// Server options written to each member's configuration file (`option: value`, my.cnf
    /// syntax). Options the operator manages (server id, GTID domain, binary log, read-only,
    /// semi-sync) are rejected.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    // Key names are checked by `validate` only: a CEL rule over map keys, which the schema
    // cannot bound in length, risks exceeding the API server's cost budget.
    #[schemars(extend("maxProperties" = 200))]
    pub server_config: BTreeMap<String, String>,

    /// Secrets holding the credentials the operator and the replicas use; each one absent is
    /// generated as `<cluster>-<purpose>`.
    #[serde(default, skip_serializing_if = "CredentialsSpec::is_empty")]
    pub credentials: CredentialsSpec,

    /// The MariaDB `gtid_domain_id` of this cluster's writes. Every cluster needs its own so that
    /// data can later move between clusters over replication; when absent it is derived from the
    /// namespace and name. Cannot be changed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967295_i64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.gtidDomainId cannot be changed"))]
    pub gtid_domain_id: Option<i64>,

    /// The `server_id` of member 0; member N gets `serverIdBase + N`. Every cluster that may
    /// replicate with another needs its own range; when absent it is derived from the namespace
    /// and name. Cannot be changed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967287_i64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.serverIdBase cannot be changed"))]
    pub server_id_base: Option<i64>,

    /// Replication options.
    #[serde(default)]
    pub replication: ReplicationSpec,

    /// The proxies applications connect to.
    #[serde(default)]
    pub proxy: ProxySpec,

    /// Stops the orchestration while true: no failover, switchover, re-pointing, re-seed or
    /// seeding, and nothing else that changes the members or the published topology. The
    /// operator keeps observing and reporting (the `Paused` condition), and carries out what
    /// is asked meanwhile once it is false again. For maintenance done by hand.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,

    /// Members kept out of read routing (`<cluster>-<ordinal>`): published to the proxies with
    /// weight 0 while they are replicas, so they get no reads; they keep replicating. A
    /// cordoned member is promoted by a failover (or a switchover to the best member) only when
    /// no other member is fit. A cordoned primary is unaffected until it is a replica again.
    /// Names beyond `spec.replicas` are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 100))]
    pub cordoned: Vec<String>,

    /// The whole cluster read-only while true: the primary is kept `read_only=ON` (a new
    /// primary too, after a failover or switchover), so writes get the server's error 1290,
    /// which the proxies relay at once; reads go on. False again, writes are taken again. The
    /// `ReadOnly` condition and Events say so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,

    /// A planned change of primary. It runs once per `id`: to switch again, give a new id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover: Option<SwitchoverSpec>,

    /// A request to replace a replica's data with a fresh copy from another member (the way
    /// back for a quarantined member). It runs once per `id`. The primary is refused: switch
    /// over first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reseed: Option<ReseedSpec>,

    /// TLS on every connection: clients to the proxies, proxies to members (queries, monitor
    /// and account lookups), replication, the operator's own connections and the seeding
    /// agent's backup stream. Members then refuse unencrypted TCP connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Where backups go, on what schedule, and continuous archiving of the primary's binary
    /// log there (for point-in-time restores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// Where a new cluster's data comes from: empty (the default), or a backup. Read only when
    /// the first member starts on an empty volume and nothing was ever published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapSpec>,
}

/// How a new cluster starts.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// Restore a full backup (and, with `pointInTime`, the archived binary log after it)
    /// into the first member before it starts; the others copy it from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_backup: Option<FromBackupSpec>,
}

/// The backup a new cluster starts from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FromBackupSpec {
    /// Where the backups are: `s3://bucket/prefix`, or a directory (in Kubernetes, on
    /// `persistentVolumeClaim`).
    #[schemars(length(min = 1, max = 1024))]
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// Kubernetes, for a directory: the PersistentVolumeClaim mounted (read-only) at
    /// `destination` in the member pods' restore step; a claim more than one pod may mount
    /// (ReadOnlyMany or ReadWriteMany).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub persistent_volume_claim: Option<String>,
    /// The cluster whose backups these are (its archive is `binlog/<cluster>/`); this
    /// cluster's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub cluster: Option<String>,
    /// A backup id; the newest of `cluster`'s backups (that precedes `pointInTime`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub backup_id: Option<String>,
    /// Roll forward with the archived binary log to this moment: a second in UTC
    /// (`2026-12-07T06:32:14Z`, every transaction up to and including it) or a GTID
    /// position (`0-1-123`). Refused when the archive does not reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub point_in_time: Option<String>,
}

/// Where the cluster's certificate comes from. With neither `secretName` nor `issuerRef`, the
/// operator is its own certificate authority: it keeps a CA in `<cluster>-tls-ca` and issues
/// the certificate into `<cluster>-tls`, renewing it before it expires. However it is
/// issued, a new certificate is loaded without restarting anything.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.secretName) || !has(self.issuerRef)")
        .message("spec.tls: give secretName or issuerRef, not both")
)]
pub struct TlsSpec {
    /// A Secret with `tls.crt`, `tls.key` and `ca.crt` (the layout of cert-manager and of
    /// `kubernetes.io/tls` Secrets), kept up to date by whoever owns it. The certificate must
    /// name the proxy Service and every member (see `docs/kubernetes.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// A cert-manager issuer: the operator creates the `Certificate` `<cluster>-tls` with the
    /// names it needs, and cert-manager issues and renews it into the Secret `<cluster>-tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

/// A cert-manager issuer reference.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Issuer` (in the cluster's namespace) or `ClusterIssuer`.
    #[serde(default = "default_issuer_kind")]
    #[schemars(regex(pattern = r"^(Issuer|ClusterIssuer)$"))]
    pub kind: String,
    #[serde(default = "default_issuer_group")]
    #[schemars(length(min = 1, max = 253))]
    pub group: String,
}

fn default_issuer_kind() -> String {
    "Issuer".into()
}

fn default_issuer_group() -> String {
    "cert-manager.io".into()
}

impl TlsSpec {
    /// The Secret the members and proxies mount, for cluster `cluster`.
    pub fn secret(&self, cluster: &str) -> String {
        self.secret_name
            .clone()
            .unwrap_or_else(|| format!("{cluster}-tls"))
    }

    /// Whether the operator issues the certificate itself.
    pub fn self_issued(&self) -> bool {
        self.secret_name.is_none() && self.issuer_ref.is_none()
    }
}

/// The server family.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    #[default]
    Mariadb,
    Mysql,
}

impl From<Flavor> for topology::Flavor {
    fn from(flavor: Flavor) -> Self {
        match flavor {
            Flavor::Mariadb => topology::Flavor::Mariadb,
            Flavor::Mysql => topology::Flavor::Mysql,
        }
    }
}

/// Each member's persistent volume.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size, as a Kubernetes quantity.
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = QUANTITY_PATTERN))]
    pub size: String,
    /// The StorageClass; the cluster's default class when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> String {
    "10Gi".into()
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// Resource requests and limits of one container, by resource name (`cpu`, `memory`, …), as
/// Kubernetes quantities.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.limits.is_empty()
    }
}

/// Secret references. Each Secret holds `username` and `password`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSpec {
    /// The operator's administrative user; generated as `<cluster>-admin` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub admin_secret_name: Option<String>,
    /// The user replicas connect with; generated as `<cluster>-replication` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub replication_secret_name: Option<String>,
    /// The proxies' account for looking up users (`SELECT` on `mysql.global_priv`, nothing
    /// else); generated as `<cluster>-lookup` when absent. A tenant pool names one for all its
    /// clusters, so its proxies log in to each with the same account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub lookup_secret_name: Option<String>,
    /// The proxies' account for reading replication positions; generated as
    /// `<cluster>-monitor` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub monitor_secret_name: Option<String>,
}

impl CredentialsSpec {
    pub fn is_empty(&self) -> bool {
        self.admin_secret_name.is_none()
            && self.replication_secret_name.is_none()
            && self.lookup_secret_name.is_none()
            && self.monitor_secret_name.is_none()
    }

    /// The Secret that holds the admin credentials of cluster `cluster`.
    pub fn admin_secret(&self, cluster: &str) -> String {
        self.admin_secret_name
            .clone()
            .unwrap_or_else(|| format!("{cluster}-admin"))
    }

    /// The Secret that holds the replication credentials of cluster `cluster`.
    pub fn replication_secret(&self, cluster: &str) -> String {
        self.replication_secret_name
            .clone()
            .unwrap_or_else(|| format!("{cluster}-replication"))
    }

    /// The Secret that holds the proxies' lookup account of cluster `cluster`.
    pub fn lookup_secret(&self, cluster: &str) -> String {
        self.lookup_secret_name
            .clone()
            .unwrap_or_else(|| format!("{cluster}-lookup"))
    }

    /// The Secret that holds the proxies' monitor account of cluster `cluster`.
    pub fn monitor_secret(&self, cluster: &str) -> String {
        self.monitor_secret_name
            .clone()
            .unwrap_or_else(|| format!("{cluster}-monitor"))
    }
}

/// Replication options.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    /// Lossless semi-synchronous replication (AFTER_SYNC, never falling back to asynchronous):
    /// a commit returns only once `semiSyncAcks` replicas hold it, so a failover loses no
    /// acknowledged write. On by default whenever the cluster has a replica; `false` opts out,
    /// and a failover may then lose writes the primary acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync: Option<bool>,
    /// Replica acknowledgements a commit waits for when `semiSync` is on. MariaDB waits for
    /// exactly one, so it must be 1 with `flavor: mariadb`.
    #[serde(default = "default_semi_sync_acks")]
    #[schemars(range(min = 1, max = 8))]
    pub semi_sync_acks: i32,
    /// Per-member options, by member name (`<cluster>-<ordinal>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 9))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub members: Vec<MemberReplicationSpec>,
}

fn default_semi_sync_acks() -> i32 {
    1
}

impl Default for ReplicationSpec {
    fn default() -> Self {
        Self {
            semi_sync: None,
            semi_sync_acks: default_semi_sync_acks(),
            members: Vec::new(),
        }
    }
}

/// What a failover of a cluster with this spec can promise about acknowledged writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Lossless semi-sync: every acknowledged write is on `acks` replicas.
    Lossless { acks: i32 },
    /// Semi-sync turned off: a failover may lose writes the primary acknowledged.
    SemiSyncOff,
    /// One member: there is no failover, and a lost server loses its data.
    SingleMember,
}

impl Durability {
    /// For `replicas` members replicating as `replication` says.
    pub fn of(replication: &ReplicationSpec, replicas: i32) -> Self {
        if replicas <= 1 {
            Durability::SingleMember
        } else if replication.semi_sync_on(replicas) {
            Durability::Lossless {
                acks: replication.semi_sync_acks.max(1),
            }
        } else {
            Durability::SemiSyncOff
        }
    }

    pub fn is_lossless(self) -> bool {
        matches!(self, Durability::Lossless { .. })
    }

    /// One sentence for status displays and events.
    pub fn message(self) -> String {
        match self {
            Durability::Lossless { acks } => format!(
                "lossless semi-sync: every acknowledged write is on {acks} replica{} before the \
                 client hears of it",
                if acks == 1 { "" } else { "s" }
            ),
            Durability::SemiSyncOff => "semi-sync is off (spec.replication.semiSync: false): a \
                 failover may lose writes the primary acknowledged"
                .into(),
            Durability::SingleMember => "one member: no replica holds a copy, so there is no \
                 failover and a lost server loses its data"
                .into(),
        }
    }
}

impl ReplicationSpec {
    /// Whether a cluster of `replicas` members runs lossless semi-sync: as asked, else
    /// whenever there is a replica to acknowledge.
    pub fn semi_sync_on(&self, replicas: i32) -> bool {
        self.semi_sync.unwrap_or(replicas > 1)
    }

    /// The options given for member `name`, if any.
    pub fn member(&self, name: &str) -> Option<&MemberReplicationSpec> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// How one member takes part in promotions.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberReplicationSpec {
    /// The member, `<cluster>-<ordinal>`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Among candidates that hold every transaction, the highest priority is promoted.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub promotion_priority: i32,
    /// Never promote this member (a delayed or remote replica, say).
    #[serde(default)]
    pub never_promote: bool,
}

/// The proxies: a Deployment of `lagless-proxy` and the Service applications connect to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// Proxy pods; 0 runs none (the proxy then runs as a sidecar in the application's pods).
    #[serde(default = "default_proxy_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// The consistency of reads that ask for none: `strict`, `session`, `proxy`, `eventual`,
    /// `bounded`, `bounded(500ms)`, `bounded(2s)` or `bounded=500` (milliseconds).
    #[serde(default = "default_consistency")]
    #[schemars(regex(pattern = CONSISTENCY_PATTERN))]
    pub default_consistency: String,
    /// Compute resources of each proxy container.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// The type of the client Service.
    #[serde(default)]
    pub service_type: ServiceType,
}

fn default_proxy_replicas() -> i32 {
    2
}

fn default_consistency() -> String {
    "strict".into()
}

impl Default for ProxySpec {
    fn default() -> Self {
        Self {
            replicas: default_proxy_replicas(),
            default_consistency: default_consistency(),
            resources: Resources::default(),
            service_type: ServiceType::default(),
        }
    }
}

/// A Kubernetes Service type.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// Backups and the binary log archive.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// `s3://bucket/prefix`, or a directory (a path or `file:///path`).
    #[schemars(length(min = 1, max = 1024))]
    pub destination: String,
    /// For an `s3://` destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// Kubernetes, for a directory destination: the PersistentVolumeClaim (in the cluster's
    /// namespace) mounted at `destination` in the pod that writes backups and the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub persistent_volume_claim: Option<String>,
    /// Archive every transaction of the primary as it commits (under
    /// `<destination>/binlog/<cluster>/`), following failovers and switchovers, so a
    /// restore can stop at any second or GTID since the oldest full backup.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archive_binlogs: bool,
    /// Full backups on a cron schedule, in UTC (`minute hour day-of-month month
    /// day-of-week`, such as `0 3 * * *`), taken from a caught-up replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub schedule: Option<String>,
    /// After each scheduled backup, keep this cluster's newest `keep` full backups and every
    /// one younger than `keepDays` days, delete the others (the newest always stays), and
    /// the archived binary log older than the oldest one kept. Neither set: nothing is
    /// deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<u32>,
    /// The member backups are taken from (`<cluster>-<ordinal>`), when it is a replica that has
    /// applied what the primary has (a backup waits for it otherwise); without it, the least
    /// behind such replica. Never the primary, unless it is the only member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub member: Option<String>,
    /// Restore drills on a cron schedule, in UTC: the newest backup restored into a scratch
    /// server, rolled forward with the archive to a consistent snapshot of a replicating
    /// replica, and every table compared with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub drill_schedule: Option<String>,
}

/// An S3-compatible store.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// `http(s)://host[:port]` of an S3-compatible server (path-style URLs); AWS S3 when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub region: Option<String>,
    /// A file of `AWS_ACCESS_KEY_ID=…` and `AWS_SECRET_ACCESS_KEY=…` lines (local runtime;
    /// relative to the cluster file). Without it, those environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub credentials_file: Option<String>,
    /// Kubernetes: a Secret in the cluster's namespace with the keys `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub credentials_secret: Option<String>,
}

/// A planned switchover request.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverSpec {
    /// Identifies the request: a switchover runs once per id.
    #[schemars(length(min = 1, max = 63))]
    pub id: String,
    /// The member to promote (`<cluster>-<ordinal>`), or `best` to let the operator choose the
    /// most complete eligible replica.
    #[serde(default = "default_switchover_primary")]
    #[schemars(length(min = 1, max = 63))]
    pub primary: String,
    /// How long transactions open on the old primary may take to finish before it is fenced
    /// (new ones wait at the proxies meanwhile); one still open then is ended. Default 2000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 60000))]
    pub drain_ms: Option<i32>,
}

/// A re-seed request.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReseedSpec {
    /// Identifies the request: a re-seed runs once per id.
    #[schemars(length(min = 1, max = 63))]
    pub id: String,
    /// The member whose data is replaced (`<cluster>-<ordinal>`).
    #[schemars(length(min = 1, max = 63))]
    pub member: String,
}

fn default_switchover_primary() -> String {
    BEST.into()
}

/// What the operator reports.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MySQLClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The member that takes writes, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Healthy members over desired members, as `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub members: Vec<MemberStatus>,
    /// The epoch of the topology last published to the proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_epoch: Option<i64>,
    /// `Available`, `Progressing`, `Degraded` and `FailoverInProgress`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<PromotionRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_switchover: Option<PromotionRecord>,
    /// The last re-seed request and where it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reseed: Option<ReseedRecord>,
    /// Backups (`spec.backup`, `MySQLBackup`): the last good one, the last failure, the next
    /// scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupsStatus>,
}

/// Where a cluster's backups stand.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackupsStatus {
    /// The id of the newest backup that succeeded, and when it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    /// The last failed backup's `MySQLBackup` and why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<String>,
    /// When `spec.backup.schedule` next takes one (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_scheduled: Option<String>,
    /// The last restore drill: `passed: …` or `failed: …`, and when it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill_time: Option<String>,
    /// When `spec.backup.drillSchedule` next runs one (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_drill: Option<String>,
    /// The binary log archive (`spec.backup.archiveBinlogs`), as its archiver reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveReport>,
}

/// Where the binary log archive stands.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveReport {
    /// The member read (the primary), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading: Option<String>,
    /// The archive's GTID position: every transaction up to it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// How long the oldest transaction read has waited to be stored, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments_stored: Option<i64>,
    /// The archiver's last error, or why it cannot be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a re-seed request stands.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReseedRecord {
    /// The request's id.
    pub id: String,
    pub member: String,
    /// `InProgress`, `Succeeded` or `Failed`.
    pub result: ReseedResult,
    /// What happened, for people.
    pub message: String,
    /// When the result was last set, RFC 3339.
    pub time: String,
    /// When the request started, RFC 3339 (its timeouts count from there, also across
    /// operator restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// The uid of the member's pod that was deleted, while the new one is awaited (so a
    /// restarted operator waits for it rather than replacing the new pod again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_pod_uid: Option<String>,
}

/// The outcome of a re-seed request.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReseedResult {
    InProgress,
    Succeeded,
    Failed,
}

/// What the cluster is doing, in one word.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Servers are being created.
    Pending,
    /// The servers run; replication is being set up.
    Bootstrapping,
    /// A primary takes writes and every member replicates.
    Running,
    /// A primary takes writes; some member needs repair or attention.
    Degraded,
    /// The primary is lost and a replica is being promoted.
    FailingOver,
    /// A planned switchover is under way.
    SwitchingOver,
    /// `spec.paused`: observed and reported, not orchestrated.
    Paused,
    /// The spec is invalid; the `Degraded` condition says why and nothing is changed.
    Invalid,
}

/// One member as last observed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub name: String,
    pub role: MemberRole,
    /// The GTID set the member has executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_position: Option<String>,
    /// How far behind the primary in time, in milliseconds, as a replica reports it
    /// (`Seconds_Behind_Master`, whole seconds), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<i64>,
    /// Transactions the primary has executed that this replica has not applied yet: what
    /// decides whether a read that must see them may go to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions_behind: Option<i64>,
    /// Reachable and, for a replica, replicating without error.
    pub healthy: bool,
    /// Why the member is quarantined: the transactions it holds that the primary's history
    /// lacks, or the position the primary refuses. It stays out of traffic and promotion
    /// until it is re-seeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errant: Option<String>,
    /// Kept out of read routing (`spec.cordoned`): published with weight 0 while a replica.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cordoned: bool,
}

/// A member's part in the cluster.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberRole {
    Primary,
    Replica,
    /// Kept out of traffic and promotion (errant transactions, lost position).
    Quarantined,
    /// Not observed yet, or unreachable.
    Unknown,
}

/// A status condition, in the standard Kubernetes shape.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Available`, `Progressing`, `Degraded` or `FailoverInProgress`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase word for programs.
    pub reason: String,
    /// A sentence for people.
    // Left out when empty: Kubernetes before 1.21 turns an empty string in a server-side
    // applied list item into null and then refuses the status as not a string.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When `status` last changed, RFC 3339.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub const AVAILABLE: &str = "Available";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
    pub const FAILOVER_IN_PROGRESS: &str = "FailoverInProgress";
    /// True when a failover loses no acknowledged write (lossless semi-sync).
    pub const LOSSLESS: &str = "Lossless";
    /// False, only where the API server lacks `policy/v1` and no PodDisruptionBudget is applied.
    pub const DISRUPTION_BUDGET: &str = "DisruptionBudget";
    /// True while `spec.paused` stops the orchestration; reported once a cluster was paused.
    pub const PAUSED: &str = "Paused";
    /// True while `spec.readOnly` holds and the primary refuses writes; reported once a
    /// cluster was made read-only.
    pub const READ_ONLY: &str = "ReadOnly";
    /// True while members are rolled onto a changed template (one at a time, the primary last
    /// after a switchover); reported once a cluster was rolled.
    pub const ROLLING: &str = "Rolling";
    /// Only on a cluster that starts from a backup (`spec.bootstrap.fromBackup`): False while
    /// its first member is restored (reason `RestoreFailing` with the error when the restore
    /// step fails), True once the cluster is published.
    pub const RESTORED: &str = "Restored";
    /// A tenant pool's: False while `spec.rebalance.enabled` asks for what this controller
    /// does not do yet (tenants are moved by the local runtime only).
    pub const REBALANCING: &str = "Rebalancing";
}

/// The status of a condition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A completed promotion: a failover or a switchover.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PromotionRecord {
    /// When the new primary was published, RFC 3339.
    pub time: String,
    /// The previous primary, when one was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    /// The switchover request's id, for a switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why the switchover failed; `to` is then the primary that kept (or got back) the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MySQLClusterSpec {
    /// The image to run: `image`, or the default of the flavor.
    pub fn image(&self) -> &str {
        match (&self.image, self.flavor) {
            (Some(image), _) => image,
            (None, Flavor::Mariadb) => DEFAULT_MARIADB_IMAGE,
            (None, Flavor::Mysql) => DEFAULT_MYSQL_IMAGE,
        }
    }

    /// The GTID domain of cluster `namespace/name`: `gtidDomainId`, or one derived from the
    /// namespace and name (stable, and different between clusters but for a 1 in 2^31 chance).
    /// The backup a new cluster starts from, if any.
    pub fn from_backup(&self) -> Option<&FromBackupSpec> {
        self.bootstrap.as_ref()?.from_backup.as_ref()
    }

    pub fn gtid_domain_id(&self, namespace: &str, name: &str) -> u32 {
        match self.gtid_domain_id.and_then(|id| u32::try_from(id).ok()) {
            Some(id) => id,
            // Below 2^31, and never 0 (the domain of servers nobody configured).
            None => (fnv1a(namespace, name) % 0x7fff_ffff) + 1,
        }
    }

    /// The `server_id` of member 0 of cluster `namespace/name`: `serverIdBase`, or a base
    /// derived from the namespace and name. Derived bases are multiples of 16 plus 1, so the
    /// ranges of two clusters never overlap, they only coincide (1 in 2^28).
    pub fn server_id_base(&self, namespace: &str, name: &str) -> u32 {
        match self.server_id_base.and_then(|id| u32::try_from(id).ok()) {
            Some(id) => id,
            None => (fnv1a(namespace, name) % 0x0fff_ffff) * 16 + 1,
        }
    }

    /// What a failover can promise about acknowledged writes.
    pub fn durability(&self) -> Durability {
        Durability::of(&self.replication, self.replicas)
    }

    /// The orchestration core's view of this spec, for cluster `name` whose members are
    /// `(name, host, port)`. Per-member options are matched by name; members without any get
    /// priority 0 and may be promoted.
    pub fn to_cluster_spec(&self, name: &str, members: Vec<(String, String, u16)>) -> ClusterSpec {
        let members = members
            .into_iter()
            .map(|(member, host, port)| {
                let mut spec = MemberSpec::new(member, host, port);
                if let Some(options) = self.replication.member(&spec.name) {
                    spec.promotion_priority = options.promotion_priority;
                    spec.never_promote = options.never_promote;
                }
                spec
            })
            .collect();
        let mut spec = ClusterSpec::new(name, members);
        spec.semi_sync = self
            .replication
            .semi_sync_on(self.replicas)
            .then(|| SemiSync {
                acks: u32::try_from(self.replication.semi_sync_acks.max(1)).unwrap_or(1),
            });
        spec.switchover = self.switchover.as_ref().map(|request| Switchover {
            id: request.id.clone(),
            to: if request.primary == BEST {
                SwitchoverTarget::Best
            } else {
                SwitchoverTarget::Member(request.primary.clone())
            },
        });
        spec.paused = self.paused;
        spec.cordoned = self.cordoned.iter().cloned().collect();
        spec.read_only = self.read_only;
        if let Some(ms) = self.switchover.as_ref().and_then(|r| r.drain_ms) {
            spec.switchover_drain = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        }
        // An unparsable mode is refused by `validate` before this is called; the proxies'
        // own default applies if one got through.
        spec.consistency = self
            .proxy
            .default_consistency
            .parse::<ConsistencyMode>()
            .ok();
        spec
    }
}

impl MySQLCluster {
    /// Checks the spec against this resource's name; see [`MySQLClusterSpec::validate`].
    pub fn validate(&self) -> Result<(), SpecErrors> {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        self.spec.validate(name)
    }
}

/// The CRD as YAML, as kept in `crds/mysqlcluster.yaml`.
pub fn crd_yaml() -> String {
    generated_yaml(
        &MySQLCluster::crd(),
        "operator/src/crd.rs by `lagless-operator crd`",
        "crd > crds/mysqlcluster.yaml",
    )
}

/// The `MySQLTenantPool` CRD as YAML, as kept in `crds/mysqltenantpool.yaml`.
pub fn tenant_pool_crd_yaml() -> String {
    generated_yaml(
        &MySQLTenantPool::crd(),
        "operator/src/crd/tenant_pool.rs by `lagless-operator crd --kind MySQLTenantPool`",
        "crd --kind MySQLTenantPool > crds/mysqltenantpool.yaml",
    )
}

/// The `MySQLDatabase`, `MySQLUser` and `MySQLGrant` CRDs as one multi-document YAML, as
/// kept in `crds/mysqlaccounts.yaml`.
pub fn accounts_crds_yaml() -> String {
    use accounts::{MySQLDatabase, MySQLGrant, MySQLUser};
    [MySQLDatabase::crd(), MySQLUser::crd(), MySQLGrant::crd()]
        .iter()
        .map(|crd| {
            generated_yaml(
                crd,
                "operator/src/crd/accounts.rs by `lagless-operator crd --kind accounts`",
                "crd --kind accounts > crds/mysqlaccounts.yaml",
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The `MySQLBackup` CRD as YAML, as kept in `crds/mysqlbackup.yaml`.
pub fn backup_crd_yaml() -> String {
    generated_yaml(
        &backup::MySQLBackup::crd(),
        "operator/src/crd/backup.rs by `lagless-operator crd --kind MySQLBackup`",
        "crd --kind MySQLBackup > crds/mysqlbackup.yaml",
    )
}

/// The `MySQLTenantMove` CRD as YAML, as kept in `crds/mysqltenantmove.yaml`.
pub fn tenant_move_crd_yaml() -> String {
    generated_yaml(
        &tenant_move::MySQLTenantMove::crd(),
        "operator/src/crd/tenant_move.rs by `lagless-operator crd --kind MySQLTenantMove`",
        "crd --kind MySQLTenantMove > crds/mysqltenantmove.yaml",
    )
}

/// The CRDs `lagless-operator crd --kind all` prints: every one, as one multi-document YAML.
pub fn all_crds_yaml() -> String {
    format!(
        "{}---\n{}---\n{}---\n{}---\n{}",
        crd_yaml(),
        tenant_pool_crd_yaml(),
        accounts_crds_yaml(),
        backup_crd_yaml(),
        tenant_move_crd_yaml()
    )
}

fn generated_yaml(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    source: &str,
    regenerate: &str,
) -> String {
    // Long strings (CEL rules, patterns) stay on one line: folded scalars are valid YAML but
    // make rules hard to read and review.
    let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
    let body = match serde_saphyr::to_string_with_options(crd, options) {
        Ok(body) => body,
        // The CRD is plain data (strings, maps, lists, numbers): serializing it cannot fail.
        Err(err) => unreachable!("the CRD serializes to YAML: {err}"),
    };
    format!(
        "# Generated from {source}: do not edit.\n\
         # Regenerate: cargo run -q -p lagless-operator -- {regenerate}\n\
         {body}"
    )
}

/// FNV-1a over `namespace/name`: small, stable across releases and platforms (unlike std's
/// hasher, which may change).
fn fnv1a(namespace: &str, name: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in namespace.bytes().chain(*b"/").chain(name.bytes()) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(replicas: i32) -> MySQLClusterSpec {
        MySQLClusterSpec {
            replicas,
            flavor: Flavor::Mariadb,
            image: None,
            storage: StorageSpec::default(),
            resources: Resources::default(),
            server_config: BTreeMap::new(),
            credentials: CredentialsSpec::default(),
            gtid_domain_id: None,
            server_id_base: None,
            replication: ReplicationSpec::default(),
            proxy: ProxySpec::default(),
            paused: false,
            cordoned: Vec::new(),
            read_only: false,
            switchover: None,
            reseed: None,
            tls: None,
            backup: None,
            bootstrap: None,
        }
    }

    fn members(n: u16) -> Vec<(String, String, u16)> {
        (0..n)
            .map(|i| (format!("db-{i}"), format!("db-{i}.db"), 3306 + i))
            .collect()
    }

    #[test]
    fn minimal_yaml_gets_defaults() {
        let spec: MySQLClusterSpec = serde_saphyr::from_str("replicas: 3\n").unwrap();
        assert_eq!(spec, self::spec(3));
        assert_eq!(spec.image(), DEFAULT_MARIADB_IMAGE);
        assert_eq!(spec.proxy.default_consistency, "strict");
        assert_eq!(spec.storage.size, "10Gi");
        let mysql: MySQLClusterSpec =
            serde_saphyr::from_str("replicas: 1\nflavor: mysql\n").unwrap();
        assert_eq!(mysql.image(), DEFAULT_MYSQL_IMAGE);
    }

    #[test]
    fn conversion_carries_priorities_semi_sync_switchover_and_consistency() {
        let mut spec = spec(3);
        spec.flavor = Flavor::Mysql;
        spec.replication.semi_sync = Some(true);
        spec.replication.semi_sync_acks = 2;
        spec.replication.members = vec![
            MemberReplicationSpec {
                name: "db-1".into(),
                promotion_priority: 10,
                never_promote: false,
            },
            MemberReplicationSpec {
                name: "db-2".into(),
                promotion_priority: 0,
                never_promote: true,
            },
        ];
        spec.switchover = Some(SwitchoverSpec {
            id: "s1".into(),
            primary: "db-1".into(),
            drain_ms: None,
        });
        spec.proxy.default_consistency = "bounded=500".into();
        let core = spec.to_cluster_spec("db", members(3));
        assert_eq!(core.cluster, "db");
        assert_eq!(core.members.len(), 3);
        let m0 = core.member("db-0").unwrap();
        assert_eq!((m0.host.as_str(), m0.port), ("db-0.db", 3306));
        assert_eq!((m0.promotion_priority, m0.never_promote), (0, false));
        let m1 = core.member("db-1").unwrap();
        assert_eq!((m1.promotion_priority, m1.never_promote), (10, false));
        assert!(core.member("db-2").unwrap().never_promote);
        assert_eq!(core.semi_sync, Some(SemiSync { acks: 2 }));
        assert_eq!(
            core.switchover,
            Some(Switchover {
                id: "s1".into(),
                to: SwitchoverTarget::Member("db-1".into())
            })
        );
        assert_eq!(
            core.consistency,
            Some(ConsistencyMode::Bounded { max_lag_ms: 500 })
        );
        assert_eq!(
            core.failover_after_probes,
            ClusterSpec::DEFAULT_FAILOVER_AFTER_PROBES
        );
    }

    #[test]
    fn conversion_defaults() {
        let mut spec = spec(2);
        spec.switchover = Some(SwitchoverSpec {
            id: "s2".into(),
            primary: BEST.into(),
            drain_ms: None,
        });
        let core = spec.to_cluster_spec("db", members(2));
        // Lossless semi-sync unless turned off, or there is no replica.
        assert_eq!(core.semi_sync, Some(SemiSync { acks: 1 }));
        spec.replication.semi_sync = Some(false);
        assert_eq!(spec.to_cluster_spec("db", members(2)).semi_sync, None);
        spec.replication.semi_sync = None;
        spec.replicas = 1;
        assert_eq!(spec.to_cluster_spec("db", members(1)).semi_sync, None);
        assert_eq!(core.switchover.unwrap().to, SwitchoverTarget::Best);
        assert_eq!(core.consistency, Some(ConsistencyMode::Strict));
    }

    #[test]
    fn derived_ids_are_stable_distinct_and_in_range() {
        let spec = spec(9);
        let a = spec.gtid_domain_id("prod", "orders");
        assert_eq!(a, spec.gtid_domain_id("prod", "orders"));
        assert_ne!(a, spec.gtid_domain_id("prod", "users"));
        assert_ne!(a, spec.gtid_domain_id("staging", "orders"));
        assert!(a > 0 && a <= 0x7fff_ffff);
        let base = spec.server_id_base("prod", "orders");
        assert_eq!(base % 16, 1);
        assert!(base.checked_add(MAX_MEMBERS as u32).is_some());
        assert_ne!(base, spec.server_id_base("prod", "users"));
        let mut explicit = spec.clone();
        explicit.gtid_domain_id = Some(7);
        explicit.server_id_base = Some(100);
        assert_eq!(explicit.gtid_domain_id("prod", "orders"), 7);
        assert_eq!(explicit.server_id_base("prod", "orders"), 100);
    }

    #[test]
    fn credentials_default_to_generated_secrets() {
        let mut credentials = CredentialsSpec::default();
        assert_eq!(credentials.admin_secret("db"), "db-admin");
        assert_eq!(credentials.replication_secret("db"), "db-replication");
        assert_eq!(credentials.lookup_secret("db"), "db-lookup");
        assert_eq!(credentials.monitor_secret("db"), "db-monitor");
        credentials.admin_secret_name = Some("mine".into());
        assert_eq!(credentials.admin_secret("db"), "mine");
        credentials.lookup_secret_name = Some("pool-lookup".into());
        assert_eq!(credentials.lookup_secret("db"), "pool-lookup");
        assert!(!credentials.is_empty());
    }

    #[test]
    fn crd_has_identity_columns_and_rules() {
        let crd = MySQLCluster::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("mysqlclusters.lagless.dev")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["mysqlc".to_string()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Primary", "Ready", "Phase", "Age"]);
        let yaml = crd_yaml();
        for needle in [
            "x-kubernetes-validations",
            "self.replication.semiSyncAcks < self.replicas",
            "self == oldSelf",
            "x-kubernetes-list-map-keys",
        ] {
            assert!(yaml.contains(needle), "the CRD lacks {needle}");
        }
    }
}
