//! KILL statements and `wait_timeout` assignments, which the session acts on itself.

use crate::route::classify::KillStatement::{self, AmongOthers, Unsupported};
use crate::route::classify::{Kill, SqlMode, Target, Victim, classify, classify_with};

const fn id(id: u32, query_only: bool) -> Option<KillStatement> {
    Some(KillStatement::Kill(Kill {
        victim: Victim::Id(id),
        query_only,
    }))
}

const fn own(query_only: bool) -> Option<KillStatement> {
    Some(KillStatement::Kill(Kill {
        victim: Victim::Own,
        query_only,
    }))
}

/// (payload, the KILL the classifier reports).
#[rustfmt::skip]
const KILLS: &[(&str, Option<KillStatement>)] = &[
    ("KILL 5", id(5, false)),
    ("kill connection 7;", id(7, false)),
    ("  KILL HARD QUERY 9 ", id(9, true)),
    ("KILL SOFT 3", id(3, false)),
    ("KILL SOFT CONNECTION 3", id(3, false)),
    ("KILL QUERY 12", id(12, true)),
    ("KILL 1073741824", id(1 << 30, false)),
    ("KILL 4294967295", id(u32::MAX, false)),
    ("KILL 007", id(7, false)),
    ("KILL\t5\n", id(5, false)),
    ("KILL 5 ;; ", id(5, false)),
    ("/* app */ KILL /* c */ 5 -- why", id(5, false)),
    ("# c\nKILL QUERY 5 # c", id(5, true)),
    ("/*!KILL 5*/", id(5, false)),
    ("KILL CONNECTION_ID()", own(false)),
    ("KILL CONNECTION CONNECTION_ID()", own(false)),
    ("kill query connection_id ( )", own(true)),
    ("KILL HARD QUERY CONNECTION_ID() ;", own(true)),
    // Forms the proxy does not carry out.
    ("KILL USER bob", Some(Unsupported)),
    ("KILL CONNECTION USER bob", Some(Unsupported)),
    ("KILL QUERY ID 4", Some(Unsupported)),
    ("KILL", Some(Unsupported)),
    ("KILL;", Some(Unsupported)),
    ("KILL QUERY", Some(Unsupported)),
    ("KILL HARD", Some(Unsupported)),
    ("KILL 1 2", Some(Unsupported)),
    ("KILL -1", Some(Unsupported)),
    ("KILL +1", Some(Unsupported)),
    ("KILL 1.5", Some(Unsupported)),
    ("KILL 0x10", Some(Unsupported)),
    ("KILL 1e3", Some(Unsupported)),
    ("KILL 4294967296", Some(Unsupported)),
    ("KILL '5'", Some(Unsupported)),
    ("KILL `5`", Some(Unsupported)),
    ("KILL (5)", Some(Unsupported)),
    ("KILL @id", Some(Unsupported)),
    ("KILL QUERY CONNECTION 5", Some(Unsupported)),
    ("KILL CONNECTION_ID", Some(Unsupported)),
    ("KILL CONNECTION_ID(", Some(Unsupported)),
    ("KILL CONNECTION_ID() + 1", Some(Unsupported)),
    ("KILL 5 'x", Some(Unsupported)),
    ("KILL 5 /* open", Some(Unsupported)),
    ("BEGIN NOT ATOMIC KILL 5; END", Some(AmongOthers)),
    // Among other statements: the session runs them one at a time.
    ("KILL 5; SELECT 7", Some(AmongOthers)),
    ("SELECT 1; KILL QUERY 5", Some(AmongOthers)),
    ("KILL 1; KILL 2", Some(AmongOthers)),
    ("KILL USER bob; SELECT 1", Some(AmongOthers)),
    ("CREATE PROCEDURE p() BEGIN SELECT 1; END; KILL 3", Some(AmongOthers)),
    // Not a KILL.
    ("SELECT 1", None),
    ("KILLX 1", None),
    ("SELECT 'KILL 5'", None),
    ("SELECT kill FROM t", None),
    ("/* KILL 5 */ SELECT 1", None),
    ("SELECT 1 -- KILL 5", None),
    ("PREPARE s FROM 'KILL 5'", None),
    ("EXECUTE IMMEDIATE 'KILL 5'", None),
    ("CREATE PROCEDURE p() BEGIN KILL 5; END", None),
    ("SHOW EXPLAIN FOR 5", None),
    ("EXPLAIN FOR CONNECTION 7", None),
    ("SELECT CONNECTION_ID()", None),
];

#[test]
fn kill_statements_are_recognised() {
    for (sql, want) in KILLS {
        let got = classify(sql.as_bytes());
        assert_eq!(got.kill, *want, "{sql:?}");
        if want.is_some() {
            // Never a replica's business, whatever the proxy does with it.
            assert_eq!(got.target, Target::Primary, "{sql:?}");
        }
    }
}

#[test]
fn a_kill_inside_a_string_depends_on_the_sql_mode() {
    // Under NO_BACKSLASH_ESCAPES the string ends at the backslash and the KILL is code.
    let sql = b"SELECT 'a\\'; KILL 5 -- '";
    assert_eq!(classify(sql).kill, None);
    let mode = SqlMode {
        no_backslash_escapes: true,
        ..SqlMode::default()
    };
    assert_eq!(classify_with(sql, mode).kill, Some(AmongOthers));
}

/// (payload, the session's `wait_timeout` after it).
#[rustfmt::skip]
const WAIT_TIMEOUTS: &[(&str, Option<u64>)] = &[
    ("SET wait_timeout = 1", Some(1)),
    ("set session WAIT_TIMEOUT=30", Some(30)),
    ("SET LOCAL wait_timeout = 30", Some(30)),
    ("SET @@session.wait_timeout=5, autocommit=1", Some(5)),
    ("SET @@local.wait_timeout = 5", Some(5)),
    ("SET @@wait_timeout := 5", Some(5)),
    ("SET `wait_timeout` = 5", Some(5)),
    ("SET /* c */ wait_timeout /* c */ = /* c */ 8 -- c", Some(8)),
    ("SET wait_timeout = 0", Some(0)),
    ("SET wait_timeout = 28800;", Some(28800)),
    ("SET session wait_timeout = 28800, interactive_timeout = 60", Some(28800)),
    ("SET interactive_timeout = 60, wait_timeout = 28800", Some(28800)),
    ("SET NAMES utf8mb4, wait_timeout = 10", Some(10)),
    ("SET wait_timeout = 1, wait_timeout = 2", Some(2)),
    ("SET wait_timeout = 1; SET wait_timeout = 2", Some(2)),
    ("SET wait_timeout = 3; SET NAMES utf8", Some(3)),
    ("SET NAMES utf8; SET SESSION wait_timeout = 4", Some(4)),
    ("SET wait_timeout = 5; SELECT 1", Some(5)),
    ("SET @@global.wait_timeout = 9; SET wait_timeout = 7", Some(7)),
    ("SET GLOBAL max_connections = 1, SESSION wait_timeout = 10", Some(10)),
    ("/*!40101 SET wait_timeout = 600 */", Some(600)),
    // Not a plain number, or not the session's wait_timeout.
    ("SET interactive_timeout = 5", None),
    ("SET net_wait_timeout = 5", None),
    ("SET wait_timeout_x = 5", None),
    ("SET wait_timeout = DEFAULT", None),
    ("SET wait_timeout = '30'", None),
    ("SET wait_timeout = 1 + 2", None),
    ("SET wait_timeout = -5", None),
    ("SET wait_timeout = 1.5", None),
    ("SET wait_timeout = 0x10", None),
    ("SET wait_timeout = @t", None),
    ("SET wait_timeout = (SELECT 5)", None),
    ("SET wait_timeout = 18446744073709551616", None),
    ("SET wait_timeout 10", None),
    ("SET GLOBAL wait_timeout = 5", None),
    ("SET @@global.wait_timeout = 5", None),
    ("SET GLOBAL wait_timeout = 5, max_connections = 10", None),
    ("SET PERSIST wait_timeout = 5", None),
    ("SET STATEMENT wait_timeout = 5 FOR SELECT 1", None),
    ("SET time_zone = 'wait_timeout=5'", None),
    ("/* wait_timeout = 5 */ SET NAMES utf8", None),
    ("SET @wait_timeout = 5", None),
    ("SELECT @@wait_timeout = 5", None),
    ("PREPARE s FROM 'SET wait_timeout = 5'", None),
    ("SET NAMES utf8", None),
];

#[test]
fn wait_timeout_assignments_are_read() {
    for (sql, want) in WAIT_TIMEOUTS {
        assert_eq!(classify(sql.as_bytes()).wait_timeout, *want, "{sql:?}");
    }
}
