//! `MySQLBackup`: an on-demand full backup of a `MySQLCluster`, taken by the operator to the
//! cluster's `spec.backup.destination` (see `kube::backups`). Scheduled backups
//! (`spec.backup.schedule`) are `MySQLBackup`s the operator creates itself, so both are listed,
//! followed and reported the same way.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::accounts::ClusterRef;

/// Where a backup stands.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackupPhase {
    /// Waiting for its turn, or for a replica that is caught up.
    Pending,
    /// Streaming to the destination.
    Running,
    /// Stored with its manifest: restorable.
    Succeeded,
    /// Nothing of it is kept; `message` says why.
    Failed,
}

impl BackupPhase {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// What the operator reports of a backup.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MySQLBackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// The backup's id at the destination (`lagless-operator local backups --from …` lists
    /// it; `spec.bootstrap.fromBackup.backupId` restores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// Where it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The member it was taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The GTID position the copy holds everything up to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_position: Option<String>,
    /// Bytes stored (compressed) and streamed (the copy itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_bytes: Option<i64>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// How long it took, as `12.3s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// What happened, for people (the error of a failed backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The job's id in the cluster's backup pod (one per attempt): an operator that restarts
    /// while it runs follows it by this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// A full backup of a MySQLCluster.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "lagless.dev",
    version = "v1alpha1",
    kind = "MySQLBackup",
    plural = "mysqlbackups",
    shortname = "mysqlbackup",
    namespaced,
    status = "MySQLBackupStatus",
    derive = "PartialEq",
    doc = "A full backup of a MySQLCluster, taken by Lagless from a caught-up replica to the cluster's spec.backup.destination.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(name = "Drill", type_ = "boolean", json_path = ".spec.drill"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Backup", type_ = "string", json_path = ".status.backupId"),
    printcolumn(
        name = "Position",
        type_ = "string",
        json_path = ".status.gtidPosition"
    ),
    printcolumn(name = "Bytes", type_ = "integer", json_path = ".status.storedBytes"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MySQLBackupSpec {
    /// The cluster to back up (in the same namespace); its `spec.backup` says where to.
    pub cluster_ref: ClusterRef,
    /// A restore drill instead of a backup: the newest backup (or `backupId`) restored into a
    /// scratch server in the cluster's archiver pod, rolled forward with the binary log archive
    /// to a consistent snapshot of a replica, and every table compared with it. `Succeeded`
    /// means the backups and the archive give the data back. Needs
    /// `spec.backup.archiveBinlogs`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drill: bool,
    /// With `drill`: the backup to drill (it must precede the snapshot); the newest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub backup_id: Option<String>,
}
