use std::path::PathBuf;

/// Why the kit could not give a test its cluster.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error(
        "`{name}` was not found (looked in $PATH, /usr/sbin, /usr/local/mysql/bin and ${env}); \
         install it with `apt-get install mariadb-server` or set ${env} to its path"
    )]
    MissingBinary {
        name: &'static str,
        env: &'static str,
    },

    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },

    #[error(
        "mariadbd (member {member}) did not start: {reason}\n--- last lines of {log} ---\n{tail}"
    )]
    Start {
        member: usize,
        reason: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{what} did not happen within {secs:.1} s{detail}")]
    Timeout {
        what: String,
        secs: f64,
        detail: String,
    },

    #[error("SQL on member {member} failed: {source}")]
    Sql {
        member: usize,
        #[source]
        source: mysql_async::Error,
    },

    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Invalid(String),
}

impl KitError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> KitError {
        let path = path.into();
        move |source| KitError::Io { path, source }
    }
}

pub type Result<T, E = KitError> = std::result::Result<T, E>;
