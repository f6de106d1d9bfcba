//! The tenant router: tenant -> cluster through a bounded cache in front of the directory,
//! placement of new tenants, and the clusters of the pool.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use lagless_directory::placement::{self, ClusterLoad};
use lagless_directory::{
    Directory, DirectoryError, Reserved, Route, TenantId, TenantNaming, TenantSource, TenantState,
};
use lru::LruCache;

use super::decide::Owner;
use crate::backend::Backends;
use crate::backend::account::LookupCredentials;
use crate::protocol::messages::ErrPacket;

/// How long the clusters' measured load is reused for placement.
const LOADS_TTL: Duration = Duration::from_secs(1);
/// How long a client's statement waits for the directory: a stopped directory server must
/// cost the client seconds, not the directory client's own longer bounds.
const DIRECTORY_WAIT: Duration = Duration::from_secs(2);

/// Awaits a directory call within [`DIRECTORY_WAIT`].
async fn bounded<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, DirectoryError>>,
) -> Result<T, DirectoryError> {
    tokio::time::timeout(DIRECTORY_WAIT, call)
        .await
        .unwrap_or_else(|_| {
            Err(DirectoryError::Unreachable(format!(
                "no answer within {} s ({what})",
                DIRECTORY_WAIT.as_secs()
            )))
        })
}

/// Where a statement runs.
#[derive(Debug, Clone)]
pub struct Placed {
    pub backends: Arc<Backends>,
    /// The tenant's route (`None` for the global cluster).
    pub route: Option<Route>,
}

/// A tenant about to be created by a `CREATE DATABASE` through this proxy.
#[derive(Debug, Clone)]
pub struct Creation {
    pub placed: Placed,
    /// This proxy reserved the tenant, so it removes the reservation if the CREATE fails.
    pub reserved_here: bool,
}

/// The routing side of a tenant pool, shared by every session.
pub struct TenantRouter {
    pub naming: TenantNaming,
    pub sources: Vec<TenantSource>,
    /// The connection attribute that names a tenant.
    pub attribute: String,
    global: Arc<Backends>,
    clusters: ArcSwap<HashMap<String, Arc<Backends>>>,
    cache: Mutex<LruCache<TenantId, Route>>,
    credentials: LookupCredentials,
    /// The directory client, for the primary address it was made for.
    directory: Mutex<Option<(String, Arc<Directory>)>>,
    loads: Mutex<Option<(Instant, Arc<Vec<ClusterLoad>>)>>,
    /// The last change-log sequence applied to the cache.
    pub followed: AtomicU64,
    /// Raised whenever a cached route may have changed, so that a session whose tenant is
    /// unchanged skips the cache while it stays the same.
    generation: AtomicU64,
    /// Told of every raise of `generation`: sessions holding a frozen tenant's statements
    /// wait on it.
    changed: tokio::sync::watch::Sender<u64>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl std::fmt::Debug for TenantRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantRouter")
            .field("naming", &self.naming.pattern())
            .field("clusters", &self.clusters.load().len())
            .finish_non_exhaustive()
    }
}

impl TenantRouter {
    pub fn new(
        naming: TenantNaming,
        sources: Vec<TenantSource>,
        attribute: String,
        global: Arc<Backends>,
        credentials: LookupCredentials,
        cache_size: NonZeroUsize,
    ) -> Self {
        Self {
            naming,
            sources,
            attribute,
            global,
            clusters: ArcSwap::from_pointee(HashMap::new()),
            cache: Mutex::new(LruCache::new(cache_size)),
            credentials,
            directory: Mutex::new(None),
            loads: Mutex::new(None),
            followed: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            changed: tokio::sync::watch::Sender::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Adds a tenant cluster whose backends are ready.
    pub fn add_cluster(&self, name: &str, backends: Arc<Backends>) {
        let mut map = HashMap::clone(&self.clusters.load());
        map.insert(name.to_string(), backends);
        self.clusters.store(Arc::new(map));
    }

    /// See [`TenantRouter::generation`]: read before placing, compared on the next statement.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn routes_changed(&self) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.changed.send_replace(generation);
    }

    /// A receiver told whenever a cached route may have changed.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn knows_cluster(&self, name: &str) -> bool {
        self.clusters.load().contains_key(name)
    }

    pub fn cluster_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.clusters.load().keys().cloned().collect();
        names.sort();
        names
    }

    pub fn cached_tenants(&self) -> usize {
        self.lock_cache().len()
    }

    /// What the admin `/topology` shows of the pool: the clusters this proxy routes to, the
    /// change log position it has applied, and the cache.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "clusters": self.cluster_names(),
            "tenantDatabase": self.naming.pattern(),
            "followedSeq": self.followed.load(Ordering::Relaxed),
            "cachedTenants": self.cached_tenants(),
            "cacheHits": self.hits.load(Ordering::Relaxed),
            "cacheMisses": self.misses.load(Ordering::Relaxed),
        })
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, LruCache<TenantId, Route>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cluster `owner`'s statements run on. A cached tenant costs no I/O; a miss reads
    /// the directory.
    pub async fn place(&self, owner: &Owner) -> Result<Placed, ErrPacket> {
        let id = match owner {
            Owner::Global => {
                return Ok(Placed {
                    backends: self.global.clone(),
                    route: None,
                });
            }
            Owner::Tenant(id) => id,
        };
        let cached = self.lock_cache().get(id).cloned();
        let route = match cached {
            Some(route) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                route
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                match self.lookup(id).await? {
                    Some(route) => route,
                    None => return Err(self.unknown(id)),
                }
            }
        };
        self.placed(id, route)
    }

    /// Where `owner` is according to the directory itself, not the cache: after a server
    /// said the tenant's data is not where the cached route led, and while a move holds it.
    pub async fn refresh(&self, owner: &Owner) -> Result<Placed, ErrPacket> {
        match owner {
            Owner::Global => self.place(owner).await,
            Owner::Tenant(id) => match self.lookup(id).await? {
                Some(route) => self.placed(id, route),
                None => Err(self.unknown(id)),
            },
        }
    }

    /// Reads a tenant from the directory and caches what it finds; a route that differs
    /// from the cached one raises the generation, so sessions placed by the old one notice.
    async fn lookup(&self, id: &TenantId) -> Result<Option<Route>, ErrPacket> {
        let directory = self.directory()?;
        let found = bounded("looking up the tenant", directory.lookup(id))
            .await
            .map_err(|e| self.unreachable(&e, id))?;
        let mut cache = self.lock_cache();
        let changed = cache.peek(id) != found.as_ref();
        match &found {
            Some(route) => remember(&mut cache, id, route.clone()),
            None => {
                cache.pop(id);
            }
        }
        drop(cache);
        if changed {
            self.routes_changed();
        }
        Ok(found)
    }

    fn placed(&self, id: &TenantId, route: Route) -> Result<Placed, ErrPacket> {
        match self.clusters.load().get(&route.cluster) {
            Some(backends) => Ok(Placed {
                backends: backends.clone(),
                route: Some(route),
            }),
            None => Err(ErrPacket::new(
                1105,
                "HY000",
                format!(
                    "lagless: tenant {id} lives on cluster {}, which this proxy does not know \
                     (yet); its pool document lists the clusters",
                    route.cluster
                ),
            )),
        }
    }

    /// Whether database `db` lives on `backends`' cluster, as far as the cache knows (a
    /// database of no tenant lives on the global cluster). Never reads the directory.
    pub fn database_is_on(&self, db: &str, backends: &Arc<Backends>) -> bool {
        match self.naming.tenant_of(db) {
            Some(Ok(id)) => {
                let Some(route) = self.lock_cache().peek(&id).cloned() else {
                    return false;
                };
                self.clusters
                    .load()
                    .get(&route.cluster)
                    .is_some_and(|b| Arc::ptr_eq(b, backends))
            }
            Some(Err(_)) => false,
            None => Arc::ptr_eq(&self.global, backends),
        }
    }

    /// Drops a tenant from the cache after a routing error, so the next statement reads the
    /// directory again.
    pub fn forget_cached(&self, id: &TenantId) {
        self.lock_cache().pop(id);
        self.routes_changed();
    }

    /// Places a tenant that a `CREATE DATABASE` is about to create: where the directory has
    /// it already, else on the less loaded of two random clusters, reserved in the directory
    /// before the database exists so that two proxies never place one tenant twice.
    pub async fn place_new(&self, id: &TenantId) -> Result<Creation, ErrPacket> {
        if let Some(route) = self.lookup(id).await? {
            return Ok(Creation {
                placed: self.placed(id, route)?,
                reserved_here: false,
            });
        }
        let loads = self.loads().await.map_err(|e| self.unreachable(&e, id))?;
        let known: Vec<ClusterLoad> = loads
            .iter()
            .filter(|l| self.knows_cluster(&l.name))
            .cloned()
            .collect();
        let Some(chosen) = placement::choose(&known, placement::random_pick()) else {
            return Err(ErrPacket::new(
                1105,
                "HY000",
                "lagless: no tenant cluster is open for new tenants",
            ));
        };
        let directory = self.directory()?;
        let reserved = bounded("reserving the tenant", directory.reserve(id, &chosen.name))
            .await
            .map_err(|e| self.unreachable(&e, id))?;
        let (route, reserved_here) = match reserved {
            Reserved::New(route) => (route, true),
            Reserved::Existing(route) => (route, false),
        };
        if reserved_here {
            self.count_placed(&route.cluster);
        }
        tracing::info!(tenant = %id, cluster = %route.cluster, new = reserved_here, "tenant placed");
        remember(&mut self.lock_cache(), id, route.clone());
        Ok(Creation {
            placed: self.placed(id, route)?,
            reserved_here,
        })
    }

    /// After the `CREATE DATABASE` of a placed tenant: active once it exists; a reservation
    /// this proxy made is removed when it failed.
    pub async fn created(&self, id: &TenantId, creation: &Creation, succeeded: bool) {
        let Ok(directory) = self.directory() else {
            return;
        };
        let still_creating = creation
            .placed
            .route
            .as_ref()
            .is_some_and(|r| r.state == TenantState::Creating);
        let result = if succeeded && still_creating {
            directory
                .activate(id)
                .await
                .map(|route| remember(&mut self.lock_cache(), id, route))
        } else if !succeeded && creation.reserved_here {
            self.lock_cache().pop(id);
            self.routes_changed();
            directory.forget(id).await
        } else {
            Ok(())
        };
        if let Err(e) = result {
            tracing::warn!(tenant = %id, error = %e, "cannot record the tenant's creation in the directory");
        }
    }

    /// After a successful `DROP DATABASE` of a tenant's database.
    pub async fn dropped(&self, id: &TenantId) {
        self.lock_cache().pop(id);
        self.routes_changed();
        let result = match self.directory() {
            Ok(d) => d.forget(id).await,
            Err(_) => return,
        };
        if let Err(e) = result {
            tracing::warn!(tenant = %id, error = %e, "cannot remove the dropped tenant from the directory");
        }
    }

    /// Applies change-log entries. Every changed tenant is cached, not only those cached
    /// already: a lookup that read the row just before the change must not put the older
    /// route back afterwards (see [`remember`]).
    pub fn apply_changes(&self, changes: &[lagless_directory::Change]) {
        if changes.is_empty() {
            return;
        }
        let mut cache = self.lock_cache();
        for change in changes {
            match &change.route {
                Some(route) => remember(&mut cache, &change.tenant, route.clone()),
                None => {
                    cache.pop(&change.tenant);
                }
            }
            self.followed.fetch_max(change.seq, Ordering::Relaxed);
        }
        drop(cache);
        self.routes_changed();
    }

    /// Counts a tenant placed on `cluster` in the loads reused until the next read, so that
    /// placements in between see it.
    fn count_placed(&self, cluster: &str) {
        let mut slot = self.loads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, loads)) = slot.as_mut()
            && let Some(load) = Arc::make_mut(loads).iter_mut().find(|l| l.name == cluster)
        {
            load.tenants += 1;
        }
    }

    /// The clusters' load as the operator measured it, reused for a second.
    async fn loads(&self) -> Result<Arc<Vec<ClusterLoad>>, DirectoryError> {
        if let Some((at, loads)) = &*self.loads.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < LOADS_TTL
        {
            return Ok(loads.clone());
        }
        let directory = self
            .directory()
            .map_err(|e| DirectoryError::Unreachable(e.message.clone()))?;
        let loads = Arc::new(bounded("reading the clusters' load", directory.clusters()).await?);
        *self.loads.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), loads.clone()));
        Ok(loads)
    }

    /// The directory client for the global cluster's current primary.
    pub fn directory(&self) -> Result<Arc<Directory>, ErrPacket> {
        let addr = self.directory_addr()?;
        let mut slot = self.directory.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, d)) = &*slot
            && *at == addr
        {
            return Ok(d.clone());
        }
        let (addr, opts) = self.directory_opts()?;
        let directory = Arc::new(Directory::new(opts));
        *slot = Some((addr, directory.clone()));
        Ok(directory)
    }

    /// The address of the global cluster's primary, where the directory is.
    pub fn directory_addr(&self) -> Result<String, ErrPacket> {
        self.global.primary_addr().ok_or_else(no_directory_primary)
    }

    /// The address of the global cluster's primary, and how to connect to it as the
    /// directory's client.
    pub fn directory_opts(&self) -> Result<(String, mysql_async::Opts), ErrPacket> {
        let topo = self.global.topology();
        let Some(primary) = topo.primary.as_ref() else {
            return Err(no_directory_primary());
        };
        let mut opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(primary.host.clone())
            .tcp_port(primary.port)
            .user(Some(self.credentials.user.clone()))
            .pass(Some(self.credentials.password.clone()))
            .prefer_socket(false);
        if let Some(tls) = &self.credentials.tls {
            opts = opts.ssl_opts(tls.clone());
        }
        Ok((primary.addr(), opts.into()))
    }

    fn unknown(&self, id: &TenantId) -> ErrPacket {
        tracing::debug!(tenant = %id, "tenant not in the directory");
        ErrPacket::new(
            1049,
            "42000",
            format!("Unknown database '{}'", self.naming.database(id)),
        )
    }

    fn unreachable(&self, error: &DirectoryError, id: &TenantId) -> ErrPacket {
        tracing::warn!(tenant = %id, %error, "tenant directory unavailable");
        ErrPacket::new(
            1105,
            "HY000",
            format!("lagless: cannot find tenant {id}: {error}"),
        )
    }
}

/// Caches a route unless a newer version of it is cached already.
fn no_directory_primary() -> ErrPacket {
    ErrPacket::new(
        1105,
        "HY000",
        "lagless: the tenant directory has no primary right now; try again",
    )
}

fn remember(cache: &mut LruCache<TenantId, Route>, id: &TenantId, route: Route) {
    match cache.get_mut(id) {
        Some(known) if known.version > route.version => {}
        Some(known) => *known = route,
        None => {
            cache.put(id.clone(), route);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lagless_directory::TenantState;

    fn route(cluster: &str, version: u64) -> Route {
        Route {
            cluster: cluster.into(),
            version,
            state: TenantState::Active,
        }
    }

    #[test]
    fn an_older_route_never_replaces_a_newer_one() {
        let mut cache = LruCache::new(NonZeroUsize::MIN.saturating_add(3));
        let id = TenantId::parse("1").expect("valid");
        remember(&mut cache, &id, route("a", 2));
        remember(&mut cache, &id, route("b", 1));
        assert_eq!(cache.get(&id), Some(&route("a", 2)));
        remember(&mut cache, &id, route("c", 3));
        assert_eq!(cache.get(&id), Some(&route("c", 3)));
    }
}
