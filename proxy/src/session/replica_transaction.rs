//! Transactions served by a replica: a lone `START TRANSACTION READ ONLY`, or a plain `BEGIN`
//! (optimistic), runs on a replica that satisfies the session's consistency mode when it
//! starts (chosen as for any read), and the transaction's statements follow it there until it
//! ends (see `decide::backend_route`). A statement that belongs on the primary moves the
//! transaction there while it has read nothing. Later, a `READ ONLY` transaction refuses it;
//! an optimistic one moves: its statements run again on the primary and must return the same
//! rows (checksums), else it is rolled back with a deadlock's error, which applications retry.

use bytes::Bytes;

use super::state::{KeptStatement, ReplayLog, Replayed};
use super::statements::statement_id;
use super::{BackendRole, Session};
use crate::backend::BackendConn;
use crate::protocol::constants::com;
use crate::protocol::messages::ErrPacket;
use crate::protocol::packet::PacketError;
use crate::protocol::response::{ResponseKind, ResponseTracker, Step};
use crate::route::{Classification, Target};

/// ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION, what the primary answers a write in a `READ ONLY`
/// transaction, with why the proxy says it for statements the primary would have run.
pub(super) fn replica_transaction_refusal() -> ErrPacket {
    ErrPacket::new(
        1792,
        "25006",
        "Cannot execute statement in a READ ONLY transaction (this transaction's reads are \
         served by a replica; statements that write, lock or change session state need a \
         transaction on the primary: START TRANSACTION without READ ONLY, or the proxy's \
         --read-only-transactions primary)",
    )
}

impl Session {
    /// Ends the replica's fresh `READ ONLY` transaction, to open it on the primary before the
    /// statement at hand (`replay_begin`, as for a transaction moved to a new primary).
    pub(super) async fn leave_replica_transaction(&mut self) {
        let Some(tx) = self.state.replica_transaction.take() else {
            return;
        };
        if let Some(slot) = self.replica.as_mut() {
            // Nothing was read in it; a replica that cannot roll back is not used again.
            if !matches!(slot.conn.run("ROLLBACK").await, Ok(None)) {
                slot.conn.mark_broken();
                self.lose_slot(
                    BackendRole::Replica,
                    "backend lost ending a read-only transaction",
                );
            }
        }
        tracing::debug!(
            id = self.id,
            "read-only transaction moved from a replica to the primary"
        );
        self.state.replay_begin = Some(tx.begin);
    }
}

/// Statements and bytes an optimistic transaction's log keeps; past either it can no longer
/// move to the primary (a write in it is then refused, and the session's next transactions
/// start on the primary).
const REPLAY_STATEMENTS: usize = 256;
const REPLAY_BYTES: usize = 1 << 20;
/// Plain `BEGIN`s a session runs on the primary after one of its optimistic transactions had
/// to move there: a session whose transactions write stops paying for the attempt. Doubled
/// after each move that failed (up to [`MOST_PRIMARY_BEGINS`]), back to this after one that
/// worked: under contention that keeps changing what transactions read, few are tried.
const PRIMARY_BEGINS_AFTER_A_MOVE: u8 = 8;
const MOST_PRIMARY_BEGINS: u8 = 128;

/// ER_LOCK_DEADLOCK's code and state: the transaction was rolled back and can be run again,
/// which applications already do for deadlocks.
fn moved_reads_differ(why: &str) -> ErrPacket {
    ErrPacket::new(
        1213,
        "40001",
        format!(
            "Deadlock found when trying to get lock; try restarting transaction (lagless: this \
             transaction started on a replica and could not move to the primary at its first \
             write: {why}; it was rolled back)"
        ),
    )
}

/// The session's `primary_begins` after a move, `failed` being the moves that failed in a row
/// (this one included).
fn primary_begins_after(failed: u8) -> u8 {
    let doublings = u32::from(failed.saturating_sub(1)).min(4);
    PRIMARY_BEGINS_AFTER_A_MOVE
        .saturating_mul(1 << doublings)
        .min(MOST_PRIMARY_BEGINS)
}

impl BackendConn {
    /// Runs a command and reads its whole response, with a checksum of its rows.
    async fn run_for_rows(
        &mut self,
        payload: &[u8],
        kind: ResponseKind,
    ) -> Result<(Option<u64>, Option<u16>), PacketError> {
        let mut seq = 0;
        self.stream.send(&mut seq, payload).await?;
        let mut tracker = ResponseTracker::new(kind, self.caps).digesting();
        loop {
            let pkt = self.stream.read_raw().await?;
            if tracker.feed(&pkt.payload)? == Step::Done {
                break;
            }
        }
        if let Some(status) = tracker.status {
            self.status = status;
        }
        Ok((tracker.row_digest, tracker.error))
    }
}

impl Session {
    /// Keeps what a statement of an optimistic transaction returned on its replica, to compare
    /// when the transaction moves.
    pub(super) fn log_for_replay(
        &mut self,
        c: &Classification,
        t: &ResponseTracker,
        payload: &Bytes,
    ) {
        let Some(log) = self
            .state
            .replica_transaction
            .as_mut()
            .and_then(|tx| tx.replay.as_mut())
            .filter(|log| log.complete)
        else {
            return;
        };
        // Diagnostics about the previous statement read nothing the transaction depends on.
        if c.target == Target::LastBackend {
            return;
        }
        // A cursor's rows come with later fetches, which are not compared.
        let cursor = payload.first() == Some(&com::STMT_EXECUTE)
            && payload.get(5).is_some_and(|flags| flags & 0x0f != 0);
        if cursor
            || log.entries.len() >= REPLAY_STATEMENTS
            || log.bytes + payload.len() > REPLAY_BYTES
        {
            log.complete = false;
            log.entries = Vec::new();
            return;
        }
        let statement = (payload.first() == Some(&com::STMT_EXECUTE))
            .then(|| statement_id(payload))
            .flatten()
            .and_then(|cid| self.state.statements.map.get(&cid))
            .map(|s| KeptStatement(s.clone()));
        log.bytes += payload.len();
        log.entries.push(Replayed {
            payload: payload.clone(),
            statement,
            rows: t.row_digest,
            error: t.error,
        });
    }

    /// Moves an optimistic transaction that has read to the primary: its `BEGIN` and its
    /// statements run again there, and each must return the rows it returned on the replica.
    /// `Err`: they did not (or the primary could not be reached); the transaction is rolled
    /// back everywhere and the error is the client's.
    pub(super) async fn move_replica_transaction(&mut self) -> Result<(), ErrPacket> {
        let Some(tx) = self.state.replica_transaction.take() else {
            return Ok(());
        };
        // Until it is known to have worked, as after a failure; set back when it does.
        self.state.failed_moves = self.state.failed_moves.saturating_add(1);
        self.state.primary_begins = primary_begins_after(self.state.failed_moves);
        if let Some(slot) = self.replica.as_mut()
            && !matches!(slot.conn.run("ROLLBACK").await, Ok(None))
        {
            slot.conn.mark_broken();
            self.lose_slot(BackendRole::Replica, "backend lost ending a transaction");
        }
        let log = tx.replay.unwrap_or_default();
        if !log.complete {
            self.shared.metrics.optimistic_moved(false);
            return Err(moved_reads_differ("it read too much to be run again"));
        }
        // Long data sent for a statement waits on the primary's copy of it: running that
        // statement's earlier executions again there would use it up.
        if self.state.statements.map.values().any(|s| s.long_data) {
            self.shared.metrics.optimistic_moved(false);
            return Err(moved_reads_differ(
                "long data was sent for one of its statements",
            ));
        }
        self.state.replay_begin = Some(tx.begin);
        if let Err(e) = self.ensure_primary().await {
            self.state.replay_begin = None;
            self.shared.metrics.optimistic_moved(false);
            return Err(moved_reads_differ(&format!(
                "the primary could not open it: {}",
                e.message
            )));
        }
        let started = std::time::Instant::now();
        // Statements the client closed since are prepared again from what was kept, and
        // closed again after.
        let mut restored = Vec::new();
        for entry in &log.entries {
            if let (Some(cid), Some(kept)) = (statement_id(&entry.payload), &entry.statement)
                && entry.payload.first() == Some(&com::STMT_EXECUTE)
                && !self.state.statements.map.contains_key(&cid)
            {
                self.state.statements.map.insert(cid, kept.0.clone());
                restored.push(cid);
            }
        }
        let replayed = self.replay_entries(&log).await;
        for cid in restored {
            let mut close = vec![com::STMT_CLOSE];
            close.extend_from_slice(&cid.to_le_bytes());
            // Closing sends nothing to the client; a lost backend is handled there.
            let _ = self.close_statement(Bytes::from(close)).await;
        }
        replayed?;
        self.state.in_transaction = true;
        self.state.fresh_begin = None;
        self.state.failed_moves = 0;
        self.state.primary_begins = PRIMARY_BEGINS_AFTER_A_MOVE;
        self.shared.metrics.optimistic_moved(true);
        tracing::debug!(id = self.id, statements = log.entries.len(), elapsed = ?started.elapsed(), "optimistic transaction moved to the primary");
        Ok(())
    }

    /// Runs a moved transaction's statements again on the primary, each compared with what
    /// it returned on the replica.
    async fn replay_entries(&mut self, log: &ReplayLog) -> Result<(), ErrPacket> {
        for (n, entry) in log.entries.iter().enumerate() {
            let (payload, kind) = if entry.payload.first() == Some(&com::STMT_EXECUTE) {
                let mapped = match self
                    .statement_payload(BackendRole::Primary, &entry.payload)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        return Err(self
                            .abandon_moved(&format!("statement {n}: {}", e.message))
                            .await);
                    }
                };
                (mapped, ResponseKind::Execute)
            } else {
                (entry.payload.to_vec(), ResponseKind::Query)
            };
            let Some(slot) = self.primary.as_mut() else {
                self.shared.metrics.optimistic_moved(false);
                return Err(moved_reads_differ("the primary connection was lost"));
            };
            match slot.conn.run_for_rows(&payload, kind).await {
                Ok((rows, error)) if rows == entry.rows && error == entry.error => {}
                Ok(_) => {
                    return Err(self
                        .abandon_moved(&format!("statement {n} returned other rows on the primary"))
                        .await);
                }
                Err(e) => {
                    if let Some(slot) = self.primary.as_mut() {
                        slot.conn.mark_broken();
                    }
                    self.lose_slot(BackendRole::Primary, "backend lost replaying a transaction");
                    self.state.fresh_begin = None;
                    self.shared.metrics.optimistic_moved(false);
                    return Err(moved_reads_differ(&format!(
                        "the primary connection was lost: {e}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Rolls back a transaction whose replay on the primary went wrong.
    async fn abandon_moved(&mut self, why: &str) -> ErrPacket {
        self.shared.metrics.optimistic_moved(false);
        tracing::info!(
            id = self.id,
            why,
            "optimistic transaction could not move to the primary"
        );
        if let Some(slot) = self.primary.as_mut()
            && !matches!(slot.conn.run("ROLLBACK").await, Ok(None))
        {
            slot.conn.mark_broken();
            self.lose_slot(
                BackendRole::Primary,
                "backend lost rolling back a transaction",
            );
        }
        self.state.in_transaction = false;
        self.state.fresh_begin = None;
        moved_reads_differ(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_that_keep_failing_are_tried_ever_more_rarely() {
        let after: Vec<u8> = (1..=7).map(primary_begins_after).collect();
        assert_eq!(after, vec![8, 16, 32, 64, 128, 128, 128]);
        assert_eq!(primary_begins_after(0), 8);
    }
}
