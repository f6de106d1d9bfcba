//! Tests of the test kit itself, against real mariadbd processes.

use std::time::{Duration, Instant};

use lagless_testkit::{Cluster, KitError, process_alive};
use mysql_async::prelude::Queryable;

const WAIT: Duration = Duration::from_secs(20);

async fn write_row(cluster: &Cluster, table: &str, value: i64) {
    let mut conn = cluster.primary().app_conn().await.unwrap();
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY AUTO_INCREMENT, v BIGINT)"
    ))
    .await
    .unwrap();
    conn.exec_drop(format!("INSERT INTO {table} (v) VALUES (?)"), (value,))
        .await
        .unwrap();
}

async fn has_value(member: &lagless_testkit::Member, table: &str, value: i64) -> bool {
    let mut conn = member.app_conn().await.unwrap();
    let found: Option<i64> = conn
        .exec_first(format!("SELECT v FROM {table} WHERE v = ?"), (value,))
        .await
        .unwrap_or(None);
    found == Some(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_to_every_replica_and_replicas_refuse_app_writes() {
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    eprintln!("3-member cluster started in {:?}", cluster.started_in());
    write_row(&cluster, "t", 42).await;
    cluster.wait_replicated(WAIT).await.unwrap();
    for replica in cluster.replicas() {
        assert!(
            has_value(replica, "t", 42).await,
            "replica {}",
            replica.index()
        );
        let p = replica.positions().await.unwrap();
        assert!(p.read_only);
        assert_eq!(p.io_running.as_deref(), Some("Yes"));
        assert_eq!(p.gtid_slave_pos, "1-100-2", "CREATE + INSERT in domain 1");
    }
    let primary = cluster.primary().positions().await.unwrap();
    assert!(!primary.read_only);
    assert_eq!(primary.gtid_binlog_pos, "1-100-2");

    // The application user cannot write on a read-only replica: 1290, not silent divergence.
    let mut conn = cluster.member(1).app_conn().await.unwrap();
    let err = conn
        .query_drop("INSERT INTO t (v) VALUES (7)")
        .await
        .unwrap_err();
    match err {
        mysql_async::Error::Server(e) => assert_eq!(e.code, 1290, "{e}"),
        other => panic!("expected a server error, got {other}"),
    }
    // Distinct server ids.
    let mut ids: Vec<u32> = cluster.members().iter().map(|m| m.server_id()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_on_own_data() {
    let cluster = Cluster::builder().members(2).start().await.unwrap();
    write_row(&cluster, "k", 1).await;
    cluster.wait_replicated(WAIT).await.unwrap();

    let replica = cluster.member(1);
    let pid = replica.pid().unwrap();
    replica.kill9().unwrap();
    assert!(!process_alive(pid));
    assert!(!replica.is_running());
    assert!(replica.app_conn().await.is_err());

    write_row(&cluster, "k", 2).await;
    replica.restart().await.unwrap();
    assert_ne!(replica.pid(), Some(pid));
    // Replication resumes from the crash-safe position and catches up.
    cluster.wait_replicated(WAIT).await.unwrap();
    assert!(has_value(replica, "k", 1).await);
    assert!(has_value(replica, "k", 2).await);

    // The primary too: kill -9, restart, data intact.
    cluster.primary().kill9().unwrap();
    cluster.primary().restart().await.unwrap();
    assert!(has_value(cluster.primary(), "k", 2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start_replication_threads() {
    let cluster = Cluster::builder().members(2).start().await.unwrap();
    let replica = cluster.member(1);
    write_row(&cluster, "s", 1).await;
    cluster.wait_replicated(WAIT).await.unwrap();

    replica.stop_sql_thread().await.unwrap();
    write_row(&cluster, "s", 2).await;
    let head = cluster.primary().positions().await.unwrap().gtid_binlog_pos;
    // The IO thread still retrieves the event; the SQL thread does not apply it.
    let deadline = Instant::now() + WAIT;
    loop {
        let p = replica.positions().await.unwrap();
        assert_eq!(p.sql_running.as_deref(), Some("No"));
        if p.gtid_io_pos == head {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "IO thread never retrieved {head}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!has_value(replica, "s", 2).await);
    assert!(
        replica
            .wait_for_gtid(&head, Duration::from_millis(300))
            .await
            .is_err()
    );
    replica.start_sql_thread().await.unwrap();
    replica.wait_for_gtid(&head, WAIT).await.unwrap();
    assert!(has_value(replica, "s", 2).await);

    replica.stop_io_thread().await.unwrap();
    write_row(&cluster, "s", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p = replica.positions().await.unwrap();
    assert_eq!(p.io_running.as_deref(), Some("No"));
    assert_eq!(p.gtid_io_pos, head, "a stopped IO thread retrieves nothing");
    replica.start_io_thread().await.unwrap();
    cluster.wait_replicated(WAIT).await.unwrap();
    assert!(has_value(replica, "s", 3).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_delay_holds_back_a_replica() {
    let cluster = Cluster::builder().members(2).start().await.unwrap();
    let replica = cluster.member(1);
    replica.set_master_delay(2).await.unwrap();
    let written = Instant::now();
    write_row(&cluster, "d", 1).await;
    let head = cluster.primary().positions().await.unwrap().gtid_binlog_pos;
    assert!(
        replica
            .wait_for_gtid(&head, Duration::from_millis(800))
            .await
            .is_err(),
        "a replica with MASTER_DELAY=2 applied the write early"
    );
    replica.wait_for_gtid(&head, WAIT).await.unwrap();
    // The delay counts from the event's timestamp, in whole seconds: a write late in a second
    // is applied a little over 1 s later, never sooner.
    let took = written.elapsed();
    assert!(took >= Duration::from_secs(1), "applied after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_member_hangs_until_resumed() {
    let cluster = Cluster::builder().members(1).start().await.unwrap();
    let primary = cluster.primary();
    primary.pause().unwrap();
    let attempt = tokio::time::timeout(Duration::from_millis(700), primary.app_conn()).await;
    assert!(attempt.is_err(), "a SIGSTOPped server answered");
    primary.resume().unwrap();
    let mut conn = tokio::time::timeout(WAIT, primary.app_conn())
        .await
        .unwrap()
        .unwrap();
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_cluster_ends_every_process_and_removes_its_directory() {
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    cluster.member(2).pause().unwrap();
    let pids: Vec<u32> = cluster.members().iter().filter_map(|m| m.pid()).collect();
    assert_eq!(pids.len(), 3);
    let dir = cluster.dir().to_path_buf();
    assert!(dir.is_dir());
    drop(cluster);
    for pid in pids {
        assert!(!process_alive(pid), "mariadbd {pid} survived its handle");
    }
    assert!(!dir.exists(), "{} was left behind", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_test_still_cleans_up() {
    let pids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = pids.clone();
    let task = tokio::spawn(async move {
        let cluster = Cluster::builder().members(2).start().await.unwrap();
        seen.lock()
            .unwrap()
            .extend(cluster.members().iter().filter_map(|m| m.pid()));
        panic!("test body failed");
    });
    assert!(task.await.unwrap_err().is_panic());
    let pids = pids.lock().unwrap().clone();
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(!process_alive(pid), "mariadbd {pid} survived a panic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_in_parallel_do_not_collide() {
    let (a, b) = tokio::join!(
        Cluster::builder().members(2).start(),
        Cluster::builder().members(2).start()
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut ports: Vec<u16> = a
        .members()
        .iter()
        .chain(b.members())
        .map(|m| m.port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4);
    assert_ne!(a.dir(), b.dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_time_after_the_first_cluster() {
    // Make sure the template exists, then time a fresh 3-member cluster.
    drop(Cluster::builder().members(1).start().await.unwrap());
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    eprintln!(
        "3-member cluster up and replicating in {:?} (template ready)",
        cluster.started_in()
    );
    // Replication works, so the timing is of a real, usable cluster.
    write_row(&cluster, "st", 5).await;
    cluster.wait_replicated(WAIT).await.unwrap();
    assert!(has_value(cluster.member(2), "st", 5).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_mariadbd_is_a_clear_error() {
    let err = Cluster::builder()
        .mariadbd("/nonexistent/mariadbd")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, KitError::MissingBinary { .. }), "{err}");
    assert!(err.to_string().contains("apt-get install mariadb-server"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_fails_to_start_shows_its_log() {
    let started = Instant::now();
    let err = Cluster::builder()
        .members(1)
        .config_line("no_such_option_anywhere=1")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, KitError::Start { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("unknown variable"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it should fail fast, not hang"
    );
}
