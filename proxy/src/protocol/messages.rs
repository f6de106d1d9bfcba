//! OK, ERR and EOF packets: building the ones the proxy sends and reading the status flags of
//! the ones backends send.

use super::constants::{cap, header};
use super::packet::PacketError;
use super::wire::{Reader, put_lenenc_bytes, put_lenenc_int, put_u16};

/// A parsed OK packet (or an OK-shaped 0xfe terminator under `CLIENT_DEPRECATE_EOF`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ok {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    /// Session state changes (`CLIENT_SESSION_TRACK`), raw.
    pub session_state: Vec<u8>,
}

impl Ok {
    pub fn parse(payload: &[u8], caps: u32) -> Result<Self, PacketError> {
        let mut r = Reader::new(payload);
        let head = r.u8()?;
        if head != header::OK && head != header::EOF {
            return Err(PacketError::Malformed("not an OK packet"));
        }
        let affected_rows = r.lenenc_int()?.unwrap_or(0);
        let last_insert_id = r.lenenc_int()?.unwrap_or(0);
        let status = r.u16()?;
        let warnings = r.u16()?;
        let mut session_state = Vec::new();
        if caps & cap::SESSION_TRACK != 0 && !r.is_empty() {
            let _info = r.lenenc_bytes()?;
            if status & super::constants::status::SESSION_STATE_CHANGED != 0 && !r.is_empty() {
                session_state = r.lenenc_bytes()?.to_vec();
            }
        }
        Ok(Self {
            affected_rows,
            last_insert_id,
            status,
            warnings,
            session_state,
        })
    }

    /// Encodes a plain OK packet with the given status flags.
    pub fn encode(&self, caps: u32) -> Vec<u8> {
        self.encode_with_header(header::OK, caps)
    }

    /// Encodes the 0xfe form that ends a result set under `CLIENT_DEPRECATE_EOF`.
    pub fn encode_as_eof(&self, caps: u32) -> Vec<u8> {
        self.encode_with_header(header::EOF, caps)
    }

    fn encode_with_header(&self, head: u8, caps: u32) -> Vec<u8> {
        let mut out = vec![head];
        put_lenenc_int(&mut out, self.affected_rows);
        put_lenenc_int(&mut out, self.last_insert_id);
        put_u16(&mut out, self.status);
        put_u16(&mut out, self.warnings);
        if caps & cap::SESSION_TRACK != 0 {
            out.push(0); // empty info string
        }
        out
    }
}

/// Rewrites an OK-layout packet from a connection with `CLIENT_SESSION_TRACK` into what the
/// server sends a client without it: no session state, the session-state-changed flag cleared,
/// and the info string, when there is one, still length-encoded (MariaDB and MySQL both send it
/// so, whatever the protocol documentation says, and clients read it so: a bare string made
/// mysql_async wait forever on a multi-row INSERT's "Records: …"). `None` when the packet does
/// not parse (forward it as is).
pub fn without_session_track(payload: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader::new(payload);
    let head = r.u8().ok()?;
    let affected = r.lenenc_int().ok()?.unwrap_or(0);
    let insert_id = r.lenenc_int().ok()?.unwrap_or(0);
    let status = r.u16().ok()?;
    let warnings = r.u16().ok()?;
    let info = if r.is_empty() {
        &[][..]
    } else {
        r.lenenc_bytes().ok()?
    };
    let mut out = Vec::with_capacity(payload.len());
    out.push(head);
    put_lenenc_int(&mut out, affected);
    put_lenenc_int(&mut out, insert_id);
    put_u16(
        &mut out,
        status & !super::constants::status::SESSION_STATE_CHANGED,
    );
    put_u16(&mut out, warnings);
    if !info.is_empty() {
        put_lenenc_bytes(&mut out, info);
    }
    Some(out)
}

/// Rewrites an OK-layout packet without the GTID entries of its session state (see
/// [`super::session_state::without_gtids`]); the session-state-changed flag is cleared when
/// nothing else is left, as the server would send it. `None`: nothing to change.
pub fn without_gtid_track(payload: &[u8]) -> Option<Vec<u8>> {
    use super::constants::status::SESSION_STATE_CHANGED;
    let mut r = Reader::new(payload);
    let head = r.u8().ok()?;
    let affected = r.lenenc_int().ok()?.unwrap_or(0);
    let insert_id = r.lenenc_int().ok()?.unwrap_or(0);
    let status = r.u16().ok()?;
    if status & SESSION_STATE_CHANGED == 0 {
        return None;
    }
    let warnings = r.u16().ok()?;
    let info = r.lenenc_bytes().ok()?;
    let state = r.lenenc_bytes().ok()?;
    let kept = super::session_state::without_gtids(state)?;
    let mut out = Vec::with_capacity(payload.len());
    out.push(head);
    put_lenenc_int(&mut out, affected);
    put_lenenc_int(&mut out, insert_id);
    let status = if kept.is_empty() {
        status & !SESSION_STATE_CHANGED
    } else {
        status
    };
    put_u16(&mut out, status);
    put_u16(&mut out, warnings);
    put_lenenc_bytes(&mut out, info);
    if !kept.is_empty() {
        put_lenenc_bytes(&mut out, &kept);
    }
    Some(out)
}

/// Encodes an old-style EOF packet.
pub fn eof(warnings: u16, status: u16) -> Vec<u8> {
    let mut out = vec![header::EOF];
    put_u16(&mut out, warnings);
    put_u16(&mut out, status);
    out
}

/// Whether a packet is an EOF/terminator of a row stream: 0xfe with a payload too short to be a
/// row (a row starting with 0xfe carries a string of at least 2^24 bytes).
pub fn is_terminator(payload: &[u8], caps: u32) -> bool {
    if payload.first() != Some(&header::EOF) {
        return false;
    }
    if caps & cap::DEPRECATE_EOF != 0 {
        payload.len() < super::constants::MAX_PAYLOAD
    } else {
        payload.len() < 9
    }
}

/// Status flags of an OK packet or a terminator (old EOF or 0xfe OK), if it carries them.
pub fn status_of(payload: &[u8], caps: u32) -> Option<u16> {
    match payload.first() {
        Some(&header::OK) => Ok::parse(payload, caps).ok().map(|ok| ok.status),
        Some(&header::EOF) if payload.len() == 5 && caps & cap::DEPRECATE_EOF == 0 => {
            Some(u16::from_le_bytes([payload[3], payload[4]]))
        }
        Some(&header::EOF) if payload.len() < 9 && caps & cap::DEPRECATE_EOF == 0 => None,
        Some(&header::EOF) => Ok::parse(payload, caps).ok().map(|ok| ok.status),
        _ => None,
    }
}

/// The warning count of an OK packet or a result set's terminator (0 when it has none).
pub fn warnings_of(payload: &[u8], caps: u32) -> u16 {
    match payload.first() {
        Some(&header::EOF) if payload.len() == 5 && caps & cap::DEPRECATE_EOF == 0 => {
            u16::from_le_bytes([payload[1], payload[2]])
        }
        Some(&header::OK | &header::EOF) => Ok::parse(payload, caps).map_or(0, |ok| ok.warnings),
        _ => 0,
    }
}

/// An error the proxy reports itself, with a real MySQL error code and SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    pub sqlstate: [u8; 5],
    pub message: String,
}

impl ErrPacket {
    pub fn new(code: u16, sqlstate: &str, message: impl Into<String>) -> Self {
        let mut state = *b"HY000";
        if sqlstate.len() == 5 {
            state.copy_from_slice(sqlstate.as_bytes());
        }
        Self {
            code,
            sqlstate: state,
            message: message.into(),
        }
    }

    /// ER_ACCESS_DENIED_ERROR, worded as the server words it.
    pub fn access_denied(user: &str, host: &str, using_password: bool) -> Self {
        let using = if using_password { "YES" } else { "NO" };
        Self::new(
            1045,
            "28000",
            format!("Access denied for user '{user}'@'{host}' (using password: {using})"),
        )
    }

    /// ER_HANDSHAKE_ERROR.
    pub fn bad_handshake() -> Self {
        Self::new(1043, "08S01", "Bad handshake")
    }

    /// ER_UNKNOWN_COM_ERROR.
    pub fn unknown_command() -> Self {
        Self::new(1047, "08S01", "Unknown command")
    }

    /// ER_NET_PACKET_TOO_LARGE.
    pub fn packet_too_large() -> Self {
        Self::new(
            1153,
            "08S01",
            "Got a packet bigger than 'max_allowed_packet' bytes",
        )
    }

    /// ER_SERVER_SHUTDOWN.
    pub fn shutting_down() -> Self {
        Self::new(1053, "08S01", "Server shutdown in progress")
    }

    /// The backend went away while serving this statement. A server error code
    /// (ER_NET_READ_ERROR) with the communication-failure SQLSTATE: Connector/C, and so the
    /// `mariadb` client and every driver built on it, rejects an error packet that carries a
    /// client-side code such as CR_SERVER_LOST (2013) as malformed.
    pub fn backend_lost(detail: &str) -> Self {
        Self::new(
            1158,
            "08S01",
            format!("Lost connection to MySQL server during query ({detail})"),
        )
    }

    /// No backend could serve this statement (TLS refused, pool exhausted, no primary in
    /// time): ER_UNKNOWN_ERROR (see [`ErrPacket::backend_lost`] for why not 2003).
    pub fn backend_unavailable(detail: &str) -> Self {
        Self::new(
            1105,
            "HY000",
            format!("Can't connect to MySQL server ({detail})"),
        )
    }

    /// The server did not accept the TCP connection at all (refused, timed out): the same
    /// code with the communication-failure SQLSTATE, which also tells the proxy that nothing
    /// reached a server, so the work may wait for another primary.
    pub fn backend_unreachable(detail: &str) -> Self {
        Self::new(
            1105,
            "08S01",
            format!("Can't connect to MySQL server ({detail})"),
        )
    }

    /// Whether this is [`ErrPacket::backend_unreachable`].
    pub fn is_backend_unreachable(&self) -> bool {
        self.code == 1105 && &self.sqlstate == b"08S01"
    }

    /// ER_UNKNOWN_STMT_HANDLER.
    pub fn unknown_statement(id: u32, command: &str) -> Self {
        Self::new(
            1243,
            "HY000",
            format!("Unknown prepared statement handler ({id}) given to {command}"),
        )
    }

    /// ER_MALFORMED_PACKET.
    pub fn malformed() -> Self {
        Self::new(1835, "HY000", "Malformed communication packet")
    }

    /// ER_UNKNOWN_SYSTEM_VARIABLE for a Lagless setting with a bad value.
    pub fn wrong_value(variable: &str, detail: &str) -> Self {
        Self::new(
            1231,
            "42000",
            format!("Variable '{variable}' can't be set to the value: {detail}"),
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.message.len());
        out.push(header::ERR);
        put_u16(&mut out, self.code);
        out.push(b'#');
        out.extend_from_slice(&self.sqlstate);
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    /// Parses an ERR packet a backend sent (protocol 4.1 form).
    pub fn parse(payload: &[u8]) -> Result<Self, PacketError> {
        let mut r = Reader::new(payload);
        if r.u8()? != header::ERR {
            return Err(PacketError::Malformed("not an ERR packet"));
        }
        let code = r.u16()?;
        let mut sqlstate = *b"HY000";
        if r.remaining().first() == Some(&b'#') && r.remaining().len() >= 6 {
            r.skip(1)?;
            sqlstate.copy_from_slice(r.take(5)?);
        }
        Ok(Self {
            code,
            sqlstate,
            message: String::from_utf8_lossy(r.remaining()).into_owned(),
        })
    }
}

impl std::fmt::Display for ErrPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code,
            String::from_utf8_lossy(&self.sqlstate),
            self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::constants::status;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn ok_roundtrip_and_status() -> TestResult {
        let ok = Ok {
            affected_rows: 3,
            last_insert_id: 300,
            status: status::AUTOCOMMIT | status::IN_TRANS,
            warnings: 1,
            session_state: Vec::new(),
        };
        for caps in [0, cap::SESSION_TRACK] {
            let enc = ok.encode(caps | cap::PROTOCOL_41);
            assert_eq!(Ok::parse(&enc, caps)?, ok);
            assert_eq!(status_of(&enc, caps), Some(ok.status));
        }
        let eof_ok = ok.encode_as_eof(cap::DEPRECATE_EOF);
        assert!(is_terminator(&eof_ok, cap::DEPRECATE_EOF));
        assert_eq!(status_of(&eof_ok, cap::DEPRECATE_EOF), Some(ok.status));
        Ok(())
    }

    #[test]
    fn session_track_is_stripped_for_clients_without_it() -> TestResult {
        let mut tracked = vec![0x00, 1, 7];
        put_u16(
            &mut tracked,
            status::AUTOCOMMIT | status::SESSION_STATE_CHANGED,
        );
        put_u16(&mut tracked, 0);
        put_lenenc_bytes(&mut tracked, b"Rows matched: 1");
        put_lenenc_bytes(&mut tracked, &[0, 5, 4, b'x', b'y', b'z', b'w']);
        let plain = without_session_track(&tracked).ok_or("session track not stripped")?;
        let ok = Ok::parse(&plain, 0)?;
        assert_eq!(
            (ok.affected_rows, ok.last_insert_id, ok.status),
            (1, 7, status::AUTOCOMMIT)
        );
        // As the server sends it to such a client: length-encoded, then nothing.
        let mut info = Vec::new();
        put_lenenc_bytes(&mut info, b"Rows matched: 1");
        assert!(plain.ends_with(&info), "{plain:?}");
        assert_eq!(plain.len(), 7 + info.len());
        // No info at all, and the 0xfe terminator form.
        let mut bare = vec![0xfe, 0, 0];
        put_u16(&mut bare, status::AUTOCOMMIT);
        put_u16(&mut bare, 0);
        assert_eq!(without_session_track(&bare), Some(bare));
        assert!(without_session_track(&[0x00, 0xfc]).is_none());
        Ok(())
    }

    #[test]
    fn gtid_tracking_is_hidden_and_other_tracking_kept() -> TestResult {
        let entry = |kind: u8, name: &[u8], value: &[u8]| {
            let mut data = Vec::new();
            put_lenenc_bytes(&mut data, name);
            put_lenenc_bytes(&mut data, value);
            let mut out = vec![kind];
            put_lenenc_bytes(&mut out, &data);
            out
        };
        let ok_with = |state: &[u8]| {
            let mut p = vec![0x00, 1, 0];
            put_u16(&mut p, status::AUTOCOMMIT | status::SESSION_STATE_CHANGED);
            put_u16(&mut p, 0);
            put_lenenc_bytes(&mut p, b"");
            put_lenenc_bytes(&mut p, state);
            p
        };
        // Only last_gtid: the flag goes, as when nothing was tracked.
        let only = without_gtid_track(&ok_with(&entry(0, b"last_gtid", b"0-1-5")))
            .ok_or("not rewritten")?;
        let ok = Ok::parse(&only, cap::SESSION_TRACK)?;
        assert_eq!((ok.status, ok.session_state.len()), (status::AUTOCOMMIT, 0));
        // With a variable the client tracks: that one stays, and so does the flag.
        let tz = entry(0, b"time_zone", b"+01:00");
        let both = [tz.clone(), entry(0, b"last_gtid", b"0-1-6")].concat();
        let kept = without_gtid_track(&ok_with(&both)).ok_or("not rewritten")?;
        let ok = Ok::parse(&kept, cap::SESSION_TRACK)?;
        assert_eq!(ok.session_state, tz);
        assert_ne!(ok.status & status::SESSION_STATE_CHANGED, 0);
        // Nothing to hide: left as it is.
        assert!(without_gtid_track(&ok_with(&tz)).is_none());
        assert!(without_gtid_track(&[0x00, 0, 0, 2, 0, 0, 0]).is_none());
        Ok(())
    }

    #[test]
    fn old_eof_and_rows() {
        let e = eof(0, status::MORE_RESULTS_EXISTS);
        assert!(is_terminator(&e, 0));
        assert_eq!(status_of(&e, 0), Some(status::MORE_RESULTS_EXISTS));
        // A text row whose first column is 0xfe-prefixed is long and is not a terminator.
        let mut row = vec![0xfe];
        row.extend_from_slice(&[0; 20]);
        assert!(!is_terminator(&row, 0));
        assert!(!is_terminator(&[0x01, 0x31], cap::DEPRECATE_EOF));
    }

    #[test]
    fn err_roundtrip() -> TestResult {
        let e = ErrPacket::access_denied("app", "127.0.0.1", true);
        let parsed = ErrPacket::parse(&e.encode())?;
        assert_eq!(parsed, e);
        assert_eq!(parsed.code, 1045);
        assert_eq!(&parsed.sqlstate, b"28000");
        assert!(ErrPacket::parse(&[0xff]).is_err());
        assert!(Ok::parse(&[0x00, 0xfc], 0).is_err());
        Ok(())
    }
}
