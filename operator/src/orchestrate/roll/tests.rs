use super::*;
use lagless_core::topology::Flavor;

fn gtid(text: &str) -> Option<GtidSet> {
    Some(GtidSet::parse(Flavor::Mariadb, text).unwrap())
}

fn member(name: &str, role: Role, current: bool) -> RollMember {
    RollMember {
        name: name.into(),
        role,
        current,
        in_reads: role == Role::Replica,
        reachable: true,
        replicating: role == Role::Replica,
        executed: gtid("10-1-100"),
        promotable: true,
    }
}

/// s-0 primary, s-1 and s-2 replicas; `current` says which run the new configuration.
fn cluster(current: [bool; 3]) -> Vec<RollMember> {
    vec![
        member("s-0", Role::Primary, current[0]),
        member("s-1", Role::Replica, current[1]),
        member("s-2", Role::Replica, current[2]),
    ]
}

fn view<'a>(members: &'a [RollMember], rolling: Option<&'a Rolling>) -> RollView<'a> {
    RollView {
        members,
        paused: false,
        healthy: true,
        switching: false,
        rolling,
        proxies_drained: None,
        now_ms: 10_000,
    }
}

fn rolling(member: &str, phase: Phase, since_ms: u64) -> Rolling {
    Rolling {
        member: member.into(),
        phase,
        since_ms,
        catch_up_to: gtid("10-1-100"),
    }
}

#[test]
fn replicas_roll_first_from_the_highest_ordinal_then_the_primary_is_switched_over() {
    let all_old = cluster([false, false, false]);
    assert_eq!(next(&view(&all_old, None)), Step::Drain("s-2".into()));
    let one_done = cluster([false, false, true]);
    assert_eq!(next(&view(&one_done, None)), Step::Drain("s-1".into()));
    let replicas_done = cluster([false, true, true]);
    assert_eq!(
        next(&view(&replicas_done, None)),
        Step::Switchover { from: "s-0".into() }
    );
    // After the switchover the old primary is a replica like any other.
    let mut switched = cluster([false, true, true]);
    switched[0].role = Role::Replica;
    switched[1].role = Role::Primary;
    assert_eq!(next(&view(&switched, None)), Step::Drain("s-0".into()));
    assert_eq!(next(&view(&cluster([true; 3]), None)), Step::Done);
}

#[test]
fn a_member_is_drained_restarted_and_readmitted_once_caught_up() {
    let mut members = cluster([false, false, false]);
    // Still published for reads: drain again, so the drain time counts from when it is not.
    let draining = rolling("s-2", Phase::Draining, 9_900);
    assert_eq!(
        next(&view(&members, Some(&draining))),
        Step::Drain("s-2".into())
    );
    members[2].in_reads = false;
    let at = |now_ms| RollView {
        now_ms,
        ..view(&members, Some(&draining))
    };
    assert!(matches!(next(&at(9_900 + 1_000)), Step::Wait(w) if w.contains("reads on s-2")));
    assert_eq!(next(&at(9_900 + 1_500)), Step::Restart("s-2".into()));
    // Proxies that can be asked: restarted as soon as none runs a statement on it, else
    // waited for, up to a limit.
    let asked = |drained, now_ms| RollView {
        proxies_drained: Some(drained),
        ..at(now_ms)
    };
    assert!(matches!(next(&asked(true, 9_950)), Step::Wait(_)));
    assert_eq!(next(&asked(true, 9_900 + 500)), Step::Restart("s-2".into()));
    assert!(
        matches!(next(&asked(false, 9_900 + 29_000)), Step::Wait(w) if w.contains("statements on s-2"))
    );
    assert_eq!(
        next(&asked(false, 9_900 + 30_000)),
        Step::Restart("s-2".into())
    );

    let restarting = rolling("s-2", Phase::Restarting, 10_000);
    assert!(matches!(
        next(&view(&members, Some(&restarting))),
        Step::Wait(_)
    ));

    // Back, but not replicating yet, then replicating but short of the primary's position.
    let catching = rolling("s-2", Phase::CatchingUp, 10_000);
    members[2].current = true;
    members[2].replicating = false;
    assert!(
        matches!(next(&view(&members, Some(&catching))), Step::Wait(w) if w.contains("catching up"))
    );
    members[2].replicating = true;
    members[2].executed = gtid("10-1-99");
    assert!(matches!(
        next(&view(&members, Some(&catching))),
        Step::Wait(_)
    ));
    members[2].reachable = false;
    members[2].executed = gtid("10-1-120");
    assert!(matches!(
        next(&view(&members, Some(&catching))),
        Step::Wait(_)
    ));
    members[2].reachable = true;
    assert_eq!(
        next(&view(&members, Some(&catching))),
        Step::Readmit("s-2".into())
    );
}

#[test]
fn nothing_restarts_while_paused_switching_or_unhealthy() {
    let members = cluster([false, false, false]);
    let paused = RollView {
        paused: true,
        ..view(&members, None)
    };
    assert!(matches!(next(&paused), Step::Wait(w) if w.contains("paused")));
    // Paused mid-member too: the member stays where it is.
    let draining = rolling("s-2", Phase::Draining, 0);
    let paused_mid = RollView {
        paused: true,
        ..view(&members, Some(&draining))
    };
    assert!(matches!(next(&paused_mid), Step::Wait(_)));
    let switching = RollView {
        switching: true,
        ..view(&members, None)
    };
    assert!(matches!(next(&switching), Step::Wait(w) if w.contains("switchover")));
    let unhealthy = RollView {
        healthy: false,
        ..view(&members, None)
    };
    assert!(matches!(next(&unhealthy), Step::Wait(w) if w.contains("not healthy")));
    // Done needs no health: nothing would be restarted.
    let done = cluster([true; 3]);
    let unhealthy_done = RollView {
        healthy: false,
        ..view(&done, None)
    };
    assert_eq!(next(&unhealthy_done), Step::Done);
}

#[test]
fn the_primary_waits_for_a_replica_that_runs_the_new_configuration_and_replicates() {
    let mut members = cluster([false, true, true]);
    members[1].replicating = false;
    members[2].replicating = false;
    assert!(
        matches!(next(&view(&members, None)), Step::Wait(w) if w.contains("take the primary role"))
    );
    // A one-member cluster has nowhere to hand the role to: it restarts in place, and is
    // back once it answers.
    let alone = vec![member("s-0", Role::Primary, false)];
    assert_eq!(next(&view(&alone, None)), Step::Restart("s-0".into()));
    let back = rolling("s-0", Phase::CatchingUp, 10_000);
    assert_eq!(
        next(&view(&alone, Some(&back))),
        Step::Readmit("s-0".into())
    );
}

#[test]
fn a_member_promoted_or_removed_while_draining_leaves_the_roll() {
    let mut members = cluster([false, false, false]);
    members[2].role = Role::Primary;
    members[0].role = Role::Replica;
    let draining = rolling("s-2", Phase::Draining, 0);
    assert_eq!(
        next(&view(&members, Some(&draining))),
        Step::Readmit("s-2".into())
    );
    let gone = rolling("s-5", Phase::CatchingUp, 0);
    assert_eq!(
        next(&view(&members, Some(&gone))),
        Step::Readmit("s-5".into())
    );
}

#[test]
fn a_member_neither_primary_nor_replica_is_rolled_like_a_replica_but_never_readmitted_unreplicating()
 {
    let mut members = cluster([true, true, false]);
    members[2].role = Role::Other;
    members[2].in_reads = false;
    members[2].replicating = false;
    assert_eq!(next(&view(&members, None)), Step::Drain("s-2".into()));
    let catching = rolling("s-2", Phase::CatchingUp, 0);
    members[2].current = true;
    assert!(matches!(
        next(&view(&members, Some(&catching))),
        Step::Wait(_)
    ));
}

#[test]
fn a_drained_member_waits_while_another_fails_or_a_switchover_runs() {
    let mut members = cluster([false, false, false]);
    members[2].in_reads = false;
    let r = rolling("s-2", Phase::Draining, 0);
    let mut v = view(&members, Some(&r));
    v.proxies_drained = Some(true);
    assert_eq!(next(&v), Step::Restart("s-2".into()));
    v.healthy = false;
    assert!(matches!(next(&v), Step::Wait(w) if w.contains("healthy")));
    v.healthy = true;
    v.switching = true;
    assert!(matches!(next(&v), Step::Wait(w) if w.contains("switchover")));
}

#[test]
fn the_primary_is_not_handed_over_to_a_replica_that_may_not_be_promoted() {
    let mut members = cluster([false, true, true]);
    for m in &mut members[1..] {
        m.promotable = false;
    }
    let step = next(&view(&members, None));
    assert!(
        matches!(&step, Step::Wait(why) if why.contains("neverPromote")),
        "{step:?}"
    );
    // One that may: the hand-over to it.
    members[2].promotable = true;
    assert_eq!(
        next(&view(&members, None)),
        Step::Switchover { from: "s-0".into() }
    );
}
