//! Rust mirror of the newest version of every schema in `avro/`.
//!
//! Field names and order follow the `.avsc` files exactly; `tests/contract.rs` checks that every
//! event round-trips through its schema. Timestamps are UTC milliseconds since the epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Header shared by every event (`Envelope` in every schema file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Envelope {
    pub event_id: String,
    pub record_type: String,
    pub occurred_at: i64,
    pub tenant_id: String,
    pub trigger_id: Option<String>,
    pub delivery_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub attempt: Option<i32>,
    pub causation_id: Option<String>,
    pub correlation_id: Option<String>,
}

/// Implemented by every event record type.
pub trait Event: Serialize + for<'de> Deserialize<'de> + Into<AnyEvent> {
    /// Record name in the schema (also the envelope's `record_type`).
    const NAME: &'static str;
    fn envelope(&self) -> &Envelope;
    fn envelope_mut(&mut self) -> &mut Envelope;
}

macro_rules! events {
    ($($name:ident),* $(,)?) => {
        $(
            impl Event for $name {
                const NAME: &'static str = stringify!($name);
                fn envelope(&self) -> &Envelope { &self.envelope }
                fn envelope_mut(&mut self) -> &mut Envelope { &mut self.envelope }
            }
            impl From<$name> for AnyEvent {
                fn from(e: $name) -> Self { AnyEvent::$name(e) }
            }
            impl TryFrom<AnyEvent> for $name {
                type Error = AnyEvent;
                fn try_from(e: AnyEvent) -> Result<Self, AnyEvent> {
                    match e { AnyEvent::$name(v) => Ok(v), other => Err(other) }
                }
            }
        )*

        /// Any decoded event.
        #[derive(Debug, Clone, PartialEq)]
        pub enum AnyEvent { $($name($name)),* }

        impl AnyEvent {
            pub fn envelope(&self) -> &Envelope {
                match self { $(AnyEvent::$name(e) => &e.envelope),* }
            }
            pub fn name(&self) -> &'static str {
                match self { $(AnyEvent::$name(_) => stringify!($name)),* }
            }
        }

        /// Record names the codec knows, in schema-file order.
        pub const EVENT_NAMES: &[&str] = &[$(stringify!($name)),*];

        /// Decodes a body written with the reader type's own schema straight into the type
        /// (no intermediate `Value`, no resolution).
        pub(crate) fn decode_direct(
            name: &str,
            reader: &apache_avro::reader::datum::GenericDatumReader<'_>,
            body: &mut impl std::io::Read,
        ) -> Option<Result<AnyEvent, apache_avro::Error>> {
            match name {
                $(stringify!($name) => Some(reader.read_deser::<$name>(body).map(AnyEvent::$name)),)*
                _ => None,
            }
        }

        pub(crate) fn decode_named(
            name: &str,
            value: apache_avro::types::Value,
        ) -> Option<Result<AnyEvent, apache_avro::Error>> {
            match name {
                $(stringify!($name) => Some(apache_avro::from_value::<$name>(&value).map(AnyEvent::$name)),)*
                _ => None,
            }
        }
    };
}

events!(
    TriggerRequested,
    DeliveryRequested,
    AttemptSucceeded,
    AttemptFailed,
    DeliveryDeferred,
    MovedToDLQ,
    DLQReplayed,
    DLQDiscarded,
    CircuitOpened,
    CircuitClosed,
    EndpointUpserted,
    EndpointDeleted,
    EndpointDisabled,
    RecordQuarantined,
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRequested {
    pub envelope: Envelope,
    pub event_type: String,
    #[serde(with = "apache_avro::serde::bytes")]
    pub payload: Vec<u8>,
    pub content_type: String,
    pub idempotency_key: Option<String>,
    pub endpoint_ids: Option<Vec<String>>,
    pub source: String,
}

/// Why a delivery was requested.
pub mod reason {
    pub const INITIAL: &str = "initial";
    pub const RETRY: &str = "retry";
    pub const REPLAY: &str = "replay";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRequested {
    pub envelope: Envelope,
    pub event_type: String,
    #[serde(with = "apache_avro::serde::bytes")]
    pub payload: Vec<u8>,
    pub content_type: String,
    pub message_id: String,
    pub reason: String,
    pub trigger_occurred_at: i64,
    pub not_before: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptSucceeded {
    pub envelope: Envelope,
    pub message_id: String,
    pub status_code: i32,
    pub duration_ms: i32,
    pub response_excerpt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptFailed {
    pub envelope: Envelope,
    pub message_id: String,
    pub error_kind: String,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub error_message: String,
    pub response_excerpt: Option<String>,
    pub next_attempt_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryDeferred {
    pub envelope: Envelope,
    pub cause: String,
    pub until: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovedToDLQ {
    pub envelope: Envelope,
    pub event_type: String,
    #[serde(with = "apache_avro::serde::bytes")]
    pub payload: Vec<u8>,
    pub content_type: String,
    pub message_id: String,
    pub reason: String,
    pub last_error_kind: String,
    pub last_status_code: Option<i32>,
    pub last_error_message: String,
    pub attempts: i32,
    pub trigger_occurred_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DLQReplayed {
    pub envelope: Envelope,
    pub new_delivery_id: String,
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DLQDiscarded {
    pub envelope: Envelope,
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitOpened {
    pub envelope: Envelope,
    pub failure_ratio: f64,
    pub window_requests: i32,
    pub open_until: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitClosed {
    pub envelope: Envelope,
    pub open_since: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPolicy {
    pub max_size: i32,
    pub max_wait_ms: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub body: String,
    pub headers: BTreeMap<String, String>,
    pub content_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    pub key_id: String,
    pub scheme: String,
    #[serde(with = "apache_avro::serde::bytes")]
    pub sealed_secret: Vec<u8>,
    pub public_key: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointUpserted {
    pub envelope: Envelope,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub version: i64,
    pub headers: BTreeMap<String, String>,
    pub timeout_ms: i32,
    pub retry_schedule_ms: Option<Vec<i64>>,
    pub rate_limit: Option<RateLimit>,
    pub batch: Option<BatchPolicy>,
    pub ordered: bool,
    pub template: Option<Template>,
    pub signing_keys: Vec<SigningKey>,
    pub disabled_reason: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointDeleted {
    pub envelope: Envelope,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointDisabled {
    pub envelope: Envelope,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordQuarantined {
    pub envelope: Envelope,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub original_key: Option<Vec<u8>>,
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub original_value: Option<Vec<u8>>,
    pub reason: String,
}
