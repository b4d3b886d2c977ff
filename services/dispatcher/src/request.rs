//! Building the HTTP request of one delivery: body, Standard Webhooks headers, custom headers.

use std::time::Duration;

use bytes::Bytes;
use hookline_domain::signing;
use hookline_outbound::OutboundRequest;
use hookline_schemas::{DeliveryRequested, EndpointUpserted};
use http::{HeaderName, HeaderValue};

/// Signature scheme handled here; other schemes are added by the signing work.
pub const SCHEME_HMAC_SHA256: &str = "hmac-sha256";

/// The request for `d` to `ep`, signed with every active key, at `now_s` (Unix seconds).
pub fn build(d: &DeliveryRequested, ep: &EndpointUpserted, now_ms: i64, max_timeout: Duration) -> OutboundRequest {
    let body = Bytes::from(d.payload.clone());
    let ts = now_ms / 1000;
    let signatures: Vec<String> = ep
        .signing_keys
        .iter()
        .filter(|k| k.expires_at.is_none_or(|exp| exp > now_ms))
        .filter(|k| k.scheme == SCHEME_HMAC_SHA256)
        .map(|k| signing::sign_v1(&k.sealed_secret, &d.message_id, ts, &body))
        .collect();
    let mut headers = Vec::with_capacity(4 + ep.headers.len());
    let mut push = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.push((HeaderName::from_static(name), v));
        }
    };
    push("content-type", &d.content_type);
    push(signing::HEADER_ID, &d.message_id);
    push(signing::HEADER_TIMESTAMP, &ts.to_string());
    push(signing::HEADER_SIGNATURE, &signatures.join(" "));
    push("user-agent", "Hookline/0.1");
    for (k, v) in &ep.headers {
        // Validated at write time; skip anything that would not be a valid header.
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.push((n, v));
        }
    }
    let timeout = Duration::from_millis(ep.timeout_ms.max(100) as u64).min(max_timeout);
    OutboundRequest { url: ep.url.clone(), headers, body, timeout }
}
