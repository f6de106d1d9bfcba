//! The Kubernetes platform: the objects the operator applies for a `MySQLCluster` or a
//! `MySQLTenantPool`, and the controllers that apply them.
//!
//! - [`builders`]: pure functions from a `MySQLCluster` (with `metadata.name`,
//!   `metadata.namespace` and `metadata.uid` set) to the objects the reconciler server-side
//!   applies: the StatefulSet of database servers and its configuration, the Services, the
//!   proxy Deployment, the topology ConfigMap, the PodDisruptionBudget, the NetworkPolicy and
//!   generated credential Secrets (with the seeding agents' token). They make no API calls and no randomness.
//! - [`reconcile`]: one reconciliation of a `MySQLCluster` (validate, finalizer, apply, status).
//! - [`pool`]: the controller of `MySQLTenantPool`s: their clusters, pool document and
//!   proxies, and the per-pool loop (directory, loads, growth).
//! - [`status`]: pure functions from what the operator knows to the status it reports and the
//!   Kubernetes Events it records.
//! - [`orchestration`]: the per-cluster task that runs the orchestrator against the members
//!   and publishes topologies into the topology ConfigMap.
//! - [`reseed`]: `spec.reseed` requests: a member's data marked, its pod replaced, and its
//!   quarantine lifted once the new pod copies a donor's data.
//! - [`backups`]: `spec.backup` and `MySQLBackup`s: backups, drills and the archive, run by
//!   each cluster's backup pod and followed by its orchestration task.
//! - [`lease`]: leader election through a `coordination.k8s.io` Lease.
//! - [`metrics`]: Prometheus metrics, `/healthz` and `/readyz`.
//! - [`common`]: what the reconciler and the orchestration tasks share (field manager,
//!   cluster keys, recording Events).
//! - [`apis`]: the API versions the controller needs, checked by discovery at start-up.
//! - [`controller`]: `lagless-operator controller`, tying them together.
//!
//! Inside this module, `::kube` names the kube-rs crate; `crate::kube` names this module.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod apis;
pub mod backups;
pub mod builders;
pub mod common;
pub mod controller;
pub mod lease;
pub mod metrics;
#[cfg(test)]
mod mock;
pub mod orchestration;
pub mod pool;
pub mod push;
pub mod reconcile;
pub mod reseed;
pub mod roll;
pub mod status;
pub mod tasks;
pub mod tenant_move;

pub use builders::*;
