//! The consistency checker: writers commit increasing values through the proxy; readers record,
//! for each read, the last value acknowledged before the read was sent, and the read must
//! return at least that. Run against a real cluster where one replica applies everything two
//! seconds late and another's SQL thread is stopped and restarted during the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts};

use crate::support::{Harness, metric_reaching, metric_sum};

const WRITERS: usize = 4;

/// Strict reads to run through both proxies; a few seconds on a laptop.
const STRICT_TARGET: u64 = 50_000;
/// What a slow machine must manage before the deadline: still thousands of strict reads,
/// racing writers and faults, each one checked.
const STRICT_MIN: u64 = 10_000;
/// Read-only transactions (each a start, a read and a commit) to run through both proxies,
/// and what a slow machine must manage.
const RO_TRANSACTIONS: u64 = 10_000;
const RO_TRANSACTIONS_MIN: u64 = 3_000;
/// Session-mode reads (each right after its own write) and how many of them replicas must
/// serve, reached however long a slow machine takes (up to [`SESSION_MAX`]).
const SESSION_READS: u64 = 500;
const SESSION_ON_REPLICAS: f64 = 100.0;
/// The session-mode run lasts at least this, to cover the faults and the delayed replica.
const SESSION_MIN: Duration = Duration::from_secs(6);
const SESSION_MAX: Duration = Duration::from_secs(120);

/// What one run saw.
#[derive(Debug, Default)]
struct Outcome {
    reads: u64,
    violations: u64,
}

struct Shared {
    acked: Vec<AtomicI64>,
    stop: AtomicBool,
    reads: AtomicU64,
    violations: AtomicU64,
}

async fn setup(h: &Harness) {
    let mut c = h.cluster.primary().app_conn().await.unwrap();
    c.query_drop("CREATE TABLE IF NOT EXISTS counter (id INT PRIMARY KEY, v BIGINT NOT NULL)")
        .await
        .unwrap();
    for w in 0..WRITERS {
        c.exec_drop("REPLACE INTO counter VALUES (?, 0)", (w,))
            .await
            .unwrap();
    }
    h.cluster
        .wait_replicated(Duration::from_secs(20))
        .await
        .unwrap();
}

/// Faults during the run: replica 1 is delayed by MASTER_DELAY=2 for the whole run; replica
/// 2's SQL thread stops for a while and starts again.
async fn faults(h: &Harness, stop: &AtomicBool) {
    let r2 = h.cluster.member(2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    r2.stop_sql_thread().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    r2.start_sql_thread().await.unwrap();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How readers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// One autocommit `SELECT`.
    Plain,
    /// A `SELECT` inside a transaction, `START TRANSACTION READ ONLY` for even readers and a
    /// plain `BEGIN` (optimistic) for odd ones, then `COMMIT`: the floor is taken before the
    /// transaction starts. Odd writers write in transactions too.
    Transactions,
}

async fn reader(
    opts: Opts,
    r: usize,
    s: Arc<Shared>,
    mode: &'static str,
    target: u64,
    reads: Reads,
) {
    let mut c = Conn::new(opts).await.unwrap();
    c.query_drop(format!("SET lagless_consistency = '{mode}'"))
        .await
        .unwrap();
    let mut i = r;
    while !s.stop.load(Ordering::Relaxed) && s.reads.load(Ordering::Relaxed) < target {
        let w = i % WRITERS;
        i += 1;
        let floor = s.acked[w].load(Ordering::SeqCst);
        if reads == Reads::Transactions {
            let begin = if r.is_multiple_of(2) {
                "START TRANSACTION READ ONLY"
            } else {
                "BEGIN"
            };
            c.query_drop(begin).await.unwrap();
        }
        let got: i64 = c
            .query_first(format!("SELECT v FROM counter WHERE id = {w}"))
            .await
            .unwrap()
            .unwrap();
        if reads == Reads::Transactions {
            c.query_drop("COMMIT").await.unwrap();
        }
        s.reads.fetch_add(1, Ordering::Relaxed);
        if got < floor {
            s.violations.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs writers (through `write_opts`) and readers (through each of `read_opts`) until
/// `target` reads or `max` time.
async fn check(
    h: &Harness,
    write_opts: Opts,
    read_opts: Vec<Opts>,
    mode: &'static str,
    target: u64,
    max: Duration,
    reads: Reads,
) -> Outcome {
    let s = Arc::new(Shared {
        acked: (0..WRITERS).map(|_| AtomicI64::new(0)).collect(),
        stop: AtomicBool::new(false),
        reads: AtomicU64::new(0),
        violations: AtomicU64::new(0),
    });
    // Writers start from the current values.
    let mut c = Conn::new(write_opts.clone()).await.unwrap();
    c.query_drop("SET lagless_consistency = 'strict'")
        .await
        .unwrap();
    let rows: Vec<(i64, i64)> = c.query("SELECT id, v FROM counter").await.unwrap();
    for (id, v) in rows {
        s.acked[id as usize].store(v, Ordering::SeqCst);
    }
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let s = s.clone();
        let opts = write_opts.clone();
        tasks.push(tokio::spawn(
            async move { writer_from(opts, w, s, reads).await },
        ));
    }
    for (r, opts) in read_opts.into_iter().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(reader(opts, r, s, mode, target, reads)));
    }
    let started = Instant::now();
    let fault_stop = AtomicBool::new(false);
    let watch = async {
        while s.reads.load(Ordering::Relaxed) < target && started.elapsed() < max {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s.stop.store(true, Ordering::Relaxed);
        fault_stop.store(true, Ordering::Relaxed);
    };
    tokio::join!(watch, faults(h, &fault_stop));
    for t in tasks {
        t.await.unwrap();
    }
    Outcome {
        reads: s.reads.load(Ordering::Relaxed),
        violations: s.violations.load(Ordering::Relaxed),
    }
}

async fn writer_from(opts: Opts, w: usize, s: Arc<Shared>, reads: Reads) {
    let start = s.acked[w].load(Ordering::SeqCst);
    let mut c = Conn::new(opts).await.unwrap();
    let mut v = start;
    // With transactions, odd writers read their row first in a plain transaction: it starts
    // on a replica and moves to the primary at the write, its read checked there.
    let in_transaction = reads == Reads::Transactions && w % 2 == 1;
    while !s.stop.load(Ordering::Relaxed) {
        v += 1;
        if in_transaction {
            c.query_drop("BEGIN").await.unwrap();
            let seen: Option<i64> = c
                .exec_first("SELECT v FROM counter WHERE id = ?", (w,))
                .await
                .unwrap();
            if seen != Some(v - 1) {
                s.violations.fetch_add(1, Ordering::Relaxed);
            }
        }
        let updated = c
            .exec_drop("UPDATE counter SET v = ? WHERE id = ?", (v, w))
            .await;
        if in_transaction {
            match updated {
                Ok(()) => c.query_drop("COMMIT").await.unwrap(),
                // The read changed under the move (it cannot here: only this writer writes
                // the row): rolled back, run again.
                Err(mysql_async::Error::Server(e)) if e.code == 1213 => {
                    v -= 1;
                    continue;
                }
                Err(e) => panic!("{e}"),
            }
        } else {
            updated.unwrap();
        }
        s.acked[w].store(v, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A second proxy process in front of the same cluster, reading the same topology file, and
/// `per_proxy` readers' options through each of the two.
async fn two_proxies(h: &Harness, per_proxy: usize) -> (crate::support::ProxyProcess, Vec<Opts>) {
    // The second proxy runs with the program's defaults: its cheap strict reads run on the
    // primary, the first proxy's all go to replicas (the harness turns that rule off).
    let second = crate::support::spawn_proxy_process(h, &[]).await;
    let mut readers = Vec::new();
    for _ in 0..per_proxy {
        readers.push(h.opts("app", "app-pass", Some("app")));
        readers.push(second.opts("app", "app-pass", Some("app")));
    }
    (second, readers)
}

async fn delayed_cluster() -> Harness {
    let h = Harness::start(3).await;
    h.cluster.member(1).set_master_delay(2).await.unwrap();
    setup(&h).await;
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_reads_are_never_stale_across_two_proxies() {
    let h = delayed_cluster().await;
    let (_second, readers) = two_proxies(&h, 4).await;
    let out = check(
        &h,
        h.opts("app", "app-pass", Some("app")),
        readers,
        "strict",
        STRICT_TARGET,
        Duration::from_secs(240),
        Reads::Plain,
    )
    .await;
    eprintln!("strict: {out:?}");
    assert_eq!(out.violations, 0, "{out:?}");
    assert!(out.reads >= STRICT_MIN, "{out:?}");
    // Most of those reads were served by replicas, not by falling back to the primary: half
    // the readers use the first proxy, so thousands of its reads were strict replica reads.
    let admin = h.admin.unwrap();
    let on_replicas = metric_reaching(
        admin,
        "lagless_reads_total",
        "mode=\"strict\"",
        (STRICT_MIN / 4) as f64,
    )
    .await;
    let on_primary = metric_sum(admin, "lagless_reads_total", "mode=\"primary\"").await;
    eprintln!(
        "strict reads through the first proxy: {on_replicas} on replicas, {on_primary} on the primary"
    );
    assert!(
        on_replicas > on_primary,
        "{on_replicas} replica reads vs {on_primary} primary reads"
    );
    assert!(
        on_replicas >= (STRICT_MIN / 4) as f64,
        "only {on_replicas} strict reads through the first proxy were served by replicas"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_transactions_on_replicas_are_never_stale_across_two_proxies() {
    let h = delayed_cluster().await;
    let (_second, readers) = two_proxies(&h, 3).await;
    let out = check(
        &h,
        h.opts("app", "app-pass", Some("app")),
        readers,
        "strict",
        RO_TRANSACTIONS,
        Duration::from_secs(240),
        Reads::Transactions,
    )
    .await;
    eprintln!("strict transactions: {out:?}");
    assert_eq!(out.violations, 0, "{out:?}");
    assert!(out.reads >= RO_TRANSACTIONS_MIN, "{out:?}");
    // Replicas served them: through the first proxy, thousands of the transactions'
    // statements ran on replicas (each transaction is three).
    let admin = h.admin.unwrap();
    let on_replicas = metric_sum(admin, "lagless_statements_total", "route=\"replica\"").await;
    eprintln!("statements on replicas through the first proxy: {on_replicas}");
    assert!(
        on_replicas >= (RO_TRANSACTIONS_MIN / 2) as f64,
        "only {on_replicas} statements of read-only transactions ran on replicas"
    );
    // The writers' transactions started on replicas and moved at their writes.
    let moved = metric_sum(admin, "lagless_optimistic_moves_total", "result=\"moved\"").await;
    eprintln!("optimistic transactions moved to the primary: {moved}");
    assert!(moved > 0.0, "no optimistic transaction moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_reads_its_own_writes() {
    let h = delayed_cluster().await;
    let s = Arc::new(Shared {
        acked: (0..WRITERS).map(|_| AtomicI64::new(0)).collect(),
        stop: AtomicBool::new(false),
        reads: AtomicU64::new(0),
        violations: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let s = s.clone();
        let opts = h.opts("app", "app-pass", Some("app"));
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(opts.clone()).await.unwrap();
            c.query_drop("SET lagless_consistency = 'session'")
                .await
                .unwrap();
            drop(c);
            writer_session(opts, w, s).await
        }));
    }
    let fault_stop = AtomicBool::new(false);
    let admin = h.admin.unwrap();
    // At least through the faults, then until the volume is there (or a generous deadline).
    let run = async {
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let elapsed = started.elapsed();
            if elapsed >= SESSION_MAX {
                break;
            }
            if elapsed >= SESSION_MIN
                && s.reads.load(Ordering::Relaxed) > SESSION_READS
                && metric_sum(admin, "lagless_reads_total", "mode=\"session\"").await
                    > SESSION_ON_REPLICAS
            {
                break;
            }
        }
        s.stop.store(true, Ordering::Relaxed);
        fault_stop.store(true, Ordering::Relaxed);
    };
    tokio::join!(run, faults(&h, &fault_stop));
    for t in tasks {
        t.await.unwrap();
    }
    let (reads, violations) = (
        s.reads.load(Ordering::Relaxed),
        s.violations.load(Ordering::Relaxed),
    );
    eprintln!("session: {reads} reads, {violations} violations");
    assert_eq!(violations, 0);
    assert!(reads > SESSION_READS, "{reads}");
    let on_replicas = metric_sum(admin, "lagless_reads_total", "mode=\"session\"").await;
    assert!(
        on_replicas > SESSION_ON_REPLICAS,
        "only {on_replicas} session-mode reads were served by replicas"
    );
}

async fn writer_session(opts: Opts, w: usize, s: Arc<Shared>) {
    let mut c = Conn::new(opts).await.unwrap();
    c.query_drop("SET lagless_consistency = 'session'")
        .await
        .unwrap();
    let mut v: i64 = c
        .exec_first(
            "SELECT /* lagless:route=primary */ v FROM counter WHERE id = ?",
            (w,),
        )
        .await
        .unwrap()
        .unwrap();
    while !s.stop.load(Ordering::Relaxed) {
        v += 1;
        c.exec_drop("UPDATE counter SET v = ? WHERE id = ?", (v, w))
            .await
            .unwrap();
        let got: i64 = c
            .query_first(format!("SELECT v FROM counter WHERE id = {w}"))
            .await
            .unwrap()
            .unwrap();
        s.reads.fetch_add(1, Ordering::Relaxed);
        if got < v {
            s.violations.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_mode_reads_every_write_of_this_proxy() {
    let h = delayed_cluster().await;
    let readers = (0..6)
        .map(|_| h.opts("app", "app-pass", Some("app")))
        .collect();
    let out = check(
        &h,
        h.opts("app", "app-pass", Some("app")),
        readers,
        "proxy",
        10_000,
        Duration::from_secs(120),
        Reads::Plain,
    )
    .await;
    eprintln!("proxy: {out:?}");
    assert!(out.reads >= 10_000, "{out:?}");
    assert_eq!(out.violations, 0, "{out:?}");
    let on_replicas = metric_sum(h.admin.unwrap(), "lagless_reads_total", "mode=\"proxy\"").await;
    assert!(
        on_replicas > 1000.0,
        "only {on_replicas} proxy-mode reads were served by replicas"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventual_reads_do_go_stale_so_the_checker_can_see_it() {
    let h = delayed_cluster().await;
    let readers = (0..6)
        .map(|_| h.opts("app", "app-pass", Some("app")))
        .collect();
    let out = check(
        &h,
        h.opts("app", "app-pass", Some("app")),
        readers,
        "eventual",
        5_000,
        Duration::from_secs(60),
        Reads::Plain,
    )
    .await;
    eprintln!("eventual: {out:?}");
    assert!(
        out.violations > 0,
        "eventual consistency showed no stale read: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_strict_reads_go_to_replicas_under_light_writes() {
    let h = Harness::start(3).await;
    setup(&h).await;
    let mut w = h.app().await;
    let mut r = h.app().await;
    let mut on_replica = 0;
    let total = 400;
    for i in 0..total {
        if i % 10 == 0 {
            w.exec_drop("UPDATE counter SET v = v + 1 WHERE id = 0", ())
                .await
                .unwrap();
        }
        let id: i64 = r.query_first("SELECT @@server_id").await.unwrap().unwrap();
        if id != 100 {
            on_replica += 1;
        }
    }
    let share = f64::from(on_replica) / f64::from(total);
    eprintln!("strict reads served by replicas: {:.1}%", share * 100.0);
    assert!(
        share > 0.8,
        "only {:.1}% of reads went to replicas",
        share * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_mode_never_reads_older_than_its_bound() {
    let h = Harness::start(2).await;
    setup(&h).await;
    let mut r = h.app().await;
    r.query_drop("SET lagless_consistency = 'bounded(5s)'")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let id: i64 = r.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert_eq!(id, 101, "a caught-up replica serves bounded reads");

    // The only replica now applies everything three seconds late.
    h.cluster.member(1).set_master_delay(3).await.unwrap();
    r.query_drop("SET lagless_consistency = 'bounded(1000ms)'")
        .await
        .unwrap();
    let mut w = h.app().await;
    let mut acked: Vec<(Instant, i64)> = Vec::new();
    let started = Instant::now();
    let (mut reads, mut violations) = (0, 0);
    let mut v = 0i64;
    while started.elapsed() < Duration::from_secs(6) {
        v += 1;
        w.exec_drop("UPDATE counter SET v = ? WHERE id = 0", (v,))
            .await
            .unwrap();
        acked.push((Instant::now(), v));
        let sent = Instant::now();
        // Everything acknowledged more than the bound before the read must be visible.
        let floor = acked
            .iter()
            .rev()
            .find(|(at, _)| sent.duration_since(*at) > Duration::from_millis(1000))
            .map_or(0, |(_, v)| *v);
        let got: i64 = r
            .query_first("SELECT v FROM counter WHERE id = 0")
            .await
            .unwrap()
            .unwrap();
        reads += 1;
        if got < floor {
            violations += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("bounded(1000ms): {reads} reads, {violations} violations");
    assert!(reads > 50);
    assert_eq!(violations, 0);
    let fallbacks = metric_sum(
        h.admin.unwrap(),
        "lagless_read_fallbacks_total",
        "too_stale",
    )
    .await;
    assert!(fallbacks > 0.0, "the lagging replica was never refused");
}

/// `--cheap-reads-on-primary`: a strict read whose statement costs no more than the ratio's
/// worth of head reads runs on the primary (one round trip, no head read) and sees every
/// acknowledged write; one that costs more still goes to a replica, which must first apply
/// the head. The replica's SQL thread is stopped, so a cheap read sent there would be stale
/// or wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheap_strict_reads_run_on_the_primary_and_dear_ones_on_replicas() {
    let h = Harness::start_with(2, |c| {
        c.cheap_reads_on_primary = 10.0;
        c.consistency_wait = Duration::from_secs(3);
    })
    .await;
    setup(&h).await;
    let admin = h.admin.unwrap();
    let mut w = h.app().await;
    let mut r = h.app().await;
    // Its first run teaches the proxy the statement's cost and the head read's.
    let _: Option<(i64, i64)> = r
        .query_first("SELECT v, @@server_id FROM counter WHERE id = 0")
        .await
        .unwrap();
    h.cluster.replicas()[0]
        .exec("STOP SLAVE SQL_THREAD")
        .await
        .unwrap();
    let mut on_primary = 0;
    for i in 1..=50_i64 {
        w.exec_drop("UPDATE counter SET v = ? WHERE id = 0", (i,))
            .await
            .unwrap();
        let (v, server): (i64, i64) = r
            .query_first("SELECT v, @@server_id FROM counter WHERE id = 0")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, i, "a strict read missed an acknowledged write");
        on_primary += i64::from(server == 100);
    }
    assert_eq!(
        on_primary, 50,
        "cheap strict reads ran elsewhere than the primary"
    );
    let (_, metrics) = crate::support::http_get(admin, "/metrics").await;
    let moved: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lagless_cheap_reads_on_primary_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        moved >= 50.0,
        "{moved} reads counted as cheaper than a head read"
    );
    // Served by choice, not for want of a replica: no fallback is counted (the alert on
    // fallbacks stays quiet).
    let fallbacks = metric_sum(admin, "lagless_read_fallbacks_total", "reason=").await;
    assert_eq!(fallbacks, 0.0, "{metrics}");

    // A dear statement (200 ms, far above ten head reads) still goes to the replica, which
    // must apply the head first: restarted, it does within the wait.
    h.cluster.replicas()[0]
        .exec("START SLAVE SQL_THREAD")
        .await
        .unwrap();
    for _ in 0..3 {
        let (v, server): (i64, i64) = r
            .query_first("SELECT v, @@server_id FROM counter WHERE id = 0 AND SLEEP(0.2) = 0")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, 50);
        assert_ne!(server, 100, "a 200 ms read ran on the primary");
    }
    let (_, digests) = crate::support::http_get(admin, "/digests").await;
    let report: serde_json::Value = serde_json::from_str(&digests).unwrap();
    let cheap = report["digests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            let text = d["text"].as_str().unwrap_or_default();
            text.contains("server_id") && !text.contains("sleep")
        })
        .unwrap_or_else(|| panic!("no digest of the cheap read: {digests}"));
    assert!(cheap["cost_us"].as_u64().unwrap() > 0, "{cheap}");
    assert!(cheap["primary"].as_u64().unwrap() >= 50, "{cheap}");
}
