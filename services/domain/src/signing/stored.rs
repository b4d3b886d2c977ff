//! Keys as stored on endpoints (`hookline_schemas::SigningKey`): the secret sealed under the
//! master keys (see [`crate::sealing`]), the public key in the clear. The sealed plaintext is
//! the secret exactly as shown to the user (`whsec_…`, `whsk_…`, PKCS#8 PEM), so revealing it
//! and signing with it read the same bytes.

use hookline_schemas::SigningKey;
use zeroize::Zeroizing;

use super::{KeyMaterial, Scheme, SigningError};
use crate::sealing::{self, MasterKeys, SealError};

/// Why a stored key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenKeyError {
    #[error("key `{key_id}`: {source}")]
    Seal { key_id: String, source: SealError },
    #[error("key `{key_id}`: {source}")]
    Key { key_id: String, source: SigningError },
    #[error("key `{key_id}`: sealed secret is not UTF-8 text")]
    NotText { key_id: String },
}

/// A key to store: `secret` is validated for `scheme` (clear error if it does not fit), sealed
/// under the current master key, and its public key derived.
pub fn seal_new_key(
    master: &MasterKeys,
    key_id: String,
    scheme: Scheme,
    secret: &str,
    now_ms: i64,
) -> Result<SigningKey, SigningError> {
    let secret = secret.trim();
    let material = KeyMaterial::parse(scheme, secret)?;
    Ok(SigningKey {
        key_id,
        scheme: scheme.as_str().to_owned(),
        sealed_secret: sealing::seal(master, secret.as_bytes()),
        public_key: material.public_key(),
        created_at: now_ms,
        expires_at: None,
    })
}

/// The secret of a stored key, for showing it again.
pub fn reveal(master: &MasterKeys, key: &SigningKey) -> Result<Zeroizing<String>, OpenKeyError> {
    let plain = sealing::open(master, &key.sealed_secret)
        .map_err(|source| OpenKeyError::Seal { key_id: key.key_id.clone(), source })?;
    let text = std::str::from_utf8(&plain).map_err(|_| OpenKeyError::NotText { key_id: key.key_id.clone() })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// The signing material of a stored key. Costly for RSA (PEM parse): cache per endpoint version.
pub fn open(master: &MasterKeys, key: &SigningKey) -> Result<KeyMaterial, OpenKeyError> {
    let fail = |source| OpenKeyError::Key { key_id: key.key_id.clone(), source };
    let scheme: Scheme = key.scheme.parse().map_err(fail)?;
    KeyMaterial::parse(scheme, &reveal(master, key)?).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{VerifyKey, generate};

    #[test]
    fn sealed_keys_open_and_sign() {
        let master = MasterKeys::parse(&MasterKeys::generate_entry("k1").unwrap()).unwrap();
        for scheme in [Scheme::HmacSha256, Scheme::Ed25519, Scheme::HmacSha512] {
            let g = generate(scheme).unwrap();
            let stored = seal_new_key(&master, "key_1".into(), scheme, &format!(" {}\n", &*g.secret), 7).unwrap();
            assert_eq!(stored.public_key, g.public_key);
            assert_eq!(stored.scheme, scheme.as_str());
            assert!(!String::from_utf8_lossy(&stored.sealed_secret).contains(&g.secret[6..]));
            assert_eq!(*reveal(&master, &stored).unwrap(), *g.secret);
            let key = open(&master, &stored).unwrap();
            let entry = key.sign("msg", 1, b"x").unwrap();
            let v = match &g.public_key {
                Some(p) => VerifyKey::parse(scheme, p).unwrap(),
                None => VerifyKey::parse(scheme, &g.secret).unwrap(),
            };
            assert_eq!(v.verify_header("msg", 1, b"x", &entry, 1, 0), Ok(()));
        }
    }

    #[test]
    fn errors_name_the_key() {
        let master = MasterKeys::parse(&MasterKeys::generate_entry("k1").unwrap()).unwrap();
        assert_eq!(
            seal_new_key(&master, "k".into(), Scheme::Ed25519, "whsec_AAAA", 0).unwrap_err(),
            SigningError::WrongPrefix { what: "Ed25519 secret key", prefix: "whsk_" }
        );
        let mut stored =
            seal_new_key(&master, "key_9".into(), Scheme::HmacSha256, &crate::signing::generate_secret(), 0).unwrap();
        stored.scheme = "hmac-md5".into();
        assert!(open(&master, &stored).unwrap_err().to_string().starts_with("key `key_9`: unknown signature scheme"));
        stored.sealed_secret = b"raw legacy key bytes".to_vec();
        assert!(matches!(reveal(&master, &stored), Err(OpenKeyError::Seal { .. })));
    }
}
