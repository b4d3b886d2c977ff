//! Hookline's domain: ids, endpoint configuration rules, subscription matching, retry policy
//! and signing. Pure: no I/O, no async runtime.
//!
//! - [`ids`]: time-ordered event ids and ids derived from others (delivery = trigger x endpoint).
//! - [`time`]: the wall clock as UTC milliseconds.

pub mod ids;
pub mod time;
