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
use std::sync::atomic::{AtomicBool, Ordering};
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
use tracing::{Instrument, Span};

use crate::offsets::PartitionOffsets;
use crate::outcome::{AttemptResult, Context, Output};
use crate::request::Prepared;

/// Whether each attempt gets its own `build_request` and `http_post` spans. Off by default:
/// every span is allocated, and its fields formatted by the log layer, when it is created,
/// whether or not anything inside it logs (these two were ~1% of the process's perf samples at
/// 5,000 deliveries/s). `init_logging` turns them on when spans are exported over OTLP or the
/// log level is debug or finer; the `deliver` span around each attempt is always there.
static ATTEMPT_SPANS: AtomicBool = AtomicBool::new(false);

/// Turns the per-attempt `build_request` and `http_post` spans on or off (process-wide).
pub fn trace_attempt_steps(on: bool) {
    ATTEMPT_SPANS.store(on, Ordering::Relaxed);
}

/// `make()` when per-attempt spans are on, else a disabled span that costs nothing.
fn attempt_span(make: impl FnOnce() -> Span) -> Span {
    if ATTEMPT_SPANS.load(Ordering::Relaxed) { make() } else { Span::none() }
}

/// How often outcome records and offsets are committed.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(50);
/// How often partial batches are checked against their deadline.
const BATCH_CHECK_INTERVAL: Duration = Duration::from_millis(5);
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
    arrived: tokio::time::Instant,
}

/// Records to produce for jobs of one partition; `last` when the jobs are finished (an ordered
/// endpoint's retry in place reports each failed attempt before its last).
struct Done {
    partition: i32,
    offsets: Vec<i64>,
    endpoint_id: String,
    outputs: Vec<Output>,
    endpoint_update: Option<hookline_schemas::EndpointUpserted>,
    /// Generation of the partition when the job started; a stale result is dropped.
    generation: u64,
    last: bool,
}

#[derive(Default)]
struct EndpointSlots {
    running: usize,
    waiting: VecDeque<Job>,
}

/// How an endpoint takes its deliveries.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// One message per request, up to the in-flight cap.
    Single,
    /// One message in flight, in log order, retried in place.
    Ordered,
    /// Up to `max` messages per request; a partial batch goes once its oldest waited `wait`.
    Batch { max: usize, wait: Duration },
}

fn mode(ep: Option<&hookline_schemas::EndpointUpserted>) -> Mode {
    match ep {
        Some(e) if e.ordered => Mode::Ordered,
        Some(e) => match &e.batch {
            Some(b) => Mode::Batch {
                max: b.max_size.max(1) as usize,
                wait: Duration::from_millis(b.max_wait_ms.max(0) as u64),
            },
            None => Mode::Single,
        },
        None => Mode::Single,
    }
}

/// Takes the groups of waiting jobs that may start now (each group is one request), counting
/// their slots. A batch holds jobs of one partition only.
fn take_ready(slots: &mut EndpointSlots, mode: Mode, cap: usize, now: tokio::time::Instant) -> Vec<Vec<Job>> {
    let cap = if mode == Mode::Ordered { 1 } else { cap };
    let mut groups = Vec::new();
    while slots.running < cap && !slots.waiting.is_empty() {
        let group = match mode {
            Mode::Batch { max, wait } => {
                let first = &slots.waiting[0];
                let same = slots.waiting.iter().take_while(|j| j.partition == first.partition).count();
                if same < max && now < first.arrived + wait && same == slots.waiting.len() {
                    break;
                }
                slots.waiting.drain(..same.min(max)).collect()
            }
            Mode::Single | Mode::Ordered => slots.waiting.pop_front().into_iter().collect(),
        };
        slots.running += 1;
        groups.push(group);
    }
    groups
}

struct Partition {
    offsets: PartitionOffsets,
    paused: bool,
    generation: u64,
}

/// What a job needs, shared by every job.
struct Shared {
    client: OutboundClient,
    codec: Arc<Codec>,
    topics: Topics,
    tiers: Vec<u64>,
    default_policy: RetryPolicy,
    excerpt_bytes: usize,
    max_timeout: Duration,
    master_keys: Arc<MasterKeys>,
    engine: Arc<TemplateEngine>,
    prepared: Mutex<HashMap<String, Arc<Prepared>>>,
    flow: Arc<flow::Flow>,
    done_tx: mpsc::UnboundedSender<Done>,
    shutdown: CancellationToken,
}

impl Shared {
    fn context(&self, ep: Option<&hookline_schemas::EndpointUpserted>, inline_retry: bool) -> Context<'_> {
        let policy = match ep.and_then(|e| e.retry_schedule_ms.clone()) {
            Some(delays) => RetryPolicy {
                delays_ms: delays.into_iter().map(|x| x.max(0) as u64).collect(),
                jitter: self.default_policy.jitter,
            },
            None => self.default_policy.clone(),
        };
        Context {
            codec: &self.codec,
            topics: &self.topics,
            tiers_ms: &self.tiers,
            policy,
            excerpt_bytes: self.excerpt_bytes,
            inline_retry,
        }
    }

    fn send(
        &self,
        jobs: &[(i32, i64)],
        endpoint_id: &str,
        outputs: Vec<Output>,
        update: Option<hookline_schemas::EndpointUpserted>,
        generation: u64,
        last: bool,
    ) {
        let partition = jobs.first().map_or(0, |j| j.0);
        let _ = self.done_tx.send(Done {
            partition,
            offsets: jobs.iter().map(|j| j.1).collect(),
            endpoint_id: endpoint_id.to_string(),
            outputs,
            endpoint_update: update,
            generation,
            last,
        });
    }
}

/// Why a delivery cannot be attempted at all (endpoint gone or disabled), if so.
fn not_attemptable(ep: Option<&hookline_schemas::EndpointUpserted>) -> Option<AttemptResult> {
    match ep {
        None => Some(AttemptResult::NotAttempted {
            kind: "endpoint_deleted",
            message: "the endpoint no longer exists".into(),
        }),
        Some(e) if !e.enabled => Some(AttemptResult::NotAttempted {
            kind: "endpoint_disabled",
            message: format!(
                "the endpoint is disabled{}",
                e.disabled_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            ),
        }),
        Some(_) => None,
    }
}

/// Counts an attempt for the breaker and the metrics (attempts by status class and latency).
/// The error kind label of a result (empty for success).
fn error_kind(result: &AttemptResult) -> String {
    match result {
        AttemptResult::Http(r) if (200..300).contains(&r.status) => String::new(),
        AttemptResult::Http(_) => "http_status".into(),
        AttemptResult::Failed(e) => e.kind.as_str().to_string(),
        AttemptResult::NotAttempted { kind, .. } | AttemptResult::Permanent { kind, .. } => (*kind).to_string(),
    }
}

/// Counts what an outcome came to.
fn count_outcome(label: &'static str, kind: &str) {
    use hookline_telemetry::{labels, metrics, names};
    let m = metrics();
    m.deliveries.get_or_create(&labels([(names::OUTCOME, label), (names::ERROR_KIND, kind)])).inc();
    match label {
        "retrying" => m.retries_scheduled.inc(),
        "dead_lettered" => m.dlq_moved.inc(),
        _ => 0,
    };
}

fn record_outcome(flow: &flow::Flow, endpoint_id: &str, result: &AttemptResult) {
    use hookline_telemetry::{labels, metrics, names, status_class};
    let m = metrics();
    let timed = match result {
        AttemptResult::Http(r) => Some((status_class(r.status), r.duration)),
        AttemptResult::Failed(e) => Some(("error", e.duration)),
        _ => None,
    };
    if let Some((class, took)) = timed {
        let l = labels([(names::STATUS_CLASS, class)]);
        m.attempts.get_or_create(&l).inc();
        m.attempt_duration.get_or_create(&l).observe(took.as_secs_f64());
    }
    match result {
        AttemptResult::Http(r) => flow.record(endpoint_id, (200..300).contains(&r.status)),
        AttemptResult::Failed(_) => flow.record(endpoint_id, false),
        AttemptResult::NotAttempted { .. } | AttemptResult::Permanent { .. } => {}
    }
}

/// One message per request (ordered endpoints retry in place, one attempt after another), in a
/// `deliver` span carrying the trigger, delivery, endpoint and attempt ids.
async fn run_single(sh: Arc<Shared>, job: Job, ep: Option<Arc<hookline_schemas::EndpointUpserted>>, generation: u64) {
    let e = &job.delivery.envelope;
    let span = tracing::info_span!(
        "deliver",
        trigger_id = e.trigger_id.as_deref(),
        delivery_id = e.delivery_id.as_deref(),
        endpoint_id = e.endpoint_id.as_deref(),
        attempt = e.attempt,
        partition = job.partition,
        offset = job.offset,
    );
    run_single_in_span(sh, job, ep, generation).instrument(span).await
}

async fn run_single_in_span(
    sh: Arc<Shared>,
    job: Job,
    ep: Option<Arc<hookline_schemas::EndpointUpserted>>,
    generation: u64,
) {
    let jobs = [(job.partition, job.offset)];
    let mut d = job.delivery;
    let endpoint_id = d.envelope.endpoint_id.clone().unwrap_or_default();
    let ordered = ep.as_ref().is_some_and(|e| e.ordered && e.enabled);
    loop {
        if let Some(e) = ep.as_ref().filter(|e| e.enabled)
            && let flow::Gate::Defer { cause, until_ms } =
                sh.flow.gate(&endpoint_id, e.rate_limit.as_ref(), ordered).await
        {
            match outcome::deferred(&sh.codec, &sh.topics, &sh.tiers, &d, cause, until_ms) {
                Ok(outputs) => {
                    tracing::debug!(
                        delivery_id = d.envelope.delivery_id.as_deref(),
                        endpoint_id,
                        cause,
                        until_ms,
                        "deferred"
                    );
                    sh.send(&jobs, &endpoint_id, outputs, None, generation, true);
                }
                Err(e) => tracing::error!(error = %e, "cannot encode deferral records"),
            }
            return;
        }
        let result = match not_attemptable(ep.as_deref()) {
            Some(r) => r,
            None => {
                let e = ep.as_ref().expect("attemptable endpoints exist");
                match prepare(&sh.prepared, e, &sh.master_keys, &sh.engine).await {
                    Err(message) => AttemptResult::Permanent { kind: "config", message },
                    Ok(p) => match request::build(&d, e, p, time::now_ms(), sh.max_timeout)
                        .instrument(attempt_span(|| tracing::info_span!("build_request")))
                        .await
                    {
                        Err(b) => AttemptResult::Permanent { kind: b.kind, message: b.message },
                        Ok(req) => match sh
                            .client
                            .post(req)
                            .instrument(attempt_span(|| tracing::info_span!("http_post", attempt = d.envelope.attempt)))
                            .await
                        {
                            Ok(r) => AttemptResult::Http(r),
                            Err(err) => AttemptResult::Failed(err),
                        },
                    },
                }
            }
        };
        record_outcome(&sh.flow, &endpoint_id, &result);
        let kind = error_kind(&result);
        let ctx = sh.context(ep.as_deref(), ordered);
        let outcome = match ctx.outcome(&d, ep.as_deref(), result, rand::random::<f64>()) {
            Ok(o) => o,
            Err(e) => {
                // Encoding our own records cannot fail short of a bug; keep the offset
                // unfinished rather than lose the delivery.
                tracing::error!(error = %e, "cannot encode outcome records");
                return;
            }
        };
        count_outcome(outcome.label, &kind);
        tracing::debug!(
            delivery_id = d.envelope.delivery_id.as_deref(),
            endpoint_id,
            attempt = d.envelope.attempt,
            outcome = outcome.label,
            "attempt finished"
        );
        let Some((delay, next)) = outcome.retry else {
            sh.send(&jobs, &endpoint_id, outcome.outputs, outcome.endpoint_update, generation, true);
            return;
        };
        // Ordered: record this attempt, wait, try again; the next message waits meanwhile.
        sh.send(&jobs, &endpoint_id, outcome.outputs, outcome.endpoint_update, generation, false);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            // The offset stays unfinished: the next owner of the partition delivers it again.
            _ = sh.shutdown.cancelled() => return,
        }
        d = next;
    }
}

/// Several messages in one request; each message gets its own outcome records.
async fn run_batch(sh: Arc<Shared>, jobs: Vec<Job>, ep: Arc<hookline_schemas::EndpointUpserted>, generation: u64) {
    let span = tracing::info_span!(
        "deliver_batch",
        endpoint_id = ep.envelope.endpoint_id.as_deref(),
        messages = jobs.len(),
        partition = jobs.first().map(|j| j.partition),
    );
    run_batch_in_span(sh, jobs, ep, generation).instrument(span).await
}

async fn run_batch_in_span(
    sh: Arc<Shared>,
    jobs: Vec<Job>,
    ep: Arc<hookline_schemas::EndpointUpserted>,
    generation: u64,
) {
    let positions: Vec<(i32, i64)> = jobs.iter().map(|j| (j.partition, j.offset)).collect();
    let endpoint_id = ep.envelope.endpoint_id.clone().unwrap_or_default();
    let ds: Vec<&DeliveryRequested> = jobs.iter().map(|j| &j.delivery).collect();
    // One request, one token and one breaker decision.
    if let flow::Gate::Defer { cause, until_ms } = sh.flow.gate(&endpoint_id, ep.rate_limit.as_ref(), false).await {
        let mut outputs = Vec::new();
        for d in &ds {
            match outcome::deferred(&sh.codec, &sh.topics, &sh.tiers, d, cause, until_ms) {
                Ok(o) => outputs.extend(o),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode deferral records");
                    return;
                }
            }
        }
        sh.send(&positions, &endpoint_id, outputs, None, generation, true);
        return;
    }
    let mut results: Vec<Option<AttemptResult>> = ds.iter().map(|_| None).collect();
    match prepare(&sh.prepared, &ep, &sh.master_keys, &sh.engine).await {
        Err(message) => {
            for r in results.iter_mut() {
                *r = Some(AttemptResult::Permanent { kind: "config", message: message.clone() });
            }
        }
        Ok(p) => {
            let (req, failed) = request::build_batch(&ds, &ep, p, time::now_ms(), sh.max_timeout).await;
            for (i, b) in failed {
                results[i] = Some(AttemptResult::Permanent { kind: b.kind, message: b.message });
            }
            if let Some(req) = req {
                let shared =
                    match sh.client.post(req).instrument(attempt_span(|| tracing::info_span!("http_post"))).await {
                        Ok(r) => AttemptResult::Http(r),
                        Err(err) => AttemptResult::Failed(err),
                    };
                record_outcome(&sh.flow, &endpoint_id, &shared);
                for r in results.iter_mut().filter(|r| r.is_none()) {
                    *r = Some(match &shared {
                        AttemptResult::Http(x) => AttemptResult::Http(x.clone()),
                        AttemptResult::Failed(x) => AttemptResult::Failed(x.clone()),
                        AttemptResult::NotAttempted { kind, message } => {
                            AttemptResult::NotAttempted { kind, message: message.clone() }
                        }
                        AttemptResult::Permanent { kind, message } => {
                            AttemptResult::Permanent { kind, message: message.clone() }
                        }
                    });
                }
            }
        }
    }
    let ctx = sh.context(Some(&ep), false);
    let mut outputs = Vec::new();
    let mut update = None;
    for (d, r) in ds.iter().zip(results) {
        let Some(r) = r else { continue };
        let kind = error_kind(&r);
        match ctx.outcome(d, Some(&ep), r, rand::random::<f64>()) {
            Ok(o) => {
                count_outcome(o.label, &kind);
                outputs.extend(o.outputs);
                // One 410 disables once.
                if update.is_none() {
                    update = o.endpoint_update;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode outcome records");
                return;
            }
        }
    }
    tracing::debug!(endpoint_id, messages = ds.len(), "batch attempt finished");
    sh.send(&positions, &endpoint_id, outputs, update, generation, true);
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
    let kafka = &config.kafka;
    let d = &config.dispatcher;
    let topics = Topics::from_options(kafka);
    let group = format!("{}dispatcher", kafka.topic_prefix);
    let client_id = format!("hookline-dispatcher-{}", uuid::Uuid::now_v7().simple());
    let mut cfg = consumer::base_config(kafka, &group, &client_id);
    cfg.set("fetch.wait.max.ms", "20");
    consumer::with_large_prefetch(&mut cfg, kafka);
    let consumer: Consumer_ = cfg
        .create_with_context(RebalanceLog::default())
        .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    consumer
        .subscribe(&[&topics.deliveries])
        .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    // Two transactional producers take turns: one commits on the blocking pool while the loop
    // goes on writing the next transaction into the other, so a commit never stalls delivery.
    let [mut producer, b] = TxnProducer::pair(kafka, "dispatcher")?;
    for (label, p) in [("dispatcher-a", &producer), ("dispatcher-b", &b)] {
        hookline_telemetry::gauge_fn(
            hookline_telemetry::names::KAFKA_PRODUCER_QUEUE,
            hookline_telemetry::labels([(hookline_telemetry::names::CLIENT, label)]),
            p.queue_probe(),
        );
    }
    let mut spare = Some(b);
    let mut committing: Option<tokio::task::JoinHandle<Committed>> = None;
    // A record the open transaction cannot take (e.g. its producer was fenced after a broker
    // stall) makes that transaction's commit fail: handled like any failed commit below.
    macro_rules! send {
        ($topic:expr, $key:expr, $value:expr) => {
            let _ = producer.send($topic, $key, $value);
        };
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let flow = flow::Flow::start(&config.redis, &config.flow, shutdown.clone());
    let sh = Arc::new(Shared {
        client: OutboundClient::new(OutboundOptions::from_config(d))?,
        codec: codec.clone(),
        topics: topics.clone(),
        tiers: config.scheduler.tiers_ms.clone(),
        default_policy: RetryPolicy { delays_ms: d.retry_schedule_ms.clone(), jitter: d.retry_jitter },
        excerpt_bytes: d.response_excerpt_bytes,
        max_timeout: Duration::from_millis(d.max_timeout_ms),
        master_keys,
        engine: Arc::new(TemplateEngine::default()),
        prepared: Mutex::default(),
        flow: flow.clone(),
        done_tx,
        shutdown: shutdown.clone(),
    });
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
    // Endpoints with a partial batch waiting for more messages or its deadline.
    let mut batching: HashSet<String> = HashSet::new();
    let mut generation: u64 = 0;
    let age = consumer::age_histogram("dispatcher");
    let mut tick = tokio::time::interval(COMMIT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch_tick = tokio::time::interval(BATCH_CHECK_INTERVAL);
    batch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pause_at = d.max_in_flight_per_partition;
    let resume_at = (pause_at / 2).max(1);
    let cap = d.max_in_flight_per_endpoint;
    let mut stopping = false;
    let mut drain_deadline = None;
    tracing::info!(role = "dispatcher", topic = topics.deliveries, "started");

    // Starts what may start of an endpoint's waiting jobs.
    let pump = |endpoint_id: &str,
                endpoints: &mut HashMap<String, EndpointSlots>,
                batching: &mut HashSet<String>,
                partitions: &HashMap<i32, Partition>| {
        let ep = catalog.get(endpoint_id);
        let m = mode(ep.as_deref());
        let Some(slots) = endpoints.get_mut(endpoint_id) else { return };
        for group in take_ready(slots, m, cap, tokio::time::Instant::now()) {
            let g = group.first().and_then(|j| partitions.get(&j.partition)).map_or(0, |p| p.generation);
            let sh = sh.clone();
            match (m, ep.clone()) {
                (Mode::Batch { .. }, Some(e)) if e.enabled => {
                    tokio::spawn(run_batch(sh, group, e, g));
                }
                _ => {
                    for job in group {
                        tokio::spawn(run_single(sh.clone(), job, ep.clone(), g));
                    }
                }
            }
        }
        if matches!(m, Mode::Batch { .. }) && !slots.waiting.is_empty() {
            batching.insert(endpoint_id.to_string());
        } else {
            batching.remove(endpoint_id);
        }
        if slots.running == 0 && slots.waiting.is_empty() {
            endpoints.remove(endpoint_id);
        }
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
            if let Err(e) = settle(&mut committing, &mut spare, &mut partitions).await? {
                // The open transaction follows the failed one: committing it would move the
                // offsets past deliveries whose outcomes were lost. Leave them to be redone.
                tracing::warn!(error = %e, "dispatcher: commit failed; the next owner redoes the rest");
                abort_open(&mut producer);
                partitions.clear();
                break;
            }
            if let Err(e) = commit(&mut producer, &consumer, &topics, &mut partitions) {
                tracing::warn!(error = %e, "dispatcher: the last commit failed; the next owner redoes the rest");
                partitions.clear();
            }
            break;
        }

        tokio::select! {
            biased;
            Some(done) = done_rx.recv() => {
                if let Some(part) = partitions.get_mut(&done.partition).filter(|p| p.generation == done.generation) {
                    for o in &done.outputs {
                        send!(&o.topic, &o.key, &o.value);
                    }
                    if let Some(update) = done.endpoint_update {
                        catalog.apply(update.into());
                    }
                    if done.last {
                        for &offset in &done.offsets {
                            part.offsets.finished(offset);
                        }
                    }
                    if part.paused && part.offsets.in_flight() <= resume_at {
                        set_paused(&consumer, &topics.deliveries, done.partition, false);
                        part.paused = false;
                    }
                }
                // Hand the slot on (even when the finished job was stale, so nothing waits forever).
                if done.last {
                    if let Some(slots) = endpoints.get_mut(&done.endpoint_id) {
                        slots.running = slots.running.saturating_sub(1);
                    }
                    pump(&done.endpoint_id, &mut endpoints, &mut batching, &partitions);
                }
            }
            Some(changes) = changes_rx.recv() => {
                let now = time::now_ms();
                for c in changes {
                    let Some(ep) = catalog.get(&c.endpoint_id) else { continue };
                    tracing::info!(endpoint_id = c.endpoint_id, transition = ?c.transition, "circuit breaker");
                    let to = match c.transition {
                        hookline_domain::flow::Transition::Opened { .. } => "open",
                        hookline_domain::flow::Transition::Closed { .. } => "closed",
                        hookline_domain::flow::Transition::Disable { .. } => "disabled",
                    };
                    hookline_telemetry::metrics()
                        .circuit_transitions
                        .get_or_create(&hookline_telemetry::labels([(hookline_telemetry::names::TO, to)]))
                        .inc();
                    match outcome::circuit_records(&codec, &topics, &ep, &c.transition, now) {
                        Ok((records, update)) => {
                            for o in &records {
                                send!(&o.topic, &o.key, &o.value);
                            }
                            if let Some(update) = update {
                                catalog.apply(update.into());
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot encode circuit records"),
                    }
                }
            }
            _ = batch_tick.tick(), if !batching.is_empty() => {
                let due: Vec<String> = batching.iter().cloned().collect();
                for endpoint_id in due {
                    pump(&endpoint_id, &mut endpoints, &mut batching, &partitions);
                }
            }
            _ = tick.tick() => {
                // The previous commit still running: this tick's work joins the next one.
                if committing.as_ref().is_some_and(|h| !h.is_finished()) {
                    continue;
                }
                if let Err(e) = settle(&mut committing, &mut spare, &mut partitions).await? {
                    tracing::warn!(error = %e, "dispatcher: commit failed; restarting from the committed offsets");
                    // The open transaction follows the failed one: abort it and redo everything
                    // since the last commit. Deliveries are attempted again with the same
                    // webhook-id.
                    abort_open(&mut producer);
                    partitions.clear();
                    endpoints.clear();
                    batching.clear();
                    generation += 1;
                    if !consumer::rewind_to_committed(&consumer, &shutdown).await {
                        break;
                    }
                    continue;
                }
                let (tpl, moved) = committable(&consumer, &topics, &partitions);
                if tpl.count() == 0 && !producer.is_open() {
                    continue;
                }
                let meta = consumer.group_metadata();
                let Some(next) = spare.take() else { continue };
                let mut p = std::mem::replace(&mut producer, next);
                committing = Some(tokio::task::spawn_blocking(move || {
                    let result = p.commit_blocking(meta.as_ref(), &tpl);
                    Committed { producer: p, result, moved }
                }));
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
                consumer::observe_age(&age, &msg);
                let (p, offset) = (msg.partition(), msg.offset());
                let part = partitions.entry(p).or_insert_with(|| {
                    generation += 1;
                    Partition { offsets: PartitionOffsets::default(), paused: false, generation }
                });
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
                            send!(&topics.quarantine, topics.deliveries.as_bytes(), &v);
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
                let job = Job { partition: p, offset, delivery, arrived: tokio::time::Instant::now() };
                endpoints.entry(endpoint_id.clone()).or_default().waiting.push_back(job);
                pump(&endpoint_id, &mut endpoints, &mut batching, &partitions);
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
                    send!(&o.topic, &o.key, &o.value);
                }
            }
        }
        if let Err(e) = commit(&mut producer, &consumer, &topics, &mut partitions) {
            tracing::warn!(error = %e, "dispatcher: the breaker's last transitions were not recorded");
        }
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

fn set_paused(consumer: &Consumer_, topic: &str, partition: i32, pause: bool) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let r = if pause { consumer.pause(&tpl) } else { consumer.resume(&tpl) };
    if let Err(e) = r {
        tracing::warn!(error = %e, partition, pause, "cannot pause/resume partition");
    }
}

/// A commit that ran on the blocking pool, with its producer handed back.
struct Committed {
    producer: TxnProducer,
    result: Result<(), KafkaError>,
    moved: Vec<(i32, i64)>,
}

/// The positions to commit: every moved one, for partitions still assigned.
fn committable(
    consumer: &Consumer_,
    topics: &Topics,
    partitions: &HashMap<i32, Partition>,
) -> (TopicPartitionList, Vec<(i32, i64)>) {
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
    (tpl, moved)
}

/// Waits for the background commit, if any: hands its producer back as the spare and marks its
/// positions committed, or returns why it failed (the transaction was aborted).
async fn settle(
    committing: &mut Option<tokio::task::JoinHandle<Committed>>,
    spare: &mut Option<TxnProducer>,
    partitions: &mut HashMap<i32, Partition>,
) -> Result<Result<(), KafkaError>, KafkaError> {
    let Some(h) = committing.take() else { return Ok(Ok(())) };
    let c = h.await.map_err(|e| KafkaError::Internal(e.to_string()))?;
    *spare = Some(c.producer);
    if c.result.is_ok() {
        mark_committed(partitions, &c.moved);
    }
    Ok(c.result)
}

/// Aborts the open transaction; one that cannot be aborted expires by itself.
fn abort_open(producer: &mut TxnProducer) {
    if let Err(e) = producer.abort() {
        tracing::warn!(error = %e, "dispatcher: aborting the open transaction failed; it expires by itself");
    }
}

fn mark_committed(partitions: &mut HashMap<i32, Partition>, moved: &[(i32, i64)]) {
    for &(p, pos) in moved {
        if let Some(part) = partitions.get_mut(&p) {
            part.offsets.mark_committed(pos);
        }
    }
}

/// Commits produced records and every moved position, here and now (shutdown).
fn commit(
    producer: &mut TxnProducer,
    consumer: &Consumer_,
    topics: &Topics,
    partitions: &mut HashMap<i32, Partition>,
) -> Result<(), KafkaError> {
    let (tpl, moved) = committable(consumer, topics, partitions);
    producer.commit(consumer, &tpl)?;
    mark_committed(partitions, &moved);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_steps_are_traced_only_when_switched_on() {
        let mut made = 0;
        assert!(
            attempt_span(|| {
                made += 1;
                tracing::info_span!("http_post")
            })
            .is_none()
        );
        assert_eq!(made, 0, "a span nobody asked for is not built");
        trace_attempt_steps(true);
        let _ = attempt_span(|| {
            made += 1;
            Span::none()
        });
        trace_attempt_steps(false);
        assert_eq!(made, 1);
    }
}
