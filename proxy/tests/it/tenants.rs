//! Tenant pools: a directory cluster and two tenant clusters of real servers behind one proxy
//! that routes each tenant's statements to its cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lagless_directory::placement::ClusterState;
use lagless_directory::{Directory, PoolCluster, PoolDocument, TenantSource};
use lagless_proxy::config::Config;
use lagless_proxy::server::Proxy;
use lagless_testkit::{ADMIN_PASSWORD, ADMIN_USER, APP_PASSWORD, APP_USER, Cluster};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio::sync::watch;

use crate::support::{init_logging, topology_of};

const CLUSTERS: [&str; 2] = ["pool-a", "pool-b"];

struct Pool {
    directory: Cluster,
    clusters: Vec<Cluster>,
    addr: SocketAddr,
    shared: std::sync::Arc<lagless_proxy::server::ProxyState>,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

fn admin_opts(cluster: &Cluster) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(cluster.primary().port())
        .user(Some(ADMIN_USER))
        .pass(Some(ADMIN_PASSWORD))
        .prefer_socket(false)
        .into()
}

impl Pool {
    async fn start() -> Self {
        Self::start_holding(Duration::from_secs(10)).await
    }

    /// A pool whose proxy holds a frozen tenant's statements at most `hold`.
    async fn start_holding(hold: Duration) -> Self {
        init_logging();
        let directory = Cluster::builder().members(1).start().await.unwrap();
        let mut clusters = Vec::new();
        for _ in CLUSTERS {
            clusters.push(Cluster::builder().members(2).start().await.unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let directory_topology = dir.path().join("directory.json");
        topology_of(&directory, 1)
            .write_atomically(&directory_topology)
            .unwrap();
        let book = Directory::new(admin_opts(&directory));
        book.ensure_schema().await.unwrap();
        let mut members = Vec::new();
        for (name, cluster) in CLUSTERS.iter().zip(&clusters) {
            let path = dir.path().join(format!("{name}.json"));
            topology_of(cluster, 1).write_atomically(&path).unwrap();
            book.register_cluster(name, ClusterState::Open, 1 << 40, 1e6)
                .await
                .unwrap();
            members.push(PoolCluster {
                name: name.to_string(),
                topology: path,
            });
        }
        let pool_path = dir.path().join("pool.json");
        PoolDocument {
            pool: "pool".into(),
            directory: "pool-directory".into(),
            tenant_database: "t_{id}".into(),
            clusters: members,
            routing: vec![
                TenantSource::Database,
                TenantSource::Hint,
                TenantSource::Attribute,
            ],
            attribute: "lagless_tenant".into(),
        }
        .write(&pool_path)
        .unwrap();
        let admin = lagless_proxy::users::LookupCredentials {
            user: ADMIN_USER.into(),
            password: ADMIN_PASSWORD.into(),
            tls: None,
        };
        let mut config = Config::new(directory_topology);
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.lookup = Some(admin.clone());
        config.monitor = Some(admin.clone());
        config.directory = Some(admin);
        config.tenant_pool = Some(pool_path);
        config.monitor_interval = Duration::from_millis(200);
        config.topology_poll = Duration::from_millis(200);
        config.shutdown_timeout = Duration::from_secs(2);
        config.write_hold_timeout = hold;
        let proxy = Proxy::bind(config).await.unwrap();
        let addr = proxy.local_addr().unwrap();
        let shared = proxy.shared.clone();
        let stop = proxy.shutdown_handle();
        tokio::spawn(proxy.run());
        Self {
            directory,
            clusters,
            addr,
            shared,
            _dir: dir,
            _stop: stop,
        }
    }

    fn opts(&self, db: Option<&str>) -> OptsBuilder {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.addr.port())
            .user(Some(APP_USER))
            .pass(Some(APP_PASSWORD))
            .db_name(db)
            .prefer_socket(false)
    }

    /// Changes a tenant's route without a change-log entry, as a proxy whose change feed lags
    /// sees a move.
    async fn route_behind_the_log(&self, tenant: &str, cluster: &str, version: u64) {
        self.directory
            .primary()
            .query(&format!(
                "UPDATE lagless_directory.tenants SET cluster = '{cluster}', version = {version} \
                 WHERE tenant_id = '{tenant}'"
            ))
            .await
            .unwrap();
    }

    /// Waits until the proxy has applied the directory's change log up to its end.
    async fn followed(&self, book: &Directory) {
        let end = book.last_seq().await.unwrap();
        let router = self.shared.tenants.as_ref().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while router.followed.load(std::sync::atomic::Ordering::Relaxed) < end {
            assert!(
                Instant::now() < deadline,
                "the proxy never read change {end}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn conn(&self, db: Option<&str>) -> Conn {
        Conn::new(self.opts(db)).await.unwrap()
    }

    /// Which clusters hold database `db`, by asking every server of each.
    async fn holders(&self, db: &str) -> Vec<usize> {
        let mut found = Vec::new();
        for (i, cluster) in self.clusters.iter().enumerate() {
            for member in cluster.members() {
                let rows = member
                    .query(&format!("SHOW DATABASES LIKE '{db}'"))
                    .await
                    .unwrap();
                if !rows.is_empty() && !found.contains(&i) {
                    found.push(i);
                }
            }
        }
        let on_directory = self
            .directory
            .primary()
            .query(&format!("SHOW DATABASES LIKE '{db}'"))
            .await
            .unwrap();
        assert!(
            on_directory.is_empty(),
            "{db} must not be on the global cluster"
        );
        found
    }
}

async fn error_code(conn: &mut Conn, sql: &str) -> u16 {
    match conn.query_drop(sql).await {
        Err(mysql_async::Error::Server(e)) => e.code,
        other => panic!("`{sql}` should fail with a server error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_placed_routed_and_read_without_staleness() {
    let pool = Pool::start().await;
    let mut conn = pool.conn(None).await;
    const TENANTS: usize = 40;
    for i in 0..TENANTS {
        conn.query_drop(format!("CREATE DATABASE t_{i}"))
            .await
            .unwrap();
        conn.query_drop(format!(
            "CREATE TABLE t_{i}.items (id INT PRIMARY KEY, owner VARCHAR(20))"
        ))
        .await
        .unwrap();
        conn.query_drop(format!("INSERT INTO t_{i}.items VALUES (1, 't_{i}')"))
            .await
            .unwrap();
    }
    // Each tenant's database and rows exist on exactly one cluster, the one the directory
    // names, and never on the global cluster.
    let book = Directory::new(admin_opts(&pool.directory));
    let mut per_cluster: BTreeMap<String, usize> = BTreeMap::new();
    for (id, route) in book.list(None).await.unwrap() {
        let holders = pool.holders(&format!("t_{id}")).await;
        let expected = CLUSTERS.iter().position(|c| *c == route.cluster).unwrap();
        assert_eq!(holders, vec![expected], "tenant {id}");
        *per_cluster.entry(route.cluster).or_default() += 1;
    }
    assert_eq!(per_cluster.values().sum::<usize>(), TENANTS);
    // Random placement over two equal clusters: each gets a fair share (40 coin flips leave
    // fewer than 8 on one side about once in 100,000 runs).
    for name in CLUSTERS {
        let n = per_cluster.get(name).copied().unwrap_or(0);
        assert!(
            n >= 8,
            "{name} got {n} of {TENANTS} tenants: {per_cluster:?}"
        );
    }

    // Every way of naming the tenant reaches it: the login database, USE, a qualified name,
    // a hint and a connection attribute.
    let mut by_login = pool.conn(Some("t_3")).await;
    let owner: Option<String> = by_login
        .query_first("SELECT owner FROM items WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(owner.as_deref(), Some("t_3"));
    by_login.query_drop("USE t_4").await.unwrap();
    let owner: Option<String> = by_login
        .query_first("SELECT owner FROM items WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(owner.as_deref(), Some("t_4"));
    let owner: Option<String> = conn
        .query_first("/* lagless tenant=5 */ SELECT owner FROM t_5.items")
        .await
        .unwrap();
    assert_eq!(owner.as_deref(), Some("t_5"));
    let mut by_attribute = Conn::new(
        pool.opts(None).connect_attributes(
            [("lagless_tenant".to_string(), "6".to_string())]
                .into_iter()
                .collect(),
        ),
    )
    .await
    .unwrap();
    let db: Option<String> = by_attribute
        .query_first("SELECT owner FROM t_6.items")
        .await
        .unwrap();
    assert_eq!(db.as_deref(), Some("t_6"));
    // Prepared statements run on their tenant's cluster too.
    let owner: Option<String> = conn
        .exec_first("SELECT owner FROM t_7.items WHERE id = ?", (1,))
        .await
        .unwrap();
    assert_eq!(owner.as_deref(), Some("t_7"));

    // Strict reads through the proxy see every acknowledged write, on every cluster.
    let mut writer = pool.conn(None).await;
    let mut reader = pool.conn(None).await;
    let mut stale = 0;
    for round in 0..200u32 {
        let t = round as usize % TENANTS;
        writer
            .exec_drop(
                format!("UPDATE t_{t}.items SET owner = ? WHERE id = 1"),
                (format!("w{round}"),),
            )
            .await
            .unwrap();
        // Every other read in a read-only transaction (which follows the tenant to its
        // cluster like a lone BEGIN).
        let in_transaction = round % 2 == 1;
        if in_transaction {
            reader
                .query_drop("START TRANSACTION READ ONLY")
                .await
                .unwrap();
        }
        let seen: Option<String> = reader
            .query_first(format!("SELECT owner FROM t_{t}.items WHERE id = 1"))
            .await
            .unwrap();
        if in_transaction {
            reader.query_drop("COMMIT").await.unwrap();
        }
        if seen.as_deref() != Some(format!("w{round}").as_str()) {
            stale += 1;
        }
    }
    assert_eq!(stale, 0, "strict reads returned stale rows");

    // Dropping a tenant's database removes it from the directory (right after the server's
    // answer has been relayed).
    conn.query_drop("DROP DATABASE t_0").await.unwrap();
    let zero = lagless_directory::TenantId::parse("0").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while book.lookup(&zero).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "tenant 0 is still in the directory"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(error_code(&mut conn, "SELECT * FROM t_0.items").await, 1049);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tenant_input_gets_clear_errors_and_the_directory_outage_spares_cached_tenants() {
    let pool = Pool::start().await;
    let mut conn = pool.conn(None).await;
    for i in 1..=2 {
        conn.query_drop(format!("CREATE DATABASE t_{i}"))
            .await
            .unwrap();
        conn.query_drop(format!("CREATE TABLE t_{i}.x (id INT PRIMARY KEY)"))
            .await
            .unwrap();
    }
    // A statement that touches two tenants.
    assert_eq!(
        error_code(&mut conn, "SELECT * FROM t_1.x JOIN t_2.x USING (id)").await,
        1105
    );
    // A transaction that touches two tenants: the second is refused, the first goes on.
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO t_1.x VALUES (1)")
        .await
        .unwrap();
    assert_eq!(
        error_code(&mut conn, "INSERT INTO t_2.x VALUES (1)").await,
        1105
    );
    conn.query_drop("INSERT INTO t_1.x VALUES (2)")
        .await
        .unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM t_1.x")
        .await
        .unwrap();
    assert_eq!(n, Some(2));
    // An unknown tenant: as from a server, whatever names it.
    assert_eq!(error_code(&mut conn, "USE t_999").await, 1049);
    assert_eq!(error_code(&mut conn, "SELECT * FROM t_999.x").await, 1049);
    match Conn::new(pool.opts(Some("t_999"))).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1049),
        other => panic!("login to an unknown tenant: {other:?}"),
    }
    // A malformed hint and an id outside the allowed pattern.
    assert_eq!(
        error_code(&mut conn, "/* lagless tenant= */ SELECT 1").await,
        1105
    );
    assert_eq!(
        error_code(&mut conn, "/* lagless tenant=Bad-Id */ SELECT 1").await,
        1105
    );
    assert_eq!(error_code(&mut conn, "CREATE DATABASE t_Bad").await, 1102);
    assert_eq!(error_code(&mut conn, "USE `t_x y`").await, 1102);
    // The session is still usable after every refusal.
    conn.query_drop("SELECT 1").await.unwrap();

    // With the directory's server gone, cached tenants keep working; a new tenant gets a
    // clear error.
    pool.directory.primary().kill9().unwrap();
    let began = Instant::now();
    conn.query_drop("INSERT INTO t_2.x VALUES (7)")
        .await
        .unwrap();
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM t_2.x")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    assert!(began.elapsed() < Duration::from_secs(2));
    let code = error_code(&mut conn, "CREATE DATABASE t_3").await;
    assert_eq!(code, 1105);
}

/// The steps of a move as the proxy sees them, driven by hand: the directory's states, the
/// fenced source copy, and a route changed behind the change log's back (a proxy whose feed
/// lags).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moving_tenant_is_held_while_frozen_and_followed_across_the_fence() {
    use lagless_directory::{TenantId, TenantState};
    let pool = Pool::start_holding(Duration::from_millis(1500)).await;
    let book = Directory::new(admin_opts(&pool.directory));
    let mut app = pool.conn(None).await;
    app.query_drop("CREATE DATABASE t_mover").await.unwrap();
    app.query_drop("CREATE TABLE t_mover.kv (k INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    app.query_drop("INSERT INTO t_mover.kv VALUES (1, 1)")
        .await
        .unwrap();
    let id = TenantId::parse("mover").unwrap();
    let active = book.lookup(&id).await.unwrap().unwrap();
    let from = CLUSTERS.iter().position(|c| *c == active.cluster).unwrap();
    let to = 1 - from;
    let (source, target) = (pool.clusters[from].primary(), pool.clusters[to].primary());
    // What a move's copy and catch-up leave on the target.
    target.query("CREATE DATABASE t_mover").await.unwrap();
    target
        .query("CREATE TABLE t_mover.kv (k INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    target
        .query("INSERT INTO t_mover.kv VALUES (1, 1)")
        .await
        .unwrap();

    // Moving: the tenant serves where it is, but schema changes wait for the move's end.
    let moving = book
        .transition(&id, &active, &active.cluster, TenantState::Moving)
        .await
        .unwrap()
        .unwrap();
    pool.followed(&book).await;
    assert_eq!(
        error_code(&mut app, "ALTER TABLE t_mover.kv ADD c INT").await,
        1105
    );
    app.query_drop("INSERT INTO t_mover.kv VALUES (2, 2)")
        .await
        .unwrap();
    target
        .query("INSERT INTO t_mover.kv VALUES (2, 2)")
        .await
        .unwrap();

    // Frozen: a write is held, the source is fenced, the route flips, and the write runs on
    // the target.
    let mut writer = pool.conn(Some("t_mover")).await;
    // A transaction open at the freeze goes on where it began (the fence waits for it).
    let mut open = pool.conn(Some("t_mover")).await;
    open.query_drop("BEGIN").await.unwrap();
    open.query_drop("SELECT * FROM kv").await.unwrap();
    let frozen = book
        .transition(&id, &moving, &active.cluster, TenantState::Frozen)
        .await
        .unwrap()
        .unwrap();
    pool.followed(&book).await;
    let held = tokio::spawn(async move {
        let started = Instant::now();
        let result = writer.query_drop("INSERT INTO kv VALUES (3, 3)").await;
        (result.map_err(|e| e.to_string()), started.elapsed())
    });
    let started = Instant::now();
    let n: Option<i64> = open.query_first("SELECT COUNT(*) FROM kv").await.unwrap();
    assert_eq!(n, Some(2));
    open.query_drop("COMMIT").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "a transaction open at the freeze is not held: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "a frozen tenant's write must wait");
    source.query("CREATE DATABASE t_mover_moved").await.unwrap();
    source
        .query("RENAME TABLE t_mover.kv TO t_mover_moved.kv")
        .await
        .unwrap();
    let flipped = book
        .transition(&id, &frozen, CLUSTERS[to], TenantState::Active)
        .await
        .unwrap()
        .unwrap();
    let (result, waited) = held.await.unwrap();
    result.unwrap();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    let count = |rows: Vec<mysql_async::Row>| -> i64 { rows[0].get(0).unwrap() };
    assert_eq!(
        count(
            target
                .query("SELECT COUNT(*) FROM t_mover.kv")
                .await
                .unwrap()
        ),
        3
    );
    assert_eq!(
        count(
            source
                .query("SELECT COUNT(*) FROM t_mover_moved.kv")
                .await
                .unwrap()
        ),
        2,
        "nothing may reach the fenced copy"
    );

    // A route changed behind the change log (as a proxy whose feed lags sees it): the old
    // copy is fenced, so the server's "no such table" sends the proxy to the directory, and
    // the statement runs where the tenant is now — a query and a prepared statement alike.
    let mut reader = pool.conn(Some("t_mover")).await;
    let stmt = reader.prep("SELECT COUNT(*) FROM kv").await.unwrap();
    let n: Option<i64> = reader.exec_first(&stmt, ()).await.unwrap();
    assert_eq!(n, Some(3));
    source
        .query("CREATE TABLE t_mover.kv (k INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    source
        .query("INSERT INTO t_mover.kv SELECT * FROM t_mover_moved.kv")
        .await
        .unwrap();
    source
        .query("INSERT INTO t_mover.kv VALUES (3, 3), (4, 4)")
        .await
        .unwrap();
    pool.route_behind_the_log("mover", CLUSTERS[from], flipped.version + 1)
        .await;
    target
        .query("RENAME TABLE t_mover.kv TO t_mover.kv_moved_back")
        .await
        .unwrap();
    let n: Option<i64> = reader.exec_first(&stmt, ()).await.unwrap();
    assert_eq!(n, Some(4), "the prepared statement follows the tenant");
    let n: Option<i64> = app
        .query_first("SELECT COUNT(*) FROM t_mover.kv")
        .await
        .unwrap();
    assert_eq!(n, Some(4), "the query follows the tenant");
    // A table that is missing where the tenant really is stays the client's error.
    assert_eq!(
        error_code(&mut app, "SELECT * FROM t_mover.nothing_here").await,
        1146
    );

    // A freeze that outlasts the hold fails the statement with a lock wait timeout, and
    // nothing runs; once the tenant thaws, writes go on.
    let current = book.lookup(&id).await.unwrap().unwrap();
    let frozen = book
        .transition(&id, &current, &current.cluster, TenantState::Frozen)
        .await
        .unwrap()
        .unwrap();
    pool.followed(&book).await;
    let started = Instant::now();
    assert_eq!(
        error_code(&mut app, "INSERT INTO t_mover.kv VALUES (5, 5)").await,
        1205
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    book.transition(&id, &frozen, &frozen.cluster, TenantState::Active)
        .await
        .unwrap()
        .unwrap();
    app.query_drop("INSERT INTO t_mover.kv VALUES (5, 5)")
        .await
        .unwrap();
    assert_eq!(
        count(
            source
                .query("SELECT COUNT(*) FROM t_mover.kv")
                .await
                .unwrap()
        ),
        5
    );

    // Moved again behind the change log's back, and the old copy's database dropped (a
    // finished move's cleaning): a session already placed by the stale route, and a new one
    // logging in with the tenant's database, both reach the tenant where it is.
    let thawed = book.lookup(&id).await.unwrap().unwrap();
    target
        .query("DROP TABLE t_mover.kv_moved_back")
        .await
        .unwrap();
    target
        .query("CREATE TABLE t_mover.kv (k INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    target
        .query("INSERT INTO t_mover.kv SELECT seq, seq FROM t_mover.seq_1_to_6")
        .await
        .unwrap();
    let mut placed = pool.conn(Some("t_mover")).await;
    placed.query_drop("SELECT 1 FROM kv LIMIT 1").await.unwrap();
    pool.route_behind_the_log("mover", CLUSTERS[to], thawed.version + 1)
        .await;
    source.query("DROP DATABASE t_mover").await.unwrap();
    let n: Option<i64> = placed.query_first("SELECT COUNT(*) FROM kv").await.unwrap();
    assert_eq!(n, Some(6), "a statement by the stale route");
    // The cache was refreshed by that statement: make it stale again for a login.
    let fresh = book.lookup(&id).await.unwrap().unwrap();
    source.query("CREATE DATABASE t_mover").await.unwrap();
    source
        .query("CREATE TABLE t_mover.kv (k INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    book.transition(&id, &fresh, CLUSTERS[from], TenantState::Active)
        .await
        .unwrap()
        .unwrap();
    pool.followed(&book).await;
    pool.route_behind_the_log("mover", CLUSTERS[to], fresh.version + 2)
        .await;
    source.query("DROP DATABASE t_mover").await.unwrap();
    let mut late = pool.conn(Some("t_mover")).await;
    let n: Option<i64> = late.query_first("SELECT COUNT(*) FROM kv").await.unwrap();
    assert_eq!(n, Some(6), "a login by the stale route");
}
