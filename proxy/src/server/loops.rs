//! Session event loops (`--scheduler loops`): each a single-threaded runtime on a thread of its
//! own, as HAProxy's threads are. A client session is handed to one loop when it is accepted
//! and stays there for life, with its client and backend sockets registered in that loop's
//! reactor: forwarding a query and its reply wakes no other thread (a strict read's head read
//! still does, on the runtime the proxy started on). A thread the kernel preempts stalls its
//! sessions, where a work-stealing runtime would move them: which is faster depends on the
//! machine (bench/RESULTS.md).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The loops, each with the number of sessions it carries; dropping this stops every loop and
/// the sessions on it.
#[derive(Debug)]
pub struct Loops {
    loops: Vec<Loop>,
    next: AtomicUsize,
    _stop: Vec<oneshot::Sender<()>>,
}

#[derive(Debug)]
struct Loop {
    handle: Handle,
    sessions: Arc<AtomicUsize>,
}

/// Counts a session on its loop for as long as it lives.
struct OnLoop(Arc<AtomicUsize>);

impl Drop for OnLoop {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Loops {
    /// Starts `count` loops (at least one).
    pub fn start(count: usize) -> std::io::Result<Self> {
        let count = count.max(1);
        let (mut loops, mut stops) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for i in 0..count {
            let (handle, stop) =
                super::control::runtime_thread(format!("lagless-loop-{i}"), move || {
                    crate::loop_id::set(i);
                })?;
            loops.push(Loop {
                handle,
                sessions: Arc::new(AtomicUsize::new(0)),
            });
            stops.push(stop);
        }
        Ok(Self {
            loops,
            next: AtomicUsize::new(0),
            _stop: stops,
        })
    }

    /// Runs `session` on the loop with the fewest sessions. An async block starts running
    /// there, so the sockets it makes from standard ones register in that loop's reactor.
    pub fn spawn<Fut>(&self, session: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let counts: Vec<usize> = self
            .loops
            .iter()
            .map(|l| l.sessions.load(Ordering::Relaxed))
            .collect();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(chosen) = least_busy(&counts, start).and_then(|i| self.loops.get(i)) else {
            return;
        };
        chosen.sessions.fetch_add(1, Ordering::Relaxed);
        let on_loop = OnLoop(chosen.sessions.clone());
        chosen.handle.spawn(async move {
            let _on_loop = on_loop;
            session.await;
        });
    }
}

/// The loop that takes the next session: the one with the fewest, ties broken in turn from
/// `start` so that sessions that end at once do not all land on the first loop.
pub fn least_busy(counts: &[usize], start: usize) -> Option<usize> {
    let n = counts.len();
    (0..n)
        .map(|k| (start % n + k) % n)
        .min_by_key(|&i| counts[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loop_id::current;

    #[test]
    fn the_least_busy_loop_takes_the_session_ties_in_turn() {
        assert_eq!(least_busy(&[], 0), None);
        assert_eq!(least_busy(&[3, 1, 2], 0), Some(1));
        assert_eq!(least_busy(&[2, 2, 2], 0), Some(0));
        assert_eq!(least_busy(&[2, 2, 2], 1), Some(1));
        assert_eq!(least_busy(&[2, 2, 2], 5), Some(2));
        assert_eq!(least_busy(&[1, 0, 0], 0), Some(1));
        assert_eq!(least_busy(&[1, 0, 0], 2), Some(2));
    }

    #[test]
    fn sessions_spread_over_the_loops_and_each_stays_on_one_thread() {
        let loops = Loops::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (release, hold) = tokio::sync::watch::channel(false);
        for _ in 0..4 {
            let tx = tx.clone();
            let mut hold = hold.clone();
            loops.spawn(async move {
                let before = std::thread::current().id();
                let _ = hold.wait_for(|r| *r).await;
                tokio::task::yield_now().await;
                let after = std::thread::current().id();
                let _ = tx.send((before, after, current()));
            });
        }
        let counts: Vec<usize> = loops
            .loops
            .iter()
            .map(|l| l.sessions.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, vec![2, 2]);
        let _ = release.send(true);
        let seen: Vec<_> = (0..4)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap())
            .collect();
        assert!(seen.iter().all(|(b, a, _)| b == a));
        let threads: std::collections::HashSet<_> = seen.iter().map(|s| (s.0, s.2)).collect();
        assert_eq!(threads.len(), 2);
        let numbers: std::collections::HashSet<_> = seen.iter().map(|s| s.2).collect();
        assert_eq!(numbers, [Some(0), Some(1)].into_iter().collect());
        assert_eq!(current(), None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while loops
            .loops
            .iter()
            .any(|l| l.sessions.load(Ordering::Relaxed) != 0)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "sessions not uncounted"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
