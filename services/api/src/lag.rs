//! Consumer lag per group and partition (router, dispatcher, scheduler, projector), read from
//! Kafka: the log end offset minus the group's committed offset. Used by the dashboard and
//! `GET /api/system/lag`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use hookline_config::KafkaOptions;
use hookline_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use hookline_kafka::rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::ApiProblem;

/// Lag of one partition.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartitionLag {
    pub partition: i32,
    /// The log end offset.
    pub end_offset: i64,
    /// The group's committed offset; none when the group never committed here.
    pub committed: Option<i64>,
    pub lag: i64,
}

/// Lag of a consumer group on a topic.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupLag {
    pub group: String,
    pub topic: String,
    pub total_lag: i64,
    pub partitions: Vec<PartitionLag>,
}

/// Consumer lag of every group that could be read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ConsumerLag)]
pub struct LagOut {
    pub groups: Vec<GroupLag>,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(lag))
}

/// Consumer lag per group and partition (router, dispatcher, projector). Admin tokens only.
#[utoipa::path(
    get,
    path = "/api/system/lag",
    operation_id = "consumer_lag",
    tag = "system",
    responses(
        (status = OK, description = "Lag per group and partition", body = LagOut),
        (status = FORBIDDEN, description = "A tenant token (lag is visible to admin tokens only)"),
    )
)]
async fn lag(State(state): State<AppState>, caller: Caller) -> Result<impl IntoResponse, ApiProblem> {
    if caller.tenant.is_some() {
        return Err(ApiProblem::Forbidden("consumer lag is visible to admin tokens only"));
    }
    let groups = every_group(&state).await.map_err(ApiProblem::internal)?;
    Ok(Json(LagOut { groups }))
}

/// Lag of every consumer group that could be read (router, dispatcher, the projector's active
/// table set on its two topics), off the executor. Shared by this route and `/metrics`.
pub async fn every_group(state: &AppState) -> Result<Vec<GroupLag>, tokio::task::JoinError> {
    let kafka = state.config.kafka.clone();
    let t = state.topics.clone();
    let suffix = state.reader().suffix;
    let p = &kafka.topic_prefix;
    let pairs = [
        (format!("{p}router"), t.triggers.clone()),
        (format!("{p}dispatcher"), t.deliveries.clone()),
        (format!("{p}projector{suffix}"), t.events.clone()),
        (format!("{p}projector{suffix}"), t.deliveries.clone()),
    ];
    tokio::task::spawn_blocking(move || pairs.iter().filter_map(|(g, t)| group_lag(&kafka, g, t).ok()).collect()).await
}

/// Lag of `group` on `topic`.
pub fn group_lag(kafka: &KafkaOptions, group: &str, topic: &str) -> Result<GroupLag, String> {
    let timeout = Duration::from_secs(5);
    let c: BaseConsumer = hookline_kafka::client_config(kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let md = c.fetch_metadata(Some(topic), timeout).map_err(|e| e.to_string())?;
    let ids: Vec<i32> =
        md.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
    let mut tpl = TopicPartitionList::new();
    for &p in &ids {
        tpl.add_partition(topic, p);
    }
    let committed = c.committed_offsets(tpl, timeout).map_err(|e| e.to_string())?;
    let mut partitions = Vec::with_capacity(ids.len());
    for p in ids {
        let (_, high) = c.fetch_watermarks(topic, p, timeout).map_err(|e| e.to_string())?;
        let at = committed.find_partition(topic, p).and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        partitions.push(PartitionLag {
            partition: p,
            end_offset: high,
            committed: at,
            lag: (high - at.unwrap_or(0)).max(0),
        });
    }
    Ok(GroupLag {
        group: group.into(),
        topic: topic.into(),
        total_lag: partitions.iter().map(|p| p.lag).sum(),
        partitions,
    })
}
