//! `READ ONLY` transactions served by a replica: a lone `START TRANSACTION READ ONLY` runs on
//! a replica that satisfies the session's consistency mode when it starts (chosen as for any
//! read), and the transaction's statements follow it there until it ends (see
//! `decide::backend_route`). A statement that belongs on the primary moves the transaction
//! there while it has read nothing; later, it is refused.

use super::{BackendRole, Session};
use crate::protocol::messages::ErrPacket;

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
