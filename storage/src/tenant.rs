//! Tenant names. Every datum belongs to a tenant and the tenant name is the first segment of
//! every object path, so a name must never be able to escape its prefix: only
//! `[a-z0-9_-]{1,64}` is accepted, which excludes `/`, `.`, `..` and anything percent-encoded.

use std::fmt;

use crate::error::StorageError;

/// A validated tenant name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub const DEFAULT: &'static str = "default";

    pub fn new(name: &str) -> Result<Self, StorageError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(TenantId(name.to_string()))
        } else {
            Err(StorageError::InvalidTenant {
                name: name.chars().take(80).collect(),
            })
        }
    }

    pub fn default_tenant() -> Self {
        TenantId(Self::DEFAULT.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for n in ["default", "team-a", "t_1", &"a".repeat(64)] {
            assert_eq!(TenantId::new(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn rejects_names_that_could_escape_a_prefix() {
        for n in [
            "",
            "..",
            "../x",
            "a/b",
            "a.b",
            "%2e%2e",
            "A",
            "a b",
            "a\0",
            "ü",
            &"a".repeat(65),
        ] {
            let err = TenantId::new(n).unwrap_err();
            assert!(
                err.to_string().contains("invalid tenant name"),
                "{n:?}: {err}"
            );
        }
    }
}
