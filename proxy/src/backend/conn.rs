//! One connection from the proxy to a backend server, logged in as a client's user.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::tls::BackendTls;
use crate::protocol::auth::{self, BackendSecret};
use crate::protocol::constants::{cap, com, header};
use crate::protocol::handshake::{Greeting, HandshakeResponse, parse_auth_switch};
use crate::protocol::io::ClientIo;
use crate::protocol::messages::{self, ErrPacket};
use crate::protocol::packet::{PacketError, PacketStream, RawPacket};
use crate::protocol::response::{ResponseKind, ResponseTracker, Step};
use crate::topology::Flavor;

/// Why a backend connection failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {0} timed out")]
    ConnectTimeout(String),
    #[error("{addr} refused the login: {err}")]
    Auth { addr: String, err: ErrPacket },
    #[error("{addr}: cannot answer auth plugin `{plugin}` without the user's password")]
    Plugin { addr: String, plugin: String },
    #[error("{addr}: {source}")]
    Protocol {
        addr: String,
        #[source]
        source: PacketError,
    },
    #[error("{addr} answered with an error: {err}")]
    Server { addr: String, err: ErrPacket },
    #[error("TLS to {addr}: {reason}")]
    Tls { addr: String, reason: String },
}

/// What a backend login needs.
#[derive(Debug, Clone)]
pub struct ConnectParams {
    pub addr: String,
    pub user: String,
    pub secret: BackendSecret,
    pub database: Option<String>,
    /// The capabilities the client negotiated with the proxy; the backend gets the same shape.
    pub client_caps: u32,
    /// The MariaDB extended capabilities the client negotiated with the proxy.
    pub client_ext_caps: u32,
    pub collation: u8,
    /// The session state a pooled connection should carry (see `Identity::state_sig`).
    pub state_sig: u64,
    pub connect_timeout: Duration,
    /// Ask the server to report each write's GTID in OK packets (needs `CLIENT_SESSION_TRACK`).
    pub track_gtids: Option<Flavor>,
    /// Encrypt the connection (the server must offer TLS).
    pub tls: Option<BackendTls>,
}

/// A logged-in backend connection.
#[derive(Debug)]
pub struct BackendConn {
    pub stream: PacketStream<Box<dyn ClientIo>>,
    pub addr: String,
    pub connection_id: u32,
    /// Capabilities negotiated with this backend.
    pub caps: u32,
    /// MariaDB extended capabilities negotiated with this backend.
    pub ext_caps: u32,
    /// Status flags of the last OK or terminator.
    pub status: u16,
    /// The default database as far as the proxy knows.
    pub database: Option<String>,
    pub last_used: Instant,
    /// Set when the server reports write GTIDs; re-applied after every reset.
    track_gtids: Option<Flavor>,
    /// The backend tracks session state but the client did not ask for it: OK packets are
    /// rewritten on their way to the client.
    pub strip_session_track: bool,
    /// The client tracks session state and asked for committed GTIDs itself: the ones the
    /// proxy tracks for its own use are not hidden from it.
    pub client_tracks_gtids: bool,
    /// The signature of the replayable session state applied here (0: as the server made it;
    /// see `session::multiplex`).
    pub state_sig: u64,
    /// Statements prepared on this connection, by text.
    pub prepared: super::stmt_cache::StmtCache,
    /// The session event loop whose reactor its socket is registered in (`None`: not opened
    /// on one); see `server::loops`.
    pub event_loop: Option<usize>,
}

/// A backend connection before its login: greeting read, TLS started.
#[derive(Debug)]
struct Opened {
    stream: PacketStream<Box<dyn ClientIo>>,
    greeting: Greeting,
    caps: u32,
    ext_caps: u32,
    /// Sequence id of the next packet to the server.
    seq: u8,
}

/// Connects and logs in.
pub async fn connect(p: &ConnectParams) -> Result<BackendConn, BackendError> {
    let login = async {
        let mut o = open(p).await?;
        login(&mut o.stream, p, &o.greeting, (o.caps, o.ext_caps), o.seq).await?;
        Ok(o)
    };
    let o = tokio::time::timeout(p.connect_timeout * 2, login)
        .await
        .map_err(|_| BackendError::ConnectTimeout(p.addr.clone()))??;
    logged_in(p, o).await
}

/// A login whose authentication exchange the client answers itself: for accounts the proxy
/// cannot verify (an ed25519 account whose password it does not have, another plugin).
#[derive(Debug)]
pub struct RelayedLogin {
    opened: Opened,
    params: ConnectParams,
}

impl RelayedLogin {
    /// Opens the connection and offers, with no answer, a plugin other than the account's
    /// (`account_plugin`): the server then switches to the account's own, with a challenge of
    /// its own that the client answers. (Offering the account's plugin would have the server
    /// judge the empty answer at once.)
    pub async fn start(
        p: &ConnectParams,
        attributes: Vec<u8>,
        account_plugin: &str,
    ) -> Result<Self, BackendError> {
        let offered = if account_plugin == auth::NATIVE || account_plugin.is_empty() {
            auth::ED25519
        } else {
            auth::NATIVE
        };
        let mut o = tokio::time::timeout(p.connect_timeout * 2, open(p))
            .await
            .map_err(|_| BackendError::ConnectTimeout(p.addr.clone()))??;
        let resp = HandshakeResponse {
            capabilities: o.caps | (cap::CONNECT_ATTRS & o.greeting.capabilities),
            ext_capabilities: o.ext_caps,
            max_packet: 1 << 30,
            collation: p.collation,
            user: p.user.clone(),
            auth_response: Vec::new(),
            database: p.database.clone(),
            auth_plugin: Some(offered.to_string()),
            attributes,
        };
        o.stream
            .send(&mut o.seq, &resp.encode())
            .await
            .map_err(|source| BackendError::Protocol {
                addr: p.addr.clone(),
                source,
            })?;
        Ok(Self {
            opened: o,
            params: p.clone(),
        })
    }

    fn proto(&self, source: PacketError) -> BackendError {
        BackendError::Protocol {
            addr: self.params.addr.clone(),
            source,
        }
    }

    /// The server's next packet of the exchange (an auth switch, more data, OK or ERR).
    pub async fn next(&mut self) -> Result<Vec<u8>, BackendError> {
        let read = self.opened.stream.read_raw();
        let pkt = tokio::time::timeout(self.params.connect_timeout * 2, read)
            .await
            .map_err(|_| BackendError::ConnectTimeout(self.params.addr.clone()))?
            .map_err(|e| self.proto(e))?;
        self.opened.seq = pkt.seq.wrapping_add(1);
        Ok(pkt.payload.to_vec())
    }

    /// Passes the client's answer on.
    pub async fn answer(&mut self, reply: &[u8]) -> Result<(), BackendError> {
        let o = &mut self.opened;
        let sent = o.stream.send(&mut o.seq, reply).await;
        sent.map_err(|e| self.proto(e))
    }

    /// After the server's OK: the logged-in connection.
    pub async fn finish(self) -> Result<BackendConn, BackendError> {
        logged_in(&self.params, self.opened).await
    }
}

/// TCP, the greeting, and TLS when configured.
async fn open(p: &ConnectParams) -> Result<Opened, BackendError> {
    let tcp = tokio::time::timeout(p.connect_timeout, TcpStream::connect(&p.addr))
        .await
        .map_err(|_| BackendError::ConnectTimeout(p.addr.clone()))?
        .map_err(|source| BackendError::Connect {
            addr: p.addr.clone(),
            source,
        })?;
    // Without TCP_NODELAY multi-packet results stall on delayed ACKs.
    let _ = tcp.set_nodelay(true);
    let proto = |source| BackendError::Protocol {
        addr: p.addr.clone(),
        source,
    };
    let mut plain = PacketStream::new(tcp);
    let greet = plain.read_raw().await.map_err(proto)?;
    if greet.first() == Some(header::ERR) {
        return Err(BackendError::Server {
            addr: p.addr.clone(),
            err: ErrPacket::parse(&greet.payload).map_err(proto)?,
        });
    }
    let greeting = Greeting::parse(&greet.payload).map_err(proto)?;
    let mut caps = negotiate(p, &greeting);
    // MariaDB's: only with a server that announced them (no CLIENT_MYSQL).
    let ext_caps = if greeting.capabilities & cap::LONG_PASSWORD == 0 {
        p.client_ext_caps & greeting.ext_capabilities
    } else {
        0
    };
    let mut seq = greet.seq.wrapping_add(1);
    let stream = match &p.tls {
        None => plain.map_io(|t| Box::new(t) as Box<dyn ClientIo>),
        Some(tls) => {
            caps |= cap::SSL;
            start_tls(plain, p, tls, &greeting, (caps, ext_caps), &mut seq).await?
        }
    };
    Ok(Opened {
        stream,
        greeting,
        caps,
        ext_caps,
        seq,
    })
}

/// A connection whose login succeeded, with GTID tracking set up.
async fn logged_in(p: &ConnectParams, o: Opened) -> Result<BackendConn, BackendError> {
    let Opened {
        stream,
        greeting,
        caps,
        ext_caps,
        ..
    } = o;
    let mut conn = BackendConn {
        stream,
        addr: p.addr.clone(),
        connection_id: greeting.connection_id,
        caps,
        ext_caps,
        status: greeting.status,
        database: p.database.clone(),
        last_used: Instant::now(),
        track_gtids: p.track_gtids.filter(|_| caps & cap::SESSION_TRACK != 0),
        strip_session_track: caps & cap::SESSION_TRACK != 0
            && p.client_caps & cap::SESSION_TRACK == 0,
        client_tracks_gtids: false,
        state_sig: 0,
        prepared: super::stmt_cache::StmtCache::default(),
        event_loop: crate::loop_id::current(),
    };
    conn.enable_gtid_tracking()
        .await
        .map_err(|source| BackendError::Protocol {
            addr: p.addr.clone(),
            source,
        })?;
    Ok(conn)
}

fn negotiate(p: &ConnectParams, g: &Greeting) -> u32 {
    // Session tracking is how writes report their GTIDs; clients that did not ask for it get
    // OK packets rewritten without it (see `strip_session_track`).
    let tracking = if p.track_gtids.is_some() {
        cap::SESSION_TRACK
    } else {
        0
    };
    let wanted = (p.client_caps & cap::SHAPE)
        | tracking
        | cap::LONG_PASSWORD
        | cap::PROTOCOL_41
        | cap::TRANSACTIONS
        | cap::SECURE_CONNECTION
        | cap::PLUGIN_AUTH
        | cap::PLUGIN_AUTH_LENENC_DATA
        | if p.database.is_some() {
            cap::CONNECT_WITH_DB
        } else {
            0
        };
    wanted & g.capabilities
}

/// Sends the SSL request and runs the TLS handshake on the same socket.
async fn start_tls(
    mut plain: PacketStream<TcpStream>,
    p: &ConnectParams,
    tls: &BackendTls,
    g: &Greeting,
    (caps, ext_caps): (u32, u32),
    seq: &mut u8,
) -> Result<PacketStream<Box<dyn ClientIo>>, BackendError> {
    let proto = |source| BackendError::Protocol {
        addr: p.addr.clone(),
        source,
    };
    if g.capabilities & cap::SSL == 0 {
        return Err(BackendError::Tls {
            addr: p.addr.clone(),
            reason: "the server does not offer TLS".into(),
        });
    }
    let request = HandshakeResponse {
        capabilities: caps,
        ext_capabilities: ext_caps,
        max_packet: 1 << 30,
        collation: p.collation,
        ..HandshakeResponse::default()
    };
    plain
        .send(seq, &request.encode_ssl_request())
        .await
        .map_err(proto)?;
    let host = p.addr.rsplit_once(':').map_or(p.addr.as_str(), |(h, _)| h);
    let name = rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|e| BackendError::Tls {
        addr: p.addr.clone(),
        reason: e.to_string(),
    })?;
    let tcp = plain.into_inner();
    let stream = tls
        .connector()
        .connect(name, tcp)
        .await
        .map_err(|e| BackendError::Tls {
            addr: p.addr.clone(),
            reason: e.to_string(),
        })?;
    Ok(PacketStream::new(Box::new(stream) as Box<dyn ClientIo>))
}

async fn login(
    stream: &mut PacketStream<Box<dyn ClientIo>>,
    p: &ConnectParams,
    g: &Greeting,
    (caps, ext_caps): (u32, u32),
    first_seq: u8,
) -> Result<(), BackendError> {
    let proto = |source| BackendError::Protocol {
        addr: p.addr.clone(),
        source,
    };
    let (plugin, reply) = match p.secret.reply(&g.auth_plugin, &g.scramble) {
        Some(r) => (g.auth_plugin.clone(), r),
        // Answer natively; a server that wants another plugin sends an auth switch.
        None => (
            auth::NATIVE.to_string(),
            p.secret
                .reply(auth::NATIVE, &g.scramble)
                .unwrap_or_default(),
        ),
    };
    let resp = HandshakeResponse {
        capabilities: caps,
        ext_capabilities: ext_caps,
        max_packet: 1 << 30,
        collation: p.collation,
        user: p.user.clone(),
        auth_response: reply,
        database: p.database.clone(),
        auth_plugin: Some(plugin),
        attributes: Vec::new(),
    };
    let mut seq = first_seq;
    stream.send(&mut seq, &resp.encode()).await.map_err(proto)?;
    loop {
        let pkt = stream.read_raw().await.map_err(proto)?;
        seq = pkt.seq.wrapping_add(1);
        match pkt.first() {
            Some(header::OK) => return Ok(()),
            Some(header::ERR) => {
                return Err(BackendError::Auth {
                    addr: p.addr.clone(),
                    err: ErrPacket::parse(&pkt.payload).map_err(proto)?,
                });
            }
            Some(header::AUTH_SWITCH) => {
                let (plugin, data) = parse_auth_switch(&pkt.payload).map_err(proto)?;
                let reply = p
                    .secret
                    .reply(&plugin, &data)
                    .ok_or_else(|| BackendError::Plugin {
                        addr: p.addr.clone(),
                        plugin: plugin.clone(),
                    })?;
                stream.send(&mut seq, &reply).await.map_err(proto)?;
            }
            Some(header::AUTH_MORE_DATA)
                if pkt.payload.get(1) == Some(&auth::SHA2_FAST_AUTH_OK) => {}
            Some(header::AUTH_MORE_DATA) => {
                // caching_sha2 full authentication needs TLS or RSA, which backends do not get.
                return Err(BackendError::Plugin {
                    addr: p.addr.clone(),
                    plugin: "caching_sha2_password (full authentication)".into(),
                });
            }
            _ => {
                return Err(proto(PacketError::Malformed(
                    "unexpected packet during login",
                )));
            }
        }
    }
}

fn query_payload(sql: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + sql.len());
    payload.push(com::QUERY);
    payload.extend_from_slice(sql.as_bytes());
    payload
}

impl BackendConn {
    /// Sends a command with a payload and reads a one-packet answer (OK or ERR).
    pub async fn simple(&mut self, command: u8, arg: &[u8]) -> Result<RawPacket, PacketError> {
        let mut payload = Vec::with_capacity(1 + arg.len());
        payload.push(command);
        payload.extend_from_slice(arg);
        let mut seq = 0;
        self.stream.send(&mut seq, &payload).await?;
        let pkt = self.stream.read_raw().await?;
        if let Some(status) = messages::status_of(&pkt.payload, self.caps) {
            self.status = status;
        }
        self.last_used = Instant::now();
        Ok(pkt)
    }

    /// Runs a statement whose results are not wanted (state replay). Returns the server's
    /// error, if any.
    pub async fn run(&mut self, sql: &str) -> Result<Option<ErrPacket>, PacketError> {
        let mut seq = 0;
        self.stream.send(&mut seq, &query_payload(sql)).await?;
        self.finish_query().await
    }

    /// Reads the whole response to a COM_QUERY already sent; the server's error, if any.
    async fn finish_query(&mut self) -> Result<Option<ErrPacket>, PacketError> {
        let mut tracker = ResponseTracker::new(ResponseKind::Query, self.caps);
        let mut error = None;
        loop {
            let pkt = self.stream.read_raw().await?;
            if pkt.first() == Some(header::ERR) && error.is_none() {
                error = ErrPacket::parse(&pkt.payload).ok();
            }
            match tracker.feed(&pkt.payload)? {
                Step::More => {}
                Step::Done => break,
                Step::LocalInfile => {
                    // Refuse the upload with an empty packet.
                    let mut seq = pkt.seq.wrapping_add(1);
                    self.stream.send(&mut seq, &[]).await?;
                }
            }
        }
        if let Some(status) = tracker.status {
            self.status = status;
        }
        self.last_used = Instant::now();
        Ok(error)
    }

    /// `COM_PING`; true when the server answered OK.
    pub async fn ping(&mut self) -> bool {
        matches!(self.simple(com::PING, &[]).await, Ok(p) if p.first() == Some(header::OK))
    }

    /// `COM_RESET_CONNECTION`: drops temporary tables, locks, user variables, prepared
    /// statements and session variables (taking the server's global values as they are now,
    /// as a new connection would), keeping the login. The GTID tracking set-up travels in the
    /// same round trip. True on OK.
    pub async fn reset(&mut self) -> bool {
        self.client_tracks_gtids = false;
        self.state_sig = 0;
        self.prepared.clear();
        let tracking = self.gtid_tracking_sql(false);
        let mut seq = 0;
        self.stream
            .buffer_payload(&mut seq, &[com::RESET_CONNECTION]);
        if let Some(sql) = tracking {
            let mut seq = 0;
            self.stream.buffer_payload(&mut seq, &query_payload(sql));
        }
        if self.stream.flush().await.is_err() {
            return false;
        }
        let reset_ok = match self.stream.read_raw().await {
            Ok(p) => p.first() == Some(header::OK),
            Err(_) => return false,
        };
        // Read even after a failed reset: the connection must be left between commands.
        let tracked = match tracking {
            None => Ok(None),
            Some(_) => self.finish_query().await,
        };
        self.last_used = Instant::now();
        match tracked {
            Ok(refused) => {
                self.note_tracking_refusal(refused);
                reset_ok
            }
            Err(_) => false,
        }
    }

    /// The statement that makes OK packets of writes carry their GTID (MariaDB's
    /// `last_gtid`, MySQL's own GTID). `keep_session`: add to what the session tracks now
    /// (after the client set its own list) rather than to the server's default.
    fn gtid_tracking_sql(&self, keep_session: bool) -> Option<&'static str> {
        Some(match (self.track_gtids?, keep_session) {
            (Flavor::Mariadb, false) => {
                "SET @@session.session_track_system_variables = \
                 CONCAT(@@global.session_track_system_variables, ',last_gtid')"
            }
            (Flavor::Mariadb, true) => {
                "SET @@session.session_track_system_variables = \
                 IF(FIND_IN_SET('last_gtid', @@session.session_track_system_variables) \
                    OR @@session.session_track_system_variables = '*', \
                    @@session.session_track_system_variables, \
                    CONCAT_WS(',', NULLIF(@@session.session_track_system_variables, ''), 'last_gtid'))"
            }
            (Flavor::Mysql, false) => "SET @@session.session_track_gtids = OWN_GTID",
            (Flavor::Mysql, true) => {
                "SET @@session.session_track_gtids = \
                 IF(@@session.session_track_gtids = 'OFF', 'OWN_GTID', @@session.session_track_gtids)"
            }
        })
    }

    async fn enable_gtid_tracking(&mut self) -> Result<(), PacketError> {
        self.set_up_gtid_tracking(false).await
    }

    /// Tracks committed GTIDs again after the client changed what the session tracks.
    pub async fn restore_gtid_tracking(&mut self) -> Result<(), PacketError> {
        self.set_up_gtid_tracking(true).await
    }

    async fn set_up_gtid_tracking(&mut self, keep_session: bool) -> Result<(), PacketError> {
        if let Some(sql) = self.gtid_tracking_sql(keep_session) {
            let refused = self.run(sql).await?;
            self.note_tracking_refusal(refused);
        }
        Ok(())
    }

    /// An old server without the variable: positions come from polls and waits.
    fn note_tracking_refusal(&mut self, refused: Option<ErrPacket>) {
        if let Some(err) = refused {
            tracing::debug!(backend = %self.addr, %err, "GTID tracking unavailable");
            self.track_gtids = None;
        }
    }

    /// OK packets carry GTIDs the proxy asked for and the client did not: they are removed on
    /// the way to the client.
    pub fn hides_gtid_tracking(&self) -> bool {
        self.track_gtids.is_some()
            && !self.strip_session_track
            && !self.client_tracks_gtids
            && self.caps & cap::SESSION_TRACK != 0
    }

    /// `COM_INIT_DB`; `Ok(None)` on success, the server's error otherwise.
    pub async fn use_database(&mut self, db: &str) -> Result<Option<ErrPacket>, PacketError> {
        let pkt = self.simple(com::INIT_DB, db.as_bytes()).await?;
        if pkt.first() == Some(header::OK) {
            self.database = Some(db.to_string());
            Ok(None)
        } else {
            Ok(Some(ErrPacket::parse(&pkt.payload)?))
        }
    }

    pub fn in_transaction(&self) -> bool {
        self.status & crate::protocol::constants::status::IN_TRANS != 0
    }
}
