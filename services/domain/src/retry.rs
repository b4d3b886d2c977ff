//! What an attempt's outcome means, and when the next attempt is due.

use std::time::Duration;

/// How the dispatcher treats an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Success,
    /// 410 Gone: the receiver asks us to stop; the endpoint is disabled.
    Gone,
    /// Anything else (including 3xx, since redirects are not followed): try again later.
    Retry,
}

pub fn classify(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        410 => StatusClass::Gone,
        _ => StatusClass::Retry,
    }
}

/// Statuses whose `Retry-After` header is honoured.
pub fn honours_retry_after(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// A retry schedule: `delays[i]` is the wait before attempt `i + 1` (the first is normally 0).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub delays_ms: Vec<u64>,
    /// Relative jitter, e.g. 0.2 for ±20%.
    pub jitter: f64,
}

impl RetryPolicy {
    /// Attempts allowed in total.
    pub fn max_attempts(&self) -> u32 {
        self.delays_ms.len() as u32
    }

    /// The wait before the attempt after `attempt` (1-based) failed, or `None` when it was the
    /// last. `unit` is a uniform random number in [0, 1) for the jitter; `retry_after` is the
    /// receiver's hint, honoured but clamped to [1x, 2x] of the scheduled delay.
    pub fn next_delay(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Option<Duration> {
        let base = *self.delays_ms.get(attempt as usize)?;
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let jittered = (base as f64 * factor).max(0.0) as u64;
        let ms = match retry_after {
            Some(hint) => (hint.as_millis() as u64).clamp(jittered, jittered.saturating_mul(2).max(jittered)),
            None => jittered,
        };
        Some(Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy { delays_ms: vec![0, 5_000, 300_000, 1_800_000], jitter: 0.2 }
    }

    #[test]
    fn statuses() {
        assert_eq!(classify(200), StatusClass::Success);
        assert_eq!(classify(204), StatusClass::Success);
        assert_eq!(classify(410), StatusClass::Gone);
        for s in [301, 302, 400, 404, 429, 500, 502, 503, 504] {
            assert_eq!(classify(s), StatusClass::Retry, "{s}");
        }
        assert!(honours_retry_after(429) && honours_retry_after(503) && !honours_retry_after(500));
    }

    #[test]
    fn schedule_with_jitter_bounds_and_exhaustion() {
        let p = policy();
        assert_eq!(p.max_attempts(), 4);
        assert_eq!(p.next_delay(1, 0.5, None), Some(Duration::from_secs(5)));
        assert_eq!(p.next_delay(1, 0.0, None), Some(Duration::from_millis(4_000)));
        assert_eq!(p.next_delay(1, 1.0, None), Some(Duration::from_millis(6_000)));
        assert_eq!(p.next_delay(3, 0.5, None), Some(Duration::from_secs(1800)));
        assert_eq!(p.next_delay(4, 0.5, None), None);
    }

    #[test]
    fn retry_after_is_clamped_between_1x_and_2x() {
        let p = policy();
        let d = |hint| p.next_delay(1, 0.5, Some(Duration::from_secs(hint))).unwrap().as_secs();
        assert_eq!(d(1), 5);
        assert_eq!(d(7), 7);
        assert_eq!(d(3600), 10);
    }
}
