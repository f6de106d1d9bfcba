//! The backends a session may use: the topology, pools, health, positions, the primary's
//! head and greeting. Sessions ask it for connections; it never looks at a session.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::account::LookupCredentials;
use super::monitor::HeadReader;
use super::positions::Positions;
use super::select::ReplicaView;
use super::tls::BackendTls;
use super::{AcquireError, BackendError, ConnectParams, Health, Pool, PooledConn};
use crate::gtid::GtidSet;
use crate::metrics::Metrics;
use crate::protocol::auth::BackendSecret;
use crate::protocol::constants::cap;
use crate::protocol::handshake::Greeting;
use crate::protocol::messages::ErrPacket;
use crate::topology::{Member, Topology};

/// Who a backend connection logs in as: the client's account and what it negotiated.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub user: &'a str,
    pub secret: &'a BackendSecret,
    pub caps: u32,
    pub ext_caps: u32,
    pub collation: u8,
    /// The signature of the session state a connection should carry (0: none); a pooled
    /// connection that has it is taken as it is (see `session::multiplex`).
    pub state_sig: u64,
}

/// The settings of [`Backends`].
#[derive(Debug, Clone)]
pub struct BackendsConfig {
    /// How long a write waits for a primary during a switchover.
    pub write_hold_timeout: Duration,
    pub connect_timeout: Duration,
    /// The configured `max_allowed_packet`; `None` learns the primary's.
    pub max_allowed_packet: Option<usize>,
    /// The account the proxy reads positions and the head with.
    pub monitor: Option<LookupCredentials>,
    pub tls: Option<BackendTls>,
    /// The runtime of client sessions, where the head reader serves their strict reads
    /// (the backends may be started from the control plane).
    pub sessions: tokio::runtime::Handle,
}

/// The backend servers and what the proxy knows of them.
#[derive(Debug)]
pub struct Backends {
    pub config: BackendsConfig,
    pub pool: Arc<Pool>,
    pub health: Health,
    pub positions: Positions,
    pub metrics: Arc<Metrics>,
    topology_rx: watch::Receiver<Arc<Topology>>,
    /// What the primary's greeting said: version, capabilities, collation.
    greeting: ArcSwap<Option<Greeting>>,
    /// The primary's `max_allowed_packet` as last read (see [`Backends::max_allowed_packet`]).
    learned_max_packet: AtomicUsize,
    replica_cursor: AtomicUsize,
    head_reader: OnceLock<HeadReader>,
    shutdown: watch::Receiver<bool>,
}

impl Backends {
    /// The backends of `topology_rx`'s topologies; the head reader runs until they are dropped.
    pub fn start(
        config: BackendsConfig,
        pool: Arc<Pool>,
        metrics: Arc<Metrics>,
        topology_rx: watch::Receiver<Arc<Topology>>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let backends = Arc::new(Self {
            config,
            pool,
            health: Health::default(),
            positions: Positions::default(),
            metrics,
            topology_rx,
            greeting: ArcSwap::from_pointee(None),
            learned_max_packet: AtomicUsize::new(
                crate::protocol::constants::DEFAULT_MAX_ALLOWED_PACKET,
            ),
            replica_cursor: AtomicUsize::new(0),
            head_reader: OnceLock::new(),
            shutdown,
        });
        let _ = backends.head_reader.set(HeadReader::spawn_on(
            &backends.config.sessions,
            Arc::downgrade(&backends),
        ));
        backends
    }

    pub fn topology(&self) -> Arc<Topology> {
        // Straight from the watcher's channel, so a wait woken by a change sees that change.
        self.topology_rx.borrow().clone()
    }

    /// A receiver of every new topology.
    pub fn topology_changes(&self) -> watch::Receiver<Arc<Topology>> {
        self.topology_rx.clone()
    }

    /// The largest packet a new session may send: the configured one, else the primary's.
    pub fn max_allowed_packet(&self) -> usize {
        self.config
            .max_allowed_packet
            .unwrap_or_else(|| self.learned_max_packet.load(Ordering::Relaxed))
    }

    /// Records the primary's `max_allowed_packet`, as the monitor read it.
    pub fn learn_max_allowed_packet(&self, bytes: usize) {
        self.learned_max_packet.store(
            crate::protocol::constants::clamp_packet(bytes),
            Ordering::Relaxed,
        );
    }

    /// What the primary's greeting said, once read.
    pub fn greeting(&self) -> arc_swap::Guard<Arc<Option<Greeting>>> {
        self.greeting.load()
    }

    pub fn learn_greeting(&self, greeting: Greeting) {
        self.greeting.store(Arc::new(Some(greeting)));
    }

    /// What the primary's greeting offered (all of ours when it was not reachable at start).
    pub fn backend_caps(&self) -> u32 {
        match &**self.greeting.load() {
            Some(g) => g.capabilities,
            None => cap::PROXY_DEFAULT,
        }
    }

    /// The primary's address, if the topology has one now.
    pub fn primary_addr(&self) -> Option<String> {
        self.topology().primary.as_ref().map(Member::addr)
    }

    /// Where a choice among equally loaded replicas starts, so that ties spread.
    pub fn next_rotation(&self) -> usize {
        self.replica_cursor.fetch_add(1, Ordering::Relaxed)
    }

    /// The shared reader of the primary's head.
    pub fn head_reader(&self) -> &HeadReader {
        // Set right after the backends are created, before any session exists.
        self.head_reader
            .get_or_init(|| HeadReader::spawn(Weak::new()))
    }

    /// The primary, waiting (bounded) while the topology says "switching".
    pub async fn wait_for_primary(&self) -> Result<Member, ErrPacket> {
        let started = Instant::now();
        match self.wait_for_primary_where(|_| true, |_| false).await {
            Some(p) => {
                if started.elapsed() > Duration::from_millis(1) {
                    self.metrics.write_held(started.elapsed());
                }
                Ok(p)
            }
            None => {
                self.metrics.error("write_hold_timeout");
                Err(ErrPacket::backend_unavailable(
                    "no primary: the cluster is switching over and did not finish in time",
                ))
            }
        }
    }

    /// Waits (bounded by the write hold) until the topology names a primary other than `old`,
    /// the primary that refused a write with `read_only`. `None` at once when the topology says
    /// the cluster is read-only with `old` as its primary (`spec.readOnly`): no other primary is
    /// coming, so the refusal is the answer.
    pub async fn wait_for_new_primary(&self, old: Option<&str>) -> Option<Member> {
        self.wait_for_primary_where(
            |p| Some(p.addr().as_str()) != old,
            |t| old.is_some_and(|o| t.refuses_writes_at(o)),
        )
        .await
    }

    /// Waits (bounded by the write hold) for a primary other than `old`, which cannot be
    /// reached: a failover is likely under way, read-only cluster or not.
    async fn wait_for_replacement(&self, old: &str) -> Option<Member> {
        self.wait_for_primary_where(|p| p.addr() != old, |_| false)
            .await
    }

    /// A connection to the primary for `who`. When the primary does not even accept the
    /// TCP connection — most likely it died and a failover is coming — nothing has reached a
    /// server yet, so this waits for the next primary (bounded by the write hold) and tries it
    /// once, instead of failing the client's work.
    pub async fn primary_conn(
        &self,
        who: Identity<'_>,
        database: Option<&str>,
    ) -> Result<(Member, PooledConn), ErrPacket> {
        let primary = self.wait_for_primary().await?;
        match self.backend(who, &primary.addr(), database).await {
            Ok(conn) => Ok((primary, conn)),
            Err(err) if err.is_backend_unreachable() => {
                match self.wait_for_replacement(&primary.addr()).await {
                    Some(next) => {
                        let conn = self.backend(who, &next.addr(), database).await?;
                        Ok((next, conn))
                    }
                    None => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// The published primary once one satisfies `accept`, waiting (bounded by the write hold)
    /// for topology changes; `None` past the bound, on shutdown, or as soon as a topology makes
    /// `give_up` true.
    async fn wait_for_primary_where(
        &self,
        accept: impl Fn(&Member) -> bool,
        give_up: impl Fn(&Topology) -> bool,
    ) -> Option<Member> {
        let deadline = Instant::now() + self.config.write_hold_timeout;
        let mut rx = self.topology_rx.clone();
        loop {
            let topology = self.topology();
            if let Some(p) = topology.primary.clone().filter(|p| accept(p)) {
                return Some(p);
            }
            if give_up(&topology) {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || *self.shutdown.borrow() {
                return None;
            }
            // Either a topology change or the deadline wakes us.
            let _ = tokio::time::timeout(left, rx.changed()).await;
        }
    }

    pub fn connect_params(
        &self,
        who: Identity<'_>,
        addr: &str,
        database: Option<&str>,
    ) -> ConnectParams {
        ConnectParams {
            addr: addr.to_string(),
            user: who.user.to_string(),
            secret: who.secret.clone(),
            database: database.map(str::to_string),
            client_caps: who.caps,
            client_ext_caps: who.ext_caps,
            collation: who.collation,
            state_sig: who.state_sig,
            connect_timeout: self.config.connect_timeout,
            track_gtids: Some(self.topology().flavor),
            tls: self.config.tls.clone(),
        }
    }

    /// A pooled connection to `addr` for `who`. Failures mark the backend down.
    pub async fn backend(
        &self,
        who: Identity<'_>,
        addr: &str,
        database: Option<&str>,
    ) -> Result<PooledConn, ErrPacket> {
        let params = self.connect_params(who, addr, database);
        match self.pool.acquire(&params).await {
            Ok(mut conn) => {
                if let Some(db) = database
                    && conn.database.as_deref() != Some(db)
                {
                    match conn.use_database(db).await {
                        Ok(None) => {}
                        Ok(Some(err)) => return Err(err),
                        Err(e) => {
                            conn.mark_broken();
                            return Err(ErrPacket::backend_lost(&e.to_string()));
                        }
                    }
                }
                Ok(conn)
            }
            Err(AcquireError::Backend(BackendError::Auth { err, .. })) => Err(err),
            Err(e) => {
                if marks_down(&e) && self.health.set_up(addr, false) {
                    self.metrics.set_backend_up(addr, false);
                    tracing::warn!(backend = addr, error = %e, "backend marked down");
                }
                self.metrics.error("backend_connect");
                let unreachable = matches!(
                    e,
                    AcquireError::Backend(
                        BackendError::Connect { .. } | BackendError::ConnectTimeout(_)
                    )
                );
                Err(if unreachable {
                    ErrPacket::backend_unreachable(&e.to_string())
                } else {
                    ErrPacket::backend_unavailable(&e.to_string())
                })
            }
        }
    }

    /// The members accounts are looked up on: the primary first, then the replicas.
    pub fn lookup_members(&self) -> Vec<Member> {
        let topology = self.topology();
        topology
            .primary
            .iter()
            .chain(topology.replicas.iter())
            .cloned()
            .collect()
    }
}

/// Whether a failure to get a connection says the server is down: only a connection that
/// could not be made or broke mid-handshake does. A full pool, a refused login or a server
/// that answered with an error (1040 "Too many connections" among them) is a server at work.
fn marks_down(e: &AcquireError) -> bool {
    matches!(
        e,
        AcquireError::Backend(
            BackendError::Connect { .. }
                | BackendError::ConnectTimeout(_)
                | BackendError::Protocol { .. }
        )
    )
}

/// Replicas as the proxy knows them now.
impl ReplicaView for Backends {
    fn is_up(&self, addr: &str) -> bool {
        self.health.is_up(addr)
    }
    fn outstanding(&self, addr: &str) -> usize {
        self.health.outstanding(addr)
    }
    fn has_applied(&self, addr: &str, need: &GtidSet) -> bool {
        self.positions.has_applied(addr, need)
    }
    fn staleness_ms(&self, addr: &str) -> Option<u64> {
        self.positions.staleness_ms(addr)
    }
    fn behind(&self, addr: &str, need: &GtidSet) -> Option<u64> {
        self.positions.behind(addr, need)
    }
    fn rotation(&self) -> usize {
        self.next_rotation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_server_that_cannot_be_reached_is_marked_down() {
        let addr = || "127.0.0.1:3306".to_string();
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(marks_down(&AcquireError::Backend(BackendError::Connect {
            addr: addr(),
            source: refused,
        })));
        assert!(marks_down(&AcquireError::Backend(
            BackendError::ConnectTimeout(addr())
        )));
        // Busy, not down: a full pool, or a server at its own connection limit.
        assert!(!marks_down(&AcquireError::Exhausted(500, addr())));
        assert!(!marks_down(&AcquireError::UserExhausted {
            share: 400,
            user: "app".into(),
            addr: addr(),
        }));
        assert!(!marks_down(&AcquireError::Backend(BackendError::Server {
            addr: addr(),
            err: ErrPacket::new(1040, "08004", "Too many connections"),
        })));
    }
}
