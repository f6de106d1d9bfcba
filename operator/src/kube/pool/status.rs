//! Pure functions from what a pool's loop last saw to the `MySQLTenantPool` status it
//! reports (phase, clusters with their state and load, tenants, conditions). No API calls and
//! no clock: the time is an argument.

use std::collections::BTreeMap;

use lagless_directory::placement::{self, ClusterLoad, ClusterState};

use super::decide;
use super::rebalance::Rebalancing;
use crate::crd::Condition;
use crate::crd::tenant_pool::{
    MySQLTenantPool, MySQLTenantPoolStatus, PoolClusterState, PoolClusterStatus, PoolPhase,
    directory_name, tenant_cluster_name,
};
use crate::kube::status::{Want, merge_conditions, want};

/// What the loop of one pool last saw and decided, as the reconciler needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolSnapshot {
    /// Why the loop cannot work now (a Secret missing, no directory primary, the directory
    /// unreachable).
    pub blocked: Option<String>,
    /// Each cluster's published primary (the member's name), by cluster; the directory's too.
    pub primaries: BTreeMap<String, String>,
    /// The directory's record of the tenant clusters (state, capacity, load); `None` before
    /// the directory was first read.
    pub loads: Option<Vec<ClusterLoad>>,
    /// Write rates measured by the loop, by cluster (the directory holds them too, once
    /// recorded).
    pub rates: BTreeMap<String, f64>,
    /// The tenant clusters growth asked for.
    pub wanted: Option<u32>,
    /// What rebalancing's last look did, when the pool rebalances.
    pub rebalance: Option<Rebalancing>,
}

impl PoolSnapshot {
    /// The tenant clusters the directory holds, by name.
    pub fn registered(&self) -> Vec<String> {
        self.loads
            .iter()
            .flatten()
            .map(|l| l.name.clone())
            .collect()
    }
}

fn state(state: ClusterState) -> PoolClusterState {
    match state {
        ClusterState::Open => PoolClusterState::Open,
        ClusterState::Filling => PoolClusterState::Filling,
        ClusterState::Closed => PoolClusterState::Closed,
    }
}

/// `value` to `places` decimals: measurements vary in their last digits, and every change is
/// a status write.
fn rounded(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    if value.is_finite() {
        (value * scale).round() / scale
    } else {
        0.0
    }
}

/// The directory's cluster and the tenant clusters of the pool's `count` in the directory
/// without a published primary. A cluster still joining has none yet: that is growth, not a
/// fault.
fn without_primary(pool: &str, count: u32, snapshot: &PoolSnapshot) -> Vec<String> {
    let loads = snapshot.loads.as_deref().unwrap_or_default();
    std::iter::once(directory_name(pool))
        .chain(
            (0..count)
                .map(|i| tenant_cluster_name(pool, i))
                .filter(|c| loads.iter().any(|l| l.name == *c)),
        )
        .filter(|c| !snapshot.primaries.contains_key(c))
        .collect()
}

/// The phase of a pool with a valid spec and `count` tenant clusters.
pub fn phase(pool: &str, count: u32, snapshot: &PoolSnapshot) -> PoolPhase {
    let loads = snapshot.loads.as_deref().unwrap_or_default();
    if loads.is_empty() {
        return PoolPhase::Pending;
    }
    if snapshot.blocked.is_some() || !without_primary(pool, count, snapshot).is_empty() {
        return PoolPhase::Degraded;
    }
    if decide::adding(pool, count, loads) {
        return PoolPhase::Growing;
    }
    PoolPhase::Running
}

/// The status of a pool whose spec is valid and whose objects were applied, with `count`
/// tenant clusters.
pub fn pool_status(
    previous: &MySQLTenantPoolStatus,
    snapshot: &PoolSnapshot,
    pool: &MySQLTenantPool,
    count: u32,
    generation: Option<i64>,
    now: &str,
) -> MySQLTenantPoolStatus {
    let name = pool.name();
    let phase = phase(name, count, snapshot);
    let missing = without_primary(name, count, snapshot);
    let (clusters, tenants, utilisation) = match &snapshot.loads {
        // Not read since the operator started: what was reported stays.
        None => (
            previous.clusters.clone(),
            previous.tenants,
            previous.utilisation.clone(),
        ),
        Some(loads) => {
            let clusters: Vec<PoolClusterStatus> = loads
                .iter()
                .filter(|l| decide::tenant_index(name, &l.name).is_some_and(|i| i < count))
                .map(|l| PoolClusterStatus {
                    name: l.name.clone(),
                    state: state(l.state),
                    primary: snapshot.primaries.get(&l.name).cloned(),
                    tenants: i64::try_from(l.tenants).unwrap_or(i64::MAX),
                    bytes: i64::try_from(l.bytes).unwrap_or(i64::MAX),
                    write_rate: rounded(
                        snapshot.rates.get(&l.name).copied().unwrap_or(l.write_rate),
                        2,
                    ),
                    utilisation: rounded(l.utilisation(), 3),
                })
                .collect();
            let tenants = clusters.iter().map(|c| c.tenants).sum();
            let utilisation = (!loads.is_empty())
                .then(|| format!("{:.0}%", placement::pool_utilisation(loads) * 100.0));
            (clusters, Some(tenants), utilisation)
        }
    };
    let available = match (&snapshot.blocked, phase) {
        (Some(why), _) => want(Condition::AVAILABLE, false, "Blocked", why.clone()),
        (None, PoolPhase::Pending) => want(
            Condition::AVAILABLE,
            false,
            "NotReady",
            "no tenant cluster has joined the directory yet",
        ),
        (None, _) if missing.contains(&directory_name(name)) => want(
            Condition::AVAILABLE,
            false,
            "DirectoryWithoutPrimary",
            format!(
                "{} has no primary: new tenants cannot be placed",
                directory_name(name)
            ),
        ),
        (None, _) => want(
            Condition::AVAILABLE,
            true,
            "Routing",
            format!("the proxies route tenants to {} clusters", clusters.len()),
        ),
    };
    // While the pool starts, what it waits for (the directory's primary) is its progress, not
    // a fault.
    let progressing = match (&snapshot.blocked, phase) {
        (why, PoolPhase::Pending) => want(
            Condition::PROGRESSING,
            true,
            "Starting",
            why.clone()
                .unwrap_or_else(|| "waiting for the clusters' primaries".into()),
        ),
        (Some(why), _) => want(Condition::PROGRESSING, false, "Blocked", why.clone()),
        (None, PoolPhase::Growing) => want(
            Condition::PROGRESSING,
            true,
            "Growing",
            format!("a tenant cluster is joining the pool ({count} in all)"),
        ),
        (None, _) => want(Condition::PROGRESSING, false, "Steady", ""),
    };
    let degraded = match (&snapshot.blocked, phase) {
        (_, PoolPhase::Pending) => want(Condition::DEGRADED, false, "Starting", ""),
        (Some(why), _) => want(Condition::DEGRADED, true, "Blocked", why.clone()),
        (None, _) if !missing.is_empty() => want(
            Condition::DEGRADED,
            true,
            "ClusterWithoutPrimary",
            format!("no primary published: {}", missing.join(", ")),
        ),
        (None, _) => want(Condition::DEGRADED, false, "Healthy", ""),
    };
    MySQLTenantPoolStatus {
        phase: Some(phase),
        cluster_count: i32::try_from(count).ok(),
        tenants,
        utilisation,
        clusters,
        conditions: merge_conditions(
            &previous.conditions,
            std::iter::once(available)
                .chain([progressing, degraded])
                .chain(
                    pool.spec
                        .rebalance
                        .enabled
                        .then(|| match &snapshot.rebalance {
                            Some(r) => want(
                                Condition::REBALANCING,
                                r.moving,
                                r.reason,
                                r.message.clone(),
                            ),
                            None => want(
                                Condition::REBALANCING,
                                false,
                                "Waiting",
                                "the pool's loop has not looked yet",
                            ),
                        }),
                )
                .collect(),
            generation,
            now,
        ),
        observed_generation: generation,
    }
}

/// The status of a pool whose spec failed validation: phase `Invalid` and the `Degraded`
/// condition carrying the message. What was reported before is kept: the running pool is
/// left alone.
pub fn invalid_pool_status(
    previous: &MySQLTenantPoolStatus,
    message: &str,
    generation: Option<i64>,
    now: &str,
) -> MySQLTenantPoolStatus {
    let wanted: Vec<Want> = vec![
        want(
            Condition::AVAILABLE,
            previous.phase.is_some_and(|p| p != PoolPhase::Pending),
            "InvalidSpec",
            "the spec is invalid; the pool is left as it is",
        ),
        want(Condition::PROGRESSING, false, "InvalidSpec", ""),
        want(Condition::DEGRADED, true, "InvalidSpec", message),
    ];
    MySQLTenantPoolStatus {
        phase: Some(PoolPhase::Invalid),
        conditions: merge_conditions(&previous.conditions, wanted, generation, now),
        observed_generation: generation,
        ..previous.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ConditionStatus;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn pool() -> MySQLTenantPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "lagless.dev/v1alpha1",
            "kind": "MySQLTenantPool",
            "metadata": {"name": "demo", "namespace": "apps"},
            "spec": {"clusters": {"min": 2, "max": 4}},
        }))
        .unwrap()
    }

    fn load(name: &str, state: ClusterState, bytes: u64, tenants: u64) -> ClusterLoad {
        ClusterLoad {
            name: name.into(),
            state,
            capacity_bytes: 1000,
            write_capacity: 100.0,
            bytes,
            write_rate: 1.0,
            tenants,
        }
    }

    fn running() -> PoolSnapshot {
        PoolSnapshot {
            primaries: [
                ("demo-directory", "demo-directory-0"),
                ("demo-c0", "demo-c0-1"),
                ("demo-c1", "demo-c1-0"),
            ]
            .map(|(c, p)| (c.to_string(), p.to_string()))
            .into(),
            loads: Some(vec![
                load("demo-c0", ClusterState::Open, 400, 7),
                load("demo-c1", ClusterState::Open, 200, 3),
            ]),
            rates: [("demo-c0".to_string(), 12.3456)].into(),
            ..PoolSnapshot::default()
        }
    }

    fn condition(status: &MySQLTenantPoolStatus, type_: &str) -> (ConditionStatus, String) {
        let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status, c.reason.clone())
    }

    #[test]
    fn a_running_pool_reports_its_clusters_tenants_and_load() {
        let status = pool_status(
            &MySQLTenantPoolStatus::default(),
            &running(),
            &pool(),
            2,
            Some(4),
            NOW,
        );
        assert_eq!(status.phase, Some(PoolPhase::Running));
        assert_eq!(status.cluster_count, Some(2));
        assert_eq!(status.tenants, Some(10));
        assert_eq!(status.utilisation.as_deref(), Some("30%"));
        assert_eq!(status.observed_generation, Some(4));
        let c0 = &status.clusters[0];
        assert_eq!(
            (c0.name.as_str(), c0.state, c0.primary.as_deref()),
            ("demo-c0", PoolClusterState::Open, Some("demo-c0-1"))
        );
        assert_eq!((c0.tenants, c0.bytes), (7, 400));
        assert_eq!(c0.write_rate, 12.35, "the loop's own measurement, rounded");
        assert_eq!(c0.utilisation, 0.4);
        assert_eq!(status.clusters[1].write_rate, 1.0, "the directory's");
        assert_eq!(
            condition(&status, Condition::AVAILABLE),
            (ConditionStatus::True, "Routing".into())
        );
        assert_eq!(
            condition(&status, Condition::DEGRADED),
            (ConditionStatus::False, "Healthy".into())
        );
        for c in &status.conditions {
            assert_eq!(c.last_transition_time, NOW);
            assert_eq!(c.observed_generation, Some(4));
        }
    }

    #[test]
    fn rebalancing_asked_of_this_controller_is_said_to_have_no_effect() {
        let quiet = pool_status(
            &MySQLTenantPoolStatus::default(),
            &running(),
            &pool(),
            2,
            None,
            NOW,
        );
        assert!(
            quiet
                .conditions
                .iter()
                .all(|c| c.type_ != Condition::REBALANCING),
            "no condition while rebalancing is off"
        );
        let mut asked = pool();
        asked.spec.rebalance.enabled = true;
        let status = pool_status(
            &MySQLTenantPoolStatus::default(),
            &running(),
            &asked,
            2,
            None,
            NOW,
        );
        assert_eq!(
            condition(&status, Condition::REBALANCING),
            (ConditionStatus::False, "Waiting".into())
        );
        let moving = PoolSnapshot {
            rebalance: Some(Rebalancing {
                moving: true,
                reason: "Moving",
                message: "moving tenant 7 from demo-c0 to demo-c1".into(),
            }),
            ..running()
        };
        let status = pool_status(
            &MySQLTenantPoolStatus::default(),
            &moving,
            &asked,
            2,
            None,
            NOW,
        );
        assert_eq!(
            condition(&status, Condition::REBALANCING),
            (ConditionStatus::True, "Moving".into())
        );
    }

    #[test]
    fn phases_follow_the_loop() {
        let empty = PoolSnapshot::default();
        assert_eq!(phase("demo", 2, &empty), PoolPhase::Pending);
        assert_eq!(phase("demo", 2, &running()), PoolPhase::Running);
        // A third cluster applied, not in the directory yet.
        assert_eq!(phase("demo", 3, &running()), PoolPhase::Growing);
        let mut lost = running();
        lost.primaries.remove("demo-c1");
        assert_eq!(phase("demo", 2, &lost), PoolPhase::Degraded);
        let status = pool_status(
            &MySQLTenantPoolStatus::default(),
            &lost,
            &pool(),
            2,
            None,
            NOW,
        );
        let degraded = status
            .conditions
            .iter()
            .find(|c| c.type_ == Condition::DEGRADED)
            .unwrap();
        assert_eq!(degraded.status, ConditionStatus::True);
        assert!(degraded.message.contains("demo-c1"), "{}", degraded.message);
        let mut blocked = running();
        blocked.blocked = Some("Secret demo-admin not found".into());
        assert_eq!(phase("demo", 2, &blocked), PoolPhase::Degraded);
        let status = pool_status(
            &MySQLTenantPoolStatus::default(),
            &blocked,
            &pool(),
            2,
            None,
            NOW,
        );
        assert_eq!(
            condition(&status, Condition::AVAILABLE),
            (ConditionStatus::False, "Blocked".into())
        );
    }

    #[test]
    fn a_starting_pool_waits_without_being_degraded() {
        let waiting = PoolSnapshot {
            blocked: Some("the directory's cluster demo-directory has no primary yet".into()),
            ..PoolSnapshot::default()
        };
        let status = pool_status(
            &MySQLTenantPoolStatus::default(),
            &waiting,
            &pool(),
            2,
            None,
            NOW,
        );
        assert_eq!(status.phase, Some(PoolPhase::Pending));
        let progressing = status
            .conditions
            .iter()
            .find(|c| c.type_ == Condition::PROGRESSING)
            .unwrap();
        assert_eq!(progressing.status, ConditionStatus::True);
        assert!(progressing.message.contains("no primary yet"));
        assert_eq!(
            condition(&status, Condition::DEGRADED),
            (ConditionStatus::False, "Starting".into())
        );
    }

    #[test]
    fn before_the_first_reading_the_reported_load_stays() {
        let previous = pool_status(
            &MySQLTenantPoolStatus::default(),
            &running(),
            &pool(),
            2,
            Some(1),
            "2025-12-31T00:00:00Z",
        );
        let status = pool_status(
            &previous,
            &PoolSnapshot::default(),
            &pool(),
            2,
            Some(1),
            NOW,
        );
        assert_eq!(status.phase, Some(PoolPhase::Pending));
        assert_eq!(status.clusters, previous.clusters);
        assert_eq!(status.tenants, Some(10));
        // Degraded did not change: its transition time stays.
        let degraded = |s: &MySQLTenantPoolStatus| {
            s.conditions
                .iter()
                .find(|c| c.type_ == Condition::DEGRADED)
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(degraded(&status), "2025-12-31T00:00:00Z");
    }

    #[test]
    fn an_invalid_spec_keeps_what_was_reported() {
        let previous = pool_status(
            &MySQLTenantPoolStatus::default(),
            &running(),
            &pool(),
            2,
            Some(1),
            NOW,
        );
        let status = invalid_pool_status(&previous, "spec.clusters.max: bad", Some(2), NOW);
        assert_eq!(status.phase, Some(PoolPhase::Invalid));
        assert_eq!(status.clusters, previous.clusters);
        assert_eq!(status.observed_generation, Some(2));
        let degraded = status
            .conditions
            .iter()
            .find(|c| c.type_ == Condition::DEGRADED)
            .unwrap();
        assert_eq!(
            (
                degraded.status,
                degraded.reason.as_str(),
                degraded.message.as_str()
            ),
            (
                ConditionStatus::True,
                "InvalidSpec",
                "spec.clusters.max: bad"
            )
        );
    }
}
