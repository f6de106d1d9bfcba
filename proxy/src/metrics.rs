//! Prometheus metrics of the proxy.
//!
//! Every series is named `lagless_*`. Label cardinality stays bounded: `route`, `kind`,
//! `reason`, `result` and `state` come from fixed sets of `&'static str` chosen by the code,
//! and `backend` labels are the `host:port` of servers named by the topology, never anything
//! a client sends. Callers must keep it that way.
//!
//! The recording methods run for every statement, so they only touch atomics and take the
//! shared lock of a label family; the exclusive lock is needed only the first time a label
//! set is seen. A `backend` label costs one small string allocation per call.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Prefix of every metric name, including those other modules register.
const PREFIX: &str = "lagless";

/// Upper bounds, in seconds, of the latency histograms: 1-2.5-5 steps per decade from 50 µs
/// (a statement answered by the proxy itself) to 10 s, so `le` labels stay readable.
const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatementLabels {
    route: &'static str,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    backend: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadLabels {
    backend: String,
    mode: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The routes a [`BackendHandle`] counts statements under.
pub const STATEMENT_ROUTES: [&str; 3] = ["primary", "replica", "primary_fallback"];
/// The modes a [`BackendHandle`] counts reads under (`primary`: a read that fell back).
pub const READ_MODES: [&str; 6] = [
    "strict", "session", "proxy", "bounded", "eventual", "primary",
];

/// One backend's statement and read series, ready to increment.
#[derive(Debug, Clone)]
pub struct BackendHandle {
    statements: [Counter; 3],
    reads: [Counter; 6],
    durations: [Histogram; 3],
}

impl BackendHandle {
    /// Like [`Metrics::statement`] for this backend; `route` must be one of
    /// [`STATEMENT_ROUTES`] (anything else is not counted).
    pub fn statement(&self, route: &str, elapsed: Duration) {
        if let Some(i) = STATEMENT_ROUTES.iter().position(|r| *r == route) {
            self.statements[i].inc();
            self.durations[i].observe(elapsed.as_secs_f64());
        }
    }

    /// Like [`Metrics::read`] for this backend; `mode` must be one of [`READ_MODES`].
    pub fn read(&self, mode: &str) {
        if let Some(i) = READ_MODES.iter().position(|m| *m == mode) {
            self.reads[i].inc();
        }
    }
}

/// All metrics of the proxy and the registry that encodes them.
///
/// Share it through an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    client_connections_total: Counter,
    client_connections_open: Gauge,
    client_connection_errors: Family<ReasonLabels, Counter>,
    statements: Family<StatementLabels, Counter>,
    statement_duration: HistogramFamily<RouteLabels>,
    errors: Family<KindLabels, Counter>,
    backend_connections: Family<PoolLabels, Gauge>,
    backend_connects: Family<BackendLabels, Counter>,
    backend_connect_errors: Family<BackendLabels, Counter>,
    backend_up: Family<BackendLabels, Gauge>,
    backend_connection_limit: Family<BackendLabels, Gauge>,
    pool_wait: Histogram,
    multiplex_parks: Counter,
    multiplex_holds: Family<ReasonLabels, Counter>,
    multiplex_holding: Family<ReasonLabels, Gauge>,
    optimistic_moves: Family<ResultLabels, Counter>,
    topology_epoch: Gauge<u64, AtomicU64>,
    topology_reloads: Family<ResultLabels, Counter>,
    write_hold: Histogram,
    reads: Family<ReadLabels, Counter>,
    read_fallbacks: Family<ReasonLabels, Counter>,
    cheap_reads_on_primary: Counter,
    consistency_wait: Histogram,
    replica_behind_transactions: Family<BackendLabels, Gauge>,
    replica_staleness_ms: Family<BackendLabels, Gauge>,
}

/// Builds [`Metrics`] while other modules add their own metrics to the registry.
///
/// The registry cannot change once built, which is what lets [`Metrics::encode`] run
/// without a lock.
#[derive(Debug)]
pub struct MetricsBuilder {
    metrics: Metrics,
}

impl MetricsBuilder {
    /// The registry, to register more metrics. Names get the `lagless_` prefix.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.metrics.registry
    }

    /// Finishes construction.
    pub fn build(self) -> Metrics {
        self.metrics
    }
}

/// Counts one open client connection until dropped.
#[derive(Debug)]
#[must_use = "the connection counts as open only while the guard lives"]
pub struct ClientConnectionGuard {
    open: Gauge,
}

impl Drop for ClientConnectionGuard {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A session counted in `lagless_multiplex_sessions_holding` while it lives.
#[derive(Debug)]
pub struct HoldingGuard {
    reason: &'static str,
    gauge: Gauge,
}

impl HoldingGuard {
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl Drop for HoldingGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics with only the proxy's own series registered.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts building metrics so other modules can register theirs before use.
    pub fn builder() -> MetricsBuilder {
        let mut metrics = Self::unregistered();
        metrics.register_all();
        MetricsBuilder { metrics }
    }

    fn unregistered() -> Self {
        Self {
            registry: Registry::with_prefix(PREFIX),
            client_connections_total: Counter::default(),
            client_connections_open: Gauge::default(),
            client_connection_errors: Family::default(),
            statements: Family::default(),
            statement_duration: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            backend_connections: Family::default(),
            backend_connects: Family::default(),
            backend_connect_errors: Family::default(),
            backend_up: Family::default(),
            backend_connection_limit: Family::default(),
            pool_wait: latency_histogram(),
            multiplex_parks: Counter::default(),
            multiplex_holds: Family::default(),
            multiplex_holding: Family::default(),
            optimistic_moves: Family::default(),
            topology_epoch: Gauge::default(),
            topology_reloads: Family::default(),
            write_hold: latency_histogram(),
            reads: Family::default(),
            read_fallbacks: Family::default(),
            cheap_reads_on_primary: Counter::default(),
            consistency_wait: latency_histogram(),
            replica_behind_transactions: Family::default(),
            replica_staleness_ms: Family::default(),
        }
    }

    fn register_all(&mut self) {
        self.register_client_metrics();
        self.register_statement_metrics();
        self.register_backend_metrics();
        self.register_topology_metrics();
        self.register_consistency_metrics();
    }

    fn register_consistency_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "reads",
            "Reads that could go to a replica, by the backend that served them and the consistency mode",
            self.reads.clone(),
        );
        r.register(
            "read_fallbacks",
            "Reads served by the primary because no replica qualified, by reason",
            self.read_fallbacks.clone(),
        );
        r.register(
            "cheap_reads_on_primary",
            "Reads that had to see the primary's head and ran on the primary instead, their \
             statement costing no more than --cheap-reads-on-primary head reads",
            self.cheap_reads_on_primary.clone(),
        );
        r.register_with_unit(
            "consistency_wait",
            "Time reads waited for a replica to catch up (MASTER_GTID_WAIT)",
            Unit::Seconds,
            self.consistency_wait.clone(),
        );
        r.register(
            "replica_behind_transactions",
            "Transactions the replica lacks of the primary's last known head",
            self.replica_behind_transactions.clone(),
        );
        r.register(
            "replica_staleness_ms",
            "Upper bound of how old the replica's data is, in milliseconds",
            self.replica_staleness_ms.clone(),
        );
    }

    /// Counts a read by the backend that served it and its consistency mode.
    pub fn read(&self, backend: &str, mode: &'static str) {
        self.reads
            .get_or_create(&ReadLabels {
                backend: backend_label(backend),
                mode,
            })
            .inc();
    }

    /// The per-statement series of one backend, looked up once so that recording a statement
    /// allocates nothing (a session keeps one per backend connection).
    pub fn backend_handle(&self, backend: &str) -> BackendHandle {
        let statements = STATEMENT_ROUTES.map(|route| {
            self.statements
                .get_or_create(&StatementLabels {
                    route,
                    backend: backend_label(backend),
                })
                .clone()
        });
        let reads = READ_MODES.map(|mode| {
            self.reads
                .get_or_create(&ReadLabels {
                    backend: backend_label(backend),
                    mode,
                })
                .clone()
        });
        let durations = STATEMENT_ROUTES.map(|route| {
            self.statement_duration
                .get_or_create(&RouteLabels { route })
                .clone()
        });
        BackendHandle {
            statements,
            reads,
            durations,
        }
    }

    /// Counts a read that went to the primary because no replica qualified.
    pub fn read_fallback(&self, reason: &'static str) {
        self.read_fallbacks
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a read that ran on the primary for costing less than a head read.
    pub fn cheap_read_on_primary(&self) {
        self.cheap_reads_on_primary.inc();
    }

    /// Records how long a read waited for a replica.
    pub fn consistency_waited(&self, waited: Duration) {
        self.consistency_wait.observe(waited.as_secs_f64());
    }

    /// Records how far a replica is behind; `None` clears the series (position unknown).
    pub fn set_replica_distance(
        &self,
        backend: &str,
        transactions: Option<u64>,
        staleness_ms: Option<u64>,
    ) {
        let labels = BackendLabels {
            backend: backend_label(backend),
        };
        match transactions {
            Some(n) => {
                self.replica_behind_transactions
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            None => {
                self.replica_behind_transactions.remove(&labels);
            }
        }
        match staleness_ms {
            Some(ms) => {
                self.replica_staleness_ms
                    .get_or_create(&labels)
                    .set(i64::try_from(ms).unwrap_or(i64::MAX));
            }
            None => {
                self.replica_staleness_ms.remove(&labels);
            }
        }
    }

    fn register_client_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "client_connections",
            "Client connections accepted",
            self.client_connections_total.clone(),
        );
        // Not `client_connections`: that family name belongs to the counter above.
        r.register(
            "client_connections_open",
            "Client connections open now",
            self.client_connections_open.clone(),
        );
        r.register(
            "client_connection_errors",
            "Client connections that ended in an error, by reason",
            self.client_connection_errors.clone(),
        );
    }

    fn register_statement_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "statements",
            "Statements forwarded or answered, by route and backend",
            self.statements.clone(),
        );
        r.register_with_unit(
            "statement_duration",
            "Time from receiving a statement to the end of its response, by route",
            Unit::Seconds,
            self.statement_duration.clone(),
        );
        r.register(
            "errors",
            "Errors inside the proxy, by kind",
            self.errors.clone(),
        );
    }

    fn register_backend_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "backend_connections",
            "Pooled backend connections, by state (idle or in_use)",
            self.backend_connections.clone(),
        );
        r.register(
            "backend_connect",
            "Backend connection attempts, successful or not",
            self.backend_connects.clone(),
        );
        r.register(
            "backend_connect_errors",
            "Backend connection attempts that failed",
            self.backend_connect_errors.clone(),
        );
        r.register(
            "backend_up",
            "Whether the last connection attempt to the backend succeeded (1) or not (0)",
            self.backend_up.clone(),
        );
        r.register(
            "backend_connection_limit",
            "Connections the proxy may hold to the backend: the configured limit, or less to fit the server's max_connections",
            self.backend_connection_limit.clone(),
        );
        r.register_with_unit(
            "pool_wait",
            "Time sessions waited for a place in a full pool (only waits are counted)",
            Unit::Seconds,
            self.pool_wait.clone(),
        );
        r.register(
            "multiplex_parks",
            "Commands after which a multiplexing session gave its connections back",
            self.multiplex_parks.clone(),
        );
        r.register(
            "multiplex_holds",
            "Commands after which a multiplexing session kept its connections, by reason",
            self.multiplex_holds.clone(),
        );
        r.register(
            "optimistic_moves",
            "Optimistic transactions moved from a replica to the primary at their first write, \
             by result (moved, or failed: their reads returned other rows there)",
            self.optimistic_moves.clone(),
        );
        r.register(
            "multiplex_sessions_holding",
            "Multiplexing sessions holding their connections between commands now, by reason \
             (over client_connections_open: the share of sessions that cannot be multiplexed)",
            self.multiplex_holding.clone(),
        );
    }

    fn register_topology_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "topology_epoch",
            "Epoch of the topology in use",
            self.topology_epoch.clone(),
        );
        r.register(
            "topology_reloads",
            "Topology reloads, by result (applied, ignored or invalid)",
            self.topology_reloads.clone(),
        );
        r.register_with_unit(
            "write_hold",
            "Time writes waited while the topology was switching primaries",
            Unit::Seconds,
            self.write_hold.clone(),
        );
    }

    /// Counts an accepted client connection; it counts as open until the guard drops.
    pub fn client_connected(&self) -> ClientConnectionGuard {
        self.client_connections_total.inc();
        self.client_connections_open.inc();
        ClientConnectionGuard {
            open: self.client_connections_open.clone(),
        }
    }

    /// Counts a client connection that failed, e.g. `handshake`, `auth`, `protocol`, `tls`,
    /// `io` or `shutdown`.
    pub fn client_connection_error(&self, reason: &'static str) {
        self.client_connection_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Records a statement: `route` is `primary`, `replica`, `last_backend`, `proxy` (answered
    /// by the proxy itself) or `primary_fallback`; `backend` is the `host:port` that served it.
    pub fn statement(&self, route: &'static str, backend: &str, elapsed: Duration) {
        let labels = StatementLabels {
            route,
            backend: backend_label(backend),
        };
        self.statements.get_or_create(&labels).inc();
        self.statement_duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an error inside the proxy, e.g. `backend_connect`, `backend_lost`,
    /// `pool_timeout`, `write_hold_timeout` or `protocol`.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabels { kind }).inc();
    }

    /// Sets how many pooled connections to `backend` are idle and in use.
    pub fn set_pool(&self, backend: &str, idle: usize, in_use: usize) {
        let backend = backend_label(backend);
        self.set_pool_state(backend.clone(), "idle", idle);
        self.set_pool_state(backend, "in_use", in_use);
    }

    fn set_pool_state(&self, backend: String, state: &'static str, count: usize) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.backend_connections
            .get_or_create(&PoolLabels { backend, state })
            .set(count);
    }

    /// Sets how many connections the proxy may hold to `backend`.
    pub fn set_connection_limit(&self, backend: &str, limit: usize) {
        let labels = BackendLabels {
            backend: backend_label(backend),
        };
        self.backend_connection_limit
            .get_or_create(&labels)
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    /// A multiplexing session gave its connections back after a command.
    pub fn multiplex_parked(&self) {
        self.multiplex_parks.inc();
    }

    /// A multiplexing session kept its connections after a command, and why.
    pub fn multiplex_held(&self, reason: &'static str) {
        self.multiplex_holds
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// A multiplexing session holds its connections between commands, for `reason`, until
    /// the guard drops.
    pub fn multiplex_holding(&self, reason: &'static str) -> HoldingGuard {
        let gauge = self
            .multiplex_holding
            .get_or_create(&ReasonLabels { reason })
            .clone();
        gauge.inc();
        HoldingGuard { reason, gauge }
    }

    /// An optimistic transaction moved to the primary (`ok`), or could not.
    pub fn optimistic_moved(&self, ok: bool) {
        let result = if ok { "moved" } else { "failed" };
        self.optimistic_moves
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Records how long a session waited for a place in a full pool.
    pub fn pool_waited(&self, waited: Duration) {
        self.pool_wait.observe(waited.as_secs_f64());
    }

    /// Counts a connection attempt to `backend` and whether it succeeded.
    pub fn backend_connect(&self, backend: &str, ok: bool) {
        let labels = BackendLabels {
            backend: backend_label(backend),
        };
        self.backend_connects.get_or_create(&labels).inc();
        if !ok {
            self.backend_connect_errors.get_or_create(&labels).inc();
        }
    }

    /// Sets whether `backend` is reachable.
    pub fn set_backend_up(&self, backend: &str, up: bool) {
        let labels = BackendLabels {
            backend: backend_label(backend),
        };
        self.backend_up.get_or_create(&labels).set(i64::from(up));
    }

    /// Drops the gauges of a backend that left the topology, so it stops looking up or
    /// pooled. Its counters stay: they keep their meaning and Prometheus expects them not
    /// to vanish.
    pub fn forget_backend(&self, backend: &str) {
        let backend = backend_label(backend);
        for state in ["idle", "in_use"] {
            let labels = PoolLabels {
                backend: backend.clone(),
                state,
            };
            self.backend_connections.remove(&labels);
        }
        self.backend_connection_limit.remove(&BackendLabels {
            backend: backend.clone(),
        });
        self.backend_up.remove(&BackendLabels { backend });
    }

    /// Sets the epoch of the topology in use.
    pub fn set_topology_epoch(&self, epoch: u64) {
        self.topology_epoch.set(epoch);
    }

    /// Counts a topology reload: `applied`, `ignored` or `invalid`.
    pub fn topology_reload(&self, result: &'static str) {
        self.topology_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Records how long a write waited for a primary switch to finish.
    pub fn write_held(&self, waited: Duration) {
        self.write_hold.observe(waited.as_secs_f64());
    }

    /// Encodes every registered metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%err, "encoding metrics failed");
        }
        out
    }
}

/// The label value for a backend. The encoder writes label values verbatim, so escape
/// what OpenMetrics requires; topology names should never need it.
fn backend_label(backend: &str) -> String {
    if !backend.contains(['\\', '"', '\n']) {
        return backend.to_owned();
    }
    let mut out = String::with_capacity(backend.len() + 2);
    for c in backend.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
