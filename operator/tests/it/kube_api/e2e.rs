//! End to end on a real control plane: kube-apiserver, kube-controller-manager (StatefulSets
//! and Deployments make the pods) and the test's [`Node`] running each pod's processes:
//! `mariadbd` and the seeding agent in the member pods, `lagless-proxy` in the proxy pods.
//! The controller runs as its own process, as the chart's ServiceAccount under the chart's
//! RBAC, and reaches the members by the names the node's hosts file gives them (the headless
//! Service's DNS names). The proxy follows the topology ConfigMap through its mounted file.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use lagless_operator::crd::{MySQLCluster, ReseedResult};
use lagless_operator::kube::Credential;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio::sync::Mutex;

use super::harness::{ControlPlane, RELEASE_NAMESPACE};
use super::node::Node;

const NAMESPACE: &str = "default";
const CLUSTER: &str = "shop";
const APP: (&str, &str) = ("app", "app-password");

const MANIFEST: &str = r#"
apiVersion: lagless.dev/v1alpha1
kind: MySQLCluster
metadata:
  name: shop
  namespace: default
spec:
  replicas: 3
  flavor: mariadb
  image: docker.io/library/mariadb:10.11
  storage:
    size: 1Gi
  serverConfig:
    innodb_buffer_pool_size: 32M
  replication:
    semiSync: true
    semiSyncAcks: 1
  proxy:
    replicas: 1
    defaultConsistency: strict
"#;

/// The controller as a process of its own (`lagless-operator controller` with the chart's
/// arguments and environment), in a mount namespace where the node's hosts file is
/// `/etc/hosts`. Killed when dropped.
pub(super) struct ControllerProcess {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kept when the test failed, for a look.
        if std::thread::panicking() {
            eprintln!("the controller's log: {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
            let _ = std::fs::remove_file(self.log.with_extension("err"));
        }
    }
}

impl ControllerProcess {
    /// Stops the controller at once, as a killed pod would be.
    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the controller logged so far.
    pub(super) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

pub(super) async fn start_controller(
    plane: &ControlPlane,
    node: &Node,
    log: std::path::PathBuf,
) -> ControllerProcess {
    let (token, chart_args) = plane.chart_service_account_token().await;
    let kubeconfig = plane.kubeconfig("operator-kubeconfig", &token, RELEASE_NAMESPACE);
    // Its metrics on a port of its own; the rest as the chart gives it.
    let mut args = Vec::new();
    let mut skip = false;
    for arg in chart_args {
        if skip {
            skip = false;
        } else if arg == "--metrics-address" {
            skip = true;
        } else {
            args.push(arg);
        }
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(
            "mount --bind \"$0\" /etc/hosts && mount --bind \"$1\" /etc/resolv.conf && shift && exec \"$@\"",
        )
        .arg(node.hosts_file())
        .arg(node.resolv_conf())
        .arg(env!("CARGO_BIN_EXE_lagless-operator"))
        .arg("controller")
        .args(&args)
        .args(["--metrics-address", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "lagless-operator-e2e")
        .env("POD_NAMESPACE", RELEASE_NAMESPACE)
        .env("LAGLESS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("the controller's log"))
        .stderr(std::fs::File::create(log.with_extension("err")).expect("the controller's log"));
    let child = lagless_mariadbd::process::spawn_tied(cmd).expect("starting the controller");
    ControllerProcess { child, log }
}

async fn cluster(admin: &Client) -> MySQLCluster {
    let api: Api<MySQLCluster> = Api::namespaced(admin.clone(), NAMESPACE);
    api.get(CLUSTER).await.expect("reading the cluster")
}

/// What a failing wait shows: the controller's log and the pods' output.
pub(super) struct Witnesses<'a> {
    pub(super) controller: &'a ControllerProcess,
    pub(super) node: &'a Node,
}

/// Polls `probe` every 250 ms until it gives a value; fails after `limit` naming `what`,
/// with the controller's log and the pods' output.
pub(super) async fn wait_for<T, F, Fut>(
    what: &str,
    limit: Duration,
    witnesses: &Witnesses<'_>,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out ({limit:?}) waiting for {what}; the controller's log:\n{}\n{}",
            witnesses.controller.tail(),
            witnesses.node.describe()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(super) fn opts(ip: &str, user: &str, password: &str, db: Option<&str>) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname(ip)
        .tcp_port(3306)
        .user(Some(user))
        .pass(Some(password))
        .db_name(db)
        .prefer_socket(false)
        .into()
}

pub(super) async fn admin_credentials(admin: &Client, cluster: &MySQLCluster) -> (String, String) {
    let name = Credential::Admin
        .secret_name(cluster)
        .expect("the admin Secret's name");
    let secret = Api::<Secret>::namespaced(admin.clone(), NAMESPACE)
        .get(&name)
        .await
        .expect("the admin Secret");
    let data = secret.data.unwrap_or_default();
    let get = |k: &str| String::from_utf8_lossy(&data.get(k).expect("a key").0).into_owned();
    (get("username"), get("password"))
}

/// The cluster's primary and ready count, once its status names a primary with every member
/// ready.
pub(super) fn settled(cluster: &MySQLCluster, members: usize) -> Option<String> {
    let status = cluster.status.as_ref()?;
    let primary = status.primary.clone()?;
    (status.ready.as_deref() == Some(format!("{members}/{members}").as_str())).then_some(primary)
}

/// Applies `object` (JSON) as an admin would with `kubectl apply --server-side`.
pub(super) async fn apply<K>(admin: &Client, object: serde_json::Value) -> K
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let typed: K = serde_json::from_value(object).expect("a valid object");
    let name = typed.meta().name.clone().expect("a name");
    Api::<K>::namespaced(admin.clone(), NAMESPACE)
        .patch(
            &name,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&typed),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"))
}

/// The `Ready` condition of an account resource, once its status has one.
fn ready(
    status: Option<&lagless_operator::crd::accounts::AccountStatus>,
) -> Option<(bool, String)> {
    let c = status?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((
        c.status == lagless_operator::crd::ConditionStatus::True,
        c.message.clone(),
    ))
}

/// Logs in through the proxy as `user`; the server's error code when refused.
async fn login(proxy: &str, user: &str, password: &str) -> Result<Conn, u16> {
    match Conn::new(opts(proxy, user, password, Some("webshop"))).await {
        Ok(conn) => Ok(conn),
        Err(mysql_async::Error::Server(e)) => Err(e.code),
        Err(e) => panic!("logging in as {user}: {e}"),
    }
}

/// MySQLDatabase, MySQLUser and MySQLGrant end to end: made on the primary, the user known to
/// the proxy from the operator's file (a hash, not the password), its password rotated with an
/// open session kept, and deleted (the account dropped; the database, retained by default,
/// kept).
async fn accounts(admin: &Client, node: &Node, proxy: &str, controller: &Witnesses<'_>) {
    use lagless_operator::crd::accounts::{MySQLDatabase, MySQLGrant, MySQLUser};
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NAMESPACE);
    let password = |pw: &str| -> Secret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "webapp-password", "namespace": NAMESPACE},
            "stringData": {"password": pw},
        }))
        .expect("a Secret")
    };
    secrets
        .create(&Default::default(), &password("first-pw"))
        .await
        .expect("creating the password Secret");
    let _: MySQLDatabase = apply(
        admin,
        serde_json::json!({
            "apiVersion": "lagless.dev/v1alpha1", "kind": "MySQLDatabase",
            "metadata": {"name": "webshop", "namespace": NAMESPACE},
            "spec": {"clusterRef": {"name": CLUSTER}, "characterSet": "utf8mb4"},
        }),
    )
    .await;
    let _: MySQLUser = apply(
        admin,
        serde_json::json!({
            "apiVersion": "lagless.dev/v1alpha1", "kind": "MySQLUser",
            "metadata": {"name": "webapp", "namespace": NAMESPACE},
            "spec": {"clusterRef": {"name": CLUSTER},
                     "passwordSecretKeyRef": {"name": "webapp-password", "key": "password"}},
        }),
    )
    .await;
    let _: MySQLGrant = apply(
        admin,
        serde_json::json!({
            "apiVersion": "lagless.dev/v1alpha1", "kind": "MySQLGrant",
            "metadata": {"name": "webapp-webshop", "namespace": NAMESPACE},
            "spec": {"clusterRef": {"name": CLUSTER}, "user": "webapp", "database": "webshop",
                     "privileges": ["SELECT", "INSERT", "CREATE"]},
        }),
    )
    .await;
    let databases: Api<MySQLDatabase> = Api::namespaced(admin.clone(), NAMESPACE);
    let users: Api<MySQLUser> = Api::namespaced(admin.clone(), NAMESPACE);
    let grants: Api<MySQLGrant> = Api::namespaced(admin.clone(), NAMESPACE);
    let made = Instant::now();
    wait_for(
        "the three account resources Ready",
        Duration::from_secs(60),
        controller,
        || async {
            let d = ready(databases.get("webshop").await.ok()?.status.as_ref())?;
            let u = ready(users.get("webapp").await.ok()?.status.as_ref())?;
            let g = ready(grants.get("webapp-webshop").await.ok()?.status.as_ref())?;
            (d.0 && u.0 && g.0).then_some(())
        },
    )
    .await;
    eprintln!(
        "e2e: database, user and grant in effect {:?} after they were applied",
        made.elapsed()
    );

    // A resource that cannot be taken says why, and changes nothing.
    let _: MySQLGrant = apply(
        admin,
        serde_json::json!({
            "apiVersion": "lagless.dev/v1alpha1", "kind": "MySQLGrant",
            "metadata": {"name": "webapp-super", "namespace": NAMESPACE},
            "spec": {"clusterRef": {"name": CLUSTER}, "user": "webapp", "database": "*",
                     "privileges": ["SUPER"]},
        }),
    )
    .await;
    let refused = wait_for(
        "the bad grant refused",
        Duration::from_secs(30),
        controller,
        || async {
            ready(grants.get("webapp-super").await.ok()?.status.as_ref()).filter(|(ok, _)| !ok)
        },
    )
    .await;
    assert!(refused.1.contains("unknown privilege"), "{}", refused.1);
    grants
        .delete("webapp-super", &Default::default())
        .await
        .expect("deleting the bad grant");

    // Known to the proxy from the operator's file, as a hash.
    let proxy_pod = proxy_pod_name(admin).await;
    let file = wait_for(
        "the proxy's managed users file",
        Duration::from_secs(30),
        controller,
        || async {
            node.volume_file(&proxy_pod, "accounts", "users.json")
                .filter(|f| f.contains("webapp"))
        },
    )
    .await;
    assert!(
        !file.contains("first-pw"),
        "the proxy's file holds no password: {file}"
    );
    let mut session = wait_for(
        "a login through the proxy",
        Duration::from_secs(30),
        controller,
        || async { login(proxy, "webapp", "first-pw").await.ok() },
    )
    .await;
    session
        .query_drop("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .expect("the grant lets the account create and write");

    // A rotated password: new logins need the new one; the open session stays.
    secrets
        .replace(
            "webapp-password",
            &Default::default(),
            &password("second-pw"),
        )
        .await
        .expect("rotating the password");
    let rotated = Instant::now();
    wait_for(
        "the new password to work and the old one not",
        Duration::from_secs(60),
        controller,
        || async {
            let new = login(proxy, "webapp", "second-pw").await.is_ok();
            let old = login(proxy, "webapp", "first-pw").await;
            (new && old.err() == Some(1045)).then_some(())
        },
    )
    .await;
    let one: Option<i64> = session
        .query_first("SELECT id FROM t")
        .await
        .expect("the open session goes on");
    assert_eq!(one, Some(1));
    eprintln!(
        "e2e: password rotated in {:?}, the open session kept",
        rotated.elapsed()
    );

    // Deleted: the account is dropped (cleanupPolicy Delete by default), the database kept.
    for deleted in [
        grants
            .delete("webapp-webshop", &Default::default())
            .await
            .map(|_| ()),
        users
            .delete("webapp", &Default::default())
            .await
            .map(|_| ()),
        databases
            .delete("webshop", &Default::default())
            .await
            .map(|_| ()),
    ] {
        deleted.expect("deleting an account resource");
    }
    drop(session);
    wait_for(
        "the account dropped",
        Duration::from_secs(60),
        controller,
        || async { (login(proxy, "webapp", "second-pw").await.err() == Some(1045)).then_some(()) },
    )
    .await;
    let (user, password) = admin_credentials(admin, &cluster(admin).await).await;
    let primary = cluster(admin)
        .await
        .status
        .and_then(|s| s.primary)
        .expect("a primary");
    let ip = node.pod_ip(&primary).expect("the primary's address");
    let mut conn = Conn::new(opts(&ip, &user, &password, None))
        .await
        .expect("the admin connects");
    let kept: Option<String> = conn
        .query_first(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name = 'webshop'",
        )
        .await
        .expect("a query");
    assert_eq!(
        kept.as_deref(),
        Some("webshop"),
        "a retained database stays"
    );
    let accounts: Option<i64> = conn
        .query_first("SELECT COUNT(*) FROM mysql.user WHERE user = 'webapp'")
        .await
        .expect("a query");
    assert_eq!(accounts, Some(0), "the account is dropped");
}

/// The members whose pods the roll deleted, in order, from the controller's log.
fn rolled_order(controller: &ControllerProcess) -> Vec<String> {
    let text = std::fs::read_to_string(&controller.log).unwrap_or_default();
    // Without the terminal colours.
    let mut plain = String::with_capacity(text.len());
    let mut escape = false;
    for c in text.chars() {
        match (escape, c) {
            (false, '\u{1b}') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain
        .lines()
        .filter(|l| l.contains("roll: pod deleted"))
        .filter_map(|l| {
            let member = l.split("member=").nth(1)?;
            Some(member.split_whitespace().next()?.to_string())
        })
        .collect()
}

/// The name of the (only) proxy pod.
async fn proxy_pod_name(admin: &Client) -> String {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=proxy"))
        .await
        .expect("listing the proxy pods");
    list.items.first().expect("a proxy pod").name_any()
}

/// The address of the ready proxy pod.
async fn proxy_ip(admin: &Client, node: &Node) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=proxy"))
        .await
        .ok()?;
    list.items.iter().find_map(|p| {
        let ready = p
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then(|| node.pod_ip(&p.name_any())).flatten()
    })
}

/// What the writer saw.
#[derive(Default)]
struct Written {
    /// The ids whose INSERT was acknowledged, with the instant of the acknowledgement.
    acked: Vec<(i64, Instant)>,
    /// Strict reads (from another session) that did not see an acknowledged row.
    stale: Vec<i64>,
    reads: usize,
    /// Statements that failed, when and why.
    errors: Vec<(Instant, String)>,
}

/// Why a statement bounded by a timeout did not succeed.
fn why<T>(failed: Result<Result<T, mysql_async::Error>, tokio::time::error::Elapsed>) -> String {
    match failed {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(_)) => "succeeded".into(),
        Err(_) => "timed out".into(),
    }
}

async fn note_error(written: &Mutex<Written>, what: String) {
    written.lock().await.errors.push((Instant::now(), what));
}

async fn connect(proxy: &str) -> Option<Conn> {
    let connecting = Conn::new(opts(proxy, APP.0, APP.1, Some("shop")));
    tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .ok()?
        .ok()
}

/// Writes rows through the proxy until stopped, and after each acknowledged one reads it back
/// on another session (strict consistency, the cluster's default: any member may serve it,
/// but it must see the row). A connection that fails is replaced.
async fn writer(proxy: String, stop: Arc<AtomicBool>, written: Arc<Mutex<Written>>) {
    let mut id = 0i64;
    let (mut writes, mut reads): (Option<Conn>, Option<Conn>) = (None, None);
    while !stop.load(Ordering::Relaxed) {
        if writes.is_none() {
            writes = connect(&proxy).await;
        }
        if reads.is_none() {
            reads = connect(&proxy).await;
        }
        let (Some(w), Some(r)) = (writes.as_mut(), reads.as_mut()) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        id += 1;
        let insert = w.exec_drop("INSERT INTO t (id) VALUES (?)", (id,));
        match tokio::time::timeout(Duration::from_secs(10), insert).await {
            Ok(Ok(())) => written.lock().await.acked.push((id, Instant::now())),
            failed => {
                note_error(&written, format!("write {id}: {}", why(failed))).await;
                writes = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let read = r.exec_first::<i64, _, _>("SELECT id FROM t WHERE id = ?", (id,));
        match tokio::time::timeout(Duration::from_secs(10), read).await {
            Ok(Ok(found)) => {
                let mut w = written.lock().await;
                w.reads += 1;
                if found.is_none() {
                    w.stale.push(id);
                }
            }
            failed => {
                note_error(&written, format!("read {id}: {}", why(failed))).await;
                reads = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Bootstrap, kill -9 of the primary's server (failover, timed to the first write through the
/// proxy after it), switchover back by name, a re-seed, a scale-up seeded from a member and a
/// rolling change of `serverConfig`, all through the real control plane, with no acknowledged
/// write lost, no strict read stale and no client error during the roll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_fails_over_switches_over_and_scales_on_a_real_control_plane() {
    let mut plane = ControlPlane::start().await;
    plane.install_crds(true).await;
    plane.start_controller_manager();
    let admin = plane.admin.clone();
    let node = Node::start(admin.clone(), NAMESPACE);
    let log = std::env::temp_dir().join(format!(
        "lagless-kube-{}-controller.log",
        std::process::id()
    ));
    let controller = start_controller(&plane, &node, log).await;
    let controller = &Witnesses {
        controller: &controller,
        node: &node,
    };

    // The accounts the proxies authenticate clients with, made by the user (docs/kubernetes.md).
    let users: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{CLUSTER}-proxy-users"), "namespace": NAMESPACE},
        "stringData": {"users.json": serde_json::json!({"users": [{"user": APP.0, "password": APP.1}]}).to_string()},
    }))
    .expect("a Secret");
    Api::<Secret>::namespaced(admin.clone(), NAMESPACE)
        .create(&Default::default(), &users)
        .await
        .expect("creating the proxy users Secret");
    let applied: MySQLCluster = serde_saphyr::from_str(MANIFEST).expect("the manifest parses");
    let api: Api<MySQLCluster> = Api::namespaced(admin.clone(), NAMESPACE);
    api.patch(
        CLUSTER,
        &PatchParams::apply("kubectl"),
        &Patch::Apply(&applied),
    )
    .await
    .expect("applying the cluster");

    let started = Instant::now();
    let first = wait_for(
        "a primary and 3/3 members ready",
        Duration::from_secs(240),
        controller,
        || async { settled(&cluster(&admin).await, 3) },
    )
    .await;
    let bootstrap = started.elapsed();
    let proxy = wait_for(
        "a ready proxy pod",
        Duration::from_secs(60),
        controller,
        || proxy_ip(&admin, &node),
    )
    .await;
    eprintln!("e2e: bootstrapped in {bootstrap:?}; primary {first}, proxy at {proxy}");

    // The application's account and table, made on the primary as an administrator would.
    let (user, password) = admin_credentials(&admin, &cluster(&admin).await).await;
    let primary_ip = node.pod_ip(&first).expect("the primary's address");
    let mut conn = Conn::new(opts(&primary_ip, &user, &password, None))
        .await
        .expect("the admin connects to the primary");
    conn.query_drop(format!(
        "CREATE DATABASE shop; CREATE TABLE shop.t (id BIGINT PRIMARY KEY); \
         CREATE USER '{}'@'%' IDENTIFIED BY '{}'; GRANT ALL ON shop.* TO '{}'@'%'",
        APP.0, APP.1, APP.0
    ))
    .await
    .expect("creating the application's table and account");
    drop(conn);

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(Written::default()));
    let writing = tokio::spawn(writer(proxy.clone(), stop.clone(), written.clone()));
    let acked = || async { written.lock().await.acked.len() };
    wait_for(
        "writes through the proxy",
        Duration::from_secs(60),
        controller,
        || async { (acked().await >= 20).then_some(()) },
    )
    .await;

    // kill -9 of the primary's server, kept down until another member took over (a server
    // started again at once would be the primary back, before any failover).
    node.hold(&first, "mysql", true);
    let killed = Instant::now();
    assert!(
        node.signal(&first, "mysql", libc::SIGKILL),
        "the primary's server runs"
    );
    let second = wait_for(
        "a new primary",
        Duration::from_secs(60),
        controller,
        || async {
            let c = cluster(&admin).await;
            c.status?.primary.filter(|p| *p != first)
        },
    )
    .await;
    let write_after = wait_for(
        "a write through the proxy after the kill",
        Duration::from_secs(60),
        controller,
        || async {
            let w = written.lock().await;
            w.acked
                .iter()
                .find(|(_, at)| *at > killed)
                .map(|(_, at)| *at)
        },
    )
    .await;
    let failover = write_after - killed;
    node.hold(&first, "mysql", false);
    eprintln!(
        "e2e: {first} killed; {second} took over; first write through the proxy {failover:?} after the kill"
    );
    wait_for(
        "the killed member back, 3/3 ready",
        Duration::from_secs(120),
        controller,
        || async { settled(&cluster(&admin).await, 3) },
    )
    .await;

    // A switchover back to the first member, by name.
    let switched = Instant::now();
    let patch = serde_json::json!({"spec": {"switchover": {"id": "back", "primary": first}}});
    api.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("requesting a switchover");
    wait_for(
        "the switchover to the first member",
        Duration::from_secs(60),
        controller,
        || async {
            (cluster(&admin).await.status?.primary.as_deref() == Some(first.as_str())).then_some(())
        },
    )
    .await;
    let acked_before = acked().await;
    wait_for(
        "writes after the switchover",
        Duration::from_secs(30),
        controller,
        || async { (acked().await > acked_before + 20).then_some(()) },
    )
    .await;
    eprintln!("e2e: switched over to {first} in {:?}", switched.elapsed());

    // The proxy's other source, the topology ConfigMap it mounts, says the same.
    let proxy_pod = proxy_pod_name(&admin).await;
    let epoch = cluster(&admin).await.status.and_then(|s| s.topology_epoch);
    let mounted = wait_for(
        "the proxy's mounted topology to name the primary",
        Duration::from_secs(30),
        controller,
        || async {
            let text = node.volume_file(&proxy_pod, "topology", "topology.json")?;
            let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
            (doc["primary"]["name"] == first.as_str() && doc["epoch"].as_i64() == epoch)
                .then_some(doc)
        },
    )
    .await;
    eprintln!(
        "e2e: the proxy's mounted topology is at epoch {}",
        mounted["epoch"]
    );

    // A re-seed of a replica: its pod is replaced and its data copied again from a member.
    let replica = [1, 2]
        .map(|n| format!("{CLUSTER}-{n}"))
        .into_iter()
        .find(|m| *m != first)
        .expect("a replica");
    let reseeding = Instant::now();
    let patch = serde_json::json!({"spec": {"reseed": {"id": "again", "member": replica}}});
    api.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("requesting a re-seed");
    let record = wait_for(
        "the re-seed to end",
        Duration::from_secs(120),
        controller,
        || async {
            let record = cluster(&admin).await.status?.last_reseed?;
            (record.id == "again" && record.result != ReseedResult::InProgress).then_some(record)
        },
    )
    .await;
    assert_eq!(
        record.result,
        ReseedResult::Succeeded,
        "the re-seed: {}",
        record.message
    );
    wait_for(
        "3/3 ready after the re-seed",
        Duration::from_secs(60),
        controller,
        || async { settled(&cluster(&admin).await, 3) },
    )
    .await;
    eprintln!("e2e: {replica} re-seeded in {:?}", reseeding.elapsed());

    // A fourth member, seeded by the agent from a member.
    let patch = serde_json::json!({"spec": {"replicas": 4}});
    api.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("scaling up");
    let scaled = Instant::now();
    wait_for(
        "4/4 members ready",
        Duration::from_secs(180),
        controller,
        || async { settled(&cluster(&admin).await, 4) },
    )
    .await;
    eprintln!("e2e: scaled to 4 in {:?}", scaled.elapsed());

    // Declarative accounts: a database, an account with its password in a Secret, and its
    // privileges, made on the primary and given to the proxy.
    accounts(&admin, &node, &proxy, controller).await;

    // A changed serverConfig rolls the members: replicas first, each caught up before the
    // next, the primary last after handing its role over; no client error meanwhile.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    let uids =
        |list: Vec<Pod>| -> BTreeSet<String> { list.iter().filter_map(|p| p.uid()).collect() };
    let member_pods = ListParams::default().labels("app.kubernetes.io/component=mysql");
    let before_roll = uids(
        pods.list(&member_pods)
            .await
            .expect("the member pods")
            .items,
    );
    let primary_before = cluster(&admin).await.status.and_then(|s| s.primary);
    let rolled = Instant::now();
    let patch = serde_json::json!({"spec": {"serverConfig": {"max_connections": "321"}}});
    api.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("changing serverConfig");
    wait_for(
        "the roll to start",
        Duration::from_secs(30),
        controller,
        || async {
            let c = cluster(&admin).await;
            let rolling = c
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Rolling")?;
            (rolling.status == lagless_operator::crd::ConditionStatus::True).then_some(())
        },
    )
    .await;
    let done = wait_for(
        "every member rolled",
        Duration::from_secs(240),
        controller,
        || async {
            let c = cluster(&admin).await;
            let status = c.status?;
            let rolling = status.conditions.iter().find(|c| c.type_ == "Rolling")?;
            let ready = status.ready.as_deref() == Some("4/4");
            (rolling.status == lagless_operator::crd::ConditionStatus::False && ready)
                .then_some(status)
        },
    )
    .await;
    let roll_took = rolled.elapsed();
    // The order: replicas from the highest ordinal down, the primary last.
    let order = rolled_order(controller.controller);
    let primary_was = primary_before.clone().expect("a primary before the roll");
    let mut replicas: Vec<String> = (0..4)
        .map(|n| format!("{CLUSTER}-{n}"))
        .filter(|m| *m != primary_was)
        .collect();
    replicas.reverse();
    replicas.push(primary_was.clone());
    assert_eq!(order, replicas, "the members were rolled in this order");
    let after_roll = uids(
        pods.list(&member_pods)
            .await
            .expect("the member pods")
            .items,
    );
    assert!(
        before_roll.is_disjoint(&after_roll),
        "every member pod is replaced: before {before_roll:?}, after {after_roll:?}"
    );
    assert_ne!(
        done.primary, primary_before,
        "the primary handed its role over before its restart"
    );
    for member in (0..4).map(|n| format!("{CLUSTER}-{n}")) {
        let ip = node.pod_ip(&member).expect("the member's address");
        let mut conn = Conn::new(opts(&ip, &user, &password, None))
            .await
            .expect("the member answers");
        let max: Option<i64> = conn
            .query_first("SELECT @@max_connections")
            .await
            .expect("a variable");
        assert_eq!(max, Some(321), "{member} runs the new serverConfig");
    }
    let errors: Vec<String> = written
        .lock()
        .await
        .errors
        .iter()
        .filter(|(at, _)| *at > rolled)
        .map(|(_, e)| e.clone())
        .collect();
    assert!(
        errors.is_empty(),
        "client errors during the roll: {errors:?}"
    );
    eprintln!(
        "e2e: 4 members rolled in {roll_took:?}, primary {:?} -> {:?}, no client error",
        primary_before, done.primary
    );

    stop.store(true, Ordering::Relaxed);
    writing.await.expect("the writer");
    let written = written.lock().await;
    let acked: BTreeSet<i64> = written.acked.iter().map(|(id, _)| *id).collect();
    assert!(
        written.stale.is_empty(),
        "{} of {} strict reads through the proxy missed an acknowledged row: {:?}",
        written.stale.len(),
        written.reads,
        written.stale
    );

    // Every acknowledged write is on the primary, the re-seeded member and the new one.
    for member in [first.clone(), replica.clone(), format!("{CLUSTER}-3")] {
        let ip = node.pod_ip(&member).expect("the member's address");
        let have: BTreeSet<i64> = wait_for(
            &format!("{member} to have every acknowledged row"),
            Duration::from_secs(60),
            controller,
            || async {
                let mut conn = Conn::new(opts(&ip, &user, &password, None)).await.ok()?;
                let ids: Vec<i64> = conn.query("SELECT id FROM shop.t").await.ok()?;
                let ids: BTreeSet<i64> = ids.into_iter().collect();
                ids.is_superset(&acked).then_some(ids)
            },
        )
        .await;
        assert!(
            have.len() >= acked.len(),
            "{member}: {} rows, {} acknowledged",
            have.len(),
            acked.len()
        );
    }
    assert!(
        acked.len() > 60,
        "only {} writes were acknowledged",
        acked.len()
    );
    assert!(
        failover < Duration::from_secs(30),
        "writes through the proxy resumed only {failover:?} after the primary was killed"
    );
    eprintln!(
        "e2e: {} acknowledged writes, none lost; {} strict reads, none stale",
        acked.len(),
        written.reads
    );
}
