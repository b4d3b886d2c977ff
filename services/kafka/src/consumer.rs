//! Consumer settings shared by every role.
//!
//! Offsets are stored by hand (`enable.auto.offset.store=false`) only for finished work, and
//! committed by the role (or by its transaction); `read_committed` hides aborted transactions.

use hookline_config::KafkaOptions;
use rdkafka::ClientConfig;

/// A consumer config for `group`.
pub fn base_config(kafka: &KafkaOptions, group: &str, client_id: &str) -> ClientConfig {
    let mut c = crate::client_config(kafka);
    c.set("group.id", group)
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", kafka.session_timeout_ms.to_string())
        .set("partition.assignment.strategy", "cooperative-sticky");
    // A small prefetch queue, unless the operator chose one in `kafka.client_properties`.
    // librdkafka's default holds up to 64 MB of fetched records per consumer, and stops
    // fetching for 1 s once that is full: a projector running behind kept its queue full. With
    // 2 MB and a 10 ms pause for every group member but the dispatcher, Hookline's peak RSS fell
    // 235 -> 146 MB in a closed loop of 100,000 and 251 -> 149 MB in the burst of 100,000
    // (medians of three alternated pairs), at the same throughput (README, "Eighth round").
    // The 2 MB with the default 1 s pause cut the closed loop's throughput to a quarter.
    for (key, value) in PREFETCH {
        crate::set_unless_chosen(&mut c, kafka, key, &[], value);
    }
    c
}

/// Hookline's prefetch settings for every consumer group member (see [`base_config`]).
const PREFETCH: [(&str, &str); 2] = [(QUEUE_KB, "2048"), ("fetch.queue.backoff.ms", "10")];
const QUEUE_KB: &str = "queued.max.messages.kbytes";

/// Gives `c` librdkafka's own prefetch queue (64 MB) back, unless the operator chose one. For
/// the dispatcher: the records it holds are bounded by `dispatcher.max_in_flight_per_partition`
/// anyway, and with 2 MB the fan-out scenario (1,000 endpoints) delivered 14% fewer per second
/// (five alternated pairs).
pub fn with_large_prefetch(c: &mut ClientConfig, kafka: &KafkaOptions) {
    crate::set_unless_chosen(c, kafka, QUEUE_KB, &[], "65536");
}

/// Seeks every assigned partition back to the group's committed offset (the beginning when
/// none) and resumes it: after an aborted transaction, everything since the last commit is
/// read again.
///
/// While the group coordinator cannot say what is committed (a stalled or restarting broker),
/// tries again every second: reading on from the current positions would skip the records
/// whose outcomes the aborted transaction lost, and failing the role would stop the process.
/// Returns false when `shutdown` fired first; the caller must then commit nothing more.
pub async fn rewind_to_committed<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::StreamConsumer<C>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> bool {
    loop {
        match tokio::task::block_in_place(|| seek_to_committed(consumer)) {
            Ok(()) => return true,
            Err(e) => tracing::warn!(error = %e, "cannot read the committed offsets yet; trying again in 1 s"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

fn seek_to_committed<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::StreamConsumer<C>,
) -> Result<(), crate::KafkaError> {
    use rdkafka::consumer::Consumer;
    use rdkafka::{Offset, TopicPartitionList};
    let timeout = std::time::Duration::from_secs(10);
    let assigned = consumer.assignment().map_err(|source| crate::KafkaError::Transaction { source })?;
    let committed =
        consumer.committed_offsets(assigned, timeout).map_err(|source| crate::KafkaError::Transaction { source })?;
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Invalid => Offset::Beginning,
            o => o,
        };
        let _ = consumer.seek(e.topic(), e.partition(), offset, timeout);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(e.topic(), e.partition());
        let _ = consumer.resume(&tpl);
    }
    Ok(())
}

/// The histogram a role feeds with [`observe_age`].
pub use hookline_telemetry::record_age_histogram as age_histogram;

/// Records how old `msg` is (since its Kafka timestamp) as it is picked up, in `h` (see
/// [`age_histogram`]); a timestamp from the future counts as 0.
pub fn observe_age<M: rdkafka::Message>(h: &hookline_telemetry::Histogram, msg: &M) {
    if let Some(ts) = msg.timestamp().to_millis() {
        let age_ms = hookline_domain::time::now_ms().saturating_sub(ts).max(0);
        h.observe(age_ms as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::{Offset, TopicPartitionList};

    #[test]
    fn a_small_prefetch_queue_unless_the_operator_chose_one() {
        let mut kafka = hookline_config::Config::defaults().unwrap().kafka;
        let mut c = super::base_config(&kafka, "g", "t");
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("2048"));
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        // The dispatcher's: librdkafka's default size.
        super::with_large_prefetch(&mut c, &kafka);
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("65536"));
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        // The operator's choice wins in both.
        kafka.client_properties.insert("queued.max.messages.kbytes".into(), "4096".into());
        let mut c = super::base_config(&kafka, "g", "t");
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("4096"));
        super::with_large_prefetch(&mut c, &kafka);
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("4096"));
        // librdkafka accepts the settings.
        let _: rdkafka::consumer::BaseConsumer = c.create().unwrap();
    }

    /// No broker answers (nothing listens on the port): the rewind keeps trying instead of
    /// failing the role, and gives up only at shutdown, saying so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rewind_without_a_broker_waits_for_one_until_shutdown() {
        let mut kafka = hookline_config::Config::defaults().unwrap().kafka;
        kafka.brokers = "127.0.0.1:1".into();
        let consumer: StreamConsumer = super::base_config(&kafka, "rewind-test", "test").create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Beginning).unwrap();
        consumer.assign(&tpl).unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            stop.cancel();
        });
        let started = std::time::Instant::now();
        assert!(!super::rewind_to_committed(&consumer, &shutdown).await, "no rewind without a broker");
        // One attempt (its 10 s timeout), then the shutdown is seen.
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "{:?}", started.elapsed());
    }
}
