//! Public keys of asymmetric schemes as a JWK Set (RFC 7517), for receivers that fetch keys
//! by `kid`. HMAC keys are secret and never appear.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hookline_schemas::SigningKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use super::{Scheme, SigningError, ed25519, rotation, rsa as rsa_scheme};

/// One JWK for the public key `public_key` (as stored in `SigningKey.public_key`).
/// Returns `Ok(None)` for symmetric schemes.
pub fn jwk(kid: &str, scheme: Scheme, public_key: &str) -> Result<Option<Value>, SigningError> {
    Ok(Some(match scheme {
        Scheme::HmacSha256 | Scheme::HmacSha512 => return Ok(None),
        Scheme::Ed25519 => {
            let k = ed25519::parse_public(public_key)?;
            json!({"kty": "OKP", "crv": "Ed25519", "x": B64URL.encode(k.to_bytes()), "kid": kid, "use": "sig", "alg": "EdDSA"})
        }
        Scheme::RsaPkcs1v15Sha256 | Scheme::RsaPssSha256 => {
            let k = rsa_scheme::parse_public_pem(public_key)?;
            let alg = if scheme == Scheme::RsaPssSha256 { "PS256" } else { "RS256" };
            json!({
                "kty": "RSA",
                "n": B64URL.encode(k.n_bytes()),
                "e": B64URL.encode(k.e_bytes()),
                "kid": kid,
                "use": "sig",
                "alg": alg,
            })
        }
    }))
}

/// `{"keys": [...]}` for an endpoint's asymmetric keys that still sign at `now_ms` (keys in
/// their rotation grace period included, expired ones left out), in key order. Keys with an
/// unknown scheme or no public key are skipped; a stored public key that does not parse is an
/// error (it means corrupted configuration).
pub fn jwks(keys: &[SigningKey], now_ms: i64) -> Result<Value, SigningError> {
    let mut out = Vec::new();
    for k in rotation::active_at(keys, now_ms) {
        let (Ok(scheme), Some(public)) = (k.scheme.parse::<Scheme>(), k.public_key.as_deref()) else { continue };
        if let Some(j) = jwk(&k.key_id, scheme, public)? {
            out.push(j);
        }
    }
    Ok(json!({ "keys": out }))
}
