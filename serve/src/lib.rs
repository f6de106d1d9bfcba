//! What every long-running Lagless program shares (the proxy, the controller, the local
//! runtime's supervisor, the seeding agent): knowing when to stop, and serving TLS from
//! certificate files that are renewed in place.

pub mod signals;
pub mod tls;

pub use signals::{terminated, until_terminated};
