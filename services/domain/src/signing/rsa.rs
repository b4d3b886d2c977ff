//! RSA schemes: PKCS#1 v1.5 (`v1rsa`) and PSS (`v1pss`, MGF1-SHA-256, 32-byte salt), both over
//! SHA-256. Private keys are PKCS#8 PEM (`BEGIN PRIVATE KEY`), public keys SPKI PEM
//! (`BEGIN PUBLIC KEY`); 2048 to 4096 bits.
//!
//! A private-key operation on a 2048-bit key costs 1.5-5 ms of CPU: run it off the async
//! executor. The `rsa` crate's private-key operations are blinded and, since 0.10, built on
//! constant-time big integers.

use std::convert::Infallible;

use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{RSA_MAX_BITS, RSA_MIN_BITS, SigningError};

fn check_size(key: &impl PublicKeyParts) -> Result<(), SigningError> {
    let bits = key.n().bit_width() as usize;
    if bits < RSA_MIN_BITS {
        return Err(SigningError::RsaTooSmall(bits));
    }
    if bits > RSA_MAX_BITS {
        return Err(SigningError::RsaTooLarge(bits));
    }
    Ok(())
}

/// The modulus size in bits.
pub fn bits(key: &impl PublicKeyParts) -> usize {
    key.n().bit_width() as usize
}

/// Parses a PKCS#8 PEM private key of 2048 to 4096 bits.
pub fn parse_private_pem(pem: &str) -> Result<PrivateKey, SigningError> {
    if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        return Err(SigningError::MalformedPem(
            "RSA key is PKCS#1 (`BEGIN RSA PRIVATE KEY`); supply PKCS#8 (`BEGIN PRIVATE KEY`), e.g. \
             `openssl pkcs8 -topk8 -nocrypt -in key.pem`"
                .into(),
        ));
    }
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(SigningError::MalformedPem("RSA key must not be password-protected".into()));
    }
    if !pem.starts_with("-----BEGIN PRIVATE KEY-----") {
        return Err(SigningError::MalformedPem(
            "RSA key must be a PEM block starting with `-----BEGIN PRIVATE KEY-----`".into(),
        ));
    }
    // The `rsa` crate refuses moduli above 8192 bits while parsing, which bounds the cost of a
    // hostile key before our own 4096-bit limit applies.
    let key = PrivateKey::from_pkcs8_pem(pem).map_err(|e| {
        SigningError::MalformedPem(format!("RSA key is not a valid PKCS#8 RSA private key ({})", describe(&e)))
    })?;
    check_size(&key)?;
    Ok(key)
}

/// Parses an SPKI PEM public key (`BEGIN PUBLIC KEY`) of 2048 to 4096 bits.
pub fn parse_public_pem(pem: &str) -> Result<PublicKey, SigningError> {
    if !pem.starts_with("-----BEGIN PUBLIC KEY-----") {
        return Err(SigningError::MalformedPem(
            "RSA public key must be a PEM block starting with `-----BEGIN PUBLIC KEY-----`".into(),
        ));
    }
    let key = PublicKey::from_public_key_pem(pem).map_err(|e| {
        SigningError::MalformedPem(format!("RSA public key is not a valid SPKI RSA public key ({})", describe(&e)))
    })?;
    check_size(&key)?;
    Ok(key)
}

/// Error text from the PEM/DER layer. It describes structure only (never key bytes).
fn describe(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    if s.chars().count() > 200 { format!("{}…", s.chars().take(200).collect::<String>()) } else { s }
}

/// The SPKI PEM of a public key (LF line endings).
pub fn public_pem(key: &PublicKey) -> String {
    key.to_public_key_pem(LineEnding::LF).expect("an RSA public key always encodes")
}

/// A new key of `bits` bits: (PKCS#8 PEM secret, SPKI PEM public key).
pub fn generate(bits: usize) -> Result<(Zeroizing<String>, String), SigningError> {
    let key = PrivateKey::new(&mut Rng10(rand::rng()), bits).map_err(|e| SigningError::Rsa(e.to_string()))?;
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| SigningError::Rsa(e.to_string()))?;
    Ok((Zeroizing::new(pem.as_str().to_owned()), public_pem(key.as_public_key())))
}

fn digest(msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(msg_id.as_bytes());
    h.update(b".");
    h.update(timestamp.to_string().as_bytes());
    h.update(b".");
    h.update(body);
    h.finalize().into()
}

/// RSASSA-PKCS1-v1_5 with SHA-256 (deterministic).
pub fn sign_pkcs1v15(key: &PrivateKey, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<Vec<u8>, SigningError> {
    key.pkcs1v15_sign_prehash_with_rng::<Sha256, _>(&mut Rng10(rand::rng()), &digest(msg_id, timestamp, body))
        .map_err(|e| SigningError::Rsa(e.to_string()))
}

/// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte random salt.
pub fn sign_pss(key: &PrivateKey, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<Vec<u8>, SigningError> {
    key.pss_sign_prehash_with_rng::<Sha256, _>(&mut Rng10(rand::rng()), &digest(msg_id, timestamp, body))
        .map_err(|e| SigningError::Rsa(e.to_string()))
}

pub fn verify_pkcs1v15(key: &PublicKey, msg_id: &str, timestamp: i64, body: &[u8], sig: &[u8]) -> bool {
    key.pkcs1v15_verify_prehash::<Sha256>(&digest(msg_id, timestamp, body), sig).is_ok()
}

pub fn verify_pss(key: &PublicKey, msg_id: &str, timestamp: i64, body: &[u8], sig: &[u8]) -> bool {
    key.pss_verify_prehash::<Sha256>(&digest(msg_id, timestamp, body), sig).is_ok()
}

/// `rand` 0.9's thread-local CSPRNG (ChaCha, reseeded from the OS) behind the `rand_core` 0.10
/// traits the `rsa` crate takes. Avoids a second RNG dependency.
struct Rng10(rand::rngs::ThreadRng);

impl rsa::rand_core::TryRng for Rng10 {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(rand::RngCore::next_u32(&mut self.0))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(rand::RngCore::next_u64(&mut self.0))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        rand::RngCore::fill_bytes(&mut self.0, dst);
        Ok(())
    }
}

impl rsa::rand_core::TryCryptoRng for Rng10 {}
