//! Packet framing across 16 MiB continuation packets, which the fuzzer could never type out:
//! the input describes frames and is expanded before it is read. Slow (each full frame is a
//! 16 MiB copy), so it is kept apart from `packet_decoder`.
//!
//! Input: a byte that sets `max_logical`, then 5-byte records `[len_lo, len_hi, full, seq,
//! fill]`: a full-size payload when `full` is 0xff, else `len % 64` bytes of `fill`.
//! Leftover bytes are appended raw, to end the stream inside a frame.

#![no_main]

mod framing;

use lagless_proxy::protocol::constants::MAX_PAYLOAD;
use libfuzzer_sys::fuzz_target;

/// Full-size frames per input: two reach the trailing empty packet of an exact multiple.
const MAX_FULL_FRAMES: usize = 2;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, records)) = data.split_first() else {
        return;
    };
    // From nothing to about four full packets.
    let max_logical = usize::from(limit) * 256 * 1024;
    framing::check_stream(&expand(records), max_logical);
});

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
