//! Seeding a new or wiped member with a copy of a donor's data: `mariadb-backup --backup
//! --stream=xbstream` on the donor, `mbstream -x` into the new data directory, `--prepare`,
//! then replication from the donor's GTID position. The copy is streamed (nothing is staged on
//! the donor's disk) and its progress is reported in bytes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

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
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SeedError::Io { path, source }
    };
    tokio::fs::create_dir_all(target)
        .await
        .map_err(io(target))?;
    let scratch = target.with_extension("seed-tmp");
    tokio::fs::create_dir_all(&scratch)
        .await
        .map_err(io(&scratch))?;
    let mut backup = Command::new("mariadb-backup")
        .arg("--backup")
        .arg("--stream=xbstream")
        .arg(format!("--datadir={}", donor.datadir.display()))
        .arg(format!("--target-dir={}", scratch.display()))
        .arg(format!("--host={}", donor.host))
        .arg(format!("--port={}", donor.port))
        .arg(format!("--user={}", creds.user))
        .arg(format!("--password={}", creds.password))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SeedError::Spawn {
            command: "mariadb-backup --backup",
            source,
        })?;
    let mut extract = Command::new("mbstream")
        .arg("-x")
        .arg("-C")
        .arg(target)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SeedError::Spawn {
            command: "mbstream -x",
            source,
        })?;
    let (Some(mut from), Some(mut to)) = (backup.stdout.take(), extract.stdin.take()) else {
        return Err(SeedError::Spawn {
            command: "mariadb-backup --backup",
            source: std::io::Error::other("no pipe"),
        });
    };
    // Relay the stream ourselves so its size is known as it goes.
    let counter = progress.clone();
    let pump = async move {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n]).await?;
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        to.shutdown().await
    };
    let (pumped, backup_out, extract_out) =
        tokio::join!(pump, backup.wait_with_output(), extract.wait_with_output());
    let backup_out = backup_out.map_err(io(&donor.datadir))?;
    check("mariadb-backup --backup", &backup_out)?;
    let extract_out = extract_out.map_err(io(target))?;
    check("mbstream -x", &extract_out)?;
    pumped.map_err(io(target))?;
    let _ = tokio::fs::remove_dir_all(&scratch).await;

    let prepare = Command::new("mariadb-backup")
        .arg("--prepare")
        .arg(format!("--target-dir={}", target.display()))
        .output()
        .await
        .map_err(|source| SeedError::Spawn {
            command: "mariadb-backup --prepare",
            source,
        })?;
    check("mariadb-backup --prepare", &prepare)?;
    let gtid_position = backup_position(target).await?;
    Ok(SeedReport {
        bytes: progress.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        gtid_position,
    })
}

fn check(command: &'static str, out: &std::process::Output) -> Result<(), SeedError> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(SeedError::Failed {
        command,
        status: out.status.to_string(),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

/// The GTID position the backup is consistent with: the third field of
/// `mariadb_backup_binlog_info` (file, offset, GTID).
async fn backup_position(target: &Path) -> Result<String, SeedError> {
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
