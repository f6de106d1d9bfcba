//! Packet framing (`PacketStream::read_logical`) and response tracking
//! (`ResponseTracker::feed`) on arbitrary bytes. See `packet_continuations` for streams with
//! 16 MiB packets.
//!
//! Framing input: a byte that sets `max_logical`, then the stream. Tracking input: see `track`.

#![no_main]

mod framing;

use std::cell::RefCell;

use lagless_proxy::protocol::constants::MAX_PAYLOAD;
use lagless_proxy::protocol::packet::PacketError;
use lagless_proxy::protocol::response::{ResponseKind, ResponseTracker, Step};
use libfuzzer_sys::fuzz_target;

thread_local! {
    /// One full-size payload, reused: allocating 16 MiB per run would dominate the run time.
    static FULL: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_PAYLOAD]);
}

fuzz_target!(|data: &[u8]| {
    if let Some((&limit, stream)) = data.split_first() {
        // 0 stands for the session default; others are short limits like the login's.
        let max_logical = match limit {
            0 => 1 << 30,
            n => usize::from(n) * 64,
        };
        framing::check_stream(stream, max_logical);
    }
    track(data);
});

const KINDS: [ResponseKind; 6] = [
    ResponseKind::Query,
    ResponseKind::Execute,
    ResponseKind::Fetch,
    ResponseKind::Prepare,
    ResponseKind::FieldList,
    ResponseKind::Single,
];

/// Input: kind byte, 4 capability bytes, then packets as `[len, payload...]`; a length of
/// 0xff stands for a full-size packet starting with the next byte.
fn track(data: &[u8]) {
    let [kind, c0, c1, c2, c3, rest @ ..] = data else {
        return;
    };
    let kind = KINDS[usize::from(*kind) % KINDS.len()];
    let mut t = ResponseTracker::new(kind, u32::from_le_bytes([*c0, *c1, *c2, *c3]));
    let mut rest = rest;
    while let Some((&len, tail)) = rest.split_first() {
        let was_done = t.is_done();
        let result = if len == 0xff {
            rest = tail;
            feed_full(&mut t, tail.first().copied().unwrap_or(0))
        } else {
            let n = usize::from(len).min(tail.len());
            rest = &tail[n..];
            t.feed(&tail[..n])
        };
        match result {
            Ok(step) => {
                assert!(!was_done, "a packet after the end was accepted");
                assert_eq!(t.is_done(), step == Step::Done);
                assert!(step != Step::LocalInfile || kind == ResponseKind::Query);
            }
            Err(_) => return,
        }
    }
}

fn feed_full(t: &mut ResponseTracker, first: u8) -> Result<Step, PacketError> {
    FULL.with(|full| {
        let mut full = full.borrow_mut();
        full[0] = first;
        t.feed(&full)
    })
}
