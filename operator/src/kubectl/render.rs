//! What `kubectl lagless` prints, as pure functions of the objects read.

use std::fmt::Write as _;

use k8s_openapi::api::events::v1::Event;

use crate::crd::{MySQLCluster, PromotionRecord};

/// `status`: the cluster's phase, primary and epoch, its members with their role, health and
/// lag, its conditions, and the last failover, switchover and re-seed.
pub fn status(cluster: &MySQLCluster) -> String {
    let mut out = String::new();
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or_default();
    let Some(s) = &cluster.status else {
        let _ = writeln!(
            out,
            "cluster {name} ({namespace}): no status yet; is the operator running?"
        );
        return out;
    };
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let _ = writeln!(
        out,
        "cluster {name} ({namespace})  phase {}  primary {}  ready {}  epoch {}{}",
        dash(s.phase.map(|p| format!("{p:?}"))),
        dash(s.primary.clone()),
        dash(s.ready.clone()),
        dash(s.topology_epoch.map(|e| e.to_string())),
        if cluster.spec.paused { "  PAUSED" } else { "" },
    );
    if s.observed_generation != cluster.metadata.generation {
        let _ = writeln!(
            out,
            "  the operator has not reported generation {} yet (reported: {})",
            dash(cluster.metadata.generation.map(|g| g.to_string())),
            dash(s.observed_generation.map(|g| g.to_string()))
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<16} {:<12} {:<8} {:<8} {:<8} GTID",
        "MEMBER", "ROLE", "HEALTHY", "LAG", "BEHIND"
    );
    for m in &s.members {
        let _ = writeln!(
            out,
            "{:<16} {:<12} {:<8} {:<8} {:<8} {}",
            m.name,
            format!("{:?}", m.role),
            if m.healthy { "yes" } else { "no" },
            dash(m.lag_ms.map(|ms| format!("{:.1}s", ms as f64 / 1000.0))),
            dash(m.transactions_behind.map(|n| n.to_string())),
            dash(m.gtid_position.clone()),
        );
        if let Some(why) = &m.errant {
            let _ = writeln!(out, "{:<16} ! quarantined: {why}", "");
        }
        if m.cordoned {
            let _ = writeln!(out, "{:<16} ! cordoned: no reads are routed to it", "");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<20} {:<8} {:<22} MESSAGE",
        "CONDITION", "STATUS", "REASON"
    );
    for c in &s.conditions {
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:<22} {}",
            c.type_,
            format!("{:?}", c.status),
            c.reason,
            c.message
        );
    }
    let promotion = |p: &PromotionRecord| {
        let mut line = format!("{} -> {} at {}", dash(p.from.clone()), p.to, p.time);
        if let Some(id) = &p.id {
            let _ = write!(line, " (request {id})");
        }
        if let Some(error) = &p.error {
            let _ = write!(line, ": failed: {error}");
        }
        line
    };
    let mut last = Vec::new();
    if let Some(p) = &s.last_failover {
        last.push(format!("last failover:   {}", promotion(p)));
    }
    if let Some(p) = &s.last_switchover {
        last.push(format!("last switchover: {}", promotion(p)));
    }
    if let Some(r) = &s.last_reseed {
        last.push(format!(
            "last re-seed:    {} ({}) {:?} at {}: {}",
            r.member, r.id, r.result, r.time, r.message
        ));
    }
    if !last.is_empty() {
        let _ = writeln!(out);
        for line in last {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// When an Event happened, for sorting and printing: its series' last time, else its own.
fn event_time(e: &Event) -> String {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0.to_string())
        .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
        .or_else(|| {
            e.deprecated_last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
        })
        .or_else(|| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
        })
        .unwrap_or_default()
}

/// `logs`: the Events recorded on the cluster, oldest first, one a line.
pub fn events(mut events: Vec<Event>) -> String {
    events.sort_by_key(event_time);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32} {:<8} {:<20} {:>5}  NOTE",
        "TIME", "TYPE", "REASON", "COUNT"
    );
    for e in &events {
        let count = e.series.as_ref().map_or(1, |s| s.count);
        let _ = writeln!(
            out,
            "{:<32} {:<8} {:<20} {:>5}  {}",
            event_time(e),
            e.type_.as_deref().unwrap_or("-"),
            e.reason.as_deref().unwrap_or("-"),
            count,
            e.note.as_deref().unwrap_or_default()
        );
    }
    if events.is_empty() {
        let _ = writeln!(out, "(no Events: they expire after an hour by default)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(yaml: &str) -> MySQLCluster {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn status_shows_members_conditions_and_the_last_promotions() {
        let c = cluster(
            r#"
apiVersion: lagless.dev/v1alpha1
kind: MySQLCluster
metadata: {name: shop, namespace: prod, generation: 4}
spec: {replicas: 2, paused: true}
status:
  phase: Paused
  primary: shop-1
  ready: 1/2
  topologyEpoch: 7
  observedGeneration: 3
  members:
    - {name: shop-0, role: Quarantined, healthy: false, errant: "0-1-9 not on shop-1"}
    - {name: shop-1, role: Primary, healthy: true, gtidPosition: "0-1-12"}
    - {name: shop-2, role: Replica, healthy: true, cordoned: true}
  conditions:
    - {type: Paused, status: "True", reason: Paused, message: "spec.paused", lastTransitionTime: "2026-01-01T00:00:00Z"}
  lastFailover: {time: "2026-01-01T00:00:00Z", from: shop-0, to: shop-1}
"#,
        );
        let text = status(&c);
        assert!(
            text.starts_with(
                "cluster shop (prod)  phase Paused  primary shop-1  ready 1/2  epoch 7  PAUSED\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("not reported generation 4 yet (reported: 3)"),
            "{text}"
        );
        assert!(text.contains("shop-1           Primary      yes"), "{text}");
        assert!(
            text.contains("! quarantined: 0-1-9 not on shop-1"),
            "{text}"
        );
        assert!(
            text.contains("shop-2           Replica      yes")
                && text.contains("! cordoned: no reads are routed to it"),
            "{text}"
        );
        assert!(
            text.contains("Paused               True     Paused"),
            "{text}"
        );
        assert!(
            text.contains("last failover:   shop-0 -> shop-1 at 2026-01-01T00:00:00Z"),
            "{text}"
        );
    }

    #[test]
    fn a_cluster_without_status_says_so() {
        let c = cluster(
            "apiVersion: lagless.dev/v1alpha1\nkind: MySQLCluster\nmetadata: {name: a, namespace: b}\nspec: {replicas: 1}\n",
        );
        assert!(status(&c).contains("no status yet"));
    }

    #[test]
    fn events_are_printed_oldest_first() {
        let event = |reason: &str, time: &str| -> Event {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": reason},
                "eventTime": time,
                "reason": reason,
                "type": "Normal",
                "note": format!("{reason} happened"),
            }))
            .unwrap()
        };
        let text = events(vec![
            event("Resumed", "2026-01-01T00:00:02.000000Z"),
            event("Paused", "2026-01-01T00:00:01.000000Z"),
        ]);
        let paused = text.find("Paused happened").unwrap();
        let resumed = text.find("Resumed happened").unwrap();
        assert!(paused < resumed, "{text}");
        assert!(events(Vec::new()).contains("no Events"));
    }
}
