//! What a failed relay means for the client and for the backend connection: one mapping for
//! every path that relays a response.

use super::BackendRole;
use super::End;
use super::forward::RelayError;
use crate::protocol::messages::ErrPacket;

/// What becomes of the backend connection a relay failed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendFate {
    /// Left as it is (the session ends; the pool drops a connection marked broken).
    Keep,
    /// Dropped and counted as lost, for this reason.
    Lose(&'static str),
    /// The statement still runs there: stopped with `KILL QUERY`, and the connection closed.
    Cancel,
    /// The primary went read-only: dropped, to take the next primary's connection.
    Replace,
}

/// What the session does next.
#[derive(Debug)]
pub enum Then {
    /// The session ends.
    End(End),
    /// The client already has its answer (an ERR in place of the rest of the response).
    Done,
    /// The client gets this error.
    Reply(ErrPacket),
    /// Nothing reached the client: run the command again on whatever connection the session
    /// takes next (a read on another backend).
    RunElsewhere,
    /// Nothing ran: wait for the next primary and run it there; without one in time, the client
    /// gets this error.
    RunOnNextPrimary(ErrPacket),
    /// Nothing ran: the tenant's route may be stale. Read it again and run the command where
    /// it leads, or give the client this error when the route has not changed.
    Reroute(ErrPacket),
}

/// The mapping of a relay error on `ran_on`. `may_run_elsewhere`: the command may be sent again
/// (a read whose first attempt failed before any reply).
pub fn relay_failure(
    e: RelayError,
    ran_on: BackendRole,
    may_run_elsewhere: bool,
) -> (BackendFate, Then) {
    match e {
        RelayError::Client(e) => (BackendFate::Keep, Then::End(End::Protocol(e))),
        RelayError::ClientGone => (BackendFate::Cancel, Then::End(End::Client)),
        RelayError::ReadOnly(err) if ran_on == BackendRole::Primary => {
            (BackendFate::Replace, Then::RunOnNextPrimary(err))
        }
        // Only primary writes are intercepted.
        RelayError::ReadOnly(err) => (BackendFate::Keep, Then::Reply(err)),
        RelayError::Missing(err) => (BackendFate::Keep, Then::Reroute(err)),
        RelayError::BackendMidReply => (BackendFate::Lose("backend lost mid-response"), Then::Done),
        RelayError::BackendBeforeReply(e) => {
            let fate = BackendFate::Lose("backend lost before replying");
            // A read that never reached a reply can run elsewhere; anything else may have run,
            // so the client must decide.
            if ran_on == BackendRole::Replica && may_run_elsewhere {
                (fate, Then::RunElsewhere)
            } else {
                (fate, Then::Reply(ErrPacket::backend_lost(&e.to_string())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::PacketError;

    #[test]
    fn relay_errors() {
        let lost = || RelayError::BackendBeforeReply(PacketError::Closed);
        let read_only = || RelayError::ReadOnly(ErrPacket::new(1290, "HY000", "read only"));
        let missing = || RelayError::Missing(ErrPacket::new(1146, "42S02", "no such table"));
        let (p, r) = (BackendRole::Primary, BackendRole::Replica);
        let lose_before = BackendFate::Lose("backend lost before replying");
        // (error, ran on, may run elsewhere, fate, what next)
        let cases: Vec<(RelayError, BackendRole, bool, BackendFate, &str)> = vec![
            (lost(), r, true, lose_before, "RunElsewhere"),
            (lost(), r, false, lose_before, "Reply"),
            (lost(), p, true, lose_before, "Reply"),
            (
                RelayError::BackendMidReply,
                r,
                true,
                BackendFate::Lose("backend lost mid-response"),
                "Done",
            ),
            (RelayError::ClientGone, p, true, BackendFate::Cancel, "End"),
            (
                RelayError::Client(PacketError::Closed),
                r,
                false,
                BackendFate::Keep,
                "End",
            ),
            (
                read_only(),
                p,
                false,
                BackendFate::Replace,
                "RunOnNextPrimary",
            ),
            (read_only(), r, false, BackendFate::Keep, "Reply"),
            (missing(), p, false, BackendFate::Keep, "Reroute"),
            (missing(), r, true, BackendFate::Keep, "Reroute"),
        ];
        for (e, ran_on, elsewhere, fate, then) in cases {
            let label = format!("{e:?} on {ran_on:?}");
            let (got_fate, got_then) = relay_failure(e, ran_on, elsewhere);
            assert_eq!(got_fate, fate, "{label}");
            let got_then = format!("{got_then:?}");
            assert!(got_then.starts_with(then), "{label}: {got_then}");
        }
    }
}
