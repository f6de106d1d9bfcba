//! What `local status` shows for a pool: the pool supervisor's `status.json` (loads, proxies,
//! events), completed with each cluster's own `status.json` (primary, members), and the table
//! made of it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::local::status::{ConnectInfo, EventLine, ProxyStatus, Shown, Status, render_tail};
use crate::pool::moves::MoveRecord;

/// The most events a pool's status keeps, its own and its clusters'.
const MAX_EVENTS: usize = 100;

/// The pool as its supervisor and its clusters last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolStatus {
    pub pool: String,
    /// `starting`, `running`, `stopping` or `stopped`.
    pub phase: String,
    /// What the pool supervisor is doing now.
    pub step: String,
    /// Every step of the start so far, in order.
    #[serde(default)]
    pub progress: Vec<String>,
    pub supervisor_pid: u32,
    pub updated_unix_ms: u64,
    /// The directory's cluster.
    pub directory: String,
    /// The pool's load over its capacity (open and filling clusters), once measured.
    pub utilisation: Option<f64>,
    /// The directory's cluster first, then the tenant clusters.
    pub clusters: Vec<PoolCluster>,
    pub proxies: Vec<ProxyStatus>,
    /// Tenant moves, as `tenant move` recorded them (read from the state directory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<MoveRecord>,
    /// The operator's own moves (`spec.rebalance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<super::rebalancer::RebalanceStatus>,
    /// Newest last.
    pub events: Vec<EventLine>,
    pub connect: Option<ConnectInfo>,
}

/// One cluster of the pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolCluster {
    pub name: String,
    /// `directory` or `tenants`.
    pub role: String,
    /// In the directory: `open`, `filling` or `closed`; none before it is registered.
    pub state: Option<String>,
    /// The cluster supervisor's phase: `starting`, `running`, `stopping` or `stopped`.
    pub phase: String,
    pub primary: Option<String>,
    pub members: Vec<PoolMember>,
    pub tenants: Option<u64>,
    pub bytes: Option<u64>,
    /// Transactions per second in the cluster's GTID domain.
    pub write_rate: Option<f64>,
    pub utilisation: Option<f64>,
}

/// One member of a pool's cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMember {
    pub name: String,
    /// `primary`, `replica`, `quarantined`, `joining`, `removing` or `down`.
    pub role: String,
    pub port: u16,
    pub pid: Option<u32>,
    /// `starting`, `running`, `crashed`, `seeding` or `stopped`.
    pub process: String,
    /// `ok`, `unreachable`, `hung` or `unknown`.
    pub health: String,
}

impl PoolStatus {
    pub fn cluster(&self, name: &str) -> Option<&PoolCluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// Tenants over every tenant cluster, once the directory has been read.
    pub fn tenants(&self) -> Option<u64> {
        self.clusters
            .iter()
            .filter_map(|c| c.tenants)
            .reduce(|a, b| a + b)
    }

    /// Takes each cluster's primary, phase and members from its own status (`None`: it has
    /// none, or it is not running), and its events, named after it, among the pool's.
    pub fn with_clusters(mut self, statuses: &[(String, Option<Status>)]) -> Self {
        for (name, status) in statuses {
            if let Some(s) = status {
                self.events.extend(s.events.iter().map(|e| EventLine {
                    unix_ms: e.unix_ms,
                    message: format!("{name}: {}", e.message),
                }));
            }
            let Some(line) = self.clusters.iter_mut().find(|c| c.name == *name) else {
                continue;
            };
            match status {
                Some(s) => {
                    line.phase = s.phase.clone();
                    line.primary = s.primary.clone();
                    line.members = s
                        .members
                        .iter()
                        .map(|m| PoolMember {
                            name: m.name.clone(),
                            role: m.role.clone(),
                            port: m.port,
                            pid: m.pid,
                            process: m.process.clone(),
                            health: m.health.clone(),
                        })
                        .collect();
                }
                None => {
                    line.phase = "stopped".into();
                    line.primary = None;
                    for m in &mut line.members {
                        m.pid = None;
                        m.process = "stopped".into();
                    }
                }
            }
        }
        // Stable: the pool's own events stay before a cluster's of the same millisecond.
        self.events.sort_by_key(|e| e.unix_ms);
        let excess = self.events.len().saturating_sub(MAX_EVENTS);
        self.events.drain(..excess);
        self
    }

    /// The member called `name`, with its cluster.
    pub fn member(&self, name: &str) -> Option<(&PoolCluster, &PoolMember)> {
        self.clusters
            .iter()
            .find_map(|c| c.members.iter().find(|m| m.name == name).map(|m| (c, m)))
    }
}

impl Shown for PoolStatus {
    fn phase(&self) -> &str {
        &self.phase
    }
    fn progress(&self) -> &[String] {
        &self.progress
    }
    fn events(&self) -> &[EventLine] {
        &self.events
    }
    fn render(&self, events: usize) -> String {
        render(self, events)
    }
}

/// A size for people: `512 B`, `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// The table `local status` prints for a pool, and the live view of `local up`.
pub fn render(s: &PoolStatus, events: usize) -> String {
    let mut out = String::new();
    let tenant_clusters = s.clusters.iter().filter(|c| c.role == "tenants").count();
    let _ = writeln!(
        out,
        "pool {}  phase {}  clusters {tenant_clusters}  tenants {}  utilisation {}  directory {}",
        s.pool,
        s.phase,
        s.tenants().map_or("-".into(), |t| t.to_string()),
        s.utilisation.map_or("-".into(), percent),
        s.directory,
    );
    if !s.step.is_empty() && s.phase != "running" {
        let _ = writeln!(out, "  {}", s.step);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<22} {:<9} {:<9} {:>8} {:>11} {:>9} {:>5}  PRIMARY",
        "CLUSTER", "STATE", "PHASE", "TENANTS", "BYTES", "WRITES/S", "UTIL"
    );
    for c in &s.clusters {
        let _ = writeln!(
            out,
            "{:<22} {:<9} {:<9} {:>8} {:>11} {:>9} {:>5}  {}",
            c.name,
            c.state.as_deref().unwrap_or(if c.role == "directory" {
                "directory"
            } else {
                "-"
            }),
            c.phase,
            c.tenants.map_or("-".into(), |t| t.to_string()),
            c.bytes.map_or("-".into(), bytes),
            c.write_rate.map_or("-".into(), |r| format!("{r:.1}")),
            c.utilisation.map_or("-".into(), percent),
            c.primary.as_deref().unwrap_or("-"),
        );
        for m in &c.members {
            let _ = writeln!(
                out,
                "  {:<20} {:<11} {:<7} {:<9} {}",
                m.name, m.role, m.port, m.process, m.health
            );
        }
    }
    if !s.moves.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<22} {:<33} {:<12} NOTE",
            "MOVE", "FROM -> TO", "PHASE"
        );
        for m in &s.moves {
            let note = match (&m.error, m.frozen_ms) {
                (Some(e), _) => e.clone(),
                (None, Some(ms)) => format!("writes held {ms} ms"),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                out,
                "{:<22} {:<33} {:<12} {note}",
                format!("tenant {}", m.tenant),
                format!("{} -> {}", m.from, m.to),
                m.phase.as_str(),
            );
        }
    }
    if let Some(r) = s.rebalance.as_ref().filter(|r| r.enabled) {
        let now = r
            .running
            .as_deref()
            .or(r.waiting.as_deref())
            .unwrap_or("idle");
        let _ = writeln!(out, "\nrebalancing: {now}");
        if let Some(last) = &r.last {
            let _ = writeln!(out, "  last: {last}");
        }
    }
    render_tail(&mut out, &s.proxies, s.connect.as_ref(), &s.events, events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::status::MemberStatus;

    fn pool() -> PoolStatus {
        let cluster = |name: &str, role: &str| PoolCluster {
            name: name.into(),
            role: role.into(),
            phase: "running".into(),
            ..Default::default()
        };
        PoolStatus {
            pool: "demo".into(),
            phase: "running".into(),
            directory: "demo-directory".into(),
            utilisation: Some(0.13),
            clusters: vec![
                cluster("demo-directory", "directory"),
                PoolCluster {
                    state: Some("open".into()),
                    tenants: Some(4),
                    bytes: Some(3 << 20),
                    write_rate: Some(12.4),
                    utilisation: Some(0.03),
                    ..cluster("demo-c0", "tenants")
                },
                PoolCluster {
                    state: Some("filling".into()),
                    tenants: Some(1),
                    ..cluster("demo-c1", "tenants")
                },
            ],
            proxies: vec![ProxyStatus {
                name: "proxy-0".into(),
                port: 6033,
                admin_port: 6034,
                pid: Some(7),
                running: true,
                restarts: 0,
            }],
            ..Default::default()
        }
    }

    fn member(name: &str, role: &str, port: u16) -> MemberStatus {
        MemberStatus {
            name: name.into(),
            role: role.into(),
            port,
            pid: Some(u32::from(port)),
            process: "running".into(),
            health: "ok".into(),
            ..Default::default()
        }
    }

    #[test]
    fn cluster_statuses_fill_in_primaries_and_members() {
        let c0 = Status {
            phase: "running".into(),
            events: vec![EventLine {
                unix_ms: 5,
                message: "demo-c0-1 promoted".into(),
            }],
            primary: Some("demo-c0-1".into()),
            members: vec![
                member("demo-c0-0", "replica", 3317),
                member("demo-c0-1", "primary", 3318),
            ],
            ..Default::default()
        };
        let mut pool = pool();
        pool.events = [1, 9]
            .map(|unix_ms| EventLine {
                unix_ms,
                message: format!("pool event {unix_ms}"),
            })
            .into();
        let s = pool.with_clusters(&[
            ("demo-c0".into(), Some(c0)),
            ("demo-c1".into(), None),
            ("elsewhere".into(), Some(Status::default())),
        ]);
        let line = s.cluster("demo-c0").unwrap();
        assert_eq!(line.primary.as_deref(), Some("demo-c0-1"));
        assert_eq!(line.members.len(), 2);
        assert_eq!(s.cluster("demo-c1").unwrap().phase, "stopped");
        let (cluster, m) = s.member("demo-c0-1").unwrap();
        assert_eq!(
            (cluster.name.as_str(), m.role.as_str()),
            ("demo-c0", "primary")
        );
        assert!(s.member("demo-c9-0").is_none());
        assert_eq!(s.tenants(), Some(5));
        let events: Vec<&str> = s.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            events,
            [
                "pool event 1",
                "demo-c0: demo-c0-1 promoted",
                "pool event 9"
            ]
        );
    }

    #[test]
    fn the_table_shows_clusters_members_loads_and_proxies() {
        let s = pool().with_clusters(&[(
            "demo-c0".into(),
            Some(Status {
                phase: "running".into(),
                primary: Some("demo-c0-0".into()),
                members: vec![member("demo-c0-0", "primary", 3317)],
                ..Default::default()
            }),
        )]);
        let text = render(&s, 5);
        assert!(
            text.starts_with("pool demo  phase running  clusters 2  tenants 5  utilisation 13%"),
            "{text}"
        );
        let c0 = text.lines().find(|l| l.starts_with("demo-c0 ")).unwrap();
        for needle in ["open", " 4 ", "3.0 MiB", "12.4", "3%", "demo-c0-0"] {
            assert!(c0.contains(needle), "{needle} in {c0}");
        }
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("demo-c0-0") && l.contains("primary")),
            "{text}"
        );
        let directory = text
            .lines()
            .find(|l| l.starts_with("demo-directory"))
            .unwrap();
        assert!(directory.contains("directory"), "{directory}");
        assert!(text.contains("127.0.0.1:6033"), "{text}");
    }

    #[test]
    fn moves_are_listed_with_their_phase() {
        let mut s = pool();
        assert!(!render(&s, 0).contains("MOVE"));
        let id = lagless_directory::TenantId::parse("42").unwrap();
        let mut done = MoveRecord::new(&id, "demo-c0", "demo-c1");
        done.phase = crate::pool::moves::Phase::Done;
        done.frozen_ms = Some(48);
        let mut failed = MoveRecord::new(
            &lagless_directory::TenantId::parse("7").unwrap(),
            "demo-c1",
            "demo-c0",
        );
        failed.phase = crate::pool::moves::Phase::Aborted;
        failed.error = Some("fenced: checksums differ".into());
        s.moves = vec![done, failed];
        let text = render(&s, 0);
        let line = |tenant: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("tenant {tenant} ")))
                .unwrap_or_else(|| panic!("{text}"))
                .to_string()
        };
        assert!(line("42").contains("demo-c0 -> demo-c1"), "{text}");
        assert!(line("42").contains("done") && line("42").ends_with("writes held 48 ms"));
        assert!(line("7").contains("aborted") && line("7").ends_with("checksums differ"));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(100 << 30), "100.0 GiB");
    }
}
