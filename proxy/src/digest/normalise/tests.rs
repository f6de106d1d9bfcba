use super::*;

fn text(sql: &str) -> String {
    normalise(sql.as_bytes(), SqlMode::default(), 1024).1
}

fn id(sql: &str) -> u64 {
    fingerprint(sql.as_bytes(), SqlMode::default())
}

/// Every statement of `group` has one fingerprint, the one `normalise` gives too.
fn same(group: &[&str]) {
    let first = id(group[0]);
    for sql in group {
        assert_eq!(
            id(sql),
            first,
            "{sql:?} -> {:?} vs {:?}",
            text(sql),
            text(group[0])
        );
        assert_eq!(normalise(sql.as_bytes(), SqlMode::default(), 1024).0, first);
    }
}

#[test]
fn numbers_of_every_kind_are_one_literal() {
    same(&[
        "SELECT * FROM t WHERE a = 1",
        "SELECT * FROM t WHERE a = 12345678901234567890",
        "SELECT * FROM t WHERE a = -1",
        "SELECT * FROM t WHERE a = - 7",
        "SELECT * FROM t WHERE a = +7",
        "SELECT * FROM t WHERE a = 1.5",
        "SELECT * FROM t WHERE a = .5",
        "SELECT * FROM t WHERE a = 1.",
        "SELECT * FROM t WHERE a = -1.5e10",
        "SELECT * FROM t WHERE a = 1E-3",
        "SELECT * FROM t WHERE a = 0x1F",
        "SELECT * FROM t WHERE a = 0b101",
        "SELECT * FROM t WHERE a = ?",
    ]);
    assert_eq!(
        text("SELECT * FROM t WHERE a = -1.5e10"),
        "select * from t where a = ?"
    );
}

#[test]
fn strings_of_every_kind_are_one_literal() {
    same(&[
        "SELECT * FROM t WHERE a = 'x'",
        "SELECT * FROM t WHERE a = \"x\"",
        "SELECT * FROM t WHERE a = ''",
        "SELECT * FROM t WHERE a = 'it''s'",
        "SELECT * FROM t WHERE a = 'it\\'s \\\\ -- not a comment'",
        "SELECT * FROM t WHERE a = \"say \\\"hi\\\"\"",
        "SELECT * FROM t WHERE a = X'0aFF'",
        "SELECT * FROM t WHERE a = x'00'",
        "SELECT * FROM t WHERE a = B'0101'",
        "SELECT * FROM t WHERE a = N'x'",
        "SELECT * FROM t WHERE a = _utf8mb4'x'",
        "SELECT * FROM t WHERE a = 'a' 'b'",
        "SELECT * FROM t WHERE a = 'caf\u{e9} \u{1f600}'",
        "SELECT * FROM t WHERE a = NULL",
        "SELECT * FROM t WHERE a = TRUE",
        "SELECT * FROM t WHERE a = false",
        "SELECT * FROM t WHERE a = 5",
    ]);
}

#[test]
fn quotes_follow_the_sql_mode() {
    let ansi = SqlMode {
        ansi_quotes: true,
        ..SqlMode::default()
    };
    // Under ANSI_QUOTES "a" is a name, kept.
    assert_ne!(
        fingerprint(b"SELECT \"a\" FROM t", ansi),
        fingerprint(b"SELECT \"b\" FROM t", ansi)
    );
    assert_eq!(id("SELECT \"a\" FROM t"), id("SELECT \"b\" FROM t"));
    // Without backslash escapes, 'a\' ends at the second quote.
    let raw = SqlMode {
        no_backslash_escapes: true,
        ..SqlMode::default()
    };
    assert_eq!(
        fingerprint(b"SELECT 'a\\' , b FROM t", raw),
        fingerprint(b"SELECT 1, b FROM t", raw)
    );
}

#[test]
fn lists_of_any_length_are_one() {
    same(&[
        "SELECT * FROM t WHERE id IN (1)",
        "SELECT * FROM t WHERE id IN (1, 2, 3)",
        "SELECT * FROM t WHERE id IN ('a','b')",
        "SELECT * FROM t WHERE id IN (?, ?, ?, ?)",
        "select * from t where id in (-1, 0x2, NULL)",
    ]);
    assert_eq!(
        text("SELECT * FROM t WHERE id IN (1, 2, 3)"),
        "select * from t where id in (...)"
    );
    same(&[
        "INSERT INTO t (a, b) VALUES (1, 'x')",
        "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')",
        "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)",
        "insert into t (a,b) values(1,'x'),(2,'y')",
    ]);
    assert_eq!(
        text("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')"),
        "insert into t(a, b) values (...)"
    );
    // Rows with expressions collapse too.
    same(&[
        "INSERT INTO t VALUES (1, NOW())",
        "INSERT INTO t VALUES (1, NOW()), (2, NOW()), (3, NOW())",
    ]);
    assert_eq!(
        text("INSERT INTO t VALUES (1, NOW()), (2, NOW())"),
        "insert into t values (?, now())"
    );
    same(&[
        "INSERT INTO t VALUES (1, 2) ON DUPLICATE KEY UPDATE b = 3",
        "INSERT INTO t VALUES (1, 2), (3, 4) ON DUPLICATE KEY UPDATE b = 5",
    ]);
}

#[test]
fn comments_whitespace_and_case_go() {
    same(&[
        "SELECT a FROM t WHERE b = 1",
        "select a from t where b = 1",
        "  SELECT\n\ta\r\n FROM   t WHERE b=1  ;",
        "/* lagless:route=primary */ SELECT a FROM t WHERE b = 1",
        "SELECT a -- why\nFROM t # more\nWHERE b = 1",
        "SELECT /*+ MAX_EXECUTION_TIME(1) */ a FROM t WHERE b = 1",
        "SELECT a FROM t WHERE b = 1;",
    ]);
    // Executable comments are code.
    assert_eq!(
        text("SELECT /*!40001 SQL_NO_CACHE */ a FROM t"),
        "select sql_no_cache a from t"
    );
}

#[test]
fn different_statements_differ() {
    let statements = [
        "SELECT a FROM t WHERE b = 1",
        "SELECT a FROM u WHERE b = 1",
        "SELECT b FROM t WHERE b = 1",
        "SELECT a FROM t WHERE c = 1",
        "SELECT a FROM t WHERE b > 1",
        "SELECT a FROM t WHERE b >= 1",
        "SELECT a FROM t WHERE b = 1 AND c = 2",
        "SELECT a FROM t WHERE b = c",
        "SELECT a FROM t WHERE b - 1 = 2",
        "SELECT a FROM t WHERE b IS NULL",
        "SELECT a FROM t WHERE b IS NOT NULL",
        "SELECT a FROM t WHERE b IN (SELECT c FROM u)",
        "SELECT a FROM `t` WHERE b = 1",
        "SELECT a FROM `T` WHERE b = 1",
        "SELECT a FROM t1 WHERE b = 1",
        "SELECT a FROM 1t WHERE b = 1",
        "SELECT a, b FROM t WHERE b = 1",
        "SELECT a FROM t WHERE b = 1 LIMIT 1",
        "UPDATE t SET a = 1 WHERE b = 1",
        "DELETE FROM t WHERE b = 1",
        "INSERT INTO t VALUES (1)",
        "INSERT INTO t VALUES (1, NOW())",
        "INSERT INTO u VALUES (1)",
        "SELECT @a",
        "SELECT @b",
        "SELECT @@autocommit",
        "SELECT a FROM t; SELECT b FROM t",
        "SELECT a FROM t WHERE b = f(c)",
    ];
    let mut seen = std::collections::HashMap::new();
    for sql in statements {
        if let Some(other) = seen.insert(id(sql), sql) {
            panic!(
                "{sql:?} and {other:?} share a fingerprint ({:?})",
                text(sql)
            );
        }
    }
}

#[test]
fn texts_read_well() {
    assert_eq!(
        text("SELECT COUNT(*), t.a FROM db.t JOIN u ON t.id = u.id WHERE t.x <> 'y' AND u.z <= -3"),
        "select count(*), t.a from db.t join u on t.id = u.id where t.x <> ? and u.z <= ?"
    );
    assert_eq!(text("SELECT 1 - 2"), "select ? - ?");
    assert_eq!(
        text("SELECT a FROM t WHERE b IS NULL"),
        "select a from t where b is null"
    );
    assert_eq!(
        text("SELECT `Weird Name` FROM t"),
        "select `Weird Name` from t"
    );
}

#[test]
fn broken_input_still_has_a_fingerprint() {
    for sql in [
        "",
        "SELECT 'unterminated",
        "SELECT `unterminated",
        "SELECT /* unterminated",
        "SELECT ((((",
        "SELECT )))",
        "((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))))",
        "-",
        "0x",
        "@",
    ] {
        let (a, _) = normalise(sql.as_bytes(), SqlMode::default(), 64);
        assert_eq!(a, id(sql));
    }
    assert_ne!(id("SELECT ((1"), id("SELECT 1"));
}

#[test]
fn text_is_cut_on_a_character_boundary() {
    let long = format!("SELECT {} FROM t", "\u{e9}".repeat(500));
    let (_, t) = normalise(long.as_bytes(), SqlMode::default(), 100);
    assert!(t.len() <= 100, "{}", t.len());
    assert!(t.ends_with("..."));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A string literal as a driver writes one: quotes and backslashes escaped.
    fn quoted(s: &str) -> String {
        let mut out = String::from("'");
        for c in s.chars() {
            match c {
                '\'' => out.push_str("\\'"),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }

    proptest! {
        #[test]
        fn any_literal_gives_the_placeholder_fingerprint(
            n in any::<i64>(),
            f in any::<f64>().prop_filter("finite", |f| f.is_finite()),
            s in ".*",
            list in prop::collection::vec(any::<u32>(), 1..20),
        ) {
            let shape = id("SELECT a FROM t WHERE b = ? AND c IN (?)");
            let list = list.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
            for lit in [n.to_string(), format!("{f:e}"), format!("{f}"), quoted(&s), format!("0x{n:x}")] {
                let sql = format!("SELECT a FROM t WHERE b = {lit} AND c IN ({list})");
                prop_assert_eq!(id(&sql), shape, "{} -> {}", sql, text(&sql));
            }
        }
    }
}

#[test]
fn huge_statements_make_a_bounded_text_with_the_same_fingerprint() {
    let rows = vec!["(1, 'abc', NOW())"; 50_000].join(", ");
    let huge = format!("INSERT INTO t (a, b, c) VALUES {rows}");
    let (id_huge, t) = normalise(huge.as_bytes(), SqlMode::default(), 64);
    assert_eq!(
        id_huge,
        id("INSERT INTO t (a, b, c) VALUES (2, 'x', NOW())")
    );
    assert_eq!(t, "insert into t(a, b, c) values (?, ?, now())");
    let names = (0..10_000)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let wide = format!("SELECT {names} FROM t WHERE a IN (1, 2, 3)");
    let (_, t) = normalise(wide.as_bytes(), SqlMode::default(), 64);
    assert!(t.len() <= 64 && t.starts_with("select c0, c1, c2"), "{t}");
}
