//! Kafka adapter: the only crate that talks to the broker.
//!
//! - [`Topics`]: every topic name, derived from the configured prefix.
//! - [`admin`]: idempotent topic creation (`hookline topics create`) and metadata checks.
//! - [`producer`]: the idempotent (acks=all) producer used by the API and the roles.
//! - [`polled`]: the producer client under both, with its own thread for delivery reports.
//! - [`consumer`]: consumer settings shared by every role (manual offset store, no auto-commit).
//! - [`catalog`]: the in-memory endpoint catalog, loaded from and following the endpoints topic.
//! - [`txn`]: transactional produce + offset commit (exactly-once state changes).

pub mod admin;
pub mod catalog;
pub mod consumer;
mod error;
pub mod polled;
pub mod producer;
mod topics;
pub mod txn;

pub use error::KafkaError;

/// A client config for the configured cluster: `bootstrap.servers` and the operator's
/// `kafka.client_properties` (TLS, SASL, debug, ...). Every Kafka client of Hookline starts here.
pub fn client_config(kafka: &hookline_config::KafkaOptions) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    for (k, v) in &kafka.client_properties {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &kafka.brokers);
    c
}

/// Sets `key` to Hookline's `value`, unless the operator chose it (under that name or one of its
/// `aliases`) in `kafka.client_properties`, whose value then stands.
pub(crate) fn set_unless_chosen(
    c: &mut rdkafka::ClientConfig,
    kafka: &hookline_config::KafkaOptions,
    key: &str,
    aliases: &[&str],
    value: &str,
) {
    let chosen = |k: &str| kafka.client_properties.contains_key(k);
    if !chosen(key) && !aliases.iter().any(|a| chosen(a)) {
        c.set(key, value);
    }
}

pub use rdkafka;
pub use topics::Topics;
