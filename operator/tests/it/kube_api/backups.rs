//! Backups in Kubernetes, end to end on the real control plane (see `e2e.rs`): `MySQLBackup`s
//! taken by the controller from a replica's agent into a real S3-compatible server (moto, on
//! the node's address so pods reach it too), kept by `spec.backup.keep`, refused with clear
//! errors on wrong credentials, and a new cluster bootstrapped from a backup
//! (`spec.bootstrap.fromBackup`).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use lagless_core::gtid::MariadbPosition;
use lagless_operator::backup::location::{Location, S3Credentials};
use lagless_operator::backup::s3::S3Options;
use lagless_operator::backup::store::Store;
use lagless_operator::crd::MySQLCluster;
use lagless_operator::crd::backup::{BackupPhase, MySQLBackup};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::e2e::{Witnesses, admin_credentials, apply, opts, settled, start_controller, wait_for};
use super::harness::ControlPlane;
use super::node::Node;
use crate::backup::S3Server;

const NAMESPACE: &str = "default";
const DESTINATION: &str = "s3://backups/k8s";

async fn cluster(admin: &Client, name: &str) -> MySQLCluster {
    Api::<MySQLCluster>::namespaced(admin.clone(), NAMESPACE)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("reading cluster {name}: {e}"))
}

fn s3_secret(name: &str, creds: &S3Credentials) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "stringData": {
            "AWS_ACCESS_KEY_ID": creds.access_key,
            "AWS_SECRET_ACCESS_KEY": creds.secret_key,
        },
    })
}

fn cluster_json(name: &str, spec_extra: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "replicas": 2,
        "flavor": "mariadb",
        "image": "docker.io/library/mariadb:10.11",
        "storage": {"size": "1Gi"},
        "serverConfig": {"innodb_buffer_pool_size": "32M"},
        "proxy": {"replicas": 0},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({
        "apiVersion": "lagless.dev/v1alpha1", "kind": "MySQLCluster",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    })
}

fn backup_json(name: &str, cluster: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "lagless.dev/v1alpha1", "kind": "MySQLBackup",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"clusterRef": {"name": cluster}},
    })
}

/// The backup's status once it is final.
async fn finished(
    admin: &Client,
    name: &str,
    witnesses: &Witnesses<'_>,
) -> lagless_operator::crd::backup::MySQLBackupStatus {
    let api: Api<MySQLBackup> = Api::namespaced(admin.clone(), NAMESPACE);
    wait_for(
        &format!("backup {name} to finish"),
        Duration::from_secs(120),
        witnesses,
        || async {
            let status = api.get(name).await.ok()?.status?;
            status.phase.filter(|p| p.is_final()).map(|_| status)
        },
    )
    .await
}

/// Waits until the Deployment `name`'s template mentions `mentions` and it runs that template
/// only, on one ready pod.
async fn rolled_out(admin: &Client, name: &str, mentions: &str, witnesses: &Witnesses<'_>) {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(admin.clone(), NAMESPACE);
    wait_for(
        &format!("Deployment {name} rolled out"),
        Duration::from_secs(60),
        witnesses,
        || async {
            let d = api.get(name).await.ok()?;
            let template = serde_json::to_string(&d.spec.template).ok()?;
            if !template.contains(mentions) {
                return None;
            }
            let status = d.status?;
            let current = status.observed_generation >= d.metadata.generation;
            (current
                && status.replicas == Some(1)
                && status.updated_replicas == Some(1)
                && status.available_replicas == Some(1))
            .then_some(())
        },
    )
    .await;
}

/// Row count and `CHECKSUM TABLE` of `vault.t` on `ip`.
async fn state(ip: &str, user: &str, password: &str) -> (u64, u64) {
    let mut conn = Conn::new(opts(ip, user, password, None))
        .await
        .unwrap_or_else(|e| panic!("connecting to {ip}: {e}"));
    let count: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM vault.t")
        .await
        .expect("counting rows");
    let checksum: Option<(String, u64)> = conn
        .query_first("CHECKSUM TABLE vault.t")
        .await
        .expect("the table's checksum");
    (
        count.unwrap_or_default(),
        checksum.map(|c| c.1).unwrap_or_default(),
    )
}

/// The backup ids stored at the destination.
async fn stored(endpoint: &str, creds: &S3Credentials) -> Vec<String> {
    let options = S3Options {
        endpoint: Some(endpoint.to_string()),
        region: "us-east-1".into(),
        credentials: creds.clone(),
    };
    let store = Store::open(
        &Location::parse(DESTINATION).expect("the destination"),
        Some(&options),
    )
    .expect("the store");
    let mut ids: Vec<String> = lagless_operator::local::backup::manifests(&store)
        .await
        .expect("listing the backups")
        .into_iter()
        .map(|m| m.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_taken_kept_refused_and_restored_into_a_new_cluster() {
    let mut plane = ControlPlane::start().await;
    plane.install_crds(true).await;
    plane.start_controller_manager();
    let admin = plane.admin.clone();
    let node = Node::start(admin.clone(), NAMESPACE);
    let s3 = S3Server::start_at(node.host_ip().parse().expect("the node's address"));
    let creds = S3Credentials::parse(&std::fs::read_to_string(&s3.creds).expect("the key"))
        .expect("the key parses");
    let log = std::env::temp_dir().join(format!(
        "lagless-kube-{}-backups-controller.log",
        std::process::id()
    ));
    let mut controller = start_controller(&plane, &node, log.clone()).await;
    let witnesses = &Witnesses {
        controller: &controller,
        node: &node,
    };
    let _: Secret = apply(&admin, s3_secret("s3-key", &creds)).await;
    let wrong = S3Credentials {
        access_key: creds.access_key.clone(),
        secret_key: "not-the-secret".into(),
    };
    let _: Secret = apply(&admin, s3_secret("s3-wrong-key", &wrong)).await;
    let backup_spec = |secret: &str| {
        serde_json::json!({"backup": {
            "destination": DESTINATION,
            "s3": {"endpoint": s3.endpoint, "credentialsSecret": secret},
            "keep": 1,
            "archiveBinlogs": true,
        }})
    };
    let _: MySQLCluster = apply(&admin, cluster_json("vault", backup_spec("s3-key"))).await;
    let began = Instant::now();
    let primary = wait_for(
        "vault: a primary and 2/2 members ready",
        Duration::from_secs(240),
        witnesses,
        || async { settled(&cluster(&admin, "vault").await, 2) },
    )
    .await;
    eprintln!("backups: vault up in {:?}", began.elapsed());
    let (user, password) = admin_credentials(&admin, &cluster(&admin, "vault").await).await;
    let primary_ip = node.pod_ip(&primary).expect("the primary's address");
    let mut conn = Conn::new(opts(&primary_ip, &user, &password, None))
        .await
        .expect("the admin connects to the primary");
    conn.query_drop(
        "CREATE DATABASE vault; USE vault; CREATE TABLE vault.t (id INT PRIMARY KEY, v VARCHAR(64)); \
         INSERT INTO vault.t SELECT seq, MD5(seq) FROM seq_1_to_200",
    )
    .await
    .expect("writing rows");

    // On demand, from the replica.
    let _: MySQLBackup = apply(&admin, backup_json("first", "vault")).await;
    let first = finished(&admin, "first", witnesses).await;
    assert_eq!(first.phase, Some(BackupPhase::Succeeded), "{first:?}");
    assert_ne!(first.member.as_deref(), Some(primary.as_str()), "{first:?}");
    assert!(first.stored_bytes.unwrap_or(0) > 0, "{first:?}");
    let first_id = first.backup_id.clone().expect("an id");
    assert!(
        first
            .gtid_position
            .as_deref()
            .is_some_and(|p| !p.is_empty()),
        "{first:?}"
    );
    assert_eq!(stored(&s3.endpoint, &creds).await, vec![first_id.clone()]);
    eprintln!("backups: first: {first:?}");

    conn.query_drop("INSERT INTO vault.t SELECT seq, MD5(seq) FROM seq_201_to_300")
        .await
        .expect("writing more rows");
    let source_state = state(&primary_ip, &user, &password).await;
    assert_eq!(source_state.0, 300);
    let _: MySQLBackup = apply(&admin, backup_json("second", "vault")).await;
    let second = finished(&admin, "second", witnesses).await;
    assert_eq!(second.phase, Some(BackupPhase::Succeeded), "{second:?}");
    let second_id = second.backup_id.clone().expect("an id");
    // keep: 1: the first backup and its MySQLBackup are deleted.
    let backups: Api<MySQLBackup> = Api::namespaced(admin.clone(), NAMESPACE);
    wait_for(
        "the first MySQLBackup deleted by the retention",
        Duration::from_secs(30),
        witnesses,
        || async { backups.get_opt("first").await.ok()?.is_none().then_some(()) },
    )
    .await;
    assert_eq!(stored(&s3.endpoint, &creds).await, vec![second_id.clone()]);
    let status = wait_for(
        "the cluster's status to report the backup",
        Duration::from_secs(30),
        witnesses,
        || async {
            let backups = cluster(&admin, "vault").await.status?.backups?;
            (backups.last_success.as_deref() == Some(second_id.as_str())).then_some(backups)
        },
    )
    .await;
    assert!(status.last_success_time.is_some(), "{status:?}");

    // The archive: ten more transactions, and a new cluster restored to the fifth of them.
    let mut target = String::new();
    let mut at_target = (0, 0);
    for id in 301..=310 {
        conn.query_drop(format!("INSERT INTO vault.t VALUES ({id}, 'archived')"))
            .await
            .expect("an archived write");
        if id == 305 {
            let position: Option<String> = conn
                .query_first("SELECT @@gtid_binlog_pos")
                .await
                .expect("the position");
            target = position.expect("a position");
            at_target = state(&primary_ip, &user, &password).await;
        }
    }
    let last: Option<String> = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .expect("the position");
    let last = MariadbPosition::parse(&last.expect("a position")).expect("a GTID position");
    let archived = wait_for(
        "the archive to hold the last write",
        Duration::from_secs(60),
        witnesses,
        || async {
            let archive = cluster(&admin, "vault").await.status?.backups?.archive?;
            let position = MariadbPosition::parse(archive.position.as_deref()?).ok()?;
            position.contains(&last).then_some(archive)
        },
    )
    .await;
    assert_eq!(
        archived.reading.as_deref(),
        Some(primary.as_str()),
        "{archived:?}"
    );
    assert!(archived.error.is_none(), "{archived:?}");
    eprintln!("backups: archive {archived:?}");
    let began = Instant::now();
    let _: MySQLCluster = apply(
        &admin,
        cluster_json(
            "vault3",
            serde_json::json!({"bootstrap": {"fromBackup": {
                "destination": DESTINATION,
                "cluster": "vault",
                "pointInTime": target,
                "s3": {"endpoint": s3.endpoint, "credentialsSecret": "s3-key"},
            }}}),
        ),
    )
    .await;
    wait_for(
        "vault3 restored to a GTID position: 2/2 members ready",
        Duration::from_secs(240),
        witnesses,
        || async { settled(&cluster(&admin, "vault3").await, 2) },
    )
    .await;
    eprintln!(
        "backups: vault3 restored to {target} in {:?}",
        began.elapsed()
    );
    let (user3, password3) = admin_credentials(&admin, &cluster(&admin, "vault3").await).await;
    for member in ["vault3-0", "vault3-1"] {
        let ip = node.pod_ip(member).expect("a member's address");
        assert_eq!(
            state(&ip, &user3, &password3).await,
            at_target,
            "{member} holds exactly the transactions up to {target}"
        );
    }

    // A switchover: the archive goes on from the new primary, missing nothing.
    let replica = if primary == "vault-0" {
        "vault-1"
    } else {
        "vault-0"
    };
    Api::<MySQLCluster>::namespaced(admin.clone(), NAMESPACE)
        .patch(
            "vault",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"switchover": {"id": "move", "primary": replica}}}),
            ),
        )
        .await
        .expect("asking for a switchover");
    wait_for(
        "the switchover",
        Duration::from_secs(60),
        witnesses,
        || async {
            (cluster(&admin, "vault").await.status?.primary.as_deref() == Some(replica))
                .then_some(())
        },
    )
    .await;
    let new_ip = node.pod_ip(replica).expect("the new primary's address");
    let mut conn = Conn::new(opts(&new_ip, &user, &password, None))
        .await
        .expect("the admin connects to the new primary");
    conn.query_drop("INSERT INTO vault.t VALUES (311, 'after the switchover')")
        .await
        .expect("a write on the new primary");
    let last: Option<String> = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .expect("the position");
    let last = MariadbPosition::parse(&last.expect("a position")).expect("a GTID position");
    wait_for(
        "the archive to follow the new primary",
        Duration::from_secs(60),
        witnesses,
        || async {
            let archive = cluster(&admin, "vault").await.status?.backups?.archive?;
            let position = MariadbPosition::parse(archive.position.as_deref()?).ok()?;
            (archive.reading.as_deref() == Some(replica) && position.contains(&last)).then_some(())
        },
    )
    .await;

    // Restore drills, run in the archiver's pod: one passes; after a row is deleted on the
    // replica behind replication's back, the next fails and names the table.
    let drill = |name: &str| {
        serde_json::json!({
            "apiVersion": "lagless.dev/v1alpha1", "kind": "MySQLBackup",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"clusterRef": {"name": "vault"}, "drill": true},
        })
    };
    let _: MySQLBackup = apply(&admin, drill("drill-1")).await;
    let passed = finished(&admin, "drill-1", witnesses).await;
    assert_eq!(passed.phase, Some(BackupPhase::Succeeded), "{passed:?}");
    assert!(
        passed
            .message
            .as_deref()
            .is_some_and(|m| m.contains("drill passed")),
        "{passed:?}"
    );
    eprintln!("backups: drill-1: {passed:?}");
    let old_primary_ip = node.pod_ip(&primary).expect("the replica's address");
    let mut replica_conn = Conn::new(opts(&old_primary_ip, &user, &password, None))
        .await
        .expect("the admin connects to the replica");
    replica_conn
        .query_drop("SET SESSION sql_log_bin = 0; DELETE FROM vault.t WHERE id = 7")
        .await
        .expect("drift on the replica");
    let _: MySQLBackup = apply(&admin, drill("drill-2")).await;
    let failed = finished(&admin, "drill-2", witnesses).await;
    assert_eq!(failed.phase, Some(BackupPhase::Failed), "{failed:?}");
    assert!(
        failed
            .message
            .as_deref()
            .is_some_and(|m| m.contains("`vault`.`t`")),
        "the drift is named: {failed:?}"
    );
    replica_conn
        .query_drop("SET SESSION sql_log_bin = 0; INSERT INTO vault.t VALUES (7, MD5(7))")
        .await
        .expect("the drift undone");
    wait_for(
        "the cluster's status to report the failed drill",
        Duration::from_secs(30),
        witnesses,
        || async {
            let backups = cluster(&admin, "vault").await.status?.backups?;
            backups
                .last_drill
                .filter(|d| d.starts_with("failed: drill-2"))
                .map(|_| ())
        },
    )
    .await;

    // Wrong credentials: a clear failure, and nothing deleted (the backup pod is replaced
    // with the new key first).
    let _: MySQLCluster = apply(&admin, cluster_json("vault", backup_spec("s3-wrong-key"))).await;
    rolled_out(&admin, "vault-archiver", "s3-wrong-key", witnesses).await;
    let _: MySQLBackup = apply(&admin, backup_json("third", "vault")).await;
    let third = finished(&admin, "third", witnesses).await;
    assert_eq!(third.phase, Some(BackupPhase::Failed), "{third:?}");
    let message = third.message.clone().unwrap_or_default();
    assert!(
        message.contains("SignatureDoesNotMatch"),
        "the storage's own code: {message}"
    );
    assert_eq!(stored(&s3.endpoint, &creds).await, vec![second_id.clone()]);
    wait_for(
        "the cluster's status to report the failure",
        Duration::from_secs(30),
        witnesses,
        || async {
            let backups = cluster(&admin, "vault").await.status?.backups?;
            backups
                .last_failure
                .filter(|f| f.starts_with("third: "))
                .map(|_| ())
        },
    )
    .await;
    // A backup naming a cluster that has no spec.backup fails at once, saying so.
    Api::<MySQLCluster>::namespaced(admin.clone(), NAMESPACE)
        .patch(
            "vault",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"backup": null}})),
        )
        .await
        .expect("removing spec.backup");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _: MySQLBackup = apply(&admin, backup_json("fourth", "vault")).await;
    let fourth = finished(&admin, "fourth", witnesses).await;
    assert_eq!(fourth.phase, Some(BackupPhase::Failed), "{fourth:?}");
    assert!(
        fourth
            .message
            .as_deref()
            .is_some_and(|m| m.contains("no spec.backup")),
        "{fourth:?}"
    );

    // A new cluster from the backup: its members hold exactly what the backup holds.
    let began = Instant::now();
    let _: MySQLCluster = apply(
        &admin,
        cluster_json(
            "vault2",
            serde_json::json!({"bootstrap": {"fromBackup": {
                "destination": DESTINATION,
                "cluster": "vault",
                "s3": {"endpoint": s3.endpoint, "credentialsSecret": "s3-key"},
            }}}),
        ),
    )
    .await;
    let restored_primary = wait_for(
        "vault2 restored: a primary and 2/2 members ready",
        Duration::from_secs(240),
        witnesses,
        || async { settled(&cluster(&admin, "vault2").await, 2) },
    )
    .await;
    eprintln!(
        "backups: vault2 restored and ready in {:?}",
        began.elapsed()
    );
    let (user2, password2) = admin_credentials(&admin, &cluster(&admin, "vault2").await).await;
    assert_ne!(
        password2, password,
        "the new cluster has its own admin password"
    );
    for member in ["vault2-0", "vault2-1"] {
        let ip = node.pod_ip(member).expect("a member's address");
        assert_eq!(
            state(&ip, &user2, &password2).await,
            source_state,
            "{member} holds what the backup holds"
        );
    }
    // The restored primary takes writes, and they replicate.
    let ip = node
        .pod_ip(&restored_primary)
        .expect("the primary's address");
    let mut conn2 = Conn::new(opts(&ip, &user2, &password2, None))
        .await
        .expect("the new cluster's admin connects");
    conn2
        .query_drop("INSERT INTO vault.t VALUES (301, 'after the restore')")
        .await
        .expect("a write on the restored cluster");
    let replica = if restored_primary == "vault2-0" {
        "vault2-1"
    } else {
        "vault2-0"
    };
    let replica_ip = node.pod_ip(replica).expect("the replica's address");
    wait_for(
        "the write on the restored cluster's replica",
        Duration::from_secs(30),
        witnesses,
        || async { (state(&replica_ip, &user2, &password2).await.0 == 301).then_some(()) },
    )
    .await;

    // A directory on a PersistentVolumeClaim: the backup pod writes there, and a new
    // cluster's restore step reads it.
    let _: k8s_openapi::api::core::v1::PersistentVolumeClaim = apply(
        &admin,
        serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "backup-vol", "namespace": NAMESPACE},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
        }),
    )
    .await;
    let on_volume = serde_json::json!({"replicas": 1, "backup": {
        "destination": "/var/lib/lagless-test-backups/vdir",
        "persistentVolumeClaim": "backup-vol",
    }});
    let _: MySQLCluster = apply(&admin, cluster_json("vdir", on_volume)).await;
    let vdir_primary = wait_for(
        "vdir: a primary and 1/1 members ready",
        Duration::from_secs(240),
        witnesses,
        || async { settled(&cluster(&admin, "vdir").await, 1) },
    )
    .await;
    let (vuser, vpassword) = admin_credentials(&admin, &cluster(&admin, "vdir").await).await;
    let vip = node.pod_ip(&vdir_primary).expect("vdir's address");
    let mut vconn = Conn::new(opts(&vip, &vuser, &vpassword, None))
        .await
        .expect("vdir's admin connects");
    vconn
        .query_drop(
            "CREATE DATABASE vault; USE vault; CREATE TABLE vault.t (id INT PRIMARY KEY, v VARCHAR(64)); \
             INSERT INTO vault.t SELECT seq, MD5(seq) FROM seq_1_to_50",
        )
        .await
        .expect("vdir's rows");
    let vdir_state = state(&vip, &vuser, &vpassword).await;
    let _: MySQLBackup = apply(&admin, backup_json("dir-1", "vdir")).await;
    let on_dir = finished(&admin, "dir-1", witnesses).await;
    assert_eq!(on_dir.phase, Some(BackupPhase::Succeeded), "{on_dir:?}");
    assert_eq!(
        on_dir.member.as_deref(),
        Some("vdir-0"),
        "the only member gives it"
    );
    let id = on_dir.backup_id.clone().expect("an id");
    let on_claim = node.claim_files("backup-vol");
    assert!(
        on_claim.contains(&format!("{id}.json"))
            && on_claim.contains(&format!("{id}.xbstream.zst")),
        "the backup is on the claim's volume: {on_claim:?}"
    );
    let _: MySQLCluster = apply(
        &admin,
        cluster_json(
            "vdir2",
            serde_json::json!({"replicas": 1, "bootstrap": {"fromBackup": {
                "destination": "/var/lib/lagless-test-backups/vdir",
                "persistentVolumeClaim": "backup-vol",
                "cluster": "vdir",
            }}}),
        ),
    )
    .await;
    wait_for(
        "vdir2 restored from the volume: 1/1 ready",
        Duration::from_secs(240),
        witnesses,
        || async { settled(&cluster(&admin, "vdir2").await, 1) },
    )
    .await;
    let (user5, password5) = admin_credentials(&admin, &cluster(&admin, "vdir2").await).await;
    let ip5 = node.pod_ip("vdir2-0").expect("vdir2's address");
    assert_eq!(
        state(&ip5, &user5, &password5).await,
        vdir_state,
        "restored from the volume"
    );

    // A point in time the archive does not reach: the restore step fails and says why in the
    // `Restored` condition and a Warning Event; nothing is published.
    let _: MySQLCluster = apply(
        &admin,
        cluster_json(
            "vault4",
            serde_json::json!({"bootstrap": {"fromBackup": {
                "destination": DESTINATION,
                "cluster": "vault",
                "pointInTime": "2099-01-01T00:00:00Z",
                "s3": {"endpoint": s3.endpoint, "credentialsSecret": "s3-key"},
            }}}),
        ),
    )
    .await;
    let refused = wait_for(
        "vault4's Restored condition to say why the restore fails",
        Duration::from_secs(120),
        witnesses,
        || async {
            let status = cluster(&admin, "vault4").await.status?;
            status
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Restored" && c.reason == "RestoreFailing")
        },
    )
    .await;
    assert!(
        refused
            .message
            .contains("cannot restore to 2099-01-01T00:00:00Z"),
        "{refused:?}"
    );
    let status = cluster(&admin, "vault4").await.status.expect("a status");
    assert!(status.primary.is_none(), "nothing is published: {status:?}");
    assert!(
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), NAMESPACE)
            .get_opt("vault4-topology")
            .await
            .expect("reading ConfigMaps")
            .is_none(),
        "no topology is published for a cluster whose restore fails"
    );
    let restored = cluster(&admin, "vault2").await.status.expect("a status");
    assert!(
        restored
            .conditions
            .iter()
            .any(|c| c.type_ == "Restored"
                && c.status == lagless_operator::crd::ConditionStatus::True),
        "{restored:?}"
    );

    // A schedule of every minute: the operator makes the MySQLBackup of the minute and runs it.
    let mut spec = backup_spec("s3-key");
    spec["backup"]["schedule"] = serde_json::json!("* * * * *");
    let _: MySQLCluster = apply(&admin, cluster_json("vault", spec)).await;
    let scheduled = wait_for(
        "a scheduled backup to succeed",
        Duration::from_secs(90),
        witnesses,
        || async {
            backups
                .list(&kube::api::ListParams::default().labels("lagless.dev/scheduled"))
                .await
                .ok()?
                .items
                .into_iter()
                .find(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Succeeded))
        },
    )
    .await;
    assert!(
        scheduled
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("vault-2")),
        "named for its minute: {:?}",
        scheduled.metadata.name
    );
    wait_for(
        "the next scheduled run in the status",
        Duration::from_secs(30),
        witnesses,
        || async {
            cluster(&admin, "vault")
                .await
                .status?
                .backups?
                .next_scheduled
        },
    )
    .await;

    // What happened is told in Events on the clusters.
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin.clone(), NAMESPACE)
        .list(&Default::default())
        .await
        .expect("Events")
        .items;
    let reasons = |cluster: &str| -> std::collections::BTreeSet<String> {
        events
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(cluster))
            .filter_map(|e| e.reason.clone())
            .collect()
    };
    let on_vault = reasons("vault");
    for reason in [
        "BackupStarted",
        "BackupSucceeded",
        "BackupFailed",
        "BackupsDeleted",
        "DrillPassed",
        "DrillFailed",
    ] {
        assert!(on_vault.contains(reason), "no {reason} Event: {on_vault:?}");
    }
    assert!(
        reasons("vault4").contains("RestoreFailing"),
        "{:?}",
        reasons("vault4")
    );

    // An operator stopped while a backup runs: the next one follows it to its end rather than
    // calling it interrupted.
    let _: MySQLCluster = apply(&admin, cluster_json("vault", backup_spec("s3-key"))).await;
    let now_primary = cluster(&admin, "vault")
        .await
        .status
        .and_then(|s| s.primary)
        .expect("vault's primary");
    let mut conn = Conn::new(opts(
        &node.pod_ip(&now_primary).expect("the primary's address"),
        &user,
        &password,
        None,
    ))
    .await
    .expect("the admin connects to vault's primary");
    conn.query_drop(
        "USE vault; CREATE TABLE vault.big (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO vault.big SELECT seq, REPEAT(MD5(seq), 24) FROM seq_1_to_200000",
    )
    .await
    .expect("a larger table, for a backup that takes a while");
    let _: MySQLBackup = apply(&admin, backup_json("resumed", "vault")).await;
    let backups_api: Api<MySQLBackup> = Api::namespaced(admin.clone(), NAMESPACE);
    wait_for(
        "the backup to run",
        Duration::from_secs(60),
        witnesses,
        || async {
            let status = backups_api.get("resumed").await.ok()?.status?;
            (status.phase? == BackupPhase::Running).then_some(())
        },
    )
    .await;
    controller.kill();
    let mut second = start_controller(&plane, &node, log.with_extension("second")).await;
    let witnesses = &Witnesses {
        controller: &second,
        node: &node,
    };
    let resumed = finished(&admin, "resumed", witnesses).await;
    assert_eq!(
        resumed.phase,
        Some(BackupPhase::Succeeded),
        "followed to its end by the next operator: {resumed:?}"
    );
    assert!(resumed.backup_id.is_some(), "{resumed:?}");
    assert!(
        second
            .log_text()
            .contains("following a job an earlier operator started"),
        "the second operator followed the job"
    );
    eprintln!("backups: resumed: {resumed:?}");
    second.kill();
}
