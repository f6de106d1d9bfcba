//! lagless-operator: drives a MySQL/MariaDB replication cluster described by a `MySQLCluster`
//! resource, either in Kubernetes or as local `mariadbd` processes.
//!
//! - [`orchestrate`]: the engine-agnostic core (observe -> plan -> act).
//! - [`local`]: `lagless-operator local`, the whole system as processes on one machine.
//! - [`crd`] and [`kube`]: the `MySQLCluster` resource, the objects built from it and the
//!   Kubernetes controller (see `docs/kubernetes.md`).
//! - [`kubectl`]: `kubectl lagless`, the plugin built from this binary.
//! - [`pool`]: what both runtimes do to keep a tenant pool (its document, load, growth).
//! - [`tenant_cli`]: `lagless-operator tenant`, creating and finding a local tenant pool's
//!   tenants.

pub mod agent;
pub mod backup;
pub mod clock;
pub mod crd;
pub mod kube;
pub mod kubectl;
pub mod local;
pub mod orchestrate;
pub mod pool;
pub mod tenant_cli;
pub mod tls;

/// The runtime of every long-running subcommand: multi-threaded, two workers (the work is I/O,
/// and the machines small).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// The version reported by `--version` and in logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
