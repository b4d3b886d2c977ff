//! Interoperability: our signatures against vectors made by independent implementations (the
//! `standardwebhooks` Python library, Python's `cryptography` and stdlib `hmac`, the `openssl`
//! CLI). Regenerate with `tests/vectors/regen.sh`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hookline_domain::signing::{self, KeyMaterial, Scheme, VerifyKey, jwks};

mod generated {
    include!("vectors/generated.rs");
}
use generated::*;

const RSA_KEY: &str = include_str!("vectors/rsa-test-key.pem");
const RSA_PUB: &str = include_str!("vectors/rsa-test-key.pub.pem");

fn message(i: usize) -> (&'static str, i64, &'static [u8]) {
    let (id, ts, body) = MESSAGES[i];
    (id, ts, body.as_bytes())
}

#[test]
fn v1_matches_the_reference_library() {
    for &(secret, i, expected) in V1 {
        let (id, ts, body) = message(i);
        let key = KeyMaterial::parse(Scheme::HmacSha256, secret).unwrap();
        assert_eq!(key.sign(id, ts, body).unwrap(), expected, "{secret} / {id}");
        let v = VerifyKey::parse(Scheme::HmacSha256, secret).unwrap();
        assert_eq!(v.verify_header(id, ts, body, expected, ts, 300), Ok(()));
    }
}

#[test]
fn v1h512_matches_stdlib_hmac() {
    for &(secret, i, expected) in V1H512 {
        let (id, ts, body) = message(i);
        let key = KeyMaterial::parse(Scheme::HmacSha512, secret).unwrap();
        assert_eq!(key.sign(id, ts, body).unwrap(), expected);
    }
}

/// Ed25519 is deterministic: equal output means any verifier that accepts the reference
/// signature (OpenSSL did, when the vectors were made) accepts ours. The first seed is the
/// reference Go library's test key; its first vector is the one in that library's tests.
#[test]
fn v1a_matches_cryptography_and_the_reference_go_vector() {
    assert_eq!(
        V1A[0].3,
        "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
    );
    for &(secret, public, i, expected) in V1A {
        let (id, ts, body) = message(i);
        let key = KeyMaterial::parse(Scheme::Ed25519, secret).unwrap();
        assert_eq!(key.public_key().as_deref(), Some(public));
        assert_eq!(key.sign(id, ts, body).unwrap(), expected);
        let v = VerifyKey::parse(Scheme::Ed25519, public).unwrap();
        assert_eq!(v.verify_header(id, ts, body, expected, ts, 300), Ok(()));
    }
}

#[test]
fn rsa_matches_openssl() {
    let pkcs1 = KeyMaterial::parse(Scheme::RsaPkcs1v15Sha256, RSA_KEY).unwrap();
    let pss = KeyMaterial::parse(Scheme::RsaPssSha256, RSA_KEY).unwrap();
    assert_eq!(pkcs1.public_key().unwrap().trim(), RSA_PUB.trim());
    let v_pkcs1 = VerifyKey::parse(Scheme::RsaPkcs1v15Sha256, RSA_PUB).unwrap();
    let v_pss = VerifyKey::parse(Scheme::RsaPssSha256, RSA_PUB).unwrap();
    for &(i, expected_pkcs1, openssl_pss) in RSA {
        let (id, ts, body) = message(i);
        // PKCS#1 v1.5 is deterministic.
        assert_eq!(pkcs1.sign(id, ts, body).unwrap(), expected_pkcs1);
        assert_eq!(v_pkcs1.verify_header(id, ts, body, expected_pkcs1, ts, 0), Ok(()));
        // PSS is randomized: OpenSSL's signature verifies with us, ours verify with us, and a
        // PSS signature is never accepted as PKCS#1 v1.5 (tags keep them apart anyway).
        assert_eq!(v_pss.verify_header(id, ts, body, openssl_pss, ts, 0), Ok(()));
        let ours = pss.sign(id, ts, body).unwrap();
        assert_ne!(ours, openssl_pss);
        assert_eq!(v_pss.verify_header(id, ts, body, &ours, ts, 0), Ok(()));
        let relabelled = openssl_pss.replacen("v1pss", "v1rsa", 1);
        assert!(v_pkcs1.verify_header(id, ts, body, &relabelled, ts, 0).is_err());
    }
}

#[test]
fn jwk_of_rsa_key_matches_openssl() {
    let j = jwks::jwk("k1", Scheme::RsaPssSha256, RSA_PUB).unwrap().unwrap();
    assert_eq!(j["kty"], "RSA");
    assert_eq!(j["n"], RSA_JWK_N);
    assert_eq!(j["e"], RSA_JWK_E);
    assert_eq!(j["alg"], "PS256");
    let j = jwks::jwk("k1", Scheme::RsaPkcs1v15Sha256, RSA_PUB).unwrap().unwrap();
    assert_eq!(j["alg"], "RS256");
    let (_, public, _, _) = V1A[1];
    let j = jwks::jwk("k2", Scheme::Ed25519, public).unwrap().unwrap();
    assert_eq!(j["crv"], "Ed25519");
    // x is base64url without padding of the same 32 bytes as whpk_.
    let raw = B64.decode(public.strip_prefix("whpk_").unwrap()).unwrap();
    assert_eq!(j["x"], base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
}

/// Prints one of our PSS signatures for `regen.sh` to check with OpenSSL.
#[test]
#[ignore = "run by tests/vectors/regen.sh"]
fn emit_pss_for_openssl() {
    let (id, ts, body) = message(2);
    let entry = KeyMaterial::parse(Scheme::RsaPssSha256, RSA_KEY).unwrap().sign(id, ts, body).unwrap();
    let content = [format!("{id}.{ts}.").as_bytes(), body].concat();
    println!("PSS {} {}", entry.strip_prefix("v1pss,").unwrap(), B64.encode(content));
}

#[test]
fn legacy_helpers_agree_with_vectors() {
    let (secret, i, expected) = V1[1];
    let (id, ts, body) = message(i);
    let raw = signing::decode_secret(secret).unwrap();
    assert_eq!(signing::sign_v1(&raw, id, ts, body), expected);
}
