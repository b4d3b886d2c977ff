//! Direct fan-out (`api.direct_fanout`): the API writes a trigger's TriggerRequested record and
//! its DeliveryRequested records in one Kafka transaction, and answers 202 after the commit.
//!
//! Through the router a delivery takes two transactional hops (the API's produce, then the
//! router's consume-produce-commit) before a dispatcher can read it; this way it takes one.
//! The trigger record still goes onto the triggers topic (the event stream, the router's
//! idempotency memory), marked with [`ROUTED_HEADER`] so that the router fans out nothing for
//! it. Either every record of the transaction is on the log or none is: the client gets 202 or
//! 503, never half a trigger.
//!
//! Only simple triggers take this path ([`plan`]): no idempotency key (the router's dedupe,
//! which reads the log back, is the guarantee behind keys when Redis lost a claim), few
//! targets (a transaction costs per partition it writes to), none of them ordered (an ordered
//! endpoint gets its deliveries in trigger order only if they all come through one router), and
//! a bounded size. The rest go through the router as before.
//!
//! When this API takes more than [`MAX_RATE`] triggers a second, they go through the router:
//! under a burst its larger transactions accept and drain faster.
//!
//! One task owns the transactional producers and commits one transaction at a time. Requests
//! that arrive while a commit is running wait in its queue and share the next transaction (a
//! group commit), so at 1,000 triggers/s a transaction carries several triggers. Two
//! transactions in flight at once (one producer committing on the blocking pool while the
//! other takes the next requests) made each commit slower and the latency worse (README,
//! "Twelfth round").

use std::sync::Arc;

use hookline_config::KafkaOptions;
use hookline_kafka::Topics;
use hookline_kafka::catalog::Catalog;
use hookline_kafka::rdkafka::TopicPartitionList;
use hookline_kafka::txn::TxnProducer;
use hookline_router::{Output, ROUTED_HEADER};
use hookline_schemas::{Codec, EndpointUpserted, TriggerRequested};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Most endpoints a directly fanned-out trigger may go to.
pub const MAX_TARGETS: usize = 8;
/// Most bytes (trigger and deliveries, encoded) of a directly fanned-out trigger.
pub const MAX_BYTES: usize = 1 << 20;
/// Most bytes waiting for or in a transaction; a request beyond it waits for room.
const MAX_QUEUED_BYTES: usize = 32 << 20;
/// Most triggers in one transaction.
const MAX_JOBS_PER_TXN: usize = 1000;
/// Most bytes in one transaction.
const MAX_BYTES_PER_TXN: usize = 8 << 20;
/// Triggers per second (all of this API's, in the last whole second) above which the router
/// takes them: under a burst or a sustained high rate the router's transactions, which take up
/// to 1,000 triggers from its consumer at once, cost the broker far less per trigger (README,
/// "Twelfth round").
pub const MAX_RATE: u64 = 2000;
/// Pause before building the producers again after that failed (the broker refuses
/// transactions to this client, or is down).
const RETRY_PRODUCERS: std::time::Duration = std::time::Duration::from_secs(10);

/// The records of one directly fanned-out trigger.
pub struct Plan {
    deliveries: Vec<Output>,
    bytes: usize,
}

/// The deliveries to write with `record` (encoded as `trigger_bytes`), or `None` when it must
/// go through the router.
pub fn plan(
    catalog: &Catalog,
    codec: &Codec,
    topics: &Topics,
    record: &TriggerRequested,
    trigger_bytes: usize,
) -> Option<Plan> {
    if !catalog.is_loaded() {
        return None;
    }
    let trigger_id = record.envelope.trigger_id.as_deref()?;
    let targets = hookline_router::targets(catalog, record);
    if !eligible(record, &targets, trigger_bytes) {
        return None;
    }
    let deliveries = hookline_router::deliveries(codec, topics, record, trigger_id, targets);
    let bytes = trigger_bytes + deliveries.iter().map(|d| d.key.len() + d.value.len()).sum::<usize>();
    (bytes <= MAX_BYTES).then_some(Plan { deliveries, bytes })
}

/// Whether `record`, going to `targets`, may be fanned out by the API.
fn eligible(record: &TriggerRequested, targets: &[Arc<EndpointUpserted>], trigger_bytes: usize) -> bool {
    record.idempotency_key.is_none()
        && hookline_router::check(record).is_ok()
        && targets.len() <= MAX_TARGETS
        && !targets.iter().any(|e| e.ordered)
        // Each delivery carries the payload again: judged before encoding anything big.
        && trigger_bytes.saturating_mul(targets.len() + 1) <= MAX_BYTES
}

/// Why a directly fanned-out trigger was not committed.
#[derive(Debug, Clone)]
pub enum DirectError {
    /// Nothing was written and the API has no transactional producer (the broker refuses
    /// transactions to this client, or cannot be reached): the caller may publish the trigger
    /// for the router instead.
    NoProducer(String),
    /// The transaction failed and was aborted: nothing of it reached a reader.
    Failed(String),
}

impl std::fmt::Display for DirectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoProducer(e) => write!(f, "no transactional producer: {e}"),
            Self::Failed(e) => write!(f, "{e}"),
        }
    }
}

struct Job {
    trigger: Output,
    deliveries: Vec<Output>,
    bytes: usize,
    done: oneshot::Sender<Result<(), DirectError>>,
    _room: OwnedSemaphorePermit,
}

/// The handle the handlers publish through; cheap to clone.
#[derive(Clone)]
pub struct Direct {
    jobs: mpsc::UnboundedSender<Job>,
    room: Arc<Semaphore>,
    rate: Arc<std::sync::Mutex<Rate>>,
}

/// This API's trigger rate, counted per whole second.
struct Rate {
    since: std::time::Instant,
    count: u64,
    /// Triggers in the last whole second (scaled to one second).
    last: u64,
}

impl Rate {
    /// Counts one trigger at `now`; whether the rate allows fanning it out directly.
    fn admit(&mut self, now: std::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= std::time::Duration::from_secs(1) {
            // A quiet gap of several seconds counts as a slow second.
            self.last = (self.count as f64 / elapsed.as_secs_f64()) as u64;
            self.since = now;
            self.count = 0;
        }
        self.count += 1;
        self.last <= MAX_RATE && self.count <= MAX_RATE
    }
}

impl Direct {
    /// Starts the task owning the producers (built at the first trigger). It ends when the last
    /// handle is dropped.
    pub fn start(kafka: KafkaOptions) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(kafka, rx));
        let rate = Rate { since: std::time::Instant::now(), count: 0, last: 0 };
        Self { jobs, room: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)), rate: Arc::new(std::sync::Mutex::new(rate)) }
    }

    /// Counts a trigger; `false` when this API takes more than [`MAX_RATE`] triggers a second,
    /// and the trigger should go through the router.
    pub fn admit(&self) -> bool {
        self.rate.lock().unwrap_or_else(|p| p.into_inner()).admit(std::time::Instant::now())
    }

    /// Writes the trigger record (to `topic`, keyed `key`) and the planned deliveries in one
    /// transaction; `Ok` once it is committed.
    pub async fn publish(&self, topic: &str, key: &[u8], trigger: Vec<u8>, plan: Plan) -> Result<(), DirectError> {
        let stopped = || DirectError::NoProducer("the direct publisher has stopped".into());
        let bytes = plan.bytes.min(MAX_BYTES);
        let room = self.room.clone().acquire_many_owned(bytes as u32).await.map_err(|_| stopped())?;
        let (done, answer) = oneshot::channel();
        let trigger = Output { topic: topic.to_string(), key: key.to_vec(), value: trigger };
        let job = Job { trigger, deliveries: plan.deliveries, bytes, done, _room: room };
        self.jobs.send(job).map_err(|_| stopped())?;
        // A dropped answer (the task panicked) may follow a commit: not safe to publish again.
        answer.await.map_err(|_| DirectError::Failed("the direct publisher stopped".into()))?
    }
}

async fn run(kafka: KafkaOptions, mut rx: mpsc::UnboundedReceiver<Job>) {
    // Built at once: with `kafka.instance_id` set this fences a dead predecessor's open
    // transaction now rather than at the first trigger.
    let mut producers: Option<[TxnProducer; 2]> = None;
    let mut unavailable: Option<(std::time::Instant, String)> = None;
    match TxnProducer::pair(&kafka, "api") {
        Ok(p) => producers = Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "api: cannot start the transactional producers for direct fan-out; triggers go through the router until they start");
            unavailable = Some((std::time::Instant::now(), e.to_string()));
        }
    }
    let mut turn = 0usize;
    while let Some(first) = rx.recv().await {
        let mut bytes = first.bytes;
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS_PER_TXN && bytes < MAX_BYTES_PER_TXN {
            match rx.try_recv() {
                Ok(j) => {
                    bytes += j.bytes;
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        if producers.is_none() {
            // Tried again at most every RETRY_PRODUCERS; meanwhile the triggers take the router.
            if let Some((since, e)) = &unavailable
                && since.elapsed() < RETRY_PRODUCERS
            {
                answer(jobs, Err(DirectError::NoProducer(e.clone())));
                continue;
            }
            match TxnProducer::pair(&kafka, "api") {
                Ok(p) => {
                    tracing::info!("api: transactional producers for direct fan-out started");
                    producers = Some(p);
                    unavailable = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "api: cannot start the transactional producers for direct fan-out; triggers go through the router");
                    unavailable = Some((std::time::Instant::now(), e.to_string()));
                    answer(jobs, Err(DirectError::NoProducer(e.to_string())));
                    continue;
                }
            }
        }
        let Some(pair) = producers.as_mut() else { continue };
        // Take turns (see `TxnProducer::pair`): the other producer's last commit is a whole
        // turn older, so the coordinator has finished it.
        let producer = &mut pair[turn];
        turn = (turn + 1) % 2;
        enqueue(producer, &jobs);
        let result = tokio::task::block_in_place(|| producer.commit_blocking(None, &TopicPartitionList::new()))
            .map_err(|e| DirectError::Failed(e.to_string()));
        if let Err(e) = &result {
            tracing::warn!(error = %e, triggers = jobs.len(), "api: direct fan-out transaction failed; answering 503");
        }
        answer(jobs, result);
    }
}

/// Every job's records into the producer's transaction. A record that cannot join it makes the
/// commit abort it (see `TxnProducer::send`), so a failure leaves nothing on the log.
fn enqueue(producer: &mut TxnProducer, jobs: &[Job]) {
    for job in jobs {
        let t = &job.trigger;
        if producer.send_with_header(&t.topic, &t.key, &t.value, Some((ROUTED_HEADER, b"api"))).is_err() {
            return;
        }
        if job.deliveries.iter().any(|d| producer.send(&d.topic, &d.key, &d.value).is_err()) {
            return;
        }
    }
}

fn answer(jobs: Vec<Job>, result: Result<(), DirectError>) {
    for job in jobs {
        let _ = job.done.send(result.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_schemas::Envelope;

    fn trigger(key: Option<&str>) -> TriggerRequested {
        TriggerRequested {
            envelope: Envelope { tenant_id: "acme".into(), trigger_id: Some("trg_1".into()), ..Default::default() },
            event_type: "invoice.paid".into(),
            payload: b"{}".to_vec(),
            content_type: "application/json".into(),
            idempotency_key: key.map(str::to_string),
            endpoint_ids: None,
            source: "api".into(),
        }
    }

    fn endpoints(n: usize, ordered: bool) -> Vec<Arc<EndpointUpserted>> {
        (0..n)
            .map(|i| {
                Arc::new(EndpointUpserted {
                    envelope: Envelope { endpoint_id: Some(format!("ep_{i}")), ..Default::default() },
                    url: "https://example.com/hook".into(),
                    description: String::new(),
                    event_types: vec!["invoice.*".into()],
                    enabled: true,
                    version: 1,
                    headers: Default::default(),
                    timeout_ms: 10_000,
                    retry_schedule_ms: None,
                    rate_limit: None,
                    batch: None,
                    ordered: ordered && i == 0,
                    template: None,
                    signing_keys: vec![],
                    disabled_reason: None,
                    created_at: 0,
                })
            })
            .collect()
    }

    #[test]
    fn above_the_rate_limit_triggers_take_the_router_until_a_slower_second() {
        let t0 = std::time::Instant::now();
        let mut r = Rate { since: t0, count: 0, last: 0 };
        let ms = |n: u64| t0 + std::time::Duration::from_millis(n);
        assert!((0..MAX_RATE).all(|_| r.admit(ms(10))), "a first second under the limit");
        assert!(!r.admit(ms(20)), "one more in the same second");
        assert!(!r.admit(ms(1_000)), "the next second follows a second over the limit");
        assert!(!r.admit(ms(1_500)));
        assert!(r.admit(ms(2_000)), "the second before held two triggers");
        assert!(r.admit(ms(9_000)), "after a quiet gap");
    }

    #[test]
    fn only_unkeyed_small_unordered_fan_outs_skip_the_router() {
        let t = trigger(None);
        assert!(eligible(&t, &endpoints(1, false), 200));
        assert!(eligible(&t, &endpoints(0, false), 200), "nothing to deliver: the trigger record alone");
        assert!(eligible(&t, &endpoints(MAX_TARGETS, false), 200));
        assert!(!eligible(&t, &endpoints(MAX_TARGETS + 1, false), 200), "a wide fan-out goes to the router");
        assert!(!eligible(&t, &endpoints(2, true), 200), "an ordered endpoint gets its deliveries from the router");
        assert!(!eligible(&trigger(Some("k")), &endpoints(1, false), 200), "keys are judged by the router's dedupe");
        assert!(eligible(&t, &endpoints(1, false), MAX_BYTES / 2));
        assert!(!eligible(&t, &endpoints(1, false), MAX_BYTES / 2 + 1), "the trigger and its delivery over 1 MiB");
        let mut bad = trigger(None);
        bad.content_type.clear();
        assert!(!eligible(&bad, &endpoints(1, false), 200), "what the router would quarantine is not fanned out");
    }
}
