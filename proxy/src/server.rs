//! The proxy process: start-up, the accept loop, background tasks and graceful shutdown.

mod control;
pub mod loops;
mod pool;

pub use control::ControlPlane;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::admin::{self, AdminState, AdminView};
use crate::backend::health::{Probed, probe};
use crate::backend::monitor::{AdminConns, poll_positions};
use crate::backend::{Backends, BackendsConfig, Pool};
use crate::config::Config;
use crate::digest::Digests;
use crate::digest::prometheus::DigestCollector;
use crate::metrics::Metrics;
use crate::protocol::packet::PacketStream;
use crate::session::Session;
use crate::session::login;
pub use crate::session::proxy_state::{ProxyState, wait_for_shutdown};
use crate::tls::Tls;
use crate::topology::{Member, TopologyWatcher, WatchOptions};
use crate::users::UserStore;

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    pub shared: Arc<ProxyState>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown_tx: watch::Sender<bool>,
    _watcher: TopologyWatcher,
    control: ControlPlane,
    /// Where sessions run: these event loops, or (`None`) the runtime `run` is called on.
    loops: Option<loops::Loops>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Topology(#[from] crate::topology::TopologyError),
    #[error("{0}")]
    Users(#[from] crate::users::UsersError),
    #[error("tenant pool: {0}")]
    Pool(String),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot start the control plane's or an event loop's thread: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl Proxy {
    /// Loads the topology, users and TLS material and binds the listeners.
    pub async fn bind(mut config: Config) -> Result<Self, StartError> {
        // The monitor and account lookups reach the servers as queries do.
        let client_tls =
            crate::backend::tls::client_ssl_opts(config.backend_tls, config.backend_ca.as_deref());
        for creds in [
            &mut config.lookup,
            &mut config.monitor,
            &mut config.directory,
        ]
        .into_iter()
        .flatten()
        {
            creds.tls = client_tls.clone();
        }
        let digests = Arc::new(Digests::new(config.digests));
        let mut metrics = Metrics::builder();
        metrics
            .registry_mut()
            .register_collector(Box::new(DigestCollector(digests.clone())));
        let metrics = Arc::new(metrics.build());
        let observer_metrics = metrics.clone();
        let options = WatchOptions {
            poll_interval: config.topology_poll,
            ..WatchOptions::default()
        }
        .on_reload(move |o| observer_metrics.topology_reload(o.as_str()));
        let control = ControlPlane::start().map_err(StartError::Runtime)?;
        let loops = match config.session_loops {
            0 => None,
            n => Some(loops::Loops::start(n).map_err(StartError::Runtime)?),
        };
        let path = config.topology.clone();
        let (watcher, topology_rx) = control
            .run(async move { TopologyWatcher::start_with(&path, options).await })
            .await
            .ok_or_else(|| {
                StartError::Runtime(std::io::Error::other("the control plane stopped"))
            })??;
        let users = UserStore::new(
            config.users_file.clone(),
            config.managed_users_file.clone(),
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
        metrics.set_topology_epoch(watcher.current().epoch);
        let backends = Backends::start(
            BackendsConfig {
                write_hold_timeout: config.write_hold_timeout,
                connect_timeout: config.pool.connect_timeout,
                max_allowed_packet: config.max_allowed_packet,
                monitor: config.monitor.clone(),
                tls: backend_tls,
                sessions: tokio::runtime::Handle::current(),
            },
            Pool::new(config.pool.clone(), metrics.clone()),
            metrics,
            topology_rx,
            shutdown.clone(),
        );
        let router = match (&config.tenant_pool, &config.directory) {
            (Some(path), Some(credentials)) => {
                let doc = lagless_directory::PoolDocument::read(path)
                    .map_err(|e| StartError::Pool(format!("{}: {e}", path.display())))?;
                Some(Arc::new(crate::tenant::TenantRouter::new(
                    doc.naming(),
                    doc.routing.clone(),
                    doc.attribute.clone(),
                    backends.clone(),
                    credentials.clone(),
                    config.tenant_cache,
                )))
            }
            _ => None,
        };
        let mut state =
            ProxyState::new(config, users, backends, tls, shutdown).with_digests(digests);
        if let Some(router) = router {
            state = state.with_tenants(router);
        }
        let shared = Arc::new(state);
        Ok(Self {
            shared,
            listener,
            admin,
            shutdown_tx,
            _watcher: watcher,
            control,
            loops,
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
        crate::backend::monitor::read_max_allowed_packet(
            &shared.backends,
            &mut AdminConns::default(),
        )
        .await;
        let control = &self.control;
        let mut background = {
            let _on_control = control.enter();
            let mut tasks = cluster_tasks(&shared, shared.backends.clone());
            tasks.push(tokio::spawn(housekeeping(shared.clone())));
            tasks
        };
        if let (Some(router), Some(path)) = (&shared.tenants, &shared.config.tenant_pool) {
            // The clusters known now are started before the first client is accepted.
            let (shared, router, path) = (shared.clone(), router.clone(), path.clone());
            let started = control
                .run(async move {
                    let mut follower = pool::PoolFollower::default();
                    follower.pass(&shared, &router, &path).await;
                    vec![
                        tokio::spawn(crate::tenant::follow::follow_changes(router.clone())),
                        tokio::spawn(pool::follow_pool(follower, shared, router, path)),
                    ]
                })
                .await;
            background.extend(started.into_iter().flatten());
        }
        if let Some(admin) = self.admin {
            let mut state = AdminState::new(shared.metrics.clone(), Arc::new(View(shared.clone())))
                .with_digests(shared.digests.clone());
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
                    Ok((tcp, peer)) => spawn_session(&shared, self.loops.as_ref(), tcp, peer),
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

/// The tasks that keep one cluster's backends current; called on the control plane.
pub(crate) fn cluster_tasks(
    shared: &Arc<ProxyState>,
    backends: Arc<Backends>,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(follow_topology(shared.clone(), backends.clone())),
        tokio::spawn(monitor(shared.clone(), backends.clone())),
        tokio::spawn(reap_pools(backends)),
    ]
}

fn spawn_session(
    shared: &Arc<ProxyState>,
    loops: Option<&loops::Loops>,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let shared = shared.clone();
    let open = shared.open_sessions.fetch_add(1, Ordering::Relaxed) + 1;
    let count = SessionCount(shared.clone());
    let Some(loops) = loops else {
        tokio::spawn(serve_client(shared, count, open, tcp, peer));
        return;
    };
    // Out of this reactor, into the chosen loop's on its first poll.
    let tcp = match tcp.into_std() {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot hand the connection to an event loop");
            return;
        }
    };
    loops.spawn(async move {
        match TcpStream::from_std(tcp) {
            Ok(tcp) => serve_client(shared, count, open, tcp, peer).await,
            Err(e) => tracing::warn!(%peer, error = %e, "an event loop cannot take the connection"),
        }
    });
}

/// One client connection, from the refusal of one too many to the end of its session.
async fn serve_client(
    shared: Arc<ProxyState>,
    _count: SessionCount,
    open: usize,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
) {
    let _guard = shared.metrics.client_connected();
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
}

struct SessionCount(Arc<ProxyState>);

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
async fn learn_backend_greeting(shared: &ProxyState) {
    let Some(addr) = shared
        .backends
        .primary_addr()
        .or_else(|| shared.topology().replicas.first().map(Member::addr))
    else {
        return;
    };
    if let Some(g) = probe(&addr, Duration::from_secs(3)).await.greeting {
        tracing::info!(version = %g.server_version, backend = %addr, "learned server version from backend");
        shared.backends.learn_greeting(g);
    }
}

/// Applies each new topology: swaps the routing table, forgets removed servers. The global
/// cluster's also sets the proxy's default consistency mode and its account lookups.
async fn follow_topology(shared: Arc<ProxyState>, backends: Arc<Backends>) {
    let global = Arc::ptr_eq(&backends, &shared.backends);
    let mut rx = backends.topology_changes();
    while rx.changed().await.is_ok() {
        let topo = rx.borrow_and_update().clone();
        let addrs: Vec<String> = topo.members().map(Member::addr).collect();
        if global {
            shared.metrics.set_topology_epoch(topo.epoch);
            shared.follow_consistency(&topo);
            shared.users.retain(&addrs);
        }
        backends.health.retain(&addrs);
        backends.positions.retain(&addrs);
        backends.pool.reap(&addrs);
    }
}

/// Probes every member of one cluster on each tick.
async fn monitor(shared: Arc<ProxyState>, backends: Arc<Backends>) {
    let mut tick = tokio::time::interval(shared.config.monitor_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conns = AdminConns::default();
    loop {
        tick.tick().await;
        poll_positions(&backends, &mut conns).await;
        let topo = backends.topology();
        let timeout = shared
            .config
            .monitor_interval
            .max(Duration::from_millis(500));
        let probes = topo.members().map(|m| {
            let addr = m.addr();
            async move {
                let probed = probe(&addr, timeout).await;
                (addr, probed)
            }
        });
        let probed = futures::future::join_all(probes).await;
        // The primary's greeting, kept current: what new clients are offered, and the global
        // SQL mode their sessions start in (a `SET GLOBAL sql_mode` is seen here). Only while
        // the topology probed is still the current one: a failover during the probes must not
        // leave the demoted primary's greeting behind.
        let now = backends.topology();
        let primary = now
            .primary
            .as_ref()
            .filter(|_| now.epoch == topo.epoch)
            .map(Member::addr);
        for (addr, Probed { up, greeting }) in probed {
            if let Some(g) = greeting
                && primary.as_deref() == Some(addr.as_str())
            {
                backends.learn_greeting(g);
            }
            shared.metrics.set_backend_up(&addr, up);
            if backends.health.set_up(&addr, up) {
                if up {
                    tracing::info!(backend = %addr, "backend up");
                } else {
                    tracing::warn!(backend = %addr, "backend down");
                }
            }
        }
    }
}

/// Pool reaping of one cluster.
async fn reap_pools(backends: Arc<Backends>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let addrs: Vec<String> = backends.topology().members().map(Member::addr).collect();
        backends.pool.reap(&addrs);
    }
}

/// File reloads.
async fn housekeeping(shared: Arc<ProxyState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        shared.users.reload_if_changed();
        if let Some(tls) = &shared.tls {
            tls.reload_if_changed();
        }
        if let Some(tls) = &shared.backends.config.tls {
            tls.reload_if_changed();
        }
    }
}

struct View(Arc<ProxyState>);

impl AdminView for View {
    fn readiness(&self) -> Result<(), String> {
        if self.0.is_shutting_down() {
            return Err("shutting down".into());
        }
        let topo = self.0.topology();
        match &topo.primary {
            Some(p) if self.0.backends.health.is_up(&p.addr()) => Ok(()),
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
                    "up": self.0.backends.health.is_up(&addr),
                    "outstanding": self.0.backends.health.outstanding(&addr),
                })
            })
            .collect();
        let mut view = serde_json::json!({
            "cluster": topo.cluster,
            "epoch": topo.epoch,
            "state": topo.state.to_string(),
            "primary": topo.primary.as_ref().map(Member::addr),
            "members": members,
            "document": &*topo,
        });
        if let Some(router) = &self.0.tenants {
            view["pool"] = router.summary();
        }
        view.to_string()
    }
}
