//! Tenant ids and the names of tenants' databases.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest tenant id, in bytes.
pub const MAX_TENANT_LEN: usize = 48;
/// The most bytes a naming pattern may add around the id: with [`MAX_TENANT_LEN`], every
/// tenant's database name fits MariaDB's 64-character limit.
pub const MAX_AFFIX_LEN: usize = 64 - MAX_TENANT_LEN;

/// The placeholder a naming pattern holds exactly once.
const PLACEHOLDER: &str = "{id}";

const EMPTY: &str = "it is empty (a tenant id is 1-48 characters of a-z, 0-9 and _)";
const TOO_LONG: &str =
    "it is longer than 48 bytes (a tenant id is 1-48 characters of a-z, 0-9 and _)";
const BAD_CHARS: &str = "only lowercase letters a-z, digits 0-9 and _ are allowed";

/// A tenant id: 1-48 bytes of `[a-z0-9_]` (lowercase only; a clear error names the rule).
///
/// Lowercase only, so that an id names one database whatever the server's
/// `lower_case_table_names`, and needs no quoting anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// Why a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant id '{id}': {reason}")]
pub struct InvalidTenant {
    pub id: String,
    pub reason: &'static str,
}

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, InvalidTenant> {
        let reason = if s.is_empty() {
            Some(EMPTY)
        } else if s.len() > MAX_TENANT_LEN {
            Some(TOO_LONG)
        } else if !s.bytes().all(is_tenant_byte) {
            Some(BAD_CHARS)
        } else {
            None
        };
        match reason {
            None => Ok(Self(s.to_string())),
            Some(reason) => Err(InvalidTenant {
                id: s.to_string(),
                reason,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_tenant_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantId {
    type Err = InvalidTenant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidTenant;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

/// How a tenant's database is named: a pattern with exactly one `{id}`, default `t_{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNaming {
    prefix: String,
    suffix: String,
}

/// Why a naming pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NamingError(String);

impl TenantNaming {
    /// Parses a pattern: exactly one `{id}`, something around it (a bare `{id}` would make every
    /// database a tenant's), only `[A-Za-z0-9_$]` around it (names that need no quoting), and
    /// at most [`MAX_AFFIX_LEN`] bytes around it.
    pub fn parse(pattern: &str) -> Result<Self, NamingError> {
        let refuse = |reason: &str| {
            Err(NamingError(format!(
                "invalid tenant database pattern '{pattern}': {reason}"
            )))
        };
        let Some((prefix, suffix)) = pattern.split_once(PLACEHOLDER) else {
            return refuse("it needs {id} where the tenant id goes, e.g. t_{id}");
        };
        if suffix.contains(PLACEHOLDER) {
            return refuse("it holds {id} more than once");
        }
        if prefix.is_empty() && suffix.is_empty() {
            return refuse("it needs a prefix or suffix around {id}, e.g. t_{id}");
        }
        if !prefix.bytes().chain(suffix.bytes()).all(is_affix_byte) {
            return refuse("only letters, digits, _ and $ may surround {id}");
        }
        if prefix.len() + suffix.len() > MAX_AFFIX_LEN {
            return refuse(
                "more than 16 bytes surround {id} (database names have at most 64 characters)",
            );
        }
        Ok(Self {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The database that holds `id`'s data.
    pub fn database(&self, id: &TenantId) -> String {
        format!("{}{}{}", self.prefix, id, self.suffix)
    }

    /// The tenant a database belongs to. None: the database belongs to no tenant. Some(Err):
    /// it has the tenant shape (prefix and suffix, compared case-sensitively as MariaDB
    /// compares database names on Linux) but what lies between is not a valid id.
    pub fn tenant_of(&self, database: &str) -> Option<Result<TenantId, InvalidTenant>> {
        if database.len() < self.prefix.len() + self.suffix.len() {
            return None;
        }
        let id = database
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        Some(TenantId::parse(id))
    }

    /// The pattern this naming was parsed from, e.g. `t_{id}`.
    pub fn pattern(&self) -> String {
        format!("{}{PLACEHOLDER}{}", self.prefix, self.suffix)
    }
}

fn is_affix_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

impl Default for TenantNaming {
    fn default() -> Self {
        Self {
            prefix: "t_".to_string(),
            suffix: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn ids_are_short_lowercase_words() {
        for ok in ["42", "acme", "a_b_9", &"x".repeat(48)] {
            assert_eq!(id(ok).as_str(), ok);
        }
        let cases = [
            ("", EMPTY),
            (&"x".repeat(49), TOO_LONG),
            ("Acme", BAD_CHARS),
            ("a-b", BAD_CHARS),
            ("a b", BAD_CHARS),
            ("a`b", BAD_CHARS),
            ("é", BAD_CHARS),
        ];
        for (bad, reason) in cases {
            let err = TenantId::parse(bad).unwrap_err();
            assert_eq!(err.reason, reason, "{bad:?}");
            assert_eq!(err.id, bad);
        }
        assert_eq!(
            TenantId::parse("Acme").unwrap_err().to_string(),
            "invalid tenant id 'Acme': only lowercase letters a-z, digits 0-9 and _ are allowed"
        );
    }

    #[test]
    fn ids_deserialize_only_when_valid() {
        let ok: TenantId = serde_json::from_str("\"t1\"").unwrap();
        assert_eq!(ok, id("t1"));
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"t1\"");
        let bad = serde_json::from_str::<TenantId>("\"T1\"").unwrap_err();
        assert!(bad.to_string().contains("invalid tenant id 'T1'"), "{bad}");
    }

    #[test]
    fn default_naming_is_t_underscore_id() {
        let n = TenantNaming::default();
        assert_eq!(n, TenantNaming::parse("t_{id}").unwrap());
        assert_eq!(n.pattern(), "t_{id}");
        assert_eq!(n.database(&id("42")), "t_42");
    }

    #[test]
    fn databases_map_back_to_their_tenants() {
        let n = TenantNaming::parse("shop_{id}_db").unwrap();
        assert_eq!(n.database(&id("7")), "shop_7_db");
        assert_eq!(n.tenant_of("shop_7_db"), Some(Ok(id("7"))));
        // Not the tenant shape: global databases.
        for other in ["app", "mysql", "shop_7", "7_db", "SHOP_7_db", "shop_db"] {
            assert_eq!(n.tenant_of(other), None, "{other}");
        }
        // The shape, but no valid id between prefix and suffix.
        assert_eq!(
            n.tenant_of("shop_Bad_db").unwrap().unwrap_err().reason,
            BAD_CHARS
        );
        assert_eq!(n.tenant_of("shop__db").unwrap().unwrap_err().reason, EMPTY);
        let long = format!("shop_{}_db", "x".repeat(49));
        assert_eq!(n.tenant_of(&long).unwrap().unwrap_err().reason, TOO_LONG);

        let suffix_only = TenantNaming::parse("{id}$t").unwrap();
        assert_eq!(suffix_only.tenant_of("abc$t"), Some(Ok(id("abc"))));
        assert_eq!(
            suffix_only.tenant_of("$t").unwrap().unwrap_err().reason,
            EMPTY
        );
        assert_eq!(suffix_only.tenant_of("t"), None);
    }

    #[test]
    fn every_database_name_fits_64_characters() {
        let n = TenantNaming::parse(&format!("{}{{id}}", "p".repeat(MAX_AFFIX_LEN))).unwrap();
        assert_eq!(n.database(&id(&"x".repeat(MAX_TENANT_LEN))).len(), 64);
    }

    #[test]
    fn bad_patterns_are_refused_with_the_rule() {
        let cases = [
            ("t_", "needs {id}"),
            ("", "needs {id}"),
            ("{id}", "prefix or suffix"),
            ("a{id}b{id}", "more than once"),
            ("t-{id}", "letters, digits"),
            ("t_{ID}", "needs {id}"),
            ("`{id}", "letters, digits"),
            ("{{id}}", "letters, digits"),
            ("abcdefghijklmnopq{id}", "more than 16 bytes"),
        ];
        for (pattern, want) in cases {
            let err = TenantNaming::parse(pattern).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid tenant database pattern '{pattern}'")),
                "{err}"
            );
            assert!(err.contains(want), "{pattern}: {err}");
        }
    }
}
