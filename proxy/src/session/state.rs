//! What a session remembers between commands, apart from its connections: plain values that
//! routing decisions read and that COM_RESET_CONNECTION and COM_CHANGE_USER drop.

use std::time::Duration;

use bytes::Bytes;

use super::BackendRole;
use super::statements::Statements;
use crate::gtid::GtidSet;
use crate::route::{ConsistencyMode, SqlMode};

/// A transaction served by a replica: `READ ONLY`, or optimistic (a plain `BEGIN`, moved to
/// the primary at its first write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaTransaction {
    /// The statement that opened it (COM_QUERY payload), to open it on the primary instead
    /// while it is fresh.
    pub begin: Bytes,
    /// Nothing but its start has run in it: it has read nothing, so it can still move.
    pub fresh: bool,
    /// An optimistic transaction's reads, to replay on the primary when it moves there.
    pub replay: Option<ReplayLog>,
}

/// The statements an optimistic transaction ran on its replica, and what they returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayLog {
    pub entries: Vec<Replayed>,
    /// Bytes of the statements kept.
    pub bytes: usize,
    /// False once something could not be kept (too much, or a cursor): the transaction can no
    /// longer move.
    pub complete: bool,
}

/// One statement of a [`ReplayLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The command as the client sent it (COM_QUERY, or COM_STMT_EXECUTE with the client's
    /// statement id).
    pub payload: Bytes,
    /// An execution's statement as it was then: drivers that close each statement after one
    /// execution (Go's `database/sql`) leave nothing else to prepare it from on the primary.
    pub statement: Option<KeptStatement>,
    /// The checksum of its rows.
    pub rows: Option<u64>,
    pub error: Option<u16>,
}

/// A prepared statement kept for a replay (compared by what it was prepared from).
#[derive(Debug, Clone)]
pub struct KeptStatement(pub super::statements::Stmt);

impl PartialEq for KeptStatement {
    fn eq(&self, other: &Self) -> bool {
        self.0.prepare == other.0.prepare
    }
}

impl Eq for KeptStatement {}

/// The session's state. [`Default`] is a session that just logged in without a database.
#[derive(Debug)]
pub struct SessionState {
    /// The default database, replayed on every backend connection the session takes.
    pub database: Option<String>,
    /// The connection the last command ran on (for statements that follow it).
    pub last: BackendRole,
    pub in_transaction: bool,
    /// The lone `BEGIN` / `START TRANSACTION` that opened the current transaction, while
    /// nothing else has run in it: such a transaction can be opened again on another primary
    /// without the client noticing.
    pub fresh_begin: Option<Bytes>,
    /// A `fresh_begin` to run on the next primary connection before the statement at hand.
    pub replay_begin: Option<Bytes>,
    /// The `READ ONLY` transaction open on the session's replica connection, if any.
    pub replica_transaction: Option<ReplicaTransaction>,
    /// `START TRANSACTION READ ONLY` may run on a replica (the proxy's
    /// `--read-only-transactions`).
    pub read_only_on_replicas: bool,
    /// A plain `BEGIN` may start on a replica (the proxy's `--optimistic-transactions`).
    pub optimistic: bool,
    /// Plain `BEGIN`s to run on the primary before trying a replica again: set when an
    /// optimistic transaction had to move (the session's transactions write).
    pub primary_begins: u8,
    /// Optimistic transactions of the session that failed to move, in a row.
    pub failed_moves: u8,
    pub autocommit: bool,
    /// Why the session is bound to its primary connection for good, if it is.
    pub pinned: Option<&'static str>,
    /// Why a multiplexed session keeps its connections though it is routed as any other (it
    /// read its connection's own history, see `multiplex`).
    pub sticky: Option<&'static str>,
    /// Replayable `SET` statements, in order, for every new backend connection.
    pub replay: Vec<String>,
    /// One of `replay` sets autocommit (a replica connection then turns it back on).
    pub replay_sets_autocommit: bool,
    /// The client turned multi-statements off with COM_SET_OPTION.
    pub multi_statements_off: bool,
    pub statements: Statements,
    /// The session's own consistency mode (`SET lagless_consistency`).
    pub consistency: Option<ConsistencyMode>,
    /// Every GTID this session's writes committed (`session` consistency).
    pub last_write: Option<GtidSet>,
    /// The session's own `SET wait_timeout`, applied to the client connection.
    pub wait_timeout: Option<Duration>,
    /// How the session's statements are lexed, as the status flags of the last response
    /// relayed from a backend reported it.
    pub sql_mode: SqlMode,
    /// The session turned `sql_auto_is_null` on.
    pub auto_is_null: bool,
    /// The client set what the session tracks: whether it included committed GTIDs.
    pub client_tracking: Option<bool>,
}

impl Default for SessionState {
    fn default() -> Self {
        Self {
            database: None,
            last: BackendRole::Primary,
            in_transaction: false,
            fresh_begin: None,
            replay_begin: None,
            replica_transaction: None,
            read_only_on_replicas: false,
            optimistic: false,
            primary_begins: 0,
            failed_moves: 0,
            autocommit: true,
            pinned: None,
            sticky: None,
            replay: Vec::new(),
            replay_sets_autocommit: false,
            multi_statements_off: false,
            statements: Statements::default(),
            consistency: None,
            last_write: None,
            wait_timeout: None,
            sql_mode: SqlMode::default(),
            auto_is_null: false,
            client_tracking: None,
        }
    }
}

impl SessionState {
    /// A fresh session using `database`, in the server's global SQL mode.
    pub fn new(database: Option<String>, sql_mode: SqlMode) -> Self {
        Self {
            database,
            sql_mode,
            ..Self::default()
        }
    }

    /// An optimistic transaction is open on the replica and still logs its reads.
    pub fn replays_reads(&self) -> bool {
        self.replica_transaction
            .as_ref()
            .and_then(|t| t.replay.as_ref())
            .is_some_and(|log| log.complete)
    }

    /// The signature of the replayable state a connection must carry for this session.
    pub fn signature(&self) -> u64 {
        super::multiplex::state_signature(
            &self.replay,
            self.multi_statements_off,
            self.client_tracking,
        )
    }

    /// Drops everything the session built up, as COM_RESET_CONNECTION promises: the SQL mode
    /// goes back to the server's global one; the default database stays, as on a server.
    pub fn reset(&mut self, sql_mode: SqlMode) {
        let (read_only_on_replicas, optimistic) = (self.read_only_on_replicas, self.optimistic);
        *self = Self::new(self.database.take(), sql_mode);
        self.read_only_on_replicas = read_only_on_replicas;
        self.optimistic = optimistic;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_keeps_only_the_database() {
        let mut s = SessionState::new(Some("app".into()), SqlMode::default());
        s.in_transaction = true;
        s.autocommit = false;
        s.pinned = Some("user lock");
        s.replay.push("SET NAMES utf8mb4".into());
        s.wait_timeout = Some(Duration::from_secs(5));
        s.last = BackendRole::Replica;
        let global = SqlMode {
            no_backslash_escapes: true,
            ..SqlMode::default()
        };
        s.reset(global);
        assert_eq!(s.sql_mode, global, "back to the server's global mode");
        assert_eq!(s.database.as_deref(), Some("app"));
        assert!(!s.in_transaction && s.autocommit);
        assert_eq!(s.pinned, None);
        assert!(s.replay.is_empty());
        assert_eq!(s.wait_timeout, None);
        assert_eq!(s.last, BackendRole::Primary);
    }
}
