//! Deliveries, attempts and endpoint health, from the read models.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use hookline_domain::time;
use hookline_projector::query::{Attempt, Delivery, DeliverySummary, Health, Page};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::endpoints::TenantId;
use crate::extract::{ApiPath, ApiQuery};
use crate::params::Params;
use crate::problem::ApiProblem;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one))
        .routes(routes!(attempts))
        .routes(routes!(health))
}

pub const DELIVERY_STATUSES: &[&str] = &["pending", "retrying", "delivered", "dead_lettered", "replayed", "discarded"];

// Documents [`DELIVERY_STATUSES`]; a test in `openapi.rs` checks they agree.
/// A delivery's state.
#[derive(utoipa::ToSchema)]
#[schema(as = DeliveryStatus, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum DeliveryStatusDoc {
    Pending,
    Retrying,
    Delivered,
    DeadLettered,
    Replayed,
    Discarded,
}

/// Query of `GET /api/deliveries`. Admin tokens name a tenant or an endpoint.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DeliveryQuery {
    /// The tenant (admin tokens; a tenant token may only name its own).
    #[param(value_type = Option<TenantId>)]
    tenant_id: Option<String>,
    /// Only this endpoint's deliveries (its tenant is implied).
    endpoint_id: Option<String>,
    #[param(value_type = Option<DeliveryStatusDoc>)]
    status: Option<String>,
    /// Window start, Unix milliseconds (default: 7 days before `until`).
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    since: Option<i64>,
    /// Window end, Unix milliseconds (default: a minute from now).
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    until: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<i64>,
}

/// Deliveries, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/deliveries",
    operation_id = "list_deliveries",
    tag = "deliveries",
    params(DeliveryQuery),
    responses(
        (status = OK, description = "A page of deliveries", body = Page<DeliverySummary>),
        (status = FORBIDDEN, description = "A tenant token named another tenant"),
    )
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery,
) -> Result<impl IntoResponse, ApiProblem> {
    let p = Params::documented::<DeliveryQuery>(q)?;
    let endpoint = p.str("endpoint_id");
    let tenant = match (endpoint, &caller.tenant, p.str("tenant_id")) {
        (Some(id), _, _) => crate::endpoints::visible(&state, &caller, id)
            .map_err(|_| ApiProblem::invalid("endpoint_id", "no such endpoint"))?
            .envelope
            .tenant_id
            .clone(),
        (None, Some(own), requested) => {
            if requested.is_some_and(|r| r != own) {
                return Err(ApiProblem::Forbidden("a tenant token sees only its own tenant"));
            }
            own.clone()
        }
        (None, None, Some(t)) => {
            crate::auth::validate_tenant(t, "tenant_id")?;
            t.to_string()
        }
        (None, None, None) => {
            return Err(ApiProblem::invalid("tenant_id", "an admin token must name the tenant or an endpoint_id"));
        }
    };
    let status = p.str("status");
    if let Some(s) = status
        && !DELIVERY_STATUSES.contains(&s)
    {
        return Err(ApiProblem::invalid("status", format!("must be one of {}", DELIVERY_STATUSES.join(", "))));
    }
    let (since, until) = p.window()?;
    let page = state
        .reader()
        .deliveries(&tenant, endpoint, status, since, until, p.cursor()?, p.limit()?)
        .await
        .map_err(ApiProblem::internal)?;
    Ok(Json(page))
}

/// One delivery.
#[utoipa::path(
    get,
    path = "/api/deliveries/{id}",
    operation_id = "get_delivery",
    tag = "deliveries",
    params(("id" = String, Path, description = "Delivery id")),
    responses(
        (status = OK, description = "The delivery", body = Delivery),
        (status = NOT_FOUND, description = "No such delivery (or not this tenant's)"),
    )
)]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    let d = state.reader().delivery(&id).await.map_err(ApiProblem::internal)?;
    let d = d.filter(|d| caller.can_see(&d.tenant_id)).ok_or(ApiProblem::NotFound("delivery"))?;
    Ok(Json(d))
}

/// Every attempt of a delivery.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptList {
    pub data: Vec<Attempt>,
}

/// Every attempt of one delivery, in order.
#[utoipa::path(
    get,
    path = "/api/deliveries/{id}/attempts",
    operation_id = "list_attempts",
    tag = "deliveries",
    params(("id" = String, Path, description = "Delivery id")),
    responses(
        (status = OK, description = "The attempts", body = AttemptList),
        (status = NOT_FOUND, description = "No such delivery (or not this tenant's)"),
    )
)]
async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    let reader = state.reader();
    let d = reader.delivery(&id).await.map_err(ApiProblem::internal)?;
    d.filter(|d| caller.can_see(&d.tenant_id)).ok_or(ApiProblem::NotFound("delivery"))?;
    let data = reader.attempts(&id).await.map_err(ApiProblem::internal)?;
    Ok(Json(AttemptList { data }))
}

/// Query of `GET /api/endpoints/{id}/health`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct HealthQuery {
    /// The last this many minutes.
    #[param(minimum = 1, maximum = 1440, default = 60)]
    window: Option<i64>,
}

/// Successes, failures, success rate and latency of an endpoint, with a per-minute series.
#[utoipa::path(
    get,
    path = "/api/endpoints/{id}/health",
    operation_id = "endpoint_health",
    tag = "deliveries",
    params(("id" = String, Path, description = "Endpoint id"), HealthQuery),
    responses(
        (status = OK, description = "The endpoint's health over the window", body = Health),
        (status = NOT_FOUND, description = "No such endpoint (or not this tenant's)"),
    )
)]
async fn health(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery,
) -> Result<impl IntoResponse, ApiProblem> {
    let p = Params::documented::<HealthQuery>(q)?;
    crate::endpoints::visible(&state, &caller, &id)?;
    let window = match p.str("window") {
        None => 60,
        Some(w) => w
            .parse::<i64>()
            .ok()
            .filter(|w| (1..=1440).contains(w))
            .ok_or_else(|| ApiProblem::invalid("window", "must be a number of minutes between 1 and 1440"))?,
    };
    let h = state.reader().health(&id, window, time::now_ms()).await.map_err(ApiProblem::internal)?;
    Ok(Json(h))
}
