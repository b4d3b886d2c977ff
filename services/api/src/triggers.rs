//! Triggers: `POST /api/webhooks/trigger` (one event) and `POST /api/webhooks/trigger/batch`.
//! The answer (202 with the trigger id) is sent only after the broker acknowledged the
//! TriggerRequested record (acks=all, idempotent producer), or, for a trigger the API fans out
//! itself ([`crate::direct`]), acknowledged it and every one of its deliveries; a broker that
//! does not answer gives 503, never a silent loss.

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine;
use hookline_domain::subscriptions::validate_event_type;
use hookline_domain::{ids, time};
use hookline_schemas::{Envelope, Event, TriggerRequested};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use hookline_redis::idempotency::Claim;

use crate::AppState;
use crate::auth::Caller;
use crate::endpoints::TenantId;
use crate::extract::ApiJson;
use crate::problem::ApiProblem;

/// A batch body may be this many times the single-payload limit.
pub const BATCH_BODY_FACTOR: usize = 8;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;
pub const MAX_EXPLICIT_ENDPOINTS: usize = 100;
/// Largest encoded TriggerRequested the API writes: the producers' record limit (librdkafka's
/// `message.max.bytes`, 1,000,000 by default, which our producers keep) minus room for the
/// fields the router and dispatcher add when the same payload travels on as DeliveryRequested
/// and MovedToDLQ.
pub const MAX_TRIGGER_RECORD_BYTES: usize = 1_000_000 - 64 * 1024;

pub fn routes(max_payload: usize) -> OpenApiRouter<AppState> {
    // Room for the JSON envelope and base64's 4/3 inflation around the payload itself.
    let single = max_payload / 3 * 4 + 64 * 1024;
    OpenApiRouter::new()
        .routes(routes!(trigger).layer(DefaultBodyLimit::max(single)))
        .routes(routes!(batch).layer(DefaultBodyLimit::max(single * BATCH_BODY_FACTOR)))
}

/// One event to deliver to every subscribed endpoint of the tenant (or to `endpoint_ids`).
/// Give exactly one of `payload` and `payload_base64`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Trigger)]
pub struct TriggerIn {
    /// Admin tokens must name the tenant; tenant tokens may omit it (or name their own).
    #[schema(value_type = Option<TenantId>)]
    pub tenant_id: Option<String>,
    /// The event type endpoints subscribe to.
    #[schema(value_type = EventType)]
    pub event_type: String,
    /// A JSON payload, delivered byte-exact as sent.
    #[schema(value_type = Option<serde_json::Value>)]
    pub payload: Option<Box<RawValue>>,
    /// Or any bytes, base64-encoded (standard alphabet, padded), with `content_type`.
    #[schema(content_encoding = "base64")]
    pub payload_base64: Option<String>,
    /// Media type of the payload (default `application/json`, or `application/octet-stream`
    /// for `payload_base64`).
    #[schema(min_length = 1, max_length = 200)]
    pub content_type: Option<String>,
    /// A repeated key (per tenant, 24 h) returns the first trigger's id and creates nothing.
    #[schema(min_length = 1, max_length = 256)]
    pub idempotency_key: Option<String>,
    /// Deliver only to these endpoints of the tenant, whatever they subscribe to.
    #[schema(min_items = 1, max_items = 100)]
    pub endpoint_ids: Option<Vec<String>>,
}

/// Up to `api.max_batch_size` events, validated together: one bad event rejects the batch.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TriggerBatch)]
pub struct BatchIn {
    #[schema(min_items = 1)]
    pub events: Vec<TriggerIn>,
}

/// An event type: dot-separated segments of letters, digits and `_ - : /`.
#[derive(utoipa::ToSchema)]
#[schema(pattern = "^[A-Za-z0-9_:/-]+(\\.[A-Za-z0-9_:/-]+)*$", max_length = 200, example = "invoice.paid")]
#[allow(dead_code)]
pub struct EventType(String);

/// An accepted trigger.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TriggerAccepted)]
pub struct TriggerOut {
    pub trigger_id: String,
}

/// Accepted triggers, in the order of the request's events.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TriggerBatchAccepted)]
pub struct BatchOut {
    pub trigger_ids: Vec<String>,
}

/// Triggers one event; answered once the broker acknowledged it (acks=all).
#[utoipa::path(
    post,
    path = "/api/webhooks/trigger",
    operation_id = "trigger",
    tag = "triggers",
    request_body = TriggerIn,
    responses(
        (status = ACCEPTED, description = "Accepted: durable on the triggers topic (or, for a repeated \
                                           idempotency key, the first trigger's id)", body = TriggerOut,
            headers(("idempotent-replayed" = String, description = "`true` when this answer repeats an earlier trigger with the same idempotency key"))),
        (status = FORBIDDEN, description = "A tenant token named another tenant"),
        (status = CONFLICT, description = "A request with the same idempotency key is still being accepted; retry"),
        (status = PAYLOAD_TOO_LARGE, description = "The payload exceeds `api.max_payload_bytes`, or the event \
                                                    the event log's record limit"),
        (status = SERVICE_UNAVAILABLE, description = "The broker did not acknowledge; the trigger was not accepted \
                                                      (without an idempotency key, some of its endpoints may still \
                                                      receive it)"),
    )
)]
async fn trigger(
    State(state): State<AppState>,
    caller: Result<Caller, ApiProblem>,
    body: Result<ApiJson<TriggerIn>, ApiProblem>,
) -> Result<impl IntoResponse, ApiProblem> {
    count(
        async {
            let (caller, ApiJson(body)) = (caller?, body?);
            let record = to_record(&state, &caller, body, "")?;
            let bytes = encode(&state, &record, "")?;
            let (trigger_id, replayed) = publish_once(&state, &record, &bytes).await?;
            let mut headers = axum::http::HeaderMap::new();
            if replayed {
                headers.insert(IDEMPOTENT_REPLAYED, axum::http::HeaderValue::from_static("true"));
            }
            Ok(((StatusCode::ACCEPTED, headers, Json(TriggerOut { trigger_id })), 1))
        }
        .await,
    )
}

/// Counts a trigger request's result (accepted triggers, or the refusal's reason).
fn count<T>(result: Result<(T, usize), ApiProblem>) -> Result<T, ApiProblem> {
    use hookline_telemetry::{labels, metrics, names};
    match result {
        Ok((v, n)) => {
            metrics().triggers_accepted.get_or_create(&labels([(names::SOURCE, "api")])).inc_by(n as u64);
            Ok(v)
        }
        Err(p) => {
            let reason = match &p {
                ApiProblem::Invalid { .. } | ApiProblem::BadRequest(_) => "invalid",
                ApiProblem::Unauthorized | ApiProblem::Forbidden(_) => "unauthorized",
                ApiProblem::TooLarge(_) => "too_large",
                ApiProblem::Unavailable(_) => "unavailable",
                ApiProblem::Conflict(_) => "conflict",
                ApiProblem::NotFound(_) => "not_found",
                ApiProblem::Internal(_) => "internal",
            };
            metrics().triggers_rejected.get_or_create(&labels([(names::REASON, reason)])).inc();
            Err(p)
        }
    }
}

/// Triggers several events; all are validated before any is written.
#[utoipa::path(
    post,
    path = "/api/webhooks/trigger/batch",
    operation_id = "trigger_batch",
    tag = "triggers",
    request_body = BatchIn,
    responses(
        (status = ACCEPTED, description = "Accepted: every event is durable on the triggers topic", body = BatchOut),
        (status = FORBIDDEN, description = "A tenant token named another tenant"),
        (status = CONFLICT, description = "A request with the same idempotency key is still being accepted; retry"),
        (status = PAYLOAD_TOO_LARGE, description = "A payload exceeds `api.max_payload_bytes`, or an event \
                                                    the event log's record limit"),
        (status = SERVICE_UNAVAILABLE, description = "The broker did not acknowledge every event; retry the batch \
                                                      (idempotency keys make a retry safe; without one, an event may \
                                                      already reach some of its endpoints)"),
    )
)]
async fn batch(
    state: State<AppState>,
    caller: Result<Caller, ApiProblem>,
    body: Result<ApiJson<BatchIn>, ApiProblem>,
) -> Result<impl IntoResponse, ApiProblem> {
    count(async { batch_many(state, caller?, body?).await }.await)
}

async fn batch_many(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<BatchIn>,
) -> Result<(impl IntoResponse + use<>, usize), ApiProblem> {
    if body.events.is_empty() || body.events.len() > state.config.api.max_batch_size {
        return Err(ApiProblem::invalid(
            "events",
            format!("must hold 1 to {} events", state.config.api.max_batch_size),
        ));
    }
    // Validate everything before writing anything.
    let records = body
        .events
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let at = format!("events[{i}].");
            let record = to_record(&state, &caller, t, &at)?;
            let bytes = encode(&state, &record, &at)?;
            Ok::<_, ApiProblem>((record, bytes))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sends = records.iter().map(|(r, bytes)| async { publish_once(&state, r, bytes).await.map(|(id, _)| id) });
    let trigger_ids = futures::future::try_join_all(sends).await?;
    let n = trigger_ids.len();
    Ok(((StatusCode::ACCEPTED, Json(BatchOut { trigger_ids })), n))
}

fn to_record(state: &AppState, caller: &Caller, t: TriggerIn, at: &str) -> Result<TriggerRequested, ApiProblem> {
    let field = |f: &str| format!("{at}{f}");
    let tenant = caller.tenant_for_write(t.tenant_id.as_deref(), &field("tenant_id"))?;
    validate_event_type(&t.event_type).map_err(|r| ApiProblem::invalid(field("event_type"), r))?;
    let (payload, content_type) = match (t.payload, t.payload_base64) {
        (Some(json), None) => {
            let ct = t.content_type.unwrap_or_else(|| "application/json".into());
            (json.get().as_bytes().to_vec(), ct)
        }
        (None, Some(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|_| ApiProblem::invalid(field("payload_base64"), "is not valid base64"))?;
            (bytes, t.content_type.unwrap_or_else(|| "application/octet-stream".into()))
        }
        (Some(_), Some(_)) => {
            return Err(ApiProblem::invalid(field("payload"), "give either payload or payload_base64, not both"));
        }
        (None, None) => return Err(ApiProblem::invalid(field("payload"), "is required (or payload_base64)")),
    };
    let limit = state.config.api.max_payload_bytes;
    if payload.len() > limit {
        return Err(ApiProblem::TooLarge(format!(
            "{}: {} bytes exceeds the limit of {limit} bytes",
            field("payload"),
            payload.len()
        )));
    }
    if content_type.is_empty() || content_type.len() > 200 || axum::http::HeaderValue::from_str(&content_type).is_err()
    {
        return Err(ApiProblem::invalid(field("content_type"), "must be a valid media type of at most 200 characters"));
    }
    if let Some(k) = &t.idempotency_key
        && (k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN)
    {
        return Err(ApiProblem::invalid(field("idempotency_key"), "must be 1 to 256 characters"));
    }
    if let Some(ids) = &t.endpoint_ids {
        if ids.is_empty() || ids.len() > MAX_EXPLICIT_ENDPOINTS {
            return Err(ApiProblem::invalid(field("endpoint_ids"), "must list 1 to 100 endpoint ids"));
        }
        for (i, id) in ids.iter().enumerate() {
            let visible = state.catalog.get(id).is_some_and(|e| e.envelope.tenant_id == tenant);
            if !visible {
                return Err(ApiProblem::invalid(field(&format!("endpoint_ids[{i}]")), "no such endpoint"));
            }
        }
    }
    let now = time::now_ms();
    let trigger_id = format!("trg_{}", uuid::Uuid::now_v7().simple());
    Ok(TriggerRequested {
        envelope: Envelope {
            event_id: ids::new_event_id(),
            record_type: TriggerRequested::NAME.into(),
            occurred_at: now,
            tenant_id: tenant,
            trigger_id: Some(trigger_id.clone()),
            correlation_id: Some(trigger_id),
            ..Default::default()
        },
        event_type: t.event_type,
        payload,
        content_type,
        idempotency_key: t.idempotency_key,
        endpoint_ids: t.endpoint_ids,
        source: "api".into(),
    })
}

/// The encoded record, refused with 413 when the event log could not take it. Without this
/// check a record over the producer's limit came back from the broker client as an error and was
/// answered 503 "try again", which can never succeed.
fn encode(state: &AppState, record: &TriggerRequested, at: &str) -> Result<Vec<u8>, ApiProblem> {
    let bytes = state.codec.encode(record).map_err(ApiProblem::internal)?;
    if bytes.len() > MAX_TRIGGER_RECORD_BYTES {
        return Err(ApiProblem::TooLarge(format!(
            "{at}payload: the event ({} bytes encoded) exceeds the event log's limit of {MAX_TRIGGER_RECORD_BYTES} bytes",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Set on a trigger answer that repeats an earlier trigger with the same idempotency key.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// Longest a request waits for a concurrent identical request (same idempotency key) to finish.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Publishes `record` unless its idempotency key was used inside the window; answers the
/// trigger id (the first one's for a repeat) and whether it is a repeat.
///
/// The key is claimed in Redis (`SET NX`) before publishing and released if the log refuses the
/// record. When Redis cannot be reached the trigger is published anyway: the router's log-based
/// dedupe still keeps a repeat from fanning out (see `hookline_router::dedupe`).
#[tracing::instrument(name = "accept_trigger", skip_all, fields(trigger_id = record.envelope.trigger_id.as_deref(), tenant_id = record.envelope.tenant_id.as_str()))]
async fn publish_once(state: &AppState, record: &TriggerRequested, bytes: &[u8]) -> Result<(String, bool), ApiProblem> {
    let (Some(key), Some(store)) = (record.idempotency_key.as_deref(), state.redis.get()) else {
        return publish(state, record, bytes).await.map(|id| (id, false));
    };
    let tenant = record.envelope.tenant_id.as_str();
    let id = record.envelope.trigger_id.clone().unwrap_or_default();
    let window = state.config.flow.idempotency_window_ms;
    let timeout = std::time::Duration::from_millis(state.config.flow.redis_timeout_ms);
    let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
    loop {
        let claim = match tokio::time::timeout(timeout, store.claim(tenant, key, &id, window)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "idempotency claim failed; publishing (the router dedupes)");
                return publish(state, record, bytes).await.map(|id| (id, false));
            }
            Err(_) => {
                tracing::warn!("idempotency claim timed out; publishing (the router dedupes)");
                return publish(state, record, bytes).await.map(|id| (id, false));
            }
        };
        match claim {
            Claim::Won => {
                return match publish(state, record, bytes).await {
                    Ok(id) => {
                        if let Err(e) = store.confirm_claim(tenant, key, &id).await {
                            tracing::warn!(error = %e, "cannot mark the idempotency claim done");
                        }
                        Ok((id, false))
                    }
                    Err(p) => {
                        if let Err(e) = store.release_claim(tenant, key, &id).await {
                            tracing::warn!(error = %e, "cannot release the idempotency claim");
                        }
                        Err(p)
                    }
                };
            }
            Claim::Taken { trigger_id, done: true } => return Ok((trigger_id, true)),
            // Another request with this key is publishing: wait for its outcome (it either
            // confirms, or releases the key and this request claims it on the next turn).
            Claim::Taken { .. } if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Claim::Taken { .. } => {
                return Err(ApiProblem::Conflict(
                    "a request with this idempotency key is still being accepted; retry shortly".into(),
                ));
            }
        }
    }
}

async fn publish(state: &AppState, record: &TriggerRequested, bytes: &[u8]) -> Result<String, ApiProblem> {
    if let Some(direct) = state.direct.as_ref().filter(|d| d.admit())
        && let Some(plan) = crate::direct::plan(&state.catalog, &state.codec, &state.topics, record, bytes.len())
    {
        let key = record.envelope.tenant_id.as_bytes();
        match direct.publish(&state.topics.triggers, key, bytes, plan).await {
            Ok(()) => return Ok(record.envelope.trigger_id.clone().unwrap_or_default()),
            // Nothing written: the router fans it out instead.
            Err(crate::direct::DirectError::NoProducer(_)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "trigger and its deliveries not all acknowledged");
                return Err(ApiProblem::Unavailable(
                    "the event log did not acknowledge all of the trigger's records; it was not accepted (some endpoints may still receive it), try again",
                ));
            }
        }
    }
    state.producer.send(&state.topics.triggers, record.envelope.tenant_id.as_bytes(), bytes).await.map_err(|e| {
        tracing::warn!(error = %e, "trigger not acknowledged by the broker");
        ApiProblem::Unavailable("the event log did not acknowledge the trigger; it was not accepted, try again")
    })?;
    Ok(record.envelope.trigger_id.clone().unwrap_or_default())
}
