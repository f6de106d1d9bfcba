//! What the reconciler and the orchestration tasks both need: the field manager of their
//! server-side applies, how a cluster is named in logs and maps, and recording a Kubernetes
//! Event on a cluster.

use ::kube::Resource;
use ::kube::ResourceExt;
use ::kube::runtime::events::{Event as KubeEvent, EventType, Recorder};

use super::status::ClusterEvent;
use crate::crd::MySQLCluster;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "lagless-operator";

/// `namespace/name`, the key of a cluster in the controller's maps.
pub fn cluster_key(cluster: &MySQLCluster) -> String {
    format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

/// Records `mapped` as a Kubernetes Event on `cluster`.
pub async fn publish(recorder: &Recorder, cluster: &MySQLCluster, mapped: ClusterEvent) {
    let kube_event = KubeEvent {
        type_: if mapped.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: mapped.reason.into(),
        note: Some(mapped.note),
        action: mapped.action.into(),
        secondary: None,
    };
    // An Event is a courtesy: failing to record one must not stop the orchestration.
    if let Err(e) = recorder
        .publish(&kube_event, &cluster.object_ref(&()))
        .await
    {
        tracing::warn!(cluster = %cluster_key(cluster), error = %e, "recording an Event failed");
    }
}
