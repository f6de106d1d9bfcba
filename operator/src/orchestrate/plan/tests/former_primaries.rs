//! Properties over clusters whose members took turns as primary: every member's own former
//! writes are part of one history, so nothing is errant, a switchover to any replica is planned
//! with a catch-up on the positions the observer reads, and "has applied" holds exactly for the
//! members that hold the whole history, whoever wrote its last transactions.

use proptest::prelude::*;

use super::*;
use crate::orchestrate::act::has_applied;

const COUNT: usize = 3;
const UUIDS: [&str; COUNT] = [
    "3e11fa47-71ca-11e1-9e33-c80aa9429560",
    "3e11fa47-71ca-11e1-9e33-c80aa9429561",
    "3e11fa47-71ca-11e1-9e33-c80aa9429562",
];

/// The executed position of a member that applied the first `applied` transactions of
/// `history` (each entry: the member that wrote it), as the observer reads it: MariaDB's
/// `@@gtid_binlog_pos` is the last GTID of the domain (its writer's server id), MySQL's
/// `@@gtid_executed` the intervals of each writer.
fn position(flavor: Flavor, history: &[usize], applied: usize) -> GtidSet {
    let done = &history[..applied];
    let text = match flavor {
        Flavor::Mariadb => done
            .last()
            .map(|w| format!("0-{}-{}", 1000 + w, done.len()))
            .unwrap_or_default(),
        Flavor::Mysql => (0..COUNT)
            .filter_map(|w| {
                let n = done.iter().filter(|x| **x == w).count();
                (n > 0).then(|| format!("{}:1-{n}", UUIDS[w]))
            })
            .collect::<Vec<_>>()
            .join(","),
    };
    GtidSet::parse(flavor, &text).unwrap()
}

prop_compose! {
    /// Turns at being primary (writer, writes), the current primary being the last writer,
    /// and how far behind the head each replica is.
    fn arb_cluster()(
        mysql in any::<bool>(),
        turns in proptest::collection::vec((0..COUNT, 1usize..4), 1..6),
        behind in proptest::collection::vec(0usize..3, COUNT),
        target in 0..COUNT,
    ) -> (Flavor, Vec<usize>, usize, Vec<usize>, usize) {
        let flavor = if mysql { Flavor::Mysql } else { Flavor::Mariadb };
        let history: Vec<usize> = turns.iter().flat_map(|(w, n)| std::iter::repeat_n(*w, *n)).collect();
        let primary = turns.last().map_or(0, |(w, _)| *w);
        (flavor, history, primary, behind, target)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn former_primaries_are_ordinary_replicas(
        (flavor, history, primary, behind, target) in arb_cluster()
    ) {
        let names: Vec<String> = (0..COUNT).map(|i| format!("m{i}")).collect();
        let head = history.len();
        let applied: Vec<usize> = (0..COUNT)
            .map(|i| if i == primary { head } else { head.saturating_sub(behind[i]) })
            .collect();
        let members: Vec<MemberView> = (0..COUNT)
            .map(|i| {
                let executed = position(flavor, &history, applied[i]);
                if i == primary {
                    super::primary(&names[i], executed)
                } else {
                    // Demoted with its own writes in its replication position; its relay log
                    // holds everything up to the head.
                    replica(&names[i], &names[primary], executed)
                        .with(|m| m.retrieved = Some(position(flavor, &history, head)))
                }
            })
            .collect();
        let replicas: Vec<&str> = (0..COUNT)
            .filter(|i| *i != primary)
            .map(|i| names[i].as_str())
            .collect();
        let v = view(members, Some(topology(Some(&names[primary]), &replicas, 9)));
        let head_set = position(flavor, &history, head);
        for (i, name) in names.iter().enumerate() {
            let executed = v.member(name).and_then(|m| m.executed.clone()).unwrap();
            // The check every catch-up uses: true exactly when the whole history is there,
            // also for the member that wrote the head itself.
            prop_assert_eq!(has_applied(&executed, &head_set), applied[i] == head, "{}", name);
        }
        let mut s = spec(&["m0", "m1", "m2"]);
        let quiet = plan(&v, &s, &history_now());
        prop_assert!(quarantined(&quiet).is_empty(), "{:?}", quiet);
        let quarantines = quiet
            .events
            .iter()
            .filter(|e| matches!(e, Event::Quarantined { .. }))
            .count();
        prop_assert_eq!(quarantines, 0);
        if target != primary {
            s.switchover = Some(Switchover {
                id: "p".into(),
                to: SwitchoverTarget::Member(names[target].clone()),
            });
            let p = plan(&v, &s, &history_now());
            prop_assert_eq!(promoted(&p), vec![names[target].as_str()], "{:?}", p);
            let waits = p.actions.iter().any(|a| matches!(
                a,
                Action::WaitCaughtUp { member, source, .. }
                    if *member == names[target] && *source == names[primary]
            ));
            prop_assert!(waits, "{:?}", p);
            prop_assert!(p.rollback.is_some());
        }
    }
}

fn history_now() -> History {
    history()
}
