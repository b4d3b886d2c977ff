//! Circuit breaker state, live from Redis (where every dispatcher keeps it):
//! `GET /api/endpoints/{id}/circuit` and `GET /api/circuits` (every visible endpoint that is
//! not closed).

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use hookline_redis::breaker::CircuitView;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::extract::ApiPath;
use crate::problem::ApiProblem;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(one)).routes(routes!(all))
}

/// An endpoint's circuit breaker.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Circuit)]
pub struct CircuitOut {
    pub endpoint_id: String,
    /// `closed`, `open` or `half_open`.
    #[schema(value_type = String, pattern = "^(closed|open|half_open)$")]
    pub state: &'static str,
    /// While open: when probes may start (ms since the epoch).
    pub open_until: Option<i64>,
    /// Start of the current open streak (ms since the epoch).
    pub open_since: Option<i64>,
}

fn out(endpoint_id: String, v: CircuitView) -> CircuitOut {
    CircuitOut { endpoint_id, state: v.state.as_str(), open_until: v.open_until, open_since: v.open_since }
}

async fn views(state: &AppState, ids: Vec<String>) -> Result<Vec<CircuitOut>, ApiProblem> {
    let store =
        state.redis.get().ok_or(ApiProblem::Unavailable("circuit state lives in Redis, which is not reachable yet"))?;
    let timeout = std::time::Duration::from_millis(state.config.flow.redis_timeout_ms.max(1000));
    let views = tokio::time::timeout(timeout, store.circuits(&ids))
        .await
        .map_err(|_| ApiProblem::Unavailable("Redis did not answer in time"))?
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot read circuit state");
            ApiProblem::Unavailable("Redis cannot be read right now")
        })?;
    Ok(ids.into_iter().zip(views).map(|(id, v)| out(id, v)).collect())
}

/// An endpoint's circuit, live from Redis.
#[utoipa::path(
    get,
    path = "/api/endpoints/{id}/circuit",
    operation_id = "endpoint_circuit",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = OK, description = "The circuit", body = CircuitOut),
        (status = NOT_FOUND, description = "No such endpoint (or another tenant's)"),
        (status = SERVICE_UNAVAILABLE, description = "Redis cannot be read right now"),
    )
)]
async fn one(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    crate::endpoints::visible(&state, &caller, &id)?;
    let mut v = views(&state, vec![id]).await?;
    Ok(Json(v.remove(0)))
}

/// Circuits that are not closed.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Circuits)]
struct AllOut {
    circuits: Vec<CircuitOut>,
}

/// Every visible endpoint whose circuit is open or half-open, live from Redis.
#[utoipa::path(
    get,
    path = "/api/circuits",
    operation_id = "circuits",
    tag = "endpoints",
    responses(
        (status = OK, description = "Circuits that are not closed", body = AllOut),
        (status = SERVICE_UNAVAILABLE, description = "Redis cannot be read right now"),
    )
)]
async fn all(State(state): State<AppState>, caller: Caller) -> Result<impl IntoResponse, ApiProblem> {
    let ids: Vec<String> =
        state.catalog.list(caller.tenant.as_deref()).iter().filter_map(|e| e.envelope.endpoint_id.clone()).collect();
    let mut circuits = Vec::with_capacity(ids.len());
    // Bounded pipelines: a tenant with many endpoints costs a few round trips, not one huge one.
    for chunk in ids.chunks(500) {
        circuits.extend(views(&state, chunk.to_vec()).await?.into_iter().filter(|c| c.state != "closed"));
    }
    Ok(Json(AllOut { circuits }))
}
