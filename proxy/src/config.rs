//! Proxy settings, from the command line or the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::backend::PoolConfig;
use crate::digest::DigestConfig;
use crate::protocol::auth;
use crate::route::ConsistencyMode;
use crate::users::LookupCredentials;

/// Whether and how backend connections use TLS (defined with the backend connections).
pub use crate::backend::tls::BackendTlsMode;

/// Command-line flags; every flag can also come from a `LAGLESS_PROXY_*` variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "lagless-proxy",
    version,
    about = "One MySQL endpoint in front of a replication cluster that never serves a stale read"
)]
pub struct Args {
    /// Address clients connect to.
    #[arg(long, env = "LAGLESS_PROXY_LISTEN", default_value = "127.0.0.1:6033")]
    pub listen: SocketAddr,

    /// Address of the admin HTTP listener (/healthz, /readyz, /metrics, /topology, /digests).
    #[arg(long, env = "LAGLESS_PROXY_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// The topology file (a mounted ConfigMap directory's topology.json, or a plain file).
    #[arg(long, env = "LAGLESS_PROXY_TOPOLOGY")]
    pub topology: PathBuf,

    /// A tenant pool document (pool.json): the proxy routes each tenant's work to its cluster,
    /// found in the directory held by the --topology cluster, which also serves every
    /// database that belongs to no tenant.
    #[arg(long, env = "LAGLESS_PROXY_POOL")]
    pub pool: Option<PathBuf>,

    /// Account that reads and writes the tenant directory; defaults to --lookup-user.
    #[arg(long, env = "LAGLESS_PROXY_DIRECTORY_USER")]
    pub directory_user: Option<String>,

    /// Password of --directory-user.
    #[arg(long, env = "LAGLESS_PROXY_DIRECTORY_PASSWORD", hide_env_values = true)]
    pub directory_password: Option<String>,

    /// Tenants whose routes are kept (about 500 bytes each); more are read from the directory
    /// again when used.
    #[arg(long, env = "LAGLESS_PROXY_TENANT_CACHE", default_value_t = 200_000)]
    pub tenant_cache: usize,

    /// Users file: {"users":[{"user":"app","password":"..."}]} (a mounted Secret).
    #[arg(long, env = "LAGLESS_PROXY_USERS")]
    pub users: Option<PathBuf>,

    /// A second users file, written by the operator (the cluster's MySQLUser resources): it
    /// may not exist yet and is read once it does; a name in both files is taken from --users.
    #[arg(long, env = "LAGLESS_PROXY_MANAGED_USERS")]
    pub managed_users: Option<PathBuf>,

    /// Account that reads mysql.user on the primary to find users not in the users file.
    #[arg(long, env = "LAGLESS_PROXY_LOOKUP_USER")]
    pub lookup_user: Option<String>,

    /// Password of --lookup-user.
    #[arg(long, env = "LAGLESS_PROXY_LOOKUP_PASSWORD", hide_env_values = true)]
    pub lookup_password: Option<String>,

    /// Account for position polls and primary-head reads (needs no privilege beyond
    /// USAGE on MariaDB); defaults to --lookup-user.
    #[arg(long, env = "LAGLESS_PROXY_MONITOR_USER")]
    pub monitor_user: Option<String>,

    /// Password of --monitor-user.
    #[arg(long, env = "LAGLESS_PROXY_MONITOR_PASSWORD", hide_env_values = true)]
    pub monitor_password: Option<String>,

    /// Consistency mode when neither the topology, the session nor the statement sets one:
    /// strict, session, proxy, bounded(500ms) or eventual.
    #[arg(long, env = "LAGLESS_PROXY_CONSISTENCY", default_value = "strict")]
    pub consistency: String,

    /// How long a read may wait for a replica to catch up before it goes to the primary, in ms.
    #[arg(long, env = "LAGLESS_PROXY_CONSISTENCY_WAIT_MS", default_value_t = 500)]
    pub consistency_wait_ms: u64,

    /// How long a user looked up on the primary is cached, in seconds.
    #[arg(long, env = "LAGLESS_PROXY_USER_CACHE_TTL", default_value_t = 5)]
    pub user_cache_ttl: u64,

    /// Version string sent to clients; by default the primary's own.
    #[arg(long, env = "LAGLESS_PROXY_SERVER_VERSION")]
    pub server_version: Option<String>,

    /// Auth plugin offered in the greeting: mysql_native_password or caching_sha2_password.
    #[arg(long, env = "LAGLESS_PROXY_AUTH_PLUGIN", default_value = auth::NATIVE)]
    pub auth_plugin: String,

    /// PEM certificate chain for client TLS (reloaded when it changes).
    #[arg(long, env = "LAGLESS_PROXY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for client TLS.
    #[arg(long, env = "LAGLESS_PROXY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// TLS to backends: off, on (encrypt, do not verify) or verify (against --backend-ca).
    #[arg(
        long,
        env = "LAGLESS_PROXY_BACKEND_TLS",
        value_enum,
        default_value = "off"
    )]
    pub backend_tls: BackendTlsMode,

    /// PEM CA bundle that backend certificates must chain to (--backend-tls verify).
    #[arg(long, env = "LAGLESS_PROXY_BACKEND_CA")]
    pub backend_ca: Option<PathBuf>,

    /// Refuse clients that do not use TLS.
    #[arg(long, env = "LAGLESS_PROXY_REQUIRE_TLS")]
    pub require_tls: bool,

    /// Backend connections per server, idle or in use.
    #[arg(
        long,
        env = "LAGLESS_PROXY_MAX_BACKEND_CONNECTIONS",
        default_value_t = 500
    )]
    pub max_backend_connections: usize,

    /// Backend connections per server one user may hold (0: four fifths of
    /// --max-backend-connections), so that no single account takes them all.
    #[arg(
        long,
        env = "LAGLESS_PROXY_MAX_BACKEND_CONNECTIONS_PER_USER",
        default_value_t = 0
    )]
    pub max_backend_connections_per_user: usize,

    /// Sessions give their backend connections back to the pool between statements when
    /// nothing ties them there (a transaction, a temporary table, a lock, …; see
    /// docs/proxy.md), so many more clients than servers' connections can be served. `off`
    /// keeps one connection per session for its whole life.
    #[arg(long, env = "LAGLESS_PROXY_MULTIPLEX", default_value = "off", value_parser = ["on", "off"])]
    pub multiplex: String,

    /// How long a session waits for a backend connection when every one it may have is in
    /// use, before it gets an error (1105) naming the limit.
    #[arg(
        long,
        env = "LAGLESS_PROXY_POOL_WAIT_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub pool_wait_timeout_ms: u64,

    /// Users (comma-separated) whose sessions keep one backend connection for their whole
    /// life even with --multiplex on.
    #[arg(long, env = "LAGLESS_PROXY_NO_MULTIPLEX_USERS", value_delimiter = ',')]
    pub no_multiplex_users: Vec<String>,

    /// Statements kept prepared on each backend connection for any session to execute; past
    /// it the least recently used is closed (servers allow 16,382 in all by default).
    #[arg(
        long,
        env = "LAGLESS_PROXY_STATEMENTS_PER_CONNECTION",
        default_value_t = crate::backend::stmt_cache::DEFAULT_STATEMENTS_PER_CONNECTION
    )]
    pub statements_per_connection: usize,

    /// Client connections at once; more are refused with error 1040.
    #[arg(
        long,
        env = "LAGLESS_PROXY_MAX_CLIENT_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub max_client_connections: usize,

    /// Connections per client address that have not authenticated yet (a login takes
    /// milliseconds, so only a flood or stalled handshakes reach this); more get error 1040.
    #[arg(
        long,
        env = "LAGLESS_PROXY_MAX_UNAUTHENTICATED_PER_HOST",
        default_value_t = 256
    )]
    pub max_unauthenticated_per_host: usize,

    /// Sessions per user at once (0: no limit, as the server's default); more get error 1203.
    #[arg(long, env = "LAGLESS_PROXY_MAX_USER_CONNECTIONS", default_value_t = 0)]
    pub max_user_connections: usize,

    /// The largest packet a client may send, in bytes; larger ones get error 1153 and the
    /// connection is closed. Default: the primary's `max_allowed_packet`, as the monitor last
    /// read it (16 MiB, the server's default, until it has).
    #[arg(long, env = "LAGLESS_PROXY_MAX_ALLOWED_PACKET")]
    pub max_allowed_packet: Option<usize>,

    /// Accept topologies pushed to `PUT /topology` on the admin listener with this bearer
    /// token (the operator pushes each new epoch at once; the topology file stays the durable
    /// source). Without it, pushing is off.
    #[arg(long, env = "LAGLESS_PROXY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Seconds an idle client session is kept (the server's default `wait_timeout`); a
    /// session's own `SET wait_timeout` wins.
    #[arg(long, env = "LAGLESS_PROXY_WAIT_TIMEOUT", default_value_t = 28_800)]
    pub wait_timeout: u64,

    /// Idle backend connections are closed after this many seconds.
    #[arg(long, env = "LAGLESS_PROXY_IDLE_TIMEOUT", default_value_t = 60)]
    pub idle_timeout: u64,

    /// How long writes wait for a primary while the topology says "switching", in ms.
    #[arg(
        long,
        env = "LAGLESS_PROXY_WRITE_HOLD_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub write_hold_timeout_ms: u64,

    /// On SIGTERM, how long open transactions may take to finish, in seconds.
    #[arg(long, env = "LAGLESS_PROXY_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,

    /// How often backends are probed, in ms.
    #[arg(
        long,
        env = "LAGLESS_PROXY_MONITOR_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub monitor_interval_ms: u64,

    /// Where `START TRANSACTION READ ONLY` runs: on a replica that satisfies the session's
    /// consistency mode when it starts (`replica`), or on the primary (`primary`).
    #[arg(
        long,
        env = "LAGLESS_PROXY_READ_ONLY_TRANSACTIONS",
        value_enum,
        default_value = "replica"
    )]
    pub read_only_transactions: ReadOnlyTransactions,

    /// Optimistic transactions: a plain `BEGIN` starts on a replica that satisfies the
    /// session's consistency mode; at its first write it moves to the primary, where its
    /// reads are run again and must return the same rows (on or off).
    #[arg(
        long,
        env = "LAGLESS_PROXY_OPTIMISTIC_TRANSACTIONS",
        value_enum,
        default_value = "on"
    )]
    pub optimistic_transactions: Switch,

    /// A read that must see the primary's head (`strict`) runs on the primary instead of a
    /// replica when its statement's round trip (learned by the digests) is at most this many
    /// times a head read's: the head read would cost the primary as much. 0: strict reads
    /// always go to a replica when one can serve them.
    #[arg(
        long,
        env = "LAGLESS_PROXY_CHEAP_READS_ON_PRIMARY",
        default_value_t = 2.0,
        value_name = "RATIO"
    )]
    pub cheap_reads_on_primary: f64,

    /// Query digests: statements counted by fingerprint, at `/digests` and `/metrics`
    /// (on or off; off computes nothing).
    #[arg(long, env = "LAGLESS_PROXY_DIGESTS", value_enum, default_value = "on")]
    pub digests: Switch,

    /// Fingerprints kept by the query digests; statements of others count in `other`.
    #[arg(long, env = "LAGLESS_PROXY_DIGEST_LIMIT", default_value_t = 2_000)]
    pub digest_limit: usize,

    /// Bytes of normalised statement text kept per fingerprint.
    #[arg(long, env = "LAGLESS_PROXY_DIGEST_TEXT_LIMIT", default_value_t = 1_024)]
    pub digest_text_limit: usize,

    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "LAGLESS_LOG", default_value = "info")]
    pub log: String,

    /// Log as JSON lines.
    #[arg(long, env = "LAGLESS_LOG_JSON")]
    pub log_json: bool,

    /// Threads that run client sessions: 0, one per core.
    #[arg(long, env = "LAGLESS_PROXY_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

    /// How sessions share those threads: `shared`, one work-stealing runtime whose threads
    /// take any session's work; `loops`, each thread an event loop of its own that keeps a
    /// session from its login to its end (no wake-ups between threads for a query: faster
    /// with few clients, slower with many on a machine whose cores are all busy).
    #[arg(
        long,
        env = "LAGLESS_PROXY_SCHEDULER",
        value_enum,
        default_value = "shared"
    )]
    pub scheduler: Scheduler,
}

/// How client sessions are spread over the proxy's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheduler {
    Loops,
    Shared,
}

/// A feature switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Where read-only transactions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadOnlyTransactions {
    Replica,
    Primary,
}

/// The settings the proxy runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub topology: PathBuf,
    /// The tenant pool document; `None`: one cluster, no tenants.
    pub tenant_pool: Option<PathBuf>,
    /// The account of the tenant directory.
    pub directory: Option<LookupCredentials>,
    /// Tenant routes kept in the cache.
    pub tenant_cache: std::num::NonZeroUsize,
    pub users_file: Option<PathBuf>,
    /// The operator's users file (`--managed-users`): may be missing.
    pub managed_users_file: Option<PathBuf>,
    pub lookup: Option<LookupCredentials>,
    /// Credentials for position polls and head reads; without them positions are learned only
    /// from writes and waits.
    pub monitor: Option<LookupCredentials>,
    pub consistency: ConsistencyMode,
    pub consistency_wait: Duration,
    pub user_cache_ttl: Duration,
    pub server_version: Option<String>,
    pub auth_plugin: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub require_tls: bool,
    pub backend_tls: BackendTlsMode,
    pub backend_ca: Option<PathBuf>,
    pub max_client_connections: usize,
    pub max_unauthenticated_per_host: usize,
    /// 0: no limit.
    pub max_user_connections: usize,
    /// Fixed; `None`: the primary's.
    pub max_allowed_packet: Option<usize>,
    /// The token of `PUT /topology` on the admin listener; `None`: pushing is off. Kept out
    /// of `Debug`, as the credentials are.
    pub admin_token: Option<AdminToken>,
    /// Idle client sessions end after this, unless they set their own `wait_timeout`.
    pub wait_timeout: Duration,
    pub handshake_timeout: Duration,
    pub packet_timeout: Duration,
    pub write_hold_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub monitor_interval: Duration,
    pub topology_poll: Duration,
    pub pool: PoolConfig,
    pub digests: DigestConfig,
    /// `START TRANSACTION READ ONLY` may run on a replica.
    pub read_only_on_replicas: bool,
    /// A plain `BEGIN` may start on a replica.
    pub optimistic_transactions: bool,
    /// A read that needs the primary's head runs on the primary when its statement costs at
    /// most this many head reads (0: never). Needs the digests, which learn the costs.
    pub cheap_reads_on_primary: f64,
    /// Sessions run on this many event loops of their own (see `server::loops`); 0: on the
    /// runtime the proxy is run on.
    pub session_loops: usize,
}

impl Config {
    /// Defaults for everything but the topology file.
    pub fn new(topology: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 6033)),
            admin_listen: None,
            topology,
            tenant_pool: None,
            directory: None,
            tenant_cache: std::num::NonZeroUsize::new(200_000)
                .unwrap_or(std::num::NonZeroUsize::MIN),
            users_file: None,
            managed_users_file: None,
            lookup: None,
            monitor: None,
            consistency: ConsistencyMode::Strict,
            consistency_wait: Duration::from_millis(500),
            user_cache_ttl: Duration::from_secs(5),
            server_version: None,
            auth_plugin: auth::NATIVE.into(),
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            backend_tls: BackendTlsMode::Off,
            backend_ca: None,
            max_client_connections: 10_000,
            max_unauthenticated_per_host: 256,
            max_user_connections: 0,
            max_allowed_packet: None,
            wait_timeout: Duration::from_secs(28_800),
            admin_token: None,
            handshake_timeout: Duration::from_secs(10),
            packet_timeout: Duration::from_secs(30),
            write_hold_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            monitor_interval: Duration::from_secs(1),
            topology_poll: Duration::from_secs(2),
            pool: PoolConfig::default(),
            digests: DigestConfig::default(),
            read_only_on_replicas: true,
            optimistic_transactions: true,
            cheap_reads_on_primary: 2.0,
            session_loops: 0,
        }
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.auth_plugin != auth::NATIVE && self.auth_plugin != auth::CACHING_SHA2 {
            return Err(format!(
                "--auth-plugin must be {} or {}, not `{}`",
                auth::NATIVE,
                auth::CACHING_SHA2,
                self.auth_plugin
            ));
        }
        if !(self.cheap_reads_on_primary.is_finite() && self.cheap_reads_on_primary >= 0.0) {
            return Err(format!(
                "--cheap-reads-on-primary must be a ratio of 0 or more, not {}",
                self.cheap_reads_on_primary
            ));
        }
        if self.require_tls && self.tls_cert.is_none() {
            return Err("--require-tls needs --tls-cert and --tls-key".into());
        }
        if self.tenant_pool.is_some() && self.directory.is_none() {
            return Err(
                "--pool needs an account for the tenant directory: --directory-user and \
                 --directory-password, or --lookup-user and --lookup-password"
                    .into(),
            );
        }
        if self.users_file.is_none() && self.managed_users_file.is_none() && self.lookup.is_none() {
            return Err(
                "no users: give --users FILE and/or --lookup-user/--lookup-password".into(),
            );
        }
        Ok(())
    }
}

/// A secret token whose `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

pub use crate::protocol::constants::{DEFAULT_MAX_ALLOWED_PACKET, clamp_packet};

impl TryFrom<Args> for Config {
    type Error = String;

    fn try_from(a: Args) -> Result<Self, String> {
        let lookup = match (a.lookup_user, a.lookup_password) {
            (Some(user), Some(password)) => Some(LookupCredentials {
                user,
                password,
                tls: None,
            }),
            (None, None) => None,
            _ => return Err("--lookup-user and --lookup-password go together".into()),
        };
        let monitor = match (a.monitor_user, a.monitor_password) {
            (Some(user), Some(password)) => Some(LookupCredentials {
                user,
                password,
                tls: None,
            }),
            (None, None) => lookup.clone(),
            _ => return Err("--monitor-user and --monitor-password go together".into()),
        };
        let directory = match (a.directory_user, a.directory_password) {
            (Some(user), Some(password)) => Some(LookupCredentials {
                user,
                password,
                tls: None,
            }),
            (None, None) => lookup.clone(),
            _ => return Err("--directory-user and --directory-password go together".into()),
        };
        let consistency: ConsistencyMode = a
            .consistency
            .parse()
            .map_err(|e| format!("--consistency: {e}"))?;
        let mut c = Config::new(a.topology);
        c.monitor = monitor;
        c.tenant_pool = a.pool;
        c.tenant_cache = std::num::NonZeroUsize::new(a.tenant_cache)
            .ok_or("--tenant-cache must be at least 1")?;
        c.directory = directory;
        c.consistency = consistency;
        c.consistency_wait = Duration::from_millis(a.consistency_wait_ms);
        c.listen = a.listen;
        c.admin_listen = a.admin_listen;
        c.users_file = a.users;
        c.managed_users_file = a.managed_users;
        c.lookup = lookup;
        c.user_cache_ttl = Duration::from_secs(a.user_cache_ttl);
        c.server_version = a.server_version;
        c.auth_plugin = a.auth_plugin;
        c.tls_cert = a.tls_cert;
        c.tls_key = a.tls_key;
        c.require_tls = a.require_tls;
        c.backend_tls = a.backend_tls;
        c.backend_ca = a.backend_ca;
        c.max_client_connections = a.max_client_connections;
        c.max_unauthenticated_per_host = a.max_unauthenticated_per_host.max(1);
        c.max_user_connections = a.max_user_connections;
        // The protocol's own bounds: 1 KiB to 1 GiB, as the server's variable.
        c.max_allowed_packet = a.max_allowed_packet.map(clamp_packet);
        c.wait_timeout = Duration::from_secs(a.wait_timeout.max(1));
        c.admin_token = a.admin_token.map(AdminToken);
        c.write_hold_timeout = Duration::from_millis(a.write_hold_timeout_ms);
        c.shutdown_timeout = Duration::from_secs(a.shutdown_timeout);
        c.monitor_interval = Duration::from_millis(a.monitor_interval_ms.max(50));
        c.pool.max_per_backend = a.max_backend_connections.max(1);
        c.pool.max_per_user = a.max_backend_connections_per_user;
        c.pool.idle_timeout = Duration::from_secs(a.idle_timeout);
        c.pool.acquire_timeout = Duration::from_millis(a.pool_wait_timeout_ms.max(1));
        c.pool.multiplex = a.multiplex == "on";
        c.pool.multiplex_except = a.no_multiplex_users;
        c.pool.statements_per_connection = a.statements_per_connection.max(1);
        c.read_only_on_replicas = a.read_only_transactions == ReadOnlyTransactions::Replica;
        c.optimistic_transactions = a.optimistic_transactions == Switch::On;
        c.cheap_reads_on_primary = a.cheap_reads_on_primary;
        c.session_loops = match a.scheduler {
            Scheduler::Loops => threads(a.worker_threads),
            Scheduler::Shared => 0,
        };
        c.digests = DigestConfig {
            enabled: a.digests == Switch::On,
            capacity: a.digest_limit,
            // Room for at least a statement's first words and the cut marker.
            text_limit: a.digest_text_limit.max(16),
        };
        c.validate()?;
        Ok(c)
    }
}

/// `workers` threads, 0 meaning one per core.
pub fn threads(workers: usize) -> usize {
    match workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    }
}
