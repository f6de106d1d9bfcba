//! `lagless-operator local`: a whole cluster on one machine, without Kubernetes.
//!
//! The same `MySQLCluster` YAML, the same orchestration core and the same proxy as in
//! Kubernetes; servers are `mariadbd` processes, the topology is a file the proxies watch,
//! and a supervisor process plays the part of the kubelet (restarting what crashes) and of
//! the operator (driving the orchestration). Everything lives in one state directory
//! ([`state::StateDir`]), so commands from other terminals find the cluster.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod apply;
pub mod archive;
pub mod backup;
pub mod cli;
pub mod console;
pub mod cordon;
pub mod daemon;
pub mod drill;
pub mod manifest;
pub mod mariadb;
pub mod pause;
pub mod pitr;
pub mod pool;
pub mod ports;
pub mod read_only;
pub use lagless_mariadbd::process;
pub mod process_table;
pub mod proxy_admin;
pub mod request;
pub mod restart;
pub mod scheduled;
pub mod seeder;
pub mod shared;
pub mod state;
pub mod status;
pub mod status_report;
pub mod supervisor;

use std::path::{Path, PathBuf};

/// Why a local command failed. Each message says what to do about it where that is known.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{path}: {message}", path = path.display())]
    Manifest { path: PathBuf, message: String },
    #[error(
        "port {port} (for {owner}) is in use ({detail}): stop what listens there, or choose \
         other ports with --base-port (members) and --proxy-port (proxies)"
    )]
    PortInUse {
        port: u16,
        owner: String,
        detail: String,
    },
    #[error(
        "no local cluster under {}; start one with `lagless-operator local up -f FILE`",
        .0.display()
    )]
    NoCluster(PathBuf),
    #[error("several local clusters under {} ({}): choose one with --name", .0.display(), .1)]
    Ambiguous(PathBuf, String),
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    /// A MariaDB program missing, or a server that did not start or answer.
    #[error(transparent)]
    Server(#[from] lagless_mariadbd::ServerError),
    #[error(
        "cluster {0} is already running (supervisor pid {1}); `lagless-operator local status` \
         shows it, `lagless-operator local down` stops it"
    )]
    AlreadyRunning(String, u32),
    #[error("cluster {0} is not running; start it with `lagless-operator local up`")]
    NotRunning(String),
    /// Options that cannot work together.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error("{0}")]
    Other(String),
}

impl LocalError {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + use<> {
        let path = path.to_path_buf();
        move |source| Self::Io { path, source }
    }

    /// 2 for input the user must fix, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Manifest { .. } | Self::Usage(_) | Self::NoCluster(_) | Self::Ambiguous(..) => 2,
            Self::Backup(crate::backup::BackupError::Location(_)) => 2,
            _ => 1,
        }
    }
}
