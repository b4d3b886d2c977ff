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
    c
}

/// Seeks every assigned partition back to the group's committed offset (the beginning when
/// none) and resumes it: after an aborted transaction, everything since the last commit is
/// read again.
pub fn rewind_to_committed<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::StreamConsumer<C>,
) -> Result<(), crate::KafkaError> {
    use rdkafka::consumer::Consumer;
    use rdkafka::{Offset, TopicPartitionList};
    let timeout = std::time::Duration::from_secs(10);
    let assigned = consumer.assignment().map_err(|source| crate::KafkaError::Transaction { source })?;
    let committed = tokio::task::block_in_place(|| consumer.committed_offsets(assigned, timeout))
        .map_err(|source| crate::KafkaError::Transaction { source })?;
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
