//! The directory against a real `mariadbd`: schema, routes, the change log, clusters and the
//! create flow.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lagless_directory::{
    ClusterState, Directory, DirectoryError, Reserved, Route, TenantId, TenantState,
};
use lagless_testkit::{ADMIN_PASSWORD, ADMIN_USER, Cluster, conn_opts};

const GB: u64 = 1 << 30;

async fn start() -> (Cluster, Directory) {
    let cluster = Cluster::builder().members(1).start().await.unwrap();
    let opts = conn_opts(cluster.primary().port(), ADMIN_USER, ADMIN_PASSWORD, None);
    let dir = Directory::new(opts);
    dir.ensure_schema().await.unwrap();
    (cluster, dir)
}

fn id(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn route(cluster: &str, version: u64, state: TenantState) -> Route {
    Route {
        cluster: cluster.into(),
        version,
        state,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_clusters_and_the_change_log() {
    let (_cluster, dir) = start().await;
    // A second run finds everything in place.
    dir.ensure_schema().await.unwrap();

    assert_eq!(dir.last_seq().await.unwrap(), 0);
    assert!(dir.changes_since(0, 100).await.unwrap().is_empty());
    assert_eq!(dir.lookup(&id("42")).await.unwrap(), None);

    // Clusters: registered, measured, re-registered (the load stays), state changes.
    dir.register_cluster("c1", ClusterState::Open, 100 * GB, 1000.0)
        .await
        .unwrap();
    dir.register_cluster("c2", ClusterState::Filling, 50 * GB, 500.0)
        .await
        .unwrap();
    dir.update_load("c1", 5 * GB, 12.5, 3).await.unwrap();
    dir.register_cluster("c1", ClusterState::Open, 200 * GB, 2000.0)
        .await
        .unwrap();
    dir.set_cluster_state("c2", ClusterState::Open)
        .await
        .unwrap();
    // Setting the state it has already is no error.
    dir.set_cluster_state("c2", ClusterState::Open)
        .await
        .unwrap();
    let clusters = dir.clusters().await.unwrap();
    assert_eq!(clusters.len(), 2);
    let c1 = &clusters[0];
    assert_eq!(
        (
            c1.name.as_str(),
            c1.state,
            c1.capacity_bytes,
            c1.write_capacity
        ),
        ("c1", ClusterState::Open, 200 * GB, 2000.0)
    );
    // Tenants are counted live from the directory, not taken from the measurement (3): none
    // has been placed yet.
    assert_eq!((c1.bytes, c1.write_rate, c1.tenants), (5 * GB, 12.5, 0));
    assert_eq!(
        (
            clusters[1].name.as_str(),
            clusters[1].state,
            clusters[1].bytes
        ),
        ("c2", ClusterState::Open, 0)
    );
    for err in [
        dir.update_load("nope", 1, 1.0, 1).await.unwrap_err(),
        dir.set_cluster_state("nope", ClusterState::Closed)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(
            err.to_string(),
            "cluster nope is not registered in the directory"
        );
    }
    assert!(matches!(
        dir.register_cluster("bad name", ClusterState::Open, 1, 1.0)
            .await,
        Err(DirectoryError::Invalid(_))
    ));

    // Reserve, reserve again (the first one stands), activate (idempotent).
    let t42 = id("42");
    let creating = route("c1", 1, TenantState::Creating);
    assert_eq!(
        dir.reserve(&t42, "c1").await.unwrap(),
        Reserved::New(creating.clone())
    );
    assert_eq!(
        dir.reserve(&t42, "c2").await.unwrap(),
        Reserved::Existing(creating.clone())
    );
    assert_eq!(dir.lookup(&t42).await.unwrap(), Some(creating.clone()));
    let active = route("c1", 2, TenantState::Active);
    assert_eq!(dir.activate(&t42).await.unwrap(), active);
    assert_eq!(dir.activate(&t42).await.unwrap(), active);
    assert_eq!(dir.lookup(&t42).await.unwrap(), Some(active.clone()));

    let changes = dir.changes_since(0, 100).await.unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes[0].seq < changes[1].seq);
    assert_eq!(changes[0].tenant, t42);
    assert_eq!(changes[0].route, Some(creating));
    assert_eq!(changes[1].route, Some(active.clone()));
    assert_eq!(dir.last_seq().await.unwrap(), changes[1].seq);
    let paged = dir.changes_since(0, 1).await.unwrap();
    assert_eq!(paged, changes[..1]);
    assert_eq!(
        dir.changes_since(changes[0].seq, 10).await.unwrap(),
        changes[1..]
    );

    let t7 = id("7");
    dir.reserve(&t7, "c2").await.unwrap();
    let active7 = dir.activate(&t7).await.unwrap();
    assert_eq!(
        dir.list(None).await.unwrap(),
        vec![(t42.clone(), active.clone()), (t7.clone(), active7.clone())]
    );
    assert_eq!(
        dir.list(Some("c2")).await.unwrap(),
        vec![(t7.clone(), active7)]
    );
    assert!(dir.list(Some("c3")).await.unwrap().is_empty());
    assert_eq!(
        dir.tenant_counts().await.unwrap(),
        BTreeMap::from([("c1".to_string(), 1), ("c2".to_string(), 1)])
    );

    // Forget: the row goes, a removal is logged once, and a later tenant of the same id
    // continues its versions.
    let before = dir.last_seq().await.unwrap();
    dir.forget(&t42).await.unwrap();
    dir.forget(&t42).await.unwrap();
    assert_eq!(dir.lookup(&t42).await.unwrap(), None);
    let removal = dir.changes_since(before, 100).await.unwrap();
    assert_eq!(removal.len(), 1, "{removal:?}");
    assert_eq!((&removal[0].tenant, &removal[0].route), (&t42, &None));
    assert_eq!(
        dir.reserve(&t42, "c2").await.unwrap(),
        Reserved::New(route("c2", 4, TenantState::Creating))
    );

    // Refusals.
    let err = dir.activate(&id("unknown")).await.unwrap_err();
    assert_eq!(err.to_string(), "tenant unknown is not in the directory");
    assert!(matches!(
        dir.reserve(&id("x"), "").await,
        Err(DirectoryError::Invalid(_))
    ));
    dir.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_tenant_places_creates_and_cleans_up() {
    let (cluster, dir) = start().await;
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let recording = |result: Result<(), String>| {
        let calls = calls.clone();
        move |cluster: String| {
            calls.lock().unwrap().push(cluster);
            async move { result }
        }
    };

    let err = dir
        .create_tenant(&id("a1"), recording(Ok(())))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no tenant cluster is registered as open or filling"),
        "{err}"
    );
    assert!(calls.lock().unwrap().is_empty());

    dir.register_cluster("c1", ClusterState::Open, 100 * GB, 1000.0)
        .await
        .unwrap();
    dir.register_cluster("c2", ClusterState::Open, 100 * GB, 1000.0)
        .await
        .unwrap();
    dir.register_cluster("c3", ClusterState::Closed, 100 * GB, 1000.0)
        .await
        .unwrap();

    // The create step really creates a database on the chosen cluster (one server here).
    let primary = cluster.primary();
    let created = dir
        .create_tenant(&id("a1"), |cluster| async move {
            assert!(cluster == "c1" || cluster == "c2", "{cluster}");
            primary
                .exec("CREATE DATABASE IF NOT EXISTS `t_a1`")
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap();
    assert_eq!((created.version, created.state), (2, TenantState::Active));
    assert_ne!(created.cluster, "c3");
    assert_eq!(
        primary
            .query("SHOW DATABASES LIKE 't\\_a1'")
            .await
            .unwrap()
            .len(),
        1
    );

    // An existing tenant is returned as it is; nothing is created.
    let again = dir
        .ensure_tenant(&id("a1"), recording(Err("must not run".into())))
        .await
        .unwrap();
    assert_eq!(again, Reserved::Existing(created.clone()));
    assert!(calls.lock().unwrap().is_empty());

    // A failed create removes the reservation it made.
    let before = dir.last_seq().await.unwrap();
    let err = dir
        .create_tenant(&id("b1"), recording(Err("disk full".into())))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("tenant b1: creating its database on cluster c")
            && message.ends_with("failed: disk full; the reservation was removed"),
        "{message}"
    );
    assert!(matches!(err, DirectoryError::Invalid(_)));
    assert_eq!(dir.lookup(&id("b1")).await.unwrap(), None);
    let log = dir.changes_since(before, 10).await.unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        log[0].route.as_ref().map(|r| r.state),
        Some(TenantState::Creating)
    );
    assert_eq!(log[1].route, None);
    assert_eq!(calls.lock().unwrap().len(), 1);

    // A tenant left half created is finished on its cluster, and a failure then leaves the
    // reservation (it is not this call's) alone.
    calls.lock().unwrap().clear();
    dir.reserve(&id("s1"), "c3").await.unwrap();
    let finished = dir
        .ensure_tenant(&id("s1"), recording(Ok(())))
        .await
        .unwrap();
    assert_eq!(finished, Reserved::New(route("c3", 2, TenantState::Active)));
    assert_eq!(*calls.lock().unwrap(), vec!["c3".to_string()]);
    dir.reserve(&id("s2"), "c1").await.unwrap();
    dir.create_tenant(&id("s2"), recording(Err("no".into())))
        .await
        .unwrap_err();
    assert_eq!(
        dir.lookup(&id("s2")).await.unwrap(),
        Some(route("c1", 1, TenantState::Creating))
    );

    // Placement spreads tenants over the open clusters (live counts, two random choices).
    for n in 0..20 {
        dir.create_tenant(&id(&format!("p{n}")), |_| async { Ok(()) })
            .await
            .unwrap();
    }
    let counts = dir.tenant_counts().await.unwrap();
    let c1 = counts.get("c1").copied().unwrap_or(0);
    let c2 = counts.get("c2").copied().unwrap_or(0);
    assert!(c1.abs_diff(c2) <= 2, "{counts:?}");
    dir.close().await;
}

/// Proxies follow the change log by seq, so a change must never commit below a seq a follower
/// has already passed, however many writers run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_commit_in_seq_order() {
    let (cluster, dir) = start().await;
    dir.register_cluster("c1", ClusterState::Open, GB, 1.0)
        .await
        .unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let dir = dir.clone();
            tokio::spawn(async move {
                for n in 0..25 {
                    let t = id(&format!("w{w}_{n}"));
                    dir.reserve(&t, "c1").await.unwrap();
                    dir.activate(&t).await.unwrap();
                }
            })
        })
        .collect();
    // The follower has connections of its own, as a proxy would.
    let follower = Directory::new(conn_opts(
        cluster.primary().port(),
        ADMIN_USER,
        ADMIN_PASSWORD,
        None,
    ));
    let mut seen = Vec::new();
    let mut last = 0;
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let page = follower.changes_since(last, 7).await.unwrap();
        if let Some(c) = page.last() {
            last = c.seq;
        }
        let drained = page.is_empty();
        seen.extend(page.into_iter().map(|c| c.seq));
        if done && drained {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let all: Vec<u64> = dir
        .changes_since(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(all.len(), 200);
    assert_eq!(seen, all, "the follower missed changes");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 200);
    follower.close().await;
    dir.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_flips_the_route_by_compare_and_swap() {
    let (cluster, dir) = start().await;
    let t = id("mover");
    dir.reserve(&t, "a").await.unwrap();
    let active = dir.activate(&t).await.unwrap();
    assert_eq!(active, route("a", 2, TenantState::Active));
    let mut feed = lagless_directory::ChangeFeed::new(conn_opts(
        cluster.primary().port(),
        ADMIN_USER,
        ADMIN_PASSWORD,
        None,
    ));
    let before = feed.last_seq().await.unwrap();

    let moving = dir
        .transition(&t, &active, "a", TenantState::Moving)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moving, route("a", 3, TenantState::Moving));
    // A step repeated with the old expectation (a restarted mover) changes nothing.
    assert_eq!(
        dir.transition(&t, &active, "a", TenantState::Frozen)
            .await
            .unwrap(),
        None
    );
    let frozen = dir
        .transition(&t, &moving, "a", TenantState::Frozen)
        .await
        .unwrap()
        .unwrap();
    let flipped = dir
        .transition(&t, &frozen, "b", TenantState::Active)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(flipped, route("b", 5, TenantState::Active));
    assert_eq!(dir.lookup(&t).await.unwrap(), Some(flipped.clone()));

    // Every step is in the change log, in order, as the proxies' feed reads it.
    let log: Vec<Option<Route>> = feed
        .since(before, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.route)
        .collect();
    assert_eq!(log, vec![Some(moving), Some(frozen), Some(flipped)]);
    // An unknown tenant, or a bad cluster name, is refused.
    assert_eq!(
        dir.transition(&id("nobody"), &active, "b", TenantState::Active)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        dir.transition(&t, &active, "Bad Name", TenantState::Active)
            .await,
        Err(DirectoryError::Invalid(_))
    ));
}
