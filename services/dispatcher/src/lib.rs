//! The dispatcher role: one consumer group over the deliveries topic.
//!
//! - [`offsets`]: gap-aware commit position per partition (the lowest unfinished record).
//! - [`request`]: the signed HTTP request of one delivery.
//! - [`outcome`]: what an attempt's result means, as records (events, retries, DLQ).
//! - [`flow`]: the circuit breaker and rate limit in front of every attempt (shared in Redis).
//!
//! Concurrency: inside a partition, different endpoints proceed concurrently, each under an
//! in-flight cap with a FIFO queue of its own, so a slow or dead endpoint never stalls the
//! others. A partition with too many unfinished records is paused (memory stays bounded) and
//! resumed once it drains.
//!
//! Exactly-once records: one task (the loop below) owns the transactional producer. HTTP runs
//! in spawned tasks that hand their outcome back; the loop produces the outcome records and,
//! every [`COMMIT_INTERVAL`], commits them together with the committable offsets. A crash
//! aborts the open transaction: its deliveries are attempted again (same `webhook-id`) and
//! their outcomes are recorded once.

pub mod flow;
pub mod offsets;
pub mod outcome;
pub mod request;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookline_config::Config;
use hookline_domain::retry::RetryPolicy;
use hookline_domain::sealing::MasterKeys;
use hookline_domain::time;
use hookline_domain::transform::TemplateEngine;
use hookline_kafka::catalog::Catalog;
use hookline_kafka::rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use hookline_kafka::rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use hookline_kafka::txn::TxnProducer;
use hookline_kafka::{KafkaError, Topics, consumer};
use hookline_outbound::{OutboundClient, OutboundOptions};
use hookline_schemas::{AnyEvent, Codec, DeliveryRequested};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::offsets::PartitionOffsets;
use crate::outcome::{AttemptResult, Context, Output};
use crate::request::Prepared;

/// How often outcome records and offsets are committed.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(50);
/// Longest a graceful shutdown waits for in-flight deliveries.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Outbound(#[from] hookline_outbound::OutboundError),
    #[error("{0}")]
    MasterKeys(String),
}

/// Records partitions taken away by a rebalance, for the loop to forget.
#[derive(Default)]
struct RebalanceLog {
    revoked: Mutex<Vec<(String, i32)>>,
}

impl ClientContext for RebalanceLog {}

impl ConsumerContext for RebalanceLog {
    fn pre_rebalance(&self, _c: &hookline_kafka::rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            let mut v = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            v.extend(tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())));
        }
    }

    fn post_rebalance(&self, _c: &hookline_kafka::rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            // Cooperative rebalances call back with empty lists when nothing changed.
            Rebalance::Assign(tpl) if tpl.count() > 0 => {
                let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(partitions = ?parts, "dispatcher: partitions assigned");
            }
            Rebalance::Assign(_) => {}
            Rebalance::Revoke(tpl) if tpl.count() > 0 => {
                let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(partitions = ?parts, "dispatcher: partitions revoked");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "dispatcher: rebalance error"),
        }
    }
}

type Consumer_ = StreamConsumer<RebalanceLog>;

/// One delivery waiting for, or holding, an endpoint slot.
struct Job {
    partition: i32,
    offset: i64,
    delivery: DeliveryRequested,
}

struct Done {
    partition: i32,
    offset: i64,
    endpoint_id: String,
    outputs: Vec<Output>,
    endpoint_update: Option<hookline_schemas::EndpointUpserted>,
    /// Generation of the partition when the job started; a stale result is dropped.
    generation: u64,
}

#[derive(Default)]
struct EndpointSlots {
    running: usize,
    waiting: VecDeque<Job>,
}

struct Partition {
    offsets: PartitionOffsets,
    paused: bool,
    generation: u64,
}

/// Runs the dispatcher until `shutdown`, after the catalog is loaded.
pub async fn run(
    config: Arc<Config>,
    catalog: Catalog,
    codec: Arc<Codec>,
    master_keys: Arc<MasterKeys>,
    shutdown: CancellationToken,
) -> Result<(), DispatcherError> {
    tokio::select! {
        _ = catalog.wait_loaded() => {}
        _ = shutdown.cancelled() => return Ok(()),
    }
    let endpoints = catalog.list(None);
    let opened = request::check_master_keys(endpoints.iter().map(|e| &**e), &master_keys)
        .map_err(DispatcherError::MasterKeys)?;
    tracing::info!(keys = opened, "master keys open every active signing key");
    let engine = Arc::new(TemplateEngine::default());
    let prepared: Arc<Mutex<HashMap<String, Arc<Prepared>>>> = Arc::default();
    let kafka = &config.kafka;
    let d = &config.dispatcher;
    let topics = Topics::from_options(kafka);
    let group = format!("{}dispatcher", kafka.topic_prefix);
    let client_id = format!("hookline-dispatcher-{}", uuid::Uuid::now_v7().simple());
    let consumer: Consumer_ = consumer::base_config(kafka, &group, &client_id)
        .set("fetch.wait.max.ms", "20")
        .create_with_context(RebalanceLog::default())
        .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    consumer
        .subscribe(&[&topics.deliveries])
        .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    let mut producer = TxnProducer::new(kafka, &hookline_kafka::txn::transactional_id(kafka, "dispatcher"))?;
    let client = OutboundClient::new(OutboundOptions::from_config(d))?;
    let max_timeout = Duration::from_millis(d.max_timeout_ms);
    let default_policy = RetryPolicy { delays_ms: d.retry_schedule_ms.clone(), jitter: d.retry_jitter };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let flow = flow::Flow::start(&config.redis, &config.flow, shutdown.clone());
    let (changes_tx, mut changes_rx) = mpsc::unbounded_channel::<Vec<flow::BreakerChange>>();
    let sync_every = Duration::from_millis(config.flow.breaker_sync_ms);
    let sync_task = {
        let (flow, stop) = (flow.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(sync_every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    // One last report after shutdown so outcomes are not forgotten.
                    _ = stop.cancelled() => {
                        let _ = changes_tx.send(flow.sync().await);
                        return;
                    }
                }
                let changes = flow.sync().await;
                if !changes.is_empty() && changes_tx.send(changes).is_err() {
                    return;
                }
            }
        })
    };

    let mut partitions: HashMap<i32, Partition> = HashMap::new();
    let mut endpoints: HashMap<String, EndpointSlots> = HashMap::new();
    let mut generation: u64 = 0;
    let mut tick = tokio::time::interval(COMMIT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pause_at = d.max_in_flight_per_partition;
    let resume_at = (pause_at / 2).max(1);
    let cap = d.max_in_flight_per_endpoint;
    let mut stopping = false;
    let mut drain_deadline = None;
    tracing::info!(role = "dispatcher", topic = topics.deliveries, "started");

    // Starts a job: spawns the HTTP attempt; its outcome comes back on `done_tx`.
    let start = |job: Job, generation: u64, catalog: &Catalog| {
        let ep = job.delivery.envelope.endpoint_id.as_deref().and_then(|id| catalog.get(id));
        let client = client.clone();
        let codec = codec.clone();
        let topics = topics.clone();
        let tiers = config.scheduler.tiers_ms.clone();
        let policy = match ep.as_ref().and_then(|e| e.retry_schedule_ms.clone()) {
            Some(delays) => RetryPolicy {
                delays_ms: delays.into_iter().map(|x| x.max(0) as u64).collect(),
                jitter: default_policy.jitter,
            },
            None => default_policy.clone(),
        };
        let excerpt_bytes = config.dispatcher.response_excerpt_bytes;
        let done_tx = done_tx.clone();
        let (master_keys, engine, prepared) = (master_keys.clone(), engine.clone(), prepared.clone());
        let flow = flow.clone();
        tokio::spawn(async move {
            let d = &job.delivery;
            let endpoint_id = d.envelope.endpoint_id.clone().unwrap_or_default();
            if let Some(e) = ep.as_ref().filter(|e| e.enabled)
                && let flow::Gate::Defer { cause, until_ms } =
                    flow.gate(&endpoint_id, e.rate_limit.as_ref(), e.ordered).await
            {
                let outputs = match outcome::deferred(&codec, &topics, &tiers, d, cause, until_ms) {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode deferral records");
                        return;
                    }
                };
                tracing::debug!(
                    delivery_id = d.envelope.delivery_id.as_deref(),
                    endpoint_id,
                    cause,
                    until_ms,
                    "deferred"
                );
                let _ = done_tx.send(Done {
                    partition: job.partition,
                    offset: job.offset,
                    endpoint_id,
                    outputs,
                    endpoint_update: None,
                    generation,
                });
                return;
            }
            let result = match &ep {
                None => AttemptResult::NotAttempted {
                    kind: "endpoint_deleted",
                    message: "the endpoint no longer exists".into(),
                },
                Some(e) if !e.enabled => AttemptResult::NotAttempted {
                    kind: "endpoint_disabled",
                    message: format!(
                        "the endpoint is disabled{}",
                        e.disabled_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                    ),
                },
                Some(e) => match prepare(&prepared, e, &master_keys, &engine).await {
                    Err(message) => AttemptResult::Permanent { kind: "config", message },
                    Ok(p) => match request::build(d, e, p, time::now_ms(), max_timeout).await {
                        Err(b) => AttemptResult::Permanent { kind: b.kind, message: b.message },
                        Ok(req) => match client.post(req).await {
                            Ok(r) => AttemptResult::Http(r),
                            Err(err) => AttemptResult::Failed(err),
                        },
                    },
                },
            };
            match &result {
                AttemptResult::Http(r) => flow.record(&endpoint_id, (200..300).contains(&r.status)),
                AttemptResult::Failed(_) => flow.record(&endpoint_id, false),
                AttemptResult::NotAttempted { .. } | AttemptResult::Permanent { .. } => {}
            }
            let ctx = Context { codec: &codec, topics: &topics, tiers_ms: &tiers, policy, excerpt_bytes };
            let outcome = match ctx.outcome(d, ep.as_deref(), result, rand::random::<f64>()) {
                Ok(o) => o,
                Err(e) => {
                    // Encoding our own records cannot fail short of a bug; keep the offset
                    // unfinished rather than lose the delivery.
                    tracing::error!(error = %e, "cannot encode outcome records");
                    return;
                }
            };
            tracing::debug!(
                delivery_id = d.envelope.delivery_id.as_deref(),
                endpoint_id,
                attempt = d.envelope.attempt,
                outcome = outcome.label,
                "attempt finished"
            );
            let _ = done_tx.send(Done {
                partition: job.partition,
                offset: job.offset,
                endpoint_id,
                outputs: outcome.outputs,
                endpoint_update: outcome.endpoint_update,
                generation,
            });
        });
    };

    loop {
        // Forget partitions a rebalance took away: their unfinished records will be redone by
        // the new owner; results still arriving for them are dropped.
        let revoked: Vec<_> =
            std::mem::take(&mut *consumer.context().revoked.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, p) in revoked {
            partitions.remove(&p);
            for slots in endpoints.values_mut() {
                slots.waiting.retain(|j| j.partition != p);
            }
        }

        let in_flight: usize = partitions.values().map(|p| p.offsets.in_flight()).sum();
        if stopping && (in_flight == 0 || drain_deadline.is_some_and(|d| tokio::time::Instant::now() >= d)) {
            commit(&mut producer, &consumer, &topics, &mut partitions)?;
            break;
        }

        tokio::select! {
            biased;
            Some(done) = done_rx.recv() => {
                if let Some(part) = partitions.get_mut(&done.partition).filter(|p| p.generation == done.generation) {
                    for o in &done.outputs {
                        producer.send(&o.topic, &o.key, &o.value)?;
                    }
                    if let Some(update) = done.endpoint_update {
                        catalog.apply(update.into());
                    }
                    part.offsets.finished(done.offset);
                    if part.paused && part.offsets.in_flight() <= resume_at {
                        set_paused(&consumer, &topics.deliveries, done.partition, false);
                        part.paused = false;
                    }
                }
                // Hand the slot to the next waiting delivery of this endpoint (even when the
                // finished one was stale, so nothing waits forever).
                let next = endpoints.get_mut(&done.endpoint_id).and_then(|s| s.waiting.pop_front());
                match next {
                    Some(next) => {
                        let g = partitions.get(&next.partition).map_or(0, |p| p.generation);
                        start(next, g, &catalog);
                    }
                    None => release_slot(&mut endpoints, &done.endpoint_id),
                }
            }
            Some(changes) = changes_rx.recv() => {
                let now = time::now_ms();
                for c in changes {
                    let Some(ep) = catalog.get(&c.endpoint_id) else { continue };
                    tracing::info!(endpoint_id = c.endpoint_id, transition = ?c.transition, "circuit breaker");
                    match outcome::circuit_records(&codec, &topics, &ep, &c.transition, now) {
                        Ok((records, update)) => {
                            for o in &records {
                                producer.send(&o.topic, &o.key, &o.value)?;
                            }
                            if let Some(update) = update {
                                catalog.apply(update.into());
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot encode circuit records"),
                    }
                }
            }
            _ = tick.tick() => {
                if let Err(e) = commit(&mut producer, &consumer, &topics, &mut partitions) {
                    tracing::warn!(error = %e, "dispatcher: commit failed; restarting from the committed offsets");
                    // Everything since the last commit is redone; drop local state.
                    partitions.clear();
                    endpoints.clear();
                    generation += 1;
                    consumer::rewind_to_committed(&consumer)?;
                }
            }
            _ = shutdown.cancelled(), if !stopping => {
                tracing::info!(in_flight, "dispatcher: draining in-flight deliveries");
                stopping = true;
                drain_deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                if let Ok(tpl) = consumer.assignment() {
                    let _ = consumer.pause(&tpl);
                }
            }
            msg = consumer.recv(), if !stopping => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "dispatcher: consumer error");
                        continue;
                    }
                };
                let (p, offset) = (msg.partition(), msg.offset());
                let part = partitions.entry(p).or_insert_with(|| {
                    generation += 1;
                    Partition { offsets: PartitionOffsets::default(), paused: false, generation }
                });
                let g = part.generation;
                let delivery = match msg.payload().map(|b| codec.decode(b)) {
                    Some(Ok(AnyEvent::DeliveryRequested(d))) => d,
                    other => {
                        // Not ours to deliver: quarantine it and move on.
                        let reason = match other {
                            Some(Ok(e)) => format!("expected DeliveryRequested, found {}", e.name()),
                            Some(Err(e)) => format!("undecodable: {e}"),
                            None => "empty record".into(),
                        };
                        tracing::warn!(partition = p, offset, reason, "delivery record quarantined");
                        let q = hookline_domain::quarantine::record(&topics.deliveries, p, offset, msg.key(), msg.payload(), reason);
                        if let Ok(v) = codec.encode(&q) {
                            producer.send(&topics.quarantine, topics.deliveries.as_bytes(), &v)?;
                        }
                        part.offsets.started(offset);
                        part.offsets.finished(offset);
                        continue;
                    }
                };
                part.offsets.started(offset);
                if part.offsets.in_flight() >= pause_at && !part.paused {
                    set_paused(&consumer, &topics.deliveries, p, true);
                    part.paused = true;
                }
                let endpoint_id = delivery.envelope.endpoint_id.clone().unwrap_or_default();
                let slots = endpoints.entry(endpoint_id).or_default();
                let job = Job { partition: p, offset, delivery };
                if slots.running < cap {
                    slots.running += 1;
                    start(job, g, &catalog);
                } else {
                    slots.waiting.push_back(job);
                }
            }
        }
    }
    // The breaker's last report: its transitions are recorded in one final commit.
    let _ = tokio::time::timeout(Duration::from_secs(2), sync_task).await;
    let mut last = Vec::new();
    while let Ok(changes) = changes_rx.try_recv() {
        last.extend(changes);
    }
    if !last.is_empty() {
        let now = time::now_ms();
        for c in last {
            if let Some(ep) = catalog.get(&c.endpoint_id)
                && let Ok((records, _)) = outcome::circuit_records(&codec, &topics, &ep, &c.transition, now)
            {
                for o in &records {
                    producer.send(&o.topic, &o.key, &o.value)?;
                }
            }
        }
        commit(&mut producer, &consumer, &topics, &mut partitions)?;
    }
    tracing::info!(role = "dispatcher", "stopped");
    Ok(())
}

/// The endpoint's prepared keys and template for its current version, built once per version
/// (off the executor when it involves RSA key parsing).
async fn prepare(
    cache: &Mutex<HashMap<String, Arc<Prepared>>>,
    ep: &Arc<hookline_schemas::EndpointUpserted>,
    master: &Arc<MasterKeys>,
    engine: &Arc<TemplateEngine>,
) -> Result<Arc<Prepared>, String> {
    let id = ep.envelope.endpoint_id.clone().unwrap_or_default();
    if let Some(p) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&id).filter(|p| p.version == ep.version) {
        return Ok(p.clone());
    }
    let (e, m, g) = (ep.clone(), master.clone(), engine.clone());
    let p = Arc::new(tokio::task::spawn_blocking(move || Prepared::new(&e, &m, &g)).await.map_err(|e| e.to_string())??);
    cache.lock().unwrap_or_else(|p| p.into_inner()).insert(id, p.clone());
    Ok(p)
}

fn release_slot(endpoints: &mut HashMap<String, EndpointSlots>, endpoint_id: &str) {
    if let Some(slots) = endpoints.get_mut(endpoint_id) {
        slots.running = slots.running.saturating_sub(1);
        if slots.running == 0 && slots.waiting.is_empty() {
            endpoints.remove(endpoint_id);
        }
    }
}

fn set_paused(consumer: &Consumer_, topic: &str, partition: i32, pause: bool) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let r = if pause { consumer.pause(&tpl) } else { consumer.resume(&tpl) };
    if let Err(e) = r {
        tracing::warn!(error = %e, partition, pause, "cannot pause/resume partition");
    }
}

/// Commits produced records and every moved position, for partitions still assigned.
fn commit(
    producer: &mut TxnProducer,
    consumer: &Consumer_,
    topics: &Topics,
    partitions: &mut HashMap<i32, Partition>,
) -> Result<(), KafkaError> {
    let assigned: HashSet<i32> =
        consumer.assignment().map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default();
    let mut tpl = TopicPartitionList::new();
    let mut moved = Vec::new();
    for (&p, part) in partitions.iter() {
        if let Some(pos) = part.offsets.to_commit()
            && assigned.contains(&p)
        {
            let _ = tpl.add_partition_offset(&topics.deliveries, p, Offset::Offset(pos));
            moved.push((p, pos));
        }
    }
    producer.commit(consumer, &tpl)?;
    for (p, pos) in moved {
        if let Some(part) = partitions.get_mut(&p) {
            part.offsets.mark_committed(pos);
        }
    }
    Ok(())
}
