//! Moving a tenant between two clusters of real servers while it is written through a proxy,
//! and a move that runs out of frozen time rolled back.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lagless_core::topology::{Flavor, Member, Topology, TopologyState};
use lagless_directory::{
    ClusterState, Directory, PoolCluster, PoolDocument, TenantId, TenantSource, TenantState,
};
use lagless_operator::pool::moves::{
    Endpoint, MoveContext, MoveLimits, MoveRecord, Phase, run_move,
};
use lagless_testkit::{
    ADMIN_PASSWORD, ADMIN_USER, APP_PASSWORD, APP_USER, Cluster, REPL_PASSWORD, REPL_USER,
    conn_opts,
};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};

pub(crate) const NAMES: [&str; 2] = ["move-a", "move-b"];
/// Each cluster's GTID domain: a pool gives every cluster its own.
const DOMAINS: [u32; 2] = [1, 2];

pub(crate) struct Fleet {
    /// The clusters' names, as the directory knows them.
    pub(crate) names: [&'static str; 2],
    directory: Cluster,
    pub(crate) clusters: Vec<Cluster>,
    pub(crate) proxy_port: u16,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

pub(crate) fn topology(name: &str, cluster: &Cluster) -> Topology {
    let member = |m: &lagless_testkit::Member| {
        Member::new(format!("{name}-{}", m.index()), "127.0.0.1", m.port())
    };
    Topology {
        cluster: name.into(),
        flavor: Flavor::Mariadb,
        epoch: 1,
        state: TopologyState::Ready,
        primary: Some(member(cluster.primary())),
        replicas: cluster.replicas().iter().map(member).collect(),
        consistency: None,
        read_only: false,
    }
}

fn endpoint(member: &lagless_testkit::Member) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port: member.port(),
        user: ADMIN_USER.into(),
        password: ADMIN_PASSWORD.into(),
    }
}

impl Fleet {
    pub(crate) async fn start() -> Self {
        Self::start_named(NAMES).await
    }

    /// A fleet whose two clusters have these names.
    pub(crate) async fn start_named(names: [&'static str; 2]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let directory = Cluster::builder()
            .members(1)
            .domain_id(100)
            .server_id_base(1000)
            .start()
            .await
            .unwrap();
        let mut clusters = Vec::new();
        for (i, domain) in DOMAINS.iter().enumerate() {
            // Each cluster's servers read an option directory, as the local runtime's do,
            // where a move to the cluster keeps its channel's filter.
            let conf = dir.path().join(format!("conf-{i}"));
            std::fs::create_dir_all(&conf).unwrap();
            clusters.push(
                Cluster::builder()
                    .members(2)
                    .domain_id(*domain)
                    .server_id_base(10 * (i as u32 + 1))
                    .config_line(format!("!includedir {}", conf.display()))
                    .start()
                    .await
                    .unwrap(),
            );
        }
        let book = Fleet::book_of(&directory);
        book.ensure_schema().await.unwrap();
        let directory_topology = dir.path().join("directory.json");
        topology("move-directory", &directory)
            .write_atomically(&directory_topology)
            .unwrap();
        let mut members = Vec::new();
        for (name, cluster) in names.iter().zip(&clusters) {
            let path = dir.path().join(format!("{name}.json"));
            topology(name, cluster).write_atomically(&path).unwrap();
            book.register_cluster(name, ClusterState::Open, 1 << 40, 1e6)
                .await
                .unwrap();
            members.push(PoolCluster {
                name: name.to_string(),
                topology: path,
            });
        }
        let pool = dir.path().join("pool.json");
        PoolDocument {
            pool: "move".into(),
            directory: "move-directory".into(),
            tenant_database: "t_{id}".into(),
            clusters: members,
            routing: vec![TenantSource::Database, TenantSource::Hint],
            attribute: "lagless_tenant".into(),
        }
        .write(&pool)
        .unwrap();
        let (proxy_port, stop) = start_proxy(dir.path()).await;
        Self {
            names,
            directory,
            clusters,
            proxy_port,
            _dir: dir,
            _stop: stop,
        }
    }

    /// Another proxy in front of the pool: its port, and the handle that stops it.
    pub(crate) async fn start_proxy(&self) -> (u16, tokio::sync::watch::Sender<bool>) {
        start_proxy(self._dir.path()).await
    }

    /// The directory's cluster.
    pub(crate) fn directory_cluster(&self) -> &Cluster {
        &self.directory
    }

    /// Where the pool's documents are (see [`start_proxy`]).
    pub(crate) fn documents(&self) -> &std::path::Path {
        self._dir.path()
    }

    fn book_of(directory: &Cluster) -> Directory {
        Directory::new(conn_opts(
            directory.primary().port(),
            ADMIN_USER,
            ADMIN_PASSWORD,
            None,
        ))
    }

    pub(crate) fn book(&self) -> Directory {
        Self::book_of(&self.directory)
    }

    pub(crate) async fn app(&self, db: Option<&str>) -> Conn {
        let opts = OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.proxy_port)
            .user(Some(APP_USER))
            .pass(Some(APP_PASSWORD))
            .db_name(db)
            .prefer_socket(false);
        Conn::new(opts).await.unwrap()
    }

    /// A tenant with `rows` rows of about 200 bytes, created through the proxy; returns the
    /// index of its cluster.
    pub(crate) async fn tenant(&self, id: &str, rows: u32) -> usize {
        let mut app = self.app(None).await;
        app.query_drop(format!("CREATE DATABASE t_{id}"))
            .await
            .unwrap();
        app.query_drop(format!(
            "CREATE TABLE t_{id}.kv (id BIGINT AUTO_INCREMENT PRIMARY KEY, writer INT NOT NULL, \
             n INT NOT NULL, pad VARCHAR(200) NOT NULL, UNIQUE KEY (writer, n))"
        ))
        .await
        .unwrap();
        app.query_drop(format!(
            "INSERT INTO t_{id}.kv (writer, n, pad) SELECT 99, seq, REPEAT('x', 200) \
             FROM t_{id}.seq_1_to_{rows}"
        ))
        .await
        .unwrap();
        let route = self
            .book()
            .lookup(&TenantId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        self.names.iter().position(|n| *n == route.cluster).unwrap()
    }

    /// Where a move to cluster `to` keeps its channel's filter: in the option directory its
    /// servers read at start.
    pub(crate) fn filter_file(&self, id: &str, to: usize) -> std::path::PathBuf {
        self._dir
            .path()
            .join(format!("conf-{to}"))
            .join(format!("lagless-move-{id}.cnf"))
    }

    pub(crate) fn context(
        &self,
        id: &str,
        from: usize,
        to: usize,
        limits: MoveLimits,
    ) -> MoveContext {
        let source = &self.clusters[from];
        MoveContext {
            tenant: TenantId::parse(id).unwrap(),
            database: format!("t_{id}"),
            directory: self.book(),
            source_primary: endpoint(source.primary()),
            snapshot_from: endpoint(&source.replicas()[0]),
            source_domain: DOMAINS[from],
            replication: (REPL_USER.into(), REPL_PASSWORD.into()),
            target_primary: endpoint(self.clusters[to].primary()),
            target_replicas: self.clusters[to].replicas().iter().map(endpoint).collect(),
            filter_file: Some(self.filter_file(id, to)),
            limits,
        }
    }
}

/// A proxy for the pool whose documents are in `dir`, running; its port and stop handle.
pub(crate) async fn start_proxy(dir: &std::path::Path) -> (u16, tokio::sync::watch::Sender<bool>) {
    let admin = lagless_proxy::users::LookupCredentials {
        user: ADMIN_USER.into(),
        password: ADMIN_PASSWORD.into(),
        tls: None,
    };
    let mut config = lagless_proxy::config::Config::new(dir.join("directory.json"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.lookup = Some(admin.clone());
    config.monitor = Some(admin.clone());
    config.directory = Some(admin);
    config.tenant_pool = Some(dir.join("pool.json"));
    config.monitor_interval = Duration::from_millis(200);
    config.topology_poll = Duration::from_millis(200);
    config.write_hold_timeout = Duration::from_secs(5);
    let proxy = lagless_proxy::server::Proxy::bind(config).await.unwrap();
    let port = proxy.local_addr().unwrap().port();
    let stop = proxy.shutdown_handle();
    tokio::spawn(proxy.run());
    (port, stop)
}

/// What a writer saw: every value acknowledged, the errors, and each write's latency.
#[derive(Default)]
struct Seen {
    acked: Vec<i32>,
    errors: Vec<String>,
    latencies: Vec<Duration>,
    stale_reads: u32,
    reads: u32,
}

/// A table of every kind of value a copy must carry exactly (made on the source's primary).
const KINDS: &str = r#"SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO', time_zone = '+03:00';
CREATE TABLE t_mover.kinds (id INT AUTO_INCREMENT PRIMARY KEY, b BLOB, bin BINARY(4),
  l VARCHAR(10) CHARACTER SET latin1, u VARCHAR(10) CHARACTER SET utf8mb4, bits BIT(5),
  d DECIMAL(20,6), f DOUBLE, g FLOAT, dt DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(2),
  j JSON, e ENUM('a','b'), s SET('x','y'), p POINT, twice INT AS (id * 2) VIRTUAL,
  hidden INT INVISIBLE DEFAULT 7) CHARACTER SET utf8mb4;
INSERT INTO t_mover.kinds (id, b, bin, l, u, bits, d, f, g, dt, ts, tm, j, e, s, p, hidden)
VALUES (0, X'00275C0A0D1A22FF', X'61000000', X'E9', '😀 \\\'"', b'10101',
  -12345678901234.123456, 0.1e0 + 0.2e0, 3.4028234e38, '0000-00-00 00:00:00',
  '2024-02-29 23:30:00.125', '-838:59:58.5', '{"k": [1, "é"]}', 'b', 'x,y',
  POINT(1.5, -2), 11),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL)"#;

/// Every stored byte of `t_mover.kinds` on `member`, read the same way everywhere (a FLOAT
/// or DOUBLE by its exact decimal expansion, a TIMESTAMP as seconds since the epoch).
async fn kinds(member: &lagless_testkit::Member) -> Vec<Vec<Option<String>>> {
    member
        .query(
            "SELECT id, HEX(b), HEX(bin), HEX(l), HEX(u), bits + 0, d, \
             CAST(f AS DECIMAL(65, 30)), CAST(g AS DECIMAL(65, 0)), dt, UNIX_TIMESTAMP(ts), \
             tm, HEX(j), e, s, HEX(p), twice, hidden FROM t_mover.kinds ORDER BY id",
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    row.get::<Option<Vec<u8>>, _>(i)
                        .flatten()
                        .map(|v| String::from_utf8_lossy(&v).into_owned())
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_while_written_and_loses_nothing() {
    crate::orchestrate::init_logging();
    let fleet = Fleet::start().await;
    let from = fleet.tenant("mover", 20_000).await;
    let to = 1 - from;
    // Values a copy must carry byte for byte: bytes no character set holds, other character
    // sets, bits, exact floating point, a 0 in an auto-increment column, zero dates, UTC
    // instants, generated and invisible columns, and NULLs.
    let source_primary = fleet.clusters[from].primary();
    source_primary.exec(KINDS).await.unwrap();
    let kinds_before = kinds(source_primary).await;
    assert_eq!(kinds_before.len(), 2, "{kinds_before:?}");

    // One writer at about 200 writes/s through the proxy, and a strict reader through
    // another session that must always see the writer's last acknowledged row.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let last_acked = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut writer = fleet.app(Some("t_mover")).await;
    let mut reader = fleet.app(Some("t_mover")).await;
    let writes = {
        let (stop, seen, last) = (stop.clone(), seen.clone(), last_acked.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let r = writer
                    .exec_drop("INSERT INTO kv (writer, n, pad) VALUES (1, ?, 'w')", (n,))
                    .await;
                {
                    let mut s = seen.lock().unwrap();
                    s.latencies.push(started.elapsed());
                    match r {
                        Ok(()) => {
                            s.acked.push(n);
                            last.store(i64::from(n), std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(e) => s.errors.push(e.to_string()),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let reads = {
        let (stop, seen, last) = (stop.clone(), seen.clone(), last_acked.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let must_see = last.load(std::sync::atomic::Ordering::SeqCst);
                let r: Result<Option<Option<i64>>, _> = reader
                    .query_first("SELECT MAX(n) FROM kv WHERE writer = 1")
                    .await;
                {
                    let mut s = seen.lock().unwrap();
                    s.reads += 1;
                    match r {
                        Ok(max) => {
                            if max.flatten().unwrap_or(0) < must_see {
                                s.stale_reads += 1;
                            }
                        }
                        Err(e) => s.errors.push(format!("read: {e}")),
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cx = fleet.context("mover", from, to, MoveLimits::default());
    let phases = Arc::new(Mutex::new(Vec::new()));
    let mut save = {
        let phases = phases.clone();
        move |r: &MoveRecord| phases.lock().unwrap().push(r.phase)
    };
    let started = Instant::now();
    let record = run_move(
        &cx,
        MoveRecord::new(&cx.tenant, NAMES[from], NAMES[to]),
        &mut save,
    )
    .await;
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writes.await.unwrap();
    reads.await.unwrap();

    assert_eq!(record.phase, Phase::Done, "{record:?}");
    let mut followed = phases.lock().unwrap().clone();
    followed.dedup();
    assert_eq!(
        followed,
        vec![
            Phase::CatchingUp,
            Phase::Frozen,
            Phase::Fenced,
            Phase::Flipped,
            Phase::Cleaning,
            Phase::Done
        ]
    );
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(seen.errors.is_empty(), "client errors: {:?}", seen.errors);
    assert_eq!(seen.stale_reads, 0, "stale strict reads");
    let mut latencies = seen.latencies.clone();
    latencies.sort();
    let worst = *latencies.last().unwrap();
    eprintln!(
        "move of 20,000 rows: {took:?}; frozen {:?} ms; {} writes, slowest {worst:?}; {} reads; timings {:?}",
        record.frozen_ms,
        seen.acked.len(),
        seen.reads,
        record.timings
    );
    assert!(seen.acked.len() > 100, "the writer wrote during the move");
    assert!(record.frozen_ms.unwrap() < 500, "{record:?}");
    // The whole tenant was compared before the freeze, at one position on both sides.
    assert!(record.compared_at.is_some(), "{record:?}");
    assert!(
        worst < Duration::from_millis(1500),
        "slowest write {worst:?}"
    );

    // Every acknowledged write is on the target's servers, once; nothing is left on the source.
    let target = &fleet.clusters[to];
    target
        .wait_replicated(Duration::from_secs(20))
        .await
        .unwrap();
    for member in target.members() {
        let rows = member
            .query("SELECT n FROM t_mover.kv WHERE writer = 1 ORDER BY n")
            .await
            .unwrap();
        let found: Vec<i32> = rows.iter().map(|r| r.get(0).unwrap()).collect();
        assert_eq!(found, seen.acked, "member {} of the target", member.index());
        let preloaded = member
            .query("SELECT COUNT(*) FROM t_mover.kv WHERE writer = 99")
            .await
            .unwrap();
        assert_eq!(preloaded[0].get::<i64, _>(0), Some(20_000));
    }
    let source = &fleet.clusters[from];
    source
        .wait_replicated(Duration::from_secs(20))
        .await
        .unwrap();
    for member in source.members() {
        let dbs: BTreeSet<String> = member
            .query("SHOW DATABASES")
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0).unwrap())
            .collect();
        assert!(
            !dbs.contains("t_mover") && !dbs.contains("lagless_moved_mover"),
            "{dbs:?}"
        );
    }
    for member in target.members() {
        assert_eq!(
            kinds(member).await,
            kinds_before,
            "member {} of the target",
            member.index()
        );
    }
    let route = fleet.book().lookup(&cx.tenant).await.unwrap().unwrap();
    assert_eq!(
        (route.cluster.as_str(), route.state),
        (NAMES[to], TenantState::Active)
    );
    // The target's primary keeps no channel and no slave position past its binary log, so a
    // later switchover can make it a replica.
    let primary = target.primary();
    let channels = primary.query("SHOW ALL SLAVES STATUS").await.unwrap();
    assert!(channels.is_empty());
    let pos = primary
        .query("SELECT @@gtid_slave_pos, @@gtid_binlog_pos")
        .await
        .unwrap();
    slave_pos_within_binlog(&pos[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_out_of_frozen_time_rolls_back_and_the_tenant_stays_writable() {
    crate::orchestrate::init_logging();
    let fleet = Fleet::start().await;
    let from = fleet.tenant("stays", 1_000).await;
    let to = 1 - from;
    let limits = MoveLimits {
        max_frozen: Duration::ZERO,
        // The copy's pace follows the target's round trips here (measured on real servers).
        latency_allowance: 0.2,
        ..MoveLimits::default()
    };
    let cx = fleet.context("stays", from, to, limits);
    let record = run_move(
        &cx,
        MoveRecord::new(&cx.tenant, NAMES[from], NAMES[to]),
        &mut |_: &MoveRecord| {},
    )
    .await;
    assert_eq!(record.phase, Phase::Aborted, "{record:?}");
    assert!(
        record.error.as_deref().unwrap_or("").contains("fenced"),
        "{record:?}"
    );
    let route = fleet.book().lookup(&cx.tenant).await.unwrap().unwrap();
    assert_eq!(
        (route.cluster.as_str(), route.state),
        (NAMES[from], TenantState::Active)
    );
    // The source has its tables back and takes writes through the proxy; the target forgot
    // the tenant and its channel.
    let mut app = fleet.app(Some("t_stays")).await;
    app.query_drop("INSERT INTO kv (writer, n, pad) VALUES (2, 1, 'after')")
        .await
        .unwrap();
    let n: Option<i64> = app.query_first("SELECT COUNT(*) FROM kv").await.unwrap();
    assert_eq!(n, Some(1_001));
    let target = fleet.clusters[to].primary();
    let dbs = target.query("SHOW DATABASES LIKE 't_stays'").await.unwrap();
    assert!(dbs.is_empty());
    assert!(
        target
            .query("SHOW ALL SLAVES STATUS")
            .await
            .unwrap()
            .is_empty()
    );
    let pos = target
        .query("SELECT @@gtid_slave_pos, @@gtid_binlog_pos")
        .await
        .unwrap();
    slave_pos_within_binlog(&pos[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_differs_is_found_before_the_freeze_and_rolled_back() {
    crate::orchestrate::init_logging();
    let fleet = Fleet::start().await;
    let from = fleet.tenant("differs", 1_000).await;
    let to = 1 - from;
    let cx = fleet.context("differs", from, to, MoveLimits::default());
    let copied = run_until_saved(
        &cx,
        MoveRecord::new(&cx.tenant, NAMES[from], NAMES[to]),
        Phase::CatchingUp,
    )
    .await;
    // One row of the target's copy changed behind the channel's back.
    let target = fleet.clusters[to].primary();
    target
        .query(
            "SET sql_log_bin = 0; UPDATE t_differs.kv SET pad = 'changed' ORDER BY n LIMIT 1; \
             SET sql_log_bin = 1",
        )
        .await
        .unwrap();
    let record = run_move(&cx, copied, &mut |_: &MoveRecord| {}).await;
    assert_eq!(record.phase, Phase::Aborted, "{record:?}");
    let error = record.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("catching up") && error.contains("table kv"),
        "{record:?}"
    );
    assert!(record.frozen_ms.is_none(), "never frozen: {record:?}");
    let route = fleet.book().lookup(&cx.tenant).await.unwrap().unwrap();
    assert_eq!(
        (route.cluster.as_str(), route.state),
        (NAMES[from], TenantState::Active)
    );
    assert!(
        target
            .query("SHOW DATABASES LIKE 't_differs'")
            .await
            .unwrap()
            .is_empty()
    );
}

/// A `(gtid_slave_pos, gtid_binlog_pos)` row: the slave position holds no GTID the binary log
/// lacks (the filtered fence left there would break a later switchover, see docs/tenants.md).
pub(crate) fn slave_pos_within_binlog(row: &mysql_async::Row) {
    let text = |i| row.get::<String, _>(i).unwrap();
    let parse = |t: &str| lagless_core::gtid::MariadbPosition::parse(t).unwrap();
    let (slave, binlog) = (text(0), text(1));
    assert!(
        parse(&binlog).contains(&parse(&slave)),
        "gtid_slave_pos {slave} is ahead of gtid_binlog_pos {binlog}"
    );
}

/// Runs the move until it has saved `phase`, then drops it where it stands (as a killed
/// operator would); returns the last record saved.
pub(crate) async fn run_until_saved(
    cx: &MoveContext,
    record: MoveRecord,
    phase: Phase,
) -> MoveRecord {
    let saved = Arc::new(Mutex::new(record.clone()));
    let (reached, mut seen) = tokio::sync::watch::channel(false);
    let mut save = {
        let saved = saved.clone();
        move |r: &MoveRecord| {
            *saved.lock().unwrap() = r.clone();
            if r.phase == phase {
                let _ = reached.send(true);
            }
        }
    };
    tokio::select! {
        _ = run_move(cx, record, &mut save) => {}
        _ = seen.wait_for(|r| *r) => {}
    }
    saved.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mover_stopped_in_any_phase_ends_done_or_rolled_back_when_resumed() {
    crate::orchestrate::init_logging();
    let fleet = Fleet::start().await;
    // Stopped at the start of each phase; before the flip a resumed mover cannot know how
    // long the tenant has been frozen, so from `fenced` it rolls back.
    let cases = [
        (Phase::CatchingUp, Phase::Done),
        (Phase::Frozen, Phase::Done),
        (Phase::Fenced, Phase::Aborted),
        (Phase::Flipped, Phase::Done),
        (Phase::Cleaning, Phase::Done),
    ];
    for (i, (cut, outcome)) in cases.into_iter().enumerate() {
        let id = format!("cut{i}");
        let from = fleet.tenant(&id, 2_000).await;
        let to = 1 - from;
        let cx = fleet.context(&id, from, to, MoveLimits::default());
        let stopped = run_until_saved(
            &cx,
            MoveRecord::new(&cx.tenant, NAMES[from], NAMES[to]),
            cut,
        )
        .await;
        assert_eq!(stopped.phase, cut, "{stopped:?}");
        // While the channel may exist, its filter is kept in the option file.
        if matches!(cut, Phase::Frozen | Phase::Fenced) {
            let kept = std::fs::read_to_string(fleet.filter_file(&id, to)).unwrap();
            assert!(
                kept.contains(&format!("lagless_move_{id}.replicate_do_db=t_{id}\n")),
                "{kept}"
            );
        }
        // The record survives the restart as JSON, as `tenant move` keeps it.
        let stopped: MoveRecord =
            serde_json::from_str(&serde_json::to_string(&stopped).unwrap()).unwrap();
        let record = run_move(&cx, stopped, &mut |_: &MoveRecord| {}).await;
        assert_eq!(record.phase, outcome, "stopped at {cut}: {record:?}");
        assert!(!fleet.filter_file(&id, to).exists(), "stopped at {cut}");

        // One writable copy, where the directory says, with every row; nothing else left.
        let home = if outcome == Phase::Done { to } else { from };
        let route = fleet.book().lookup(&cx.tenant).await.unwrap().unwrap();
        assert_eq!(
            (route.cluster.as_str(), route.state),
            (NAMES[home], TenantState::Active),
            "stopped at {cut}"
        );
        let mut app = fleet.app(Some(&format!("t_{id}"))).await;
        app.query_drop("INSERT INTO kv (writer, n, pad) VALUES (3, 1, 'after')")
            .await
            .unwrap();
        let n: Option<i64> = app.query_first("SELECT COUNT(*) FROM kv").await.unwrap();
        assert_eq!(n, Some(2_001), "stopped at {cut}");
        only_at_home(&fleet, &id, home, &format!("stopped at {cut}")).await;
    }
}

/// The tenant's database only on cluster `home`, no channel left anywhere, and no slave
/// position past the binary log on any primary.
pub(crate) async fn only_at_home(fleet: &Fleet, id: &str, home: usize, what: &str) {
    for (c, cluster) in fleet.clusters.iter().enumerate() {
        let primary = cluster.primary();
        let dbs = primary
            .query(&format!("SHOW DATABASES LIKE '%{id}'"))
            .await
            .unwrap();
        let names: Vec<String> = dbs.iter().map(|r| r.get(0).unwrap()).collect();
        let want = if c == home {
            vec![format!("t_{id}")]
        } else {
            Vec::new()
        };
        assert_eq!(names, want, "{what}, cluster {c}");
        assert!(
            primary
                .query("SHOW ALL SLAVES STATUS")
                .await
                .unwrap()
                .is_empty(),
            "{what}: a channel is left on cluster {c}"
        );
        let pos = primary
            .query("SELECT @@gtid_slave_pos, @@gtid_binlog_pos")
            .await
            .unwrap();
        slave_pos_within_binlog(&pos[0]);
    }
}
