//! Carrying out what a statement's outcome changes ([`decide::after`]) on the session's state
//! and connections.

use super::decide::{self, Command, Effects, Outcome, ReplaySet};
use super::{BackendRole, Session};
use crate::protocol::response::ResponseTracker;
use crate::route::Classification;

impl Session {
    /// Carries out what the statement's outcome changes in the session.
    pub(super) async fn after_statement(
        &mut self,
        which: BackendRole,
        c: &Classification,
        t: &ResponseTracker,
        command: Command<'_>,
    ) {
        if which == BackendRole::Primary {
            self.learn_write(t);
        }
        let outcome = Outcome {
            ran_on: which,
            status: t.status,
            error: t.error,
        };
        if self.backends.pool.config().multiplexes(&self.login.user) {
            self.for_next = super::multiplex::leaves_for_next(t, c.effects.calc_found_rows);
            if c.effects.reads_connection && outcome.error.is_none() {
                self.state
                    .sticky
                    .get_or_insert("read its connection's own history");
            }
        }
        let fx = decide::after(&self.state, c, &outcome, command);
        if fx == Effects::default() {
            return;
        }
        if fx.replica_transaction == Some(decide::ReplicaTxn::Stray)
            && let Some(slot) = self.replica.as_mut()
        {
            slot.conn.mark_broken();
            self.lose_slot(
                BackendRole::Replica,
                "a transaction the session did not begin",
            );
        }
        let pinned_now = self.state.apply(&fx);
        if let Some(db) = &fx.database {
            // The USE ran here, so the database lives on this cluster.
            self.db_elsewhere = false;
            if let Some(slot) = self.slot_mut(which) {
                slot.conn.database = Some(db.clone());
            }
        }
        if let Some(reason) = pinned_now {
            self.pinned(reason);
        }
        if fx.fresh_begin
            && let Command::Query(payload) = command
        {
            self.state.fresh_begin = Some(payload.clone());
        }
        if let Some(asks) = fx.tracking {
            self.restore_gtid_tracking(which, asks).await;
        }
        if let Some(set) = &fx.replay {
            self.replay_on_other(which, set, fx.tracking).await;
        }
    }

    pub(super) fn pin(&mut self, reason: &'static str) {
        if self.state.pinned.is_none() {
            self.state.pinned = Some(reason);
            self.pinned(reason);
        }
    }

    /// The session was just pinned to the primary.
    pub(super) fn pinned(&mut self, reason: &'static str) {
        tracing::debug!(id = self.id, reason, "session pinned to the primary");
        // The replica connection will not be used again.
        self.replica = None;
    }
    /// After the client set what the session tracks: both connections track committed GTIDs
    /// again (the proxy's reads depend on them), and show them to the client only if it asked.
    pub(super) async fn restore_gtid_tracking(&mut self, ran_on: BackendRole, asks: bool) {
        let Some(slot) = self.slot_mut(ran_on) else {
            return;
        };
        slot.conn.client_tracks_gtids = asks;
        if slot.conn.restore_gtid_tracking().await.is_err() {
            slot.conn.mark_broken();
            self.lose_slot(ran_on, "backend lost while restoring GTID tracking");
        }
    }

    /// Applies a replayable SET (already in the session state) to the other connection.
    /// `tracking`: the SET changed what the session tracks.
    pub(super) async fn replay_on_other(
        &mut self,
        ran_on: BackendRole,
        set: &ReplaySet,
        tracking: Option<bool>,
    ) {
        let sql = &set.sql;
        let other = match ran_on {
            BackendRole::Primary => BackendRole::Replica,
            BackendRole::Replica => BackendRole::Primary,
        };
        let Some(slot) = self.slot_mut(other) else {
            return;
        };
        let mut failed = !matches!(slot.conn.run(sql).await, Ok(None));
        if !failed && let Some(asks) = tracking {
            slot.conn.client_tracks_gtids = asks;
            failed = slot.conn.restore_gtid_tracking().await.is_err();
        }
        if failed {
            // Take a fresh connection next time; it gets the full replay.
            match other {
                BackendRole::Primary => self.primary = None,
                BackendRole::Replica => self.replica = None,
            }
            self.state.statements.forget_backend(other);
        } else if other == BackendRole::Replica
            && set.sets_autocommit
            && let Some(slot) = self.replica.as_mut()
        {
            let _ = slot.conn.run("SET autocommit=1").await;
        }
    }
}
