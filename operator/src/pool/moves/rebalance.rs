//! Which tenants to move so that the pool's clusters are used evenly: a pure plan over the
//! clusters' loads and the tenants' sizes.

use lagless_directory::{ClusterLoad, ClusterState, TenantId};

/// A tenant and the bytes its database takes, on its cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSize {
    pub id: TenantId,
    pub cluster: String,
    pub bytes: u64,
    /// False for a tenant left out of plans (its last move was rolled back lately): it still
    /// counts in its cluster's bytes.
    pub movable: bool,
}

/// A move the plan asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMove {
    pub tenant: TenantId,
    pub from: String,
    pub to: String,
    pub bytes: u64,
}

/// How far the plan goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RebalanceLimits {
    /// Utilisations closer than this count as even.
    pub margin: f64,
    /// Moves planned at most (they run one after another).
    pub max_moves: usize,
}

impl Default for RebalanceLimits {
    fn default() -> Self {
        Self {
            margin: 0.10,
            max_moves: 1,
        }
    }
}

/// Plans moves by space: while the fullest cluster's utilisation exceeds the emptiest open
/// one's by more than the margin, the largest tenant of the fullest that narrows the gap
/// without reversing it moves to the emptiest (the largest gain first). Closed clusters
/// give tenants but take none.
pub fn plan(
    clusters: &[ClusterLoad],
    tenants: &[TenantSize],
    limits: RebalanceLimits,
) -> Vec<PlannedMove> {
    let mut loads: Vec<ClusterLoad> = clusters.to_vec();
    let mut left: Vec<TenantSize> = tenants.to_vec();
    let mut moves = Vec::new();
    let share = |l: &ClusterLoad, bytes: u64| {
        if l.capacity_bytes == 0 {
            1.0
        } else {
            bytes as f64 / l.capacity_bytes as f64
        }
    };
    while moves.len() < limits.max_moves {
        let Some(full) = loads
            .iter()
            .enumerate()
            .max_by(|a, b| share(a.1, a.1.bytes).total_cmp(&share(b.1, b.1.bytes)))
            .map(|(i, _)| i)
        else {
            break;
        };
        let Some(empty) = loads
            .iter()
            .enumerate()
            .filter(|(_, l)| l.state != ClusterState::Closed)
            .min_by(|a, b| share(a.1, a.1.bytes).total_cmp(&share(b.1, b.1.bytes)))
            .map(|(i, _)| i)
        else {
            break;
        };
        let (hi, lo) = (&loads[full], &loads[empty]);
        let gap = share(hi, hi.bytes) - share(lo, lo.bytes);
        if full == empty || gap <= limits.margin {
            break;
        }
        // After the move the fullest must stay at least as used as the emptiest.
        let best = left
            .iter()
            .enumerate()
            .filter(|(_, t)| t.cluster == hi.name && t.bytes > 0 && t.movable)
            .filter(|(_, t)| {
                share(hi, hi.bytes.saturating_sub(t.bytes)) >= share(lo, lo.bytes + t.bytes)
            })
            .max_by_key(|(_, t)| t.bytes)
            .map(|(i, _)| i);
        let Some(i) = best else {
            break;
        };
        let t = left.swap_remove(i);
        let (from, to) = (hi.name.clone(), lo.name.clone());
        loads[full].bytes = loads[full].bytes.saturating_sub(t.bytes);
        loads[empty].bytes += t.bytes;
        moves.push(PlannedMove {
            tenant: t.id,
            from,
            to,
            bytes: t.bytes,
        });
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1 << 30;

    fn cluster(name: &str, state: ClusterState, bytes: u64) -> ClusterLoad {
        ClusterLoad {
            name: name.into(),
            state,
            capacity_bytes: 100 * GB,
            write_capacity: 100.0,
            bytes,
            write_rate: 0.0,
            tenants: 0,
        }
    }

    fn tenant(id: &str, cluster: &str, gb: u64) -> TenantSize {
        TenantSize {
            id: TenantId::parse(id).unwrap(),
            cluster: cluster.into(),
            bytes: gb * GB,
            movable: true,
        }
    }

    #[test]
    fn the_largest_tenant_that_narrows_the_gap_moves_to_the_emptiest_cluster() {
        let clusters = [
            cluster("c0", ClusterState::Open, 60 * GB),
            cluster("c1", ClusterState::Open, 10 * GB),
            cluster("c2", ClusterState::Open, 30 * GB),
        ];
        let tenants = [
            tenant("a", "c0", 40),
            tenant("b", "c0", 15),
            tenant("c", "c0", 5),
            tenant("d", "c1", 10),
        ];
        // 40 GB would leave c0 (20) below c1 (50): b, 15 GB, is the largest that fits.
        let one = plan(&clusters, &tenants, RebalanceLimits::default());
        assert_eq!(
            one,
            vec![PlannedMove {
                tenant: TenantId::parse("b").unwrap(),
                from: "c0".into(),
                to: "c1".into(),
                bytes: 15 * GB,
            }]
        );
        // More moves go on until the clusters are within the margin.
        let many = plan(
            &clusters,
            &tenants,
            RebalanceLimits {
                margin: 0.10,
                max_moves: 10,
            },
        );
        let names: Vec<String> = many.iter().map(|m| m.tenant.to_string()).collect();
        assert_eq!(names, ["b", "c"]);
        // b's last move was rolled back lately: the next largest that fits goes instead.
        let mut held = tenants.clone();
        held[1].movable = false;
        let one = plan(&clusters, &held, RebalanceLimits::default());
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].tenant.to_string(), "c");
    }

    #[test]
    fn an_even_pool_closed_targets_and_unmovable_tenants_plan_nothing() {
        let even = [
            cluster("c0", ClusterState::Open, 35 * GB),
            cluster("c1", ClusterState::Open, 30 * GB),
        ];
        assert!(plan(&even, &[tenant("a", "c0", 35)], RebalanceLimits::default()).is_empty());
        // The only emptier cluster is closed.
        let closed = [
            cluster("c0", ClusterState::Open, 60 * GB),
            cluster("c1", ClusterState::Closed, 0),
        ];
        assert!(
            plan(
                &closed,
                &[tenant("a", "c0", 10)],
                RebalanceLimits::default()
            )
            .is_empty()
        );
        // One tenant holds all of it: moving it would only swap the clusters.
        let whole = [
            cluster("c0", ClusterState::Open, 60 * GB),
            cluster("c1", ClusterState::Open, 0),
        ];
        assert!(plan(&whole, &[tenant("a", "c0", 60)], RebalanceLimits::default()).is_empty());
        // A closed cluster gives its tenants away.
        let retiring = [
            cluster("c0", ClusterState::Closed, 40 * GB),
            cluster("c1", ClusterState::Open, 10 * GB),
        ];
        let moves = plan(
            &retiring,
            &[tenant("a", "c0", 10)],
            RebalanceLimits::default(),
        );
        assert_eq!(moves.len(), 1);
        assert_eq!((moves[0].from.as_str(), moves[0].to.as_str()), ("c0", "c1"));
    }
}
