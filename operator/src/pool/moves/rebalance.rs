//! Which tenants to move so that the pool's clusters are used evenly: a pure plan over the
//! clusters' loads and the tenants' sizes and write rates.

use lagless_directory::{ClusterLoad, ClusterState, TenantId};

/// A tenant, the bytes its database takes and the writes it makes, on its cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSize {
    pub id: TenantId,
    pub cluster: String,
    pub bytes: u64,
    /// Its share of its cluster's transactions per second (the unit of `writeCapacity`);
    /// 0 when not measured.
    pub write_rate: f64,
    /// False for a tenant left out of plans (its last move was rolled back lately): it still
    /// counts in its cluster's load.
    pub movable: bool,
}

/// A move the plan asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMove {
    pub tenant: TenantId,
    pub from: String,
    pub to: String,
    pub bytes: u64,
    pub write_rate: f64,
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

/// How much of cluster `l` is used with `bytes` and `rate` writes per second: the larger of
/// its space share and its write share, as placement reckons it, except that no write
/// capacity (or an unmeasured rate) leaves writes out rather than counting as full. No space
/// capacity counts as full.
fn utilisation(l: &ClusterLoad, bytes: u64, rate: f64) -> f64 {
    let space = if l.capacity_bytes == 0 {
        1.0
    } else {
        bytes as f64 / l.capacity_bytes as f64
    };
    let writes = if l.write_capacity.is_finite() && l.write_capacity > 0.0 && rate.is_finite() {
        rate.max(0.0) / l.write_capacity
    } else {
        0.0
    };
    space.max(writes)
}

fn used(l: &ClusterLoad) -> f64 {
    utilisation(l, l.bytes, l.write_rate)
}

/// How far apart the most and the least used open clusters are (0 with fewer than two).
pub fn spread(clusters: &[ClusterLoad]) -> f64 {
    let most = clusters.iter().map(used).fold(f64::NEG_INFINITY, f64::max);
    let least = clusters
        .iter()
        .filter(|l| l.state != ClusterState::Closed)
        .map(used)
        .fold(f64::INFINITY, f64::min);
    if most.is_finite() && least.is_finite() {
        (most - least).max(0.0)
    } else {
        0.0
    }
}

/// Plans moves by utilisation (space or writes, whichever is the larger share): while the
/// most used cluster exceeds the least used open one by more than the margin, the tenant of
/// the most used whose move lowers its utilisation the most, without leaving it below the
/// other, moves there (the largest gain first). Closed clusters give tenants but take none.
pub fn plan(
    clusters: &[ClusterLoad],
    tenants: &[TenantSize],
    limits: RebalanceLimits,
) -> Vec<PlannedMove> {
    let mut loads: Vec<ClusterLoad> = clusters.to_vec();
    let mut left: Vec<TenantSize> = tenants.to_vec();
    let mut moves = Vec::new();
    while moves.len() < limits.max_moves {
        let Some(full) = loads
            .iter()
            .enumerate()
            .max_by(|a, b| used(a.1).total_cmp(&used(b.1)))
            .map(|(i, _)| i)
        else {
            break;
        };
        let Some(empty) = loads
            .iter()
            .enumerate()
            .filter(|(_, l)| l.state != ClusterState::Closed)
            .min_by(|a, b| used(a.1).total_cmp(&used(b.1)))
            .map(|(i, _)| i)
        else {
            break;
        };
        let (hi, lo) = (&loads[full], &loads[empty]);
        if full == empty || used(hi) - used(lo) <= limits.margin {
            break;
        }
        // What moving `t` leaves on each side.
        let after = |t: &TenantSize| {
            let rate = t.write_rate.max(0.0);
            (
                utilisation(hi, hi.bytes.saturating_sub(t.bytes), hi.write_rate - rate),
                utilisation(lo, lo.bytes + t.bytes, lo.write_rate + rate),
            )
        };
        let best = left
            .iter()
            .enumerate()
            .filter(|(_, t)| t.cluster == hi.name && t.movable)
            .filter_map(|(i, t)| {
                let (from, to) = after(t);
                let gain = used(hi) - from;
                // After the move the most used must stay at least as used as the other.
                (gain > 0.0 && from >= to).then_some((i, gain, t.bytes))
            })
            // Of equal gains, the smaller tenant: less to copy for the same effect.
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.cmp(&a.2)))
            .map(|(i, _, _)| i);
        let Some(i) = best else {
            break;
        };
        let t = left.swap_remove(i);
        let rate = t.write_rate.max(0.0);
        let (from, to) = (hi.name.clone(), lo.name.clone());
        loads[full].bytes = loads[full].bytes.saturating_sub(t.bytes);
        loads[full].write_rate = (loads[full].write_rate - rate).max(0.0);
        loads[empty].bytes += t.bytes;
        loads[empty].write_rate += rate;
        moves.push(PlannedMove {
            tenant: t.id,
            from,
            to,
            bytes: t.bytes,
            write_rate: rate,
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
            write_rate: 0.0,
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
                write_rate: 0.0,
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

    #[test]
    fn a_cluster_busy_writing_gives_its_busiest_tenant_that_fits() {
        // Even in space; c0 writes 180/s of its 100/s, c1 nothing.
        let mut c0 = cluster("c0", ClusterState::Open, 20 * GB);
        c0.write_rate = 180.0;
        let clusters = [c0, cluster("c1", ClusterState::Open, 20 * GB)];
        let writing = |id: &str, cluster: &str, gb: u64, rate: f64| TenantSize {
            write_rate: rate,
            ..tenant(id, cluster, gb)
        };
        let tenants = [
            writing("big", "c0", 10, 0.0),
            writing("hot", "c0", 5, 120.0),
            writing("warm", "c0", 5, 60.0),
            writing("idle", "c1", 20, 0.0),
        ];
        // hot's 120/s would leave c0 (60/s) below c1 (120/s): warm, the busiest that fits,
        // goes; the big idle tenant would gain c0 nothing.
        let moves = plan(&clusters, &tenants, RebalanceLimits::default());
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!(moves[0].tenant.to_string(), "warm");
        assert_eq!(moves[0].write_rate, 60.0);
        assert_eq!((moves[0].from.as_str(), moves[0].to.as_str()), ("c0", "c1"));
        // After it: c0 at 1.2, c1 at 0.6; nothing else narrows the gap without reversing it.
        let more = plan(
            &clusters,
            &tenants,
            RebalanceLimits {
                margin: 0.10,
                max_moves: 10,
            },
        );
        assert_eq!(more.len(), 1, "{more:?}");
        // Unmeasured rates (0) or no write capacity: space alone decides, as before.
        let mut blind = clusters.clone();
        blind[0].write_capacity = 0.0;
        assert!(plan(&blind, &tenants, RebalanceLimits::default()).is_empty());
    }

    #[test]
    fn the_spread_is_between_the_most_used_and_the_least_used_open_cluster() {
        let mut busy = cluster("c0", ClusterState::Open, 10 * GB);
        busy.write_rate = 50.0;
        let clusters = [
            busy,
            cluster("c1", ClusterState::Open, 20 * GB),
            cluster("c2", ClusterState::Closed, 0),
        ];
        // c0 at 0.5 (writes), c1 at 0.2; the closed c2 takes nothing and does not count as
        // the least used.
        assert!((spread(&clusters) - 0.3).abs() < 1e-9);
        assert_eq!(spread(&clusters[..1]), 0.0);
        assert_eq!(spread(&[]), 0.0);
    }
}
