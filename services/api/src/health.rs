//! Liveness and readiness.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

type Probe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Named dependency probes run by `/readyz`; each role registers what it needs.
#[derive(Clone, Default)]
pub struct Readiness {
    /// (name, required, probe): a failing optional probe is reported but keeps the process ready.
    probes: Vec<(&'static str, bool, Probe)>,
}

/// Longest a single probe may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

impl Readiness {
    pub fn with<F, Fut>(mut self, name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.probes.push((name, true, Arc::new(move || Box::pin(probe()))));
        self
    }

    /// A dependency the process works without (degraded): reported, not gating readiness.
    pub fn with_optional<F, Fut>(mut self, name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.probes.push((name, false, Arc::new(move || Box::pin(probe()))));
        self
    }

    /// Runs every probe concurrently.
    pub async fn check(&self) -> Vec<CheckResult> {
        let runs = self.probes.iter().map(|(name, required, probe)| async move {
            let outcome = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
            };
            CheckResult { name, ok: outcome.is_ok(), required: *required, reason: outcome.err() }
        });
        futures::future::join_all(runs).await
    }
}

/// One dependency check.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    /// The dependency (`kafka`, `endpoint_catalog`, `cql`, `redis`).
    pub name: &'static str,
    pub ok: bool,
    /// False for a dependency the process works without (its failure does not make it unready).
    pub required: bool,
    /// Why the check failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Readiness with the result of every dependency check.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadyBody {
    pub ready: bool,
    pub checks: Vec<CheckResult>,
}

/// Liveness.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AliveBody {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "system",
    security(()),
    responses((status = OK, description = "The process is alive", body = AliveBody))
)]
async fn healthz() -> impl IntoResponse {
    Json(AliveBody { status: "ok" })
}

/// Readiness: every dependency this role needs answers (Kafka, the endpoint catalog, CQL).
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "system",
    security(()),
    responses(
        (status = OK, description = "Ready: every check passed", body = ReadyBody),
        (status = SERVICE_UNAVAILABLE, description = "Not ready; the failed checks say why", body = ReadyBody),
    )
)]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let checks = state.readiness.check().await;
    let ready = checks.iter().all(|c| c.ok || !c.required);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(ReadyBody { ready, checks }))
}
