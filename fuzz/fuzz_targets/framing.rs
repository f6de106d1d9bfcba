//! Shared by the framing targets: read logical packets from a byte stream and check that
//! each one, written back, is exactly the bytes it was read from.

use lagless_proxy::protocol::packet::{PacketError, PacketStream};
use tokio::runtime::Runtime;

thread_local! {
    static RUNTIME: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

/// Reads logical packets until the stream ends or breaks the protocol.
pub fn check_stream(input: &[u8], max_logical: usize) {
    RUNTIME.with(|rt| rt.block_on(decode(input, max_logical)));
}

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
