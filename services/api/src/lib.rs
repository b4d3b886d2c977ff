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
//! - [`run`] binds the listener and serves until shutdown, draining in-flight requests.

pub mod auth;
pub mod circuits;
pub mod dlq;
pub mod dlq_view;
pub mod endpoints;
pub mod health;
pub mod keys;
pub mod lag;
pub mod metrics;
pub mod overview;
pub mod params;
pub mod problem;
pub mod reads;
pub mod triggers;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use hookline_config::Config;
use hookline_domain::sealing::MasterKeys;
use hookline_kafka::catalog::Catalog;
use hookline_kafka::producer::EventProducer;
use hookline_kafka::{KafkaError, Topics};
use hookline_projector::query::Reader;
use hookline_schemas::Codec;
use tokio_util::sync::CancellationToken;

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
        Ok(Self {
            redis,
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

/// The whole HTTP app.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::routes())
        .merge(endpoints::routes())
        .merge(triggers::routes(state.config.api.max_payload_bytes))
        .merge(reads::routes())
        .merge(dlq::routes())
        .merge(lag::routes())
        .merge(metrics::routes())
        .merge(keys::routes())
        .merge(circuits::routes())
        .merge(dlq_view::routes())
        .merge(overview::routes())
        .merge(ui::routes())
        .fallback(|| async { problem::ApiProblem::NotFound("route") })
        .with_state(state)
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
