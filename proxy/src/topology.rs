//! The topology document (defined in `lagless-core`, shared with the operator) and the
//! proxy's watcher, which keeps the proxy's view of it current.

pub use lagless_core::topology::*;

pub mod watch;

pub use watch::{ReloadObserver, ReloadOutcome, TopologyInbox, TopologyWatcher, WatchOptions};
