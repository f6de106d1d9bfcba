//! Where a tenant lives, and the change log entries that tell proxies it changed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::naming::TenantId;

/// A tenant's life cycle, as the directory's `state` column holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantState {
    /// Reserved on a cluster; its database may not exist yet.
    Creating,
    /// Serving on its cluster.
    Active,
    /// Writes held while a move cuts over.
    Frozen,
    /// Being copied to another cluster; still served where it is.
    Moving,
    /// Being removed.
    Dropping,
}

impl TenantState {
    /// Every state, in the order of the SQL `ENUM`.
    pub const ALL: [TenantState; 5] = [
        TenantState::Creating,
        TenantState::Active,
        TenantState::Frozen,
        TenantState::Moving,
        TenantState::Dropping,
    ];

    /// The SQL `ENUM` value.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::Creating => "creating",
            TenantState::Active => "active",
            TenantState::Frozen => "frozen",
            TenantState::Moving => "moving",
            TenantState::Dropping => "dropping",
        }
    }
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name the directory does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tenant state '{0}' (expected creating, active, frozen, moving or dropping)")]
pub struct UnknownState(pub String);

impl FromStr for TenantState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// Where a tenant's database is, as of `version` (raised by every change of the tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub cluster: String,
    pub version: u64,
    pub state: TenantState,
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub tenant: TenantId,
    /// None: the tenant was removed.
    pub route: Option<Route>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_sql_names() {
        for state in TenantState::ALL {
            assert_eq!(state.as_str().parse::<TenantState>(), Ok(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
        }
        assert_eq!(
            "Active".parse::<TenantState>().unwrap_err().to_string(),
            "unknown tenant state 'Active' (expected creating, active, frozen, moving or dropping)"
        );
    }
}
