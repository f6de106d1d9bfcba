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

/// The control plane's runtime; dropping this stops it and every task on it.
#[derive(Debug)]
pub struct ControlPlane {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl ControlPlane {
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("lagless-control".into())
            .spawn(move || {
                // Ends when the sender is dropped; the runtime, and with it every control
                // task, is dropped here on its own thread.
                let _ = runtime.block_on(stopped);
            })?;
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
