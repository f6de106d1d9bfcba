//! Packet framing (`PacketStream::read_logical`) and response tracking
//! (`ResponseTracker::feed`) on arbitrary bytes.
//!
//! Input: one mode byte, then the bytes. Odd modes expand the bytes into frames first, so the
//! fuzzer can reach 16 MiB continuation packets that it could never type out.

#![no_main]

use std::cell::RefCell;

use lagless_proxy::protocol::constants::MAX_PAYLOAD;
use lagless_proxy::protocol::packet::{PacketError, PacketStream};
use lagless_proxy::protocol::response::{ResponseKind, ResponseTracker, Step};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

thread_local! {
    static RUNTIME: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    /// One full-size payload, reused: allocating 16 MiB per run would dominate the run time.
    static FULL: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_PAYLOAD]);
}

/// Full-size frames per expanded input; each costs a 16 MiB copy.
const MAX_FULL_FRAMES: usize = 2;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let stream = if mode & 1 == 1 {
        expand(bytes)
    } else {
        bytes.to_vec()
    };
    // At least one full packet, so the only unchecked path (a lone short packet) stays legal.
    let max_logical = MAX_PAYLOAD + usize::from(mode >> 1) * 4096;
    RUNTIME.with(|rt| rt.block_on(decode(&stream, max_logical)));
    track(bytes);
});

/// Turns 5-byte records `[len_lo, len_hi, full, seq, fill]` into frames: a full-size payload
/// when `full` is 0xff, else `len % 64` bytes of `fill`. Leftover bytes are appended raw, to
/// end the stream inside a frame.
fn expand(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut full_frames = 0;
    let mut records = bytes.chunks_exact(5);
    for r in &mut records {
        let full = r[2] == 0xff && full_frames < MAX_FULL_FRAMES;
        full_frames += usize::from(full);
        let len = if full {
            MAX_PAYLOAD
        } else {
            usize::from(u16::from_le_bytes([r[0], r[1]]) % 64)
        };
        out.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
        out.push(r[3]);
        out.resize(out.len() + len, r[4]);
    }
    out.extend_from_slice(records.remainder());
    out
}

/// Reads logical packets until the stream ends or breaks the protocol. Every packet read,
/// written back with the same sequence ids, must be exactly the bytes it came from.
async fn decode(input: &[u8], max_logical: usize) {
    let mut s = PacketStream::new(tokio::io::join(input, tokio::io::sink()));
    s.max_logical = max_logical;
    let mut consumed = 0;
    loop {
        match s.read_logical().await {
            Ok((first_seq, payload)) => {
                assert!(payload.len() <= max_logical);
                let frames = encode(first_seq, s.last_read_seq(), &payload).await;
                assert!(
                    input[consumed..].starts_with(&frames),
                    "re-encoding differs"
                );
                consumed += frames.len();
            }
            Err(PacketError::Closed) => {
                assert_eq!(consumed, input.len(), "closed with bytes unread");
                return;
            }
            Err(_) => return,
        }
    }
}

/// Frames a logical payload that was read from `first_seq` to `last_seq`.
async fn encode(first_seq: u8, last_seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut seq = first_seq;
    let mut w = PacketStream::new(tokio::io::join(tokio::io::empty(), Vec::new()));
    w.send(&mut seq, payload).await.expect("writing to memory");
    assert_eq!(seq, last_seq.wrapping_add(1), "sequence ids skipped");
    w.into_inner().into_inner().1
}

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
    let mut rest = rest;
    let kind = KINDS[usize::from(*kind) % KINDS.len()];
    let mut t = ResponseTracker::new(kind, u32::from_le_bytes([*c0, *c1, *c2, *c3]));
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
