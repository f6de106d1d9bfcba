//! Pure functions from what the operator knows to what it reports: the `MySQLCluster` status
//! (phase, conditions, members, primary, topology epoch) and the Kubernetes Events of
//! orchestration events. No API calls and no clock: the time is an argument.

use std::collections::BTreeMap;

use lagless_core::topology::{Topology, TopologyState};

use crate::crd::{
    BackupsStatus, Condition, ConditionStatus, Durability, MemberRole, MemberStatus,
    MySQLClusterSpec, MySQLClusterStatus, Phase, PromotionRecord, ReseedRecord,
};
use crate::orchestrate::{Cause, ClusterState, ClusterView, Event};

/// What the orchestration of one cluster last saw and did, as the status needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The state of the last plan; `None` before the first tick.
    pub state: Option<ClusterState>,
    /// The last observation.
    pub view: Option<ClusterView>,
    /// The topology the proxies follow.
    pub published: Option<Topology>,
    /// Members kept out of traffic and promotion, with the reason.
    pub quarantined: BTreeMap<String, String>,
    pub last_failover: Option<PromotionRecord>,
    pub last_switchover: Option<PromotionRecord>,
    pub last_reseed: Option<ReseedRecord>,
    /// Why the orchestration cannot run, when it cannot (e.g. a credential Secret is missing).
    pub blocked: Option<String>,
    /// An action that keeps failing, and why (see `Orchestrator::failing`).
    pub failing: Option<String>,
    /// A roll under way (members on an older template), see [`super::roll`].
    pub roll: Option<RollReport>,
    /// Backups seen since the operator started, see [`super::backups`].
    pub backups: Option<BackupsStatus>,
    /// Why the restore of a cluster that starts from a backup fails, while it does.
    pub restore_failing: Option<String>,
}

/// A Kubernetes Event to record on the `MySQLCluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEvent {
    pub warning: bool,
    /// CamelCase, for programs (`kubectl describe` shows it as Reason).
    pub reason: &'static str,
    /// What the operator did, CamelCase.
    pub action: &'static str,
    /// A sentence for people.
    pub note: String,
}

/// The Kubernetes Event of an orchestration event.
pub fn cluster_event(event: &Event) -> ClusterEvent {
    let (warning, reason, action) = match event {
        Event::Bootstrapped { .. } => (false, "Bootstrapped", "Bootstrap"),
        Event::Promoted { cause, .. } => match cause {
            // A failover means the primary was lost: worth a look even though it succeeded.
            Cause::Failover => (true, "FailedOver", "Promote"),
            Cause::Switchover { .. } => (false, "SwitchedOver", "Promote"),
            Cause::Recovery => (false, "Recovered", "Promote"),
        },
        Event::Adopted { .. } => (false, "Adopted", "Adopt"),
        Event::Quarantined { .. } => (true, "Quarantined", "Quarantine"),
        Event::Seeded { .. } => (false, "Seeded", "Seed"),
        Event::SwitchoverFailed { .. } => (true, "SwitchoverFailed", "Switchover"),
        // Reported as the warning it is: the request stands and is refused on every tick.
        Event::SwitchoverRefused { .. } | Event::Warning { .. } => {
            (true, "ClusterWarning", "Observe")
        }
    };
    ClusterEvent {
        warning,
        reason,
        action,
        note: event.to_string(),
    }
}

/// The Warning Event for a spec whose failovers may lose acknowledged writes, if it is one.
pub fn durability_event(durability: Durability) -> Option<ClusterEvent> {
    (durability == Durability::SemiSyncOff).then(|| ClusterEvent {
        warning: true,
        reason: "NotLossless",
        action: "Configure",
        note: durability.message(),
    })
}

/// Folds a promotion event recorded at `time` (RFC 3339) into the last failover or switchover.
pub fn record_promotion(snapshot: &mut Snapshot, event: &Event, time: &str) {
    // A failed request is reported where a completed one would be, so that it is not run again.
    if let Event::SwitchoverFailed {
        request: Some(id),
        primary,
        reason,
        restored,
        ..
    } = event
    {
        snapshot.last_switchover = Some(PromotionRecord {
            time: time.to_string(),
            from: Some(primary.clone()),
            to: primary.clone(),
            id: Some(id.clone()),
            error: Some(if *restored {
                format!("{reason}; {primary} is the primary again")
            } else {
                reason.clone()
            }),
        });
        return;
    }
    if let Event::Promoted {
        member,
        previous,
        cause,
        ..
    } = event
    {
        let record = |id: Option<String>| PromotionRecord {
            time: time.to_string(),
            from: previous.clone(),
            to: member.clone(),
            id,
            error: None,
        };
        match cause {
            Cause::Failover => snapshot.last_failover = Some(record(None)),
            Cause::Switchover { request } => {
                snapshot.last_switchover = Some(record(request.clone()));
            }
            Cause::Recovery => {}
        }
    }
}

/// The phase of a cluster whose spec is valid.
pub fn phase(snapshot: &Snapshot) -> Phase {
    match snapshot.state {
        None => Phase::Pending,
        Some(ClusterState::Bootstrapping | ClusterState::Recovering) => Phase::Bootstrapping,
        Some(ClusterState::Healthy) => Phase::Running,
        Some(
            ClusterState::Degraded
            | ClusterState::PrimaryUnconfirmedDown
            | ClusterState::Cooldown
            | ClusterState::Incomplete,
        ) => Phase::Degraded,
        Some(ClusterState::PrimaryDown) => Phase::FailingOver,
        Some(ClusterState::Switchover) => Phase::SwitchingOver,
    }
}

/// One condition as computed now; [`merge_conditions`] gives it its transition time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub type_: &'static str,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

/// A condition `type_`, true when `on`.
pub fn want(type_: &'static str, on: bool, reason: &str, message: impl Into<String>) -> Want {
    Want {
        type_,
        status: if on {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: reason.to_string(),
        message: message.into(),
    }
}

/// Gives each wanted condition a `lastTransitionTime`: the previous one when the status did
/// not change (so the time says when it changed, not when it was last written), else `now`.
pub fn merge_conditions(
    previous: &[Condition],
    wanted: Vec<Want>,
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    wanted
        .into_iter()
        .map(|w| {
            let since = previous
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == w.status)
                .map_or_else(|| now.to_string(), |c| c.last_transition_time.clone());
            Condition {
                type_: w.type_.to_string(),
                status: w.status,
                reason: w.reason,
                message: w.message,
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect()
}

/// The status of a cluster whose spec failed validation: phase `Invalid` and the `Degraded`
/// condition carrying the validation message. What was observed before is kept: the running
/// cluster is left alone.
pub fn invalid_status(
    previous: &MySQLClusterStatus,
    message: &str,
    generation: Option<i64>,
    now: &str,
) -> MySQLClusterStatus {
    let wanted = vec![
        want(
            Condition::AVAILABLE,
            previous.primary.is_some(),
            "InvalidSpec",
            "the spec is invalid; the cluster is left as it is",
        ),
        want(Condition::PROGRESSING, false, "InvalidSpec", ""),
        want(Condition::DEGRADED, true, "InvalidSpec", message),
        want(Condition::FAILOVER_IN_PROGRESS, false, "InvalidSpec", ""),
    ];
    MySQLClusterStatus {
        phase: Some(Phase::Invalid),
        conditions: merge_conditions(&previous.conditions, wanted, generation, now),
        observed_generation: generation,
        ..previous.clone()
    }
}

/// The status of a cluster some of whose objects could not be applied: `Degraded` says which
/// and why (`message`), `Progressing` is false, and the rest of what was observed is kept (a
/// running cluster keeps running on the objects it has).
pub fn apply_failed_status(
    previous: &MySQLClusterStatus,
    message: &str,
    generation: Option<i64>,
    now: &str,
) -> MySQLClusterStatus {
    let mut wanted = vec![
        want(Condition::PROGRESSING, false, APPLY_FAILED, ""),
        want(Condition::DEGRADED, true, APPLY_FAILED, message),
    ];
    if !previous
        .conditions
        .iter()
        .any(|c| c.type_ == Condition::AVAILABLE)
    {
        wanted.insert(
            0,
            want(
                Condition::AVAILABLE,
                false,
                APPLY_FAILED,
                "the cluster's objects could not all be applied",
            ),
        );
    }
    let mut replaced = merge_conditions(&previous.conditions, wanted, generation, now);
    let mut conditions: Vec<Condition> = previous
        .conditions
        .iter()
        .map(|c| match replaced.iter().position(|r| r.type_ == c.type_) {
            Some(i) => replaced.remove(i),
            None => c.clone(),
        })
        .collect();
    conditions.extend(replaced);
    MySQLClusterStatus {
        phase: Some(previous.phase.unwrap_or(Phase::Pending)),
        conditions,
        observed_generation: generation,
        ..previous.clone()
    }
}

/// The reason of the `Degraded` condition and the Warning Event when applying failed.
pub const APPLY_FAILED: &str = "ApplyFailed";

/// Whether `conditions` already report `Degraded` for `reason` with `message`: the Warning
/// Event was recorded then, and is not repeated on every retry.
pub fn already_degraded(conditions: &[Condition], reason: &str, message: &str) -> bool {
    conditions.iter().any(|c| {
        c.type_ == Condition::DEGRADED
            && c.status == ConditionStatus::True
            && c.reason == reason
            && c.message == message
    })
}

/// The `DisruptionBudget` condition where the API server lacks `policy/v1`; `None` where it
/// has it (the PodDisruptionBudget is applied and nothing needs saying).
pub fn disruption_budget(policy_v1: bool) -> Option<Want> {
    (!policy_v1).then(|| {
        want(
            Condition::DISRUPTION_BUDGET,
            false,
            "PolicyV1Missing",
            crate::kube::apis::NO_POLICY_V1,
        )
    })
}

/// The members as last observed: the published primary is `Primary`, a quarantined member
/// `Quarantined`, a reachable one `Replica`, the rest `Unknown`.
pub fn members(snapshot: &Snapshot) -> Vec<MemberStatus> {
    let Some(view) = &snapshot.view else {
        return Vec::new();
    };
    let primary = snapshot
        .published
        .as_ref()
        .and_then(|t| t.primary.as_ref())
        .map(|m| m.name.as_str());
    let primary_executed = primary
        .and_then(|p| view.member(p))
        .and_then(|p| p.executed.as_ref());
    // What the proxies follow: a replica published with weight 0 gets no reads.
    let cordoned = |name: &str| {
        snapshot
            .published
            .as_ref()
            .is_some_and(|t| t.replicas.iter().any(|r| r.name == name && r.weight == 0))
    };
    view.members
        .iter()
        .map(|m| {
            let reachable = m.is_reachable();
            let role = if snapshot.quarantined.contains_key(&m.name) {
                MemberRole::Quarantined
            } else if primary == Some(m.name.as_str()) {
                MemberRole::Primary
            } else if reachable {
                MemberRole::Replica
            } else {
                MemberRole::Unknown
            };
            let healthy = match role {
                MemberRole::Primary => reachable,
                MemberRole::Replica => m.replicates_cleanly(),
                MemberRole::Quarantined | MemberRole::Unknown => false,
            };
            let replicating = role == MemberRole::Replica;
            MemberStatus {
                name: m.name.clone(),
                role,
                gtid_position: m.executed.as_ref().map(ToString::to_string),
                lag_ms: m
                    .lag_seconds
                    .filter(|_| replicating)
                    .and_then(|s| i64::try_from(s.saturating_mul(1000)).ok()),
                transactions_behind: m
                    .executed
                    .as_ref()
                    .zip(primary_executed)
                    .filter(|_| replicating)
                    .and_then(|(applied, p)| applied.transactions_behind(p))
                    .and_then(|n| i64::try_from(n).ok()),
                healthy,
                errant: snapshot.quarantined.get(&m.name).cloned(),
                cordoned: cordoned(&m.name),
            }
        })
        .collect()
}

/// The reason of the `Paused` condition while paused, and of the Event that says so.
pub const PAUSED: &str = "Paused";
/// The reason of the `Paused` condition once resumed, and of the Event that says so.
pub const RESUMED: &str = "Resumed";

/// The `Paused` condition: true while `spec.paused`; false once resumed, and absent from a
/// cluster that was never paused.
pub fn paused_condition(previous: &MySQLClusterStatus, paused: bool) -> Option<Want> {
    let reported = previous
        .conditions
        .iter()
        .any(|c| c.type_ == Condition::PAUSED);
    if paused {
        Some(want(
            Condition::PAUSED,
            true,
            PAUSED,
            "spec.paused: no failover, switchover, re-pointing or re-seed until it is false; \
             the members are observed and reported",
        ))
    } else {
        reported.then(|| want(Condition::PAUSED, false, RESUMED, "orchestration runs"))
    }
}

/// Where a roll of the members onto a changed template stands (see [`super::roll`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollReport {
    /// Members running the current template, of `members`.
    pub current: usize,
    pub members: usize,
    pub member: Option<String>,
    pub phase: Option<&'static str>,
    pub waiting: Option<String>,
}

impl RollReport {
    pub fn message(&self) -> String {
        let mut message = format!(
            "{} of {} members run the current template",
            self.current, self.members
        );
        if let (Some(member), Some(phase)) = (&self.member, self.phase) {
            message.push_str(&format!("; {member}: {phase}"));
        }
        if let Some(why) = &self.waiting {
            message.push_str(&format!("; {why}"));
        }
        message
    }
}

/// The `Rolling` condition: true while members run an older template than the StatefulSet's;
/// false once they all run the current one, and absent from a cluster never rolled.
pub fn rolling_condition(previous: &MySQLClusterStatus, roll: Option<&RollReport>) -> Option<Want> {
    let reported = previous
        .conditions
        .iter()
        .any(|c| c.type_ == Condition::ROLLING);
    match roll {
        Some(r) => Some(want(Condition::ROLLING, true, "Rolling", r.message())),
        None => reported.then(|| {
            want(
                Condition::ROLLING,
                false,
                "UpToDate",
                "every member runs the current template",
            )
        }),
    }
}

/// The `Restored` condition of a cluster that starts from a backup: true once it is published
/// (its first member restored and serving), false while restoring, with the error while the
/// restore step fails. Absent from other clusters.
pub fn restored_condition(
    from_backup: bool,
    published: bool,
    failing: Option<&str>,
) -> Option<Want> {
    if !from_backup {
        return None;
    }
    Some(match (published, failing) {
        (true, _) => want(
            Condition::RESTORED,
            true,
            "Restored",
            "the cluster was restored from a backup and is serving",
        ),
        (false, Some(why)) => want(Condition::RESTORED, false, "RestoreFailing", why),
        (false, None) => want(
            Condition::RESTORED,
            false,
            "Restoring",
            "the first member is being restored from a backup",
        ),
    })
}

/// The Normal Event when `spec.paused` changes, judged against the `Paused` condition last
/// reported (so a restarted operator does not say it again).
pub fn pause_event(previous: &MySQLClusterStatus, paused: bool) -> Option<ClusterEvent> {
    let was = previous
        .conditions
        .iter()
        .any(|c| c.type_ == Condition::PAUSED && c.status == ConditionStatus::True);
    match (was, paused) {
        (false, true) => Some(ClusterEvent {
            warning: false,
            reason: PAUSED,
            action: "Pause",
            note: "orchestration paused (spec.paused): the cluster is observed and reported, \
                   nothing is changed on its members"
                .to_string(),
        }),
        (true, false) => Some(ClusterEvent {
            warning: false,
            reason: RESUMED,
            action: "Resume",
            note: "orchestration resumed: what waited is planned again from what is observed now"
                .to_string(),
        }),
        _ => None,
    }
}

/// The Normal Events when members are cordoned out of read routing or uncordoned, judged
/// against the members' status last reported and the one about to be (so what the proxies
/// follow is what is announced, and a restarted operator does not say it again).
pub fn cordon_events(previous: &[MemberStatus], now: &[MemberStatus]) -> Vec<ClusterEvent> {
    let was = |name: &str| previous.iter().any(|m| m.name == name && m.cordoned);
    let mut events = Vec::new();
    for m in now {
        let before = was(&m.name);
        if m.cordoned && !before {
            events.push(ClusterEvent {
                warning: false,
                reason: "Cordoned",
                action: "Cordon",
                note: format!(
                    "{} cordoned (spec.cordoned): no reads are routed to it; it keeps replicating",
                    m.name
                ),
            });
        } else if before && !m.cordoned && m.role == MemberRole::Replica {
            events.push(ClusterEvent {
                warning: false,
                reason: "Uncordoned",
                action: "Uncordon",
                note: format!("{} uncordoned: reads are routed to it again", m.name),
            });
        }
    }
    events
}

/// The reason of the `ReadOnly` condition while the primary refuses writes, and of the Event.
pub const READ_ONLY: &str = "ReadOnly";
/// The reason of the `ReadOnly` condition once writes are taken again, and of the Event.
pub const WRITABLE: &str = "Writable";

/// Whether the cluster is read-only in fact: the topology the proxies follow says so and the
/// primary was last seen with `read_only=ON`.
pub fn read_only_in_effect(snapshot: &Snapshot) -> bool {
    let Some(published) = snapshot.published.as_ref().filter(|t| t.read_only) else {
        return false;
    };
    let primary = published.primary.as_ref().map(|p| p.name.as_str());
    primary
        .and_then(|p| snapshot.view.as_ref()?.member(p))
        .is_some_and(|m| m.read_only == Some(true))
}

/// The `ReadOnly` condition: true while `spec.readOnly` is in effect, false (reason
/// `TurningReadOnly`) until it is; false (`Writable`) once turned off, and absent from a
/// cluster that was never read-only.
pub fn read_only_condition(
    previous: &MySQLClusterStatus,
    wanted: bool,
    in_effect: bool,
) -> Option<Want> {
    let reported = previous
        .conditions
        .iter()
        .any(|c| c.type_ == Condition::READ_ONLY);
    match (wanted, in_effect) {
        (true, true) => Some(want(
            Condition::READ_ONLY,
            true,
            READ_ONLY,
            "spec.readOnly: the primary refuses writes (error 1290, relayed by the proxies at \
             once); reads go on",
        )),
        (true, false) => Some(want(
            Condition::READ_ONLY,
            false,
            "TurningReadOnly",
            "spec.readOnly: the primary is being made read-only",
        )),
        (false, _) => {
            reported.then(|| want(Condition::READ_ONLY, false, WRITABLE, "writes are taken"))
        }
    }
}

/// The Normal Event when the cluster became read-only or writable again, judged against the
/// `ReadOnly` condition last reported and the one about to be.
pub fn read_only_event(
    previous: &MySQLClusterStatus,
    now: &MySQLClusterStatus,
) -> Option<ClusterEvent> {
    let condition = |s: &MySQLClusterStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == Condition::READ_ONLY)
            .map(|c| (c.status == ConditionStatus::True, c.reason.clone()))
    };
    let was = condition(previous).is_some_and(|(on, _)| on);
    match condition(now) {
        Some((true, _)) if !was => Some(ClusterEvent {
            warning: false,
            reason: READ_ONLY,
            action: "SetReadOnly",
            note: "cluster read-only (spec.readOnly): the primary refuses writes with error \
                   1290; reads go on"
                .to_string(),
        }),
        Some((false, reason)) if was && reason == WRITABLE => Some(ClusterEvent {
            warning: false,
            reason: WRITABLE,
            action: "SetWritable",
            note: "cluster writable again: the primary takes writes".to_string(),
        }),
        _ => None,
    }
}

/// The status of a cluster whose spec is valid and whose objects were applied.
pub fn cluster_status(
    previous: &MySQLClusterStatus,
    snapshot: &Snapshot,
    spec: &MySQLClusterSpec,
    generation: Option<i64>,
    now: &str,
) -> MySQLClusterStatus {
    let replicas = spec.replicas;
    let durability = spec.durability();
    let lossless = want(
        Condition::LOSSLESS,
        durability.is_lossless(),
        match durability {
            Durability::Lossless { .. } => "SemiSync",
            Durability::SemiSyncOff => "SemiSyncOff",
            Durability::SingleMember => "SingleMember",
        },
        durability.message(),
    );
    // Paused, the conditions still say what was found; nothing is in progress.
    let phase = match phase(snapshot) {
        Phase::Bootstrapping | Phase::SwitchingOver | Phase::FailingOver if spec.paused => {
            Phase::Degraded
        }
        phase => phase,
    };
    let members = members(snapshot);
    let healthy = members.iter().filter(|m| m.healthy).count();
    let published = snapshot.published.as_ref();
    let primary = published
        .and_then(|t| t.primary.as_ref())
        .map(|m| m.name.clone());
    let writable = published.is_some_and(|t| t.state == TopologyState::Ready) && primary.is_some();
    let state = snapshot
        .state
        .map_or_else(|| "NotObserved".to_string(), |s| format!("{s:?}"));
    let available = if writable {
        want(
            Condition::AVAILABLE,
            true,
            "PrimaryPublished",
            format!(
                "{} takes writes (topology epoch {})",
                primary.as_deref().unwrap_or_default(),
                published.map_or(0, |t| t.epoch)
            ),
        )
    } else {
        want(
            Condition::AVAILABLE,
            false,
            "NoPrimary",
            "no primary is published to the proxies",
        )
    };
    let progressing = match (&snapshot.blocked, phase) {
        (Some(why), _) => want(Condition::PROGRESSING, false, "Blocked", why.clone()),
        (None, _) if spec.paused => want(Condition::PROGRESSING, false, PAUSED, ""),
        (
            None,
            Phase::Pending | Phase::Bootstrapping | Phase::SwitchingOver | Phase::FailingOver,
        ) => want(Condition::PROGRESSING, true, &state, ""),
        (None, _) => want(Condition::PROGRESSING, false, &state, ""),
    };
    let degraded = match (&snapshot.blocked, phase) {
        (Some(why), _) => want(Condition::DEGRADED, true, "Blocked", why.clone()),
        (None, _) if snapshot.failing.is_some() => want(
            Condition::DEGRADED,
            true,
            "ActionFailing",
            snapshot.failing.clone().unwrap_or_default(),
        ),
        (None, Phase::Degraded) => want(
            Condition::DEGRADED,
            true,
            &state,
            format!("{healthy} of {replicas} members healthy"),
        ),
        (None, _) => want(Condition::DEGRADED, false, &state, ""),
    };
    let failover = want(
        Condition::FAILOVER_IN_PROGRESS,
        phase == Phase::FailingOver,
        &state,
        "",
    );
    let mut wanted = vec![available, progressing, degraded, failover, lossless];
    wanted.extend(paused_condition(previous, spec.paused));
    wanted.extend(rolling_condition(previous, snapshot.roll.as_ref()));
    wanted.extend(restored_condition(
        spec.from_backup().is_some(),
        published.is_some(),
        snapshot.restore_failing.as_deref(),
    ));
    wanted.extend(read_only_condition(
        previous,
        spec.read_only,
        read_only_in_effect(snapshot),
    ));
    MySQLClusterStatus {
        phase: Some(if spec.paused { Phase::Paused } else { phase }),
        primary,
        ready: Some(format!("{healthy}/{replicas}")),
        members,
        // Never lower than recorded: it is what the next epoch must exceed.
        topology_epoch: published
            .and_then(|t| i64::try_from(t.epoch).ok())
            .max(previous.topology_epoch),
        conditions: merge_conditions(&previous.conditions, wanted, generation, now),
        observed_generation: generation,
        last_failover: snapshot
            .last_failover
            .clone()
            .or_else(|| previous.last_failover.clone()),
        last_switchover: snapshot
            .last_switchover
            .clone()
            .or_else(|| previous.last_switchover.clone()),
        last_reseed: snapshot
            .last_reseed
            .clone()
            .or_else(|| previous.last_reseed.clone()),
        backups: backups_status(previous.backups.as_ref(), snapshot.backups.as_ref()),
    }
}

/// The backups' status: what this operator saw, and what an earlier one reported where it has
/// seen nothing of that kind yet (a restarted operator keeps the last success on record).
pub fn backups_status(
    previous: Option<&BackupsStatus>,
    seen: Option<&BackupsStatus>,
) -> Option<BackupsStatus> {
    let (previous, seen) = match (previous, seen) {
        (None, None) => return None,
        (p, s) => (
            p.cloned().unwrap_or_default(),
            s.cloned().unwrap_or_default(),
        ),
    };
    let (last_success, last_success_time) = if seen.last_success.is_some() {
        (seen.last_success, seen.last_success_time)
    } else {
        (previous.last_success, previous.last_success_time)
    };
    let (last_failure, last_failure_time) = if seen.last_failure.is_some() {
        (seen.last_failure, seen.last_failure_time)
    } else {
        (previous.last_failure, previous.last_failure_time)
    };
    Some(BackupsStatus {
        last_success,
        last_success_time,
        last_failure,
        last_failure_time,
        next_scheduled: seen.next_scheduled,
        last_drill: seen.last_drill.or(previous.last_drill),
        last_drill_time: seen.last_drill_time.or(previous.last_drill_time),
        next_drill: seen.next_drill,
        archive: seen.archive,
    })
}

#[cfg(test)]
mod tests;
