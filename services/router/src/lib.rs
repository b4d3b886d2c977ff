//! The router role: consumes the triggers topic and fans each trigger out to one
//! DeliveryRequested per subscribed (or explicitly named) enabled endpoint, keyed by endpoint
//! id, in a Kafka transaction together with the consumed offsets.
//!
//! - Delivery ids derive from (trigger id, endpoint id), so re-processing never creates a
//!   second delivery; a trigger written straight to Kafka without an id gets one derived from
//!   its log position.
//! - A keyed trigger (idempotency key) repeated inside the window fans out to nothing
//!   ([`dedupe`]), whatever happened to the API's Redis claim.
//! - A record that cannot be decoded or is not a valid trigger goes to the quarantine topic
//!   with the reason and its original position; the partition moves on.

pub mod dedupe;
mod fanout;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use hookline_config::Config;
use hookline_kafka::catalog::Catalog;
use hookline_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use hookline_kafka::rdkafka::{Message, Offset, TopicPartitionList};
use hookline_kafka::txn::TxnProducer;
use hookline_kafka::{KafkaError, Topics, consumer};
use hookline_schemas::Codec;
use tokio_util::sync::CancellationToken;

pub use fanout::{Output, ROUTED_HEADER, check, deliveries, route_record, targets};

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Most records handled in one transaction.
const MAX_BATCH: usize = 1000;
/// Longest the positions of records that wrote nothing wait before they are committed.
const PLAIN_COMMIT_EVERY: Duration = Duration::from_millis(100);

/// Runs the router until `shutdown`, after the catalog is loaded.
pub async fn run(
    config: Arc<Config>,
    catalog: Catalog,
    codec: Arc<Codec>,
    shutdown: CancellationToken,
) -> Result<(), RouterError> {
    let kafka = &config.kafka;
    let topics = Topics::from_options(kafka);
    tokio::select! {
        _ = catalog.wait_loaded() => {}
        _ = shutdown.cancelled() => return Ok(()),
    }
    let group = format!("{}router", kafka.topic_prefix);
    let client_id = format!("hookline-router-{}", uuid::Uuid::now_v7().simple());
    let revocations = Revocations::default();
    let revoked = revocations.revoked.clone();
    let consumer: StreamConsumer<Revocations> = consumer::base_config(kafka, &group, &client_id)
        .create_with_context(revocations)
        .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    consumer
        .subscribe(&[&topics.triggers])
        .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    // Two transactional producers take turns, one batch each (see `TxnProducer::pair`).
    let mut producers = TxnProducer::pair(kafka, "router")?;
    let mut turn = 0usize;
    let age = consumer::age_histogram("router");
    let mut dedupe = dedupe::Dedupe::new(config.flow.idempotency_window_ms, config.flow.idempotency_memory_keys);
    tracing::info!(role = "router", topic = topics.triggers, "started");

    // Positions read past but not committed yet (only records that wrote nothing; see below).
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_plain_commit = Instant::now();

    loop {
        let due = last_plain_commit + PLAIN_COMMIT_EVERY;
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = consumer.recv() => m,
            // Nothing more came: commit what waits.
            _ = tokio::time::sleep_until(due.into()), if !positions.is_empty() => {
                let _ = forget_revoked(&revoked, &mut dedupe, &mut positions);
                commit_offsets(&consumer, &topics.triggers, &mut positions, &kafka.brokers);
                last_plain_commit = Instant::now();
                continue;
            }
        };
        let mut batch = vec![first];
        // Take what is already fetched, without waiting, up to a bound.
        while batch.len() < MAX_BATCH {
            match consumer.recv().now_or_never() {
                Some(m) => batch.push(m),
                None => break,
            }
        }
        // A batch ends at a rebalance event: records it holds of a partition revoked there are
        // its new owner's work now, and must not move this router's positions or memory.
        let gone = forget_revoked(&revoked, &mut dedupe, &mut positions);
        if !gone.is_empty() {
            batch.retain(|m| m.as_ref().map_or(true, |msg| !gone.contains(&msg.partition())));
        }
        let producer = &mut producers[turn];
        let mut outputs = 0usize;
        for m in batch {
            let msg = match m {
                Ok(msg) => msg,
                Err(e) => {
                    tracing::warn!(error = %e, "router: consumer error");
                    continue;
                }
            };
            consumer::observe_age(&age, &msg);
            if let Some(from) = dedupe.needs_restore(msg.partition(), msg.offset()) {
                let (topic, p, until) = (msg.topic().to_string(), msg.partition(), msg.offset());
                let started = std::time::Instant::now();
                match tokio::task::block_in_place(|| dedupe.restore(kafka, &codec, &topic, p, from, until)) {
                    Ok(n) => tracing::info!(
                        partition = p,
                        keys = n,
                        ms = started.elapsed().as_millis() as u64,
                        "router: idempotency keys read back from the log"
                    ),
                    Err(e) => tracing::warn!(
                        partition = p,
                        error = e,
                        "router: cannot read idempotency keys back; Redis claims alone protect this range"
                    ),
                }
            }
            let out = route_record(
                Some(&mut dedupe),
                &catalog,
                &codec,
                &topics,
                msg.topic(),
                msg.partition(),
                msg.offset(),
                msg.key(),
                msg.payload(),
                routed(&msg),
            );
            // A record the transaction cannot take makes the commit below fail (and abort):
            // stop here, the batch is redone.
            if out.iter().any(|o| producer.send(&o.topic, &o.key, &o.value).is_err()) {
                break;
            }
            outputs += out.len();
            positions.insert(msg.partition(), msg.offset() + 1);
        }
        // Nothing to write (triggers the API fanned out itself, repeats, nothing subscribed):
        // the positions are committed alone, without a transaction (which would cost the broker
        // four requests and two markers), at most every PLAIN_COMMIT_EVERY: reading such records
        // again after a crash writes nothing either. Synchronous, so a commit cannot land after
        // a later transaction's offsets.
        if outputs == 0 && !producer.is_open() {
            if last_plain_commit.elapsed() >= PLAIN_COMMIT_EVERY {
                last_plain_commit = Instant::now();
                commit_offsets(&consumer, &topics.triggers, &mut positions, &kafka.brokers);
            }
            continue;
        }
        // The other producer's last commit is a whole turn older (see `TxnProducer::pair`).
        turn = (turn + 1) % 2;
        if let Err(e) = producer.commit(&consumer, &offset_list(&topics.triggers, &positions)) {
            positions.clear();
            // The transaction was aborted (or the offsets not taken): rewind to the committed
            // positions and redo the batch.
            tracing::warn!(error = %e, "router: commit failed; re-reading from the committed offsets");
            if !consumer::rewind_to_committed(&consumer, &shutdown).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        positions.clear();
        tracing::trace!(outputs, "router: batch committed");
    }
    let _ = forget_revoked(&revoked, &mut dedupe, &mut positions);
    commit_offsets(&consumer, &topics.triggers, &mut positions, &kafka.brokers);
    for p in &mut producers {
        if let Err(e) = p.abort() {
            tracing::warn!(error = %e, "router: aborting the open transaction at shutdown failed; it expires by itself");
        }
    }
    tracing::info!(role = "router", "stopped");
    Ok(())
}

/// Takes note of the partitions revoked since the last call, and returns them.
fn forget_revoked(
    revoked: &std::sync::Mutex<Vec<i32>>,
    dedupe: &mut dedupe::Dedupe,
    positions: &mut BTreeMap<i32, i64>,
) -> Vec<i32> {
    let gone = std::mem::take(&mut *revoked.lock().unwrap_or_else(|p| p.into_inner()));
    for &p in &gone {
        dedupe.interrupt(p);
        // Someone else's now: committing a position there could move its offset back.
        positions.remove(&p);
    }
    gone
}

/// Commits `positions` of `topic` for the router's group (blocking), outside any transaction,
/// and forgets them. On failure they are kept for the next try: nothing was written, and a
/// rewind would read the whole idempotency window back for nothing.
fn commit_offsets(
    consumer: &StreamConsumer<Revocations>,
    topic: &str,
    positions: &mut BTreeMap<i32, i64>,
    brokers: &str,
) {
    if positions.is_empty() {
        return;
    }
    let offsets = offset_list(topic, positions);
    match tokio::task::block_in_place(|| consumer.commit(&offsets, hookline_kafka::rdkafka::consumer::CommitMode::Sync))
    {
        Ok(()) => positions.clear(),
        Err(source) => {
            let e = KafkaError::Client { brokers: brokers.to_string(), source };
            tracing::warn!(error = %e, "router: committing offsets failed; kept for the next try");
        }
    }
}

/// The next offsets to read, as Kafka takes them.
fn offset_list(topic: &str, positions: &BTreeMap<i32, i64>) -> TopicPartitionList {
    let mut offsets = TopicPartitionList::new();
    for (&p, &o) in positions {
        let _ = offsets.add_partition_offset(topic, p, Offset::Offset(o));
    }
    offsets
}

/// Whether the API already wrote this trigger's deliveries (see [`ROUTED_HEADER`]).
fn routed(msg: &impl Message) -> bool {
    use hookline_kafka::rdkafka::message::Headers;
    // rust-rdkafka panics on a header name that is not UTF-8 (`CStr::to_str().unwrap()`), and
    // a producer writing straight to the topic may send one: such a record is not the API's.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        msg.headers().is_some_and(|h| h.iter().any(|h| h.key == ROUTED_HEADER))
    }))
    .unwrap_or(false)
}

/// Partitions taken away by rebalances, for the idempotency memory (see [`dedupe`]).
#[derive(Default)]
struct Revocations {
    revoked: Arc<std::sync::Mutex<Vec<i32>>>,
}

impl hookline_kafka::rdkafka::ClientContext for Revocations {}

impl hookline_kafka::rdkafka::consumer::ConsumerContext for Revocations {
    fn pre_rebalance(
        &self,
        _c: &hookline_kafka::rdkafka::consumer::BaseConsumer<Self>,
        r: &hookline_kafka::rdkafka::consumer::Rebalance<'_>,
    ) {
        if let hookline_kafka::rdkafka::consumer::Rebalance::Revoke(tpl) = r {
            let mut v = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            v.extend(tpl.elements().iter().map(|e| e.partition()));
        }
    }
}
