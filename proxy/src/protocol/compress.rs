//! The compression protocol (`CLIENT_COMPRESS`) on the client side.
//!
//! After the handshake every packet travels inside compressed frames: a 7-byte header (3 bytes
//! compressed length, 1 byte sequence id, 3 bytes uncompressed length, 0 meaning "stored as
//! is") and a zlib stream holding one or more ordinary packets. This adapter turns such a stream
//! back into a plain packet stream for the session, so everything above it is unchanged.
//! Backends are always spoken to uncompressed.

use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const HEADER: usize = 7;
const MAX_FRAME: usize = 0x00ff_ffff;
/// Payloads shorter than this are sent stored: compressing them costs more than it saves.
const MIN_COMPRESS: usize = 50;
/// The largest uncompressed frame a peer may announce; more is an attack, not a client.
const MAX_UNCOMPRESSED: usize = 64 * 1024 * 1024;

/// A stream speaking the compression protocol on `inner`.
#[derive(Debug)]
pub struct Compressed<S> {
    inner: S,
    /// Raw bytes read from `inner`, not yet a whole frame.
    raw: BytesMut,
    /// Decompressed bytes not yet read by the caller.
    plain: BytesMut,
    /// Bytes the caller wrote, framed on the next flush.
    pending: Vec<u8>,
    /// Framed bytes not yet written to `inner`.
    out: BytesMut,
    next_seq: u8,
}

impl<S> Compressed<S> {
    /// `early` holds bytes already read from `inner` (they belong to the compressed stream).
    pub fn new(inner: S, early: BytesMut) -> Self {
        Self {
            inner,
            raw: early,
            plain: BytesMut::new(),
            pending: Vec::new(),
            out: BytesMut::new(),
            next_seq: 0,
        }
    }

    /// Decodes one whole frame from `raw` into `plain`, if one is there.
    fn decode_frame(&mut self) -> std::io::Result<bool> {
        if self.raw.len() < HEADER {
            return Ok(false);
        }
        let h = &self.raw[..HEADER];
        let clen = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
        let seq = h[3];
        let ulen = usize::from(h[4]) | usize::from(h[5]) << 8 | usize::from(h[6]) << 16;
        if self.raw.len() < HEADER + clen {
            return Ok(false);
        }
        if ulen > MAX_UNCOMPRESSED {
            return Err(invalid("compressed frame announces too large a payload"));
        }
        self.raw.advance(HEADER);
        let body = self.raw.split_to(clen);
        if ulen == 0 {
            self.plain.extend_from_slice(&body);
        } else {
            let mut inflated = Vec::with_capacity(ulen);
            ZlibDecoder::new(&body[..])
                .take(ulen as u64 + 1)
                .read_to_end(&mut inflated)?;
            if inflated.len() != ulen {
                return Err(invalid("compressed frame inflates to the wrong length"));
            }
            self.plain.extend_from_slice(&inflated);
        }
        // Replies continue the peer's numbering.
        self.next_seq = seq.wrapping_add(1);
        Ok(true)
    }

    /// Frames everything pending into `out`.
    fn encode_pending(&mut self) -> std::io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        for chunk in pending.chunks(MAX_FRAME) {
            let (body, ulen) = if chunk.len() < MIN_COMPRESS {
                (chunk.to_vec(), 0)
            } else {
                let mut enc =
                    ZlibEncoder::new(Vec::with_capacity(chunk.len() / 2), Compression::fast());
                enc.write_all(chunk)?;
                (enc.finish()?, chunk.len())
            };
            let clen = body.len();
            self.out.extend_from_slice(&[
                clen as u8,
                (clen >> 8) as u8,
                (clen >> 16) as u8,
                self.next_seq,
                ulen as u8,
                (ulen >> 8) as u8,
                (ulen >> 16) as u8,
            ]);
            self.out.extend_from_slice(&body);
            self.next_seq = self.next_seq.wrapping_add(1);
        }
        Ok(())
    }
}

fn invalid(msg: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

impl<S: AsyncRead + Unpin> AsyncRead for Compressed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.plain.is_empty() {
                let n = self.plain.len().min(buf.remaining());
                let chunk = self.plain.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            if self.decode_frame()? {
                continue;
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                if self.raw.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed inside a compressed frame",
                )));
            }
            let filled = rb.filled().to_vec();
            self.raw.extend_from_slice(&filled);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Compressed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.pending.is_empty() {
            self.encode_pending()?;
        }
        while !self.out.is_empty() {
            let this = &mut *self;
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &this.out))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::{PacketError, PacketStream};
    use tokio::io::AsyncWriteExt;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[tokio::test]
    async fn packets_roundtrip_through_compression() -> TestResult {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = PacketStream::new(Compressed::new(a, BytesMut::new()));
        let mut r = PacketStream::new(Compressed::new(b, BytesMut::new()));
        let big: Vec<u8> = (0..300_000).map(|i| (i % 7) as u8).collect();
        let writer = tokio::spawn(async move {
            let mut seq = 0;
            w.buffer_payload(&mut seq, b"tiny");
            w.buffer_payload(&mut seq, &big);
            w.flush().await?;
            Ok::<_, PacketError>(w)
        });
        let (_, p1) = r.read_logical().await?;
        let (_, p2) = r.read_logical().await?;
        assert_eq!(&p1[..], b"tiny");
        assert_eq!(p2.len(), 300_000);
        assert!(p2.iter().enumerate().all(|(i, b)| *b == (i % 7) as u8));
        drop(writer.await??);
        Ok(())
    }

    #[tokio::test]
    async fn garbage_frames_are_errors_not_panics() -> TestResult {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut r = PacketStream::new(Compressed::new(b, BytesMut::new()));
        // A frame claiming 10 compressed bytes that inflate to 100, holding junk.
        a.write_all(&[10, 0, 0, 0, 100, 0, 0]).await?;
        a.write_all(&[0xde; 10]).await?;
        assert!(r.read_raw().await.is_err());
        // An absurd announced size.
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut r = PacketStream::new(Compressed::new(b, BytesMut::new()));
        a.write_all(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0]).await?;
        assert!(r.read_raw().await.is_err());
        Ok(())
    }
}
