//! Statements that change session state: `SET` and `USE`.

use std::borrow::Cow;

use super::{invalid, scan_word, system_variable, user_variable};
use crate::route::classify::keywords::{Kw, LAGLESS_VARIABLE, VarScope, is_name, keyword};
use crate::route::classify::lexer::Tok;
use crate::route::classify::parser::{Parser, Stmt};
use crate::route::classify::{LaglessCommand, SessionSet};
use crate::route::consistency::ParseConsistencyError;

pub(super) fn use_database(p: &mut Parser<'_>, st: &mut Stmt) {
    let name = match p.peek() {
        Tok::Word(word) => Cow::Borrowed(word),
        Tok::Ident(raw, quote) => unquote(raw, quote),
        _ => return,
    };
    p.bump();
    match String::from_utf8(name.into_owned()) {
        Ok(name) => st.effects.use_database = Some(name),
        Err(_) => st.effects.session_set = Some(SessionSet::NotReplayable),
    }
}

/// Undoubles the quotes inside a quoted identifier.
pub(in crate::route::classify) fn unquote(raw: &[u8], quote: u8) -> Cow<'_, [u8]> {
    if !raw.contains(&quote) {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    while let Some(b) = bytes.next() {
        out.push(b);
        if b == quote {
            bytes.next();
        }
    }
    Cow::Owned(out)
}

/// What the assignments of one `SET` add up to.
struct SetList {
    /// The last `GLOBAL`/`SESSION` modifier, which applies to the assignments after it.
    scope: VarScope,
    assignments: usize,
    session: bool,
    global: bool,
    replayable: bool,
    lagless: Option<LaglessCommand>,
    /// The last plain number assigned to the session's `wait_timeout`.
    wait_timeout: Option<u64>,
}

impl SetList {
    /// Marks session state this classifier cannot describe.
    fn opaque(&mut self) {
        self.session = true;
        self.replayable = false;
    }

    fn finish(self, st: &mut Stmt) {
        if let Some(command) = self.lagless {
            st.lagless = Some(if self.assignments == 1 {
                command
            } else {
                invalid("set lagless_consistency in a SET statement of its own")
            });
            return;
        }
        if self.session {
            st.wait_timeout = self.wait_timeout;
            let replayable = self.replayable && !self.global;
            st.effects.session_set = Some(if replayable {
                SessionSet::Replayable
            } else {
                SessionSet::NotReplayable
            });
        }
    }
}

pub(super) fn set(p: &mut Parser<'_>, st: &mut Stmt) {
    // Next-transaction settings, roles, passwords and per-statement settings; `scan_rest`
    // still reads them for functions and variables.
    if matches!(
        p.peek_kw(),
        Some(
            Kw::Transaction | Kw::Password | Kw::Role | Kw::Default | Kw::Statement | Kw::Resource
        )
    ) {
        st.effects.session_set = Some(SessionSet::NotReplayable);
        return;
    }
    let mut list = SetList {
        scope: VarScope::Unqualified,
        assignments: 0,
        session: false,
        global: false,
        replayable: true,
        lagless: None,
        wait_timeout: None,
    };
    loop {
        assignment(p, st, &mut list);
        if !p.eat(Tok::Punct(b',')) {
            break;
        }
    }
    if !p.at_end() {
        list.opaque();
    }
    list.finish(st);
}

fn assignment(p: &mut Parser<'_>, st: &mut Stmt, list: &mut SetList) {
    list.assignments += 1;
    while let Some(scope) = p.peek_kw().and_then(Kw::scope) {
        list.scope = scope;
        p.bump();
    }
    let (scope, name) = match p.bump() {
        Tok::Word(word) => match keyword(word) {
            Some(Kw::Names | Kw::Charset) => return charset(p, st, list),
            Some(Kw::Character) if p.eat_kw(Kw::Set) => return charset(p, st, list),
            Some(Kw::Transaction) => return transaction_characteristics(p, list),
            _ => (list.scope, word),
        },
        Tok::Ident(name, _) => (list.scope, name),
        Tok::SysVar(VarScope::Unqualified, name) => (VarScope::Session, name),
        Tok::SysVar(scope, name) => (scope, name),
        Tok::UserVar => return user_assignment(p, st, list),
        _ => return list.opaque(),
    };
    // A dotted name is a key cache setting or a trigger's NEW.column: not session state we know.
    if p.peek() == Tok::Punct(b'.') || !p.eat_assign() {
        return list.opaque();
    }
    let value = set_value(p, st);
    if is_name(name, LAGLESS_VARIABLE) {
        list.lagless = Some(lagless_assignment(p.lex.src, scope, &value));
        return;
    }
    if scope == VarScope::Global {
        list.global = true;
        return;
    }
    list.session = true;
    list.replayable &= value.replayable;
    if is_name(name, b"autocommit") {
        match value.boolean() {
            Some(on) => st.effects.autocommit = Some(on),
            // The session layer cannot tell the mode, so it must not assume one.
            None => list.replayable = false,
        }
    } else if is_name(name, b"wait_timeout")
        && let Some(secs) = value.number()
    {
        list.wait_timeout = Some(secs);
    }
}

/// `SET NAMES ...`, `SET CHARACTER SET ...`, `SET CHARSET ...`.
fn charset(p: &mut Parser<'_>, st: &mut Stmt, list: &mut SetList) {
    let value = set_value(p, st);
    list.session = true;
    list.replayable &= value.replayable;
}

/// `SET SESSION TRANSACTION ...` lasts for the session; `SET GLOBAL TRANSACTION ...` is
/// server configuration.
fn transaction_characteristics(p: &mut Parser<'_>, list: &mut SetList) {
    match list.scope {
        VarScope::Global => list.global = true,
        VarScope::Session => list.session = true,
        VarScope::Unqualified => list.opaque(),
    }
    p.skip_to_end();
}

fn user_assignment(p: &mut Parser<'_>, st: &mut Stmt, list: &mut SetList) {
    st.effects.user_variable_write = true;
    list.opaque();
    if p.eat_assign() {
        set_value(p, st);
    }
}

/// The right-hand side of one `SET` assignment.
struct Value<'a> {
    first: Option<Tok<'a>>,
    tokens: usize,
    span: (usize, usize),
    /// No function call, subquery, user or system variable.
    replayable: bool,
}

impl Value<'_> {
    fn boolean(&self) -> Option<bool> {
        let text = match (self.tokens, self.first) {
            (1, Some(Tok::Word(text) | Tok::Str(text))) => text,
            _ => return None,
        };
        let any = |names: [&[u8]; 3]| names.iter().any(|name| is_name(text, name));
        if any([b"1", b"ON", b"TRUE"]) {
            Some(true)
        } else if any([b"0", b"OFF", b"FALSE"]) {
            Some(false)
        } else {
            None
        }
    }

    /// A plain decimal number; an expression or a string is left to the server.
    fn number(&self) -> Option<u64> {
        match (self.tokens, self.first) {
            (1, Some(Tok::Word(text))) if text.iter().all(u8::is_ascii_digit) => {
                std::str::from_utf8(text).ok()?.parse().ok()
            }
            _ => None,
        }
    }
}

/// Reads a value up to the `,` that ends the assignment.
fn set_value<'a>(p: &mut Parser<'a>, st: &mut Stmt) -> Value<'a> {
    let mut value = Value {
        first: None,
        tokens: 0,
        span: (0, 0),
        replayable: true,
    };
    let mut depth = 0usize;
    loop {
        match p.peek() {
            Tok::End | Tok::Unterminated | Tok::Punct(b';') => break,
            Tok::Punct(b',') if depth == 0 => break,
            _ => {}
        }
        let tok = p.bump();
        if value.tokens == 0 {
            value.first = Some(tok);
            value.span.0 = p.span.0;
        }
        value.span.1 = p.span.1;
        value.tokens += 1;
        match tok {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth = depth.saturating_sub(1),
            Tok::Word(word) => {
                // Functions and subqueries are evaluated by the server that runs them.
                if p.at_call() || keyword(word) == Some(Kw::Select) {
                    value.replayable = false;
                }
                scan_word(p, st, word, &mut false);
            }
            Tok::UserVar => {
                value.replayable = false;
                user_variable(p, st, false);
            }
            Tok::SysVar(scope, name) => {
                value.replayable = false;
                system_variable(st, scope, name);
            }
            _ => {}
        }
    }
    value
}

/// `SET [SESSION] lagless_consistency = <mode> | DEFAULT`.
fn lagless_assignment(src: &[u8], scope: VarScope, value: &Value<'_>) -> LaglessCommand {
    if scope == VarScope::Global {
        return invalid(
            "lagless_consistency is a session setting; \
             the cluster default is set in the MySQLCluster spec",
        );
    }
    let text = match (value.tokens, value.first) {
        (0, _) => return invalid("SET lagless_consistency needs a value"),
        (1, Some(Tok::Str(text))) => text,
        (1, Some(Tok::Word(word))) if keyword(word) == Some(Kw::Default) => {
            return LaglessCommand::ResetConsistency;
        }
        // An unquoted value such as bounded(500ms) spans several tokens.
        _ => src.get(value.span.0..value.span.1).unwrap_or_default(),
    };
    let parsed = std::str::from_utf8(text)
        .map_err(|_| ParseConsistencyError::UnknownMode(String::from_utf8_lossy(text).into()))
        .and_then(str::parse);
    match parsed {
        Ok(mode) => LaglessCommand::SetConsistency(mode),
        Err(err) => LaglessCommand::Invalid(err.to_string()),
    }
}
