//! One table-style test per decision, on small hand-built views; property tests in `props`.

mod former_primaries;
mod props;

use std::time::Duration;

use lagless_core::gtid::GtidSet;
use lagless_core::topology::{Flavor, Member, Topology, TopologyState};

use super::{Action, Cause, ClusterState, Event, Plan, plan, with_semi_sync};
use crate::orchestrate::view::{
    ClusterSpec, ClusterView, History, MemberSpec, MemberView, Probe, Promotion, ReplicationError,
    SemiSync, SemiSyncState, Switchover, SwitchoverTarget,
};

const PORT: u16 = 3306;
const NOW: u64 = 10_000_000;

fn maria(text: &str) -> GtidSet {
    GtidSet::parse(Flavor::Mariadb, text).unwrap()
}

fn mysql(text: &str) -> GtidSet {
    GtidSet::parse(Flavor::Mysql, text).unwrap()
}

/// Adjusts a fixture in place, keeping test tables short.
trait With: Sized {
    fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl<T> With for T {}

/// A writable member with no source (host = name).
fn primary(name: &str, executed: GtidSet) -> MemberView {
    MemberView {
        probe: Probe::Ok,
        read_only: Some(false),
        executed: Some(executed.clone()),
        retrieved: Some(GtidSet::empty(executed.flavor())),
        ..MemberView::unobserved(name, name, PORT)
    }
}

/// A read-only member replicating from `source` with both threads running.
fn replica(name: &str, source: &str, executed: GtidSet) -> MemberView {
    MemberView {
        probe: Probe::Ok,
        read_only: Some(true),
        retrieved: Some(executed.clone()),
        executed: Some(executed),
        source: Some((source.to_owned(), PORT)),
        io_running: Some(true),
        sql_running: Some(true),
        ..MemberView::unobserved(name, name, PORT)
    }
}

/// A replica whose IO thread lost its source; it still holds `retrieved`.
fn orphan(name: &str, source: &str, executed: GtidSet, retrieved: GtidSet) -> MemberView {
    replica(name, source, executed).with(|m| {
        m.retrieved = Some(retrieved);
        m.io_running = Some(false);
        m.io_error = Some(ReplicationError::new(2003, "Can't connect"));
    })
}

/// A member that failed `failures` probes in a row.
fn down(name: &str, failures: u32) -> MemberView {
    MemberView {
        consecutive_failures: failures,
        ..MemberView::unobserved(name, name, PORT)
    }
}

fn spec(names: &[&str]) -> ClusterSpec {
    let members = names
        .iter()
        .map(|n| MemberSpec::new(*n, *n, PORT))
        .collect();
    ClusterSpec::new("demo", members)
}

fn topology(primary: Option<&str>, replicas: &[&str], epoch: u64) -> Topology {
    Topology {
        cluster: "demo".into(),
        flavor: Flavor::Mariadb,
        epoch,
        state: if primary.is_some() {
            TopologyState::Ready
        } else {
            TopologyState::Switching
        },
        primary: primary.map(|p| Member::new(p, p, PORT)),
        replicas: replicas.iter().map(|r| Member::new(*r, *r, PORT)).collect(),
        consistency: None,
        read_only: false,
    }
}

fn view(members: Vec<MemberView>, published: Option<Topology>) -> ClusterView {
    let flavor = members
        .iter()
        .find_map(|m| m.executed.as_ref().map(GtidSet::flavor))
        .unwrap_or(Flavor::Mariadb);
    ClusterView {
        flavor,
        members,
        published,
    }
}

fn history() -> History {
    History {
        now_ms: NOW,
        ..History::default()
    }
}

/// a primary at 0-1-100 with replicas b and c, published at epoch 5.
fn healthy() -> ClusterView {
    view(
        vec![
            primary("a", maria("0-1-100")),
            replica("b", "a", maria("0-1-100")),
            replica("c", "a", maria("0-1-100")),
        ],
        Some(topology(Some("a"), &["b", "c"], 5)),
    )
}

/// a dead after 3 probes; b and c lost it, c received more than b.
fn a_dead() -> ClusterView {
    view(
        vec![
            down("a", 3),
            orphan("b", "a", maria("0-1-90"), maria("0-1-95")),
            orphan("c", "a", maria("0-1-90"), maria("0-1-98")),
        ],
        Some(topology(Some("a"), &["b", "c"], 5)),
    )
}

fn run(view: &ClusterView, spec: &ClusterSpec) -> Plan {
    plan(view, spec, &history())
}

fn promoted(plan: &Plan) -> Vec<&str> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::Promote { member } => Some(member.as_str()),
            _ => None,
        })
        .collect()
}

fn published(plan: &Plan) -> Vec<&Topology> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::PublishTopology { topology } => Some(topology),
            _ => None,
        })
        .collect()
}

fn warnings(plan: &Plan) -> String {
    plan.events
        .iter()
        .filter_map(Event::warning)
        .collect::<Vec<_>>()
        .join("; ")
}

fn publish(primary: Option<&str>, replicas: &[&str], epoch: u64) -> Action {
    Action::PublishTopology {
        topology: topology(primary, replicas, epoch),
    }
}

/// Ends the clients of a member about to stop taking writes.
fn kill_clients(member: &str) -> Action {
    Action::KillClientConnections {
        member: member.to_owned(),
    }
}

fn read_only(member: &str) -> Action {
    Action::SetReadOnly {
        member: member.to_owned(),
    }
}

fn quarantined(plan: &Plan) -> Vec<&str> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::Quarantine { member, .. } => Some(member.as_str()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Steady state and repairs

#[test]
fn healthy_cluster_needs_nothing() {
    let p = run(&healthy(), &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Healthy);
    assert!(p.actions.is_empty() && p.events.is_empty(), "{p:?}");
}

#[test]
fn lagging_replica_is_no_reason_to_act() {
    let mut v = healthy();
    v.members[1] = replica("b", "a", maria("0-1-3"));
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Healthy, "{p:?}");
}

#[test]
fn stopped_replication_is_restarted() {
    let mut v = healthy();
    v.members[1].sql_running = Some(false);
    v.members[2].io_running = Some(false);
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Degraded);
    assert_eq!(
        p.actions,
        [
            Action::RestartReplication { member: "b".into() },
            Action::RestartReplication { member: "c".into() },
        ]
    );
}

#[test]
fn sql_error_is_reported_not_restarted() {
    let mut v = healthy();
    v.members[1].sql_running = Some(false);
    v.members[1].sql_error = Some(ReplicationError::new(1062, "Duplicate entry"));
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Degraded);
    assert!(p.actions.is_empty(), "{p:?}");
    assert!(warnings(&p).contains("1062"), "{p:?}");
}

#[test]
fn replica_of_another_source_is_repointed() {
    let mut v = healthy();
    v.members[2] = replica("c", "b", maria("0-1-100"));
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(
        p.actions,
        [
            Action::Repoint {
                member: "c".into(),
                source: "a".into()
            },
            // Not following the primary yet, so not published until it does.
            publish(Some("a"), &["b"], 6),
        ]
    );
}

#[test]
fn new_empty_member_joins_then_is_published() {
    let mut v = healthy();
    v.members.push(MemberView {
        probe: Probe::Ok,
        read_only: Some(true),
        executed: Some(maria("")),
        ..MemberView::unobserved("d", "d", PORT)
    });
    let spec = spec(&["a", "b", "c", "d"]);
    let p = run(&v, &spec);
    assert_eq!(
        p.actions,
        [Action::Rejoin {
            member: "d".into(),
            source: "a".into()
        }]
    );
    v.members[3] = replica("d", "a", maria("0-1-100"));
    let p = run(&v, &spec);
    assert_eq!(p.actions, [publish(Some("a"), &["b", "c", "d"], 6)]);
}

#[test]
fn primary_restarted_read_only_is_made_writable() {
    let mut v = healthy();
    v.members[0].read_only = Some(true);
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.actions, [Action::SetWritable { member: "a".into() }]);
}

#[test]
fn stray_writable_replica_is_set_read_only() {
    let mut v = healthy();
    v.members[1].read_only = Some(false);
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.actions, [kill_clients("b"), read_only("b")]);
}

#[test]
fn unreachable_replica_stays_published() {
    let mut v = healthy();
    v.members[2] = down("c", 7);
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Healthy, "{p:?}");
}

// ---------------------------------------------------------------------------------------------
// Errant transactions

#[test]
fn replica_with_local_writes_is_quarantined() {
    let mut v = healthy();
    v.members[1] = replica("b", "a", maria("0-1-100")).with(|m| {
        m.executed = Some(maria("0-1-100,7-2-3"));
    });
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Degraded);
    assert_eq!(quarantined(&p), ["b"]);
    assert!(
        p.events
            .iter()
            .any(|e| matches!(e, Event::Quarantined { member, .. } if member == "b"))
    );
    // No traffic: the topology drops it in the same plan.
    assert_eq!(published(&p), [&topology(Some("a"), &["c"], 6)]);
}

#[test]
fn mysql_replica_with_its_own_uuid_is_quarantined() {
    let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let b = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
    let v = view(
        vec![
            primary("a", mysql(&format!("{a}:1-50"))),
            replica("b", "a", mysql(&format!("{a}:1-50"))).with(|m| {
                m.executed = Some(mysql(&format!("{a}:1-50,{b}:1")));
            }),
        ],
        Some(topology(Some("a"), &["b"], 5).with(|t| t.flavor = Flavor::Mysql)),
    );
    let p = run(&v, &spec(&["a", "b"]));
    assert_eq!(quarantined(&p), ["b"]);
}

#[test]
fn same_sequence_from_another_server_is_errant() {
    let mut v = healthy();
    v.members[1] = replica("b", "a", maria("0-1-100")).with(|m| {
        m.executed = Some(maria("0-2-100"));
        m.retrieved = Some(maria("0-1-99"));
    });
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(quarantined(&p), ["b"]);
}

#[test]
fn source_refusing_the_position_quarantines() {
    let mut v = healthy();
    v.members[1].io_running = Some(false);
    v.members[1].io_error = Some(ReplicationError::new(
        1236,
        "Error: connecting slave requested to start from GTID 0-1-100, which is not in the \
         master's binlog",
    ));
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(quarantined(&p), ["b"]);
    assert!(
        !p.actions
            .contains(&Action::RestartReplication { member: "b".into() })
    );
}

#[test]
fn quarantined_member_gets_no_repairs_and_no_traffic() {
    let mut v = healthy();
    v.members[1].io_running = Some(false);
    let mut h = history();
    h.quarantined.insert("b".into(), "errant".into());
    let p = plan(&v, &spec(&["a", "b", "c"]), &h);
    assert_eq!(p.actions, [publish(Some("a"), &["c"], 6)]);
}

#[test]
fn primary_that_lost_transactions_does_not_quarantine_replicas() {
    // a crashed and came back without 0-1-101..105, which b had already received.
    let mut v = healthy();
    v.members[1] = replica("b", "a", maria("0-1-105"));
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert!(quarantined(&p).is_empty(), "{p:?}");
    assert!(warnings(&p).contains("lacks transactions"), "{p:?}");
}

// ---------------------------------------------------------------------------------------------
// The old primary returns

fn after_failover(old: MemberView) -> (ClusterView, History) {
    let v = view(
        vec![
            old,
            primary("b", maria("0-2-105")),
            replica("c", "b", maria("0-2-105")),
        ],
        Some(topology(Some("b"), &["c"], 7)),
    );
    let mut h = history();
    h.last_promotion = Some(Promotion {
        from: Some("a".into()),
        to: "b".into(),
        position: Some(maria("0-1-100")),
    });
    (v, h)
}

#[test]
fn old_primary_with_extra_transactions_is_quarantined_not_rejoined() {
    // a committed 0-1-101 locally before dying; b took over at 0-1-100 and moved on to 0-2-105,
    // so by sequence number alone a looks behind b.
    let (v, h) = after_failover(primary("a", maria("0-1-101")));
    let p = plan(&v, &spec(&["a", "b", "c"]), &h);
    assert_eq!(p.actions[..2], [kill_clients("a"), read_only("a")]);
    assert_eq!(quarantined(&p), ["a"]);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Rejoin { .. } | Action::Repoint { .. })),
        "{p:?}"
    );
}

#[test]
fn old_primary_without_extra_transactions_rejoins() {
    let (v, h) = after_failover(primary("a", maria("0-1-100")));
    let p = plan(&v, &spec(&["a", "b", "c"]), &h);
    assert_eq!(
        p.actions,
        [
            kill_clients("a"),
            read_only("a"),
            Action::Rejoin {
                member: "a".into(),
                source: "b".into()
            },
        ]
    );
}

#[test]
fn old_mysql_primary_with_extra_transactions_is_quarantined() {
    let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let b = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
    let v = view(
        vec![
            primary("a", mysql(&format!("{a}:1-101"))),
            primary("b", mysql(&format!("{a}:1-100,{b}:1-5"))),
        ],
        Some(topology(Some("b"), &[], 7).with(|t| t.flavor = Flavor::Mysql)),
    );
    let p = run(&v, &spec(&["a", "b"]));
    assert_eq!(quarantined(&p), ["a"]);
}

// ---------------------------------------------------------------------------------------------
// Failover

#[test]
fn dead_primary_fails_over_to_the_most_complete_replica() {
    let p = run(&a_dead(), &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::PrimaryDown);
    assert_eq!(
        p.actions,
        [
            publish(None, &["b", "c"], 6),
            Action::FenceReplicas {
                members: vec!["b".into(), "c".into()]
            },
            Action::FencePrimary { member: "a".into() },
            Action::WaitRelayApplied {
                member: "c".into(),
                until: maria("0-1-98")
            },
            Action::Promote { member: "c".into() },
            Action::Repoint {
                member: "b".into(),
                source: "c".into()
            },
            publish(Some("c"), &["b"], 7),
        ]
    );
    assert_eq!(
        p.events[1..],
        [Event::Promoted {
            member: "c".into(),
            previous: Some("a".into()),
            epoch: 7,
            cause: Cause::Failover,
            position: Some(maria("0-1-98")),
        }]
    );
    // Without semi-sync the event says what may be lost.
    assert!(
        warnings(&p).contains(
            "from a to c without semi-sync: writes a acknowledged beyond 0-1-98 are lost"
        ),
        "{p:?}"
    );
    // With it, the candidate waits for acknowledgements before it is writable, and nothing
    // is said to be lost.
    let s = spec(&["a", "b", "c"]).with(|s| s.semi_sync = Some(SemiSync { acks: 1 }));
    let p = run(&a_dead(), &s);
    let promote = p
        .actions
        .iter()
        .position(|a| *a == Action::Promote { member: "c".into() });
    let ensure = Action::EnsureSemiSync {
        primary: "c".into(),
        replicas: vec![],
    };
    assert_eq!(promote.map(|i| &p.actions[i - 1]), Some(&ensure));
    assert!(warnings(&p).is_empty(), "{p:?}");
}

#[test]
fn primary_short_of_the_probe_count_is_not_dead() {
    let mut v = a_dead();
    v.members[0].consecutive_failures = 2;
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::PrimaryUnconfirmedDown);
    assert!(p.actions.is_empty());
}

#[test]
fn hung_primary_that_replicas_still_see_is_not_dead() {
    let v = view(
        vec![
            down("a", 50).with(|m| m.probe = Probe::Hung),
            replica("b", "a", maria("0-1-100")),
            replica("c", "a", maria("0-1-100")),
        ],
        Some(topology(Some("a"), &["b", "c"], 5)),
    );
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::PrimaryUnconfirmedDown);
    assert!(p.actions.is_empty());
    assert!(warnings(&p).contains("still replicate"), "{p:?}");
}

#[test]
fn one_replica_still_connected_blocks_failover() {
    let mut v = a_dead();
    v.members[1].io_running = Some(true);
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::PrimaryUnconfirmedDown);
    assert!(p.actions.is_empty());
}

#[test]
fn hung_primary_that_replicas_lost_is_fenced_best_effort() {
    let mut v = a_dead();
    v.members[0].probe = Probe::Hung;
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::PrimaryDown);
    assert_eq!(
        p.actions.get(2),
        Some(&Action::FencePrimary { member: "a".into() })
    );
    assert_eq!(promoted(&p), ["c"]);
}

#[test]
fn primary_missing_from_the_view_counts_as_failed() {
    let mut v = a_dead();
    v.members.remove(0);
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(promoted(&p), ["c"]);
}

#[test]
fn equally_advanced_replicas_go_by_name_then_priority() {
    let v = view(
        vec![
            down("a", 3),
            orphan("c", "a", maria("0-1-90"), maria("0-1-98")),
            orphan("b", "a", maria("0-1-98"), maria("0-1-98")),
        ],
        Some(topology(Some("a"), &["b", "c"], 5)),
    );
    let mut s = spec(&["a", "b", "c"]);
    assert_eq!(promoted(&run(&v, &s)), ["b"]);
    s.members[2].promotion_priority = 1;
    assert_eq!(promoted(&run(&v, &s)), ["c"]);
}

#[test]
fn lagging_replica_that_received_everything_is_promoted() {
    // b's SQL thread is far behind (a lag probe would call it unready), but it received the
    // most: it is the only safe choice, and it applies its relay log before promotion.
    let v = view(
        vec![
            down("a", 3),
            orphan("b", "a", maria("0-1-10"), maria("0-1-99")),
            orphan("c", "a", maria("0-1-98"), maria("0-1-98")),
        ],
        Some(topology(Some("a"), &["b", "c"], 5)),
    );
    let mut s = spec(&["a", "b", "c"]);
    s.members[2].promotion_priority = 10;
    let p = run(&v, &s);
    assert_eq!(promoted(&p), ["b"]);
    assert!(p.actions.contains(&Action::WaitRelayApplied {
        member: "b".into(),
        until: maria("0-1-99")
    }));
}

#[test]
fn replica_with_failed_probes_is_no_reason_to_fail_over() {
    let mut v = healthy();
    v.members[1].consecutive_failures = 2;
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert!(promoted(&p).is_empty());
    assert_eq!(p.state, ClusterState::Healthy);
}

#[test]
fn never_promote_is_honoured() {
    let mut s = spec(&["a", "b", "c"]);
    s.members[2].never_promote = true;
    let p = run(&a_dead(), &s);
    // c alone holds 0-1-96..98: promoting b would lose them.
    assert_eq!(p.state, ClusterState::Incomplete);
    assert!(promoted(&p).is_empty());
    assert!(warnings(&p).contains("may be promoted"), "{p:?}");

    let mut v = a_dead();
    v.members[1].retrieved = Some(maria("0-1-98"));
    assert_eq!(promoted(&run(&v, &s)), ["b"]);
}

#[test]
fn quarantined_replica_is_never_promoted() {
    let mut h = history();
    h.quarantined.insert("c".into(), "errant".into());
    let p = plan(&a_dead(), &spec(&["a", "b", "c"]), &h);
    assert_eq!(promoted(&p), ["b"]);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Repoint { member, .. } if member == "c"))
    );
}

#[test]
fn replica_that_cannot_apply_is_not_promoted() {
    let mut v = a_dead();
    v.members[2].sql_error = Some(ReplicationError::new(1062, "Duplicate entry"));
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Incomplete);
    assert!(promoted(&p).is_empty());
}

#[test]
fn diverged_candidates_stop_the_failover() {
    let x = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let v = view(
        vec![
            down("a", 3),
            orphan(
                "b",
                "a",
                mysql(&format!("{x}:1-5")),
                mysql(&format!("{x}:1-5:7")),
            ),
            orphan(
                "c",
                "a",
                mysql(&format!("{x}:1-6")),
                mysql(&format!("{x}:1-6")),
            ),
        ],
        Some(topology(Some("a"), &["b", "c"], 5).with(|t| t.flavor = Flavor::Mysql)),
    );
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Incomplete);
    assert!(p.actions.is_empty());
}

#[test]
fn cooldown_blocks_failover() {
    let mut h = history();
    h.last_failover_ms = Some(NOW - 10_000);
    let p = plan(&a_dead(), &spec(&["a", "b", "c"]), &h);
    assert_eq!(p.state, ClusterState::Cooldown);
    assert!(p.actions.is_empty());

    let mut s = spec(&["a", "b", "c"]);
    s.failover_cooldown = Duration::from_secs(5);
    assert_eq!(plan(&a_dead(), &s, &h).state, ClusterState::PrimaryDown);
}

#[test]
fn semi_sync_waits_for_replicas_that_may_hold_acknowledged_writes() {
    let mut v = a_dead();
    v.members.push(down("d", 9));
    let mut s = spec(&["a", "b", "c", "d"]);
    s.semi_sync = Some(SemiSync { acks: 1 });
    let p = run(&v, &s);
    assert_eq!(p.state, ClusterState::Incomplete);
    assert!(warnings(&p).contains("semi-sync"), "{p:?}");

    // MariaDB waits for one acknowledgement whatever the spec says: with one member unread,
    // it may hold the only copy of an acknowledged write.
    s.semi_sync = Some(SemiSync { acks: 2 });
    let p = run(&v, &s);
    assert_eq!(p.state, ClusterState::Incomplete);
    assert!(promoted(&p).is_empty(), "{p:?}");
    // MySQL waits for two, so one more member has each such write.
    v.flavor = Flavor::Mysql;
    assert_eq!(promoted(&run(&v, &s)), ["c"]);
}

#[test]
fn failover_keeps_unreachable_replicas_listed_but_not_the_old_primary() {
    let mut v = a_dead();
    v.members.push(down("d", 9));
    v.published = Some(topology(Some("a"), &["b", "c", "d"], 5));
    let p = run(&v, &spec(&["a", "b", "c", "d"]));
    assert_eq!(
        published(&p).last(),
        Some(&&topology(Some("c"), &["b", "d"], 7))
    );
}

// ---------------------------------------------------------------------------------------------
// Switchover

fn switch_to(target: SwitchoverTarget) -> ClusterSpec {
    let mut s = spec(&["a", "b", "c"]);
    s.switchover = Some(Switchover {
        id: "r1".into(),
        to: target,
    });
    s
}

#[test]
fn switchover_to_a_named_member() {
    let p = run(&healthy(), &switch_to(SwitchoverTarget::Member("c".into())));
    assert_eq!(p.state, ClusterState::Switchover);
    assert_eq!(
        p.actions,
        [
            publish(None, &["b", "c"], 6),
            Action::DrainTransactions {
                member: "a".into(),
                timeout: ClusterSpec::DEFAULT_SWITCHOVER_DRAIN,
            },
            read_only("a"),
            Action::KillClientConnections { member: "a".into() },
            Action::WaitCaughtUp {
                member: "c".into(),
                source: "a".into(),
                timeout: ClusterSpec::DEFAULT_SWITCHOVER_CATCH_UP,
            },
            Action::Promote { member: "c".into() },
            Action::Repoint {
                member: "b".into(),
                source: "c".into()
            },
            // The old primary's writes are in its binary log: it rejoins from there.
            Action::Rejoin {
                member: "a".into(),
                source: "c".into()
            },
            publish(Some("c"), &["a", "b"], 7),
        ]
    );
    assert_eq!(
        p.events,
        [Event::Promoted {
            member: "c".into(),
            previous: Some("a".into()),
            epoch: 7,
            cause: Cause::Switchover {
                request: Some("r1".into())
            },
            position: None,
        }]
    );
    // Every step from the "switching" topology up to the promotion is undone on failure: the
    // fenced old primary gets the role back, with the replicas it had.
    let rollback = p.rollback.expect("a switchover can be rolled back");
    assert_eq!((rollback.from, rollback.until), (0, 5));
    assert!(
        !rollback.covers(5),
        "from the promotion on it only rolls forward"
    );
    assert_eq!(
        rollback.actions,
        [
            Action::SetWritable { member: "a".into() },
            publish(Some("a"), &["b", "c"], 7),
        ]
    );
    assert_eq!(
        rollback.event("c: timed out".into(), true),
        Event::SwitchoverFailed {
            request: Some("r1".into()),
            primary: "a".into(),
            candidate: "c".into(),
            reason: "c: timed out".into(),
            restored: true,
        }
    );
}

#[test]
fn a_failed_switchover_is_recorded_and_not_retried() {
    let s = switch_to(SwitchoverTarget::Member("c".into()));
    let p = run(&healthy(), &s);
    let mut h = history();
    h.record(&p.rollback.unwrap().event("c: timed out".into(), true));
    assert_eq!(h.failed_switchover.as_deref(), Some("r1"));
    let again = plan(&healthy(), &s, &h);
    assert_eq!(again.state, ClusterState::Healthy);
    assert!(again.rollback.is_none());
    // A new request asks again.
    let mut s2 = s.clone();
    s2.switchover.as_mut().unwrap().id = "r2".into();
    assert_eq!(promoted(&plan(&healthy(), &s2, &h)), ["c"]);
}

#[test]
fn repairs_before_a_switchover_fail_without_rolling_it_back() {
    // A stray writer is fenced before the switchover's steps: its failure changed nothing the
    // proxies see, so the rollback does not cover it.
    let mut v = healthy();
    v.members[2].read_only = Some(false);
    let p = run(&v, &switch_to(SwitchoverTarget::Member("b".into())));
    let rollback = p.rollback.expect("rollback");
    assert!(rollback.from > 0, "{:#?}", p.actions);
    assert!(!rollback.covers(0));
    assert!(matches!(
        p.actions[rollback.from],
        Action::PublishTopology { .. }
    ));
}

#[test]
fn switchover_to_the_best_member() {
    let mut v = healthy();
    v.members[1] = replica("b", "a", maria("0-1-80"));
    // Equal priority: the least behind wins.
    assert_eq!(
        promoted(&run(&v, &switch_to(SwitchoverTarget::Best))),
        ["c"]
    );
    // Priority first: a replica that is behind can catch up.
    let mut s = switch_to(SwitchoverTarget::Best);
    s.members[1].promotion_priority = 1;
    assert_eq!(promoted(&run(&v, &s)), ["b"]);
}

#[test]
fn switchover_ignores_the_cooldown() {
    let mut h = history();
    h.last_failover_ms = Some(NOW - 1);
    let p = plan(&healthy(), &switch_to(SwitchoverTarget::Best), &h);
    assert_eq!(promoted(&p), ["b"]);
}

#[test]
fn a_primary_asked_to_hand_over_switches_to_the_best_replica_without_a_request() {
    let mut s = spec(&["a", "b", "c"]);
    s.hand_over = Some("a".into());
    // A user's request carried out before stays carried out.
    let mut h = history();
    h.completed_switchover = Some("r1".into());
    s.switchover = Some(Switchover {
        id: "r1".into(),
        to: SwitchoverTarget::Member("a".into()),
    });
    let p = plan(&healthy(), &s, &h);
    assert_eq!(p.state, ClusterState::Switchover);
    assert_eq!(promoted(&p), ["b"]);
    let mut after = h.clone();
    for event in &p.events {
        after.record(event);
    }
    assert_eq!(after.completed_switchover.as_deref(), Some("r1"));
    // Asked of a replica, it is nothing.
    s.hand_over = Some("b".into());
    assert_eq!(plan(&healthy(), &s, &h).state, ClusterState::Healthy);
}

#[test]
fn completed_switchover_is_not_repeated() {
    let mut h = history();
    h.completed_switchover = Some("r1".into());
    let p = plan(&healthy(), &switch_to(SwitchoverTarget::Best), &h);
    assert_eq!(p.state, ClusterState::Healthy);
    let p = run(&healthy(), &switch_to(SwitchoverTarget::Member("a".into())));
    assert_eq!(p.state, ClusterState::Healthy);
}

#[test]
fn switchover_to_an_ineligible_member_is_refused() {
    let mut s = switch_to(SwitchoverTarget::Member("c".into()));
    s.members[2].never_promote = true;
    let p = run(&healthy(), &s);
    assert_eq!(p.state, ClusterState::Degraded);
    assert!(p.actions.is_empty());
    assert!(warnings(&p).contains("refused"), "{p:?}");

    let mut v = healthy();
    v.members[2] = down("c", 1);
    let p = run(&v, &switch_to(SwitchoverTarget::Member("c".into())));
    assert!(promoted(&p).is_empty());
}

#[test]
fn a_refused_switchover_request_is_reported_as_such() {
    let mut s = switch_to(SwitchoverTarget::Member("c".into()));
    s.members[2].never_promote = true;
    let p = run(&healthy(), &s);
    let refused: Vec<&Event> = p
        .events
        .iter()
        .filter(|e| matches!(e, Event::SwitchoverRefused { .. }))
        .collect();
    assert_eq!(
        refused,
        [&Event::SwitchoverRefused {
            request: Some("r1".into()),
            reason: "switchover to c refused: it is not a healthy, promotable replica of a".into(),
        }]
    );
    // Read as the warning it replaces in logs and status displays.
    assert_eq!(
        refused[0].to_string(),
        "warning: switchover to c refused: it is not a healthy, promotable replica of a"
    );

    // No eligible replica at all.
    let mut v = healthy();
    v.members[1] = down("b", 1);
    v.members[2] = down("c", 1);
    let p = run(&v, &switch_to(SwitchoverTarget::Best));
    assert!(
        p.events.iter().any(|e| matches!(
            e,
            Event::SwitchoverRefused { request: Some(r), reason }
                if r == "r1" && reason == "switchover from a refused: no eligible replica"
        )),
        "{p:?}"
    );
    // A refusal changes nothing the history remembers: the request stands.
    let mut h = history();
    for event in &p.events {
        h.record(event);
    }
    assert_eq!(h.failed_switchover, None);
    assert_eq!(h.completed_switchover, None);
}

#[test]
fn recording_events_updates_the_history() {
    let mut h = history();
    for event in run(&a_dead(), &spec(&["a", "b", "c"])).events {
        h.record(&event);
    }
    assert_eq!(h.last_failover_ms, Some(NOW));
    assert_eq!(h.last_promotion.as_ref().map(|p| p.to.as_str()), Some("c"));
    for event in run(&healthy(), &switch_to(SwitchoverTarget::Best)).events {
        h.record(&event);
    }
    assert_eq!(h.completed_switchover.as_deref(), Some("r1"));
    h.record(&Event::Quarantined {
        member: "b".into(),
        reason: "errant".into(),
    });
    assert!(h.quarantined.contains_key("b"));
}

// ---------------------------------------------------------------------------------------------
// Scale-down

#[test]
fn scale_down_removes_a_replica_after_unpublishing_it() {
    let p = run(&healthy(), &spec(&["a", "b"]));
    assert_eq!(
        p.actions,
        [
            publish(Some("a"), &["b"], 6),
            Action::Decommission { member: "c".into() },
        ]
    );
}

#[test]
fn scale_down_of_the_primary_switches_over_first() {
    let p = run(&healthy(), &spec(&["b", "c"]));
    assert_eq!(p.state, ClusterState::Switchover);
    assert_eq!(promoted(&p), ["b"]);
    let decommission = p
        .actions
        .iter()
        .position(|a| *a == Action::Decommission { member: "a".into() });
    let last_publish = p
        .actions
        .iter()
        .rposition(|a| matches!(a, Action::PublishTopology { .. }));
    assert!(decommission > last_publish, "{p:?}");
    assert_eq!(published(&p).last(), Some(&&topology(Some("b"), &["c"], 7)));
}

// ---------------------------------------------------------------------------------------------
// Bootstrap and recovery

fn empty(name: &str) -> MemberView {
    MemberView {
        probe: Probe::Ok,
        read_only: Some(true),
        executed: Some(maria("")),
        retrieved: Some(maria("")),
        ..MemberView::unobserved(name, name, PORT)
    }
}

#[test]
fn bootstrap_from_empty_servers() {
    let v = view(vec![empty("c"), empty("a"), empty("b")], None);
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Bootstrapping);
    assert_eq!(
        p.actions,
        [
            Action::Bootstrap {
                primary: "a".into(),
                replicas: vec!["b".into(), "c".into()]
            },
            Action::SetWritable { member: "a".into() },
            publish(Some("a"), &["b", "c"], 1),
        ]
    );
    // With semi-sync wanted, it is on before the primary is writable.
    let s = spec(&["a", "b", "c"]).with(|s| s.semi_sync = Some(SemiSync { acks: 1 }));
    assert_eq!(
        run(&v, &s).actions[1..3],
        [
            Action::EnsureSemiSync {
                primary: "a".into(),
                replicas: vec!["b".into(), "c".into()]
            },
            Action::SetWritable { member: "a".into() },
        ]
    );
}

#[test]
fn bootstrap_honours_priority_and_never_promote() {
    let v = view(vec![empty("a"), empty("b"), empty("c")], None);
    let mut s = spec(&["a", "b", "c"]);
    s.members[0].never_promote = true;
    s.members[2].promotion_priority = 5;
    let p = run(&v, &s);
    assert_eq!(
        p.actions.first(),
        Some(&Action::Bootstrap {
            primary: "c".into(),
            replicas: vec!["a".into(), "b".into()]
        })
    );
}

#[test]
fn bootstrap_waits_for_every_member() {
    let v = view(vec![empty("a"), empty("b"), down("c", 20)], None);
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Bootstrapping);
    assert!(p.actions.is_empty());
    assert!(warnings(&p).contains('c'), "{p:?}");
}

#[test]
fn existing_cluster_is_adopted() {
    let mut v = healthy();
    v.published = None;
    v.members[2] = replica("c", "b", maria("0-1-100"));
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Recovering);
    assert_eq!(
        p.actions,
        [
            Action::Repoint {
                member: "c".into(),
                source: "a".into()
            },
            publish(Some("a"), &["b", "c"], 1),
        ]
    );
}

#[test]
fn interrupted_switch_completes_with_the_promoted_member() {
    let v = view(
        vec![
            down("a", 4),
            replica("b", "a", maria("0-1-98")).with(|m| m.io_running = Some(false)),
            primary("c", maria("0-1-98")),
        ],
        Some(topology(None, &["b", "c"], 6)),
    );
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(
        p.actions,
        [
            Action::Repoint {
                member: "b".into(),
                source: "c".into()
            },
            publish(Some("c"), &["b"], 7),
        ]
    );
}

#[test]
fn interrupted_switch_before_promotion_elects() {
    let v = view(
        vec![
            down("a", 4),
            orphan("b", "a", maria("0-1-90"), maria("0-1-95")),
            orphan("c", "a", maria("0-1-90"), maria("0-1-98")),
        ],
        Some(topology(None, &["b", "c"], 6)),
    );
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Recovering);
    assert_eq!(promoted(&p), ["c"]);
    assert_eq!(published(&p), [&topology(Some("c"), &["b"], 7)]);
}

#[test]
fn a_restarted_former_primary_is_elected_without_waiting_for_a_relay_log() {
    // a was primary, died mid-switchover and came back read-only with no source: it holds
    // the most, and has no relay log to apply (its SQL thread cannot even start).
    let mut a = primary("a", maria("0-1-100"));
    a.read_only = Some(true);
    let v = view(
        vec![
            a,
            orphan("b", "a", maria("0-1-98"), maria("0-1-99")),
            orphan("c", "a", maria("0-1-97"), maria("0-1-99")),
        ],
        Some(topology(None, &["b", "c"], 6)),
    );
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(promoted(&p), ["a"]);
    assert!(
        !p.actions
            .iter()
            .any(|x| matches!(x, Action::WaitRelayApplied { member, .. } if member == "a")),
        "{p:?}"
    );
}

#[test]
fn election_waits_for_members_that_may_still_answer() {
    let v = view(
        vec![
            down("a", 1),
            orphan("b", "a", maria("0-1-90"), maria("0-1-95")),
        ],
        Some(topology(None, &["b"], 6)),
    );
    let p = run(&v, &spec(&["a", "b"]));
    assert_eq!(p.state, ClusterState::Incomplete);
    assert!(p.actions.is_empty());
}

#[test]
fn several_writers_without_a_primary_are_all_fenced() {
    let v = view(
        vec![primary("a", maria("0-1-5")), primary("b", maria("0-2-5"))],
        Some(topology(None, &[], 3)),
    );
    let p = run(&v, &spec(&["a", "b"]));
    assert_eq!(p.state, ClusterState::Incomplete);
    assert_eq!(p.actions, [read_only("a"), read_only("b")]);
}

// ---------------------------------------------------------------------------------------------
// Seeding

fn seeding(names: &[&str]) -> ClusterSpec {
    spec(names).with(|s| s.seeding = true)
}

/// `healthy()` plus an empty member d.
fn with_empty_d() -> ClusterView {
    healthy().with(|v| v.members.push(empty("d")))
}

fn seed(member: &str, donor: &str) -> Action {
    Action::Seed {
        member: member.into(),
        donor: donor.into(),
        source: "a".into(),
    }
}

fn seeds(plan: &Plan) -> Vec<&Action> {
    plan.actions
        .iter()
        .filter(|a| matches!(a, Action::Seed { .. }))
        .collect()
}

#[test]
fn empty_member_is_seeded_from_the_replica_least_behind() {
    let mut v = with_empty_d();
    v.members[1] = replica("b", "a", maria("0-1-90"));
    let p = run(&v, &seeding(&["a", "b", "c", "d"]));
    assert_eq!(p.state, ClusterState::Degraded);
    assert_eq!(p.actions, [seed("d", "c")]);
    assert_eq!(
        p.events,
        [Event::Seeded {
            member: "d".into(),
            donor: "c".into()
        }]
    );
    // Equally caught up: by name.
    let p = run(&with_empty_d(), &seeding(&["a", "b", "c", "d"]));
    assert_eq!(p.actions, [seed("d", "b")]);
}

#[test]
fn a_seed_comes_after_every_other_action() {
    // "c" is scaled away while "d" waits for its copy: the topology change and the
    // decommission must not wait for a slow copy, or fail with it.
    let p = run(&with_empty_d(), &seeding(&["a", "b", "d"]));
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::Decommission { member } if member == "c")),
        "{:?}",
        p.actions
    );
    assert!(
        matches!(p.actions.last(), Some(Action::Seed { .. })),
        "{:?}",
        p.actions
    );
    assert_eq!(seeds(&p).len(), 1);
}

#[test]
fn primary_is_the_donor_when_no_replica_is_healthy() {
    let mut v = with_empty_d();
    v.members[1].io_running = Some(false);
    v.members[2].sql_error = Some(ReplicationError::new(1062, "Duplicate entry"));
    let p = run(&v, &seeding(&["a", "b", "c", "d"]));
    assert_eq!(seeds(&p), [&seed("d", "a")]);

    // Quarantined replicas and members outside the spec never give their data.
    let mut h = history();
    h.quarantined.insert("b".into(), "errant".into());
    let p = plan(&with_empty_d(), &seeding(&["a", "b", "d"]), &h);
    assert_eq!(seeds(&p), [&seed("d", "a")]);
}

#[test]
fn without_seeding_an_empty_member_rejoins() {
    let p = run(&with_empty_d(), &spec(&["a", "b", "c", "d"]));
    assert_eq!(
        p.actions,
        [Action::Rejoin {
            member: "d".into(),
            source: "a".into()
        }]
    );
}

#[test]
fn nothing_to_copy_from_an_empty_primary_means_rejoin() {
    let v = view(
        vec![primary("a", maria("")), empty("b")],
        Some(topology(Some("a"), &[], 1)),
    );
    let p = run(&v, &seeding(&["a", "b"]));
    assert_eq!(
        p.actions,
        [Action::Rejoin {
            member: "b".into(),
            source: "a".into()
        }]
    );
}

/// d points at a, which refuses its empty position (the binary logs it needs were purged).
fn refused_empty_d() -> ClusterView {
    healthy().with(|v| {
        v.members.push(replica("d", "a", maria("")).with(|m| {
            m.io_running = Some(false);
            m.io_error = Some(ReplicationError::new(
                1236,
                "Could not find GTID state requested by slave in any binlog files",
            ));
        }));
        v.published = Some(topology(Some("a"), &["b", "c"], 5));
    })
}

#[test]
fn empty_member_refused_its_position_is_seeded_not_quarantined() {
    let p = run(&refused_empty_d(), &seeding(&["a", "b", "c", "d"]));
    assert!(quarantined(&p).is_empty(), "{p:?}");
    assert_eq!(p.actions, [seed("d", "b")]);
    // Without seeding nothing but a re-seed by hand helps: quarantine, as before.
    let p = run(&refused_empty_d(), &spec(&["a", "b", "c", "d"]));
    assert_eq!(quarantined(&p), ["d"]);
}

#[test]
fn member_with_data_refused_its_position_is_still_quarantined() {
    let mut v = healthy();
    v.members[1].io_running = Some(false);
    v.members[1].io_error = Some(ReplicationError::new(1236, "not in the master's binlog"));
    let p = run(&v, &seeding(&["a", "b", "c"]));
    assert_eq!(quarantined(&p), ["b"]);
    assert!(seeds(&p).is_empty(), "{p:?}");
}

#[test]
fn member_awaiting_a_copy_is_not_published() {
    // d already points at the primary, so only its emptiness keeps it out of the topology.
    let p = run(&refused_empty_d(), &seeding(&["a", "b", "c", "d"]));
    assert!(published(&p).is_empty(), "{p:?}");
    let mut v = refused_empty_d();
    v.published = Some(topology(Some("a"), &["b"], 5));
    let p = run(&v, &seeding(&["a", "b", "c", "d"]));
    assert_eq!(published(&p), [&topology(Some("a"), &["b", "c"], 6)]);
}

#[test]
fn one_seed_per_tick() {
    let mut v = with_empty_d();
    v.members.push(empty("e"));
    let s = seeding(&["a", "b", "c", "d", "e"]);
    let p = run(&v, &s);
    assert_eq!(p.actions, [seed("d", "b")]);
    // Once d replicates, e's turn.
    v.members[3] = replica("d", "a", maria("0-1-100"));
    v.published = Some(topology(Some("a"), &["b", "c", "d"], 6));
    let p = run(&v, &s);
    assert_eq!(p.actions, [seed("e", "b")]);
}

#[test]
fn quarantined_empty_member_is_not_seeded_by_the_plan() {
    let mut h = history();
    h.quarantined.insert("d".into(), "errant".into());
    let p = plan(&with_empty_d(), &seeding(&["a", "b", "c", "d"]), &h);
    assert!(seeds(&p).is_empty(), "{p:?}");
}

#[test]
fn recorded_seeding_lifts_the_quarantine() {
    let mut h = history();
    h.quarantined.insert("d".into(), "errant".into());
    h.quarantined.insert("e".into(), "errant".into());
    h.record(&Event::Seeded {
        member: "d".into(),
        donor: "b".into(),
    });
    assert_eq!(h.quarantined.keys().collect::<Vec<_>>(), ["e"]);
}

// ---------------------------------------------------------------------------------------------
// Semi-sync drift

fn semi(source_enabled: bool, replica_enabled: bool) -> Option<SemiSyncState> {
    Some(SemiSyncState {
        source_enabled,
        replica_enabled,
    })
}

/// `healthy()` with semi-sync on everywhere, as publishing left it.
fn semi_sync_healthy() -> ClusterView {
    healthy().with(|v| {
        v.members[0].semi_sync = semi(true, false);
        v.members[1].semi_sync = semi(false, true);
        v.members[2].semi_sync = semi(false, true);
    })
}

fn semi_sync_spec() -> ClusterSpec {
    spec(&["a", "b", "c"]).with(|s| s.semi_sync = Some(SemiSync { acks: 1 }))
}

#[test]
fn healthy_semi_sync_cluster_needs_nothing() {
    let p = run(&semi_sync_healthy(), &semi_sync_spec());
    assert_eq!(p.state, ClusterState::Healthy);
    assert!(p.actions.is_empty() && p.events.is_empty(), "{p:?}");
    // Not observed (plugin not loaded): nothing to say either.
    let p = run(&healthy(), &semi_sync_spec());
    assert_eq!(p.state, ClusterState::Healthy, "{p:?}");
}

#[test]
fn semi_sync_drift_is_repaired() {
    let mut v = semi_sync_healthy();
    v.members[2].semi_sync = semi(false, false);
    let p = run(&v, &semi_sync_spec());
    assert_eq!(p.state, ClusterState::Degraded);
    assert_eq!(
        p.actions,
        [Action::EnsureSemiSync {
            primary: "a".into(),
            replicas: vec!["c".into()]
        }]
    );
    let mut v = semi_sync_healthy();
    v.members[0].semi_sync = semi(false, false);
    assert_eq!(
        run(&v, &semi_sync_spec()).actions,
        [Action::EnsureSemiSync {
            primary: "a".into(),
            replicas: vec![]
        }]
    );
}

#[test]
fn a_demoted_primary_stops_waiting_for_acknowledgements() {
    // With semi-sync wanted or not, a replica that still has the primary's side on would
    // stall its own replication.
    for spec in [semi_sync_spec(), spec(&["a", "b", "c"])] {
        let mut v = semi_sync_healthy();
        v.members[1].semi_sync = semi(true, true);
        if spec.semi_sync.is_none() {
            v.members[0].semi_sync = semi(false, false);
        }
        let p = run(&v, &spec);
        assert_eq!(p.state, ClusterState::Degraded);
        assert_eq!(
            p.actions,
            [
                kill_clients("b"),
                Action::DisableSemiSync { member: "b".into() }
            ],
            "{spec:?}"
        );
    }
}

#[test]
fn semi_sync_drift_is_repaired_by_the_set_up_before_a_publish() {
    let mut v = semi_sync_healthy();
    v.members[2].semi_sync = semi(false, false);
    v.published = Some(topology(Some("a"), &["b"], 5));
    let p = run(&v, &semi_sync_spec());
    assert_eq!(
        p.actions,
        [
            Action::EnsureSemiSync {
                primary: "a".into(),
                replicas: vec!["b".into(), "c".into()],
            },
            publish(Some("a"), &["b", "c"], 6)
        ]
    );
}

#[test]
fn semi_sync_set_up_is_inserted_once_and_the_rollback_follows_its_actions() {
    let ensure = |p: &str| Action::EnsureSemiSync {
        primary: p.into(),
        replicas: vec!["b".into()],
    };
    let actions = vec![
        kill_clients("a"),
        ensure("b"),
        Action::SetWritable { member: "b".into() },
        publish(Some("b"), &["b"], 2),
        Action::SetWritable { member: "c".into() },
        publish(Some("c"), &["b"], 3),
        publish(None, &["b"], 4),
    ];
    let (out, moved) = with_semi_sync(actions);
    assert_eq!(
        out,
        [
            kill_clients("a"),
            ensure("b"),
            Action::SetWritable { member: "b".into() },
            publish(Some("b"), &["b"], 2),
            Action::SetWritable { member: "c".into() },
            ensure("c"),
            publish(Some("c"), &["b"], 3),
            publish(None, &["b"], 4),
        ],
        "set up once before each publication with a primary (not again when done since the \
         previous publication), none without one"
    );
    // Each old index points at its group's first action (a set-up inserted before its
    // publication); past the end stays past the end.
    assert_eq!(
        (0..=7).map(&moved).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5, 7, 8]
    );
}

#[test]
fn semi_sync_off_in_the_spec_turns_the_primary_off() {
    let p = run(&semi_sync_healthy(), &spec(&["a", "b", "c"]));
    assert_eq!(p.actions, [Action::DisableSemiSync { member: "a".into() }]);
    // Replicas acknowledging do no harm.
    let mut v = semi_sync_healthy();
    v.members[0].semi_sync = semi(false, false);
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(p.state, ClusterState::Healthy, "{p:?}");
}

// ---------------------------------------------------------------------------------------------
// Event lines

#[test]
fn events_read_as_one_line_each() {
    let lines: Vec<String> = [
        Event::Promoted {
            member: "db-1".into(),
            previous: Some("db-0".into()),
            epoch: 5,
            cause: Cause::Failover,
            position: None,
        },
        Event::Promoted {
            member: "db-2".into(),
            previous: None,
            epoch: 6,
            cause: Cause::Recovery,
            position: None,
        },
        Event::Seeded {
            member: "db-3".into(),
            donor: "db-1".into(),
        },
        Event::Quarantined {
            member: "db-2".into(),
            reason: "errant".into(),
        },
        Event::Bootstrapped {
            primary: "db-0".into(),
            epoch: 1,
        },
        Event::Warning {
            message: "look".into(),
        },
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        lines,
        [
            "db-1 promoted (failover from db-0), epoch 5",
            "db-2 promoted (recovery), epoch 6",
            "db-3 seeded from db-1",
            "db-2 quarantined: errant",
            "bootstrapped with primary db-0, epoch 1",
            "warning: look",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Paused

fn paused(mut spec: ClusterSpec) -> ClusterSpec {
    spec.paused = true;
    spec
}

#[test]
fn a_paused_cluster_does_not_fail_over_and_says_so() {
    let p = run(&a_dead(), &paused(spec(&["a", "b", "c"])));
    assert_eq!(p.state, ClusterState::PrimaryDown);
    assert!(p.actions.is_empty() && p.rollback.is_none(), "{p:?}");
    assert!(
        !p.events.iter().any(|e| matches!(e, Event::Promoted { .. })),
        "{p:?}"
    );
    assert_eq!(
        warnings(&p),
        "orchestration is paused; held until it is resumed: a failover (PublishTopology, \
         FenceReplicas, FencePrimary on a, WaitRelayApplied on c, Promote on c, Repoint on b, \
         PublishTopology)"
    );
    // Resumed, the same observation fails over.
    assert_eq!(promoted(&run(&a_dead(), &spec(&["a", "b", "c"]))), ["c"]);
}

#[test]
fn a_paused_cluster_holds_a_switchover_request() {
    let p = run(
        &healthy(),
        &paused(switch_to(SwitchoverTarget::Member("c".into()))),
    );
    assert_eq!(p.state, ClusterState::Switchover);
    assert!(p.actions.is_empty(), "{p:?}");
    assert!(
        warnings(&p).starts_with("orchestration is paused; held until it is resumed: a switchover"),
        "{p:?}"
    );
    // A request that would be refused is not refused while paused: it is judged once resumed.
    let mut s = paused(switch_to(SwitchoverTarget::Member("c".into())));
    s.members[2].never_promote = true;
    let p = run(&healthy(), &s);
    assert!(
        !p.events
            .iter()
            .any(|e| matches!(e, Event::SwitchoverRefused { .. })),
        "{p:?}"
    );
}

#[test]
fn a_paused_cluster_gets_no_repairs_but_keeps_its_warnings() {
    let mut v = healthy();
    v.members[1].sql_running = Some(false);
    let p = run(&v, &paused(spec(&["a", "b", "c"])));
    assert!(p.actions.is_empty(), "{p:?}");
    assert!(
        warnings(&p).ends_with("held until it is resumed: repairs (RestartReplication on b)"),
        "{p:?}"
    );
    // Healthy and paused: nothing to say.
    let p = run(&healthy(), &paused(spec(&["a", "b", "c"])));
    assert_eq!(p.state, ClusterState::Healthy);
    assert!(p.actions.is_empty() && p.events.is_empty(), "{p:?}");
}

#[test]
fn a_paused_failover_is_reported_in_the_same_words_while_it_waits() {
    // Positions move between ticks; the warning, logged once while it lasts, must not.
    let first = warnings(&run(&a_dead(), &paused(spec(&["a", "b", "c"]))));
    let mut later = a_dead();
    later.members[2] = orphan("c", "a", maria("0-1-97"), maria("0-1-98"));
    assert_eq!(
        warnings(&run(&later, &paused(spec(&["a", "b", "c"])))),
        first
    );
}

// ---------------------------------------------------------------------------------------------
// Cordoned

fn cordoned(mut spec: ClusterSpec, names: &[&str]) -> ClusterSpec {
    spec.cordoned = names.iter().map(|n| (*n).to_owned()).collect();
    spec
}

fn weights(t: &Topology) -> Vec<(&str, u32)> {
    t.replicas
        .iter()
        .map(|r| (r.name.as_str(), r.weight))
        .collect()
}

#[test]
fn a_cordoned_replica_is_published_with_weight_0_and_back() {
    let p = run(&healthy(), &cordoned(spec(&["a", "b", "c"]), &["b"]));
    let [t] = published(&p)[..] else {
        panic!("one topology expected: {p:?}")
    };
    assert_eq!(t.epoch, 6);
    assert_eq!(weights(t), [("b", 0), ("c", 100)]);
    assert_eq!(t.readable_replicas().count(), 1);
    // Nothing else changes: b keeps replicating, no repair, no role change.
    assert_eq!(p.actions.len(), 1, "{p:?}");

    // Published so, nothing more to do; uncordoned, it is published with its weight again.
    let mut v = healthy();
    v.published = Some(t.clone());
    assert!(
        run(&v, &cordoned(spec(&["a", "b", "c"]), &["b"]))
            .actions
            .is_empty()
    );
    let back = run(&v, &spec(&["a", "b", "c"]));
    let [t] = published(&back)[..] else {
        panic!("one topology expected: {back:?}")
    };
    assert_eq!(weights(t), [("b", 100), ("c", 100)]);
    assert_eq!(t.epoch, 7);
}

#[test]
fn a_cordoned_primary_is_unaffected_until_it_is_a_replica() {
    // Nothing to publish for a cordoned primary.
    let p = run(&healthy(), &cordoned(spec(&["a", "b", "c"]), &["a"]));
    assert!(p.actions.is_empty(), "{p:?}");
    // Switched away from, it is published as a replica with weight 0.
    let s = cordoned(switch_to(SwitchoverTarget::Member("c".into())), &["a"]);
    let p = run(&healthy(), &s);
    let last = published(&p).pop().expect("a topology");
    assert_eq!(last.primary.as_ref().map(|m| m.name.as_str()), Some("c"));
    assert_eq!(weights(last), [("a", 0), ("b", 100)]);
}

#[test]
fn the_candidate_preference_puts_cordoned_members_last() {
    use super::preference;
    assert!(preference(false, -1000) > preference(true, 1000));
    assert!(preference(false, 2) > preference(false, 1));
    assert!(preference(true, 2) > preference(true, 1));
    assert_eq!(super::read_weight(true), 0);
    assert_eq!(super::read_weight(false), 100);
}

#[test]
fn failover_prefers_a_fit_member_that_is_not_cordoned() {
    // b and c hold the same: c wins by name alone, b when c is cordoned.
    let mut v = a_dead();
    v.members[1] = orphan("b", "a", maria("0-1-90"), maria("0-1-98"));
    assert_eq!(promoted(&run(&v, &spec(&["a", "b", "c"]))), ["b"]);
    assert_eq!(
        promoted(&run(&v, &cordoned(spec(&["a", "b", "c"]), &["b"]))),
        ["c"]
    );
    // Priority does not beat the cordon.
    let mut s = cordoned(spec(&["a", "b", "c"]), &["b"]);
    s.members[1].promotion_priority = 10;
    assert_eq!(promoted(&run(&v, &s)), ["c"]);
    // Only the cordoned member holds everything: it is promoted, not the cluster left
    // without a primary; and its replacement topology lists the others with their weight.
    let p = run(&a_dead(), &cordoned(spec(&["a", "b", "c"]), &["c"]));
    assert_eq!(promoted(&p), ["c"]);
    let last = published(&p).pop().expect("a topology");
    assert_eq!(weights(last), [("b", 100)]);
}

#[test]
fn switchover_to_the_best_member_skips_a_cordoned_one() {
    let s = cordoned(switch_to(SwitchoverTarget::Best), &["b"]);
    assert_eq!(promoted(&run(&healthy(), &s)), ["c"]);
    let s = cordoned(switch_to(SwitchoverTarget::Best), &["b", "c"]);
    assert_eq!(promoted(&run(&healthy(), &s)), ["b"]);
    // Asked for by name, a cordoned member is promoted as asked.
    let s = cordoned(switch_to(SwitchoverTarget::Member("b".into())), &["b"]);
    assert_eq!(promoted(&run(&healthy(), &s)), ["b"]);
}

// ---------------------------------------------------------------------------------------------
// Read-only cluster

fn read_only_spec(mut spec: ClusterSpec) -> ClusterSpec {
    spec.read_only = true;
    spec
}

#[test]
fn turning_read_only_publishes_it_then_sets_the_primary_read_only() {
    let p = run(&healthy(), &read_only_spec(spec(&["a", "b", "c"])));
    let mut wanted = topology(Some("a"), &["b", "c"], 6);
    wanted.read_only = true;
    assert_eq!(
        p.actions,
        [
            Action::PublishTopology {
                topology: wanted.clone()
            },
            read_only("a"),
        ]
    );
    // Done: nothing more, and a read-only primary is not made writable.
    let mut v = healthy();
    v.published = Some(wanted);
    v.members[0].read_only = Some(true);
    let p = run(&v, &read_only_spec(spec(&["a", "b", "c"])));
    assert!(p.actions.is_empty(), "{p:?}");
    assert_eq!(p.state, ClusterState::Healthy);
    // Off: writable first, then the topology says so.
    let p = run(&v, &spec(&["a", "b", "c"]));
    assert_eq!(
        p.actions,
        [
            Action::SetWritable { member: "a".into() },
            publish(Some("a"), &["b", "c"], 7),
        ]
    );
}

#[test]
fn a_new_primary_of_a_read_only_cluster_is_read_only_before_it_is_published() {
    let check = |p: &Plan| {
        let promoted_at = p
            .actions
            .iter()
            .position(|a| matches!(a, Action::Promote { .. }))
            .expect("a promotion");
        let Action::Promote { member } = &p.actions[promoted_at] else {
            unreachable!()
        };
        assert_eq!(p.actions[promoted_at + 1], read_only(member), "{p:?}");
        let last = published(p).pop().expect("a topology");
        assert!(last.read_only && last.primary.is_some(), "{last:?}");
    };
    check(&run(&a_dead(), &read_only_spec(spec(&["a", "b", "c"]))));
    let p = run(
        &healthy(),
        &read_only_spec(switch_to(SwitchoverTarget::Member("c".into()))),
    );
    check(&p);
    // A switchover given back leaves the old primary read-only too.
    let back = &p.rollback.as_ref().expect("a rollback").actions;
    assert_eq!(
        back[..2],
        [Action::SetWritable { member: "a".into() }, read_only("a")]
    );
    // Without the switch nothing is added.
    let p = run(&a_dead(), &spec(&["a", "b", "c"]));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::SetReadOnly { .. })),
        "{p:?}"
    );
}
