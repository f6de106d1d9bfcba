//! Where a backend's response to one command ends.
//!
//! The proxy forwards responses packet by packet; this tracker looks only at the first bytes of
//! each packet to know when the response is complete, what status flags it ended with, and
//! whether the server asked for a LOCAL INFILE upload. It never decodes rows.

use super::constants::{MAX_PAYLOAD, cap, header, status};
use super::messages::{self, Ok};
use super::packet::PacketError;
use super::wire::Reader;

/// What command the response answers; each has its own shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// COM_QUERY: OK | ERR | LOCAL INFILE | result sets (text rows), possibly several.
    Query,
    /// COM_STMT_EXECUTE: OK | ERR | result sets (binary rows); may open a cursor.
    Execute,
    /// COM_STMT_FETCH: rows then a terminator, or ERR.
    Fetch,
    /// COM_STMT_PREPARE: ERR | OK header, parameter definitions, column definitions.
    Prepare,
    /// COM_FIELD_LIST: column definitions then a terminator, or ERR.
    FieldList,
    /// Commands answered by exactly one packet (OK, ERR, or COM_STATISTICS's string).
    Single,
}

/// What the caller does after feeding a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More packets of this response follow.
    More,
    /// The server asked for a LOCAL INFILE upload: relay the client's packets to the server
    /// until an empty one, then keep reading the response.
    LocalInfile,
    /// The response is complete.
    Done,
}

/// Details of a prepared statement from a COM_STMT_PREPARE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    pub statement_id: u32,
    pub columns: u16,
    pub params: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    First,
    Columns { left: u64 },
    ColumnsEof,
    Rows,
    Params { left: u16, columns: u16 },
    ParamsEof { columns: u16 },
    PrepareColumns { left: u16 },
    PrepareColumnsEof,
    Done,
}

/// The key of the row checksums: random per process, so that row data cannot be chosen to
/// make two different results sum alike.
fn row_key() -> &'static std::hash::RandomState {
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    KEY.get_or_init(std::hash::RandomState::new)
}

/// Follows one response packet by packet.
#[derive(Debug, Clone)]
pub struct ResponseTracker {
    caps: u32,
    kind: ResponseKind,
    state: State,
    /// The previous physical packet was 16 MiB - 1 bytes: this one continues it.
    continuing: bool,
    /// Status flags of the last OK or terminator seen.
    pub status: Option<u16>,
    /// The last OK packet (its session-state changes carry GTIDs).
    pub last_ok: Option<Ok>,
    /// Error code when the response (or one of its result sets) ended in ERR.
    pub error: Option<u16>,
    pub prepare: Option<PrepareOk>,
    /// Warnings the last OK or terminator reported.
    pub warnings: u16,
    /// Rows of the response's result sets plus the rows its OK packets say were affected.
    pub rows: u64,
    /// The packet just fed has the OK layout (an OK, or a 0xfe terminator under
    /// `CLIENT_DEPRECATE_EOF`): the only packets whose session-state part may need rewriting.
    pub ok_layout: bool,
    /// A checksum of the rows' bytes, when asked for ([`ResponseTracker::digesting`]): two
    /// servers that return the same rows, in any order, give the same value, whatever their
    /// OK packets say (a keyed hash of each row packet, summed).
    pub row_digest: Option<u64>,
}

impl ResponseTracker {
    pub fn new(kind: ResponseKind, caps: u32) -> Self {
        let state = match kind {
            ResponseKind::Fetch | ResponseKind::FieldList => State::Rows,
            _ => State::First,
        };
        Self {
            caps,
            kind,
            state,
            continuing: false,
            status: None,
            last_ok: None,
            error: None,
            prepare: None,
            warnings: 0,
            rows: 0,
            ok_layout: false,
            row_digest: None,
        }
    }

    /// Also sums the rows' bytes into `row_digest`.
    pub fn digesting(mut self) -> Self {
        self.row_digest = Some(0);
        self
    }

    fn digest_row(&mut self, payload: &[u8]) {
        if let Some(d) = self.row_digest.as_mut() {
            use std::hash::BuildHasher;
            *d = d.wrapping_add(row_key().hash_one(payload));
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds the payload of the next physical packet.
    pub fn feed(&mut self, payload: &[u8]) -> Result<Step, PacketError> {
        if self.state == State::Done {
            return Err(PacketError::Malformed("packet after the end of a response"));
        }
        let continuation = self.continuing;
        self.continuing = payload.len() == MAX_PAYLOAD;
        self.ok_layout = false;
        if continuation {
            self.digest_row(payload);
            return Ok(Step::More);
        }
        let step = self.step(payload)?;
        if step == Step::Done && self.continuing {
            return Err(PacketError::Malformed(
                "response ended inside a long packet",
            ));
        }
        Ok(step)
    }

    fn step(&mut self, p: &[u8]) -> Result<Step, PacketError> {
        let first = *p
            .first()
            .ok_or(PacketError::Malformed("empty response packet"))?;
        if first == header::ERR && !self.in_row_data() {
            if self.state == State::First && p.get(1..3) == Some(&[0xff, 0xff][..]) {
                // A MariaDB progress report: the statement is still running.
                return Ok(Step::More);
            }
            return Ok(self.finish_with_error(p));
        }
        match self.state {
            State::First => self.first_packet(first, p),
            State::Columns { left } => {
                let left = left - 1;
                self.state = if left > 0 {
                    State::Columns { left }
                } else if self.caps & cap::DEPRECATE_EOF != 0 {
                    State::Rows
                } else {
                    State::ColumnsEof
                };
                Ok(Step::More)
            }
            State::ColumnsEof => {
                if !messages::is_terminator(p, self.caps) {
                    return Err(PacketError::Malformed(
                        "expected EOF after column definitions",
                    ));
                }
                self.status = messages::status_of(p, self.caps);
                if self.kind == ResponseKind::Execute && self.has(status::CURSOR_EXISTS) {
                    return Ok(self.finish());
                }
                self.state = State::Rows;
                Ok(Step::More)
            }
            State::Rows => {
                if first == header::ERR {
                    return Ok(self.finish_with_error(p));
                }
                if !messages::is_terminator(p, self.caps) {
                    self.rows += 1;
                    self.digest_row(p);
                    return Ok(Step::More);
                }
                self.status = messages::status_of(p, self.caps);
                self.warnings = messages::warnings_of(p, self.caps);
                if self.caps & cap::DEPRECATE_EOF != 0 {
                    self.last_ok = Ok::parse(p, self.caps).ok();
                    self.ok_layout = true;
                }
                if matches!(self.kind, ResponseKind::Query | ResponseKind::Execute)
                    && self.has(status::MORE_RESULTS_EXISTS)
                {
                    self.state = State::First;
                    return Ok(Step::More);
                }
                Ok(self.finish())
            }
            State::Params { left, columns } => {
                let left = left - 1;
                self.state = if left > 0 {
                    State::Params { left, columns }
                } else if self.caps & cap::DEPRECATE_EOF == 0 {
                    State::ParamsEof { columns }
                } else {
                    self.after_params(columns)
                };
                Ok(self.step_result())
            }
            State::ParamsEof { columns } => {
                self.state = self.after_params(columns);
                Ok(self.step_result())
            }
            State::PrepareColumns { left } => {
                let left = left - 1;
                self.state = if left > 0 {
                    State::PrepareColumns { left }
                } else if self.caps & cap::DEPRECATE_EOF == 0 {
                    State::PrepareColumnsEof
                } else {
                    State::Done
                };
                Ok(self.step_result())
            }
            State::PrepareColumnsEof => Ok(self.finish()),
            State::Done => Err(PacketError::Malformed("packet after the end of a response")),
        }
    }

    fn first_packet(&mut self, first: u8, p: &[u8]) -> Result<Step, PacketError> {
        match (self.kind, first) {
            (ResponseKind::Single, _) => {
                if first == header::OK {
                    self.record_ok(p);
                }
                Ok(self.finish())
            }
            (ResponseKind::Prepare, header::OK) => {
                let mut r = Reader::new(p);
                r.skip(1)?;
                let prepare = PrepareOk {
                    statement_id: r.u32()?,
                    columns: r.u16()?,
                    params: r.u16()?,
                };
                self.prepare = Some(prepare);
                self.state = if prepare.params > 0 {
                    State::Params {
                        left: prepare.params,
                        columns: prepare.columns,
                    }
                } else {
                    self.after_params(prepare.columns)
                };
                Ok(self.step_result())
            }
            (ResponseKind::Prepare, _) => Err(PacketError::Malformed("bad prepare response")),
            (_, header::OK) => {
                self.record_ok(p);
                if self.has(status::MORE_RESULTS_EXISTS) {
                    return Ok(Step::More);
                }
                Ok(self.finish())
            }
            (ResponseKind::Query, header::LOCAL_INFILE) => Ok(Step::LocalInfile),
            _ => {
                let n = Reader::new(p)
                    .lenenc_int()?
                    .ok_or(PacketError::Malformed("NULL column count"))?;
                if n == 0 {
                    return Err(PacketError::Malformed("zero column count"));
                }
                self.state = State::Columns { left: n };
                Ok(Step::More)
            }
        }
    }

    fn after_params(&self, columns: u16) -> State {
        if columns > 0 {
            State::PrepareColumns { left: columns }
        } else {
            State::Done
        }
    }

    fn step_result(&self) -> Step {
        if self.state == State::Done {
            Step::Done
        } else {
            Step::More
        }
    }

    /// In the middle of column definitions or rows a leading 0xff is data, not an error, except
    /// for the row stream where the server can abort with ERR.
    fn in_row_data(&self) -> bool {
        matches!(
            self.state,
            State::Columns { .. } | State::Params { .. } | State::PrepareColumns { .. }
        )
    }

    fn record_ok(&mut self, p: &[u8]) {
        self.ok_layout = true;
        if let Ok(ok) = Ok::parse(p, self.caps) {
            self.rows = self.rows.saturating_add(ok.affected_rows);
            self.status = Some(ok.status);
            self.warnings = ok.warnings;
            self.last_ok = Some(ok);
        }
    }

    fn has(&self, flag: u16) -> bool {
        self.status.is_some_and(|s| s & flag != 0)
    }

    fn finish(&mut self) -> Step {
        self.state = State::Done;
        Step::Done
    }

    fn finish_with_error(&mut self, p: &[u8]) -> Step {
        self.error = Some(messages::ErrPacket::parse(p).map(|e| e.code).unwrap_or(0));
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::{ErrPacket, eof};
    use proptest::prelude::*;

    type TestResult = Result<(), PacketError>;

    fn ok(status: u16) -> Vec<u8> {
        Ok {
            status,
            ..Default::default()
        }
        .encode(cap::PROTOCOL_41)
    }

    fn run(
        kind: ResponseKind,
        caps: u32,
        packets: &[Vec<u8>],
    ) -> Result<(Vec<Step>, ResponseTracker), PacketError> {
        let mut t = ResponseTracker::new(kind, caps);
        let steps = packets
            .iter()
            .map(|p| t.feed(p))
            .collect::<Result<_, _>>()?;
        Ok((steps, t))
    }

    fn result_set(caps: u32, rows: usize, end_status: u16) -> Vec<Vec<u8>> {
        let mut v = vec![vec![2u8], b"\x03defcol1".to_vec(), b"\x03defcol2".to_vec()];
        if caps & cap::DEPRECATE_EOF == 0 {
            v.push(eof(0, 0));
        }
        for i in 0..rows {
            v.push(vec![1, b'0' + i as u8, 0xfb]);
        }
        if caps & cap::DEPRECATE_EOF == 0 {
            v.push(eof(0, end_status));
        } else {
            v.push(
                Ok {
                    status: end_status,
                    ..Default::default()
                }
                .encode_as_eof(caps),
            );
        }
        v
    }

    #[test]
    fn ok_and_err_end_at_once() -> TestResult {
        let (steps, t) = run(ResponseKind::Query, 0, &[ok(status::IN_TRANS)])?;
        assert_eq!(steps, [Step::Done]);
        assert_eq!(t.status, Some(status::IN_TRANS));
        let err = ErrPacket::new(1064, "42000", "syntax").encode();
        let (steps, t) = run(ResponseKind::Query, 0, &[err])?;
        assert_eq!(steps, [Step::Done]);
        assert_eq!(t.error, Some(1064));
        Ok(())
    }

    #[test]
    fn result_sets_with_and_without_deprecate_eof() -> TestResult {
        for caps in [0, cap::DEPRECATE_EOF] {
            let packets = result_set(caps, 3, status::AUTOCOMMIT);
            let (steps, t) = run(ResponseKind::Query, caps, &packets)?;
            assert_eq!(steps.last(), Some(&Step::Done));
            assert!(steps[..steps.len() - 1].iter().all(|s| *s == Step::More));
            assert_eq!(t.status, Some(status::AUTOCOMMIT));
        }
        Ok(())
    }

    #[test]
    fn multiple_result_sets_continue_until_the_last() -> TestResult {
        for caps in [0, cap::DEPRECATE_EOF] {
            let mut packets = result_set(caps, 1, status::MORE_RESULTS_EXISTS);
            packets.push(ok(status::MORE_RESULTS_EXISTS));
            packets.extend(result_set(caps, 2, 0));
            let (steps, _) = run(ResponseKind::Query, caps, &packets)?;
            assert_eq!(steps.iter().filter(|s| **s == Step::Done).count(), 1);
            assert_eq!(steps.last(), Some(&Step::Done));
        }
        Ok(())
    }

    #[test]
    fn rows_sent_and_affected_are_counted() -> TestResult {
        for caps in [0, cap::DEPRECATE_EOF] {
            let mut packets = result_set(caps, 2, status::MORE_RESULTS_EXISTS);
            packets.extend(result_set(caps, 3, 0));
            let (_, t) = run(ResponseKind::Query, caps, &packets)?;
            assert_eq!(t.rows, 5);
        }
        let affected = Ok {
            affected_rows: 7,
            ..Default::default()
        }
        .encode(cap::PROTOCOL_41);
        let (_, t) = run(ResponseKind::Execute, 0, &[affected])?;
        assert_eq!(t.rows, 7);
        Ok(())
    }

    #[test]
    fn error_in_the_middle_of_rows() -> TestResult {
        let mut packets = result_set(0, 2, 0);
        packets.pop();
        packets.push(ErrPacket::new(1317, "70100", "interrupted").encode());
        let (steps, t) = run(ResponseKind::Query, 0, &packets)?;
        assert_eq!(steps.last(), Some(&Step::Done));
        assert_eq!(t.error, Some(1317));
        Ok(())
    }

    #[test]
    fn local_infile_then_ok() -> TestResult {
        let mut t = ResponseTracker::new(ResponseKind::Query, 0);
        assert_eq!(t.feed(b"\xfb/tmp/x.csv")?, Step::LocalInfile);
        assert_eq!(t.feed(&ok(0))?, Step::Done);
        Ok(())
    }

    #[test]
    fn prepare_shapes() -> TestResult {
        for caps in [0, cap::DEPRECATE_EOF] {
            let mut packets = vec![vec![0, 7, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0]];
            packets.push(b"\x03defp".to_vec());
            if caps & cap::DEPRECATE_EOF == 0 {
                packets.push(eof(0, 0));
            }
            packets.push(b"\x03defa".to_vec());
            packets.push(b"\x03defb".to_vec());
            if caps & cap::DEPRECATE_EOF == 0 {
                packets.push(eof(0, 0));
            }
            let (steps, t) = run(ResponseKind::Prepare, caps, &packets)?;
            assert_eq!(steps.last(), Some(&Step::Done));
            assert_eq!(steps.iter().filter(|s| **s == Step::Done).count(), 1);
            assert_eq!(
                t.prepare,
                Some(PrepareOk {
                    statement_id: 7,
                    columns: 2,
                    params: 1
                })
            );
        }
        let (steps, _) = run(
            ResponseKind::Prepare,
            0,
            &[vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
        )?;
        assert_eq!(steps, [Step::Done]);
        Ok(())
    }

    #[test]
    fn cursor_opening_execute_ends_after_metadata() -> TestResult {
        let mut packets = vec![vec![1u8], b"\x03defc".to_vec()];
        packets.push(eof(0, status::CURSOR_EXISTS));
        let (steps, _) = run(ResponseKind::Execute, 0, &packets)?;
        assert_eq!(steps.last(), Some(&Step::Done));
        Ok(())
    }

    #[test]
    fn long_rows_span_packets() -> TestResult {
        let mut t = ResponseTracker::new(ResponseKind::Query, 0);
        t.feed(&[1])?;
        t.feed(b"\x03defc")?;
        t.feed(&eof(0, 0))?;
        // A row of 16 MiB - 1 bytes whose continuation starts with 0xfe: still a row.
        let mut big = vec![0xfc; MAX_PAYLOAD];
        big[0] = 0xfe;
        assert_eq!(t.feed(&big)?, Step::More);
        assert_eq!(t.feed(&eof(0, 0)[..])?, Step::More);
        assert_eq!(t.feed(&eof(0, 0))?, Step::Done);
        Ok(())
    }

    proptest! {
        #[test]
        fn never_panics(packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20), kind in 0usize..6, caps in any::<u32>()) {
            let kinds = [ResponseKind::Query, ResponseKind::Execute, ResponseKind::Fetch, ResponseKind::Prepare, ResponseKind::FieldList, ResponseKind::Single];
            let mut t = ResponseTracker::new(kinds[kind], caps);
            for p in packets {
                if t.feed(&p).is_err() || t.is_done() { break; }
            }
        }
    }
}

#[cfg(test)]
mod row_digest_tests {
    use super::*;
    use crate::protocol::messages::eof;

    fn digest(rows: &[&[u8]], end_status: u16) -> Option<u64> {
        let mut packets = vec![vec![1u8], b"\x03defcol".to_vec(), eof(0, 0)];
        packets.extend(rows.iter().map(|r| r.to_vec()));
        packets.push(eof(0, end_status));
        let mut t = ResponseTracker::new(ResponseKind::Query, 0).digesting();
        for p in &packets {
            t.feed(p).ok()?;
        }
        t.row_digest
    }

    #[test]
    fn the_same_rows_in_any_order_sum_alike_and_others_do_not() {
        let a = digest(&[b"\x011", b"\x012"], 2);
        assert!(a.is_some());
        assert_eq!(a, digest(&[b"\x012", b"\x011"], 2), "order does not matter");
        assert_eq!(
            a,
            digest(&[b"\x011", b"\x012"], 3),
            "status flags do not matter"
        );
        assert_ne!(a, digest(&[b"\x011", b"\x013"], 2));
        assert_ne!(a, digest(&[b"\x011"], 2));
        assert_ne!(a, digest(&[b"\x011", b"\x012", b"\x012"], 2));
        let untracked = ResponseTracker::new(ResponseKind::Query, 0);
        assert_eq!(untracked.row_digest, None);
    }
}
