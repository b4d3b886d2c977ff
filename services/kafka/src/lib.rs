//! Kafka adapter: the only crate that talks to the broker.
//!
//! - [`Topics`]: every topic name, derived from the configured prefix.
//! - [`admin`]: idempotent topic creation (`hookline topics create`) and metadata checks.
//! - [`producer`]: the idempotent (acks=all) producer used by the API and the roles.
//! - [`consumer`]: consumer settings shared by every role (manual offset store, no auto-commit).
//! - [`catalog`]: the in-memory endpoint catalog, loaded from and following the endpoints topic.
//! - [`txn`]: transactional produce + offset commit (exactly-once state changes).

pub mod admin;
pub mod catalog;
pub mod consumer;
mod error;
pub mod producer;
mod topics;
pub mod txn;

pub use error::KafkaError;
pub use rdkafka;
pub use topics::Topics;
