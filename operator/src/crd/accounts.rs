//! Declarative accounts: `MySQLDatabase`, `MySQLUser` and `MySQLGrant`, each naming the
//! `MySQLCluster` it belongs to (`spec.clusterRef`). The operator makes each on the cluster's
//! primary (from where it replicates), and gives the users to the cluster's proxies, so they
//! authenticate them without looking them up (see `kube::accounts`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// The `MySQLCluster` (in the same namespace) an account object belongs to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
}

/// What deleting the resource does on the server.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CleanupPolicy {
    /// Drop the database, the user, or revoke the privileges.
    Delete,
    /// Leave them as they are.
    Retain,
}

/// What the operator reports of an account object.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    /// `Ready`: true once the object is in effect on the cluster's primary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A database on a MySQLCluster.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "lagless.dev",
    version = "v1alpha1",
    kind = "MySQLDatabase",
    plural = "mysqldatabases",
    shortname = "mysqldb",
    namespaced,
    status = "AccountStatus",
    derive = "PartialEq",
    doc = "A database on a MySQLCluster, made on its primary by Lagless.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MySQLDatabaseSpec {
    pub cluster_ref: ClusterRef,
    /// The database's name on the server; the resource's name when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub name: Option<String>,
    /// `CHARACTER SET` (e.g. `utf8mb4`); the server's default when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub character_set: Option<String>,
    /// `COLLATE` (e.g. `utf8mb4_unicode_ci`); the character set's default when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
    /// `Retain` (the default: deleting the resource leaves the database and its data) or
    /// `Delete` (`DROP DATABASE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_policy: Option<CleanupPolicy>,
}

/// The password of a `MySQLUser`: a key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// An account on a MySQLCluster, known to its proxies.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "lagless.dev",
    version = "v1alpha1",
    kind = "MySQLUser",
    plural = "mysqlusers",
    shortname = "mysqluser",
    namespaced,
    status = "AccountStatus",
    derive = "PartialEq",
    doc = "An account on a MySQLCluster, made on its primary and given to its proxies by Lagless.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MySQLUserSpec {
    pub cluster_ref: ClusterRef,
    /// The account's user name; the resource's name when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 80))]
    pub name: Option<String>,
    /// The account's host part; `%` (any) when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub host: Option<String>,
    /// The password. Changing the Secret changes the password (`ALTER USER`): sessions
    /// already open stay, new logins need the new one.
    pub password_secret_key_ref: SecretKeyRef,
    /// `MAX_USER_CONNECTIONS`; 0 or absent: no limit of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_user_connections: Option<i32>,
    /// `Delete` (the default: deleting the resource drops the account) or `Retain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_policy: Option<CleanupPolicy>,
}

/// Privileges of an account on a database (or all), given with `GRANT`.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "lagless.dev",
    version = "v1alpha1",
    kind = "MySQLGrant",
    plural = "mysqlgrants",
    shortname = "mysqlgrant",
    namespaced,
    status = "AccountStatus",
    derive = "PartialEq",
    doc = "Privileges of an account on a MySQLCluster, granted on its primary by Lagless.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(name = "User", type_ = "string", json_path = ".spec.user"),
    printcolumn(name = "Database", type_ = "string", json_path = ".spec.database"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MySQLGrantSpec {
    pub cluster_ref: ClusterRef,
    /// The account's user name (a `MySQLUser`'s, or any account's).
    #[schemars(length(min = 1, max = 80))]
    pub user: String,
    /// The account's host part; `%` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub host: Option<String>,
    /// The database; `*` for all of them.
    #[schemars(length(min = 1, max = 64))]
    pub database: String,
    /// The table; `*` (the default) for all of the database's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub table: Option<String>,
    /// Privilege names as `GRANT` takes them (`SELECT`, `INSERT`, `ALL PRIVILEGES`, ...).
    /// Privileges removed from the list are revoked.
    #[schemars(length(min = 1, max = 40))]
    pub privileges: Vec<String>,
    /// `WITH GRANT OPTION`.
    #[serde(default)]
    pub grant_option: bool,
    /// `Delete` (the default: deleting the resource revokes the privileges) or `Retain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_policy: Option<CleanupPolicy>,
}
