//! The reconciler against a scripted API server: the exact requests it sends.

use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use lagless_core::topology::{Flavor, Member, Topology, TopologyState};
use serde_json::{Value, json};

use super::*;
use crate::kube::mock::{self, Exchange, Recorded, bounded, lines, status};
use crate::kube::orchestration::{fold_events, record_event};
use crate::kube::status::Snapshot;
use crate::orchestrate::run::TimedEvent;
use crate::orchestrate::{Cause, ClusterState, Event};

const NS: &str = "default";
const CLUSTERS: &str = "/apis/lagless.dev/v1alpha1/namespaces/default/mysqlclusters/shop";
const PROXY_IMAGE: &str = "registry.example/lagless-proxy:test";

/// Records what the reconciler asks of the orchestration, and answers with `snapshot`.
#[derive(Default)]
struct FakeOrchestrations {
    calls: Mutex<Vec<String>>,
    /// What the per-cluster task last left for the reconciler.
    snapshot: Mutex<Snapshot>,
}

impl Orchestrations for FakeOrchestrations {
    fn ensure(&self, cluster: &MySQLCluster) -> Snapshot {
        self.calls
            .lock()
            .unwrap()
            .push(format!("ensure {}", cluster_key(cluster)));
        self.snapshot.lock().unwrap().clone()
    }

    fn stop(&self, key: &str) {
        self.calls.lock().unwrap().push(format!("stop {key}"));
    }
}

fn cluster(replicas: i32, finalizer: bool) -> MySQLCluster {
    let spec = serde_json::from_value(json!({ "replicas": replicas })).unwrap();
    let mut cluster = MySQLCluster::new("shop", spec);
    cluster.metadata.namespace = Some(NS.into());
    cluster.metadata.uid = Some("uid-1".into());
    cluster.metadata.generation = Some(1);
    cluster.metadata.resource_version = Some("100".into());
    if finalizer {
        cluster.metadata.finalizers = Some(vec![FINALIZER.into()]);
    }
    cluster
}

/// Answers like an API server that holds `cluster` and nothing else.
fn server(cluster: &MySQLCluster) -> impl Fn(&Exchange) -> (u16, Value) + Send + Sync + 'static {
    mock::holding(CLUSTERS, serde_json::to_value(cluster).unwrap())
}

struct Harness {
    context: Arc<Context>,
    recorded: Recorded,
    orchestrations: Arc<FakeOrchestrations>,
}

fn harness(respond: impl Fn(&Exchange) -> (u16, Value) + Send + Sync + 'static) -> Harness {
    let (client, recorded) = mock::client(respond);
    let orchestrations = Arc::new(FakeOrchestrations::default());
    let recorder = mock::recorder(client.clone());
    let context = Arc::new(Context::new(
        client,
        PROXY_IMAGE.into(),
        recorder,
        Metrics::new(),
        orchestrations.clone(),
    ));
    Harness {
        context,
        recorded,
        orchestrations,
    }
}

#[tokio::test]
async fn first_reconcile_adds_the_finalizer_and_nothing_else() {
    let cluster = cluster(3, false);
    let h = harness(server(&cluster));
    let action = bounded(reconcile(Arc::new(cluster), h.context.clone()))
        .await
        .unwrap();
    // The finalizer patch triggers the next reconcile itself.
    assert_eq!(action, Action::await_change());
    let requests = h.recorded.take();
    assert_eq!(lines(&requests), [format!("PATCH {CLUSTERS}")]);
    let patch = &requests[0];
    assert_eq!(patch.content_type, "application/json-patch+json");
    assert_eq!(
        patch.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    );
    assert!(h.orchestrations.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn reconcile_applies_every_object_then_the_status() {
    let cluster = cluster(3, true);
    let h = harness(server(&cluster));
    let action = bounded(reconcile(Arc::new(cluster), h.context.clone()))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(STATUS_INTERVAL));
    let requests = h.recorded.take();
    let core = "/api/v1/namespaces/default";
    let apps = "/apis/apps/v1/namespaces/default";
    assert_eq!(
        lines(&requests),
        [
            format!("GET {core}/secrets/shop-admin"),
            format!("GET {core}/secrets/shop-replication"),
            format!("GET {core}/secrets/shop-agent"),
            format!("GET {core}/secrets/shop-lookup"),
            format!("GET {core}/secrets/shop-monitor"),
            format!("GET {core}/secrets/shop-proxy-admin"),
            format!("PATCH {core}/secrets/shop-admin"),
            format!("PATCH {core}/secrets/shop-replication"),
            format!("PATCH {core}/secrets/shop-agent"),
            format!("PATCH {core}/secrets/shop-lookup"),
            format!("PATCH {core}/secrets/shop-monitor"),
            format!("PATCH {core}/secrets/shop-proxy-admin"),
            format!("PATCH {core}/configmaps/shop-mysql-config"),
            format!("PATCH {core}/services/shop-headless"),
            "PATCH /apis/networking.k8s.io/v1/namespaces/default/networkpolicies/shop-mysql".into(),
            format!("PATCH {apps}/statefulsets/shop"),
            "PATCH /apis/policy/v1/namespaces/default/poddisruptionbudgets/shop-mysql".into(),
            format!("PATCH {apps}/deployments/shop-archiver"),
            format!("PATCH {core}/services/shop"),
            "PATCH /apis/networking.k8s.io/v1/namespaces/default/networkpolicies/shop-proxy".into(),
            format!("PATCH {apps}/deployments/shop-proxy"),
            "PATCH /apis/policy/v1/namespaces/default/poddisruptionbudgets/shop-proxy".into(),
            format!("PATCH {CLUSTERS}/status"),
        ]
    );
    for request in &requests[6..] {
        assert!(request.is_server_side_apply(), "{request:?}");
        assert!(request.body["metadata"]["name"].is_string(), "{request:?}");
    }
    // Every object is owned by the cluster, so deleting it deletes them.
    for request in &requests[6..22] {
        let owner = &request.body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], "uid-1", "{}", request.path);
        assert_eq!(owner["controller"], true);
    }
    let admin = &requests[6].body;
    assert_eq!(admin["kind"], "Secret");
    let username = admin["data"]["username"].as_str().unwrap();
    assert_eq!(username, "bGFnbGVzc19hZG1pbg=="); // base64 of lagless_admin
    let password = admin["data"]["password"].as_str().unwrap();
    assert_eq!(
        password.len(),
        44,
        "32 random characters, base64: {password}"
    );
    assert_ne!(
        password,
        requests[7].body["data"]["password"].as_str().unwrap()
    );
    assert_eq!(requests[15].body["spec"]["replicas"], 3);
    // The agent's program comes from the operator image.
    assert_eq!(
        requests[15].body["spec"]["template"]["spec"]["initContainers"][0]["image"],
        crate::kube::DEFAULT_OPERATOR_IMAGE
    );
    assert_eq!(requests[14].body["kind"], "NetworkPolicy");
    // Both policies admit the operator from its own namespace: the client's default one.
    for policy in [&requests[14].body, &requests[19].body] {
        assert_eq!(policy["kind"], "NetworkPolicy");
        let operator = &policy["spec"]["ingress"][1]["from"][1];
        assert_eq!(
            operator["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            NS
        );
        assert_eq!(
            operator["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
            "operator"
        );
    }
    assert_eq!(
        requests[20].body["spec"]["template"]["spec"]["containers"][0]["image"],
        PROXY_IMAGE
    );
    let proxy_pdb = &requests[21].body;
    assert_eq!(proxy_pdb["kind"], "PodDisruptionBudget");
    assert_eq!(proxy_pdb["metadata"]["name"], "shop-proxy");
    let status = &requests[22].body;
    assert_eq!(status["apiVersion"], "lagless.dev/v1alpha1");
    assert_eq!(status["kind"], "MySQLCluster");
    assert_eq!(status["status"]["phase"], "Pending");
    assert_eq!(status["status"]["observedGeneration"], 1);
    assert_eq!(status["status"]["ready"], "0/3");
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
            ("Degraded", "False"),
            ("FailoverInProgress", "False"),
            ("Lossless", "True")
        ]
    );
    assert!(
        status["status"]["conditions"][0]["lastTransitionTime"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(
        *h.orchestrations.calls.lock().unwrap(),
        ["ensure default/shop"]
    );
    assert_eq!(h.context.metrics.reconciles.get(), 1);
}

#[tokio::test]
async fn existing_and_user_supplied_secrets_are_left_alone() {
    let mut cluster = cluster(1, true);
    cluster.spec.credentials.replication_secret_name = Some("mine".into());
    let stored = serde_json::to_value(&cluster).unwrap();
    let h = harness(move |request: &Exchange| {
        if request.path.starts_with(CLUSTERS) {
            return (200, stored.clone());
        }
        if request.method == "GET" {
            // The admin Secret exists.
            return (
                200,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-admin"}}),
            );
        }
        (200, request.body.clone())
    });
    bounded(reconcile(Arc::new(cluster), h.context.clone()))
        .await
        .unwrap();
    let requests = h.recorded.take();
    let secrets: Vec<_> = lines(&requests)
        .into_iter()
        .filter(|l| l.contains("/secrets/"))
        .collect();
    assert_eq!(
        secrets,
        [
            "GET /api/v1/namespaces/default/secrets/shop-admin",
            "GET /api/v1/namespaces/default/secrets/shop-agent",
            "GET /api/v1/namespaces/default/secrets/shop-lookup",
            "GET /api/v1/namespaces/default/secrets/shop-monitor",
            "GET /api/v1/namespaces/default/secrets/shop-proxy-admin"
        ]
    );
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_nothing_is_applied() {
    let cluster = cluster(0, false);
    let h = harness(server(&cluster));
    let action = bounded(reconcile(Arc::new(cluster), h.context.clone()))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(INVALID_INTERVAL));
    let requests = h.recorded.take();
    assert_eq!(
        lines(&requests),
        [
            "POST /apis/events.k8s.io/v1/namespaces/default/events".to_string(),
            format!("PATCH {CLUSTERS}/status"),
        ]
    );
    let event = &requests[0].body;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InvalidSpec");
    assert_eq!(event["regarding"]["name"], "shop");
    assert_eq!(event["regarding"]["kind"], "MySQLCluster");
    let note = event["note"].as_str().unwrap();
    assert!(note.contains("spec.replicas"), "{note}");
    let status = &requests[1].body["status"];
    assert!(requests[1].is_server_side_apply());
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
    assert!(h.orchestrations.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_cluster_without_proxies_gets_no_proxy_objects() {
    // A tenant pool's clusters, or proxies run as sidecars.
    let mut cluster = cluster(2, true);
    cluster.spec.proxy.replicas = 0;
    let base = server_with_secrets(&cluster);
    let h = harness(move |request: &Exchange| {
        if request.content_type == "application/merge-patch+json" {
            return status(404, "NotFound");
        }
        base(request)
    });
    let cluster = Arc::new(cluster);
    bounded(reconcile(cluster.clone(), h.context.clone()))
        .await
        .unwrap();
    let requests = h.recorded.take();
    let deployment = "PATCH /apis/apps/v1/namespaces/default/deployments/shop-proxy";
    let expected: Vec<String> = reapply_lines()
        .into_iter()
        .filter(|l| {
            !l.ends_with("/services/shop")
                && !l.ends_with("/networkpolicies/shop-proxy")
                && !l.ends_with("/poddisruptionbudgets/shop-proxy")
        })
        .collect();
    assert_eq!(lines(&requests), expected);
    // Not an apply, which would create one: a merge patch that scales a Deployment left from
    // when the cluster had proxies, and finds none here (404).
    let scale = requests.iter().find(|r| r.line() == deployment).unwrap();
    assert_eq!(scale.content_type, "application/merge-patch+json");
    assert_eq!(scale.body, json!({"spec": {"replicas": 0}}));
    // Once per generation.
    bounded(reconcile(cluster, h.context.clone()))
        .await
        .unwrap();
    assert!(!lines(&h.recorded.take()).contains(&deployment.to_string()));
}

#[tokio::test]
async fn an_invalid_spec_already_reported_records_no_new_event() {
    let mut cluster = cluster(0, false);
    let message = cluster.validate().unwrap_err().to_string();
    cluster.status = Some(status::invalid_status(
        &MySQLClusterStatus::default(),
        &message,
        Some(1),
        "2026-01-01T00:00:00Z",
    ));
    let h = harness(server(&cluster));
    bounded(reconcile(Arc::new(cluster), h.context.clone()))
        .await
        .unwrap();
    // Same message and generation: no Event, and the unchanged status is not written.
    assert_eq!(lines(&h.recorded.take()), Vec::<String>::new());
}

#[tokio::test]
async fn deletion_stops_the_orchestration_and_removes_the_finalizer() {
    // Even an invalid spec is cleaned up.
    let mut cluster = cluster(0, true);
    cluster.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    let h = harness(server(&cluster));
    let action = bounded(reconcile(Arc::new(cluster), h.context.clone()))
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let requests = h.recorded.take();
    assert_eq!(
        lines(&requests),
        [
            "POST /apis/events.k8s.io/v1/namespaces/default/events".to_string(),
            format!("PATCH {CLUSTERS}"),
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
    assert_eq!(
        *h.orchestrations.calls.lock().unwrap(),
        ["stop default/shop"]
    );
}

#[tokio::test]
async fn an_api_error_fails_the_reconcile_and_backs_off() {
    let cluster = cluster(3, true);
    let stored = serde_json::to_value(&cluster).unwrap();
    let h = harness(move |request: &Exchange| {
        if request.path.starts_with(CLUSTERS) {
            return (200, stored.clone());
        }
        if request.path.contains("/statefulsets/") {
            return status(500, "InternalError");
        }
        match request.method.as_str() {
            "GET" => status(404, "NotFound"),
            _ => (200, request.body.clone()),
        }
    });
    let cluster = Arc::new(cluster);
    let error = bounded(reconcile(cluster.clone(), h.context.clone()))
        .await
        .unwrap_err();
    let requests = h.recorded.take();
    // Nothing applied after the failed StatefulSet; the failure, naming it, is recorded as a
    // Warning Event and in the Degraded condition.
    let failed = requests
        .iter()
        .position(|r| r.line() == "PATCH /apis/apps/v1/namespaces/default/statefulsets/shop")
        .unwrap();
    assert_eq!(
        lines(&requests[failed + 1..]),
        [
            "POST /apis/events.k8s.io/v1/namespaces/default/events".to_string(),
            format!("PATCH {CLUSTERS}/status"),
        ]
    );
    let message = "applying StatefulSet shop: InternalError (500 InternalError)";
    let event = &requests[failed + 1].body;
    assert_eq!(
        (&event["type"], &event["reason"]),
        (&json!("Warning"), &json!("ApplyFailed"))
    );
    assert_eq!(event["note"], message);
    let status = &requests[failed + 2].body["status"];
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(
        (
            &degraded["status"],
            &degraded["reason"],
            &degraded["message"]
        ),
        (&json!("True"), &json!("ApplyFailed"), &json!(message))
    );
    assert_eq!(error.for_people(), message);
    assert_eq!(h.context.metrics.reconcile_errors.get(), 1);
    let first = error_policy(cluster.clone(), &error, h.context.clone());
    let second = error_policy(cluster.clone(), &error, h.context.clone());
    assert_eq!(first, Action::requeue(MIN_BACKOFF));
    assert_eq!(second, Action::requeue(MIN_BACKOFF * 2));
}

fn condition_statuses(status: &Value) -> Vec<(&str, &str)> {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect()
}

/// The requests of applying a cluster named `shop` whose credential Secrets exist.
fn reapply_lines() -> Vec<String> {
    let core = "/api/v1/namespaces/default";
    let apps = "/apis/apps/v1/namespaces/default";
    vec![
        format!("GET {core}/secrets/shop-admin"),
        format!("GET {core}/secrets/shop-replication"),
        format!("GET {core}/secrets/shop-agent"),
        format!("GET {core}/secrets/shop-lookup"),
        format!("GET {core}/secrets/shop-monitor"),
        format!("GET {core}/secrets/shop-proxy-admin"),
        format!("PATCH {core}/configmaps/shop-mysql-config"),
        format!("PATCH {core}/services/shop-headless"),
        "PATCH /apis/networking.k8s.io/v1/namespaces/default/networkpolicies/shop-mysql".into(),
        format!("PATCH {apps}/statefulsets/shop"),
        "PATCH /apis/policy/v1/namespaces/default/poddisruptionbudgets/shop-mysql".into(),
        format!("PATCH {apps}/deployments/shop-archiver"),
        format!("PATCH {core}/services/shop"),
        "PATCH /apis/networking.k8s.io/v1/namespaces/default/networkpolicies/shop-proxy".into(),
        format!("PATCH {apps}/deployments/shop-proxy"),
        "PATCH /apis/policy/v1/namespaces/default/poddisruptionbudgets/shop-proxy".into(),
        format!("PATCH {CLUSTERS}/status"),
    ]
}

/// Answers like an API server that holds `cluster` and its credential Secrets.
fn server_with_secrets(
    cluster: &MySQLCluster,
) -> impl Fn(&Exchange) -> (u16, Value) + Send + Sync + 'static {
    let stored = serde_json::to_value(cluster).unwrap();
    move |request: &Exchange| {
        if request.path.starts_with(CLUSTERS) {
            return (200, stored.clone());
        }
        if request.method == "GET" && request.path.contains("/secrets/") {
            let name = request.path.rsplit('/').next().unwrap_or_default();
            return (
                200,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}),
            );
        }
        match request.method.as_str() {
            "GET" => status(404, "NotFound"),
            _ => (200, request.body.clone()),
        }
    }
}

#[tokio::test]
async fn a_changed_spec_is_applied_again() {
    // Applied before at generation 1 with 3 replicas; the spec now asks for 5.
    let mut cluster = cluster(5, true);
    cluster.metadata.generation = Some(2);
    cluster.status = Some(MySQLClusterStatus {
        observed_generation: Some(1),
        ready: Some("0/3".into()),
        ..MySQLClusterStatus::default()
    });
    let h = harness(server_with_secrets(&cluster));
    let action = bounded(reconcile(Arc::new(cluster), h.context.clone()))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(STATUS_INTERVAL));
    let requests = h.recorded.take();
    // The Secrets exist, so none is applied again; every other object is.
    assert_eq!(lines(&requests), reapply_lines());
    for request in &requests[6..] {
        assert!(request.is_server_side_apply(), "{request:?}");
    }
    let statefulset = &requests[9].body;
    assert_eq!(statefulset["kind"], "StatefulSet");
    assert_eq!(statefulset["spec"]["replicas"], 5);
    let pdb = &requests[10].body;
    assert_eq!(pdb["kind"], "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let status = &requests[16].body["status"];
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["ready"], "0/5");
    for condition in status["conditions"].as_array().unwrap() {
        assert_eq!(condition["observedGeneration"], 2, "{condition}");
    }
    assert_eq!(
        *h.orchestrations.calls.lock().unwrap(),
        ["ensure default/shop"]
    );
}

#[tokio::test]
async fn a_failover_is_reported_in_status_and_as_an_event() {
    let mut cluster = cluster(3, true);
    cluster.status = Some(MySQLClusterStatus {
        primary: Some("shop-0".into()),
        observed_generation: Some(1),
        ..MySQLClusterStatus::default()
    });
    let h = harness(server_with_secrets(&cluster));
    // What the per-cluster task does after a tick in which shop-1 replaced shop-0: fold the
    // new events into its snapshot, then record each as a Kubernetes Event.
    let failover = TimedEvent {
        unix_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
        event: Event::Promoted {
            member: "shop-1".into(),
            previous: Some("shop-0".into()),
            epoch: 5,
            cause: Cause::Failover,
            position: None,
        },
    };
    {
        let mut snapshot = h.orchestrations.snapshot.lock().unwrap();
        snapshot.state = Some(ClusterState::Healthy);
        snapshot.published = Some(Topology {
            cluster: "shop".into(),
            flavor: Flavor::Mysql,
            epoch: 5,
            state: TopologyState::Ready,
            primary: Some(Member::new(
                "shop-1",
                "shop-1.shop-headless.default.svc",
                3306,
            )),
            replicas: vec![Member::new(
                "shop-2",
                "shop-2.shop-headless.default.svc",
                3306,
            )],
            consistency: None,
            read_only: false,
        });
        fold_events(&mut snapshot, std::slice::from_ref(&failover));
    }
    record_event(
        &h.context.recorder,
        &h.context.metrics,
        &cluster,
        &failover.event,
    )
    .await;
    bounded(reconcile(Arc::new(cluster), h.context.clone()))
        .await
        .unwrap();

    let requests = h.recorded.take();
    let mut expected = vec!["POST /apis/events.k8s.io/v1/namespaces/default/events".to_string()];
    expected.extend(reapply_lines());
    // One Event, recorded by the task; the reconcile itself records none.
    assert_eq!(lines(&requests), expected);
    let event = &requests[0].body;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "FailedOver");
    assert_eq!(event["action"], "Promote");
    assert_eq!(event["regarding"]["kind"], "MySQLCluster");
    assert_eq!(event["regarding"]["name"], "shop");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("shop-1") && note.contains("from shop-0"),
        "{note}"
    );
    assert_eq!(h.context.metrics.failovers.get(), 1);

    let status = &requests[17].body["status"];
    assert!(requests[17].is_server_side_apply());
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["primary"], "shop-1");
    assert_eq!(status["topologyEpoch"], 5);
    assert_eq!(
        status["lastFailover"],
        json!({"from": "shop-0", "to": "shop-1", "time": "2026-01-01T00:00:00Z"})
    );
    assert_eq!(
        condition_statuses(status),
        [
            ("Available", "True"),
            ("Progressing", "False"),
            ("Degraded", "False"),
            ("FailoverInProgress", "False"),
            ("Lossless", "True")
        ]
    );
    let available = &status["conditions"][0];
    assert_eq!(available["reason"], "PrimaryPublished");
    let message = available["message"].as_str().unwrap();
    assert!(message.contains("shop-1"), "{message}");
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    assert_eq!(backoff(1), Duration::from_secs(5));
    assert_eq!(backoff(2), Duration::from_secs(10));
    assert_eq!(backoff(4), Duration::from_secs(40));
    assert_eq!(backoff(7), MAX_BACKOFF);
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
}

#[test]
fn passwords_are_random_alphanumerics() {
    let a = random_password().unwrap();
    let b = random_password().unwrap();
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
    assert_ne!(a, b);
}

fn tls_cluster(tls: Value) -> MySQLCluster {
    let spec = serde_json::from_value(json!({ "replicas": 3, "tls": tls })).unwrap();
    let mut cluster = MySQLCluster::new("shop", spec);
    cluster.metadata.namespace = Some(NS.into());
    cluster.metadata.uid = Some("uid-1".into());
    cluster.metadata.generation = Some(1);
    cluster.metadata.finalizers = Some(vec![FINALIZER.into()]);
    cluster
}

/// The requests about the certificate, in order.
fn tls_lines(requests: &[Exchange]) -> Vec<String> {
    lines(requests)
        .into_iter()
        .filter(|l| l.contains("-tls") || l.contains("certificates"))
        .collect()
}

#[tokio::test]
async fn self_issued_tls_creates_a_ca_and_a_certificate_before_the_pods() {
    let cluster = tls_cluster(json!({}));
    let h = harness(server(&cluster));
    bounded(reconcile(Arc::new(cluster), h.context.clone()))
        .await
        .unwrap();
    let requests = h.recorded.take();
    let core = "/api/v1/namespaces/default";
    assert_eq!(
        tls_lines(&requests),
        [
            format!("GET {core}/secrets/shop-tls-ca"),
            format!("PATCH {core}/secrets/shop-tls-ca"),
            format!("GET {core}/secrets/shop-tls"),
            format!("PATCH {core}/secrets/shop-tls"),
        ]
    );
    let position = |line: &str| lines(&requests).iter().position(|l| l == line).unwrap();
    assert!(
        position(&format!("PATCH {core}/secrets/shop-tls"))
            < position("PATCH /apis/apps/v1/namespaces/default/statefulsets/shop"),
        "the certificate exists before the pods that mount it"
    );
    let issued = requests
        .iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with("/secrets/shop-tls"))
        .unwrap();
    assert!(issued.is_server_side_apply());
    assert_eq!(issued.body["type"], "kubernetes.io/tls");
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(issued.body["data"][key].is_string(), "{key}");
    }
    assert!(
        issued.body["metadata"]["annotations"]["lagless.dev/not-after"].is_string(),
        "the expiry is recorded for renewal"
    );
    assert_eq!(
        issued.body["metadata"]["ownerReferences"][0]["uid"],
        "uid-1"
    );
}

#[tokio::test]
async fn a_current_self_issued_certificate_is_left_alone() {
    let cluster = tls_cluster(json!({}));
    let now = std::time::SystemTime::now();
    let authority = crate::tls::authority::Authority::create("shop", now).unwrap();
    let issued = authority
        .issue(
            &crate::kube::builders::tls::kubernetes_names("shop", NS),
            now,
        )
        .unwrap();
    let ca = serde_json::to_value(builders::tls::ca_secret(&cluster, &authority).unwrap()).unwrap();
    let cert =
        serde_json::to_value(builders::tls::issued_secret(&cluster, &authority, &issued).unwrap())
            .unwrap();
    let base = server(&cluster);
    let h = harness(move |request: &Exchange| {
        if request.method == "GET" && request.path.ends_with("/secrets/shop-tls-ca") {
            return (200, ca.clone());
        }
        if request.method == "GET" && request.path.ends_with("/secrets/shop-tls") {
            return (200, cert.clone());
        }
        base(request)
    });
    bounded(reconcile(Arc::new(cluster), h.context.clone()))
        .await
        .unwrap();
    let core = "/api/v1/namespaces/default";
    assert_eq!(
        tls_lines(&h.recorded.take()),
        [
            format!("GET {core}/secrets/shop-tls-ca"),
            format!("GET {core}/secrets/shop-tls"),
        ],
        "nothing re-issued while the certificate is valid and from this CA"
    );
}

#[tokio::test]
async fn an_issuer_gets_a_cert_manager_certificate_and_no_secret_is_made() {
    let cluster = tls_cluster(json!({ "issuerRef": { "name": "corp", "kind": "ClusterIssuer" } }));
    let h = harness(server(&cluster));
    bounded(reconcile(Arc::new(cluster), h.context.clone()))
        .await
        .unwrap();
    let requests = h.recorded.take();
    assert_eq!(
        tls_lines(&requests),
        ["PATCH /apis/cert-manager.io/v1/namespaces/default/certificates/shop-tls".to_string()]
    );
    let certificate = requests
        .iter()
        .find(|r| r.path.contains("certificates"))
        .unwrap();
    assert!(certificate.is_server_side_apply());
    assert_eq!(certificate.body["kind"], "Certificate");
    assert_eq!(
        certificate.body["spec"]["issuerRef"]["kind"],
        "ClusterIssuer"
    );
    assert_eq!(certificate.body["spec"]["secretName"], "shop-tls");
}

#[tokio::test]
async fn an_issuer_without_cert_manager_fails_with_a_clear_error() {
    let cluster = tls_cluster(json!({ "issuerRef": { "name": "corp" } }));
    let base = server(&cluster);
    let h = harness(move |request: &Exchange| {
        if request.path.contains("cert-manager.io") {
            return status(404, "NotFound");
        }
        base(request)
    });
    let error = bounded(reconcile(Arc::new(cluster), h.context.clone()))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("is cert-manager installed?"), "{error}");
    let requests = h.recorded.take();
    assert!(
        !lines(&requests).iter().any(|l| l.contains("statefulsets")),
        "no pod is made that would wait for a certificate that cannot come"
    );
}
