//! What the `local` commands print about a supervisor, a cluster's or a pool's: the steps of
//! its start, the live view of `up`, `status`, and the waits for a start or a stop.

use std::io::{IsTerminal, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::LocalError;
use super::mariadb;
use super::process::spawn_detached;
use super::state::read_json;
use super::status::{Shown, clock};

/// Prints the start's steps not printed yet, in order.
pub fn print_new_steps(s: &impl Shown, shown: &mut usize) {
    for step in s.progress().iter().skip(*shown) {
        println!("{step} ...");
    }
    *shown = (*shown).max(s.progress().len());
}

/// The foreground display: progress lines while starting, the banner once up, then a
/// redrawn status table on a terminal (or new events as lines otherwise). `what` is the
/// `cluster` or the `pool` that Ctrl-C stops.
pub async fn live_view<S: Shown>(
    current: impl Fn() -> S,
    banner: impl Fn(&S) -> String,
    what: &str,
    mut done: watch::Receiver<bool>,
) {
    let tty = std::io::stdout().is_terminal();
    let mut steps_shown = 0;
    let mut printed_events = 0u64;
    let mut shown_banner: Option<String> = None;
    loop {
        let s = current();
        if shown_banner.is_none() {
            print_new_steps(&s, &mut steps_shown);
        }
        if s.phase() == "running" {
            let text = shown_banner.get_or_insert_with(|| {
                let b = banner(&s);
                if !tty {
                    println!("{b}");
                }
                b
            });
            if tty {
                print!(
                    "\x1b[H\x1b[2J{text}\n{}\n(Ctrl-C stops the {what}; the data is kept)\n",
                    s.render(8)
                );
            } else {
                for e in s.events().iter().filter(|e| e.unix_ms > printed_events) {
                    println!("{}  {}", clock(e.unix_ms), e.message);
                }
            }
        }
        if let Some(e) = s.events().last() {
            printed_events = printed_events.max(e.unix_ms);
        }
        let _ = std::io::stdout().flush();
        if *done.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = done.changed() => {}
        }
    }
}

/// Starts the supervisor of the state directory `root` in the background (its output appended
/// to `log`) and waits until the status file `status` says it runs; then prints the banner.
/// `who` names what did not start, should the supervisor exit first.
pub fn detach<S: Shown>(
    root: &Path,
    log: &Path,
    status: &Path,
    who: &str,
    banner: impl Fn(&S) -> Result<String, LocalError>,
) -> Result<(), LocalError> {
    let mut cmd = super::process_table::own_command(log)?;
    cmd.arg("local")
        .arg("--state-dir")
        .arg(root)
        .args(["up", "--supervise"]);
    let mut child = spawn_detached(cmd).map_err(|e| LocalError::Command {
        command: "lagless-operator local up --supervise".into(),
        detail: e.to_string(),
    })?;
    let began = Instant::now();
    let mut steps_shown = 0;
    loop {
        if let Ok(s) = read_json::<S>(status) {
            print_new_steps(&s, &mut steps_shown);
            if s.phase() == "running" {
                let text = banner(&s)?;
                println!("up in {:.1} s\n\n{text}", began.elapsed().as_secs_f64());
                return Ok(());
            }
        }
        if let Ok(Some(exit)) = child.try_wait() {
            return Err(LocalError::Other(format!(
                "{who} did not start ({exit}); last lines of {}:\n{}",
                log.display(),
                mariadb::tail(log, 15)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `local status`: the status `read` gives, as JSON or a table, once or (with `watch`)
/// redrawn every second.
pub fn show<S: Shown>(
    read: impl Fn() -> Result<S, LocalError>,
    json: bool,
    watch: bool,
) -> Result<(), LocalError> {
    loop {
        let s = read()?;
        if json {
            let text =
                serde_json::to_string_pretty(&s).map_err(|e| LocalError::Other(e.to_string()))?;
            println!("{text}");
        } else {
            if watch {
                print!("\x1b[H\x1b[2J");
            }
            print!("{}", s.render(10));
        }
        if !watch {
            return Ok(());
        }
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Waits, after a SIGTERM to the supervisor `pid`, until `running` turns false; gives up
/// after `limit`, pointing at its `log`.
pub fn wait_stopped(
    pid: u32,
    running: impl Fn() -> bool,
    log: &Path,
    limit: Duration,
) -> Result<(), LocalError> {
    let began = Instant::now();
    while running() {
        if began.elapsed() > limit {
            return Err(LocalError::Other(format!(
                "the supervisor (pid {pid}) did not stop within {} s; see {}",
                limit.as_secs(),
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
