//! Comment hints and the statements the proxy answers itself.

use crate::route::classify::Target::{self, LastBackend, Primary, Replica};
use crate::route::classify::{LaglessCommand, RouteHint, classify};
use crate::route::consistency::ConsistencyMode;

use ConsistencyMode as M;
use LaglessCommand::{ResetConsistency, SetConsistency, ShowConsistency};

const fn bounded(max_lag_ms: u64) -> Option<M> {
    Some(M::Bounded { max_lag_ms })
}

/// (statement, consistency hint, honoured route hint, target).
#[rustfmt::skip]
const HINTS: &[(&str, Option<M>, Option<RouteHint>, Target)] = &[
    ("/* lagless:consistency=session */ SELECT 1", Some(M::Session), None, Replica),
    ("SELECT 1 -- lagless:consistency=eventual", Some(M::Eventual), None, Replica),
    ("SELECT 1 # lagless:consistency=strict\n", Some(M::Strict), None, Replica),
    ("SELECT /* lagless:consistency=bounded(500ms) */ 1", bounded(500), None, Replica),
    ("/*lagless:consistency=bounded=250*/SELECT 1", bounded(250), None, Replica),
    ("/* lagless:consistency=bounded */ SELECT 1", bounded(1000), None, Replica),
    ("/* LAGLESS:Consistency=PROXY */ SELECT 1", Some(M::Proxy), None, Replica),
    ("/* lagless:consistency=bogus */ SELECT 1", None, None, Replica),
    ("/* lagless:consistency */ SELECT 1", None, None, Replica),
    ("/* a */ /* lagless:consistency=strict */ /* lagless:consistency=eventual */ SELECT 1",
        Some(M::Eventual), None, Replica),
    ("SELECT 'lagless:consistency=eventual'", None, None, Replica),
    ("/* lagless:route=primary */ SELECT 1", None, Some(RouteHint::Primary), Primary),
    ("SELECT 1 /*+ lagless:route=primary */", None, Some(RouteHint::Primary), Primary),
    ("/* lagless:route=replica */ SELECT 1", None, Some(RouteHint::Replica), Replica),
    ("/* lagless:route=replica */ UPDATE t SET a = 1", None, None, Primary),
    ("/* lagless:route=replica */ SELECT * FROM t FOR UPDATE", None, None, Primary),
    ("/* lagless:route=replica */ SHOW WARNINGS", None, None, LastBackend),
    ("/* lagless:route=primary */ SHOW WARNINGS", None, Some(RouteHint::Primary), LastBackend),
    ("/* lagless:route=sideways */ SELECT 1", None, None, Replica),
    ("/* lagless:consistency=session lagless:route=primary */ SELECT 1",
        Some(M::Session), Some(RouteHint::Primary), Primary),
    ("SELECT 1; /* lagless:route=replica */ INSERT INTO t VALUES (1)", None, None, Primary),
];

#[test]
fn hints_are_read_from_comments() {
    for (sql, consistency, route, target) in HINTS {
        let got = classify(sql.as_bytes());
        assert_eq!(got.hint, *consistency, "consistency hint of {sql:?}");
        assert_eq!(got.route_hint, *route, "route hint of {sql:?}");
        assert_eq!(got.target, *target, "target of {sql:?}");
    }
}

/// Statements the proxy answers itself, and look-alikes it must forward.
#[rustfmt::skip]
const LAGLESS: &[(&str, Option<LaglessCommand>)] = &[
    ("SET lagless_consistency = 'session'", Some(SetConsistency(M::Session))),
    ("SET SESSION lagless_consistency='strict'", Some(SetConsistency(M::Strict))),
    ("set @@lagless_consistency = \"eventual\"", Some(SetConsistency(M::Eventual))),
    ("SET @@session.lagless_consistency = 'bounded(250ms)'",
        Some(SetConsistency(M::Bounded { max_lag_ms: 250 }))),
    ("SET lagless_consistency = bounded(250ms)", Some(SetConsistency(M::Bounded { max_lag_ms: 250 }))),
    ("SET LAGLESS_CONSISTENCY = 'Bounded=2s';", Some(SetConsistency(M::Bounded { max_lag_ms: 2000 }))),
    ("SET lagless_consistency = proxy", Some(SetConsistency(M::Proxy))),
    ("SET lagless_consistency = DEFAULT", Some(ResetConsistency)),
    ("SHOW lagless_consistency", Some(ShowConsistency)),
    ("show LAGLESS_CONSISTENCY;", Some(ShowConsistency)),
    ("SELECT @@lagless_consistency", Some(ShowConsistency)),
    ("/* app */ SELECT @@session.lagless_consistency ;", Some(ShowConsistency)),
    ("SELECT 'lagless_consistency'", None),
    ("SELECT lagless_consistency FROM t", None),
    ("SET @lagless_consistency = 1", None),
];

#[test]
fn lagless_commands_are_recognised() {
    for (sql, want) in LAGLESS {
        let got = classify(sql.as_bytes());
        assert_eq!(got.lagless, *want, "{sql:?}");
        if want.is_some() {
            assert!(
                got.effects.is_empty(),
                "{sql:?} has effects {:?}",
                got.effects
            );
        }
    }
}

#[test]
fn misused_lagless_commands_are_errors() {
    let cases = [
        (
            "SET lagless_consistency = 'sometimes'",
            "unknown consistency mode",
        ),
        (
            "SET lagless_consistency = 'bounded(soon)'",
            "invalid staleness bound",
        ),
        ("SET lagless_consistency =", "needs a value"),
        (
            "SET GLOBAL lagless_consistency = 'strict'",
            "session setting",
        ),
        (
            "SET NAMES utf8, lagless_consistency = 'strict'",
            "of its own",
        ),
        ("SET lagless_consistency = 'strict'; SELECT 1", "on its own"),
        (
            "SELECT @@lagless_consistency, @@version",
            "only be read on its own",
        ),
        (
            "SELECT 1 FROM t WHERE @@lagless_consistency = 'strict'",
            "only be read on its own",
        ),
        (
            "SHOW lagless_consistency LIKE 'x'",
            "only be read on its own",
        ),
    ];
    for (sql, message) in cases {
        match classify(sql.as_bytes()).lagless {
            Some(LaglessCommand::Invalid(text)) => {
                assert!(text.contains(message), "{sql:?}: {text:?}")
            }
            other => panic!("{sql:?}: expected an error, got {other:?}"),
        }
    }
}
