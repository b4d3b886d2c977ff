//! Direct fan-out (`api.direct_fanout`): the API writes a trigger's DeliveryRequested records
//! itself, beside its TriggerRequested record, and answers 202 once the broker has acknowledged
//! every one of them.
//!
//! Through the router a delivery takes two hops before a dispatcher can read it: the API's
//! produce, then the router's consume-produce-commit transaction, whose commit (~10 ms on one
//! broker) the dispatcher's read_committed consumer waits for. This way it takes one produce.
//! (A read_committed reader still stops at an open transaction of another writer on the same
//! partition, the router's or the scheduler's: with traffic on both paths, a direct delivery
//! may wait for such a commit.)
//! The trigger record still goes onto the triggers topic (the event stream, the router's
//! idempotency memory), marked with [`ROUTED_HEADER`] so that the router fans out nothing for
//! it.
//!
//! The records are not written in a transaction (one cost 8.5–10.6 ms per commit and most of
//! the latency: README, "Thirteenth round"). The idempotent producer keeps each record once
//! across broker retries, so a 202 means every record is on the log, once. A failure (503)
//! may leave some of them written: some endpoints can receive a trigger the client was told
//! to send again, as after any answer lost on the way. A client that must not cause a repeat
//! sends an idempotency key; keyed triggers take the router, whose transaction writes all of a
//! trigger's deliveries or none, and whose dedupe reads the log back.
//!
//! Only simple triggers take this path ([`plan`]): no idempotency key, at most [`MAX_TARGETS`]
//! endpoints (a wider fan-out is per-trigger work the router does in batches), none of them
//! ordered (an ordered endpoint gets its deliveries in trigger order only if they all come
//! through one router), and at most [`MAX_BYTES`] in all. The rest go through the router as
//! before.
//!
//! When this API takes more than [`MAX_RATE`] triggers a second, they go through the router:
//! under a burst its transactions, each taking up to 1,000 triggers from its consumer, write
//! far fewer and larger requests than a produce per trigger, and drain faster.

use std::sync::Arc;

use hookline_config::KafkaOptions;
use hookline_kafka::Topics;
use hookline_kafka::catalog::Catalog;
use hookline_kafka::producer::{EventProducer, Record};
use hookline_router::{Output, ROUTED_HEADER};
use hookline_schemas::{Codec, EndpointUpserted, TriggerRequested};
use hookline_telemetry::{Counter, labels, metrics, names};
use tokio::sync::Semaphore;

/// Most endpoints a directly fanned-out trigger may go to. A trigger to 105 endpoints reached
/// them about twice as fast as through the router; one to 1,000 endpoints (scenario b) was
/// slower, with the API's memory at 863 MB against 369 (README, "Thirteenth round").
pub const MAX_TARGETS: usize = 128;
/// Most bytes (trigger and deliveries, encoded) of a directly fanned-out trigger.
pub const MAX_BYTES: usize = 1 << 20;
/// Most bytes of direct fan-outs waiting for their acknowledgements; a request beyond it waits
/// for room.
const MAX_QUEUED_BYTES: usize = 32 << 20;
/// How long the direct producer's records wait to be batched (`linger.ms`). Short: a delivery
/// waits for it before a dispatcher can see it.
const LINGER_MS: u32 = 1;

/// Triggers per second (all of this API's, in the last whole second) above which the router
/// takes them (README, "Thirteenth round").
pub const MAX_RATE: u64 = 2000;

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

/// Why a directly fanned-out trigger was not acknowledged.
#[derive(Debug, Clone)]
pub enum DirectError {
    /// Nothing was written and the API has no direct producer: the caller may publish the
    /// trigger for the router instead.
    NoProducer(String),
    /// The broker did not acknowledge every record; some may be on the log.
    Failed(String),
}

impl std::fmt::Display for DirectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoProducer(e) => write!(f, "no direct producer: {e}"),
            Self::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// The handle the handlers publish through; cheap to clone.
#[derive(Clone)]
pub struct Direct {
    /// The producer, or why it could not be built.
    producer: Result<EventProducer, String>,
    room: Arc<Semaphore>,
    rate: Arc<std::sync::Mutex<Rate>>,
    /// `hookline_direct_fanouts_total` with result "ok" and "error", kept to count per trigger.
    outcomes: [Counter; 2],
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
    pub fn new(kafka: &KafkaOptions) -> Self {
        let producer = EventProducer::with_linger(kafka, "hookline-api-direct", LINGER_MS).map_err(|e| {
            tracing::warn!(error = %e, "api: cannot build the producer for direct fan-out; triggers go through the router");
            e.to_string()
        });
        if let Ok(p) = &producer {
            hookline_telemetry::gauge_fn(
                names::KAFKA_PRODUCER_QUEUE,
                labels([(names::CLIENT, "api-direct")]),
                p.queue_probe(),
            );
        }
        let rate = Rate { since: std::time::Instant::now(), count: 0, last: 0 };
        let outcome = |result| metrics().direct_fanouts.get_or_create(&labels([(names::RESULT, result)])).clone();
        Self {
            producer,
            room: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)),
            rate: Arc::new(std::sync::Mutex::new(rate)),
            outcomes: [outcome("ok"), outcome("error")],
        }
    }

    /// Counts a trigger; `false` when this API takes more than [`MAX_RATE`] triggers a second,
    /// and the trigger should go through the router.
    pub fn admit(&self) -> bool {
        self.rate.lock().unwrap_or_else(|p| p.into_inner()).admit(std::time::Instant::now())
    }

    /// Writes the trigger record (to `topic`, keyed `key`, with [`ROUTED_HEADER`]) and the
    /// planned deliveries; `Ok` once the broker has acknowledged every one.
    pub async fn publish(&self, topic: &str, key: &[u8], trigger: &[u8], plan: Plan) -> Result<(), DirectError> {
        let producer = self.producer.as_ref().map_err(|e| DirectError::NoProducer(e.clone()))?;
        let _room = (self.room.acquire_many(plan.bytes.min(MAX_BYTES) as u32).await)
            .map_err(|_| DirectError::NoProducer("the direct producer has stopped".into()))?;
        let mut records = Vec::with_capacity(plan.deliveries.len() + 1);
        records.push(Record { topic, key, value: trigger, header: Some((ROUTED_HEADER, b"api")) });
        records.extend(plan.deliveries.iter().map(|d| Record {
            topic: &d.topic,
            key: &d.key,
            value: &d.value,
            header: None,
        }));
        let result = producer.send_all(&records).await.map_err(|e| DirectError::Failed(e.to_string()));
        self.outcomes[usize::from(result.is_err())].inc();
        result
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
        assert!(!eligible(&t, &endpoints(100, false), 20_000), "101 copies of 20,000 bytes: over 1 MiB");
        assert!(!eligible(&t, &endpoints(2, true), 200), "an ordered endpoint gets its deliveries from the router");
        assert!(!eligible(&trigger(Some("k")), &endpoints(1, false), 200), "keys are judged by the router's dedupe");
        assert!(eligible(&t, &endpoints(1, false), MAX_BYTES / 2));
        assert!(!eligible(&t, &endpoints(1, false), MAX_BYTES / 2 + 1), "the trigger and its delivery over 1 MiB");
        let mut bad = trigger(None);
        bad.content_type.clear();
        assert!(!eligible(&bad, &endpoints(1, false), 200), "what the router would quarantine is not fanned out");
    }
}
