//! Spawning and signalling `mariadbd` processes: the local runtime's own helpers (one
//! long-lived spawner thread with `PR_SET_PDEATHSIG`, so servers die exactly when the test
//! process does, even on SIGKILL).

pub use lagless_mariadbd::process::{alive, is_root, signal, spawn_tied};
