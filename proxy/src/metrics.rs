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
    topology_epoch: Gauge<u64, AtomicU64>,
    topology_reloads: Family<ResultLabels, Counter>,
    write_hold: Histogram,
    reads: Family<ReadLabels, Counter>,
    read_fallbacks: Family<ReasonLabels, Counter>,
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
            topology_epoch: Gauge::default(),
            topology_reloads: Family::default(),
            write_hold: latency_histogram(),
            reads: Family::default(),
            read_fallbacks: Family::default(),
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
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The value of the sample written exactly as `series` (name and labels), if any.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.parse().ok()
        })
    }

    fn value(metrics: &Metrics, series: &str) -> f64 {
        let text = metrics.encode();
        sample(&text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
    }

    /// Metrics with one sample in every family: empty families are not encoded.
    fn exercised() -> (Metrics, ClientConnectionGuard) {
        let m = Metrics::new();
        let guard = m.client_connected();
        m.client_connection_error("auth");
        m.statement("primary", "db1:3306", Duration::from_millis(1));
        m.error("protocol");
        m.set_pool("db1:3306", 1, 0);
        m.backend_connect("db1:3306", false);
        m.set_backend_up("db1:3306", false);
        m.set_topology_epoch(3);
        m.topology_reload("applied");
        m.write_held(Duration::from_millis(1));
        m.read("db2:3306", "strict");
        m.read_fallback("no_replica");
        m.consistency_waited(Duration::from_millis(1));
        m.set_replica_distance("db2:3306", Some(1), Some(5));
        (m, guard)
    }

    #[test]
    fn encodes_openmetrics_with_eof() {
        let (m, _guard) = exercised();
        let text = m.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE lagless_statement_duration_seconds histogram\n"));
        assert!(text.contains("# UNIT lagless_write_hold_seconds seconds\n"));
    }

    #[test]
    fn family_names_are_unique() {
        let (m, _guard) = exercised();
        let text = m.encode();
        let mut seen = HashSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(seen.insert(name.to_owned()), "duplicate family {name}");
        }
        assert_eq!(seen.len(), 18, "{text}");
    }

    #[test]
    fn backend_handles_count_into_the_same_series() {
        let m = Metrics::new();
        let h = m.backend_handle("db2:3306");
        h.statement("replica", Duration::from_millis(1));
        h.statement("replica", Duration::from_millis(2));
        m.statement("replica", "db2:3306", Duration::from_millis(3));
        h.read("strict");
        h.read("no-such-mode");
        assert_eq!(
            value(
                &m,
                r#"lagless_statements_total{route="replica",backend="db2:3306"}"#
            ),
            3.0
        );
        assert_eq!(
            value(
                &m,
                r#"lagless_statement_duration_seconds_count{route="replica"}"#
            ),
            3.0
        );
        assert_eq!(
            value(
                &m,
                r#"lagless_reads_total{backend="db2:3306",mode="strict"}"#
            ),
            1.0
        );
    }

    #[test]
    fn consistency_series() {
        let m = Metrics::new();
        m.read("db2:3306", "strict");
        m.read("db2:3306", "strict");
        m.read("db1:3306", "primary");
        m.read_fallback("wait_timeout");
        m.consistency_waited(Duration::from_millis(3));
        m.set_replica_distance("db2:3306", Some(7), Some(1200));
        assert_eq!(
            value(
                &m,
                r#"lagless_reads_total{backend="db2:3306",mode="strict"}"#
            ),
            2.0
        );
        assert_eq!(
            value(
                &m,
                r#"lagless_reads_total{backend="db1:3306",mode="primary"}"#
            ),
            1.0
        );
        assert_eq!(
            value(&m, r#"lagless_read_fallbacks_total{reason="wait_timeout"}"#),
            1.0
        );
        assert_eq!(value(&m, "lagless_consistency_wait_seconds_count"), 1.0);
        assert_eq!(
            value(
                &m,
                r#"lagless_replica_behind_transactions{backend="db2:3306"}"#
            ),
            7.0
        );
        assert_eq!(
            value(&m, r#"lagless_replica_staleness_ms{backend="db2:3306"}"#),
            1200.0
        );
        // An unknown position clears the series rather than reporting zero.
        m.set_replica_distance("db2:3306", None, None);
        assert!(!m.encode().contains("lagless_replica_behind_transactions{"));
    }

    #[test]
    fn client_connections_count_and_guard_decrements() {
        let m = Metrics::new();
        let first = m.client_connected();
        let second = m.client_connected();
        assert_eq!(value(&m, "lagless_client_connections_total"), 2.0);
        assert_eq!(value(&m, "lagless_client_connections_open"), 2.0);
        drop(first);
        assert_eq!(value(&m, "lagless_client_connections_open"), 1.0);
        drop(second);
        assert_eq!(value(&m, "lagless_client_connections_open"), 0.0);
        assert_eq!(value(&m, "lagless_client_connections_total"), 2.0);
    }

    #[test]
    fn client_connection_errors_by_reason() {
        let m = Metrics::new();
        m.client_connection_error("auth");
        m.client_connection_error("auth");
        m.client_connection_error("tls");
        assert_eq!(
            value(
                &m,
                r#"lagless_client_connection_errors_total{reason="auth"}"#
            ),
            2.0
        );
        assert_eq!(
            value(
                &m,
                r#"lagless_client_connection_errors_total{reason="tls"}"#
            ),
            1.0
        );
    }

    #[test]
    fn statements_count_by_route_and_backend() {
        let m = Metrics::new();
        m.statement("replica", "db2:3306", Duration::from_micros(300));
        m.statement("replica", "db2:3306", Duration::from_millis(3));
        m.statement("primary", "db1:3306", Duration::from_millis(20));
        let replica = r#"lagless_statements_total{route="replica",backend="db2:3306"}"#;
        let primary = r#"lagless_statements_total{route="primary",backend="db1:3306"}"#;
        assert_eq!(value(&m, replica), 2.0);
        assert_eq!(value(&m, primary), 1.0);
    }

    #[test]
    fn statement_duration_histogram() {
        let m = Metrics::new();
        m.statement("replica", "db2:3306", Duration::from_micros(300));
        m.statement("replica", "db2:3306", Duration::from_millis(3));
        m.statement("replica", "db3:3306", Duration::from_secs(20));
        let name = "lagless_statement_duration_seconds";
        assert_eq!(
            value(&m, &format!(r#"{name}_count{{route="replica"}}"#)),
            3.0
        );
        let sum = value(&m, &format!(r#"{name}_sum{{route="replica"}}"#));
        assert!((sum - 20.0033).abs() < 1e-9, "{sum}");
        let bucket = |le: &str| {
            value(
                &m,
                &format!(r#"{name}_bucket{{le="{le}",route="replica"}}"#),
            )
        };
        assert_eq!(bucket("0.00025"), 0.0);
        assert_eq!(bucket("0.0005"), 1.0);
        assert_eq!(bucket("0.005"), 2.0);
        assert_eq!(bucket("10.0"), 2.0);
        assert_eq!(bucket("+Inf"), 3.0);
    }

    #[test]
    fn errors_by_kind() {
        let m = Metrics::new();
        m.error("pool_timeout");
        m.error("backend_lost");
        m.error("pool_timeout");
        assert_eq!(
            value(&m, r#"lagless_errors_total{kind="pool_timeout"}"#),
            2.0
        );
        assert_eq!(
            value(&m, r#"lagless_errors_total{kind="backend_lost"}"#),
            1.0
        );
    }

    #[test]
    fn pool_gauges_follow_latest_values() {
        let m = Metrics::new();
        m.set_pool("db1:3306", 4, 2);
        m.set_pool("db1:3306", 3, 5);
        let idle = r#"lagless_backend_connections{backend="db1:3306",state="idle"}"#;
        let in_use = r#"lagless_backend_connections{backend="db1:3306",state="in_use"}"#;
        assert_eq!(value(&m, idle), 3.0);
        assert_eq!(value(&m, in_use), 5.0);
    }

    #[test]
    fn backend_connects_count_attempts_and_failures() {
        let m = Metrics::new();
        m.backend_connect("db1:3306", true);
        m.backend_connect("db1:3306", false);
        m.backend_connect("db1:3306", true);
        let labels = r#"{backend="db1:3306"}"#;
        assert_eq!(
            value(&m, &format!("lagless_backend_connect_total{labels}")),
            3.0
        );
        assert_eq!(
            value(&m, &format!("lagless_backend_connect_errors_total{labels}")),
            1.0
        );
    }

    #[test]
    fn backend_up_gauge() {
        let m = Metrics::new();
        let series = r#"lagless_backend_up{backend="db2:3306"}"#;
        m.set_backend_up("db2:3306", true);
        assert_eq!(value(&m, series), 1.0);
        m.set_backend_up("db2:3306", false);
        assert_eq!(value(&m, series), 0.0);
    }

    #[test]
    fn forget_backend_drops_gauges_but_keeps_counters() {
        let m = Metrics::new();
        m.set_backend_up("db2:3306", true);
        m.set_pool("db2:3306", 1, 1);
        m.backend_connect("db2:3306", true);
        m.forget_backend("db2:3306");
        let text = m.encode();
        assert!(!text.contains(r#"lagless_backend_up{backend="db2:3306"}"#));
        assert!(!text.contains(r#"lagless_backend_connections{backend="db2:3306""#));
        let connects = r#"lagless_backend_connect_total{backend="db2:3306"}"#;
        assert_eq!(sample(&text, connects), Some(1.0));
    }

    #[test]
    fn topology_epoch_and_reloads() {
        let m = Metrics::new();
        m.set_topology_epoch(u64::from(u32::MAX) + 7);
        m.topology_reload("applied");
        m.topology_reload("invalid");
        m.topology_reload("applied");
        assert_eq!(value(&m, "lagless_topology_epoch"), 4_294_967_302.0);
        assert_eq!(
            value(&m, r#"lagless_topology_reloads_total{result="applied"}"#),
            2.0
        );
        assert_eq!(
            value(&m, r#"lagless_topology_reloads_total{result="invalid"}"#),
            1.0
        );
    }

    #[test]
    fn write_hold_histogram() {
        let m = Metrics::new();
        m.write_held(Duration::from_millis(40));
        m.write_held(Duration::from_millis(400));
        assert_eq!(value(&m, "lagless_write_hold_seconds_count"), 2.0);
        assert_eq!(
            value(&m, r#"lagless_write_hold_seconds_bucket{le="0.05"}"#),
            1.0
        );
        assert_eq!(
            value(&m, r#"lagless_write_hold_seconds_bucket{le="0.5"}"#),
            2.0
        );
        let sum = value(&m, "lagless_write_hold_seconds_sum");
        assert!((sum - 0.44).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn builder_registers_extra_metrics_with_prefix() {
        let reads: Family<RouteLabels, Counter> = Family::default();
        let mut builder = Metrics::builder();
        builder
            .registry_mut()
            .register("consistent_reads", "Reads by mode", reads.clone());
        let m = builder.build();
        reads.get_or_create(&RouteLabels { route: "replica" }).inc();
        assert_eq!(
            value(&m, r#"lagless_consistent_reads_total{route="replica"}"#),
            1.0
        );
    }

    #[test]
    fn backend_labels_are_escaped() {
        let m = Metrics::new();
        m.set_backend_up("bad\"host\n:1\\", true);
        assert_eq!(
            value(&m, r#"lagless_backend_up{backend="bad\"host\n:1\\"}"#),
            1.0
        );
    }
}
