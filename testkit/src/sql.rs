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
    Conn::new(conn_opts(port, user, password, db)).await
}
