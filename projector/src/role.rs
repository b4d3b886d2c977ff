//! The projector role. Built out by the read-side work; for now it starts, reports, and stops
//! cleanly on shutdown.

use std::sync::Arc;

use hookline_config::Config;
use tokio_util::sync::CancellationToken;

/// Runs the projector until `shutdown` fires.
pub async fn run(_config: Arc<Config>, shutdown: CancellationToken) -> Result<(), crate::CqlError> {
    tracing::info!(role = "projector", "started");
    shutdown.cancelled().await;
    tracing::info!(role = "projector", "stopped");
    Ok(())
}
