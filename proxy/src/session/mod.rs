//! One client connection: its state, routing of each command, and the backends it uses.
//!
//! The session is state + decisions + execution: [`state::SessionState`] holds what it
//! remembers between commands; [`decide`] says, as values, where a statement goes and what
//! its outcome changes, and `backend::select` which replica a read uses; the rest carries the
//! decisions out on the connections (`run`, `slots`, `consistent`, `effects`, `forward`).
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
pub mod decide;
mod digesting;
mod effects;
pub mod forward;
pub mod kill;
pub mod login;
mod multiplex;
pub mod own_results;
mod prepared;
pub mod proxy_state;
mod relay_failure;
mod replica_transaction;
mod run;
mod slots;
pub mod state;
mod statements;
mod tenancy;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::constants::{com, status};
use crate::protocol::io::ClientStream;
use crate::protocol::messages::{ErrPacket, Ok as OkPacket};
use crate::protocol::packet::PacketError;
use crate::protocol::response::{ResponseKind, ResponseTracker};
use crate::route::{
    Classification, Kill, KillStatement, LaglessCommand, Victim, classify_with,
    split_statements_with,
};
use crate::session::proxy_state::ProxyState;
use consistent::ReadyRead;
use decide::{Command, Route};
use digesting::cost_key;
use login::Login;
use replica_transaction::replica_transaction_refusal;
use run::Run;
use state::SessionState;

pub use slots::BackendSlot;

/// The role of one of the session's backend connections: where a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendRole {
    Primary,
    Replica,
}

/// The end of a session.
#[derive(Debug)]
pub enum End {
    /// The client quit or went away.
    Client,
    /// The client broke the protocol; it got an error first where possible.
    Protocol(PacketError),
}

/// One client connection after login: its I/O handles and its [`SessionState`].
pub struct Session {
    shared: Arc<ProxyState>,
    /// The cluster the session works on: the proxy's only one, or in a tenant pool the
    /// cluster of its current tenant.
    backends: Arc<crate::backend::Backends>,
    /// Whose data the session's current cluster holds for it (tenant pools).
    owner: crate::tenant::Owner,
    /// The session's default database lives on another cluster than the current one (a
    /// statement named another tenant): connections here are opened without it.
    db_elsewhere: bool,
    /// The tenant router's generation when the session was last placed (tenant pools).
    placed_at: u64,
    /// The route the session was last placed by (tenant pools; `None` for the global cluster).
    placed_route: Option<lagless_directory::Route>,
    /// The current statement belongs to a tenant and may run again on another cluster when
    /// the server says the tenant's data is not there (see `Session::reroute`).
    reroutable: bool,
    /// Set, instead of an error reaching the client, when the server said a reroutable
    /// statement's database or table is missing.
    reroute: Option<ErrPacket>,
    /// The tenant named by the login's connection attribute (tenant pools), read once.
    tenant_attribute: Option<String>,
    /// The session's own writes on the other clusters it has used (for `session`
    /// consistency), kept while it works elsewhere: GTIDs of one cluster mean nothing on
    /// another.
    writes_elsewhere: Vec<(Arc<crate::backend::Backends>, crate::gtid::GtidSet)>,
    client: ClientStream,
    login: Login,
    id: u32,
    primary: Option<BackendSlot>,
    replica: Option<BackendSlot>,
    state: SessionState,
    /// The consistency mode (or "primary") the current read was served under, for metrics.
    read_mode: &'static str,
    /// Sequence id of the proxy's own reply to the current command.
    reply_seq: u8,
    /// Where the current statement's response goes among the results of a multi-statement
    /// payload run one statement at a time.
    splice: forward::Splice,
    /// The current command's response ended in an error.
    failed: bool,
    /// The first server error code of the current COM_QUERY payload.
    last_error: Option<u16>,
    /// The command just run left something the next one may read on its connection alone
    /// (see `multiplex::leaves_for_next`).
    for_next: bool,
    /// Why a multiplexing session holds its connections between commands, counted while so.
    holding: Option<crate::metrics::HoldingGuard>,
    /// The current read waited for its replica to apply a position (for the digests).
    read_waited: bool,
    /// When the current statement was sent on its way, after any head read: its own round
    /// trip starts there (for the digests' costs).
    service_from: Option<Instant>,
    /// The current read runs on the primary for being cheaper than a head read (not a
    /// fallback: counted under its own mode).
    cheap_read: bool,
    control: Arc<kill::SessionControl>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user", &self.login.user)
            .field("in_transaction", &self.state.in_transaction)
            .field("pinned", &self.state.pinned)
            .finish()
    }
}

impl Session {
    pub fn new(shared: Arc<ProxyState>, client: ClientStream, mut login: Login, id: u32) -> Self {
        let control = kill::SessionControl::new(&login.user);
        shared.sessions.insert(id, control.clone());
        let (backends, owner) = login
            .placed
            .take()
            .unwrap_or_else(|| (shared.backends.clone(), crate::tenant::Owner::Global));
        let tenant_attribute = tenant_attribute(&shared, &login);
        let mut state = SessionState::new(login.database.clone(), shared.global_sql_mode());
        state.read_only_on_replicas = shared.config.read_only_on_replicas;
        state.optimistic = shared.config.optimistic_transactions;
        Self {
            backends,
            owner,
            tenant_attribute,
            db_elsewhere: false,
            placed_at: u64::MAX,
            placed_route: None,
            reroutable: false,
            reroute: None,
            writes_elsewhere: Vec::new(),
            state,
            shared,
            client,
            login,
            id,
            primary: None,
            replica: None,
            read_mode: "primary",
            reply_seq: 1,
            splice: forward::Splice::default(),
            failed: false,
            last_error: None,
            for_next: false,
            holding: None,
            read_waited: false,
            service_from: None,
            cheap_read: false,
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
        // The kill and shutdown waits, too, live as long as the session: made anew for each
        // command they would take the shared waiter lists' locks twice a statement.
        let control = self.control.clone();
        let killed = control.kill_signal.notified();
        tokio::pin!(killed);
        let shutting_down = proxy_state::wait_for_shutdown(&mut shutdown);
        tokio::pin!(shutting_down);
        'session: loop {
            // A shutdown lets open transactions finish; idle sessions close at once.
            let busy = self.state.in_transaction || self.state.replica_transaction.is_some();
            if self.control.is_killed() {
                break;
            }
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
                    () = &mut killed => {
                        tracing::debug!(id = self.id, "session killed");
                        break 'session;
                    }
                    () = &mut shutting_down, if !busy => {
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
            self.for_next = false;
            match self.command(payload).await {
                Ok(()) => self.park_if_free(),
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
        if self.state.autocommit {
            s |= status::AUTOCOMMIT;
        }
        if self.state.in_transaction || self.state.replica_transaction.is_some() {
            s |= status::IN_TRANS;
        }
        // Client libraries choose how to escape strings from this flag in every OK packet.
        if self.state.sql_mode.no_backslash_escapes {
            s |= status::NO_BACKSLASH_ESCAPES;
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
            | com::STMT_SEND_LONG_DATA => self.state.statements.resolve_last(payload),
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
                    self.kill(Kill {
                        victim: Victim::Id(id),
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
        self.writes_elsewhere.clear();
        self.placed_at = u64::MAX;
        self.state.reset(self.shared.global_sql_mode());
    }

    async fn query(&mut self, payload: Bytes) -> Result<(), End> {
        let c = classify_with(&payload[1..], self.state.sql_mode);
        let step = match self
            .follow_tenant(&payload[1..], c.effects.use_database.as_deref())
            .await
        {
            Ok(step) => step,
            Err(err) => return self.reply_err(&err).await,
        };
        self.reroutable = step.as_ref().is_some_and(|s| s.reroutable);
        let mut reroutes = 0;
        let mut c = Some(c);
        let done = loop {
            self.failed = false;
            self.last_error = None;
            // Classified again only for a rerun, which is rare.
            let c = c
                .take()
                .unwrap_or_else(|| classify_with(&payload[1..], self.state.sql_mode));
            let done = if c.kill == Some(KillStatement::AmongOthers)
                && let Some(parts) = self.statements_of(&payload)
            {
                // A later statement may fail after earlier ones ran: never run them again.
                self.reroutable = false;
                self.query_each(&payload, &parts).await
            } else {
                self.query_one(payload.clone(), c).await
            };
            let (Some(err), Some(step)) = (self.reroute.take(), &step) else {
                break done;
            };
            // The tenant's data was not where the route led: it may have moved.
            reroutes += 1;
            match self.reroute(step).await {
                Ok(true) if reroutes < 3 => continue,
                // A freeze that outlasted the hold says so; otherwise the server's answer
                // stands.
                Err(e) if e.code == crate::tenant::decide::STILL_FROZEN => {
                    break self.reply_err(&e).await;
                }
                _ => break self.reply_err(&err).await,
            }
        };
        self.reroutable = false;
        if let Some(step) = step {
            self.after_tenant_step(step, self.failed, self.last_error)
                .await;
        }
        done
    }

    /// The statements of a multi-statement payload, to run one at a time so that the proxy can
    /// carry out a `KILL` among them itself. `None` when the client did not enable
    /// multi-statements or the payload cannot be cut safely.
    fn statements_of(&self, payload: &[u8]) -> Option<Vec<(usize, usize)>> {
        let multi = self.login.caps & crate::protocol::constants::cap::MULTI_STATEMENTS != 0
            && !self.state.multi_statements_off;
        if !multi {
            return None;
        }
        let parts = split_statements_with(&payload[1..], self.state.sql_mode)?;
        (parts.len() > 1).then_some(parts)
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
            // An earlier statement may have changed the sql_mode.
            let c = classify_with(&one[1..], self.state.sql_mode);
            result = self.query_one(Bytes::from(one), c).await;
            self.reply_seq = self.client.last_written_seq().wrapping_add(1);
            if result.is_err() || self.failed {
                break;
            }
        }
        self.splice = forward::Splice::default();
        self.reply_seq = first_seq;
        result
    }

    /// Runs one COM_QUERY payload, classified as `c`.
    async fn query_one(&mut self, payload: Bytes, c: Classification) -> Result<(), End> {
        let route = decide::route(&self.state, &c, &payload[1..]);
        let digest = self.digest_of(&payload[1..]);
        let mode = self.state.sql_mode;
        let started = Instant::now();
        let outcome = match &route {
            Route::Kill(k) => return self.kill(*k).await,
            Route::RefuseKill => return self.reply_err(&kill::unsupported()).await,
            Route::Lagless(cmd) => return self.lagless_command(cmd.clone()).await,
            Route::Read { mode } => match self.ready_read(*mode, cost_key(digest, &c)).await {
                ReadyRead::Primary => {
                    self.run_on(BackendRole::Primary, &payload, ResponseKind::Query, None)
                        .await?
                }
                ReadyRead::Replica => {
                    self.run_on(BackendRole::Replica, &payload, ResponseKind::Query, None)
                        .await?
                }
                // A transaction's start is not sent behind the wait: were the wait to give
                // up, it would have opened a transaction on the replica all the same.
                ReadyRead::WaitThenReplica(need) if c.effects.begins_transaction => {
                    if self.wait_then(&need, None).await {
                        self.run_on(BackendRole::Replica, &payload, ResponseKind::Query, None)
                            .await?
                    } else {
                        self.fall_back("wait_timeout");
                        self.run_on(BackendRole::Primary, &payload, ResponseKind::Query, None)
                            .await?
                    }
                }
                ReadyRead::WaitThenReplica(need) => {
                    // The wait and the read travel together: one round trip when it catches up.
                    if self.wait_then(&need, Some(&payload)).await {
                        self.relay_pending(ResponseKind::Query).await?
                    } else {
                        self.fall_back("wait_timeout");
                        self.run_on(BackendRole::Primary, &payload, ResponseKind::Query, None)
                            .await?
                    }
                }
            },
            Route::Primary { retry_read_only } => {
                self.query_on_primary(&payload, *retry_read_only).await?
            }
            Route::LastReplica | Route::InReplicaTransaction => {
                self.run_on(BackendRole::Replica, &payload, ResponseKind::Query, None)
                    .await?
            }
            Route::LeaveReplicaTransaction => {
                self.leave_replica_transaction().await;
                self.query_on_primary(&payload, true).await?
            }
            Route::RefuseInReplicaTransaction => {
                return self.reply_err(&replica_transaction_refusal()).await;
            }
            Route::MoveReplicaTransaction => {
                if let Err(err) = self.move_replica_transaction().await {
                    self.failed = true;
                    return self.reply_err(&err).await;
                }
                self.run_on(BackendRole::Primary, &payload, ResponseKind::Query, None)
                    .await?
            }
        };
        let ran = outcome.as_ref().map(|(which, tracker)| (*which, tracker));
        self.record_digest(digest, &payload[1..], mode, started, ran);
        if let Some((which, tracker)) = outcome {
            self.record(which, &route, started);
            self.failed |= tracker.error.is_some();
            self.last_error = self.last_error.or(tracker.error);
            self.after_statement(which, &c, &tracker, Command::Query(&payload))
                .await;
            if which == BackendRole::Replica && !c.effects.begins_transaction {
                self.log_for_replay(&c, &tracker, &payload);
            }
        }
        Ok(())
    }

    /// Runs a COM_QUERY payload on the primary; `retry_read_only`: a refusal by a primary
    /// that went read-only waits for the next one.
    async fn query_on_primary(
        &mut self,
        payload: &[u8],
        retry_read_only: bool,
    ) -> Result<Option<(BackendRole, ResponseTracker)>, End> {
        let how = Run {
            retry_read_only,
            ..Run::default()
        };
        self.run_on_with(
            BackendRole::Primary,
            payload,
            ResponseKind::Query,
            None,
            how,
        )
        .await
    }

    fn record(&self, which: BackendRole, route: &Route, started: Instant) {
        let read = route.is_read();
        let cheap = read && which == BackendRole::Primary && self.cheap_read;
        let route = match (read, which) {
            (true, BackendRole::Primary) if cheap => "primary",
            (true, BackendRole::Primary) => "primary_fallback",
            (_, BackendRole::Replica) => "replica",
            _ => "primary",
        };
        let Some(slot) = self.slot(which) else {
            return;
        };
        slot.metrics.statement(route, started.elapsed());
        if read {
            let mode = if which == BackendRole::Primary && !cheap {
                "primary"
            } else {
                self.read_mode
            };
            slot.metrics.read(mode);
        }
    }

    async fn init_db(&mut self, payload: Bytes) -> Result<(), End> {
        let db = String::from_utf8_lossy(&payload[1..]).into_owned();
        let step = match self.follow_tenant(b"", Some(&db)).await {
            Ok(step) => step,
            Err(err) => return self.reply_err(&err).await,
        };
        let outcome = self
            .run_on(BackendRole::Primary, &payload, ResponseKind::Single, None)
            .await?;
        if let Some((_, t)) = &outcome
            && t.error.is_none()
        {
            if let Some(slot) = self.primary.as_mut() {
                slot.conn.database = Some(db.clone());
            }
            self.state.database = Some(db);
            self.db_elsewhere = false;
        }
        if let Some(step) = step {
            let error = outcome.as_ref().and_then(|(_, t)| t.error);
            let failed = outcome.is_none() || error.is_some();
            self.after_tenant_step(step, failed, error).await;
        }
        Ok(())
    }

    async fn simple_on_primary(&mut self, payload: Bytes, kind: ResponseKind) -> Result<(), End> {
        self.run_on(BackendRole::Primary, &payload, kind, None)
            .await
            .map(drop)
    }

    async fn set_option(&mut self, payload: Bytes) -> Result<(), End> {
        let outcome = self
            .run_on(BackendRole::Primary, &payload, ResponseKind::Single, None)
            .await?;
        if let Some((_, t)) = outcome
            && t.error.is_none()
            && payload.len() >= 3
        {
            let off = u16::from_le_bytes([payload[1], payload[2]]) == 1;
            self.state.multi_statements_off = off;
            if let Some(slot) = self.replica.as_mut() {
                let _ = slot.conn.simple(com::SET_OPTION, &payload[1..3]).await;
            }
        }
        Ok(())
    }

    async fn lagless_command(&mut self, cmd: LaglessCommand) -> Result<(), End> {
        match cmd {
            LaglessCommand::SetConsistency(mode) => {
                self.state.consistency = Some(mode);
                self.reply_ok().await
            }
            LaglessCommand::ResetConsistency => {
                self.state.consistency = None;
                self.reply_ok().await
            }
            LaglessCommand::ShowConsistency => {
                let mode = self.state.consistency.unwrap_or_default().to_string();
                let packets = own_results::single_value(
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

    /// The consistency mode of the session's cluster: its topology's, else the configured one.
    fn default_consistency(&self) -> crate::route::ConsistencyMode {
        if Arc::ptr_eq(&self.backends, &self.shared.backends) {
            return self.shared.default_consistency();
        }
        self.backends
            .topology()
            .consistency
            .unwrap_or(self.shared.config.consistency)
    }

    /// How long the session may sit idle: its own `SET wait_timeout`, else the default.
    fn idle_limit(&self) -> Duration {
        self.state
            .wait_timeout
            .unwrap_or(self.shared.config.wait_timeout)
    }

    async fn change_user(&mut self, payload: Bytes) -> Result<(), End> {
        match login::change_user(&mut self.client, &self.shared, &self.login, &payload).await {
            Ok(Some(mut new_login)) => {
                if new_login.slot.is_none() {
                    new_login.slot = self.login.slot.take();
                }
                self.control.set_user(&new_login.user);
                self.reset_state();
                self.state.database = new_login.database.clone();
                let (backends, owner) = new_login.placed.take().unwrap_or_else(|| {
                    (self.shared.backends.clone(), crate::tenant::Owner::Global)
                });
                self.backends = backends;
                self.owner = owner;
                self.db_elsewhere = false;
                self.tenant_attribute = tenant_attribute(&self.shared, &new_login);
                self.login = new_login;
                Ok(())
            }
            Ok(None) => Err(End::Client),
            Err(e) => Err(End::Protocol(e)),
        }
    }
}

/// The connection attribute that names a login's tenant, in a tenant pool.
fn tenant_attribute(shared: &ProxyState, login: &Login) -> Option<String> {
    let router = shared.tenants.as_ref()?;
    tenancy::connection_attribute(&login.attributes, &router.attribute)
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.sessions.remove(self.id);
        if self.state.in_transaction {
            // The pool resets the connection, which rolls the transaction back.
            tracing::debug!(
                id = self.id,
                "client left inside a transaction; it is rolled back"
            );
        }
    }
}
