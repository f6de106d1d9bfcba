//! Reading the GTID position out of a `mariadb-backup --stream=xbstream` stream as it passes,
//! so a backup's manifest records it without extracting anything.
//!
//! The stream is a sequence of chunks: the magic `XBSTCK01`, a flags byte, a type byte (`P`
//! payload, `E` end of a file), the file's path (length as 4 bytes little-endian, then the
//! bytes) and, for a payload, its length and offset (8 bytes each) and a checksum (4 bytes)
//! before the payload itself. The position is the third field of the file
//! `mariadb_backup_binlog_info` (`xtrabackup_binlog_info` before 10.11.8): binary log file,
//! offset, GTID position.

const MAGIC: &[u8; 8] = b"XBSTCK01";
const BINLOG_INFO: [&str; 2] = ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"];
/// The most of the file kept: it is one line.
const INFO_LIMIT: usize = 64 * 1024;

/// Follows a stream fed in pieces of any size.
#[derive(Debug, Default)]
pub struct Scanner {
    /// The chunk header read so far.
    header: Vec<u8>,
    /// Payload bytes of the current chunk still to pass.
    skip: u64,
    /// The binlog info file's bytes, while its payload passes.
    capture: Option<Vec<u8>>,
    info: Option<Vec<u8>>,
    /// Set on anything not understood: the scanner stops rather than guess.
    lost: Option<String>,
}

/// A chunk header, once all of it is there.
#[derive(Debug, PartialEq, Eq)]
enum Header {
    Incomplete,
    /// A chunk of `len` header bytes naming `path`, followed by `payload` bytes.
    Chunk {
        len: usize,
        path: String,
        payload: u64,
    },
}

fn parse_header(buf: &[u8]) -> Result<Header, String> {
    let have = |n: usize| buf.len() >= n;
    if !have(MAGIC.len()) {
        return Ok(Header::Incomplete);
    }
    if &buf[..MAGIC.len()] != MAGIC {
        return Err("not an xbstream chunk".into());
    }
    if !have(14) {
        return Ok(Header::Incomplete);
    }
    let kind = buf[9];
    let path_len = u32::from_le_bytes([buf[10], buf[11], buf[12], buf[13]]) as usize;
    if path_len > 4096 {
        return Err(format!("a path of {path_len} bytes"));
    }
    let path_end = 14 + path_len;
    if !have(path_end) {
        return Ok(Header::Incomplete);
    }
    let path = String::from_utf8_lossy(&buf[14..path_end]).into_owned();
    match kind {
        b'E' => Ok(Header::Chunk {
            len: path_end,
            path,
            payload: 0,
        }),
        b'P' => {
            let len = path_end + 20;
            if !have(len) {
                return Ok(Header::Incomplete);
            }
            let mut size = [0u8; 8];
            size.copy_from_slice(&buf[path_end..path_end + 8]);
            Ok(Header::Chunk {
                len,
                path,
                payload: u64::from_le_bytes(size),
            })
        }
        other => Err(format!("a chunk of type {:?}", other as char)),
    }
}

impl Scanner {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.lost.is_none() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                if let Some(kept) = &mut self.capture
                    && kept.len() + n <= INFO_LIMIT
                {
                    kept.extend_from_slice(&data[..n]);
                }
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            // A header: collect it across pieces, at most what it needs of this one.
            let before = self.header.len();
            let take = data.len().min(4096 + 40);
            self.header.extend_from_slice(&data[..take]);
            match parse_header(&self.header) {
                Ok(Header::Incomplete) => data = &data[take..],
                Ok(Header::Chunk { len, path, payload }) => {
                    data = &data[len - before..];
                    self.header.clear();
                    self.chunk(&path, payload);
                }
                Err(e) => self.lost = Some(e),
            }
        }
    }

    fn chunk(&mut self, path: &str, payload: u64) {
        let is_info = BINLOG_INFO
            .iter()
            .any(|name| path == *name || path.strip_prefix("./") == Some(name));
        if let Some(done) = self.capture.take() {
            // The previous file ended (or another began).
            self.info = Some(done);
        }
        if is_info && payload > 0 {
            let mut kept = self.info.take().unwrap_or_default();
            kept.reserve(usize::try_from(payload).unwrap_or(0).min(INFO_LIMIT));
            self.capture = Some(kept);
        }
        self.skip = payload;
    }

    /// The GTID position the stream recorded (empty when the server had written no GTID),
    /// or why it is not known.
    pub fn position(&self) -> Result<String, String> {
        let info = self.info.as_ref().or(self.capture.as_ref());
        match (info, &self.lost) {
            (Some(bytes), _) => Ok(String::from_utf8_lossy(bytes)
                .split_whitespace()
                .nth(2)
                .unwrap_or_default()
                .to_string()),
            (None, Some(lost)) => Err(format!("the stream held {lost} before the binlog info")),
            (None, None) => Err("the stream held no binlog info".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(path: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[0, b'P']);
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&[1, 2, 3, 4]);
        out.extend_from_slice(data);
        out
    }

    fn end(path: &str) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[0, b'E']);
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        out
    }

    fn stream() -> Vec<u8> {
        let mut s = payload("ibdata1", &[7u8; 5000]);
        s.extend(end("ibdata1"));
        s.extend(payload(
            "xtrabackup_binlog_info",
            b"binlog.000001\t758\t7-5-3,9-1-2\n",
        ));
        s.extend(end("xtrabackup_binlog_info"));
        s.extend(payload("./app/t.frm", b"XBSTCK01 inside a payload"));
        s.extend(end("./app/t.frm"));
        s
    }

    #[test]
    fn finds_the_position_whatever_the_pieces() {
        let s = stream();
        for piece in [1, 3, 13, 64, 4999, s.len()] {
            let mut scanner = Scanner::default();
            for part in s.chunks(piece) {
                scanner.feed(part);
            }
            assert_eq!(scanner.position().as_deref(), Ok("7-5-3,9-1-2"), "{piece}");
        }
    }

    #[test]
    fn an_empty_binary_log_has_an_empty_position() {
        let mut scanner = Scanner::default();
        scanner.feed(&payload(
            "mariadb_backup_binlog_info",
            b"binlog.000001\t329\n",
        ));
        assert_eq!(scanner.position().as_deref(), Ok(""));
    }

    #[test]
    fn what_is_not_understood_is_said() {
        let mut scanner = Scanner::default();
        scanner.feed(b"something else entirely");
        assert!(scanner.position().unwrap_err().contains("not an xbstream"));
        let mut scanner = Scanner::default();
        scanner.feed(&payload("ibdata1", b"x"));
        assert_eq!(
            scanner.position().unwrap_err(),
            "the stream held no binlog info"
        );
    }
}
