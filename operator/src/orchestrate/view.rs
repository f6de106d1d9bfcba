//! The inputs of [`plan`](super::plan::plan): what was observed, what the user asked for, and
//! the little the operator remembers between ticks.
//!
//! Everything here is plain data. Time is a number of milliseconds supplied by the caller, so the
//! decision never reads a clock and tests are deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lagless_core::gtid::GtidSet;
use lagless_core::topology::{Flavor, Topology};

/// The outcome of the last reachability probe of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// Connected and answered every status query in time.
    Ok,
    /// Could not connect (refused, no route, no pod).
    Unreachable,
    /// Connected but did not answer in time: alive as a process, useless as a server.
    Hung,
}

/// A replication thread's last error, as `SHOW SLAVE STATUS` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplicationError {
    pub code: u32,
    pub message: String,
}

impl ReplicationError {
    /// `ER_MASTER_FATAL_ERROR_READING_BINLOG`: the source no longer has (or never had) the
    /// position the replica asked for. Under `gtid_strict_mode` this is how a diverged replica
    /// or one whose history was purged shows itself; either way only a re-seed repairs it.
    pub const SOURCE_LACKS_POSITION: u32 = 1236;

    pub fn new(code: u32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn source_lacks_position(&self) -> bool {
        self.code == Self::SOURCE_LACKS_POSITION
    }
}

/// One member as observed on this tick.
/// Semi-synchronous replication as a member reports it (`None` in the view: not observed, or
/// the plugin is not loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SemiSyncState {
    /// It waits for replica acknowledgements when it is the primary.
    pub source_enabled: bool,
    /// It acknowledges what it receives when it is a replica.
    pub replica_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub probe: Probe,
    /// Probes failed in a row; 0 when the last one succeeded. Only reachability probes count:
    /// a readiness probe failing on lag never does, because lag is read from GTID sets.
    pub consecutive_failures: u32,
    pub read_only: Option<bool>,
    /// MariaDB `@@gtid_binlog_pos`, MySQL `@@gtid_executed`.
    pub executed: Option<GtidSet>,
    /// What the IO thread has received (MariaDB `Gtid_IO_Pos`, MySQL `Retrieved_Gtid_Set`).
    /// `executed ∪ retrieved` is what the member will hold once its relay log is applied.
    pub retrieved: Option<GtidSet>,
    /// The replication source, host and port, if one is configured.
    pub source: Option<(String, u16)>,
    /// `Some(true)` only for a connected IO thread ("Yes"); "Connecting" is `Some(false)`.
    pub io_running: Option<bool>,
    pub sql_running: Option<bool>,
    pub io_error: Option<ReplicationError>,
    pub sql_error: Option<ReplicationError>,
    pub semi_sync: Option<SemiSyncState>,
    /// `Seconds_Behind_Master`: how old the last applied event is by the source's clock, for
    /// people; `None` when not replicating. Decisions use GTID sets, never this.
    pub lag_seconds: Option<u64>,
}

impl MemberView {
    /// A member about which nothing is known yet: unreachable, no state read.
    pub fn unobserved(name: impl Into<String>, host: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            host: host.into(),
            port,
            probe: Probe::Unreachable,
            consecutive_failures: 0,
            read_only: None,
            executed: None,
            retrieved: None,
            source: None,
            io_running: None,
            sql_running: None,
            io_error: None,
            sql_error: None,
            semi_sync: None,
            lag_seconds: None,
        }
    }

    /// Both replication threads run and neither reports an error.
    pub fn replicates_cleanly(&self) -> bool {
        self.io_running == Some(true)
            && self.sql_running == Some(true)
            && self.io_error.is_none()
            && self.sql_error.is_none()
    }

    /// Answered its probe and reported its position: the only members whose data the plan
    /// reasons about.
    pub fn is_reachable(&self) -> bool {
        self.probe == Probe::Ok && self.executed.is_some()
    }

    /// What the member holds once its relay log is applied: `executed ∪ retrieved`.
    pub fn holdings(&self) -> Option<GtidSet> {
        let mut held = self.executed.clone()?;
        if let Some(retrieved) = &self.retrieved {
            held.union(retrieved);
        }
        Some(held)
    }

    /// Whether this member listens on `host:port` (host case-insensitive, as in the topology).
    pub fn listens_on(&self, host: &str, port: u16) -> bool {
        self.port == port && self.host.eq_ignore_ascii_case(host)
    }

    /// Whether `other` is this member's configured replication source.
    pub fn replicates_from(&self, host: &str, port: u16) -> bool {
        self.source
            .as_ref()
            .is_some_and(|(h, p)| *p == port && h.eq_ignore_ascii_case(host))
    }

    pub fn is_writable(&self) -> bool {
        self.read_only == Some(false)
    }
}

/// Everything observed on one tick.
///
/// Observation contract: the published primary's `executed` is read after every other
/// member's state (members may be probed in parallel; the primary's position is then read once
/// more). A replica can then never look ahead of the primary merely because it was read later,
/// so anything it holds beyond the primary is errant, or lost by the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub flavor: Flavor,
    /// One entry per server that exists or is in the spec; a spec member without a server is
    /// [`MemberView::unobserved`].
    pub members: Vec<MemberView>,
    /// The topology the proxies currently follow, if one was ever published.
    pub published: Option<Topology>,
}

impl ClusterView {
    pub fn member(&self, name: &str) -> Option<&MemberView> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// One member the user wants in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Among equally complete candidates, the higher value is promoted.
    pub promotion_priority: i32,
    /// Never promoted, whatever it holds (e.g. a delayed or remote replica).
    pub never_promote: bool,
}

impl MemberSpec {
    pub fn new(name: impl Into<String>, host: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            host: host.into(),
            port,
            promotion_priority: 0,
            never_promote: false,
        }
    }
}

/// Who a planned switchover should promote.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SwitchoverTarget {
    Member(String),
    /// The eligible replica with the highest priority, then the least behind, then by name.
    Best,
}

/// A switchover request. The `id` makes it one-shot: once a switchover with this id has
/// happened ([`History::completed_switchover`]), the request is satisfied, so "switch to the
/// best member" does not flap between members on every tick.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Switchover {
    pub id: String,
    pub to: SwitchoverTarget,
}

/// Lossless semi-synchronous replication (AFTER_SYNC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SemiSync {
    /// Replica acknowledgements a commit waits for (at least 1).
    pub acks: u32,
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// The `MySQLCluster` name, published in the topology.
    pub cluster: String,
    pub members: Vec<MemberSpec>,
    /// Consecutive failed probes before the primary may be declared dead.
    pub failover_after_probes: u32,
    /// No automatic failover within this long of the previous one.
    pub failover_cooldown: Duration,
    pub switchover: Option<Switchover>,
    /// Observe and report only: the plan keeps its state and warnings, and its actions wait
    /// (see [`plan`](super::plan::plan)).
    pub paused: bool,
    /// Members kept out of read routing: published with weight 0 while they are replicas.
    /// They keep replicating, and are promoted only when no other member is fit (see
    /// [`preference`](super::plan::preference)). No effect on the primary until it is a
    /// replica again.
    pub cordoned: BTreeSet<String>,
    /// A member that must hand the primary role over while it has it (a roll restarts it
    /// next): a switchover to the best replica, carried out without a request id, so it
    /// neither satisfies nor replaces a user's request, and asked again for as long as the
    /// member is primary.
    pub hand_over: Option<String>,
    /// The whole cluster read-only: the primary is kept `read_only=ON` (a new one too, after a
    /// failover or switchover) and the topology says so, so the proxies relay the servers'
    /// refusal (1290) at once rather than hold writes for a primary that is not coming.
    pub read_only: bool,
    pub semi_sync: Option<SemiSync>,
    /// The default consistency mode published to the proxies.
    pub consistency: Option<lagless_core::ConsistencyMode>,
    /// How long a planned switchover lets open transactions on the old primary finish before
    /// fencing it (new ones wait at the proxies meanwhile); what is still open then is ended.
    pub switchover_drain: Duration,
    /// How long a planned switchover waits for its candidate to apply what the fenced old
    /// primary holds before it gives up and gives the role back (writes are held meanwhile).
    pub switchover_catch_up: Duration,
    /// The platform can copy a donor's data into a member ([`Seeder`](super::act::Seeder)): an
    /// empty member is then seeded instead of replaying the whole history, which the primary
    /// may no longer have.
    pub seeding: bool,
    /// TLS to the members, for the operator's connections and replication.
    pub tls: Option<ServerTls>,
}

impl ClusterSpec {
    pub const DEFAULT_FAILOVER_AFTER_PROBES: u32 = 3;
    pub const DEFAULT_FAILOVER_COOLDOWN: Duration = Duration::from_secs(300);
    pub const DEFAULT_SWITCHOVER_DRAIN: Duration = Duration::from_secs(2);
    pub const DEFAULT_SWITCHOVER_CATCH_UP: Duration = Duration::from_secs(5);

    pub fn new(cluster: impl Into<String>, members: Vec<MemberSpec>) -> Self {
        Self {
            cluster: cluster.into(),
            members,
            failover_after_probes: Self::DEFAULT_FAILOVER_AFTER_PROBES,
            failover_cooldown: Self::DEFAULT_FAILOVER_COOLDOWN,
            switchover: None,
            paused: false,
            cordoned: BTreeSet::new(),
            hand_over: None,
            read_only: false,
            semi_sync: None,
            consistency: None,
            switchover_drain: Self::DEFAULT_SWITCHOVER_DRAIN,
            switchover_catch_up: Self::DEFAULT_SWITCHOVER_CATCH_UP,
            seeding: false,
            tls: None,
        }
    }

    pub fn member(&self, name: &str) -> Option<&MemberSpec> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// The last promotion, kept so that a returning old primary can be judged against what its
/// successor held when it took over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// The member that was primary before, when one was known.
    pub from: Option<String>,
    pub to: String,
    /// What the new primary held when promoted by a failover; `None` after a switchover, where
    /// the old primary was read-only before the new one caught up and so cannot be ahead.
    pub position: Option<GtidSet>,
}

/// What the operator remembers between ticks (kept in the resource status) and the time now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    pub now_ms: u64,
    /// When the last automatic failover happened.
    pub last_failover_ms: Option<u64>,
    pub last_promotion: Option<Promotion>,
    /// Members kept out of traffic and promotion, with the reason. Only an explicit, recorded
    /// re-seed takes a member out of here.
    pub quarantined: BTreeMap<String, String>,
    /// The id of the last switchover request carried out.
    pub completed_switchover: Option<String>,
    /// The id of the last switchover request that failed and was rolled back: like a completed
    /// one it is not tried again (a new id asks again).
    pub failed_switchover: Option<String>,
    /// The highest epoch ever published (kept where the platform records status): a new
    /// topology is always above it, even when the published document was lost.
    pub max_epoch: u64,
}

/// TLS to the members: the CA their certificates must chain to, as the operator reads it and
/// as the members themselves find it (for replication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The CA for the operator's own connections.
    pub ca: CaSource,
    /// The CA's path on the members' file system (`MASTER_SSL_CA` of replication).
    pub member_ca_path: String,
    /// A directory of certificate files the operator can read (the local runtime's): when
    /// they change, members reload them at once rather than at the next periodic reload.
    pub watch: Option<std::path::PathBuf>,
}

/// Where the operator reads a CA from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// A file, read again at every connection, so a renewed CA needs no restart.
    File(std::path::PathBuf),
    /// PEM text (a Secret's `ca.crt`).
    Pem(Vec<u8>),
}
