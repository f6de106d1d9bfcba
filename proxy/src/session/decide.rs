//! The session's decisions as values: where a statement goes ([`route`]) and what its outcome
//! changes in the session ([`after`]). Pure functions of the session's state, the statement's
//! classification and the response; the session carries them out.

use std::time::Duration;

use bytes::Bytes;

use super::BackendRole;
use super::state::SessionState;
use crate::protocol::constants::{com, status};
use crate::route::{
    Classification, ConsistencyMode, Kill, KillStatement, LaglessCommand, SessionSet, SqlMode,
    Target,
};

/// Replayed state gets too long to be worth it past this; the session pins instead.
pub const MAX_REPLAY: usize = 64;

/// Where a statement goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A `KILL` the proxy carries out itself.
    Kill(Kill),
    /// A `KILL` the proxy refuses: a backend would take the id for one of its own threads.
    RefuseKill,
    /// A `lagless_*` statement the proxy answers itself.
    Lagless(LaglessCommand),
    /// The primary. With `retry_read_only`, a write refused by a primary that just went
    /// read-only waits for the next primary and runs there.
    Primary { retry_read_only: bool },
    /// A replica that satisfies the statement's consistency hint, else the session's mode
    /// (`None`: the cluster's default), else the primary.
    Read { mode: Option<ConsistencyMode> },
    /// The replica connection the previous statement ran on (diagnostics about it).
    LastReplica,
    /// The replica connection whose `READ ONLY` transaction the statement belongs to.
    InReplicaTransaction,
    /// A statement a replica's `READ ONLY` transaction cannot hold (a write, a lock, session
    /// state), while that transaction has read nothing yet: it is rolled back there and
    /// opened on the primary, where the statement runs.
    LeaveReplicaTransaction,
    /// Such a statement once the transaction has read: refused, as the transaction's reads
    /// were served by the replica and cannot continue elsewhere.
    RefuseInReplicaTransaction,
    /// Such a statement in an optimistic transaction that has read: the transaction moves to
    /// the primary, its reads run again there and must return what they returned, then the
    /// statement runs.
    MoveReplicaTransaction,
}

impl Route {
    /// Whether this is a read a replica may serve (for metrics: "primary_fallback").
    pub fn is_read(&self) -> bool {
        matches!(self, Route::Read { .. })
    }
}

/// Where a COM_QUERY statement goes; `sql` is its text.
pub fn route(state: &SessionState, c: &Classification, sql: &[u8]) -> Route {
    match c.kill {
        Some(KillStatement::Kill(k)) => return Route::Kill(k),
        Some(KillStatement::Unsupported | KillStatement::AmongOthers) => {
            return Route::RefuseKill;
        }
        None => {}
    }
    if let Some(cmd) = &c.lagless {
        return Route::Lagless(cmd.clone());
    }
    if starts_replica_transaction(state, c, sql) {
        return Route::Read {
            mode: c.hint.or(state.consistency),
        };
    }
    backend_route(state, c, sql)
}

/// Where a prepared statement's execution goes; `sql` is its text. A prepared `BEGIN` (as
/// sysbench prepares one) starts a transaction on a replica as its text would.
pub fn execution_route(state: &SessionState, c: &Classification, sql: &[u8]) -> Route {
    if starts_replica_transaction(state, c, sql) {
        return Route::Read {
            mode: c.hint.or(state.consistency),
        };
    }
    backend_route(state, c, sql)
}

/// Whether a COM_QUERY statement (or a prepared one's execution) opens a transaction a
/// replica may serve: a lone `START
/// TRANSACTION READ ONLY`, or with optimistic transactions a lone `BEGIN` / `START
/// TRANSACTION` (unless the session's recent ones wrote), in autocommit, outside a
/// transaction, in a session not bound to its primary connection.
fn starts_replica_transaction(state: &SessionState, c: &Classification, sql: &[u8]) -> bool {
    let wanted = if c.effects.read_only_transaction {
        state.read_only_on_replicas
    } else {
        state.optimistic && state.primary_begins == 0
    };
    wanted
        && c.effects.begins_transaction
        && c.route_hint != Some(crate::route::RouteHint::Primary)
        && state.autocommit
        && !state.in_transaction
        && state.replica_transaction.is_none()
        && state.replay_begin.is_none()
        && state.pinned.is_none()
        && !serializable(state)
        && is_lone_begin_sql(sql)
}

/// The session replays a `SERIALIZABLE` isolation level: its transactions' reads would take
/// shared locks, which on a replica would hold up replication.
fn serializable(state: &SessionState) -> bool {
    state
        .replay
        .iter()
        .any(|set| set.to_ascii_lowercase().contains("serializable"))
}

/// Whether a statement is one `COMMIT` or `ROLLBACK` (`[WORK]`, `AND NO CHAIN`) and nothing
/// else.
fn is_lone_end_sql(sql: &[u8]) -> bool {
    let Ok(sql) = std::str::from_utf8(sql) else {
        return false;
    };
    let sql = sql.trim().trim_end_matches(';').trim_end();
    if sql.contains([';', '/', '#', '-', '\'', '"', '`']) {
        return false;
    }
    let words: Vec<String> = sql
        .split_ascii_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        words.as_slice(),
        ["COMMIT" | "ROLLBACK"]
            | ["COMMIT" | "ROLLBACK", "WORK"]
            | ["COMMIT" | "ROLLBACK", "AND", "NO", "CHAIN"]
            | ["COMMIT" | "ROLLBACK", "WORK", "AND", "NO", "CHAIN"]
    )
}

/// Where a statement goes that cannot run in the replica's transaction `tx`.
pub fn leaving_replica_transaction(tx: &super::state::ReplicaTransaction) -> Route {
    if tx.fresh {
        Route::LeaveReplicaTransaction
    } else if tx.replay.is_some() {
        Route::MoveReplicaTransaction
    } else {
        Route::RefuseInReplicaTransaction
    }
}

/// Whether a statement can run in a `READ ONLY` transaction on a replica: reads, and the
/// `COMMIT` or `ROLLBACK` that ends it. Anything that writes, locks, opens another
/// transaction or changes session state belongs on the primary.
pub fn stays_in_replica_transaction(c: &Classification, sql: &[u8]) -> bool {
    let e = &c.effects;
    let reads = c.target != Target::Primary
        || (e.ends_transaction
            && !e.begins_transaction
            && c.route_hint.is_none()
            && is_lone_end_sql(sql));
    reads
        && !e.begins_transaction
        && e.autocommit.is_none()
        && !e.creates_temp_table
        && !e.locks_tables
        && !e.unlocks_tables
        && !e.user_lock
        && !e.user_variable_write
        && e.session_set.is_none()
        && !e.reads_connection
        && !e.calc_found_rows
        && c.lagless.is_none()
}

/// Where a statement that runs on a backend goes (a COM_QUERY or a prepared statement's
/// execution); `sql` is its text.
pub fn backend_route(state: &SessionState, c: &Classification, sql: &[u8]) -> Route {
    if let Some(tx) = &state.replica_transaction {
        return if stays_in_replica_transaction(c, sql) && !reads_last_insert(state, c, sql) {
            Route::InReplicaTransaction
        } else {
            leaving_replica_transaction(tx)
        };
    }
    let target = if reads_last_insert(state, c, sql) {
        Target::Primary
    } else {
        c.target
    };
    if state.pinned.is_some()
        || state.in_transaction
        || !state.autocommit
        || c.effects.begins_transaction
        || c.effects.autocommit == Some(false)
    {
        return primary(state, target);
    }
    match (target, state.last) {
        (Target::Replica, _) => Route::Read {
            mode: c.hint.or(state.consistency),
        },
        (Target::LastBackend, BackendRole::Replica) => Route::LastReplica,
        (Target::Primary | Target::LastBackend, _) => primary(state, target),
    }
}

fn primary(state: &SessionState, target: Target) -> Route {
    Route::Primary {
        retry_read_only: target == Target::Primary && may_move_transaction(state),
    }
}

/// Whether a refusal by a primary that went read-only can move the statement at hand: outside
/// a transaction, or in one where only its `BEGIN` ran.
pub fn may_move_transaction(state: &SessionState) -> bool {
    !state.in_transaction || state.fresh_begin.is_some()
}

/// With `sql_auto_is_null` on, `WHERE auto_col IS NULL` finds the row this session inserted
/// last, which only its primary connection knows.
fn reads_last_insert(state: &SessionState, c: &Classification, sql: &[u8]) -> bool {
    state.auto_is_null && c.target == Target::Replica && has_is_null(sql)
}

/// What a backend's response to a statement says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The connection it ran on.
    pub ran_on: BackendRole,
    /// The status flags of its last OK or EOF (`None` after an ERR).
    pub status: Option<u16>,
    /// The error code, when it ended in an error.
    pub error: Option<u16>,
}

/// A `SET` to replay on every backend connection the session takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySet {
    pub sql: String,
    /// It sets autocommit (a replica connection turns it back on).
    pub sets_autocommit: bool,
}

/// What a statement's outcome changes in the session. [`SessionState::apply`] makes the plain
/// changes; the session carries out the rest on its connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The primary's status flags: `(in_transaction, autocommit)`.
    pub transaction: Option<(bool, bool)>,
    /// The new default database.
    pub database: Option<String>,
    /// Why the session must stay on its primary connection from now on.
    pub pin: Option<&'static str>,
    /// The statement was a lone `BEGIN`: the transaction may still move to another primary.
    pub fresh_begin: bool,
    /// A transaction began on the primary (text or prepared): one of the session's
    /// `primary_begins` is used.
    pub began_on_primary: bool,
    /// The client changed what the session tracks: whether it now asks for committed GTIDs.
    pub tracking: Option<bool>,
    /// The session's own `wait_timeout`.
    pub wait_timeout: Option<Duration>,
    /// The session's `sql_auto_is_null`.
    pub auto_is_null: Option<bool>,
    /// A `SET` to replay, also on the session's other connection.
    pub replay: Option<ReplaySet>,
    /// What became of a `READ ONLY` transaction on the replica connection.
    pub replica_transaction: Option<ReplicaTxn>,
}

/// A replica's `READ ONLY` transaction after a statement ran on that replica connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaTxn {
    /// It was opened, by this statement (its COM_QUERY payload); `optimistic`: a plain
    /// `BEGIN`, not `READ ONLY`.
    Began { begin: Bytes, optimistic: bool },
    /// A statement ran in it: it is no longer fresh.
    Used,
    /// It is over.
    Ended,
    /// The replica connection reports a transaction the session never began there: it is not
    /// used again.
    Stray,
}

/// The command a statement came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// COM_QUERY with this payload (command byte included); shared, so keeping it (a `BEGIN`
    /// to replay) costs no copy.
    Query(&'a Bytes),
    /// COM_STMT_EXECUTE of the statement prepared by this COM_STMT_PREPARE payload: values
    /// are bound at execution, so its text cannot be replayed as a `SET`.
    Execute(&'a Bytes),
    /// COM_STMT_BULK_EXECUTE.
    BulkExecute,
}

/// What a statement's outcome changes in the session.
pub fn after(
    state: &SessionState,
    c: &Classification,
    outcome: &Outcome,
    command: Command<'_>,
) -> Effects {
    let mut fx = Effects::default();
    if outcome.ran_on == BackendRole::Primary
        && let Some(st) = outcome.status
    {
        fx.transaction = Some((st & status::IN_TRANS != 0, st & status::AUTOCOMMIT != 0));
    }
    let e = &c.effects;
    fx.replica_transaction = replica_transaction_after(state, c, outcome, command);
    fx.began_on_primary = e.begins_transaction
        && outcome.ran_on == BackendRole::Primary
        && outcome.error.is_none()
        && state.primary_begins > 0;
    if outcome.error.is_some() {
        // A multi-statement payload may have run part-way; pin when any part could have left
        // state behind.
        if e.session_set.is_some()
            || e.creates_temp_table
            || e.locks_tables
            || e.user_lock
            || e.user_variable_write
        {
            fx.pin = Some("a multi-statement payload failed part-way");
        }
        return fx;
    }
    fx.database.clone_from(&e.use_database);
    fx.pin = if e.creates_temp_table {
        Some("temporary table")
    } else if e.locks_tables {
        Some("LOCK TABLES")
    } else if e.user_lock {
        Some("user lock")
    } else if e.user_variable_write {
        Some("user variable")
    } else if e.session_set == Some(SessionSet::NotReplayable) {
        Some("session state that cannot be replayed")
    } else {
        None
    };
    let payload = match command {
        Command::Query(payload) => payload,
        Command::Execute(_) => {
            if e.session_set.is_some() && fx.pin.is_none() {
                fx.pin = Some("a SET run as a prepared statement");
            }
            return fx;
        }
        Command::BulkExecute => return fx,
    };
    let sql = payload.get(1..).unwrap_or_default();
    let in_transaction = fx.transaction.map_or(state.in_transaction, |(t, _)| t);
    fx.fresh_begin = e.begins_transaction
        && in_transaction
        && outcome.ran_on == BackendRole::Primary
        && is_lone_begin(payload);
    if e.session_set.is_some() {
        fx.tracking = tracking_change_of(&String::from_utf8_lossy(sql));
    }
    let pinned = state.pinned.is_some() || fx.pin.is_some();
    if !pinned
        && e.session_set == Some(SessionSet::Replayable)
        && let Ok(sql) = std::str::from_utf8(sql)
    {
        fx.wait_timeout = c.wait_timeout.map(|secs| Duration::from_secs(secs.max(1)));
        fx.auto_is_null = auto_is_null_of(sql);
        if state.replay.len() >= MAX_REPLAY {
            fx.pin = Some("too much session state to replay");
        } else {
            fx.replay = Some(ReplaySet {
                sql: sql.to_string(),
                sets_autocommit: e.autocommit.is_some(),
            });
        }
    }
    fx
}

/// What a statement that ran on the replica connection did to a `READ ONLY` transaction
/// there, read from the status flags of its response (an error, which carries none, leaves
/// an open one open, but no longer fresh).
fn replica_transaction_after(
    state: &SessionState,
    c: &Classification,
    outcome: &Outcome,
    command: Command<'_>,
) -> Option<ReplicaTxn> {
    if outcome.ran_on != BackendRole::Replica {
        return None;
    }
    let open = state.replica_transaction.is_some();
    match outcome.status {
        None => open.then_some(ReplicaTxn::Used),
        Some(st) if st & status::IN_TRANS == 0 => open.then_some(ReplicaTxn::Ended),
        Some(_) if open => Some(ReplicaTxn::Used),
        Some(_) if !c.effects.begins_transaction => Some(ReplicaTxn::Stray),
        // (Opened again elsewhere from its text: the command byte is not read.)
        Some(_) => match command {
            Command::Query(payload) | Command::Execute(payload) => Some(ReplicaTxn::Began {
                begin: payload.clone(),
                optimistic: !c.effects.read_only_transaction,
            }),
            Command::BulkExecute => Some(ReplicaTxn::Stray),
        },
    }
}

impl SessionState {
    /// Makes the plain changes of `fx`. Returns the reason when it pinned the session just now.
    pub fn apply(&mut self, fx: &Effects) -> Option<&'static str> {
        if let Some((in_transaction, autocommit)) = fx.transaction {
            self.in_transaction = in_transaction;
            self.autocommit = autocommit;
        }
        if fx.database.is_some() {
            self.database.clone_from(&fx.database);
        }
        if let Some(asks) = fx.tracking {
            self.client_tracking = Some(asks);
        }
        if let Some(t) = fx.wait_timeout {
            self.wait_timeout = Some(t);
        }
        if let Some(on) = fx.auto_is_null {
            self.auto_is_null = on;
        }
        match &fx.replica_transaction {
            Some(ReplicaTxn::Began { begin, optimistic }) => {
                self.replica_transaction = Some(super::state::ReplicaTransaction {
                    begin: begin.clone(),
                    fresh: true,
                    replay: optimistic.then(|| super::state::ReplayLog {
                        complete: true,
                        ..Default::default()
                    }),
                });
            }
            Some(ReplicaTxn::Used) => {
                if let Some(tx) = self.replica_transaction.as_mut() {
                    tx.fresh = false;
                }
            }
            Some(ReplicaTxn::Ended) => self.replica_transaction = None,
            Some(ReplicaTxn::Stray) | None => {}
        }
        if let Some(set) = &fx.replay {
            self.replay_sets_autocommit |= set.sets_autocommit;
            self.replay.push(set.sql.clone());
        }
        if fx.began_on_primary {
            // One fewer before a replica is tried again.
            self.primary_begins = self.primary_begins.saturating_sub(1);
        }
        let pinned_now = fx.pin.filter(|_| self.pinned.is_none());
        if pinned_now.is_some() {
            self.pinned = pinned_now;
        }
        pinned_now
    }
}

/// The session's `sql_mode` after a response with these status flags (`None` for an ERR, which
/// carries none): the server sets `SERVER_STATUS_NO_BACKSLASH_ESCAPES` in every OK and EOF
/// packet while the mode is on, so following the flag costs no round trip.
pub fn sql_mode_after(mode: SqlMode, status: Option<u16>) -> SqlMode {
    match status {
        Some(flags) => SqlMode {
            no_backslash_escapes: flags & status::NO_BACKSLASH_ESCAPES != 0,
            ..mode
        },
        None => mode,
    }
}

/// Whether a COM_QUERY payload is one `BEGIN [WORK]` or `START TRANSACTION [...]` and nothing
/// else: a transaction opened by it holds no work until its next statement.
pub fn is_lone_begin(payload: &[u8]) -> bool {
    payload
        .split_first()
        .is_some_and(|(cmd, sql)| *cmd == com::QUERY && is_lone_begin_sql(sql))
}

/// [`is_lone_begin`] for a statement's text.
pub fn is_lone_begin_sql(sql: &[u8]) -> bool {
    let Ok(sql) = std::str::from_utf8(sql) else {
        return false;
    };
    let sql = sql.trim().trim_end_matches(';').trim_end();
    if sql.contains([';', '/', '#', '-', '\'', '"', '`']) {
        return false;
    }
    let words: Vec<String> = sql
        .split(|c: char| c.is_ascii_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect();
    let characteristic = |w: &String| {
        ["READ", "ONLY", "WRITE", "WITH", "CONSISTENT", "SNAPSHOT"].contains(&w.as_str())
    };
    match words.as_slice() {
        [b] => b == "BEGIN",
        [b, w] if b == "BEGIN" => w == "WORK",
        [s, t, rest @ ..] => s == "START" && t == "TRANSACTION" && rest.iter().all(characteristic),
        _ => false,
    }
}

/// For a `SET` of what the session tracks (`session_track_system_variables`,
/// `session_track_gtids`): whether the client now asks for committed GTIDs itself.
fn tracking_change_of(sql: &str) -> Option<bool> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("session_track_system_variables") && !lower.contains("session_track_gtids") {
        return None;
    }
    Some(
        lower.contains("last_gtid")
            || lower.contains("'*'")
            || lower.contains("\"*\"")
            || lower.contains("own_gtid")
            || lower.contains("all_gtids"),
    )
}

/// The value a replayable `SET` gives `sql_auto_is_null`, if it names it.
fn auto_is_null_of(sql: &str) -> Option<bool> {
    let lower = sql.to_ascii_lowercase();
    let at = lower.find("sql_auto_is_null")?;
    let rest = lower[at + "sql_auto_is_null".len()..].trim_start();
    let rest = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix(":="))?
        .trim_start()
        .trim_start_matches(['\'', '"']);
    let word: String = rest
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    match word.as_str() {
        "1" | "on" | "true" => Some(true),
        // DEFAULT is off unless the server's global says otherwise, which is rare; a read
        // routed to a replica then behaves as on another connection.
        _ => Some(false),
    }
}

/// Whether the statement text holds `IS NULL` (a false match only costs a replica read).
fn has_is_null(sql: &[u8]) -> bool {
    sql.windows(2).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(b"is") && (i == 0 || !sql[i - 1].is_ascii_alphanumeric()) && {
            let rest = &sql[i + 2..];
            let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
            skip > 0
                && rest
                    .get(skip..skip + 4)
                    .is_some_and(|n| n.eq_ignore_ascii_case(b"null"))
        }
    })
}

#[cfg(test)]
mod tests;
