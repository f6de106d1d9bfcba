//! One connection from the proxy to a backend server, logged in as a client's user.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::tls::BackendTls;
use crate::protocol::auth::{self, BackendSecret};
use crate::protocol::constants::{cap, com, header};
use crate::protocol::handshake::{Greeting, HandshakeResponse, parse_auth_switch};
use crate::protocol::messages::{self, ErrPacket};
use crate::protocol::packet::{PacketError, PacketStream, RawPacket};
use crate::protocol::response::{ResponseKind, ResponseTracker, Step};
use crate::session::login::ClientIo;
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
    pub collation: u8,
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
}

/// Connects and logs in.
pub async fn connect(p: &ConnectParams) -> Result<BackendConn, BackendError> {
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
    let login = async {
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
        let mut seq = greet.seq.wrapping_add(1);
        let mut stream = match &p.tls {
            None => plain.map_io(|t| Box::new(t) as Box<dyn ClientIo>),
            Some(tls) => {
                caps |= cap::SSL;
                start_tls(plain, p, tls, &greeting, caps, &mut seq).await?
            }
        };
        login(&mut stream, p, &greeting, caps, seq).await?;
        Ok((stream, greeting, caps))
    };
    let (stream, greeting, caps) = tokio::time::timeout(p.connect_timeout * 2, login)
        .await
        .map_err(|_| BackendError::ConnectTimeout(p.addr.clone()))??;
    let mut conn = BackendConn {
        stream,
        addr: p.addr.clone(),
        connection_id: greeting.connection_id,
        caps,
        status: greeting.status,
        database: p.database.clone(),
        last_used: Instant::now(),
        track_gtids: p.track_gtids.filter(|_| caps & cap::SESSION_TRACK != 0),
        strip_session_track: caps & cap::SESSION_TRACK != 0
            && p.client_caps & cap::SESSION_TRACK == 0,
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
    caps: u32,
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
        .connector
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
    caps: u32,
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
        let mut payload = Vec::with_capacity(1 + sql.len());
        payload.push(com::QUERY);
        payload.extend_from_slice(sql.as_bytes());
        let mut seq = 0;
        self.stream.send(&mut seq, &payload).await?;
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
    /// statements and session variables, keeping the login. True on OK.
    pub async fn reset(&mut self) -> bool {
        matches!(self.simple(com::RESET_CONNECTION, &[]).await, Ok(p) if p.first() == Some(header::OK))
            && self.enable_gtid_tracking().await.is_ok()
    }

    /// Makes OK packets of writes carry their GTID (MariaDB's `last_gtid`, MySQL's own GTID).
    /// Clients that track session state see one more tracked variable, which they ignore.
    async fn enable_gtid_tracking(&mut self) -> Result<(), PacketError> {
        let sql = match self.track_gtids {
            None => return Ok(()),
            Some(Flavor::Mariadb) => {
                "SET @@session.session_track_system_variables = \
                 CONCAT(@@global.session_track_system_variables, ',last_gtid')"
            }
            Some(Flavor::Mysql) => "SET @@session.session_track_gtids = OWN_GTID",
        };
        match self.run(sql).await? {
            None => Ok(()),
            Some(err) => {
                // An old server without the variable: positions come from polls and waits.
                tracing::debug!(backend = %self.addr, %err, "GTID tracking unavailable");
                self.track_gtids = None;
                Ok(())
            }
        }
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
