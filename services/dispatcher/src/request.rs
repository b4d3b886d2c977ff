//! Building the HTTP request of one delivery: transformation, Standard Webhooks headers with
//! every active key's signature, custom headers.
//!
//! Opening sealed keys and compiling templates is done once per endpoint config version
//! ([`Prepared`], cached by the dispatcher). RSA signatures cost milliseconds of CPU, so a
//! request signed by an RSA key is signed on the blocking pool, never on the async executor.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookline_domain::sealing::MasterKeys;
use hookline_domain::signing::{self, KeyMaterial, Scheme, rotation, stored};
use hookline_domain::transform::{CompiledTemplate, RenderContext, TemplateEngine};
use hookline_outbound::OutboundRequest;
use hookline_schemas::{DeliveryRequested, EndpointUpserted};
use http::{HeaderName, HeaderValue};

/// An endpoint's keys opened and its template compiled, for one config version.
pub struct Prepared {
    pub version: i64,
    /// (expires_at, key) of every stored key.
    keys: Vec<(Option<i64>, KeyMaterial)>,
    template: Option<CompiledTemplate>,
    has_rsa: bool,
}

impl Prepared {
    /// Opens every key and compiles the template. An error is permanent for the deliveries of
    /// this config version (e.g. a master key that cannot open the secrets).
    pub fn new(ep: &EndpointUpserted, master: &MasterKeys, engine: &TemplateEngine) -> Result<Self, String> {
        let mut keys = Vec::with_capacity(ep.signing_keys.len());
        for k in &ep.signing_keys {
            let material = stored::open(master, k).map_err(|e| format!("cannot open signing key {}: {e}", k.key_id))?;
            keys.push((k.expires_at, material));
        }
        let has_rsa = keys.iter().any(|(_, k)| matches!(k.scheme(), Scheme::RsaPkcs1v15Sha256 | Scheme::RsaPssSha256));
        let template = match &ep.template {
            Some(t) => Some(engine.compile(t).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(Self { version: ep.version, keys, template, has_rsa })
    }

    fn signature(&self, msg_id: &str, ts_s: i64, now_ms: i64, body: &[u8]) -> Result<String, String> {
        let active = self.keys.iter().filter(|(exp, _)| exp.is_none_or(|e| e > now_ms)).map(|(_, k)| k);
        signing::signature_header(active, msg_id, ts_s, body).map_err(|e| e.to_string())
    }
}

/// Why a request could not be built: permanent for this delivery.
#[derive(Debug)]
pub struct BuildError {
    pub kind: &'static str,
    pub message: String,
}

/// The request for `d` to `ep`, transformed and signed with every active key at `now_ms`.
pub async fn build(
    d: &DeliveryRequested,
    ep: &EndpointUpserted,
    prepared: Arc<Prepared>,
    now_ms: i64,
    max_timeout: Duration,
) -> Result<OutboundRequest, BuildError> {
    let (body, content_type, extra) = render(d, &prepared)?;
    finish(&d.message_id, body, &content_type, extra, ep, prepared, now_ms, max_timeout).await
}

/// Header carrying the number of messages in a batch request.
pub const HEADER_BATCH_SIZE: &str = "webhook-batch-size";

/// One request carrying every message of `ds` that renders: a JSON array of
/// `{"id", "type", "timestamp", "data"}` (`data_base64` for a body that is not JSON), signed once
/// under a batch id. Answers the request (none when no message rendered) and the index and
/// error of each message that did not render (permanent for that message alone).
pub async fn build_batch(
    ds: &[&DeliveryRequested],
    ep: &EndpointUpserted,
    prepared: Arc<Prepared>,
    now_ms: i64,
    max_timeout: Duration,
) -> (Option<OutboundRequest>, Vec<(usize, BuildError)>) {
    let mut failed = Vec::new();
    let mut body = Vec::with_capacity(ds.iter().map(|d| d.payload.len() + 160).sum::<usize>() + 2);
    body.push(b'[');
    let mut members = 0;
    for (i, d) in ds.iter().enumerate() {
        let (data, content_type, _) = match render(d, &prepared) {
            Ok(r) => r,
            Err(e) => {
                failed.push((i, e));
                continue;
            }
        };
        if members > 0 {
            body.push(b',');
        }
        members += 1;
        body.extend_from_slice(b"{\"id\":");
        body.extend_from_slice(&json_string(&d.message_id));
        body.extend_from_slice(b",\"type\":");
        body.extend_from_slice(&json_string(&d.event_type));
        body.extend_from_slice(b",\"timestamp\":");
        body.extend_from_slice(&json_string(&hookline_domain::transform::date::rfc3339(d.trigger_occurred_at)));
        let is_json = content_type.split(';').next().is_some_and(|m| m.trim().ends_with("json"))
            && serde_json::from_slice::<&serde_json::value::RawValue>(&data).is_ok();
        if is_json {
            body.extend_from_slice(b",\"data\":");
            body.extend_from_slice(&data);
        } else {
            use base64::Engine;
            body.extend_from_slice(b",\"content_type\":");
            body.extend_from_slice(&json_string(&content_type));
            body.extend_from_slice(b",\"data_base64\":");
            body.extend_from_slice(&json_string(&base64::engine::general_purpose::STANDARD.encode(&data)));
        }
        body.push(b'}');
    }
    body.push(b']');
    if members == 0 {
        return (None, failed);
    }
    let batch_id = format!("batch_{}", uuid::Uuid::now_v7().simple());
    let extra = vec![(HEADER_BATCH_SIZE.to_string(), members.to_string())];
    let req = finish(&batch_id, Bytes::from(body), "application/json", extra, ep, prepared, now_ms, max_timeout).await;
    match req {
        Ok(r) => (Some(r), failed),
        // Signing failed: every member fails the same way.
        Err(e) => {
            let all = (0..ds.len()).filter(|i| !failed.iter().any(|(f, _)| f == i)).collect::<Vec<_>>();
            failed.extend(all.into_iter().map(|i| (i, BuildError { kind: e.kind, message: e.message.clone() })));
            (None, failed)
        }
    }
}

fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_else(|_| b"\"\"".to_vec())
}

type Rendered = (Bytes, String, Vec<(String, String)>);

/// The body, content type and template headers of `d`.
fn render(d: &DeliveryRequested, prepared: &Prepared) -> Result<Rendered, BuildError> {
    Ok(match &prepared.template {
        None => (Bytes::from(d.payload.clone()), d.content_type.clone(), Vec::new()),
        Some(t) => {
            let delivery_id = d.envelope.delivery_id.as_deref().unwrap_or_default();
            let r = t
                .render(&RenderContext {
                    payload: &d.payload,
                    payload_content_type: &d.content_type,
                    event_type: &d.event_type,
                    message_id: &d.message_id,
                    delivery_id,
                    endpoint_id: d.envelope.endpoint_id.as_deref().unwrap_or_default(),
                    tenant_id: &d.envelope.tenant_id,
                    attempt: d.envelope.attempt.unwrap_or(1).max(1) as u32,
                    timestamp_ms: d.trigger_occurred_at,
                })
                .map_err(|e| BuildError { kind: "template", message: e.to_string() })?;
            (Bytes::from(r.body), r.content_type, r.headers)
        }
    })
}

/// Signs `body` under `id` and assembles the request.
#[allow(clippy::too_many_arguments)]
async fn finish(
    id: &str,
    body: Bytes,
    content_type: &str,
    extra: Vec<(String, String)>,
    ep: &EndpointUpserted,
    prepared: Arc<Prepared>,
    now_ms: i64,
    max_timeout: Duration,
) -> Result<OutboundRequest, BuildError> {
    let ts = now_ms / 1000;
    let signature = if prepared.has_rsa {
        let (p, id, b) = (prepared.clone(), id.to_string(), body.clone());
        tokio::task::spawn_blocking(move || p.signature(&id, ts, now_ms, &b))
            .await
            .map_err(|e| BuildError { kind: "signing", message: e.to_string() })?
    } else {
        prepared.signature(id, ts, now_ms, &body)
    }
    .map_err(|message| BuildError { kind: "signing", message })?;

    let mut headers = Vec::with_capacity(5 + ep.headers.len() + extra.len());
    let mut push = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.push((HeaderName::from_static(name), v));
        }
    };
    push("content-type", content_type);
    push(signing::HEADER_ID, id);
    push(signing::HEADER_TIMESTAMP, &ts.to_string());
    push(signing::HEADER_SIGNATURE, &signature);
    push("user-agent", "Hookline/0.1");
    for (k, v) in ep
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        // Validated at write time; skip anything that would not be a valid header.
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.push((n, v));
        }
    }
    let timeout = Duration::from_millis(ep.timeout_ms.max(100) as u64).min(max_timeout);
    Ok(OutboundRequest { url: ep.url.clone(), headers, body, timeout })
}

/// Checks that `master` opens every stored key of `endpoints`; the error names the first that
/// does not (a wrong or missing master key must stop the dispatcher, not fail every delivery).
pub fn check_master_keys<'a>(
    endpoints: impl IntoIterator<Item = &'a EndpointUpserted>,
    master: &MasterKeys,
) -> Result<usize, String> {
    let mut n = 0;
    for ep in endpoints {
        for k in ep.signing_keys.iter().filter(|k| rotation::is_active(k, hookline_domain::time::now_ms())) {
            hookline_domain::sealing::open(master, &k.sealed_secret).map_err(|e| {
                format!(
                    "secrets.master_keys cannot open the signing key {} of endpoint {}: {e}",
                    k.key_id,
                    ep.envelope.endpoint_id.as_deref().unwrap_or_default()
                )
            })?;
            n += 1;
        }
    }
    Ok(n)
}
