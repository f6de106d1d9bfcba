//! Real MariaDB replication clusters for Lagless tests.
//!
//! [`Cluster::builder`] starts N `mariadbd` processes on free loopback ports in a temporary
//! directory: one primary and N-1 replicas on GTID replication. The first cluster of a test
//! process builds (or reuses) a template data directory with `mariadb-install-db`; every member is
//! a copy of it, so later clusters start in about a second.
//!
//! Every process is ended by its PID when the [`Cluster`] drops, also when a test panics, and
//! the processes are spawned with `PR_SET_PDEATHSIG` so they die with the test process even when
//! it is killed. Directories left by a killed test process are removed by the next run.

mod binaries;
mod cluster;
mod config;
mod error;
mod ports;
mod process;
mod sql;
mod template;

pub use binaries::Binaries;
pub use cluster::{Cluster, ClusterBuilder, Member, Placement, Positions, Role};
pub use error::KitError;
pub use process::alive as process_alive;
pub use sql::{conn_opts, connect, connect_to};

/// The application user: ordinary privileges, no `SUPER`, no `READ_ONLY ADMIN`, so a write that
/// reaches a read-only replica fails with error 1290.
pub const APP_USER: &str = "app";
/// Password of [`APP_USER`].
pub const APP_PASSWORD: &str = "app-pass";
/// A second application user that authenticates with MariaDB's `client_ed25519` plugin.
pub const ED25519_USER: &str = "app_ed";
/// Password of [`ED25519_USER`].
pub const ED25519_PASSWORD: &str = "ed-pass";
/// The user replicas connect to their source with.
pub const REPL_USER: &str = "repl";
/// Password of [`REPL_USER`].
pub const REPL_PASSWORD: &str = "repl-pass";
/// The operator's user: all privileges, including `READ_ONLY ADMIN`.
pub const ADMIN_USER: &str = "lagless_admin";
/// Password of [`ADMIN_USER`].
pub const ADMIN_PASSWORD: &str = "admin-pass";
/// The database the application user owns in every cluster.
pub const APP_DATABASE: &str = "app";
