use std::sync::Arc;
use std::time::Duration;

use super::report::{Query, SortKey, parse_query, render};
use super::store::{LATENCY_BOUNDS_US, bucket, cost_average};
use super::*;
use crate::route::SqlMode;

fn sample(us: u64, rows: u64, error: bool, placement: Placement) -> Sample {
    Sample {
        elapsed: Duration::from_micros(us),
        rows,
        error,
        placement,
        service: Some(Duration::from_micros(us)),
    }
}

fn record(d: &Digests, sql: &str, s: &Sample) {
    let id = fingerprint(sql.as_bytes(), SqlMode::default());
    d.record(id, sql.as_bytes(), SqlMode::default(), s);
}

#[test]
fn memory_stays_bounded_with_100000_distinct_statements() {
    let config = DigestConfig {
        enabled: true,
        capacity: 2_000,
        text_limit: 256,
    };
    let d = Digests::new(config);
    let padding = "x".repeat(600);
    for i in 0..100_000 {
        let sql = format!("SELECT {padding}, c{i} FROM t{i} WHERE id = {i}");
        record(&d, &sql, &sample(10, 1, false, Placement::Primary));
    }
    assert_eq!(d.len(), 2_000);
    let snap = d.snapshot();
    assert_eq!(snap.entries.len(), 2_000);
    assert!(snap.entries.iter().all(|(_, e)| e.text.len() <= 256));
    let text_bytes: usize = snap.entries.iter().map(|(_, e)| e.text.len()).sum();
    assert!(text_bytes <= 2_000 * 256);
    assert_eq!(snap.other.count, 98_000);
    assert_eq!(snap.totals().count, 100_000);
    assert_eq!(snap.totals().rows, 100_000);
    // A fingerprint admitted before the table filled keeps counting in its own entry.
    let first = format!("SELECT {padding}, c0 FROM t0 WHERE id = 7");
    record(&d, &first, &sample(10, 1, false, Placement::Primary));
    assert_eq!(d.snapshot().other.count, 98_000);
    d.reset();
    assert!(d.is_empty());
    assert_eq!(d.snapshot().totals().count, 0);
    record(&d, "SELECT 1", &sample(10, 1, false, Placement::Primary));
    assert_eq!(d.len(), 1);
}

#[test]
fn literals_count_in_one_entry_with_every_counter() {
    let d = Digests::new(DigestConfig::default());
    record(
        &d,
        "SELECT * FROM t WHERE id = 1",
        &sample(40, 1, false, Placement::Replica),
    );
    record(
        &d,
        "select * from t where id = 'x'",
        &sample(3_000, 0, false, Placement::ReplicaAfterWait),
    );
    record(
        &d,
        "SELECT * FROM t WHERE id = -2.5",
        &sample(20_000_000, 0, true, Placement::Primary),
    );
    record(
        &d,
        "SELECT * FROM t WHERE id = NULL",
        &sample(1, 0, true, Placement::Unplaced),
    );
    let snap = d.snapshot();
    assert_eq!(snap.entries.len(), 1);
    let (_, e) = &snap.entries[0];
    assert_eq!(&*e.text, "select * from t where id = ?");
    let s = &e.stats;
    assert_eq!((s.count, s.errors, s.rows), (4, 2, 1));
    assert_eq!((s.primary, s.replica, s.replica_waited), (1, 1, 1));
    assert_eq!((s.total_us, s.max_us), (20_003_041, 20_000_000));
    assert_eq!(s.latency.iter().sum::<u64>(), 4);
    assert_eq!(s.latency[0], 2);
    assert_eq!(s.latency[LATENCY_BOUNDS_US.len()], 1);
}

#[test]
fn buckets_hold_their_upper_bound() {
    assert_eq!(bucket(0), 0);
    assert_eq!(bucket(50), 0);
    assert_eq!(bucket(51), 1);
    assert_eq!(bucket(10_000_000), LATENCY_BOUNDS_US.len() - 1);
    assert_eq!(bucket(u64::MAX), LATENCY_BOUNDS_US.len());
}

#[test]
fn off_records_nothing() {
    let d = Digests::new(DigestConfig {
        enabled: false,
        ..DigestConfig::default()
    });
    record(&d, "SELECT 1", &sample(10, 1, false, Placement::Primary));
    assert!(d.is_empty());
    assert_eq!(d.snapshot().other.count, 0);
}

#[test]
fn queries_are_read_or_refused() {
    assert_eq!(
        parse_query(""),
        Ok(Query {
            sort: SortKey::TotalTime,
            limit: report::DEFAULT_LIMIT
        })
    );
    assert_eq!(
        parse_query("sort=count&limit=3&x=y"),
        Ok(Query {
            sort: SortKey::Count,
            limit: 3
        })
    );
    for (s, k) in [
        ("errors", SortKey::Errors),
        ("rows", SortKey::Rows),
        ("max_time", SortKey::MaxTime),
        ("total_time", SortKey::TotalTime),
    ] {
        assert_eq!(parse_query(&format!("sort={s}")).map(|q| q.sort), Ok(k));
    }
    assert!(parse_query("sort=text").is_err());
    assert!(parse_query("limit=-1").is_err());
}

#[test]
fn reports_sort_and_cut() -> Result<(), serde_json::Error> {
    let d = Digests::new(DigestConfig::default());
    for _ in 0..3 {
        record(
            &d,
            "SELECT a FROM t",
            &sample(10, 5, false, Placement::Replica),
        );
    }
    record(
        &d,
        "SELECT b FROM t",
        &sample(5_000, 0, true, Placement::Primary),
    );
    let render_as = |q: &str| -> Result<serde_json::Value, serde_json::Error> {
        let q = parse_query(q).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&render(d.config(), &mut d.snapshot(), q))
    };
    let by_count = render_as("sort=count")?;
    assert_eq!(by_count["digests"][0]["text"], "select a from t");
    assert_eq!(by_count["digests"][0]["count"], 3);
    assert_eq!(by_count["digests"][0]["rows"], 15);
    assert_eq!(by_count["digests"][0]["replica"], 3);
    let id = fingerprint(b"SELECT a FROM t", SqlMode::default());
    assert_eq!(by_count["digests"][0]["id"], id_hex(id));
    assert_eq!(by_count["total"]["count"], 4);
    assert_eq!(by_count["tracked"], 2);
    let by_time = render_as("sort=total_time&limit=1")?;
    assert_eq!(by_time["digests"].as_array().map(Vec::len), Some(1));
    assert_eq!(by_time["digests"][0]["text"], "select b from t");
    assert_eq!(by_time["digests"][0]["errors"], 1);
    assert_eq!(by_time["digests"][0]["max_time_us"], 5_000);
    assert_eq!(by_time["digests"][0]["latency_histogram"][6], 1);
    Ok(())
}

#[test]
fn prometheus_labels_only_the_top_fingerprints() {
    let d = Arc::new(Digests::new(DigestConfig::default()));
    for i in 0..50u64 {
        let sql = format!("SELECT c{i} FROM t");
        record(&d, &sql, &sample(100 + i, 1, false, Placement::Primary));
    }
    let mut metrics = crate::metrics::Metrics::builder();
    metrics
        .registry_mut()
        .register_collector(Box::new(prometheus::DigestCollector(d.clone())));
    let text = metrics.build().encode();
    let labelled = text
        .lines()
        .filter(|l| l.starts_with("lagless_digest_statements_total{digest="))
        .count();
    assert_eq!(labelled, prometheus::TOP, "{text}");
    assert!(
        text.contains("lagless_digest_statements_all_total 50"),
        "{text}"
    );
    assert!(text.contains("lagless_digests_tracked 50"), "{text}");
    for family in [
        "lagless_digest_errors_total{digest=",
        "lagless_digest_rows_total{digest=",
        "lagless_digest_time_seconds_total{digest=",
        "lagless_digest_errors_all_total 0",
        "lagless_digest_rows_all_total 50",
        "lagless_digest_time_all_seconds_total ",
        "lagless_digest_other_statements_total 0",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    // The slowest is among them, by id.
    let slowest = fingerprint(b"SELECT c49 FROM t", SqlMode::default());
    assert!(
        text.contains(&format!("digest=\"{}\"", id_hex(slowest))),
        "{text}"
    );
}

#[test]
fn concurrent_recording_keeps_the_bound_and_every_count() {
    let d = Digests::new(DigestConfig {
        enabled: true,
        capacity: 100,
        text_limit: 64,
    });
    std::thread::scope(|s| {
        for t in 0..4 {
            let d = &d;
            s.spawn(move || {
                for i in 0..5_000 {
                    let sql = format!("SELECT c{} FROM t{t} WHERE id = {i}", i % 200);
                    record(d, &sql, &sample(5, 1, false, Placement::Primary));
                }
            });
        }
    });
    assert_eq!(d.len(), 100);
    let snap = d.snapshot();
    assert_eq!(snap.entries.len(), 100);
    assert_eq!(snap.totals().count, 20_000);
    assert_eq!(snap.totals().primary, 20_000);
}

#[test]
fn a_statements_cost_follows_its_round_trips_slowly() {
    let d = Digests::new(DigestConfig::default());
    let id = fingerprint(b"SELECT c FROM t WHERE id = 1", SqlMode::default());
    assert_eq!(d.cost(id), None);
    record(
        &d,
        "SELECT c FROM t WHERE id = 1",
        &sample(80, 1, false, Placement::Replica),
    );
    assert_eq!(d.cost(id), Some(Duration::from_micros(80)));
    // One slow execution (a new connection) moves it an eighth of the way.
    record(
        &d,
        "SELECT c FROM t WHERE id = 2",
        &sample(880, 1, false, Placement::Primary),
    );
    assert_eq!(d.cost(id), Some(Duration::from_micros(180)));
    // An execution whose own round trip is not known apart from a wait teaches nothing.
    let mut waited = sample(5_000, 1, false, Placement::ReplicaAfterWait);
    waited.service = None;
    record(&d, "SELECT c FROM t WHERE id = 3", &waited);
    assert_eq!(d.cost(id), Some(Duration::from_micros(180)));
    assert_eq!(cost_average(0, 40), 40);
    assert_eq!(cost_average(1, 0), 1);
    assert_eq!(cost_average(u32::MAX, u32::MAX), u32::MAX);
}
