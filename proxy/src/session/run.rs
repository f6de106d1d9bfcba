//! Running one command on one of the session's backend connections: taking the connection,
//! retrying where nothing ran, relaying the response, and what a failed relay leaves.

use std::time::Duration;

use super::forward::{self, relay};
use super::relay_failure::{BackendFate, Then, relay_failure};
use super::{BackendRole, End, Session, consistent, decide};
use crate::protocol::constants::com;
use crate::protocol::messages::ErrPacket;
use crate::protocol::response::{ResponseKind, ResponseTracker};

/// How [`Session::run_on_with`] runs a command.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Run {
    /// A write refused by a read-only primary waits for the next primary and runs there.
    pub retry_read_only: bool,
    /// The payload is a statement command whose id is mapped per backend connection.
    pub map_statement: bool,
}

/// ER_LOCK_DEADLOCK: the server rolled the whole transaction back.
const DEADLOCK: u16 = 1213;
/// How long the status probe after a deadlock may take.
const STATUS_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Session {
    /// Runs one command on `wanted` (or the primary when no replica can take it) and relays
    /// the response. `Ok(None)`: the client already got an error.
    pub(super) async fn run_on(
        &mut self,
        wanted: BackendRole,
        payload: &[u8],
        kind: ResponseKind,
        stmt_id: Option<u32>,
    ) -> Result<Option<(BackendRole, ResponseTracker)>, End> {
        self.run_on_with(wanted, payload, kind, stmt_id, Run::default())
            .await
    }

    /// Runs one command on `wanted` (or the primary when no replica can take it) and relays
    /// the response. `Ok(None)`: the client already got an error.
    ///
    /// With `how.retry_read_only`, a write refused because the primary went read-only (a
    /// switchover under way) waits for the next primary and runs there: nothing ran, so the
    /// client sees a pause, not an error. With `how.map_statement`, `payload` is a statement
    /// command with the client's statement id, mapped (and prepared when needed) for whichever
    /// backend connection each attempt uses.
    pub(super) async fn run_on_with(
        &mut self,
        wanted: BackendRole,
        payload: &[u8],
        kind: ResponseKind,
        stmt_id: Option<u32>,
        how: Run,
    ) -> Result<Option<(BackendRole, ResponseTracker)>, End> {
        let Run {
            retry_read_only,
            map_statement,
        } = how;
        let mut which = wanted;
        // A plain query carries no backend-specific ids and may be re-sent elsewhere; so may a
        // statement command, which is mapped again for the next connection.
        // Not in a transaction that lives on a replica connection: it ends with it.
        let may_retry = (payload.first() == Some(&com::QUERY) || map_statement)
            && self.state.replica_transaction.is_none();
        // Dead idle connections are replaced without using up the retries.
        let mut stale_connections = 0;
        let mut attempt = 0;
        while attempt < 3 {
            which = match self.ensure_slot(which).await {
                Ok(w) => w,
                // The tenant's database is gone from this cluster: it may have moved.
                Err(err) if self.reroutable && forward::MISSING.contains(&err.code) => {
                    self.reroute = Some(err);
                    return Ok(None);
                }
                Err(err) => {
                    self.reply_err(&err).await?;
                    return Ok(None);
                }
            };
            let movable = match which {
                BackendRole::Replica => self.state.replica_transaction.is_none(),
                BackendRole::Primary => !self.state.in_transaction && self.state.pinned.is_none(),
            };
            // A connection the server closed while it sat idle (killed, restarted, timed out):
            // nothing was sent on it, so take a fresh one.
            if let Some(slot) = self.slot_mut(which)
                && stale_connections < 8
                && slot.conn.stream.closed_while_idle()
            {
                slot.conn.mark_broken();
                self.lose_slot(which, "closed by the server while idle");
                if !movable {
                    // The session's transaction or pinned state went with it (the server's
                    // wait_timeout, a KILL): the client's connection ends too, as it would
                    // have on the server, and a reconnecting client starts clean.
                    tracing::debug!(
                        id = self.id,
                        "the session's own connection was closed by the server; ending the session"
                    );
                    return Err(End::Client);
                }
                stale_connections += 1;
                continue;
            }
            // Anything sent in the transaction makes it more than a BEGIN; until it has run, a
            // refusal by a primary that went read-only can still move it.
            let fresh = match which {
                BackendRole::Primary => self.state.fresh_begin.take(),
                BackendRole::Replica => None,
            }
            .filter(|_| self.state.pinned.is_none());
            let intercept = forward::Intercept {
                read_only: retry_read_only
                    && (movable || fresh.is_some())
                    && which == BackendRole::Primary,
                missing: self.reroutable && movable,
            };
            let mapped;
            let payload: &[u8] = if map_statement {
                match self.statement_payload(which, payload).await {
                    Ok(p) => {
                        mapped = p;
                        &mapped
                    }
                    Err(err) => {
                        self.reply_err(&err).await?;
                        return Ok(None);
                    }
                }
            } else {
                payload
            };
            let slot = match which {
                BackendRole::Primary => self.primary.as_mut(),
                BackendRole::Replica => self.replica.as_mut(),
            };
            let Some(slot) = slot else {
                return Ok(None);
            };
            attempt += 1;
            let in_flight = self.backends.health.begin(&slot.addr);
            let backends = &*self.backends;
            let note_write = |t: &ResponseTracker| consistent::note_proxy_write(backends, t);
            let on_done: forward::OnDone<'_> = if which == BackendRole::Primary {
                &note_write
            } else {
                &forward::nothing_on_done
            };
            let how = forward::Relay {
                kind,
                stmt_id,
                splice: self.splice,
                digest_rows: which == BackendRole::Replica && self.state.replays_reads(),
            };
            let result = relay(
                &mut self.client,
                &mut slot.conn,
                payload,
                how,
                intercept,
                on_done,
            )
            .await;
            drop(in_flight);
            match result {
                Ok(mut tracker) => {
                    self.state.last = which;
                    self.state.sql_mode =
                        decide::sql_mode_after(self.state.sql_mode, tracker.status);
                    if which == BackendRole::Primary
                        && tracker.error == Some(DEADLOCK)
                        && tracker.status.is_none()
                        && self.state.in_transaction
                    {
                        // An ERR carries no status flags, and a deadlock rolls the whole
                        // transaction back: ask, so that the session does not keep treating
                        // the next BEGIN as part of a transaction still open on this server.
                        let answered = match self.primary.as_mut() {
                            Some(slot) => {
                                let ping = slot.conn.ping();
                                match tokio::time::timeout(STATUS_PROBE_TIMEOUT, ping).await {
                                    Ok(true) => Some(slot.conn.status),
                                    _ => None,
                                }
                            }
                            None => None,
                        };
                        match answered {
                            Some(status) => tracker.status = Some(status),
                            // The transaction is gone either way; so is a connection that
                            // cannot answer a ping.
                            None => {
                                if let Some(slot) = self.primary.as_mut() {
                                    slot.conn.mark_broken();
                                }
                                self.lose_slot(BackendRole::Primary, "no answer after a deadlock");
                            }
                        }
                    }
                    return Ok(Some((which, tracker)));
                }
                Err(e) => {
                    let (fate, then) = relay_failure(e, which, attempt == 1 && may_retry);
                    // Only a retry on the next primary needs to know which one failed.
                    let old = matches!(then, Then::RunOnNextPrimary(_))
                        .then(|| self.primary.as_ref().map(|s| s.addr.clone()))
                        .flatten();
                    self.carry_out(which, fate).await;
                    match then {
                        Then::End(end) => return Err(end),
                        Then::Done => return Ok(None),
                        Then::Reply(err) => {
                            self.reply_err(&err).await?;
                            return Ok(None);
                        }
                        Then::Reroute(err) => {
                            self.reroute = Some(err);
                            return Ok(None);
                        }
                        Then::RunElsewhere => {
                            self.shared.metrics.error("backend_lost");
                            continue;
                        }
                        Then::RunOnNextPrimary(err) => {
                            if let Some(begin) = fresh.filter(|_| self.state.in_transaction) {
                                // Only BEGIN ran in this transaction (the pool rolls it back):
                                // it is opened again on the next primary, before this
                                // statement.
                                self.state.in_transaction = false;
                                self.state.replay_begin = Some(begin);
                            }
                            tracing::debug!(id = self.id, attempt, old = ?old, "primary is read-only; waiting for the next one");
                            if attempt < 3
                                && self
                                    .backends
                                    .wait_for_new_primary(old.as_deref())
                                    .await
                                    .is_some()
                            {
                                continue;
                            }
                            self.reply_err(&err).await?;
                            return Ok(None);
                        }
                    }
                }
            }
        }
        self.reply_err(&ErrPacket::backend_unavailable(
            "no usable backend connection",
        ))
        .await?;
        Ok(None)
    }

    /// Does with the backend connection a relay failed on what [`relay_failure`] decided.
    pub(super) async fn carry_out(&mut self, which: BackendRole, fate: BackendFate) {
        match fate {
            BackendFate::Keep => {}
            BackendFate::Lose(why) => self.lose_slot(which, why),
            BackendFate::Cancel => self.cancel_running(which).await,
            BackendFate::Replace => {
                self.slot_take(which);
            }
        }
    }
}
