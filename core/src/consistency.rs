//! Consistency modes: what a read must have seen before a replica may serve it.
//!
//! A mode is set per cluster, per session (`SET lagless_consistency = 'session'`) and per
//! statement (a `lagless:consistency=...` comment). Its text form is the same everywhere:
//! `strict`, `session`, `proxy`, `eventual`, and `bounded` with an optional staleness bound
//! written `bounded(500ms)`, `bounded(2s)` or `bounded=500` (milliseconds).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The staleness bound of a plain `bounded`.
pub const DEFAULT_BOUND_MS: u64 = 1000;

/// What a read must have seen before a replica may serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConsistencyMode {
    /// Every transaction committed on the primary before the read arrived.
    #[default]
    Strict,
    /// The client session's own writes (read-your-writes).
    Session,
    /// Every write that went through this proxy, whichever client made it.
    Proxy,
    /// Any replica at most `max_lag_ms` milliseconds behind the primary.
    Bounded {
        /// The largest acceptable staleness, in milliseconds.
        max_lag_ms: u64,
    },
    /// Any healthy replica.
    Eventual,
}

/// Why a text is not a consistency mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseConsistencyError {
    /// The name is none of the modes.
    #[error("unknown consistency mode `{0}`: expected strict, session, proxy, bounded or eventual")]
    UnknownMode(String),
    /// `bounded` carries a bound that is not a whole number of milliseconds or seconds.
    #[error(
        "invalid staleness bound in `{0}`: write bounded(500ms), bounded(2s) or bounded=500 (milliseconds)"
    )]
    InvalidBound(String),
}

impl FromStr for ConsistencyMode {
    type Err = ParseConsistencyError;

    /// Parses a mode name, ignoring ASCII case and surrounding whitespace.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        let mode = match lower.as_str() {
            "strict" => Self::Strict,
            "session" => Self::Session,
            "proxy" => Self::Proxy,
            "eventual" => Self::Eventual,
            _ => {
                let unknown = || ParseConsistencyError::UnknownMode(trimmed.to_owned());
                let rest = lower.strip_prefix("bounded").ok_or_else(unknown)?;
                let max_lag_ms = parse_bound(rest)
                    .ok_or_else(unknown)?
                    .ok_or_else(|| ParseConsistencyError::InvalidBound(trimmed.to_owned()))?;
                Self::Bounded { max_lag_ms }
            }
        };
        Ok(mode)
    }
}

/// Parses what follows `bounded`: nothing, `(<duration>)` or `=<duration>`.
///
/// The outer `None` means the text is not a bound at all (as in `boundedly`), the inner one
/// that the bound is malformed.
fn parse_bound(rest: &str) -> Option<Option<u64>> {
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Some(Some(DEFAULT_BOUND_MS));
    }
    if let Some(value) = rest.strip_prefix('=') {
        return Some(parse_millis(value));
    }
    let inner = rest.strip_prefix('(')?;
    Some(inner.strip_suffix(')').and_then(parse_millis))
}

/// Parses `500`, `500ms` or `2s` into milliseconds.
fn parse_millis(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, scale) = if let Some(digits) = text.strip_suffix("ms") {
        (digits, 1)
    } else if let Some(digits) = text.strip_suffix('s') {
        (digits, 1000)
    } else {
        (text, 1)
    };
    let digits = digits.trim_end();
    // `u64::from_str` accepts a leading `+`, which a bound should not have.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

impl fmt::Display for ConsistencyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Strict => f.write_str("strict"),
            Self::Session => f.write_str("session"),
            Self::Proxy => f.write_str("proxy"),
            Self::Bounded { max_lag_ms } => write!(f, "bounded({max_lag_ms}ms)"),
            Self::Eventual => f.write_str("eventual"),
        }
    }
}

impl Serialize for ConsistencyMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConsistencyMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded(max_lag_ms: u64) -> ConsistencyMode {
        ConsistencyMode::Bounded { max_lag_ms }
    }

    #[test]
    fn parses_every_form() {
        let cases = [
            ("strict", ConsistencyMode::Strict),
            ("SESSION", ConsistencyMode::Session),
            ("  Proxy ", ConsistencyMode::Proxy),
            ("eventual", ConsistencyMode::Eventual),
            ("bounded", bounded(DEFAULT_BOUND_MS)),
            ("bounded(250ms)", bounded(250)),
            ("bounded(250)", bounded(250)),
            ("bounded(2s)", bounded(2000)),
            ("bounded( 75 ms )", bounded(75)),
            ("bounded=500", bounded(500)),
            ("Bounded=3s", bounded(3000)),
            ("bounded(0ms)", bounded(0)),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<ConsistencyMode>(), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_unknown_modes_and_bad_bounds() {
        let unknown = ["", "strong", "boundedly", "session(1)", "bounded x"];
        for text in unknown {
            let err = text.parse::<ConsistencyMode>().unwrap_err();
            assert!(
                matches!(err, ParseConsistencyError::UnknownMode(_)),
                "{text}: {err}"
            );
        }
        let bad_bounds = [
            "bounded(",
            "bounded()",
            "bounded(-5ms)",
            "bounded(+5)",
            "bounded(5m)",
            "bounded=",
            "bounded(18446744073709551615s)",
        ];
        for text in bad_bounds {
            let err = text.parse::<ConsistencyMode>().unwrap_err();
            assert!(
                matches!(err, ParseConsistencyError::InvalidBound(_)),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn error_messages_name_the_input_and_the_choices() {
        let err = "fast".parse::<ConsistencyMode>().unwrap_err().to_string();
        assert!(err.contains("`fast`") && err.contains("eventual"), "{err}");
        let err = "bounded(x)"
            .parse::<ConsistencyMode>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("bounded(500ms)"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        let modes = [
            ConsistencyMode::Strict,
            ConsistencyMode::Session,
            ConsistencyMode::Proxy,
            ConsistencyMode::Eventual,
            bounded(DEFAULT_BOUND_MS),
            bounded(42),
        ];
        for mode in modes {
            assert_eq!(mode.to_string().parse::<ConsistencyMode>(), Ok(mode));
        }
        assert_eq!(bounded(250).to_string(), "bounded(250ms)");
        assert_eq!(ConsistencyMode::Strict.to_string(), "strict");
    }

    #[test]
    fn serde_uses_lowercase_strings() {
        let json = serde_json::to_string(&ConsistencyMode::Session).unwrap();
        assert_eq!(json, "\"session\"");
        let mode: ConsistencyMode = serde_json::from_str("\"bounded\"").unwrap();
        assert_eq!(mode, bounded(DEFAULT_BOUND_MS));
        let mode: ConsistencyMode = serde_json::from_str("\"bounded(250ms)\"").unwrap();
        assert_eq!(mode, bounded(250));
        let json = serde_json::to_string(&bounded(250)).unwrap();
        assert_eq!(json, "\"bounded(250ms)\"");
        let err = serde_json::from_str::<ConsistencyMode>("\"sometimes\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown consistency mode"),
            "{err}"
        );
    }

    #[test]
    fn default_is_strict() {
        assert_eq!(ConsistencyMode::default(), ConsistencyMode::Strict);
    }
}
