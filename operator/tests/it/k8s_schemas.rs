//! Every object the operator builds, and the CRD itself, pass the Kubernetes API schemas
//! (PyPI `kubernetes-validate`, strict: unknown fields are errors). No cluster is needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use lagless_core::topology::{Flavor as TopologyFlavor, Member, Topology, TopologyState};
use lagless_operator::crd::tenant_pool::MySQLTenantPool;
use lagless_operator::crd::{Flavor, MySQLCluster, ServiceType};
use lagless_operator::kube::builders::tenant_pool::{
    pool_ca_secret, pool_client_service, pool_clusters, pool_configmap, pool_credentials_secrets,
    pool_issued_secret, pool_pod_disruption_budget, pool_proxy_deployment,
    pool_proxy_network_policy, pool_tls_names,
};
use lagless_operator::kube::{
    DEFAULT_OPERATOR_IMAGE, DEFAULT_PROXY_IMAGE, client_service, credentials_secrets,
    headless_service, member_host, network_policy, pod_disruption_budget, proxy_deployment,
    proxy_network_policy, proxy_pod_disruption_budget, server_configmap, statefulset,
    topology_configmap,
};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn example() -> MySQLCluster {
    let text = std::fs::read_to_string(repo("examples/mysqlcluster.yaml")).unwrap();
    let mut cluster: MySQLCluster = serde_saphyr::from_str(&text).unwrap();
    cluster.metadata.uid = Some("6c6f7665-6c61-676c-6573-730000000001".into());
    cluster
}

fn topology(cluster: &MySQLCluster) -> Topology {
    let name = cluster.metadata.name.clone().unwrap();
    let ns = cluster.metadata.namespace.clone().unwrap();
    let member = |i: u32| Member::new(format!("{name}-{i}"), member_host(&name, &ns, i), 3306);
    Topology {
        cluster: name.clone(),
        flavor: TopologyFlavor::Mariadb,
        epoch: 1,
        state: TopologyState::Ready,
        primary: Some(member(0)),
        replicas: (1..cluster.spec.replicas as u32).map(member).collect(),
        consistency: Some(lagless_core::ConsistencyMode::Strict),
        read_only: false,
    }
}

/// Every object built for `cluster`, as JSON.
fn built(cluster: &MySQLCluster) -> Vec<(String, serde_json::Value)> {
    let to = |name: &str, v: serde_json::Value| (name.to_string(), v);
    let json = |r: Result<serde_json::Value, serde_json::Error>| r.unwrap();
    let generated: BTreeMap<String, String> = [
        ("admin", "a-secret"),
        ("replication", "r-secret"),
        ("agent", "t-secret"),
        ("lookup", "l-secret"),
        ("monitor", "m-secret"),
        ("proxy-admin", "p-secret"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    let mut out = vec![
        to(
            "statefulset",
            json(serde_json::to_value(
                statefulset(cluster, DEFAULT_OPERATOR_IMAGE).unwrap(),
            )),
        ),
        to(
            "server-config",
            json(serde_json::to_value(server_configmap(cluster).unwrap())),
        ),
        to(
            "headless-service",
            json(serde_json::to_value(headless_service(cluster).unwrap())),
        ),
        to(
            "client-service",
            json(serde_json::to_value(client_service(cluster).unwrap())),
        ),
        to(
            "proxy-deployment",
            json(serde_json::to_value(
                proxy_deployment(cluster, DEFAULT_PROXY_IMAGE).unwrap(),
            )),
        ),
        to(
            "topology",
            json(serde_json::to_value(
                topology_configmap(cluster, &topology(cluster)).unwrap(),
            )),
        ),
        to(
            "pdb",
            json(serde_json::to_value(
                pod_disruption_budget(cluster).unwrap(),
            )),
        ),
        to(
            "proxy-pdb",
            json(serde_json::to_value(
                proxy_pod_disruption_budget(cluster).unwrap(),
            )),
        ),
        to(
            "network-policy",
            json(serde_json::to_value(
                network_policy(cluster, "lagless-system").unwrap(),
            )),
        ),
        to(
            "proxy-network-policy",
            json(serde_json::to_value(
                proxy_network_policy(cluster, "lagless-system").unwrap(),
            )),
        ),
    ];
    for (i, s) in credentials_secrets(cluster, &generated)
        .unwrap()
        .into_iter()
        .enumerate()
    {
        out.push(to(&format!("secret-{i}"), json(serde_json::to_value(s))));
    }
    out
}

fn tenant_pool_example() -> MySQLTenantPool {
    let text = std::fs::read_to_string(repo("examples/tenantpool.yaml")).unwrap();
    let mut pool: MySQLTenantPool = serde_saphyr::from_str(&text).unwrap();
    pool.metadata.uid = Some("6c6f7665-6c61-676c-6573-730000000002".into());
    pool
}

/// Every object built for `pool` with `count` tenant clusters, as JSON: the pool's own, and
/// those of its directory cluster and first tenant cluster as the cluster controller builds
/// them (the `MySQLCluster`s themselves are custom resources, checked against the CRD by
/// their own `validate`).
fn built_pool(pool: &MySQLTenantPool, count: u32) -> Vec<(String, serde_json::Value)> {
    let value = |v: serde_json::Result<serde_json::Value>| v.unwrap();
    let mut out = vec![
        (
            "pool-document".to_string(),
            value(serde_json::to_value(pool_configmap(pool, count).unwrap())),
        ),
        (
            "pool-proxy-deployment".to_string(),
            value(serde_json::to_value(
                pool_proxy_deployment(pool, DEFAULT_PROXY_IMAGE).unwrap(),
            )),
        ),
        (
            "pool-service".to_string(),
            value(serde_json::to_value(pool_client_service(pool).unwrap())),
        ),
        (
            "pool-pdb".to_string(),
            value(serde_json::to_value(
                pool_pod_disruption_budget(pool).unwrap(),
            )),
        ),
        (
            "pool-network-policy".to_string(),
            value(serde_json::to_value(
                pool_proxy_network_policy(pool, "lagless-system").unwrap(),
            )),
        ),
    ];
    let generated: BTreeMap<String, String> = ["admin", "replication", "lookup", "monitor"]
        .map(|k| (k.to_string(), format!("{k}-secret")))
        .into();
    for (i, secret) in pool_credentials_secrets(pool, &generated)
        .unwrap()
        .into_iter()
        .enumerate()
    {
        out.push((
            format!("pool-secret-{i}"),
            value(serde_json::to_value(secret)),
        ));
    }
    if pool.spec.cluster_template.tls.is_some() {
        let now = std::time::SystemTime::now();
        let authority = lagless_operator::tls::authority::Authority::create("demo", now).unwrap();
        let names = pool_tls_names(pool).unwrap();
        let issued = authority.issue(&names, now).unwrap();
        out.push((
            "pool-ca".to_string(),
            value(serde_json::to_value(
                pool_ca_secret(pool, &authority).unwrap(),
            )),
        ));
        out.push((
            "pool-certificate".to_string(),
            value(serde_json::to_value(
                pool_issued_secret(pool, &authority, &issued, &names).unwrap(),
            )),
        ));
    }
    let clusters = pool_clusters(pool, count).unwrap();
    assert_eq!(clusters.len() as u32, count + 1);
    for (i, mut cluster) in clusters.into_iter().take(2).enumerate() {
        assert_eq!(cluster.validate(), Ok(()));
        cluster.metadata.uid = Some(format!("6c6f7665-6c61-676c-6573-73000000010{i}"));
        let name = cluster.metadata.name.clone().unwrap();
        for (object, json) in built(&cluster) {
            out.push((format!("{name}-{object}"), json));
        }
    }
    out
}

/// `python3 -m kubernetes_validate --strict --quiet` (the module, so no console-script shim is
/// needed on PATH).
fn kubernetes_validate() -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "kubernetes_validate", "--strict", "--quiet"]);
    cmd
}

fn validate(files: &[PathBuf]) {
    let out = kubernetes_validate()
        .args(files)
        .output()
        .expect("kubernetes-validate is needed: python3 -m pip install kubernetes-validate (scripts/setup.sh does)");
    assert!(
        out.status.success(),
        "kubernetes-validate refused:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn built_objects_and_the_crd_pass_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let mut variant = example();
    variant.spec.flavor = Flavor::Mysql;
    variant.spec.image = None;
    variant.spec.replicas = 5;
    variant.spec.proxy.service_type = ServiceType::LoadBalancer;
    variant.spec.credentials = Default::default();
    let mut files = vec![
        repo("crds/mysqlcluster.yaml"),
        repo("crds/mysqltenantpool.yaml"),
        repo("crds/mysqlaccounts.yaml"),
    ];
    for (label, cluster) in [("example", example()), ("variant", variant)] {
        let objects = built(&cluster);
        assert!(objects.len() >= 10);
        files.extend(write_objects(dir.path(), label, objects));
    }
    validate(&files);
}

/// Writes each object as `<label>-<name>.json` in `dir`, for the validator; their paths.
fn write_objects(
    dir: &Path,
    label: &str,
    objects: Vec<(String, serde_json::Value)>,
) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (name, value) in objects {
        assert!(
            value["apiVersion"].is_string() && value["kind"].is_string(),
            "{name}"
        );
        let path = dir.join(format!("{label}-{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
        files.push(path);
    }
    files
}

#[test]
fn tenant_pool_objects_pass_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let mut variant = tenant_pool_example();
    variant.spec.proxy.service_type = ServiceType::LoadBalancer;
    variant.spec.cluster_template.tls = Some(Default::default());
    variant.spec.cluster_template.credentials.admin_secret_name = Some("demo-root".into());
    variant.spec.clusters.max = 100;
    let mut files = Vec::new();
    for (label, pool, count) in [
        ("example", tenant_pool_example(), 3),
        ("variant", variant, 100),
    ] {
        let objects = built_pool(&pool, count);
        assert!(objects.len() >= 20, "{label}: {}", objects.len());
        files.extend(write_objects(dir.path(), label, objects));
    }
    validate(&files);
}

#[test]
fn the_validator_does_refuse_a_broken_object() {
    // An unknown field and a wrong type: the check above is only worth something if this fails.
    let dir = tempfile::tempdir().unwrap();
    let mut value = serde_json::to_value(headless_service(&example()).unwrap()).unwrap();
    value["spec"]["notAField"] = serde_json::json!(1);
    value["spec"]["ports"][0]["port"] = serde_json::json!("not a number");
    let path = dir.path().join("broken.json");
    std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
    let out = kubernetes_validate()
        .arg(&path)
        .output()
        .expect("kubernetes-validate is needed");
    assert!(!out.status.success(), "a broken Service passed");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("did not validate"),
        "the validator did not run: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
