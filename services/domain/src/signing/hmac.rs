//! HMAC schemes: `v1` (SHA-256, the Standard Webhooks one) and `v1h512` (SHA-512).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha512};

fn mac<M: Mac + KeyInit>(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> M {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// HMAC-SHA256 over `{msg_id}.{timestamp}.{body}`.
pub fn sign_sha256(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    mac::<Hmac<Sha256>>(key, msg_id, timestamp, body).finalize().into_bytes().into()
}

/// HMAC-SHA512 over `{msg_id}.{timestamp}.{body}`.
pub fn sign_sha512(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 64] {
    mac::<Hmac<Sha512>>(key, msg_id, timestamp, body).finalize().into_bytes().into()
}

/// Constant-time check of a decoded HMAC-SHA256 signature.
pub fn verify_sha256(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8], sig: &[u8]) -> bool {
    mac::<Hmac<Sha256>>(key, msg_id, timestamp, body).verify_slice(sig).is_ok()
}

/// Constant-time check of a decoded HMAC-SHA512 signature.
pub fn verify_sha512(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8], sig: &[u8]) -> bool {
    mac::<Hmac<Sha512>>(key, msg_id, timestamp, body).verify_slice(sig).is_ok()
}
