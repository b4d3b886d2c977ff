//! Endpoint configuration: create, get, list, update, delete. Each change is one record on the
//! compacted endpoints topic (the source of truth); the answer waits for the broker's ack.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hookline_domain::endpoint::{self, Limits};
use hookline_domain::signing::{self, Scheme, stored};
use hookline_domain::{ids, time};
use hookline_schemas::{
    BatchPolicy, EndpointDeleted, EndpointUpserted, Envelope, Event, RateLimit, SigningKey, Template,
};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::extract::{ApiJson, ApiPath};
use crate::problem::ApiProblem;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(get_one, update, delete))
}

/// Body of create and update.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EndpointConfig)]
pub struct EndpointIn {
    /// Admin tokens must name the tenant; tenant tokens may omit it (or name their own).
    #[schema(value_type = Option<TenantId>)]
    pub tenant_id: Option<String>,
    /// Where deliveries are POSTed (http or https, no credentials in the URL).
    #[schema(example = "https://example.com/webhooks", pattern = "^https?://", max_length = 2048)]
    pub url: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: String,
    /// Event types this endpoint subscribes to: exact types, `prefix.*`, or `*`.
    #[schema(value_type = Vec<EventTypePattern>, min_items = 1, max_items = 100)]
    pub event_types: Vec<String>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub enabled: bool,
    /// Extra headers sent with every delivery.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one delivery attempt, in milliseconds (default `dispatcher.default_timeout_ms`,
    /// at most `dispatcher.max_timeout_ms`).
    #[schema(minimum = 100)]
    pub timeout_ms: Option<i32>,
    /// Delays before each attempt, in milliseconds, each at most 7 days (default: the server's
    /// retry schedule).
    #[schema(value_type = Option<Vec<RetryDelayMs>>, min_items = 1, max_items = 50)]
    pub retry_schedule_ms: Option<Vec<i64>>,
    pub rate_limit: Option<RateLimitIn>,
    pub batch: Option<BatchIn>,
    /// Deliver one message at a time, in log order.
    #[serde(default)]
    pub ordered: bool,
    pub template: Option<TemplateIn>,
    /// Signature scheme of the key (create only; rotation may change it). Default hmac-sha256.
    #[schema(value_type = Option<SigningSchemeDoc>)]
    pub signing_scheme: Option<String>,
    /// The secret to sign with (`whsec_…`, `whsk_…` or an RSA PKCS#8 PEM); generated when
    /// absent (create only).
    pub secret: Option<String>,
}

/// A tenant id.
#[derive(utoipa::ToSchema)]
#[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$", example = "acme")]
#[allow(dead_code)]
pub struct TenantId(String);

/// An event type (`invoice.paid`), a prefix pattern (`invoice.*`) or `*`: dot-separated
/// segments of letters, digits and `_ - : /`.
#[derive(utoipa::ToSchema)]
#[schema(pattern = "^(\\*|[A-Za-z0-9_:/-]+(\\.[A-Za-z0-9_:/-]+)*(\\.\\*)?)$", max_length = 200, example = "invoice.*")]
#[allow(dead_code)]
pub struct EventTypePattern(String);

/// A delay in milliseconds, at most 7 days.
#[derive(utoipa::ToSchema)]
#[schema(minimum = 0, maximum = 604_800_000_i64)]
#[allow(dead_code)]
pub struct RetryDelayMs(i64);

// Documents the names `Scheme` parses; a test in `openapi.rs` checks they agree.
/// A signature scheme and the version tag its signatures carry: `hmac-sha256` → `v1`,
/// `ed25519` → `v1a`, `hmac-sha512` → `v1h512`, `rsa-pkcs1v15-sha256` → `v1rsa`,
/// `rsa-pss-sha256` → `v1pss`.
#[derive(utoipa::ToSchema)]
#[schema(as = SigningScheme, rename_all = "kebab-case")]
#[allow(dead_code)]
pub enum SigningSchemeDoc {
    HmacSha256,
    Ed25519,
    HmacSha512,
    RsaPkcs1v15Sha256,
    RsaPssSha256,
}

fn yes() -> bool {
    true
}

/// A token bucket per endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RateLimit)]
pub struct RateLimitIn {
    /// Sustained deliveries per second.
    #[schema(exclusive_minimum = 0, maximum = 100_000)]
    pub per_second: f64,
    /// Deliveries allowed in a burst.
    #[schema(minimum = 1, maximum = 100_000)]
    pub burst: i32,
}

/// Batch delivery: several messages in one signed request.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BatchPolicy)]
pub struct BatchIn {
    /// Most messages in one request.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_size: i32,
    /// Longest a message waits for others, in milliseconds.
    #[schema(minimum = 1, maximum = 60_000)]
    pub max_wait_ms: i32,
}

/// An `upon` template that turns the event into the body (and extra headers) sent.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Template)]
pub struct TemplateIn {
    #[schema(example = "{\"kind\": {{ event_type | json }}}", max_length = 65536)]
    pub body: String,
    /// Header templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "json_type")]
    #[schema(default = "application/json", min_length = 1, max_length = 200)]
    pub content_type: String,
}

fn json_type() -> String {
    "application/json".into()
}

/// An endpoint as the API shows it: no secrets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Endpoint)]
pub struct EndpointOut {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub version: i64,
    pub headers: BTreeMap<String, String>,
    pub timeout_ms: i32,
    pub retry_schedule_ms: Option<Vec<i64>>,
    pub rate_limit: Option<RateLimitIn>,
    pub batch: Option<BatchIn>,
    pub ordered: bool,
    pub template: Option<TemplateIn>,
    pub signing_keys: Vec<KeyOut>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Only in the answers to create and key rotation: the new signing secret, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The scheme a request names (default hmac-sha256).
pub fn parse_scheme(s: Option<&str>, field: &str) -> Result<Scheme, ApiProblem> {
    match s {
        None => Ok(Scheme::HmacSha256),
        Some(name) => name.parse::<Scheme>().map_err(|_| {
            let all: Vec<_> = Scheme::ALL.iter().map(|s| s.as_str()).collect();
            ApiProblem::invalid(field, format!("must be one of {}", all.join(", ")))
        }),
    }
}

/// A new sealed key for `scheme`: the given secret (validated) or a generated one. Returns the
/// key and the secret to show once.
pub fn new_key(
    state: &AppState,
    scheme: Scheme,
    secret: Option<String>,
    now: i64,
) -> Result<(SigningKey, String), ApiProblem> {
    let secret = match secret {
        Some(s) => s,
        None => signing::generate(scheme).map_err(ApiProblem::internal)?.secret.to_string(),
    };
    let key_id = format!("key_{}", uuid::Uuid::now_v7().simple());
    let key = stored::seal_new_key(&state.master_keys, key_id, scheme, &secret, now)
        .map_err(|e| ApiProblem::invalid("secret", e.to_string()))?;
    Ok((key, secret))
}

/// A signing key, without its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SigningKey)]
pub struct KeyOut {
    pub key_id: String,
    #[schema(value_type = SigningSchemeDoc)]
    pub scheme: String,
    /// The public key of an asymmetric scheme (`whpk_…` or a PEM).
    pub public_key: Option<String>,
    pub created_at: i64,
    /// When a rotated-out key stops signing.
    pub expires_at: Option<i64>,
}

impl From<&EndpointUpserted> for EndpointOut {
    fn from(e: &EndpointUpserted) -> Self {
        EndpointOut {
            id: e.envelope.endpoint_id.clone().unwrap_or_default(),
            tenant_id: e.envelope.tenant_id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            event_types: e.event_types.clone(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            version: e.version,
            headers: e.headers.clone(),
            timeout_ms: e.timeout_ms,
            retry_schedule_ms: e.retry_schedule_ms.clone(),
            rate_limit: e.rate_limit.as_ref().map(|r| RateLimitIn { per_second: r.per_second, burst: r.burst }),
            batch: e.batch.as_ref().map(|b| BatchIn { max_size: b.max_size, max_wait_ms: b.max_wait_ms }),
            ordered: e.ordered,
            template: e.template.as_ref().map(|t| TemplateIn {
                body: t.body.clone(),
                headers: t.headers.clone(),
                content_type: t.content_type.clone(),
            }),
            signing_keys: e
                .signing_keys
                .iter()
                .map(|k| KeyOut {
                    key_id: k.key_id.clone(),
                    scheme: k.scheme.clone(),
                    public_key: k.public_key.clone(),
                    created_at: k.created_at,
                    expires_at: k.expires_at,
                })
                .collect(),
            created_at: e.created_at,
            updated_at: e.envelope.occurred_at,
            secret: None,
        }
    }
}

fn limits(state: &AppState) -> Limits {
    Limits { max_timeout_ms: state.config.dispatcher.max_timeout_ms }
}

/// Applies a request body to an endpoint record and validates the result.
fn apply_body(state: &AppState, e: &mut EndpointUpserted, body: EndpointIn) -> Result<(), ApiProblem> {
    e.url = body.url;
    e.description = body.description;
    e.event_types = body.event_types;
    e.enabled = body.enabled;
    if body.enabled {
        e.disabled_reason = None;
    }
    e.headers = body.headers;
    e.timeout_ms = body.timeout_ms.unwrap_or(state.config.dispatcher.default_timeout_ms as i32);
    e.retry_schedule_ms = body.retry_schedule_ms;
    e.rate_limit = body.rate_limit.map(|r| RateLimit { per_second: r.per_second, burst: r.burst });
    e.batch = body.batch.map(|b| BatchPolicy { max_size: b.max_size, max_wait_ms: b.max_wait_ms });
    e.ordered = body.ordered;
    e.template = body.template.map(|t| Template { body: t.body, headers: t.headers, content_type: t.content_type });
    endpoint::validate(e, &limits(state)).map_err(|f| ApiProblem::invalid(f.field, f.reason))
}

/// Creates an endpoint with a new signing key; the answer shows the secret once.
#[utoipa::path(
    post,
    path = "/api/endpoints",
    operation_id = "create_endpoint",
    tag = "endpoints",
    request_body = EndpointIn,
    responses(
        (status = CREATED, description = "Created; `secret` is shown this once", body = EndpointOut),
        (status = FORBIDDEN, description = "A tenant token named another tenant"),
        (status = SERVICE_UNAVAILABLE, description = "The event log did not acknowledge; nothing was created"),
    )
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(mut body): ApiJson<EndpointIn>,
) -> Result<impl IntoResponse, ApiProblem> {
    let tenant = caller.tenant_for_write(body.tenant_id.as_deref(), "tenant_id")?;
    let scheme = parse_scheme(body.signing_scheme.as_deref(), "signing_scheme")?;
    let now = time::now_ms();
    let (key, secret) = new_key(&state, scheme, body.secret.take(), now)?;
    let id = format!("ep_{}", uuid::Uuid::now_v7().simple());
    let mut e = EndpointUpserted {
        envelope: envelope::<EndpointUpserted>(&tenant, &id, now),
        url: String::new(),
        description: String::new(),
        event_types: vec![],
        enabled: true,
        version: 1,
        headers: BTreeMap::new(),
        timeout_ms: 0,
        retry_schedule_ms: None,
        rate_limit: None,
        batch: None,
        ordered: false,
        template: None,
        signing_keys: vec![key],
        disabled_reason: None,
        created_at: now,
    };
    apply_body(&state, &mut e, body)?;
    write(&state, &id, &e).await?;
    state.catalog.apply(e.clone().into());
    let mut out = EndpointOut::from(&e);
    out.secret = Some(secret);
    tracing::info!(endpoint_id = id, actor = caller.name, "endpoint created");
    Ok((StatusCode::CREATED, Json(out)))
}

/// Replaces an endpoint's configuration (keys are changed by rotation, not here).
#[utoipa::path(
    put,
    path = "/api/endpoints/{id}",
    operation_id = "update_endpoint",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body = EndpointIn,
    responses(
        (status = OK, description = "Updated", body = EndpointOut),
        (status = NOT_FOUND, description = "No such endpoint (or not this tenant's)"),
        (status = SERVICE_UNAVAILABLE, description = "The event log did not acknowledge; nothing changed"),
    )
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EndpointIn>,
) -> Result<impl IntoResponse, ApiProblem> {
    if body.secret.is_some() || body.signing_scheme.is_some() {
        return Err(ApiProblem::invalid("secret", "keys cannot be changed by update; rotate them instead"));
    }
    let current = visible(&state, &caller, &id)?;
    if body.tenant_id.as_deref().is_some_and(|t| t != current.envelope.tenant_id) {
        return Err(ApiProblem::invalid("tenant_id", "an endpoint cannot move to another tenant"));
    }
    let mut e = (*current).clone();
    e.envelope = envelope::<EndpointUpserted>(&current.envelope.tenant_id, &id, time::now_ms());
    e.version = current.version + 1;
    apply_body(&state, &mut e, body)?;
    write(&state, &id, &e).await?;
    state.catalog.apply(e.clone().into());
    Ok(Json(EndpointOut::from(&e)))
}

/// Deletes an endpoint; deliveries still pending for it go to the DLQ.
#[utoipa::path(
    delete,
    path = "/api/endpoints/{id}",
    operation_id = "delete_endpoint",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = NO_CONTENT, description = "Deleted"),
        (status = NOT_FOUND, description = "No such endpoint (or not this tenant's)"),
        (status = SERVICE_UNAVAILABLE, description = "The event log did not acknowledge; nothing changed"),
    )
)]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    let current = visible(&state, &caller, &id)?;
    let d = EndpointDeleted { envelope: envelope::<EndpointDeleted>(&current.envelope.tenant_id, &id, time::now_ms()) };
    write(&state, &id, &d).await?;
    state.catalog.apply(d.into());
    Ok(StatusCode::NO_CONTENT)
}

/// One endpoint.
#[utoipa::path(
    get,
    path = "/api/endpoints/{id}",
    operation_id = "get_endpoint",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = OK, description = "The endpoint", body = EndpointOut),
        (status = NOT_FOUND, description = "No such endpoint (or not this tenant's)"),
    )
)]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    Ok(Json(EndpointOut::from(&*visible(&state, &caller, &id)?)))
}

/// Endpoints the token may see.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = EndpointList)]
pub struct ListOut {
    pub data: Vec<EndpointOut>,
}

/// Every endpoint of the caller's tenant (every tenant for an admin token).
#[utoipa::path(
    get,
    path = "/api/endpoints",
    operation_id = "list_endpoints",
    tag = "endpoints",
    responses((status = OK, description = "The endpoints", body = ListOut))
)]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<impl IntoResponse, ApiProblem> {
    let data = state.catalog.list(caller.tenant.as_deref()).iter().map(|e| EndpointOut::from(&**e)).collect();
    Ok(Json(ListOut { data }))
}

/// The endpoint if it exists and the caller may see it; otherwise 404 (never 403, so ids of
/// other tenants are not confirmed).
pub fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<Arc<EndpointUpserted>, ApiProblem> {
    state.catalog.get(id).filter(|e| caller.can_see(&e.envelope.tenant_id)).ok_or(ApiProblem::NotFound("endpoint"))
}

pub fn envelope<E: Event>(tenant: &str, endpoint_id: &str, now: i64) -> Envelope {
    Envelope {
        event_id: ids::new_event_id(),
        record_type: E::NAME.into(),
        occurred_at: now,
        tenant_id: tenant.into(),
        endpoint_id: Some(endpoint_id.into()),
        ..Default::default()
    }
}

pub async fn write<E: Event>(state: &AppState, id: &str, event: &E) -> Result<(), ApiProblem> {
    let bytes = state.codec.encode(event).map_err(ApiProblem::internal)?;
    state.producer.send(&state.topics.endpoints, id.as_bytes(), &bytes).await.map_err(|e| {
        tracing::warn!(error = %e, "endpoint write not acknowledged");
        ApiProblem::Unavailable("the event log did not acknowledge the write; nothing was changed, try again")
    })?;
    Ok(())
}
