//! `lagless-operator controller`: watches `MySQLCluster`s, `MySQLTenantPool`s and
//! `MySQLTenantMove`s and the objects they own, reconciles them, serves metrics and probes, and (with
//! `--leader-election`) runs only while holding the Lease.

use std::net::SocketAddr;
use std::sync::Arc;

use ::kube::api::Api;
use ::kube::runtime::controller::Controller;
use ::kube::runtime::events::{Recorder, Reporter};
use ::kube::runtime::watcher;
use ::kube::{Client, Resource};
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};

use super::apis::{self, Apis};
use super::builders::{DEFAULT_OPERATOR_IMAGE, DEFAULT_PROXY_IMAGE};
use super::common::FIELD_MANAGER;
use super::lease::LeaderElector;
use super::metrics::Metrics;
use super::orchestration::OrchestrationTasks;
use super::pool::decide::pool_of_changed_cluster;
use super::pool::operate::PoolTasks;
use super::pool::reconcile::{self as pool_reconcile, PoolContext};
use super::reconcile::{Context, error_policy, reconcile};
use crate::crd::MySQLCluster;
use crate::crd::tenant_pool::{MySQLTenantPool, POOL_LABEL};

/// The flags of `lagless-operator controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Watch MySQLClusters and MySQLTenantPools in this namespace only; every namespace when
    /// absent.
    #[arg(long, value_name = "NS")]
    pub watch_namespace: Option<String>,

    /// Reconcile only while holding a coordination.k8s.io Lease, so several replicas can run.
    #[arg(long)]
    pub leader_election: bool,

    /// The Lease's name.
    #[arg(long, value_name = "NAME", default_value = "lagless-operator")]
    pub lease_name: String,

    /// The Lease's namespace; the client's default namespace when absent.
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// This replica's identity as Lease holder; the host name when absent.
    #[arg(long, value_name = "ID", env = "POD_NAME")]
    pub identity: Option<String>,

    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_address: SocketAddr,

    /// The lagless-proxy image of each cluster's and pool's proxy Deployment.
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_PROXY_IMAGE)]
    pub proxy_image: String,

    /// The operator image: member pods run its seeding agent (`lagless-operator agent`).
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_OPERATOR_IMAGE)]
    pub operator_image: String,
}

/// Runs the controller until a signal or, with leader election, the loss of the Lease; returns
/// the process exit code.
pub fn run(args: ControllerArgs, log: &str) -> i32 {
    let filter = tracing_subscriber::EnvFilter::try_new(log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let runtime = match crate::runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lagless-operator: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(run_async(args))
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn run_async(args: ControllerArgs) -> i32 {
    let client = match Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot configure a Kubernetes client");
            return 1;
        }
    };
    serve(client, args).await
}

/// The controller with `client`: what `lagless-operator controller` runs once it has
/// configured its client. Returns the process exit code.
pub async fn serve(client: Client, args: ControllerArgs) -> i32 {
    let metrics = Metrics::new();
    let listener = match tokio::net::TcpListener::bind(args.metrics_address).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(address = %args.metrics_address, error = %e, "cannot listen for metrics");
            return 1;
        }
    };
    tokio::spawn(metrics.clone().serve(listener));
    // Before anything else: an API server that lacks what the controller needs is said so
    // once, plainly, instead of failing every reconcile with a 404.
    let apis = match apis::discover(&client).await {
        Ok(apis) => apis,
        Err(e) => {
            tracing::error!(error = %e, "cannot run against this API server");
            return 1;
        }
    };
    if !apis.policy_v1 {
        tracing::warn!("{}", apis::NO_POLICY_V1);
    }
    // A standby replica is ready too: it serves its probes and waits for the Lease.
    metrics.set_ready(true);
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| FIELD_MANAGER.to_string());
    let elector = args.leader_election.then(|| {
        let namespace = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        LeaderElector::new(client.clone(), &namespace, &args.lease_name, &identity)
    });
    if let Some(elector) = &elector {
        tracing::info!(lease = %args.lease_name, %identity, "waiting for the Lease");
        tokio::select! {
            () = elector.acquire() => {}
            () = lagless_serve::until_terminated() => return 0,
        }
        tracing::info!(%identity, "leading");
    }
    let controller = run_controller(client, &args, identity, metrics, apis);
    match &elector {
        Some(elector) => tokio::select! {
            () = controller => 0,
            // Exiting is the simplest safe reaction: the Deployment restarts this replica as a
            // standby, and no reconcile or orchestration task outlives the leadership.
            () = elector.hold() => {
                tracing::error!("lost the Lease; exiting");
                1
            }
        },
        None => {
            controller.await;
            0
        }
    }
}

async fn run_controller(
    client: Client,
    args: &ControllerArgs,
    identity: String,
    metrics: Metrics,
    apis: Apis,
) {
    let namespace = args.watch_namespace.as_deref();
    let clusters: Api<MySQLCluster> = api(&client, namespace);
    // Only objects the operator made: a cluster-wide watch of every ConfigMap would be costly.
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=lagless-operator");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity),
        },
    );
    let orchestrations = Arc::new(OrchestrationTasks::new(
        client.clone(),
        recorder.clone(),
        metrics.clone(),
    ));
    let pool_context = Arc::new(
        PoolContext::new(
            client.clone(),
            args.proxy_image.clone(),
            recorder.clone(),
            metrics.clone(),
            Arc::new(PoolTasks::new(client.clone(), recorder.clone())),
        )
        .with_apis(apis),
    );
    let moves = super::tenant_move::run(client.clone(), namespace, recorder.clone());
    let context = Arc::new(
        Context::new(
            client.clone(),
            args.proxy_image.clone(),
            recorder,
            metrics,
            orchestrations,
        )
        .with_operator_image(args.operator_image.clone())
        .with_apis(apis),
    );
    tracing::info!(
        namespace = namespace.unwrap_or("<all>"),
        "controller starting"
    );
    let clusters = Controller::new(clusters, watcher::Config::default())
        .owns(api::<StatefulSet>(&client, namespace), owned.clone())
        .owns(api::<Deployment>(&client, namespace), owned.clone())
        .owns(api::<Service>(&client, namespace), owned.clone())
        .owns(api::<ConfigMap>(&client, namespace), owned.clone())
        .graceful_shutdown_on(lagless_serve::until_terminated())
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(cluster = %object, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "controller"),
            }
        });
    // A pool's clusters report status every few seconds; only their spec changes and
    // deletions reconcile the pool (it is reconciled every 10 s anyway).
    let pool_clusters = watcher::Config::default().labels(POOL_LABEL);
    let pools = Controller::new(
        api::<MySQLTenantPool>(&client, namespace),
        watcher::Config::default(),
    )
    .watches(
        api::<MySQLCluster>(&client, namespace),
        pool_clusters,
        |cluster| pool_of_changed_cluster(&cluster),
    )
    .owns(api::<Deployment>(&client, namespace), owned.clone())
    .owns(api::<Service>(&client, namespace), owned.clone())
    .owns(api::<ConfigMap>(&client, namespace), owned)
    .graceful_shutdown_on(lagless_serve::until_terminated())
    .run(
        pool_reconcile::reconcile,
        pool_reconcile::error_policy,
        pool_context,
    )
    .for_each(|result| async move {
        match result {
            Ok((object, _)) => tracing::debug!(pool = %object, "reconciled"),
            Err(e) => tracing::warn!(error = %e, "pool controller"),
        }
    });
    futures::join!(clusters, pools, moves);
    tracing::info!("controller stopped");
}
