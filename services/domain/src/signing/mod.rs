//! Standard Webhooks signatures, in every scheme an endpoint key may use.
//!
//! Signed content is `{webhook-id}.{webhook-timestamp}.{body}` over the exact bytes sent; the
//! `webhook-signature` header holds space-separated `<tag>,<base64 signature>` entries, one per
//! signing key (several during a rotation). Receivers check any entry whose tag they know and
//! ignore the others, so the extra schemes below never break a standard verifier.
//!
//! | [`Scheme`] (`SigningKey.scheme`) | tag      | secret (shown once)            | public key      |
//! |----------------------------------|----------|--------------------------------|-----------------|
//! | `hmac-sha256`                    | `v1`     | `whsec_` + base64(24..=64 B)   | none            |
//! | `ed25519`                        | `v1a`    | `whsk_` + base64(32 B seed)    | `whpk_` + base64(32 B) |
//! | `hmac-sha512`                    | `v1h512` | `whsec_` + base64(24..=64 B)   | none            |
//! | `rsa-pkcs1v15-sha256`            | `v1rsa`  | PKCS#8 PEM, >= 2048 bits       | SPKI PEM        |
//! | `rsa-pss-sha256`                 | `v1pss`  | PKCS#8 PEM, >= 2048 bits       | SPKI PEM        |
//!
//! `v1` and `v1a` are the Standard Webhooks ones: off-the-shelf libraries verify them unchanged
//! (`whsk_` is the 32-byte seed as the reference Go library reads it; the 64-byte seed+public
//! form is accepted too). PSS uses MGF1-SHA-256 with a 32-byte salt.
//!
//! Cost: HMAC and Ed25519 take microseconds (Ed25519 on 64 KiB: ~0.5 ms, it hashes the body
//! twice). An RSA-2048 private-key operation takes ~1.5 ms of CPU on a fast core and measured
//! 4-5 ms on our loaded 2-core dev machine, so callers on an async executor must run RSA signing
//! on a blocking pool (`spawn_blocking`) rather than inline; see `benches/signing.rs`. Parsing a
//! PEM key costs ~0.3 ms, so keep [`KeyMaterial`] cached per endpoint version instead of parsing
//! per delivery.
//!
//! - [`hmac`], [`ed25519`], [`rsa`]: the per-scheme primitives.
//! - [`jwks`]: public keys of asymmetric schemes as a JWK Set.
//! - [`rotation`]: which keys sign at a given time, and how a new key replaces the old ones.
//! - [`stored`]: keys as stored on endpoints: seal a new key, open one to sign, reveal it.

pub mod ed25519;
pub mod hmac;
pub mod jwks;
pub mod rotation;
pub mod rsa;
pub mod stored;

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

/// Header names (Standard Webhooks).
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Prefix of symmetric secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// Key sizes accepted for `whsec_` secrets, in bytes.
pub const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Prefix of Ed25519 secret keys.
pub const ED25519_SECRET_PREFIX: &str = "whsk_";
/// Prefix of Ed25519 public keys.
pub const ED25519_PUBLIC_PREFIX: &str = "whpk_";
/// Smallest RSA modulus accepted, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds the signing cost of a user-supplied key).
pub const RSA_MAX_BITS: usize = 4096;
/// RSA modulus of generated keys, in bits.
pub const RSA_GENERATED_BITS: usize = 2048;
/// Timestamp tolerance receivers conventionally apply, in seconds.
pub const DEFAULT_TOLERANCE_S: i64 = 5 * 60;

/// A signature scheme; the string form is what `SigningKey.scheme` stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    HmacSha256,
    Ed25519,
    HmacSha512,
    RsaPkcs1v15Sha256,
    RsaPssSha256,
}

impl Scheme {
    pub const ALL: [Scheme; 5] =
        [Scheme::HmacSha256, Scheme::Ed25519, Scheme::HmacSha512, Scheme::RsaPkcs1v15Sha256, Scheme::RsaPssSha256];

    /// The stable name stored in `SigningKey.scheme`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::HmacSha256 => "hmac-sha256",
            Scheme::Ed25519 => "ed25519",
            Scheme::HmacSha512 => "hmac-sha512",
            Scheme::RsaPkcs1v15Sha256 => "rsa-pkcs1v15-sha256",
            Scheme::RsaPssSha256 => "rsa-pss-sha256",
        }
    }

    /// The version tag that prefixes this scheme's entries in `webhook-signature`.
    pub const fn tag(self) -> &'static str {
        match self {
            Scheme::HmacSha256 => "v1",
            Scheme::Ed25519 => "v1a",
            Scheme::HmacSha512 => "v1h512",
            Scheme::RsaPkcs1v15Sha256 => "v1rsa",
            Scheme::RsaPssSha256 => "v1pss",
        }
    }

    /// True when the scheme has a public key to publish (and a JWK).
    pub const fn is_asymmetric(self) -> bool {
        !matches!(self, Scheme::HmacSha256 | Scheme::HmacSha512)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = SigningError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| SigningError::UnknownScheme(s.to_owned()))
    }
}

/// Why a key could not be parsed, generated or used. Messages are safe to show to the user who
/// supplied the key: they never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("secret must start with `whsec_`")]
    MissingPrefix,
    #[error("secret is not valid base64 after `whsec_`")]
    NotBase64,
    #[error("secret must decode to 24 to 64 bytes, got {0}")]
    BadLength(usize),
    #[error(
        "unknown signature scheme `{0}`; expected one of hmac-sha256, ed25519, hmac-sha512, rsa-pkcs1v15-sha256, rsa-pss-sha256"
    )]
    UnknownScheme(String),
    #[error("{what} must start with `{prefix}`")]
    WrongPrefix { what: &'static str, prefix: &'static str },
    #[error("{what} is not valid base64 after `{prefix}`")]
    BadBase64 { what: &'static str, prefix: &'static str },
    #[error("{what} must decode to {expected} bytes, got {got}")]
    BadKeyLength { what: &'static str, expected: &'static str, got: usize },
    #[error("Ed25519 key pair is inconsistent: its public half does not match its seed")]
    InconsistentKeyPair,
    #[error("Ed25519 public key is not a valid curve point")]
    BadPublicKey,
    #[error("{0}")]
    MalformedPem(String),
    #[error("RSA key has {0} bits; at least 2048 are required")]
    RsaTooSmall(usize),
    #[error("RSA key has {0} bits; at most 4096 are accepted")]
    RsaTooLarge(usize),
    #[error("RSA operation failed: {0}")]
    Rsa(String),
}

/// Why a received `webhook-signature` did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("timestamp is outside the tolerance window")]
    TimestampOutOfTolerance,
    #[error("no signature entry matches")]
    NoMatchingSignature,
}

/// A decoded private key, ready to sign. Build it once per endpoint key version (parsing an RSA
/// key costs milliseconds) and reuse it. `Debug` never shows the key.
#[derive(Clone)]
pub enum KeyMaterial {
    HmacSha256(Zeroizing<Vec<u8>>),
    HmacSha512(Zeroizing<Vec<u8>>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
    RsaPkcs1v15Sha256(Box<::rsa::PrivateKey>),
    RsaPssSha256(Box<::rsa::PrivateKey>),
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyMaterial({}, <redacted>)", self.scheme())
    }
}

impl KeyMaterial {
    /// Parses a secret as the user sees it (`whsec_…`, `whsk_…`, PKCS#8 PEM), validating it for
    /// `scheme`. This is also the plaintext kept (sealed) in `SigningKey.sealed_secret`.
    pub fn parse(scheme: Scheme, secret: &str) -> Result<Self, SigningError> {
        let secret = secret.trim();
        Ok(match scheme {
            Scheme::HmacSha256 => KeyMaterial::HmacSha256(Zeroizing::new(decode_secret(secret)?)),
            Scheme::HmacSha512 => KeyMaterial::HmacSha512(Zeroizing::new(decode_secret(secret)?)),
            Scheme::Ed25519 => KeyMaterial::Ed25519(Box::new(ed25519::parse_secret(secret)?)),
            Scheme::RsaPkcs1v15Sha256 => KeyMaterial::RsaPkcs1v15Sha256(Box::new(rsa::parse_private_pem(secret)?)),
            Scheme::RsaPssSha256 => KeyMaterial::RsaPssSha256(Box::new(rsa::parse_private_pem(secret)?)),
        })
    }

    pub fn scheme(&self) -> Scheme {
        match self {
            KeyMaterial::HmacSha256(_) => Scheme::HmacSha256,
            KeyMaterial::HmacSha512(_) => Scheme::HmacSha512,
            KeyMaterial::Ed25519(_) => Scheme::Ed25519,
            KeyMaterial::RsaPkcs1v15Sha256(_) => Scheme::RsaPkcs1v15Sha256,
            KeyMaterial::RsaPssSha256(_) => Scheme::RsaPssSha256,
        }
    }

    /// The public key to publish (`whpk_…` or SPKI PEM); `None` for HMAC schemes.
    pub fn public_key(&self) -> Option<String> {
        match self {
            KeyMaterial::HmacSha256(_) | KeyMaterial::HmacSha512(_) => None,
            KeyMaterial::Ed25519(k) => Some(ed25519::public_string(&k.verifying_key())),
            KeyMaterial::RsaPkcs1v15Sha256(k) | KeyMaterial::RsaPssSha256(k) => {
                Some(rsa::public_pem(k.as_public_key()))
            }
        }
    }

    /// What a receiver needs to verify this key's signatures.
    pub fn verify_key(&self) -> VerifyKey {
        match self {
            KeyMaterial::HmacSha256(k) => VerifyKey::HmacSha256(k.clone()),
            KeyMaterial::HmacSha512(k) => VerifyKey::HmacSha512(k.clone()),
            KeyMaterial::Ed25519(k) => VerifyKey::Ed25519(k.verifying_key()),
            KeyMaterial::RsaPkcs1v15Sha256(k) => VerifyKey::RsaPkcs1v15Sha256(Box::new(k.to_public_key())),
            KeyMaterial::RsaPssSha256(k) => VerifyKey::RsaPssSha256(Box::new(k.to_public_key())),
        }
    }

    /// The header entry `"<tag>,<base64 signature>"` over `{msg_id}.{timestamp}.{body}`.
    /// Only RSA can fail (and only on an internal error, not on any input).
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, SigningError> {
        let sig = match self {
            KeyMaterial::HmacSha256(k) => hmac::sign_sha256(k, msg_id, timestamp, body).to_vec(),
            KeyMaterial::HmacSha512(k) => hmac::sign_sha512(k, msg_id, timestamp, body).to_vec(),
            KeyMaterial::Ed25519(k) => ed25519::sign(k, msg_id, timestamp, body).to_vec(),
            KeyMaterial::RsaPkcs1v15Sha256(k) => rsa::sign_pkcs1v15(k, msg_id, timestamp, body)?,
            KeyMaterial::RsaPssSha256(k) => rsa::sign_pss(k, msg_id, timestamp, body)?,
        };
        Ok(format!("{},{}", self.scheme().tag(), B64.encode(sig)))
    }
}

/// The `webhook-signature` header value: one entry per key, space-separated, in key order.
pub fn signature_header<'a>(
    keys: impl IntoIterator<Item = &'a KeyMaterial>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SigningError> {
    let mut out = String::new();
    for key in keys {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&key.sign(msg_id, timestamp, body)?);
    }
    Ok(out)
}

/// A verification key: the shared secret for HMAC, the public key otherwise.
#[derive(Clone)]
pub enum VerifyKey {
    HmacSha256(Zeroizing<Vec<u8>>),
    HmacSha512(Zeroizing<Vec<u8>>),
    Ed25519(ed25519_dalek::VerifyingKey),
    RsaPkcs1v15Sha256(Box<::rsa::PublicKey>),
    RsaPssSha256(Box<::rsa::PublicKey>),
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyKey::HmacSha256(_) | VerifyKey::HmacSha512(_) => {
                write!(f, "VerifyKey({}, <redacted>)", self.scheme())
            }
            _ => write!(f, "VerifyKey({})", self.scheme()),
        }
    }
}

impl VerifyKey {
    /// Parses what a receiver holds: the `whsec_` secret for HMAC, `whpk_` for Ed25519, an SPKI
    /// PEM for RSA.
    pub fn parse(scheme: Scheme, key: &str) -> Result<Self, SigningError> {
        let key = key.trim();
        Ok(match scheme {
            Scheme::HmacSha256 => VerifyKey::HmacSha256(Zeroizing::new(decode_secret(key)?)),
            Scheme::HmacSha512 => VerifyKey::HmacSha512(Zeroizing::new(decode_secret(key)?)),
            Scheme::Ed25519 => VerifyKey::Ed25519(ed25519::parse_public(key)?),
            Scheme::RsaPkcs1v15Sha256 => VerifyKey::RsaPkcs1v15Sha256(Box::new(rsa::parse_public_pem(key)?)),
            Scheme::RsaPssSha256 => VerifyKey::RsaPssSha256(Box::new(rsa::parse_public_pem(key)?)),
        })
    }

    pub fn scheme(&self) -> Scheme {
        match self {
            VerifyKey::HmacSha256(_) => Scheme::HmacSha256,
            VerifyKey::HmacSha512(_) => Scheme::HmacSha512,
            VerifyKey::Ed25519(_) => Scheme::Ed25519,
            VerifyKey::RsaPkcs1v15Sha256(_) => Scheme::RsaPkcs1v15Sha256,
            VerifyKey::RsaPssSha256(_) => Scheme::RsaPssSha256,
        }
    }

    /// Checks one decoded signature (no tag, no base64).
    pub fn verify_raw(&self, msg_id: &str, timestamp: i64, body: &[u8], sig: &[u8]) -> bool {
        match self {
            VerifyKey::HmacSha256(k) => hmac::verify_sha256(k, msg_id, timestamp, body, sig),
            VerifyKey::HmacSha512(k) => hmac::verify_sha512(k, msg_id, timestamp, body, sig),
            VerifyKey::Ed25519(k) => ed25519::verify(k, msg_id, timestamp, body, sig),
            VerifyKey::RsaPkcs1v15Sha256(k) => rsa::verify_pkcs1v15(k, msg_id, timestamp, body, sig),
            VerifyKey::RsaPssSha256(k) => rsa::verify_pss(k, msg_id, timestamp, body, sig),
        }
    }

    /// Verifies a `webhook-signature` header value as a receiver would: `timestamp` (seconds)
    /// must be within `tolerance_s` of `now_s`, and at least one entry with this scheme's tag
    /// must verify. Entries with other tags are ignored. HMAC comparisons are constant time.
    pub fn verify_header(
        &self,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        header: &str,
        now_s: i64,
        tolerance_s: i64,
    ) -> Result<(), VerifyError> {
        if now_s.abs_diff(timestamp) > tolerance_s.unsigned_abs() {
            return Err(VerifyError::TimestampOutOfTolerance);
        }
        let tag = self.scheme().tag();
        let matched = header
            .split(' ')
            .filter_map(|entry| entry.split_once(','))
            .filter(|(t, _)| *t == tag)
            .filter_map(|(_, sig)| B64.decode(sig).ok())
            .any(|sig| self.verify_raw(msg_id, timestamp, body, &sig));
        if matched { Ok(()) } else { Err(VerifyError::NoMatchingSignature) }
    }
}

/// A freshly generated key. `secret` is shown to the user once and then only kept sealed.
pub struct GeneratedKey {
    pub scheme: Scheme,
    pub secret: Zeroizing<String>,
    pub public_key: Option<String>,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("scheme", &format_args!("{}", self.scheme))
            .field("secret", &"<redacted>")
            .field("public_key", &self.public_key)
            .finish()
    }
}

/// A new random key for `scheme`. RSA generation takes 0.1 to 1 s of CPU (run it off the
/// executor); the others are instant.
pub fn generate(scheme: Scheme) -> Result<GeneratedKey, SigningError> {
    let (secret, public_key) = match scheme {
        Scheme::HmacSha256 => (Zeroizing::new(generate_secret()), None),
        Scheme::HmacSha512 => {
            // A full SHA-512 block's worth of key would be 128 bytes, but the whsec_ format caps
            // keys at 64 bytes; 64 bytes is already 512 bits of entropy.
            let key = Zeroizing::new(rand::random::<[u8; 64]>());
            (Zeroizing::new(format!("{SECRET_PREFIX}{}", B64.encode(*key))), None)
        }
        Scheme::Ed25519 => {
            let (secret, public) = ed25519::generate();
            (secret, Some(public))
        }
        Scheme::RsaPkcs1v15Sha256 | Scheme::RsaPssSha256 => {
            let (secret, public) = rsa::generate(RSA_GENERATED_BITS)?;
            (secret, Some(public))
        }
    };
    Ok(GeneratedKey { scheme, secret, public_key })
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
    let key = Zeroizing::new(rand::random::<[u8; 32]>());
    format!("{SECRET_PREFIX}{}", B64.encode(*key))
}

/// `v1,<base64 signature>` for one raw HMAC-SHA256 key.
pub fn sign_v1(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", B64.encode(hmac::sign_sha256(key, msg_id, timestamp, body)))
}

/// Verifies a `webhook-signature` header value against one raw HMAC-SHA256 key, in constant
/// time per entry, with a timestamp tolerance (seconds) around `now`.
pub fn verify_v1(
    key: &[u8],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance_s: i64,
) -> bool {
    VerifyKey::HmacSha256(Zeroizing::new(key.to_vec()))
        .verify_header(msg_id, timestamp, body, header, now, tolerance_s)
        .is_ok()
}

/// The bytes every scheme signs. Asymmetric schemes need them contiguous.
pub(crate) fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp.to_string();
    let mut buf = Vec::with_capacity(msg_id.len() + ts.len() + body.len() + 2);
    buf.extend_from_slice(msg_id.as_bytes());
    buf.push(b'.');
    buf.extend_from_slice(ts.as_bytes());
    buf.push(b'.');
    buf.extend_from_slice(body);
    buf
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
        // 65 bytes: one over the limit.
        let long = format!("whsec_{}", B64.encode([7u8; 65]));
        assert_eq!(decode_secret(&long), Err(SigningError::BadLength(65)));
        assert!(decode_secret(&format!("whsec_{}", B64.encode([7u8; 64]))).is_ok());
        assert!(decode_secret(&format!("whsec_{}", B64.encode([7u8; 24]))).is_ok());
    }

    #[test]
    fn scheme_names_and_tags_are_stable() {
        let names: Vec<_> = Scheme::ALL.iter().map(|s| (s.as_str(), s.tag())).collect();
        assert_eq!(
            names,
            [
                ("hmac-sha256", "v1"),
                ("ed25519", "v1a"),
                ("hmac-sha512", "v1h512"),
                ("rsa-pkcs1v15-sha256", "v1rsa"),
                ("rsa-pss-sha256", "v1pss"),
            ]
        );
        for s in Scheme::ALL {
            assert_eq!(s.as_str().parse::<Scheme>(), Ok(s));
        }
        assert!(matches!("hmac-md5".parse::<Scheme>(), Err(SigningError::UnknownScheme(_))));
    }

    /// Every scheme: generate, parse the shown secret back, sign, verify with the public half,
    /// and reject a changed body, id, timestamp and a signature from another key.
    #[test]
    fn every_scheme_round_trips() {
        for scheme in Scheme::ALL {
            let g = generate(scheme).unwrap();
            assert_eq!(g.public_key.is_some(), scheme.is_asymmetric());
            let key = KeyMaterial::parse(scheme, &g.secret).unwrap();
            assert_eq!(key.public_key(), g.public_key);
            let verifier = match &g.public_key {
                Some(public) => VerifyKey::parse(scheme, public).unwrap(),
                None => VerifyKey::parse(scheme, &g.secret).unwrap(),
            };
            let entry = key.sign("msg_x", 1_700_000_000, b"{\"a\":1}").unwrap();
            assert!(entry.starts_with(&format!("{},", scheme.tag())), "{entry}");
            let ok = |id: &str, ts: i64, body: &[u8], header: &str| {
                verifier.verify_header(id, ts, body, header, 1_700_000_010, 300)
            };
            assert_eq!(ok("msg_x", 1_700_000_000, b"{\"a\":1}", &entry), Ok(()), "{scheme}");
            assert_eq!(ok("msg_x", 1_700_000_000, b"{\"a\":2}", &entry), Err(VerifyError::NoMatchingSignature));
            assert_eq!(ok("msg_y", 1_700_000_000, b"{\"a\":1}", &entry), Err(VerifyError::NoMatchingSignature));
            assert_eq!(ok("msg_x", 1_700_000_001, b"{\"a\":1}", &entry), Err(VerifyError::NoMatchingSignature));
            assert_eq!(
                verifier.verify_header("msg_x", 1_700_000_000, b"{\"a\":1}", &entry, 1_700_001_000, 300),
                Err(VerifyError::TimestampOutOfTolerance)
            );
            let other = KeyMaterial::parse(scheme, &generate(scheme).unwrap().secret).unwrap();
            let foreign = other.sign("msg_x", 1_700_000_000, b"{\"a\":1}").unwrap();
            assert_eq!(ok("msg_x", 1_700_000_000, b"{\"a\":1}", &foreign), Err(VerifyError::NoMatchingSignature));
            // A key's entry hidden among others (rotation) still verifies.
            assert_eq!(ok("msg_x", 1_700_000_000, b"{\"a\":1}", &format!("{foreign} v9,xx {entry}")), Ok(()));
        }
    }

    #[test]
    fn header_joins_entries_in_key_order() {
        let a = KeyMaterial::parse(Scheme::HmacSha256, &generate_secret()).unwrap();
        let b = KeyMaterial::parse(Scheme::Ed25519, &generate(Scheme::Ed25519).unwrap().secret).unwrap();
        let header = signature_header([&a, &b], "msg_1", 5, b"x").unwrap();
        let tags: Vec<_> = header.split(' ').map(|e| e.split_once(',').unwrap().0).collect();
        assert_eq!(tags, ["v1", "v1a"]);
        assert_eq!(signature_header([], "msg_1", 5, b"x").unwrap(), "");
        // The legacy helper and the scheme API agree.
        let KeyMaterial::HmacSha256(raw) = &a else { unreachable!() };
        assert_eq!(a.sign("msg_1", 5, b"x").unwrap(), sign_v1(raw, "msg_1", 5, b"x"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        for scheme in Scheme::ALL {
            let g = generate(scheme).unwrap();
            let key = KeyMaterial::parse(scheme, &g.secret).unwrap();
            let b64_tail = g.secret.lines().nth(1).unwrap_or(&g.secret).chars().skip(8).take(12).collect::<String>();
            for shown in [format!("{g:?}"), format!("{key:?}"), format!("{:?}", key.verify_key())] {
                assert!(!shown.contains(&b64_tail), "{scheme}: {shown}");
                assert!(shown.contains(scheme.as_str()), "{shown}");
            }
        }
    }

    /// Random inputs: every scheme's signature verifies, and flipping any byte of the body breaks it.
    #[test]
    fn randomized_round_trip() {
        let keys: Vec<KeyMaterial> =
            Scheme::ALL.iter().map(|&s| KeyMaterial::parse(s, &generate(s).unwrap().secret).unwrap()).collect();
        for i in 0..40 {
            let len = rand::random_range(0..2048);
            let mut body: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            let id = format!("msg_{}", rand::random::<u64>());
            let ts = rand::random_range(0..4_000_000_000i64);
            let key = &keys[i % keys.len()];
            let header = signature_header([key], &id, ts, &body).unwrap();
            let v = key.verify_key();
            assert_eq!(v.verify_header(&id, ts, &body, &header, ts, 0), Ok(()));
            if !body.is_empty() {
                let at = rand::random_range(0..body.len());
                body[at] ^= 1 << rand::random_range(0..8);
                assert_eq!(v.verify_header(&id, ts, &body, &header, ts, 0), Err(VerifyError::NoMatchingSignature));
            }
        }
    }
}
