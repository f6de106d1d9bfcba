//! The per-statement rules: a statement's opening keywords choose a rule, and a scan of the
//! rest finds what pins it to one server.

mod kill;
mod program;
mod read;
mod session;
mod transaction;

use super::keywords::{Kw, LAGLESS_VARIABLE, PRIMARY_VARIABLES, VarScope, is_name, keyword};
use super::lexer::Tok;
use super::parser::{Parser, Stmt};
use super::{KillStatement, LaglessCommand, Target};
use kill::kill;
use program::{create_or_alter, prepare, prepared_text};
use read::{analyze, diagnostics, parenthesised, select, show};
use session::{set, use_database};
use transaction::{begin, end_transaction, start, xa};

#[cfg(test)]
pub(super) use session::unquote;

pub(super) fn invalid(message: &str) -> LaglessCommand {
    LaglessCommand::Invalid(message.to_owned())
}

fn misplaced_lagless_read() -> LaglessCommand {
    invalid(
        "lagless_consistency can only be read on its own: \
         SHOW lagless_consistency or SELECT @@lagless_consistency",
    )
}

/// Classifies one statement, consuming it up to its closing `;` or the end of input.
pub(super) fn statement(p: &mut Parser<'_>) -> Stmt {
    let mut st = Stmt::default();
    let mut anonymous_block = false;
    loop {
        match p.peek() {
            Tok::Punct(b'(') => parenthesised(p, &mut st),
            Tok::Word(word) => {
                if let Some(kw) = keyword(word) {
                    p.bump();
                    if opening(kw, p, &mut st) == Flow::Nested {
                        anonymous_block = true;
                        continue;
                    }
                }
            }
            _ => {}
        }
        break;
    }
    scan_rest(p, &mut st);
    if anonymous_block {
        st.target = Target::Primary;
        // The server runs the block as one statement; the proxy cannot carry out a part of it.
        if st.kill.is_some() {
            st.kill = Some(KillStatement::Unsupported);
        }
    }
    st
}

/// Whether a statement follows at once inside the one just opened.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Done,
    /// `BEGIN NOT ATOMIC`: a MariaDB anonymous block, whose statements really run now.
    Nested,
}

/// Handles a statement's first keyword (already consumed).
fn opening(kw: Kw, p: &mut Parser<'_>, st: &mut Stmt) -> Flow {
    match kw {
        Kw::Select => select(p, st),
        Kw::With | Kw::Values | Kw::Table | Kw::Describe | Kw::Desc | Kw::Explain | Kw::Help => {
            st.target = Target::Replica
        }
        Kw::Analyze => analyze(p, st),
        Kw::Show => show(p, st),
        Kw::Set => set(p, st),
        Kw::Use => use_database(p, st),
        Kw::Begin => return begin(p, st),
        Kw::Start => start(p, st),
        Kw::Commit | Kw::Rollback => end_transaction(kw, p, st),
        Kw::Xa => xa(p, st),
        Kw::Lock => st.effects.locks_tables = matches!(p.peek_kw(), Some(Kw::Table | Kw::Tables)),
        Kw::Unlock => {
            st.effects.unlocks_tables = matches!(p.peek_kw(), Some(Kw::Table | Kw::Tables))
        }
        Kw::Flush => {
            let pairs = [(Kw::Read, Kw::Lock), (Kw::For, Kw::Export)];
            st.effects.locks_tables = p.skip_finding(&pairs);
        }
        Kw::Create | Kw::Alter => create_or_alter(kw, p, st),
        Kw::Get => diagnostics(p, st),
        Kw::Prepare => prepare(p, st),
        Kw::Execute if p.eat_kw(Kw::Immediate) => prepared_text(p, st),
        Kw::Kill => kill(p, st),
        _ => {}
    }
    Flow::Done
}

/// Reads the rest of a statement for anything that pins it to the primary (or to the last
/// backend) and for the effects of functions and variables.
fn scan_rest(p: &mut Parser<'_>, st: &mut Stmt) {
    let mut into = false;
    let mut after_dot = false;
    while !p.at_end() {
        let tok = p.bump();
        match tok {
            // After `.` even a reserved word is a column or table name.
            Tok::Word(word) if !after_dot => scan_word(p, st, word, &mut into),
            Tok::UserVar => user_variable(p, st, into),
            Tok::SysVar(scope, name) => system_variable(st, scope, name),
            Tok::Word(word) => server_table(st, word),
            _ => {}
        }
        after_dot = tok == Tok::Punct(b'.');
    }
}

fn scan_word(p: &mut Parser<'_>, st: &mut Stmt, word: &[u8], into: &mut bool) {
    let Some(kw) = keyword(word) else {
        return;
    };
    match kw {
        Kw::Into => {
            *into = true;
            st.need(Target::Primary);
        }
        // `FOR UPDATE`, `LOCK IN SHARE MODE`, a CTE followed by a write, `EXPLAIN DELETE`.
        Kw::Update | Kw::Delete | Kw::Lock => st.need(Target::Primary),
        Kw::SqlCalcFoundRows => {
            st.need(Target::Primary);
            st.effects.calc_found_rows = true;
        }
        // INSERT() and REPLACE() are also string functions.
        Kw::Insert | Kw::Replace if !p.at_call() => st.need(Target::Primary),
        Kw::For if matches!(p.peek_kw(), Some(Kw::Share | Kw::Connection)) => {
            st.need(Target::Primary)
        }
        Kw::Next | Kw::Previous if p.peek_kw() == Some(Kw::Value) => st.need(Target::Primary),
        _ if kw.is_lock_function() && p.at_call() => {
            st.need(Target::Primary);
            st.effects.user_lock = true;
        }
        _ if kw.is_pinned_function() && p.at_call() => {
            st.need(Target::Primary);
            st.effects.reads_connection = true;
        }
        _ => {}
    }
}

/// User variables live in the session on the primary; `into` is set after `INTO`.
fn user_variable(p: &mut Parser<'_>, st: &mut Stmt, into: bool) {
    st.need(Target::Primary);
    if into || p.peek() == Tok::Assign {
        st.effects.user_variable_write = true;
    }
}

/// `information_schema.GLOBAL_STATUS` and the like, named after a `.`: global counters and
/// settings are the primary's, session ones the last backend's (as for `SHOW`).
fn server_table(st: &mut Stmt, word: &[u8]) {
    if !matches!(word.len(), 13 | 14 | 16) {
        return;
    }
    if is_name(word, b"GLOBAL_STATUS") || is_name(word, b"GLOBAL_VARIABLES") {
        st.need(Target::Primary);
    } else if is_name(word, b"SESSION_STATUS") || is_name(word, b"SESSION_VARIABLES") {
        st.need(Target::LastBackend);
    }
}

fn system_variable(st: &mut Stmt, scope: VarScope, name: &[u8]) {
    if scope == VarScope::Global {
        // A server setting: the primary's is the one the application means.
        st.need(Target::Primary);
    } else if is_name(name, b"warning_count") || is_name(name, b"error_count") {
        st.need(Target::LastBackend);
    } else if is_name(name, LAGLESS_VARIABLE) {
        st.lagless = Some(misplaced_lagless_read());
    } else if PRIMARY_VARIABLES.iter().any(|v| is_name(name, v))
        || name
            .get(..5)
            .is_some_and(|prefix| is_name(prefix, b"gtid_"))
    {
        st.need(Target::Primary);
    }
}
