//! Pure functions from what the operator knows to what it reports: the `MySQLCluster` status
//! (phase, conditions, members, primary, topology epoch) and the Kubernetes Events of
//! orchestration events. No API calls and no clock: the time is an argument.

use std::collections::BTreeMap;

use lagless_proxy::topology::{Topology, TopologyState};

use crate::crd::{
    Condition, ConditionStatus, Durability, MemberRole, MemberStatus, MySQLClusterSpec,
    MySQLClusterStatus, Phase, PromotionRecord, ReseedRecord,
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
        Event::Warning { .. } => (true, "ClusterWarning", "Observe"),
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

fn want(type_: &'static str, on: bool, reason: &str, message: impl Into<String>) -> Want {
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
            }
        })
        .collect()
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
    let phase = phase(snapshot);
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
    MySQLClusterStatus {
        phase: Some(phase),
        primary,
        ready: Some(format!("{healthy}/{replicas}")),
        members,
        // Never lower than recorded: it is what the next epoch must exceed.
        topology_epoch: published
            .and_then(|t| i64::try_from(t.epoch).ok())
            .max(previous.topology_epoch),
        conditions: merge_conditions(
            &previous.conditions,
            vec![available, progressing, degraded, failover, lossless],
            generation,
            now,
        ),
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
    }
}

#[cfg(test)]
mod tests {
    use lagless_proxy::gtid::GtidSet;
    use lagless_proxy::topology::{Flavor, Member};

    use super::*;
    use crate::orchestrate::{MemberView, Probe};

    fn spec3() -> MySQLClusterSpec {
        serde_saphyr::from_str("replicas: 3").unwrap()
    }

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:01:00Z";

    fn topology(primary: &str, epoch: u64) -> Topology {
        Topology {
            cluster: "db".into(),
            flavor: Flavor::Mariadb,
            epoch,
            state: TopologyState::Ready,
            primary: Some(Member::new(primary, format!("{primary}.db"), 3306)),
            replicas: vec![Member::new("db-1", "db-1.db", 3306)],
            consistency: None,
        }
    }

    fn member(name: &str, up: bool, replicating: bool) -> MemberView {
        let mut m = MemberView::unobserved(name, format!("{name}.db"), 3306);
        if up {
            m.probe = Probe::Ok;
            m.executed = Some(GtidSet::parse(Flavor::Mariadb, "0-1-5").unwrap());
            m.io_running = Some(replicating);
            m.sql_running = Some(replicating);
        }
        m
    }

    fn healthy_snapshot() -> Snapshot {
        Snapshot {
            state: Some(ClusterState::Healthy),
            view: Some(ClusterView {
                flavor: Flavor::Mariadb,
                members: vec![
                    member("db-0", true, false),
                    member("db-1", true, true),
                    member("db-2", false, false),
                ],
                published: None,
            }),
            published: Some(topology("db-0", 4)),
            ..Snapshot::default()
        }
    }

    fn condition<'a>(status: &'a MySQLClusterStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn phases_follow_the_plan_state() {
        let mut s = Snapshot::default();
        assert_eq!(phase(&s), Phase::Pending);
        for (state, expected) in [
            (ClusterState::Bootstrapping, Phase::Bootstrapping),
            (ClusterState::Healthy, Phase::Running),
            (ClusterState::Degraded, Phase::Degraded),
            (ClusterState::PrimaryUnconfirmedDown, Phase::Degraded),
            (ClusterState::PrimaryDown, Phase::FailingOver),
            (ClusterState::Switchover, Phase::SwitchingOver),
            (ClusterState::Incomplete, Phase::Degraded),
        ] {
            s.state = Some(state);
            assert_eq!(phase(&s), expected, "{state:?}");
        }
    }

    #[test]
    fn healthy_cluster_status() {
        let status = cluster_status(
            &MySQLClusterStatus::default(),
            &healthy_snapshot(),
            &spec3(),
            Some(2),
            T0,
        );
        assert_eq!(status.phase, Some(Phase::Running));
        assert_eq!(status.primary.as_deref(), Some("db-0"));
        assert_eq!(status.ready.as_deref(), Some("2/3"));
        assert_eq!(status.topology_epoch, Some(4));
        assert_eq!(status.observed_generation, Some(2));
        let lossless = condition(&status, Condition::LOSSLESS);
        assert_eq!(lossless.status, ConditionStatus::True);
        // Turned off, the status says what a failover may cost.
        let mut opted_out = spec3();
        opted_out.replication.semi_sync = Some(false);
        let status = cluster_status(&status, &healthy_snapshot(), &opted_out, Some(3), T1);
        let lossless = condition(&status, Condition::LOSSLESS);
        assert_eq!(
            (lossless.status, lossless.reason.as_str()),
            (ConditionStatus::False, "SemiSyncOff")
        );
        assert!(
            lossless
                .message
                .contains("may lose writes the primary acknowledged")
        );
        // The recorded epoch never goes back, even if the published document did.
        let mut lost = healthy_snapshot();
        lost.published = None;
        assert_eq!(
            cluster_status(&status, &lost, &spec3(), Some(3), T1).topology_epoch,
            Some(4)
        );
        let roles: Vec<_> = status.members.iter().map(|m| (m.role, m.healthy)).collect();
        assert_eq!(
            roles,
            [
                (MemberRole::Primary, true),
                (MemberRole::Replica, true),
                (MemberRole::Unknown, false)
            ]
        );
        let available = condition(&status, Condition::AVAILABLE);
        assert_eq!(available.status, ConditionStatus::True);
        assert_eq!(available.last_transition_time, T0);
        assert_eq!(
            condition(&status, Condition::DEGRADED).status,
            ConditionStatus::False
        );
        assert_eq!(
            condition(&status, Condition::FAILOVER_IN_PROGRESS).status,
            ConditionStatus::False
        );
    }

    #[test]
    fn members_report_lag_transactions_behind_and_why_quarantined() {
        let gtid = |s: &str| GtidSet::parse(Flavor::Mariadb, s).ok();
        let mut snapshot = healthy_snapshot();
        let view = snapshot.view.as_mut().expect("the snapshot has a view");
        view.members[0].executed = gtid("0-1-12");
        view.members[0].lag_seconds = None;
        view.members[1].executed = gtid("0-1-9");
        view.members[1].lag_seconds = Some(3);
        let mut errant = member("db-2", true, false);
        errant.executed = gtid("0-3-13");
        errant.lag_seconds = Some(0);
        view.members[2] = errant;
        let reason = "executed 0-3-13, beyond the primary's 0-1-12";
        snapshot
            .quarantined
            .insert("db-2".into(), reason.to_string());
        let members = members(&snapshot);
        let by_name = |n: &str| members.iter().find(|m| m.name == n).expect(n);
        let primary = by_name("db-0");
        assert_eq!((primary.lag_ms, primary.transactions_behind), (None, None));
        let replica = by_name("db-1");
        assert_eq!(replica.lag_ms, Some(3000));
        assert_eq!(replica.transactions_behind, Some(3));
        assert_eq!(replica.errant, None);
        let quarantined = by_name("db-2");
        assert_eq!(quarantined.role, MemberRole::Quarantined);
        assert_eq!(quarantined.errant.as_deref(), Some(reason));
        // Not a replica taking reads: no lag figures that could be read as one.
        assert_eq!(quarantined.transactions_behind, None);
        assert_eq!(quarantined.lag_ms, None);
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let first = cluster_status(
            &MySQLClusterStatus::default(),
            &healthy_snapshot(),
            &spec3(),
            Some(1),
            T0,
        );
        let same = cluster_status(&first, &healthy_snapshot(), &spec3(), Some(1), T1);
        assert_eq!(
            condition(&same, Condition::AVAILABLE).last_transition_time,
            T0
        );
        let mut down = healthy_snapshot();
        down.state = Some(ClusterState::PrimaryDown);
        let failing = cluster_status(&same, &down, &spec3(), Some(1), T1);
        assert_eq!(failing.phase, Some(Phase::FailingOver));
        let failover = condition(&failing, Condition::FAILOVER_IN_PROGRESS);
        assert_eq!(
            (failover.status, failover.last_transition_time.as_str()),
            (ConditionStatus::True, T1)
        );
        assert_eq!(
            condition(&failing, Condition::AVAILABLE).last_transition_time,
            T0
        );
    }

    #[test]
    fn invalid_spec_reports_the_message_and_keeps_what_was_observed() {
        let running = cluster_status(
            &MySQLClusterStatus::default(),
            &healthy_snapshot(),
            &spec3(),
            Some(1),
            T0,
        );
        let status = invalid_status(&running, "spec.replicas: must be 1..=9", Some(2), T1);
        assert_eq!(status.phase, Some(Phase::Invalid));
        assert_eq!(status.primary.as_deref(), Some("db-0"));
        assert_eq!(status.observed_generation, Some(2));
        let degraded = condition(&status, Condition::DEGRADED);
        assert_eq!(degraded.status, ConditionStatus::True);
        assert_eq!(degraded.reason, "InvalidSpec");
        assert_eq!(degraded.message, "spec.replicas: must be 1..=9");
        assert_eq!(degraded.last_transition_time, T1);
    }

    #[test]
    fn an_action_that_keeps_failing_is_reported() {
        let snapshot = Snapshot {
            failing: Some("EnsureSemiSync on db-0 failed: plugin not loaded".into()),
            ..healthy_snapshot()
        };
        let status = cluster_status(
            &MySQLClusterStatus::default(),
            &snapshot,
            &spec3(),
            None,
            T0,
        );
        let degraded = condition(&status, Condition::DEGRADED);
        assert_eq!(
            (degraded.status, degraded.reason.as_str()),
            (ConditionStatus::True, "ActionFailing")
        );
        assert!(degraded.message.contains("EnsureSemiSync on db-0"));
    }

    #[test]
    fn blocked_orchestration_is_degraded_with_the_reason() {
        let snapshot = Snapshot {
            blocked: Some("Secret db-admin not found".into()),
            ..Snapshot::default()
        };
        let status = cluster_status(
            &MySQLClusterStatus::default(),
            &snapshot,
            &spec3(),
            None,
            T0,
        );
        assert_eq!(status.phase, Some(Phase::Pending));
        let degraded = condition(&status, Condition::DEGRADED);
        assert_eq!(
            (degraded.status, degraded.message.as_str()),
            (ConditionStatus::True, "Secret db-admin not found")
        );
    }

    #[test]
    fn promotions_map_to_events_and_records() {
        let failover = Event::Promoted {
            member: "db-1".into(),
            previous: Some("db-0".into()),
            epoch: 5,
            cause: Cause::Failover,
            position: None,
        };
        let switchover = Event::Promoted {
            member: "db-2".into(),
            previous: Some("db-1".into()),
            epoch: 6,
            cause: Cause::Switchover {
                request: Some("s1".into()),
            },
            position: None,
        };
        let e = cluster_event(&failover);
        assert_eq!(
            (e.warning, e.reason, e.action),
            (true, "FailedOver", "Promote")
        );
        assert!(e.note.contains("db-1"), "{}", e.note);
        let e = cluster_event(&switchover);
        assert_eq!((e.warning, e.reason), (false, "SwitchedOver"));

        let mut snapshot = Snapshot::default();
        record_promotion(&mut snapshot, &failover, T0);
        record_promotion(&mut snapshot, &switchover, T1);
        assert_eq!(
            snapshot.last_failover,
            Some(PromotionRecord {
                time: T0.into(),
                from: Some("db-0".into()),
                to: "db-1".into(),
                id: None,
                error: None,
            })
        );
        assert_eq!(
            snapshot
                .last_switchover
                .as_ref()
                .and_then(|r| r.id.as_deref()),
            Some("s1")
        );
        let status = cluster_status(
            &MySQLClusterStatus::default(),
            &snapshot,
            &spec3(),
            None,
            T1,
        );
        assert_eq!(status.last_failover, snapshot.last_failover);
    }

    #[test]
    fn other_events_map_to_reasons() {
        let cases = [
            (
                Event::Seeded {
                    member: "db-2".into(),
                    donor: "db-1".into(),
                },
                (false, "Seeded"),
            ),
            (
                Event::Quarantined {
                    member: "db-2".into(),
                    reason: "errant".into(),
                },
                (true, "Quarantined"),
            ),
            (
                Event::Bootstrapped {
                    primary: "db-0".into(),
                    epoch: 1,
                },
                (false, "Bootstrapped"),
            ),
            (
                Event::Warning {
                    message: "x".into(),
                },
                (true, "ClusterWarning"),
            ),
        ];
        for (event, expected) in cases {
            let e = cluster_event(&event);
            assert_eq!((e.warning, e.reason), expected, "{event:?}");
        }
    }
}
