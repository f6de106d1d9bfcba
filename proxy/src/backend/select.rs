//! Choosing a replica for a read, as pure functions of what a read must see and what is known
//! of the replicas: the session carries out the plan (head read, GTID wait, relay).

use std::time::Duration;

use crate::gtid::GtidSet;
use crate::route::ConsistencyMode;
use crate::topology::Member;

/// What a replica must satisfy to serve a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Any,
    Applied(GtidSet),
    FreshWithin { max_ms: u64 },
}

/// What a read under a consistency mode must see, or that the primary's head must be read
/// first (the head is then the requirement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    Ready(Requirement),
    Head,
}

/// What reads under `mode` must see. `tracks_gtids`: the backends report the GTIDs of writes;
/// `own`: the session's writes; `proxy`: every write through this proxy (asked only for
/// `proxy` consistency).
pub fn need_of(
    mode: ConsistencyMode,
    tracks_gtids: bool,
    own: Option<&GtidSet>,
    proxy: impl FnOnce() -> Option<GtidSet>,
) -> Need {
    let applied =
        |set: Option<GtidSet>| Need::Ready(set.map_or(Requirement::Any, Requirement::Applied));
    match mode {
        ConsistencyMode::Eventual => Need::Ready(Requirement::Any),
        ConsistencyMode::Bounded { max_lag_ms } => {
            Need::Ready(Requirement::FreshWithin { max_ms: max_lag_ms })
        }
        ConsistencyMode::Session if tracks_gtids => applied(own.cloned()),
        ConsistencyMode::Proxy if tracks_gtids => applied(proxy()),
        // Without session tracking the proxy cannot see a write's GTID: be strict instead.
        ConsistencyMode::Session | ConsistencyMode::Proxy | ConsistencyMode::Strict => Need::Head,
    }
}

/// Whether a read that must see the primary's head runs on the primary instead: when its
/// statement costs at most `ratio` times a head read. The head read would cost the primary as
/// much as running the statement there, and the client waits for one round trip instead of
/// two. Unknown costs (a statement not yet seen, no head read yet) and a ratio of 0 keep the
/// read on a replica.
pub fn cheaper_on_primary(
    statement: Option<Duration>,
    head_read: Option<Duration>,
    ratio: f64,
) -> bool {
    let (Some(statement), Some(head_read)) = (statement, head_read) else {
        return false;
    };
    ratio > 0.0 && statement.as_secs_f64() <= head_read.as_secs_f64() * ratio
}

/// The metric label of a consistency mode.
pub fn mode_label(mode: ConsistencyMode) -> &'static str {
    match mode {
        ConsistencyMode::Strict => "strict",
        ConsistencyMode::Session => "session",
        ConsistencyMode::Proxy => "proxy",
        ConsistencyMode::Bounded { .. } => "bounded",
        ConsistencyMode::Eventual => "eventual",
    }
}

/// What the choice reads about replicas: health, load and positions.
pub trait ReplicaView {
    fn is_up(&self, addr: &str) -> bool;
    /// Statements in flight on `addr`.
    fn outstanding(&self, addr: &str) -> usize;
    fn has_applied(&self, addr: &str, need: &GtidSet) -> bool;
    /// Milliseconds `addr` is behind the primary, if known.
    fn staleness_ms(&self, addr: &str) -> Option<u64>;
    /// How many transactions `addr` lacks of `need`, if known.
    fn behind(&self, addr: &str, need: &GtidSet) -> Option<u64>;
    /// Where to start among equally loaded candidates, so that ties spread.
    fn rotation(&self) -> usize;

    fn qualifies(&self, addr: &str, req: &Requirement) -> bool {
        match req {
            Requirement::Any => true,
            Requirement::Applied(need) => self.has_applied(addr, need),
            Requirement::FreshWithin { max_ms } => {
                self.staleness_ms(addr).is_some_and(|s| s <= *max_ms)
            }
        }
    }
}

/// Where a read goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadPlan {
    /// The replica connection the session holds.
    Current,
    /// A connection to this replica.
    Replica(Member),
    /// This replica, once it has applied the set: nobody is known to have caught up, and it is
    /// the closest.
    WaitThen(Member, GtidSet),
    /// The primary, for this reason (a metric label).
    Primary(&'static str),
}

/// Where a read with requirement `req` goes. `current`: the session's replica connection (its
/// member and address); `replicas`: the topology's.
pub fn plan_read(
    req: Requirement,
    current: Option<(&Member, &str)>,
    replicas: &[Member],
    view: &impl ReplicaView,
) -> ReadPlan {
    // Stay on the current replica when it qualifies: no new connection, warm caches, and no
    // allocation on this, the common path.
    if let Some((member, addr)) = current {
        let listed = replicas
            .iter()
            .any(|m| m.weight > 0 && m.has_addr(&member.host, member.port));
        if listed && view.is_up(addr) && view.qualifies(addr, &req) {
            return ReadPlan::Current;
        }
    }
    let healthy: Vec<&Member> = replicas
        .iter()
        .filter(|m| m.weight > 0 && view.is_up(&m.addr()))
        .collect();
    if healthy.is_empty() {
        return ReadPlan::Primary("no_replica");
    }
    let qualified: Vec<&Member> = healthy
        .iter()
        .copied()
        .filter(|m| view.qualifies(&m.addr(), &req))
        .collect();
    if let Some(m) = least_loaded(&qualified, view) {
        return ReadPlan::Replica(m.clone());
    }
    let Requirement::Applied(need) = req else {
        return ReadPlan::Primary("too_stale");
    };
    // Nobody is known to have caught up: wait on the one closest to it.
    match healthy
        .iter()
        .min_by_key(|m| view.behind(&m.addr(), &need).unwrap_or(u64::MAX))
    {
        Some(best) => ReadPlan::WaitThen((*best).clone(), need),
        None => ReadPlan::Primary("no_replica"),
    }
}

/// Of `candidates`, the one with the fewest statements in flight per unit of weight; ties
/// rotate so they spread instead of piling on the first replica.
pub fn least_loaded<'a>(candidates: &[&'a Member], view: &impl ReplicaView) -> Option<&'a Member> {
    if candidates.is_empty() {
        return None;
    }
    let start = view.rotation() % candidates.len();
    let mut best: Option<(&Member, u64)> = None;
    for i in 0..candidates.len() {
        let m = candidates[(start + i) % candidates.len()];
        let load =
            (view.outstanding(&m.addr()) as u64 + 1) * 1_000_000 / u64::from(m.weight.max(1));
        if best.is_none_or(|(_, b)| load < b) {
            best = Some((m, load));
        }
    }
    best.map(|(m, _)| m)
}

#[cfg(test)]
mod tests;
