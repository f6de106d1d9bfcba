//! Seeding a new or wiped member with a copy of a donor's data: `mariadb-backup --backup
//! --stream=xbstream` on the donor, `mbstream -x` into the new data directory, `--prepare`,
//! then replication from the donor's GTID position. The copy is streamed (nothing is staged on
//! the donor's disk) and its progress is reported in bytes.
//!
//! The pieces are public so the Kubernetes agent ([`crate::agent`]) runs the same code:
//! [`backup_stream`] on the donor, [`extract_and_prepare`] on the new member, over HTTP;
//! [`seed`] composes them on one machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout, Command};

use super::observe::Credentials;

/// Where the copy comes from.
#[derive(Debug, Clone)]
pub struct Donor {
    pub host: String,
    pub port: u16,
    /// The donor's data directory (mariadb-backup reads the files itself).
    pub datadir: PathBuf,
}

/// What a seeding did.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub bytes: u64,
    pub elapsed: Duration,
    /// The donor's GTID position at the copy's consistent point: replicate from here.
    pub gtid_position: String,
}

impl SeedReport {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1_048_576.0 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("`{command}` could not start: {source}")]
    Spawn {
        command: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: &'static str,
        status: String,
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the backup holds no GTID position ({0})")]
    NoPosition(PathBuf),
}

/// Copies the donor into `target` (which must be empty or absent) and prepares it.
/// `progress` counts the bytes streamed so far, for whoever reports them.
pub async fn seed(
    donor: &Donor,
    creds: &Credentials,
    target: &Path,
    progress: Arc<AtomicU64>,
) -> Result<SeedReport, SeedError> {
    let started = Instant::now();
    tokio::fs::create_dir_all(target)
        .await
        .map_err(io(target))?;
    let scratch = target.with_extension("seed-tmp");
    let mut backup = backup_stream(donor, creds, &scratch).await?;
    let extracted = extract(&mut backup.stdout, target, progress.clone()).await;
    // The backup's own failure explains a broken stream better than the extraction's.
    backup.finish().await?;
    extracted?;
    let gtid_position = prepare(target).await?;
    Ok(SeedReport {
        bytes: progress.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        gtid_position,
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SeedError + use<> {
    let path = path.to_path_buf();
    move |source| SeedError::Io { path, source }
}

/// The most of a command's stderr kept for its error message.
const STDERR_TAIL: usize = 64 * 1024;

/// A running `mariadb-backup --backup --stream=xbstream`: read the stream from `stdout`, then
/// [`BackupStream::finish`] to learn whether it was complete.
pub struct BackupStream {
    child: Child,
    pub stdout: ChildStdout,
    stderr: tokio::task::JoinHandle<Vec<u8>>,
    scratch: PathBuf,
}

impl BackupStream {
    /// Waits for the backup to exit and removes its scratch directory. An error means the
    /// stream read from `stdout` is not a usable backup.
    pub async fn finish(mut self) -> Result<(), SeedError> {
        // Closing our end first: a backup still writing gets EPIPE instead of blocking forever.
        drop(self.stdout);
        let status = self.child.wait().await.map_err(io(&self.scratch));
        let stderr = self.stderr.await.unwrap_or_default();
        let _ = tokio::fs::remove_dir_all(&self.scratch).await;
        check_status("mariadb-backup --backup", status?, &stderr)
    }
}

/// Starts `mariadb-backup --backup --stream=xbstream` of the donor. The backup reads the
/// donor's data directory itself, so it runs on the donor's machine; `scratch` (created,
/// removed by [`BackupStream::finish`]) holds its few temporary files, nothing of the copy.
pub async fn backup_stream(
    donor: &Donor,
    creds: &Credentials,
    scratch: &Path,
) -> Result<BackupStream, SeedError> {
    tokio::fs::create_dir_all(scratch)
        .await
        .map_err(io(scratch))?;
    let mut child = Command::new("mariadb-backup")
        .arg("--backup")
        .arg("--stream=xbstream")
        .arg(format!("--datadir={}", donor.datadir.display()))
        .arg(format!("--target-dir={}", scratch.display()))
        .arg(format!("--host={}", donor.host))
        .arg(format!("--port={}", donor.port))
        .arg(format!("--user={}", creds.user))
        .arg(format!("--password={}", creds.password))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SeedError::Spawn {
            command: "mariadb-backup --backup",
            source,
        })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(SeedError::Spawn {
            command: "mariadb-backup --backup",
            source: std::io::Error::other("no pipe"),
        });
    };
    // mariadb-backup logs a lot: drained as it goes so it never blocks on a full pipe.
    let stderr = tokio::spawn(tail(stderr));
    Ok(BackupStream {
        child,
        stdout,
        stderr,
        scratch: scratch.to_path_buf(),
    })
}

async fn tail(mut from: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > STDERR_TAIL {
            kept.drain(..kept.len() - STDERR_TAIL);
        }
    }
    kept
}

/// Extracts an xbstream read from `from` into `target` with `mbstream -x`, counting the bytes
/// in `progress`. Returns the bytes extracted. The copy still needs [`prepare`].
pub async fn extract(
    mut from: impl AsyncRead + Unpin,
    target: &Path,
    progress: Arc<AtomicU64>,
) -> Result<u64, SeedError> {
    let mut extract = Command::new("mbstream")
        .arg("-x")
        .arg("-C")
        .arg(target)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SeedError::Spawn {
            command: "mbstream -x",
            source,
        })?;
    let Some(mut to) = extract.stdin.take() else {
        return Err(SeedError::Spawn {
            command: "mbstream -x",
            source: std::io::Error::other("no pipe"),
        });
    };
    // Relay the stream ourselves so its size is known as it goes.
    let pump = async move {
        let mut total = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n]).await?;
            total += n as u64;
            progress.fetch_add(n as u64, Ordering::Relaxed);
        }
        to.shutdown().await?;
        Ok::<u64, std::io::Error>(total)
    };
    let (pumped, extract_out) = tokio::join!(pump, extract.wait_with_output());
    let extract_out = extract_out.map_err(io(target))?;
    let total = pumped.map_err(io(target))?;
    check_status("mbstream -x", extract_out.status, &extract_out.stderr)?;
    Ok(total)
}

/// `mariadb-backup --prepare` of an extracted copy; returns the GTID position it is
/// consistent with.
pub async fn prepare(target: &Path) -> Result<String, SeedError> {
    let prepare = Command::new("mariadb-backup")
        .arg("--prepare")
        .arg(format!("--target-dir={}", target.display()))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| SeedError::Spawn {
            command: "mariadb-backup --prepare",
            source,
        })?;
    check_status("mariadb-backup --prepare", prepare.status, &prepare.stderr)?;
    backup_position(target).await
}

/// Extracts an xbstream read from `from` into `target` and prepares it: [`extract`] then
/// [`prepare`]. Returns the bytes and the GTID position.
pub async fn extract_and_prepare(
    from: impl AsyncRead + Unpin,
    target: &Path,
    progress: Arc<AtomicU64>,
) -> Result<(u64, String), SeedError> {
    let bytes = extract(from, target, progress).await?;
    Ok((bytes, prepare(target).await?))
}

fn check_status(
    command: &'static str,
    status: std::process::ExitStatus,
    stderr: &[u8],
) -> Result<(), SeedError> {
    if status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(SeedError::Failed {
        command,
        status: status.to_string(),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

/// The GTID position the prepared backup in `target` is consistent with: the third field of
/// `mariadb_backup_binlog_info` (file, offset, GTID); empty when the donor had written no
/// GTID yet.
pub async fn backup_position(target: &Path) -> Result<String, SeedError> {
    for name in ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"] {
        let path = target.join(name);
        if let Ok(text) = tokio::fs::read_to_string(&path).await {
            if let Some(gtid) = text.split_whitespace().nth(2) {
                return Ok(gtid.to_string());
            }
            // A donor with an empty binary log has no GTID yet.
            return Ok(String::new());
        }
    }
    Err(SeedError::NoPosition(target.to_path_buf()))
}
