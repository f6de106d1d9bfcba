//! Full backups of a cluster: a `mariadb-backup` stream, compressed with zstd as it is read,
//! stored as one object beside a JSON manifest in a directory or an S3 bucket, and the way
//! back (fetched, checked, extracted and prepared). Nothing is staged on local disk on the way
//! out; on the way back only the extracted copy is written.
//!
//! [`location`] parses where backups go, [`store`] writes and reads objects there (a directory
//! or [`s3`], whose requests [`sigv4`] signs), [`pipeline`] moves the bytes, [`manifest`] holds
//! what a backup records and the decisions made from it, [`xbstream`] finds the backup's GTID
//! position in the stream as it passes.

pub mod archive;
pub mod archiver;
pub mod binlog;
pub mod location;
pub mod manifest;
pub mod pipeline;
pub mod s3;
pub mod schedule;
pub mod sigv4;
pub mod store;
pub mod take;
pub mod xbstream;

use crate::orchestrate::seed::SeedError;

/// Why a backup, a listing or a restore failed. Each names the place and, where it is known,
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A destination that cannot be parsed or used as given.
    #[error("{0}")]
    Location(String),
    /// The storage did not answer (refused, timed out, DNS).
    #[error("cannot reach {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    /// The storage refused the credentials or the request (HTTP 401/403).
    #[error(
        "{endpoint} refused the request ({code}: {message}): check the access key and secret \
         (--s3-credentials, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    )]
    Denied {
        endpoint: String,
        code: String,
        message: String,
    },
    #[error("{what} not found at {location}")]
    NotFound { what: String, location: String },
    /// Any other answer from the storage.
    #[error("{location}: {detail}")]
    Storage { location: String, detail: String },
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The stored object is not what its manifest describes: nothing is extracted from it.
    #[error(
        "backup {id} is corrupt: {detail}; it cannot be restored (choose another with --backup)"
    )]
    Corrupt { id: String, detail: String },
    #[error(
        "backup {id} is truncated: {got} bytes stored, its manifest says {expected}; it cannot be restored (choose another with --backup)"
    )]
    Truncated { id: String, expected: u64, got: u64 },
    #[error("{0}")]
    Manifest(String),
    #[error(transparent)]
    Copy(#[from] SeedError),
    /// No member can give a backup now.
    #[error("{0}")]
    NoSource(String),
}

impl BackupError {
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + use<> {
        let path = path.to_path_buf();
        move |source| Self::Io { path, source }
    }
}
