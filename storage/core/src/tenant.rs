//! Tenant names. Every datum belongs to a tenant and the tenant name is the first segment of
//! every object path, so a name must never be able to escape its prefix: only
//! `[a-z0-9_-]{1,64}` is accepted, which excludes `/`, `.`, `..` and anything percent-encoded.

use std::fmt;

/// A name that is not a valid tenant name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant name {name:?}: expected 1 to 64 characters of a-z, 0-9, '_' or '-'")]
pub struct InvalidTenant {
    pub name: String,
}

/// A validated tenant name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub const DEFAULT: &'static str = "default";

    pub fn new(name: &str) -> Result<Self, InvalidTenant> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(TenantId(name.to_string()))
        } else {
            Err(InvalidTenant {
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

/// Resolves the tenant of a request from its headers.
///
/// With tokens configured, `Authorization: Bearer <token>` is required and the tenant comes
/// from the token only. Without tokens, the Grafana/Loki/Tempo convention `X-Scope-OrgID`
/// selects a tenant (validated), and requests without it go to `default`.
#[derive(Debug, Clone, Default)]
pub struct TenantResolver {
    tokens: std::collections::HashMap<String, TenantId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send 'Authorization: Bearer <token>'")]
    MissingToken,
    #[error("invalid bearer token")]
    InvalidToken,
    #[error("{0}")]
    InvalidTenant(String),
}

impl TenantResolver {
    /// `tokens` maps secret token → tenant; empty disables authentication.
    pub fn new(tokens: impl IntoIterator<Item = (String, TenantId)>) -> Self {
        TenantResolver {
            tokens: tokens.into_iter().collect(),
        }
    }

    pub fn auth_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    pub fn resolve(
        &self,
        authorization: Option<&str>,
        org_id: Option<&str>,
    ) -> Result<TenantId, AuthError> {
        if self.tokens.is_empty() {
            return match org_id.map(str::trim).filter(|s| !s.is_empty()) {
                Some(name) => {
                    TenantId::new(name).map_err(|e| AuthError::InvalidTenant(e.to_string()))
                }
                None => Ok(TenantId::default_tenant()),
            };
        }
        let header = authorization.ok_or(AuthError::MissingToken)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or(AuthError::MissingToken)?;
        // Compare every token in constant time so timing does not reveal a prefix.
        let mut found = None;
        for (known, tenant) in &self.tokens {
            if constant_time_eq(known.as_bytes(), token.as_bytes()) {
                found = Some(tenant.clone());
            }
        }
        found.ok_or(AuthError::InvalidToken)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod resolver_tests {
    use super::*;

    #[test]
    fn without_tokens_org_id_selects_a_validated_tenant() {
        let r = TenantResolver::default();
        assert_eq!(r.resolve(None, None).unwrap().as_str(), "default");
        assert_eq!(r.resolve(None, Some("team-a")).unwrap().as_str(), "team-a");
        assert!(matches!(
            r.resolve(None, Some("../etc")),
            Err(AuthError::InvalidTenant(_))
        ));
    }

    #[test]
    fn with_tokens_the_tenant_comes_from_the_token_only() {
        let r = TenantResolver::new([("s3cret".to_string(), TenantId::new("acme").unwrap())]);
        assert_eq!(r.resolve(None, None), Err(AuthError::MissingToken));
        assert_eq!(
            r.resolve(Some("Bearer nope"), None),
            Err(AuthError::InvalidToken)
        );
        assert_eq!(
            r.resolve(Some("Basic s3cret"), None),
            Err(AuthError::MissingToken)
        );
        let t = r.resolve(Some("Bearer s3cret"), Some("other")).unwrap();
        assert_eq!(
            t.as_str(),
            "acme",
            "X-Scope-OrgID is ignored when tokens are configured"
        );
    }
}

impl crate::Classify for AuthError {
    fn code(&self) -> crate::ErrorCode {
        match self {
            AuthError::InvalidTenant(_) => crate::ErrorCode::BadInput,
            AuthError::MissingToken | AuthError::InvalidToken => crate::ErrorCode::Unauthenticated,
        }
    }
}
