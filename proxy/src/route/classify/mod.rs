//! Statement classification: where a COM_QUERY may run and which session state it changes.
//!
//! This is a single-pass byte lexer with a little lookahead, not a SQL parser: it reads the first
//! keywords of each statement and watches the rest for the few things that pin a statement to
//! one server (locking clauses, `INTO`, session-bound functions, user variables). Whatever it
//! does not recognise goes to the primary, so a gap in the rules costs a replica read, never a
//! wrong answer. A plain `SELECT` is classified without allocating.
//!
//! The lexer turns bytes into tokens under the session's `sql_mode`, the parser gives one token
//! of lookahead, and the rules read each statement; this module holds what the rest of the
//! proxy sees.

mod hints;
mod keywords;
pub(crate) mod lexer;
mod parser;
mod rules;
mod schemas;
#[cfg(test)]
mod tests;

use super::consistency::ConsistencyMode;
use hints::Hints;
use lexer::Tok;
use parser::{Parser, Stmt};
use rules::{invalid, statement};
pub use schemas::{SchemaRefs, schema_refs, schema_refs_where};

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Target {
    /// A plain read that any replica which has caught up may serve.
    Replica,
    /// Writes, locking reads, session-bound functions and anything not understood.
    #[default]
    Primary,
    /// Reads the diagnostics of the previous statement (`SHOW WARNINGS`, `@@warning_count`,
    /// `GET DIAGNOSTICS`), which exist only on the backend that ran it.
    LastBackend,
}

impl Target {
    /// The stronger of two needs; used to combine statements and clauses.
    fn max(self, other: Self) -> Self {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// `Primary` outranks `LastBackend`: when a payload needs both, writes must stay correct.
    fn rank(self) -> u8 {
        match self {
            Self::Replica => 0,
            Self::LastBackend => 1,
            Self::Primary => 2,
        }
    }
}

/// How a `SET` of session state can be reproduced on the other backends of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionSet {
    /// Only session system variables, `NAMES` or `CHARACTER SET`, assigned literals, identifiers
    /// or simple operator expressions: sending the same text to another backend reproduces the
    /// state.
    Replayable,
    /// The result depends on the server that runs it or on more than session variables: user
    /// variables, subqueries, function calls, `SET TRANSACTION` (next transaction only),
    /// `SET STATEMENT`, `SET PASSWORD`, `SET ROLE`, `SET DEFAULT ROLE`, a mix of `GLOBAL` and
    /// session assignments, or a payload that holds other statements besides `SET`s.
    NotReplayable,
}

/// What the session layer must track after a statement succeeds.
///
/// For a multi-statement payload the effects are combined in order, so the flags describe the
/// state after the whole payload: `BEGIN; COMMIT` only ends a transaction, while `COMMIT; BEGIN`
/// (or `COMMIT AND CHAIN`) ends one and begins the next. The same holds for table locks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effects {
    /// `BEGIN [WORK]`, `START TRANSACTION ...`, `XA START|BEGIN`, `... AND CHAIN`: a transaction
    /// is open afterwards.
    pub begins_transaction: bool,
    /// The transaction that begins is `READ ONLY`.
    pub read_only_transaction: bool,
    /// `COMMIT`, `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`), `XA COMMIT|ROLLBACK`.
    pub ends_transaction: bool,
    /// The session's autocommit after `SET [SESSION] autocommit = 0|1|ON|OFF|TRUE|FALSE`.
    pub autocommit: Option<bool>,
    /// `CREATE TEMPORARY TABLE`: the table exists only on the backend that ran it.
    pub creates_temp_table: bool,
    /// `LOCK TABLE[S]`, `FLUSH TABLES ... WITH READ LOCK`, `FLUSH TABLES ... FOR EXPORT`.
    pub locks_tables: bool,
    /// `UNLOCK TABLE[S]`.
    pub unlocks_tables: bool,
    /// Calls a user-level lock function (`GET_LOCK`, `RELEASE_LOCK`, `RELEASE_ALL_LOCKS`,
    /// `IS_FREE_LOCK`, `IS_USED_LOCK`), whose locks live on one server.
    pub user_lock: bool,
    /// Assigns a user variable: `SET @x = ...`, `@x := ...`, `... INTO @x`, `GET DIAGNOSTICS`.
    pub user_variable_write: bool,
    /// The statement sets session state; see [`SessionSet`].
    pub session_set: Option<SessionSet>,
    /// The default database after `USE db` (quotes removed). A name that is not UTF-8 leaves
    /// this `None` and marks `session_set` as not replayable.
    pub use_database: Option<String>,
    /// Calls a function that reads the connection's own history (`LAST_INSERT_ID()`,
    /// `FOUND_ROWS()`, `ROW_COUNT()`, `CONNECTION_ID()`, `LASTVAL()`, …): a multiplexed
    /// session keeps its connection from then on.
    pub reads_connection: bool,
    /// `SQL_CALC_FOUND_ROWS`: the next statement may read the count on this connection.
    pub calc_found_rows: bool,
}

impl Effects {
    /// True when the statement changes nothing the session layer tracks.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Folds in the effects of a statement that ran after these.
    fn then(&mut self, later: Effects) {
        if later.begins_transaction {
            self.begins_transaction = true;
            self.read_only_transaction = later.read_only_transaction;
        } else if later.ends_transaction {
            self.begins_transaction = false;
            self.read_only_transaction = false;
        }
        self.ends_transaction |= later.ends_transaction;
        if later.unlocks_tables && !later.locks_tables {
            self.locks_tables = false;
        }
        self.locks_tables |= later.locks_tables;
        self.unlocks_tables |= later.unlocks_tables;
        self.autocommit = later.autocommit.or(self.autocommit);
        self.creates_temp_table |= later.creates_temp_table;
        self.user_lock |= later.user_lock;
        self.user_variable_write |= later.user_variable_write;
        self.reads_connection |= later.reads_connection;
        self.calc_found_rows |= later.calc_found_rows;
        self.session_set = match (self.session_set, later.session_set) {
            (Some(SessionSet::Replayable), Some(SessionSet::Replayable)) => {
                Some(SessionSet::Replayable)
            }
            (None, only) | (only, None) => only,
            _ => Some(SessionSet::NotReplayable),
        };
        if later.use_database.is_some() {
            self.use_database = later.use_database;
        }
    }
}

/// A `lagless:route=...` comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteHint {
    /// `lagless:route=primary`: run on the primary whatever the statement is.
    Primary,
    /// `lagless:route=replica`: reported only for a statement that is a plain read anyway.
    Replica,
}

/// A per-statement consistency override from a `lagless:consistency=...` comment.
pub type ConsistencyHint = ConsistencyMode;

/// A statement the proxy answers itself instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaglessCommand {
    /// `SET [SESSION] lagless_consistency = '<mode>'` (also `@@[session.]lagless_consistency`).
    SetConsistency(ConsistencyMode),
    /// `SET lagless_consistency = DEFAULT`: back to the cluster's default mode.
    ResetConsistency,
    /// `SHOW lagless_consistency` or `SELECT @@lagless_consistency`.
    ShowConsistency,
    /// A malformed or misplaced use of `lagless_consistency`; the text is the error to return.
    Invalid(String),
}

/// Whose work a `KILL` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Victim {
    /// `CONNECTION_ID()`: the session that runs the KILL.
    Own,
    /// A connection id: the proxy's, or a backend thread of one of its sessions.
    Id(u32),
}

/// `KILL [HARD | SOFT] [CONNECTION | QUERY] <id | CONNECTION_ID()>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kill {
    pub victim: Victim,
    /// `KILL QUERY`: only the running statement ends, not the connection.
    pub query_only: bool,
}

/// A `KILL` in a COM_QUERY payload. The proxy carries KILLs out itself and never forwards one:
/// a backend would take the id for one of its own threads, which could be anybody's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KillStatement {
    /// The payload is this KILL and nothing else.
    Kill(Kill),
    /// A form the proxy does not carry out: `KILL ... USER`, `KILL QUERY ID`, an id that is
    /// not a plain number, a KILL inside `BEGIN NOT ATOMIC`.
    Unsupported,
    /// One or more KILLs among other statements: the session runs such a payload one
    /// statement at a time.
    AmongOthers,
}

/// The verdict on one COM_QUERY payload, all its statements combined.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Classification {
    /// Where the payload may run; an honoured route hint is already applied.
    pub target: Target,
    /// What the session layer must track once it succeeds.
    pub effects: Effects,
    /// A `lagless:consistency=...` comment (the last one wins). Invalid values are ignored.
    pub hint: Option<ConsistencyHint>,
    /// A `lagless:route=...` comment that was honoured: `Primary` always is (it lifts a read to
    /// the primary but leaves `LastBackend` alone, as diagnostics exist on one backend only),
    /// `Replica` only when the payload is a plain read.
    pub route_hint: Option<RouteHint>,
    /// Set when the proxy must answer the payload itself.
    pub lagless: Option<LaglessCommand>,
    /// Set when the payload is or holds a `KILL`.
    pub kill: Option<KillStatement>,
    /// The last plain number the payload assigns to the session's `wait_timeout`
    /// (`SET [SESSION | LOCAL] wait_timeout = N`, `SET @@[session.]wait_timeout = N`); the
    /// session's idle limit once it succeeds.
    pub wait_timeout: Option<u64>,
}

/// The `sql_mode` flags that change how statements are lexed. The session layer learns
/// `no_backslash_escapes` from the status flags of the OK and EOF packets it relays; servers
/// do not report `ANSI_QUOTES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SqlMode {
    /// `NO_BACKSLASH_ESCAPES`: a backslash in a string is an ordinary character.
    pub no_backslash_escapes: bool,
    /// `ANSI_QUOTES`: `"..."` quotes an identifier, not a string.
    pub ansi_quotes: bool,
}

/// Classifies a COM_QUERY payload under the default `sql_mode`.
pub fn classify(sql: &[u8]) -> Classification {
    classify_with(sql, SqlMode::default())
}

/// Classifies a COM_QUERY payload (one statement, or several separated by `;`).
pub fn classify_with(sql: &[u8], mode: SqlMode) -> Classification {
    let mut p = Parser::new(sql, mode);
    let mut total: Option<Stmt> = None;
    let mut statements = 0usize;
    let mut only_sets = true;
    loop {
        match p.peek() {
            Tok::End | Tok::Unterminated => break,
            Tok::Punct(b';') => {
                p.bump();
                continue;
            }
            _ => {}
        }
        let stmt = statement(&mut p);
        statements += 1;
        only_sets &= stmt.effects.session_set.is_some();
        match &mut total {
            Some(total) => total.then(stmt),
            None => total = Some(stmt),
        }
    }
    let mut st = total.unwrap_or_default();
    if p.lex.malformed {
        st.target = Target::Primary;
    }
    if statements > 1 {
        if st.lagless.is_some() {
            st.lagless = Some(invalid(
                "a lagless_consistency statement must be sent on its own",
            ));
        }
        if st.kill.is_some() {
            st.kill = Some(KillStatement::AmongOthers);
        }
        // Replaying the payload would also replay its other statements.
        if !only_sets && st.effects.session_set.is_some() {
            st.effects.session_set = Some(SessionSet::NotReplayable);
        }
    }
    apply_hints(st, &p.lex.hints)
}

/// The byte ranges of the statements of a multi-statement payload under the default
/// `sql_mode`; see [`split_statements_with`].
pub fn split_statements(sql: &[u8]) -> Option<Vec<(usize, usize)>> {
    split_statements_with(sql, SqlMode::default())
}

/// The byte ranges of the statements of a multi-statement payload, each from its first token
/// to its last (without the `;`). `None` when the payload cannot be cut safely: an
/// unterminated string or comment, or an executable comment (`/*! ... */`), which a cut could
/// split.
pub fn split_statements_with(sql: &[u8], mode: SqlMode) -> Option<Vec<(usize, usize)>> {
    if sql.windows(3).any(|w| w == b"/*!") || sql.windows(4).any(|w| w == b"/*M!") {
        return None;
    }
    let mut p = Parser::new(sql, mode);
    let mut parts = Vec::new();
    loop {
        match p.peek() {
            Tok::End => break,
            Tok::Unterminated => return None,
            Tok::Punct(b';') => {
                p.bump();
                continue;
            }
            _ => {}
        }
        let start = p.next.1;
        statement(&mut p);
        parts.push((start, p.span.1));
    }
    (!p.lex.malformed).then_some(parts)
}

/// Honours the comment hints: a route hint never sends anything but a plain read to a replica.
fn apply_hints(st: Stmt, hints: &Hints) -> Classification {
    let mut target = st.target;
    let route_hint = match hints.route {
        Some(RouteHint::Primary) => {
            if target == Target::Replica {
                target = Target::Primary;
            }
            Some(RouteHint::Primary)
        }
        Some(RouteHint::Replica) if target == Target::Replica => Some(RouteHint::Replica),
        _ => None,
    };
    Classification {
        target,
        effects: st.effects,
        hint: hints.consistency,
        route_hint,
        lagless: st.lagless,
        kill: st.kill,
        wait_timeout: st.wait_timeout,
    }
}
