//! Moving a tenant between clusters while it is written: a snapshot from the source loaded
//! on the target, a replication channel filtered to the tenant's database until the target is
//! close, then a short freeze in the directory, a fence on the source (its tables renamed
//! away), the target caught up to the fence and verified by checksums, the directory flipped,
//! and the channel and the source's copy removed. See docs/tenants.md.

pub mod measure;
pub mod pace;
pub mod plan;
pub mod rebalance;
pub mod run;
pub mod snapshot;
pub mod sql;
pub mod steps;
pub mod verify;

pub use plan::{DEFAULT_COPY_RATE, MoveLimits, MoveRecord, Phase};
pub use run::{SaveRecord, run_move};
pub use sql::Endpoint;
pub use steps::MoveContext;
