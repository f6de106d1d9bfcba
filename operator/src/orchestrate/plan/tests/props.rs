//! Properties of [`plan`] over random views: GTID positions in one or two domains (or MySQL
//! sources), random reachability, replication state, spec flags and history.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const MEMBERS: usize = 5;
const UUIDS: [&str; 2] = [
    "3e11fa47-71ca-11e1-9e33-c80aa9429562",
    "4e11fa47-71ca-11e1-9e33-c80aa9429562",
];

fn name(i: usize) -> String {
    format!("m{i}")
}

/// A position from per-stream counts: MariaDB `d-server-seq` per domain, MySQL `uuid:1-n`.
fn position(flavor: Flavor, counts: &[(u64, u32)]) -> GtidSet {
    let text: Vec<String> = counts
        .iter()
        .enumerate()
        .filter(|(_, (seq, _))| *seq > 0)
        .map(|(i, (seq, server))| match flavor {
            Flavor::Mariadb => format!("{i}-{server}-{seq}"),
            Flavor::Mysql => format!("{}:1-{seq}", UUIDS[i % UUIDS.len()]),
        })
        .collect();
    GtidSet::parse(flavor, &text.join(",")).unwrap()
}

fn arb_probe() -> impl Strategy<Value = Probe> {
    prop_oneof![
        6 => Just(Probe::Ok),
        2 => Just(Probe::Unreachable),
        1 => Just(Probe::Hung),
    ]
}

fn arb_counts(domains: usize) -> impl Strategy<Value = Vec<(u64, u32)>> {
    proptest::collection::vec((0u64..6, 1u32..3), domains)
}

prop_compose! {
    fn arb_member(flavor: Flavor, domains: usize, i: usize)(
        probe in arb_probe(),
        failures in 0u32..5,
        read_only in prop_oneof![6 => Just(Some(true)), 2 => Just(Some(false)), 1 => Just(None)],
        executed in arb_counts(domains),
        extra in arb_counts(domains),
        source in proptest::option::of(0..MEMBERS),
        io_running in proptest::option::of(any::<bool>()),
        sql_running in proptest::option::of(any::<bool>()),
        io_1236 in proptest::bool::weighted(0.1),
        sql_error in proptest::bool::weighted(0.1),
        blank in proptest::bool::weighted(0.15),
        semi_sync in proptest::option::of((any::<bool>(), any::<bool>())),
    ) -> MemberView {
        // A fresh or wiped server: nothing executed, nothing received.
        let executed = if blank { vec![(0, 1); executed.len()] } else { executed };
        let retrieved: Vec<(u64, u32)> = executed
            .iter()
            .zip(&extra)
            .map(|((seq, server), (more, _))| (if blank { 0 } else { seq + more }, *server))
            .collect();
        let known = probe == Probe::Ok;
        let n = name(i);
        MemberView {
            probe,
            consecutive_failures: if known { 0 } else { failures },
            read_only: read_only.filter(|_| known),
            executed: known.then(|| position(flavor, &executed)),
            retrieved: known.then(|| position(flavor, &retrieved)),
            source: source.filter(|s| *s != i).map(|s| (name(s), PORT)),
            io_running,
            sql_running,
            io_error: io_1236.then(|| ReplicationError::new(1236, "not in binlog")),
            sql_error: sql_error.then(|| ReplicationError::new(1062, "duplicate")),
            semi_sync: semi_sync.filter(|_| known).map(|(source_enabled, replica_enabled)| {
                SemiSyncState { source_enabled, replica_enabled }
            }),
            ..MemberView::unobserved(n.clone(), n, PORT)
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    view: ClusterView,
    spec: ClusterSpec,
    history: History,
}

fn arb_members(
    flavor: Flavor,
    domains: usize,
    count: usize,
) -> impl Strategy<Value = Vec<MemberView>> {
    let members: Vec<_> = (0..count).map(|i| arb_member(flavor, domains, i)).collect();
    members
}

prop_compose! {
    fn arb_case()(
        mysql in any::<bool>(),
        domains in 1usize..=2,
        count in 2usize..=MEMBERS,
    )(
        mysql in Just(mysql),
        count in Just(count),
        members in arb_members(if mysql { Flavor::Mysql } else { Flavor::Mariadb }, domains, count),
        in_spec in proptest::collection::vec(proptest::bool::weighted(0.9), count),
        never in proptest::collection::vec(proptest::bool::weighted(0.2), count),
        priority in proptest::collection::vec(-1i32..2, count),
        quarantined in proptest::collection::vec(proptest::bool::weighted(0.15), count),
        published in proptest::option::weighted(0.85, (proptest::option::weighted(0.8, 0..count), 0u64..100)),
        switchover in proptest::option::weighted(0.3, proptest::option::of(0..count)),
        probes in 1u32..4,
        last_failover in proptest::option::of(0u64..20_000),
        semi_sync in proptest::option::weighted(0.3, 1u32..3),
        seeding in any::<bool>(),
        max_epoch in prop_oneof![2 => Just(0u64), 1 => 0u64..200],
    ) -> Case {
        let flavor = if mysql { Flavor::Mysql } else { Flavor::Mariadb };
        let mut spec = ClusterSpec::new("demo", Vec::new());
        for i in (0..count).filter(|i| in_spec[*i]) {
            spec.members.push(MemberSpec {
                promotion_priority: priority[i],
                never_promote: never[i],
                ..MemberSpec::new(name(i), name(i), PORT)
            });
        }
        spec.failover_after_probes = probes;
        spec.failover_cooldown = Duration::from_millis(5_000);
        spec.semi_sync = semi_sync.map(|acks| SemiSync { acks });
        spec.seeding = seeding;
        spec.switchover = switchover.map(|to| Switchover {
            id: "r".into(),
            to: to.map_or(SwitchoverTarget::Best, |i| SwitchoverTarget::Member(name(i))),
        });
        let published = published.map(|(primary, epoch)| {
            let p = primary.map(name);
            let replicas: Vec<String> = (0..count).map(name).filter(|n| Some(n) != p.as_ref()).collect();
            let refs: Vec<&str> = replicas.iter().map(String::as_str).collect();
            topology(p.as_deref(), &refs, epoch).with(|t| t.flavor = flavor)
        });
        let mut history = History {
            now_ms: 20_000,
            last_failover_ms: last_failover,
            max_epoch,
            ..History::default()
        };
        for i in (0..count).filter(|i| quarantined[*i]) {
            history.quarantined.insert(name(i), "errant".into());
        }
        Case { view: ClusterView { flavor, members, published }, spec, history }
    }
}

fn quarantined_or_unpromotable(case: &Case, member: &str) -> bool {
    case.history.quarantined.contains_key(member)
        || case.spec.member(member).is_none_or(|s| s.never_promote)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_failover_promotion_loses_nothing_another_member_has(case in arb_case()) {
        let p = plan(&case.view, &case.spec, &case.history);
        let waits_for_source = p.actions.iter().any(|a| matches!(a, Action::WaitCaughtUp { .. }));
        for m in promoted(&p) {
            if waits_for_source {
                continue;
            }
            let chosen = case.view.member(m).and_then(MemberView::holdings).unwrap();
            for other in case.view.members.iter().filter(|o| o.is_reachable() && o.name != m) {
                if case.history.quarantined.contains_key(&other.name) {
                    continue;
                }
                let theirs = other.holdings().unwrap();
                prop_assert!(chosen.contains(&theirs), "{m} lacks {theirs} of {}: {p:?}", other.name);
            }
        }
    }

    #[test]
    fn never_promotes_a_quarantined_or_forbidden_member(case in arb_case()) {
        let p = plan(&case.view, &case.spec, &case.history);
        let newly: Vec<&str> = quarantined(&p);
        for a in &p.actions {
            let target = match a {
                Action::Promote { member } => member,
                Action::Bootstrap { primary, .. } => primary,
                _ => continue,
            };
            prop_assert!(!quarantined_or_unpromotable(&case, target), "{p:?}");
            prop_assert!(!newly.contains(&target.as_str()), "{p:?}");
            let seen = case.view.member(target);
            prop_assert!(seen.is_some_and(MemberView::is_reachable), "{p:?}");
        }
    }

    #[test]
    fn at_most_one_promotion(case in arb_case()) {
        let p = plan(&case.view, &case.spec, &case.history);
        let count = p.actions.iter().filter(|a| matches!(a, Action::Promote { .. } | Action::Bootstrap { .. })).count();
        prop_assert!(count <= 1, "{p:?}");
    }

    #[test]
    fn published_epochs_increase_and_documents_validate(case in arb_case()) {
        let p = plan(&case.view, &case.spec, &case.history);
        // Above the published document and every epoch ever published.
        let mut last = case.view.published.as_ref().map(|t| t.epoch).max(Some(case.history.max_epoch));
        for t in published(&p) {
            prop_assert!(last.is_none_or(|e| t.epoch > e), "{p:?}");
            prop_assert!(t.validate().is_ok(), "{t:?}");
            last = Some(t.epoch);
        }
    }

    #[test]
    fn a_promotion_ends_by_publishing_the_new_primary(case in arb_case()) {
        let p = plan(&case.view, &case.spec, &case.history);
        if let [m] = promoted(&p)[..] {
            let last = published(&p).last().and_then(|t| t.primary.as_ref()).map(|p| p.name.clone());
            prop_assert_eq!(last.as_deref(), Some(m));
        }
    }

    #[test]
    fn no_failover_before_enough_failed_probes(case in arb_case()) {
        let p = plan(&case.view, &case.spec, &case.history);
        let Some(old) = case.view.published.as_ref().and_then(|t| t.primary.as_ref()) else {
            return Ok(());
        };
        let Some(seen) = case.view.member(&old.name) else {
            return Ok(());
        };
        if seen.consecutive_failures < case.spec.failover_after_probes && !seen.is_reachable() {
            prop_assert!(promoted(&p).is_empty(), "{p:?}");
        }
    }

    #[test]
    fn a_seed_copies_a_sound_member_into_an_empty_one(case in arb_case()) {
        let p = plan(&case.view, &case.spec, &case.history);
        let newly = quarantined(&p);
        let seeds: Vec<(&String, &String, &String)> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Seed { member, donor, source } => Some((member, donor, source)),
                _ => None,
            })
            .collect();
        prop_assert!(seeds.len() <= 1, "{p:?}");
        for (member, donor, source) in seeds {
            prop_assert!(case.spec.seeding, "{p:?}");
            prop_assert_ne!(member, donor);
            prop_assert!(case.spec.member(member).is_some(), "{p:?}");
            // A replica donor is sound and wanted; the primary is what replication follows
            // anyway, whatever else is said of it.
            if donor != source {
                prop_assert!(!case.history.quarantined.contains_key(donor), "{p:?}");
                prop_assert!(!newly.contains(&donor.as_str()), "{p:?}");
                prop_assert!(case.spec.member(donor).is_some(), "{p:?}");
            }
            let seen = case.view.member(member).unwrap();
            prop_assert!(seen.executed.as_ref().is_some_and(GtidSet::is_empty), "{p:?}");
            let primary = case.view.published.as_ref().and_then(|t| t.primary.as_ref());
            prop_assert_eq!(primary.map(|m| &m.name), Some(source));
            // It takes no traffic before it replicates.
            for t in published(&p) {
                prop_assert!(t.replicas.iter().all(|r| r.name != *member), "{p:?}");
            }
            let event = Event::Seeded { member: member.clone(), donor: donor.clone() };
            prop_assert!(p.events.contains(&event), "{p:?}");
        }
    }

    #[test]
    fn semi_sync_is_changed_only_towards_the_spec(case in arb_case()) {
        let p = plan(&case.view, &case.spec, &case.history);
        for a in &p.actions {
            match a {
                Action::EnsureSemiSync { .. } => prop_assert!(case.spec.semi_sync.is_some()),
                // Off on a member that is not the primary (it must not wait for
                // acknowledgements), or everywhere when the spec has no semi-sync.
                Action::DisableSemiSync { member } => {
                    let primary = case
                        .view
                        .published
                        .as_ref()
                        .and_then(|t| t.primary.as_ref())
                        .map(|p| p.name.as_str());
                    prop_assert!(
                        case.spec.semi_sync.is_none() || primary != Some(member.as_str()),
                        "{member} is the primary and the spec wants semi-sync"
                    );
                    let m = case.view.member(member);
                    prop_assert!(m.is_some_and(|m| m.semi_sync.is_some_and(|s| s.source_enabled)));
                }
                _ => {}
            }
        }
    }

    #[test]
    fn nothing_is_made_writable_while_semi_sync_is_wanted_and_off(case in arb_case()) {
        let p = plan(&case.view, &case.spec, &case.history);
        let observed = |name: &str| {
            case.view.member(name).and_then(|m| m.semi_sync).is_some_and(|s| s.source_enabled)
        };
        let rollback = p.rollback.iter().flat_map(|r| &r.actions);
        for actions in [p.actions.iter().collect::<Vec<_>>(), rollback.collect()] {
            let mut on: BTreeMap<String, bool> = BTreeMap::new();
            for a in actions {
                match a {
                    Action::EnsureSemiSync { primary, .. } => {
                        on.insert(primary.clone(), true);
                    }
                    // Replication set up anew turns waiting off (see `change_source`).
                    Action::DisableSemiSync { member }
                    | Action::Repoint { member, .. }
                    | Action::Rejoin { member, .. } => {
                        on.insert(member.clone(), false);
                    }
                    Action::Promote { member } | Action::SetWritable { member } => {
                        let enabled = on.get(member).copied().unwrap_or_else(|| observed(member));
                        prop_assert!(
                            case.spec.semi_sync.is_none() || enabled,
                            "{member} made writable without semi-sync: {p:?}"
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn a_primary_is_published_only_after_its_semi_sync_set_up(case in arb_case()) {
        let p = plan(&case.view, &case.spec, &case.history);
        if case.spec.semi_sync.is_none() {
            return Ok(());
        }
        let rollback = p.rollback.iter().flat_map(|r| &r.actions);
        for actions in [p.actions.iter().collect::<Vec<_>>(), rollback.collect()] {
            for (i, a) in actions.iter().enumerate() {
                if let Action::PublishTopology { topology } = a
                    && let Some(primary) = &topology.primary
                {
                    // Since the previous publication, the primary was set up.
                    let set_up = actions[..i]
                        .iter()
                        .rev()
                        .take_while(|a| !matches!(a, Action::PublishTopology { .. }))
                        .any(|a| matches!(a, Action::EnsureSemiSync { primary: p, .. } if *p == primary.name));
                    prop_assert!(set_up, "{} published without semi-sync set up before: {p:?}", primary.name);
                }
            }
        }
        if let Some(r) = &p.rollback {
            prop_assert!(r.from <= r.until && r.until <= p.actions.len(), "{p:?}");
        }
    }

    #[test]
    fn a_failover_fences_the_old_primary_before_publishing_the_new_one(case in arb_case()) {
        let p = plan(&case.view, &case.spec, &case.history);
        let failover = p.events.iter().any(|e| matches!(e, Event::Promoted { cause: Cause::Failover, .. }));
        if !failover {
            return Ok(());
        }
        let old = case.view.published.as_ref().and_then(|t| t.primary.as_ref()).map(|m| m.name.clone());
        let fence = p.actions.iter().position(|a| matches!(a, Action::FencePrimary { member } if Some(member) == old.as_ref()));
        let publish = p.actions.iter().rposition(|a| matches!(a, Action::PublishTopology { .. }));
        prop_assert!(fence.is_some() && fence < publish, "{p:?}");
    }

    #[test]
    fn plan_ignores_observation_order(case in arb_case()) {
        let p = plan(&case.view, &case.spec, &case.history);
        prop_assert_eq!(&p, &plan(&case.view, &case.spec, &case.history));
        let mut reversed = case.view.clone();
        reversed.members.reverse();
        prop_assert_eq!(p, plan(&reversed, &case.spec, &case.history));
    }

    #[test]
    fn a_paused_cluster_is_observed_and_left_alone(case in arb_case()) {
        let running = plan(&case.view, &case.spec, &case.history);
        let mut spec = case.spec.clone();
        spec.paused = true;
        let p = plan(&case.view, &spec, &case.history);
        // The same diagnosis, nothing done, nothing recorded as done.
        prop_assert_eq!(p.state, running.state);
        prop_assert!(p.actions.is_empty() && p.rollback.is_none(), "{p:?}");
        prop_assert!(p.events.iter().all(|e| matches!(e, Event::Warning { .. })), "{p:?}");
        // What waits is said, alone, whenever something would have been done.
        let says = p.events.iter().any(|e| e.to_string().contains("orchestration is paused"));
        prop_assert_eq!(says, !running.actions.is_empty(), "{:?}", p);
        if says {
            prop_assert_eq!(p.events.len(), 1, "{:?}", p);
        }
    }
}
