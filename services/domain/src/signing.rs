//! Standard Webhooks signatures.
//!
//! Signed content is `{webhook-id}.{webhook-timestamp}.{body}` over the exact bytes sent.
//! `v1` is base64(HMAC-SHA256(secret, content)) where the secret is `whsec_` + base64 of the
//! key bytes. The `webhook-signature` header holds space-separated `version,signature` entries
//! (several during key rotation).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// Header names (Standard Webhooks).
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Prefix of symmetric secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// Key sizes accepted for `whsec_` secrets, in bytes.
pub const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("secret must start with `whsec_`")]
    MissingPrefix,
    #[error("secret is not valid base64 after `whsec_`")]
    NotBase64,
    #[error("secret must decode to 24 to 64 bytes, got {0}")]
    BadLength(usize),
}

/// Decodes a `whsec_` secret into key bytes.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SigningError> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).ok_or(SigningError::MissingPrefix)?;
    let key = B64.decode(b64).map_err(|_| SigningError::NotBase64)?;
    if !SECRET_BYTES.contains(&key.len()) {
        return Err(SigningError::BadLength(key.len()));
    }
    Ok(key)
}

/// A new random `whsec_` secret with 32 key bytes.
pub fn generate_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", B64.encode(key))
}

/// `v1,<base64 signature>` for one key.
pub fn sign_v1(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// Verifies a `webhook-signature` header value against one key, in constant time per entry,
/// with a timestamp tolerance (seconds) around `now`.
pub fn verify_v1(
    key: &[u8],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance_s: i64,
) -> bool {
    if (now - timestamp).abs() > tolerance_s {
        return false;
    }
    let expected = sign_v1(key, msg_id, timestamp, body);
    header.split(' ').any(|entry| subtle::ConstantTimeEq::ct_eq(entry.as_bytes(), expected.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's reference libraries.
    #[test]
    fn known_vector() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign_v1(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verify_round_trip_and_tolerance() {
        let secret = generate_secret();
        let key = decode_secret(&secret).unwrap();
        let sig = sign_v1(&key, "msg_1", 1000, b"body");
        let header = format!("v1,bogus {sig}");
        assert!(verify_v1(&key, "msg_1", 1000, b"body", &header, 1100, 300));
        assert!(!verify_v1(&key, "msg_1", 1000, b"body!", &header, 1100, 300));
        assert!(!verify_v1(&key, "msg_1", 1000, b"body", &header, 2000, 300));
    }

    #[test]
    fn bad_secrets() {
        assert_eq!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(SigningError::MissingPrefix));
        assert_eq!(decode_secret("whsec_!!!"), Err(SigningError::NotBase64));
        assert_eq!(decode_secret("whsec_c2hvcnQ="), Err(SigningError::BadLength(5)));
    }
}
