//! The control plane: every periodic task (health probes, position polls, topology and pool
//! file reads, the tenant directory's change log, pool reaping) runs on a thread and
//! runtime of its own, apart from the runtime that carries client sessions.
//!
//! Timers firing on the sessions' runtime move sessions between its workers: a task that
//! only sleeps 50 ms in a loop costs every query about 15 µs of CPU at one client, as the
//! session migrates between CPUs (bench/RESULTS.md). Here those wake-ups cost the sessions
//! nothing measurable, and a busy data path never delays a health probe.

use std::future::Future;

use tokio::runtime::{EnterGuard, Handle};
use tokio::sync::oneshot;

/// Starts a thread named `name` that runs `on_start`, then a single-threaded runtime until the
/// returned sender is dropped. The runtime is built and dropped on that thread only: a runtime
/// dropped inside another's context (a thread that failed to start, on the caller's runtime)
/// would panic.
pub(super) fn runtime_thread(
    name: String,
    on_start: impl FnOnce() + Send + 'static,
) -> std::io::Result<(Handle, oneshot::Sender<()>)> {
    let (stop, stopped) = oneshot::channel::<()>();
    let (started, handle) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new().name(name).spawn(move || {
        on_start();
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        let _ = started.send(Ok(runtime.handle().clone()));
        // Runs the tasks until the sender is dropped; the runtime, and every task still on it,
        // is dropped here on its own thread.
        let _ = runtime.block_on(stopped);
    })?;
    let handle = handle
        .recv()
        .map_err(|_| std::io::Error::other("the runtime's thread ended before it started"))??;
    Ok((handle, stop))
}

/// The control plane's runtime; dropping this stops it and every task on it.
#[derive(Debug)]
pub struct ControlPlane {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl ControlPlane {
    pub fn start() -> std::io::Result<Self> {
        let (handle, stop) = runtime_thread("lagless-control".into(), || {})?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }

    /// Runs `task` on the control plane and waits for it: what it spawns stays there.
    /// `None` when the task did not finish (the control plane stopped, or the task panicked).
    pub async fn run<F>(&self, task: F) -> Option<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(task).await {
            Ok(out) => Some(out),
            Err(e) => {
                tracing::error!(error = %e, "a control-plane task did not finish");
                None
            }
        }
    }

    /// Makes `tokio::spawn` start tasks on the control plane until the guard is dropped
    /// (never hold it across an `.await`).
    pub fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }
}
