//! The topology contract between the operator and the proxy.
//!
//! The operator publishes one JSON document (the ConfigMap key `topology.json` in ConfigMap
//! `<cluster>-topology`, or a plain file in local mode) and every proxy reads it. Both use these
//! same types, so the two cannot disagree on the format. `docs/topology.md` describes the
//! document for humans; the proxy's watcher keeps its view of it current.

mod diff;
mod parse;

use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::consistency::ConsistencyMode;

pub use diff::TopologyDiff;

/// The weight a replica gets when the document does not give one.
pub const DEFAULT_WEIGHT: u32 = 100;

/// The cluster as the operator last published it.
///
/// Deserializing (through serde or [`Topology::parse`]) also validates, so a `Topology` read
/// from a document always satisfies [`Topology::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct Topology {
    /// The `MySQLCluster` name; never empty.
    pub cluster: String,
    pub flavor: Flavor,
    /// Raised by the operator on every change; a proxy never goes back to a lower one.
    pub epoch: u64,
    pub state: TopologyState,
    /// Present exactly when `state` is [`TopologyState::Ready`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<Member>,
    pub replicas: Vec<Member>,
    /// The cluster's default consistency mode for reads that ask for none; a mode the proxy
    /// does not know makes the whole document invalid (it keeps following the previous one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<ConsistencyMode>,
    /// The whole cluster is read-only on purpose (`spec.readOnly`): the primary refuses writes
    /// with error 1290, and a proxy relays that at once instead of holding the write for a next
    /// primary, as it does while a primary turns read-only in a switchover. Absent means false
    /// (an older operator's document).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// One MySQL server of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Stable identity (the pod name in Kubernetes); unique within the topology.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Relative share of reads; 0 keeps the member out of read routing.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// The server family, which decides GTID syntax and the position functions the proxy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    Mariadb,
    Mysql,
}

/// Whether the cluster has a writable primary right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopologyState {
    /// A primary is present and takes writes.
    Ready,
    /// A switchover or failover is in progress: there is no primary and proxies hold writes.
    Switching,
}

/// Why a topology could not be read, parsed, validated or written.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("topology is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A field is missing, has the wrong type, or breaks a validation rule.
    #[error("topology field `{field}`: {reason}")]
    Field { field: String, reason: String },
    #[error("cannot read topology file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write topology file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl TopologyError {
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

impl Topology {
    /// Parses and validates a document. Unknown fields are ignored so that an older proxy
    /// keeps working with a newer operator.
    pub fn parse(bytes: &[u8]) -> Result<Self, TopologyError> {
        let value = serde_json::from_slice(bytes).map_err(TopologyError::Json)?;
        parse::topology_from_value(value)
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self, TopologyError> {
        let bytes = std::fs::read(path).map_err(|source| TopologyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes)
    }

    /// Checks the rules every published document must satisfy (see `docs/topology.md`).
    pub fn validate(&self) -> Result<(), TopologyError> {
        parse::validate(self)
    }

    /// The document as the operator publishes it: pretty JSON with a trailing newline.
    pub fn to_json_pretty(&self) -> String {
        // Serializing plain strings, integers and enums into a String cannot fail.
        let mut json = serde_json::to_string_pretty(self).unwrap_or_default();
        json.push('\n');
        json
    }

    /// Validates, then replaces `path` atomically: readers see the old document or the new
    /// one, never a partial write, because the rename happens within one directory.
    pub fn write_atomically(&self, path: &Path) -> Result<(), TopologyError> {
        self.validate()?;
        let write_error = |source| TopologyError::Write {
            path: path.to_owned(),
            source,
        };
        let tmp = temp_sibling(path).map_err(write_error)?;
        let written = write_and_sync(&tmp, self.to_json_pretty().as_bytes())
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            // Best effort: a leftover temp file is harmless but untidy.
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(write_error)
    }

    /// The primary (if any) followed by the replicas.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.primary.iter().chain(&self.replicas)
    }

    /// The replicas that take reads (weight above 0).
    pub fn readable_replicas(&self) -> impl Iterator<Item = &Member> {
        self.replicas.iter().filter(|m| m.weight > 0)
    }

    /// The member listening on `addr` ("host:port", IPv6 hosts in brackets). Host names
    /// compare case-insensitively; no name resolution happens.
    pub fn member_by_addr(&self, addr: &str) -> Option<&Member> {
        let (host, port) = split_addr(addr)?;
        self.members().find(|m| m.has_addr(host, port))
    }

    pub fn member_by_name(&self, name: &str) -> Option<&Member> {
        self.members().find(|m| m.name == name)
    }

    /// True while a switchover or failover is in progress and writes must be held.
    pub fn is_switching(&self) -> bool {
        self.state == TopologyState::Switching
    }

    /// True when the primary at `addr` ("host:port") is read-only on purpose: a write it
    /// refused will be refused by it again, and no other primary is coming.
    pub fn refuses_writes_at(&self, addr: &str) -> bool {
        self.read_only
            && self.state == TopologyState::Ready
            && self.primary.as_ref().is_some_and(|p| p.addr() == addr)
    }
}

impl Member {
    /// A member with the default weight.
    pub fn new(name: impl Into<String>, host: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            host: host.into(),
            port,
            weight: DEFAULT_WEIGHT,
        }
    }

    /// "host:port", with an IPv6 literal in brackets, ready for `TcpStream::connect`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether this member listens on `host` (brackets optional) and `port`.
    pub fn has_addr(&self, host: &str, port: u16) -> bool {
        self.port == port && unbracket(&self.host).eq_ignore_ascii_case(unbracket(host))
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mariadb => "mariadb",
            Self::Mysql => "mysql",
        })
    }
}

impl fmt::Display for TopologyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ready => "ready",
            Self::Switching => "switching",
        })
    }
}

impl TryFrom<serde_json::Value> for Topology {
    type Error = TopologyError;

    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        parse::topology_from_value(value)
    }
}

fn split_addr(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A fresh name next to `path`, so the final rename never crosses a filesystem.
fn temp_sibling(path: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.{unique}.tmp", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

fn write_and_sync(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Topology {
        Topology {
            cluster: "demo".into(),
            flavor: Flavor::Mariadb,
            epoch: 7,
            state: TopologyState::Ready,
            primary: Some(Member::new("demo-0", "127.0.0.1", 3306)),
            replicas: vec![
                Member::new("demo-1", "127.0.0.1", 3307),
                Member {
                    weight: 0,
                    ..Member::new("demo-2", "::1", 3308)
                },
            ],
            consistency: Some(ConsistencyMode::Strict),
            read_only: false,
        }
    }

    #[test]
    fn members_lists_primary_first() {
        let t = demo();
        let names: Vec<_> = t.members().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["demo-0", "demo-1", "demo-2"]);
    }

    #[test]
    fn members_without_primary_are_the_replicas() {
        let t = Topology {
            state: TopologyState::Switching,
            primary: None,
            ..demo()
        };
        assert_eq!(t.members().count(), 2);
        assert!(t.is_switching());
    }

    #[test]
    fn readable_replicas_skip_weight_zero() {
        let t = demo();
        let names: Vec<_> = t.readable_replicas().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["demo-1"]);
    }

    #[test]
    fn addr_brackets_ipv6() {
        let t = demo();
        assert_eq!(t.replicas[0].addr(), "127.0.0.1:3307");
        assert_eq!(t.replicas[1].addr(), "[::1]:3308");
    }

    #[test]
    fn member_by_addr_finds_members() {
        let t = demo();
        let name = |addr| t.member_by_addr(addr).map(|m| m.name.as_str());
        assert_eq!(name("127.0.0.1:3306"), Some("demo-0"));
        assert_eq!(name("127.0.0.1:3307"), Some("demo-1"));
        assert_eq!(name("[::1]:3308"), Some("demo-2"));
        assert_eq!(name("127.0.0.1:3309"), None);
        assert_eq!(name("127.0.0.1"), None);
        assert_eq!(name("127.0.0.1:x"), None);
    }

    #[test]
    fn member_by_addr_ignores_host_case() {
        let mut t = demo();
        t.replicas[0].host = "Demo-1.Demo".into();
        assert_eq!(
            t.member_by_addr("demo-1.demo:3307")
                .map(|m| m.name.as_str()),
            Some("demo-1")
        );
    }

    #[test]
    fn member_by_name_finds_primary_and_replicas() {
        let t = demo();
        assert_eq!(t.member_by_name("demo-0").map(|m| m.port), Some(3306));
        assert_eq!(t.member_by_name("demo-2").map(|m| m.port), Some(3308));
        assert!(t.member_by_name("demo-9").is_none());
    }

    #[test]
    fn json_round_trip() {
        let t = demo();
        let json = t.to_json_pretty();
        assert!(json.ends_with('\n'));
        assert_eq!(Topology::parse(json.as_bytes()).unwrap(), t);
        assert_eq!(serde_json::from_str::<Topology>(&json).unwrap(), t);
    }

    #[test]
    fn read_only_is_carried_when_true_and_false_when_absent() {
        let t = Topology {
            read_only: true,
            ..demo()
        };
        let json = t.to_json_pretty();
        assert!(json.contains("\"read_only\": true"), "{json}");
        assert_eq!(Topology::parse(json.as_bytes()).unwrap(), t);
        assert!(!demo().to_json_pretty().contains("read_only"));
        assert!(
            !Topology::parse(demo().to_json_pretty().as_bytes())
                .unwrap()
                .read_only
        );
        let addr = "127.0.0.1:3306";
        assert!(t.refuses_writes_at(addr));
        assert!(!t.refuses_writes_at("127.0.0.1:3307"), "another primary");
        assert!(!demo().refuses_writes_at(addr), "not read-only");
        let switching = Topology {
            state: TopologyState::Switching,
            primary: None,
            ..t
        };
        assert!(!switching.refuses_writes_at(addr));
    }

    #[test]
    fn switching_round_trip_omits_primary() {
        let t = Topology {
            state: TopologyState::Switching,
            primary: None,
            consistency: None,
            ..demo()
        };
        let json = t.to_json_pretty();
        assert!(!json.contains("primary"));
        assert!(!json.contains("consistency"));
        assert_eq!(Topology::parse(json.as_bytes()).unwrap(), t);
    }

    #[test]
    fn serde_deserialize_validates() {
        let err = serde_json::from_str::<Topology>(
            r#"{"cluster":"demo","flavor":"mysql","epoch":1,"state":"ready"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`primary`"), "{err}");
    }

    #[test]
    fn write_atomically_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topology.json");
        let mut t = demo();
        t.write_atomically(&path).unwrap();
        t.epoch = 8;
        t.write_atomically(&path).unwrap();
        assert_eq!(Topology::read(&path).unwrap(), t);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "temp files left behind: {files:?}");
    }

    #[test]
    fn write_atomically_refuses_invalid_topology() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topology.json");
        let t = Topology {
            primary: None,
            ..demo()
        };
        let err = t.write_atomically(&path).unwrap_err();
        assert!(matches!(err, TopologyError::Field { .. }), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn write_atomically_reports_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("topology.json");
        let err = demo().write_atomically(&path).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot write topology file"),
            "{err}"
        );
    }

    fn arb_topology() -> impl proptest::strategy::Strategy<Value = Topology> {
        use proptest::prelude::*;
        let member = ("[a-z0-9.:-]{1,20}", 0u32..=1000);
        (
            "[a-z][a-z0-9-]{0,20}",
            any::<bool>(),
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec(member, 0..6),
            proptest::option::of(prop_oneof![
                Just(ConsistencyMode::Strict),
                Just(ConsistencyMode::Session),
                Just(ConsistencyMode::Proxy),
                Just(ConsistencyMode::Eventual),
                (0u64..100_000).prop_map(|max_lag_ms| ConsistencyMode::Bounded { max_lag_ms }),
            ]),
        )
            .prop_map(|(cluster, mysql, epoch, ready, hosts, consistency)| {
                // Index-derived names and ports keep members distinct, as validation requires.
                let mut members = hosts.into_iter().enumerate().map(|(i, (host, weight))| {
                    let port = u16::try_from(1000 + i).unwrap_or(1);
                    Member {
                        weight,
                        ..Member::new(format!("m-{i}"), host, port)
                    }
                });
                let primary = if ready { members.next() } else { None };
                Topology {
                    cluster,
                    flavor: if mysql {
                        Flavor::Mysql
                    } else {
                        Flavor::Mariadb
                    },
                    epoch,
                    state: if primary.is_some() {
                        TopologyState::Ready
                    } else {
                        TopologyState::Switching
                    },
                    primary,
                    replicas: members.collect(),
                    consistency,
                    read_only: false,
                }
            })
    }

    proptest::proptest! {
        #[test]
        fn any_valid_topology_round_trips(t in arb_topology()) {
            proptest::prop_assert!(t.validate().is_ok());
            let parsed = Topology::parse(t.to_json_pretty().as_bytes());
            proptest::prop_assert_eq!(parsed.ok(), Some(t));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = Topology::parse(&bytes);
        }
    }

    #[test]
    fn read_reports_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Topology::read(&dir.path().join("nope.json")).unwrap_err();
        assert!(matches!(err, TopologyError::Read { .. }), "{err}");
    }
}
