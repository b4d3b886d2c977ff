//! Consumer settings shared by every role.
//!
//! Offsets are stored by hand (`enable.auto.offset.store=false`) only for finished work, and
//! committed by the role (or by its transaction); `read_committed` hides aborted transactions.

use hookline_config::KafkaOptions;
use rdkafka::ClientConfig;

/// A consumer config for `group`.
pub fn base_config(kafka: &KafkaOptions, group: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers)
        .set("group.id", group)
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", kafka.session_timeout_ms.to_string())
        .set("partition.assignment.strategy", "cooperative-sticky");
    c
}
