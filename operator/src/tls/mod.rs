//! TLS for a cluster: the certificate files every part reads, the names a certificate must
//! carry, and the operator's own certificate authority for clusters that name no other.
//!
//! Every part reads the same three files, named as in cert-manager's and `kubernetes.io/tls`
//! Secrets: `ca.crt` (what peers are verified against), `tls.crt` and `tls.key` (what a
//! server presents). Nothing caches them for long: servers reload on `FLUSH SSL`, proxies
//! when the files change, and every client connection reads the CA afresh, so a renewed
//! certificate takes effect without a restart.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod authority;
pub mod files;

/// The CA bundle a peer's certificate must chain to.
pub const CA_FILE: &str = "ca.crt";
/// The certificate chain a server presents.
pub const CERT_FILE: &str = "tls.crt";
/// The private key of [`CERT_FILE`].
pub const KEY_FILE: &str = "tls.key";

/// The names the local runtime's certificate carries: everything listens on the loopback.
pub fn local_names() -> Vec<String> {
    vec!["127.0.0.1".into(), "::1".into(), "localhost".into()]
}
