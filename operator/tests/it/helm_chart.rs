//! The Helm chart (`charts/lagless`) lints, renders and passes the Kubernetes schemas: runs
//! `charts/lagless/tests/check_chart.py`, which drives Helm's own engine (PyPI
//! `helm-python-sdk`) and `kubernetes-validate`, strict, against Kubernetes 1.37. No cluster
//! and no `helm` binary are needed; `scripts/setup.sh` installs both packages.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use lagless_operator::kube::DEFAULT_PROXY_IMAGE;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// The value of a top-level `key: value` line of a YAML file (enough for Chart.yaml).
fn top_level(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        Some(value.trim().trim_matches('"').to_string())
    })
}

#[test]
fn the_chart_lints_renders_and_passes_the_kubernetes_schemas() {
    let checker = repo("charts/lagless/tests/check_chart.py");
    let out = Command::new("python3")
        .arg(&checker)
        .current_dir(repo(""))
        .output()
        .expect("python3 is needed for the chart checks: run scripts/setup.sh");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the Helm chart checks failed ({}):\n{said}",
        out.status
    );
    // Passing means checks ran, not that the script found nothing to do.
    assert!(
        said.contains(" passed, 0 failed"),
        "the chart checker said:\n{said}"
    );
}

#[test]
fn the_chart_ships_this_release() {
    let chart = std::fs::read_to_string(repo("charts/lagless/Chart.yaml")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(top_level(&chart, "appVersion").as_deref(), Some(version));
    // The proxy image the chart gives the operator by default is the one the operator would
    // use without it: `<proxy.image.repository>:<appVersion>`.
    let values = std::fs::read_to_string(repo("charts/lagless/values.yaml")).unwrap();
    let (repository, _) = DEFAULT_PROXY_IMAGE.rsplit_once(':').unwrap();
    assert!(
        values.contains(&format!("repository: {repository}\n")),
        "values.yaml does not default proxy.image.repository to {repository}"
    );
    assert_eq!(DEFAULT_PROXY_IMAGE, format!("{repository}:{version}"));
}

#[test]
fn the_chart_carries_the_generated_crds() {
    // Helm installs what is in the chart's crds/; it must be the CRDs generated from the types.
    for file in [
        "mysqlcluster.yaml",
        "mysqltenantpool.yaml",
        "mysqlaccounts.yaml",
    ] {
        let chart = std::fs::read(repo(&format!("charts/lagless/crds/{file}"))).unwrap();
        let generated = std::fs::read(repo(&format!("crds/{file}"))).unwrap();
        assert!(
            chart == generated,
            "charts/lagless/crds/{file} differs from crds/{file}: cp crds/{file} \
             charts/lagless/crds/"
        );
    }
}

/// Every sample name a registry's encoded output offers a query: each family's own name from
/// its `# TYPE` line with the suffixes of its type (a counter's `_total`, a histogram's
/// `_bucket`, `_sum` and `_count`), and every sample line's name.
fn sample_names(encoded: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in encoded.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            if !name.is_empty() {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// The `lagless_…` metric names a text uses (PromQL in rules and panels).
fn used_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("lagless_") {
        let preceded = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // `lagless_operator_*` in prose names a prefix, not a metric.
        if !preceded && !tail[..end].ends_with('_') {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_use_is_exported() {
    // The registries the proxy and the controller serve at /metrics, with a series in the
    // families that have labels, encoded as they are served.
    // (A family without a series is not encoded at all: each is given one, as traffic would.)
    let proxy = lagless_proxy::metrics::Metrics::new();
    let backend = "db-1:3306";
    let _open = proxy.client_connected();
    proxy.client_connection_error("eof");
    proxy.statement("replica", backend, Duration::from_millis(2));
    proxy.error("protocol");
    proxy.set_pool(backend, 1, 1);
    proxy.set_connection_limit(backend, 10);
    proxy.multiplex_parked();
    proxy.multiplex_held("transaction");
    let _holding = proxy.multiplex_holding("transaction");
    proxy.pool_waited(Duration::from_millis(1));
    proxy.backend_connect(backend, false);
    proxy.set_backend_up(backend, false);
    proxy.set_topology_epoch(3);
    proxy.topology_reload("applied");
    proxy.write_held(Duration::from_millis(5));
    proxy.read(backend, "strict");
    proxy.read_fallback("no_replica");
    proxy.consistency_waited(Duration::from_millis(3));
    proxy.set_replica_distance(backend, Some(3), Some(40));
    let operator = lagless_operator::kube::metrics::Metrics::new();
    operator.observe(Duration::from_millis(20), true);
    operator.failovers.inc();
    let gauges = lagless_operator::kube::metrics::cluster::ClusterGauges {
        paused: true,
        primary_semi_sync: Some(false),
        probe_failures: vec![("db-1".into(), 3)],
    };
    operator.clusters.observe("prod", "db", &gauges);
    operator.clusters.promoted(
        "prod",
        "db",
        &lagless_operator::orchestrate::Cause::Failover,
    );
    operator
        .clusters
        .backup_finished("prod", "db", Some(1_796_601_600));
    operator.clusters.backup_finished("prod", "db", None);
    operator
        .clusters
        .archive("prod", "db", Some((true, Some(0.4))));
    let exported: BTreeSet<String> = sample_names(&proxy.encode())
        .into_iter()
        .chain(sample_names(&operator.encode()))
        .collect();
    assert!(
        exported.contains("lagless_read_fallbacks_total")
            && exported.contains("lagless_operator_reconcile_duration_seconds_bucket"),
        "{exported:?}"
    );

    let rules = std::fs::read_to_string(repo("charts/lagless/rules/lagless.rules.yaml")).unwrap();
    let dashboard =
        std::fs::read_to_string(repo("charts/lagless/dashboards/lagless.json")).unwrap();
    // The rules as PromQL only (their comments name no metric that must exist).
    let rules: String = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for (file, text) in [("rules", &rules), ("dashboard", &dashboard)] {
        let used = used_names(text);
        assert!(used.len() >= 8, "{file} uses only {used:?}");
        let missing: Vec<&String> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "charts/lagless {file} uses metrics nothing exports: {missing:?}\nexported: {exported:?}"
        );
    }
    // What the alerts are for, each by the metric it needs.
    let used = used_names(&rules);
    for needed in [
        "lagless_operator_primary_changes_total",
        "lagless_replica_behind_transactions",
        "lagless_read_fallbacks_total",
        "lagless_backend_up",
        "lagless_operator_member_probe_failures",
        "lagless_operator_primary_semi_sync",
    ] {
        assert!(used.contains(needed), "no alert uses {needed}");
    }
    // The check itself catches a name that is not exported.
    assert!(!exported.contains("lagless_replica_lag_seconds"));
    assert_eq!(
        used_names("rate(lagless_reads_total[5m]) / x_lagless_y, lagless_*"),
        BTreeSet::from(["lagless_reads_total".to_string()])
    );
}
