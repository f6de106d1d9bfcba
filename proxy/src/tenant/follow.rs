//! Follows the directory's change log so that a tenant's new route reaches this proxy
//! within one poll, and keeps the cache serving while the directory is down.
//!
//! It runs on the control plane (see `server::control`), and reads on a connection of its
//! own ([`ChangeFeed`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lagless_directory::ChangeFeed;

use super::router::TenantRouter;

/// How often the change log is read: a change reaches every proxy within about this.
pub const POLL: Duration = Duration::from_millis(50);
/// Changes read per query; a longer backlog is read on the next polls without waiting.
const BATCH: u32 = 1000;
/// How long to wait after a failed read before trying again.
const RETRY: Duration = Duration::from_millis(500);

/// Reads the change log from its current end, forever.
pub async fn follow_changes(router: Arc<TenantRouter>) {
    let mut failing = false;
    let mut started = false;
    // One connection of its own, replaced when the directory's primary changes.
    let mut feed: Option<ChangeFeed> = None;
    loop {
        let read = async {
            let addr = router.directory_addr().map_err(|e| e.message)?;
            let feed = match &mut feed {
                Some(f) if f.addr() == addr => f,
                slot => {
                    let (_, opts) = router.directory_opts().map_err(|e| e.message)?;
                    slot.insert(ChangeFeed::new(opts))
                }
            };
            if !started {
                let seq = feed.last_seq().await.map_err(|e| e.to_string())?;
                router.followed.fetch_max(seq, Ordering::Relaxed);
                return Ok::<usize, String>(0);
            }
            let since = router.followed.load(Ordering::Relaxed);
            let changes = feed.since(since, BATCH).await.map_err(|e| e.to_string())?;
            router.apply_changes(&changes);
            Ok(changes.len())
        };
        match read.await {
            Ok(n) => {
                if failing {
                    tracing::info!("tenant directory reachable again");
                }
                failing = false;
                started = true;
                if n < BATCH as usize {
                    tokio::time::sleep(POLL).await;
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "cannot read the tenant directory's change log; cached tenants keep their routes");
                }
                failing = true;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
