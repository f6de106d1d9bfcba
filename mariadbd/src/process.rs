//! Child processes of the local runtime, and the lock that makes one supervisor per cluster.
//!
//! Servers and proxies are spawned from one long-lived thread with `PR_SET_PDEATHSIG`: the
//! kernel signals the child when the *thread* that forked it ends, so forking from runtime
//! worker threads (which come and go) would kill servers at random. With a dedicated thread the
//! children die exactly when the supervisor does, even on `kill -9`, and nothing is left behind.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

type Reply = mpsc::Sender<std::io::Result<Child>>;

static SPAWNER: OnceLock<Mutex<mpsc::Sender<(Command, Reply)>>> = OnceLock::new();

/// Spawns `cmd` so that the child is killed when this process ends.
pub fn spawn_tied(cmd: Command) -> std::io::Result<Child> {
    let sender = match SPAWNER.get() {
        Some(sender) => sender,
        None => {
            let (tx, rx) = mpsc::channel::<(Command, Reply)>();
            std::thread::Builder::new()
                .name("lagless-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(spawn_with_deathsig(&mut cmd));
                    }
                })?;
            // A racing caller may have installed its own thread; either works.
            SPAWNER.get_or_init(|| Mutex::new(tx))
        }
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

fn spawn_with_deathsig(cmd: &mut Command) -> std::io::Result<Child> {
    // SAFETY: getpid is async-signal-safe and has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions
    // (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Spawns `cmd` in a session of its own, so it outlives the terminal that started it.
pub fn spawn_detached(mut cmd: Command) -> std::io::Result<Child> {
    // SAFETY: setsid is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub fn signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    if pid <= 0 {
        return Err(std::io::Error::other("not a process id"));
    }
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Whether a process with this PID exists (zombies included).
pub fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether this process runs as root (mariadbd then needs `--user=root`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// An exclusive advisory lock on a file, held while this value lives. The kernel drops it when
/// the process dies, so a crashed supervisor never leaves a stale lock behind.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock, or returns `Ok(None)` when another process holds it.
    pub fn try_acquire(path: &Path) -> std::io::Result<Option<Self>> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(Self { _file: file }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(err)
        }
    }

    /// Whether some process holds the lock on `path` now.
    pub fn is_held(path: &Path) -> bool {
        match Self::try_acquire(path) {
            Ok(Some(_probe)) => false,
            Ok(None) => true,
            Err(_) => false,
        }
    }
}
