//! Counting each statement in the query digests: its fingerprint before it runs, and what
//! its response said once it has.

use std::time::{Duration, Instant};

use super::{BackendRole, Session};
use crate::digest::{Placement, Sample, fingerprint};
use crate::protocol::response::ResponseTracker;
use crate::route::SqlMode;

impl Session {
    /// The fingerprint of a statement about to run under the session's `sql_mode`; `None`
    /// when digests are off.
    pub(super) fn digest_of(&mut self, sql: &[u8]) -> Option<u64> {
        self.read_waited = false;
        self.service_from = None;
        self.shared
            .digests
            .enabled()
            .then(|| fingerprint(sql, self.state.sql_mode))
    }

    /// Counts a statement that ran (`outcome`) or got an error from the proxy (`None`).
    /// `sql` and `mode` give the text the first time the fingerprint is seen.
    pub(super) fn record_digest(
        &mut self,
        id: Option<u64>,
        sql: &[u8],
        mode: SqlMode,
        started: Instant,
        outcome: Option<(BackendRole, &ResponseTracker)>,
    ) {
        let waited = std::mem::take(&mut self.read_waited);
        let service_from = self.service_from.take().unwrap_or(started);
        // A statement that runs again on its tenant's new cluster is counted when it does.
        let (Some(id), None) = (id, &self.reroute) else {
            return;
        };
        let mut sample = sample_of(outcome, waited, started.elapsed());
        // From after any head read or wait (`ready_read`, `wait_then`) to the response's end.
        if !sample.error {
            sample.service = Some(service_from.elapsed());
        }
        self.shared.digests.record(id, sql, mode, &sample);
    }
}

/// What the digests count of one execution.
fn sample_of(
    outcome: Option<(BackendRole, &ResponseTracker)>,
    waited: bool,
    elapsed: Duration,
) -> Sample {
    let Some((which, tracker)) = outcome else {
        return Sample {
            elapsed,
            rows: 0,
            error: true,
            placement: Placement::Unplaced,
            service: None,
        };
    };
    let placement = match which {
        BackendRole::Primary => Placement::Primary,
        BackendRole::Replica if waited => Placement::ReplicaAfterWait,
        BackendRole::Replica => Placement::Replica,
    };
    Sample {
        elapsed,
        rows: tracker.rows,
        error: tracker.error.is_some(),
        placement,
        service: None,
    }
}

/// The fingerprint whose cost decides where a read runs: none for a transaction's start,
/// which costs what the whole transaction will.
pub(super) fn cost_key(digest: Option<u64>, c: &crate::route::Classification) -> Option<u64> {
    digest.filter(|_| !c.effects.begins_transaction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::response::ResponseKind;

    #[test]
    fn placement_and_errors_come_from_the_outcome() {
        let ms = Duration::from_millis(1);
        let mut t = ResponseTracker::new(ResponseKind::Query, 0);
        t.rows = 3;
        let s = sample_of(Some((BackendRole::Replica, &t)), true, ms);
        assert_eq!(
            (s.placement, s.rows, s.error),
            (Placement::ReplicaAfterWait, 3, false)
        );
        let s = sample_of(Some((BackendRole::Replica, &t)), false, ms);
        assert_eq!(s.placement, Placement::Replica);
        t.error = Some(1146);
        let s = sample_of(Some((BackendRole::Primary, &t)), true, ms);
        assert_eq!((s.placement, s.error), (Placement::Primary, true));
        let s = sample_of(None, false, ms);
        assert_eq!((s.placement, s.error), (Placement::Unplaced, true));
    }
}
