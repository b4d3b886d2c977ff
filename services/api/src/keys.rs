//! Signing keys of an endpoint: rotation, the audited reveal of a secret, public keys as JWKS,
//! and transformation previews.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hookline_domain::signing::{jwks, rotation, stored};
use hookline_domain::transform::{RenderContext, TemplateEngine};
use hookline_domain::{ids, time};
use hookline_schemas::{EndpointUpserted, Template};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::endpoints::{EndpointOut, SigningSchemeDoc, TemplateIn, envelope, new_key, parse_scheme, visible, write};
use crate::extract::{ApiJson, ApiPath, OptionalJson};
use crate::problem::ApiProblem;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rotate))
        .routes(routes!(reveal))
        .routes(routes!(public_keys))
        .routes(routes!(preview))
}

/// A key rotation; every field is optional, and so is the body.
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyRotation)]
pub struct RotateIn {
    /// Scheme of the new key (default hmac-sha256).
    #[schema(value_type = Option<SigningSchemeDoc>)]
    pub signing_scheme: Option<String>,
    /// The new secret; generated when absent.
    pub secret: Option<String>,
    /// How long the previous keys keep signing beside the new one, in seconds (default 24 h,
    /// at most 30 days).
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub grace_seconds: Option<i64>,
}

/// Adds a new signing key; the previous keys keep signing for the grace period.
#[utoipa::path(
    post,
    path = "/api/endpoints/{id}/keys/rotate",
    operation_id = "rotate_key",
    tag = "keys",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body(content = Option<RotateIn>, description = "Optional: an empty body rotates to a generated hmac-sha256 key"),
    responses(
        (status = OK, description = "Rotated; `secret` shows the new key's secret this once", body = EndpointOut),
        (status = NOT_FOUND, description = "No such endpoint (or not this tenant's)"),
        (status = SERVICE_UNAVAILABLE, description = "The event log did not acknowledge; nothing changed"),
    )
)]
async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<RotateIn>,
) -> Result<impl IntoResponse, ApiProblem> {
    let body = body.unwrap_or_default();
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

/// A signing secret, revealed.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RevealedSecret)]
pub struct RevealOut {
    pub key_id: String,
    #[schema(value_type = SigningSchemeDoc)]
    pub scheme: String,
    pub secret: String,
}

/// Shows a stored secret again. Audited: the log records who revealed which key (never the
/// secret itself).
#[utoipa::path(
    post,
    path = "/api/endpoints/{id}/keys/{key_id}/reveal",
    operation_id = "reveal_key",
    tag = "keys",
    params(
        ("id" = String, Path, description = "Endpoint id"),
        ("key_id" = String, Path, description = "Key id"),
    ),
    responses(
        (status = OK, description = "The secret", body = RevealOut),
        (status = NOT_FOUND, description = "No such endpoint or key (or not this tenant's)"),
    )
)]
async fn reveal(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, key_id)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiProblem> {
    let ep = visible(&state, &caller, &id)?;
    let key = ep.signing_keys.iter().find(|k| k.key_id == key_id).ok_or(ApiProblem::NotFound("key"))?;
    let secret = stored::reveal(&state.master_keys, key).map_err(ApiProblem::internal)?;
    tracing::warn!(audit = "secret_revealed", endpoint_id = id, key_id, actor = caller.name, "signing secret revealed");
    Ok(Json(RevealOut { key_id, scheme: key.scheme.clone(), secret: secret.as_str().to_string() }))
}

/// A JSON Web Key Set (RFC 7517) of public signing keys.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// A public key: `OKP`/`Ed25519` (`x`) or `RSA` (`n`, `e`); values base64url without padding.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Jwk {
    /// `OKP` or `RSA`.
    pub kty: String,
    /// `Ed25519` for OKP keys.
    pub crv: Option<String>,
    pub x: Option<String>,
    pub n: Option<String>,
    pub e: Option<String>,
    pub kid: String,
    /// Always `sig`.
    #[schema(rename = "use")]
    pub use_: String,
    /// `EdDSA`, `RS256` or `PS256`.
    pub alg: String,
}

/// Public keys of the endpoint's asymmetric keys that still sign (HMAC keys never appear).
#[utoipa::path(
    get,
    path = "/api/endpoints/{id}/public-keys",
    operation_id = "public_keys",
    tag = "keys",
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = OK, description = "The JWK Set", body = JwkSet),
        (status = NOT_FOUND, description = "No such endpoint (or not this tenant's)"),
    )
)]
async fn public_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    let ep = visible(&state, &caller, &id)?;
    let set = jwks::jwks(&ep.signing_keys, time::now_ms()).map_err(ApiProblem::internal)?;
    Ok(Json(set))
}

/// A sample event to render.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TransformPreviewRequest)]
pub struct PreviewIn {
    /// A template not yet saved; the endpoint's own when absent.
    pub template: Option<TemplateIn>,
    pub event_type: String,
    /// The sample payload (JSON).
    #[schema(value_type = serde_json::Value)]
    pub payload: Box<RawValue>,
}

/// What the endpoint would receive.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TransformPreview)]
pub struct PreviewOut {
    pub body: String,
    /// Rendered header templates.
    pub headers: BTreeMap<String, String>,
    pub content_type: String,
}

/// Renders a sample event with the endpoint's template or one sent in the request.
#[utoipa::path(
    post,
    path = "/api/endpoints/{id}/transform/preview",
    operation_id = "preview_transform",
    tag = "keys",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body = PreviewIn,
    responses(
        (status = OK, description = "The rendered request", body = PreviewOut),
        (status = NOT_FOUND, description = "No such endpoint (or not this tenant's)"),
    )
)]
async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PreviewIn>,
) -> Result<impl IntoResponse, ApiProblem> {
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
    Ok(Json(PreviewOut {
        body: rendered.body,
        headers: rendered.headers.into_iter().collect(),
        content_type: rendered.content_type,
    }))
}
