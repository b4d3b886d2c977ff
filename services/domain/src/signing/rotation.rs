//! Key rotation: the old keys keep signing beside the new one for a grace period, so receivers
//! can switch keys without rejecting deliveries.

use hookline_schemas::SigningKey;

/// How long replaced keys keep signing by default: 24 hours, in ms.
pub const DEFAULT_GRACE_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error("key id `{0}` is already used by this endpoint")]
    DuplicateKeyId(String),
    #[error("grace period must be between 0 and 30 days, got {0} ms")]
    BadGrace(i64),
}

/// Longest grace period accepted: 30 days, in ms.
pub const MAX_GRACE_MS: i64 = 30 * DEFAULT_GRACE_MS;

/// True when `key` still signs at `now_ms` (no expiry, or expiry strictly later).
pub fn is_active(key: &SigningKey, now_ms: i64) -> bool {
    key.expires_at.is_none_or(|exp| exp > now_ms)
}

/// The keys that sign at `now_ms`, in their stored order.
pub fn active_at(keys: &[SigningKey], now_ms: i64) -> impl Iterator<Item = &SigningKey> {
    keys.iter().filter(move |k| is_active(k, now_ms))
}

/// The key list after adding `new_key` at `now_ms`: every previously active key now expires at
/// `now_ms + grace_ms` (or earlier, if it already expired sooner), keys already expired are
/// dropped, and `new_key` comes last. `grace_ms = 0` revokes the old keys at once.
pub fn rotate(
    keys: &[SigningKey],
    new_key: SigningKey,
    now_ms: i64,
    grace_ms: i64,
) -> Result<Vec<SigningKey>, RotationError> {
    if !(0..=MAX_GRACE_MS).contains(&grace_ms) {
        return Err(RotationError::BadGrace(grace_ms));
    }
    if keys.iter().any(|k| k.key_id == new_key.key_id) {
        return Err(RotationError::DuplicateKeyId(new_key.key_id));
    }
    let until = now_ms.saturating_add(grace_ms);
    let mut out: Vec<SigningKey> = active_at(keys, now_ms)
        .cloned()
        .map(|mut k| {
            k.expires_at = Some(k.expires_at.map_or(until, |exp| exp.min(until)));
            k
        })
        .collect();
    out.push(new_key);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, expires_at: Option<i64>) -> SigningKey {
        SigningKey {
            key_id: id.into(),
            scheme: "hmac-sha256".into(),
            sealed_secret: vec![1],
            public_key: None,
            created_at: 0,
            expires_at,
        }
    }

    fn ids<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Vec<&'a str> {
        keys.into_iter().map(|k| k.key_id.as_str()).collect()
    }

    #[test]
    fn old_keys_sign_through_the_grace_period_then_stop() {
        let now = 1_000_000;
        let keys = vec![key("a", None), key("gone", Some(now - 1)), key("soon", Some(now + 10))];
        let rotated = rotate(&keys, key("b", None), now, DEFAULT_GRACE_MS).unwrap();
        assert_eq!(ids(&rotated), ["a", "soon", "b"]);
        assert_eq!(rotated[0].expires_at, Some(now + DEFAULT_GRACE_MS));
        // A key already due to expire sooner keeps its earlier expiry.
        assert_eq!(rotated[1].expires_at, Some(now + 10));
        assert_eq!(rotated[2].expires_at, None);
        assert_eq!(ids(active_at(&rotated, now)), ["a", "soon", "b"]);
        assert_eq!(ids(active_at(&rotated, now + DEFAULT_GRACE_MS - 1)), ["a", "b"]);
        assert_eq!(ids(active_at(&rotated, now + DEFAULT_GRACE_MS)), ["b"]);
    }

    #[test]
    fn zero_grace_revokes_and_bad_input_is_refused() {
        let rotated = rotate(&[key("a", None)], key("b", None), 50, 0).unwrap();
        assert_eq!(ids(active_at(&rotated, 50)), ["b"]);
        assert_eq!(rotate(&[key("a", None)], key("a", None), 50, 0), Err(RotationError::DuplicateKeyId("a".into())));
        assert_eq!(rotate(&[], key("a", None), 50, -1), Err(RotationError::BadGrace(-1)));
        assert_eq!(ids(&rotate(&[], key("a", None), 50, 10).unwrap()), ["a"]);
    }
}
