//! Secrets at rest: endpoint signing secrets are sealed with an operator master key before they
//! go into events and tables, and opened only where a signature is made or a secret revealed.
//!
//! Master keys come from configuration as `"k1:BASE64_32_BYTES,k0:BASE64_32_BYTES"`: the first
//! entry seals, all entries open, so rotating is "prepend a new key, re-seal at leisure, then
//! drop the old one" ([`MasterKeys::needs_reseal`], [`reseal`]).
//!
//! Envelope (version 1):
//!
//! ```text
//! [0x01][key id length: u8][key id bytes][nonce: 24 bytes][ciphertext || tag: 16 bytes]
//! ```
//!
//! The cipher is XChaCha20-Poly1305. Its 192-bit nonce can be drawn at random for every seal
//! with no practical collision risk, whereas AES-256-GCM's 96-bit random nonces cap one key at
//! ~2^32 messages; it is also constant time in pure software, without AES-NI. The version byte
//! and key id are authenticated as associated data, so relabelling an envelope fails to open.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Current envelope version.
pub const ENVELOPE_V1: u8 = 1;
/// Master key size, in bytes.
pub const MASTER_KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// Longest master key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Why the master key configuration is unusable. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    #[error("no master key configured; expected `id:BASE64_32_BYTES[,id:BASE64_32_BYTES…]`")]
    Missing,
    #[error("master key entry {index} is not `id:BASE64_32_BYTES`")]
    MissingSeparator { index: usize },
    #[error("master key id `{id}` must be 1 to 64 characters of A-Z a-z 0-9 _ - .")]
    BadId { id: String },
    #[error("master key `{id}` is not valid base64")]
    NotBase64 { id: String },
    #[error("master key `{id}` must decode to 32 bytes, got {len}")]
    WrongLength { id: String, len: usize },
    #[error("master key id `{id}` appears more than once")]
    Duplicate { id: String },
}

/// Why a sealed secret did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed secret is truncated or malformed")]
    Truncated,
    #[error("sealed secret has unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    #[error("sealed secret uses master key `{0}`, which is not configured")]
    UnknownKeyId(String),
    #[error("sealed secret failed authentication (tampered, or sealed under another key with the same id)")]
    Tampered,
}

struct MasterKey {
    id: String,
    key: Zeroizing<[u8; MASTER_KEY_BYTES]>,
}

/// The operator's master keys. The first one seals; all of them open. `Debug` shows ids only.
pub struct MasterKeys {
    keys: Vec<MasterKey>,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeys").field("ids", &self.ids().collect::<Vec<_>>()).finish()
    }
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl MasterKeys {
    /// Parses `"k1:BASE64,k0:BASE64"`. Whitespace around entries is ignored.
    pub fn parse(config: &str) -> Result<Self, MasterKeyError> {
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for (index, entry) in config.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let (id, b64) = entry.split_once(':').ok_or(MasterKeyError::MissingSeparator { index })?;
            let (id, b64) = (id.trim(), b64.trim());
            if !valid_id(id) {
                return Err(MasterKeyError::BadId { id: id.chars().take(MAX_KEY_ID_LEN).collect() });
            }
            let bytes = Zeroizing::new(B64.decode(b64).map_err(|_| MasterKeyError::NotBase64 { id: id.into() })?);
            let key: [u8; MASTER_KEY_BYTES] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| MasterKeyError::WrongLength { id: id.into(), len: bytes.len() })?;
            if !seen.insert(id.to_owned()) {
                return Err(MasterKeyError::Duplicate { id: id.into() });
            }
            keys.push(MasterKey { id: id.into(), key: Zeroizing::new(key) });
        }
        if keys.is_empty() {
            return Err(MasterKeyError::Missing);
        }
        Ok(MasterKeys { keys })
    }

    /// A new random config entry `"id:BASE64"` for an operator to prepend to the configuration.
    pub fn generate_entry(id: &str) -> Result<Zeroizing<String>, MasterKeyError> {
        if !valid_id(id) {
            return Err(MasterKeyError::BadId { id: id.into() });
        }
        let key = Zeroizing::new(rand::random::<[u8; MASTER_KEY_BYTES]>());
        Ok(Zeroizing::new(format!("{id}:{}", B64.encode(*key))))
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// All key ids, current first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    fn get(&self, id: &[u8]) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id.as_bytes() == id)
    }

    /// True when `sealed` was not sealed under the current key (or is unreadable), i.e. a
    /// re-encryption job should [`reseal`] it.
    pub fn needs_reseal(&self, sealed: &[u8]) -> bool {
        parse_envelope(sealed).map(|e| e.key_id != self.current_id().as_bytes()).unwrap_or(true)
    }
}

impl FromStr for MasterKeys {
    type Err = MasterKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MasterKeys::parse(s)
    }
}

struct Envelope<'a> {
    header: &'a [u8],
    key_id: &'a [u8],
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

fn parse_envelope(sealed: &[u8]) -> Result<Envelope<'_>, SealError> {
    let (&version, rest) = sealed.split_first().ok_or(SealError::Truncated)?;
    if version != ENVELOPE_V1 {
        return Err(SealError::UnsupportedVersion(version));
    }
    let (&id_len, rest) = rest.split_first().ok_or(SealError::Truncated)?;
    let id_len = id_len as usize;
    if id_len == 0 || rest.len() < id_len + NONCE_BYTES + TAG_BYTES {
        return Err(SealError::Truncated);
    }
    let (key_id, rest) = rest.split_at(id_len);
    let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
    Ok(Envelope { header: &sealed[..2 + id_len], key_id, nonce, ciphertext })
}

/// Encrypts `plaintext` under the current master key with a fresh random nonce.
pub fn seal(keys: &MasterKeys, plaintext: &[u8]) -> Vec<u8> {
    let key = &keys.keys[0];
    let id = key.id.as_bytes();
    let mut out = Vec::with_capacity(2 + id.len() + NONCE_BYTES + plaintext.len() + TAG_BYTES);
    out.push(ENVELOPE_V1);
    out.push(id.len() as u8); // ids are at most 64 bytes (checked at parse)
    out.extend_from_slice(id);
    let nonce: [u8; NONCE_BYTES] = rand::random();
    let cipher = XChaCha20Poly1305::new(&(*key.key).into());
    let ct = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &out })
        .expect("XChaCha20-Poly1305 encrypts any plaintext that fits in memory");
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Decrypts an envelope made by [`seal`] with any configured master key.
pub fn open(keys: &MasterKeys, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let env = parse_envelope(sealed)?;
    let key = keys
        .get(env.key_id)
        .ok_or_else(|| SealError::UnknownKeyId(String::from_utf8_lossy(env.key_id).into_owned()))?;
    let nonce: [u8; NONCE_BYTES] = env.nonce.try_into().map_err(|_| SealError::Truncated)?;
    let cipher = XChaCha20Poly1305::new(&(*key.key).into());
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: env.ciphertext, aad: env.header })
        .map(Zeroizing::new)
        .map_err(|_| SealError::Tampered)
}

/// Opens `sealed` and seals it again under the current key (master key rotation).
pub fn reseal(keys: &MasterKeys, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    Ok(seal(keys, &open(keys, sealed)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, byte: u8) -> String {
        format!("{id}:{}", B64.encode([byte; 32]))
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let keys = MasterKeys::parse(&entry("k1", 1)).unwrap();
        let a = seal(&keys, b"whsec_secret");
        let b = seal(&keys, b"whsec_secret");
        assert_ne!(a, b, "each seal draws a new nonce");
        assert_eq!(&*open(&keys, &a).unwrap(), b"whsec_secret");
        assert_eq!(&*open(&keys, &seal(&keys, b"")).unwrap(), b"");
        assert_eq!(&a[..4], &[ENVELOPE_V1, 2, b'k', b'1']);
        assert!(!a.windows(6).any(|w| w == b"whsec_"), "plaintext must not appear");
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let keys = MasterKeys::parse(&entry("k1", 1)).unwrap();
        let sealed = seal(&keys, b"0123456789");
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut t = sealed.clone();
                t[i] ^= 1 << bit;
                assert!(open(&keys, &t).is_err(), "flip at byte {i} bit {bit} went unnoticed");
            }
        }
        let mut t = sealed.clone();
        *t.last_mut().unwrap() ^= 1;
        assert_eq!(open(&keys, &t), Err(SealError::Tampered));
    }

    #[test]
    fn rotation_keeps_old_envelopes_readable() {
        let old = MasterKeys::parse(&entry("k0", 1)).unwrap();
        let sealed = seal(&old, b"secret");
        let rotated = MasterKeys::parse(&format!("{}, {}", entry("k1", 2), entry("k0", 1))).unwrap();
        assert_eq!(rotated.current_id(), "k1");
        assert_eq!(&*open(&rotated, &sealed).unwrap(), b"secret");
        assert!(rotated.needs_reseal(&sealed));
        let resealed = reseal(&rotated, &sealed).unwrap();
        assert!(!rotated.needs_reseal(&resealed));
        let only_new = MasterKeys::parse(&entry("k1", 2)).unwrap();
        assert_eq!(&*open(&only_new, &resealed).unwrap(), b"secret");
        assert_eq!(open(&only_new, &sealed), Err(SealError::UnknownKeyId("k0".into())));
    }

    #[test]
    fn wrong_master_key_with_same_id_fails() {
        let a = MasterKeys::parse(&entry("k1", 1)).unwrap();
        let b = MasterKeys::parse(&entry("k1", 9)).unwrap();
        assert_eq!(open(&b, &seal(&a, b"secret")), Err(SealError::Tampered));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let keys = MasterKeys::parse(&entry("k1", 1)).unwrap();
        assert_eq!(open(&keys, b""), Err(SealError::Truncated));
        assert_eq!(open(&keys, &[1]), Err(SealError::Truncated));
        assert_eq!(open(&keys, &[1, 0]), Err(SealError::Truncated));
        assert_eq!(open(&keys, &[1, 200, 1, 2, 3]), Err(SealError::Truncated));
        assert_eq!(open(&keys, b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(SealError::UnsupportedVersion(b'w')));
        let sealed = seal(&keys, b"x");
        // Shorter than header + nonce + tag: truncated. Longer but cut: fails authentication.
        assert_eq!(open(&keys, &sealed[..2 + 2 + 24 + 15]), Err(SealError::Truncated));
        assert_eq!(open(&keys, &sealed[..sealed.len() - 1]), Err(SealError::Tampered));
        for _ in 0..2000 {
            let len = rand::random_range(0..120);
            let mut junk: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            if let Some(b) = junk.first_mut() {
                *b = ENVELOPE_V1;
            }
            assert!(open(&keys, &junk).is_err());
        }
    }

    #[test]
    fn config_errors_name_the_problem() {
        let err = |s: &str| MasterKeys::parse(s).unwrap_err();
        assert_eq!(err(""), MasterKeyError::Missing);
        assert_eq!(err(" , "), MasterKeyError::Missing);
        assert_eq!(err("k1"), MasterKeyError::MissingSeparator { index: 0 });
        assert_eq!(err(":AAAA"), MasterKeyError::BadId { id: "".into() });
        assert_eq!(err("k 1:AAAA"), MasterKeyError::BadId { id: "k 1".into() });
        assert_eq!(err("k1:***"), MasterKeyError::NotBase64 { id: "k1".into() });
        assert_eq!(err("k1:AAAA"), MasterKeyError::WrongLength { id: "k1".into(), len: 3 });
        assert_eq!(
            err(&format!("{},{}", entry("k1", 1), entry("k1", 2))),
            MasterKeyError::Duplicate { id: "k1".into() }
        );
        assert!(err("k1:AAAA").to_string().contains("32 bytes"));
    }

    #[test]
    fn debug_shows_ids_only() {
        let cfg = format!("{},{}", entry("k1", 0xAB), entry("k0", 0xCD));
        let keys = MasterKeys::parse(&cfg).unwrap();
        let shown = format!("{keys:?}");
        assert_eq!(shown, r#"MasterKeys { ids: ["k1", "k0"] }"#);
        let generated = MasterKeys::generate_entry("k2").unwrap();
        assert!(MasterKeys::parse(&generated).is_ok());
        assert!(MasterKeys::generate_entry("bad id").is_err());
    }
}
