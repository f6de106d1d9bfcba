//! Backend servers: connections, pools and health.

pub mod conn;
pub mod health;
pub mod monitor;
pub mod pool;
pub mod positions;
pub mod tls;

pub use conn::{BackendConn, BackendError, ConnectParams, RelayedLogin};
pub use health::Health;
pub use pool::{AcquireError, Pool, PoolConfig, PooledConn};
