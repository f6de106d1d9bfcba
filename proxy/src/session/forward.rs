//! Relaying one command to a backend and its response to the client, packet by packet.

use bytes::Bytes;

use crate::backend::PooledConn;
use crate::protocol::constants::{header, status};
use crate::protocol::io::ClientStream;
use crate::protocol::messages::{self, ErrPacket};
use crate::protocol::packet::{PacketError, RawPacket};
use crate::protocol::response::{ResponseKind, ResponseTracker, Step};

/// Flush to the client once this much is queued, so large results stream.
const FLUSH_AT: usize = 64 * 1024;

/// How a relay failed.
#[derive(Debug)]
pub enum RelayError {
    /// The backend failed before the client saw any of the response: the caller may retry a
    /// read elsewhere or report the error.
    BackendBeforeReply(PacketError),
    /// The backend failed mid-response; the client already got an ERR packet in its place.
    BackendMidReply,
    /// The client went away or broke the protocol: end the session.
    Client(PacketError),
    /// The client closed its connection while the statement ran: the statement is still
    /// running on the backend, whose connection can no longer be used.
    ClientGone,
    /// The backend refused the statement because it is read-only (a primary being switched
    /// away); nothing ran and nothing was forwarded.
    ReadOnly(ErrPacket),
    /// The server has no such database or table for a tenant's statement: the tenant may
    /// have moved (its old copy is fenced). Nothing ran and nothing was forwarded.
    Missing(ErrPacket),
}

/// ER_OPTION_PREVENTS_STATEMENT: the server runs with read_only.
const READ_ONLY: u16 = 1290;
/// ER_BAD_DB_ERROR and ER_NO_SUCH_TABLE: what a fenced or removed tenant copy answers.
pub const MISSING: [u16; 2] = [1049, 1146];

/// Errors kept from the client, when the response begins with one, so that the session can
/// act and run the command again.
#[derive(Debug, Clone, Copy, Default)]
pub struct Intercept {
    /// A read-only refusal (a primary being switched away).
    pub read_only: bool,
    /// A missing database or table (a tenant's copy that moved away).
    pub missing: bool,
}

/// Runs on a complete response just before its last packets are flushed to the client: what
/// it records is in place before the client can act on the answer.
pub type OnDone<'a> = &'a (dyn Fn(&ResponseTracker) + Send + Sync);

/// Does nothing with a response.
pub fn nothing_on_done(_: &ResponseTracker) {}

/// Where a response goes in what the client receives. The default is a whole response to
/// the client's command; a statement of a multi-statement payload that the proxy runs one by
/// one continues the sequence ids of the results before it and, unless it is the last, says
/// that more results follow.
#[derive(Debug, Clone, Copy, Default)]
pub struct Splice {
    /// Added to the backend's sequence ids.
    pub shift: u8,
    /// Set `SERVER_MORE_RESULTS_EXISTS` on the response's last OK or terminator.
    pub more: bool,
}

/// How a response is relayed.
#[derive(Debug, Clone, Copy)]
pub struct Relay {
    pub kind: ResponseKind,
    /// Rewrites the statement id of a COM_STMT_PREPARE OK so the client sees the proxy's id.
    pub stmt_id: Option<u32>,
    pub splice: Splice,
    /// Checksum the rows (`ResponseTracker::row_digest`).
    pub digest_rows: bool,
}

impl Relay {
    pub fn of(kind: ResponseKind) -> Self {
        Self {
            kind,
            stmt_id: None,
            splice: Splice::default(),
            digest_rows: false,
        }
    }
}

/// Sends `payload` (a whole command) and relays the response.
pub async fn relay(
    client: &mut ClientStream,
    backend: &mut PooledConn,
    payload: &[u8],
    how: Relay,
    intercept: Intercept,
    on_done: OnDone<'_>,
) -> Result<ResponseTracker, RelayError> {
    let mut seq = 0u8;
    if let Err(e) = backend.stream.send(&mut seq, payload).await {
        backend.mark_broken();
        return Err(RelayError::BackendBeforeReply(e));
    }
    relay_intercepting(client, backend, how, intercept, on_done).await
}

/// Like `relay_response`, but a response that is one of the `intercept`ed errors is
/// returned instead of forwarded.
pub async fn relay_intercepting(
    client: &mut ClientStream,
    backend: &mut PooledConn,
    how: Relay,
    intercept: Intercept,
    on_done: OnDone<'_>,
) -> Result<ResponseTracker, RelayError> {
    if !intercept.read_only && !intercept.missing {
        return relay_response(client, backend, how, on_done).await;
    }
    let mut watch = true;
    let first = match next_packet(client, backend, &mut watch).await {
        Ok(p) => p,
        Err(waited) => return Err(before_reply(backend, waited)),
    };
    if first.first() == Some(crate::protocol::constants::header::ERR)
        && let Ok(err) = ErrPacket::parse(&first.payload)
    {
        if intercept.read_only && err.code == READ_ONLY {
            return Err(RelayError::ReadOnly(err));
        }
        if intercept.missing && MISSING.contains(&err.code) {
            return Err(RelayError::Missing(err));
        }
    }
    backend.stream.unread(first);
    relay_response(client, backend, how, on_done).await
}

/// Why waiting for the next response packet ended without one.
enum Waited {
    Backend(PacketError),
    ClientGone,
}

/// A wait that failed before anything reached the client: the backend connection is done
/// for (a statement may still run on it), and the caller may still answer the client.
fn before_reply(backend: &mut PooledConn, waited: Waited) -> RelayError {
    backend.mark_broken();
    match waited {
        Waited::ClientGone => RelayError::ClientGone,
        Waited::Backend(e) => RelayError::BackendBeforeReply(e),
    }
}

/// The next packet from the backend. While `watch` holds, the client's connection is watched
/// too: a client that closes it while its statement runs (a crash, a timeout of its own) must
/// not leave the statement running with its locks. Bytes the client sends meanwhile (a
/// pipelined command) stay buffered for the session and end the watch.
async fn next_packet(
    client: &mut ClientStream,
    backend: &mut PooledConn,
    watch: &mut bool,
) -> Result<RawPacket, Waited> {
    if *watch {
        tokio::select! {
            biased;
            r = backend.stream.read_raw() => return r.map_err(Waited::Backend),
            closed = client.wait_readable() => {
                if closed {
                    return Err(Waited::ClientGone);
                }
                *watch = false;
            }
        }
    }
    backend.stream.read_raw().await.map_err(Waited::Backend)
}

/// Relays the response to a command already sent (or pipelined).
pub async fn relay_response(
    client: &mut ClientStream,
    backend: &mut PooledConn,
    how: Relay,
    on_done: OnDone<'_>,
) -> Result<ResponseTracker, RelayError> {
    let caps = backend.caps;
    let mut tracker = ResponseTracker::new(how.kind, caps);
    if how.digest_rows {
        tracker = tracker.digesting();
    }
    let mut last_seq = 0u8;
    let mut forwarded = false;
    let mut watch = true;
    loop {
        let mut pkt = match next_packet(client, backend, &mut watch).await {
            Ok(p) => p,
            Err(Waited::Backend(e)) if forwarded => {
                backend.mark_broken();
                return Err(fail_mid_reply(client, last_seq, &e).await);
            }
            Err(waited) => return Err(before_reply(backend, waited)),
        };
        let step = match tracker.feed(&pkt.payload) {
            Ok(s) => s,
            Err(e) => {
                backend.mark_broken();
                return Err(fail_mid_reply(client, last_seq, &e).await);
            }
        };
        if let (Some(id), false) = (how.stmt_id, forwarded) {
            pkt.payload = rewrite_prepare_id(pkt.payload, id);
        }
        pkt.seq = pkt.seq.wrapping_add(how.splice.shift);
        if how.splice.more && step == Step::Done {
            pkt.payload = with_more_results(pkt.payload);
        }
        if tracker.ok_layout {
            let rewritten = if backend.strip_session_track {
                messages::without_session_track(&pkt.payload)
            } else if backend.hides_gtid_tracking() {
                messages::without_gtid_track(&pkt.payload)
            } else {
                None
            };
            if let Some(p) = rewritten {
                pkt.payload = Bytes::from(p);
            }
        }
        last_seq = pkt.seq;
        forwarded = true;
        client.buffer_raw(&pkt);
        match step {
            Step::More => {
                if client.pending_output() >= FLUSH_AT {
                    flush_client(client, backend).await?;
                }
            }
            Step::LocalInfile => {
                tracing::trace!(seq = pkt.seq, "LOCAL INFILE request relayed");
                flush_client(client, backend).await?;
                relay_upload(client, backend).await?;
            }
            Step::Done => {
                on_done(&tracker);
                flush_client(client, backend).await?;
                break;
            }
        }
    }
    if let Some(status) = tracker.status {
        backend.status = status;
    }
    backend.last_used = std::time::Instant::now();
    Ok(tracker)
}

async fn flush_client(
    client: &mut ClientStream,
    backend: &mut PooledConn,
) -> Result<(), RelayError> {
    client.flush().await.map_err(|e| {
        // The rest of the response is unread: the connection cannot be reused.
        backend.mark_broken();
        RelayError::Client(e)
    })
}

/// LOCAL INFILE: the client sends the file in packets ending with an empty one.
async fn relay_upload(
    client: &mut ClientStream,
    backend: &mut PooledConn,
) -> Result<(), RelayError> {
    loop {
        let pkt = match client.read_raw().await {
            Ok(p) => p,
            Err(e) => {
                backend.mark_broken();
                return Err(RelayError::Client(e));
            }
        };
        tracing::trace!(seq = pkt.seq, len = pkt.payload.len(), "LOCAL INFILE data");
        backend.stream.buffer_raw(&pkt);
        let last = pkt.payload.is_empty();
        if (last || backend.stream.pending_output() >= FLUSH_AT)
            && let Err(e) = backend.stream.flush().await
        {
            backend.mark_broken();
            return Err(fail_mid_reply(client, pkt.seq, &e).await);
        }
        if last {
            return Ok(());
        }
    }
}

/// Replaces the rest of a response with an ERR so the client's protocol state stays sane.
async fn fail_mid_reply(client: &mut ClientStream, last_seq: u8, e: &PacketError) -> RelayError {
    let mut seq = last_seq.wrapping_add(1);
    let err = ErrPacket::backend_lost(&e.to_string());
    match client.send(&mut seq, &err.encode()).await {
        Ok(()) => RelayError::BackendMidReply,
        Err(e) => RelayError::Client(e),
    }
}

/// Sets `SERVER_MORE_RESULTS_EXISTS` in an OK packet or a terminator (an ERR is left alone:
/// it ends the whole payload).
fn with_more_results(payload: Bytes) -> Bytes {
    let at = match payload.first() {
        Some(&header::EOF) if payload.len() == 5 => Some(3),
        Some(&header::OK | &header::EOF) => {
            let mut r = crate::protocol::wire::Reader::new(&payload[1..]);
            match (r.lenenc_int(), r.lenenc_int()) {
                (Ok(_), Ok(_)) => Some(payload.len() - r.remaining().len()),
                _ => None,
            }
        }
        _ => None,
    };
    let Some(at) = at.filter(|at| at + 2 <= payload.len()) else {
        return payload;
    };
    let mut v = payload.to_vec();
    let flags = u16::from_le_bytes([v[at], v[at + 1]]) | status::MORE_RESULTS_EXISTS;
    v[at..at + 2].copy_from_slice(&flags.to_le_bytes());
    Bytes::from(v)
}

fn rewrite_prepare_id(payload: Bytes, id: u32) -> Bytes {
    if payload.len() < 5 || payload[0] != 0 {
        return payload;
    }
    let mut v = payload.to_vec();
    v[1..5].copy_from_slice(&id.to_le_bytes());
    Bytes::from(v)
}

/// Reads a whole response without forwarding it; returns its packets' payloads.
pub async fn read_response(
    backend: &mut PooledConn,
    kind: ResponseKind,
) -> Result<(ResponseTracker, Vec<Bytes>), PacketError> {
    let mut tracker = ResponseTracker::new(kind, backend.caps);
    let mut packets = Vec::new();
    loop {
        let pkt = backend
            .stream
            .read_raw()
            .await
            .inspect_err(|_| backend.mark_broken())?;
        let step = tracker
            .feed(&pkt.payload)
            .inspect_err(|_| backend.mark_broken())?;
        if packets.len() < 8 {
            packets.push(pkt.payload.clone());
        }
        match step {
            Step::More => {}
            Step::Done => break,
            Step::LocalInfile => {
                // Not expected from the statements the proxy pipelines; refuse the upload.
                let mut seq = pkt.seq.wrapping_add(1);
                backend.stream.send(&mut seq, &[]).await?;
            }
        }
    }
    if let Some(status) = tracker.status {
        backend.status = status;
    }
    Ok((tracker, packets))
}

/// The first column of the first row of a one-row text result, from `read_response` packets.
pub fn single_value(packets: &[Bytes], caps: u32) -> Option<String> {
    let row = if caps & crate::protocol::constants::cap::DEPRECATE_EOF != 0 {
        packets.get(2)?
    } else {
        packets.get(3)?
    };
    let mut r = crate::protocol::wire::Reader::new(row);
    let v = r.lenenc_bytes().ok()?;
    Some(String::from_utf8_lossy(v).into_owned())
}
