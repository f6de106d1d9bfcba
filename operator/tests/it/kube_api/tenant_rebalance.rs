//! `spec.rebalance` on a real API server: the pool's loop (as the operator runs it, as the
//! chart's ServiceAccount) finds one cluster much fuller than the other, plans the move the
//! local runtime would, and makes it a `MySQLTenantMove` the pool owns, which the move
//! controller runs to `done`; the next looks move nothing more. The servers are the test's
//! own, published in topology ConfigMaps; the pool's `MySQLCluster`s are objects whose status
//! the test writes (no pods run here).

use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use lagless_directory::{ClusterState, TenantId};
use lagless_operator::crd::MySQLCluster;
use lagless_operator::crd::tenant_move::MySQLTenantMove;
use lagless_operator::crd::tenant_pool::{self, MySQLTenantPool};
use lagless_operator::kube::pool::operate::{PoolLoops, PoolTasks};
use lagless_operator::kube::pool::rebalance::REBALANCE_LABEL;
use mysql_async::prelude::*;

use super::harness::{ControlPlane, eventually};
use super::tenant_move::{publish, start_movers};
use super::{NAMESPACE, init_logs};
use crate::tenant_move::Fleet;

const POOL: &str = "move";
const CLUSTERS: [&str; 2] = ["move-c0", "move-c1"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_in_kubernetes_moves_a_tenant_by_itself_until_its_clusters_are_even() {
    init_logs();
    let plane = ControlPlane::start().await;
    plane.install_crds(true).await;
    let (client, _) = plane.chart_service_account().await;
    let admin = &plane.admin;
    let fleet = Fleet::start_named(CLUSTERS).await;

    // Two tenants on one cluster (the other closed while they are made), filled unevenly.
    let book = fleet.book();
    book.set_cluster_state(CLUSTERS[1], ClusterState::Closed)
        .await
        .unwrap();
    let mut app = fleet.app(None).await;
    for (tenant, rows) in [("big", 1200), ("small", 500)] {
        app.query_drop(format!("CREATE DATABASE t_{tenant}"))
            .await
            .unwrap();
        app.query_drop(format!(
            "CREATE TABLE t_{tenant}.rows (id INT PRIMARY KEY, pad VARCHAR(1000))"
        ))
        .await
        .unwrap();
        app.query_drop(format!(
            "INSERT INTO t_{tenant}.rows SELECT seq, REPEAT('x', 1000) FROM t_{tenant}.seq_1_to_{rows}"
        ))
        .await
        .unwrap();
        app.query_drop(format!("ANALYZE TABLE t_{tenant}.rows"))
            .await
            .unwrap();
    }
    book.set_cluster_state(CLUSTERS[1], ClusterState::Open)
        .await
        .unwrap();
    let home = |tenant: &'static str| {
        let book = fleet.book();
        async move {
            book.lookup(&TenantId::parse(tenant).unwrap())
                .await
                .unwrap()
                .unwrap()
                .cluster
        }
    };
    assert_eq!(home("big").await, CLUSTERS[0]);
    assert_eq!(home("small").await, CLUSTERS[0]);

    // The pool, its clusters as the pool would apply them (each `Running`), their topologies
    // and the pool's Secrets.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/tenantpool.yaml"
    ))
    .unwrap();
    let pool: MySQLTenantPool = serde_saphyr::from_str(
        &text
            .replace("name: demo", &format!("name: {POOL}"))
            .replace("min: 3", "min: 2")
            .replace("max: 6", "max: 2")
            .replace("capacityBytes: 100Gi", "capacityBytes: 4Mi")
            .replace("enabled: false", "enabled: true")
            .replace("intervalSeconds: 300", "intervalSeconds: 5")
            .replace("copyRateMib: 4", "copyRateMib: 0"),
    )
    .unwrap();
    assert!(pool.spec.rebalance.enabled && pool.spec.clusters.max == 2);
    let pools: Api<MySQLTenantPool> = Api::namespaced(admin.clone(), NAMESPACE);
    let pool = pools.create(&PostParams::default(), &pool).await.unwrap();
    let clusters: Api<MySQLCluster> = Api::namespaced(admin.clone(), NAMESPACE);
    for cluster in tenant_pool::clusters_with(&pool, 2) {
        let name = cluster.name_any();
        clusters
            .create(&PostParams::default(), &cluster)
            .await
            .unwrap();
        clusters
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": {"phase": "Running"}})),
            )
            .await
            .unwrap();
    }
    publish(admin, &pool, &fleet).await;

    // The pool's loop and the move controller, as the operator runs them.
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "lagless-operator".into(),
            instance: Some("test".into()),
        },
    );
    let loops = PoolTasks::new(client.clone(), recorder);
    loops.ensure(&pool, 2);
    let movers = start_movers(client.clone());

    // The smaller tenant moves (the larger would leave the other cluster the fuller).
    let moves: Api<MySQLTenantMove> = Api::namespaced(admin.clone(), NAMESPACE);
    let made = eventually("a move made by the pool", || async {
        moves
            .list(&ListParams::default().labels(REBALANCE_LABEL))
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        (made.spec.tenant.as_str(), made.spec.to.as_str()),
        ("small", CLUSTERS[1])
    );
    assert!(
        made.owner_references()
            .iter()
            .any(|o| o.kind == "MySQLTenantPool" && o.name == POOL),
        "{made:?}"
    );
    // The look is on record once it has returned (after it made the move): the pool's loop
    // says a move runs, and the pool's Event names it.
    let key = format!("{NAMESPACE}/{POOL}");
    let said = eventually("the pool's loop saying a move runs", || async {
        loops.snapshot(&key)?.rebalance.filter(|r| r.moving)
    })
    .await;
    assert_eq!(said.reason, "Moving", "{said:?}");
    let events: Api<Event> = Api::namespaced(admin.clone(), NAMESPACE);
    eventually("the pool's Rebalancing Event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("Rebalancing")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("tenant small from move-c0 to move-c1"))
            })
    })
    .await;
    let done = eventually("the pool's move ended", || async {
        moves
            .get_opt(&made.name_any())
            .await
            .ok()??
            .status
            .filter(|s| s.is_final())
    })
    .await;
    assert_eq!(done.phase.as_deref(), Some("done"), "{done:?}");
    assert_eq!(home("small").await, CLUSTERS[1]);
    assert_eq!(home("big").await, CLUSTERS[0]);
    let rows: Option<u64> = fleet.clusters[1]
        .primary()
        .query("SELECT COUNT(*) FROM t_small.rows")
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(rows, Some(500));

    // Later looks (past the interval) move nothing: the clusters are even, or the larger
    // tenant would reverse the gap.
    let quiet = eventually("a look after the move", || async {
        let said = loops.snapshot(&key)?.rebalance?;
        let settled = said.message.contains("would narrow") || said.message.contains("evenly");
        (!said.moving && settled).then_some(said)
    })
    .await;
    assert_eq!(quiet.reason, "Idle", "{quiet:?}");
    let made_all = moves
        .list(&ListParams::default().labels(REBALANCE_LABEL))
        .await
        .unwrap()
        .items;
    assert_eq!(
        made_all.len(),
        1,
        "{:?}",
        made_all.iter().map(|m| m.name_any()).collect::<Vec<_>>()
    );
    movers.abort();
    loops.stop(&key);
}
