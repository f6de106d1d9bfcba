//! Choosing the replica a read may use: one that has applied everything the read must see
//! under the session's consistency mode, waiting briefly for the best candidate, or else the
//! primary. Never a stale answer, never a wait past the budget.

use std::time::{Duration, Instant};

use super::forward::{RelayError, read_response, relay_response, single_value};
use super::{Session, Which};
use crate::gtid::GtidSet;
use crate::protocol::constants::{cap, com};
use crate::protocol::messages::ErrPacket;
use crate::protocol::response::ResponseKind;
use crate::protocol::response::ResponseTracker;
use crate::protocol::session_state::committed_gtid;
use crate::route::{Classification, ConsistencyMode};
use crate::server::Shared;
use crate::topology::{Flavor, Member};

/// Where a read goes.
#[derive(Debug, Clone)]
pub(super) enum ReadPlan {
    Primary,
    Replica,
    /// The replica slot points at the closest replica, which must first apply this.
    WaitThenReplica(GtidSet),
}

/// What a replica must satisfy to serve a read.
#[derive(Debug, Clone)]
enum Requirement {
    Any,
    Applied(GtidSet),
    FreshWithin { max_ms: u64 },
}

fn mode_label(mode: ConsistencyMode) -> &'static str {
    match mode {
        ConsistencyMode::Strict => "strict",
        ConsistencyMode::Session => "session",
        ConsistencyMode::Proxy => "proxy",
        ConsistencyMode::Bounded { .. } => "bounded",
        ConsistencyMode::Eventual => "eventual",
    }
}

impl Session {
    fn mode_for(&self, c: &Classification) -> ConsistencyMode {
        c.hint
            .or(self.consistency)
            .unwrap_or_else(|| self.shared.default_consistency())
    }

    /// Whether the backends report the GTIDs of writes (they track session state for every
    /// client, whether or not the client asked for it).
    fn tracks_gtids(&self) -> bool {
        self.shared.backend_caps() & cap::SESSION_TRACK != 0
    }

    async fn requirement(&mut self, mode: ConsistencyMode) -> Result<Requirement, &'static str> {
        let own = |set: Option<GtidSet>| set.map_or(Requirement::Any, Requirement::Applied);
        match mode {
            ConsistencyMode::Eventual => Ok(Requirement::Any),
            ConsistencyMode::Bounded { max_lag_ms } => {
                Ok(Requirement::FreshWithin { max_ms: max_lag_ms })
            }
            ConsistencyMode::Session if self.tracks_gtids() => Ok(own(self.last_write.clone())),
            ConsistencyMode::Proxy if self.tracks_gtids() => {
                Ok(own(self.shared.positions.proxy_writes()))
            }
            // Without session tracking the proxy cannot see a write's GTID: be strict instead.
            ConsistencyMode::Session | ConsistencyMode::Proxy | ConsistencyMode::Strict => {
                match self.shared.head_reader().head().await {
                    Ok(head) => Ok(Requirement::Applied(head)),
                    Err(e) => {
                        tracing::debug!(error = %e, "primary head unavailable");
                        Err("head_unavailable")
                    }
                }
            }
        }
    }

    fn qualifies(&self, addr: &str, req: &Requirement) -> bool {
        let p = &self.shared.positions;
        match req {
            Requirement::Any => true,
            Requirement::Applied(need) => p.has_applied(addr, need),
            Requirement::FreshWithin { max_ms } => {
                p.staleness_ms(addr).is_some_and(|s| s <= *max_ms)
            }
        }
    }

    /// Decides where a replica-eligible read runs, waiting for the replica in a separate round
    /// trip when it has to (a COM_QUERY pipelines the wait instead: see `plan_read`).
    pub(super) async fn choose_for_read(
        &mut self,
        c: &Classification,
    ) -> Result<Which, super::End> {
        Ok(match self.plan_read(c).await {
            ReadPlan::Primary => Which::Primary,
            ReadPlan::Replica => Which::Replica,
            ReadPlan::WaitThenReplica(need) => {
                if self.wait_then(&need, None).await {
                    Which::Replica
                } else {
                    self.fall_back("wait_timeout")
                }
            }
        })
    }

    /// Decides where a replica-eligible read runs and readies the replica connection.
    pub(super) async fn plan_read(&mut self, c: &Classification) -> ReadPlan {
        let mode = self.mode_for(c);
        let label = mode_label(mode);
        let req = match self.requirement(mode).await {
            Ok(r) => r,
            Err(reason) => {
                self.fall_back(reason);
                return ReadPlan::Primary;
            }
        };
        // Stay on the current replica when it qualifies: no new connection, warm caches, and
        // no allocation on this, the common path.
        if let Some(slot) = &self.replica {
            let topo = self.shared.topology();
            let listed = topo
                .replicas
                .iter()
                .any(|m| m.weight > 0 && m.has_addr(&slot.member.host, slot.member.port));
            if listed && self.shared.health.is_up(&slot.addr) && self.qualifies(&slot.addr, &req) {
                self.read_mode = label;
                return ReadPlan::Replica;
            }
        }
        let topo = self.shared.topology();
        let healthy: Vec<Member> = topo
            .replicas
            .iter()
            .filter(|m| m.weight > 0 && self.shared.health.is_up(&m.addr()))
            .cloned()
            .collect();
        drop(topo);
        if healthy.is_empty() {
            self.fall_back("no_replica");
            return ReadPlan::Primary;
        }
        let qualified: Vec<&Member> = healthy
            .iter()
            .filter(|m| self.qualifies(&m.addr(), &req))
            .collect();
        if let Some(m) = self.shared.least_loaded(&qualified) {
            return match self.use_replica(m.clone(), label).await {
                Which::Replica => ReadPlan::Replica,
                Which::Primary => ReadPlan::Primary,
            };
        }
        let Requirement::Applied(need) = req else {
            self.fall_back("too_stale");
            return ReadPlan::Primary;
        };
        // Nobody is known to have caught up: wait on the one closest to it.
        let p = &self.shared.positions;
        let Some(best) = healthy
            .iter()
            .min_by_key(|m| p.behind(&m.addr(), &need).unwrap_or(u64::MAX))
            .cloned()
        else {
            self.fall_back("no_replica");
            return ReadPlan::Primary;
        };
        if self.use_replica(best, label).await == Which::Primary {
            return ReadPlan::Primary;
        }
        ReadPlan::WaitThenReplica(need)
    }

    /// Relays the response to a read already sent (pipelined) on the replica connection.
    pub(super) async fn relay_pending(
        &mut self,
        kind: ResponseKind,
    ) -> Result<Option<(Which, ResponseTracker)>, super::End> {
        let Some(slot) = self.replica.as_mut() else {
            return Ok(None);
        };
        let in_flight = self.shared.health.begin(&slot.addr);
        let how = super::forward::Relay {
            splice: self.splice,
            ..super::forward::Relay::of(kind)
        };
        let result = relay_response(
            &mut self.client,
            &mut slot.conn,
            how,
            &super::forward::nothing_on_done,
        )
        .await;
        drop(in_flight);
        match result {
            Ok(tracker) => {
                self.last = Which::Replica;
                Ok(Some((Which::Replica, tracker)))
            }
            Err(RelayError::Client(e)) => Err(super::End::Protocol(e)),
            Err(RelayError::ClientGone) => {
                self.cancel_running(Which::Replica).await;
                Err(super::End::Client)
            }
            Err(RelayError::BackendMidReply) => {
                self.lose_slot(Which::Replica, "backend lost mid-response");
                Ok(None)
            }
            Err(RelayError::BackendBeforeReply(e)) => {
                self.lose_slot(Which::Replica, "backend lost before replying");
                self.reply_err(&ErrPacket::backend_lost(&e.to_string()))
                    .await?;
                Ok(None)
            }
            // Only primary writes are intercepted; this path never asks for it.
            Err(RelayError::ReadOnly(err)) => {
                self.reply_err(&err).await?;
                Ok(None)
            }
        }
    }

    pub(super) fn fall_back(&mut self, reason: &'static str) -> Which {
        self.shared.metrics.read_fallback(reason);
        self.read_mode = "primary";
        Which::Primary
    }

    /// Points the replica slot at `member` (keeping it when it already is).
    async fn use_replica(&mut self, member: Member, label: &'static str) -> Which {
        let same = self
            .replica
            .as_ref()
            .is_some_and(|s| member.has_addr(&s.member.host, s.member.port));
        if !same {
            self.replica = None;
            self.statements.forget_backend(Which::Replica);
            match self.open_slot(member, Which::Replica).await {
                Ok(slot) => self.replica = Some(slot),
                Err(_) => return self.fall_back("replica_connect"),
            }
        }
        if self.sync_database(Which::Replica).await.is_err() {
            return self.fall_back("replica_connect");
        }
        self.read_mode = label;
        Which::Replica
    }

    /// Waits (within the budget) until the replica slot has applied `need`; with `then` (a whole
    /// COM_QUERY) pipelined behind the wait, in one round trip. True when the replica caught up
    /// in time: the response to `then` is next on the replica connection. Otherwise that
    /// response (which may be stale) has been read and dropped.
    pub(super) async fn wait_then(&mut self, need: &GtidSet, then: Option<&[u8]>) -> bool {
        let budget = self.shared.config.consistency_wait;
        let flavor = self.shared.topology().flavor;
        let sql = wait_statement(flavor, need, budget);
        let Some(slot) = self.replica.as_mut() else {
            return false;
        };
        let started = Instant::now();
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(com::QUERY);
        payload.extend_from_slice(sql.as_bytes());
        let answer = async {
            let mut seq = 0;
            slot.conn.stream.buffer_payload(&mut seq, &payload);
            if let Some(then) = then {
                let mut seq = 0;
                slot.conn.stream.buffer_payload(&mut seq, then);
            }
            slot.conn.stream.flush().await.ok()?;
            let (tracker, packets) = read_response(&mut slot.conn, ResponseKind::Query)
                .await
                .ok()?;
            let value = if tracker.error.is_some() {
                String::new()
            } else {
                single_value(&packets, slot.conn.caps)?
            };
            if value != "0" && then.is_some() {
                read_response(&mut slot.conn, ResponseKind::Query)
                    .await
                    .ok()?;
            }
            Some(value)
        };
        let value = tokio::time::timeout(budget + Duration::from_secs(1), answer)
            .await
            .ok()
            .flatten();
        self.shared.metrics.consistency_waited(started.elapsed());
        match value.as_deref() {
            Some("0") => {
                self.shared.positions.observe(&slot.addr, need);
                true
            }
            None => {
                // The connection is in an unknown state.
                slot.conn.mark_broken();
                self.replica = None;
                false
            }
            Some(_) => false,
        }
    }

    /// Learns the GTID of a write from the primary's OK packet, for the session.
    pub(super) fn learn_write(&mut self, tracker: &ResponseTracker) {
        let Some(set) = committed_write(&self.shared, tracker) else {
            return;
        };
        if let Some(slot) = &self.primary {
            self.shared.positions.observe(&slot.addr, &set);
        }
        match self.last_write.as_mut() {
            Some(all) => all.union(&set),
            None => self.last_write = Some(set),
        }
    }
}

/// The GTID a write committed, from the server's OK packet (session state tracking).
fn committed_write(shared: &Shared, tracker: &ResponseTracker) -> Option<GtidSet> {
    let ok = tracker.last_ok.as_ref()?;
    if ok.session_state.is_empty() {
        return None;
    }
    let text = committed_gtid(&ok.session_state)?;
    GtidSet::parse(shared.topology().flavor, &text).ok()
}

/// Records, for `proxy` consistency, a write the primary acknowledged: called before the
/// acknowledgement reaches the client, so a read any session sends after it sees the write.
pub(super) fn note_proxy_write(shared: &Shared, tracker: &ResponseTracker) {
    if let Some(set) = committed_write(shared, tracker) {
        shared.positions.note_write(&set);
    }
}

fn wait_statement(flavor: Flavor, need: &GtidSet, budget: Duration) -> String {
    let secs = budget.as_secs_f64();
    // GTID text is digits, hex, dashes, colons and commas: nothing to escape.
    match flavor {
        Flavor::Mariadb => format!("SELECT MASTER_GTID_WAIT('{need}', {secs})"),
        Flavor::Mysql => format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{need}', {secs})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gtid::GtidParseError;

    #[test]
    fn wait_statements_per_flavour() -> Result<(), GtidParseError> {
        let need = GtidSet::parse(Flavor::Mariadb, "1-100-7")?;
        assert_eq!(
            wait_statement(Flavor::Mariadb, &need, Duration::from_millis(250)),
            "SELECT MASTER_GTID_WAIT('1-100-7', 0.25)"
        );
        let need = GtidSet::parse(Flavor::Mysql, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")?;
        assert_eq!(
            wait_statement(Flavor::Mysql, &need, Duration::from_secs(1)),
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', 1)"
        );
        Ok(())
    }
}
