//! Transactions: `BEGIN`, `START TRANSACTION`, `COMMIT`, `ROLLBACK`, `XA`.

use super::Flow;
use crate::route::classify::keywords::Kw;
use crate::route::classify::parser::{Parser, Stmt};

pub(super) fn begin(p: &mut Parser<'_>, st: &mut Stmt) -> Flow {
    if p.eat_kw(Kw::Not) {
        return if p.eat_kw(Kw::Atomic) {
            Flow::Nested
        } else {
            Flow::Done
        };
    }
    p.eat_kw(Kw::Work);
    st.effects.begins_transaction = p.at_end();
    Flow::Done
}

pub(super) fn start(p: &mut Parser<'_>, st: &mut Stmt) {
    if p.eat_kw(Kw::Transaction) {
        st.effects.begins_transaction = true;
        st.effects.read_only_transaction = p.skip_finding(&[(Kw::Read, Kw::Only)]);
    }
}

/// `COMMIT`/`ROLLBACK [WORK] [AND [NO] CHAIN] [[NO] RELEASE]`; `ROLLBACK ... TO` keeps the
/// transaction open.
pub(super) fn end_transaction(kw: Kw, p: &mut Parser<'_>, st: &mut Stmt) {
    p.eat_kw(Kw::Work);
    if kw == Kw::Rollback && p.peek_kw() == Some(Kw::To) {
        return;
    }
    st.effects.ends_transaction = true;
    st.effects.begins_transaction = p.skip_finding(&[(Kw::And, Kw::Chain)]);
}

pub(super) fn xa(p: &mut Parser<'_>, st: &mut Stmt) {
    match p.peek_kw() {
        Some(Kw::Start | Kw::Begin) => st.effects.begins_transaction = true,
        Some(Kw::Commit | Kw::Rollback) => st.effects.ends_transaction = true,
        _ => {}
    }
}
