//! The Kubernetes platform: the objects the reconciler applies for a `MySQLCluster`.
//!
//! [`builders`] holds pure functions from a `MySQLCluster` (with `metadata.name`,
//! `metadata.namespace` and `metadata.uid` set) to the objects the reconciler server-side
//! applies: the StatefulSet of database servers and its configuration, the Services, the proxy
//! Deployment, the topology ConfigMap, the PodDisruptionBudget and generated credential Secrets.
//! They make no API calls and no randomness: everything they need comes from their arguments.
//!
//! Inside this module, `::kube` names the kube-rs crate; `crate::kube` names this module.

pub mod builders;

pub use builders::*;
