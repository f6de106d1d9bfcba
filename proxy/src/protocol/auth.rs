//! Authentication plugins, both as the server clients log in to and as the client of backends.
//!
//! The proxy never needs a plaintext password for `mysql_native_password`: the stored hash
//! SHA1(SHA1(pw)) verifies the client's reply, and the verified reply yields SHA1(pw), which is
//! all it takes to answer a backend's scramble. `caching_sha2_password` and `client_ed25519`
//! need the password itself (from the users file).

use sha1::{Digest, Sha1};

pub const NATIVE: &str = "mysql_native_password";
pub const CACHING_SHA2: &str = "caching_sha2_password";
pub const ED25519: &str = "client_ed25519";

/// `caching_sha2_password` status bytes after `0x01`.
pub const SHA2_FAST_AUTH_OK: u8 = 3;
pub const SHA2_PERFORM_FULL_AUTH: u8 = 4;

/// What the proxy holds that lets it log in to a backend as a client's user.
#[derive(Clone, PartialEq, Eq)]
pub enum BackendSecret {
    /// The password itself: every plugin works.
    Password(String),
    /// SHA1(password), recovered from a verified native reply: enough for native backends.
    NativeSha1([u8; 20]),
    /// Nothing: the client authenticated by answering the primary itself (an account the
    /// proxy cannot verify), so the proxy can open no other connection for it.
    Relayed,
}

impl std::fmt::Debug for BackendSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs.
        match self {
            Self::Password(_) => f.write_str("Password(..)"),
            Self::NativeSha1(_) => f.write_str("NativeSha1(..)"),
            Self::Relayed => f.write_str("Relayed"),
        }
    }
}

impl BackendSecret {
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Password(p) if p.is_empty())
    }

    pub fn is_relayed(&self) -> bool {
        matches!(self, Self::Relayed)
    }

    /// The reply to a backend's scramble for `plugin`, or `None` when this secret cannot
    /// produce one (e.g. ed25519 without the password).
    pub fn reply(&self, plugin: &str, scramble: &[u8]) -> Option<Vec<u8>> {
        if self.is_empty() {
            return Some(Vec::new());
        }
        match (plugin, self) {
            (NATIVE, Self::Password(p)) => {
                Some(native_reply(scramble, &sha1(p.as_bytes())).to_vec())
            }
            (NATIVE, Self::NativeSha1(h)) => Some(native_reply(scramble, h).to_vec()),
            (CACHING_SHA2, Self::Password(p)) => {
                mysql_common::scramble::scramble_sha256(scramble, p.as_bytes()).map(|r| r.to_vec())
            }
            (ED25519, Self::Password(p)) => Some(ed25519_reply(p, scramble).to_vec()),
            _ => None,
        }
    }
}

fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

fn xor<const N: usize>(a: [u8; N], b: [u8; N]) -> [u8; N] {
    let mut out = [0u8; N];
    for i in 0..N {
        out[i] = a[i] ^ b[i];
    }
    out
}

/// SHA1(SHA1(password)): the form `mysql.user` stores (`*` + hex).
pub fn native_hash(password: &str) -> [u8; 20] {
    sha1(&sha1(password.as_bytes()))
}

/// Parses `*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19` into its 20 bytes.
pub fn parse_native_hash(s: &str) -> Option<[u8; 20]> {
    let hex = s.strip_prefix('*')?;
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))).
fn native_reply(scramble: &[u8], sha1_pw: &[u8; 20]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(sha1(sha1_pw));
    xor(*sha1_pw, h.finalize().into())
}

/// Checks a client's native reply against the stored hash; on success returns SHA1(pw).
pub fn verify_native(scramble: &[u8], reply: &[u8], stored: &[u8; 20]) -> Option<[u8; 20]> {
    let reply: [u8; 20] = reply.try_into().ok()?;
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stored);
    let sha1_pw = xor(reply, h.finalize().into());
    constant_time_eq(&sha1(&sha1_pw), stored).then_some(sha1_pw)
}

/// Checks a `caching_sha2_password` fast-path reply against the password.
pub fn verify_sha2(scramble: &[u8], reply: &[u8], password: &str) -> bool {
    match mysql_common::scramble::scramble_sha256(scramble, password.as_bytes()) {
        Some(expected) => constant_time_eq(reply, &expected),
        None => reply.is_empty(),
    }
}

/// The MariaDB ed25519 signature of `scramble` with a key derived from the password.
/// Signatures are deterministic, so the proxy verifies a client by computing the same one.
pub fn ed25519_reply(password: &str, scramble: &[u8]) -> [u8; 64] {
    mysql_common::scramble::create_response_for_ed25519(password.as_bytes(), scramble)
}

pub fn verify_ed25519(scramble: &[u8], reply: &[u8], password: &str) -> bool {
    constant_time_eq(reply, &ed25519_reply(password, scramble))
}

/// Compares without an early exit, so timing does not reveal how much of a reply matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 20 random printable bytes for a greeting (no NUL: some clients stop at the first one).
pub fn new_scramble() -> [u8; 20] {
    let mut out = [0u8; 20];
    if getrandom::fill(&mut out).is_err() {
        // No OS randomness is a broken host; a time-derived scramble is still unique per
        // connection, which is what replay protection needs.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        out = sha1(&nanos.to_le_bytes());
    }
    for b in &mut out {
        *b = 0x21 + (*b % 94);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side of `mysql_native_password`, as a driver computes it.
    fn client_native(scramble: &[u8], password: &[u8]) -> Result<[u8; 20], String> {
        mysql_common::scramble::scramble_native(scramble, password)
            .ok_or_else(|| "scramble_native gave nothing".to_string())
    }

    #[test]
    fn native_verify_recovers_sha1_and_answers_backends() -> Result<(), String> {
        let scramble = new_scramble();
        let stored = native_hash("secret");
        let client_reply = client_native(&scramble, b"secret")?;
        let sha1_pw =
            verify_native(&scramble, &client_reply, &stored).ok_or("the right reply refused")?;
        // With only SHA1(pw), the proxy answers another scramble exactly as the client would.
        let backend_scramble = new_scramble();
        let ours = BackendSecret::NativeSha1(sha1_pw)
            .reply(NATIVE, &backend_scramble)
            .ok_or("no reply for the backend")?;
        let theirs = client_native(&backend_scramble, b"secret")?;
        assert_eq!(ours, theirs.to_vec());
        // Wrong password, truncated reply.
        let wrong = client_native(&scramble, b"nope")?;
        assert!(verify_native(&scramble, &wrong, &stored).is_none());
        assert!(verify_native(&scramble, &client_reply[..10], &stored).is_none());
        Ok(())
    }

    #[test]
    fn native_hash_text_form() {
        // SELECT PASSWORD('app-pass') on MariaDB.
        let hex = format!(
            "*{}",
            native_hash("app-pass")
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
        );
        assert_eq!(parse_native_hash(&hex), Some(native_hash("app-pass")));
        assert_eq!(parse_native_hash("2470"), None);
        assert_eq!(
            parse_native_hash("*zz70C0C06DEE42FD1618BB99005ADCA2EC9D1E19"),
            None
        );
    }

    #[test]
    fn sha2_and_ed25519() -> Result<(), String> {
        let s = new_scramble();
        let reply = BackendSecret::Password("pw".into())
            .reply(CACHING_SHA2, &s)
            .ok_or("no caching_sha2 reply")?;
        assert!(verify_sha2(&s, &reply, "pw"));
        assert!(!verify_sha2(&s, &reply, "pX"));
        let sig = BackendSecret::Password("pw".into())
            .reply(ED25519, &s)
            .ok_or("no ed25519 reply")?;
        assert!(verify_ed25519(&s, &sig, "pw"));
        assert!(!verify_ed25519(&s, &sig, "other"));
        assert!(
            BackendSecret::NativeSha1([0; 20])
                .reply(ED25519, &s)
                .is_none()
        );
        Ok(())
    }

    #[test]
    fn scrambles_are_printable_and_differ() {
        let a = new_scramble();
        assert!(a.iter().all(|b| (0x21..0x7f).contains(b)));
        assert_ne!(a, new_scramble());
    }
}
