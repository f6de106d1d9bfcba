use std::cell::Cell;
use std::collections::HashMap;

use super::*;

/// Replicas as a test sees them.
#[derive(Default)]
struct View {
    down: Vec<&'static str>,
    caught_up: Vec<&'static str>,
    behind: HashMap<&'static str, u64>,
    stale_ms: HashMap<&'static str, u64>,
    outstanding: HashMap<&'static str, usize>,
    rotation: Cell<usize>,
}

impl ReplicaView for View {
    fn is_up(&self, addr: &str) -> bool {
        !self.down.contains(&addr)
    }
    fn outstanding(&self, addr: &str) -> usize {
        self.outstanding.get(addr).copied().unwrap_or(0)
    }
    fn has_applied(&self, addr: &str, _: &GtidSet) -> bool {
        self.caught_up.contains(&addr)
    }
    fn staleness_ms(&self, addr: &str) -> Option<u64> {
        self.stale_ms.get(addr).copied()
    }
    fn behind(&self, addr: &str, _: &GtidSet) -> Option<u64> {
        self.behind.get(addr).copied()
    }
    fn rotation(&self) -> usize {
        let r = self.rotation.get();
        self.rotation.set(r + 1);
        r
    }
}

/// The session's replica connection: its member and address.
type Current<'a> = Option<(&'a Member, &'a str)>;

fn member(host: &str, weight: u32) -> Member {
    Member {
        name: host.into(),
        host: host.into(),
        port: 3306,
        weight,
    }
}

fn gtid() -> GtidSet {
    GtidSet::Mariadb(Default::default())
}

#[test]
fn read_plans() {
    let (a, b, c) = (member("a", 1), member("b", 1), member("c", 0));
    let replicas = vec![a.clone(), b.clone(), c.clone()];
    let need = || Requirement::Applied(gtid());
    let view = |f: fn(&mut View)| {
        let mut v = View::default();
        f(&mut v);
        v
    };
    let on_a = Some((&a, "a:3306"));
    let on_c = Some((&c, "c:3306"));
    // (requirement, current connection, view, plan)
    let cases: Vec<(Requirement, Current<'_>, View, ReadPlan)> = vec![
        (Requirement::Any, on_a, View::default(), ReadPlan::Current),
        (
            Requirement::Any,
            None,
            View::default(),
            ReadPlan::Replica(a.clone()),
        ),
        // A replica out of read routing (weight 0) is left.
        (
            Requirement::Any,
            on_c,
            View::default(),
            ReadPlan::Replica(a.clone()),
        ),
        (
            Requirement::Any,
            on_a,
            view(|v| v.down = vec!["a:3306"]),
            ReadPlan::Replica(b.clone()),
        ),
        (
            Requirement::Any,
            None,
            view(|v| v.down = vec!["a:3306", "b:3306"]),
            ReadPlan::Primary("no_replica"),
        ),
        (
            need(),
            on_a,
            view(|v| v.caught_up = vec!["a:3306"]),
            ReadPlan::Current,
        ),
        (
            need(),
            on_a,
            view(|v| v.caught_up = vec!["b:3306"]),
            ReadPlan::Replica(b.clone()),
        ),
        (
            need(),
            None,
            view(|v| v.behind = HashMap::from([("a:3306", 9), ("b:3306", 2)])),
            ReadPlan::WaitThen(b.clone(), gtid()),
        ),
        (
            need(),
            None,
            view(|v| v.behind = HashMap::from([("a:3306", 1)])),
            ReadPlan::WaitThen(a.clone(), gtid()),
        ),
        (
            Requirement::FreshWithin { max_ms: 100 },
            None,
            view(|v| v.stale_ms = HashMap::from([("a:3306", 500), ("b:3306", 50)])),
            ReadPlan::Replica(b.clone()),
        ),
        (
            Requirement::FreshWithin { max_ms: 100 },
            on_a,
            view(|v| v.stale_ms = HashMap::from([("a:3306", 500)])),
            ReadPlan::Primary("too_stale"),
        ),
    ];
    for (i, (req, current, view, want)) in cases.into_iter().enumerate() {
        assert_eq!(plan_read(req, current, &replicas, &view), want, "case {i}");
    }
}

#[test]
fn the_least_loaded_replica_per_weight_wins_and_ties_rotate() {
    let (a, b) = (member("a", 1), member("b", 3));
    let view = View {
        outstanding: HashMap::from([("a:3306", 1), ("b:3306", 3)]),
        ..View::default()
    };
    // a: 2 per weight unit, b: 4/3.
    assert_eq!(least_loaded(&[&a, &b], &view), Some(&b));
    let (x, y) = (member("x", 1), member("y", 1));
    let idle = View::default();
    let first = least_loaded(&[&x, &y], &idle);
    let second = least_loaded(&[&x, &y], &idle);
    assert_ne!(first, second);
    assert_eq!(least_loaded(&[], &idle), None);
}

#[test]
fn needs_per_mode() {
    let own = gtid();
    let proxy = || Some(gtid());
    let applied = Need::Ready(Requirement::Applied(gtid()));
    let any = Need::Ready(Requirement::Any);
    // (mode, backends track GTIDs, own writes, need)
    let cases = [
        (ConsistencyMode::Eventual, true, None, any.clone()),
        (
            ConsistencyMode::Bounded { max_lag_ms: 30 },
            true,
            None,
            Need::Ready(Requirement::FreshWithin { max_ms: 30 }),
        ),
        (ConsistencyMode::Session, true, Some(&own), applied.clone()),
        (ConsistencyMode::Session, true, None, any.clone()),
        (ConsistencyMode::Session, false, Some(&own), Need::Head),
        (ConsistencyMode::Proxy, true, None, applied.clone()),
        (ConsistencyMode::Proxy, false, None, Need::Head),
        (ConsistencyMode::Strict, true, Some(&own), Need::Head),
    ];
    for (mode, tracks, own, want) in cases {
        assert_eq!(need_of(mode, tracks, own, proxy), want, "{mode:?}");
    }
}

#[test]
fn a_read_cheaper_than_a_head_read_runs_on_the_primary() {
    let us = Duration::from_micros;
    assert!(cheaper_on_primary(Some(us(90)), Some(us(100)), 1.0));
    assert!(cheaper_on_primary(Some(us(100)), Some(us(100)), 1.0));
    assert!(!cheaper_on_primary(Some(us(101)), Some(us(100)), 1.0));
    // The ratio scales the head read's cost.
    assert!(cheaper_on_primary(Some(us(190)), Some(us(100)), 2.0));
    assert!(!cheaper_on_primary(Some(us(90)), Some(us(100)), 0.5));
    // Off, or nothing known yet: the read keeps to the replicas.
    assert!(!cheaper_on_primary(Some(us(1)), Some(us(100)), 0.0));
    assert!(!cheaper_on_primary(None, Some(us(100)), 1.0));
    assert!(!cheaper_on_primary(Some(us(1)), None, 1.0));
}
