//! The pool controller's decisions, pure: how many tenant clusters a pool has, whether a spec
//! would shrink it, which clusters join the directory and in which state, and which changes
//! of a pool's `MySQLCluster`s call for reconciling the pool.

use std::time::Duration;

use ::kube::ResourceExt;
use ::kube::runtime::reflector::ObjectRef;
use lagless_directory::placement::{ClusterLoad, ClusterState};

use crate::crd::MySQLCluster;
use crate::crd::tenant_pool::{MySQLTenantPool, tenant_cluster_name};
use crate::pool::growth;

/// How long a tenant cluster is listed in the pool document before it joins the directory:
/// the kubelet takes up to about a minute to update a mounted ConfigMap, and a proxy that
/// does not know a cluster yet cannot route the tenants placed there.
pub const DOCUMENT_PROPAGATION: Duration = Duration::from_secs(90);

/// The index of tenant cluster `name` of pool `pool` (`<pool>-c<i>`).
pub fn tenant_index(pool: &str, name: &str) -> Option<u32> {
    let digits = name.strip_prefix(pool)?.strip_prefix("-c")?;
    let index: u32 = digits.parse().ok()?;
    // `c01` is not `c1`: only the name the pool gives matches.
    (tenant_cluster_name(pool, index) == name).then_some(index)
}

/// The tenant clusters the pool has, as far as is known: what its status records and what
/// the directory holds (`registered`, names), whichever is more.
pub fn existing_clusters(pool: &MySQLTenantPool, registered: &[String]) -> u32 {
    let recorded = pool
        .status
        .as_ref()
        .and_then(|s| s.cluster_count)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    let in_directory = registered
        .iter()
        .filter_map(|name| tenant_index(pool.name(), name))
        .map(|i| i.saturating_add(1))
        .max()
        .unwrap_or(0);
    recorded.max(in_directory)
}

/// How many tenant clusters the pool is made of now: never fewer than it has (a lost status
/// must not drop a cluster that holds tenants from the pool document) or than growth asked
/// for (`wanted`), at least `clusters.min`, at most `clusters.max`.
pub fn cluster_count(pool: &MySQLTenantPool, registered: &[String], wanted: Option<u32>) -> u32 {
    let min = u32::try_from(pool.spec.clusters.min).unwrap_or(0);
    let max = u32::try_from(pool.spec.clusters.max).unwrap_or(0);
    existing_clusters(pool, registered)
        .max(wanted.unwrap_or(0))
        .max(min)
        .min(max)
}

/// Refuses a `clusters.max` below the tenant clusters the pool has: a pool never shrinks,
/// since tenants are not moved between clusters yet.
pub fn check_max(pool: &MySQLTenantPool, registered: &[String]) -> Result<(), String> {
    let existing = existing_clusters(pool, registered);
    let max = pool.spec.clusters.max;
    if i64::from(max) < i64::from(existing) {
        return Err(format!(
            "spec.clusters.max: must be at least {existing}, the tenant clusters the pool has, \
             not {max} (a pool never shrinks: tenants are not moved between clusters yet)"
        ));
    }
    Ok(())
}

/// One tenant cluster of the pool as the pool's loop sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub index: u32,
    /// Whether its topology publishes a primary.
    pub has_primary: bool,
    /// How long the pool document has listed it.
    pub listed_for: Duration,
}

/// What the directory must be told about the pool's tenant clusters: each with the state to
/// register it in.
///
/// A cluster not in the directory joins once it has a primary and the pool document has
/// listed it for [`DOCUMENT_PROPAGATION`] (so every proxy can route to it before a tenant is
/// placed there): open if it is one of the first `min`, else filling. A cluster whose
/// capacity is not the spec's is registered again with its state kept.
pub fn registrations(
    candidates: &[Candidate],
    known: &[ClusterLoad],
    (capacity_bytes, write_capacity): (u64, f64),
    min: u32,
) -> Vec<(String, ClusterState)> {
    candidates
        .iter()
        .filter_map(|c| match known.iter().find(|l| l.name == c.name) {
            Some(load) => (load.capacity_bytes != capacity_bytes
                || load.write_capacity != write_capacity)
                .then(|| (c.name.clone(), load.state)),
            None => (c.has_primary && c.listed_for >= DOCUMENT_PROPAGATION)
                .then(|| (c.name.clone(), growth::joining_state(c.index, min))),
        })
        .collect()
}

/// Whether a cluster of the pool's `count` is not in the directory yet: growth adds one at a
/// time.
pub fn adding(pool: &str, count: u32, known: &[ClusterLoad]) -> bool {
    (0..count).any(|i| {
        let name = tenant_cluster_name(pool, i);
        !known.iter().any(|l| l.name == name)
    })
}

/// The pool to reconcile when one of its `MySQLCluster`s changes, if the change calls for
/// it: the cluster is new or its spec was changed and its own reconciler has not seen that
/// yet (someone edited what the pool owns), or it is being deleted. Status updates alone do
/// not: every cluster writes one every few seconds, and the pool is reconciled every 10 s
/// anyway.
pub fn pool_of_changed_cluster(cluster: &MySQLCluster) -> Option<ObjectRef<MySQLTenantPool>> {
    let owner = cluster
        .owner_references()
        .iter()
        .find(|o| o.kind == "MySQLTenantPool" && o.controller == Some(true))?;
    let seen = cluster.status.as_ref().and_then(|s| s.observed_generation);
    let changed = seen.is_none() || seen != cluster.metadata.generation;
    let deleting = cluster.metadata.deletion_timestamp.is_some();
    (changed || deleting).then(|| {
        let pool = ObjectRef::new(&owner.name);
        match cluster.namespace() {
            Some(ns) => pool.within(&ns),
            None => pool,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::tenant_pool::MySQLTenantPoolStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

    fn pool(min: i32, max: i32, recorded: Option<i32>) -> MySQLTenantPool {
        let mut pool: MySQLTenantPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "lagless.dev/v1alpha1",
            "kind": "MySQLTenantPool",
            "metadata": {"name": "demo", "namespace": "apps"},
            "spec": {"clusters": {"min": min, "max": max}},
        }))
        .unwrap();
        pool.status = recorded.map(|n| MySQLTenantPoolStatus {
            cluster_count: Some(n),
            ..Default::default()
        });
        pool
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn load(name: &str, state: ClusterState) -> ClusterLoad {
        ClusterLoad {
            name: name.into(),
            state,
            capacity_bytes: 100,
            write_capacity: 10.0,
            bytes: 0,
            write_rate: 0.0,
            tenants: 0,
        }
    }

    #[test]
    fn tenant_clusters_are_found_by_their_exact_name() {
        assert_eq!(tenant_index("demo", "demo-c0"), Some(0));
        assert_eq!(tenant_index("demo", "demo-c12"), Some(12));
        for other in [
            "demo-directory",
            "demo-c",
            "demo-c01",
            "demo-cx",
            "other-c1",
            "demo-c-1",
        ] {
            assert_eq!(tenant_index("demo", other), None, "{other}");
        }
    }

    #[test]
    fn the_count_never_drops_a_cluster_the_pool_has() {
        // Nothing known: the minimum.
        assert_eq!(cluster_count(&pool(2, 6, None), &[], None), 2);
        // The status says 3.
        assert_eq!(cluster_count(&pool(2, 6, Some(3)), &[], None), 3);
        // A lost status: the directory still holds demo-c3, so there are 4.
        let registered = names(&["demo-c0", "demo-c3", "unrelated"]);
        assert_eq!(cluster_count(&pool(2, 6, None), &registered, None), 4);
        // Growth asked for one more.
        assert_eq!(cluster_count(&pool(2, 6, Some(3)), &[], Some(4)), 4);
        // Never above the maximum.
        assert_eq!(cluster_count(&pool(2, 3, Some(3)), &[], Some(4)), 3);
    }

    #[test]
    fn a_maximum_below_the_clusters_the_pool_has_is_refused() {
        assert_eq!(check_max(&pool(1, 3, Some(3)), &[]), Ok(()));
        let err = check_max(&pool(1, 2, Some(3)), &[]).unwrap_err();
        assert!(
            err.starts_with("spec.clusters.max: must be at least 3"),
            "{err}"
        );
        let err = check_max(&pool(1, 2, None), &names(&["demo-c4"])).unwrap_err();
        assert!(err.contains("at least 5"), "{err}");
    }

    fn candidate(index: u32, has_primary: bool, listed_secs: u64) -> Candidate {
        Candidate {
            name: format!("demo-c{index}"),
            index,
            has_primary,
            listed_for: Duration::from_secs(listed_secs),
        }
    }

    #[test]
    fn clusters_join_once_they_have_a_primary_and_every_proxy_knows_them() {
        let candidates = [
            candidate(0, true, 600),
            candidate(1, false, 600),
            candidate(2, true, 10),
            candidate(3, true, 91),
        ];
        assert_eq!(
            registrations(&candidates, &[], (100, 10.0), 2),
            [
                ("demo-c0".to_string(), ClusterState::Open),
                ("demo-c3".to_string(), ClusterState::Filling),
            ]
        );
    }

    #[test]
    fn known_clusters_keep_their_state_and_take_a_new_capacity() {
        let known = [
            load("demo-c0", ClusterState::Closed),
            load("demo-c1", ClusterState::Filling),
        ];
        let candidates = [candidate(0, true, 600), candidate(1, false, 0)];
        assert_eq!(registrations(&candidates, &known, (100, 10.0), 1), []);
        assert_eq!(
            registrations(&candidates, &known, (200, 10.0), 1),
            [
                ("demo-c0".to_string(), ClusterState::Closed),
                ("demo-c1".to_string(), ClusterState::Filling),
            ]
        );
    }

    #[test]
    fn a_cluster_outside_the_directory_is_being_added() {
        let known = [load("demo-c0", ClusterState::Open)];
        assert!(!adding("demo", 1, &known));
        assert!(adding("demo", 2, &known));
    }

    fn owned_cluster(generation: i64, observed: Option<i64>) -> MySQLCluster {
        let mut cluster = MySQLCluster::new(
            "demo-c0",
            serde_json::from_value(serde_json::json!({"replicas": 2})).unwrap(),
        );
        cluster.metadata.namespace = Some("apps".into());
        cluster.metadata.generation = Some(generation);
        cluster.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "lagless.dev/v1alpha1".into(),
            kind: "MySQLTenantPool".into(),
            name: "demo".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        cluster.status = observed.map(|g| crate::crd::MySQLClusterStatus {
            observed_generation: Some(g),
            ..Default::default()
        });
        cluster
    }

    #[test]
    fn only_spec_changes_and_deletions_of_a_pool_cluster_reconcile_the_pool() {
        let want = Some(ObjectRef::<MySQLTenantPool>::new("demo").within("apps"));
        assert_eq!(pool_of_changed_cluster(&owned_cluster(1, None)), want);
        assert_eq!(pool_of_changed_cluster(&owned_cluster(3, Some(2))), want);
        // A status update of a cluster that has seen its spec.
        assert_eq!(pool_of_changed_cluster(&owned_cluster(3, Some(3))), None);
        let mut deleting = owned_cluster(3, Some(3));
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert_eq!(pool_of_changed_cluster(&deleting), want);
        // A cluster no pool owns.
        let mut alone = owned_cluster(1, None);
        alone.metadata.owner_references = None;
        assert_eq!(pool_of_changed_cluster(&alone), None);
    }
}
