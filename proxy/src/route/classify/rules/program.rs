//! Text whose statements run later: stored programs (`CREATE PROCEDURE ...`), whose bodies
//! hold `;`s of their own, and SQL-level prepared statements.

use crate::route::classify::keywords::{Kw, is_name, keyword};
use crate::route::classify::lexer::Tok;
use crate::route::classify::parser::{Parser, Stmt};
use crate::route::classify::{SessionSet, Target, classify_with};

/// `PREPARE name FROM ...`: the statement runs later with `EXECUTE`, on the primary, where the
/// prepared statement lives.
pub(super) fn prepare(p: &mut Parser<'_>, st: &mut Stmt) {
    while !p.at_end() {
        if let Tok::Word(word) = p.bump()
            && is_name(word, b"FROM")
        {
            return prepared_text(p, st);
        }
    }
}

/// The text of an SQL-level prepared statement (`PREPARE ... FROM 'text'`, `EXECUTE IMMEDIATE
/// 'text'`): state it leaves behind exists only on the primary that runs it, so any such
/// effect (a `SET` too: its values may be bound later) pins the session. Text that is not a
/// literal comes from a user variable, which pinned the session already.
pub(super) fn prepared_text(p: &mut Parser<'_>, st: &mut Stmt) {
    st.need(Target::Primary);
    if let Tok::Str(raw) = p.peek() {
        let inner = classify_with(raw, p.lex.mode);
        let e = inner.effects;
        if e.session_set.is_some()
            || e.creates_temp_table
            || e.locks_tables
            || e.user_lock
            || e.user_variable_write
            || e.use_database.is_some()
            || e.autocommit.is_some()
        {
            st.effects.session_set = Some(SessionSet::NotReplayable);
        }
        p.bump();
    }
}

/// Finds what is created or altered: a temporary table, or a stored program whose body holds
/// `;`s of its own.
pub(super) fn create_or_alter(kw: Kw, p: &mut Parser<'_>, st: &mut Stmt) {
    let mut temporary = false;
    while !p.at_end() {
        match p.peek() {
            Tok::Punct(b'(') => return,
            Tok::Word(word) => match keyword(word) {
                Some(Kw::Temporary) => temporary = true,
                Some(Kw::Table) => {
                    st.effects.creates_temp_table = temporary && kw == Kw::Create;
                    return;
                }
                Some(Kw::Procedure | Kw::Function | Kw::Trigger | Kw::Event | Kw::Package) => {
                    return skip_stored_program(p);
                }
                Some(Kw::View | Kw::Index | Kw::Database | Kw::Schema | Kw::User | Kw::Role) => {
                    return;
                }
                _ => {}
            },
            _ => {}
        }
        p.bump();
    }
}

/// Consumes a stored-program definition: the `;`s inside `BEGIN ... END` belong to its body,
/// and nothing in the body runs now. `CASE ... END` nests as well; `END IF`, `END LOOP`,
/// `END WHILE`, `END REPEAT` and `END FOR` close blocks that were not counted.
fn skip_stored_program(p: &mut Parser<'_>) {
    let mut depth = 0usize;
    let mut after_dot = false;
    loop {
        let tok = p.peek();
        match tok {
            Tok::End | Tok::Unterminated => return,
            Tok::Punct(b';') if depth == 0 => return,
            _ => {}
        }
        p.bump();
        if let Tok::Word(word) = tok
            && !after_dot
        {
            match keyword(word) {
                Some(Kw::Begin | Kw::Case) => depth += 1,
                Some(Kw::End) => match p.peek_kw() {
                    Some(Kw::If | Kw::Loop | Kw::While | Kw::Repeat | Kw::For) => {
                        p.bump();
                    }
                    next => {
                        if next == Some(Kw::Case) {
                            p.bump();
                        }
                        depth = depth.saturating_sub(1);
                    }
                },
                _ => {}
            }
        }
        after_dot = tok == Tok::Punct(b'.');
    }
}
