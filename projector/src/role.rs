//! The projector role: consumes the deliveries, events and endpoints topics and keeps the CQL
//! read models current.
//!
//! Exactness across a kill -9: row writes are idempotent (see `apply`). Health aggregates (and
//! the open-DLQ count of each endpoint) are absolute values kept per events-topic partition (every event of an endpoint lands in one
//! partition, since the key is the endpoint id); they are written *together with* that
//! partition's checkpoint in one logged batch. After a restart the checkpoint says which events
//! are already counted, so none is counted twice. Kafka offsets are committed only after the
//! CQL writes, so they never run ahead of the checkpoint.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use hookline_config::Config;
use hookline_kafka::rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use hookline_kafka::rdkafka::error as rdkafka_error;
use hookline_kafka::rdkafka::{ClientContext, Message};
use hookline_kafka::{KafkaError, Topics, consumer};
use hookline_schemas::{AnyEvent, Codec};
use scylla::statement::batch::{Batch, BatchType};
use scylla::value::{CqlTimestamp, CqlValue};
use tokio_util::sync::CancellationToken;

use crate::apply::{self, Statements};
use crate::schema::{self, HEALTH_BUCKET_MS, LATENCY_BOUNDS_MS};
use crate::store::{CqlError, Store};

const MAX_BATCH: usize = 2000;
const WRITE_CONCURRENCY: usize = 64;
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Cql(#[from] CqlError),
}

#[derive(Default)]
struct RebalanceLog {
    revoked: Mutex<Vec<(String, i32)>>,
}
impl ClientContext for RebalanceLog {}
impl ConsumerContext for RebalanceLog {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            let mut v = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            v.extend(tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())));
        }
    }
}

/// Health of one endpoint in one minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agg {
    pub successes: i32,
    pub failures: i32,
    pub latency_sum_ms: i64,
    pub buckets: Vec<i32>,
    /// DeliveryDeferred events (rate limited or circuit open; no attempt used).
    pub deferred: i32,
    /// MovedToDLQ events.
    pub dead_lettered: i32,
}

/// What one event adds to its endpoint's minute.
enum Tally {
    Attempt { ok: bool, latency_ms: i32 },
    Deferred,
    DeadLettered,
}

impl Agg {
    fn tally(&mut self, t: Tally) {
        match t {
            Tally::Attempt { ok, latency_ms } => self.add(ok, latency_ms),
            Tally::Deferred => self.deferred += 1,
            Tally::DeadLettered => self.dead_lettered += 1,
        }
    }

    fn add(&mut self, ok: bool, latency_ms: i32) {
        if self.buckets.len() != LATENCY_BOUNDS_MS.len() + 1 {
            self.buckets.resize(LATENCY_BOUNDS_MS.len() + 1, 0);
        }
        if ok {
            self.successes += 1;
        } else {
            self.failures += 1;
        }
        self.latency_sum_ms += i64::from(latency_ms.max(0));
        let i = LATENCY_BOUNDS_MS.iter().position(|&b| latency_ms <= b).unwrap_or(LATENCY_BOUNDS_MS.len());
        self.buckets[i] += 1;
    }
}

type AggKey = (String, i64);

/// Projection state of one events-topic partition.
struct EventsPartition {
    /// Events below this offset are already applied, aggregates included.
    checkpoint: i64,
    aggs: HashMap<AggKey, Agg>,
    dirty: HashSet<AggKey>,
    /// Open DLQ entries per endpoint (absolute; loaded on first sight), and those changed.
    dlq_open: HashMap<String, i64>,
    dlq_dirty: HashSet<String>,
    /// Next offset after the last applied event (to checkpoint).
    applied_to: Option<i64>,
}

/// How often the live projector checks whether a rebuild switched the active table set.
const SET_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The consumer group that fills table set `suffix`.
pub fn group_for(config: &Config, suffix: &str) -> String {
    format!("{}projector{suffix}", config.kafka.topic_prefix)
}

/// Runs the projector into the active table set until `shutdown`; when a rebuild switches the
/// active set, continues into the new set from where the rebuild's group stopped.
pub async fn run(config: Arc<Config>, codec: Arc<Codec>, shutdown: CancellationToken) -> Result<(), ProjectorError> {
    let store = Store::connect(&config.cql).await?;
    schema::migrate(&store, config.cql.replication_factor, config.projector.retention_days).await?;
    loop {
        let suffix = schema::active_suffix(&store).await?;
        let child = shutdown.child_token();
        let watcher = {
            let (store, child, suffix) = (store.clone(), child.clone(), suffix.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = child.cancelled() => return,
                        _ = tokio::time::sleep(SET_CHECK_EVERY) => {}
                    }
                    if schema::active_suffix(&store).await.is_ok_and(|s| s != suffix) {
                        child.cancel();
                        return;
                    }
                }
            })
        };
        let group = group_for(&config, &suffix);
        let r = project(config.clone(), codec.clone(), store.clone(), &suffix, &group, child.clone(), None).await;
        child.cancel();
        let _ = watcher.await;
        r?;
        if shutdown.is_cancelled() {
            return Ok(());
        }
        tracing::info!(from = suffix, "projector: the active table set changed; following it");
    }
}

/// `hookline projector rebuild`: replays every topic from the beginning into a fresh table set,
/// switches readers to it once caught up with the log as it was at the start, and drops the
/// old set after a grace period. Returns the new set's suffix.
pub async fn rebuild(
    config: Arc<Config>,
    codec: Arc<Codec>,
    shutdown: CancellationToken,
) -> Result<String, ProjectorError> {
    let store = Store::connect(&config.cql).await?;
    schema::migrate(&store, config.cql.replication_factor, config.projector.retention_days).await?;
    let old = schema::active_suffix(&store).await?;
    let generation = old.strip_prefix("_g").and_then(|n| n.parse::<u32>().ok()).unwrap_or(1) + 1;
    let suffix = format!("_g{generation}");
    schema::migrate_set(&store, config.cql.replication_factor, config.projector.retention_days, &suffix).await?;
    let topics = Topics::from_options(&config.kafka);
    let stop_at = end_offsets(&config, &[&topics.deliveries, &topics.events, &topics.endpoints]).await?;
    tracing::info!(suffix, partitions = stop_at.len(), "rebuild: replaying the log into a fresh table set");
    project(
        config.clone(),
        codec,
        store.clone(),
        &suffix,
        &group_for(&config, &suffix),
        shutdown.clone(),
        Some(stop_at),
    )
    .await?;
    if shutdown.is_cancelled() {
        return Ok(suffix);
    }
    schema::set_active_suffix(&store, &suffix).await?;
    tracing::info!(from = old, to = suffix, "rebuild: caught up; readers switched to the new table set");
    // Readers re-read the active set every second or so; give them time before dropping.
    tokio::time::sleep(Duration::from_secs(5)).await;
    schema::drop_set(&store, &old).await?;
    tracing::info!(dropped = old, "rebuild: old table set dropped");
    Ok(suffix)
}

/// High watermarks of every partition of `topics` (only non-empty partitions).
async fn end_offsets(config: &Config, topics: &[&str]) -> Result<HashMap<(String, i32), i64>, ProjectorError> {
    let kafka = config.kafka.clone();
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let r = tokio::task::spawn_blocking(move || -> Result<HashMap<(String, i32), i64>, rdkafka_error::KafkaError> {
        let c: BaseConsumer = hookline_kafka::client_config(&kafka).create()?;
        let mut out = HashMap::new();
        for t in topics {
            let md = c.fetch_metadata(Some(&t), Duration::from_secs(10))?;
            let ids: Vec<i32> =
                md.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
            for p in ids {
                let (_, high) = c.fetch_watermarks(&t, p, Duration::from_secs(10))?;
                if high > 0 {
                    out.insert((t.clone(), p), high);
                }
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| CqlError::Rows { statement: "end offsets".into(), reason: e.to_string() })?;
    r.map_err(|source| ProjectorError::Kafka(KafkaError::Metadata { brokers: config.kafka.brokers.clone(), source }))
}

/// Projects into table set `suffix` with consumer group `group`. With `stop_at`, returns once
/// every partition reached those end offsets (used by rebuild).
pub async fn project(
    config: Arc<Config>,
    codec: Arc<Codec>,
    store: Store,
    suffix: &str,
    group: &str,
    shutdown: CancellationToken,
    stop_at: Option<HashMap<(String, i32), i64>>,
) -> Result<(), ProjectorError> {
    let kafka = &config.kafka;
    let topics = Topics::from_options(kafka);
    let client_id = format!("hookline-projector-{}", uuid::Uuid::now_v7().simple());
    // The broker answers a fetch once 256 KiB are there or after 100 ms: under a steady load the
    // projector writes a few large batches a second instead of one small batch per record set
    // (each batch also costs a logged checkpoint batch); the read model trails by ≤ 100 ms more.
    let consumer: StreamConsumer<RebalanceLog> = consumer::base_config(kafka, group, &client_id)
        .set("fetch.wait.max.ms", "100")
        .set("fetch.min.bytes", "262144")
        .create_with_context(RebalanceLog::default())
        .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    consumer
        .subscribe(&[&topics.deliveries, &topics.events, &topics.endpoints])
        .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    let st = Statements::prepare(&store.session, &store.keyspace, suffix).await?;
    let ttl = (config.projector.retention_days as i32).saturating_mul(86_400);
    let mut parts: HashMap<i32, EventsPartition> = HashMap::new();
    let age = consumer::age_histogram("projector");
    let mut remaining = stop_at;
    tracing::info!(role = "projector", suffix, "started");

    loop {
        if let Some(r) = remaining.as_mut() {
            // Positions, not message offsets: transaction markers are never delivered.
            if let Ok(pos) = consumer.position() {
                r.retain(|(t, p), end| {
                    pos.find_partition(t, *p).and_then(|e| e.offset().to_raw()).is_none_or(|at| at < *end)
                });
            }
            if r.is_empty() {
                break;
            }
        }
        let revoked: Vec<_> =
            std::mem::take(&mut *consumer.context().revoked.lock().unwrap_or_else(|p| p.into_inner()));
        for (t, p) in revoked {
            if t == topics.events {
                parts.remove(&p);
            }
        }
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(250)), if remaining.is_some() => continue,
            m = consumer.recv() => m,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match consumer.recv().now_or_never() {
                Some(m) => batch.push(m),
                None => break,
            }
        }
        let mut records = Vec::with_capacity(batch.len());
        for m in batch {
            match m {
                Ok(m) => {
                    consumer::observe_age(&age, &m);
                    records.push(m)
                }
                Err(e) => tracing::warn!(error = %e, "projector: consumer error"),
            }
        }

        // Checkpoints of events partitions seen for the first time.
        for m in &records {
            if m.topic() == topics.events && !parts.contains_key(&m.partition()) {
                let cps = read_checkpoints(&store, &st, &topics.events).await?;
                for (p, off) in cps {
                    parts.entry(p).or_insert_with(|| EventsPartition::new(off));
                }
                parts.entry(m.partition()).or_insert_with(|| EventsPartition::new(0));
            }
        }

        // Decode; skip events already counted before a restart.
        let mut to_apply = Vec::with_capacity(records.len());
        for m in &records {
            if m.topic() == topics.events && parts.get(&m.partition()).is_some_and(|p| m.offset() < p.checkpoint) {
                continue;
            }
            match m.payload().map(|b| codec.decode(b)) {
                Some(Ok(ev)) => to_apply.push((m.topic().to_string(), m.partition(), m.offset(), ev)),
                Some(Err(e)) => {
                    tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "projector: undecodable record skipped")
                }
                None => {}
            }
        }

        // Row writes, concurrently; retried until they succeed (they are idempotent).
        loop {
            let started = std::time::Instant::now();
            // Futures built up front: a closure inside the stream would defeat the `Send`
            // inference the spawned role task needs.
            // Writes of the whole batch, a few requests per node (see `apply::group`).
            let mut rows = Vec::with_capacity(to_apply.len() * 4);
            let view = apply::BatchView::of(to_apply.iter().map(|(_, _, _, ev)| ev));
            for (_, _, _, ev) in &to_apply {
                apply::writes(&st, ev, ttl, &view, &mut rows);
            }
            let row_writes = rows.len() as u64;
            let placement = apply::Placement::of(&store.session);
            let mut writes = Vec::new();
            for g in apply::group(rows, &placement) {
                writes.push(apply::execute(&store.session, g));
            }
            let results: Vec<Result<(), CqlError>> =
                futures::stream::iter(writes).buffer_unordered(WRITE_CONCURRENCY).collect().await;
            let m = hookline_telemetry::metrics();
            let ok = if results.iter().all(Result::is_ok) { "ok" } else { "error" };
            hookline_telemetry::observe(&m.cql_call_duration, &m.cql_calls, "apply_batch", ok, started.elapsed());
            if ok == "ok" {
                m.projector_events.inc_by(to_apply.len() as u64);
                m.projector_rows.inc_by(row_writes);
            }
            match results.into_iter().find(Result::is_err) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "projector: CQL write failed; retrying the batch");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(RETRY_BACKOFF) => {}
                    }
                }
                Some(Ok(())) => break,
            }
        }

        // Health aggregates, then one logged batch per events partition with its checkpoint.
        for (topic, p, offset, ev) in &to_apply {
            if *topic != topics.events {
                continue;
            }
            let Some(part) = parts.get_mut(p) else { continue };
            part.applied_to = Some(part.applied_to.map_or(offset + 1, |a| a.max(offset + 1)));
            let tally = match ev {
                AnyEvent::AttemptSucceeded(s) => Some(Tally::Attempt { ok: true, latency_ms: s.duration_ms }),
                AnyEvent::AttemptFailed(f) => Some(Tally::Attempt { ok: false, latency_ms: f.duration_ms }),
                AnyEvent::DeliveryDeferred(_) => Some(Tally::Deferred),
                AnyEvent::MovedToDLQ(_) => Some(Tally::DeadLettered),
                _ => None,
            };
            let e = ev.envelope();
            if let Some(t) = tally {
                let key = (e.endpoint_id.clone().unwrap_or_default(), e.occurred_at / 60_000 * 60_000);
                if !part.aggs.contains_key(&key) {
                    let loaded = read_agg(&store, &st, &key).await?;
                    part.aggs.insert(key.clone(), loaded);
                }
                if let Some(a) = part.aggs.get_mut(&key) {
                    a.tally(t);
                }
                part.dirty.insert(key);
            }
            let dlq_delta = match ev {
                AnyEvent::MovedToDLQ(_) => 1,
                AnyEvent::DLQReplayed(_) | AnyEvent::DLQDiscarded(_) => -1,
                _ => 0,
            };
            if let Some(ep) = e.endpoint_id.as_deref().filter(|ep| dlq_delta != 0 && !ep.is_empty()) {
                if !part.dlq_open.contains_key(ep) {
                    let loaded = read_dlq_open(&store, &st, ep).await?;
                    part.dlq_open.insert(ep.to_string(), loaded);
                }
                if let Some(n) = part.dlq_open.get_mut(ep) {
                    // Never below zero: a command retried after a broker timeout can repeat its event.
                    *n = (*n + dlq_delta).max(0);
                }
                part.dlq_dirty.insert(ep.to_string());
            }
        }
        for (&p, part) in parts.iter_mut() {
            let Some(next) = part.applied_to.take() else { continue };
            flush(&store, &st, &topics.events, p, next, part, ttl).await?;
        }

        // Only now may Kafka's offsets move.
        for m in &records {
            let _ = consumer.store_offset_from_message(m);
        }
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
            tracing::debug!(error = %e, "projector: offset commit deferred");
        }
    }
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    tracing::info!(role = "projector", "stopped");
    Ok(())
}

impl EventsPartition {
    fn new(checkpoint: i64) -> Self {
        Self {
            checkpoint,
            aggs: HashMap::new(),
            dirty: HashSet::new(),
            dlq_open: HashMap::new(),
            dlq_dirty: HashSet::new(),
            applied_to: None,
        }
    }
}

async fn read_checkpoints(store: &Store, st: &Statements, topic: &str) -> Result<Vec<(i32, i64)>, CqlError> {
    let r = store
        .session
        .execute_unpaged(&st.read_checkpoints, (topic,))
        .await
        .map_err(|e| CqlError::Execute { statement: "read checkpoints".into(), source: Box::new(e) })?
        .into_rows_result()
        .map_err(|e| CqlError::Rows { statement: "read checkpoints".into(), reason: e.to_string() })?;
    let rows = r
        .rows::<(i32, Option<i64>)>()
        .map_err(|e| CqlError::Rows { statement: "read checkpoints".into(), reason: e.to_string() })?;
    Ok(rows.filter_map(Result::ok).map(|(p, o)| (p, o.unwrap_or(0))).collect())
}

async fn read_agg(store: &Store, st: &Statements, key: &AggKey) -> Result<Agg, CqlError> {
    let (endpoint, minute) = key;
    let r = store
        .session
        .execute_unpaged(&st.read_health, (endpoint.as_str(), minute / HEALTH_BUCKET_MS, CqlTimestamp(*minute)))
        .await
        .map_err(|e| CqlError::Execute { statement: "read health".into(), source: Box::new(e) })?
        .into_rows_result()
        .map_err(|e| CqlError::Rows { statement: "read health".into(), reason: e.to_string() })?;
    type HealthRow = (Option<i32>, Option<i32>, Option<i64>, Option<Vec<i32>>, Option<i32>, Option<i32>);
    let row: Option<HealthRow> =
        r.maybe_first_row().map_err(|e| CqlError::Rows { statement: "read health".into(), reason: e.to_string() })?;
    Ok(row
        .map(|(s, f, l, b, d, x)| Agg {
            successes: s.unwrap_or(0),
            failures: f.unwrap_or(0),
            latency_sum_ms: l.unwrap_or(0),
            buckets: b.unwrap_or_default(),
            deferred: d.unwrap_or(0),
            dead_lettered: x.unwrap_or(0),
        })
        .unwrap_or_default())
}

async fn read_dlq_open(store: &Store, st: &Statements, endpoint: &str) -> Result<i64, CqlError> {
    let r = store
        .session
        .execute_unpaged(&st.read_dlq_open, (endpoint,))
        .await
        .map_err(|e| CqlError::Execute { statement: "read dlq_open".into(), source: Box::new(e) })?
        .into_rows_result()
        .map_err(|e| CqlError::Rows { statement: "read dlq_open".into(), reason: e.to_string() })?;
    let row: Option<(Option<i64>,)> =
        r.maybe_first_row().map_err(|e| CqlError::Rows { statement: "read dlq_open".into(), reason: e.to_string() })?;
    Ok(row.and_then(|r| r.0).unwrap_or(0))
}

/// Writes the dirty aggregates of partition `p` and its checkpoint atomically (logged batch).
async fn flush(
    store: &Store,
    st: &Statements,
    topic: &str,
    p: i32,
    next: i64,
    part: &mut EventsPartition,
    ttl: i32,
) -> Result<(), CqlError> {
    let mut batch = Batch::new(BatchType::Logged);
    let mut values: Vec<Vec<CqlValue>> = Vec::with_capacity(part.dirty.len() + 1);
    for key in &part.dirty {
        let Some(a) = part.aggs.get(key) else { continue };
        batch.append_statement(st.health.clone());
        values.push(vec![
            CqlValue::Int(ttl),
            CqlValue::Int(a.successes),
            CqlValue::Int(a.failures),
            CqlValue::BigInt(a.latency_sum_ms),
            CqlValue::List(a.buckets.iter().map(|&b| CqlValue::Int(b)).collect()),
            CqlValue::Int(a.deferred),
            CqlValue::Int(a.dead_lettered),
            CqlValue::Text(key.0.clone()),
            CqlValue::BigInt(key.1 / HEALTH_BUCKET_MS),
            CqlValue::Timestamp(CqlTimestamp(key.1)),
        ]);
    }
    for endpoint in &part.dlq_dirty {
        let Some(&open) = part.dlq_open.get(endpoint) else { continue };
        batch.append_statement(st.dlq_open.clone());
        values.push(vec![CqlValue::BigInt(open), CqlValue::Text(endpoint.clone())]);
    }
    batch.append_statement(st.checkpoint.clone());
    values.push(vec![
        CqlValue::BigInt(next),
        CqlValue::Timestamp(CqlTimestamp(hookline_domain::time::now_ms())),
        CqlValue::Text(topic.to_string()),
        CqlValue::Int(p),
    ]);
    store
        .session
        .batch(&batch, values)
        .await
        .map_err(|e| CqlError::Execute { statement: "health + checkpoint batch".into(), source: Box::new(e) })?;
    part.dirty.clear();
    part.dlq_dirty.clear();
    part.checkpoint = next;
    // Keep the cache small: minutes older than two hours rarely receive events.
    let horizon = hookline_domain::time::now_ms() - 2 * 3_600_000;
    part.aggs.retain(|(_, minute), _| *minute >= horizon);
    Ok(())
}
