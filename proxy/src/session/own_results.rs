//! Result sets the proxy builds itself (for statements it answers without a backend).

use crate::protocol::constants::cap;
use crate::protocol::messages::{Ok as OkPacket, eof};
use crate::protocol::wire::{put_lenenc_bytes, put_u16, put_u32};

/// `MYSQL_TYPE_VAR_STRING`.
const VAR_STRING: u8 = 0xfd;
/// utf8mb4_general_ci.
const CHARSET: u16 = 45;

fn column(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for part in ["def", "", "", "", name, ""] {
        put_lenenc_bytes(&mut out, part.as_bytes());
    }
    out.push(0x0c);
    put_u16(&mut out, CHARSET);
    put_u32(&mut out, 1024);
    out.push(VAR_STRING);
    put_u16(&mut out, 0);
    out.push(0);
    put_u16(&mut out, 0);
    out
}

/// The payloads of a one-column, one-row text result set.
pub fn single_value(name: &str, value: &str, caps: u32, status: u16) -> Vec<Vec<u8>> {
    let deprecate_eof = caps & cap::DEPRECATE_EOF != 0;
    let mut packets = vec![vec![1u8], column(name)];
    if !deprecate_eof {
        packets.push(eof(0, status));
    }
    let mut row = Vec::new();
    put_lenenc_bytes(&mut row, value.as_bytes());
    packets.push(row);
    if deprecate_eof {
        packets.push(
            OkPacket {
                status,
                ..Default::default()
            }
            .encode_as_eof(caps),
        );
    } else {
        packets.push(eof(0, status));
    }
    packets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::PacketError;
    use crate::protocol::response::{ResponseKind, ResponseTracker, Step};

    #[test]
    fn the_tracker_accepts_what_we_build() -> Result<(), PacketError> {
        for caps in [0, cap::DEPRECATE_EOF] {
            let packets = single_value("lagless_consistency", "strict", caps, 2);
            let mut t = ResponseTracker::new(ResponseKind::Query, caps);
            let steps = packets
                .iter()
                .map(|p| t.feed(p))
                .collect::<Result<Vec<Step>, _>>()?;
            assert_eq!(steps.last(), Some(&Step::Done));
            assert_eq!(t.status, Some(2));
        }
        Ok(())
    }
}
