//! Two controller replicas under the chart's RBAC and leader election, on the real API
//! server: one leads; when it dies the other takes the Lease once the dead one's claim has
//! lapsed (never before, so they never act together) and reconciles what changed meanwhile.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use lagless_operator::crd::MySQLCluster;
use lagless_operator::kube::controller::{self, ControllerArgs};
use lagless_operator::kube::lease::{LEASE_DURATION_SECONDS, RENEW_INTERVAL};

use super::harness::{ControlPlane, RELEASE_NAMESPACE, eventually};
use super::{CLUSTER, NAMESPACE, apply_example, controller_args_as, init_logs, owned};

/// A controller replica in a runtime of its own on its own thread, as a process of its own
/// would be: [`Replica::kill`] drops the runtime, and every task it spawned dies with it.
struct Replica {
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    fn start(client: Client, args: ControllerArgs) -> Self {
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                tokio::select! {
                    code = controller::serve(client, args) => {
                        eprintln!("a controller replica exited with {code}");
                    }
                    _ = killed => {}
                }
            });
            rt.shutdown_background();
        });
        Self {
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn lease(admin: &Client, name: &str) -> Option<Lease> {
    let api: Api<Lease> = Api::namespaced(admin.clone(), RELEASE_NAMESPACE);
    api.get_opt(name).await.ok().flatten()
}

fn holder(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default()
}

fn renewed(lease: &Lease) -> Option<k8s_openapi::jiff::Timestamp> {
    lease.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_the_lease_only_after_the_dead_leaders_claim_lapses() {
    init_logs();
    let plane = ControlPlane::start().await;
    plane.install_crds(true).await;
    let (client, chart_args) = plane.chart_service_account().await;
    assert!(chart_args.iter().any(|a| a == "--leader-election"));
    let admin = &plane.admin;
    let first = controller_args_as(&chart_args, "replica-a");
    let name = first.lease_name.clone();
    let mut a = Replica::start(client.clone(), first);
    let held = eventually("replica-a holding the Lease", || async {
        lease(admin, &name)
            .await
            .filter(|l| holder(l) == "replica-a")
    })
    .await;
    let mut b = Replica::start(client.clone(), controller_args_as(&chart_args, "replica-b"));
    let applied = apply_example(admin).await;
    let uid = applied.uid().expect("the cluster's uid");
    let _: Deployment = owned(admin, "shop-proxy", &uid).await;

    // The leader renews; the standby waits.
    tokio::time::sleep(RENEW_INTERVAL + Duration::from_secs(2)).await;
    let later = lease(admin, &name).await.expect("the Lease");
    assert_eq!(holder(&later), "replica-a");
    assert!(renewed(&later) > renewed(&held), "the leader did not renew");

    // The leader dies; a change is made while nobody leads.
    a.kill();
    let killed = Instant::now();
    let last = lease(admin, &name).await.expect("the Lease");
    let last_renewal = renewed(&last).expect("a renewal time");
    let clusters: Api<MySQLCluster> = Api::namespaced(admin.clone(), NAMESPACE);
    clusters
        .patch(
            CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"proxy": {"replicas": 3}}})),
        )
        .await
        .expect("changing the cluster");

    let taken = eventually("replica-b holding the Lease", || async {
        lease(admin, &name)
            .await
            .filter(|l| holder(l) == "replica-b")
    })
    .await;
    let took = killed.elapsed();
    let acquired = taken
        .spec
        .as_ref()
        .and_then(|s| s.acquire_time.as_ref())
        .map(|t| t.0)
        .expect("an acquire time");
    let lapsed = last_renewal
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(
            LEASE_DURATION_SECONDS.into(),
        ))
        .unwrap();
    assert!(
        acquired >= lapsed,
        "replica-b took the Lease at {acquired}, before replica-a's claim lapsed at {lapsed}"
    );
    let bound = Duration::from_secs(LEASE_DURATION_SECONDS.unsigned_abs().into())
        + RENEW_INTERVAL
        + Duration::from_secs(3);
    assert!(took <= bound, "taken over {took:?} after the kill");
    assert_eq!(
        taken.spec.as_ref().and_then(|s| s.lease_transitions),
        Some(1)
    );

    // The new leader reconciles the change.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), NAMESPACE);
    eventually("the proxies scaled to 3 by replica-b", || async {
        let d = deployments.get_opt("shop-proxy").await.ok().flatten()?;
        (d.spec.replicas == Some(3)).then_some(())
    })
    .await;
    eprintln!(
        "the Lease changed hands {:.1} s after the leader died (claim {LEASE_DURATION_SECONDS} s, \
         renewals every {} s)",
        took.as_secs_f64(),
        RENEW_INTERVAL.as_secs()
    );
    b.kill();
}
