//! Misbehaving clients on raw sockets. Each one is cut off within a bounded time, with an ERR
//! packet first where the protocol has room for one, and the proxy keeps serving everyone else.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, Instant};

use lagless_proxy::protocol::constants::{cap, com};
use lagless_proxy::protocol::handshake::Greeting;
use lagless_testkit::{APP_DATABASE, APP_PASSWORD, APP_USER};
use mysql_async::prelude::Queryable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::support::Harness;

/// Bound on anything the proxy must do promptly; generous for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(10);
const PACKET_TIMEOUT: Duration = Duration::from_millis(300);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(500);
/// Well under the default 10 s handshake timeout: a close this fast did not come from its timer.
const PROMPTLY: Duration = Duration::from_secs(5);

const BIG_QUERY: &str = "SELECT REPEAT('x', 1000) FROM seq_1_to_100000";
const BIG_ROWS: usize = 100_000;
/// A text row of BIG_QUERY: lenenc prefix 0xfc 1000u16, then the value.
const BIG_ROW_LEN: usize = 3 + 1000;

const CLIENT_CAPS: u32 = cap::LONG_PASSWORD
    | cap::CONNECT_WITH_DB
    | cap::PROTOCOL_41
    | cap::TRANSACTIONS
    | cap::SECURE_CONNECTION
    | cap::PLUGIN_AUTH
    | cap::PLUGIN_AUTH_LENENC_DATA;

// ---- panics --------------------------------------------------------------------------------

thread_local! {
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

/// Counts panics on the current thread. `#[tokio::test]` runs the proxy's session tasks on
/// the test's own thread, so a session that panics shows up here even though tokio would
/// swallow it and the client would just see a closed socket.
struct PanicWatch(usize);

impl PanicWatch {
    fn start() -> Self {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                PANICS.with(|p| p.set(p.get() + 1));
                previous(info);
            }));
        });
        Self(PANICS.with(Cell::get))
    }

    fn assert_none(&self) {
        assert_eq!(PANICS.with(Cell::get), self.0, "a proxy task panicked");
    }
}

/// A one-member cluster behind a proxy, watched for panics.
struct Case {
    h: Harness,
    panics: PanicWatch,
}

impl Case {
    async fn start() -> Self {
        Self::with(Harness::start(1).await)
    }

    /// Short handshake and packet timeouts, for the cases that wait on them.
    async fn impatient() -> Self {
        let h = Harness::start_with(1, |c| {
            c.packet_timeout = PACKET_TIMEOUT;
            c.handshake_timeout = HANDSHAKE_TIMEOUT;
        })
        .await;
        Self::with(h)
    }

    fn with(h: Harness) -> Self {
        Self {
            h,
            panics: PanicWatch::start(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.h.addr
    }

    /// No task panicked and a normal client still gets answers.
    async fn assert_still_serving(&self) {
        self.panics.assert_none();
        assert!(!self.h.task.is_finished(), "the proxy stopped");
        let mut conn = timeout(WAIT, self.h.app()).await.expect("login hung");
        let one: Option<i64> = timeout(WAIT, conn.query_first("SELECT 1"))
            .await
            .expect("SELECT 1 hung")
            .expect("SELECT 1 failed");
        assert_eq!(one, Some(1));
        timeout(WAIT, conn.disconnect())
            .await
            .expect("disconnect hung")
            .expect("disconnect failed");
        self.panics.assert_none();
    }
}

// ---- packets on raw sockets ---------------------------------------------------------------

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("test payloads are small");
    let mut out = len.to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

fn command(cmd: u8, body: &[u8]) -> Vec<u8> {
    frame(0, &[&[cmd], body].concat())
}

async fn send(s: &mut TcpStream, bytes: &[u8]) {
    timeout(WAIT, s.write_all(bytes))
        .await
        .expect("write hung")
        .expect("write failed");
}

fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    matches!(e.kind(), UnexpectedEof | ConnectionReset | BrokenPipe)
}

/// One packet, or `None` when the proxy closed the connection between packets.
async fn read_packet<R: AsyncRead + Unpin>(s: &mut R) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 4];
    match timeout(WAIT, s.read_exact(&mut head))
        .await
        .expect("neither a packet nor a close")
    {
        Ok(_) => {}
        Err(e) if is_closed(&e) => return None,
        Err(e) => panic!("read failed: {e}"),
    }
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    let mut payload = vec![0; len];
    timeout(WAIT, s.read_exact(&mut payload))
        .await
        .expect("the proxy stalled inside a packet")
        .expect("the proxy closed inside a packet");
    Some((head[3], payload))
}

async fn expect_closed<R: AsyncRead + Unpin>(s: &mut R) {
    if let Some((seq, p)) = read_packet(s).await {
        panic!("expected a close, got packet {seq}: {p:02x?}");
    }
}

/// Reads an ERR packet (0xff, code, '#', SQLSTATE, message) and checks code and sequence id.
async fn expect_err(s: &mut TcpStream, seq: u8, code: u16) -> String {
    let (got_seq, p) = read_packet(s).await.expect("closed without an ERR packet");
    assert!(
        p.len() >= 9 && p[0] == 0xff && p[3] == b'#',
        "not an ERR packet: {p:02x?}"
    );
    let got = u16::from_le_bytes([p[1], p[2]]);
    let message = String::from_utf8_lossy(&p[9..]).into_owned();
    assert_eq!((got, got_seq), (code, seq), "{message}");
    message
}

/// The ERR packet that tells a client why the proxy hangs up, then the close.
async fn expect_err_then_close(s: &mut TcpStream, seq: u8, code: u16) {
    expect_err(s, seq, code).await;
    expect_closed(s).await;
}

/// Closes, after nothing or an ERR packet with `code`: for refusals that MariaDB explains but
/// the proxy may answer by just hanging up (wrong sequence id, oversized login packet).
async fn expect_close_or_err(s: &mut TcpStream, code: u16) {
    if let Some((_, p)) = read_packet(s).await {
        assert!(p.len() >= 3 && p[0] == 0xff, "not an ERR packet: {p:02x?}");
        assert_eq!(u16::from_le_bytes([p[1], p[2]]), code);
        expect_closed(s).await;
    }
}

/// The close came from a proxy timer of `timeout`: not at once, and not much later.
fn assert_timed_out(started: Instant, timeout: Duration) {
    let waited = started.elapsed();
    assert!(
        waited >= timeout / 2 && waited < timeout + WAIT / 2,
        "closed after {waited:?}"
    );
}

async fn expect_ok(s: &mut TcpStream, seq: u8) {
    let (got_seq, p) = read_packet(s).await.expect("closed instead of OK");
    assert_eq!(p.first(), Some(&0), "not an OK packet: {p:02x?}");
    assert_eq!(got_seq, seq);
}

/// The session still answers commands.
async fn expect_ping(s: &mut TcpStream) {
    send(s, &command(com::PING, &[])).await;
    expect_ok(s, 1).await;
}

// ---- the connection phase by hand ---------------------------------------------------------

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect hung")
        .expect("connect failed")
}

async fn greeting(s: &mut TcpStream) -> Greeting {
    let (seq, p) = read_packet(s).await.expect("no greeting");
    assert_eq!(seq, 0);
    Greeting::parse(&p).expect("greeting parses")
}

/// HandshakeResponse41 up to and including the user name.
fn response_head(caps: u32, user: &str) -> Vec<u8> {
    let mut out = caps.to_le_bytes().to_vec();
    out.extend_from_slice(&(1u32 << 24).to_le_bytes());
    out.push(45);
    out.extend_from_slice(&[0; 23]);
    out.extend_from_slice(user.as_bytes());
    out.push(0);
    out
}

/// A correct mysql_native_password response for the application user.
fn handshake_response(scramble: &[u8]) -> Vec<u8> {
    let reply = mysql_common::scramble::scramble_native(scramble, APP_PASSWORD.as_bytes())
        .expect("a non-empty password has a reply");
    let mut out = response_head(CLIENT_CAPS, APP_USER);
    out.push(20);
    out.extend_from_slice(&reply);
    out.extend_from_slice(APP_DATABASE.as_bytes());
    out.push(0);
    out.extend_from_slice(b"mysql_native_password\0");
    out
}

/// A session logged in by hand, ready for commands.
async fn login(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr).await;
    let g = greeting(&mut s).await;
    send(&mut s, &frame(1, &handshake_response(&g.scramble))).await;
    expect_ok(&mut s, 2).await;
    s
}

// ---- bad inputs ---------------------------------------------------------------------------

/// Adds connection attributes to a response: a length of `claimed`, `present` bytes of them.
fn with_attributes(mut response: Vec<u8>, claimed: u32, present: usize) -> Vec<u8> {
    response[..4].copy_from_slice(&(CLIENT_CAPS | cap::CONNECT_ATTRS).to_le_bytes());
    response.push(0xfd);
    response.extend_from_slice(&claimed.to_le_bytes()[..3]);
    response.resize(response.len() + present, b'a');
    response
}

/// Deterministic noise (xorshift), so a failure can be replayed.
fn noise(seed: usize, len: usize) -> Vec<u8> {
    let mut x = (seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A handshake response payload that is not one: the capability flags lack PROTOCOL_41.
fn junk_response(seed: usize) -> Vec<u8> {
    let mut p = noise(seed, 64);
    p[..4].fill(0);
    p
}

const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: lagless\r\n\r\n";

/// A header that promises 10 more bytes than arrive before the client half-closes.
async fn send_truncated(s: &mut TcpStream) {
    let mut bytes = vec![100, 0, 0, 1];
    bytes.extend_from_slice(&[1; 10]);
    send(s, &bytes).await;
    timeout(WAIT, s.shutdown())
        .await
        .expect("shutdown hung")
        .expect("shutdown failed");
}

// ---- the connection phase -----------------------------------------------------------------

#[tokio::test]
async fn framed_garbage_instead_of_the_handshake_response_is_a_bad_handshake() {
    let case = Case::start().await;
    for seed in 1..4 {
        let mut s = connect(case.addr()).await;
        greeting(&mut s).await;
        send(&mut s, &frame(1, &junk_response(seed))).await;
        expect_err_then_close(&mut s, 2, 1043).await;
    }
    case.assert_still_serving().await;
}

#[tokio::test]
async fn unframed_garbage_before_the_greeting_is_refused_at_its_header() {
    let case = Case::start().await;
    let mut s = connect(case.addr()).await;
    let started = Instant::now();
    // Read as a header, "GET " claims a 5 MiB packet: over the login limit, so not awaited.
    send(&mut s, HTTP_REQUEST).await;
    greeting(&mut s).await;
    expect_close_or_err(&mut s, 1153).await;
    assert!(started.elapsed() < PROMPTLY);
    case.assert_still_serving().await;
}

#[tokio::test]
async fn truncated_handshake_response_is_dropped_at_once() {
    let case = Case::start().await;
    let mut s = connect(case.addr()).await;
    greeting(&mut s).await;
    let started = Instant::now();
    send_truncated(&mut s).await;
    expect_closed(&mut s).await;
    assert!(
        started.elapsed() < PROMPTLY,
        "waited for the timer, not the close"
    );
    case.assert_still_serving().await;
}

/// Handshake responses whose inner length fields point past the end of the packet.
fn absurd_responses() -> Vec<(&'static str, Vec<u8>)> {
    let lenenc = |n: u64| {
        let mut p = response_head(CLIENT_CAPS, APP_USER);
        p.push(0xfe);
        p.extend_from_slice(&n.to_le_bytes());
        p.extend_from_slice(b"short");
        p
    };
    let mut one_byte_len = response_head(CLIENT_CAPS & !cap::PLUGIN_AUTH_LENENC_DATA, APP_USER);
    one_byte_len.extend_from_slice(&[255, 1, 2, 3]);
    let mut unterminated_user = response_head(CLIENT_CAPS, APP_USER);
    unterminated_user.pop();
    vec![
        ("auth data of 2^40 bytes", lenenc(1 << 40)),
        ("auth data of 2^64-1 bytes", lenenc(u64::MAX)),
        ("auth data length 0xff marker", {
            let mut p = response_head(CLIENT_CAPS, APP_USER);
            p.push(0xff);
            p
        }),
        ("255-byte auth data, 3 present", one_byte_len),
        ("user without NUL", unterminated_user),
        (
            "16 MiB connection attributes, none present",
            with_attributes(handshake_response(&[0; 20]), 0xff_ffff, 0),
        ),
        (
            "only the fixed prefix, no SSL",
            response_head(CLIENT_CAPS, "")[..32].to_vec(),
        ),
    ]
}

#[tokio::test]
async fn absurd_length_fields_in_the_handshake_response_are_a_bad_handshake() {
    let case = Case::start().await;
    for (what, payload) in absurd_responses() {
        let mut s = connect(case.addr()).await;
        greeting(&mut s).await;
        send(&mut s, &frame(1, &payload)).await;
        let message = expect_err(&mut s, 2, 1043).await;
        assert_eq!(message, "Bad handshake", "{what}");
        expect_closed(&mut s).await;
    }
    case.assert_still_serving().await;
}

#[tokio::test]
async fn oversized_handshake_response_is_refused() {
    let case = Case::start().await;
    // One physical packet of 1 MiB: far over what a login needs, under the 16 MiB frame limit.
    let mut s = connect(case.addr()).await;
    let g = greeting(&mut s).await;
    let payload = with_attributes(handshake_response(&g.scramble), 1 << 20, 1 << 20);
    let started = Instant::now();
    // The proxy may hang up before taking it all.
    let _ = timeout(WAIT, s.write_all(&frame(1, &payload))).await;
    expect_close_or_err(&mut s, 1153).await;
    assert!(started.elapsed() < PROMPTLY);
    case.assert_still_serving().await;
}

#[tokio::test]
async fn handshake_response_with_a_wrong_sequence_id_is_refused() {
    let case = Case::start().await;
    for seq in [0, 2, 7, 255] {
        let mut s = connect(case.addr()).await;
        let g = greeting(&mut s).await;
        send(&mut s, &frame(seq, &handshake_response(&g.scramble))).await;
        // As MariaDB does: 1156 "Got packets out of order", then the connection closes.
        expect_err_then_close(&mut s, 1, 1156).await;
    }
    case.assert_still_serving().await;
}

#[tokio::test]
async fn silent_client_is_dropped_at_the_handshake_timeout() {
    let case = Case::impatient().await;
    let mut s = connect(case.addr()).await;
    let started = Instant::now();
    greeting(&mut s).await;
    expect_closed(&mut s).await;
    assert_timed_out(started, HANDSHAKE_TIMEOUT);
    case.assert_still_serving().await;
}

// ---- commands -----------------------------------------------------------------------------

#[tokio::test]
async fn command_with_sequence_id_3_is_out_of_order() {
    let case = Case::start().await;
    let mut s = login(case.addr()).await;
    send(&mut s, &frame(3, &[com::PING])).await;
    expect_err_then_close(&mut s, 4, 1156).await;
    case.assert_still_serving().await;
}

/// Writes a byte every 100 ms until the peer stops taking them.
async fn drip<W: AsyncWrite + Unpin>(w: &mut W) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if w.write_all(b"x").await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn slow_drip_of_a_16_mib_command_is_cut_off_by_the_packet_timeout() {
    let case = Case::impatient().await;
    let mut s = login(case.addr()).await;
    send(&mut s, &[0xff, 0xff, 0xff, 0, com::QUERY, b'S', b'E']).await;
    let started = Instant::now();
    let (mut rd, mut wr) = s.split();
    tokio::select! {
        () = expect_closed(&mut rd) => {}
        () = drip(&mut wr) => expect_closed(&mut rd).await,
    }
    assert_timed_out(started, PACKET_TIMEOUT);
    case.assert_still_serving().await;
}

#[tokio::test]
async fn empty_command_packet_gets_1047_like_the_server_gives_and_the_session_goes_on() {
    let case = Case::start().await;
    let mut s = login(case.addr()).await;
    send(&mut s, &frame(0, &[])).await;
    expect_err(&mut s, 1, 1047).await;
    expect_ping(&mut s).await;
    case.assert_still_serving().await;
}

#[tokio::test]
async fn unknown_command_bytes_get_1047_and_the_session_goes_on() {
    let case = Case::start().await;
    let mut s = login(case.addr()).await;
    // COM_SLEEP, COM_CONNECT, COM_TIME, COM_BINLOG_DUMP, unassigned values.
    for cmd in [0x00, 0x0b, 0x0f, 0x12, 0x20, 0x7f, 0xfe, 0xff] {
        send(&mut s, &command(cmd, b"junk")).await;
        let message = expect_err(&mut s, 1, 1047).await;
        assert_eq!(message, "Unknown command", "command {cmd:#04x}");
    }
    expect_ping(&mut s).await;
    case.assert_still_serving().await;
}

#[tokio::test]
async fn execute_of_an_unknown_statement_gets_1243_and_the_session_goes_on() {
    let case = Case::start().await;
    let mut s = login(case.addr()).await;
    let mut body = 99u32.to_le_bytes().to_vec();
    body.push(0); // no cursor
    body.extend_from_slice(&1u32.to_le_bytes()); // iteration count
    send(&mut s, &command(com::STMT_EXECUTE, &body)).await;
    let message = expect_err(&mut s, 1, 1243).await;
    assert!(message.contains("(99)"), "{message}");
    expect_ping(&mut s).await;
    case.assert_still_serving().await;
}

#[tokio::test]
async fn statement_commands_shorter_than_their_header_leave_the_session_usable() {
    let case = Case::start().await;
    let mut s = login(case.addr()).await;
    for len in 0..9 {
        send(&mut s, &command(com::STMT_EXECUTE, &vec![1; len])).await;
        expect_err(&mut s, 1, 1835).await;
    }
    // MariaDB answers these with "unknown prepared statement handler"; so does the proxy.
    for cmd in [com::STMT_FETCH, com::STMT_RESET] {
        send(&mut s, &command(cmd, &[1, 0])).await;
        expect_err(&mut s, 1, 1243).await;
    }
    // These two have no reply in the protocol: the next packet must be the ping's OK.
    for cmd in [com::STMT_CLOSE, com::STMT_SEND_LONG_DATA] {
        send(&mut s, &command(cmd, &[1])).await;
        expect_ping(&mut s).await;
    }
    case.assert_still_serving().await;
}

#[tokio::test]
async fn binary_garbage_as_a_query_gets_the_server_error_and_the_session_goes_on() {
    let case = Case::start().await;
    let mut s = login(case.addr()).await;
    for seed in 1..6 {
        send(&mut s, &command(com::QUERY, &noise(seed, 200))).await;
        let (seq, p) = read_packet(&mut s)
            .await
            .expect("closed instead of an answer");
        assert_eq!((seq, p.first()), (1, Some(&0xff)), "{p:02x?}");
    }
    expect_ping(&mut s).await;
    case.assert_still_serving().await;
}

// ---- large results ------------------------------------------------------------------------

/// Sends BIG_QUERY and counts the rows, checking each one (text protocol, old-style EOFs).
async fn count_big_rows(s: &mut TcpStream) -> usize {
    send(s, &command(com::QUERY, BIG_QUERY.as_bytes())).await;
    let mut next = async || read_packet(s).await.expect("closed mid-result").1;
    assert_eq!(next().await, [1], "one column");
    next().await; // its definition
    assert_eq!(next().await[0], 0xfe, "EOF after the columns");
    let mut rows = 0;
    loop {
        let p = next().await;
        if p[0] == 0xfe && p.len() < 9 {
            return rows;
        }
        assert_eq!(p.len(), BIG_ROW_LEN);
        assert_eq!(p[..3], [0xfc, 0xe8, 0x03]);
        assert!(p[3..].iter().all(|&b| b == b'x'));
        rows += 1;
    }
}

#[tokio::test]
async fn client_leaving_mid_result_does_not_poison_the_backend_pool() {
    let case = Case::start().await;
    for _ in 0..3 {
        let mut s = login(case.addr()).await;
        send(&mut s, &command(com::QUERY, BIG_QUERY.as_bytes())).await;
        let mut some = vec![0; 1 << 20];
        timeout(WAIT, s.read_exact(&mut some))
            .await
            .expect("result did not start")
            .expect("result cut short");
        drop(s);
        case.assert_still_serving().await;
    }
    // Same user, database and capabilities: the same pool key as the sessions that left.
    let mut s = login(case.addr()).await;
    let rows = timeout(WAIT * 6, count_big_rows(&mut s))
        .await
        .expect("big result hung");
    assert_eq!(rows, BIG_ROWS);
    expect_ping(&mut s).await;
    case.assert_still_serving().await;
}

// ---- many at once -------------------------------------------------------------------------

/// One misbehaving client of five kinds; returns once the proxy closed it.
async fn garbage_client(addr: SocketAddr, i: usize) {
    let mut s = connect(addr).await;
    match i % 5 {
        0 => {
            greeting(&mut s).await;
            send(&mut s, &frame(1, &junk_response(i))).await;
            expect_err_then_close(&mut s, 2, 1043).await;
        }
        1 => {
            send(&mut s, HTTP_REQUEST).await;
            greeting(&mut s).await;
            expect_close_or_err(&mut s, 1153).await;
        }
        2 => {
            greeting(&mut s).await;
            expect_closed(&mut s).await;
        }
        3 => {
            greeting(&mut s).await;
            send_truncated(&mut s).await;
            expect_closed(&mut s).await;
        }
        _ => {
            greeting(&mut s).await;
            send(&mut s, &noise(i, 256)).await;
            expect_only_errors_then_close(&mut s).await;
        }
    }
}

async fn expect_only_errors_then_close(s: &mut TcpStream) {
    while let Some((_, p)) = read_packet(s).await {
        assert_eq!(p.first(), Some(&0xff), "not an ERR packet: {p:02x?}");
    }
}

#[tokio::test]
async fn many_garbage_connections_do_not_disturb_a_good_client() {
    let case = Case::impatient().await;
    let mut good = timeout(WAIT, case.h.app()).await.expect("login hung");
    let addr = case.addr();
    let garbage = tokio::spawn(async move {
        let clients = (0..200).map(|i| tokio::spawn(garbage_client(addr, i)));
        for client in futures::future::join_all(clients).await {
            client.expect("a garbage client's expectation failed");
        }
    });
    let mut queries = 0;
    while !garbage.is_finished() || queries < 10 {
        let one: Option<i64> = timeout(WAIT, good.query_first("SELECT 1"))
            .await
            .expect("the good client hung")
            .expect("the good client got an error");
        assert_eq!(one, Some(1));
        queries += 1;
    }
    timeout(WAIT, garbage)
        .await
        .expect("garbage clients hung")
        .expect("garbage clients failed");
    timeout(WAIT, good.disconnect())
        .await
        .expect("disconnect hung")
        .expect("disconnect failed");
    case.assert_still_serving().await;
}
