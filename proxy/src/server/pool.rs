//! Following a tenant pool document: every cluster it lists gets backends of its own, with
//! the same tasks as the global cluster; clusters added to the pool later are picked up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lagless_directory::PoolDocument;
use tokio::task::JoinHandle;

use super::{ProxyState, cluster_tasks};
use crate::backend::{Backends, Pool};
use crate::tenant::TenantRouter;
use crate::topology::{TopologyWatcher, WatchOptions};

/// How often the pool document is read again.
const REREAD: Duration = Duration::from_secs(1);

/// The tenant clusters started so far: their topology watchers and tasks live as long as
/// this does.
#[derive(Default)]
pub(super) struct PoolFollower {
    started: HashMap<String, (TopologyWatcher, Vec<JoinHandle<()>>)>,
    last_error: Option<String>,
}

impl Drop for PoolFollower {
    fn drop(&mut self) {
        for (_, tasks) in self.started.values() {
            for task in tasks {
                task.abort();
            }
        }
    }
}

impl PoolFollower {
    /// Reads the document and starts the clusters not started yet whose topology can be
    /// read; the others are tried again on the next pass.
    pub(super) async fn pass(
        &mut self,
        shared: &Arc<ProxyState>,
        router: &TenantRouter,
        path: &Path,
    ) {
        let doc = match PoolDocument::read(path) {
            Ok(doc) => doc,
            Err(e) => {
                self.warn_once(format!("cannot read the pool document: {e}"));
                return;
            }
        };
        for cluster in &doc.clusters {
            if self.started.contains_key(&cluster.name) {
                continue;
            }
            let options = WatchOptions {
                poll_interval: shared.config.topology_poll,
                ..WatchOptions::default()
            };
            let (watcher, rx) = match TopologyWatcher::start_with(&cluster.topology, options).await
            {
                Ok(started) => started,
                Err(e) => {
                    self.warn_once(format!("cluster {}: {e}", cluster.name));
                    continue;
                }
            };
            let backends = Backends::start(
                shared.backends.config.clone(),
                Pool::new(shared.config.pool.clone(), shared.metrics.clone()),
                shared.metrics.clone(),
                rx,
                shared.shutdown_signal(),
            );
            let tasks = cluster_tasks(shared, backends.clone());
            router.add_cluster(&cluster.name, backends);
            tracing::info!(cluster = %cluster.name, "tenant cluster added");
            self.started.insert(cluster.name.clone(), (watcher, tasks));
        }
        self.last_error = None;
    }

    fn warn_once(&mut self, error: String) {
        if self.last_error.as_ref() != Some(&error) {
            tracing::warn!(%error, "tenant pool");
            self.last_error = Some(error);
        }
    }
}

/// Reads the pool document every second for clusters added to the pool.
pub(super) async fn follow_pool(
    mut follower: PoolFollower,
    shared: Arc<ProxyState>,
    router: Arc<TenantRouter>,
    path: PathBuf,
) {
    loop {
        tokio::time::sleep(REREAD).await;
        follower.pass(&shared, &router, &path).await;
    }
}
