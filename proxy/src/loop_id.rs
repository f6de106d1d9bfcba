//! Which session event loop the calling thread runs (see `server::loops`), for what must stay
//! on one loop: a backend connection's socket is registered in the reactor of the loop that
//! opened it.

use std::cell::Cell;

thread_local! {
    static LOOP: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The event loop the calling thread runs (`None` off the loops).
pub fn current() -> Option<usize> {
    LOOP.with(Cell::get)
}

/// Marks the calling thread as event loop `number`.
pub(crate) fn set(number: usize) {
    LOOP.with(|l| l.set(Some(number)));
}
