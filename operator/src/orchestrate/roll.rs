//! Rolling a change of the members' server configuration through a running cluster: one
//! member at a time, replicas first, each taken out of read routing before it restarts and
//! caught up before the next; the primary last, after a planned switchover hands its role to a
//! replica that already runs the new configuration.
//!
//! [`next`] is the decision, a pure function of what is observed and of the member being
//! rolled; the platform carries out the [`Step`] (the local supervisor restarts processes;
//! in Kubernetes, `kube::roll` deletes pods one at a time). Nothing here is kept: a platform
//! restarted mid-roll decides again from which members run the new configuration.

use std::time::Duration;

use lagless_core::gtid::GtidSet;
use lagless_core::topology::Topology;

use super::ClusterView;
use super::view::ClusterSpec;

/// How long a member stays out of read routing before it is stopped, once the topology
/// without it is published, when the proxies cannot say whether they still use it: they
/// follow a published topology within milliseconds, and reads already running there get the
/// rest of this to finish.
pub const DRAIN: Duration = Duration::from_millis(1500);
/// How long a drained member is kept even when the proxies say they run nothing on it: a
/// statement routed just before a proxy took the new topology may not have started yet.
pub const DRAIN_MIN: Duration = Duration::from_millis(500);
/// How long statements the proxies still run on a drained member may hold its restart.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// A member's part in the cluster, as the roll needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    /// Published as a replica.
    Replica,
    /// Neither: joining, quarantined, down.
    Other,
}

/// One member as the roll sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollMember {
    pub name: String,
    pub role: Role,
    /// Its server runs the wanted configuration.
    pub current: bool,
    /// Published for reads (a replica with a weight above 0).
    pub in_reads: bool,
    /// Answered its probe and reported its position.
    pub reachable: bool,
    /// Both replication threads run without error.
    pub replicating: bool,
    /// What it has applied.
    pub executed: Option<GtidSet>,
    /// It may take the primary role (not `neverPromote`).
    pub promotable: bool,
}

impl RollMember {
    /// `name` as the spec, the published topology and the last observation show it; whether
    /// it runs the wanted configuration (`current`) is the platform's to say.
    pub fn observed(
        name: &str,
        spec: Option<&ClusterSpec>,
        published: Option<&Topology>,
        view: Option<&ClusterView>,
        current: bool,
    ) -> Self {
        let listed = published.and_then(|t| t.replicas.iter().find(|r| r.name == name));
        let role = if published
            .and_then(|t| t.primary.as_ref())
            .is_some_and(|p| p.name == name)
        {
            Role::Primary
        } else if listed.is_some() {
            Role::Replica
        } else {
            Role::Other
        };
        let v = view.and_then(|v| v.member(name));
        RollMember {
            name: name.to_string(),
            role,
            current,
            in_reads: listed.is_some_and(|r| r.weight > 0),
            reachable: v.is_some_and(|v| v.is_reachable()),
            replicating: v.is_some_and(|v| v.source.is_some() && v.replicates_cleanly()),
            executed: v.and_then(|v| v.executed.clone()),
            promotable: spec
                .and_then(|s| s.member(name))
                .is_none_or(|m| !m.never_promote),
        }
    }
}

/// Sets what the member being rolled must apply once it is catching up: what the primary
/// holds now; again after a failover, since a new primary may lack what the old one held and
/// never acknowledged. `from` is the primary the target was read from. Only on a position
/// read: a primary that missed one probe is read again at the next tick rather than leave
/// the member waiting for no target forever.
pub fn anchor_catch_up(
    rolling: &mut Rolling,
    from: &mut Option<String>,
    published: Option<&Topology>,
    view: Option<&ClusterView>,
) {
    if rolling.phase != Phase::CatchingUp {
        return;
    }
    let primary = published
        .and_then(|t| t.primary.as_ref())
        .map(|p| p.name.clone());
    if primary.is_none() || primary == *from {
        return;
    }
    let to = primary
        .as_deref()
        .and_then(|p| view?.member(p)?.executed.clone());
    if to.is_some() {
        rolling.catch_up_to = to;
        *from = primary;
    }
}

/// Where the member being rolled is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Out of read routing; reads already on it finish.
    Draining,
    /// Being stopped and started with the new configuration.
    Restarting,
    /// Running the new configuration; applying what it missed while down.
    CatchingUp,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Draining => "draining",
            Phase::Restarting => "restarting",
            Phase::CatchingUp => "catching up",
        }
    }
}

/// The member being rolled, as the platform remembers it between ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rolling {
    pub member: String,
    pub phase: Phase,
    /// When the phase began (milliseconds, the caller's clock).
    pub since_ms: u64,
    /// What the primary had applied when the member came back: it has caught up once it has
    /// applied all of it.
    pub catch_up_to: Option<GtidSet>,
}

/// Everything [`next`] decides from.
#[derive(Debug, Clone)]
pub struct RollView<'a> {
    /// In ordinal order.
    pub members: &'a [RollMember],
    pub paused: bool,
    /// The orchestration found nothing to repair on its last tick.
    pub healthy: bool,
    /// A switchover is asked for and not finished.
    pub switching: bool,
    pub rolling: Option<&'a Rolling>,
    /// Whether every proxy follows a topology without the member being drained in reads and
    /// runs no statement on it; `None` when the proxies cannot be asked.
    pub proxies_drained: Option<bool>,
    pub now_ms: u64,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every member runs the wanted configuration.
    Done,
    /// Nothing this tick, for this reason.
    Wait(String),
    /// Take the member out of read routing (again while the proxies still route reads to it:
    /// the drain time counts from when they do not); it restarts once drained.
    Drain(String),
    /// Stop the member and start it with the wanted configuration.
    Restart(String),
    /// The member is done (or left the roll): back into read routing.
    Readmit(String),
    /// Every replica runs the wanted configuration: switch the primary over to one of them.
    Switchover { from: String },
}

/// The next step of the roll.
pub fn next(v: &RollView<'_>) -> Step {
    if v.paused {
        return Step::Wait("orchestration is paused: the roll goes on once it is resumed".into());
    }
    if let Some(r) = v.rolling {
        return in_flight(v, r);
    }
    if v.switching {
        return Step::Wait("a switchover is under way".into());
    }
    let stale: Vec<&RollMember> = v.members.iter().filter(|m| !m.current).collect();
    if stale.is_empty() {
        return Step::Done;
    }
    // Each member is restarted only while every other one serves: never two down at once.
    if !v.healthy {
        return Step::Wait(
            "the cluster is not healthy: the next member restarts once it is".to_string(),
        );
    }
    // Replicas from the highest ordinal down, as a StatefulSet rolls.
    if let Some(m) = stale.iter().rev().find(|m| m.role != Role::Primary) {
        return Step::Drain(m.name.clone());
    }
    let Some(primary) = stale.first() else {
        return Step::Done;
    };
    let has_replica = v
        .members
        .iter()
        .any(|m| m.role == Role::Replica && m.current && m.replicating && m.promotable);
    if has_replica {
        Step::Switchover {
            from: primary.name.clone(),
        }
    } else if v.members.len() == 1 {
        // Nowhere to hand the role to: a one-member cluster restarts in place.
        Step::Restart(primary.name.clone())
    } else if !v
        .members
        .iter()
        .any(|m| m.role != Role::Primary && m.promotable)
    {
        // Never restarted without a hand-over, and none can take it: said once, not tried.
        Step::Wait(format!(
            "every other member is neverPromote: {} keeps its configuration until one may take \
             the primary role (or it is restarted by hand)",
            primary.name
        ))
    } else {
        Step::Wait(format!(
            "no replica runs the new configuration to take the primary role from {}",
            primary.name
        ))
    }
}

fn in_flight(v: &RollView<'_>, r: &Rolling) -> Step {
    let Some(m) = v.members.iter().find(|m| m.name == r.member) else {
        // Scaled away meanwhile.
        return Step::Readmit(r.member.clone());
    };
    let name = &m.name;
    match r.phase {
        // Promoted by a failover while waiting: not restarted now; the roll decides again.
        Phase::Draining if m.role == Role::Primary => Step::Readmit(name.clone()),
        // Not out of read routing yet: the drain time counts from when it is.
        Phase::Draining if m.in_reads => Step::Drain(name.clone()),
        // Drained, but restarted only while every other member serves and no switchover
        // runs (a member that failed, or a switchover asked for meanwhile, waits for it).
        Phase::Draining if !v.healthy || v.switching => Step::Wait(format!(
            "{name} is drained; it restarts once the cluster is healthy and no switchover runs"
        )),
        Phase::Draining => {
            let waited = v.now_ms.saturating_sub(r.since_ms);
            match v.proxies_drained {
                _ if waited < duration_ms(DRAIN_MIN) => {
                    Step::Wait(format!("letting reads on {name} finish"))
                }
                Some(false) if waited < duration_ms(DRAIN_LIMIT) => {
                    Step::Wait(format!("waiting for statements on {name} to finish"))
                }
                None if waited < duration_ms(DRAIN) => {
                    Step::Wait(format!("letting reads on {name} finish"))
                }
                Some(_) | None => Step::Restart(name.clone()),
            }
        }
        Phase::Restarting => Step::Wait(format!("restarting {name} with the new configuration")),
        Phase::CatchingUp if caught_up(m, r) => Step::Readmit(name.clone()),
        Phase::CatchingUp => Step::Wait(format!("{name} is catching up")),
    }
}

/// Back in service: a primary answering, or a replica replicating cleanly that has applied
/// what the primary held when it came back.
fn caught_up(m: &RollMember, r: &Rolling) -> bool {
    if !m.reachable {
        return false;
    }
    if m.role == Role::Primary {
        return true;
    }
    let applied = match (&m.executed, &r.catch_up_to) {
        (Some(executed), Some(target)) => executed.contains(target),
        _ => false,
    };
    m.role == Role::Replica && m.replicating && applied
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
