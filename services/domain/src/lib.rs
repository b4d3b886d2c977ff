//! Hookline's domain: ids, endpoint configuration rules, subscription matching, retry policy
//! and signing. Pure: no I/O, no async runtime.
//!
//! - [`ids`]: time-ordered event ids and ids derived from others (delivery = trigger x endpoint).
//! - [`time`]: the wall clock as UTC milliseconds.
//! - [`subscriptions`]: event-type patterns and the index that answers fan-out.
//! - [`retry`]: status classification and the retry schedule.
//! - [`signing`]: Standard Webhooks signatures.
//! - [`endpoint`]: endpoint configuration rules.
//! - [`commands`]: DLQ replay and discard as records to append.

pub mod commands;
pub mod endpoint;
pub mod ids;
pub mod retry;
pub mod signing;
pub mod subscriptions;
pub mod time;
