//! Wall-clock microseconds: payloads carry their send time and the sink compares it with its
//! receipt time, both read from the same machine clock (the run is loopback-only).

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}
