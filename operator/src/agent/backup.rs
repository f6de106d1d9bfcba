//! The agent's `mariadb-backup --backup`. The account is not given on the command line, which
//! every process that can see the backup reads (`ps`, `/proc/<pid>/cmdline`), but in an
//! option file (`--defaults-extra-file`) of mode 0600, in a directory of mode 0700 that holds
//! the backup's scratch files too and is removed when the backup ends.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout, Command};

use crate::orchestrate::observe::Credentials;
use crate::orchestrate::seed::{Donor, SeedError};

const COMMAND: &str = "mariadb-backup --backup";

/// The option file, in the backup's private directory.
const OPTION_FILE: &str = "client.cnf";

/// The backup's `--target-dir`, in the private directory: a few files, nothing of the copy.
const TARGET_DIR: &str = "target";

/// The most of the backup's stderr kept for its error message.
const STDERR_TAIL: usize = 64 * 1024;

/// A running backup: read the stream from `stdout`, then [`Backup::finish`].
pub struct Backup {
    child: Child,
    pub stdout: ChildStdout,
    stderr: tokio::task::JoinHandle<Vec<u8>>,
    dir: PrivateDir,
}

impl Backup {
    /// Waits for the backup to exit and removes its directory, option file included. An error
    /// means the stream read from `stdout` is not a usable backup.
    pub async fn finish(mut self) -> Result<(), SeedError> {
        // Closing our end first: a backup still writing gets EPIPE instead of blocking forever.
        drop(self.stdout);
        let status = self.child.wait().await.map_err(|source| SeedError::Io {
            path: self.dir.0.clone(),
            source,
        });
        let stderr = self.stderr.await.unwrap_or_default();
        drop(self.dir);
        check_status(status?, &stderr)
    }
}

/// A directory only this user may enter; removed, with what it holds, when dropped (also when
/// the request is dropped midway).
struct PrivateDir(PathBuf);

impl PrivateDir {
    /// Creates `path` afresh. Something already there is a leftover of an agent killed
    /// mid-backup (the temporary directory outlives a container restart, and the name repeats
    /// with the process id): removed first, never reused, as its mode is not known.
    async fn create(path: &Path) -> std::io::Result<Self> {
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
pub fn option_file(creds: &Credentials) -> String {
    format!(
        "[client]\nuser={}\npassword={}\n",
        quoted(&creds.user),
        quoted(&creds.password)
    )
}

/// The backup's arguments: no account, only where to read it. `--defaults-extra-file` is
/// honoured only as the first argument.
pub fn backup_args(donor: &Donor, option_file: &Path, target: &Path) -> Vec<OsString> {
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

/// Starts `mariadb-backup --backup --stream=xbstream` of the local server. `dir` (created, and
/// removed by [`Backup::finish`]) holds the option file and the backup's scratch files.
pub async fn start(donor: &Donor, creds: &Credentials, dir: &Path) -> Result<Backup, SeedError> {
    start_with(Command::new("mariadb-backup"), donor, creds, dir).await
}

/// [`start`] with `command` as the program (and any arguments before the backup's).
async fn start_with(
    mut command: Command,
    donor: &Donor,
    creds: &Credentials,
    dir: &Path,
) -> Result<Backup, SeedError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SeedError::Io { path, source }
    };
    let private = PrivateDir::create(dir).await.map_err(io(dir))?;
    let options = dir.join(OPTION_FILE);
    let target = dir.join(TARGET_DIR);
    tokio::fs::DirBuilder::new()
        .mode(0o700)
        .create(&target)
        .await
        .map_err(io(&target))?;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&options)
        .await
        .map_err(io(&options))?;
    file.write_all(option_file(creds).as_bytes())
        .await
        .map_err(io(&options))?;
    file.flush().await.map_err(io(&options))?;
    drop(file);
    let mut child = command
        .args(backup_args(donor, &options, &target))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SeedError::Spawn {
            command: COMMAND,
            source,
        })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(SeedError::Spawn {
            command: COMMAND,
            source: std::io::Error::other("no pipe"),
        });
    };
    // mariadb-backup logs a lot: drained as it goes so it never blocks on a full pipe.
    let stderr = tokio::spawn(tail(stderr));
    Ok(Backup {
        child,
        stdout,
        stderr,
        dir: private,
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

fn check_status(status: std::process::ExitStatus, stderr: &[u8]) -> Result<(), SeedError> {
    if status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(SeedError::Failed {
        command: COMMAND,
        status: status.to_string(),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
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
            option_file(&creds()),
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
        let mut backup = start_with(fake_backup(exit), &donor(), &creds(), dir)
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
        assert!(out.contains(&option_file(&creds())), "{out}");
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
}
