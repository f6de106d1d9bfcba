//! The pool reconciler against a scripted API server: the exact requests it sends.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use lagless_directory::PoolDocument;
use lagless_directory::placement::{ClusterLoad, ClusterState};
use serde_json::{Value, json};

use super::*;
use crate::kube::mock::{self, Exchange, Recorded, bounded, lines, status};
use crate::kube::pool::status::PoolSnapshot;
use crate::kube::reconcile::MIN_BACKOFF;

const POOLS: &str = "/apis/lagless.dev/v1alpha1/namespaces/apps/mysqltenantpools/demo";
const CLUSTERS: &str = "/apis/lagless.dev/v1alpha1/namespaces/apps/mysqlclusters";
const CORE: &str = "/api/v1/namespaces/apps";
const APPS: &str = "/apis/apps/v1/namespaces/apps";
const PROXY_IMAGE: &str = "registry.example/lagless-proxy:test";

/// Records what the reconciler asks of the pool's loop, and answers with `snapshot`.
#[derive(Default)]
struct FakeLoops {
    calls: Mutex<Vec<String>>,
    snapshot: Mutex<Option<PoolSnapshot>>,
}

impl PoolLoops for FakeLoops {
    fn ensure(&self, pool: &MySQLTenantPool, count: u32) -> PoolSnapshot {
        self.calls
            .lock()
            .unwrap()
            .push(format!("ensure {} {count}", object_key(pool)));
        self.snapshot.lock().unwrap().clone().unwrap_or_default()
    }

    fn snapshot(&self, _key: &str) -> Option<PoolSnapshot> {
        self.snapshot.lock().unwrap().clone()
    }

    fn stop(&self, key: &str) {
        self.calls.lock().unwrap().push(format!("stop {key}"));
    }
}

fn pool(spec: Value, finalizer: bool) -> MySQLTenantPool {
    let mut pool: MySQLTenantPool = serde_json::from_value(json!({
        "apiVersion": "lagless.dev/v1alpha1",
        "kind": "MySQLTenantPool",
        "metadata": {"name": "demo", "namespace": "apps"},
        "spec": spec,
    }))
    .unwrap();
    pool.metadata.uid = Some("pool-uid".into());
    pool.metadata.generation = Some(1);
    pool.metadata.resource_version = Some("100".into());
    if finalizer {
        pool.metadata.finalizers = Some(vec![FINALIZER.into()]);
    }
    pool
}

fn demo(finalizer: bool) -> MySQLTenantPool {
    pool(
        json!({
            "clusters": {"min": 3, "max": 6},
            "directory": {"replicas": 1},
            "gtidDomainIdBase": 100,
            "serverIdBase": 1000,
        }),
        finalizer,
    )
}

/// Answers like an API server that holds `pool` and nothing else.
fn server(pool: &MySQLTenantPool) -> impl Fn(&Exchange) -> (u16, Value) + Send + Sync + 'static {
    mock::holding(POOLS, serde_json::to_value(pool).unwrap())
}

struct Harness {
    context: Arc<PoolContext>,
    recorded: Recorded,
    loops: Arc<FakeLoops>,
}

fn harness(respond: impl Fn(&Exchange) -> (u16, Value) + Send + Sync + 'static) -> Harness {
    let (client, recorded) = mock::client(respond);
    let loops = Arc::new(FakeLoops::default());
    let recorder = mock::recorder(client.clone());
    let context = Arc::new(PoolContext::new(
        client,
        PROXY_IMAGE.into(),
        recorder,
        Metrics::new(),
        loops.clone(),
    ));
    Harness {
        context,
        recorded,
        loops,
    }
}

/// The requests of applying pool `demo` with `tenant_clusters` tenant clusters, whose
/// Secrets exist when `secrets_exist`.
fn apply_lines(tenant_clusters: u32, secrets_exist: bool) -> Vec<String> {
    let accounts = [
        "demo-admin",
        "demo-replication",
        "demo-lookup",
        "demo-monitor",
    ];
    let mut out: Vec<String> = accounts
        .iter()
        .map(|s| format!("GET {CORE}/secrets/{s}"))
        .collect();
    if !secrets_exist {
        out.extend(accounts.iter().map(|s| format!("PATCH {CORE}/secrets/{s}")));
    }
    out.push(format!("PATCH {CLUSTERS}/demo-directory"));
    out.extend((0..tenant_clusters).map(|i| format!("PATCH {CLUSTERS}/demo-c{i}")));
    out.extend([
        format!("PATCH {CORE}/configmaps/demo-pool"),
        "PATCH /apis/policy/v1/namespaces/apps/poddisruptionbudgets/demo-proxy".into(),
        format!("PATCH {CORE}/services/demo"),
        "PATCH /apis/networking.k8s.io/v1/namespaces/apps/networkpolicies/demo-proxy".into(),
        format!("PATCH {APPS}/deployments/demo-proxy"),
        format!("PATCH {POOLS}/status"),
    ]);
    out
}

fn document(request: &Exchange) -> PoolDocument {
    let json = request.body["data"]["pool.json"].as_str().unwrap();
    PoolDocument::parse(json.as_bytes(), Path::new("/etc/lagless/pool/pool.json")).unwrap()
}

fn find<'a>(requests: &'a [Exchange], line: &str) -> &'a Exchange {
    requests
        .iter()
        .find(|r| r.line() == line)
        .unwrap_or_else(|| panic!("no {line}"))
}

#[tokio::test]
async fn first_reconcile_adds_the_finalizer_and_nothing_else() {
    let pool = demo(false);
    let h = harness(server(&pool));
    let action = bounded(reconcile(Arc::new(pool), h.context.clone()))
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let requests = h.recorded.take();
    assert_eq!(lines(&requests), [format!("PATCH {POOLS}")]);
    assert_eq!(requests[0].content_type, "application/json-patch+json");
    assert_eq!(
        requests[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    );
    assert!(h.loops.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_valid_pool_applies_its_clusters_document_and_proxies_then_the_status() {
    let pool = demo(true);
    let h = harness(server(&pool));
    let action = bounded(reconcile(Arc::new(pool), h.context.clone()))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(STATUS_INTERVAL));
    let requests = h.recorded.take();
    assert_eq!(lines(&requests), apply_lines(3, false));
    for request in requests.iter().filter(|r| r.method == "PATCH") {
        assert!(request.is_server_side_apply(), "{request:?}");
        assert!(request.body["metadata"]["name"].is_string(), "{request:?}");
    }
    // Everything but the status is owned by the pool.
    for request in requests
        .iter()
        .filter(|r| r.method == "PATCH" && !r.path.ends_with("/status"))
    {
        let owner = &request.body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "MySQLTenantPool", "{}", request.path);
        assert_eq!(owner["uid"], "pool-uid", "{}", request.path);
        assert_eq!(owner["controller"], true);
    }

    // One set of generated accounts for every cluster.
    let admin = find(&requests, &format!("PATCH {CORE}/secrets/demo-admin"));
    assert_eq!(admin.body["data"]["username"], "bGFnbGVzc19hZG1pbg==");
    assert_eq!(admin.body["data"]["password"].as_str().unwrap().len(), 44);

    // N+1 clusters, each with a GTID domain and server ids of its own and no proxies.
    let clusters: Vec<&Exchange> = requests
        .iter()
        .filter(|r| r.path.starts_with(CLUSTERS))
        .collect();
    assert_eq!(clusters.len(), 4);
    let mut domains = BTreeSet::new();
    let mut server_id_bases = BTreeSet::new();
    for cluster in &clusters {
        let body = &cluster.body;
        assert_eq!(body["kind"], "MySQLCluster");
        assert_eq!(body["apiVersion"], "lagless.dev/v1alpha1");
        assert!(body.get("status").is_none(), "{body}");
        assert_eq!(body["spec"]["proxy"]["replicas"], 0);
        assert_eq!(body["spec"]["credentials"]["adminSecretName"], "demo-admin");
        assert_eq!(
            body["spec"]["credentials"]["lookupSecretName"],
            "demo-lookup"
        );
        assert_eq!(body["metadata"]["labels"]["lagless.dev/pool"], "demo");
        assert!(domains.insert(body["spec"]["gtidDomainId"].as_i64().unwrap()));
        assert!(server_id_bases.insert(body["spec"]["serverIdBase"].as_i64().unwrap()));
    }
    assert_eq!(domains, BTreeSet::from([100, 101, 102, 103]));
    assert_eq!(server_id_bases, BTreeSet::from([1000, 1010, 1020, 1030]));
    assert_eq!(clusters[0].body["spec"]["replicas"], 1, "the directory's");

    // The document lists the three tenant clusters where the proxies mount them.
    let doc = document(find(
        &requests,
        &format!("PATCH {CORE}/configmaps/demo-pool"),
    ));
    let names: Vec<&str> = doc.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["demo-c0", "demo-c1", "demo-c2"]);
    assert_eq!(
        doc.clusters[1].topology,
        Path::new("/etc/lagless/clusters/demo-c1/topology.json")
    );

    let deployment = &find(&requests, &format!("PATCH {APPS}/deployments/demo-proxy")).body;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], PROXY_IMAGE);
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--pool", "/etc/lagless/pool/pool.json"]),
        "{args:?}"
    );
    let service = &find(&requests, &format!("PATCH {CORE}/services/demo")).body;
    assert_eq!(service["spec"]["ports"][0]["port"], 3306);

    let status = &requests.last().unwrap().body;
    assert_eq!(status["apiVersion"], "lagless.dev/v1alpha1");
    assert_eq!(status["kind"], "MySQLTenantPool");
    assert_eq!(status["status"]["phase"], "Pending");
    assert_eq!(status["status"]["clusterCount"], 3);
    assert_eq!(status["status"]["observedGeneration"], 1);
    let conditions: Vec<_> = status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        conditions,
        [
            ("Available", "False"),
            ("Progressing", "True"),
            ("Degraded", "False")
        ]
    );
    assert_eq!(*h.loops.calls.lock().unwrap(), ["ensure apps/demo 3"]);
    assert_eq!(h.context.metrics.reconciles.get(), 1);
}

#[tokio::test]
async fn a_pool_the_loop_grows_gets_another_cluster_and_a_longer_document() {
    let pool = demo(true);
    let h = harness(server(&pool));
    let load = |name: &str| ClusterLoad {
        name: name.into(),
        state: ClusterState::Open,
        capacity_bytes: 100,
        write_capacity: 10.0,
        bytes: 90,
        write_rate: 0.0,
        tenants: 5,
    };
    *h.loops.snapshot.lock().unwrap() = Some(PoolSnapshot {
        loads: Some(vec![load("demo-c0"), load("demo-c1"), load("demo-c2")]),
        primaries: ["demo-directory", "demo-c0", "demo-c1", "demo-c2"]
            .map(|c| (c.to_string(), format!("{c}-0")))
            .into(),
        wanted: Some(4),
        ..PoolSnapshot::default()
    });
    bounded(reconcile(Arc::new(pool), h.context.clone()))
        .await
        .unwrap();
    let requests = h.recorded.take();
    assert_eq!(lines(&requests), apply_lines(4, false));
    let doc = document(find(
        &requests,
        &format!("PATCH {CORE}/configmaps/demo-pool"),
    ));
    assert_eq!(doc.clusters.len(), 4);
    let c3 = &find(&requests, &format!("PATCH {CLUSTERS}/demo-c3")).body;
    assert_eq!(c3["spec"]["gtidDomainId"], 104);
    let status = &requests.last().unwrap().body["status"];
    assert_eq!(status["clusterCount"], 4);
    assert_eq!(status["phase"], "Growing");
    assert_eq!(status["tenants"], 15);
    assert_eq!(status["clusters"].as_array().unwrap().len(), 3);
    assert_eq!(status["clusters"][0]["primary"], "demo-c0-0");
    assert_eq!(*h.loops.calls.lock().unwrap(), ["ensure apps/demo 4"]);
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_nothing_is_applied() {
    let pool = pool(json!({"clusterTemplate": {"replicas": 5}}), false);
    let h = harness(server(&pool));
    let action = bounded(reconcile(Arc::new(pool), h.context.clone()))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(INVALID_INTERVAL));
    let requests = h.recorded.take();
    assert_eq!(
        lines(&requests),
        [
            "POST /apis/events.k8s.io/v1/namespaces/apps/events".to_string(),
            format!("PATCH {POOLS}/status"),
        ]
    );
    let event = &requests[0].body;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InvalidSpec");
    assert_eq!(event["regarding"]["kind"], "MySQLTenantPool");
    assert_eq!(event["regarding"]["name"], "demo");
    let note = event["note"].as_str().unwrap();
    assert!(note.contains("spec.clusterTemplate.replicas"), "{note}");
    assert!(requests[1].is_server_side_apply());
    let status = &requests[1].body["status"];
    assert_eq!(status["phase"], "Invalid");
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert_eq!(degraded["message"], note);
    assert!(h.loops.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_maximum_below_the_clusters_the_pool_has_is_refused() {
    let mut pool = demo(true);
    pool.spec.clusters.max = 3;
    pool.status = Some(MySQLTenantPoolStatus {
        cluster_count: Some(4),
        ..MySQLTenantPoolStatus::default()
    });
    let h = harness(server(&pool));
    bounded(reconcile(Arc::new(pool), h.context.clone()))
        .await
        .unwrap();
    let requests = h.recorded.take();
    assert_eq!(
        lines(&requests),
        [
            "POST /apis/events.k8s.io/v1/namespaces/apps/events".to_string(),
            format!("PATCH {POOLS}/status"),
        ],
        "no cluster is dropped from the pool document"
    );
    let note = requests[0].body["note"].as_str().unwrap();
    assert!(
        note.starts_with("spec.clusters.max: must be at least 4"),
        "{note}"
    );
}

#[tokio::test]
async fn an_apply_error_names_the_object_and_stops_there() {
    let pool = demo(true);
    let base = server(&pool);
    let h = harness(move |request: &Exchange| {
        if request.path.ends_with("/mysqlclusters/demo-c1") {
            return status(500, "InternalError");
        }
        base(request)
    });
    let pool = Arc::new(pool);
    let error = bounded(reconcile(pool.clone(), h.context.clone()))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("MySQLCluster demo-c1"), "{message}");
    let requests = h.recorded.take();
    assert_eq!(
        requests.last().map(Exchange::line),
        Some(format!("PATCH {CLUSTERS}/demo-c1")),
        "nothing after the failed apply: no status from a half-applied pool"
    );
    assert_eq!(h.context.metrics.reconcile_errors.get(), 1);
    assert!(h.loops.calls.lock().unwrap().is_empty());
    assert_eq!(
        error_policy(pool.clone(), &error, h.context.clone()),
        Action::requeue(MIN_BACKOFF)
    );
    assert_eq!(
        error_policy(pool, &error, h.context.clone()),
        Action::requeue(MIN_BACKOFF * 2)
    );
}

#[tokio::test]
async fn a_failed_read_names_the_secret() {
    let pool = demo(true);
    let base = server(&pool);
    let h = harness(move |request: &Exchange| {
        if request.method == "GET" && request.path.ends_with("/secrets/demo-lookup") {
            return status(403, "Forbidden");
        }
        base(request)
    });
    let message = bounded(reconcile(Arc::new(pool), h.context.clone()))
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("reading Secret demo-lookup"), "{message}");
    assert!(
        !lines(&h.recorded.take())
            .iter()
            .any(|l| l.starts_with("PATCH")),
        "nothing is applied before everything is built"
    );
}

#[tokio::test]
async fn existing_secrets_are_left_alone() {
    let pool = demo(true);
    let stored = serde_json::to_value(&pool).unwrap();
    let h = harness(move |request: &Exchange| {
        if request.path.starts_with(POOLS) {
            return (200, stored.clone());
        }
        if request.method == "GET" && request.path.contains("/secrets/") {
            let name = request.path.rsplit('/').next().unwrap_or_default();
            return (
                200,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}),
            );
        }
        (200, request.body.clone())
    });
    bounded(reconcile(Arc::new(pool), h.context.clone()))
        .await
        .unwrap();
    assert_eq!(lines(&h.recorded.take()), apply_lines(3, true));
}

#[tokio::test]
async fn a_self_issued_certificate_is_made_before_the_clusters() {
    let pool = pool(
        json!({"clusters": {"min": 1, "max": 2}, "clusterTemplate": {"tls": {}}}),
        true,
    );
    let h = harness(server(&pool));
    bounded(reconcile(Arc::new(pool), h.context.clone()))
        .await
        .unwrap();
    let requests = h.recorded.take();
    let tls: Vec<String> = lines(&requests)
        .into_iter()
        .filter(|l| l.contains("-tls"))
        .collect();
    assert_eq!(
        tls,
        [
            format!("GET {CORE}/secrets/demo-tls-ca"),
            format!("PATCH {CORE}/secrets/demo-tls-ca"),
            format!("GET {CORE}/secrets/demo-tls"),
            format!("PATCH {CORE}/secrets/demo-tls"),
        ]
    );
    let position = |line: &str| lines(&requests).iter().position(|l| l == line).unwrap();
    assert!(
        position(&format!("PATCH {CORE}/secrets/demo-tls"))
            < position(&format!("PATCH {CLUSTERS}/demo-directory"))
    );
    let issued = find(&requests, &format!("PATCH {CORE}/secrets/demo-tls"));
    assert!(issued.body["metadata"]["annotations"]["lagless.dev/names-hash"].is_string());
    for cluster in requests.iter().filter(|r| r.path.starts_with(CLUSTERS)) {
        assert_eq!(
            cluster.body["spec"]["tls"],
            json!({"secretName": "demo-tls"})
        );
    }
}

#[tokio::test]
async fn a_pool_without_proxies_scales_a_leftover_deployment_down_once() {
    let pool = pool(
        json!({"clusters": {"min": 1, "max": 1}, "proxy": {"replicas": 0}}),
        true,
    );
    let h = harness(server(&pool));
    let pool = Arc::new(pool);
    bounded(reconcile(pool.clone(), h.context.clone()))
        .await
        .unwrap();
    let requests = h.recorded.take();
    let proxies: Vec<&Exchange> = requests
        .iter()
        .filter(|r| r.path.contains("demo-proxy") || r.path.ends_with("/services/demo"))
        .collect();
    assert_eq!(proxies.len(), 1, "{:?}", lines(&requests));
    assert_eq!(
        proxies[0].line(),
        format!("PATCH {APPS}/deployments/demo-proxy")
    );
    assert_eq!(proxies[0].content_type, "application/merge-patch+json");
    assert_eq!(proxies[0].body, json!({"spec": {"replicas": 0}}));
    // The same generation again: not asked twice.
    bounded(reconcile(pool, h.context.clone())).await.unwrap();
    assert!(
        !lines(&h.recorded.take())
            .iter()
            .any(|l| l.contains("demo-proxy"))
    );
}

#[tokio::test]
async fn deletion_stops_the_loop_and_removes_the_finalizer() {
    let mut pool = demo(true);
    pool.spec.clusters.max = 0; // Even an invalid spec is cleaned up.
    pool.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    let h = harness(server(&pool));
    let action = bounded(reconcile(Arc::new(pool), h.context.clone()))
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let requests = h.recorded.take();
    assert_eq!(
        lines(&requests),
        [
            "POST /apis/events.k8s.io/v1/namespaces/apps/events".to_string(),
            format!("PATCH {POOLS}"),
        ]
    );
    assert_eq!(requests[0].body["reason"], "Deleting");
    assert_eq!(
        requests[1].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    assert_eq!(*h.loops.calls.lock().unwrap(), ["stop apps/demo"]);
}
