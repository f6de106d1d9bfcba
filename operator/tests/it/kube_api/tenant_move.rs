//! `MySQLTenantMove` on a real API server, moving a tenant between clusters of real servers:
//! the operator's move controller (as the chart's ServiceAccount, under its RBAC) finds the
//! pool's clusters by their topology ConfigMaps and its accounts in the pool's Secrets, keeps
//! the mover's record in the status, and is killed while copying: a new controller goes on
//! from the status and finishes the move, with every acknowledged write on the target; a move
//! back deleted mid-copy while no operator runs is finished by the next one, then gone.
//!
//! No pods run here: the servers are the test's own `mariadbd` processes (as in
//! `tenant_move.rs`), published in the ConfigMaps the clusters' orchestration would write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, ResourceExt};
use lagless_directory::{TenantId, TenantState};
use lagless_operator::crd::tenant_move::MySQLTenantMove;
use lagless_operator::crd::tenant_pool::{MySQLTenantPool, directory_name};
use lagless_operator::kube::builders::{TOPOLOGY_KEY, topology_configmap_name};
use lagless_operator::kube::tenant_move;
use lagless_testkit::{ADMIN_PASSWORD, ADMIN_USER, REPL_PASSWORD, REPL_USER};
use mysql_async::prelude::*;
use tokio::task::JoinHandle;

use super::harness::{ControlPlane, eventually};
use super::{NAMESPACE, init_logs};
use crate::tenant_move::{Fleet, NAMES, topology};

const POOL: &str = "move";

pub(super) fn secret(name: &str, user: &str, password: &str) -> Secret {
    let mut data = BTreeMap::new();
    data.insert("username".to_string(), ByteString(user.as_bytes().to_vec()));
    data.insert(
        "password".to_string(),
        ByteString(password.as_bytes().to_vec()),
    );
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// The topology ConfigMap of cluster `name`, as its orchestration publishes it.
pub(super) fn topology_configmap(name: &str, json: String) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(topology_configmap_name(name)),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(TOPOLOGY_KEY.to_string(), json)])),
        ..Default::default()
    }
}

fn move_json(name: &str, tenant: &str, to: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "lagless.dev/v1alpha1",
        "kind": "MySQLTenantMove",
        "metadata": {"name": name},
        "spec": {"pool": POOL, "tenant": tenant, "to": to, "copyRateMib": 1},
    })
}

/// The move controller alone, as the operator runs it, until aborted.
pub(super) fn start_movers(client: Client) -> JoinHandle<()> {
    tokio::spawn(async move {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "lagless-operator".into(),
                instance: Some("test".into()),
            },
        );
        tenant_move::run(client, Some(NAMESPACE), recorder).await;
    })
}

async fn phase_of(api: &Api<MySQLTenantMove>, name: &str) -> Option<(String, bool)> {
    let mv = api.get_opt(name).await.ok()??;
    let status = mv.status?;
    Some((status.phase?, status.record.is_some()))
}

/// What the pool's reconciler and its clusters' orchestration would have made for `pool` on
/// `fleet`'s servers: the pool's Secrets and each cluster's topology ConfigMap.
pub(super) async fn publish(admin: &Client, pool: &MySQLTenantPool, fleet: &Fleet) {
    let name = pool.name_any();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NAMESPACE);
    let credentials = &pool.spec.cluster_template.credentials;
    for s in [
        secret(&credentials.admin_secret(&name), ADMIN_USER, ADMIN_PASSWORD),
        secret(
            &credentials.replication_secret(&name),
            REPL_USER,
            REPL_PASSWORD,
        ),
    ] {
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), NAMESPACE);
    let directory = directory_name(&name);
    let mut published = vec![topology_configmap(
        &directory,
        topology(&directory, fleet.directory_cluster()).to_json_pretty(),
    )];
    for (cluster, servers) in fleet.names.iter().zip(&fleet.clusters) {
        published.push(topology_configmap(
            cluster,
            topology(cluster, servers).to_json_pretty(),
        ));
    }
    for cm in published {
        configmaps
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
    }
}

/// Waits until move `name` copies with its record in the status (so it has started).
async fn copying_on_record(moves: &Api<MySQLTenantMove>, name: &str) {
    eventually(&format!("{name} copying, on record"), || async {
        phase_of(moves, name)
            .await
            .filter(|(phase, recorded)| phase == "copying" && *recorded)
    })
    .await;
}

/// Where the directory sends tenant `kube`.
async fn route_of(fleet: &Fleet) -> lagless_directory::Route {
    fleet
        .book()
        .lookup(&TenantId::parse("kube").unwrap())
        .await
        .unwrap()
        .unwrap()
}

/// The directory sends tenant `kube` to `cluster`, active, and every server of it holds every
/// acknowledged write of the writer, once.
async fn served_from(fleet: &Fleet, cluster: usize, acked: &[i32]) {
    let route = route_of(fleet).await;
    assert_eq!(
        (route.cluster.as_str(), route.state),
        (fleet.names[cluster], TenantState::Active)
    );
    let servers = &fleet.clusters[cluster];
    servers
        .wait_replicated(Duration::from_secs(20))
        .await
        .unwrap();
    for member in servers.members() {
        let found: Vec<i32> = member
            .query("SELECT n FROM t_kube.kv WHERE writer = 1 ORDER BY n")
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0).unwrap())
            .collect();
        assert_eq!(
            found,
            acked,
            "member {} of {}",
            member.index(),
            fleet.names[cluster]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_move_in_kubernetes_survives_an_operator_restart_and_refuses_bad_moves() {
    init_logs();
    let plane = ControlPlane::start().await;
    plane.install_crds(true).await;
    let (client, _) = plane.chart_service_account().await;
    let admin = &plane.admin;
    let fleet = Fleet::start().await;
    let from = fleet.tenant("kube", 20_000).await;
    let to = 1 - from;

    // What the pool's reconciler and its clusters' orchestration would have made.
    let pool: MySQLTenantPool = serde_saphyr::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/tenantpool.yaml"
        ))
        .unwrap()
        .replace("name: demo", &format!("name: {POOL}")),
    )
    .unwrap();
    let pools: Api<MySQLTenantPool> = Api::namespaced(admin.clone(), NAMESPACE);
    pools.create(&PostParams::default(), &pool).await.unwrap();
    publish(admin, &pool, &fleet).await;

    // A writer through the proxy all along.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = {
        let stop = stop.clone();
        let mut conn = fleet.app(Some("t_kube")).await;
        tokio::spawn(async move {
            let (mut acked, mut errors, mut n) = (Vec::new(), Vec::new(), 0);
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match conn
                    .exec_drop("INSERT INTO kv (writer, n, pad) VALUES (1, ?, 'k')", (n,))
                    .await
                {
                    Ok(()) => acked.push(n),
                    Err(e) => errors.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acked, errors)
        })
    };

    let moves: Api<MySQLTenantMove> = Api::namespaced(admin.clone(), NAMESPACE);
    let apply = |name: &'static str, tenant: &'static str, to: &'static str| {
        let moves = moves.clone();
        async move {
            moves
                .patch(
                    name,
                    &PatchParams::apply("kubectl"),
                    &Patch::Apply(move_json(name, tenant, to)),
                )
                .await
                .unwrap();
        }
    };
    let first = start_movers(client.clone());
    apply("kube-move", "kube", NAMES[to]).await;
    // Killed while copying (1 MiB/s for about 4 MiB), once the record is in the status.
    copying_on_record(&moves, "kube-move").await;
    first.abort();
    let _ = first.await;
    let second = start_movers(client.clone());
    let done = eventually("the move ended", || async {
        let mv = moves.get_opt("kube-move").await.ok()??;
        mv.status.clone().filter(|s| s.is_final()).map(|_| mv)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (acked, errors) = writes.await.unwrap();
    let status = done.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("done"), "{status:?}");
    assert_eq!(status.from.as_deref(), Some(NAMES[from]));
    let phases: Vec<&str> = status.timings.iter().map(|t| t.phase.as_str()).collect();
    assert_eq!(
        phases,
        [
            "copying",
            "catching up",
            "frozen",
            "fenced",
            "flipped",
            "cleaning"
        ],
        "{status:?}"
    );
    assert!(status.frozen_ms.is_some_and(|ms| ms < 500), "{status:?}");
    assert!(status.finished_at.is_some() && status.started_at.is_some());
    assert!(errors.is_empty(), "client errors: {errors:?}");
    assert!(acked.len() > 100, "the writer wrote during the move");

    // The directory sends the tenant to the target, which holds every acknowledged write.
    served_from(&fleet, to, &acked).await;
    let source_dbs = fleet.clusters[from]
        .primary()
        .query("SHOW DATABASES LIKE 't_kube'")
        .await
        .unwrap();
    assert!(source_dbs.is_empty(), "the source keeps its copy");

    // Events on the move: started and done (the last recorded after the status).
    let events: Api<Event> = Api::namespaced(admin.clone(), NAMESPACE);
    eventually("the move's Events", || async {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("kube-move"))
            .filter_map(|e| e.reason)
            .collect();
        (reasons.iter().any(|r| r == "MoveStarted") && reasons.iter().any(|r| r == "Moved"))
            .then_some(())
    })
    .await;

    // Moves that cannot be: refused, with the reason, changing nothing.
    apply("nowhere", "kube", "move-z").await;
    apply("nobody", "ghost", NAMES[from]).await;
    for (name, says) in [
        (
            "nowhere",
            "cluster move-z is not one of pool move's clusters",
        ),
        ("nobody", "tenant ghost is not in pool move's directory"),
    ] {
        let refused = eventually(&format!("{name} refused"), || async {
            moves
                .get_opt(name)
                .await
                .ok()??
                .status
                .filter(|s| s.is_final())
        })
        .await;
        assert_eq!(refused.phase.as_deref(), Some("aborted"));
        assert!(
            refused.message.as_deref().is_some_and(|m| m.contains(says)),
            "{refused:?}"
        );
        assert!(refused.record.is_none(), "{refused:?}");
    }
    let route = route_of(&fleet).await;
    assert_eq!(route.cluster, NAMES[to]);

    // A move back, deleted while it copies with no operator running: the next operator
    // finishes it (the finalizer holds the object until then), and then it is gone.
    apply("kube-back", "kube", NAMES[from]).await;
    copying_on_record(&moves, "kube-back").await;
    second.abort();
    let _ = second.await;
    moves
        .delete("kube-back", &DeleteParams::default())
        .await
        .unwrap();
    let third = start_movers(client.clone());
    eventually("the deleted move finished and gone", || async {
        match moves.get_opt("kube-back").await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
    served_from(&fleet, from, &acked).await;

    // `kubectl lagless move`: a bad id refused before anything is made; the tenant moved
    // again, followed through its phases to its end.
    let kubeconfig = plane.admin_kubeconfig();
    let plugin = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let kubeconfig = kubeconfig.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_lagless-operator"))
                .arg0("kubectl-lagless")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(&args)
                .output()
                .await
                .expect("running kubectl-lagless")
        }
    };
    let refused = plugin(&["move", "Not-An-Id", "--pool", POOL, "--to", "move-a"]).await;
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let before = moves
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    let moved = plugin(&[
        "move",
        "kube",
        "--pool",
        POOL,
        "--to",
        NAMES[to],
        "--copy-rate-mib",
        "0",
    ])
    .await;
    let said = String::from_utf8_lossy(&moved.stdout);
    assert!(moved.status.success(), "{moved:?}");
    assert!(
        said.contains(&format!("moved from {} to {}", NAMES[from], NAMES[to])),
        "{said}"
    );
    let made = moves
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(made, before + 1, "one MySQLTenantMove made by the plugin");
    served_from(&fleet, to, &acked).await;

    // The finalizer held the move while it ran; a finished move is deleted at once.
    assert!(
        done.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == tenant_move::FINALIZER)
    );
    moves
        .delete("kube-move", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the finished move gone", || async {
        match moves.get_opt("kube-move").await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
    third.abort();
}
