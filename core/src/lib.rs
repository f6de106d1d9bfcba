//! The contract between the Lagless operator and its proxies, with nothing but serde beneath
//! it: the topology document the operator publishes and every proxy follows, GTID sets (the
//! replication positions both compare), the consistency modes a read may ask for, and the
//! bearer token the operator's calls carry.
//!
//! The operator and the proxy both depend on this crate; neither depends on the other.

pub mod bearer;
pub mod consistency;
pub mod gtid;
pub mod topology;

pub use consistency::{ConsistencyMode, DEFAULT_BOUND_MS, ParseConsistencyError};
