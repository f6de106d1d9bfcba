//! Seeding a new or wiped member with a copy of a donor's data: `mariadb-backup --backup
//! --stream=xbstream` on the donor, `mbstream -x` into the new data directory, `--prepare`,
//! then replication from the donor's GTID position. The copy is streamed (nothing is staged on
//! the donor's disk) and its progress is reported in bytes.
//!
//! The pieces are public so the Kubernetes agent ([`crate::agent`]) runs the same code:
//! [`backup_stream`] on the donor, [`extract`] and [`prepare`] on the new member, over HTTP;
//! [`seed`] composes them on one machine. No password is ever on a command line: the backup
//! reads the account from a private option file, and the other steps need none.

use std::ffi::{OsStr, OsString};
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
    /// The CA the donor server's certificate must chain to: the backup's connection then
    /// uses TLS and verifies the server's name.
    pub tls_ca: Option<PathBuf>,
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
    // Beside the target, not in it: the copy must hold nothing but the backup.
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

/// The backup, as named in errors.
const BACKUP: &str = "mariadb-backup --backup";

/// The option file holding the account, in the backup's private directory.
const OPTION_FILE: &str = "client.cnf";

/// The backup's `--target-dir`, in the private directory: a few files, nothing of the copy.
const TARGET_DIR: &str = "target";

/// A running `mariadb-backup --backup --stream=xbstream`: read the stream from `stdout`, then
/// [`BackupStream::finish`] to learn whether it was complete.
pub struct BackupStream {
    child: Child,
    pub stdout: ChildStdout,
    stderr: tokio::task::JoinHandle<Vec<u8>>,
    dir: PrivateDir,
}

impl BackupStream {
    /// Waits for the backup to exit and removes its directory, option file included. An error
    /// means the stream read from `stdout` is not a usable backup.
    pub async fn finish(mut self) -> Result<(), SeedError> {
        // Closing our end first: a backup still writing gets EPIPE instead of blocking forever.
        drop(self.stdout);
        let status = self.child.wait().await.map_err(io(&self.dir.0));
        let stderr = self.stderr.await.unwrap_or_default();
        drop(self.dir);
        check_status(BACKUP, status?, &stderr)
    }
}

/// Starts `mariadb-backup --backup --stream=xbstream` of the donor. The backup reads the
/// donor's data directory itself, so it runs on the donor's machine.
///
/// The account is never on the backup's command line, which any process may read
/// (`/proc/<pid>/cmdline`), but in an option file of mode 0600 in `dir`: a directory made
/// afresh with mode 0700 (whatever is already there is removed first), which also holds the
/// backup's few temporary files and is removed by [`BackupStream::finish`], or when the
/// stream is dropped unfinished.
pub async fn backup_stream(
    donor: &Donor,
    creds: &Credentials,
    dir: &Path,
) -> Result<BackupStream, SeedError> {
    backup_stream_with(Command::new("mariadb-backup"), donor, creds, dir).await
}

/// [`backup_stream`] with `command` as the program (and any arguments before the backup's).
async fn backup_stream_with(
    mut command: Command,
    donor: &Donor,
    creds: &Credentials,
    dir: &Path,
) -> Result<BackupStream, SeedError> {
    // Removes the directory again on every error below.
    let private = PrivateDir::create(dir).await.map_err(io(dir))?;
    let options = dir.join(OPTION_FILE);
    let target = dir.join(TARGET_DIR);
    tokio::fs::DirBuilder::new()
        .mode(0o700)
        .create(&target)
        .await
        .map_err(io(&target))?;
    write_private(
        &options,
        option_file(creds, donor.tls_ca.as_deref()).as_bytes(),
    )
    .await
    .map_err(io(&options))?;
    let mut child = command
        .args(backup_args(donor, &options, &target))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SeedError::Spawn {
            command: BACKUP,
            source,
        })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(SeedError::Spawn {
            command: BACKUP,
            source: std::io::Error::other("no pipe"),
        });
    };
    // mariadb-backup logs a lot: drained as it goes so it never blocks on a full pipe.
    let stderr = tokio::spawn(tail(stderr));
    Ok(BackupStream {
        child,
        stdout,
        stderr,
        dir: private,
    })
}

/// Writes a new file of mode 0600 (refused if the name is taken).
pub(crate) async fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await?;
    file.write_all(bytes).await?;
    file.flush().await
}

/// A directory only this user may enter; removed, with what it holds, when dropped (also when
/// a backup is abandoned midway).
pub(crate) struct PrivateDir(PathBuf);

impl PrivateDir {
    /// Creates `path` afresh. Something already there is a leftover of a process killed
    /// mid-backup (a temporary directory outlives a container restart, and names repeat):
    /// removed first, never reused, as its mode and contents are not known.
    pub(crate) async fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        match tokio::fs::remove_dir_all(path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // Exclusive: fails if anything took the name since.
        tokio::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .await?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An option file value, double-quoted: the option file reader takes `#` outside quotes for a
/// comment, trims spaces, and reads `\\`, `\"`, `\n`, `\r`, `\t` and `\b` as escapes.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The option file: the account in `[client]`, the group every mariadb-backup version reads
/// its connection options from.
pub(crate) fn option_file(creds: &Credentials, tls_ca: Option<&Path>) -> String {
    let mut out = format!(
        "[client]\nuser={}\npassword={}\n",
        quoted(&creds.user),
        quoted(&creds.password)
    );
    if let Some(ca) = tls_ca {
        out.push_str(&format!(
            "ssl-ca={}\nssl-verify-server-cert\n",
            quoted(&ca.to_string_lossy())
        ));
    }
    out
}

/// The backup's arguments: no account, only where to read it. `--defaults-extra-file` is
/// honoured only as the first argument.
fn backup_args(donor: &Donor, option_file: &Path, target: &Path) -> Vec<OsString> {
    let with = |flag: &str, value: &OsStr| {
        let mut arg = OsString::from(flag);
        arg.push(value);
        arg
    };
    vec![
        with("--defaults-extra-file=", option_file.as_os_str()),
        "--backup".into(),
        "--stream=xbstream".into(),
        with("--datadir=", donor.datadir.as_os_str()),
        with("--target-dir=", target.as_os_str()),
        format!("--host={}", donor.host).into(),
        format!("--port={}", donor.port).into(),
    ]
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const PASSWORD: &str = "s3cr#t \"pw\" \\ 'x'";

    fn donor() -> Donor {
        Donor {
            host: "127.0.0.1".into(),
            port: 3306,
            datadir: "/var/lib/mysql".into(),
            tls_ca: None,
        }
    }

    fn creds() -> Credentials {
        Credentials {
            user: "lagless_admin".into(),
            password: PASSWORD.into(),
        }
    }

    #[test]
    fn the_command_line_holds_no_account() {
        let args = backup_args(
            &donor(),
            Path::new("/tmp/b/client.cnf"),
            Path::new("/tmp/b/target"),
        );
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[0], "--defaults-extra-file=/tmp/b/client.cnf");
        assert_eq!(
            args[1..],
            [
                "--backup",
                "--stream=xbstream",
                "--datadir=/var/lib/mysql",
                "--target-dir=/tmp/b/target",
                "--host=127.0.0.1",
                "--port=3306",
            ]
        );
        for arg in &args {
            assert!(!arg.contains("s3cr"), "{arg}");
            assert!(
                !arg.starts_with("--password") && !arg.starts_with("--user"),
                "{arg}"
            );
        }
    }

    #[test]
    fn option_file_values_are_quoted_and_escaped() {
        assert_eq!(
            option_file(&creds(), None),
            "[client]\nuser=\"lagless_admin\"\npassword=\"s3cr#t \\\"pw\\\" \\\\ 'x'\"\n"
        );
        assert_eq!(quoted("a\nb\tc\rd"), r#""a\nb\tc\rd""#);
        assert_eq!(quoted(""), r#""""#);
    }

    /// A stand-in for mariadb-backup, run by `sh`: prints its arguments, the option file and
    /// the modes of the file and its directory, then exits with `exit`.
    fn fake_backup(exit: u8) -> Command {
        let script = format!(
            r#"file="${{1#--defaults-extra-file=}}"
printf 'args: %s\n' "$*"
printf 'file-mode: %s\n' "$(stat -c %a "$file")"
printf 'dir-mode: %s\n' "$(stat -c %a "$(dirname "$file")")"
cat "$file"
echo "backup said no" >&2
exit {exit}
"#
        );
        let mut command = Command::new("sh");
        command.arg("-c").arg(script).arg("fake-backup");
        command
    }

    async fn run(exit: u8, dir: &Path) -> (String, Result<(), SeedError>) {
        let mut backup = backup_stream_with(fake_backup(exit), &donor(), &creds(), dir)
            .await
            .unwrap();
        let mut out = String::new();
        backup.stdout.read_to_string(&mut out).await.unwrap();
        (out, backup.finish().await)
    }

    #[tokio::test]
    async fn the_account_is_read_from_a_private_file_removed_afterwards() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("backup-1");
        let (out, finished) = run(0, &dir).await;
        finished.unwrap();
        let args = out.lines().next().unwrap();
        assert!(args.starts_with("args: --defaults-extra-file="), "{out}");
        assert!(!args.contains("s3cr"), "{out}");
        assert!(out.contains("file-mode: 600\n"), "{out}");
        assert!(out.contains("dir-mode: 700\n"), "{out}");
        assert!(out.contains(&option_file(&creds(), None)), "{out}");
        assert!(!dir.exists(), "the option file outlived the backup");
    }

    #[tokio::test]
    async fn a_failed_backup_is_an_error_and_leaves_no_file() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("backup-2");
        let (_, finished) = run(3, &dir).await;
        match finished {
            Err(SeedError::Failed { stderr, .. }) => assert_eq!(stderr, "backup said no"),
            other => panic!("{other:?}"),
        }
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn a_leftover_directory_is_replaced_not_reused() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("backup-3");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(dir.join("client.cnf"), "[client]\nuser=someone-else\n").unwrap();
        let (out, finished) = run(0, &dir).await;
        finished.unwrap();
        assert!(out.contains("dir-mode: 700\n"), "{out}");
        assert!(!out.contains("someone-else"), "{out}");
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn a_backup_dropped_unfinished_leaves_no_file() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("backup-4");
        let backup = backup_stream_with(fake_backup(0), &donor(), &creds(), &dir)
            .await
            .unwrap();
        assert!(dir.join(OPTION_FILE).exists());
        drop(backup);
        assert!(!dir.exists());
    }
}
