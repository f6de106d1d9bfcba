//! What `local status` shows: written by the supervisor as `status.json`, read by every other
//! command, rendered as a table for people or printed as JSON for scripts.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The whole cluster as the supervisor last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub cluster: String,
    /// `starting`, `running`, `stopping` or `stopped`.
    pub phase: String,
    /// What the runtime is doing now, for progress displays.
    pub step: String,
    /// Every step of the start so far, in order: a display that samples `step` would miss
    /// the quick ones.
    #[serde(default)]
    pub progress: Vec<String>,
    /// The orchestration's classification of the last tick (`Healthy`, `Degraded`, ...).
    pub state: Option<String>,
    /// Orchestration paused (`pause`, or `spec.paused`): observed and reported only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The whole cluster read-only (`read-only on`, or `spec.readOnly`); `read_only_in_effect`
    /// once the topology says so and the primary refuses writes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_in_effect: bool,
    pub supervisor_pid: u32,
    pub updated_unix_ms: u64,
    pub epoch: Option<u64>,
    /// Set when a failover may lose acknowledged writes: why, for people.
    #[serde(default)]
    pub durability: Option<String>,
    /// An orchestration action that keeps failing, and why.
    #[serde(default)]
    pub failing: Option<String>,
    pub primary: Option<String>,
    pub consistency: Option<String>,
    pub members: Vec<MemberStatus>,
    pub proxies: Vec<ProxyStatus>,
    pub seeding: Option<SeedingStatus>,
    /// A change of `serverConfig` being rolled through the members (`apply`); absent once
    /// every member runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roll: Option<RollStatus>,
    /// Newest last.
    pub events: Vec<EventLine>,
    pub connect: Option<ConnectInfo>,
    /// Results of switchover, scale and reseed requests, by request id.
    pub requests: Vec<RequestResult>,
    /// The binary log archive (`spec.backup.archiveBinlogs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<crate::backup::archiver::ArchiveStatus>,
    /// Scheduled backups (`spec.backup.schedule`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<ScheduleStatus>,
    /// Scheduled restore drills (`spec.backup.drillSchedule`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drills: Option<ScheduleStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub name: String,
    /// `primary`, `replica`, `quarantined`, `joining`, `removing` or `down`.
    pub role: String,
    pub port: u16,
    pub pid: Option<u32>,
    /// `starting`, `running`, `crashed`, `seeding` or `stopped`.
    pub process: String,
    /// `ok`, `unreachable`, `hung` or `unknown`.
    pub health: String,
    pub gtid: Option<String>,
    /// Transactions the member has not applied yet that the primary has.
    pub behind: Option<u64>,
    /// `Seconds_Behind_Master` as the member reports it, while it replicates.
    #[serde(default)]
    pub lag_seconds: Option<u64>,
    pub replicating: Option<bool>,
    pub error: Option<String>,
    pub restarts: u32,
    /// Published with weight 0: the proxies route no reads to it (`cordon`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cordoned: bool,
    /// Its server runs an older `serverConfig`: the roll restarts it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub config_pending: bool,
    /// Started before the `mariadbd` program was replaced (a package upgrade): `restart`
    /// rolls it onto the new one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub older_program: bool,
}

/// A roll under way: how far it is, the member being restarted, or why it waits or stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollStatus {
    /// Members rolled (running the wanted `serverConfig`, restarted if asked), of `members`.
    pub current: u32,
    pub members: u32,
    /// The member being rolled, and its phase (`draining`, `restarting`, `catching up`).
    pub member: Option<String>,
    pub phase: Option<String>,
    /// Why nothing moves now.
    pub waiting: Option<String>,
    /// Why the roll stopped; a new `apply` starts it again.
    pub stopped: Option<String>,
    pub started_unix_ms: u64,
}

impl RollStatus {
    /// One line for people.
    pub fn describe(&self) -> String {
        let mut line = format!("{} of {} members rolled", self.current, self.members);
        if let (Some(member), Some(phase)) = (&self.member, &self.phase) {
            line.push_str(&format!("; {member}: {phase}"));
        }
        if let Some(why) = &self.stopped {
            line.push_str(&format!("; stopped: {why}"));
        } else if let Some(why) = &self.waiting {
            line.push_str(&format!("; waiting: {why}"));
        }
        line
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStatus {
    pub name: String,
    pub port: u16,
    pub admin_port: u16,
    pub pid: Option<u32>,
    pub running: bool,
    pub restarts: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedingStatus {
    pub member: String,
    pub donor: String,
    pub bytes: u64,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    pub unix_ms: u64,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectInfo {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    /// Where the password is kept (not in this file, which is world-readable).
    pub credentials_file: String,
    /// The CA to verify the proxy's certificate with, when the cluster runs TLS (the proxy
    /// then refuses unencrypted connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
}

impl ConnectInfo {
    /// The client options that make `mariadb` use and verify TLS, with a leading space.
    pub fn tls_args(&self) -> String {
        self.tls_ca
            .as_deref()
            .map(|ca| format!(" --ssl-ca={ca} --ssl-verify-server-cert"))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestResult {
    pub id: String,
    pub ok: bool,
    pub message: String,
}

impl Status {
    pub fn result(&self, id: &str) -> Option<&RequestResult> {
        self.requests.iter().find(|r| r.id == id)
    }

    pub fn member(&self, name: &str) -> Option<&MemberStatus> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// What the `local` commands show of a status file while a supervisor starts and runs, a
/// cluster's or a pool's.
pub trait Shown: Serialize + serde::de::DeserializeOwned {
    /// `starting`, `running`, `stopping` or `stopped`.
    fn phase(&self) -> &str;
    /// Every step of the start so far, in order.
    fn progress(&self) -> &[String];
    /// Newest last.
    fn events(&self) -> &[EventLine];
    /// The table, with the last `events` events.
    fn render(&self, events: usize) -> String;
}

impl Shown for Status {
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

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub fn clock(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// The table `local status` prints, and the live view of `local up`.
pub fn render(s: &Status, events: usize) -> String {
    let mut out = String::new();
    let state = s.state.as_deref().unwrap_or("-");
    let _ = writeln!(
        out,
        "cluster {}  phase {}  state {}  epoch {}  primary {}  consistency {}",
        s.cluster,
        s.phase,
        state,
        s.epoch.map_or("-".into(), |e| e.to_string()),
        s.primary.as_deref().unwrap_or("-"),
        s.consistency.as_deref().unwrap_or("-"),
    );
    if !s.step.is_empty() && s.phase != "running" {
        let _ = writeln!(out, "  {}", s.step);
    }
    if s.paused {
        let _ = writeln!(
            out,
            "  ! orchestration paused: no failover, switchover or repair until `resume`"
        );
    }
    if s.read_only {
        let _ = writeln!(
            out,
            "  ! read-only{}: writes get error 1290 until `read-only off`",
            if s.read_only_in_effect {
                ""
            } else {
                " (being turned on)"
            }
        );
    }
    if let Some(why) = &s.durability {
        let _ = writeln!(out, "  ! not lossless: {why}");
    }
    if let Some(why) = &s.failing {
        let _ = writeln!(out, "  ! keeps failing: {why}");
    }
    if let Some(roll) = &s.roll {
        let _ = writeln!(out, "  rolling: {}", roll.describe());
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<14} {:<12} {:<7} {:<8} {:<9} {:<11} {:<8} {:<6} GTID",
        "MEMBER", "ROLE", "PORT", "PID", "PROCESS", "HEALTH", "BEHIND", "LAG"
    );
    for m in &s.members {
        let _ = writeln!(
            out,
            "{:<14} {:<12} {:<7} {:<8} {:<9} {:<11} {:<8} {:<6} {}",
            m.name,
            m.role,
            m.port,
            m.pid.map_or("-".into(), |p| p.to_string()),
            m.process,
            m.health,
            m.behind.map_or("-".into(), |b| b.to_string()),
            m.lag_seconds.map_or("-".into(), |s| format!("{s}s")),
            m.gtid.as_deref().unwrap_or("-"),
        );
        if let Some(error) = &m.error {
            let _ = writeln!(out, "{:<14} ! {error}", "");
        }
        let rolling = s
            .roll
            .as_ref()
            .filter(|r| r.member.as_deref() == Some(&m.name));
        if let Some(phase) = rolling.and_then(|r| r.phase.as_deref()) {
            let _ = writeln!(out, "{:<14} ! rolling ({phase}): out of read routing", "");
        } else if m.cordoned {
            let _ = writeln!(out, "{:<14} ! cordoned: no reads are routed to it", "");
        }
        if m.config_pending {
            let _ = writeln!(
                out,
                "{:<14} ! runs an older serverConfig: to be restarted",
                ""
            );
        }
        if m.older_program {
            let _ = writeln!(
                out,
                "{:<14} ! started before mariadbd was upgraded: `restart` rolls it",
                ""
            );
        }
    }
    if let Some(seed) = &s.seeding {
        let secs = seed.elapsed_ms as f64 / 1000.0;
        let _ = writeln!(
            out,
            "\nseeding {} from {}: {:.1} MiB in {secs:.1} s ({:.1} MiB/s)",
            seed.member,
            seed.donor,
            seed.bytes as f64 / 1_048_576.0,
            seed.bytes as f64 / 1_048_576.0 / secs.max(0.001)
        );
    }
    if let Some(a) = &s.archive {
        let _ = writeln!(
            out,
            "\nbinary log archive {}: {} segments stored this run, at {}, lag {:.1} s{}",
            a.destination,
            a.segments_stored,
            if a.position.is_empty() {
                "-"
            } else {
                &a.position
            },
            a.lag_ms as f64 / 1000.0,
            a.reading
                .as_ref()
                .map_or(String::new(), |m| format!(", reading {m}"))
        );
        if let Some(error) = &a.error {
            let _ = writeln!(out, "  ! {error}");
        }
    }
    if let Some(b) = &s.backups {
        let _ = writeln!(
            out,
            "\nbackups `{}` to {}: {} taken, {} failed; last {}; next {}",
            b.schedule,
            b.destination,
            b.succeeded,
            b.failed,
            b.last_id.as_deref().unwrap_or("-"),
            b.next_at.as_deref().unwrap_or("-")
        );
        if let Some(error) = &b.last_error {
            let _ = writeln!(out, "  ! the last scheduled backup failed: {error}");
        }
    }
    if let Some(d) = &s.drills {
        let _ = writeln!(
            out,
            "restore drills `{}`: {} passed, {} failed; last drilled {}; next {}",
            d.schedule,
            d.succeeded,
            d.failed,
            d.last_id.as_deref().unwrap_or("-"),
            d.next_at.as_deref().unwrap_or("-")
        );
        if let Some(error) = &d.last_error {
            let _ = writeln!(out, "  ! the last restore drill failed: {error}");
        }
    }
    render_tail(&mut out, &s.proxies, s.connect.as_ref(), &s.events, events);
    out
}

/// The end of a status table, a cluster's or a pool's: the proxies, how to connect, and the
/// last `events` events.
pub fn render_tail(
    out: &mut String,
    proxies: &[ProxyStatus],
    connect: Option<&ConnectInfo>,
    events: &[EventLine],
    last: usize,
) {
    if !proxies.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<14} {:<22} {:<22} {:<8} STATE",
            "PROXY", "SQL", "ADMIN (HTTP)", "PID"
        );
        for p in proxies {
            let _ = writeln!(
                out,
                "{:<14} {:<22} {:<22} {:<8} {}",
                p.name,
                format!("127.0.0.1:{}", p.port),
                format!("127.0.0.1:{}", p.admin_port),
                p.pid.map_or("-".into(), |p| p.to_string()),
                if p.running { "running" } else { "down" },
            );
        }
    }
    if let Some(c) = connect {
        let _ = writeln!(
            out,
            "\nconnect: mariadb -h{} -P{}{} -u{} -p<password> {}   (password in {})",
            c.host,
            c.port,
            c.tls_args(),
            c.user,
            c.database,
            c.credentials_file
        );
    }
    if last > 0 && !events.is_empty() {
        let _ = writeln!(out, "\nrecent events (UTC):");
        for e in events.iter().rev().take(last).rev() {
            let _ = writeln!(out, "  {}  {}", clock(e.unix_ms), e.message);
        }
    }
}

/// What `local status` shows of the schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    pub schedule: String,
    pub destination: String,
    pub next_at: Option<String>,
    /// The backup taken, or drilled, last.
    pub last_id: Option<String>,
    pub last_at: Option<String>,
    /// Why the last run failed (cleared by the next that succeeds).
    pub last_error: Option<String>,
    pub succeeded: u64,
    pub failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(((25 * 3600) + 61) * 1000 + 999), "01:01:01");
    }

    #[test]
    fn table_lists_members_proxies_and_events() {
        let s = Status {
            cluster: "shop".into(),
            phase: "running".into(),
            state: Some("Healthy".into()),
            epoch: Some(3),
            primary: Some("shop-1".into()),
            members: vec![
                MemberStatus {
                    name: "shop-1".into(),
                    role: "primary".into(),
                    port: 3308,
                    pid: Some(42),
                    process: "running".into(),
                    health: "ok".into(),
                    gtid: Some("10-1002-7".into()),
                    behind: Some(0),
                    error: Some("boom".into()),
                    ..Default::default()
                },
                MemberStatus {
                    name: "shop-2".into(),
                    role: "replica".into(),
                    behind: Some(12),
                    lag_seconds: Some(3),
                    ..Default::default()
                },
            ],
            proxies: vec![ProxyStatus {
                name: "proxy-0".into(),
                port: 6033,
                admin_port: 6034,
                pid: Some(43),
                running: true,
                restarts: 0,
            }],
            events: (0..5)
                .map(|i| EventLine {
                    unix_ms: i * 1000,
                    message: format!("event {i}"),
                })
                .collect(),
            ..Default::default()
        };
        let text = render(&s, 2);
        assert!(text.contains("primary shop-1"));
        assert!(text.contains("shop-1         primary"), "{text}");
        assert!(text.contains("10-1002-7"));
        // Behind in transactions, and the reported lag.
        assert!(
            text.lines()
                .any(|l| l.starts_with("shop-2") && l.contains(" 12 ") && l.contains(" 3s ")),
            "{text}"
        );
        assert!(text.contains("! boom"));
        assert!(text.contains("127.0.0.1:6033"));
        assert!(text.contains("event 4") && text.contains("event 3"));
        assert!(
            !text.contains("event 2"),
            "only the last two events: {text}"
        );
    }

    #[test]
    fn a_roll_shows_its_progress_its_member_and_why_it_waits_or_stopped() {
        let mut s = Status {
            roll: Some(RollStatus {
                current: 1,
                members: 3,
                member: Some("shop-1".into()),
                phase: Some("draining".into()),
                ..Default::default()
            }),
            members: vec![MemberStatus {
                name: "shop-1".into(),
                config_pending: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&s, 0);
        assert!(
            text.contains("rolling: 1 of 3 members rolled; shop-1: draining"),
            "{text}"
        );
        assert!(text.contains("! runs an older serverConfig"), "{text}");
        assert!(
            text.contains("! rolling (draining): out of read routing"),
            "{text}"
        );
        let roll = s.roll.as_mut().unwrap();
        roll.member = None;
        roll.waiting = Some("the cluster is not healthy".into());
        assert!(
            roll.describe()
                .ends_with("; waiting: the cluster is not healthy")
        );
        roll.stopped = Some("shop-2 did not start".into());
        assert!(roll.describe().ends_with("; stopped: shop-2 did not start"));
    }
}
