//! Carrying out a read's plan ([`plan_read`]): reading the primary's head when the read must
//! see it, readying the chosen replica's connection, waiting (within the budget) for it to
//! apply what the read must see, or else falling back to the primary. Never a stale answer,
//! never a wait past the budget. Also learns the GTIDs of the session's writes.

use std::time::{Duration, Instant};

use super::forward::{read_response, relay_intercepting, single_value};
use super::relay_failure::{Then, relay_failure};
use super::{BackendRole, Session};
use crate::backend::Backends;
use crate::backend::select::ReplicaView;
use crate::backend::select::{
    Need, ReadPlan, Requirement, cheaper_on_primary, mode_label, need_of, plan_read,
};
use crate::gtid::GtidSet;
use crate::protocol::constants::{cap, com};
use crate::protocol::response::ResponseKind;
use crate::protocol::response::ResponseTracker;
use crate::protocol::session_state::committed_gtid;
use crate::route::ConsistencyMode;
use crate::topology::{Flavor, Member};

/// The connection a read is readied on.
#[derive(Debug, Clone)]
pub(super) enum ReadyRead {
    Primary,
    Replica,
    /// The replica slot points at the closest replica, which must first apply this.
    WaitThenReplica(GtidSet),
}

impl Session {
    /// What a read under `mode` must see, or that it must see the primary's head.
    fn need(&self, mode: ConsistencyMode) -> Need {
        // The backends report the GTIDs of writes when they track session state (for every
        // client, whether or not the client asked for it).
        let tracks_gtids = self.backends.backend_caps() & cap::SESSION_TRACK != 0;
        let positions = &self.backends.positions;
        need_of(mode, tracks_gtids, self.state.last_write.as_ref(), || {
            positions.proxy_writes()
        })
    }

    /// Whether the statement `cost_key` costs the primary no more than the head read its
    /// replica read would need (`--cheap-reads-on-primary`).
    fn cheaper_on_primary(&self, cost_key: Option<u64>) -> bool {
        let ratio = self.shared.config.cheap_reads_on_primary;
        if ratio <= 0.0 {
            return false;
        }
        let Some(id) = cost_key else {
            return false;
        };
        cheaper_on_primary(
            self.shared.digests.cost(id),
            self.backends.head_reader().cost(),
            ratio,
        )
    }

    /// Whether any replica of the topology could take a read now.
    fn any_replica_up(&self) -> bool {
        let topo = self.backends.topology();
        topo.replicas
            .iter()
            .any(|m| m.weight > 0 && self.backends.is_up(&m.addr()))
    }

    /// Decides where a replica-eligible read runs, waiting for the replica in a separate round
    /// trip when it has to (a COM_QUERY pipelines the wait instead: see `ready_read`).
    /// `cost_key`: the statement's fingerprint, when its cost may send it to the primary.
    pub(super) async fn choose_for_read(
        &mut self,
        mode: Option<ConsistencyMode>,
        cost_key: Option<u64>,
    ) -> Result<BackendRole, super::End> {
        Ok(match self.ready_read(mode, cost_key).await {
            ReadyRead::Primary => BackendRole::Primary,
            ReadyRead::Replica => BackendRole::Replica,
            ReadyRead::WaitThenReplica(need) => {
                if self.wait_then(&need, None).await {
                    BackendRole::Replica
                } else {
                    self.fall_back("wait_timeout")
                }
            }
        })
    }

    /// Carries out the read plan for a replica-eligible read under `mode` (`None`: the
    /// cluster's default): readies the replica connection it names.
    pub(super) async fn ready_read(
        &mut self,
        mode: Option<ConsistencyMode>,
        cost_key: Option<u64>,
    ) -> ReadyRead {
        let ready = self.plan_and_ready(mode, cost_key).await;
        // The statement's own round trip starts now, after any head read.
        self.service_from = Some(Instant::now());
        ready
    }

    async fn plan_and_ready(
        &mut self,
        mode: Option<ConsistencyMode>,
        cost_key: Option<u64>,
    ) -> ReadyRead {
        let mode = mode.unwrap_or_else(|| self.default_consistency());
        let label = mode_label(mode);
        self.cheap_read = false;
        let req = match self.need(mode) {
            Need::Ready(req) => req,
            // Not a fallback: the primary serves it by choice, under the read's own mode.
            Need::Head if self.cheaper_on_primary(cost_key) => {
                self.cheap_read = true;
                self.read_mode = label;
                self.shared.metrics.cheap_read_on_primary();
                return ReadyRead::Primary;
            }
            // No head read for a read no replica could take (a session on a replica has one).
            Need::Head if self.replica.is_none() && !self.any_replica_up() => {
                self.fall_back("no_replica");
                return ReadyRead::Primary;
            }
            Need::Head => match self.backends.head_reader().head().await {
                Ok(head) => Requirement::Applied(head),
                Err(e) => {
                    tracing::debug!(error = %e, "primary head unavailable");
                    self.fall_back("head_unavailable");
                    return ReadyRead::Primary;
                }
            },
        };
        let topo = self.backends.topology();
        let current = self.replica.as_ref().map(|s| (&s.member, s.addr.as_str()));
        let plan = plan_read(req, current, &topo.replicas, &*self.backends);
        drop(topo);
        match plan {
            ReadPlan::Current => {
                self.read_mode = label;
                ReadyRead::Replica
            }
            ReadPlan::Replica(m) => match self.use_replica(m, label).await {
                BackendRole::Replica => ReadyRead::Replica,
                BackendRole::Primary => ReadyRead::Primary,
            },
            ReadPlan::WaitThen(m, need) => match self.use_replica(m, label).await {
                BackendRole::Replica => ReadyRead::WaitThenReplica(need),
                BackendRole::Primary => ReadyRead::Primary,
            },
            ReadPlan::Primary(reason) => {
                self.fall_back(reason);
                ReadyRead::Primary
            }
        }
    }

    /// Relays the response to a read already sent (pipelined) on the replica connection.
    pub(super) async fn relay_pending(
        &mut self,
        kind: ResponseKind,
    ) -> Result<Option<(BackendRole, ResponseTracker)>, super::End> {
        let Some(slot) = self.replica.as_mut() else {
            return Ok(None);
        };
        let in_flight = self.backends.health.begin(&slot.addr);
        let how = super::forward::Relay {
            splice: self.splice,
            ..super::forward::Relay::of(kind)
        };
        let intercept = super::forward::Intercept {
            missing: self.reroutable,
            ..Default::default()
        };
        let result = relay_intercepting(
            &mut self.client,
            &mut slot.conn,
            how,
            intercept,
            &super::forward::nothing_on_done,
        )
        .await;
        drop(in_flight);
        match result {
            Ok(tracker) => {
                self.state.last = BackendRole::Replica;
                self.state.sql_mode =
                    super::decide::sql_mode_after(self.state.sql_mode, tracker.status);
                Ok(Some((BackendRole::Replica, tracker)))
            }
            Err(e) => {
                let (fate, then) = relay_failure(e, BackendRole::Replica, false);
                self.carry_out(BackendRole::Replica, fate).await;
                match then {
                    Then::End(end) => Err(end),
                    Then::Reply(err) | Then::RunOnNextPrimary(err) => {
                        self.reply_err(&err).await?;
                        Ok(None)
                    }
                    Then::Reroute(err) => {
                        self.reroute = Some(err);
                        Ok(None)
                    }
                    Then::Done | Then::RunElsewhere => Ok(None),
                }
            }
        }
    }

    pub(super) fn fall_back(&mut self, reason: &'static str) -> BackendRole {
        self.shared.metrics.read_fallback(reason);
        self.read_mode = "primary";
        BackendRole::Primary
    }

    /// Points the replica slot at `member` (keeping it when it already is).
    async fn use_replica(&mut self, member: Member, label: &'static str) -> BackendRole {
        let same = self
            .replica
            .as_ref()
            .is_some_and(|s| member.has_addr(&s.member.host, s.member.port));
        if !same {
            self.replica = None;
            self.state.statements.forget_backend(BackendRole::Replica);
            match self.open_slot(member, BackendRole::Replica).await {
                Ok(slot) => self.replica = Some(slot),
                Err(_) => return self.fall_back("replica_connect"),
            }
        }
        if self.sync_database(BackendRole::Replica).await.is_err() {
            return self.fall_back("replica_connect");
        }
        self.read_mode = label;
        BackendRole::Replica
    }

    /// Waits (within the budget) until the replica slot has applied `need`; with `then` (a whole
    /// COM_QUERY) pipelined behind the wait, in one round trip. True when the replica caught up
    /// in time: the response to `then` is next on the replica connection. Otherwise that
    /// response (which may be stale) has been read and dropped.
    pub(super) async fn wait_then(&mut self, need: &GtidSet, then: Option<&[u8]>) -> bool {
        let budget = self.shared.config.consistency_wait;
        let flavor = self.backends.topology().flavor;
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
        // The statement's own round trip starts when the wait is over: for one pipelined
        // behind it, its response follows the wait's (a little less than a round trip).
        self.service_from = Some(Instant::now());
        self.read_waited = true;
        match value.as_deref() {
            Some("0") => {
                self.backends.positions.observe(&slot.addr, need);
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
        let Some(set) = committed_write(&self.backends, tracker) else {
            return;
        };
        if let Some(slot) = &self.primary {
            self.backends.positions.observe(&slot.addr, &set);
        }
        match self.state.last_write.as_mut() {
            Some(all) => all.union(&set),
            None => self.state.last_write = Some(set),
        }
    }
}

/// The GTID a write committed, from the server's OK packet (session state tracking).
fn committed_write(backends: &Backends, tracker: &ResponseTracker) -> Option<GtidSet> {
    let ok = tracker.last_ok.as_ref()?;
    if ok.session_state.is_empty() {
        return None;
    }
    let text = committed_gtid(&ok.session_state)?;
    GtidSet::parse(backends.topology().flavor, &text).ok()
}

/// Records, for `proxy` consistency, a write the primary acknowledged: called before the
/// acknowledgement reaches the client, so a read any session sends after it sees the write.
pub(super) fn note_proxy_write(backends: &Backends, tracker: &ResponseTracker) {
    if let Some(set) = committed_write(backends, tracker) {
        backends.positions.note_write(&set);
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
