//! What both runtimes do to keep a tenant pool, whoever runs its clusters: the pool document
//! the proxies follow, measuring a tenant cluster's load on its primary, and when the pool
//! gets another cluster. The local runtime's pool supervisor (`local::pool`) and the
//! Kubernetes controller (`kube::pool`) differ only in where they find primaries and
//! credentials and how a new cluster is started.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod document;
pub mod growth;
pub mod load;
pub mod moves;
pub mod rebalancing;
