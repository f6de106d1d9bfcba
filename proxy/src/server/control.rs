//! The control plane: every periodic task (health probes, position polls, topology and pool
//! file reads, the tenant directory's change log, pool reaping) runs on a thread and
//! runtime of its own, apart from the runtime that carries client sessions.
//!
//! Timers firing on the sessions' runtime move sessions between its workers: a task that
//! did nothing but sleep 50 ms in a loop raised a proxy's CPU-migrations per query from 0.3
//! to 1.4 and its CPU per query by about 15 µs at one client (`perf stat`, 2 cores). On a
//! thread of their own the same wake-ups cost the sessions nothing measurable, and a busy
//! data path never delays a health probe.

use std::future::Future;

use tokio::runtime::{EnterGuard, Handle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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

    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }

    /// Runs `task` on the control plane and waits for it: what it spawns stays there.
    pub async fn run<F>(&self, task: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(task).await {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the control plane stopped while running a task: {e}"),
        }
    }

    /// Makes `tokio::spawn` start tasks on the control plane until the guard is dropped
    /// (never hold it across an `.await`).
    pub fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }
}
