//! Session state changes carried by OK packets (`CLIENT_SESSION_TRACK`).
//!
//! The proxy reads one thing from them: the GTID of the transaction a write just committed.
//! MariaDB reports it as the tracked system variable `last_gtid`; MySQL as a
//! `SESSION_TRACK_GTIDS` entry when `session_track_gtids=OWN_GTID`.

use super::wire::Reader;

const SYSTEM_VARIABLES: u8 = 0;
const GTIDS: u8 = 3;

/// The committed GTID reported in a session-state block, if any.
pub fn committed_gtid(state: &[u8]) -> Option<String> {
    let mut r = Reader::new(state);
    let mut found = None;
    while !r.is_empty() {
        let kind = r.u8().ok()?;
        let data = r.lenenc_bytes().ok()?;
        let mut d = Reader::new(data);
        match kind {
            SYSTEM_VARIABLES => {
                let name = d.lenenc_bytes().ok()?;
                let value = d.lenenc_bytes().ok()?;
                if name.eq_ignore_ascii_case(b"last_gtid") && !value.is_empty() {
                    found = Some(String::from_utf8_lossy(value).into_owned());
                }
            }
            GTIDS => {
                // One byte of encoding specification, then the GTID set as a string.
                d.skip(1).ok()?;
                let set = d.lenenc_bytes().ok()?;
                if !set.is_empty() {
                    found = Some(String::from_utf8_lossy(set).into_owned());
                }
            }
            _ => {}
        }
    }
    found
}

/// The session-state block without the entries that report committed GTIDs (MariaDB's
/// `last_gtid` variable, MySQL's GTIDs tracker), which the proxy asks for on its own behalf.
/// `None` when there is nothing to remove or the block does not parse (leave it as it is).
pub fn without_gtids(state: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader::new(state);
    let mut kept = Vec::with_capacity(state.len());
    let mut removed = false;
    while !r.is_empty() {
        let start = state.len() - r.remaining().len();
        let kind = r.u8().ok()?;
        let data = r.lenenc_bytes().ok()?;
        let end = state.len() - r.remaining().len();
        let gtid = match kind {
            SYSTEM_VARIABLES => Reader::new(data)
                .lenenc_bytes()
                .is_ok_and(|name| name.eq_ignore_ascii_case(b"last_gtid")),
            GTIDS => true,
            _ => false,
        };
        if gtid {
            removed = true;
        } else {
            kept.extend_from_slice(&state[start..end]);
        }
    }
    removed.then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::put_lenenc_bytes;

    fn entry(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        put_lenenc_bytes(&mut out, data);
        out
    }

    fn var(name: &str, value: &str) -> Vec<u8> {
        let mut data = Vec::new();
        put_lenenc_bytes(&mut data, name.as_bytes());
        put_lenenc_bytes(&mut data, value.as_bytes());
        entry(SYSTEM_VARIABLES, &data)
    }

    #[test]
    fn mariadb_last_gtid_among_other_variables() {
        let mut state = var("autocommit", "ON");
        state.extend(var("last_gtid", "1-100-42"));
        state.extend(entry(2, &[0])); // SESSION_TRACK_STATE_CHANGE
        assert_eq!(committed_gtid(&state).as_deref(), Some("1-100-42"));
        assert_eq!(committed_gtid(&var("last_gtid", "")), None);
        assert_eq!(committed_gtid(&var("autocommit", "OFF")), None);
    }

    #[test]
    fn mysql_own_gtid() {
        let mut data = vec![0];
        put_lenenc_bytes(&mut data, b"3e11fa47-71ca-11e1-9e33-c80aa9429562:23");
        let state = entry(GTIDS, &data);
        assert_eq!(
            committed_gtid(&state).as_deref(),
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:23")
        );
    }

    #[test]
    fn gtid_entries_are_removed_and_nothing_else() {
        let mut state = var("autocommit", "ON");
        state.extend(var("last_gtid", "1-100-42"));
        state.extend(entry(2, b"1"));
        let mut expected = var("autocommit", "ON");
        expected.extend(entry(2, b"1"));
        assert_eq!(without_gtids(&state), Some(expected));
        assert_eq!(without_gtids(&var("last_gtid", "1-1-1")), Some(Vec::new()));
        let mut data = vec![0];
        put_lenenc_bytes(&mut data, b"3e11fa47-71ca-11e1-9e33-c80aa9429562:23");
        assert_eq!(without_gtids(&entry(GTIDS, &data)), Some(Vec::new()));
        assert_eq!(without_gtids(&var("time_zone", "+01:00")), None);
        assert_eq!(without_gtids(&[0, 0xfe]), None);
    }

    #[test]
    fn truncated_blocks_are_ignored() {
        let mut state = var("last_gtid", "1-1-1");
        state.truncate(state.len() - 2);
        assert_eq!(committed_gtid(&state), None);
        assert_eq!(committed_gtid(&[0xfe, 0xff]), None);
    }
}
