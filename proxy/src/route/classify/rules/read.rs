//! Reads: `SELECT` and its relatives, `SHOW`, `ANALYZE`, `GET DIAGNOSTICS`.

use super::misplaced_lagless_read;
use crate::route::classify::keywords::{Kw, LAGLESS_VARIABLE, is_name, keyword};
use crate::route::classify::lexer::Tok;
use crate::route::classify::parser::{Parser, Stmt};
use crate::route::classify::{LaglessCommand, Target};

/// `(SELECT ...) UNION (SELECT ...)` and the like.
pub(super) fn parenthesised(p: &mut Parser<'_>, st: &mut Stmt) {
    while p.eat(Tok::Punct(b'(')) {}
    if matches!(
        p.peek_kw(),
        Some(Kw::Select | Kw::With | Kw::Values | Kw::Table)
    ) {
        st.target = Target::Replica;
    }
}

pub(super) fn select(p: &mut Parser<'_>, st: &mut Stmt) {
    st.target = Target::Replica;
    if let Tok::SysVar(_, name) = p.peek()
        && is_name(name, LAGLESS_VARIABLE)
    {
        p.bump();
        st.lagless = Some(if p.at_end() {
            LaglessCommand::ShowConsistency
        } else {
            misplaced_lagless_read()
        });
    }
}

/// `ANALYZE SELECT` runs and profiles a read; `ANALYZE TABLE` and `ANALYZE UPDATE` write.
pub(super) fn analyze(p: &mut Parser<'_>, st: &mut Stmt) {
    if p.eat_kw(Kw::Format) && p.eat(Tok::Punct(b'=')) && !p.at_end() {
        p.bump();
    }
    if p.peek() == Tok::Punct(b'(')
        || matches!(p.peek_kw(), Some(Kw::Select | Kw::With | Kw::Values))
    {
        st.target = Target::Replica;
    }
}

pub(super) fn show(p: &mut Parser<'_>, st: &mut Stmt) {
    st.target = Target::Replica;
    let Tok::Word(word) = p.peek() else {
        return;
    };
    if is_name(word, LAGLESS_VARIABLE) {
        p.bump();
        st.lagless = Some(if p.at_end() {
            LaglessCommand::ShowConsistency
        } else {
            misplaced_lagless_read()
        });
        return;
    }
    match keyword(word) {
        Some(Kw::Warnings | Kw::Errors | Kw::Count | Kw::Profile | Kw::Profiles) => {
            st.need(Target::LastBackend)
        }
        // Session counters and settings are those of the backend that served the session;
        // global ones are the primary's, the server the application believes it talks to.
        Some(Kw::Status | Kw::Variables) => st.need(Target::LastBackend),
        Some(Kw::Session | Kw::Local) => {
            p.bump();
            if matches!(p.peek_kw(), Some(Kw::Status | Kw::Variables)) {
                st.need(Target::LastBackend);
            }
        }
        Some(Kw::Global) => {
            p.bump();
            if matches!(p.peek_kw(), Some(Kw::Status | Kw::Variables)) {
                st.need(Target::Primary);
            }
        }
        // These describe one server (its binlog, replication threads, connections): the
        // application means the primary.
        Some(
            Kw::Master
            | Kw::Binary
            | Kw::Binlog
            | Kw::Relaylog
            | Kw::Slave
            | Kw::Replica
            | Kw::Replicas
            | Kw::All
            | Kw::Processlist
            | Kw::Explain
            | Kw::Analyze,
        ) => st.need(Target::Primary),
        Some(Kw::Full) => {
            p.bump();
            if p.peek_kw() == Some(Kw::Processlist) {
                st.need(Target::Primary);
            }
        }
        _ => {}
    }
}

/// `GET [CURRENT | STACKED] DIAGNOSTICS`: reads the previous statement's diagnostics area and
/// assigns them to variables.
pub(super) fn diagnostics(p: &mut Parser<'_>, st: &mut Stmt) {
    if !matches!(
        p.peek_kw(),
        Some(Kw::Diagnostics | Kw::Current | Kw::Stacked)
    ) {
        return;
    }
    st.target = Target::LastBackend;
    while !p.at_end() {
        if p.bump() == Tok::UserVar {
            st.effects.user_variable_write = true;
        }
    }
}
