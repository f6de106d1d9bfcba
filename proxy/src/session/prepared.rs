//! Prepared statements across backend connections.
//!
//! The client sees statement ids the proxy hands out. A statement is prepared on the primary
//! when the client prepares it (so errors come back at once), and lazily on a replica the first
//! time an execution is routed there. Executions that rely on parameter types sent earlier get
//! the types re-attached when they reach a backend that has not seen them.

use std::time::Instant;

use bytes::Bytes;

use super::decide::{self, Command, Route};
use super::statements::{BackendStmt, Stmt, statement_id};
use super::{BackendRole, BackendSlot, End, Session};
use crate::backend::BackendConn;
use crate::protocol::constants::{com, header};
use crate::protocol::messages::ErrPacket;
use crate::protocol::packet::PacketError;
use crate::protocol::response::{PrepareOk, ResponseKind, ResponseTracker, Step};
use crate::route::classify_with;

impl BackendConn {
    /// Prepares a statement on this connection, consuming the whole response.
    pub async fn prepare(
        &mut self,
        payload: &[u8],
    ) -> Result<Result<PrepareOk, ErrPacket>, PacketError> {
        let mut seq = 0;
        self.stream.send(&mut seq, payload).await?;
        let mut tracker = ResponseTracker::new(ResponseKind::Prepare, self.caps);
        let mut first = None;
        loop {
            let pkt = self.stream.read_raw().await?;
            if first.is_none() {
                first = Some(pkt.payload.clone());
            }
            if tracker.feed(&pkt.payload)? == Step::Done {
                break;
            }
        }
        self.last_used = Instant::now();
        match (tracker.prepare, first) {
            (Some(ok), _) => Ok(Ok(ok)),
            (None, Some(p)) if p.first() == Some(&header::ERR) => Ok(Err(ErrPacket::parse(&p)?)),
            _ => Err(PacketError::Malformed("bad prepare response")),
        }
    }

    /// COM_STMT_CLOSE (no response).
    pub async fn close_statement(&mut self, id: u32) -> Result<(), PacketError> {
        let mut payload = vec![com::STMT_CLOSE];
        payload.extend_from_slice(&id.to_le_bytes());
        let mut seq = 0;
        self.stream.send(&mut seq, &payload).await
    }
}

impl Session {
    /// The scope the session's statements are prepared in now: a backend statement prepared
    /// in another (database, session state) is another statement.
    fn statement_scope(&self) -> u64 {
        crate::backend::stmt_cache::scope(self.database_here(), self.state.signature())
    }

    pub(super) async fn prepare(&mut self, payload: Bytes) -> Result<(), End> {
        if let Err(err) = self.follow_tenant(&payload[1..], None).await {
            return self.reply_err(&err).await;
        }
        let id = self.state.statements.allocate();
        self.state.statements.last = None;
        let outcome = self
            .run_on(
                BackendRole::Primary,
                &payload,
                ResponseKind::Prepare,
                Some(id),
            )
            .await?;
        let Some((which, tracker)) = outcome else {
            return Ok(());
        };
        let Some(ok) = tracker.prepare else {
            return Ok(());
        };
        let bound = self.backends.pool.config().statements_per_connection;
        let scope = self.statement_scope();
        if let Some(slot) = self.slot_mut(which) {
            slot.statements.insert(
                id,
                BackendStmt {
                    id: ok.statement_id,
                },
            );
            remember(slot, (payload.clone(), scope), ok.statement_id, bound).await;
        }
        self.state.statements.last = Some(id);
        let digest = self.digest_of(&payload[1..]);
        self.state.statements.map.insert(
            id,
            Stmt {
                classification: classify_with(&payload[1..], self.state.sql_mode),
                digest,
                prepare: payload,
                params: ok.params,
                types: None,
                long_data: false,
                cursor_on: None,
            },
        );
        Ok(())
    }

    /// Rewrites a statement command for the backend behind `which`, preparing the statement
    /// there first when needed.
    pub(super) async fn statement_payload(
        &mut self,
        which: BackendRole,
        payload: &[u8],
    ) -> Result<Vec<u8>, ErrPacket> {
        let cid = statement_id(payload).ok_or_else(ErrPacket::malformed)?;
        let stmt = self
            .state
            .statements
            .map
            .get(&cid)
            .ok_or_else(|| ErrPacket::unknown_statement(cid, "mysql_stmt_execute"))?
            .clone();
        let bound = self.backends.pool.config().statements_per_connection;
        let known = self
            .slot(which)
            .and_then(|s| s.statements.get(&cid).copied());
        // Only a statement this connection has not mapped yet needs its scope.
        let scope = match known {
            Some(_) => 0,
            None => self.statement_scope(),
        };
        let slot = self
            .slot_mut(which)
            .ok_or_else(|| ErrPacket::backend_unavailable("no backend"))?;
        let backend = match known {
            Some(b) => b,
            None => prepare_on(slot, cid, (&stmt.prepare, scope), bound).await?,
        };
        let mut out = payload.to_vec();
        out[1..5].copy_from_slice(&backend.id.to_le_bytes());
        let mut learned_types = None;
        if out[0] == com::STMT_EXECUTE && stmt.params > 0 {
            let nulls = usize::from(stmt.params).div_ceil(8);
            let flag_at = 10 + nulls;
            let types_len = 2 * usize::from(stmt.params);
            match out.get(flag_at) {
                Some(1) => {
                    let types = out
                        .get(flag_at + 1..flag_at + 1 + types_len)
                        .ok_or_else(ErrPacket::malformed)?;
                    learned_types = Some(types.to_vec());
                }
                // The client relies on types it bound before; the backend statement may have
                // none, or another session's.
                Some(0) => {
                    if let Some(types) = &stmt.types
                        && slot.conn.prepared.types(backend.id) != Some(types.as_slice())
                    {
                        out[flag_at] = 1;
                        out.splice(flag_at + 1..flag_at + 1, types.iter().copied());
                        learned_types = Some(types.clone());
                    }
                }
                _ => {}
            }
        }
        if let Some(types) = &learned_types {
            slot.conn.prepared.set_types(backend.id, types);
        }
        if let (Some(types), Some(s)) = (learned_types, self.state.statements.map.get_mut(&cid)) {
            s.types = Some(types);
        }
        Ok(out)
    }

    pub(super) async fn execute(&mut self, payload: Bytes) -> Result<(), End> {
        let Some(cid) = statement_id(&payload).filter(|_| payload.len() >= 10) else {
            return self.reply_err(&ErrPacket::malformed()).await;
        };
        let Some(stmt) = self.state.statements.map.get(&cid).cloned() else {
            return self
                .reply_err(&ErrPacket::unknown_statement(cid, "mysql_stmt_execute"))
                .await;
        };
        // A client sends the types it binds once: they are learned here, also when this
        // execution is answered by the proxy (refused, or its transaction could not move), as
        // the client's next executions come without them.
        if let Some(types) = bound_types(&payload, stmt.params)
            && let Some(s) = self.state.statements.map.get_mut(&cid)
        {
            s.types = Some(types);
        }
        // A statement runs on its tenant's cluster, prepared there again if needed.
        let step = match self.follow_tenant(&stmt.prepare[1..], None).await {
            Ok(step) => step,
            Err(err) => return self.reply_err(&err).await,
        };
        // Long data lives on one connection: the execution cannot move.
        self.reroutable = step.as_ref().is_some_and(|s| s.reroutable) && !stmt.long_data;
        self.read_waited = false;
        self.service_from = None;
        let mode = self.state.sql_mode;
        let started = Instant::now();
        let route = match &self.state.replica_transaction {
            // Long data went to the primary: the execution cannot run in the replica's
            // transaction.
            Some(tx) if stmt.long_data => decide::leaving_replica_transaction(tx),
            _ => decide::execution_route(&self.state, &stmt.classification, &stmt.prepare[1..]),
        };
        let mut reroutes = 0;
        let outcome = loop {
            let (wanted, retry) = match route {
                Route::LeaveReplicaTransaction => {
                    self.leave_replica_transaction().await;
                    (BackendRole::Primary, true)
                }
                Route::RefuseInReplicaTransaction => {
                    return self.reply_err(&super::replica_transaction_refusal()).await;
                }
                Route::MoveReplicaTransaction => {
                    if let Err(err) = self.move_replica_transaction().await {
                        return self.reply_err(&err).await;
                    }
                    (BackendRole::Primary, false)
                }
                // Long data went to the primary: the execution must run there.
                _ if stmt.long_data => (BackendRole::Primary, false),
                Route::Read { mode } => {
                    let key = super::digesting::cost_key(stmt.digest, &stmt.classification);
                    (self.choose_for_read(mode, key).await?, false)
                }
                Route::Primary { retry_read_only } => (BackendRole::Primary, retry_read_only),
                Route::LastReplica | Route::InReplicaTransaction => (BackendRole::Replica, false),
                // Never answered by the proxy: it prepared nothing it would answer itself.
                Route::Kill(_) | Route::RefuseKill | Route::Lagless(_) => {
                    (BackendRole::Primary, false)
                }
            };
            let outcome = self
                .run_statement(wanted, &payload, ResponseKind::Execute, retry)
                .await?;
            let (Some(err), Some(step)) = (self.reroute.take(), &step) else {
                break outcome;
            };
            reroutes += 1;
            match self.reroute(step).await {
                Ok(true) if reroutes < 3 => continue,
                Err(e) if e.code == crate::tenant::decide::STILL_FROZEN => {
                    self.reply_err(&e).await?
                }
                _ => self.reply_err(&err).await?,
            }
            break None;
        };
        self.reroutable = false;
        let ran = outcome.as_ref().map(|(which, tracker)| (*which, tracker));
        self.record_digest(stmt.digest, &stmt.prepare[1..], mode, started, ran);
        if let Some((which, tracker)) = outcome {
            self.record(which, &route, started);
            self.after_statement(
                which,
                &stmt.classification,
                &tracker,
                Command::Execute(&stmt.prepare),
            )
            .await;
            if which == BackendRole::Replica && !stmt.classification.effects.begins_transaction {
                self.log_for_replay(&stmt.classification, &tracker, &payload);
            }
            if let Some(s) = self.state.statements.map.get_mut(&cid) {
                s.long_data = false;
                let cursor = payload[5] != 0 && tracker.error.is_none();
                s.cursor_on = cursor.then_some(which);
            }
        }
        Ok(())
    }

    /// COM_STMT_BULK_EXECUTE (MariaDB): many rows of parameters for one statement, a write,
    /// so on the primary; it carries its parameter types itself.
    pub(super) async fn bulk_execute(&mut self, payload: Bytes) -> Result<(), End> {
        let Some(cid) = statement_id(&payload).filter(|_| payload.len() >= 7) else {
            return self.reply_err(&ErrPacket::malformed()).await;
        };
        let Some(stmt) = self.state.statements.map.get(&cid).cloned() else {
            return self
                .reply_err(&ErrPacket::unknown_statement(
                    cid,
                    "mysql_stmt_bulk_execute",
                ))
                .await;
        };
        if let Err(err) = self.follow_tenant(&stmt.prepare[1..], None).await {
            return self.reply_err(&err).await;
        }
        self.read_waited = false;
        self.service_from = None;
        let mode = self.state.sql_mode;
        let started = Instant::now();
        // A bulk execution writes: it cannot run in a replica's transaction.
        if let Some(tx) = &self.state.replica_transaction {
            match decide::leaving_replica_transaction(tx) {
                Route::LeaveReplicaTransaction => self.leave_replica_transaction().await,
                Route::MoveReplicaTransaction => {
                    if let Err(err) = self.move_replica_transaction().await {
                        return self.reply_err(&err).await;
                    }
                }
                _ => return self.reply_err(&super::replica_transaction_refusal()).await,
            }
        }
        let route = decide::backend_route(&self.state, &stmt.classification, &stmt.prepare[1..]);
        let retry = decide::may_move_transaction(&self.state) && !stmt.long_data;
        let outcome = self
            .run_statement(BackendRole::Primary, &payload, ResponseKind::Execute, retry)
            .await?;
        let ran = outcome.as_ref().map(|(which, tracker)| (*which, tracker));
        self.record_digest(stmt.digest, &stmt.prepare[1..], mode, started, ran);
        if let Some((which, tracker)) = outcome {
            self.record(which, &route, started);
            self.after_statement(which, &stmt.classification, &tracker, Command::BulkExecute)
                .await;
            if let Some(s) = self.state.statements.map.get_mut(&cid) {
                s.long_data = false;
            }
        }
        Ok(())
    }

    /// Like `run_on`, mapping the statement id for whichever backend connection runs it: a
    /// connection replaced on the way (closed while idle, a new primary) gets the statement
    /// prepared again from its text.
    async fn run_statement(
        &mut self,
        wanted: BackendRole,
        payload: &[u8],
        kind: ResponseKind,
        retry_read_only: bool,
    ) -> Result<Option<(BackendRole, ResponseTracker)>, End> {
        let how = super::run::Run {
            retry_read_only,
            map_statement: true,
        };
        self.run_on_with(wanted, payload, kind, None, how).await
    }

    pub(super) async fn fetch(&mut self, payload: Bytes) -> Result<(), End> {
        let Some(cid) = statement_id(&payload) else {
            return self
                .reply_err(&ErrPacket::unknown_statement(0, "mysql_stmt_fetch"))
                .await;
        };
        let cursor = self
            .state
            .statements
            .map
            .get(&cid)
            .and_then(|s| s.cursor_on);
        let Some(which) = cursor.filter(|w| self.slot(*w).is_some()) else {
            let err = ErrPacket::new(
                1421,
                "HY000",
                format!("The statement ({cid}) has no open cursor."),
            );
            return self.reply_err(&err).await;
        };
        let mapped = match self.statement_payload(which, &payload).await {
            Ok(p) => p,
            Err(err) => return self.reply_err(&err).await,
        };
        self.run_on(which, &mapped, ResponseKind::Fetch, None)
            .await
            .map(drop)
    }

    pub(super) async fn close_statement(&mut self, payload: Bytes) -> Result<(), End> {
        let Some(cid) = statement_id(&payload) else {
            return Ok(());
        };
        let closed = self.state.statements.map.remove(&cid);
        // Multiplexing, the backend statements stay prepared among their connections'
        // statements, for the next session (or this one) that prepares the same text; the
        // bound closes them. Otherwise they are closed as the client asks, and so is one
        // left with long data or a cursor, which the next user must not inherit.
        let clean = closed.is_some_and(|s| !s.long_data && s.cursor_on.is_none());
        let keep = clean && self.backends.pool.config().multiplexes(&self.login.user);
        for which in [BackendRole::Primary, BackendRole::Replica] {
            if let Some(slot) = self.slot_mut(which)
                && let Some(b) = slot.statements.remove(&cid)
                && !keep
            {
                slot.conn.prepared.remove(b.id);
                if slot.conn.close_statement(b.id).await.is_err() {
                    slot.conn.mark_broken();
                    self.lose_slot(which, "backend lost while closing a statement");
                }
            }
        }
        Ok(())
    }

    pub(super) async fn reset_statement(&mut self, payload: Bytes) -> Result<(), End> {
        let Some(cid) = statement_id(&payload) else {
            return self
                .reply_err(&ErrPacket::unknown_statement(0, "mysql_stmt_reset"))
                .await;
        };
        let Some(stmt) = self.state.statements.map.get_mut(&cid) else {
            return self
                .reply_err(&ErrPacket::unknown_statement(cid, "mysql_stmt_reset"))
                .await;
        };
        stmt.long_data = false;
        stmt.cursor_on = None;
        let mut answer: Option<Result<(), ErrPacket>> = None;
        for which in [BackendRole::Primary, BackendRole::Replica] {
            let Some(slot) = self.slot_mut(which) else {
                continue;
            };
            let Some(b) = slot.statements.get(&cid).copied() else {
                continue;
            };
            match slot.conn.simple(com::STMT_RESET, &b.id.to_le_bytes()).await {
                Ok(p) if p.first() == Some(header::OK) => {
                    answer.get_or_insert(Ok(()));
                }
                Ok(p) => {
                    let err =
                        ErrPacket::parse(&p.payload).unwrap_or_else(|_| ErrPacket::malformed());
                    answer = Some(Err(err));
                }
                Err(_) => {
                    slot.conn.mark_broken();
                    self.lose_slot(which, "backend lost while resetting a statement");
                }
            }
        }
        match answer.unwrap_or(Ok(())) {
            Ok(()) => self.reply_ok().await,
            Err(err) => self.reply_err(&err).await,
        }
    }

    pub(super) async fn send_long_data(&mut self, payload: Bytes) -> Result<(), End> {
        let Some(cid) = statement_id(&payload) else {
            return Ok(());
        };
        let Some(stmt) = self.state.statements.map.get_mut(&cid) else {
            // The protocol has no reply here; the execution will report the unknown statement.
            return Ok(());
        };
        stmt.long_data = true;
        if self.ensure_slot(BackendRole::Primary).await.is_err() {
            return Ok(());
        }
        let Ok(mapped) = self.statement_payload(BackendRole::Primary, &payload).await else {
            return Ok(());
        };
        if let Some(slot) = self.primary.as_mut() {
            let mut seq = 0;
            if slot.conn.stream.send(&mut seq, &mapped).await.is_err() {
                slot.conn.mark_broken();
                self.lose_slot(BackendRole::Primary, "backend lost while sending long data");
            }
        }
        Ok(())
    }
}

/// The statement `cid` on `slot`'s connection: one prepared there from the same text and not
/// in use by another of the session's statements, else prepared now.
async fn prepare_on(
    slot: &mut BackendSlot,
    cid: u32,
    (prepare, scope): (&Bytes, u64),
    bound: usize,
) -> Result<BackendStmt, ErrPacket> {
    let taken: Vec<u32> = slot.statements.values().map(|b| b.id).collect();
    if let Some(id) = slot.conn.prepared.find(prepare, scope, &taken) {
        let b = BackendStmt { id };
        slot.statements.insert(cid, b);
        return Ok(b);
    }
    match slot.conn.prepare(prepare).await {
        Ok(Ok(ok)) => {
            let b = BackendStmt {
                id: ok.statement_id,
            };
            slot.statements.insert(cid, b);
            remember(slot, (prepare.clone(), scope), ok.statement_id, bound).await;
            Ok(b)
        }
        Ok(Err(err)) => Err(err),
        Err(e) => {
            slot.conn.mark_broken();
            Err(ErrPacket::backend_lost(&e.to_string()))
        }
    }
}

/// Adds a statement just prepared on `slot`'s connection to its statements, closing the
/// least recently used ones past `bound` (`COM_STMT_CLOSE` has no reply).
async fn remember(slot: &mut BackendSlot, text: (Bytes, u64), id: u32, bound: usize) {
    let taken: Vec<u32> = slot.statements.values().map(|b| b.id).collect();
    for old in slot.conn.prepared.insert(text, id, bound, &taken) {
        if slot.conn.close_statement(old).await.is_err() {
            slot.conn.mark_broken();
            return;
        }
    }
}

/// The parameter types a COM_STMT_EXECUTE carries (`new_params_bound_flag` = 1), if any.
fn bound_types(payload: &[u8], params: u16) -> Option<Vec<u8>> {
    if params == 0 {
        return None;
    }
    let flag_at = 10 + usize::from(params).div_ceil(8);
    if payload.get(flag_at) != Some(&1) {
        return None;
    }
    payload
        .get(flag_at + 1..flag_at + 1 + 2 * usize::from(params))
        .map(<[u8]>::to_vec)
}
