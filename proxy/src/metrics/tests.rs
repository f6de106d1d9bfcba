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
    m.set_connection_limit("db2:3306", 540);
    m.pool_waited(Duration::from_millis(30));
    m.multiplex_parked();
    m.multiplex_held("transaction");
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
    assert_eq!(seen.len(), 23, "{text}");
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
fn sessions_holding_connections_are_counted_while_their_guard_lives() {
    let m = Metrics::new();
    let pinned = m.multiplex_holding("pinned");
    let tx = m.multiplex_holding("transaction");
    let series = |reason: &str| {
        sample(
            &m.encode(),
            &format!("lagless_multiplex_sessions_holding{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(series("pinned"), Some(1.0));
    assert_eq!(pinned.reason(), "pinned");
    drop(pinned);
    assert_eq!(series("pinned"), Some(0.0));
    assert_eq!(series("transaction"), Some(1.0));
    drop(tx);
    assert_eq!(series("transaction"), Some(0.0));
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
