//! The tenant directory of a Lagless tenant pool.
//!
//! A pool is many small replication clusters plus one small global cluster. Each tenant's
//! database (`t_<id>` by default) lives on exactly one tenant cluster; the global cluster holds
//! the directory (database [`schema::DATABASE`]) that says which, and every database that
//! belongs to no tenant.
//!
//! - [`naming`]: tenant ids and how a tenant's database is named.
//! - [`route`]: a tenant's route (cluster, version, state) and the change log entries.
//! - [`placement`]: where a new tenant goes and when the pool needs another cluster (pure).
//! - [`schema`]: the directory's tables.
//! - [`document`]: the pool document the operator writes and proxies read.
//! - [`client`]: [`Directory`], reading and changing the directory over SQL.
//!
//! Every change of a tenant's route writes a row of the change log in the same transaction,
//! and those rows commit in `seq` order, so a proxy that follows the log by `seq` misses none.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod access;
pub mod client;
pub mod document;
pub mod error;
pub mod feed;
pub mod naming;
pub mod placement;
pub mod route;
pub mod schema;

pub use client::{Directory, Reserved};
pub use document::{DocumentError, PoolCluster, PoolDocument, TenantSource};
pub use error::DirectoryError;
pub use feed::ChangeFeed;
pub use naming::{InvalidTenant, NamingError, TenantId, TenantNaming};
pub use placement::{ClusterLoad, ClusterState};
pub use route::{Change, Route, TenantState};
