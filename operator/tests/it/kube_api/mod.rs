//! The controller against a real API server (kube-apiserver v1.20.2 and etcd, see
//! [`harness`]), run in-process by the same entry point as `lagless-operator controller`,
//! with the arguments the Helm chart gives it and authenticated as the chart's ServiceAccount
//! under exactly the chart's RBAC: what works here works with the chart's least privilege.
//!
//! The tests here run no kube-controller-manager (StatefulSets make no Pods, nothing
//! garbage-collects owned objects) and stop at the API objects; [`e2e`] adds the
//! controller-manager and a test-side [`node`] that runs the pods, end to end.

mod backups;
mod e2e;
mod harness;
mod lease;
mod node;
mod plugin;
mod tenant_move;
mod tenant_rebalance;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::{Client, CustomResourceExt, Resource, ResourceExt};
use lagless_operator::crd::{Condition, ConditionStatus, MySQLCluster};
use lagless_operator::kube::apis::{self, Apis};
use lagless_operator::kube::controller::{self, ControllerArgs};
use lagless_operator::kube::reconcile::FINALIZER;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use harness::{ControlPlane, RELEASE_NAMESPACE, eventually};

const NAMESPACE: &str = "default";
const CLUSTER: &str = "shop";

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("lagless_operator=info,kube=warn")
        .with_test_writer()
        .try_init();
}

/// The chart's operator arguments, with what must differ in a test process: a metrics port
/// of its own, and the identity and Lease namespace the pod would get from the downward API.
fn controller_args(chart_args: &[String]) -> ControllerArgs {
    controller_args_as(chart_args, "lagless-operator-test")
}

/// [`controller_args`] for the replica `identity`.
fn controller_args_as(chart_args: &[String], identity: &str) -> ControllerArgs {
    #[derive(clap::Parser)]
    #[command(args_override_self = true)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }
    let argv = std::iter::once("lagless-operator")
        .chain(chart_args.iter().map(String::as_str))
        .chain([
            "--metrics-address",
            "127.0.0.1:0",
            "--identity",
            identity,
            "--lease-namespace",
            RELEASE_NAMESPACE,
        ]);
    <Cli as clap::Parser>::try_parse_from(argv)
        .expect("the chart's arguments parse")
        .args
}

/// Runs the controller as the binary does, until the returned task is aborted.
fn start_controller(client: Client, args: ControllerArgs) -> JoinHandle<()> {
    tokio::spawn(async move {
        let code = controller::serve(client, args).await;
        eprintln!("the controller exited with {code}");
    })
}

/// `examples/mysqlcluster.yaml`, applied as `kubectl apply --server-side` would.
async fn apply_example(admin: &Client) -> MySQLCluster {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mysqlcluster.yaml");
    let text = std::fs::read_to_string(path).expect("the example");
    let cluster: MySQLCluster = serde_saphyr::from_str(&text).expect("the example parses");
    let api: Api<MySQLCluster> = Api::namespaced(admin.clone(), NAMESPACE);
    api.patch(
        CLUSTER,
        &PatchParams::apply("kubectl"),
        &Patch::Apply(&cluster),
    )
    .await
    .expect("applying the example")
}

async fn cluster(admin: &Client) -> Option<MySQLCluster> {
    let api: Api<MySQLCluster> = Api::namespaced(admin.clone(), NAMESPACE);
    api.get_opt(CLUSTER).await.expect("reading the cluster")
}

/// The Events recorded on the cluster, by reason.
async fn events(admin: &Client) -> BTreeMap<String, Vec<Event>> {
    let api: Api<Event> = Api::namespaced(admin.clone(), NAMESPACE);
    let mut by_reason: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for event in api
        .list(&ListParams::default())
        .await
        .expect("Events")
        .items
    {
        if event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(CLUSTER) {
            by_reason
                .entry(event.reason.clone().unwrap_or_default())
                .or_default()
                .push(event);
        }
    }
    by_reason
}

fn condition<'a>(cluster: &'a MySQLCluster, type_: &str) -> Option<&'a Condition> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Object `name` of type `K` in the test namespace, once it exists; checks that it is owned
/// by (controlled by) the cluster with `uid` and was written by the operator's server-side
/// apply.
async fn owned<K>(admin: &Client, name: &str, uid: &str) -> K
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(admin.clone(), NAMESPACE);
    let what = format!("{} {name}", K::kind(&()));
    let object = eventually(&what, || async {
        let found = api.get_opt(name).await.ok().flatten();
        if found.is_none()
            && let Some(failed) = cluster(admin)
                .await
                .and_then(|c| condition(&c, Condition::DEGRADED).cloned())
                .filter(|c| c.reason == "ApplyFailed")
        {
            panic!("{what} was not applied: {}", failed.message);
        }
        found
    })
    .await;
    let meta = object.meta();
    assert!(
        meta.owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid && o.kind == "MySQLCluster" && o.controller == Some(true)),
        "{what} is not controlled by the MySQLCluster: {:?}",
        meta.owner_references
    );
    assert!(
        meta.managed_fields.iter().flatten().any(|m| {
            m.manager.as_deref() == Some("lagless-operator")
                && m.operation.as_deref() == Some("Apply")
        }),
        "{what} was not server-side applied by lagless-operator: {:?}",
        meta.managed_fields
    );
    object
}

/// A StatefulSet left by a release whose StatefulSets rolled themselves (`RollingUpdate`,
/// with a `rollingUpdate` beside it) is taken over: the operator's apply of `OnDelete` would
/// be refused with that left in place, so the strategy is replaced once, and the cluster is
/// applied whole. Then a changed spec is applied again without fighting another field
/// manager: its field stays, the operator's follow the spec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_releases_statefulset_is_taken_over_and_other_managers_fields_kept() {
    init_logs();
    let plane = ControlPlane::start().await;
    plane.install_crds(true).await;
    let admin = &plane.admin;
    let applied = apply_example(admin).await;
    let uid = applied.uid().expect("the cluster's uid");

    // As the earlier release applied it: owned by the cluster, by the operator's manager.
    let mut old = lagless_operator::kube::builders::statefulset(&applied, "lagless-operator:old")
        .expect("the StatefulSet builds");
    old.spec.update_strategy = Some(k8s_openapi::api::apps::v1::StatefulSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: None,
    });
    let statefulsets: Api<StatefulSet> = Api::namespaced(admin.clone(), NAMESPACE);
    statefulsets
        .patch(
            CLUSTER,
            &PatchParams::apply("lagless-operator").force(),
            &Patch::Apply(&old),
        )
        .await
        .expect("applying the earlier release's StatefulSet");
    // A `rollingUpdate` the operator's applies never owned (an API server's default, or
    // another tool's): v1.20 does not default it, so another field manager writes it here.
    statefulsets
        .patch(
            CLUSTER,
            &PatchParams {
                field_manager: Some("kube-apiserver-defaults".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(serde_json::json!({
                "spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}
            })),
        )
        .await
        .expect("setting rollingUpdate");
    let defaulted = statefulsets.get(CLUSTER).await.expect("the StatefulSet");
    let strategy = defaulted.spec.update_strategy;
    assert!(
        strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .is_some(),
        "rollingUpdate is set: {strategy:?}"
    );

    let (client, chart_args) = plane.chart_service_account().await;
    let controller = start_controller(client, controller_args(&chart_args));
    let taken = eventually("the StatefulSet rolled by the operator", || async {
        let sts = statefulsets.get(CLUSTER).await.ok()?;
        let strategy = sts.spec.update_strategy.clone()?;
        (strategy.type_.as_deref() == Some("OnDelete") && strategy.rolling_update.is_none())
            .then_some(sts)
    })
    .await;
    assert!(
        taken
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid),
        "still owned by the cluster"
    );
    // And the rest of the cluster is applied after it.
    let _: Deployment = owned(admin, "shop-proxy", &uid).await;

    // A field another manager owns (a label a team's tool adds) is left alone when a changed
    // spec is applied again, and the operator's own fields follow the spec.
    statefulsets
        .patch(
            CLUSTER,
            &PatchParams::apply("team-tool"),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": CLUSTER, "labels": {"team": "payments"}},
            })),
        )
        .await
        .expect("another manager's label");
    let clusters: Api<MySQLCluster> = Api::namespaced(admin.clone(), NAMESPACE);
    clusters
        .patch(
            CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("changing the spec");
    let reapplied = eventually("the StatefulSet at 4 replicas", || async {
        let sts = statefulsets.get(CLUSTER).await.ok()?;
        (sts.spec.replicas == Some(4)).then_some(sts)
    })
    .await;
    assert_eq!(
        reapplied.labels().get("team").map(String::as_str),
        Some("payments"),
        "the other manager's label is kept"
    );
    let managers: Vec<String> = reapplied
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "team-tool")
            && managers.iter().any(|m| m == "lagless-operator"),
        "both managers keep their fields: {managers:?}"
    );
    controller.abort();
}

/// (a) `examples/mysqlcluster.yaml` reconciled into every object, a finalizer and a status;
/// (b) v1.20 has no `policy/v1`: the PodDisruptionBudget is skipped and the cluster says so;
/// (d) a deletion waits on the finalizer, which the controller then removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_applied_reported_and_finalized_by_a_real_api_server() {
    init_logs();
    let plane = ControlPlane::start().await;
    plane.install_crds(true).await;
    let (client, chart_args) = plane.chart_service_account().await;
    let controller = start_controller(client, controller_args(&chart_args));
    let admin = &plane.admin;

    let applied = apply_example(admin).await;
    let uid = applied.uid().expect("the cluster's uid");

    // Every object a three-member cluster with proxies runs on.
    for secret in [
        "shop-admin",
        "shop-replication",
        "shop-agent",
        "shop-lookup",
        "shop-monitor",
        "shop-proxy-admin",
    ] {
        let secret: Secret = owned(admin, secret, &uid).await;
        let data = secret.data.unwrap_or_default();
        assert!(
            data.get("password").is_some_and(|p| p.0.len() >= 32)
                || data.get("token").is_some_and(|t| !t.0.is_empty()),
            "{} holds no generated credential: {:?}",
            secret.metadata.name.unwrap_or_default(),
            data.keys().collect::<Vec<_>>()
        );
    }
    let config: ConfigMap = owned(admin, "shop-mysql-config", &uid).await;
    assert!(config.data.is_some_and(|d| !d.is_empty()));
    let headless: Service = owned(admin, "shop-headless", &uid).await;
    assert_eq!(
        headless.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some("None"),
        "the members' Service is headless"
    );
    let client_service: Service = owned(admin, "shop", &uid).await;
    assert!(
        client_service
            .spec
            .and_then(|s| s.cluster_ip)
            .is_some_and(|ip| ip != "None"),
        "the client Service has a cluster IP"
    );
    let statefulset: StatefulSet = owned(admin, "shop", &uid).await;
    assert_eq!(statefulset.spec.replicas, Some(3));
    let proxies: Deployment = owned(admin, "shop-proxy", &uid).await;
    assert_eq!(proxies.spec.replicas, Some(2));
    for policy in ["shop-mysql", "shop-proxy"] {
        let _: NetworkPolicy = owned(admin, policy, &uid).await;
    }

    // The finalizer, and a status written through the status subresource.
    let reported = eventually("the cluster's status", || async {
        let cluster = cluster(admin).await?;
        condition(&cluster, Condition::DISRUPTION_BUDGET)?;
        Some(cluster)
    })
    .await;
    assert!(
        reported.finalizers().iter().any(|f| f == FINALIZER),
        "no finalizer: {:?}",
        reported.finalizers()
    );
    let status = reported.status.clone().expect("a status");
    assert!(status.phase.is_some(), "no phase: {status:?}");
    assert_eq!(status.observed_generation, reported.metadata.generation);
    assert!(
        condition(&reported, Condition::AVAILABLE).is_some(),
        "{status:?}"
    );
    let degraded = condition(&reported, Condition::DEGRADED).expect("a Degraded condition");
    assert_ne!(
        degraded.reason, "ApplyFailed",
        "the chart's RBAC was not enough: {}",
        degraded.message
    );

    // (b) No PodDisruptionBudget on an API server without policy/v1, and the cluster says so.
    let budget = condition(&reported, Condition::DISRUPTION_BUDGET).expect("DisruptionBudget");
    assert_eq!(budget.status, ConditionStatus::False);
    assert_eq!(budget.reason, "PolicyV1Missing");
    assert!(
        budget.message.contains("Kubernetes before 1.21"),
        "{budget:?}"
    );
    let v1beta1 = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "policy",
        "v1beta1",
        "PodDisruptionBudget",
    ));
    let budgets: Api<DynamicObject> = Api::namespaced_with(admin.clone(), NAMESPACE, &v1beta1);
    assert!(
        budgets
            .list(&ListParams::default())
            .await
            .expect("PodDisruptionBudgets")
            .items
            .is_empty()
    );
    let warned = eventually("the NoDisruptionBudget Event", || async {
        events(admin).await.remove("NoDisruptionBudget")
    })
    .await;
    assert_eq!(
        warned.len(),
        1,
        "one Event, not one per reconcile: {warned:?}"
    );
    assert_eq!(warned[0].type_.as_deref(), Some("Warning"));

    // (d) The deletion is held by the finalizer until the controller has cleaned up.
    let api: Api<MySQLCluster> = Api::namespaced(admin.clone(), NAMESPACE);
    let deleting = api
        .delete(CLUSTER, &DeleteParams::default())
        .await
        .expect("deleting the cluster");
    let held = deleting
        .left()
        .expect("the finalizer keeps the cluster until the controller removes it");
    assert!(held.metadata.deletion_timestamp.is_some());
    eventually("the cluster gone", || async {
        cluster(admin).await.is_none().then_some(())
    })
    .await;
    eventually("the Deleting Event", || async {
        events(admin).await.remove("Deleting")
    })
    .await;
    controller.abort();
}

/// The start-up check refuses an API server without the CRDs; the generated CRDs install on
/// v1.20 but lose their CEL rules there; and (c) an apply the API server refuses names the
/// object in the `Degraded` condition and a Warning Event: here a changed storage size, which
/// a StatefulSet's volume claim templates cannot take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_apply_names_the_object_in_the_status_and_an_event() {
    init_logs();
    let plane = ControlPlane::start().await;
    let admin = &plane.admin;
    let (client, chart_args) = plane.chart_service_account().await;

    // Without the CRDs the controller does not start, and says what to install.
    let missing = apis::discover(&client)
        .await
        .expect_err("no CRDs are installed yet")
        .to_string();
    assert!(
        missing.contains("mysqlclusters") && missing.contains("install the CRDs"),
        "{missing}"
    );
    assert_eq!(
        controller::serve(client.clone(), controller_args(&chart_args)).await,
        1
    );

    // The CRDs as generated install on v1.20 (a `default: ""`, which it reads as null, made
    // them refused), but lose their CEL rules there: v1.20 drops what it does not know.
    for stored in plane.install_crds(false).await {
        let text = serde_json::to_string(&stored.spec).expect("the CRD serializes");
        assert!(
            !text.contains("x-kubernetes-validations"),
            "v1.20 kept the CEL rules of {}",
            stored.name_any()
        );
    }
    assert!(
        serde_json::to_string(&MySQLCluster::crd())
            .expect("the CRD serializes")
            .contains("x-kubernetes-validations"),
        "the generated CRD has CEL rules"
    );
    assert_eq!(
        apis::discover(&client).await.expect("everything required"),
        Apis { policy_v1: false }
    );
    let controller = start_controller(client, controller_args(&chart_args));
    let applied = apply_example(admin).await;
    let uid = applied.uid().expect("the cluster's uid");
    let _: StatefulSet = owned(admin, "shop", &uid).await;

    // A bigger volume: valid for the operator, refused by the API server for the StatefulSet.
    let api: Api<MySQLCluster> = Api::namespaced(admin.clone(), NAMESPACE);
    let bigger = serde_json::json!({ "spec": { "storage": { "size": "30Gi" } } });
    api.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&bigger))
        .await
        .expect("changing the storage size");

    let failed = eventually("the Degraded condition naming the StatefulSet", || async {
        let cluster = cluster(admin).await?;
        let degraded = condition(&cluster, Condition::DEGRADED)?;
        (degraded.reason == "ApplyFailed").then(|| degraded.clone())
    })
    .await;
    assert_eq!(failed.status, ConditionStatus::True);
    assert!(
        failed.message.starts_with("applying StatefulSet shop: ")
            && failed.message.contains("Forbidden")
            && failed.message.contains("422"),
        "{}",
        failed.message
    );
    let event = eventually("the ApplyFailed Event", || async {
        events(admin).await.remove("ApplyFailed")
    })
    .await;
    assert_eq!(event[0].type_.as_deref(), Some("Warning"));
    assert_eq!(event[0].note.as_deref(), Some(failed.message.as_str()));
    let reported = cluster(admin).await.expect("the cluster");
    assert_eq!(
        reported.status.and_then(|s| s.observed_generation),
        reported.metadata.generation,
        "the failure is reported for the changed spec"
    );
    controller.abort();
}
