//! The generated CRD in `crds/` matches the Rust types, and the examples are valid clusters.

use std::path::PathBuf;
use std::process::Command;

use kube::CustomResourceExt;
use lagless_operator::crd::{self, Flavor, MySQLCluster, ServiceType};

const REGENERATE: &str = "cargo run -q -p lagless-operator -- crd > crds/mysqlcluster.yaml";

fn repo_file(path: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    (path, text)
}

#[test]
fn crd_file_matches_the_rust_types() {
    let (path, on_disk) = repo_file("crds/mysqlcluster.yaml");
    let generated = crd::crd_yaml();
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
            "{} is out of date with operator/src/crd.rs ({line}).\nRegenerate it from the \
             workspace root with:\n  {REGENERATE}",
            path.display()
        );
    }
}

#[test]
fn crd_yaml_reads_back_as_the_crd() {
    let (_, text) = repo_file("crds/mysqlcluster.yaml");
    let parsed: serde_json::Value = serde_saphyr::from_str(&text).expect("the CRD file is YAML");
    let expected = serde_json::to_value(MySQLCluster::crd()).expect("the CRD serializes");
    assert_eq!(parsed, expected);
}

#[test]
fn crd_subcommand_prints_the_crd() {
    let out = Command::new(env!("CARGO_BIN_EXE_lagless-operator"))
        .arg("crd")
        .output()
        .expect("the operator binary runs");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), crd::crd_yaml());
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
