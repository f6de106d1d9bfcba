//! MariaDB binary log events, as far as archiving needs them: where each event starts and
//! ends, which ones start a transaction (GTID events, with their GTID and time) and which end
//! one, and the format description that every file, and every archived segment, begins with.
//! Only framing and a few fields are read; event bodies pass through untouched.

use lagless_core::gtid::{MariadbGtid, MariadbPosition};

/// Every binary log file starts with these four bytes.
pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];
/// The common header of every event.
pub const HEADER: usize = 19;

const QUERY: u8 = 2;
const STOP: u8 = 3;
const ROTATE: u8 = 4;
const XID: u8 = 16;
const FORMAT_DESCRIPTION: u8 = 15;
const XA_PREPARE: u8 = 38;
const BINLOG_CHECKPOINT: u8 = 161;
const GTID: u8 = 162;
const GTID_LIST: u8 = 163;
const START_ENCRYPTION: u8 = 164;
const QUERY_COMPRESSED: u8 = 165;

/// GTID event flags.
const FL_STANDALONE: u8 = 1;
const FL_COMPLETED_XA: u8 = 128;

/// An event's place in a buffer and its header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventAt {
    pub start: usize,
    pub len: usize,
    pub kind: u8,
    pub timestamp: u32,
    pub server_id: u32,
}

impl EventAt {
    pub fn end(&self) -> usize {
        self.start + self.len
    }
}

/// Why bytes are not a binary log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinlogError {
    #[error("not a binary log (it does not start with the binlog magic bytes)")]
    Magic,
    #[error("a broken event at byte {at}: {detail}")]
    Event { at: usize, detail: String },
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The complete events in `buf` from `from` on; a trailing partial event is left for later.
pub fn events(buf: &[u8], from: usize) -> Result<Vec<EventAt>, BinlogError> {
    let mut out = Vec::new();
    let mut at = from;
    while buf.len() >= at + HEADER {
        let header = &buf[at..at + HEADER];
        let len = le_u32(header, 9).unwrap_or(0) as usize;
        if len < HEADER {
            return Err(BinlogError::Event {
                at,
                detail: format!("an event size of {len} bytes"),
            });
        }
        if buf.len() < at + len {
            break;
        }
        out.push(EventAt {
            start: at,
            len,
            kind: header[4],
            timestamp: le_u32(header, 0).unwrap_or(0),
            server_id: le_u32(header, 5).unwrap_or(0),
        });
        at += len;
    }
    Ok(out)
}

/// Whether events carry a CRC32 after their body, as the format description says (its last
/// five bytes: the algorithm, then its own checksum).
pub fn checksummed(fde: &[u8]) -> bool {
    fde.len() >= HEADER + 5 && fde[fde.len() - 5] == 1
}

/// The GTID and flags of a GTID event.
fn gtid_of(event: &[u8], e: &EventAt) -> Option<(MariadbGtid, u8)> {
    let body = event.get(HEADER..)?;
    Some((
        MariadbGtid {
            seq: le_u64(body, 0)?,
            domain: le_u32(body, 8)?,
            server_id: e.server_id,
        },
        *body.get(12)?,
    ))
}

/// The statement of a query event, without its checksum.
fn query_text(event: &[u8], crc: bool) -> Option<&[u8]> {
    let body = event.get(HEADER..event.len() - if crc { 4 } else { 0 })?;
    let db_len = usize::from(*body.get(8)?);
    let vars_len = usize::from(u16::from_le_bytes(body.get(11..13)?.try_into().ok()?));
    body.get(13 + vars_len + db_len + 1..)
}

/// The GTID position a GTID list event holds (every file starts with one: what came before
/// it).
pub fn gtid_list(event: &[u8], crc: bool) -> Option<MariadbPosition> {
    let body = event.get(HEADER..event.len() - if crc { 4 } else { 0 })?;
    let count = le_u32(body, 0)? & 0x0fff_ffff;
    let mut position = MariadbPosition::default();
    for i in 0..count as usize {
        let at = 4 + i * 16;
        position.insert(MariadbGtid {
            domain: le_u32(body, at)?,
            server_id: le_u32(body, at + 4)?,
            seq: le_u64(body, at + 8)?,
        });
    }
    Some(position)
}

/// One complete transaction: its GTID, its time (the GTID event's, in whole seconds) and its
/// bytes' place in the buffer it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub gtid: MariadbGtid,
    pub timestamp: u32,
    pub start: usize,
    pub end: usize,
}

/// What [`Assembler::push`] found in an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Part of a transaction not yet complete, or an event outside transactions.
    Nothing,
    /// A format description: the segment that follows needs it first.
    Format,
    /// The position before this file (its GTID list).
    Before(MariadbPosition),
    Transaction(Transaction),
    /// A transaction cut short by another one starting: it is dropped, never archived.
    Broken(MariadbGtid),
}

#[derive(Debug, Clone)]
struct Open {
    gtid: MariadbGtid,
    timestamp: u32,
    start: usize,
    standalone: bool,
}

/// Groups a file's events into transactions. A transaction runs from its GTID event to an
/// XID event, a `COMMIT`/`ROLLBACK` query, an XA prepare, or (for a standalone GTID, such as
/// DDL) its one statement.
#[derive(Debug, Clone, Default)]
pub struct Assembler {
    crc: bool,
    open: Option<Open>,
}

impl Assembler {
    /// Starts over at a new file, whose events begin at offset 4 of a new buffer.
    pub fn new_file(&mut self) -> Option<MariadbGtid> {
        self.open.take().map(|o| o.gtid)
    }

    /// Where the transaction being read began, if one is.
    pub fn open_start(&self) -> Option<usize> {
        self.open.as_ref().map(|o| o.start)
    }

    /// The time of the transaction being read, if one is.
    pub fn open_timestamp(&self) -> Option<u32> {
        self.open.as_ref().map(|o| o.timestamp)
    }

    /// The buffer lost its first `n` bytes.
    pub fn rebase(&mut self, n: usize) {
        if let Some(o) = &mut self.open {
            o.start = o.start.saturating_sub(n);
        }
    }

    pub fn push(&mut self, buf: &[u8], e: &EventAt) -> Found {
        let event = &buf[e.start..e.end()];
        match e.kind {
            FORMAT_DESCRIPTION => {
                self.crc = checksummed(event);
                Found::Format
            }
            GTID_LIST => gtid_list(event, self.crc).map_or(Found::Nothing, Found::Before),
            ROTATE | STOP | BINLOG_CHECKPOINT | START_ENCRYPTION => Found::Nothing,
            GTID => {
                let Some((gtid, flags)) = gtid_of(event, e) else {
                    return Found::Nothing;
                };
                let broken = self.open.replace(Open {
                    gtid,
                    timestamp: e.timestamp,
                    start: e.start,
                    standalone: flags & (FL_STANDALONE | FL_COMPLETED_XA) != 0,
                });
                broken.map_or(Found::Nothing, |o| Found::Broken(o.gtid))
            }
            kind => {
                let Some(open) = &self.open else {
                    return Found::Nothing;
                };
                let ends = match kind {
                    XID | XA_PREPARE => true,
                    QUERY | QUERY_COMPRESSED if open.standalone => true,
                    QUERY => query_text(event, self.crc).is_some_and(|q| {
                        q.eq_ignore_ascii_case(b"COMMIT") || q.eq_ignore_ascii_case(b"ROLLBACK")
                    }),
                    _ => false,
                };
                match self.open.take_if(|_| ends) {
                    Some(open) => Found::Transaction(Transaction {
                        gtid: open.gtid,
                        timestamp: open.timestamp,
                        start: open.start,
                        end: e.end(),
                    }),
                    None => Found::Nothing,
                }
            }
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// An event of `kind` with `body`, a CRC32 placeholder after it when `crc`.
    pub fn event(kind: u8, timestamp: u32, server_id: u32, body: &[u8], crc: bool) -> Vec<u8> {
        let len = HEADER + body.len() + if crc { 4 } else { 0 };
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&timestamp.to_le_bytes());
        out.push(kind);
        out.extend_from_slice(&server_id.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(body);
        if crc {
            out.extend_from_slice(&[0xaa; 4]);
        }
        out
    }

    pub fn fde(crc: bool) -> Vec<u8> {
        let mut body = vec![4, 0];
        body.extend_from_slice(&[b'1'; 50]);
        body.extend_from_slice(&[0; 4]);
        body.push(19);
        body.extend_from_slice(&[0; 10]);
        body.push(u8::from(crc));
        event(FORMAT_DESCRIPTION, 0, 1, &body, true)
    }

    pub fn gtid(seq: u64, domain: u32, server_id: u32, ts: u32, flags: u8) -> Vec<u8> {
        let mut body = seq.to_le_bytes().to_vec();
        body.extend_from_slice(&domain.to_le_bytes());
        body.push(flags);
        body.extend_from_slice(&[0; 6]);
        event(GTID, ts, server_id, &body, true)
    }

    pub fn query(text: &str, db: &str) -> Vec<u8> {
        let mut body = vec![0; 8];
        body.push(db.len() as u8);
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&3u16.to_le_bytes());
        body.extend_from_slice(&[9, 9, 9]);
        body.extend_from_slice(db.as_bytes());
        body.push(0);
        body.extend_from_slice(text.as_bytes());
        event(QUERY, 0, 1, &body, true)
    }

    pub fn xid() -> Vec<u8> {
        event(XID, 0, 1, &7u64.to_le_bytes(), true)
    }

    fn rows() -> Vec<u8> {
        event(23, 0, 1, &[1, 2, 3, 4, 5], true)
    }

    fn list(gtids: &[(u32, u32, u64)]) -> Vec<u8> {
        let mut body = (gtids.len() as u32).to_le_bytes().to_vec();
        for (d, s, n) in gtids {
            body.extend_from_slice(&d.to_le_bytes());
            body.extend_from_slice(&s.to_le_bytes());
            body.extend_from_slice(&n.to_le_bytes());
        }
        event(GTID_LIST, 0, 1, &body, true)
    }

    fn found(buf: &[u8]) -> Vec<Found> {
        let mut a = Assembler::default();
        events(buf, 4)
            .unwrap()
            .iter()
            .map(|e| a.push(buf, e))
            .filter(|f| *f != Found::Nothing)
            .collect()
    }

    #[test]
    fn transactions_end_at_xid_commit_or_their_one_statement() {
        let mut buf = MAGIC.to_vec();
        buf.extend(fde(true));
        buf.extend(list(&[(0, 1, 4)]));
        let first = buf.len();
        buf.extend(gtid(5, 0, 1, 100, 0));
        buf.extend(query("BEGIN", "d"));
        buf.extend(rows());
        buf.extend(xid());
        let second = buf.len();
        buf.extend(gtid(6, 0, 1, 101, FL_STANDALONE));
        buf.extend(query("CREATE TABLE t (a int)", "d"));
        let third = buf.len();
        buf.extend(gtid(7, 0, 2, 102, 0));
        buf.extend(query("BEGIN", "d"));
        buf.extend(query("INSERT INTO m VALUES (1)", "d"));
        buf.extend(query("COMMIT", "d"));
        let end = buf.len();
        buf.extend(gtid(8, 0, 2, 103, 0));
        buf.extend(query("BEGIN", "d"));
        let g = |seq, server_id| MariadbGtid {
            domain: 0,
            server_id,
            seq,
        };
        assert_eq!(
            found(&buf),
            vec![
                Found::Format,
                Found::Before(MariadbPosition::parse("0-1-4").unwrap()),
                Found::Transaction(Transaction {
                    gtid: g(5, 1),
                    timestamp: 100,
                    start: first,
                    end: second
                }),
                Found::Transaction(Transaction {
                    gtid: g(6, 1),
                    timestamp: 101,
                    start: second,
                    end: third
                }),
                Found::Transaction(Transaction {
                    gtid: g(7, 2),
                    timestamp: 102,
                    start: third,
                    end
                }),
            ]
        );
    }

    #[test]
    fn a_partial_event_waits_and_a_cut_transaction_is_dropped() {
        let mut buf = MAGIC.to_vec();
        buf.extend(fde(true));
        buf.extend(gtid(5, 0, 1, 100, 0));
        buf.extend(query("BEGIN", "d"));
        let whole = buf.len();
        buf.extend(gtid(6, 0, 1, 100, 0));
        let all = events(&buf, 4).unwrap();
        assert_eq!(all.last().unwrap().end(), buf.len());
        assert_eq!(
            events(&buf[..buf.len() - 3], 4)
                .unwrap()
                .last()
                .unwrap()
                .end(),
            whole
        );
        let g5 = MariadbGtid {
            domain: 0,
            server_id: 1,
            seq: 5,
        };
        assert_eq!(found(&buf), vec![Found::Format, Found::Broken(g5)]);
        let mut bad = MAGIC.to_vec();
        bad.extend(event(2, 0, 1, &[], false));
        bad[4 + 9..4 + 13].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(
            events(&bad, 4),
            Err(BinlogError::Event { at: 4, .. })
        ));
    }

    #[test]
    fn commit_is_read_past_status_variables_and_database() {
        let q = query("COMMIT", "shop");
        assert_eq!(query_text(&q, true), Some(&b"COMMIT"[..]));
        assert!(checksummed(&fde(true)));
        assert!(!checksummed(&fde(false)));
    }
}
