//! Tables of statements and their verdicts, the lexer's tokens and the keyword table; the
//! property tests and the tables for hints, lagless commands, KILL and `wait_timeout` live in
//! the submodules.

mod cases;
mod lagless;
mod properties;
mod session;

use std::borrow::Cow;

use super::keywords::VarScope;
use super::keywords::{KEYWORDS, MAX_KEYWORD_LEN, keyword};
use super::lexer::Tok;
use super::parser::Parser;
use super::rules::unquote;
use super::*;
use Target::{LastBackend, Primary, Replica};
use cases::{EFFECTS, LAST_BACKEND, MALFORMED, PRIMARY, READS};

/// One expected effect, to keep the tables short.
#[derive(Debug, Clone, Copy)]
enum E {
    Begin,
    ReadOnly,
    End,
    Autocommit(bool),
    TempTable,
    Lock,
    Unlock,
    UserLock,
    VarWrite,
    Replayable,
    NotReplayable,
    Use(&'static str),
}

fn effects(list: &[E]) -> Effects {
    let mut e = Effects::default();
    for item in list {
        match *item {
            E::Begin => e.begins_transaction = true,
            E::ReadOnly => e.read_only_transaction = true,
            E::End => e.ends_transaction = true,
            E::Autocommit(on) => e.autocommit = Some(on),
            E::TempTable => e.creates_temp_table = true,
            E::Lock => e.locks_tables = true,
            E::Unlock => e.unlocks_tables = true,
            E::UserLock => e.user_lock = true,
            E::VarWrite => e.user_variable_write = true,
            E::Replayable => e.session_set = Some(SessionSet::Replayable),
            E::NotReplayable => e.session_set = Some(SessionSet::NotReplayable),
            E::Use(db) => e.use_database = Some(db.to_owned()),
        }
    }
    e
}

fn check(sql: &str, target: Target, expected: &[E]) {
    let got = classify(sql.as_bytes());
    assert_eq!(got.target, target, "target of {sql:?}: {got:?}");
    assert_eq!(got.effects, effects(expected), "effects of {sql:?}");
    assert_eq!(got.lagless, None, "lagless command in {sql:?}");
}

#[test]
fn payloads_split_into_statements() {
    let cut = |sql: &str| {
        split_statements(sql.as_bytes()).map(|parts| {
            parts
                .iter()
                .map(|&(a, b)| sql[a..b].to_string())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(
        cut("KILL 5; SELECT 1"),
        Some(vec!["KILL 5".into(), "SELECT 1".into()])
    );
    assert_eq!(
        cut(" SELECT ';' ;; /* x */ KILL QUERY 7 ;\nSELECT 2 -- end"),
        Some(vec![
            "SELECT ';'".into(),
            "KILL QUERY 7".into(),
            "SELECT 2".into()
        ])
    );
    assert_eq!(
        cut("CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END; KILL 3"),
        Some(vec![
            "CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END".into(),
            "KILL 3".into()
        ])
    );
    assert_eq!(cut("SELECT 'open; KILL 1"), None);
    assert_eq!(cut("/*!40101 SET NAMES utf8 */; KILL 1"), None);
    assert_eq!(cut(""), Some(vec![]));
}

#[test]
fn plain_reads_go_to_a_replica() {
    for sql in READS {
        check(sql, Replica, &[]);
    }
}

#[test]
fn writes_and_pinned_reads_go_to_the_primary() {
    for sql in PRIMARY {
        let mut got = classify(sql.as_bytes());
        assert_eq!(got.target, Primary, "target of {sql:?}: {got:?}");
        // What ties a multiplexed session to its connection is checked below.
        got.effects.reads_connection = false;
        got.effects.calc_found_rows = false;
        assert_eq!(got.effects, Effects::default(), "effects of {sql:?}");
    }
}

#[test]
fn reads_of_a_connections_own_history_are_marked() {
    for sql in [
        "SELECT LAST_INSERT_ID()",
        "SELECT FOUND_ROWS()",
        "SELECT ROW_COUNT()",
        "SELECT CONNECTION_ID()",
        "SELECT lastval(s)",
        "SELECT @@warning_count, LAST_INSERT_ID()",
    ] {
        let got = classify(sql.as_bytes());
        assert!(got.effects.reads_connection, "{sql:?}: {got:?}");
        assert!(!got.effects.calc_found_rows, "{sql:?}");
    }
    let got = classify(b"SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1");
    assert!(got.effects.calc_found_rows && !got.effects.reads_connection);
    // A column or table that merely has such a name is no call.
    for sql in ["SELECT last_insert_id FROM t", "SELECT * FROM found_rows"] {
        let got = classify(sql.as_bytes());
        assert!(!got.effects.reads_connection, "{sql:?}");
    }
}

#[test]
fn diagnostics_follow_the_last_backend() {
    for sql in LAST_BACKEND {
        check(sql, LastBackend, &[]);
    }
}

#[test]
fn effects_are_reported() {
    for (sql, target, expected) in EFFECTS {
        check(sql, *target, expected);
    }
}

#[test]
fn unterminated_input_goes_to_the_primary() {
    for sql in MALFORMED {
        assert_eq!(classify(sql.as_bytes()).target, Primary, "{sql:?}");
    }
}

#[test]
fn diagnostics_mixed_with_primary_needs_go_to_the_primary() {
    assert_eq!(
        classify(b"SELECT @@warning_count, LAST_INSERT_ID()").target,
        Primary
    );
    check("SHOW WARNINGS; INSERT INTO t VALUES (1)", Primary, &[]);
}

#[test]
fn bytes_that_are_not_utf8_are_fine() {
    check("SELECT '\u{0}' FROM t", Replica, &[]);
    let mut sql = b"SELECT 'caf".to_vec();
    sql.extend_from_slice(&[0xe9, b'\'', b' ', 0xff, 0xfe]);
    assert_eq!(classify(&sql).target, Replica);
    let use_latin1 = [b"USE caf".as_slice(), &[0xe9]].concat();
    assert_eq!(classify(&use_latin1).effects, effects(&[E::NotReplayable]));
}

#[test]
fn sql_mode_changes_how_quotes_are_read() {
    // Under NO_BACKSLASH_ESCAPES the string ends after the backslash and FOR UPDATE is code.
    let sql = b"SELECT 'a\\' FOR UPDATE -- '";
    assert_eq!(classify(sql).target, Replica);
    let mode = SqlMode {
        no_backslash_escapes: true,
        ..SqlMode::default()
    };
    assert_eq!(classify_with(sql, mode).target, Primary);

    let sql = b"USE \"my db\"";
    assert_eq!(classify(sql).effects.use_database, None);
    let ansi = SqlMode {
        ansi_quotes: true,
        ..SqlMode::default()
    };
    let got = classify_with(sql, ansi).effects.use_database;
    assert_eq!(got.as_deref(), Some("my db"));
    assert_eq!(
        classify_with(b"SELECT \"a\"\"b\" FROM t", ansi).target,
        Replica
    );
}

#[test]
fn lexer_produces_the_expected_tokens() {
    let sql = b"SELECT @@session.a, @@b.c, @x:=`i``d`, 'it''s' /* c */ -- d\n#e\n/*!50110 X */;";
    let mut p = Parser::new(sql, SqlMode::default());
    let mut tokens = Vec::new();
    loop {
        let tok = p.bump();
        tokens.push(tok);
        if tok == Tok::End {
            break;
        }
    }
    let expected = [
        Tok::Word(b"SELECT"),
        Tok::SysVar(VarScope::Session, b"a"),
        Tok::Punct(b','),
        Tok::SysVar(VarScope::Unqualified, b"b"),
        Tok::Punct(b'.'),
        Tok::Word(b"c"),
        Tok::Punct(b','),
        Tok::UserVar,
        Tok::Assign,
        Tok::Ident(b"i``d", b'`'),
        Tok::Punct(b','),
        Tok::Str(b"it''s"),
        Tok::Word(b"X"),
        Tok::Punct(b';'),
        Tok::End,
    ];
    assert_eq!(tokens, expected);
}

#[test]
fn every_keyword_is_reachable() {
    for (text, kw) in KEYWORDS {
        let name = String::from_utf8_lossy(text);
        assert!(text.len() <= MAX_KEYWORD_LEN, "{name}");
        assert!(text.iter().all(|b| !b.is_ascii_lowercase()), "{name}");
        assert_eq!(keyword(&text.to_ascii_lowercase()), Some(*kw), "{name}");
    }
    let misses: [&[u8]; 9] = [
        b"SELECTED",
        b"SELEC",
        b"1",
        b"",
        b"X",
        b"WAIT_FOR_EXECUTED_GTID_SETS",
        b"SQL_CALC_FOUND_RX",
        b"SQL_CALC_FOUND_R",
        b"RELEASE_ALL_LOCKSMITH",
    ];
    for word in misses {
        assert_eq!(keyword(word), None, "{}", String::from_utf8_lossy(word));
    }
}

#[test]
fn deep_nesting_is_handled_without_recursion() {
    let blocks = "BEGIN NOT ATOMIC ".repeat(200_000) + "START TRANSACTION";
    check(&blocks, Primary, &[E::Begin]);
    let parens = "(".repeat(500_000) + "SELECT 1";
    check(&parens, Replica, &[]);
    let body = "CREATE PROCEDURE p() ".to_owned() + &"BEGIN ".repeat(200_000) + "; COMMIT";
    check(&body, Primary, &[]);
}

#[test]
fn unquote_undoubles_quotes() {
    assert_eq!(unquote(b"plain", b'`'), Cow::Borrowed(b"plain".as_slice()));
    assert_eq!(unquote(b"a``b````c", b'`').as_ref(), b"a`b``c");
}
