//! Properties over generated input: no panic on any bytes, comments and string literals never
//! change a verdict, and checks that these properties can fail.

use proptest::prelude::*;

use super::cases::{EFFECTS, LAST_BACKEND, PRIMARY, READS};
use crate::route::classify::Target::Replica;
use crate::route::classify::{Classification, RouteHint, SqlMode, classify, classify_with};

/// Statements whose classification must not depend on the comments around them.
fn corpus() -> Vec<&'static str> {
    let mut all: Vec<&str> = READS
        .iter()
        .chain(PRIMARY)
        .chain(LAST_BACKEND)
        .copied()
        .collect();
    all.extend(EFFECTS.iter().map(|(sql, ..)| *sql));
    all
}

/// An ordinary comment, or whitespace. Its alphabet has no `*`, `!` or `:`, so it can
/// neither close early, turn executable nor carry a hint.
fn comment() -> impl Strategy<Value = String> {
    let body = "[a-zA-Z0-9 _=;'\"`().,#@/-]{0,24}";
    prop_oneof![
        body.prop_map(|b| format!("/*{b}*/")),
        body.prop_map(|b| format!("-- {b}\n")),
        body.prop_map(|b| format!("#{b}\n")),
        "[ \t\r\n]{1,3}",
    ]
}

/// Quotes `content` as a literal with `quote`, escaping by backslash or by doubling.
fn quote_literal(content: &str, quote: char, doubling: bool) -> String {
    let mut out = String::from(quote);
    for c in content.chars() {
        if c == quote {
            out.push(if doubling { quote } else { '\\' });
        } else if c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push(quote);
    out
}

/// Reads with one `{}` where a literal goes.
const READ_TEMPLATES: &[&str] = &[
    "SELECT * FROM t WHERE name = {}",
    "SELECT {} AS label, id FROM t ORDER BY id",
    "WITH c AS (SELECT {} AS x) SELECT x FROM c",
    "SHOW TABLES LIKE {}",
    "SELECT CONCAT({}, name) FROM users LIMIT 1",
    "/* lagless:consistency=session */ SELECT id FROM t WHERE a IN ({}, 'b')",
];

/// What a hostile or unlucky literal might contain.
const STRING_CONTENTS: &[&str] = &[
    "FOR UPDATE",
    "LOCK IN SHARE MODE",
    "INTO @x",
    "INTO OUTFILE '/tmp/f'",
    "@x := 1",
    "GET_LOCK('a', 1)",
    "LAST_INSERT_ID()",
    "; INSERT INTO t VALUES (1); --",
    "DELETE FROM t",
    "UPDATE",
    "*/",
    "/*",
    "/*!",
    "/*M!",
    "-- ",
    "#",
    "\n",
    "'",
    "\"",
    "`",
    "\\",
    "''",
    "lagless:route=primary",
    "lagless:consistency=eventual",
    "@@warning_count",
    "@@lagless_consistency",
    "SHOW WARNINGS",
    "BEGIN",
    "COMMIT",
    "NEXT VALUE FOR s",
    "SQL_CALC_FOUND_ROWS",
    "SET autocommit=0",
    " ",
    "é",
];

/// Pieces of SQL that reach the lexer's and parser's corners when glued at random.
const FRAGMENTS: &[&str] = &[
    "SELECT",
    "select",
    " ",
    "'",
    "\"",
    "`",
    "\\",
    "/*",
    "*/",
    "/*!",
    "/*M!",
    "50110",
    "--",
    "-- ",
    "#",
    "\n",
    ";",
    "(",
    ")",
    ",",
    "=",
    ":=",
    "@",
    "@@",
    "session.",
    "global.",
    "FOR",
    "UPDATE",
    "SET",
    "BEGIN",
    "NOT",
    "ATOMIC",
    "END",
    "CREATE",
    "PROCEDURE",
    "CASE",
    "IF",
    "INTO",
    "autocommit",
    "lagless_consistency",
    "lagless:consistency=",
    "lagless:route=",
    "bounded(",
    "ms",
    "0",
    "1",
    "NAMES",
    "USE",
    "x",
    "t",
    ".",
    "é",
    "\u{0}",
    "SHOW",
    "WARNINGS",
    "GET_LOCK",
    "GET",
    "DIAGNOSTICS",
    "WITH",
    "TABLE",
    "TEMPORARY",
    "LOCK",
    "UNLOCK",
    "TABLES",
    "COMMIT",
    "AND",
    "CHAIN",
    "XA",
    "START",
    "TRANSACTION",
    "DEFAULT",
    "CHARACTER",
    "NEXT",
    "VALUE",
    "FULL",
    "ANALYZE",
    "FORMAT",
    "EXPLAIN",
];

const MODES: [SqlMode; 4] = [
    SqlMode {
        no_backslash_escapes: false,
        ansi_quotes: false,
    },
    SqlMode {
        no_backslash_escapes: true,
        ansi_quotes: false,
    },
    SqlMode {
        no_backslash_escapes: false,
        ansi_quotes: true,
    },
    SqlMode {
        no_backslash_escapes: true,
        ansi_quotes: true,
    },
];

/// Invariants any classification must hold.
fn assert_sound(got: &Classification) {
    if got.route_hint == Some(RouteHint::Replica) {
        assert_eq!(got.target, Replica, "{got:?}");
    }
    if got.effects.session_set.is_some() || got.effects.begins_transaction {
        assert_ne!(got.target, Replica, "{got:?}");
    }
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        for mode in MODES {
            assert_sound(&classify_with(&bytes, mode));
        }
    }

    #[test]
    fn never_panics_on_sql_like_soup(
        parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..48),
        spaces in prop::collection::vec(any::<bool>(), 48),
    ) {
        let mut sql = String::new();
        for (part, space) in parts.iter().zip(&spaces) {
            sql.push_str(part);
            if *space {
                sql.push(' ');
            }
        }
        for mode in MODES {
            assert_sound(&classify_with(sql.as_bytes(), mode));
        }
    }

    #[test]
    fn comments_around_a_statement_change_nothing(
        sql in prop::sample::select(corpus()),
        before in prop::collection::vec(comment(), 0..3),
        after in prop::collection::vec(comment(), 0..3),
    ) {
        let wrapped = format!("{}{sql} {}", before.concat(), after.concat());
        prop_assert_eq!(classify(wrapped.as_bytes()), classify(sql.as_bytes()), "{:?}", wrapped);
    }

    #[test]
    fn keywords_inside_string_literals_keep_reads_reads(
        template in prop::sample::select(READ_TEMPLATES),
        words in prop::collection::vec(prop::sample::select(STRING_CONTENTS), 1..6),
        quote in prop::sample::select(vec!['\'', '"']),
        doubling in any::<bool>(),
    ) {
        let base = classify(template.replace("{}", "''").as_bytes());
        prop_assert_eq!(base.target, Replica);
        let literal = quote_literal(&words.join(" "), quote, doubling);
        let sql = template.replace("{}", &literal);
        prop_assert_eq!(classify(sql.as_bytes()), base, "{}", sql);
    }

    #[test]
    fn keywords_inside_quoted_identifiers_keep_reads_reads(
        words in prop::collection::vec(prop::sample::select(STRING_CONTENTS), 1..6),
    ) {
        let ident = quote_literal(&words.join(" "), '`', true);
        let sql = format!("SELECT {ident} FROM t WHERE id = 1");
        let got = classify(sql.as_bytes());
        prop_assert_eq!(got.target, Replica, "{}", sql);
        prop_assert!(got.effects.is_empty() && got.lagless.is_none() && got.hint.is_none());
    }
}

/// The properties above would notice a literal that leaks into the code around it.
#[test]
fn the_string_property_can_fail() {
    let template = READ_TEMPLATES[0];
    let base = classify(template.replace("{}", "''").as_bytes());
    let leaked = template.replace("{}", "'' FOR UPDATE");
    assert_ne!(classify(leaked.as_bytes()), base);
    let broken_escape = template.replace("{}", "'\\' FOR UPDATE -- '");
    assert_eq!(
        classify(broken_escape.as_bytes()),
        base,
        "the backslash escapes the quote"
    );
    let unescaped = template.replace("{}", &format!("'{}'", "it's FOR UPDATE"));
    assert_ne!(classify(unescaped.as_bytes()), base);
}

/// And the comment property would notice a comment that is code or never ends.
#[test]
fn the_comment_property_can_fail() {
    assert_ne!(classify(b"SELECT 1 /*!FOR UPDATE*/"), classify(b"SELECT 1"));
    assert_ne!(classify(b"SELECT 1 /* open"), classify(b"SELECT 1"));
    assert_ne!(
        classify(b"/* lagless:route=primary */ SELECT 1"),
        classify(b"SELECT 1")
    );
}
