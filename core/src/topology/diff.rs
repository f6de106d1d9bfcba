//! What changed between two topologies, in words an operator reads in a log line.

use std::fmt;

use super::{Member, Topology};

/// The differences that matter to routing, compared by member name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TopologyDiff {
    /// Old and new primary ("none" while switching), when it changed.
    primary: Option<(String, String)>,
    state: Option<(String, String)>,
    added: Vec<String>,
    removed: Vec<String>,
    /// Replicas whose address or weight changed.
    updated: Vec<String>,
    consistency: Option<(String, String)>,
    read_only: Option<(String, String)>,
}

impl TopologyDiff {
    pub fn between(old: &Topology, new: &Topology) -> Self {
        Self {
            primary: changed(describe(&old.primary), describe(&new.primary)),
            state: changed(old.state.to_string(), new.state.to_string()),
            added: names_missing_from(&new.replicas, &old.replicas),
            removed: names_missing_from(&old.replicas, &new.replicas),
            updated: updated_replicas(old, new),
            consistency: changed(or_none(&old.consistency), or_none(&new.consistency)),
            read_only: changed(old.read_only.to_string(), new.read_only.to_string()),
        }
    }
}

impl fmt::Display for TopologyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some((old, new)) = &self.state {
            parts.push(format!("state {old} -> {new}"));
        }
        if let Some((old, new)) = &self.primary {
            parts.push(format!("primary {old} -> {new}"));
        }
        for (label, names) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("updated", &self.updated),
        ] {
            if !names.is_empty() {
                parts.push(format!("{label} replicas {}", names.join(", ")));
            }
        }
        if let Some((old, new)) = &self.consistency {
            parts.push(format!("consistency {old} -> {new}"));
        }
        if let Some((old, new)) = &self.read_only {
            parts.push(format!("read_only {old} -> {new}"));
        }
        if parts.is_empty() {
            return f.write_str("no member changes");
        }
        f.write_str(&parts.join("; "))
    }
}

fn changed(old: String, new: String) -> Option<(String, String)> {
    (old != new).then_some((old, new))
}

fn describe(member: &Option<Member>) -> String {
    member.as_ref().map_or_else(
        || "none".to_owned(),
        |m| format!("{} ({})", m.name, m.addr()),
    )
}

fn or_none(value: &Option<impl ToString>) -> String {
    value
        .as_ref()
        .map_or_else(|| "none".to_owned(), ToString::to_string)
}

fn names_missing_from(these: &[Member], others: &[Member]) -> Vec<String> {
    these
        .iter()
        .filter(|m| !others.iter().any(|o| o.name == m.name))
        .map(|m| m.name.clone())
        .collect()
}

fn updated_replicas(old: &Topology, new: &Topology) -> Vec<String> {
    new.replicas
        .iter()
        .filter(|n| old.replicas.iter().any(|o| o.name == n.name && o != *n))
        .map(|m| m.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Flavor, TopologyState};
    use super::*;

    fn topology(primary: Option<&str>, replicas: &[(&str, u16)]) -> Topology {
        Topology {
            cluster: "demo".into(),
            flavor: Flavor::Mariadb,
            epoch: 1,
            state: if primary.is_some() {
                TopologyState::Ready
            } else {
                TopologyState::Switching
            },
            primary: primary.map(|name| Member::new(name, "10.0.0.1", 3306)),
            replicas: replicas
                .iter()
                .map(|(name, port)| Member::new(*name, "10.0.0.2", *port))
                .collect(),
            consistency: None,
            read_only: false,
        }
    }

    #[test]
    fn identical_topologies_have_no_changes() {
        let t = topology(Some("a"), &[("b", 1)]);
        let diff = TopologyDiff::between(&t, &t);
        assert_eq!(diff, TopologyDiff::default());
        assert_eq!(diff.to_string(), "no member changes");
    }

    #[test]
    fn failover_reports_primary_and_replicas() {
        let old = topology(Some("a"), &[("b", 1), ("c", 2)]);
        let new = topology(Some("b"), &[("c", 2), ("d", 4)]);
        assert_eq!(
            TopologyDiff::between(&old, &new).to_string(),
            "primary a (10.0.0.1:3306) -> b (10.0.0.1:3306); added replicas d; removed replicas b"
        );
    }

    #[test]
    fn switching_reports_state_and_missing_primary() {
        let old = topology(Some("a"), &[("b", 1)]);
        let new = topology(None, &[("b", 1)]);
        assert_eq!(
            TopologyDiff::between(&old, &new).to_string(),
            "state ready -> switching; primary a (10.0.0.1:3306) -> none"
        );
    }

    #[test]
    fn weight_and_consistency_changes() {
        let old = topology(Some("a"), &[("b", 1)]);
        let mut new = old.clone();
        new.replicas[0].weight = 0;
        new.consistency = Some(crate::ConsistencyMode::Session);
        assert_eq!(
            TopologyDiff::between(&old, &new).to_string(),
            "updated replicas b; consistency none -> session"
        );
    }
}
