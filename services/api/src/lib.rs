//! The HTTP API role (axum).
//!
//! - [`app`] builds the router so tests can drive it without a socket.
//! - [`auth`]: bearer tokens (stored as SHA-256 digests), admin and per-tenant.
//! - [`problem`]: `application/problem+json` errors.
//! - [`endpoints`]: endpoint configuration CRUD, written to the endpoints topic.
//! - [`triggers`]: single and batch triggers, written to the triggers topic.
//! - [`reads`]: deliveries, attempts and endpoint health from the read models.
//! - [`dlq`]: the DLQ: list, inspect, replay, discard, bulk replay jobs.
//! - [`keys`]: key rotation, audited reveal, JWKS, transformation preview.
//! - [`lag`]: consumer lag per group and partition.
//! - [`circuits`]: circuit breaker state per endpoint, live from Redis.
//! - [`dlq_view`]: DLQ search by id and the request an entry's attempts sent (for the viewer).
//! - [`overview`]: the health dashboard's data (per endpoint and per minute).
//! - [`ui`]: the DLQ viewer and health dashboard pages under `/ui/`, with session sign-in.
//! - [`metrics`]: `/metrics` in the Prometheus text format.
//! - [`health`]: `/healthz` (process alive) and `/readyz` (dependencies answer).
//! - [`openapi`]: the OpenAPI document (`/openapi.json`), built from the same registrations as
//!   the routes, so the two cannot diverge; [`router`] holds both.
//! - [`extract`]: `Json`/`Path`/`Query` extractors that reject with problem+json.
//! - [`run`] binds the listener and serves until shutdown, draining in-flight requests.

pub mod auth;
pub mod circuits;
pub mod direct;
pub mod dlq;
pub mod dlq_view;
pub mod endpoints;
pub mod extract;
pub mod health;
pub mod keys;
pub mod lag;
pub mod metrics;
pub mod openapi;
pub mod overview;
pub mod params;
pub mod problem;
pub mod reads;
pub mod triggers;
pub mod ui;

use std::sync::Arc;

use axum::{Extension, Router};
use hookline_config::Config;
use hookline_domain::sealing::MasterKeys;
use hookline_kafka::catalog::Catalog;
use hookline_kafka::producer::EventProducer;
use hookline_kafka::{KafkaError, Topics};
use hookline_projector::query::Reader;
use hookline_schemas::Codec;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

pub use health::Readiness;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub readiness: Readiness,
    pub tokens: auth::Tokens,
    pub catalog: Catalog,
    pub producer: EventProducer,
    pub codec: Arc<Codec>,
    pub topics: Topics,
    /// The read models; the table set follows `projector rebuild` switches.
    pub readers: ReaderHandle,
    /// Seal and open endpoint secrets.
    pub master_keys: Arc<MasterKeys>,
    /// Idempotency claims and circuit states; empty until Redis first answers.
    pub redis: Arc<std::sync::OnceLock<hookline_redis::RedisStore>>,
    /// Direct fan-out (`api.direct_fanout`), when on.
    pub direct: Option<direct::Direct>,
}

/// The current reader, refreshed when a rebuild switches the active table set.
#[derive(Clone)]
pub struct ReaderHandle(Arc<std::sync::RwLock<Reader>>);

impl ReaderHandle {
    pub fn new(reader: Reader) -> Self {
        Self(Arc::new(std::sync::RwLock::new(reader)))
    }

    pub fn get(&self) -> Reader {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the active table set every `every` until `shutdown`.
    pub async fn follow_active_set(&self, every: std::time::Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let current = self.get();
            match hookline_projector::schema::active_suffix(&current.store).await {
                Ok(s) if s != current.suffix => {
                    tracing::info!(from = current.suffix, to = s, "read models switched to a rebuilt table set");
                    *self.0.write().unwrap_or_else(|p| p.into_inner()) = Reader { store: current.store, suffix: s };
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the active table set"),
            }
        }
    }
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        catalog: Catalog,
        codec: Arc<Codec>,
        readiness: Readiness,
        readers: ReaderHandle,
        master_keys: Arc<MasterKeys>,
    ) -> Result<Self, ApiError> {
        let producer = EventProducer::new(&config.kafka, "hookline-api")?;
        hookline_telemetry::gauge_fn(
            hookline_telemetry::names::KAFKA_PRODUCER_QUEUE,
            hookline_telemetry::labels([(hookline_telemetry::names::CLIENT, "api")]),
            producer.queue_probe(),
        );
        let redis = hookline_redis::RedisStore::connect_in_background(
            &config.redis,
            std::time::Duration::from_millis(config.flow.redis_retry_ms),
            CancellationToken::new(),
        );
        // Reported on the connection the handlers use, not gating readiness: without Redis,
        // idempotency falls back to the router's log-based dedupe and flow control to local state.
        let cell = redis.clone();
        let readiness = readiness.with_optional("redis", move || {
            let store = cell.get().cloned();
            async move {
                match store {
                    Some(s) => s.ping().await.map_err(|e| e.to_string()),
                    None => Err("not connected yet".into()),
                }
            }
        });
        let direct = config.api.direct_fanout.then(|| direct::Direct::new(&config.kafka));
        Ok(Self {
            redis,
            direct,
            readers,
            master_keys,
            tokens: auth::Tokens::from_config(&config.api.tokens),
            topics: Topics::from_options(&config.kafka),
            config,
            readiness,
            catalog,
            producer,
            codec,
        })
    }
}

impl AppState {
    pub fn reader(&self) -> Reader {
        self.readers.get()
    }
}

/// Every route the API serves and the OpenAPI document describing them.
///
/// Register routes here, and only here (never on the `Router` that [`app`] returns): the test
/// in `openapi.rs` inspects this router and fails when a route is missing from the document.
/// Documented routes go through the per-module `OpenApiRouter`s (`routes!(handler)` with a
/// `#[utoipa::path]` on the handler). Only paths under [`openapi::UNDOCUMENTED_PREFIXES`]
/// (`/ui/`) may be added as plain axum routes, after `split_for_parts`.
pub fn router(max_payload_bytes: usize) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(openapi::base())
        .merge(health::routes())
        .merge(endpoints::routes())
        .merge(triggers::routes(max_payload_bytes))
        .merge(reads::routes())
        .merge(dlq::routes())
        .merge(lag::routes())
        .merge(metrics::routes())
        .merge(keys::routes())
        .merge(circuits::routes())
        .merge(dlq_view::routes())
        .merge(overview::routes())
        .merge(openapi::routes())
        .split_for_parts();
    openapi::finish(&mut doc);
    // The pages are HTML for people, not API operations (openapi::UNDOCUMENTED_PREFIXES).
    let router = router.merge(ui::routes()).layer(Extension(openapi::Document::new(&doc)));
    (router, doc)
}

/// The whole HTTP app.
pub fn app(state: AppState) -> Router {
    let (router, _) = router(state.config.api.max_payload_bytes);
    router
        .fallback(|| async { problem::ApiProblem::NotFound("route") })
        .layer(axum::middleware::from_fn(answer_panics))
        .with_state(state)
}

/// A handler that panics is a bug; without this the client sees its connection dropped.
/// With it, the panic is logged and answered like any internal error: a bare problem+json 500.
async fn answer_panics(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            problem::ApiProblem::Internal(format!("handler panicked: {what}")).into_response()
        }
    }
}

/// Serves the API on `config.api.listen` until `shutdown` fires, then drains.
pub async fn run(state: AppState, shutdown: CancellationToken) -> Result<(), ApiError> {
    let addr = state.config.api.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ApiError::Bind { addr, source })?;
    serve(listener, state, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let addr = listener.local_addr().map_err(ApiError::Serve)?;
    tracing::info!(%addr, "api listening");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ApiError::Serve)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> &'static str {
        panic!("bug")
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_not_a_dropped_connection() {
        let app = Router::new().route("/boom", get(boom)).layer(axum::middleware::from_fn(answer_panics));
        let resp = app.oneshot(Request::get("/boom").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], problem::PROBLEM_JSON);
    }
}
