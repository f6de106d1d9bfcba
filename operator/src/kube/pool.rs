//! The Kubernetes controller of `MySQLTenantPool`s: what the local runtime's pool supervisor
//! does, with Kubernetes objects. The pool's clusters are ordinary `MySQLCluster`s, run by the
//! `MySQLCluster` controller; this one keeps what belongs to the pool.
//!
//! - [`decide`]: pure decisions (how many clusters, which join the directory, what a change
//!   of a pool's cluster means).
//! - [`status`]: pure mapping from what the pool's loop saw to the pool's status.
//! - [`operate`]: the per-pool loop: the directory, registrations, loads, growth.
//! - [`rebalance`]: `spec.rebalance`: moves planned as `MySQLTenantMove`s.
//! - [`reconcile`]: one reconciliation of a pool (validate, finalizer, apply, status).

pub mod decide;
pub mod operate;
pub mod rebalance;
pub mod reconcile;
pub mod status;
