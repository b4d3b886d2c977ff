//! Liveness and readiness.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

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

#[derive(Debug, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub ok: bool,
    /// False for a dependency the process works without (its failure does not make it unready).
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Serialize)]
struct ReadyBody {
    ready: bool,
    checks: Vec<CheckResult>,
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let checks = state.readiness.check().await;
    let ready = checks.iter().all(|c| c.ok || !c.required);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(ReadyBody { ready, checks }))
}
