//! Moving a backup's bytes: a `mariadb-backup` stream compressed and hashed on its way to
//! storage, and the stored object hashed and decompressed on its way back. Compression runs
//! on a thread of its own, with bounded queues on both sides, so reading the backup,
//! compressing and uploading overlap and memory stays at a few MiB.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::BackupError;
use super::manifest::Manifest;
use super::sigv4::hex;
use super::store::{ObjectReader, ObjectWriter};
use super::xbstream::Scanner;

/// zstd level 1: over 200 MB/s on one core here, about 2:1 on text; higher levels cost more
/// CPU than they save in transfer.
const LEVEL: i32 = 1;
const PIECE: usize = 1 << 20;
const QUEUE: usize = 4;

/// What was stored.
#[derive(Debug)]
pub struct Stored {
    pub stream_bytes: u64,
    pub stored_bytes: u64,
    pub sha256: String,
    /// The GTID position found in the stream, or why none was.
    pub position: Result<String, String>,
}

/// Sends what is written, in pieces of about [`PIECE`], to an async receiver.
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(PIECE),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.tx
            .blocking_send(piece)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Compresses `from` into `to`, counting the stream's bytes in `progress`. `to` is neither
/// finished nor aborted here: the caller decides from this result and the backup's own.
pub async fn compress_into(
    mut from: impl AsyncRead + Unpin,
    to: &mut ObjectWriter,
    progress: Arc<AtomicU64>,
) -> Result<Stored, BackupError> {
    let (raw_tx, mut raw_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let compressor = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut encoder = zstd::stream::write::Encoder::new(ChannelWriter::new(out_tx), LEVEL)?;
        // A frame checksum: damage is found while decompressing, before the hash at the end.
        encoder.include_checksum(true)?;
        while let Some(piece) = raw_rx.blocking_recv() {
            encoder.write_all(&piece)?;
        }
        encoder.finish()?.flush()
    });
    let read = async move {
        let mut scanner = Scanner::default();
        let mut total = 0u64;
        loop {
            let mut piece = vec![0u8; PIECE];
            let n = from.read(&mut piece).await?;
            if n == 0 {
                break;
            }
            piece.truncate(n);
            scanner.feed(&piece);
            total += n as u64;
            progress.fetch_add(n as u64, Ordering::Relaxed);
            if raw_tx.send(piece).await.is_err() {
                break;
            }
        }
        Ok::<_, std::io::Error>((total, scanner))
    };
    let write = async {
        let mut hasher = Sha256::new();
        let mut stored = 0u64;
        while let Some(piece) = out_rx.recv().await {
            hasher.update(&piece);
            stored += piece.len() as u64;
            to.write(&piece).await?;
        }
        Ok::<_, BackupError>((stored, hex(&hasher.finalize())))
    };
    let (read, written, compressed) = tokio::join!(read, write, compressor);
    // The storage's error explains a stopped pipeline best, then the stream's.
    let (stored_bytes, sha256) = written?;
    let (stream_bytes, scanner) = read.map_err(|source| BackupError::Io {
        path: "the backup stream".into(),
        source,
    })?;
    compressed
        .map_err(|e| BackupError::Storage {
            location: "compression".into(),
            detail: e.to_string(),
        })?
        .map_err(|source| BackupError::Io {
            path: "compression".into(),
            source,
        })?;
    Ok(Stored {
        stream_bytes,
        stored_bytes,
        sha256,
        position: scanner.position(),
    })
}

/// Reads the object `manifest` describes from `from`, decompressed into `to`, checking its
/// size and sha256. Returns the bytes written. An error means what was written to `to` must
/// be thrown away.
pub async fn decompress_from(
    from: &mut ObjectReader,
    manifest: &Manifest,
    mut to: impl AsyncWrite + Unpin,
) -> Result<u64, BackupError> {
    let (in_tx, mut in_rx) = mpsc::channel::<bytes::Bytes>(QUEUE);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let decompressor = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut decoder = zstd::stream::write::Decoder::new(ChannelWriter::new(out_tx))?;
        while let Some(piece) = in_rx.blocking_recv() {
            decoder.write_all(&piece)?;
        }
        decoder.flush()?;
        decoder.into_inner().flush()
    });
    let fetch = async move {
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut complete = true;
        while let Some(piece) = from.next().await? {
            hasher.update(&piece);
            total += piece.len() as u64;
            if in_tx.send(piece).await.is_err() {
                complete = false;
                break;
            }
        }
        Ok::<_, BackupError>((total, hex(&hasher.finalize()), complete))
    };
    let write = async {
        let mut total = 0u64;
        while let Some(piece) = out_rx.recv().await {
            total += piece.len() as u64;
            to.write_all(&piece).await?;
        }
        to.shutdown().await?;
        Ok::<_, std::io::Error>(total)
    };
    let (fetched, written, decompressed) = tokio::join!(fetch, write, decompressor);
    let (stored, sha256, complete) = fetched?;
    let id = manifest.id.clone();
    if complete && stored < manifest.stored_bytes {
        return Err(BackupError::Truncated {
            id,
            expected: manifest.stored_bytes,
            got: stored,
        });
    }
    let decompressed = decompressed
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    if let Err(e) = decompressed {
        return Err(BackupError::Corrupt {
            id,
            detail: format!("its compressed stream is damaged ({e})"),
        });
    }
    if stored != manifest.stored_bytes {
        return Err(BackupError::Corrupt {
            id,
            detail: format!(
                "{stored} bytes stored, its manifest says {}",
                manifest.stored_bytes
            ),
        });
    }
    if sha256 != manifest.sha256 {
        return Err(BackupError::Corrupt {
            id,
            detail: format!(
                "the stored object's sha256 is {sha256}, its manifest says {}",
                manifest.sha256
            ),
        });
    }
    let written = written.map_err(|source| BackupError::Io {
        path: "the extraction".into(),
        source,
    })?;
    if written != manifest.stream_bytes {
        return Err(BackupError::Corrupt {
            id,
            detail: format!(
                "{written} bytes decompressed, its manifest says {}",
                manifest.stream_bytes
            ),
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::super::manifest::{FORMAT, object_name};
    use super::super::store::Store;
    use super::*;

    fn manifest_for(stored: &Stored) -> Manifest {
        Manifest {
            format: FORMAT,
            id: "t".into(),
            cluster: "c".into(),
            member: "c-1".into(),
            gtid_position: String::new(),
            server_version: String::new(),
            started_at: String::new(),
            finished_at: String::new(),
            started_unix_ms: 0,
            finished_unix_ms: 0,
            object: object_name("t"),
            stream_bytes: stored.stream_bytes,
            stored_bytes: stored.stored_bytes,
            sha256: stored.sha256.clone(),
        }
    }

    async fn store_some(store: &Store, data: &[u8]) -> Stored {
        let mut w = store.writer("t.xbstream.zst").await.unwrap();
        let stored = compress_into(data, &mut w, Arc::default()).await.unwrap();
        w.finish().await.unwrap();
        stored
    }

    #[tokio::test]
    async fn round_trip_and_damage_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Dir(dir.path().to_path_buf());
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let stored = store_some(&store, &data).await;
        assert_eq!(stored.stream_bytes, data.len() as u64);
        assert!(stored.stored_bytes < stored.stream_bytes / 10);
        let manifest = manifest_for(&stored);
        let mut out = Vec::new();
        let mut r = store.reader("t.xbstream.zst").await.unwrap();
        decompress_from(&mut r, &manifest, &mut out).await.unwrap();
        assert_eq!(out, data);

        let path = dir.path().join("t.xbstream.zst");
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let mut r = store.reader("t.xbstream.zst").await.unwrap();
        let e = decompress_from(&mut r, &manifest, Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(e, BackupError::Corrupt { .. }), "{e}");

        bytes[middle] ^= 0x40;
        std::fs::write(&path, &bytes[..middle]).unwrap();
        let mut r = store.reader("t.xbstream.zst").await.unwrap();
        let e = decompress_from(&mut r, &manifest, Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(e, BackupError::Truncated { .. }), "{e}");
    }
}
