//! The connection phase: the server greeting (protocol v10) and the client's response.

use super::constants::{cap, header};
use super::packet::PacketError;
use super::wire::{Reader, put_lenenc_bytes, put_null_str, put_u16, put_u32};

/// The greeting a server sends first (`Protocol::HandshakeV10`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    /// The auth plugin data ("scramble"), without the trailing NUL.
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    /// MariaDB's extended capabilities; sent only when `capabilities` leaves out
    /// `CLIENT_MYSQL` (`LONG_PASSWORD`), as a MariaDB server does.
    pub ext_capabilities: u32,
    pub collation: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl Greeting {
    pub fn parse(payload: &[u8]) -> Result<Self, PacketError> {
        let mut r = Reader::new(payload);
        match r.u8()? {
            10 => {}
            header::ERR => return Err(PacketError::Malformed("server refused the connection")),
            _ => return Err(PacketError::Malformed("unsupported protocol version")),
        }
        let server_version = String::from_utf8_lossy(r.null_str()?).into_owned();
        let connection_id = r.u32()?;
        let mut scramble = r.take(8)?.to_vec();
        r.skip(1)?;
        let caps_low = u32::from(r.u16()?);
        let mut g = Self {
            server_version,
            connection_id,
            scramble: Vec::new(),
            capabilities: caps_low,
            ext_capabilities: 0,
            collation: 0,
            status: 0,
            auth_plugin: "mysql_native_password".into(),
        };
        if r.is_empty() {
            g.scramble = scramble;
            return Ok(g);
        }
        g.collation = r.u8()?;
        g.status = r.u16()?;
        g.capabilities |= u32::from(r.u16()?) << 16;
        let data_len = usize::from(r.u8()?);
        r.skip(6)?;
        let ext = r.u32()?;
        if g.capabilities & cap::LONG_PASSWORD == 0 {
            g.ext_capabilities = ext;
        }
        if g.capabilities & cap::SECURE_CONNECTION != 0 {
            let n = data_len.saturating_sub(8).max(13);
            let part2 = r.take(n.min(r.remaining().len()))?;
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            scramble.extend_from_slice(part2);
        }
        g.scramble = scramble;
        if g.capabilities & cap::PLUGIN_AUTH != 0 {
            g.auth_plugin = String::from_utf8_lossy(r.null_str_or_rest()).into_owned();
        }
        Ok(g)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(10);
        put_null_str(&mut out, self.server_version.as_bytes());
        put_u32(&mut out, self.connection_id);
        let (part1, part2) = self.scramble.split_at(self.scramble.len().min(8));
        out.extend_from_slice(part1);
        out.push(0);
        put_u16(&mut out, self.capabilities as u16);
        out.push(self.collation);
        put_u16(&mut out, self.status);
        put_u16(&mut out, (self.capabilities >> 16) as u16);
        out.push((self.scramble.len() + 1) as u8);
        out.extend_from_slice(&[0; 6]);
        let ext = if self.capabilities & cap::LONG_PASSWORD == 0 {
            self.ext_capabilities
        } else {
            0
        };
        put_u32(&mut out, ext);
        out.extend_from_slice(part2);
        out.push(0);
        put_null_str(&mut out, self.auth_plugin.as_bytes());
        out
    }
}

/// The client's answer to the greeting (`HandshakeResponse41`), or an SSL request when only the
/// fixed 32-byte prefix with `CLIENT_SSL` arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    /// MariaDB's extended capabilities, in the last 4 filler bytes (zero from other clients).
    pub ext_capabilities: u32,
    pub max_packet: u32,
    pub collation: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    /// Connection attributes, raw (`CLIENT_CONNECT_ATTRS`).
    pub attributes: Vec<u8>,
}

const FIXED_PREFIX: usize = 32;

impl HandshakeResponse {
    /// Whether this payload is an SSL request (the prefix alone, with `CLIENT_SSL`).
    pub fn is_ssl_request(payload: &[u8]) -> bool {
        payload.len() == FIXED_PREFIX
            && u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) & cap::SSL != 0
    }

    pub fn parse(payload: &[u8]) -> Result<Self, PacketError> {
        let mut r = Reader::new(payload);
        let capabilities = r.u32()?;
        if capabilities & cap::PROTOCOL_41 == 0 {
            return Err(PacketError::Malformed("pre-4.1 clients are not supported"));
        }
        let max_packet = r.u32()?;
        let collation = r.u8()?;
        r.skip(19)?;
        let ext_capabilities = r.u32()?;
        let user = String::from_utf8_lossy(r.null_str()?).into_owned();
        let auth_response = if capabilities & cap::PLUGIN_AUTH_LENENC_DATA != 0 {
            r.lenenc_bytes()?.to_vec()
        } else if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = usize::from(r.u8()?);
            r.take(n)?.to_vec()
        } else {
            r.null_str()?.to_vec()
        };
        let mut resp = Self {
            capabilities,
            ext_capabilities,
            max_packet,
            collation,
            user,
            auth_response,
            ..Self::default()
        };
        if capabilities & cap::CONNECT_WITH_DB != 0 && !r.is_empty() {
            let db = r.null_str_or_rest();
            if !db.is_empty() {
                resp.database = Some(String::from_utf8_lossy(db).into_owned());
            }
        }
        if capabilities & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
            resp.auth_plugin = Some(String::from_utf8_lossy(r.null_str_or_rest()).into_owned());
        }
        if capabilities & cap::CONNECT_ATTRS != 0 && !r.is_empty() {
            resp.attributes = r.lenenc_bytes()?.to_vec();
        }
        Ok(resp)
    }

    /// The 32-byte SSL request that precedes a TLS handshake.
    pub fn encode_ssl_request(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_PREFIX);
        self.encode_prefix(&mut out);
        out
    }

    fn encode_prefix(&self, out: &mut Vec<u8>) {
        put_u32(out, self.capabilities);
        put_u32(out, self.max_packet);
        out.push(self.collation);
        out.extend_from_slice(&[0; 19]);
        put_u32(out, self.ext_capabilities);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.encode_prefix(&mut out);
        put_null_str(&mut out, self.user.as_bytes());
        if self.capabilities & cap::PLUGIN_AUTH_LENENC_DATA != 0 {
            put_lenenc_bytes(&mut out, &self.auth_response);
        } else {
            out.push(self.auth_response.len() as u8);
            out.extend_from_slice(&self.auth_response);
        }
        if self.capabilities & cap::CONNECT_WITH_DB != 0 {
            put_null_str(&mut out, self.database.as_deref().unwrap_or("").as_bytes());
        }
        if self.capabilities & cap::PLUGIN_AUTH != 0 {
            put_null_str(
                &mut out,
                self.auth_plugin.as_deref().unwrap_or("").as_bytes(),
            );
        }
        if self.capabilities & cap::CONNECT_ATTRS != 0 {
            put_lenenc_bytes(&mut out, &self.attributes);
        }
        out
    }
}

/// `AuthSwitchRequest`: the server asks the client to answer with another plugin.
/// `mysql_native_password` and `caching_sha2_password` expect the 20-byte scramble followed by
/// a NUL; `client_ed25519` expects exactly its 32-byte nonce and rejects anything longer.
pub fn auth_switch_request(plugin: &str, data: &[u8]) -> Vec<u8> {
    let mut out = vec![header::AUTH_SWITCH];
    put_null_str(&mut out, plugin.as_bytes());
    out.extend_from_slice(data);
    if plugin != super::auth::ED25519 {
        out.push(0);
    }
    out
}

/// Parses an `AuthSwitchRequest` into plugin name and data (trailing NUL removed).
pub fn parse_auth_switch(payload: &[u8]) -> Result<(String, Vec<u8>), PacketError> {
    let mut r = Reader::new(payload);
    if r.u8()? != header::AUTH_SWITCH {
        return Err(PacketError::Malformed("not an auth switch request"));
    }
    let plugin = String::from_utf8_lossy(r.null_str_or_rest()).into_owned();
    let data = r.remaining();
    // An ed25519 nonce is raw random bytes and may itself end in 0.
    let data = if plugin == super::auth::ED25519 {
        data
    } else {
        data.strip_suffix(&[0]).unwrap_or(data)
    };
    Ok((plugin, data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::constants::ext;
    use proptest::prelude::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn greeting() -> Greeting {
        Greeting {
            server_version: "11.0.0-lagless".into(),
            connection_id: 7,
            scramble: (1..=20).collect(),
            capabilities: cap::PROXY_DEFAULT,
            ext_capabilities: 0,
            collation: 45,
            status: 2,
            auth_plugin: "mysql_native_password".into(),
        }
    }

    #[test]
    fn greeting_roundtrip() -> TestResult {
        let g = greeting();
        assert_eq!(Greeting::parse(&g.encode())?, g);
        // A MariaDB greeting: no CLIENT_MYSQL, extended capabilities in the last 4 reserved
        // bytes.
        let mariadb = Greeting {
            capabilities: cap::PROXY_DEFAULT & !cap::LONG_PASSWORD,
            ext_capabilities: ext::PROGRESS | ext::EXTENDED_METADATA,
            ..greeting()
        };
        let bytes = mariadb.encode();
        assert_eq!(Greeting::parse(&bytes)?, mariadb);
        let at = 1 + mariadb.server_version.len() + 1 + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 6;
        assert_eq!(bytes[at..at + 4], 9u32.to_le_bytes());
        Ok(())
    }

    #[test]
    fn response_roundtrip() -> TestResult {
        for caps in [
            cap::PROXY_DEFAULT,
            cap::PROXY_DEFAULT & !cap::PLUGIN_AUTH_LENENC_DATA & !cap::CONNECT_ATTRS,
        ] {
            let resp = HandshakeResponse {
                capabilities: caps,
                ext_capabilities: ext::EXTENDED_METADATA,
                max_packet: 1 << 24,
                collation: 45,
                user: "app".into(),
                auth_response: vec![9; 20],
                database: Some("app".into()),
                auth_plugin: Some("mysql_native_password".into()),
                attributes: if caps & cap::CONNECT_ATTRS != 0 {
                    vec![3, b'a', b'b', b'c']
                } else {
                    Vec::new()
                },
            };
            assert_eq!(HandshakeResponse::parse(&resp.encode())?, resp);
            assert!(!HandshakeResponse::is_ssl_request(&resp.encode()));
        }
        Ok(())
    }

    #[test]
    fn ssl_request_detected() {
        let resp = HandshakeResponse {
            capabilities: cap::PROXY_DEFAULT | cap::SSL,
            ..Default::default()
        };
        assert!(HandshakeResponse::is_ssl_request(
            &resp.encode_ssl_request()
        ));
    }

    #[test]
    fn auth_switch_roundtrip() -> TestResult {
        let p = auth_switch_request("client_ed25519", &[5; 32]);
        assert_eq!(p.len(), 1 + 15 + 32, "no NUL after an ed25519 nonce");
        assert_eq!(
            parse_auth_switch(&p)?,
            ("client_ed25519".to_string(), vec![5; 32])
        );
        Ok(())
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Greeting::parse(&bytes);
            let _ = HandshakeResponse::parse(&bytes);
            let _ = parse_auth_switch(&bytes);
            let _ = HandshakeResponse::is_ssl_request(&bytes);
        }
    }
}
