//! Where a new tenant goes, and when the pool needs another cluster. Pure: the loads come from
//! the directory's `clusters` table, the randomness from the caller.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Whether a cluster takes new tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    /// Takes new tenants when the random pick lands on it.
    Open,
    /// Newly added: gets new tenants first, until it has caught up with the open ones.
    Filling,
    /// Takes no new tenants; its tenants stay.
    Closed,
}

impl ClusterState {
    pub const ALL: [ClusterState; 3] = [
        ClusterState::Open,
        ClusterState::Filling,
        ClusterState::Closed,
    ];

    /// The SQL `ENUM` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Open => "open",
            ClusterState::Filling => "filling",
            ClusterState::Closed => "closed",
        }
    }

    /// Whether new tenants may be placed on it.
    pub fn takes_tenants(self) -> bool {
        self != ClusterState::Closed
    }
}

impl fmt::Display for ClusterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cluster state name the directory does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cluster state '{0}' (expected open, filling or closed)")]
pub struct UnknownClusterState(pub String);

impl FromStr for ClusterState {
    type Err = UnknownClusterState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownClusterState(s.to_string()))
    }
}

/// One tenant cluster's capacity and measured load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterLoad {
    pub name: String,
    pub state: ClusterState,
    pub capacity_bytes: u64,
    /// Writes per second the cluster is meant to take.
    pub write_capacity: f64,
    pub bytes: u64,
    /// Measured writes per second.
    pub write_rate: f64,
    pub tenants: u64,
}

impl ClusterLoad {
    /// The larger of the space and write shares used: max(bytes / capacity_bytes,
    /// write_rate / write_capacity). A 0 capacity counts as fully used (1.0).
    pub fn utilisation(&self) -> f64 {
        ratio(self.bytes as f64, self.capacity_bytes as f64)
            .max(ratio(self.write_rate, self.write_capacity))
    }
}

/// `used / capacity`. No capacity, or a use nobody can read (NaN), counts as full, so such a
/// cluster is the last choice rather than the first; a negative use counts as none.
fn ratio(used: f64, capacity: f64) -> f64 {
    if capacity.is_nan() || capacity <= 0.0 || used.is_nan() {
        return 1.0;
    }
    used.max(0.0) / capacity
}

/// Utilisations closer than this count as equal. Bytes and write rates are measured every few
/// seconds, while placement runs between measurements: a cluster a hair less utilised at the
/// last measurement would otherwise take every new tenant until the next one.
pub const NEAR: f64 = 0.01;

/// Less utilised first (by more than [`NEAR`]), then fewer tenants (counted live).
fn by_utilisation(a: &ClusterLoad, b: &ClusterLoad) -> Ordering {
    let (ua, ub) = (a.utilisation(), b.utilisation());
    let by_use = if (ua - ub).abs() < NEAR {
        Ordering::Equal
    } else {
        ua.total_cmp(&ub)
    };
    by_use.then(a.tenants.cmp(&b.tenants))
}

/// [`by_utilisation`], then by name, so that equal loads still order deterministically.
fn by_load(a: &ClusterLoad, b: &ClusterLoad) -> Ordering {
    by_utilisation(a, b).then_with(|| a.name.cmp(&b.name))
}

/// Where a new tenant goes: a Filling cluster first (the least utilised of them, by name among
/// equals); else the less utilised of two distinct open clusters picked by `pick` (indices into
/// the open ones, in the order of `loads`, reduced modulo their count; when both land on the
/// same cluster the second moves to the next one), ties broken by fewer tenants, then in favour
/// of the first pick. None when no cluster is open or filling.
///
/// Two random choices rather than the least utilised overall: many placers deciding at once on
/// slightly stale loads would otherwise all pick the same cluster.
pub fn choose(loads: &[ClusterLoad], pick: (u64, u64)) -> Option<&ClusterLoad> {
    let filling = loads
        .iter()
        .filter(|l| l.state == ClusterState::Filling)
        .min_by(|a, b| by_load(a, b));
    if filling.is_some() {
        return filling;
    }
    let open: Vec<&ClusterLoad> = loads
        .iter()
        .filter(|l| l.state == ClusterState::Open)
        .collect();
    let n = open.len() as u64;
    if n == 0 {
        return None;
    }
    let first = pick.0 % n;
    let mut second = pick.1 % n;
    if second == first {
        second = (second + 1) % n;
    }
    let a = open.get(usize::try_from(first).ok()?)?;
    let b = open.get(usize::try_from(second).ok()?)?;
    // Ties go to the first pick, itself random: ordering them by name would send every new
    // tenant to one cluster between two measurements of the load.
    Some(if by_utilisation(b, a).is_lt() { b } else { a })
}

/// Two random numbers for [`choose`].
pub fn random_pick() -> (u64, u64) {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Placement only needs spread, not secrecy: without the OS's randomness the clock's
        // nanoseconds do.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    let (a, b) = bytes.split_at(8);
    let word = |half: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(half);
        u64::from_le_bytes(w)
    };
    (word(a), word(b))
}

/// The pool's utilisation over its open and filling clusters: the larger of total bytes over
/// total capacity and total writes over total write capacity. 1.0 when no cluster takes
/// tenants, so an empty pool asks for a cluster.
pub fn pool_utilisation(loads: &[ClusterLoad]) -> f64 {
    let taking = loads.iter().filter(|l| l.state.takes_tenants());
    let (mut bytes, mut capacity, mut writes, mut write_capacity) = (0.0, 0.0, 0.0, 0.0);
    for l in taking {
        bytes += l.bytes as f64;
        capacity += l.capacity_bytes as f64;
        writes += l.write_rate.max(0.0);
        write_capacity += l.write_capacity.max(0.0);
    }
    ratio(bytes, capacity).max(ratio(writes, write_capacity))
}

/// True when the pool's utilisation reaches `threshold` and it has fewer than
/// `max_clusters` clusters (closed ones count: they still run).
pub fn should_grow(loads: &[ClusterLoad], threshold: f64, max_clusters: usize) -> bool {
    loads.len() < max_clusters && pool_utilisation(loads) >= threshold
}

/// Whether `load` (a Filling cluster) has caught up and becomes Open: its utilisation reaches
/// the average of the open clusters', or it holds as many tenants as they do on average. True
/// when no other cluster is open.
pub fn filled(load: &ClusterLoad, loads: &[ClusterLoad]) -> bool {
    let open: Vec<&ClusterLoad> = loads
        .iter()
        .filter(|l| l.state == ClusterState::Open && l.name != load.name)
        .collect();
    if open.is_empty() {
        return true;
    }
    let n = open.len() as f64;
    let utilisation = open.iter().map(|l| l.utilisation()).sum::<f64>() / n;
    let tenants = open.iter().map(|l| l.tenants as f64).sum::<f64>() / n;
    load.utilisation() >= utilisation || load.tenants as f64 >= tenants
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1 << 30;

    fn load(name: &str, state: ClusterState, bytes: u64, tenants: u64) -> ClusterLoad {
        ClusterLoad {
            name: name.into(),
            state,
            capacity_bytes: 100 * GB,
            write_capacity: 1000.0,
            bytes,
            write_rate: 0.0,
            tenants,
        }
    }

    /// splitmix64: reproducible picks for the property tests.
    fn picks(seed: u64) -> impl Iterator<Item = (u64, u64)> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        std::iter::repeat_with(move || (next(), next()))
    }

    #[test]
    fn utilisation_is_the_larger_share_and_no_capacity_is_full() {
        let mut l = load("a", ClusterState::Open, 25 * GB, 0);
        assert_eq!(l.utilisation(), 0.25);
        l.write_rate = 500.0;
        assert_eq!(l.utilisation(), 0.5);
        l.write_capacity = 0.0;
        assert_eq!(l.utilisation(), 1.0);
        l.write_capacity = f64::NAN;
        assert_eq!(l.utilisation(), 1.0);
        l.write_capacity = 1000.0;
        l.write_rate = f64::NAN;
        assert_eq!(l.utilisation(), 1.0);
        l.write_rate = -5.0;
        l.capacity_bytes = 0;
        assert_eq!(l.utilisation(), 1.0);
        l.capacity_bytes = 10 * GB;
        assert_eq!(l.utilisation(), 2.5);
    }

    #[test]
    fn picks_spread_evenly_over_equal_clusters() {
        for (seed, source) in [(1, "seeded"), (2, "seeded"), (0, "random")] {
            let mut loads: Vec<ClusterLoad> = ["c1", "c2", "c3"]
                .iter()
                .map(|n| load(n, ClusterState::Open, 0, 0))
                .collect();
            let mut counts = [0u32; 3];
            let mut seeded = picks(seed);
            for _ in 0..1000 {
                let pick = match source {
                    "random" => random_pick(),
                    _ => seeded.next().unwrap(),
                };
                let name = choose(&loads, pick).unwrap().name.clone();
                let i = loads.iter().position(|l| l.name == name).unwrap();
                counts[i] += 1;
                loads[i].tenants += 1;
                loads[i].bytes += 10 << 20;
            }
            for c in counts {
                assert!((267..=400).contains(&c), "{source} {seed}: {counts:?}");
            }
        }
    }

    /// Placers decide on loads measured a while ago; between two measurements they still
    /// spread new tenants rather than all choosing the same cluster.
    #[test]
    fn picks_spread_evenly_on_loads_that_do_not_change() {
        let loads: Vec<ClusterLoad> = ["c1", "c2", "c3"]
            .iter()
            .map(|n| load(n, ClusterState::Open, 10 * GB, 5))
            .collect();
        let mut counts = [0u32; 3];
        for pick in picks(3).take(1000) {
            let name = &choose(&loads, pick).unwrap().name;
            counts[loads.iter().position(|l| &l.name == name).unwrap()] += 1;
        }
        for c in counts {
            assert!((267..=400).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn the_less_utilised_of_the_two_wins() {
        let loads = [
            load("a", ClusterState::Open, 50 * GB, 1),
            load("b", ClusterState::Open, 10 * GB, 9),
            load("c", ClusterState::Open, 90 * GB, 0),
        ];
        assert_eq!(choose(&loads, (0, 1)).unwrap().name, "b");
        assert_eq!(choose(&loads, (2, 0)).unwrap().name, "a");
        assert_eq!(choose(&loads, (3, 5)).unwrap().name, "a");
        // The same index twice still compares two clusters.
        assert_eq!(choose(&loads, (2, 2)).unwrap().name, "a");
        assert_eq!(choose(&loads, (1, 1)).unwrap().name, "b");
        // Equal utilisation: fewer tenants, then the first pick (not the name, which would
        // send every tenant placed on the same loads to one cluster).
        let tied = [
            load("z", ClusterState::Open, 0, 1),
            load("y", ClusterState::Open, 0, 2),
            load("x", ClusterState::Open, 0, 1),
        ];
        assert_eq!(choose(&tied, (0, 1)).unwrap().name, "z");
        assert_eq!(choose(&tied, (1, 0)).unwrap().name, "z");
        assert_eq!(choose(&tied, (0, 2)).unwrap().name, "z");
        assert_eq!(choose(&tied, (2, 0)).unwrap().name, "x");
        let one = [load("only", ClusterState::Open, 99 * GB, 5)];
        assert_eq!(choose(&one, (7, 7)).unwrap().name, "only");
    }

    #[test]
    fn filling_clusters_come_first_and_closed_never() {
        let loads = [
            load("open", ClusterState::Open, 0, 0),
            load("closed", ClusterState::Closed, 0, 0),
            load("new2", ClusterState::Filling, 20 * GB, 3),
            load("new1", ClusterState::Filling, 10 * GB, 3),
        ];
        for pick in picks(7).take(1000) {
            assert_eq!(choose(&loads, pick).unwrap().name, "new1");
        }
        let without_filling = &loads[..2];
        for pick in picks(8).take(1000) {
            assert_eq!(choose(without_filling, pick).unwrap().name, "open");
        }
        assert_eq!(choose(&loads[1..2], (0, 1)), None);
        assert_eq!(choose(&[], (0, 1)), None);
    }

    #[test]
    fn the_pool_grows_when_full_enough_and_below_its_maximum() {
        let mut loads = vec![
            load("a", ClusterState::Open, 80 * GB, 10),
            load("b", ClusterState::Open, 60 * GB, 10),
            // Closed clusters count as clusters, not as capacity.
            load("c", ClusterState::Closed, 0, 0),
        ];
        assert!((pool_utilisation(&loads) - 0.7).abs() < 1e-9);
        assert!(should_grow(&loads, 0.7, 4));
        assert!(!should_grow(&loads, 0.75, 4));
        assert!(!should_grow(&loads, 0.7, 3));
        loads[0].write_rate = 1900.0;
        assert!((pool_utilisation(&loads) - 0.95).abs() < 1e-9);
        // A new filling cluster adds capacity at once.
        loads.push(load("d", ClusterState::Filling, 0, 0));
        assert!((pool_utilisation(&loads) - 1900.0 / 3000.0).abs() < 1e-9);
        // No cluster takes tenants: the pool is full.
        assert_eq!(pool_utilisation(&loads[2..3]), 1.0);
        assert!(should_grow(&[], 0.8, 1));
        assert!(!should_grow(&[], 0.8, 0));
    }

    #[test]
    fn a_filling_cluster_opens_once_it_has_caught_up() {
        let loads = [
            load("a", ClusterState::Open, 40 * GB, 10),
            load("b", ClusterState::Open, 20 * GB, 20),
            load("closed", ClusterState::Closed, 90 * GB, 90),
        ];
        // Averages of the open ones: 30 % and 15 tenants.
        assert!(!filled(
            &load("n", ClusterState::Filling, 29 * GB, 14),
            &loads
        ));
        assert!(filled(
            &load("n", ClusterState::Filling, 31 * GB, 0),
            &loads
        ));
        assert!(filled(&load("n", ClusterState::Filling, 0, 15), &loads));
        assert!(filled(&load("n", ClusterState::Filling, 0, 0), &loads[2..]));
    }

    #[test]
    fn cluster_states_round_trip_through_their_sql_names() {
        for state in ClusterState::ALL {
            assert_eq!(state.as_str().parse::<ClusterState>(), Ok(state));
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{state}\"")
            );
        }
        assert!("OPEN".parse::<ClusterState>().is_err());
    }
}
