//! Whether the operator starts a tenant move by itself now: a pure decision over the pool's
//! `spec.rebalance`, the moves on record and the clusters' health. The moves themselves are
//! planned by [`super::moves::rebalance::plan`] and run like any `tenant move`.

use std::time::Duration;

use crate::crd::tenant_pool::RebalanceSpec;

/// A move on record that has not ended (done or aborted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    pub tenant: String,
    pub to: String,
    /// Its mover runs now (it holds the move's lock).
    pub running: bool,
}

/// One of the pool's clusters (the directory's too) as its supervisor last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterHealth {
    pub name: String,
    /// The orchestrator's state (`Healthy`, `Degraded`, …); none when no status is fresh.
    pub state: Option<String>,
    /// The furthest behind of its replicas, in seconds; none when none reports a lag.
    pub max_lag_seconds: Option<u64>,
    /// Work that a move must not run into: `paused`, `read-only`, `rolling`, `seeding`.
    pub busy: Option<&'static str>,
}

/// How soon a move left unfinished (a roll-back that could not end, a stopped operator) is
/// taken up again: the tenant may be frozen or `moving` meanwhile.
pub const RESUME_AFTER: Duration = Duration::from_secs(5);

/// What the pool's rebalancer does this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing, and nothing worth saying (off, busy, or not time yet).
    Idle,
    /// Nothing, for this reason (said once while it lasts).
    Hold(String),
    /// Finish a move a stopped operator left unfinished.
    Resume { tenant: String, to: String },
    /// Plan moves and run them.
    Rebalance,
}

/// The rebalancer's decision, while no move it started runs. `since_last`: time since the
/// last one it started ended (none: none yet, so the first look comes at once).
pub fn next(
    spec: &RebalanceSpec,
    since_last: Option<Duration>,
    unfinished: &[Unfinished],
    clusters: &[ClusterHealth],
) -> Next {
    if !spec.enabled {
        return Next::Idle;
    }
    // One move at a time in the pool, whoever started it.
    if let Some(m) = unfinished.iter().find(|m| m.running) {
        return Next::Hold(format!(
            "rebalancing waits: tenant {} is moving to {}",
            m.tenant, m.to
        ));
    }
    if let Some(m) = unfinished.first() {
        if since_last.is_some_and(|d| d < RESUME_AFTER) {
            return Next::Idle;
        }
        return Next::Resume {
            tenant: m.tenant.clone(),
            to: m.to.clone(),
        };
    }
    if since_last.is_some_and(|d| d < Duration::from_secs(u64::from(spec.interval_seconds))) {
        return Next::Idle;
    }
    for c in clusters {
        if let Some(busy) = c.busy {
            return Next::Hold(format!("rebalancing waits: {} is {busy}", c.name));
        }
        match c.state.as_deref() {
            Some("Healthy") => {}
            Some(state) => {
                return Next::Hold(format!("rebalancing waits: {} is {state}", c.name));
            }
            None => return Next::Hold(format!("rebalancing waits: {} reports no state", c.name)),
        }
        if let Some(lag) = c
            .max_lag_seconds
            .filter(|&l| l > u64::from(spec.max_replica_lag_seconds))
        {
            return Next::Hold(format!(
                "rebalancing waits: a replica of {} is {lag} s behind (at most {} s)",
                c.name, spec.max_replica_lag_seconds
            ));
        }
    }
    Next::Rebalance
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> RebalanceSpec {
        RebalanceSpec {
            enabled: true,
            interval_seconds: 60,
            ..RebalanceSpec::default()
        }
    }

    fn healthy(name: &str) -> ClusterHealth {
        ClusterHealth {
            name: name.into(),
            state: Some("Healthy".into()),
            max_lag_seconds: Some(0),
            busy: None,
        }
    }

    fn unfinished(tenant: &str, running: bool) -> Unfinished {
        Unfinished {
            tenant: tenant.into(),
            to: "c1".into(),
            running,
        }
    }

    #[test]
    fn off_or_too_soon_does_nothing() {
        let clusters = [healthy("c0"), healthy("c1")];
        assert_eq!(
            next(&RebalanceSpec::default(), None, &[], &clusters),
            Next::Idle
        );
        let soon = Some(Duration::from_secs(59));
        assert_eq!(next(&on(), soon, &[], &clusters), Next::Idle);
        let later = Some(Duration::from_secs(60));
        assert_eq!(next(&on(), later, &[], &clusters), Next::Rebalance);
        assert_eq!(next(&on(), None, &[], &clusters), Next::Rebalance);
    }

    #[test]
    fn an_unfinished_move_is_resumed_first_unless_its_mover_runs() {
        let clusters = [healthy("c0")];
        let left = [unfinished("7", false)];
        assert_eq!(
            next(&on(), None, &left, &clusters),
            Next::Resume {
                tenant: "7".into(),
                to: "c1".into()
            }
        );
        // Taken up again soon, not after the whole interval.
        assert_eq!(
            next(&on(), Some(RESUME_AFTER), &left, &clusters),
            Next::Resume {
                tenant: "7".into(),
                to: "c1".into()
            }
        );
        assert_eq!(
            next(&on(), Some(Duration::from_secs(1)), &left, &clusters),
            Next::Idle
        );
        let running = [unfinished("8", true), unfinished("7", false)];
        assert!(matches!(
            next(&on(), None, &running, &clusters),
            Next::Hold(why) if why.contains("tenant 8 is moving")
        ));
        // Off means off: an interrupted move is the user's to resume.
        assert_eq!(
            next(&RebalanceSpec::default(), None, &left, &clusters),
            Next::Idle
        );
    }

    #[test]
    fn an_unhealthy_or_lagging_cluster_holds_new_moves() {
        let mut degraded = healthy("c1");
        degraded.state = Some("Degraded".into());
        assert!(matches!(
            next(&on(), None, &[], &[healthy("c0"), degraded]),
            Next::Hold(why) if why.contains("c1 is Degraded")
        ));
        let mut silent = healthy("c2");
        silent.state = None;
        assert!(matches!(
            next(&on(), None, &[], &[silent]),
            Next::Hold(why) if why.contains("c2 reports no state")
        ));
        let mut behind = healthy("c0");
        behind.max_lag_seconds = Some(3);
        assert!(matches!(
            next(&on(), None, &[], &[behind.clone()]),
            Next::Hold(why) if why.contains("3 s behind (at most 2 s)")
        ));
        behind.max_lag_seconds = Some(2);
        assert_eq!(next(&on(), None, &[], &[behind]), Next::Rebalance);
        for busy in ["paused", "read-only", "rolling", "seeding"] {
            let mut c = healthy("rb-directory");
            c.busy = Some(busy);
            assert!(matches!(
                next(&on(), None, &[], &[healthy("c0"), c]),
                Next::Hold(why) if why == format!("rebalancing waits: rb-directory is {busy}")
            ));
        }
    }
}
