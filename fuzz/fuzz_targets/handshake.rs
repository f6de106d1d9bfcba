//! The connection-phase and status-packet parsers on arbitrary bytes. Besides not panicking,
//! whatever parses must survive being encoded and parsed again.

#![no_main]

use lagless_proxy::protocol::constants::cap;
use lagless_proxy::protocol::handshake::{
    Greeting, HandshakeResponse, auth_switch_request, parse_auth_switch,
};
use lagless_proxy::protocol::messages::{self, ErrPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    greeting(data);
    handshake_response(data);
    auth_switch(data);
    status_packets(data);
    err_packet(data);
});

/// The encoder writes every field, so its output parses back. The scramble and plugin name
/// are not compared: a greeting may announce a scramble length that its data contradicts.
fn greeting(data: &[u8]) {
    let Ok(g) = Greeting::parse(data) else {
        return;
    };
    let again = Greeting::parse(&g.encode()).expect("an encoded greeting parses");
    assert_eq!(fixed_fields(&again), fixed_fields(&g));
}

fn fixed_fields(g: &Greeting) -> (&str, u32, u32, u8, u16) {
    (
        &g.server_version,
        g.connection_id,
        g.capabilities,
        g.collation,
        g.status,
    )
}

/// The proxy only encodes responses with length-prefixed auth data (it always sets
/// SECURE_CONNECTION towards backends), so only those must round-trip. An absent plugin name
/// encodes as an empty one.
fn handshake_response(data: &[u8]) {
    let _ = HandshakeResponse::is_ssl_request(data);
    let Ok(r) = HandshakeResponse::parse(data) else {
        return;
    };
    let encoded = r.encode();
    let _ = r.encode_ssl_request();
    if r.capabilities & (cap::SECURE_CONNECTION | cap::PLUGIN_AUTH_LENENC_DATA) == 0 {
        return;
    }
    let again = HandshakeResponse::parse(&encoded).expect("an encoded response parses");
    let plugin = |r: &HandshakeResponse| r.auth_plugin.clone().unwrap_or_default();
    assert_eq!(plugin(&again), plugin(&r));
    assert_eq!(
        HandshakeResponse {
            auth_plugin: None,
            ..again
        },
        HandshakeResponse {
            auth_plugin: None,
            ..r
        }
    );
}

fn auth_switch(data: &[u8]) {
    let Ok((plugin, payload)) = parse_auth_switch(data) else {
        return;
    };
    let again = parse_auth_switch(&auth_switch_request(&plugin, &payload));
    assert_eq!(again.expect("an encoded switch parses"), (plugin, payload));
}

/// OK packets under arbitrary capabilities (taken from the first 4 bytes), and the
/// terminator and status helpers the response tracker uses.
fn status_packets(data: &[u8]) {
    let caps = data
        .get(..4)
        .map_or(0, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let payload = data.get(4..).unwrap_or_default();
    let _ = messages::is_terminator(payload, caps);
    let _ = messages::status_of(payload, caps);
    let Ok(ok) = messages::Ok::parse(payload, caps) else {
        return;
    };
    let again = messages::Ok::parse(&ok.encode(caps), caps).expect("an encoded OK parses");
    // Session-state changes are not encoded: the proxy's own OK packets carry none.
    assert_eq!(
        again,
        messages::Ok {
            session_state: Vec::new(),
            ..ok
        }
    );
}

fn err_packet(data: &[u8]) {
    let Ok(e) = ErrPacket::parse(data) else {
        return;
    };
    let again = ErrPacket::parse(&e.encode()).expect("an encoded ERR parses");
    assert_eq!(again, e);
    let _ = e.to_string();
}
