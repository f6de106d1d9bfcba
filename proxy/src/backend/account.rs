//! The proxy's own accounts on the servers: the monitor's and the account lookups'.

/// An account the proxy itself uses on the servers (account lookups, the monitor).
#[derive(Clone)]
pub struct LookupCredentials {
    pub user: String,
    pub password: String,
    /// TLS to the servers: the proxy's backend TLS, set when it starts.
    pub tls: Option<mysql_async::SslOpts>,
}

/// The password never reaches a log line.
impl std::fmt::Debug for LookupCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}
