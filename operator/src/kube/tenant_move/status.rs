//! Pure decisions of the `MySQLTenantMove` controller: the status a move's record gives, and
//! which of a pool's moves goes first.

use crate::crd::tenant_move::{MySQLTenantMoveStatus, PhaseTiming};
use crate::pool::moves::MoveRecord;

/// The phase of a move that waits: for its turn, or for what it needs to start.
pub const PENDING: &str = "pending";

/// The status that shows `record`, keeping when the move started.
pub fn of_record(
    record: &MoveRecord,
    started_at: &str,
    now: &str,
) -> Result<MySQLTenantMoveStatus, serde_json::Error> {
    let json = serde_json::to_string(record)?;
    Ok(MySQLTenantMoveStatus {
        phase: Some(record.phase.as_str().to_string()),
        from: Some(record.from.clone()),
        message: record.error.clone(),
        frozen_ms: record
            .frozen_ms
            .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
        snapshot: record.snapshot.clone(),
        timings: record
            .timings
            .iter()
            .map(|(phase, ms)| PhaseTiming {
                phase: phase.as_str().to_string(),
                ms: i64::try_from(*ms).unwrap_or(i64::MAX),
            })
            .collect(),
        started_at: Some(started_at.to_string()),
        finished_at: record.phase.is_final().then(|| now.to_string()),
        record: Some(json),
    })
}

/// The record kept in `status`, when the move has started.
pub fn record_of(status: &MySQLTenantMoveStatus) -> Result<Option<MoveRecord>, String> {
    status
        .record
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| format!("status.record is not a move's record: {e}"))
}

/// The status of a move that has not started: refused (`aborted`), or waiting (`pending`).
pub fn not_started(
    previous: &MySQLTenantMoveStatus,
    refused: bool,
    message: &str,
    now: &str,
) -> MySQLTenantMoveStatus {
    MySQLTenantMoveStatus {
        phase: Some(if refused { "aborted" } else { PENDING }.to_string()),
        message: Some(message.to_string()),
        finished_at: refused.then(|| now.to_string()),
        ..previous.clone()
    }
}

/// One of a pool's moves, as the queue sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub name: String,
    pub pool: String,
    /// Ended: done or aborted.
    pub finished: bool,
    /// Its record exists (it changed something), or a task runs it.
    pub started: bool,
    /// RFC 3339: names of the same second break ties.
    pub created: String,
}

/// The move `name` waits for, if any: one move of a pool runs at a time (two moves between
/// the same clusters in opposite directions would each read the other's writes), a started
/// one first, then the oldest.
pub fn waits_for<'a>(name: &str, moves: &'a [Queued]) -> Option<&'a Queued> {
    let me = moves.iter().find(|m| m.name == name)?;
    let key = |m: &Queued| (!m.started, m.created.clone(), m.name.clone());
    moves
        .iter()
        .filter(|m| m.name != name && m.pool == me.pool && !m.finished)
        .filter(|m| key(m) < key(me))
        .min_by_key(|m| key(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::moves::Phase;
    use lagless_directory::TenantId;

    #[test]
    fn a_record_shows_its_phase_and_round_trips() {
        let mut r = MoveRecord::new(&TenantId::parse("42").unwrap(), "shop-0", "shop-1");
        r.phase = Phase::CatchingUp;
        r.timings.push((Phase::Copying, 1200));
        let s = of_record(&r, "2026-12-07T10:00:00Z", "2026-12-07T10:01:00Z").unwrap();
        assert_eq!(s.phase.as_deref(), Some("catching up"));
        assert_eq!(s.from.as_deref(), Some("shop-0"));
        assert_eq!(s.finished_at, None);
        assert_eq!(
            s.timings,
            vec![PhaseTiming {
                phase: "copying".into(),
                ms: 1200
            }]
        );
        assert_eq!(record_of(&s).unwrap(), Some(r.clone()));
        assert!(!s.is_final());
        r.phase = Phase::Done;
        r.frozen_ms = Some(80);
        let s = of_record(&r, "a", "b").unwrap();
        assert!(s.is_final());
        assert_eq!(
            (s.finished_at.as_deref(), s.frozen_ms),
            (Some("b"), Some(80))
        );
        let broken = MySQLTenantMoveStatus {
            record: Some("{".into()),
            ..s
        };
        assert!(record_of(&broken).is_err());
        assert_eq!(record_of(&MySQLTenantMoveStatus::default()), Ok(None));
    }

    #[test]
    fn a_refusal_ends_the_move_and_a_wait_does_not() {
        let s = not_started(&MySQLTenantMoveStatus::default(), true, "no pool", "t");
        assert!(s.is_final());
        assert_eq!(s.message.as_deref(), Some("no pool"));
        let s = not_started(&MySQLTenantMoveStatus::default(), false, "turn", "t");
        assert!(!s.is_final());
        assert_eq!(s.phase.as_deref(), Some(PENDING));
    }

    fn q(name: &str, pool: &str, finished: bool, started: bool, created: &str) -> Queued {
        Queued {
            name: name.into(),
            pool: pool.into(),
            finished,
            started,
            created: created.into(),
        }
    }

    #[test]
    fn one_move_of_a_pool_runs_at_a_time() {
        let moves = [
            q("a", "shop", false, false, "2"),
            q("b", "shop", false, false, "1"),
            q("c", "other", false, true, "0"),
            q("d", "shop", true, true, "0"),
        ];
        // The oldest goes first; another pool's and a finished one do not count.
        assert_eq!(waits_for("a", &moves).map(|m| m.name.as_str()), Some("b"));
        assert_eq!(waits_for("b", &moves), None);
        assert_eq!(waits_for("c", &moves), None);
        // A started one goes on, whatever its age.
        let moves = [
            q("a", "shop", false, false, "1"),
            q("b", "shop", false, true, "2"),
        ];
        assert_eq!(waits_for("a", &moves).map(|m| m.name.as_str()), Some("b"));
        assert_eq!(waits_for("b", &moves), None);
        // Same second: by name.
        let moves = [
            q("y", "shop", false, false, "1"),
            q("x", "shop", false, false, "1"),
        ];
        assert_eq!(waits_for("y", &moves).map(|m| m.name.as_str()), Some("x"));
        assert_eq!(waits_for("unknown", &moves), None);
        // Two started (they cannot be, but a hand-edited status could say so): the older.
        let moves = [
            q("a", "shop", false, true, "1"),
            q("b", "shop", false, true, "2"),
        ];
        assert_eq!(waits_for("b", &moves).map(|m| m.name.as_str()), Some("a"));
        assert_eq!(waits_for("a", &moves), None);
    }
}
