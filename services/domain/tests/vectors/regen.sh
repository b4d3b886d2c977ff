#!/usr/bin/env bash
# Regenerates tests/vectors/generated.rs: signature test vectors made by implementations
# independent of ours, so CI checks interoperability without Python or OpenSSL.
#
#   - v1 (HMAC-SHA256): the `standardwebhooks` PyPI package (the reference Python library).
#   - v1h512 (HMAC-SHA512): Python's stdlib `hmac`.
#   - v1a (Ed25519): `cryptography` (OpenSSL-backed) signs, and the `openssl` CLI verifies.
#     Ed25519 is deterministic, so equality with our output is full cross-verification.
#   - v1rsa (PKCS#1 v1.5) and v1pss (PSS, salt 32): the `openssl` CLI with the committed
#     TEST-ONLY key rsa-test-key.pem (made once with `openssl genpkey -algorithm RSA
#     -pkeyopt rsa_keygen_bits:2048`). PKCS#1 v1.5 is deterministic; PSS is randomized, so the
#     vector is an OpenSSL signature our verifier must accept. The other direction (OpenSSL
#     accepting our PSS signature) is checked here, once, by running an ignored test that
#     prints one of ours.
#   - JWK `n`/`e` of that key, from `openssl pkey -text`.
#
# Usage: services/domain/tests/vectors/regen.sh   (needs python3 with venv, openssl, cargo)
# The venv lives outside the repository: ${VENV:-/tmp/hookline-vectors-venv}.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${VENV:-/tmp/hookline-vectors-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'standardwebhooks==1.1.0' 'cryptography>=42'
fi
if [ ! -f "$here/rsa-test-key.pem" ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$here/rsa-test-key.pem"
fi
openssl pkey -in "$here/rsa-test-key.pem" -pubout -out "$here/rsa-test-key.pub.pem"
"$venv/bin/python" "$here/regen.py" "$here" > "$here/generated.rs.tmp"
mv "$here/generated.rs.tmp" "$here/generated.rs"
echo "wrote $here/generated.rs"

# Our PSS signature, checked by OpenSSL.
line="$(cd "$here/../.." && cargo test -q -p hookline-domain --test vectors -- --ignored --nocapture emit_pss_for_openssl 2>/dev/null | grep '^PSS ')"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf '%s' "$(echo "$line" | cut -d' ' -f2)" | base64 -d > "$tmp/sig"
printf '%s' "$(echo "$line" | cut -d' ' -f3)" | base64 -d > "$tmp/content"
openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
    -verify "$here/rsa-test-key.pub.pem" -signature "$tmp/sig" "$tmp/content"
