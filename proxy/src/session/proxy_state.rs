//! The state of the running proxy that every session shares: configuration, accounts, limits,
//! the live sessions, and the backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::kill::SessionRegistry;
use crate::backend::Backends;
use crate::backend::Identity;
use crate::config::Config;
use crate::digest::Digests;
use crate::limits::Admission;
use crate::metrics::Metrics;
use crate::protocol::constants::{DEFAULT_COLLATION, cap, status};
use crate::protocol::messages::ErrPacket;
use crate::route::{ConsistencyMode, SchemaRefs};
use crate::tenant::TenantRouter;
use crate::tenant::decide::{Context, Owner, owner_of};
use crate::tls::Tls;
use crate::topology::Topology;
use crate::users::UserStore;

/// What every session shares.
#[derive(Debug)]
pub struct ProxyState {
    pub config: Config,
    pub users: UserStore,
    /// The only cluster, or in a tenant pool the global one (directory and the databases of
    /// no tenant).
    pub backends: Arc<Backends>,
    /// Routing by tenant, when the proxy fronts a tenant pool.
    pub tenants: Option<Arc<TenantRouter>>,
    pub metrics: Arc<Metrics>,
    /// Statements counted by fingerprint.
    pub digests: Arc<Digests>,
    pub tls: Option<Tls>,
    pub admission: Arc<Admission>,
    /// Live sessions by connection id, for KILL.
    pub sessions: SessionRegistry,
    /// Sessions open now, logged in or not.
    pub open_sessions: AtomicUsize,
    next_connection_id: AtomicU32,
    shutdown: watch::Receiver<bool>,
    default_mode: ArcSwap<ConsistencyMode>,
}

impl ProxyState {
    pub fn new(
        config: Config,
        users: UserStore,
        backends: Arc<Backends>,
        tls: Option<Tls>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let default_mode = Self::mode_of(&config, &backends.topology());
        let admission = Admission::new(
            config.max_unauthenticated_per_host,
            config.max_user_connections,
        );
        Self {
            metrics: backends.metrics.clone(),
            digests: Arc::new(Digests::new(config.digests)),
            config,
            users,
            backends,
            tenants: None,
            tls,
            admission,
            sessions: SessionRegistry::default(),
            open_sessions: AtomicUsize::new(0),
            next_connection_id: AtomicU32::new(0),
            shutdown,
            default_mode: ArcSwap::from_pointee(default_mode),
        }
    }

    /// Records digests in `digests` (shared with the admin listener and the metrics).
    pub fn with_digests(mut self, digests: Arc<Digests>) -> Self {
        self.digests = digests;
        self
    }

    /// Routes by tenant through `router`.
    pub fn with_tenants(mut self, router: Arc<TenantRouter>) -> Self {
        self.tenants = Some(router);
        self
    }

    pub fn topology(&self) -> Arc<Topology> {
        self.backends.topology()
    }

    pub fn server_version(&self) -> String {
        if let Some(v) = &self.config.server_version {
            return v.clone();
        }
        match &**self.backends.greeting() {
            Some(g) => g.server_version.clone(),
            None => "10.11.0-MariaDB-lagless".into(),
        }
    }

    /// Capabilities offered to clients: the primary's, where they change what it sends.
    /// Without `CLIENT_MYSQL` when the primary is MariaDB, so MariaDB clients send their
    /// extended capabilities.
    pub fn server_caps(&self) -> u32 {
        match &**self.backends.greeting() {
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
        match &**self.backends.greeting() {
            Some(g) => crate::protocol::constants::ext::PROXY_DEFAULT & g.ext_capabilities,
            None => 0,
        }
    }

    /// The status flags of a new session: autocommit, and the primary's
    /// `NO_BACKSLASH_ESCAPES` (its global `sql_mode`, as its greeting says), which client
    /// libraries read to choose how to escape strings and the classifier to lex them.
    pub fn new_session_status(&self) -> u16 {
        let global = match &**self.backends.greeting() {
            Some(g) => g.status & status::NO_BACKSLASH_ESCAPES,
            None => 0,
        };
        status::AUTOCOMMIT | global
    }

    /// The SQL mode a new session starts in, as far as lexing goes: the primary's global one.
    pub fn global_sql_mode(&self) -> crate::route::SqlMode {
        crate::route::SqlMode {
            no_backslash_escapes: self.new_session_status() & status::NO_BACKSLASH_ESCAPES != 0,
            ..crate::route::SqlMode::default()
        }
    }

    pub fn collation(&self) -> u8 {
        match &**self.backends.greeting() {
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
        super::kill::proxy_id(self.next_connection_id.fetch_add(1, Ordering::Relaxed))
    }

    /// The cluster's consistency mode: the topology's, else the configured default.
    pub fn default_consistency(&self) -> ConsistencyMode {
        **self.default_mode.load()
    }

    /// Follows a new topology's consistency mode.
    pub fn follow_consistency(&self, topo: &Topology) {
        self.default_mode
            .store(Arc::new(Self::mode_of(&self.config, topo)));
    }

    /// The topology's mode (typed: a document with a mode the proxy does not know is refused
    /// when it is read), else the configured default.
    fn mode_of(config: &Config, topo: &Topology) -> ConsistencyMode {
        topo.consistency.unwrap_or(config.consistency)
    }

    /// The account `name`, from the users file or the members (see [`UserStore::find`]).
    pub async fn find_user(&self, name: &str) -> Option<crate::users::UserRecord> {
        let flavor = self.topology().flavor;
        self.users
            .find(name, &self.backends.lookup_members(), flavor)
            .await
    }

    /// Logs in to the primary as the client (database included) and returns the connection
    /// to the pool: a bad database or a refused user gets the server's own error. In a
    /// tenant pool the primary is that of the database's tenant (or the tenant attribute's),
    /// which is returned for the session to start on.
    pub async fn check_backend_login(
        &self,
        identity: Identity<'_>,
        database: Option<&str>,
        attributes: &[u8],
    ) -> Result<Option<(Arc<Backends>, Owner)>, ErrPacket> {
        let Some(router) = &self.tenants else {
            self.backends.primary_conn(identity, database).await?;
            return Ok(None);
        };
        let attribute = super::tenancy::connection_attribute(attributes, &router.attribute);
        let cx = Context {
            naming: &router.naming,
            sources: &router.sources,
            database,
            attribute: attribute.as_deref(),
        };
        let (owner, _) = owner_of(&SchemaRefs::default(), &cx).map_err(|r| r.to_err())?;
        let placed = router.place(&owner).await?;
        match placed.backends.primary_conn(identity, database).await {
            Ok(_) => Ok(Some((placed.backends, owner))),
            // A cached route may be stale: a moved tenant's old database is dropped. The
            // directory has the last word.
            Err(err) if err.code == 1049 && owner != Owner::Global => {
                let fresh = router.refresh(&owner).await.map_err(|_| err.clone())?;
                if fresh.route == placed.route {
                    return Err(err);
                }
                fresh.backends.primary_conn(identity, database).await?;
                Ok(Some((fresh.backends, owner)))
            }
            Err(err) => Err(err),
        }
    }
}

/// Resolves once a shutdown was requested (or the sender is gone).
pub async fn wait_for_shutdown(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it inside.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
