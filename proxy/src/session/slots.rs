//! The session's backend connections: one to the primary and one to a replica at most, taken
//! from the pools with the session's replayable state applied, checked before each use, and
//! given up when they fail.

use std::collections::HashMap;

use super::{BackendRole, Session, kill, multiplex, statements};
use crate::backend::PooledConn;
use crate::protocol::constants::com;
use crate::protocol::messages::ErrPacket;
use crate::topology::Member;

/// A backend connection held by the session.
#[derive(Debug)]
pub struct BackendSlot {
    pub conn: PooledConn,
    /// `host:port`, as metrics and health know the server.
    pub addr: String,
    /// The topology member this connection goes to.
    pub member: Member,
    /// Client statement id -> this backend's statement id.
    pub statements: HashMap<u32, statements::BackendStmt>,
    /// Lists the backend thread under this session while the slot lives (for KILL).
    _thread: kill::ThreadRegistration,
    /// This backend's metric series, looked up once.
    pub metrics: crate::metrics::BackendHandle,
}

impl Session {
    /// The primary connection a relayed login opened: the only one such a session can have,
    /// so everything it does runs there.
    pub(super) async fn adopt_primary(&mut self, member: Member, conn: PooledConn) {
        match self.slot_with(member, conn, BackendRole::Primary).await {
            Ok(slot) => self.primary = Some(slot),
            Err(err) => {
                tracing::warn!(id = self.id, %err, "cannot take over the relayed login's connection")
            }
        }
        self.pin("authenticated by the primary");
    }

    /// The client left while its statement ran on `which`: the statement is stopped with
    /// `KILL QUERY` from a side connection (it would otherwise run on, holding its locks), and
    /// the connection it ran on is closed.
    pub(super) async fn cancel_running(&mut self, which: BackendRole) {
        let Some(slot) = self.slot_take(which) else {
            return;
        };
        tracing::debug!(id = self.id, backend = %slot.addr, thread = slot.conn.connection_id, "client left mid-statement; cancelling it");
        self.shared.metrics.error("client_gone");
        match self
            .backends
            .backend(self.login.identity(), &slot.addr, None)
            .await
        {
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

    /// Gives the session's connections back to the pool when multiplexing and nothing ties
    /// the session to them (see [`multiplex::holds`]); the next statement takes whichever is
    /// free.
    pub(super) fn park_if_free(&mut self) {
        if self.primary.is_none() && self.replica.is_none() {
            self.holding = None;
            return;
        }
        if !self.backends.pool.config().multiplexes(&self.login.user) {
            return;
        }
        let statements = self.state.statements.map.values();
        let (mut open_cursor, mut long_data) = (false, false);
        for s in statements {
            open_cursor |= s.cursor_on.is_some();
            long_data |= s.long_data;
        }
        let facts = multiplex::HoldFacts {
            in_transaction: self.state.in_transaction || self.state.replica_transaction.is_some(),
            pinned: self.state.pinned.is_some(),
            replay_begin: self.state.replay_begin.is_some(),
            sticky: self.state.sticky.is_some(),
            open_cursor,
            long_data,
            for_next: self.for_next,
        };
        if let Some(why) = multiplex::holds(&facts) {
            self.shared.metrics.multiplex_held(why);
            if self.holding.as_ref().map(|g| g.reason()) != Some(why) {
                self.holding = None;
                self.holding = Some(self.shared.metrics.multiplex_holding(why));
            }
            return;
        }
        self.holding = None;
        self.shared.metrics.multiplex_parked();
        let sig = self.state.signature();
        if let Some(slot) = self.primary.take() {
            let mut conn = slot.conn;
            conn.state_sig = sig;
            conn.park();
        }
        if let Some(slot) = self.replica.take() {
            // A replica connection runs in autocommit whatever the session set: it does not
            // carry the session's state, and goes back through a reset.
            if !self.state.replay_sets_autocommit {
                let mut conn = slot.conn;
                conn.state_sig = sig;
                conn.park();
            }
        }
    }

    /// Who the session's connections log in as, with the state they should carry.
    pub(super) fn identity(&self) -> crate::backend::Identity<'_> {
        crate::backend::Identity {
            state_sig: self.state.signature(),
            ..self.login.identity()
        }
    }

    pub(super) fn slot(&self, which: BackendRole) -> Option<&BackendSlot> {
        match which {
            BackendRole::Primary => self.primary.as_ref(),
            BackendRole::Replica => self.replica.as_ref(),
        }
    }

    pub(super) fn slot_mut(&mut self, which: BackendRole) -> Option<&mut BackendSlot> {
        match which {
            BackendRole::Primary => self.primary.as_mut(),
            BackendRole::Replica => self.replica.as_mut(),
        }
    }

    pub(super) fn slot_take(&mut self, which: BackendRole) -> Option<BackendSlot> {
        match which {
            BackendRole::Primary => self.primary.take(),
            BackendRole::Replica => self.replica.take(),
        }
    }

    /// Forgets a backend connection that failed. A primary connection carried the
    /// transaction and any pinned state: both are gone with it.
    pub(super) fn lose_slot(&mut self, which: BackendRole, why: &'static str) {
        self.shared.metrics.error("backend_lost");
        if let Some(slot) = self.slot_take(which) {
            // Only this connection is known bad (the client's own wait_timeout or KILL can end
            // it); whether the server is down is for connection attempts and the monitor.
            tracing::warn!(id = self.id, backend = %slot.addr, why, "session lost a backend connection");
        }
        // A transaction open on a replica stays recorded: its next statement learns it was
        // lost (1927) instead of running outside it; one that moves replays elsewhere.
        if which == BackendRole::Primary {
            self.state.in_transaction = false;
            self.state.pinned = None;
        }
    }

    /// Makes sure the session has a usable connection for `wanted`; returns which one it got
    /// (a read falls back to the primary when no replica is available).
    pub(super) async fn ensure_slot(
        &mut self,
        wanted: BackendRole,
    ) -> Result<BackendRole, ErrPacket> {
        match wanted {
            BackendRole::Replica if self.state.replica_transaction.is_some() => {
                // The transaction lives on this connection, whatever the topology says now:
                // its reads stay consistent as of its start.
                if self.replica.is_none() {
                    self.state.replica_transaction = None;
                    return Err(ErrPacket::new(
                        1927,
                        "70100",
                        "Connection was killed: the replica serving this read-only transaction was lost",
                    ));
                }
                self.sync_database(BackendRole::Replica).await?;
                Ok(BackendRole::Replica)
            }
            BackendRole::Replica => {
                // Replicas are chosen (with consistency checked) by `choose_for_read`; here a
                // replica connection is only kept while it is still a healthy replica.
                let keep = self.replica.as_ref().is_some_and(|s| {
                    let topo = self.backends.topology();
                    topo.replicas
                        .iter()
                        .any(|m| m.weight > 0 && m.has_addr(&s.member.host, s.member.port))
                        && self.backends.health.is_up(&s.addr)
                });
                if !keep {
                    self.replica = None;
                    return self.ensure_primary().await.map(|()| BackendRole::Primary);
                }
                self.sync_database(BackendRole::Replica).await?;
                Ok(BackendRole::Replica)
            }
            BackendRole::Primary => self.ensure_primary().await.map(|()| BackendRole::Primary),
        }
    }

    pub(super) async fn ensure_primary(&mut self) -> Result<(), ErrPacket> {
        let topo = self.backends.topology();
        // A transaction in which only its BEGIN ran can be opened again elsewhere.
        let movable_transaction = self.state.in_transaction
            && self.state.fresh_begin.is_some()
            && self.state.pinned.is_none();
        let stale = match (&self.primary, &topo.primary) {
            (Some(slot), Some(m)) => !m.has_addr(&slot.member.host, slot.member.port),
            // A planned switchover lets transactions open on the old primary finish there
            // before it is fenced (the operator waits for them); new ones wait for the next
            // primary. State that cannot move stays usable as long as its server is.
            (Some(_), None) => {
                !(topo.is_switching()
                    && !movable_transaction
                    && (self.state.in_transaction || self.state.pinned.is_some()))
            }
            (None, _) => false,
        };
        drop(topo);
        if stale {
            self.primary = None;
            if movable_transaction {
                self.state.in_transaction = false;
                self.state.replay_begin = self.state.fresh_begin.take();
            } else if self.state.in_transaction || self.state.pinned.is_some() {
                // The transaction or pinned state lived on the old primary.
                self.state.in_transaction = false;
                self.state.pinned = None;
                self.state.statements.forget_backend(BackendRole::Primary);
                return Err(ErrPacket::new(
                    1927,
                    "70100",
                    "Connection was killed: the primary changed and this session's transaction or session state was on the old one",
                ));
            }
        }
        if self.primary.is_none() {
            let (member, conn) = self
                .backends
                .primary_conn(self.identity(), self.database_here())
                .await?;
            let slot = self.slot_with(member, conn, BackendRole::Primary).await?;
            self.primary = Some(slot);
        }
        self.sync_database(BackendRole::Primary).await?;
        self.replay_transaction_start().await
    }

    /// Opens the moved transaction (see `fresh_begin`) on the new primary connection.
    pub(super) async fn replay_transaction_start(&mut self) -> Result<(), ErrPacket> {
        let (Some(begin), Some(slot)) = (self.state.replay_begin.take(), self.primary.as_mut())
        else {
            return Ok(());
        };
        let sql = String::from_utf8_lossy(&begin[1..]).into_owned();
        match slot.conn.run(&sql).await {
            Ok(None) => {
                tracing::debug!(id = self.id, backend = %slot.addr, "transaction moved to the new primary");
                self.state.in_transaction = slot.conn.in_transaction();
                // Still nothing but its BEGIN: it may move again.
                self.state.fresh_begin = Some(begin);
                Ok(())
            }
            Ok(Some(err)) => {
                self.state.replay_begin = Some(begin);
                Err(err)
            }
            Err(e) => {
                slot.conn.mark_broken();
                self.state.replay_begin = Some(begin);
                self.lose_slot(
                    BackendRole::Primary,
                    "backend lost while opening a transaction",
                );
                Err(ErrPacket::backend_lost(&e.to_string()))
            }
        }
    }

    /// A new backend connection with the session's replayable state applied.
    pub(super) async fn open_slot(
        &mut self,
        member: Member,
        which: BackendRole,
    ) -> Result<BackendSlot, ErrPacket> {
        let conn = self
            .backends
            .backend(self.identity(), &member.addr(), self.database_here())
            .await?;
        self.slot_with(member, conn, which).await
    }

    /// `conn` (to `member`) as this session's slot, with the replayable state applied.
    pub(super) async fn slot_with(
        &mut self,
        member: Member,
        mut conn: PooledConn,
        which: BackendRole,
    ) -> Result<BackendSlot, ErrPacket> {
        let addr = member.addr();
        let addr = addr.as_str();
        self.state.statements.forget_backend(which);
        let sig = self.state.signature();
        // A connection given back by a session with the same state has it already (a
        // replica connection's autocommit aside, which is set below either way).
        let carries_state = sig != 0 && conn.state_sig == sig;
        let mut statements = if carries_state {
            Vec::new()
        } else {
            self.state.replay.clone()
        };
        if which == BackendRole::Replica && self.state.replay_sets_autocommit {
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
        if self.state.multi_statements_off && !carries_state {
            let _ = conn.simple(com::SET_OPTION, &1u16.to_le_bytes()).await;
        }
        if let Some(asks) = self.state.client_tracking.filter(|_| !carries_state) {
            // The replayed SET replaced what the proxy tracks.
            conn.client_tracks_gtids = asks;
            if conn.restore_gtid_tracking().await.is_err() {
                conn.mark_broken();
                return Err(ErrPacket::backend_lost("restoring GTID tracking"));
            }
        }
        conn.state_sig = sig;
        let thread = self.control.register(addr, conn.connection_id);
        Ok(BackendSlot {
            conn,
            addr: addr.to_string(),
            member,
            statements: HashMap::new(),
            _thread: thread,
            metrics: self.shared.metrics.backend_handle(addr),
        })
    }

    pub(super) async fn sync_database(&mut self, which: BackendRole) -> Result<(), ErrPacket> {
        let (Some(db), Some(slot)) = (self.database_here(), self.slot(which)) else {
            return Ok(());
        };
        if slot.conn.database.as_deref() == Some(db) {
            return Ok(());
        }
        let db = db.to_owned();
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
}
