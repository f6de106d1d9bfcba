//! The wall clock, in the forms the operator records times in: Unix milliseconds (events,
//! the local runtime's status and request ids) and RFC 3339 to the second (Kubernetes status
//! fields and Events).

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::Timestamp;

/// Milliseconds since the Unix epoch; 0 for a clock set before it.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Now, as RFC 3339 to the second (`2025-01-31T12:00:00Z`), the way Kubernetes writes times.
pub fn rfc3339() -> String {
    format!("{:.0}", Timestamp::now())
}

/// A time given in Unix milliseconds, as RFC 3339 to the second; now for one out of range.
pub fn rfc3339_at(unix_ms: u64) -> String {
    format!(
        "{:.0}",
        Timestamp::from_millisecond(i64::try_from(unix_ms).unwrap_or(i64::MAX))
            .unwrap_or_else(|_| Timestamp::now())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_to_the_second() {
        assert_eq!(rfc3339_at(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_at(1_738_324_800_999), "2025-01-31T12:00:00Z");
        let now = rfc3339();
        assert_eq!(now.len(), "2025-01-31T12:00:00Z".len(), "{now}");
        assert!(unix_ms() > 1_738_324_800_000);
    }
}
