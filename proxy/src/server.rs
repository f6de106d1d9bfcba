//! The proxy process: shared state, the accept loop, background tasks and graceful shutdown.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::admin::{self, AdminState, AdminView};
use crate::backend::health::probe;
use crate::backend::monitor::{AdminConns, HeadReader, poll_positions};
use crate::backend::positions::Positions;
use crate::backend::{ConnectParams, Health, Pool, PooledConn};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::constants::{DEFAULT_COLLATION, cap};
use crate::protocol::handshake::Greeting;
use crate::protocol::messages::ErrPacket;
use crate::protocol::packet::PacketStream;
use crate::route::ConsistencyMode;
use crate::session::Session;
use crate::session::login::{self, Login};
use crate::tls::Tls;
use crate::topology::{Member, Topology, TopologyWatcher, WatchOptions};
use crate::users::UserStore;

/// What every session shares.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub users: UserStore,
    pub pool: Arc<Pool>,
    pub health: Health,
    pub metrics: Arc<Metrics>,
    pub tls: Option<Tls>,
    pub admission: Arc<crate::limits::Admission>,
    /// The primary's `max_allowed_packet` as last read (see [`Shared::max_allowed_packet`]).
    learned_max_packet: AtomicUsize,
    topology_rx: watch::Receiver<Arc<Topology>>,
    /// What the primary's greeting said: version, capabilities, collation.
    backend_greeting: ArcSwap<Option<Greeting>>,
    next_connection_id: AtomicU32,
    open_sessions: AtomicUsize,
    shutdown: watch::Receiver<bool>,
    replica_cursor: AtomicUsize,
    pub positions: Positions,
    default_mode: ArcSwap<ConsistencyMode>,
    head_reader: OnceLock<HeadReader>,
    /// Live sessions by connection id, for KILL.
    pub sessions: crate::session::kill::SessionRegistry,
    backend_tls: Option<crate::backend::tls::BackendTls>,
}

impl Shared {
    pub fn topology(&self) -> Arc<Topology> {
        // Straight from the watcher's channel, so a wait woken by a change sees that change.
        self.topology_rx.borrow().clone()
    }

    /// The largest packet a new session may send: the configured one, else the primary's.
    pub fn max_allowed_packet(&self) -> usize {
        self.config
            .max_allowed_packet
            .unwrap_or_else(|| self.learned_max_packet.load(Ordering::Relaxed))
    }

    /// Records the primary's `max_allowed_packet`, as the monitor read it.
    pub fn learn_max_allowed_packet(&self, bytes: usize) {
        self.learned_max_packet
            .store(crate::config::clamp_packet(bytes), Ordering::Relaxed);
    }

    /// The primary's address, if the topology has one now.
    pub fn primary_addr(&self) -> Option<String> {
        self.topology().primary.as_ref().map(Member::addr)
    }

    pub fn server_version(&self) -> String {
        if let Some(v) = &self.config.server_version {
            return v.clone();
        }
        match &**self.backend_greeting.load() {
            Some(g) => g.server_version.clone(),
            None => "10.11.0-MariaDB-lagless".into(),
        }
    }

    /// Capabilities offered to clients: ours, less what the backends lack.
    /// Capabilities offered to clients: the primary's, where they change what it sends.
    /// Without `CLIENT_MYSQL` when the primary is MariaDB, so MariaDB clients send their
    /// extended capabilities.
    pub fn server_caps(&self) -> u32 {
        match &**self.backend_greeting.load() {
            Some(g) => {
                let mysql = g.capabilities & cap::LONG_PASSWORD;
                (cap::PROXY_DEFAULT & (g.capabilities | !cap::SHAPE) & !cap::LONG_PASSWORD) | mysql
            }
            None => cap::PROXY_DEFAULT,
        }
    }

    /// MariaDB extended capabilities offered to clients: those of the primary the proxy
    /// relays unchanged.
    pub fn server_ext_caps(&self) -> u32 {
        match &**self.backend_greeting.load() {
            Some(g) => crate::protocol::constants::ext::PROXY_DEFAULT & g.ext_capabilities,
            None => 0,
        }
    }

    /// What the primary's greeting offered (all of ours when it was not reachable at start).
    pub fn backend_caps(&self) -> u32 {
        match &**self.backend_greeting.load() {
            Some(g) => g.capabilities,
            None => cap::PROXY_DEFAULT,
        }
    }

    pub fn collation(&self) -> u8 {
        match &**self.backend_greeting.load() {
            Some(g) if g.collation != 0 => g.collation,
            _ => DEFAULT_COLLATION,
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    pub fn next_connection_id(&self) -> u32 {
        crate::session::kill::proxy_id(self.next_connection_id.fetch_add(1, Ordering::Relaxed))
    }

    /// The primary, waiting (bounded) while the topology says "switching".
    pub async fn wait_for_primary(&self) -> Result<Member, ErrPacket> {
        let started = Instant::now();
        match self.wait_for_primary_where(|_| true).await {
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

    /// Waits (bounded by the write hold) until the topology names a primary other than `old`.
    pub async fn wait_for_new_primary(&self, old: Option<&str>) -> Option<Member> {
        self.wait_for_primary_where(|p| Some(p.addr().as_str()) != old)
            .await
    }

    /// A connection to the primary for `login`. When the primary does not even accept the
    /// TCP connection — most likely it died and a failover is coming — nothing has reached a
    /// server yet, so this waits for the next primary (bounded by the write hold) and tries it
    /// once, instead of failing the client's work.
    pub async fn primary_conn(
        &self,
        login: &Login,
        database: Option<&str>,
    ) -> Result<(Member, PooledConn), ErrPacket> {
        let primary = self.wait_for_primary().await?;
        match self.backend(login, &primary.addr(), database).await {
            Ok(conn) => Ok((primary, conn)),
            Err(err) if err.is_backend_unreachable() => {
                match self.wait_for_new_primary(Some(&primary.addr())).await {
                    Some(next) => {
                        let conn = self.backend(login, &next.addr(), database).await?;
                        Ok((next, conn))
                    }
                    None => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// The published primary once one satisfies `accept`, waiting (bounded by the write hold)
    /// for topology changes; `None` past the bound or on shutdown.
    async fn wait_for_primary_where(&self, accept: impl Fn(&Member) -> bool) -> Option<Member> {
        let deadline = Instant::now() + self.config.write_hold_timeout;
        let mut rx = self.topology_rx.clone();
        loop {
            if let Some(p) = self.topology().primary.clone().filter(|p| accept(p)) {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.is_shutting_down() {
                return None;
            }
            // Either a topology change or the deadline wakes us.
            let _ = tokio::time::timeout(left, rx.changed()).await;
        }
    }

    /// Of `candidates`, the one with the fewest statements in flight per unit of weight; ties
    /// rotate so they spread instead of piling on the first replica.
    pub fn least_loaded<'a>(&self, candidates: &[&'a Member]) -> Option<&'a Member> {
        if candidates.is_empty() {
            return None;
        }
        let start = self.replica_cursor.fetch_add(1, Ordering::Relaxed) % candidates.len();
        let mut best: Option<(&Member, u64)> = None;
        for i in 0..candidates.len() {
            let m = candidates[(start + i) % candidates.len()];
            let load = (self.health.outstanding(&m.addr()) as u64 + 1) * 1_000_000
                / u64::from(m.weight.max(1));
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((m, load));
            }
        }
        best.map(|(m, _)| m)
    }

    /// The cluster's consistency mode: the topology's, else the configured default.
    pub fn default_consistency(&self) -> ConsistencyMode {
        **self.default_mode.load()
    }

    /// Parsed once per topology, not once per read.
    fn mode_of(config: &Config, topo: &Topology) -> ConsistencyMode {
        match topo
            .consistency
            .as_deref()
            .map(str::parse::<ConsistencyMode>)
        {
            Some(Ok(mode)) => mode,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the topology's consistency mode is invalid; using --consistency");
                config.consistency
            }
            None => config.consistency,
        }
    }

    /// The shared reader of the primary's head.
    pub fn head_reader(&self) -> &HeadReader {
        // Set right after the shared state is created, before any session exists.
        self.head_reader
            .get_or_init(|| HeadReader::spawn(Weak::new()))
    }

    pub fn connect_params(
        &self,
        login: &Login,
        addr: &str,
        database: Option<&str>,
    ) -> ConnectParams {
        ConnectParams {
            addr: addr.to_string(),
            user: login.user.clone(),
            secret: login.secret.clone(),
            database: database.map(str::to_string),
            client_caps: login.caps,
            client_ext_caps: login.ext_caps,
            collation: login.collation,
            connect_timeout: self.config.pool.connect_timeout,
            track_gtids: Some(self.topology().flavor),
            tls: self.backend_tls.clone(),
        }
    }

    /// A pooled connection to `addr` for this login. Failures mark the backend down.
    pub async fn backend(
        &self,
        login: &Login,
        addr: &str,
        database: Option<&str>,
    ) -> Result<PooledConn, ErrPacket> {
        let params = self.connect_params(login, addr, database);
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
            Err(crate::backend::AcquireError::Backend(crate::backend::BackendError::Auth {
                err,
                ..
            })) => Err(err),
            Err(e) => {
                if matches!(e, crate::backend::AcquireError::Backend(_))
                    && self.health.set_up(addr, false)
                {
                    self.metrics.set_backend_up(addr, false);
                    tracing::warn!(backend = addr, error = %e, "backend marked down");
                }
                self.metrics.error("backend_connect");
                let unreachable = matches!(
                    e,
                    crate::backend::AcquireError::Backend(
                        crate::backend::BackendError::Connect { .. }
                            | crate::backend::BackendError::ConnectTimeout(_)
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

    /// Where accounts are looked up: the primary first, then the replicas.
    /// The account `name`, from the users file or the members (see [`UserStore::find`]).
    pub async fn find_user(&self, name: &str) -> Option<crate::users::UserRecord> {
        let flavor = self.topology().flavor;
        self.users.find(name, &self.lookup_members(), flavor).await
    }

    pub fn lookup_members(&self) -> Vec<Member> {
        let topology = self.topology();
        topology
            .primary
            .iter()
            .chain(topology.replicas.iter())
            .cloned()
            .collect()
    }

    /// Logs in to the primary as the client (database included) and returns the connection
    /// to the pool: a bad database or a refused user gets the server's own error.
    pub async fn check_backend_login(&self, login: &Login) -> Result<(), ErrPacket> {
        self.primary_conn(login, login.database.as_deref())
            .await
            .map(drop)
    }
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    pub shared: Arc<Shared>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown_tx: watch::Sender<bool>,
    _watcher: TopologyWatcher,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Topology(#[from] crate::topology::TopologyError),
    #[error("{0}")]
    Users(#[from] crate::users::UsersError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl Proxy {
    /// Loads the topology, users and TLS material and binds the listeners.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let observer_metrics = metrics.clone();
        let options = WatchOptions {
            poll_interval: config.topology_poll,
            ..WatchOptions::default()
        }
        .on_reload(move |o| observer_metrics.topology_reload(o.as_str()));
        let (watcher, topology_rx) = TopologyWatcher::start_with(&config.topology, options).await?;
        let users = UserStore::new(
            config.users_file.clone(),
            config.lookup.clone(),
            config.user_cache_ttl,
        )?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(c), Some(k)) => Some(Tls::new(c.clone(), k.clone())?),
            _ => None,
        };
        let backend_tls = match (&config.backend_tls, &config.backend_ca) {
            (crate::config::BackendTlsMode::Off, _) => None,
            (crate::config::BackendTlsMode::On, _) => {
                Some(crate::backend::tls::BackendTls::unverified()?)
            }
            (crate::config::BackendTlsMode::Verify, Some(ca)) => {
                Some(crate::backend::tls::BackendTls::verified(ca)?)
            }
            (crate::config::BackendTlsMode::Verify, None) => {
                return Err(StartError::Tls(crate::tls::TlsError::Config(
                    "--backend-tls verify needs --backend-ca".into(),
                )));
            }
        };
        let listen = |addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen { addr, source })
        };
        let listener = listen(config.listen).await?;
        let admin = match config.admin_listen {
            Some(a) => Some(listen(a).await?),
            None => None,
        };
        let (shutdown_tx, shutdown) = watch::channel(false);
        let topology = watcher.current();
        let default_mode = Shared::mode_of(&config, &topology);
        metrics.set_topology_epoch(topology.epoch);
        let admission = crate::limits::Admission::new(
            config.max_unauthenticated_per_host,
            config.max_user_connections,
        );
        let shared = Arc::new(Shared {
            pool: Pool::new(config.pool.clone(), metrics.clone()),
            config,
            users,
            admission,
            learned_max_packet: AtomicUsize::new(crate::config::DEFAULT_MAX_ALLOWED_PACKET),
            health: Health::default(),
            metrics,
            tls,
            topology_rx,
            backend_greeting: ArcSwap::from_pointee(None),
            next_connection_id: AtomicU32::new(0),
            open_sessions: AtomicUsize::new(0),
            shutdown,
            replica_cursor: AtomicUsize::new(0),
            positions: Positions::default(),
            default_mode: ArcSwap::from_pointee(default_mode),
            head_reader: OnceLock::new(),
            sessions: Default::default(),
            backend_tls,
        });
        let _ = shared
            .head_reader
            .set(HeadReader::spawn(Arc::downgrade(&shared)));
        Ok(Self {
            shared,
            listener,
            admin,
            shutdown_tx,
            _watcher: watcher,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A handle that starts a graceful shutdown when sent `true`.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown_tx.clone()
    }

    /// Serves until a shutdown is requested and the sessions have ended (or the shutdown
    /// timeout passed).
    pub async fn run(self) {
        let shared = self.shared.clone();
        learn_backend_greeting(&shared).await;
        crate::backend::monitor::read_max_allowed_packet(&shared, &mut AdminConns::default()).await;
        let background = [
            tokio::spawn(follow_topology(shared.clone())),
            tokio::spawn(monitor(shared.clone())),
            tokio::spawn(housekeeping(shared.clone())),
        ];
        if let Some(admin) = self.admin {
            let mut state = AdminState::new(shared.metrics.clone(), Arc::new(View(shared.clone())));
            if let Some(push) = shared
                .config
                .admin_token
                .as_ref()
                .and_then(|token| admin::Push::new(&token.0, self._watcher.inbox()))
            {
                state = state.with_push(push);
            }
            let state = Arc::new(state);
            let mut stop = shared.shutdown_signal();
            tokio::spawn(admin::serve(admin, state, async move {
                wait_for_shutdown(&mut stop).await;
            }));
        }
        let mut stop = shared.shutdown_signal();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => spawn_session(&shared, tcp, peer),
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = wait_for_shutdown(&mut stop) => break,
            }
        }
        drop(self.listener);
        tracing::info!(
            open = shared.open_sessions.load(Ordering::Relaxed),
            "shutting down: no new connections"
        );
        let deadline = Instant::now() + shared.config.shutdown_timeout;
        while shared.open_sessions.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for task in background {
            task.abort();
        }
        drop(self._watcher);
        tracing::info!(
            left = shared.open_sessions.load(Ordering::Relaxed),
            "shut down"
        );
    }
}

/// Resolves once a shutdown was requested (or the sender is gone).
pub async fn wait_for_shutdown(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it inside.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

fn spawn_session(shared: &Arc<Shared>, tcp: TcpStream, peer: std::net::SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let shared = shared.clone();
    let open = shared.open_sessions.fetch_add(1, Ordering::Relaxed) + 1;
    tokio::spawn(async move {
        let _guard = shared.metrics.client_connected();
        let _count = SessionCount(shared.clone());
        if open > shared.config.max_client_connections {
            refuse_too_many(tcp).await;
            shared.metrics.client_connection_error("too_many");
            return;
        }
        let id = shared.next_connection_id();
        let Some(unauthenticated) = shared.admission.unauthenticated(peer.ip()) else {
            refuse_too_many(tcp).await;
            shared.metrics.client_connection_error("too_many_from_host");
            tracing::debug!(%peer, "too many unauthenticated connections from this address");
            return;
        };
        let logged_in = login::login(tcp, &shared, id, peer.ip()).await;
        drop(unauthenticated);
        match logged_in {
            Ok((stream, login)) => {
                tracing::debug!(id, user = %login.user, %peer, tls = login.tls, "client logged in");
                Session::new(shared.clone(), stream, login, id).run().await;
            }
            Err(e) => {
                shared.metrics.client_connection_error(e.reason());
                tracing::debug!(id, %peer, error = %e, "login failed");
            }
        }
    });
}

struct SessionCount(Arc<Shared>);

impl Drop for SessionCount {
    fn drop(&mut self) {
        self.0.open_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn refuse_too_many(tcp: TcpStream) {
    let mut s = PacketStream::new(tcp);
    let mut seq = 0;
    let _ = s
        .send(&mut seq, &crate::limits::too_many_connections().encode())
        .await;
    s.shutdown().await;
}

/// Reads the primary's greeting once so clients see its version and capabilities.
async fn learn_backend_greeting(shared: &Shared) {
    let Some(addr) = shared
        .primary_addr()
        .or_else(|| shared.topology().replicas.first().map(Member::addr))
    else {
        return;
    };
    let attempt = async {
        let tcp = TcpStream::connect(&addr).await.ok()?;
        let mut s = PacketStream::new(tcp);
        let p = s.read_raw().await.ok()?;
        Greeting::parse(&p.payload).ok()
    };
    if let Ok(Some(g)) = tokio::time::timeout(Duration::from_secs(3), attempt).await {
        tracing::info!(version = %g.server_version, backend = %addr, "learned server version from backend");
        shared.backend_greeting.store(Arc::new(Some(g)));
    }
}

/// Applies each new topology: swaps the routing table, forgets removed servers.
async fn follow_topology(shared: Arc<Shared>) {
    let mut rx = shared.topology_rx.clone();
    while rx.changed().await.is_ok() {
        let topo = rx.borrow_and_update().clone();
        shared.metrics.set_topology_epoch(topo.epoch);
        shared
            .default_mode
            .store(Arc::new(Shared::mode_of(&shared.config, &topo)));
        let addrs: Vec<String> = topo.members().map(Member::addr).collect();
        shared.health.retain(&addrs);
        shared.positions.retain(&addrs);
        shared.users.retain(&addrs);
        shared.pool.reap(&addrs);
    }
}

/// Probes every member on each tick.
async fn monitor(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.monitor_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conns = AdminConns::default();
    loop {
        tick.tick().await;
        poll_positions(&shared, &mut conns).await;
        let topo = shared.topology();
        let timeout = shared
            .config
            .monitor_interval
            .max(Duration::from_millis(500));
        let probes = topo.members().map(|m| {
            let addr = m.addr();
            async move {
                let up = probe(&addr, timeout).await;
                (addr, up)
            }
        });
        for (addr, up) in futures::future::join_all(probes).await {
            shared.metrics.set_backend_up(&addr, up);
            if shared.health.set_up(&addr, up) {
                if up {
                    tracing::info!(backend = %addr, "backend up");
                } else {
                    tracing::warn!(backend = %addr, "backend down");
                }
            }
        }
    }
}

/// Pool reaping and file reloads.
async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let addrs: Vec<String> = shared.topology().members().map(Member::addr).collect();
        shared.pool.reap(&addrs);
        shared.users.reload_if_changed();
        if let Some(tls) = &shared.tls {
            tls.reload_if_changed();
        }
    }
}

struct View(Arc<Shared>);

impl AdminView for View {
    fn readiness(&self) -> Result<(), String> {
        if self.0.is_shutting_down() {
            return Err("shutting down".into());
        }
        let topo = self.0.topology();
        match &topo.primary {
            Some(p) if self.0.health.is_up(&p.addr()) => Ok(()),
            Some(p) => Err(format!("primary {} is not reachable", p.addr())),
            None => Err("cluster is switching: no primary".into()),
        }
    }

    fn topology_json(&self) -> String {
        let topo = self.0.topology();
        let members: Vec<serde_json::Value> = topo
            .members()
            .map(|m| {
                let addr = m.addr();
                serde_json::json!({
                    "name": m.name,
                    "addr": addr,
                    "role": if topo.primary.as_ref() == Some(m) { "primary" } else { "replica" },
                    "up": self.0.health.is_up(&addr),
                    "outstanding": self.0.health.outstanding(&addr),
                })
            })
            .collect();
        serde_json::json!({
            "cluster": topo.cluster,
            "epoch": topo.epoch,
            "state": topo.state.to_string(),
            "primary": topo.primary.as_ref().map(Member::addr),
            "members": members,
            "document": &*topo,
        })
        .to_string()
    }
}
