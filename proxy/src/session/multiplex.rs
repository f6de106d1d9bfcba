//! Multiplexing: a session gives its backend connections back to the pool between statements
//! whenever nothing ties it to them, and takes whichever connection is free for the next one.
//! The decisions are here, as data; giving back and taking are in `slots`.
//!
//! What ties a session to its connection:
//! - for good (the session is pinned, see `decide::after`): a temporary table, `LOCK TABLES`,
//!   a user lock (`GET_LOCK`), a user variable, session state the proxy cannot replay, a
//!   function that reads the connection's own history (`LAST_INSERT_ID()`, `FOUND_ROWS()`,
//!   `ROW_COUNT()`, `CONNECTION_ID()`, sequences' `LASTVAL`: the session keeps its
//!   connections but is routed as before), a login relayed to the primary;
//! - while it lasts: a transaction, an open cursor, long data sent for an execution, a
//!   transaction start waiting to be replayed;
//! - for one more command: a statement that left something the next may read on that
//!   connection alone (a generated id, warnings, a `SQL_CALC_FOUND_ROWS` count).
//!
//! Replayable state (`SET NAMES`, `time_zone`, `sql_mode`, …, what the session tracks) travels
//! as a signature: a connection given back keeps its state, and one whose signature matches
//! the session's is taken without a reset or a replay.

use std::hash::{Hash, Hasher};

use crate::protocol::response::ResponseTracker;

/// Facts about a session after a command, for [`holds`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HoldFacts {
    pub in_transaction: bool,
    pub pinned: bool,
    pub replay_begin: bool,
    /// It called a function that reads its connection's history.
    pub sticky: bool,
    pub open_cursor: bool,
    pub long_data: bool,
    /// The command just run left something its connection alone holds for the next one.
    pub for_next: bool,
}

/// Why the session keeps its connections after the command just run; `None`: it gives them
/// back.
pub fn holds(f: &HoldFacts) -> Option<&'static str> {
    if f.pinned {
        Some("pinned")
    } else if f.sticky {
        Some("reads its connection's history")
    } else if f.in_transaction || f.replay_begin {
        Some("transaction")
    } else if f.open_cursor {
        Some("open cursor")
    } else if f.long_data {
        Some("long data")
    } else if f.for_next {
        Some("result for the next statement")
    } else {
        None
    }
}

/// Whether a response leaves something on its connection that the client's next statement may
/// read there alone: an error or warnings (`SHOW ERRORS`, `SHOW WARNINGS`, `GET
/// DIAGNOSTICS`), a generated id (`LAST_INSERT_ID()`), or, for a statement with
/// `SQL_CALC_FOUND_ROWS`, the count `FOUND_ROWS()` reads.
pub fn leaves_for_next(t: &ResponseTracker, calc_found_rows: bool) -> bool {
    t.error.is_some()
        || t.warnings > 0
        || t.last_ok.as_ref().is_some_and(|ok| ok.last_insert_id != 0)
        || calc_found_rows
}

/// The signature of a session's replayable state: 0 for a connection as the server makes it
/// (nothing replayed), else a hash that is never 0.
pub fn state_signature(
    replay: &[String],
    multi_statements_off: bool,
    client_tracking: Option<bool>,
) -> u64 {
    if replay.is_empty() && !multi_statements_off && client_tracking.is_none() {
        return 0;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    replay.hash(&mut h);
    multi_statements_off.hash(&mut h);
    client_tracking.hash(&mut h);
    h.finish() | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::response::ResponseKind;

    #[test]
    fn a_session_gives_its_connections_back_only_when_nothing_ties_it() {
        assert_eq!(holds(&HoldFacts::default()), None);
        let cases = [
            (
                HoldFacts {
                    pinned: true,
                    ..HoldFacts::default()
                },
                "pinned",
            ),
            (
                HoldFacts {
                    in_transaction: true,
                    ..HoldFacts::default()
                },
                "transaction",
            ),
            (
                HoldFacts {
                    replay_begin: true,
                    ..HoldFacts::default()
                },
                "transaction",
            ),
            (
                HoldFacts {
                    sticky: true,
                    ..HoldFacts::default()
                },
                "reads its connection's history",
            ),
            (
                HoldFacts {
                    open_cursor: true,
                    ..HoldFacts::default()
                },
                "open cursor",
            ),
            (
                HoldFacts {
                    long_data: true,
                    ..HoldFacts::default()
                },
                "long data",
            ),
            (
                HoldFacts {
                    for_next: true,
                    ..HoldFacts::default()
                },
                "result for the next statement",
            ),
        ];
        for (facts, why) in cases {
            assert_eq!(holds(&facts), Some(why), "{facts:?}");
        }
    }

    fn response(packets: &[&[u8]]) -> ResponseTracker {
        let caps = crate::protocol::constants::cap::PROTOCOL_41;
        let mut t = ResponseTracker::new(ResponseKind::Query, caps);
        for p in packets {
            t.feed(p).unwrap(); // ok: fixed test packets
        }
        t
    }

    #[test]
    fn generated_ids_warnings_and_found_rows_are_kept_for_the_next_statement() {
        // OK: 1 row, insert id 7, status autocommit, 0 warnings.
        let inserted = response(&[&[0x00, 1, 7, 2, 0, 0, 0]]);
        assert!(leaves_for_next(&inserted, false));
        let plain = response(&[&[0x00, 1, 0, 2, 0, 0, 0]]);
        assert!(!leaves_for_next(&plain, false));
        // OK with one warning.
        let warned = response(&[&[0x00, 0, 0, 2, 0, 1, 0]]);
        assert!(leaves_for_next(&warned, false));
        assert!(leaves_for_next(&plain, true));
        // An error: SHOW ERRORS reads it.
        let failed = response(&[b"\xff\x7a\x04#42S02no such table"]);
        assert!(leaves_for_next(&failed, false));
    }

    #[test]
    fn state_signatures_tell_states_apart_and_a_fresh_connection_is_zero() {
        assert_eq!(state_signature(&[], false, None), 0);
        let a = state_signature(&["SET time_zone='+01:00'".into()], false, None);
        let b = state_signature(&["SET time_zone='+02:00'".into()], false, None);
        assert!(a != 0 && b != 0 && a != b);
        assert_ne!(state_signature(&[], true, None), 0);
        assert_ne!(
            state_signature(&[], false, Some(true)),
            state_signature(&[], false, Some(false))
        );
    }
}
