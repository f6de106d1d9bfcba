//! What the reconcilers and the per-cluster and per-pool tasks all need: the field manager of
//! their server-side applies, how a cluster or pool is named in logs and maps, and recording a
//! Kubernetes Event on one.

use std::sync::{Mutex, MutexGuard, PoisonError};

use ::kube::Resource;
use ::kube::ResourceExt;
use ::kube::api::Api;
use ::kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use k8s_openapi::api::core::v1::Secret;

use super::builders::Credential;
use super::status::ClusterEvent;
use crate::crd::MySQLCluster;
use crate::orchestrate::observe::Credentials;

/// Locks `mutex`, even one a panic poisoned: what the controller guards are plain values,
/// consistent at every await-free step.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "lagless-operator";

/// `namespace/name`, the key of a cluster in the controller's maps.
pub fn cluster_key(cluster: &MySQLCluster) -> String {
    object_key(cluster)
}

/// `namespace/name` of any object, the key of a tenant pool in the controller's maps.
pub fn object_key<K: ResourceExt>(object: &K) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Records `mapped` as a Kubernetes Event on `object` (a cluster or a tenant pool).
pub async fn publish<K>(recorder: &Recorder, object: &K, mapped: ClusterEvent)
where
    K: Resource<DynamicType = ()>,
{
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
    if let Err(e) = recorder.publish(&kube_event, &object.object_ref(&())).await {
        tracing::warn!(object = %object_key(object), kind = %K::kind(&()), error = %e, "recording an Event failed");
    }
}

/// The username and password of `credential`'s Secret for `cluster`.
pub(crate) async fn credentials(
    api: &Api<Secret>,
    cluster: &MySQLCluster,
    credential: Credential,
) -> Result<Credentials, String> {
    let name = credential.secret_name(cluster).map_err(|e| e.to_string())?;
    account(api, &name).await
}

/// The `username` and `password` of Secret `name`, both UTF-8.
pub(crate) async fn account(api: &Api<Secret>, name: &str) -> Result<Credentials, String> {
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| format!("reading Secret {name}: {e}"))?
        .ok_or_else(|| format!("Secret {name} not found"))?;
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .ok_or_else(|| format!("Secret {name} has no UTF-8 {key}"))
    };
    Ok(Credentials {
        user: field("username")?,
        password: field("password")?,
    })
}

/// The topology cluster `cluster` publishes in its ConfigMap: none while it has published none.
pub(crate) async fn published_topology(
    configmaps: &Api<k8s_openapi::api::core::v1::ConfigMap>,
    cluster: &str,
) -> Result<Option<lagless_core::topology::Topology>, String> {
    let name = super::builders::topology_configmap_name(cluster);
    let json = configmaps
        .get_opt(&name)
        .await
        .map_err(|e| format!("cannot read ConfigMap {name}: {e}"))?
        .and_then(|cm| cm.data?.remove(super::builders::TOPOLOGY_KEY));
    json.map(|json| {
        lagless_core::topology::Topology::parse(json.as_bytes())
            .map_err(|e| format!("ConfigMap {name}: unreadable topology: {e}"))
    })
    .transpose()
}
