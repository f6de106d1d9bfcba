//! When a crashed server or proxy is started again: after a delay that doubles with each
//! restart, up to a cap, the way Kubernetes restarts a crashing container.

use std::time::Duration;

/// How long to wait before starting again a process that has already been restarted
/// `restarts` times: 1 s, 2 s, 4 s, ... up to 30 s.
pub fn backoff(restarts: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(restarts.min(5)).min(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delay_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(50), Duration::from_secs(30));
    }
}
