//! lagless-operator: drives a MySQL/MariaDB replication cluster described by a `MySQLCluster`
//! resource, either in Kubernetes or as local `mariadbd` processes.
//!
//! The orchestration core, the Kubernetes reconciler and the local runtime are being built; see
//! `docs/architecture.md` for what exists today.

pub mod crd;
pub mod kube;
pub mod orchestrate;

/// The version reported by `--version` and in logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
