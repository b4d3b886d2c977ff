//! Bearer-token authentication. Tokens are configured as SHA-256 digests; a presented token is
//! hashed and looked up, so the plain token is never stored or compared. Requests without an
//! `Authorization` header may authenticate with the pages' session cookie (`ui::session`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use hookline_config::TokenOptions;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::problem::ApiProblem;

/// Tenant value that marks an admin token.
pub const ADMIN_TENANT: &str = "*";

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token name (audit).
    pub name: String,
    /// `None` for an admin (every tenant).
    pub tenant: Option<String>,
}

impl Caller {
    /// The tenant a write acts for: a tenant token's own tenant; an admin must name one.
    pub fn tenant_for_write(&self, requested: Option<&str>, field: &str) -> Result<String, ApiProblem> {
        match (&self.tenant, requested) {
            (Some(own), None) => Ok(own.clone()),
            (Some(own), Some(r)) if r == own => Ok(own.clone()),
            (Some(_), Some(_)) => Err(ApiProblem::Forbidden("a tenant token acts only for its own tenant")),
            (None, Some(r)) => validate_tenant(r, field).map(|_| r.to_string()),
            (None, None) => Err(ApiProblem::invalid(field, "an admin token must name the tenant")),
        }
    }

    /// Whether the caller may see data of `tenant`.
    pub fn can_see(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|own| own == tenant)
    }
}

/// A tenant id is 1 to 64 characters of `[A-Za-z0-9_.-]`.
pub fn validate_tenant(t: &str, field: &str) -> Result<(), ApiProblem> {
    if t.is_empty() || t.len() > 64 || !t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(ApiProblem::invalid(field, "must be 1 to 64 characters of [A-Za-z0-9_.-]"));
    }
    Ok(())
}

/// Token digests to callers.
#[derive(Clone, Default)]
pub struct Tokens(Arc<HashMap<[u8; 32], Caller>>);

impl Tokens {
    pub fn from_config(tokens: &[TokenOptions]) -> Self {
        let map = tokens
            .iter()
            .filter_map(|t| {
                let digest = decode_hex32(&t.sha256)?;
                let tenant = (t.tenant != ADMIN_TENANT).then(|| t.tenant.clone());
                Some((digest, Caller { name: t.name.clone(), tenant }))
            })
            .collect();
        Self(Arc::new(map))
    }

    pub fn lookup(&self, token: &str) -> Option<&Caller> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.0.get(&digest)
    }

    /// The caller of a token known by its hex digest (browser sessions keep only the digest).
    pub fn lookup_digest_hex(&self, digest_hex: &str) -> Option<&Caller> {
        self.0.get(&decode_hex32(digest_hex)?)
    }
}

/// Hex SHA-256 of a token, as configured.
pub fn token_digest_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiProblem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Without a bearer token, the pages' session cookie (with its CSRF checks).
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return crate::ui::session::api_caller(&parts.method, &parts.headers, state);
        };
        let header = header.to_str().map_err(|_| ApiProblem::Unauthorized)?;
        let token = header.strip_prefix("Bearer ").ok_or(ApiProblem::Unauthorized)?.trim();
        state.tokens.lookup(token).cloned().ok_or(ApiProblem::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_lookup_and_tenancy() {
        let tokens = Tokens::from_config(&[
            TokenOptions { name: "ops".into(), tenant: "*".into(), sha256: token_digest_hex("admin-secret") },
            TokenOptions { name: "acme".into(), tenant: "acme".into(), sha256: token_digest_hex("acme-secret") },
        ]);
        assert!(tokens.lookup("nope").is_none());
        let admin = tokens.lookup("admin-secret").unwrap();
        assert!(admin.tenant.is_none() && admin.can_see("anyone"));
        let acme = tokens.lookup("acme-secret").unwrap();
        assert!(acme.can_see("acme") && !acme.can_see("globex"));
        assert_eq!(acme.tenant_for_write(None, "tenant_id").unwrap(), "acme");
        assert!(acme.tenant_for_write(Some("globex"), "tenant_id").is_err());
        assert!(admin.tenant_for_write(None, "tenant_id").is_err());
        assert_eq!(admin.tenant_for_write(Some("globex"), "tenant_id").unwrap(), "globex");
    }
}
