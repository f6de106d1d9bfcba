use lagless_core::gtid::GtidSet;
use lagless_core::topology::{Flavor, Member};

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
        read_only: false,
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
        (
            Event::SwitchoverRefused {
                request: Some("r1".into()),
                reason: "switchover to db-2 refused: no".into(),
            },
            (true, "ClusterWarning"),
        ),
    ];
    for (event, expected) in cases {
        let e = cluster_event(&event);
        assert_eq!((e.warning, e.reason), expected, "{event:?}");
    }
}

#[test]
fn a_failed_apply_is_degraded_and_keeps_what_was_observed() {
    let running = cluster_status(
        &MySQLClusterStatus::default(),
        &healthy_snapshot(),
        &spec3(),
        Some(1),
        T0,
    );
    let message = "applying StatefulSet db: spec: Forbidden (422 Invalid)";
    let failed = apply_failed_status(&running, message, Some(2), T1);
    let find = |type_: &str| {
        failed
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap()
            .clone()
    };
    let degraded = find(Condition::DEGRADED);
    assert_eq!(
        (
            degraded.status,
            degraded.reason.as_str(),
            degraded.message.as_str()
        ),
        (ConditionStatus::True, APPLY_FAILED, message)
    );
    assert_eq!(degraded.last_transition_time, T1);
    assert_eq!(find(Condition::PROGRESSING).status, ConditionStatus::False);
    // The running cluster is still available, its primary and phase unchanged.
    let available = find(Condition::AVAILABLE);
    assert_eq!(
        (available.status, available.last_transition_time.as_str()),
        (ConditionStatus::True, T0)
    );
    assert_eq!(failed.conditions.len(), running.conditions.len());
    assert_eq!(
        (failed.phase, &failed.primary),
        (running.phase, &running.primary)
    );
    assert_eq!(failed.observed_generation, Some(2));
    assert!(already_degraded(&failed.conditions, APPLY_FAILED, message));
    assert!(!already_degraded(
        &failed.conditions,
        APPLY_FAILED,
        "another"
    ));

    // A cluster that never got a status is Pending and not available.
    let first = apply_failed_status(&MySQLClusterStatus::default(), message, Some(1), T0);
    assert_eq!(first.phase, Some(Phase::Pending));
    let types: Vec<&str> = first.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(
        types,
        [
            Condition::AVAILABLE,
            Condition::PROGRESSING,
            Condition::DEGRADED
        ]
    );
    assert_eq!(first.conditions[0].status, ConditionStatus::False);
}

#[test]
fn a_missing_policy_v1_is_a_false_disruption_budget_condition() {
    assert_eq!(disruption_budget(true), None);
    let wanted = disruption_budget(false).unwrap();
    assert_eq!(
        (wanted.type_, wanted.status, wanted.reason.as_str()),
        (
            Condition::DISRUPTION_BUDGET,
            ConditionStatus::False,
            "PolicyV1Missing"
        )
    );
    assert!(wanted.message.contains("policy/v1"));
}

#[test]
fn a_paused_cluster_says_so_and_nothing_is_in_progress() {
    let mut paused = spec3();
    paused.paused = true;
    let mut down = healthy_snapshot();
    down.state = Some(ClusterState::PrimaryDown);
    let never = MySQLClusterStatus::default();
    let status = cluster_status(&never, &down, &paused, Some(2), T0);
    assert_eq!(status.phase, Some(Phase::Paused));
    let c = condition(&status, Condition::PAUSED);
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::True, "Paused")
    );
    assert!(c.message.contains("no failover"), "{c:?}");
    // What was found is still reported; no failover is said to be under way.
    assert_eq!(
        condition(&status, Condition::FAILOVER_IN_PROGRESS).status,
        ConditionStatus::False
    );
    assert_eq!(condition(&status, Condition::PROGRESSING).reason, "Paused");
    let degraded = condition(&status, Condition::DEGRADED);
    assert_eq!(degraded.status, ConditionStatus::True);
    assert_eq!(degraded.reason, "PrimaryDown");
    assert_eq!(status.primary.as_deref(), Some("db-0"));

    // Resumed: the condition turns false (and stays in the status), the phase follows the plan.
    let resumed = cluster_status(&status, &healthy_snapshot(), &spec3(), Some(3), T1);
    assert_eq!(resumed.phase, Some(Phase::Running));
    let c = condition(&resumed, Condition::PAUSED);
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::False, "Resumed")
    );
    assert_eq!(c.last_transition_time, T1);
    // A cluster never paused has no such condition.
    let plain = cluster_status(&never, &healthy_snapshot(), &spec3(), Some(1), T0);
    assert!(
        !plain
            .conditions
            .iter()
            .any(|c| c.type_ == Condition::PAUSED),
        "{plain:?}"
    );
}

#[test]
fn pausing_and_resuming_are_normal_events_said_once() {
    let mut paused = spec3();
    paused.paused = true;
    let never = MySQLClusterStatus::default();
    let event = pause_event(&never, true).unwrap();
    assert_eq!((event.warning, event.reason), (false, "Paused"));
    assert_eq!(pause_event(&never, false), None);
    // Reported paused: not said again (a restarted operator reads the status).
    let reported = cluster_status(&never, &healthy_snapshot(), &paused, Some(2), T0);
    assert_eq!(pause_event(&reported, true), None);
    let event = pause_event(&reported, false).unwrap();
    assert_eq!((event.warning, event.reason), (false, "Resumed"));
    let resumed = cluster_status(&reported, &healthy_snapshot(), &spec3(), Some(3), T1);
    assert_eq!(pause_event(&resumed, false), None);
    assert_eq!(
        pause_event(&resumed, true).map(|e| e.reason),
        Some("Paused")
    );
}

#[test]
fn a_replica_published_with_weight_0_is_reported_cordoned_and_announced_once() {
    let plain = healthy_snapshot();
    let before = members(&plain);
    assert!(before.iter().all(|m| !m.cordoned), "{before:?}");

    let mut snapshot = healthy_snapshot();
    if let Some(t) = snapshot.published.as_mut() {
        t.replicas[0].weight = 0;
    }
    let now = members(&snapshot);
    let db1 = now.iter().find(|m| m.name == "db-1").expect("db-1");
    assert!(db1.cordoned && db1.role == MemberRole::Replica, "{db1:?}");
    assert!(now.iter().filter(|m| m.cordoned).count() == 1, "{now:?}");

    let events = cordon_events(&before, &now);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].reason, "Cordoned");
    assert!(events[0].note.starts_with("db-1 cordoned"), "{events:?}");
    // Reported already: not said again.
    assert!(cordon_events(&now, &now).is_empty());
    // Back with its weight.
    let back = cordon_events(&now, &before);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0].reason, "Uncordoned");
}

#[test]
fn the_read_only_condition_and_events_follow_what_is_in_effect() {
    let never = MySQLClusterStatus::default();
    assert!(read_only_condition(&never, false, false).is_none());
    let turning = read_only_condition(&never, true, false).expect("a condition");
    assert_eq!(turning.status, ConditionStatus::False);
    assert_eq!(turning.reason, "TurningReadOnly");
    let on = read_only_condition(&never, true, true).expect("a condition");
    assert_eq!(on.status, ConditionStatus::True);

    let mut snapshot = healthy_snapshot();
    assert!(!read_only_in_effect(&snapshot));
    if let Some(t) = snapshot.published.as_mut() {
        t.read_only = true;
    }
    assert!(
        !read_only_in_effect(&snapshot),
        "the primary still writable"
    );
    if let Some(v) = snapshot.view.as_mut() {
        v.members[0].read_only = Some(true);
    }
    assert!(read_only_in_effect(&snapshot));

    let mut spec = spec3();
    spec.read_only = true;
    let first = cluster_status(&never, &snapshot, &spec, Some(2), T0);
    assert_eq!(
        condition(&first, Condition::READ_ONLY).status,
        ConditionStatus::True
    );
    let event = read_only_event(&never, &first).expect("an event");
    assert_eq!(event.reason, "ReadOnly");
    assert!(read_only_event(&first, &first).is_none(), "said once");
    spec.read_only = false;
    let off = cluster_status(&first, &healthy_snapshot(), &spec, Some(3), T1);
    let c = condition(&off, Condition::READ_ONLY);
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::False, "Writable")
    );
    assert_eq!(
        read_only_event(&first, &off).expect("an event").reason,
        "Writable"
    );
    assert!(read_only_event(&off, &off).is_none());
}

#[test]
fn the_rolling_condition_is_true_while_a_roll_runs_and_false_once_reported() {
    let report = RollReport {
        current: 2,
        members: 3,
        member: Some("db-0".into()),
        phase: Some("draining"),
        waiting: None,
    };
    let never = MySQLClusterStatus::default();
    assert_eq!(rolling_condition(&never, None), None);
    let on = rolling_condition(&never, Some(&report)).expect("a condition while rolling");
    assert_eq!(on.type_, Condition::ROLLING);
    assert_eq!(on.status, ConditionStatus::True);
    assert_eq!(
        on.message,
        "2 of 3 members run the current template; db-0: draining"
    );
    let mut rolled = MySQLClusterStatus::default();
    rolled.conditions.push(Condition {
        type_: Condition::ROLLING.into(),
        status: ConditionStatus::True,
        reason: "Rolling".into(),
        message: String::new(),
        last_transition_time: "2026-01-01T00:00:00Z".into(),
        observed_generation: None,
    });
    let off = rolling_condition(&rolled, None).expect("reported once rolled");
    assert_eq!(off.status, ConditionStatus::False);
    assert_eq!(off.reason, "UpToDate");
}

#[test]
fn the_restored_condition_says_how_a_restore_goes_and_only_on_restored_clusters() {
    assert_eq!(restored_condition(false, false, Some("x")), None);
    let restoring = restored_condition(true, false, None).expect("a condition");
    assert_eq!(
        (restoring.status, restoring.reason.as_str()),
        (ConditionStatus::False, "Restoring")
    );
    let failing = restored_condition(
        true,
        false,
        Some("agent restore: cannot restore to 2099-01-01: the archive ends before it"),
    )
    .expect("a condition");
    assert_eq!(failing.reason, "RestoreFailing");
    assert!(failing.message.contains("cannot restore to"));
    let done = restored_condition(true, true, None).expect("a condition");
    assert_eq!(
        (done.status, done.reason.as_str()),
        (ConditionStatus::True, "Restored")
    );
}

#[test]
fn a_restarted_operator_keeps_the_last_backup_and_drill_on_record() {
    let previous = BackupsStatus {
        last_success: Some("db-1".into()),
        last_success_time: Some("t1".into()),
        last_failure: Some("b: no".into()),
        last_failure_time: Some("t0".into()),
        last_drill: Some("passed: 3 tables".into()),
        last_drill_time: Some("t2".into()),
        next_scheduled: Some("old".into()),
        ..BackupsStatus::default()
    };
    assert_eq!(backups_status(None, None), None);
    let kept = backups_status(Some(&previous), None).expect("kept");
    assert_eq!(kept.last_success.as_deref(), Some("db-1"));
    assert_eq!(kept.last_drill.as_deref(), Some("passed: 3 tables"));
    assert_eq!(
        kept.next_scheduled, None,
        "the schedule is this operator's to say"
    );
    let seen = BackupsStatus {
        last_success: Some("db-2".into()),
        last_success_time: Some("t3".into()),
        ..BackupsStatus::default()
    };
    let merged = backups_status(Some(&previous), Some(&seen)).expect("merged");
    assert_eq!(merged.last_success.as_deref(), Some("db-2"));
    assert_eq!(merged.last_success_time.as_deref(), Some("t3"));
    assert_eq!(merged.last_failure.as_deref(), Some("b: no"));
}
