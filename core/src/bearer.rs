//! The bearer token that authorizes the operator's calls to proxies (`PUT /topology`) and to
//! seeding agents.

/// Whether `presented` (an `Authorization` value) carries `Bearer <token>`, in time that does
/// not depend on where they differ. An empty token authorizes nobody.
pub fn authorized(presented: Option<&str>, token: &str) -> bool {
    let Some(given) = presented.and_then(|v| v.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    let mut diff = u8::from(a.len() != b.len() || b.is_empty());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_authorizes() {
        assert!(authorized(Some("Bearer s3cret"), "s3cret"));
        assert!(authorized(Some("Bearer s3cret "), "s3cret"));
        for presented in [
            None,
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic s3cret"),
            Some("Bearer "),
        ] {
            assert!(!authorized(presented, "s3cret"), "{presented:?}");
        }
        // An empty token authorizes nobody, not even an empty bearer.
        assert!(!authorized(Some("Bearer "), ""));
        assert!(!authorized(Some("Bearer x"), ""));
    }
}
