//! Statement classification and routing decisions.

pub mod classify;
pub mod consistency;

pub use classify::{
    Classification, ConsistencyHint, Effects, LaglessCommand, RouteHint, SessionSet, SqlMode,
    Target, classify, classify_with, split_statements,
};
pub use consistency::{ConsistencyMode, DEFAULT_BOUND_MS, ParseConsistencyError};
