//! `KILL [HARD | SOFT] [CONNECTION | QUERY] <id | CONNECTION_ID()>`, which the session carries
//! out itself.

use crate::route::classify::keywords::{Kw, keyword};
use crate::route::classify::lexer::Tok;
use crate::route::classify::parser::{Parser, Stmt};
use crate::route::classify::{Kill, KillStatement, Victim};

pub(super) fn kill(p: &mut Parser<'_>, st: &mut Stmt) {
    let kill = kill_form(p);
    // Unterminated input is a syntax error on the server: nothing runs.
    let ends = matches!(p.peek(), Tok::End | Tok::Punct(b';'));
    st.kill = Some(match kill {
        Some(kill) if ends => KillStatement::Kill(kill),
        // `KILL USER u`, `KILL QUERY ID n`, an expression: `scan_rest` reads the rest.
        _ => KillStatement::Unsupported,
    });
}

/// Reads what follows `KILL`; `None` for a form the proxy does not handle.
fn kill_form(p: &mut Parser<'_>) -> Option<Kill> {
    if matches!(p.peek_kw(), Some(Kw::Hard | Kw::Soft)) {
        p.bump();
    }
    let query_only = p.eat_kw(Kw::Query);
    if !query_only {
        p.eat_kw(Kw::Connection);
    }
    let Tok::Word(word) = p.peek() else {
        return None;
    };
    if keyword(word) == Some(Kw::ConnectionId) {
        p.bump();
        let call = p.eat(Tok::Punct(b'(')) && p.eat(Tok::Punct(b')'));
        return call.then_some(Kill {
            victim: Victim::Own,
            query_only,
        });
    }
    let id = thread_id(word)?;
    p.bump();
    Some(Kill {
        victim: Victim::Id(id),
        query_only,
    })
}

/// A plain decimal connection id; anything else (hex, an exponent, an overflow) is not one.
fn thread_id(word: &[u8]) -> Option<u32> {
    if !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(word).ok()?.parse().ok()
}
