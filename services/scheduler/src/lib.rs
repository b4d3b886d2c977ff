//! The `scheduler` role. Built out by the delivery pipeline; for now it starts, reports, and stops
//! cleanly on shutdown.

use std::sync::Arc;

use hookline_config::Config;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {}

/// Runs the role until `shutdown` fires.
pub async fn run(_config: Arc<Config>, shutdown: CancellationToken) -> Result<(), SchedulerError> {
    tracing::info!(role = "scheduler", "started");
    shutdown.cancelled().await;
    tracing::info!(role = "scheduler", "stopped");
    Ok(())
}
