//! The retry scheduler: durable, punctual timers without polling a database.
//!
//! A retry is a DeliveryRequested (with `not_before`) parked in a *tier topic*
//! `<prefix>retry.<D>ms`, where every record waits the tier's fixed delay D counted from its
//! append time. Because append times only grow within a partition, the head of each partition
//! is always the first record due: the scheduler reads a head, and if it is not due yet,
//! pauses that partition until it is (no polling, no index). When a record's tier delay is up,
//! the remaining wait until `not_before` decides: due → forwarded to the deliveries topic;
//! still far → re-parked in the largest tier that fits; under the smallest tier → held for the
//! rest (under a second). Forwarding and the consumed offsets commit in one transaction.
//! Everything lives in Kafka, so timers survive a restart of any process and a Redis flush.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hookline_config::Config;
use hookline_domain::time;
use hookline_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use hookline_kafka::rdkafka::{Message, Offset, TopicPartitionList};
use hookline_kafka::txn::TxnProducer;
use hookline_kafka::{KafkaError, Topics, consumer};
use hookline_schemas::{AnyEvent, Codec};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

const COMMIT_INTERVAL: Duration = Duration::from_millis(50);
/// A transaction that forwarded a retry commits this soon after the first forward instead of
/// at the next tick. Until it commits, the deliveries partition it wrote to is held back for
/// every read-committed reader: the dispatcher sees none of the router's newer deliveries there
/// (Kafka's last stable offset). The short wait gathers the retries fetched together.
const FORWARD_LINGER: Duration = Duration::from_millis(2);
/// Shortest time between two commits, so that a steady stream of due retries (a retry storm)
/// still makes one transaction per this interval at most, not one per forward.
const MIN_COMMIT_GAP: Duration = Duration::from_millis(20);
/// A record this close to due is forwarded now.
const DUE_SLACK_MS: i64 = 10;

/// What to do with a parked record at time `now`.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not due: wait until this time (ms).
    WaitUntil(i64),
    /// Forward to the deliveries topic.
    Deliver,
    /// Re-park in this tier.
    Repark(u64),
}

/// `appended_at` is the record's timestamp; `tier_ms` its tier's delay; `tiers` all tiers.
pub fn decide(now: i64, appended_at: i64, tier_ms: u64, not_before: i64, tiers: &[u64]) -> Decision {
    let tier_due = appended_at + tier_ms as i64;
    if now < tier_due && not_before - now > DUE_SLACK_MS {
        return Decision::WaitUntil(tier_due.min(not_before));
    }
    let remaining = not_before - now;
    if remaining <= DUE_SLACK_MS {
        return Decision::Deliver;
    }
    match tiers.iter().rev().find(|&&t| t as i64 <= remaining) {
        Some(&t) => Decision::Repark(t),
        None => Decision::WaitUntil(not_before),
    }
}

/// Runs the scheduler until `shutdown`.
pub async fn run(config: Arc<Config>, codec: Arc<Codec>, shutdown: CancellationToken) -> Result<(), SchedulerError> {
    let kafka = &config.kafka;
    let topics = Topics::from_options(kafka);
    let tiers = config.scheduler.tiers_ms.clone();
    let tier_of: HashMap<String, u64> = tiers.iter().map(|&t| (topics.retry_tier(t), t)).collect();
    let names: Vec<&str> = tier_of.keys().map(String::as_str).collect();
    let group = format!("{}scheduler", kafka.topic_prefix);
    let client_id = format!("hookline-scheduler-{}", uuid::Uuid::now_v7().simple());
    let consumer: StreamConsumer = consumer::base_config(kafka, &group, &client_id)
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    consumer.subscribe(&names).map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    let mut producer =
        TxnProducer::new(kafka, "scheduler", &hookline_kafka::txn::transactional_id(kafka, "scheduler"))?;
    tracing::info!(role = "scheduler", tiers = ?tiers, "started");

    // Paused partitions: (topic, partition) -> (offset of the parked head, wake-up time ms).
    let mut waiting: HashMap<(String, i32), (i64, i64)> = HashMap::new();
    let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
    let mut tick = tokio::time::interval(COMMIT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Set by the first forward of the open transaction: when that transaction commits.
    let mut forwarded: Option<tokio::time::Instant> = None;
    let mut last_commit = tokio::time::Instant::now();

    loop {
        let next_wake = waiting.values().map(|&(_, at)| at).min();
        let sleep_for = next_wake
            .map_or(Duration::from_secs(3600), |at| Duration::from_millis((at - time::now_ms()).max(0) as u64));
        let mut commit_now = false;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(sleep_for), if next_wake.is_some() => {
                let now = time::now_ms();
                let due: Vec<_> = waiting.iter().filter(|(_, v)| v.1 <= now).map(|(k, _)| k.clone()).collect();
                for key in due {
                    waiting.remove(&key);
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(&key.0, key.1);
                    if let Err(e) = consumer.resume(&tpl) {
                        tracing::warn!(error = %e, topic = key.0, partition = key.1, "cannot resume");
                    }
                }
            }
            _ = tick.tick() => commit_now = true,
            _ = tokio::time::sleep_until(forwarded.unwrap_or_else(tokio::time::Instant::now)), if forwarded.is_some() => {
                commit_now = true;
            }
            msg = consumer.recv() => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduler: consumer error");
                        continue;
                    }
                };
                let key = (msg.topic().to_string(), msg.partition());
                if waiting.get(&key).is_some_and(|&(head, _)| msg.offset() >= head) {
                    continue; // fetched before the pause took effect; re-read after resume
                }
                let Some(&tier_ms) = tier_of.get(msg.topic()) else { continue };
                let (value, record) = match msg.payload().map(|b| (b, codec.decode(b))) {
                    Some((b, Ok(AnyEvent::DeliveryRequested(d)))) => (b, d),
                    _ => {
                        tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), "scheduler: not a DeliveryRequested; skipped");
                        offsets.insert(key, msg.offset() + 1);
                        continue;
                    }
                };
                let appended = msg.timestamp().to_millis().unwrap_or_else(time::now_ms);
                let not_before = record.not_before.unwrap_or(0);
                let endpoint_key = record.envelope.endpoint_id.as_deref().unwrap_or_default().as_bytes();
                match decide(time::now_ms(), appended, tier_ms, not_before, &tiers) {
                    Decision::WaitUntil(at) => {
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition(&key.0, key.1);
                        let _ = consumer.pause(&tpl);
                        let _ = consumer.seek(&key.0, key.1, Offset::Offset(msg.offset()), Duration::from_secs(5));
                        waiting.insert(key, (msg.offset(), at));
                    }
                    Decision::Deliver => {
                        // A failure here fails the next commit, which redoes this range.
                        let _ = producer.send(&topics.deliveries, endpoint_key, value);
                        hookline_telemetry::metrics().retries_due.inc();
                        offsets.insert(key, msg.offset() + 1);
                        forwarded.get_or_insert_with(|| {
                            (tokio::time::Instant::now() + FORWARD_LINGER).max(last_commit + MIN_COMMIT_GAP)
                        });
                    }
                    Decision::Repark(tier) => {
                        let _ = producer.send(&topics.retry_tier(tier), endpoint_key, value);
                        offsets.insert(key, msg.offset() + 1);
                    }
                }
            }
        }
        if commit_now {
            forwarded = None;
            last_commit = tokio::time::Instant::now();
            tick.reset();
            // Fails (aborted) also when a record could not join the transaction: redo.
            match producer.commit(&consumer, &positions(&offsets)) {
                Ok(()) => offsets.clear(),
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler: transaction failed; re-reading from the committed offsets");
                    offsets.clear();
                    waiting.clear();
                    if !consumer::rewind_to_committed(&consumer, &shutdown).await {
                        break;
                    }
                }
            }
        }
    }
    if let Err(e) = producer.commit(&consumer, &positions(&offsets)) {
        // Aborted: the next owner redoes the rest from the committed offsets.
        tracing::warn!(error = %e, "scheduler: the last transaction failed; the next owner redoes the rest");
    }
    tracing::info!(role = "scheduler", "stopped");
    Ok(())
}

/// The consumed positions to commit with the transaction.
fn positions(offsets: &HashMap<(String, i32), i64>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in offsets {
        let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
    }
    tpl
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIERS: [u64; 3] = [1000, 5000, 30000];

    #[test]
    fn decisions() {
        // Appended at 0 in the 5 s tier, due at 4.3 s: wait until the tier delay ends... no,
        // until min(tier end, due) = 4.3 s.
        assert_eq!(decide(100, 0, 5000, 4300, &TIERS), Decision::WaitUntil(4300));
        assert_eq!(decide(4300, 0, 5000, 4300, &TIERS), Decision::Deliver);
        // Appended at 0 in the 1 s tier, due at 40 s: at 1 s, re-park in 30 s.
        assert_eq!(decide(1000, 0, 1000, 40_000, &TIERS), Decision::Repark(30000));
        // At 31 s, 9 s remain: the 5 s tier.
        assert_eq!(decide(31_000, 1000, 30000, 40_000, &TIERS), Decision::Repark(5000));
        // Under the smallest tier: hold for the rest.
        assert_eq!(decide(39_500, 36_000, 1000, 40_000, &TIERS), Decision::WaitUntil(40_000));
        // Overdue (everything was down): deliver at once.
        assert_eq!(decide(99_000, 0, 1000, 40_000, &TIERS), Decision::Deliver);
    }
}
