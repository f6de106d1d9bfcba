//! The background tasks of a controller, one per object (`namespace/name`): each is handed its
//! object's latest input through a watch channel and publishes what it last saw in a shared
//! snapshot; it is aborted when its object goes, or with the controller.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::common::lock;

pub struct Tasks<I, S> {
    running: Mutex<HashMap<String, Task<I, S>>>,
}

struct Task<I, S> {
    input: watch::Sender<I>,
    snapshot: Arc<Mutex<S>>,
    handle: JoinHandle<()>,
}

impl<I, S> Default for Tasks<I, S> {
    fn default() -> Self {
        Self {
            running: Mutex::default(),
        }
    }
}

impl<I, S: Clone + Default> Tasks<I, S> {
    /// What the task of `key` last saw, after `update` brought its input up to date (saying
    /// whether it changed it). When none runs (or it ended), `start` makes one from the
    /// receiver of `input` and the snapshot to fill, and nothing has been seen yet.
    pub fn ensure<F>(
        &self,
        key: String,
        update: impl FnOnce(&mut I) -> bool,
        input: impl FnOnce() -> I,
        start: impl FnOnce(watch::Receiver<I>, Arc<Mutex<S>>) -> F,
    ) -> S
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut running = lock(&self.running);
        if let Some(task) = running.get(&key)
            && !task.handle.is_finished()
        {
            task.input.send_if_modified(update);
            return lock(&task.snapshot).clone();
        }
        let (sender, receiver) = watch::channel(input());
        let snapshot = Arc::new(Mutex::new(S::default()));
        let handle = tokio::spawn(start(receiver, Arc::clone(&snapshot)));
        running.insert(
            key,
            Task {
                input: sender,
                snapshot,
                handle,
            },
        );
        S::default()
    }

    /// What the task of `key` last saw, if one runs.
    pub fn snapshot(&self, key: &str) -> Option<S> {
        lock(&self.running)
            .get(key)
            .map(|task| lock(&task.snapshot).clone())
    }

    /// Changes the input of `key`'s task, if it runs (`update` says whether it changed it);
    /// whether it runs.
    pub fn update(&self, key: &str, update: impl FnOnce(&mut I) -> bool) -> bool {
        match lock(&self.running).get(key) {
            Some(task) if !task.handle.is_finished() => {
                task.input.send_if_modified(update);
                true
            }
            _ => false,
        }
    }

    /// Whether the task of `key` runs (has not ended).
    pub fn is_running(&self, key: &str) -> bool {
        lock(&self.running)
            .get(key)
            .is_some_and(|task| !task.handle.is_finished())
    }

    pub fn stop(&self, key: &str) {
        if let Some(task) = lock(&self.running).remove(key) {
            task.handle.abort();
        }
    }
}

impl<I, S> Drop for Tasks<I, S> {
    fn drop(&mut self) {
        for (_, task) in lock(&self.running).drain() {
            task.handle.abort();
        }
    }
}
