//! SQL the proxy runs on its own behalf: polling every member's position and reading the
//! primary's head for `strict` reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use tokio::sync::{mpsc, oneshot};

use super::Backends;
use super::account::LookupCredentials;
use crate::digest::store::cost_average;
use crate::gtid::GtidSet;
use crate::topology::{Flavor, Member};

const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// The statement that reads what a server has applied. On a MariaDB replica the SQL thread's
/// `gtid_slave_pos` is what `MASTER_GTID_WAIT` waits for; on the primary `gtid_binlog_pos`
/// includes every commit (even one whose row changes are a moment from being visible, which
/// only makes reads wait a little more).
fn position_query(flavor: Flavor, primary: bool) -> &'static str {
    match (flavor, primary) {
        (Flavor::Mariadb, true) => "SELECT @@gtid_binlog_pos",
        (Flavor::Mariadb, false) => "SELECT @@gtid_slave_pos",
        (Flavor::Mysql, _) => "SELECT @@gtid_executed",
    }
}

pub(crate) fn opts(member: &Member, creds: &LookupCredentials) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(member.host.clone())
        .tcp_port(member.port)
        .user(Some(creds.user.clone()))
        .pass(Some(creds.password.clone()))
        .prefer_socket(false)
        .ssl_opts(creds.tls.clone())
}

/// Connections the proxy keeps for its own queries, one per server.
#[derive(Default)]
pub struct AdminConns {
    conns: HashMap<String, Conn>,
    /// When the primary's `max_allowed_packet` was last read.
    packet_read: Option<std::time::Instant>,
    /// When the members' `max_connections` were last read.
    limits_read: Option<std::time::Instant>,
    /// The last [`AdminConns::read_value`] opened a connection.
    connected_last: bool,
}

impl std::fmt::Debug for AdminConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConns")
            .field("servers", &self.conns.len())
            .finish()
    }
}

impl AdminConns {
    /// Whether a connection to `addr` is open.
    fn holds(&self, addr: &str) -> bool {
        self.conns.contains_key(addr)
    }

    /// Reads one string value from `member`, reconnecting once if the connection broke.
    pub async fn read_value(
        &mut self,
        member: &Member,
        creds: &LookupCredentials,
        sql: &str,
    ) -> Result<String, String> {
        let addr = member.addr();
        self.connected_last = false;
        for _ in 0..2 {
            if !self.conns.contains_key(&addr) {
                self.connected_last = true;
                let conn = tokio::time::timeout(QUERY_TIMEOUT, Conn::new(opts(member, creds)))
                    .await
                    .map_err(|_| format!("connecting to {addr} timed out"))?
                    .map_err(|e| format!("connecting to {addr}: {e}"))?;
                self.conns.insert(addr.clone(), conn);
            }
            let Some(conn) = self.conns.get_mut(&addr) else {
                continue;
            };
            match tokio::time::timeout(QUERY_TIMEOUT, conn.query_first::<Option<String>, _>(sql))
                .await
            {
                Ok(Ok(Some(v))) => return Ok(v.unwrap_or_default()),
                Ok(Ok(None)) => return Ok(String::new()),
                Ok(Err(_)) | Err(_) => {
                    // A hung or broken connection: drop it and try a fresh one once.
                    self.conns.remove(&addr);
                }
            }
        }
        Err(format!("reading a position from {addr} failed"))
    }

    pub fn retain(&mut self, addrs: &[String]) {
        self.conns.retain(|a, _| addrs.contains(a));
    }
}

/// Polls every member's position once; updates positions, head history and metrics.
pub async fn poll_positions(shared: &Backends, conns: &mut AdminConns) {
    let Some(creds) = shared.config.monitor.clone() else {
        return;
    };
    let topo = shared.topology();
    let flavor = topo.flavor;
    let primary_addr = topo.primary.as_ref().map(Member::addr);
    for member in topo.members() {
        let addr = member.addr();
        let is_primary = primary_addr.as_deref() == Some(addr.as_str());
        match conns
            .read_value(member, &creds, position_query(flavor, is_primary))
            .await
        {
            Ok(text) => match GtidSet::parse(flavor, &text) {
                Ok(set) => {
                    if is_primary {
                        shared.positions.record_head(set.clone());
                    }
                    shared.positions.replace(&addr, set);
                }
                Err(e) => tracing::warn!(backend = %addr, error = %e, "unreadable position"),
            },
            Err(e) => tracing::debug!(backend = %addr, error = %e, "position poll failed"),
        }
    }
    read_max_allowed_packet(shared, conns).await;
    read_connection_limits(shared, conns).await;
    if let Some(head) = shared.positions.latest_head() {
        for m in &topo.replicas {
            let addr = m.addr();
            shared.metrics.set_replica_distance(
                &addr,
                shared.positions.behind(&addr, &head),
                shared.positions.staleness_ms(&addr),
            );
        }
    }
}

/// How often the primary's `max_allowed_packet` is read again.
const PACKET_READ_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Learns what the primary would allow a new session to send: its global
/// `max_allowed_packet`, read at start-up and again every [`PACKET_READ_INTERVAL`] (unless it
/// is configured).
pub async fn read_max_allowed_packet(shared: &Backends, conns: &mut AdminConns) {
    let (Some(creds), None) = (&shared.config.monitor, shared.config.max_allowed_packet) else {
        return;
    };
    let Some(primary) = shared.topology().primary.clone() else {
        return;
    };
    if conns
        .packet_read
        .is_some_and(|at| at.elapsed() < PACKET_READ_INTERVAL)
    {
        return;
    }
    conns.packet_read = Some(std::time::Instant::now());
    match conns
        .read_value(&primary, creds, "SELECT @@global.max_allowed_packet")
        .await
        .map(|text| text.parse::<usize>())
    {
        Ok(Ok(bytes)) => shared.learn_max_allowed_packet(bytes),
        Ok(Err(e)) => tracing::debug!(error = %e, "unreadable max_allowed_packet"),
        Err(e) => tracing::debug!(error = %e, "max_allowed_packet not read"),
    }
}

/// Fits the pool's limit for every member to the server's own `max_connections`, read with
/// the same period as `max_allowed_packet`: a pool that only waits when full never makes a
/// server refuse a connection (1040), which would look like a server in trouble.
pub async fn read_connection_limits(shared: &Backends, conns: &mut AdminConns) {
    let Some(creds) = &shared.config.monitor else {
        return;
    };
    if conns
        .limits_read
        .is_some_and(|at| at.elapsed() < PACKET_READ_INTERVAL)
    {
        return;
    }
    conns.limits_read = Some(std::time::Instant::now());
    let topo = shared.topology();
    for member in topo.members() {
        match conns
            .read_value(member, creds, "SELECT @@global.max_connections")
            .await
            .map(|text| text.parse::<usize>())
        {
            Ok(Ok(max)) => shared.pool.fit_to_server(&member.addr(), max),
            Ok(Err(e)) => {
                tracing::debug!(backend = %member.addr(), error = %e, "unreadable max_connections")
            }
            Err(e) => {
                tracing::debug!(backend = %member.addr(), error = %e, "max_connections not read")
            }
        }
    }
}

type Waiter = oneshot::Sender<Result<GtidSet, String>>;

/// Reads the primary's head for `strict` reads. Reads that arrive while a read of the head is
/// in flight share the next one: a head read that began before a read arrived could miss a
/// commit that the read must see.
#[derive(Debug, Clone)]
pub struct HeadReader {
    tx: mpsc::UnboundedSender<Waiter>,
    cost: Arc<HeadCost>,
}

/// How old a head read's cost may get before the reader measures it again. While every strict
/// read is cheap enough for the primary, none reads the head; past this age the reader reads
/// it once on its own, so that a cost measured at a bad moment cannot keep reads on the
/// primary for good (and no client's read waits for that measurement).
pub const HEAD_COST_FRESH: Duration = Duration::from_secs(1);

/// The moving average of head reads' round trips, and when it last learned one.
#[derive(Debug)]
struct HeadCost {
    base: Instant,
    /// Microseconds; 0: none yet.
    average_us: AtomicU32,
    /// Milliseconds after `base` of the last sample.
    learned_ms: AtomicU64,
    /// A head read to measure the cost again has been asked for and not yet made.
    refreshing: AtomicBool,
}

impl HeadCost {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            average_us: AtomicU32::new(0),
            learned_ms: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
        }
    }

    fn learn(&self, round_trip: Duration) {
        let us = u32::try_from(round_trip.as_micros())
            .unwrap_or(u32::MAX)
            .max(1);
        let previous = self.average_us.load(Ordering::Relaxed);
        self.average_us
            .store(cost_average(previous, us), Ordering::Relaxed);
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.learned_ms.store(ms, Ordering::Relaxed);
    }

    /// The average, and whether it is older than [`HEAD_COST_FRESH`] with no new
    /// measurement asked for yet (the caller asks for one).
    fn get(&self) -> (Option<Duration>, bool) {
        let us = self.average_us.load(Ordering::Relaxed);
        let learned = Duration::from_millis(self.learned_ms.load(Ordering::Relaxed));
        let stale = us > 0 && self.base.elapsed().saturating_sub(learned) > HEAD_COST_FRESH;
        let ask = stale && !self.refreshing.swap(true, Ordering::Relaxed);
        ((us > 0).then(|| Duration::from_micros(u64::from(us))), ask)
    }
}

impl HeadReader {
    /// Starts the reader task; it ends when the backends are gone.
    pub fn spawn(shared: Weak<Backends>) -> Self {
        Self::spawn_on(&tokio::runtime::Handle::current(), shared)
    }

    /// Starts the reader task on `runtime`.
    pub fn spawn_on(runtime: &tokio::runtime::Handle, shared: Weak<Backends>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let cost = Arc::new(HeadCost::new());
        runtime.spawn(run(shared, rx, cost.clone()));
        Self { tx, cost }
    }

    /// What reading the head costs: the moving average of its round trips to the primary on
    /// an open connection, the same measure as a statement's cost in the digests; `None`
    /// until one is known. One older than [`HEAD_COST_FRESH`] is measured again in the
    /// background.
    pub fn cost(&self) -> Option<Duration> {
        let (cost, ask) = self.cost.get();
        if ask {
            // Nobody waits for this answer: the reader only learns the cost.
            let (tx, _) = oneshot::channel();
            let _ = self.tx.send(tx);
        }
        cost
    }

    /// The primary's head as of some moment after this call.
    pub async fn head(&self) -> Result<GtidSet, String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .map_err(|_| "head reader stopped".to_string())?;
        rx.await.map_err(|_| "head reader stopped".to_string())?
    }
}

async fn run(shared: Weak<Backends>, mut rx: mpsc::UnboundedReceiver<Waiter>, cost: Arc<HeadCost>) {
    let mut conns = AdminConns::default();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(w) = rx.try_recv() {
            batch.push(w);
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let result = read_head(&shared, &mut conns, &cost).await;
        cost.refreshing.store(false, Ordering::Relaxed);
        for w in batch {
            let _ = w.send(result.clone());
        }
    }
}

async fn read_head(
    shared: &Arc<Backends>,
    conns: &mut AdminConns,
    cost: &HeadCost,
) -> Result<GtidSet, String> {
    let creds = shared
        .config
        .monitor
        .clone()
        .ok_or("no monitor credentials to read the primary's head")?;
    let topo = shared.topology();
    let primary = topo.primary.clone().ok_or("no primary")?;
    let addr = primary.addr();
    // Only a read on a connection already open is the query's cost: a connect (the first
    // read, or one after a broken connection) is not.
    let open = conns.holds(&addr);
    let started = Instant::now();
    let text = conns
        .read_value(&primary, &creds, position_query(topo.flavor, true))
        .await?;
    if open && !conns.connected_last {
        cost.learn(started.elapsed());
    }
    let set = GtidSet::parse(topo.flavor, &text).map_err(|e| e.to_string())?;
    shared.positions.record_head(set.clone());
    shared.positions.replace(&primary.addr(), set.clone());
    tracing::trace!(elapsed = ?started.elapsed(), head = %set, "primary head");
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_reads_cost_is_measured_again_once_when_old() {
        let cost = HeadCost::new();
        assert_eq!(cost.get(), (None, false));
        cost.learn(Duration::from_micros(200));
        assert_eq!(cost.get(), (Some(Duration::from_micros(200)), false));
        cost.learn(Duration::from_micros(1_000));
        assert_eq!(cost.get(), (Some(Duration::from_micros(300)), false));
        // Learned long ago: still used, and one new measurement is asked for, once.
        let Some(base) = Instant::now().checked_sub(Duration::from_secs(5)) else {
            return;
        };
        let old = HeadCost {
            base,
            ..HeadCost::new()
        };
        old.learn(Duration::from_micros(100));
        old.learned_ms.store(0, Ordering::Relaxed);
        assert_eq!(old.get(), (Some(Duration::from_micros(100)), true));
        assert_eq!(old.get(), (Some(Duration::from_micros(100)), false));
        old.refreshing.store(false, Ordering::Relaxed);
        old.learn(Duration::from_micros(100));
        assert_eq!(old.get(), (Some(Duration::from_micros(100)), false));
    }
}
