//! The databases a statement names, for routing by tenant: schema qualifiers (`db.t`,
//! `db.t.c`), `CREATE`/`DROP DATABASE`, and a `lagless tenant=<id>` hint.
//!
//! Only the lexer is used, so the scan sees through comments and strings as the classifier
//! does. A qualifier cannot be told from a table alias here (`u.id`); the router keeps only the
//! names shaped like a tenant's database, which is why such names are reserved for tenants.

use super::SqlMode;
use super::keywords::{Kw, is_name, keyword};
use super::lexer::Tok;
use super::parser::Parser;

/// What a COM_QUERY payload says about the databases it touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaRefs {
    /// Names used as schema qualifiers, each once, in order of appearance.
    pub qualified: Vec<String>,
    /// `CREATE DATABASE|SCHEMA [IF NOT EXISTS] <name>`.
    pub creates: Option<String>,
    /// `DROP DATABASE|SCHEMA [IF EXISTS] <name>`.
    pub drops: Option<String>,
    /// The value of a `lagless tenant=<id>` comment, unchecked (the last one wins).
    pub tenant_hint: Option<String>,
    /// The payload could not be read to its end (an unterminated string or comment).
    pub malformed: bool,
    /// Some qualifier or database name was left out of `qualified` by the filter of
    /// [`schema_refs_where`] (another database, or a table alias): the statement names
    /// something, so it cannot run just anywhere.
    pub names_others: bool,
    /// A statement changes the schema (`ALTER`, `CREATE`, `DROP`, `RENAME`, `TRUNCATE`;
    /// temporary tables aside).
    pub ddl: bool,
}

/// Scans a COM_QUERY payload (all its statements) under the session's `sql_mode`.
pub fn schema_refs(sql: &[u8], mode: SqlMode) -> SchemaRefs {
    schema_refs_where(sql, mode, |_| true)
}

/// As [`schema_refs`], keeping only the qualifiers `keep` accepts: the others (table aliases,
/// mostly) cost no allocation.
pub fn schema_refs_where(sql: &[u8], mode: SqlMode, keep: impl Fn(&str) -> bool) -> SchemaRefs {
    let mut p = Parser::new(sql, mode);
    let mut refs = SchemaRefs::default();
    // The token before the current one, and whether the one before that was a `.`, so that
    // only the first part of `a.b.c` counts.
    let mut prev: Option<Tok<'_>> = None;
    let mut prev_after_dot = false;
    let mut statement_start = true;
    loop {
        let tok = p.bump();
        match tok {
            Tok::End | Tok::Unterminated => break,
            Tok::Punct(b';') => {
                statement_start = true;
                prev = None;
                continue;
            }
            Tok::Punct(b'.') if !prev_after_dot && qualifies(prev, p.peek()) => {
                match prev.and_then(|t| name_if(t, &keep)) {
                    Some(name) if !refs.qualified.contains(&name) => refs.qualified.push(name),
                    Some(_) => {}
                    None => refs.names_others = true,
                }
            }
            Tok::Word(w) if statement_start => {
                let create = keyword(w) == Some(Kw::Create);
                let drop = is_name(w, b"DROP");
                let temporary = matches!(p.peek(), Tok::Word(t) if is_name(t, b"TEMPORARY"));
                refs.ddl |= !temporary
                    && (create
                        || drop
                        || [&b"ALTER"[..], b"RENAME", b"TRUNCATE"]
                            .iter()
                            .any(|k| is_name(w, k)));
                if create || drop {
                    database_statement(&mut p, create, &mut refs);
                }
            }
            _ => {}
        }
        statement_start = false;
        prev_after_dot = prev == Some(Tok::Punct(b'.'));
        prev = Some(tok);
    }
    refs.malformed = p.lex.malformed;
    refs.tenant_hint = p.lex.hints.tenant.take();
    refs
}

/// A `.` between these tokens makes the first a qualifier: `name.name` or `name.*`.
fn qualifies(before: Option<Tok<'_>>, after: Tok<'_>) -> bool {
    matches!(before, Some(Tok::Word(_) | Tok::Ident(..)))
        && matches!(after, Tok::Word(_) | Tok::Ident(..) | Tok::Punct(b'*'))
}

/// After `CREATE` or `DROP`: `DATABASE|SCHEMA [IF [NOT] EXISTS] <name>`.
fn database_statement(p: &mut Parser<'_>, create: bool, refs: &mut SchemaRefs) {
    if !(p.eat_kw(Kw::Database) || p.eat_kw(Kw::Schema)) {
        return;
    }
    if p.eat_kw(Kw::If) {
        let _ = p.eat_kw(Kw::Not);
        if matches!(p.peek(), Tok::Word(w) if is_name(w, b"EXISTS")) {
            p.bump();
        }
    }
    let Some(name) = name_of(p.peek()) else {
        return;
    };
    p.bump();
    if create {
        refs.creates = Some(name);
    } else {
        refs.drops = Some(name);
    }
}

/// The name a word or quoted identifier stands for; `None` for anything else, or a name that
/// is not UTF-8 (never a tenant's).
fn name_of(tok: Tok<'_>) -> Option<String> {
    name_if(tok, &|_| true)
}

/// As [`name_of`], for names `keep` accepts (checked before any allocation).
fn name_if(tok: Tok<'_>, keep: &impl Fn(&str) -> bool) -> Option<String> {
    match tok {
        Tok::Word(w) => std::str::from_utf8(w)
            .ok()
            .filter(|name| keep(name))
            .map(str::to_owned),
        Tok::Ident(raw, quote) => {
            let text = std::str::from_utf8(raw).ok()?;
            let q = char::from(quote);
            let name = text.replace(&format!("{q}{q}"), &q.to_string());
            keep(&name).then_some(name)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(sql: &str) -> SchemaRefs {
        schema_refs(sql.as_bytes(), SqlMode::default())
    }

    #[test]
    fn schema_changes_are_told_from_other_statements() {
        for sql in [
            "ALTER TABLE t_1.a ADD c INT",
            "create table a (id int)",
            "SELECT 1; DROP TABLE a",
            "RENAME TABLE a TO b",
            "truncate a",
            "CREATE DATABASE t_2",
        ] {
            assert!(refs(sql).ddl, "{sql}");
        }
        for sql in [
            "SELECT * FROM alter_log",
            "INSERT INTO t_1.a VALUES (1)",
            "CREATE TEMPORARY TABLE x (id INT)",
            "DROP TEMPORARY TABLE x",
            "SELECT 'ALTER TABLE a'",
        ] {
            assert!(!refs(sql).ddl, "{sql}");
        }
    }

    #[test]
    fn qualifiers_are_found_once_and_only_first_parts_count() {
        let r = refs("SELECT t_1.a.id, b.x FROM t_1.a JOIN `t_2`.`b` b ON 1.5 > 0");
        assert_eq!(r.qualified, vec!["t_1", "b", "t_2", "1"]);
        assert_eq!(refs("SELECT a.b.c FROM x").qualified, vec!["a"]);
    }

    #[test]
    fn strings_and_comments_are_not_qualifiers() {
        let r = refs("SELECT 't_1.a', \"t_2.b\" /* t_3.c */ FROM x -- t_4.d\n");
        assert!(r.qualified.is_empty(), "{r:?}");
        let ansi = schema_refs(
            b"SELECT \"t_5\".\"x\"",
            SqlMode {
                ansi_quotes: true,
                ..SqlMode::default()
            },
        );
        assert_eq!(ansi.qualified, vec!["t_5"]);
    }

    #[test]
    fn database_statements() {
        assert_eq!(refs("CREATE DATABASE t_7").creates.as_deref(), Some("t_7"));
        assert_eq!(
            refs("create schema if not exists `t_8`").creates.as_deref(),
            Some("t_8")
        );
        assert_eq!(
            refs("DROP DATABASE IF EXISTS t_9").drops.as_deref(),
            Some("t_9")
        );
        assert_eq!(refs("CREATE TABLE t_1.x (a int)").creates, None);
        assert_eq!(refs("CREATE TABLE t_1.x (a int)").qualified, vec!["t_1"]);
        assert_eq!(
            refs("SELECT 1; DROP SCHEMA t_3").drops.as_deref(),
            Some("t_3")
        );
    }

    #[test]
    fn tenant_hints() {
        assert_eq!(
            refs("/* lagless tenant=42 */ SELECT 1")
                .tenant_hint
                .as_deref(),
            Some("42")
        );
        assert_eq!(
            refs("SELECT /*lagless:tenant=abc*/ 1")
                .tenant_hint
                .as_deref(),
            Some("abc")
        );
        assert_eq!(
            refs("/* lagless tenant= */ SELECT 1")
                .tenant_hint
                .as_deref(),
            Some("")
        );
        assert_eq!(refs("SELECT 'lagless tenant=1'").tenant_hint, None);
        assert_eq!(
            refs("/* lagless:consistency=strict */ SELECT 1").tenant_hint,
            None
        );
    }

    #[test]
    fn unterminated_input_is_reported() {
        assert!(refs("SELECT 'abc").malformed);
        assert!(!refs("SELECT 1").malformed);
    }
}
