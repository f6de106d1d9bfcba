//! Pools of logged-in backend connections, per server and user.
//!
//! A connection is reused only by a session with the same user, collation and protocol shape
//! (capabilities that change what the server sends). It is reset with `COM_RESET_CONNECTION`
//! when it comes back, so no temporary table, lock, variable or prepared statement outlives
//! its client, and again before reuse, so the next client's session starts from the server's
//! global settings of that moment.
//!
//! The limit per server counts every connection the proxy holds there, idle ones included:
//! an idle connection keeps its place, and gives it up (is closed) when a session needs a
//! connection the idle ones cannot serve. One user may hold at most `max_per_user` of them, so
//! no single account can take a server's whole share. The limit shrinks to fit the server's
//! own `max_connections` (less a reserve for administration and replication) once the monitor
//! has read it: a full pool makes sessions wait for a place, where a server at its limit would
//! refuse them.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::{BackendConn, BackendError, ConnectParams, connect};
use crate::metrics::Metrics;
use crate::protocol::constants::cap;

/// How long a session waits for a free place before it looks for an idle connection to
/// close again.
const PLACE_WAIT_SLICE: Duration = Duration::from_millis(25);

/// ER_CON_COUNT_ERROR, "Too many connections".
const ER_CON_COUNT_ERROR: u16 = 1040;
/// How long a login the server refused for its connection limit waits before it is tried
/// again, at first and at most.
const TOO_MANY_FIRST_PAUSE: Duration = Duration::from_millis(20);
const TOO_MANY_LAST_PAUSE: Duration = Duration::from_millis(200);

/// Pool limits and timings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Connections per backend server, idle or in use; more sessions wait.
    pub max_per_backend: usize,
    /// Connections per backend server for one user; 0: four fifths of `max_per_backend`.
    pub max_per_user: usize,
    /// Idle connections kept per (server, user, shape).
    pub max_idle_per_key: usize,
    /// Idle connections older than this are closed.
    pub idle_timeout: Duration,
    /// How long a session waits for a free slot before failing.
    pub acquire_timeout: Duration,
    pub connect_timeout: Duration,
    /// Sessions give their connections back between statements when nothing ties them to
    /// them (see `session::multiplex`).
    pub multiplex: bool,
    /// Users whose sessions keep one connection for their whole life even when `multiplex`
    /// is on (applications that rely on a server-side session identity).
    pub multiplex_except: Vec<String>,
    /// Statements kept prepared per connection (see `stmt_cache`).
    pub statements_per_connection: usize,
}

impl PoolConfig {
    /// One user's share of a server's connections: never all of them while there are two.
    pub fn user_share(&self) -> usize {
        self.user_share_of(self.max_per_backend)
    }

    /// One user's share of `total` connections to a server (its limit once fitted).
    pub fn user_share_of(&self, total: usize) -> usize {
        let total = total.max(1);
        let share = if self.max_per_user == 0 {
            total * 4 / 5
        } else {
            self.max_per_user
        };
        share.clamp(1, total.saturating_sub(1).max(1))
    }
}

impl PoolConfig {
    /// Whether `user`'s sessions give their connections back between statements.
    pub fn multiplexes(&self, user: &str) -> bool {
        self.multiplex && !self.multiplex_except.iter().any(|u| u == user)
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_per_backend: 500,
            max_per_user: 0,
            max_idle_per_key: 64,
            idle_timeout: Duration::from_secs(60),
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            multiplex: false,
            multiplex_except: Vec::new(),
            statements_per_connection: super::stmt_cache::DEFAULT_STATEMENTS_PER_CONNECTION,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    addr: String,
    user: String,
    shape: u32,
    /// MariaDB extended capabilities: extended metadata changes column definitions.
    ext: u32,
    collation: u8,
}

impl PoolKey {
    fn of(p: &ConnectParams) -> Self {
        Self {
            addr: p.addr.clone(),
            user: p.user.clone(),
            shape: p.client_caps & cap::SHAPE,
            ext: p.client_ext_caps,
            collation: p.collation,
        }
    }
}

/// Connections kept free on every server for administration and replication, at least.
const SERVER_RESERVE_MIN: usize = 5;
/// Connections the proxy opens to a server outside its pool: the monitor's, the head
/// reader's and a health probe's.
const PROXY_OWN_CONNECTIONS: usize = 3;

/// The connections the proxy may hold to a server that allows `server_max`: the configured
/// limit, or less, leaving a tenth of the server's connections (at least
/// [`SERVER_RESERVE_MIN`]) to everyone else, besides the proxy's own few.
pub fn server_cap(configured: usize, server_max: usize) -> usize {
    let reserve = (server_max / 10).max(SERVER_RESERVE_MIN) + PROXY_OWN_CONNECTIONS;
    configured.min(server_max.saturating_sub(reserve)).max(1)
}

/// One server's limit. Shrinking it forgets free places at once; places in use are forgotten
/// as they come back (`debt`).
#[derive(Debug)]
struct Limit {
    places: Arc<Semaphore>,
    cap: AtomicUsize,
    debt: AtomicUsize,
}

impl Limit {
    fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            places: Arc::new(Semaphore::new(cap)),
            cap: AtomicUsize::new(cap),
            debt: AtomicUsize::new(0),
        })
    }

    /// Sets the cap (callers hold the pool's `limits` lock, so resizes do not interleave).
    fn resize(&self, cap: usize) {
        let old = self.cap.swap(cap, Ordering::SeqCst);
        if cap > old {
            let grow = cap - old;
            // Places returning meanwhile pay the debt down too: take what is left, at once.
            let paid = self
                .debt
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| {
                    Some(d - d.min(grow))
                })
                .map_or(0, |before| before.min(grow));
            self.places.add_permits(grow - paid);
        } else if cap < old {
            let shrink = old - cap;
            let forgotten = self.places.forget_permits(shrink);
            self.debt.fetch_add(shrink - forgotten, Ordering::SeqCst);
        }
    }

    /// Whether a place just taken pays off the debt of a shrink (and is forgotten).
    fn pays_debt(&self, place: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        let paid = self
            .debt
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
            .is_ok();
        if paid {
            place.forget();
            None
        } else {
            Some(place)
        }
    }

    fn held(&self) -> usize {
        let cap = self.cap.load(Ordering::SeqCst) + self.debt.load(Ordering::SeqCst);
        cap.saturating_sub(self.places.available_permits())
    }
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("all {0} connections to {1} are in use")]
    Exhausted(usize, String),
    #[error("user {user} holds all {share} of its connections to {addr}")]
    UserExhausted {
        share: usize,
        user: String,
        addr: String,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The places a connection holds: one of its server's, one of its user's there.
#[derive(Debug)]
struct Places {
    _server: OwnedSemaphorePermit,
    _user: OwnedSemaphorePermit,
}

/// An idle connection, still holding its places.
#[derive(Debug)]
struct Idle {
    conn: BackendConn,
    places: Places,
    /// Given back between a session's statements without a reset: it keeps that session's
    /// replayable state (`conn.state_sig`) and prepared statements.
    parked: bool,
}

/// The proxy's backend pools.
#[derive(Debug)]
pub struct Pool {
    cfg: PoolConfig,
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    limits: Mutex<HashMap<String, Arc<Limit>>>,
    user_limits: Mutex<HashMap<(String, String), Arc<Limit>>>,
    metrics: Arc<Metrics>,
}

impl Pool {
    pub fn new(cfg: PoolConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            idle: Mutex::new(HashMap::new()),
            limits: Mutex::new(HashMap::new()),
            user_limits: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    fn limit(&self, addr: &str) -> Arc<Limit> {
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        limits
            .entry(addr.to_string())
            .or_insert_with(|| {
                self.metrics
                    .set_connection_limit(addr, self.cfg.max_per_backend);
                Limit::new(self.cfg.max_per_backend)
            })
            .clone()
    }

    /// Fits the limit for `addr` to a server that allows `server_max` connections.
    pub fn fit_to_server(&self, addr: &str, server_max: usize) {
        let cap = server_cap(self.cfg.max_per_backend, server_max);
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        let limit = limits
            .entry(addr.to_string())
            .or_insert_with(|| Limit::new(cap));
        let old = limit.cap.load(Ordering::SeqCst);
        if old != cap {
            limit.resize(cap);
            tracing::info!(
                backend = addr,
                server_max,
                limit = cap,
                was = old,
                "connection limit fitted to the server"
            );
            // Every user's share follows, so that no account takes the whole fitted limit.
            let share = self.cfg.user_share_of(cap);
            let users = self.user_limits.lock().unwrap_or_else(|e| e.into_inner());
            for ((a, _), l) in users.iter() {
                if a == addr {
                    l.resize(share);
                }
            }
        }
        drop(limits);
        self.metrics.set_connection_limit(addr, cap);
    }

    /// The connections the proxy may hold to `addr` now.
    pub fn limit_of(&self, addr: &str) -> usize {
        self.limit(addr).cap.load(Ordering::SeqCst)
    }

    fn user_limit(&self, addr: &str, user: &str) -> Arc<Limit> {
        let share = self.cfg.user_share_of(self.limit_of(addr));
        let mut limits = self.user_limits.lock().unwrap_or_else(|e| e.into_inner());
        limits
            .entry((addr.to_string(), user.to_string()))
            .or_insert_with(|| Limit::new(share))
            .clone()
    }

    /// Places for a new connection to `addr` as `user`: taken from the free ones, else from
    /// idle connections closed to make room (the user's own first), else waited for up to the
    /// acquire timeout.
    async fn places(&self, addr: &str, user: &str) -> Result<Places, AcquireError> {
        let started = tokio::time::Instant::now();
        let result = self
            .places_by(addr, user, started + self.cfg.acquire_timeout)
            .await;
        let waited = started.elapsed();
        if waited >= PLACE_WAIT_SLICE {
            self.metrics.pool_waited(waited);
        }
        result
    }

    async fn places_by(
        &self,
        addr: &str,
        user: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Places, AcquireError> {
        let user_limit = self.user_limit(addr, user);
        let user_place = loop {
            let place = self
                .take_place(user_limit.places.clone(), deadline, |p| {
                    p.evict_idle(addr, Some(user))
                })
                .await
                .ok_or_else(|| AcquireError::UserExhausted {
                    share: user_limit.cap.load(Ordering::SeqCst),
                    user: user.to_string(),
                    addr: addr.to_string(),
                })?;
            if let Some(place) = user_limit.pays_debt(place) {
                break place;
            }
        };
        let limit = self.limit(addr);
        let server_place = loop {
            let place = self
                .take_place(limit.places.clone(), deadline, |p| p.evict_idle(addr, None))
                .await
                .ok_or_else(|| {
                    AcquireError::Exhausted(limit.cap.load(Ordering::SeqCst), addr.to_string())
                })?;
            if let Some(place) = limit.pays_debt(place) {
                break place;
            }
        };
        Ok(Places {
            _server: server_place,
            _user: user_place,
        })
    }

    /// Waits in short slices: a connection returned while waiting goes back to the idle list
    /// with its place, and is closed to make room on the next round.
    async fn take_place(
        &self,
        limit: Arc<Semaphore>,
        deadline: tokio::time::Instant,
        evict: impl Fn(&Self) -> bool,
    ) -> Option<OwnedSemaphorePermit> {
        loop {
            if let Ok(place) = limit.clone().try_acquire_owned() {
                return Some(place);
            }
            if evict(self) {
                continue;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return None;
            }
            let slice = (now + PLACE_WAIT_SLICE).min(deadline);
            if let Ok(Ok(place)) =
                tokio::time::timeout_at(slice, limit.clone().acquire_owned()).await
            {
                return Some(place);
            }
        }
    }

    /// Closes the least recently used idle connection to `addr` (of `user`, when given).
    /// Returns whether there was one.
    fn evict_idle(&self, addr: &str, user: Option<&str>) -> bool {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = idle
            .iter()
            .filter(|(k, list)| {
                k.addr == addr && user.is_none_or(|u| k.user == u) && !list.is_empty()
            })
            .filter_map(|(k, list)| list.first().map(|i| (k.clone(), i.conn.last_used)))
            .min_by_key(|(_, used)| *used)
            .map(|(k, _)| k);
        let Some(key) = oldest else {
            return false;
        };
        if let Some(list) = idle.get_mut(&key)
            && !list.is_empty()
        {
            // Dropping it closes the connection and frees its places.
            list.remove(0);
        }
        true
    }

    /// A connection for `params`: an idle one after a reset, else a new login.
    pub async fn acquire(
        self: &Arc<Self>,
        params: &ConnectParams,
    ) -> Result<PooledConn, AcquireError> {
        let key = PoolKey::of(params);
        // A connection of another event loop serves this session only when no new one can be
        // opened at once: its replies would wake that loop's thread, then this one, for as
        // long as the session keeps it.
        let here = crate::loop_id::current();
        let other_loops = || here.is_some() && !self.has_free_place(&params.addr, &params.user);
        while let Some(Idle {
            mut conn,
            places,
            parked,
        }) = self.take_idle(&key, params, here).or_else(|| {
            other_loops()
                .then(|| self.take_idle(&key, params, None))
                .flatten()
        }) {
            // A connection the server already closed (killed, restarted) is dropped without a
            // round trip.
            if conn.stream.closed_while_idle() {
                continue;
            }
            // A parked connection with the session's state is used as it is: that is what
            // makes giving connections back between statements cheap.
            if parked && conn.state_sig == params.state_sig {
                self.report(&key.addr);
                return Ok(self.wrap(conn, key, places));
            }
            // Reset again on the way out: session variables then start from the server's
            // global values as they are now (a SET GLOBAL since the connection was pooled
            // shows, as on a new connection), and a dead connection is found before use.
            if conn.reset().await {
                self.report(&key.addr);
                return Ok(self.wrap(conn, key, places));
            }
        }
        let deadline = tokio::time::Instant::now() + self.cfg.acquire_timeout;
        let places = self.places(&params.addr, &params.user).await?;
        let mut pause = TOO_MANY_FIRST_PAUSE;
        let conn = loop {
            let result = connect(params).await;
            self.metrics.backend_connect(&params.addr, result.is_ok());
            match result {
                // The server at its own limit, counting connections that are closing: the
                // session waits for one to go, as for a place in a full pool, rather than
                // get the server's refusal.
                Err(BackendError::Server { err, .. })
                    if err.code == ER_CON_COUNT_ERROR
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(TOO_MANY_LAST_PAUSE);
                }
                result => break result?,
            }
        };
        self.report(&key.addr);
        Ok(self.wrap(conn, key, places))
    }

    /// Takes a connection logged in elsewhere (a relayed login) under this pool's limits. It
    /// belongs to one client and is closed, not pooled, when that client is done with it.
    pub async fn adopt(
        self: &Arc<Self>,
        conn: BackendConn,
        params: &ConnectParams,
    ) -> Result<PooledConn, AcquireError> {
        let places = self.places(&params.addr, &params.user).await?;
        let mut conn = self.wrap(conn, PoolKey::of(params), places);
        conn.reusable = false;
        self.report(&params.addr);
        Ok(conn)
    }

    fn wrap(self: &Arc<Self>, conn: BackendConn, key: PoolKey, places: Places) -> PooledConn {
        PooledConn {
            conn: Some(conn),
            key,
            pool: self.clone(),
            places: Some(places),
            reusable: true,
        }
    }

    /// Whether a new connection to `addr` as `user` would find its places free now, with no
    /// idle connection closed and no wait.
    fn has_free_place(&self, addr: &str, user: &str) -> bool {
        let free =
            |l: &Limit| l.places.available_permits() > 0 && l.debt.load(Ordering::SeqCst) == 0;
        free(&self.limit(addr)) && free(&self.user_limit(addr, user))
    }

    /// An idle connection for `key` (on the event loop `on`, when given): one parked with the
    /// session's state first, then one in the session's database, else the most recently
    /// used. A session that logged in without a database gets only one that has none — a
    /// server cannot leave its current database.
    fn take_idle(&self, key: &PoolKey, params: &ConnectParams, on: Option<usize>) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        list.retain(|i| i.conn.last_used.elapsed() < self.cfg.idle_timeout);
        let without_database = params.database.is_none();
        let usable = |i: &Idle| {
            (!without_database || i.conn.database.is_none())
                && on.is_none_or(|l| i.conn.event_loop == Some(l))
        };
        let rank = |i: &Idle| {
            let same_state = i.parked && i.conn.state_sig == params.state_sig;
            let same_db = i.conn.database == params.database;
            u8::from(same_state) * 2 + u8::from(same_db)
        };
        // The last of the best: the most recently used among equals.
        let (at, _) = list
            .iter()
            .enumerate()
            .filter(|(_, i)| usable(i))
            .max_by_key(|(n, i)| (rank(i), *n))?;
        Some(list.remove(at))
    }

    fn put_idle(&self, key: PoolKey, conn: BackendConn, places: Places, parked: bool) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(key).or_default();
        // Parked connections are the multiplexed sessions' working set: kept up to the
        // server's limit, which their places already bound.
        if parked || list.len() < self.cfg.max_idle_per_key {
            list.push(Idle {
                conn,
                places,
                parked,
            });
        }
    }

    /// Closes idle connections past the idle timeout, and all idle connections to servers not
    /// in `keep` (left the topology).
    pub fn reap(&self, keep: &[String]) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = self.cfg.idle_timeout;
        idle.retain(|key, list| {
            list.retain(|i| i.conn.last_used.elapsed() < timeout);
            !list.is_empty() && keep.contains(&key.addr)
        });
        drop(idle);
        for addr in keep {
            self.report(addr);
        }
    }

    /// Idle and in-use connection counts for one server.
    pub fn counts(&self, addr: &str) -> (usize, usize) {
        let idle: usize = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(k, _)| k.addr == addr)
            .map(|(_, v)| v.len())
            .sum();
        let held = self
            .limits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
            .map(|l| l.held())
            .unwrap_or(0);
        (idle, held.saturating_sub(idle))
    }

    fn report(&self, addr: &str) {
        let (idle, in_use) = self.counts(addr);
        self.metrics.set_pool(addr, idle, in_use);
    }
}

/// A connection checked out of the pool. Dropping it returns it (after a reset) unless it was
/// marked broken.
#[derive(Debug)]
pub struct PooledConn {
    conn: Option<BackendConn>,
    key: PoolKey,
    pool: Arc<Pool>,
    places: Option<Places>,
    reusable: bool,
}

impl PooledConn {
    /// The connection is in an unknown state (an error mid-response, a client that left
    /// mid-result): close it instead of reusing it.
    pub fn mark_broken(&mut self) {
        self.reusable = false;
    }

    pub fn is_broken(&self) -> bool {
        !self.reusable
    }

    /// Gives the connection back between a session's statements, without a reset: it keeps
    /// the state whose signature it carries, for the next session that has the same.
    pub fn park(mut self) {
        let (Some(mut conn), Some(places)) = (self.conn.take(), self.places.take()) else {
            return;
        };
        if !self.reusable {
            drop(conn);
            drop(places);
            self.pool.report(&self.key.addr);
            return;
        }
        conn.last_used = Instant::now();
        self.pool.put_idle(self.key.clone(), conn, places, true);
        self.pool.report(&self.key.addr);
    }
}

impl Deref for PooledConn {
    type Target = BackendConn;
    fn deref(&self) -> &BackendConn {
        // Present from construction until drop.
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("pooled connection used after drop"))
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut BackendConn {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("pooled connection used after drop"))
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let places = self.places.take();
        let pool = self.pool.clone();
        let key = self.key.clone();
        if !self.reusable {
            drop(places);
            pool.report(&key.addr);
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The reset is a round trip: do it off the client's path. The places go with the
        // connection into the idle list, so the limit stays exact.
        handle.spawn(async move {
            let started = Instant::now();
            if tokio::time::timeout(pool.cfg.connect_timeout, conn.reset())
                .await
                .unwrap_or(false)
            {
                conn.last_used = Instant::now();
                if let Some(places) = places {
                    pool.put_idle(key.clone(), conn, places, false);
                }
            } else {
                tracing::debug!(backend = %key.addr, elapsed = ?started.elapsed(), "reset failed; closing backend connection");
            }
            pool.report(&key.addr);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_leaves_the_server_a_reserve() {
        // 600 allowed: a tenth stays free, and the proxy's own three; the configured limit
        // still bounds it.
        assert_eq!(server_cap(500, 600), 500);
        assert_eq!(server_cap(1000, 600), 537);
        // Small servers keep five, and the proxy's own three.
        assert_eq!(server_cap(500, 20), 12);
        // A server that allows almost nothing still gets one.
        assert_eq!(server_cap(500, 3), 1);
    }

    #[tokio::test]
    async fn a_shrunk_limit_takes_back_places_in_use_as_they_return() {
        let limit = Limit::new(4);
        let a = limit.places.clone().try_acquire_many_owned(3).unwrap();
        // Down to 2 with 3 in use: the free one goes now, two more when they come back.
        limit.resize(2);
        assert_eq!(limit.places.available_permits(), 0);
        assert_eq!(limit.debt.load(Ordering::SeqCst), 1);
        assert_eq!(limit.held(), 3);
        drop(a);
        // Each returned place is taken in payment until the debt is gone.
        let mut kept = Vec::new();
        while let Ok(p) = limit.places.clone().try_acquire_owned() {
            if let Some(p) = limit.pays_debt(p) {
                kept.push(p);
            }
        }
        assert_eq!(kept.len(), 2);
        assert_eq!(limit.debt.load(Ordering::SeqCst), 0);
        // Growing again adds places.
        limit.resize(5);
        assert_eq!(limit.places.available_permits(), 3);
    }

    #[test]
    fn one_user_never_gets_every_connection() {
        let share = |total, per_user| {
            PoolConfig {
                max_per_backend: total,
                max_per_user: per_user,
                ..PoolConfig::default()
            }
            .user_share()
        };
        assert_eq!(share(500, 0), 400);
        assert_eq!(share(500, 100), 100);
        assert_eq!(share(10, 10), 9);
        assert_eq!(share(2, 0), 1);
        // A single connection cannot be shared.
        assert_eq!(share(1, 0), 1);
    }
}
