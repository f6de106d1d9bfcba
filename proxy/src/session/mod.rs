//! One client connection: its state, routing of each command, and the backends it uses.
//!
//! A session holds at most one backend connection to the primary and one to a replica, taken
//! from the pools on first use and given back (after a reset) when the client leaves.
//!
//! Session state that can move is replayed: the default database, `SET` statements of
//! session variables with plain values, and the multi-statement option are sent to every
//! backend connection the session takes. State that cannot move — temporary tables, user
//! locks, `LOCK TABLES`, user variables, SQL-level `PREPARE`, other `SET`s — pins the session
//! to the primary for the rest of its life, so it is never lost silently. Transactions stay
//! on the primary until the server's status flags say they ended.

mod consistent;
pub mod forward;
pub mod kill;
pub mod local;
pub mod login;
mod prepared;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::PooledConn;
use crate::protocol::constants::{com, status};
use crate::protocol::messages::{ErrPacket, Ok as OkPacket};
use crate::protocol::packet::PacketError;
use crate::protocol::response::{ResponseKind, ResponseTracker};
use crate::route::{Classification, ConsistencyMode, LaglessCommand, SessionSet, Target, classify};
use crate::server::Shared;
use crate::topology::Member;
use consistent::ReadPlan;
use forward::{RelayError, relay};
use login::{ClientStream, Login};
use prepared::Statements;

/// Which of the session's backend connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Primary,
    Replica,
}

/// A backend connection held by the session.
#[derive(Debug)]
pub struct Slot {
    pub conn: PooledConn,
    /// `host:port`, as metrics and health know the server.
    pub addr: String,
    /// The topology member this connection goes to.
    pub member: Member,
    /// Client statement id -> this backend's statement id.
    pub statements: HashMap<u32, prepared::BackendStmt>,
    /// Lists the backend thread under this session while the slot lives (for KILL).
    _thread: kill::ThreadRegistration,
    /// This backend's metric series, looked up once.
    pub metrics: crate::metrics::BackendHandle,
}

/// How [`Session::run_on_with`] runs a command.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    /// A write refused by a read-only primary waits for the next primary and runs there.
    retry_read_only: bool,
    /// The payload is a statement command whose id is mapped per backend connection.
    map_statement: bool,
}

/// ER_LOCK_DEADLOCK: the server rolled the whole transaction back.
const DEADLOCK: u16 = 1213;
/// How long the status probe after a deadlock may take.
const STATUS_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Replayed state gets too long to be worth it past this; the session pins instead.
const MAX_REPLAY: usize = 64;

/// The end of a session.
#[derive(Debug)]
pub enum End {
    /// The client quit or went away.
    Client,
    /// The client broke the protocol; it got an error first where possible.
    Protocol(PacketError),
}

/// One client connection after login.
pub struct Session {
    shared: Arc<Shared>,
    client: ClientStream,
    login: Login,
    id: u32,
    database: Option<String>,
    primary: Option<Slot>,
    replica: Option<Slot>,
    last: Which,
    in_transaction: bool,
    /// The lone `BEGIN` / `START TRANSACTION` that opened the current transaction, while
    /// nothing else has run in it: such a transaction can be opened again on another primary
    /// without the client noticing (see [`Session::ensure_primary`]).
    fresh_begin: Option<Bytes>,
    /// A `fresh_begin` to run on the next primary connection before the statement at hand.
    replay_begin: Option<Bytes>,
    autocommit: bool,
    pinned: Option<&'static str>,
    replay: Vec<String>,
    replay_sets_autocommit: bool,
    multi_statements_off: bool,
    statements: Statements,
    consistency: Option<ConsistencyMode>,
    /// Every GTID this session's writes committed (`session` consistency).
    last_write: Option<crate::gtid::GtidSet>,
    /// The consistency mode (or "primary") the current read was served under, for metrics.
    read_mode: &'static str,
    /// Sequence id of the proxy's own reply to the current command.
    reply_seq: u8,
    /// The session's own `SET wait_timeout`, applied to the client connection.
    wait_timeout: Option<Duration>,
    /// The session turned `sql_auto_is_null` on.
    auto_is_null: bool,
    /// The client set what the session tracks: whether it included committed GTIDs.
    client_tracking: Option<bool>,
    /// Where the current statement's response goes among the results of a multi-statement
    /// payload run one statement at a time.
    splice: forward::Splice,
    /// The current command's response ended in an error.
    failed: bool,
    control: Arc<kill::SessionControl>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user", &self.login.user)
            .field("in_transaction", &self.in_transaction)
            .field("pinned", &self.pinned)
            .finish()
    }
}

impl Session {
    pub fn new(shared: Arc<Shared>, client: ClientStream, login: Login, id: u32) -> Self {
        let control = kill::SessionControl::new(&login.user);
        shared.sessions.insert(id, control.clone());
        Self {
            database: login.database.clone(),
            shared,
            client,
            login,
            id,
            primary: None,
            replica: None,
            last: Which::Primary,
            in_transaction: false,
            fresh_begin: None,
            replay_begin: None,
            autocommit: true,
            pinned: None,
            replay: Vec::new(),
            replay_sets_autocommit: false,
            multi_statements_off: false,
            statements: Statements::default(),
            consistency: None,
            last_write: None,
            read_mode: "primary",
            reply_seq: 1,
            wait_timeout: None,
            auto_is_null: false,
            client_tracking: None,
            splice: forward::Splice::default(),
            failed: false,
            control,
        }
    }

    /// Serves commands until the client leaves, breaks the protocol, or the proxy shuts down
    /// while the session is outside a transaction.
    pub async fn run(mut self) {
        let relayed = self
            .login
            .relayed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((member, conn)) = relayed {
            self.adopt_primary(member, conn).await;
        }
        let mut shutdown = self.shared.shutdown_signal();
        // One idle timer for the session's life: armed once, moved only when it fires before
        // the session has been idle long enough (or the limit shrank), so a statement costs a
        // clock read, not a trip to the timer wheel.
        let mut armed = Instant::now() + self.idle_limit();
        let idle_timer = tokio::time::sleep_until(armed.into());
        tokio::pin!(idle_timer);
        'session: loop {
            // A shutdown lets open transactions finish; idle sessions close at once.
            let busy = self.in_transaction;
            if self.control.is_killed() {
                break;
            }
            let control = self.control.clone();
            // The session's own SET wait_timeout, else the server's default, as a server
            // would honour them.
            let idle = self.idle_limit();
            let waiting_since = Instant::now();
            if waiting_since + idle < armed {
                armed = waiting_since + idle;
                idle_timer.as_mut().reset(armed.into());
            }
            // Wait for the next command's first bytes (cancel-safe), then read it whole.
            loop {
                tokio::select! {
                    closed = self.client.wait_readable() => {
                        if closed {
                            tracing::trace!(id = self.id, "client closed the connection");
                            break 'session;
                        }
                        break;
                    }
                    () = &mut idle_timer => {
                        let due = waiting_since + idle;
                        if Instant::now() >= due {
                            tracing::debug!(id = self.id, ?idle, "closing a session idle past its wait_timeout");
                            break 'session;
                        }
                        armed = due;
                        idle_timer.as_mut().reset(armed.into());
                    }
                    () = control.kill_signal.notified() => {
                        tracing::debug!(id = self.id, "session killed");
                        break 'session;
                    }
                    () = crate::server::wait_for_shutdown(&mut shutdown), if !busy => {
                        tracing::debug!(id = self.id, "closing idle session for shutdown");
                        break 'session;
                    }
                }
            }
            let read = self.client.read_logical().await;
            let (seq, payload) = match read {
                Ok(p) => p,
                Err(PacketError::Closed) => {
                    tracing::trace!(id = self.id, "client closed the connection");
                    break;
                }
                Err(PacketError::TooLarge(n)) => {
                    tracing::debug!(id = self.id, bytes = n, "client packet too large");
                    let seq = self.client.last_read_seq().wrapping_add(1);
                    self.fatal(seq, ErrPacket::packet_too_large()).await;
                    break;
                }
                Err(e) => {
                    tracing::debug!(id = self.id, error = %e, "client protocol error");
                    self.shared.metrics.client_connection_error("protocol");
                    break;
                }
            };
            if seq != 0 {
                self.fatal(
                    seq.wrapping_add(1),
                    ErrPacket::new(1156, "08S01", "Got packets out of order"),
                )
                .await;
                break;
            }
            match self.command(payload).await {
                Ok(()) => {}
                Err(End::Client) => break,
                Err(End::Protocol(e)) => {
                    tracing::debug!(id = self.id, error = %e, "session ended");
                    break;
                }
            }
        }
        self.client.shutdown().await;
    }

    async fn fatal(&mut self, seq: u8, err: ErrPacket) {
        let mut seq = seq;
        let _ = self.client.send(&mut seq, &err.encode()).await;
    }

    /// Sends an ERR as the whole response to a command.
    async fn reply_err(&mut self, err: &ErrPacket) -> Result<(), End> {
        self.failed = true;
        let mut seq = self.reply_seq;
        self.shared.metrics.error("statement");
        self.client
            .send(&mut seq, &err.encode())
            .await
            .map_err(|_| End::Client)
    }

    async fn reply_ok(&mut self) -> Result<(), End> {
        let mut seq = self.reply_seq;
        let ok = OkPacket {
            status: self.status_flags(),
            ..Default::default()
        };
        self.client
            .send(&mut seq, &ok.encode(self.login.caps))
            .await
            .map_err(|_| End::Client)
    }

    fn status_flags(&self) -> u16 {
        let mut s = 0;
        if self.splice.more {
            s |= status::MORE_RESULTS_EXISTS;
        }
        if self.autocommit {
            s |= status::AUTOCOMMIT;
        }
        if self.in_transaction {
            s |= status::IN_TRANS;
        }
        s
    }

    async fn command(&mut self, payload: Bytes) -> Result<(), End> {
        self.reply_seq = self.client.last_read_seq().wrapping_add(1);
        let Some(&cmd) = payload.first() else {
            // What MariaDB answers to an empty command packet.
            return self.reply_err(&ErrPacket::unknown_command()).await;
        };
        tracing::trace!(id = self.id, cmd, len = payload.len(), "command");
        let payload = match cmd {
            com::STMT_EXECUTE
            | com::STMT_BULK_EXECUTE
            | com::STMT_FETCH
            | com::STMT_CLOSE
            | com::STMT_RESET
            | com::STMT_SEND_LONG_DATA => self.statements.resolve_last(payload),
            _ => payload,
        };
        match cmd {
            com::QUIT => Err(End::Client),
            com::PING => self.reply_ok().await,
            com::QUERY => self.query(payload).await,
            com::INIT_DB => self.init_db(payload).await,
            com::FIELD_LIST => {
                self.simple_on_primary(payload, ResponseKind::FieldList)
                    .await
            }
            com::STATISTICS => self.simple_on_primary(payload, ResponseKind::Single).await,
            com::SET_OPTION => self.set_option(payload).await,
            com::RESET_CONNECTION => {
                if self.login.secret.is_relayed() {
                    return self.reset_relayed().await;
                }
                self.reset_state();
                self.reply_ok().await
            }
            com::CHANGE_USER => self.change_user(payload).await,
            com::PROCESS_KILL => match payload.get(1..5) {
                Some(b) => {
                    let id = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    self.kill(kill::Kill {
                        victim: kill::Victim::Id(id),
                        query_only: false,
                    })
                    .await
                }
                None => self.reply_err(&ErrPacket::malformed()).await,
            },
            com::STMT_PREPARE => self.prepare(payload).await,
            com::STMT_EXECUTE => self.execute(payload).await,
            com::STMT_BULK_EXECUTE => self.bulk_execute(payload).await,
            com::STMT_FETCH => self.fetch(payload).await,
            com::STMT_CLOSE => self.close_statement(payload).await,
            com::STMT_RESET => self.reset_statement(payload).await,
            com::STMT_SEND_LONG_DATA => self.send_long_data(payload).await,
            _ => self.reply_err(&ErrPacket::unknown_command()).await,
        }
    }

    /// The primary connection a relayed login opened: the only one such a session can have,
    /// so everything it does runs there.
    async fn adopt_primary(&mut self, member: Member, conn: PooledConn) {
        match self.slot_with(member, conn, Which::Primary).await {
            Ok(slot) => self.primary = Some(slot),
            Err(err) => {
                tracing::warn!(id = self.id, %err, "cannot take over the relayed login's connection")
            }
        }
        self.pin("authenticated by the primary");
    }

    /// COM_RESET_CONNECTION for a relayed login: the connection is reset in place, since no
    /// other can be opened for it.
    async fn reset_relayed(&mut self) -> Result<(), End> {
        let kept = self.primary.take();
        self.reset_state();
        if let Some(mut slot) = kept {
            if slot.conn.reset().await {
                slot.statements.clear();
                self.primary = Some(slot);
            } else {
                slot.conn.mark_broken();
            }
        }
        self.pin("authenticated by the primary");
        if self.primary.is_none() {
            return self
                .reply_err(&ErrPacket::backend_lost("resetting the connection"))
                .await;
        }
        self.reply_ok().await
    }

    /// Drops everything the session built up, as COM_RESET_CONNECTION promises. The backend
    /// connections go back to the pool, which resets them.
    fn reset_state(&mut self) {
        self.primary = None;
        self.replica = None;
        self.in_transaction = false;
        self.fresh_begin = None;
        self.replay_begin = None;
        self.autocommit = true;
        self.pinned = None;
        self.replay.clear();
        self.replay_sets_autocommit = false;
        self.multi_statements_off = false;
        self.statements = Statements::default();
        self.consistency = None;
        self.last_write = None;
        self.wait_timeout = None;
        self.auto_is_null = false;
        self.client_tracking = None;
        self.last = Which::Primary;
    }

    /// Where a statement runs, before replica availability is considered.
    fn route(&self, c: &Classification) -> Which {
        if self.pinned.is_some()
            || self.in_transaction
            || !self.autocommit
            || c.effects.begins_transaction
            || c.effects.autocommit == Some(false)
        {
            return Which::Primary;
        }
        match c.target {
            Target::Replica => Which::Replica,
            Target::Primary => Which::Primary,
            Target::LastBackend => self.last,
        }
    }

    /// With `sql_auto_is_null` on, `WHERE auto_col IS NULL` finds the row this session
    /// inserted last, which only its primary connection knows.
    fn reads_last_insert(&self, c: &Classification, sql: &[u8]) -> bool {
        self.auto_is_null && c.target == Target::Replica && has_is_null(sql)
    }

    async fn query(&mut self, payload: Bytes) -> Result<(), End> {
        match self.kill_among_statements(&payload) {
            Some(parts) => self.query_each(&payload, &parts).await,
            None => self.query_one(payload).await,
        }
    }

    /// A multi-statement payload with a `KILL` in it: the proxy carries out KILLs itself (a
    /// backend would take the id for one of its own threads), so the payload is split into its
    /// statements.
    fn kill_among_statements(&self, payload: &[u8]) -> Option<Vec<(usize, usize)>> {
        let sql = &payload[1..];
        let multi = self.login.caps & crate::protocol::constants::cap::MULTI_STATEMENTS != 0
            && !self.multi_statements_off;
        if !multi
            || !sql.contains(&b';')
            || !sql.windows(4).any(|w| w.eq_ignore_ascii_case(b"kill"))
        {
            return None;
        }
        let parts = crate::route::split_statements(sql)?;
        let kills = parts
            .iter()
            .any(|&(start, end)| kill::parse_kill(&sql[start..end]) != Ok(None));
        (parts.len() > 1 && kills).then_some(parts)
    }

    /// Runs each statement of a payload in turn, as the server would: their results follow
    /// one another in one response, and an error ends it.
    async fn query_each(&mut self, payload: &[u8], parts: &[(usize, usize)]) -> Result<(), End> {
        let sql = &payload[1..];
        let first_seq = self.reply_seq;
        let mut result = Ok(());
        for (i, &(start, end)) in parts.iter().enumerate() {
            let mut one = Vec::with_capacity(1 + end - start);
            one.push(crate::protocol::constants::com::QUERY);
            one.extend_from_slice(&sql[start..end]);
            self.splice = forward::Splice {
                shift: self.reply_seq.wrapping_sub(1),
                more: i + 1 < parts.len(),
            };
            self.failed = false;
            result = self.query_one(Bytes::from(one)).await;
            self.reply_seq = self.client.last_written_seq().wrapping_add(1);
            if result.is_err() || self.failed {
                break;
            }
        }
        self.splice = forward::Splice::default();
        self.reply_seq = first_seq;
        result
    }

    async fn query_one(&mut self, payload: Bytes) -> Result<(), End> {
        let mut c = classify(&payload[1..]);
        if self.reads_last_insert(&c, &payload[1..]) {
            c.target = Target::Primary;
        }
        if c.target == Target::Primary
            && payload.len() > 5
            && payload[1..]
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| b.eq_ignore_ascii_case(&b'k'))
        {
            match kill::parse_kill(&payload[1..]) {
                Ok(Some(k)) => return self.kill(k).await,
                Ok(None) => {}
                Err(err) => return self.reply_err(&err).await,
            }
        }
        if let Some(cmd) = &c.lagless {
            return self.lagless_command(cmd.clone()).await;
        }
        let started = Instant::now();
        let outcome = match self.route(&c) {
            Which::Replica if c.target == Target::Replica => match self.plan_read(&c).await {
                ReadPlan::Primary => {
                    self.run_on(Which::Primary, &payload, ResponseKind::Query, None)
                        .await?
                }
                ReadPlan::Replica => {
                    self.run_on(Which::Replica, &payload, ResponseKind::Query, None)
                        .await?
                }
                ReadPlan::WaitThenReplica(need) => {
                    // The wait and the read travel together: one round trip when it catches up.
                    if self.wait_then(&need, Some(&payload)).await {
                        self.relay_pending(ResponseKind::Query).await?
                    } else {
                        self.fall_back("wait_timeout");
                        self.run_on(Which::Primary, &payload, ResponseKind::Query, None)
                            .await?
                    }
                }
            },
            Which::Primary => {
                // A write refused by a primary that just went read-only waits for the next one.
                let retry = c.target == Target::Primary
                    && (!self.in_transaction || self.fresh_begin.is_some());
                let how = Run {
                    retry_read_only: retry,
                    ..Run::default()
                };
                self.run_on_with(Which::Primary, &payload, ResponseKind::Query, None, how)
                    .await?
            }
            other => {
                self.run_on(other, &payload, ResponseKind::Query, None)
                    .await?
            }
        };
        if let Some((which, tracker)) = outcome {
            self.record(which, &c, started);
            let succeeded = tracker.error.is_none();
            self.failed |= !succeeded;
            self.after_statement(which, &c, &tracker);
            if succeeded
                && c.effects.begins_transaction
                && self.in_transaction
                && which == Which::Primary
                && is_lone_begin(&payload)
            {
                self.fresh_begin = Some(payload.clone());
            }
            let tracking = (succeeded && c.effects.session_set.is_some())
                .then(|| tracking_change_of(&String::from_utf8_lossy(&payload[1..])))
                .flatten();
            if let Some(asks) = tracking {
                self.client_tracking = Some(asks);
                self.restore_gtid_tracking(which, asks).await;
            }
            if succeeded
                && self.pinned.is_none()
                && c.effects.session_set == Some(SessionSet::Replayable)
                && let Ok(sql) = std::str::from_utf8(&payload[1..])
            {
                if let Some(secs) = wait_timeout_of(sql) {
                    self.wait_timeout = Some(Duration::from_secs(secs.max(1)));
                }
                if let Some(on) = auto_is_null_of(sql) {
                    self.auto_is_null = on;
                }
                let sets_autocommit = c.effects.autocommit.is_some();
                self.remember_set(which, sql.to_string(), sets_autocommit, tracking)
                    .await;
            }
        }
        Ok(())
    }

    fn record(&self, which: Which, c: &Classification, started: Instant) {
        let read = c.target == Target::Replica && self.route(c) == Which::Replica;
        let route = match (read, which) {
            (true, Which::Primary) => "primary_fallback",
            (_, Which::Replica) => "replica",
            _ => "primary",
        };
        let Some(slot) = self.slot(which) else {
            return;
        };
        slot.metrics.statement(route, started.elapsed());
        if read {
            let mode = if which == Which::Primary {
                "primary"
            } else {
                self.read_mode
            };
            slot.metrics.read(mode);
        }
    }

    /// Runs one command on `wanted` (or the primary when no replica can take it) and relays
    /// the response. `Ok(None)`: the client already got an error.
    async fn run_on(
        &mut self,
        wanted: Which,
        payload: &[u8],
        kind: ResponseKind,
        stmt_id: Option<u32>,
    ) -> Result<Option<(Which, ResponseTracker)>, End> {
        self.run_on_with(wanted, payload, kind, stmt_id, Run::default())
            .await
    }

    /// Runs one command on `wanted` (or the primary when no replica can take it) and relays
    /// the response. `Ok(None)`: the client already got an error.
    ///
    /// With `how.retry_read_only`, a write refused because the primary went read-only (a
    /// switchover under way) waits for the next primary and runs there: nothing ran, so the
    /// client sees a pause, not an error. With `how.map_statement`, `payload` is a statement
    /// command with the client's statement id, mapped (and prepared when needed) for whichever
    /// backend connection each attempt uses.
    async fn run_on_with(
        &mut self,
        wanted: Which,
        payload: &[u8],
        kind: ResponseKind,
        stmt_id: Option<u32>,
        how: Run,
    ) -> Result<Option<(Which, ResponseTracker)>, End> {
        let Run {
            retry_read_only,
            map_statement,
        } = how;
        let mut which = wanted;
        // A plain query carries no backend-specific ids and may be re-sent elsewhere; so may a
        // statement command, which is mapped again for the next connection.
        let may_retry = payload.first() == Some(&com::QUERY) || map_statement;
        // Dead idle connections are replaced without using up the retries.
        let mut stale_connections = 0;
        let mut attempt = 0;
        while attempt < 3 {
            which = match self.ensure_slot(which).await {
                Ok(w) => w,
                Err(err) => {
                    self.reply_err(&err).await?;
                    return Ok(None);
                }
            };
            let movable =
                which == Which::Replica || (!self.in_transaction && self.pinned.is_none());
            // A connection the server closed while it sat idle (killed, restarted, timed out):
            // nothing was sent on it, so take a fresh one.
            if let Some(slot) = self.slot_mut(which)
                && movable
                && stale_connections < 8
                && slot.conn.stream.closed_while_idle()
            {
                slot.conn.mark_broken();
                self.lose_slot(which, "closed by the server while idle");
                stale_connections += 1;
                continue;
            }
            // Anything sent in the transaction makes it more than a BEGIN; until it has run, a
            // refusal by a primary that went read-only can still move it.
            let fresh = match which {
                Which::Primary => self.fresh_begin.take(),
                Which::Replica => None,
            }
            .filter(|_| self.pinned.is_none());
            let intercept =
                retry_read_only && (movable || fresh.is_some()) && which == Which::Primary;
            let mapped;
            let payload: &[u8] = if map_statement {
                match self.statement_payload(which, payload).await {
                    Ok(p) => {
                        mapped = p;
                        &mapped
                    }
                    Err(err) => {
                        self.reply_err(&err).await?;
                        return Ok(None);
                    }
                }
            } else {
                payload
            };
            let slot = match which {
                Which::Primary => self.primary.as_mut(),
                Which::Replica => self.replica.as_mut(),
            };
            let Some(slot) = slot else {
                return Ok(None);
            };
            attempt += 1;
            let in_flight = self.shared.health.begin(&slot.addr);
            let shared = &self.shared;
            let note_write = |t: &ResponseTracker| consistent::note_proxy_write(shared, t);
            let on_done: forward::OnDone<'_> = if which == Which::Primary {
                &note_write
            } else {
                &forward::nothing_on_done
            };
            let how = forward::Relay {
                kind,
                stmt_id,
                splice: self.splice,
            };
            let result = relay(
                &mut self.client,
                &mut slot.conn,
                payload,
                how,
                intercept,
                on_done,
            )
            .await;
            drop(in_flight);
            match result {
                Ok(mut tracker) => {
                    self.last = which;
                    if which == Which::Primary
                        && tracker.error == Some(DEADLOCK)
                        && tracker.status.is_none()
                        && self.in_transaction
                    {
                        // An ERR carries no status flags, and a deadlock rolls the whole
                        // transaction back: ask, so that the session does not keep treating
                        // the next BEGIN as part of a transaction still open on this server.
                        let answered = match self.primary.as_mut() {
                            Some(slot) => {
                                let ping = slot.conn.ping();
                                match tokio::time::timeout(STATUS_PROBE_TIMEOUT, ping).await {
                                    Ok(true) => Some(slot.conn.status),
                                    _ => None,
                                }
                            }
                            None => None,
                        };
                        match answered {
                            Some(status) => tracker.status = Some(status),
                            // The transaction is gone either way; so is a connection that
                            // cannot answer a ping.
                            None => {
                                if let Some(slot) = self.primary.as_mut() {
                                    slot.conn.mark_broken();
                                }
                                self.lose_slot(Which::Primary, "no answer after a deadlock");
                            }
                        }
                    }
                    return Ok(Some((which, tracker)));
                }
                Err(RelayError::Client(e)) => return Err(End::Protocol(e)),
                Err(RelayError::ClientGone) => {
                    self.cancel_running(which).await;
                    return Err(End::Client);
                }
                Err(RelayError::ReadOnly(err)) => {
                    let old = self.primary.take().map(|s| s.addr);
                    if let Some(begin) = fresh.filter(|_| self.in_transaction) {
                        // Only BEGIN ran in this transaction (the pool rolls it back): it is
                        // opened again on the next primary, before this statement.
                        self.in_transaction = false;
                        self.replay_begin = Some(begin);
                    }
                    tracing::debug!(id = self.id, attempt, old = ?old, "primary is read-only; waiting for the next one");
                    if attempt < 3
                        && self
                            .shared
                            .wait_for_new_primary(old.as_deref())
                            .await
                            .is_some()
                    {
                        continue;
                    }
                    self.reply_err(&err).await?;
                    return Ok(None);
                }
                Err(RelayError::BackendMidReply) => {
                    self.lose_slot(which, "backend lost mid-response");
                    return Ok(None);
                }
                Err(RelayError::BackendBeforeReply(e)) => {
                    self.lose_slot(which, "backend lost before replying");
                    // A read that never reached a reply can run elsewhere; anything else may
                    // have run, so the client must decide.
                    if which == Which::Replica && attempt == 1 && may_retry {
                        self.shared.metrics.error("backend_lost");
                        continue;
                    }
                    self.reply_err(&ErrPacket::backend_lost(&e.to_string()))
                        .await?;
                    return Ok(None);
                }
            }
        }
        self.reply_err(&ErrPacket::backend_unavailable(
            "no usable backend connection",
        ))
        .await?;
        Ok(None)
    }

    /// The client left while its statement ran on `which`: the statement is stopped with
    /// `KILL QUERY` from a side connection (it would otherwise run on, holding its locks), and
    /// the connection it ran on is closed.
    async fn cancel_running(&mut self, which: Which) {
        let Some(slot) = (match which {
            Which::Primary => self.primary.take(),
            Which::Replica => self.replica.take(),
        }) else {
            return;
        };
        tracing::debug!(id = self.id, backend = %slot.addr, thread = slot.conn.connection_id, "client left mid-statement; cancelling it");
        self.shared.metrics.error("client_gone");
        match self.shared.backend(&self.login, &slot.addr, None).await {
            Ok(mut side) => {
                let sql = format!("KILL QUERY {}", slot.conn.connection_id);
                if !matches!(side.run(&sql).await, Ok(None)) {
                    side.mark_broken();
                }
            }
            Err(err) => {
                tracing::warn!(id = self.id, backend = %slot.addr, %err, "cannot cancel the statement of a client that left")
            }
        }
    }

    fn slot(&self, which: Which) -> Option<&Slot> {
        match which {
            Which::Primary => self.primary.as_ref(),
            Which::Replica => self.replica.as_ref(),
        }
    }

    fn slot_mut(&mut self, which: Which) -> Option<&mut Slot> {
        match which {
            Which::Primary => self.primary.as_mut(),
            Which::Replica => self.replica.as_mut(),
        }
    }

    /// Forgets a backend connection that failed. A primary connection carried the
    /// transaction and any pinned state: both are gone with it.
    fn lose_slot(&mut self, which: Which, why: &'static str) {
        self.shared.metrics.error("backend_lost");
        if let Some(slot) = match which {
            Which::Primary => self.primary.take(),
            Which::Replica => self.replica.take(),
        } {
            // Only this connection is known bad (the client's own wait_timeout or KILL can end
            // it); whether the server is down is for connection attempts and the monitor.
            tracing::warn!(id = self.id, backend = %slot.addr, why, "session lost a backend connection");
        }
        if which == Which::Primary {
            self.in_transaction = false;
            self.pinned = None;
        }
    }

    /// Makes sure the session has a usable connection for `wanted`; returns which one it got
    /// (a read falls back to the primary when no replica is available).
    async fn ensure_slot(&mut self, wanted: Which) -> Result<Which, ErrPacket> {
        match wanted {
            Which::Replica => {
                // Replicas are chosen (with consistency checked) by `choose_for_read`; here a
                // replica connection is only kept while it is still a healthy replica.
                let keep = self.replica.as_ref().is_some_and(|s| {
                    let topo = self.shared.topology();
                    topo.replicas
                        .iter()
                        .any(|m| m.weight > 0 && m.has_addr(&s.member.host, s.member.port))
                        && self.shared.health.is_up(&s.addr)
                });
                if !keep {
                    self.replica = None;
                    return self.ensure_primary().await.map(|()| Which::Primary);
                }
                self.sync_database(Which::Replica).await?;
                Ok(Which::Replica)
            }
            Which::Primary => self.ensure_primary().await.map(|()| Which::Primary),
        }
    }

    async fn ensure_primary(&mut self) -> Result<(), ErrPacket> {
        let topo = self.shared.topology();
        // A transaction in which only its BEGIN ran can be opened again elsewhere.
        let movable_transaction =
            self.in_transaction && self.fresh_begin.is_some() && self.pinned.is_none();
        let stale = match (&self.primary, &topo.primary) {
            (Some(slot), Some(m)) => !m.has_addr(&slot.member.host, slot.member.port),
            // A planned switchover lets transactions open on the old primary finish there
            // before it is fenced (the operator waits for them); new ones wait for the next
            // primary. State that cannot move stays usable as long as its server is.
            (Some(_), None) => {
                !(topo.is_switching()
                    && !movable_transaction
                    && (self.in_transaction || self.pinned.is_some()))
            }
            (None, _) => false,
        };
        drop(topo);
        if stale {
            self.primary = None;
            if movable_transaction {
                self.in_transaction = false;
                self.replay_begin = self.fresh_begin.take();
            } else if self.in_transaction || self.pinned.is_some() {
                // The transaction or pinned state lived on the old primary.
                self.in_transaction = false;
                self.pinned = None;
                self.statements.forget_backend(Which::Primary);
                return Err(ErrPacket::new(
                    1927,
                    "70100",
                    "Connection was killed: the primary changed and this session's transaction or session state was on the old one",
                ));
            }
        }
        if self.primary.is_none() {
            let (member, conn) = self
                .shared
                .primary_conn(&self.login, self.database.as_deref())
                .await?;
            let slot = self.slot_with(member, conn, Which::Primary).await?;
            self.primary = Some(slot);
        }
        self.sync_database(Which::Primary).await?;
        self.replay_transaction_start().await
    }

    /// Opens the moved transaction (see `fresh_begin`) on the new primary connection.
    async fn replay_transaction_start(&mut self) -> Result<(), ErrPacket> {
        let (Some(begin), Some(slot)) = (self.replay_begin.take(), self.primary.as_mut()) else {
            return Ok(());
        };
        let sql = String::from_utf8_lossy(&begin[1..]).into_owned();
        match slot.conn.run(&sql).await {
            Ok(None) => {
                tracing::debug!(id = self.id, backend = %slot.addr, "transaction moved to the new primary");
                self.in_transaction = slot.conn.in_transaction();
                // Still nothing but its BEGIN: it may move again.
                self.fresh_begin = Some(begin);
                Ok(())
            }
            Ok(Some(err)) => {
                self.replay_begin = Some(begin);
                Err(err)
            }
            Err(e) => {
                slot.conn.mark_broken();
                self.replay_begin = Some(begin);
                self.lose_slot(Which::Primary, "backend lost while opening a transaction");
                Err(ErrPacket::backend_lost(&e.to_string()))
            }
        }
    }

    /// A new backend connection with the session's replayable state applied.
    pub(super) async fn open_slot(
        &mut self,
        member: Member,
        which: Which,
    ) -> Result<Slot, ErrPacket> {
        let conn = self
            .shared
            .backend(&self.login, &member.addr(), self.database.as_deref())
            .await?;
        self.slot_with(member, conn, which).await
    }

    /// `conn` (to `member`) as this session's slot, with the replayable state applied.
    async fn slot_with(
        &mut self,
        member: Member,
        mut conn: PooledConn,
        which: Which,
    ) -> Result<Slot, ErrPacket> {
        let addr = member.addr();
        let addr = addr.as_str();
        self.statements.forget_backend(which);
        let mut statements = self.replay.clone();
        if which == Which::Replica && self.replay_sets_autocommit {
            // Reads reach a replica only in autocommit mode; a replayed autocommit=0 would
            // hold a snapshot open and serve ever older data.
            statements.push("SET autocommit=1".into());
        }
        for sql in &statements {
            match conn.run(sql).await {
                Ok(None) => {}
                Ok(Some(err)) => {
                    tracing::warn!(id = self.id, backend = addr, %err, "replaying session state failed");
                    return Err(err);
                }
                Err(e) => {
                    conn.mark_broken();
                    return Err(ErrPacket::backend_lost(&e.to_string()));
                }
            }
        }
        if self.multi_statements_off {
            let _ = conn.simple(com::SET_OPTION, &1u16.to_le_bytes()).await;
        }
        if let Some(asks) = self.client_tracking {
            // The replayed SET replaced what the proxy tracks.
            conn.client_tracks_gtids = asks;
            if conn.restore_gtid_tracking().await.is_err() {
                conn.mark_broken();
                return Err(ErrPacket::backend_lost("restoring GTID tracking"));
            }
        }
        let thread = self.control.register(addr, conn.connection_id);
        Ok(Slot {
            conn,
            addr: addr.to_string(),
            member,
            statements: HashMap::new(),
            _thread: thread,
            metrics: self.shared.metrics.backend_handle(addr),
        })
    }

    pub(super) async fn sync_database(&mut self, which: Which) -> Result<(), ErrPacket> {
        let (Some(db), Some(slot)) = (&self.database, self.slot(which)) else {
            return Ok(());
        };
        if slot.conn.database.as_ref() == Some(db) {
            return Ok(());
        }
        let db = db.clone();
        let Some(slot) = self.slot_mut(which) else {
            return Ok(());
        };
        match slot.conn.use_database(&db).await {
            Ok(None) => Ok(()),
            Ok(Some(err)) => Err(err),
            Err(e) => {
                slot.conn.mark_broken();
                self.lose_slot(which, "backend lost while changing database");
                Err(ErrPacket::backend_lost(&e.to_string()))
            }
        }
    }

    /// Tracks what the statement did to the session.
    fn after_statement(&mut self, which: Which, c: &Classification, t: &ResponseTracker) {
        if which == Which::Primary {
            if let Some(st) = t.status {
                self.in_transaction = st & status::IN_TRANS != 0;
                self.autocommit = st & status::AUTOCOMMIT != 0;
            }
            self.learn_write(t);
        }
        if t.error.is_some() {
            // A multi-statement payload may have run part-way; pin when any part could have
            // left state behind.
            let e = &c.effects;
            if e.session_set.is_some()
                || e.creates_temp_table
                || e.locks_tables
                || e.user_lock
                || e.user_variable_write
            {
                self.pin("a multi-statement payload failed part-way");
            }
            return;
        }
        let e = &c.effects;
        if let Some(db) = &e.use_database {
            self.database = Some(db.clone());
            if let Some(slot) = self.slot_mut(which) {
                slot.conn.database = Some(db.clone());
            }
        }
        let pin = if e.creates_temp_table {
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
        if let Some(reason) = pin {
            self.pin(reason);
        }
    }

    fn pin(&mut self, reason: &'static str) {
        if self.pinned.is_none() {
            tracing::debug!(id = self.id, reason, "session pinned to the primary");
            self.pinned = Some(reason);
            // The replica connection will not be used again.
            self.replica = None;
        }
    }

    /// After the client set what the session tracks: both connections track committed GTIDs
    /// again (the proxy's reads depend on them), and show them to the client only if it asked.
    async fn restore_gtid_tracking(&mut self, ran_on: Which, asks: bool) {
        let Some(slot) = self.slot_mut(ran_on) else {
            return;
        };
        slot.conn.client_tracks_gtids = asks;
        if slot.conn.restore_gtid_tracking().await.is_err() {
            slot.conn.mark_broken();
            self.lose_slot(ran_on, "backend lost while restoring GTID tracking");
        }
    }

    /// Adds a replayable SET to the session state and applies it to the other connection.
    /// `tracking`: the SET changed what the session tracks (see `tracking_change_of`).
    async fn remember_set(
        &mut self,
        ran_on: Which,
        sql: String,
        sets_autocommit: bool,
        tracking: Option<bool>,
    ) {
        if self.replay.len() >= MAX_REPLAY {
            self.pin("too much session state to replay");
            return;
        }
        self.replay_sets_autocommit |= sets_autocommit;
        self.replay.push(sql.clone());
        let other = match ran_on {
            Which::Primary => Which::Replica,
            Which::Replica => Which::Primary,
        };
        let Some(slot) = self.slot_mut(other) else {
            return;
        };
        let mut failed = !matches!(slot.conn.run(&sql).await, Ok(None));
        if !failed && let Some(asks) = tracking {
            slot.conn.client_tracks_gtids = asks;
            failed = slot.conn.restore_gtid_tracking().await.is_err();
        }
        if failed {
            // Take a fresh connection next time; it gets the full replay.
            match other {
                Which::Primary => self.primary = None,
                Which::Replica => self.replica = None,
            }
            self.statements.forget_backend(other);
        } else if other == Which::Replica
            && sets_autocommit
            && let Some(slot) = self.replica.as_mut()
        {
            let _ = slot.conn.run("SET autocommit=1").await;
        }
    }

    async fn init_db(&mut self, payload: Bytes) -> Result<(), End> {
        let outcome = self
            .run_on(Which::Primary, &payload, ResponseKind::Single, None)
            .await?;
        if let Some((_, t)) = outcome
            && t.error.is_none()
        {
            let db = String::from_utf8_lossy(&payload[1..]).into_owned();
            if let Some(slot) = self.primary.as_mut() {
                slot.conn.database = Some(db.clone());
            }
            self.database = Some(db);
        }
        Ok(())
    }

    async fn simple_on_primary(&mut self, payload: Bytes, kind: ResponseKind) -> Result<(), End> {
        self.run_on(Which::Primary, &payload, kind, None)
            .await
            .map(drop)
    }

    async fn set_option(&mut self, payload: Bytes) -> Result<(), End> {
        let outcome = self
            .run_on(Which::Primary, &payload, ResponseKind::Single, None)
            .await?;
        if let Some((_, t)) = outcome
            && t.error.is_none()
            && payload.len() >= 3
        {
            let off = u16::from_le_bytes([payload[1], payload[2]]) == 1;
            self.multi_statements_off = off;
            if let Some(slot) = self.replica.as_mut() {
                let _ = slot.conn.simple(com::SET_OPTION, &payload[1..3]).await;
            }
        }
        Ok(())
    }

    async fn lagless_command(&mut self, cmd: LaglessCommand) -> Result<(), End> {
        match cmd {
            LaglessCommand::SetConsistency(mode) => {
                self.consistency = Some(mode);
                self.reply_ok().await
            }
            LaglessCommand::ResetConsistency => {
                self.consistency = None;
                self.reply_ok().await
            }
            LaglessCommand::ShowConsistency => {
                let mode = self.consistency.unwrap_or_default().to_string();
                let packets = local::single_value(
                    "lagless_consistency",
                    &mode,
                    self.login.caps,
                    self.status_flags(),
                );
                let mut seq = self.reply_seq;
                for p in packets {
                    self.client.buffer_payload(&mut seq, &p);
                }
                self.client.flush().await.map_err(|_| End::Client)
            }
            LaglessCommand::Invalid(msg) => {
                self.reply_err(&ErrPacket::wrong_value("lagless_consistency", &msg))
                    .await
            }
        }
    }

    /// How long the session may sit idle: its own `SET wait_timeout`, else the default.
    fn idle_limit(&self) -> Duration {
        self.wait_timeout.unwrap_or(self.shared.config.wait_timeout)
    }

    async fn change_user(&mut self, payload: Bytes) -> Result<(), End> {
        match login::change_user(&mut self.client, &self.shared, &self.login, &payload).await {
            Ok(Some(mut new_login)) => {
                if new_login.slot.is_none() {
                    new_login.slot = self.login.slot.take();
                }
                self.control.set_user(&new_login.user);
                self.reset_state();
                self.database = new_login.database.clone();
                self.login = new_login;
                Ok(())
            }
            Ok(None) => Err(End::Client),
            Err(e) => Err(End::Protocol(e)),
        }
    }
}

/// Whether a COM_QUERY payload is one `BEGIN [WORK]` or `START TRANSACTION [...]` and nothing
/// else: a transaction opened by it holds no work until its next statement.
fn is_lone_begin(payload: &[u8]) -> bool {
    let Some(sql) = payload
        .split_first()
        .filter(|(cmd, _)| **cmd == com::QUERY)
        .and_then(|(_, sql)| std::str::from_utf8(sql).ok())
    else {
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

/// The number a `SET [SESSION] wait_timeout = N` assigns, if the statement has one.
fn wait_timeout_of(sql: &str) -> Option<u64> {
    let lower = sql.to_ascii_lowercase();
    let at = lower.find("wait_timeout")?;
    // Not interactive_timeout or net_wait_timeout and the like.
    if lower[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let rest = lower[at + "wait_timeout".len()..].trim_start();
    let rest = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix(":="))?
        .trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
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

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.sessions.remove(self.id);
        if self.in_transaction {
            // The pool resets the connection, which rolls the transaction back.
            tracing::debug!(
                id = self.id,
                "client left inside a transaction; it is rolled back"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{auto_is_null_of, has_is_null, is_lone_begin, wait_timeout_of};
    use crate::protocol::constants::com;

    #[test]
    fn lone_begins() {
        let q = |sql: &str| [&[com::QUERY][..], sql.as_bytes()].concat();
        for yes in [
            "BEGIN",
            "begin work;",
            "START TRANSACTION",
            "start transaction read only",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE",
        ] {
            assert!(is_lone_begin(&q(yes)), "{yes}");
        }
        for no in [
            "BEGIN; INSERT INTO t VALUES (1)",
            "BEGIN NOT ATOMIC SELECT 1; END",
            "/* x */ BEGIN",
            "COMMIT AND CHAIN",
            "XA START 'x'",
            "SELECT 1",
        ] {
            assert!(!is_lone_begin(&q(no)), "{no}");
        }
        assert!(!is_lone_begin(&[com::STMT_EXECUTE, 1, 0, 0, 0]));
    }

    #[test]
    fn auto_is_null_settings_and_reads() {
        assert_eq!(auto_is_null_of("SET sql_auto_is_null = 1"), Some(true));
        assert_eq!(auto_is_null_of("set SQL_AUTO_IS_NULL=ON"), Some(true));
        assert_eq!(
            auto_is_null_of("SET @@session.sql_auto_is_null := 0"),
            Some(false)
        );
        assert_eq!(auto_is_null_of("SET NAMES utf8"), None);
        assert!(has_is_null(b"SELECT * FROM t WHERE id IS NULL"));
        assert!(has_is_null(b"select * from t where id is\n  null"));
        assert!(!has_is_null(b"SELECT * FROM t WHERE id IS NOT NULL"));
        assert!(!has_is_null(b"SELECT this_null FROM t"));
        assert!(!has_is_null(b"SELECT 1 FROM t WHERE axis NULL"));
    }

    #[test]
    fn wait_timeout_assignments() {
        assert_eq!(wait_timeout_of("SET wait_timeout = 1"), Some(1));
        assert_eq!(wait_timeout_of("set session WAIT_TIMEOUT=30"), Some(30));
        assert_eq!(
            wait_timeout_of("SET @@session.wait_timeout=5, autocommit=1"),
            Some(5)
        );
        assert_eq!(wait_timeout_of("SET interactive_timeout = 5"), None);
        assert_eq!(wait_timeout_of("SET wait_timeout = DEFAULT"), None);
        assert_eq!(wait_timeout_of("SET NAMES utf8"), None);
    }
}
