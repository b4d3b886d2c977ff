//! The HTTP API role (axum).
//!
//! - [`app`] builds the router so tests can drive it without a socket.
//! - [`health`]: `/healthz` (process alive) and `/readyz` (dependencies answer).
//! - [`run`] binds the listener and serves until shutdown, draining in-flight requests.

pub mod health;

use std::sync::Arc;

use axum::Router;
use hookline_config::Config;
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
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub readiness: Readiness,
}

/// The whole HTTP app.
pub fn app(state: AppState) -> Router {
    Router::new().merge(health::routes()).with_state(state)
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
