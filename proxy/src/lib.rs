//! lagless-proxy: a MySQL wire-protocol proxy that sends writes to the primary and reads to
//! replicas that have applied everything the read must see.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod backend;
pub mod cli;
pub mod config;
pub mod digest;
pub use lagless_core::gtid;
pub mod limits;
pub mod loop_id;
pub mod metrics;
pub mod protocol;
pub mod route;
pub mod server;
pub mod session;
pub mod tenant;
pub use lagless_serve::tls;
pub mod topology;
pub mod users;

/// The version reported by `--version` and in logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
