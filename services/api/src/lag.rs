//! Consumer lag per group and partition (router, dispatcher, scheduler, projector), read from
//! Kafka: the log end offset minus the group's committed offset. Used by the dashboard and
//! `GET /api/system/lag`.

use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use hookline_config::KafkaOptions;
use hookline_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use hookline_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::ApiProblem;

#[derive(Debug, Serialize)]
pub struct PartitionLag {
    pub partition: i32,
    pub end_offset: i64,
    pub committed: Option<i64>,
    pub lag: i64,
}

#[derive(Debug, Serialize)]
pub struct GroupLag {
    pub group: String,
    pub topic: String,
    pub total_lag: i64,
    pub partitions: Vec<PartitionLag>,
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/system/lag", get(lag))
}

async fn lag(State(state): State<AppState>, caller: Caller) -> Result<impl IntoResponse, ApiProblem> {
    if caller.tenant.is_some() {
        return Err(ApiProblem::Forbidden("consumer lag is visible to admin tokens only"));
    }
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
    let groups =
        tokio::task::spawn_blocking(move || pairs.iter().map(|(g, t)| group_lag(&kafka, g, t)).collect::<Vec<_>>())
            .await
            .map_err(ApiProblem::internal)?;
    let groups: Vec<GroupLag> = groups.into_iter().filter_map(Result::ok).collect();
    Ok(Json(serde_json::json!({ "groups": groups })))
}

/// Lag of `group` on `topic`.
pub fn group_lag(kafka: &KafkaOptions, group: &str, topic: &str) -> Result<GroupLag, String> {
    let timeout = Duration::from_secs(5);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
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
