//! The objects of a cluster's backups: the `MySQLBackup` a schedule creates.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{BuildError, Component, Context};
use crate::backup::sigv4::civil;
use crate::crd::MySQLCluster;
use crate::crd::accounts::ClusterRef;
use crate::crd::backup::{MySQLBackup, MySQLBackupSpec};

/// The label that marks a `MySQLBackup` the schedule created (with the scheduled time, Unix
/// seconds, as its value).
pub const SCHEDULED_LABEL: &str = "lagless.dev/scheduled";

/// The name of the scheduled backup of `at` (Unix seconds): one per scheduled minute, so a
/// second operator (or a restarted one) asking for the same run finds it made.
pub fn scheduled_backup_name(cluster: &str, at: u64) -> String {
    let (y, mo, d, h, mi, _) = civil(at);
    format!("{cluster}-{y:04}{mo:02}{d:02}-{h:02}{mi:02}")
}

/// The `MySQLBackup` the schedule creates for its run at `at`, owned by the cluster (deleted
/// with it; the stored backup stays).
pub fn scheduled_backup(cluster: &MySQLCluster, at: u64) -> Result<MySQLBackup, BuildError> {
    let ctx = Context::new(cluster)?;
    let mut labels = super::labels(ctx.name, Component::Mysql);
    labels.insert(SCHEDULED_LABEL.into(), at.to_string());
    let meta = ctx.meta(scheduled_backup_name(ctx.name, at), Component::Mysql);
    Ok(MySQLBackup {
        metadata: ObjectMeta {
            labels: Some(labels.into_iter().collect::<BTreeMap<_, _>>()),
            ..meta
        },
        spec: MySQLBackupSpec {
            cluster_ref: ClusterRef {
                name: ctx.name.to_string(),
            },
        },
        status: None,
    })
}
