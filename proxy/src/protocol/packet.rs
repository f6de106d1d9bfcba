//! Framing of MySQL packets over a byte stream.
//!
//! A packet is a 3-byte little-endian payload length, a 1-byte sequence id and the payload. A
//! payload of exactly 16 MiB - 1 bytes continues in the next packet. Responses are forwarded as
//! physical packets (`read_raw` + `buffer_raw`), so rows are copied once and never decoded.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::constants::MAX_PAYLOAD;

/// Why a packet could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("connection closed by peer")]
    Closed,
    #[error("connection closed in the middle of a packet")]
    Truncated,
    #[error("packet of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("peer stopped sending in the middle of a packet")]
    Stalled,
    #[error("peer stopped reading")]
    WriteStalled,
    #[error("sequence id {got}, expected {expected}")]
    OutOfOrder { expected: u8, got: u8 },
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// One physical packet.
#[derive(Debug, Clone)]
pub struct RawPacket {
    pub seq: u8,
    pub payload: Bytes,
}

impl RawPacket {
    /// First payload byte, or `None` for an empty payload.
    pub fn first(&self) -> Option<u8> {
        self.payload.first().copied()
    }
}

/// Buffered packet reader and writer.
pub struct PacketStream<S> {
    io: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Largest logical payload accepted by `read_logical`.
    pub max_logical: usize,
    /// How long the rest of a packet may take once its first byte arrived.
    pub packet_timeout: Duration,
    /// How long a flush may wait for the peer to take the bytes (a client that stops reading
    /// must not hold a backend connection forever; MariaDB's net_write_timeout is 60 s).
    pub write_timeout: Duration,
    last_seq: u8,
    last_written: u8,
}

impl<S> std::fmt::Debug for PacketStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketStream")
            .field("buffered_in", &self.rbuf.len())
            .field("buffered_out", &self.wbuf.len())
            .finish()
    }
}

const READ_CHUNK: usize = 16 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> PacketStream<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
            max_logical: 1 << 30,
            packet_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            last_seq: 0,
            last_written: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Replaces the transport, e.g. after a TLS handshake on the same socket.
    pub fn map_io<T>(self, f: impl FnOnce(S) -> T) -> PacketStream<T> {
        PacketStream {
            io: f(self.io),
            rbuf: self.rbuf,
            wbuf: self.wbuf,
            max_logical: self.max_logical,
            packet_timeout: self.packet_timeout,
            write_timeout: self.write_timeout,
            last_seq: self.last_seq,
            last_written: self.last_written,
        }
    }

    pub fn into_inner(self) -> S {
        self.io
    }

    /// The transport and any bytes already read from it but not consumed.
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.io, self.rbuf)
    }

    /// Reads one physical packet.
    pub async fn read_raw(&mut self) -> Result<RawPacket, PacketError> {
        if self.rbuf.is_empty() && self.fill().await? == 0 {
            return Err(PacketError::Closed);
        }
        // Usually the whole packet came with its first bytes: no timer is armed for it (a
        // timer costs a clock read and the runtime's shared handle on every packet).
        if let Some(packet) = self.take_buffered()? {
            return Ok(packet);
        }
        let timeout = self.packet_timeout;
        tokio::time::timeout(timeout, self.read_rest())
            .await
            .map_err(|_| PacketError::Stalled)?
    }

    async fn read_rest(&mut self) -> Result<RawPacket, PacketError> {
        loop {
            if let Some(packet) = self.take_buffered()? {
                return Ok(packet);
            }
            if self.rbuf.len() >= 4 {
                let want = 4 + self.buffered_len();
                if self.rbuf.capacity() < want {
                    self.rbuf.reserve(want - self.rbuf.len());
                }
            }
            if self.fill().await? == 0 {
                return Err(PacketError::Truncated);
            }
        }
    }

    /// The payload length in the buffered header (at least 4 bytes buffered).
    fn buffered_len(&self) -> usize {
        usize::from(self.rbuf[0]) | usize::from(self.rbuf[1]) << 8 | usize::from(self.rbuf[2]) << 16
    }

    /// The next packet if it is whole in the buffer. A header announcing more than
    /// `max_logical` is refused as soon as it is read, so a short limit (login) also bounds
    /// what is buffered.
    fn take_buffered(&mut self) -> Result<Option<RawPacket>, PacketError> {
        if self.rbuf.len() < 4 {
            return Ok(None);
        }
        let len = self.buffered_len();
        if len > self.max_logical {
            return Err(PacketError::TooLarge(len));
        }
        if self.rbuf.len() < 4 + len {
            return Ok(None);
        }
        let seq = self.rbuf[3];
        self.rbuf.advance(4);
        self.last_seq = seq;
        let payload = self.rbuf.split_to(len).freeze();
        Ok(Some(RawPacket { seq, payload }))
    }

    async fn fill(&mut self) -> Result<usize, PacketError> {
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(READ_CHUNK);
        }
        Ok(self.io.read_buf(&mut self.rbuf).await?)
    }

    /// Waits until the peer sends something or closes the connection; true when it closed (or
    /// the connection failed). What it sent stays buffered for the next read. Cancel-safe.
    pub async fn wait_readable(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        !matches!(self.fill().await, Ok(n) if n > 0)
    }

    /// The sequence id of the last packet queued for writing.
    pub fn last_written_seq(&self) -> u8 {
        self.last_written
    }

    /// For a connection that should be idle (no command in flight): whether the peer closed it
    /// or sent something unasked (a server's "connection killed" error). Never waits.
    pub fn closed_while_idle(&mut self) -> bool {
        use futures::FutureExt;
        if !self.rbuf.is_empty() {
            return true;
        }
        let mut buf = [0u8; 64];
        match self.io.read(&mut buf).now_or_never() {
            None => false,
            Some(Ok(n)) => {
                self.rbuf.extend_from_slice(&buf[..n]);
                true
            }
            Some(Err(_)) => true,
        }
    }

    /// Reads one logical packet, joining 16 MiB continuations. Returns the sequence id of its
    /// first physical packet (what callers validate) and the payload.
    pub async fn read_logical(&mut self) -> Result<(u8, Bytes), PacketError> {
        let first = self.read_raw().await?;
        if first.payload.len() < MAX_PAYLOAD {
            return Ok((first.seq, first.payload));
        }
        let mut joined = BytesMut::from(&first.payload[..]);
        let mut seq = first.seq;
        let first_seq = first.seq;
        loop {
            // A close before the promised continuation ends the stream inside a packet.
            let next = self.read_raw().await.map_err(|e| match e {
                PacketError::Closed => PacketError::Truncated,
                e => e,
            })?;
            let expected = seq.wrapping_add(1);
            if next.seq != expected {
                return Err(PacketError::OutOfOrder {
                    expected,
                    got: next.seq,
                });
            }
            seq = next.seq;
            if joined.len() + next.payload.len() > self.max_logical {
                return Err(PacketError::TooLarge(joined.len() + next.payload.len()));
            }
            joined.extend_from_slice(&next.payload);
            if next.payload.len() < MAX_PAYLOAD {
                return Ok((first_seq, joined.freeze()));
            }
        }
    }

    /// The sequence id of the last physical packet read: a reply to a command that spanned
    /// several packets continues after it.
    pub fn last_read_seq(&self) -> u8 {
        self.last_seq
    }

    /// Puts a packet just read back in front of the input, as if it had not been read.
    pub fn unread(&mut self, packet: RawPacket) {
        let len = packet.payload.len();
        let mut again = BytesMut::with_capacity(4 + len + self.rbuf.len());
        again.extend_from_slice(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, packet.seq]);
        again.extend_from_slice(&packet.payload);
        again.extend_from_slice(&self.rbuf);
        self.rbuf = again;
    }

    /// Queues one physical packet exactly as received.
    pub fn buffer_raw(&mut self, packet: &RawPacket) {
        self.push_frame(packet.seq, &packet.payload);
    }

    /// Queues a logical payload, splitting it into 16 MiB packets; `seq` is advanced past the
    /// last packet written.
    pub fn buffer_payload(&mut self, seq: &mut u8, payload: &[u8]) {
        let mut rest = payload;
        loop {
            let n = rest.len().min(MAX_PAYLOAD);
            self.push_frame(*seq, &rest[..n]);
            *seq = seq.wrapping_add(1);
            rest = &rest[n..];
            // A payload that is an exact multiple of the maximum ends with an empty packet.
            if n < MAX_PAYLOAD {
                break;
            }
        }
    }

    fn push_frame(&mut self, seq: u8, payload: &[u8]) {
        self.last_written = seq;
        let len = payload.len();
        self.wbuf.reserve(4 + len);
        self.wbuf
            .extend_from_slice(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, seq]);
        self.wbuf.extend_from_slice(payload);
    }

    /// Bytes queued but not yet written.
    pub fn pending_output(&self) -> usize {
        self.wbuf.len()
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), PacketError> {
        use futures::FutureExt;
        // A socket with room takes the bytes at once: then no timer is armed (see `read_raw`).
        // A write that is not ready wrote nothing, so the timed write below starts over.
        if !self.wbuf.is_empty()
            && let Some(written) = self.io.write(&self.wbuf).now_or_never()
        {
            let n = written?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
            self.wbuf.advance(n);
        }
        if self.wbuf.is_empty()
            && let Some(flushed) = self.io.flush().now_or_never()
        {
            return Ok(flushed?);
        }
        let write = async {
            if !self.wbuf.is_empty() {
                self.io.write_all(&self.wbuf).await?;
                self.wbuf.clear();
            }
            self.io.flush().await
        };
        tokio::time::timeout(self.write_timeout, write)
            .await
            .map_err(|_| PacketError::WriteStalled)??;
        Ok(())
    }

    /// Queues and writes a payload.
    pub async fn send(&mut self, seq: &mut u8, payload: &[u8]) -> Result<(), PacketError> {
        self.buffer_payload(seq, payload);
        self.flush().await
    }

    /// Shuts the write side down (best effort).
    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

    /// Sends from sequence id 3; returns the first sequence id read, the payload, and the
    /// sequence id the writer would use next.
    async fn roundtrip(payload: Vec<u8>) -> TestResult<(u8, Bytes, u8)> {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = PacketStream::new(a);
        let mut r = PacketStream::new(b);
        let writer = tokio::spawn(async move {
            let mut seq = 3;
            w.send(&mut seq, &payload).await?;
            Ok::<_, PacketError>(seq)
        });
        let (first, got) = r.read_logical().await?;
        let next_seq = writer.await??;
        assert_eq!(first, 3, "the first packet's sequence id is reported");
        Ok((first, got, next_seq))
    }

    #[tokio::test]
    async fn small_and_empty_payloads() -> TestResult {
        assert_eq!(&roundtrip(b"hello".to_vec()).await?.1[..], b"hello");
        assert_eq!(roundtrip(Vec::new()).await?.1.len(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn payloads_over_16_mib_are_split_and_joined() -> TestResult {
        for len in [MAX_PAYLOAD, MAX_PAYLOAD + 1, 2 * MAX_PAYLOAD + 10] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (_, got, next) = roundtrip(payload.clone()).await?;
            assert_eq!(got.len(), len);
            assert!(got[..] == payload[..]);
            // Exactly MAX_PAYLOAD needs a trailing empty packet: two packets from seq 3.
            let packets = len / MAX_PAYLOAD + 1;
            assert_eq!(next, 3 + packets as u8);
        }
        Ok(())
    }

    #[tokio::test]
    async fn truncated_and_closed_streams_are_errors() -> TestResult {
        let (mut a, b) = tokio::io::duplex(64);
        let mut r = PacketStream::new(b);
        a.write_all(&[10, 0, 0, 0, b'x']).await?;
        drop(a);
        assert!(matches!(r.read_raw().await, Err(PacketError::Truncated)));
        let (a, b) = tokio::io::duplex(64);
        drop(a);
        let mut r = PacketStream::new(b);
        assert!(matches!(r.read_raw().await, Err(PacketError::Closed)));
        Ok(())
    }

    #[tokio::test]
    async fn packets_arriving_in_parts_and_several_at_once_are_read_whole() -> TestResult {
        let (mut a, b) = tokio::io::duplex(64);
        let mut r = PacketStream::new(b);
        // Two whole packets in one write: both come from the buffer, in order.
        a.write_all(&[1, 0, 0, 0, b'a', 2, 0, 0, 1, b'b', b'c'])
            .await?;
        let (p1, p2) = (r.read_raw().await?, r.read_raw().await?);
        assert_eq!((p1.seq, &p1.payload[..]), (0, &b"a"[..]));
        assert_eq!((p2.seq, &p2.payload[..]), (1, &b"bc"[..]));
        // A header alone, then its payload later: read through the timed path.
        let reader = tokio::spawn(async move { r.read_raw().await });
        a.write_all(&[3, 0, 0, 2, b'x']).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.write_all(b"yz").await?;
        let p3 = reader.await??;
        assert_eq!((p3.seq, &p3.payload[..]), (2, &b"xyz"[..]));
        Ok(())
    }

    #[tokio::test]
    async fn a_write_larger_than_the_socket_takes_at_once_is_finished_in_order() -> TestResult {
        // Room for 16 bytes: the first write takes part of the packet, the rest waits for the
        // reader.
        let (a, b) = tokio::io::duplex(16);
        let mut w = PacketStream::new(a);
        let mut r = PacketStream::new(b);
        let payload: Vec<u8> = (0..200u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            let mut seq = 0;
            w.send(&mut seq, &sent).await?;
            w.send(&mut seq, b"next").await?;
            Ok::<_, PacketError>(w.pending_output())
        });
        let first = r.read_raw().await?;
        let second = r.read_raw().await?;
        assert_eq!(&first.payload[..], &payload[..]);
        assert_eq!((second.seq, &second.payload[..]), (1, &b"next"[..]));
        assert_eq!(writer.await??, 0, "nothing left queued");
        Ok(())
    }

    #[tokio::test]
    async fn a_stalled_packet_times_out() -> TestResult {
        let (mut a, b) = tokio::io::duplex(64);
        let mut r = PacketStream::new(b);
        r.packet_timeout = Duration::from_millis(50);
        a.write_all(&[10, 0, 0, 0, b'x']).await?;
        assert!(matches!(r.read_raw().await, Err(PacketError::Stalled)));
        Ok(())
    }

    #[tokio::test]
    async fn logical_size_limit_and_sequence_checked() -> TestResult {
        let (mut a, b) = tokio::io::duplex(1 << 25);
        let mut r = PacketStream::new(b);
        r.max_logical = MAX_PAYLOAD + 5;
        let mut frame = vec![0xff, 0xff, 0xff, 0];
        frame.resize(4 + MAX_PAYLOAD, 1);
        a.write_all(&frame).await?;
        a.write_all(&[10, 0, 0, 1]).await?;
        a.write_all(&[0; 10]).await?;
        assert!(matches!(
            r.read_logical().await,
            Err(PacketError::TooLarge(_))
        ));

        let (mut a, b) = tokio::io::duplex(1 << 25);
        let mut r = PacketStream::new(b);
        a.write_all(&frame).await?;
        a.write_all(&[1, 0, 0, 7, 0]).await?;
        assert!(matches!(
            r.read_logical().await,
            Err(PacketError::OutOfOrder {
                expected: 1,
                got: 7
            })
        ));
        Ok(())
    }
}
