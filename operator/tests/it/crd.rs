//! The generated CRDs in `crds/` match the Rust types, and the examples are valid resources.

use std::path::PathBuf;
use std::process::Command;

use kube::CustomResourceExt;
use lagless_operator::crd::tenant_pool::{self, MySQLTenantPool};
use lagless_operator::crd::{self, Flavor, MySQLCluster, ServiceType};

const REGENERATE: &str = "cargo run -q -p lagless-operator -- crd > crds/mysqlcluster.yaml";
const REGENERATE_POOL: &str = "cargo run -q -p lagless-operator -- crd --kind MySQLTenantPool > \
     crds/mysqltenantpool.yaml";

fn repo_file(path: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    (path, text)
}

/// Fails, saying where and how to regenerate, when the file at `path` is not `generated`.
fn assert_up_to_date(path: &str, generated: &str, source: &str, regenerate: &str) {
    let (path, on_disk) = repo_file(path);
    if on_disk != generated {
        let line = on_disk
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one file is a prefix of the other".to_string(),
                |i| {
                    format!(
                        "first difference at line {}:\n  file:      {}\n  generated: {}",
                        i + 1,
                        on_disk.lines().nth(i).unwrap_or_default(),
                        generated.lines().nth(i).unwrap_or_default()
                    )
                },
            );
        panic!(
            "{} is out of date with {source} ({line}).\nRegenerate it from the workspace root \
             with:\n  {regenerate}",
            path.display()
        );
    }
}

#[test]
fn crd_file_matches_the_rust_types() {
    assert_up_to_date(
        "crds/mysqlcluster.yaml",
        &crd::crd_yaml(),
        "operator/src/crd.rs",
        REGENERATE,
    );
}

#[test]
fn tenant_pool_crd_file_matches_the_rust_types() {
    assert_up_to_date(
        "crds/mysqltenantpool.yaml",
        &crd::tenant_pool_crd_yaml(),
        "operator/src/crd/tenant_pool.rs",
        REGENERATE_POOL,
    );
}

#[test]
fn accounts_crd_file_matches_the_rust_types() {
    assert_up_to_date(
        "crds/mysqlaccounts.yaml",
        &crd::accounts_crds_yaml(),
        "operator/src/crd/accounts.rs",
        "cargo run -q -p lagless-operator -- crd --kind accounts > crds/mysqlaccounts.yaml",
    );
}

#[test]
fn backup_crd_file_matches_the_rust_types() {
    assert_up_to_date(
        "crds/mysqlbackup.yaml",
        &crd::backup_crd_yaml(),
        "operator/src/crd/backup.rs",
        "cargo run -q -p lagless-operator -- crd --kind MySQLBackup > crds/mysqlbackup.yaml",
    );
}

#[test]
fn tenant_move_crd_file_matches_the_rust_types() {
    assert_up_to_date(
        "crds/mysqltenantmove.yaml",
        &crd::tenant_move_crd_yaml(),
        "operator/src/crd/tenant_move.rs",
        "cargo run -q -p lagless-operator -- crd --kind MySQLTenantMove > crds/mysqltenantmove.yaml",
    );
}

#[test]
fn crd_yaml_reads_back_as_the_crd() {
    for (file, crd) in [
        ("crds/mysqlcluster.yaml", MySQLCluster::crd()),
        ("crds/mysqltenantpool.yaml", MySQLTenantPool::crd()),
    ] {
        let (_, text) = repo_file(file);
        let parsed: serde_json::Value =
            serde_saphyr::from_str(&text).expect("the CRD file is YAML");
        let expected = serde_json::to_value(crd).expect("the CRD serializes");
        assert_eq!(parsed, expected, "{file}");
    }
}

#[test]
fn crd_subcommand_prints_the_crds() {
    let crd_of = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lagless-operator"))
            .arg("crd")
            .args(args)
            .output()
            .expect("the operator binary runs");
        assert!(out.status.success(), "crd {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(crd_of(&[]), crd::crd_yaml());
    assert_eq!(crd_of(&["--kind", "MySQLCluster"]), crd::crd_yaml());
    assert_eq!(
        crd_of(&["--kind", "MySQLTenantPool"]),
        crd::tenant_pool_crd_yaml()
    );
    assert_eq!(crd_of(&["--kind", "accounts"]), crd::accounts_crds_yaml());
    assert_eq!(crd_of(&["--kind", "MySQLBackup"]), crd::backup_crd_yaml());
    assert_eq!(
        crd_of(&["--kind", "MySQLTenantMove"]),
        crd::tenant_move_crd_yaml()
    );
    // All seven, for `kubectl apply -f -`.
    let all = crd_of(&["--kind", "all"]);
    let documents: Vec<&str> = all.split("\n---\n").collect();
    assert_eq!(documents.len(), 7, "{all}");
    assert!(all.starts_with(&crd::crd_yaml()));
    assert!(all.contains(&crd::tenant_pool_crd_yaml()));
    assert!(all.contains(&crd::accounts_crds_yaml()));
    assert!(all.contains(&crd::backup_crd_yaml()));
    assert!(all.ends_with(&crd::tenant_move_crd_yaml()));
}

#[test]
fn example_cluster_is_valid() {
    let (_, text) = repo_file("examples/mysqlcluster.yaml");
    let cluster: MySQLCluster = serde_saphyr::from_str(&text).expect("the example parses");
    assert_eq!(cluster.metadata.name.as_deref(), Some("shop"));
    if let Err(errors) = cluster.validate() {
        panic!("examples/mysqlcluster.yaml: {errors}");
    }
    let spec = &cluster.spec;
    assert_eq!(spec.replicas, 3);
    assert_eq!(spec.flavor, Flavor::Mariadb);
    assert_eq!(spec.replication.semi_sync, Some(true));
    assert_eq!(spec.proxy.replicas, 2);
    assert_eq!(spec.proxy.service_type, ServiceType::ClusterIP);

    let members = (0..3)
        .map(|i| (format!("shop-{i}"), format!("shop-{i}.shop"), 3306))
        .collect();
    let core = spec.to_cluster_spec("shop", members);
    assert_eq!(core.members.len(), 3);
    assert_eq!(
        core.member("shop-2").map(|m| m.promotion_priority),
        Some(-10)
    );
    assert_eq!(core.semi_sync.map(|s| s.acks), Some(1));
    assert_eq!(
        core.consistency,
        Some(lagless_core::ConsistencyMode::Strict)
    );
}

#[test]
fn an_invalid_cluster_names_its_fields() {
    let cluster: MySQLCluster = serde_saphyr::from_str(
        "apiVersion: lagless.dev/v1alpha1
kind: MySQLCluster
metadata: {name: shop}
spec:
  replicas: 2
  replication: {semiSync: true, semiSyncAcks: 2}
  switchover: {id: s1, primary: shop-5}
",
    )
    .expect("parses");
    let errors = cluster.validate().expect_err("invalid");
    assert!(errors.mentions("spec.replication.semiSyncAcks"), "{errors}");
    assert!(errors.mentions("spec.switchover.primary"), "{errors}");
}

#[test]
fn example_tenant_pool_is_valid() {
    let (_, text) = repo_file("examples/tenantpool.yaml");
    let pool: MySQLTenantPool = serde_saphyr::from_str(&text).expect("the example parses");
    assert_eq!(pool.metadata.name.as_deref(), Some("demo"));
    if let Err(errors) = pool.validate() {
        panic!("examples/tenantpool.yaml: {errors}");
    }
    let clusters = tenant_pool::clusters(&pool);
    let names: Vec<&str> = clusters
        .iter()
        .map(|c| c.metadata.name.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(names, ["demo-directory", "demo-c0", "demo-c1", "demo-c2"]);
    assert_eq!(clusters[0].spec.replicas, 1);
    for cluster in &clusters[1..] {
        assert_eq!(cluster.spec.replicas, 2);
        if let Err(errors) = cluster.validate() {
            panic!("{names:?}: {errors}");
        }
    }
    let domains: Vec<Option<i64>> = clusters.iter().map(|c| c.spec.gtid_domain_id).collect();
    assert_eq!(domains, [Some(100), Some(101), Some(102), Some(103)]);
    assert_eq!(pool.spec.capacity_bytes(), 100 << 30);
}

#[test]
fn an_invalid_tenant_pool_names_its_fields() {
    let pool: MySQLTenantPool = serde_saphyr::from_str(
        "apiVersion: lagless.dev/v1alpha1
kind: MySQLTenantPool
metadata: {name: demo}
spec:
  clusterTemplate: {replicas: 5}
  clusters: {min: 2, max: 3}
  gtidDomainIdBase: 100
  directory: {gtidDomainId: 102}
  placement: {growThreshold: 2}
",
    )
    .expect("parses");
    let errors = pool.validate().expect_err("invalid");
    for field in [
        "spec.clusterTemplate.replicas",
        "spec.directory.gtidDomainId",
        "spec.placement.growThreshold",
    ] {
        assert!(errors.mentions(field), "{field}: {errors}");
    }
}
