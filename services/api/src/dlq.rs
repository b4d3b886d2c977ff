//! The dead-letter queue: list, inspect, replay, discard, and bulk replay by filter.
//!
//! A command first *claims* the entry (a lightweight transaction on `dlq_claims`), so two
//! operators replaying the same entry at once get one replay and one 409. Then it appends its
//! records (DLQReplayed + a new DeliveryRequested that keeps the webhook-id, or DLQDiscarded)
//! and answers with a consistency token: the log position of its event. A read given that
//! token waits (bounded) until the projection has passed it, so the entry is gone from the list.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine;
use hookline_domain::{commands, time};
use hookline_projector::query::{Attempt, DlqEntry, DlqSummary, Page};
use hookline_schemas::{Envelope, MovedToDLQ};
use scylla::value::CqlTimestamp;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::endpoints::TenantId;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::params::Params;
use crate::problem::ApiProblem;

/// Longest a read waits for the projection to reach a consistency token.
pub const CONSISTENCY_WAIT: Duration = Duration::from_secs(5);
/// Most entries one bulk replay touches.
pub const MAX_BULK: usize = 10_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(bulk_replay))
        .routes(routes!(job))
        .routes(routes!(get_one, discard))
        .routes(routes!(replay))
}

/// A DLQ entry with its payload.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DlqEntryWithPayload)]
pub struct EntryOut {
    #[serde(flatten)]
    pub entry: DlqEntry,
    /// The payload as sent by the producer: text when it is UTF-8, else base64.
    pub payload: String,
    pub payload_encoding: PayloadEncoding,
}

/// How `payload` is written.
#[derive(Serialize, utoipa::ToSchema)]
pub enum PayloadEncoding {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "base64")]
    Base64,
}

fn entry_out(entry: DlqEntry) -> EntryOut {
    let (payload, payload_encoding) = match std::str::from_utf8(&entry.payload) {
        Ok(s) => (s.to_string(), PayloadEncoding::Utf8),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(&entry.payload), PayloadEncoding::Base64),
    };
    EntryOut { entry, payload, payload_encoding }
}

/// Query of `GET /api/webhooks/dlq`: open entries of one tenant, newest first.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DlqQuery {
    /// The tenant (required for admin tokens; a tenant token may only name its own).
    #[param(value_type = Option<TenantId>)]
    tenant_id: Option<String>,
    endpoint_id: Option<String>,
    event_type: Option<String>,
    /// Window start, Unix milliseconds (default: 7 days before `until`).
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    since: Option<i64>,
    /// Window end, Unix milliseconds (default: a minute from now).
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    until: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<i64>,
    /// A command's `consistency_token`: the read waits (at most 5 s) until the projection has
    /// applied that command.
    consistency: Option<String>,
}

/// Query of `GET /api/webhooks/dlq/{id}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ConsistencyQuery {
    /// A command's `consistency_token` (see the DLQ list).
    consistency: Option<String>,
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
        (None, Some(t)) => crate::auth::validate_tenant(t, "tenant_id").map(|_| t.to_string()),
        (None, None) => Err(ApiProblem::invalid("tenant_id", "an admin token must name the tenant")),
    }
}

/// Open DLQ entries of a tenant, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/webhooks/dlq",
    operation_id = "list_dlq",
    tag = "dlq",
    params(DlqQuery),
    responses(
        (status = OK, description = "A page of open entries", body = Page<DlqSummary>),
        (status = FORBIDDEN, description = "A tenant token named another tenant"),
    )
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery,
) -> Result<impl IntoResponse, ApiProblem> {
    let p = Params::documented::<DlqQuery>(q)?;
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

/// A DLQ entry and every attempt of its delivery.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DlqEntryDetail {
    pub entry: EntryOut,
    pub attempts: Vec<Attempt>,
}

/// One DLQ entry (open or handled) with its payload and every attempt.
#[utoipa::path(
    get,
    path = "/api/webhooks/dlq/{id}",
    operation_id = "get_dlq_entry",
    tag = "dlq",
    params(("id" = String, Path, description = "DLQ entry id"), ConsistencyQuery),
    responses(
        (status = OK, description = "The entry", body = DlqEntryDetail),
        (status = NOT_FOUND, description = "No such entry (or not this tenant's)"),
    )
)]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery,
) -> Result<impl IntoResponse, ApiProblem> {
    let p = Params::documented::<ConsistencyQuery>(q)?;
    wait_for_token(&state, p.str("consistency")).await?;
    let entry = visible_entry(&state, &caller, &id).await?;
    let attempts = match &entry.delivery_id {
        Some(d) => state.reader().attempts(d).await.map_err(ApiProblem::internal)?,
        None => vec![],
    };
    Ok(Json(DlqEntryDetail { entry: entry_out(entry), attempts }))
}

/// The outcome of a replay or discard.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DlqCommandAccepted)]
pub struct CommandOut {
    /// The DLQ entry.
    pub id: String,
    /// `replayed` or `discarded`.
    #[schema(example = "replayed")]
    pub state: &'static str,
    /// The new delivery of a replay (same `webhook-id` as the original).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_delivery_id: Option<String>,
    /// Pass as `consistency=` to a DLQ read to see the command applied.
    #[schema(example = "3:1042")]
    pub consistency_token: String,
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

/// Replays an open entry: a new delivery with the same `webhook-id`.
#[utoipa::path(
    post,
    path = "/api/webhooks/dlq/{id}/replay",
    operation_id = "replay_dlq_entry",
    tag = "dlq",
    params(("id" = String, Path, description = "DLQ entry id")),
    responses(
        (status = ACCEPTED, description = "Replayed", body = CommandOut),
        (status = NOT_FOUND, description = "No such entry (or not this tenant's)"),
        (status = CONFLICT, description = "The entry was already replayed or discarded"),
        (status = SERVICE_UNAVAILABLE, description = "The event log did not acknowledge; nothing changed"),
    )
)]
async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    let entry = visible_entry(&state, &caller, &id).await?;
    let (new_id, token) = replay_entry(&state, &entry, &caller.name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(CommandOut { id, state: "replayed", replay_delivery_id: Some(new_id), consistency_token: token }),
    ))
}

/// Discards an open entry.
#[utoipa::path(
    delete,
    path = "/api/webhooks/dlq/{id}",
    operation_id = "discard_dlq_entry",
    tag = "dlq",
    params(("id" = String, Path, description = "DLQ entry id")),
    responses(
        (status = OK, description = "Discarded", body = CommandOut),
        (status = NOT_FOUND, description = "No such entry (or not this tenant's)"),
        (status = CONFLICT, description = "The entry was already replayed or discarded"),
        (status = SERVICE_UNAVAILABLE, description = "The event log did not acknowledge; nothing changed"),
    )
)]
async fn discard(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
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

/// Which open entries a bulk replay takes.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BulkReplayFilter)]
pub struct BulkIn {
    /// The tenant (required for admin tokens; a tenant token may only name its own).
    #[schema(value_type = Option<TenantId>)]
    pub tenant_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub event_type: Option<String>,
    /// Window start, Unix milliseconds (default: 7 days before `until`).
    #[schema(minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub since: Option<i64>,
    /// Window end, Unix milliseconds (default: a minute from now).
    #[schema(minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub until: Option<i64>,
    /// Most entries to replay (default 1000, at most 10000).
    #[schema(minimum = 1, maximum = 10000)]
    pub max: Option<usize>,
}

/// A bulk replay job that started.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = BulkReplayStarted)]
pub struct JobStarted {
    pub job_id: String,
    /// Always `running`.
    #[schema(example = "running")]
    pub state: &'static str,
}

/// Starts replaying every open entry that matches the filter; follow it with the job id.
#[utoipa::path(
    post,
    path = "/api/webhooks/dlq/replay",
    operation_id = "bulk_replay_dlq",
    tag = "dlq",
    request_body = BulkIn,
    responses(
        (status = ACCEPTED, description = "The job started", body = JobStarted),
        (status = FORBIDDEN, description = "A tenant token named another tenant"),
    )
)]
async fn bulk_replay(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(filter): ApiJson<BulkIn>,
) -> Result<impl IntoResponse, ApiProblem> {
    let tenant = tenant_of(&caller, filter.tenant_id.as_deref())?;
    let max = filter.max.unwrap_or(1000);
    if !(1..=MAX_BULK).contains(&max) {
        return Err(ApiProblem::invalid("max", format!("must be between 1 and {MAX_BULK}")));
    }
    let (since, until) = crate::params::window(filter.since, filter.until)?;
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
    Ok((StatusCode::ACCEPTED, Json(JobStarted { job_id, state: "running" })))
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

/// Progress of a bulk replay job.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = BulkReplayJob)]
pub struct JobOut {
    pub job_id: String,
    pub tenant_id: Option<String>,
    /// The filter the job was started with.
    pub filter: Option<BulkIn>,
    /// `running`, `done` or `failed`.
    #[schema(example = "done")]
    pub state: Option<String>,
    /// Entries looked at so far.
    pub total: Option<i32>,
    pub replayed: Option<i32>,
    /// Entries already replayed or discarded by someone else.
    pub skipped: Option<i32>,
    pub failed: Option<i32>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// A bulk replay job's progress (jobs are kept 7 days).
#[utoipa::path(
    get,
    path = "/api/webhooks/dlq/jobs/{job_id}",
    operation_id = "get_bulk_replay_job",
    tag = "dlq",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = OK, description = "The job", body = JobOut),
        (status = NOT_FOUND, description = "No such job (or not this tenant's)"),
    )
)]
async fn job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(job_id): ApiPath<String>,
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
    Ok(Json(JobOut {
        job_id,
        tenant_id: row.0,
        filter: row.1.and_then(|f| serde_json::from_str::<BulkIn>(&f).ok()),
        state: row.2,
        total: row.3,
        replayed: row.4,
        skipped: row.5,
        failed: row.6,
        created_at: row.7.map(|t| t.0),
        updated_at: row.8.map(|t| t.0),
    }))
}
