//! Client connections to members, always over TCP.

use mysql_async::{Conn, Opts, OptsBuilder};

/// Options for a TCP connection to `127.0.0.1:port`.
///
/// `prefer_socket(false)` matters: by default mysql_async asks a loopback server for its Unix
/// socket and silently reconnects through it, which would bypass a proxy under test.
pub fn conn_opts(port: u16, user: &str, password: &str, db: Option<&str>) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(db)
        .prefer_socket(false)
        .into()
}

/// Opens one connection to `127.0.0.1:port`.
pub async fn connect(
    port: u16,
    user: &str,
    password: &str,
    db: Option<&str>,
) -> Result<Conn, mysql_async::Error> {
    connect_to("127.0.0.1", port, user, password, db).await
}

/// Opens one connection to `host:port`.
pub async fn connect_to(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    db: Option<&str>,
) -> Result<Conn, mysql_async::Error> {
    let opts = OptsBuilder::from_opts(conn_opts(port, user, password, db)).ip_or_hostname(host);
    Conn::new(opts).await
}
