//! The client side of the connection phase: greeting, TLS upgrade, authentication.

use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::backend::{Identity, PooledConn, RelayedLogin};
use crate::limits::UserSlot;
use crate::protocol::auth::{self, BackendSecret};
use crate::protocol::compress::Compressed;
use crate::protocol::constants::{cap, header};
use crate::protocol::handshake::{Greeting, HandshakeResponse, auth_switch_request};
use crate::protocol::io::{ClientIo, ClientStream};
use crate::protocol::messages::{ErrPacket, Ok};
use crate::protocol::packet::{PacketError, PacketStream};
use crate::session::proxy_state::ProxyState;
use crate::topology::Member;
use crate::users::UserRecord;

/// A stream that first yields bytes read ahead from it, then reads the stream itself.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: bytes::Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: bytes::Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A client that logged in.
#[derive(Debug)]
pub struct Login {
    pub user: String,
    pub secret: BackendSecret,
    pub database: Option<String>,
    pub caps: u32,
    /// MariaDB extended capabilities negotiated with the client.
    pub ext_caps: u32,
    pub collation: u8,
    pub attributes: Vec<u8>,
    pub tls: bool,
    /// The greeting's scramble: COM_CHANGE_USER answers it again, as on a server.
    pub scramble: [u8; 20],
    /// The client's address, for the server's refusal messages.
    pub host: String,
    /// The primary connection of a client that authenticated by answering the primary
    /// itself; the session takes it over. (In a mutex only so that a `Login` can be shared
    /// across threads: a connection's stream cannot.)
    pub relayed: std::sync::Mutex<Option<(Member, PooledConn)>>,
    /// This session's place in its user's `max_user_connections`.
    pub slot: Option<UserSlot>,
    /// In a tenant pool: the cluster of the login's database (or tenant attribute) and whose
    /// it is; `None` means the proxy's only (or global) cluster.
    pub placed: Option<(
        std::sync::Arc<crate::backend::Backends>,
        crate::tenant::Owner,
    )>,
}

impl Login {
    /// Who the session's backend connections log in as.
    pub fn identity(&self) -> Identity<'_> {
        Identity {
            user: &self.user,
            secret: &self.secret,
            caps: self.caps,
            ext_caps: self.ext_caps,
            collation: self.collation,
            state_sig: 0,
        }
    }
}

/// Why a login ended without a session.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Packet(#[from] PacketError),
    #[error("refused: {0}")]
    Refused(ErrPacket),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("handshake timed out")]
    Timeout,
}

impl LoginError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Packet(_) => "protocol",
            Self::Refused(e) if e.code == 1045 => "auth",
            Self::Refused(_) => "handshake",
            Self::Tls(_) => "tls",
            Self::Timeout => "timeout",
        }
    }
}

/// Runs the connection phase within the handshake timeout.
pub async fn login(
    tcp: TcpStream,
    shared: &ProxyState,
    connection_id: u32,
    peer: IpAddr,
) -> Result<(ClientStream, Login), LoginError> {
    let timeout = shared.config.handshake_timeout;
    tokio::time::timeout(timeout, run(tcp, shared, connection_id, peer))
        .await
        .map_err(|_| LoginError::Timeout)?
}

async fn run(
    tcp: TcpStream,
    shared: &ProxyState,
    connection_id: u32,
    peer: IpAddr,
) -> Result<(ClientStream, Login), LoginError> {
    let peer_host = &peer.to_string();
    let scramble = auth::new_scramble();
    let tls_acceptor = shared.tls.as_ref().map(|t| t.acceptor());
    let mut server_caps = shared.server_caps();
    if tls_acceptor.is_some() {
        server_caps |= cap::SSL;
    }
    let greeting = Greeting {
        server_version: shared.server_version(),
        connection_id,
        scramble: scramble.to_vec(),
        capabilities: server_caps,
        ext_capabilities: shared.server_ext_caps(),
        collation: shared.collation(),
        status: shared.new_session_status(),
        auth_plugin: shared.config.auth_plugin.clone(),
    };
    let mut plain = PacketStream::new(tcp);
    plain.packet_timeout = shared.config.handshake_timeout;
    // Login packets are small; a huge one is an attack, not a client.
    plain.max_logical = 64 * 1024;
    let mut seq = 0u8;
    plain.send(&mut seq, &greeting.encode()).await?;
    let (rseq, mut payload) = plain.read_logical().await?;
    if rseq != 1 {
        // As the server does: say why before closing.
        let err = ErrPacket::new(1156, "08S01", "Got packets out of order");
        return Err(refuse(&mut plain, 1, err).await);
    }
    seq = rseq.wrapping_add(1);

    let mut tls = false;
    let mut stream: ClientStream = if HandshakeResponse::is_ssl_request(&payload) {
        let Some(acceptor) = tls_acceptor else {
            return Err(refuse(&mut plain, seq, ErrPacket::bad_handshake()).await);
        };
        // A fast client may already have sent the start of its TLS handshake.
        let (tcp, early) = plain.into_parts();
        let tls_stream = acceptor
            .accept(Prefixed::new(early.freeze(), tcp))
            .await
            .map_err(LoginError::Tls)?;
        tls = true;
        let mut s: ClientStream = PacketStream::new(Box::new(tls_stream));
        s.packet_timeout = shared.config.handshake_timeout;
        s.max_logical = 64 * 1024;
        let (rseq, p) = s.read_logical().await?;
        check_seq(rseq, seq)?;
        seq = rseq.wrapping_add(1);
        payload = p;
        s
    } else {
        plain.map_io(|t| Box::new(t) as Box<dyn ClientIo>)
    };

    let resp = match HandshakeResponse::parse(&payload) {
        Result::Ok(r) => r,
        Err(_) => return Err(refuse(&mut stream, seq, ErrPacket::bad_handshake()).await),
    };
    if shared.config.require_tls && !tls {
        let err = ErrPacket::new(
            3159,
            "HY000",
            "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
        );
        return Err(refuse(&mut stream, seq, err).await);
    }
    let caps = resp.capabilities & server_caps;
    let ext_caps = if server_caps & cap::LONG_PASSWORD == 0 {
        resp.ext_capabilities & greeting.ext_capabilities
    } else {
        0
    };
    let login_with = |secret| Login {
        user: resp.user.clone(),
        secret,
        database: resp.database.clone(),
        caps,
        ext_caps,
        collation: resp.collation,
        attributes: resp.attributes.clone(),
        tls,
        scramble,
        host: peer_host.to_string(),
        relayed: Default::default(),
        slot: None,
        placed: None,
    };
    let record = shared.find_user(&resp.user).await;
    if record.as_ref().is_some_and(|r| !verifiable(r)) {
        let sent_password = !resp.auth_response.is_empty();
        let login = login_with(BackendSecret::Relayed);
        let plugin = record.as_ref().map_or("", |r| r.server_plugin.as_str());
        let relay = Relay {
            sent_password,
            account_plugin: plugin,
            peer,
        };
        let mut login = relay_login(&mut stream, &mut seq, shared, login, relay).await?;
        login.slot = match shared.admission.user(&login.user) {
            Ok(slot) => Some(slot),
            Err(err) => return Err(refuse(&mut stream, seq, err).await),
        };
        return finish_login(stream, seq, shared, login).await;
    }
    let verified = authenticate(
        &mut stream,
        &mut seq,
        Attempt {
            shared,
            scramble: &scramble,
            resp: &resp,
            record: record.as_ref(),
            tls,
        },
    )
    .await?;
    let Some(secret) = verified.secret else {
        // Guessing is slowed down per user and address, as connection control does.
        let delay = shared.admission.failed(&resp.user, peer);
        tracing::info!(user = %resp.user, peer = peer_host, ?delay, "access denied");
        tokio::time::sleep(delay).await;
        let err = ErrPacket::access_denied(&resp.user, peer_host, verified.sent_password);
        return Err(refuse(&mut stream, seq, err).await);
    };
    shared.admission.succeeded(&resp.user, peer);
    let mut login = login_with(secret);
    login.slot = match shared.admission.user(&login.user) {
        Ok(slot) => Some(slot),
        Err(err) => return Err(refuse(&mut stream, seq, err).await),
    };
    // The backend decides whether the database exists and the user may use it; its answer is
    // the one a server would give.
    match shared
        .check_backend_login(
            login.identity(),
            login.database.as_deref(),
            &login.attributes,
        )
        .await
    {
        Result::Ok(placed) => login.placed = placed,
        Err(err) => return Err(refuse(&mut stream, seq, err).await),
    }
    finish_login(stream, seq, shared, login).await
}

/// Sends the final OK and switches the stream to compression when the client asked for it.
async fn finish_login(
    mut stream: ClientStream,
    mut seq: u8,
    shared: &ProxyState,
    login: Login,
) -> Result<(ClientStream, Login), LoginError> {
    let caps = login.caps;
    let ok = Ok {
        status: shared.new_session_status(),
        ..Default::default()
    };
    stream.send(&mut seq, &ok.encode(caps)).await?;
    let mut stream = if caps & cap::COMPRESS != 0 {
        // Everything after the OK travels compressed.
        let (io, early) = stream.into_parts();
        PacketStream::new(Box::new(Compressed::new(io, early)) as Box<dyn ClientIo>)
    } else {
        stream
    };
    stream.packet_timeout = shared.config.packet_timeout;
    // As the server: a session keeps the limit it started with.
    stream.max_logical = shared.backends.max_allowed_packet();
    Ok((stream, login))
}

fn check_seq(got: u8, expected: u8) -> Result<(), LoginError> {
    if got == expected {
        Ok(())
    } else {
        Err(LoginError::Packet(PacketError::OutOfOrder {
            expected,
            got,
        }))
    }
}

async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut PacketStream<S>,
    mut seq: u8,
    err: ErrPacket,
) -> LoginError {
    let _ = stream.send(&mut seq, &err.encode()).await;
    stream.shutdown().await;
    LoginError::Refused(err)
}

/// Whether the proxy can check this account's answer itself (else the primary does, through
/// a relayed exchange): native accounts by their hash, others with the password in the users
/// file.
fn verifiable(r: &UserRecord) -> bool {
    if r.locked || r.expired {
        // The server's own answer (4151, 1862 or a sandbox session) is the one to give.
        return false;
    }
    match r.server_plugin.as_str() {
        "" | auth::NATIVE => r.native_hash.is_some() || r.password.is_some(),
        _ => r.password.is_some(),
    }
}

/// Authenticates a client by relaying its exchange with the primary: the server challenges,
/// the client answers, the server decides. The session then keeps that connection and all
/// its work on the primary.
/// `login` has the secret `Relayed`; `sent_password`: the client's first answer was not empty.
async fn relay_login(
    stream: &mut ClientStream,
    seq: &mut u8,
    shared: &ProxyState,
    mut login: Login,
    relay: Relay<'_>,
) -> Result<Login, LoginError> {
    let Relay {
        mut sent_password,
        account_plugin,
        peer,
    } = relay;
    let primary = match shared.backends.wait_for_primary().await {
        Result::Ok(p) => p,
        Err(err) => return Err(refuse(stream, *seq, err).await),
    };
    let params = shared.backends.connect_params(
        login.identity(),
        &primary.addr(),
        login.database.as_deref(),
    );
    let unavailable =
        |e: crate::backend::BackendError| ErrPacket::backend_unavailable(&e.to_string());
    let mut server =
        match RelayedLogin::start(&params, login.attributes.clone(), account_plugin).await {
            Result::Ok(s) => s,
            Err(e) => return Err(refuse(stream, *seq, unavailable(e)).await),
        };
    loop {
        let pkt = match server.next().await {
            Result::Ok(p) => p,
            Err(e) => return Err(refuse(stream, *seq, unavailable(e)).await),
        };
        match pkt.first().copied() {
            Some(header::OK) => break,
            Some(header::ERR) => {
                let err = match ErrPacket::parse(&pkt) {
                    // As the proxy's own refusals: the client's host, not the proxy's, and
                    // slowed down alike (the server sees only the proxy's address).
                    Result::Ok(e) if e.code == 1045 => {
                        tokio::time::sleep(shared.admission.failed(&login.user, peer)).await;
                        ErrPacket::access_denied(&login.user, &login.host, sent_password)
                    }
                    Result::Ok(e) => e,
                    Err(_) => ErrPacket::malformed(),
                };
                tracing::info!(user = %login.user, peer = %login.host, "access denied by the primary");
                return Err(refuse(stream, *seq, err).await);
            }
            Some(header::AUTH_SWITCH | header::AUTH_MORE_DATA) => {
                stream.send(seq, &pkt).await?;
                // caching_sha2's "fast authentication succeeded": the OK follows unasked.
                if pkt == [header::AUTH_MORE_DATA, auth::SHA2_FAST_AUTH_OK] {
                    continue;
                }
                let (rseq, reply) = stream.read_logical().await?;
                check_seq(rseq, *seq)?;
                *seq = rseq.wrapping_add(1);
                sent_password = !reply.is_empty();
                if let Err(e) = server.answer(&reply).await {
                    return Err(refuse(stream, *seq, unavailable(e)).await);
                }
            }
            _ => return Err(refuse(stream, *seq, ErrPacket::bad_handshake()).await),
        }
    }
    shared.admission.succeeded(&login.user, peer);
    let conn = match server.finish().await {
        Result::Ok(conn) => conn,
        Err(e) => return Err(refuse(stream, *seq, unavailable(e)).await),
    };
    let conn = match shared.backends.pool.adopt(conn, &params).await {
        Result::Ok(conn) => conn,
        Err(e) => {
            let err = ErrPacket::backend_unavailable(&e.to_string());
            return Err(refuse(stream, *seq, err).await);
        }
    };
    tracing::debug!(user = %login.user, backend = %params.addr, "client authenticated by the primary");
    login.relayed = std::sync::Mutex::new(Some((primary, conn)));
    Result::Ok(login)
}

/// How a relayed login goes: whether the client's first answer was not empty, the account's
/// plugin (the relay offers another, so the server challenges), and the client's address.
struct Relay<'a> {
    sent_password: bool,
    account_plugin: &'a str,
    peer: IpAddr,
}

/// The plugin the proxy verifies this user with.
fn plugin_for(shared: &ProxyState, record: Option<&UserRecord>) -> &'static str {
    match record {
        Some(r) if r.server_plugin == "ed25519" => auth::ED25519,
        Some(r) if shared.config.auth_plugin == auth::CACHING_SHA2 && r.password.is_some() => {
            auth::CACHING_SHA2
        }
        _ => auth::NATIVE,
    }
}

/// One authentication exchange.
struct Attempt<'a> {
    shared: &'a ProxyState,
    scramble: &'a [u8; 20],
    resp: &'a HandshakeResponse,
    record: Option<&'a UserRecord>,
    tls: bool,
}

/// The outcome of an authentication exchange.
struct Verdict {
    /// `None` is a wrong password or an unknown user (the same answer for both, so the proxy
    /// does not reveal which users exist).
    secret: Option<BackendSecret>,
    /// The client's last answer was not empty: the server's refusal says `using password: YES`.
    sent_password: bool,
}

/// Verifies the client.
async fn authenticate(
    stream: &mut ClientStream,
    seq: &mut u8,
    a: Attempt<'_>,
) -> Result<Verdict, LoginError> {
    let Attempt {
        shared,
        scramble,
        resp,
        record,
        tls,
    } = a;
    let plugin = plugin_for(shared, record);
    let client_plugin = resp.auth_plugin.as_deref().unwrap_or(auth::NATIVE);
    let mut nonce = scramble.to_vec();
    let reply = if client_plugin == plugin && plugin != auth::ED25519 {
        resp.auth_response.clone()
    } else {
        if plugin == auth::ED25519 {
            nonce = [auth::new_scramble(), auth::new_scramble()].concat()[..32].to_vec();
        }
        stream
            .send(seq, &auth_switch_request(plugin, &nonce))
            .await?;
        let (rseq, reply) = stream.read_logical().await?;
        check_seq(rseq, *seq)?;
        *seq = rseq.wrapping_add(1);
        reply.to_vec()
    };
    let sent_password = !reply.is_empty();
    let Some(record) = record else {
        return Ok(Verdict {
            secret: None,
            sent_password,
        });
    };
    let secret = match plugin {
        auth::ED25519 => record
            .password
            .as_ref()
            .filter(|pw| auth::verify_ed25519(&nonce, &reply, pw))
            .map(|pw| BackendSecret::Password(pw.clone())),
        auth::CACHING_SHA2 => verify_caching_sha2(stream, seq, &nonce, &reply, record, tls).await?,
        _ => verify_native(&nonce, &reply, record),
    };
    Ok(Verdict {
        secret,
        sent_password,
    })
}

fn verify_native(nonce: &[u8], reply: &[u8], record: &UserRecord) -> Option<BackendSecret> {
    match (&record.native_hash, &record.password) {
        (_, Some(pw)) if pw.is_empty() => reply
            .is_empty()
            .then(|| BackendSecret::Password(String::new())),
        (Some(hash), pw) => {
            let sha1_pw = auth::verify_native(nonce, reply, hash)?;
            Some(match pw {
                Some(pw) => BackendSecret::Password(pw.clone()),
                None => BackendSecret::NativeSha1(sha1_pw),
            })
        }
        (None, _) => None,
    }
}

/// caching_sha2_password: the fast path proves knowledge of the password with a scramble; a
/// client that cannot (it has no cached entry of its own) sends the password in clear, which
/// the proxy accepts only over TLS.
async fn verify_caching_sha2(
    stream: &mut ClientStream,
    seq: &mut u8,
    nonce: &[u8],
    reply: &[u8],
    record: &UserRecord,
    tls: bool,
) -> Result<Option<BackendSecret>, LoginError> {
    let Some(pw) = &record.password else {
        return Ok(None);
    };
    if auth::verify_sha2(nonce, reply, pw) {
        stream
            .send(seq, &[header::AUTH_MORE_DATA, auth::SHA2_FAST_AUTH_OK])
            .await?;
        return Ok(Some(BackendSecret::Password(pw.clone())));
    }
    if !tls {
        return Ok(None);
    }
    stream
        .send(seq, &[header::AUTH_MORE_DATA, auth::SHA2_PERFORM_FULL_AUTH])
        .await?;
    let (rseq, clear) = stream.read_logical().await?;
    check_seq(rseq, *seq)?;
    *seq = rseq.wrapping_add(1);
    let clear = clear.strip_suffix(&[0]).unwrap_or(&clear);
    Ok(auth::constant_time_eq(clear, pw.as_bytes()).then(|| BackendSecret::Password(pw.clone())))
}

/// COM_CHANGE_USER: authenticates the new user against the greeting's scramble (as a server
/// does: clients answer it, not a new one), checks the backend accepts it, and answers the
/// client. `Ok(None)`: refused, the
/// client got the error.
pub async fn change_user(
    stream: &mut ClientStream,
    shared: &ProxyState,
    current: &Login,
    payload: &[u8],
) -> Result<Option<Login>, PacketError> {
    let mut seq = 1u8;
    let Ok(resp) = parse_change_user(payload, current) else {
        let _ = stream
            .send(&mut seq, &ErrPacket::malformed().encode())
            .await;
        return Ok(None);
    };
    let record = shared.find_user(&resp.user).await;
    let verified = match authenticate(
        stream,
        &mut seq,
        Attempt {
            shared,
            scramble: &current.scramble,
            resp: &resp,
            record: record.as_ref(),
            tls: current.tls,
        },
    )
    .await
    {
        Ok(v) => v,
        Err(LoginError::Packet(e)) => return Err(e),
        Err(_) => Verdict {
            secret: None,
            sent_password: true,
        },
    };
    let peer = current.host.parse::<IpAddr>().ok();
    let Some(secret) = verified.secret else {
        // Slowed down as a login is: changing user must not be a faster way to guess.
        if let Some(peer) = peer {
            tokio::time::sleep(shared.admission.failed(&resp.user, peer)).await;
        }
        let err = ErrPacket::access_denied(&resp.user, &current.host, verified.sent_password);
        stream.send(&mut seq, &err.encode()).await?;
        return Ok(None);
    };
    if let Some(peer) = peer {
        shared.admission.succeeded(&resp.user, peer);
    }
    let mut login = Login {
        user: resp.user,
        secret,
        database: resp.database,
        caps: current.caps,
        ext_caps: current.ext_caps,
        collation: if resp.collation == 0 {
            current.collation
        } else {
            resp.collation
        },
        attributes: resp.attributes,
        tls: current.tls,
        scramble: current.scramble,
        host: current.host.clone(),
        relayed: Default::default(),
        slot: None,
        placed: None,
    };
    match shared
        .check_backend_login(
            login.identity(),
            login.database.as_deref(),
            &login.attributes,
        )
        .await
    {
        Result::Ok(placed) => login.placed = placed,
        Err(err) => {
            stream.send(&mut seq, &err.encode()).await?;
            return Ok(None);
        }
    }
    // The same user keeps the session's place (the caller moves it over); another needs one.
    if login.user != current.user {
        match shared.admission.user(&login.user) {
            Result::Ok(slot) => login.slot = Some(slot),
            Err(err) => {
                stream.send(&mut seq, &err.encode()).await?;
                return Ok(None);
            }
        }
    }
    let ok = Ok {
        status: shared.new_session_status(),
        ..Default::default()
    };
    stream.send(&mut seq, &ok.encode(current.caps)).await?;
    Result::Ok(Some(login))
}

fn parse_change_user(payload: &[u8], current: &Login) -> Result<HandshakeResponse, PacketError> {
    use crate::protocol::wire::Reader;
    let mut r = Reader::new(payload);
    r.skip(1)?;
    let user = String::from_utf8_lossy(r.null_str()?).into_owned();
    let auth_response = if current.caps & cap::SECURE_CONNECTION != 0 {
        let n = usize::from(r.u8()?);
        r.take(n)?.to_vec()
    } else {
        r.null_str()?.to_vec()
    };
    let db = r.null_str_or_rest();
    let database = (!db.is_empty()).then(|| String::from_utf8_lossy(db).into_owned());
    let collation = if r.remaining().len() >= 2 {
        r.u16()? as u8
    } else {
        0
    };
    let auth_plugin = if current.caps & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
        Some(String::from_utf8_lossy(r.null_str_or_rest()).into_owned())
    } else {
        None
    };
    let attributes = if current.caps & cap::CONNECT_ATTRS != 0 && !r.is_empty() {
        r.lenenc_bytes().map(<[u8]>::to_vec).unwrap_or_default()
    } else {
        Vec::new()
    };
    Result::Ok(HandshakeResponse {
        capabilities: current.caps,
        ext_capabilities: current.ext_caps,
        max_packet: 0,
        collation,
        user,
        auth_response,
        database,
        auth_plugin,
        attributes,
    })
}
