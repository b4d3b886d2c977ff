//! Signing keys of an endpoint: rotation, the audited reveal of a secret, public keys as JWKS,
//! and transformation previews.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use hookline_domain::signing::{jwks, rotation, stored};
use hookline_domain::transform::{RenderContext, TemplateEngine};
use hookline_domain::{ids, time};
use hookline_schemas::{EndpointUpserted, Template};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::AppState;
use crate::auth::Caller;
use crate::endpoints::{EndpointOut, TemplateIn, envelope, new_key, parse_scheme, visible, write};
use crate::problem::ApiProblem;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/endpoints/{id}/keys/rotate", post(rotate))
        .route("/api/endpoints/{id}/keys/{key_id}/reveal", post(reveal))
        .route("/api/endpoints/{id}/public-keys", get(public_keys))
        .route("/api/endpoints/{id}/transform/preview", post(preview))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    pub signing_scheme: Option<String>,
    pub secret: Option<String>,
    /// How long the previous keys keep signing beside the new one, in seconds (default 24 h).
    pub grace_seconds: Option<i64>,
}

async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<RotateIn>>,
) -> Result<impl IntoResponse, ApiProblem> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let current = visible(&state, &caller, &id)?;
    let scheme = parse_scheme(body.signing_scheme.as_deref(), "signing_scheme")?;
    let grace_ms = body.grace_seconds.map_or(rotation::DEFAULT_GRACE_MS, |s| s.saturating_mul(1000));
    let now = time::now_ms();
    let (key, secret) = new_key(&state, scheme, body.secret, now)?;
    let keys = rotation::rotate(&current.signing_keys, key, now, grace_ms)
        .map_err(|e| ApiProblem::invalid("grace_seconds", e.to_string()))?;
    let mut e: EndpointUpserted = (*current).clone();
    e.envelope = envelope::<EndpointUpserted>(&current.envelope.tenant_id, &id, now);
    e.version = current.version + 1;
    e.signing_keys = keys;
    write(&state, &id, &e).await?;
    state.catalog.apply(e.clone().into());
    tracing::info!(endpoint_id = id, actor = caller.name, "signing key rotated");
    let mut out = EndpointOut::from(&e);
    out.secret = Some(secret);
    Ok((StatusCode::OK, Json(out)))
}

/// Shows a stored secret again. Audited: the log records who revealed which key (never the
/// secret itself).
async fn reveal(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiProblem> {
    let ep = visible(&state, &caller, &id)?;
    let key = ep.signing_keys.iter().find(|k| k.key_id == key_id).ok_or(ApiProblem::NotFound("key"))?;
    let secret = stored::reveal(&state.master_keys, key).map_err(ApiProblem::internal)?;
    tracing::warn!(audit = "secret_revealed", endpoint_id = id, key_id, actor = caller.name, "signing secret revealed");
    Ok(Json(serde_json::json!({ "key_id": key_id, "scheme": key.scheme, "secret": secret.as_str() })))
}

async fn public_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    let ep = visible(&state, &caller, &id)?;
    let set = jwks::jwks(&ep.signing_keys, time::now_ms()).map_err(ApiProblem::internal)?;
    Ok(Json(set))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewIn {
    /// A template not yet saved; the endpoint's own when absent.
    pub template: Option<TemplateIn>,
    pub event_type: String,
    pub payload: Box<RawValue>,
}

async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<PreviewIn>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiProblem> {
    let Json(body) = body?;
    let ep = visible(&state, &caller, &id)?;
    let template = match body.template {
        Some(t) => Template { body: t.body, headers: t.headers, content_type: t.content_type },
        None => ep
            .template
            .clone()
            .ok_or_else(|| ApiProblem::invalid("template", "the endpoint has no template; send one"))?,
    };
    let compiled = TemplateEngine::default().compile(&template).map_err(|e| ApiProblem::Invalid {
        field: e.field.clone(),
        reason: format!("line {}, column {}: {}", e.line, e.column, e.message),
    })?;
    let delivery_id = ids::delivery_id("preview", &id, time::now_ms());
    let rendered = compiled
        .render(&RenderContext {
            payload: body.payload.get().as_bytes(),
            payload_content_type: "application/json",
            event_type: &body.event_type,
            message_id: &ids::message_id(&delivery_id),
            delivery_id: &delivery_id,
            endpoint_id: &id,
            tenant_id: &ep.envelope.tenant_id,
            attempt: 1,
            timestamp_ms: time::now_ms(),
        })
        .map_err(|e| ApiProblem::invalid("template", e.to_string()))?;
    Ok(Json(serde_json::json!({
        "body": rendered.body,
        "headers": rendered.headers.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "content_type": rendered.content_type,
    })))
}
