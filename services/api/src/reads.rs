//! Deliveries, attempts and endpoint health, from the read models.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use hookline_domain::time;

use crate::AppState;
use crate::auth::Caller;
use crate::params::Params;
use crate::problem::ApiProblem;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/deliveries", get(list))
        .route("/api/deliveries/{id}", get(get_one))
        .route("/api/deliveries/{id}/attempts", get(attempts))
        .route("/api/endpoints/{id}/health", get(health))
}

pub const DELIVERY_STATUSES: &[&str] = &["pending", "retrying", "delivered", "dead_lettered", "replayed", "discarded"];

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiProblem> {
    let p = Params::new(q, &["tenant_id", "endpoint_id", "status", "since", "until", "cursor", "limit"])?;
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
        (None, None, Some(t)) => t.to_string(),
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

async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    let d = state.reader().delivery(&id).await.map_err(ApiProblem::internal)?;
    let d = d.filter(|d| caller.can_see(&d.tenant_id)).ok_or(ApiProblem::NotFound("delivery"))?;
    Ok(Json(d))
}

async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    let reader = state.reader();
    let d = reader.delivery(&id).await.map_err(ApiProblem::internal)?;
    d.filter(|d| caller.can_see(&d.tenant_id)).ok_or(ApiProblem::NotFound("delivery"))?;
    let data = reader.attempts(&id).await.map_err(ApiProblem::internal)?;
    Ok(Json(serde_json::json!({ "data": data })))
}

async fn health(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiProblem> {
    let p = Params::new(q, &["window"])?;
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
