//! `lagless:key=value` hints in comments: a per-statement consistency mode or route.

use super::RouteHint;
use super::keywords::{is_name, is_space};
use crate::route::consistency::ConsistencyMode;

/// Lagless hints found in comments.
#[derive(Default)]
pub(super) struct Hints {
    pub(super) consistency: Option<ConsistencyMode>,
    pub(super) route: Option<RouteHint>,
    /// `lagless tenant=<id>` or `lagless:tenant=<id>`: the raw value, checked by the router.
    pub(super) tenant: Option<String>,
}

impl Hints {
    /// Reads every `lagless:key=value` in a comment's text.
    pub(super) fn read(&mut self, comment: &[u8]) {
        self.read_tenant(comment);
        const MARK: &[u8] = b"lagless:";
        let mut rest = comment;
        while let Some(at) = rest
            .windows(MARK.len())
            .position(|w| w.eq_ignore_ascii_case(MARK))
        {
            rest = &rest[at + MARK.len()..];
            let len = rest
                .iter()
                .position(|&b| is_space(b) || b == b',' || b == b';')
                .unwrap_or(rest.len());
            self.apply(&rest[..len]);
            rest = &rest[len..];
        }
    }

    /// Reads `lagless tenant=<id>` (the documented form) and `lagless:tenant=<id>`. The value
    /// runs to the next space, `,`, `;` or `*`; an empty one is kept so the router refuses it.
    fn read_tenant(&mut self, comment: &[u8]) {
        const MARK: &[u8] = b"lagless";
        const KEY: &[u8] = b"tenant=";
        let mut rest = comment;
        while let Some(at) = rest
            .windows(MARK.len())
            .position(|w| w.eq_ignore_ascii_case(MARK))
        {
            rest = &rest[at + MARK.len()..];
            let after = rest
                .iter()
                .position(|&b| !(is_space(b) || b == b':'))
                .unwrap_or(rest.len());
            if after == 0 || rest.len() < after + KEY.len() {
                continue;
            }
            if !rest[after..after + KEY.len()].eq_ignore_ascii_case(KEY) {
                continue;
            }
            rest = &rest[after + KEY.len()..];
            let len = rest
                .iter()
                .position(|&b| is_space(b) || matches!(b, b',' | b';' | b'*'))
                .unwrap_or(rest.len());
            self.tenant = Some(String::from_utf8_lossy(&rest[..len]).into_owned());
            rest = &rest[len..];
        }
    }

    fn apply(&mut self, setting: &[u8]) {
        let Some(eq) = setting.iter().position(|&b| b == b'=') else {
            return;
        };
        let (key, value) = (&setting[..eq], &setting[eq + 1..]);
        let Ok(value) = std::str::from_utf8(value) else {
            return;
        };
        if is_name(key, b"consistency") {
            if let Ok(mode) = value.parse() {
                self.consistency = Some(mode);
            }
        } else if is_name(key, b"route") {
            if value.eq_ignore_ascii_case("primary") {
                self.route = Some(RouteHint::Primary);
            } else if value.eq_ignore_ascii_case("replica") {
                self.route = Some(RouteHint::Replica);
            }
        }
    }
}
