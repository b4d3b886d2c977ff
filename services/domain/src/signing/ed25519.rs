//! Ed25519, the Standard Webhooks asymmetric scheme (`v1a`). Secret keys are `whsk_` + base64
//! of the 32-byte seed (what the reference libraries read); the 64-byte seed-then-public form
//! is accepted too. Public keys are `whpk_` + base64 of the 32-byte point.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use super::{ED25519_PUBLIC_PREFIX, ED25519_SECRET_PREFIX, SigningError, signed_content};

const SECRET: &str = "Ed25519 secret key";
const PUBLIC: &str = "Ed25519 public key";

/// Parses a `whsk_` secret.
pub fn parse_secret(secret: &str) -> Result<SigningKey, SigningError> {
    let b64 = secret
        .strip_prefix(ED25519_SECRET_PREFIX)
        .ok_or(SigningError::WrongPrefix { what: SECRET, prefix: ED25519_SECRET_PREFIX })?;
    let bytes = Zeroizing::new(
        B64.decode(b64).map_err(|_| SigningError::BadBase64 { what: SECRET, prefix: ED25519_SECRET_PREFIX })?,
    );
    match bytes.len() {
        32 => {
            let mut seed = Zeroizing::new([0u8; 32]);
            seed.copy_from_slice(&bytes);
            Ok(SigningKey::from_bytes(&seed))
        }
        64 => {
            let mut pair = Zeroizing::new([0u8; 64]);
            pair.copy_from_slice(&bytes);
            SigningKey::from_keypair_bytes(&pair).map_err(|_| SigningError::InconsistentKeyPair)
        }
        got => Err(SigningError::BadKeyLength { what: SECRET, expected: "32 (seed) or 64 (seed + public)", got }),
    }
}

/// Parses a `whpk_` public key.
pub fn parse_public(public: &str) -> Result<VerifyingKey, SigningError> {
    let b64 = public
        .strip_prefix(ED25519_PUBLIC_PREFIX)
        .ok_or(SigningError::WrongPrefix { what: PUBLIC, prefix: ED25519_PUBLIC_PREFIX })?;
    let bytes = B64.decode(b64).map_err(|_| SigningError::BadBase64 { what: PUBLIC, prefix: ED25519_PUBLIC_PREFIX })?;
    let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| SigningError::BadKeyLength {
        what: PUBLIC,
        expected: "32",
        got: bytes.len(),
    })?;
    VerifyingKey::from_bytes(&arr).map_err(|_| SigningError::BadPublicKey)
}

/// `whpk_` + base64 of the public key.
pub fn public_string(key: &VerifyingKey) -> String {
    format!("{ED25519_PUBLIC_PREFIX}{}", B64.encode(key.to_bytes()))
}

/// A new key: (`whsk_` secret with the 32-byte seed, `whpk_` public key).
pub fn generate() -> (Zeroizing<String>, String) {
    let seed = Zeroizing::new(rand::random::<[u8; 32]>());
    let key = SigningKey::from_bytes(&seed);
    (Zeroizing::new(format!("{ED25519_SECRET_PREFIX}{}", B64.encode(*seed))), public_string(&key.verifying_key()))
}

pub fn sign(key: &SigningKey, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 64] {
    key.sign(&signed_content(msg_id, timestamp, body)).to_bytes()
}

/// Strict verification (rejects small-order keys and non-canonical signatures).
pub fn verify(key: &VerifyingKey, msg_id: &str, timestamp: i64, body: &[u8], sig: &[u8]) -> bool {
    let Ok(sig) = Signature::from_slice(sig) else { return false };
    key.verify_strict(&signed_content(msg_id, timestamp, body), &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_errors_are_specific() {
        let e = |s: &str| parse_secret(s).unwrap_err().to_string();
        assert_eq!(e("whsec_AAAA"), "Ed25519 secret key must start with `whsk_`");
        assert_eq!(e("whsk_***"), "Ed25519 secret key is not valid base64 after `whsk_`");
        assert_eq!(e("whsk_AAAA"), "Ed25519 secret key must decode to 32 (seed) or 64 (seed + public) bytes, got 3");
        // 64-byte form whose public half does not belong to the seed.
        let bad_pair = format!("whsk_{}", B64.encode([1u8; 64]));
        assert_eq!(parse_secret(&bad_pair).unwrap_err(), SigningError::InconsistentKeyPair);
        assert_eq!(
            parse_public("whpk_AAAA").unwrap_err().to_string(),
            "Ed25519 public key must decode to 32 bytes, got 3"
        );
    }

    #[test]
    fn keypair_form_equals_seed_form() {
        let (secret, public) = generate();
        let key = parse_secret(&secret).unwrap();
        let pair = format!("whsk_{}", B64.encode(key.to_keypair_bytes()));
        assert_eq!(parse_secret(&pair).unwrap().to_bytes(), key.to_bytes());
        assert_eq!(public_string(&parse_secret(&pair).unwrap().verifying_key()), public);
    }
}
