//! When a pool gets another cluster, and when a new cluster stops being filled first.

use lagless_directory::placement::{self, ClusterLoad, ClusterState};

/// What the pool's operator does next about the pool's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Growth {
    Nothing,
    /// The Filling cluster has caught up with the others: open it.
    Open(String),
    /// Add a tenant cluster.
    Add,
}

/// Decides from the directory's `loads` of the pool's `clusters` tenant clusters (at most
/// `max`), the pool's `threshold`, and whether a cluster is being added already (one at a
/// time: its load is not known before it runs).
pub fn next(
    loads: &[ClusterLoad],
    threshold: f64,
    clusters: u32,
    max: u32,
    adding: bool,
) -> Growth {
    if let Some(filled) = loads
        .iter()
        .find(|l| l.state == ClusterState::Filling && placement::filled(l, loads))
    {
        return Growth::Open(filled.name.clone());
    }
    let max_clusters = usize::try_from(max).unwrap_or(usize::MAX);
    if !adding && clusters < max && placement::should_grow(loads, threshold, max_clusters) {
        return Growth::Add;
    }
    Growth::Nothing
}

/// The state tenant cluster `index` joins the directory in: open when it is one of the `min`
/// the pool starts with, else filling (growth added it), so new tenants go there first.
pub fn joining_state(index: u32, min: u32) -> ClusterState {
    if index < min {
        ClusterState::Open
    } else {
        ClusterState::Filling
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1 << 30;

    fn load(name: &str, state: ClusterState, bytes: u64, tenants: u64) -> ClusterLoad {
        ClusterLoad {
            name: name.into(),
            state,
            capacity_bytes: 10 * GB,
            write_capacity: 100.0,
            bytes,
            write_rate: 0.0,
            tenants,
        }
    }

    #[test]
    fn a_busy_pool_grows_up_to_its_max_one_cluster_at_a_time() {
        let busy = [
            load("c0", ClusterState::Open, 8 * GB, 10),
            load("c1", ClusterState::Open, 9 * GB, 12),
        ];
        assert_eq!(next(&busy, 0.7, 2, 4, false), Growth::Add);
        assert_eq!(
            next(&busy, 0.7, 2, 4, true),
            Growth::Nothing,
            "one at a time"
        );
        assert_eq!(next(&busy, 0.7, 2, 2, false), Growth::Nothing, "at max");
        assert_eq!(
            next(&busy, 0.9, 2, 4, false),
            Growth::Nothing,
            "below threshold"
        );
    }

    #[test]
    fn a_quiet_pool_stays_as_it_is() {
        let quiet = [
            load("c0", ClusterState::Open, 0, 0),
            load("c1", ClusterState::Open, GB, 3),
        ];
        assert_eq!(next(&quiet, 0.7, 2, 8, false), Growth::Nothing);
    }

    #[test]
    fn the_first_clusters_join_open_and_grown_ones_filling() {
        assert_eq!(joining_state(0, 2), ClusterState::Open);
        assert_eq!(joining_state(1, 2), ClusterState::Open);
        assert_eq!(joining_state(2, 2), ClusterState::Filling);
    }

    #[test]
    fn a_filling_cluster_opens_once_it_has_caught_up() {
        let mut loads = vec![
            load("c0", ClusterState::Open, 8 * GB, 10),
            load("c1", ClusterState::Open, 8 * GB, 10),
            load("c2", ClusterState::Filling, GB, 2),
        ];
        assert_eq!(next(&loads, 0.95, 3, 8, false), Growth::Nothing);
        loads[2].tenants = 10;
        assert_eq!(next(&loads, 0.95, 3, 8, false), Growth::Open("c2".into()));
    }
}
