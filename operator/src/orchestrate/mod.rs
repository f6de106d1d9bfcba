//! The engine-agnostic cluster logic: observe -> plan -> act.
//!
//! - [`view`]: what was observed ([`ClusterView`]), what the user wants ([`ClusterSpec`]) and
//!   what the operator remembers between ticks ([`History`], time included as plain
//!   milliseconds).
//! - [`plan`](mod@plan): the decision, a pure function of those three. It reads no clock and
//!   runs no SQL, so every decision — failover, switchover, quarantine, bootstrap, scale-down —
//!   is unit- and property-tested without servers.
//! - [`observe`]: one bounded round of SQL per member (a hung server is `Hung`, not waited on).
//! - [`act`]: the actions as SQL, and publishing topologies ([`act::TopologySink`]).
//! - [`seed`]: copying a donor's data into a member, which the platform does for
//!   [`Action::Seed`] through an [`act::Seeder`].
//! - [`roll`]: which member a configuration change restarts next, and when.
//! - [`run`]: the loop that ties them together, one [`run::Orchestrator::tick`] at a time.
//!
//! The shape follows MOCO's `clustering/status.go` (classify into a small state enum, then one
//! operation per state) and goes further: deciding errant members needs no database call,
//! because the view carries each member's executed and retrieved GTID sets.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod act;
pub mod fence;
pub mod observe;
pub mod plan;
pub mod redact;
pub mod roll;
pub mod run;
pub mod seed;
pub mod view;

pub use plan::{Action, Cause, ClusterState, Event, Plan, Rollback, plan};
pub use view::{
    ClusterSpec, ClusterView, History, MemberSpec, MemberView, Probe, Promotion, ReplicationError,
    SemiSync, SemiSyncState, Switchover, SwitchoverTarget,
};
