//! The dead-letter queue: list, inspect, replay, discard, and bulk replay by filter.
//!
//! A command first *claims* the entry (a lightweight transaction on `dlq_claims`), so two
//! operators replaying the same entry at once get one replay and one 409. Then it appends its
//! records (DLQReplayed + a new DeliveryRequested that keeps the webhook-id, or DLQDiscarded)
//! and answers with a consistency token: the log position of its event. A read given that
//! token waits (bounded) until the projection has passed it, so the entry is gone from the list.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use hookline_domain::{commands, time};
use hookline_projector::query::DlqEntry;
use hookline_schemas::{Envelope, MovedToDLQ};
use scylla::value::CqlTimestamp;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::params::Params;
use crate::problem::ApiProblem;

/// Longest a read waits for the projection to reach a consistency token.
pub const CONSISTENCY_WAIT: Duration = Duration::from_secs(5);
/// Most entries one bulk replay touches.
pub const MAX_BULK: usize = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/webhooks/dlq", get(list))
        .route("/api/webhooks/dlq/replay", post(bulk_replay))
        .route("/api/webhooks/dlq/jobs/{job_id}", get(job))
        .route("/api/webhooks/dlq/{id}", get(get_one).delete(discard))
        .route("/api/webhooks/dlq/{id}/replay", post(replay))
}

#[derive(Serialize)]
struct EntryOut {
    #[serde(flatten)]
    entry: DlqEntry,
    payload: String,
    payload_encoding: &'static str,
}

fn entry_out(entry: DlqEntry) -> EntryOut {
    let (payload, payload_encoding) = match std::str::from_utf8(&entry.payload) {
        Ok(s) => (s.to_string(), "utf-8"),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(&entry.payload), "base64"),
    };
    EntryOut { entry, payload, payload_encoding }
}

async fn wait_for_token(state: &AppState, token: Option<&str>) -> Result<(), ApiProblem> {
    let Some(token) = token else { return Ok(()) };
    let bad = || ApiProblem::invalid("consistency", "is not a token this API returned");
    let (p, o) = token.split_once(':').ok_or_else(bad)?;
    let (p, o): (i32, i64) = (p.parse().map_err(|_| bad())?, o.parse().map_err(|_| bad())?);
    let deadline = tokio::time::Instant::now() + CONSISTENCY_WAIT;
    loop {
        let cps = state.reader().checkpoints(&state.topics.events).await.map_err(ApiProblem::internal)?;
        if cps.iter().any(|&(cp, next)| cp == p && next > o) || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tenant_of(caller: &Caller, requested: Option<&str>) -> Result<String, ApiProblem> {
    match (&caller.tenant, requested) {
        (Some(own), Some(r)) if r != own => Err(ApiProblem::Forbidden("a tenant token sees only its own tenant")),
        (Some(own), _) => Ok(own.clone()),
        (None, Some(t)) => Ok(t.to_string()),
        (None, None) => Err(ApiProblem::invalid("tenant_id", "an admin token must name the tenant")),
    }
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiProblem> {
    let p = Params::new(
        q,
        &["tenant_id", "endpoint_id", "event_type", "since", "until", "cursor", "limit", "consistency"],
    )?;
    let tenant = tenant_of(&caller, p.str("tenant_id"))?;
    wait_for_token(&state, p.str("consistency")).await?;
    let (since, until) = p.window()?;
    let page = state
        .reader()
        .dlq(&tenant, p.str("endpoint_id"), p.str("event_type"), since, until, p.cursor()?, p.limit()?)
        .await
        .map_err(ApiProblem::internal)?;
    Ok(Json(page))
}

async fn visible_entry(state: &AppState, caller: &Caller, id: &str) -> Result<DlqEntry, ApiProblem> {
    let e = state.reader().dlq_entry(id).await.map_err(ApiProblem::internal)?;
    e.filter(|e| caller.can_see(&e.tenant_id)).ok_or(ApiProblem::NotFound("DLQ entry"))
}

async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiProblem> {
    let p = Params::new(q, &["consistency"])?;
    wait_for_token(&state, p.str("consistency")).await?;
    let entry = visible_entry(&state, &caller, &id).await?;
    let attempts = match &entry.delivery_id {
        Some(d) => state.reader().attempts(d).await.map_err(ApiProblem::internal)?,
        None => vec![],
    };
    Ok(Json(serde_json::json!({ "entry": entry_out(entry), "attempts": attempts })))
}

#[derive(Serialize)]
struct CommandOut {
    id: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_delivery_id: Option<String>,
    consistency_token: String,
}

fn moved_from(entry: &DlqEntry) -> MovedToDLQ {
    MovedToDLQ {
        envelope: Envelope {
            event_id: entry.id.clone(),
            record_type: "MovedToDLQ".into(),
            occurred_at: entry.moved_at.unwrap_or_default(),
            tenant_id: entry.tenant_id.clone(),
            trigger_id: entry.trigger_id.clone(),
            delivery_id: entry.delivery_id.clone(),
            endpoint_id: entry.endpoint_id.clone(),
            attempt: entry.attempts,
            causation_id: None,
            correlation_id: entry.correlation_id.clone(),
        },
        event_type: entry.event_type.clone().unwrap_or_default(),
        payload: entry.payload.clone(),
        content_type: entry.content_type.clone().unwrap_or_else(|| "application/json".into()),
        message_id: entry.message_id.clone().unwrap_or_default(),
        reason: entry.reason.clone().unwrap_or_default(),
        last_error_kind: entry.last_error_kind.clone().unwrap_or_default(),
        last_status_code: entry.last_status_code,
        last_error_message: entry.last_error_message.clone().unwrap_or_default(),
        attempts: entry.attempts.unwrap_or_default(),
        trigger_occurred_at: entry.trigger_occurred_at.unwrap_or_default(),
    }
}

/// Claims an entry for one command; false when another command already has it.
async fn claim(state: &AppState, id: &str, action: &str, actor: &str) -> Result<bool, ApiProblem> {
    let store = &state.reader().store;
    let q = format!(
        "INSERT INTO {}.dlq_claims (dlq_id, action, actor, claimed_at) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL {}",
        store.keyspace,
        state.config.projector.retention_days as u64 * 86_400
    );
    let r = store
        .session
        .query_unpaged(q, (id, action, actor, CqlTimestamp(time::now_ms())))
        .await
        .map_err(ApiProblem::internal)?
        .into_rows_result()
        .map_err(ApiProblem::internal)?;
    // ScyllaDB and Cassandra shape LWT results differently: find `[applied]` by name.
    let idx = r.column_specs().iter().position(|c| c.name() == "[applied]").unwrap_or(0);
    let row: scylla::value::Row = r.first_row().map_err(ApiProblem::internal)?;
    Ok(matches!(row.columns.get(idx), Some(Some(scylla::value::CqlValue::Boolean(true)))))
}

async fn unclaim(state: &AppState, id: &str) {
    let store = &state.reader().store;
    let q = format!("DELETE FROM {}.dlq_claims WHERE dlq_id = ?", store.keyspace);
    if let Err(e) = store.session.query_unpaged(q, (id,)).await {
        tracing::warn!(error = %e, dlq_id = id, "could not release a DLQ claim");
    }
}

/// Replays one open entry: claim, then append. Returns (new delivery id, token).
async fn replay_entry(state: &AppState, entry: &DlqEntry, actor: &str) -> Result<(String, String), ApiProblem> {
    if entry.state.as_deref() != Some("open") || !claim(state, &entry.id, "replay", actor).await? {
        return Err(ApiProblem::Conflict(format!("DLQ entry {} was already replayed or discarded", entry.id)));
    }
    let moved = moved_from(entry);
    let (replayed, delivery) = commands::replay(&moved, actor, time::now_ms());
    let key = entry.endpoint_id.clone().unwrap_or_default();
    let write = async {
        let r = state.codec.encode(&replayed).map_err(ApiProblem::internal)?;
        let d = state.codec.encode(&delivery).map_err(ApiProblem::internal)?;
        let (p, o) = state.producer.send(&state.topics.events, key.as_bytes(), &r).await.map_err(unavailable)?;
        state.producer.send(&state.topics.deliveries, key.as_bytes(), &d).await.map_err(unavailable)?;
        Ok::<_, ApiProblem>(format!("{p}:{o}"))
    };
    match write.await {
        Ok(token) => Ok((replayed.new_delivery_id, token)),
        Err(e) => {
            unclaim(state, &entry.id).await;
            Err(e)
        }
    }
}

fn unavailable(e: hookline_kafka::KafkaError) -> ApiProblem {
    tracing::warn!(error = %e, "DLQ command not acknowledged by the broker");
    ApiProblem::Unavailable("the event log did not acknowledge the command; nothing changed, try again")
}

async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    let entry = visible_entry(&state, &caller, &id).await?;
    let (new_id, token) = replay_entry(&state, &entry, &caller.name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(CommandOut { id, state: "replayed", replay_delivery_id: Some(new_id), consistency_token: token }),
    ))
}

async fn discard(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    let entry = visible_entry(&state, &caller, &id).await?;
    if entry.state.as_deref() != Some("open") || !claim(&state, &id, "discard", &caller.name).await? {
        return Err(ApiProblem::Conflict(format!("DLQ entry {id} was already replayed or discarded")));
    }
    let d = commands::discard(&moved_from(&entry), &caller.name, time::now_ms());
    let key = entry.endpoint_id.clone().unwrap_or_default();
    let bytes = state.codec.encode(&d).map_err(ApiProblem::internal)?;
    match state.producer.send(&state.topics.events, key.as_bytes(), &bytes).await {
        Ok((p, o)) => Ok(Json(CommandOut {
            id,
            state: "discarded",
            replay_delivery_id: None,
            consistency_token: format!("{p}:{o}"),
        })),
        Err(e) => {
            unclaim(&state, &id).await;
            Err(unavailable(e))
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BulkIn {
    pub tenant_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub event_type: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Most entries to replay (default 1000, at most 10000).
    pub max: Option<usize>,
}

async fn bulk_replay(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<BulkIn>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiProblem> {
    let Json(filter) = body?;
    let tenant = tenant_of(&caller, filter.tenant_id.as_deref())?;
    let max = filter.max.unwrap_or(1000);
    if !(1..=MAX_BULK).contains(&max) {
        return Err(ApiProblem::invalid("max", format!("must be between 1 and {MAX_BULK}")));
    }
    let until = filter.until.unwrap_or_else(|| time::now_ms() + 60_000);
    let since = filter.since.unwrap_or(until - crate::params::DEFAULT_WINDOW_MS);
    if since > until {
        return Err(ApiProblem::invalid("since", "must not be after until"));
    }
    let job_id = format!("job_{}", uuid::Uuid::now_v7().simple());
    let store = state.reader().store.clone();
    let q = format!(
        "INSERT INTO {}.dlq_jobs (job_id, tenant_id, filter, state, total, replayed, skipped, failed, created_at, updated_at) \
         VALUES (?, ?, ?, 'running', 0, 0, 0, 0, ?, ?) USING TTL 604800",
        store.keyspace
    );
    let now = CqlTimestamp(time::now_ms());
    let filter_json = serde_json::to_string(&filter).unwrap_or_default();
    store.session.query_unpaged(q, (&job_id, &tenant, &filter_json, now, now)).await.map_err(ApiProblem::internal)?;
    let (s, j, actor) = (state.clone(), job_id.clone(), caller.name.clone());
    tokio::spawn(async move {
        if let Err(e) = run_bulk(&s, &j, &tenant, &filter, since, until, max, &actor).await {
            tracing::error!(job_id = j, error = ?e, "bulk replay failed");
            let _ = update_job(&s, &j, "failed", (0, 0, 0, 0)).await;
        }
    });
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "job_id": job_id, "state": "running" }))))
}

#[allow(clippy::too_many_arguments)]
async fn run_bulk(
    state: &AppState,
    job_id: &str,
    tenant: &str,
    f: &BulkIn,
    since: i64,
    until: i64,
    max: usize,
    actor: &str,
) -> Result<(), ApiProblem> {
    let reader = state.reader();
    let (mut total, mut replayed, mut skipped, mut failed) = (0i32, 0i32, 0i32, 0i32);
    let mut cursor = None;
    loop {
        let page = reader
            .dlq(tenant, f.endpoint_id.as_deref(), f.event_type.as_deref(), since, until, cursor, 200)
            .await
            .map_err(ApiProblem::internal)?;
        for s in &page.data {
            if total as usize >= max {
                break;
            }
            total += 1;
            match reader.dlq_entry(&s.id).await.map_err(ApiProblem::internal)? {
                Some(entry) => match replay_entry(state, &entry, actor).await {
                    Ok(_) => replayed += 1,
                    Err(ApiProblem::Conflict(_)) => skipped += 1,
                    Err(_) => failed += 1,
                },
                None => skipped += 1,
            }
            if total % 50 == 0 {
                update_job(state, job_id, "running", (total, replayed, skipped, failed)).await?;
            }
        }
        match page.next_cursor {
            Some(c) if (total as usize) < max && !page.data.is_empty() => {
                cursor = hookline_projector::query::Cursor::parse(&c)
            }
            _ => break,
        }
    }
    update_job(state, job_id, "done", (total, replayed, skipped, failed)).await
}

async fn update_job(state: &AppState, job_id: &str, st: &str, c: (i32, i32, i32, i32)) -> Result<(), ApiProblem> {
    let store = &state.reader().store;
    let q = format!(
        "UPDATE {}.dlq_jobs USING TTL 604800 SET state = ?, total = ?, replayed = ?, skipped = ?, failed = ?, updated_at = ? \
         WHERE job_id = ?",
        store.keyspace
    );
    store
        .session
        .query_unpaged(q, (st, c.0, c.1, c.2, c.3, CqlTimestamp(time::now_ms()), job_id))
        .await
        .map_err(ApiProblem::internal)?;
    Ok(())
}

async fn job(
    State(state): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    let store = &state.reader().store;
    let q = format!(
        "SELECT tenant_id, filter, state, total, replayed, skipped, failed, created_at, updated_at FROM {}.dlq_jobs WHERE job_id = ?",
        store.keyspace
    );
    type Row = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i32>,
        Option<i32>,
        Option<i32>,
        Option<i32>,
        Option<CqlTimestamp>,
        Option<CqlTimestamp>,
    );
    let r = store.session.query_unpaged(q, (&job_id,)).await.map_err(ApiProblem::internal)?;
    let rows = r.into_rows_result().map_err(ApiProblem::internal)?;
    let row: Option<Row> = rows.maybe_first_row().map_err(ApiProblem::internal)?;
    let row = row.filter(|r| r.0.as_deref().is_some_and(|t| caller.can_see(t))).ok_or(ApiProblem::NotFound("job"))?;
    Ok(Json(serde_json::json!({
        "job_id": job_id,
        "tenant_id": row.0,
        "filter": row.1.and_then(|f| serde_json::from_str::<serde_json::Value>(&f).ok()),
        "state": row.2,
        "total": row.3, "replayed": row.4, "skipped": row.5, "failed": row.6,
        "created_at": row.7.map(|t| t.0), "updated_at": row.8.map(|t| t.0),
    })))
}
