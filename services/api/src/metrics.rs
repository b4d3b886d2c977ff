//! `GET /metrics`: the process's Prometheus metrics (every role running in it), with consumer
//! lag per group and partition read from Kafka at scrape time. Unauthenticated like
//! `/healthz`: it carries counts and latencies, no tenant data or ids.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use hookline_telemetry::{labels, metrics, names};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scrape))
}

/// The process's metrics in the Prometheus text format (no token: counts and latencies only).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "system",
    security(()),
    responses((status = OK, description = "Prometheus text exposition", content_type = "text/plain; version=0.0.4", body = String))
)]
async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let p = &state.config.kafka.topic_prefix;
    let lags = crate::lag::every_group(&state).await.unwrap_or_default();
    for g in lags {
        // The group name without this deployment's prefix keeps label values stable.
        let group = g.group.strip_prefix(p.as_str()).unwrap_or(&g.group).to_string();
        for part in g.partitions {
            let l = labels([
                (names::GROUP, group.as_str()),
                (names::TOPIC, g.topic.as_str()),
                (names::PARTITION, part.partition.to_string().as_str()),
            ]);
            metrics().consumer_lag.get_or_create(&l).set(part.lag);
        }
    }
    dlq_open(&state).await;
    ([(CONTENT_TYPE, hookline_telemetry::CONTENT_TYPE)], hookline_telemetry::render())
}

/// Most endpoints whose open DLQ count is summed per scrape (one read each, 16 at a time).
const DLQ_OPEN_MAX_ENDPOINTS: usize = 2_000;

/// Sets the open-DLQ gauge from the read models (left as is above the endpoint bound or when
/// a read fails, so a scrape never reports a wrong total).
async fn dlq_open(state: &AppState) {
    use futures::StreamExt;
    let ids: Vec<String> = state.catalog.list(None).iter().filter_map(|e| e.envelope.endpoint_id.clone()).collect();
    if ids.len() > DLQ_OPEN_MAX_ENDPOINTS {
        return;
    }
    let reader = state.reader();
    let reads: Vec<_> = ids.iter().map(|id| reader.endpoint_state(id)).collect();
    let results: Vec<_> = futures::stream::iter(reads).buffer_unordered(16).collect().await;
    let mut total = 0i64;
    for r in results {
        match r {
            Ok(s) => total += s.dlq_open,
            Err(_) => return,
        }
    }
    metrics().dlq_open.set(total);
}
