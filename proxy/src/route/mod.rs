//! Statement classification and routing decisions.

pub mod classify;
pub use lagless_core::consistency;

pub use classify::{
    Classification, ConsistencyHint, Effects, Kill, KillStatement, LaglessCommand, RouteHint,
    SchemaRefs, SessionSet, SqlMode, Target, Victim, classify, classify_with, schema_refs,
    schema_refs_where, split_statements, split_statements_with,
};
pub use consistency::{ConsistencyMode, DEFAULT_BOUND_MS, ParseConsistencyError};
