//! Hookline's domain: ids, endpoint configuration rules, subscription matching, retry policy,
//! signing, sealed secrets and transformation. Pure: no I/O, no async runtime.
//!
//! - [`ids`]: time-ordered event ids and ids derived from others (delivery = trigger x endpoint).
//! - [`time`]: the wall clock as UTC milliseconds.
//! - [`subscriptions`]: event-type patterns and the index that answers fan-out.
//! - [`retry`]: status classification and the retry schedule.
//! - [`signing`]: Standard Webhooks signatures in every scheme (HMAC, Ed25519, RSA), key
//!   generation and parsing, JWKS, and the key rotation policy.
//! - [`sealing`]: signing secrets encrypted at rest under operator master keys.
//! - [`transform`]: per-endpoint `upon` templates, compiled once and rendered with bounds.
//! - [`endpoint`]: endpoint configuration rules.
//! - [`commands`]: DLQ replay and discard as records to append.
//! - [`flow`]: the token bucket and circuit breaker rules (local fallback of the Redis scripts).
//! - [`quarantine`]: the record that sets aside an unreadable input record.

pub mod commands;
pub mod endpoint;
pub mod flow;
pub mod ids;
pub mod quarantine;
pub mod retry;
pub mod sealing;
pub mod signing;
pub mod subscriptions;
pub mod time;
pub mod transform;
