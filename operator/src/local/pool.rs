//! Tenant pools on one machine: a `MySQLTenantPool` run as ordinary local clusters (one
//! supervisor each, started from the pool's state directory) plus the pool's own supervisor,
//! which keeps the directory, the pool document and the pool's proxies.
//!
//! ```text
//! <dir>/pool.yaml           the MySQLTenantPool as last given to `up`
//! <dir>/settings.json       ports and the number of tenant clusters (kept across restarts)
//! <dir>/credentials.json    one set of accounts for every cluster (mode 0600)
//! <dir>/pool.json           the pool document the proxies follow
//! <dir>/status.json         the pool supervisor's view: loads, proxies, events
//! <dir>/supervisor.lock     held by the running pool supervisor (flock)
//! <dir>/operator.log        the pool supervisor's log
//! <dir>/template/           the data directory every member of every cluster starts from
//! <dir>/tls/                with TLS: one CA and certificate for every cluster and proxy
//! <dir>/clusters/<name>/    an ordinary cluster state directory per cluster
//! <dir>/proxies/<n>/        proxy.log
//! ```

pub mod cli;
pub mod cluster_dirs;
pub mod layout;
pub mod rebalancer;
pub mod status;
pub mod supervisor;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::StateDir;

/// Paths inside a pool's state directory.
#[derive(Debug, Clone)]
pub struct PoolDir {
    root: PathBuf,
}

impl PoolDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Whether `dir` holds a pool (rather than a cluster).
    pub fn is_pool(dir: &Path) -> bool {
        dir.join("pool.yaml").is_file()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn manifest(&self) -> PathBuf {
        self.root.join("pool.yaml")
    }
    pub fn settings(&self) -> PathBuf {
        self.root.join("settings.json")
    }
    pub fn credentials(&self) -> PathBuf {
        self.root.join("credentials.json")
    }
    pub fn document(&self) -> PathBuf {
        self.root.join("pool.json")
    }
    pub fn status(&self) -> PathBuf {
        self.root.join("status.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("supervisor.lock")
    }
    pub fn pid(&self) -> PathBuf {
        self.root.join("supervisor.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("operator.log")
    }
    pub fn template(&self) -> PathBuf {
        self.root.join("template")
    }
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn proxy(&self, index: usize) -> PathBuf {
        self.root.join("proxies").join(index.to_string())
    }
    pub fn clusters(&self) -> PathBuf {
        self.root.join("clusters")
    }
    /// Where `tenant move` keeps its records and locks.
    pub fn moves(&self) -> PathBuf {
        self.root.join("moves")
    }
    /// The state directory of the pool's cluster `name`.
    pub fn cluster(&self, name: &str) -> StateDir {
        StateDir::new(self.clusters().join(name))
    }

    /// The clusters that have a state directory here, by name.
    pub fn cluster_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.clusters())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().join("cluster.yaml").is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Whether the pool's supervisor runs now.
    pub fn running(&self) -> bool {
        super::process::FileLock::is_held(&self.lock())
    }

    /// The running pool supervisor's PID, if one runs.
    pub fn supervisor_pid(&self) -> Option<u32> {
        super::daemon::running_pid(&self.lock(), &self.pid())
    }
}

/// Choices made at the first `up` and kept, so restarts use the same ports and clusters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSettings {
    pub pool: String,
    /// The directory's members listen from here; tenant cluster `i`'s from
    /// `base_port + 10 * (i + 1)`.
    pub base_port: u16,
    /// Proxy `i` listens on `proxy_port + 2i`, its admin HTTP endpoint on the port after.
    pub proxy_port: u16,
    /// Tenant clusters made so far (growth adds to it).
    pub clusters: u32,
}

impl PoolSettings {
    /// Proxy `index`'s SQL and admin HTTP ports.
    pub fn proxy_ports(&self, index: usize) -> Option<(u16, u16)> {
        super::state::proxy_ports(self.proxy_port, index)
    }
}

/// The records `tenant move` keeps, by tenant; unreadable ones are skipped.
pub fn read_moves(dir: &Path) -> Vec<crate::pool::moves::MoveRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut moves: Vec<crate::pool::moves::MoveRecord> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| super::state::read_json(&p).ok())
        .collect();
    moves.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    moves
}
