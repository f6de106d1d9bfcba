//! lagless-operator: drives a MySQL/MariaDB replication cluster described by a `MySQLCluster`
//! resource, either in Kubernetes or as local `mariadbd` processes.
//!
//! - [`orchestrate`]: the engine-agnostic core (observe -> plan -> act).
//! - [`local`]: `lagless-operator local`, the whole system as processes on one machine.
//! - [`crd`] and [`kube`]: the `MySQLCluster` resource, the objects built from it and the
//!   Kubernetes controller (see `docs/kubernetes.md`).

pub mod agent;
pub mod crd;
pub mod kube;
pub mod local;
pub mod orchestrate;

/// The version reported by `--version` and in logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
