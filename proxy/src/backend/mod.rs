//! Backend servers: connections, pools, health, positions, and the choice among them.

pub mod account;
mod backends;
pub mod conn;
pub mod health;
pub mod monitor;
pub mod pool;
pub mod positions;
pub mod select;
pub mod stmt_cache;
pub mod tls;

pub use backends::{Backends, BackendsConfig, Identity};
pub use conn::{BackendConn, BackendError, ConnectParams, RelayedLogin};
pub use health::Health;
pub use pool::{AcquireError, Pool, PoolConfig, PooledConn};
