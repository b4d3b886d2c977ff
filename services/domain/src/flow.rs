//! Flow control rules, pure: the token bucket and the circuit breaker state machine.
//!
//! The shared versions of both live in Redis as Lua scripts (`services/redis/src/lua/`) that
//! implement exactly these rules; the dispatcher uses the versions here as its local fallback
//! while Redis is unreachable. An integration test runs the same inputs through both and
//! compares the results.

/// A token bucket: `rate` tokens per second refill it up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    pub tokens: f64,
    /// Microseconds of the last refill; `None` before first use (a new bucket is full).
    pub at_us: Option<i64>,
}

/// What a take from a bucket gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Tokens taken (at most the number wanted), usable after `wait_ms`.
    pub granted: u32,
    /// With tokens granted: how long until they may be used (a reservation, 0 = now).
    /// With none: how long until one token is there.
    pub wait_ms: u64,
}

impl TokenBucket {
    pub const fn new() -> Self {
        Self { tokens: 0.0, at_us: None }
    }

    /// Refills for the time since the last take, then takes up to `want` whole tokens. When
    /// less than one is there, reserves `want` tokens ahead (the bucket goes into debt) if they
    /// will be there within `max_wait_ms`, so a caller at the limit makes one call per `want`
    /// tokens and sleeps exactly until they are due.
    pub fn take(&mut self, rate: f64, burst: u32, want: u32, max_wait_ms: u64, now_us: i64) -> Grant {
        let burst = f64::from(burst.max(1));
        let rate = rate.max(1e-6);
        let want = want.max(1);
        match self.at_us {
            None => {
                self.tokens = burst;
                self.at_us = Some(now_us);
            }
            Some(at) if now_us > at => {
                self.tokens = (self.tokens + (now_us - at) as f64 * rate / 1e6).min(burst);
                self.at_us = Some(now_us);
            }
            Some(_) => {}
        }
        if self.tokens >= 1.0 {
            let granted = (self.tokens.floor() as u32).min(want);
            self.tokens -= f64::from(granted);
            return Grant { granted, wait_ms: 0 };
        }
        let reserve_ms = ((f64::from(want) - self.tokens) * 1000.0 / rate).ceil().max(1.0) as u64;
        if reserve_ms <= max_wait_ms {
            self.tokens -= f64::from(want);
            return Grant { granted: want, wait_ms: reserve_ms };
        }
        Grant { granted: 0, wait_ms: ((1.0 - self.tokens) * 1000.0 / rate).ceil().max(1.0) as u64 }
    }
}

impl Default for TokenBucket {
    fn default() -> Self {
        Self::new()
    }
}

/// The breaker's settings (from `[flow]` configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Length of the sliding window of outcomes, in ms (split into [`WINDOW_BUCKETS`] buckets).
    pub window_ms: i64,
    /// Fewest outcomes in the window before the ratio counts.
    pub min_requests: u32,
    /// Failure ratio (0..1] at or above which the circuit opens.
    pub failure_ratio: f64,
    /// First cool-down in ms; doubled on every failed probe up to `max_cooldown_ms`.
    pub cooldown_ms: i64,
    pub max_cooldown_ms: i64,
    /// Probe deliveries let through per half-open period.
    pub probes: u32,
    /// An endpoint whose circuit stays open (or half-open) this long is disabled.
    pub disable_after_ms: i64,
}

/// Number of buckets the sliding window is split into.
pub const WINDOW_BUCKETS: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CircuitState {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "open" => Self::Open,
            "half_open" => Self::HalfOpen,
            _ => Self::Closed,
        }
    }
}

/// A transition worth an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    Opened {
        failure_ratio: f64,
        window_requests: u32,
        open_until: i64,
    },
    Closed {
        open_since: i64,
    },
    /// Open for longer than `disable_after_ms`: disable the endpoint (reported once).
    Disable {
        open_since: i64,
    },
}

/// One endpoint's breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    pub state: CircuitState,
    /// (bucket number, successes, failures), oldest first, within the window.
    pub buckets: Vec<(i64, u32, u32)>,
    pub open_until: i64,
    /// Start of the current open streak (first opening since the last close).
    pub open_since: Option<i64>,
    pub cooldown_ms: i64,
    pub probes_left: u32,
    pub disabled: bool,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: CircuitState::Closed,
            buckets: Vec::new(),
            open_until: 0,
            open_since: None,
            cooldown_ms: 0,
            probes_left: 0,
            disabled: false,
        }
    }
}

impl Breaker {
    /// Records outcomes observed since the last report and applies the transitions they cause
    /// (at most two: a state change, then disabling).
    pub fn report(&mut self, p: &BreakerPolicy, successes: u32, failures: u32, now: i64) -> Vec<Transition> {
        self.tick(p, now);
        let t = match self.state {
            CircuitState::Closed => {
                let bucket_ms = (p.window_ms / WINDOW_BUCKETS).max(1);
                let n = now / bucket_ms;
                self.buckets.retain(|b| b.0 > n - WINDOW_BUCKETS);
                match self.buckets.last_mut() {
                    Some(b) if b.0 == n => {
                        b.1 += successes;
                        b.2 += failures;
                    }
                    _ => self.buckets.push((n, successes, failures)),
                }
                let (s, f) = self.buckets.iter().fold((0u32, 0u32), |(s, f), b| (s + b.1, f + b.2));
                let total = s + f;
                let ratio = if total == 0 { 0.0 } else { f64::from(f) / f64::from(total) };
                if failures > 0 && total >= p.min_requests && ratio >= p.failure_ratio {
                    let cooldown = p.cooldown_ms;
                    self.open(cooldown, now);
                    Some(Transition::Opened {
                        failure_ratio: ratio,
                        window_requests: total,
                        open_until: self.open_until,
                    })
                } else {
                    None
                }
            }
            // Outcomes of requests started before the circuit opened: they change nothing.
            CircuitState::Open => None,
            CircuitState::HalfOpen if failures > 0 => {
                let cooldown = (self.cooldown_ms * 2).min(p.max_cooldown_ms).max(p.cooldown_ms);
                self.open(cooldown, now);
                Some(Transition::Opened {
                    failure_ratio: 1.0,
                    window_requests: failures + successes,
                    open_until: self.open_until,
                })
            }
            CircuitState::HalfOpen if successes > 0 => {
                let since = self.open_since.unwrap_or(now);
                *self = Self::default();
                Some(Transition::Closed { open_since: since })
            }
            CircuitState::HalfOpen => None,
        };
        t.into_iter().chain(self.check_disable(p, now)).collect()
    }

    /// Open → half-open once the cool-down has passed.
    pub fn tick(&mut self, p: &BreakerPolicy, now: i64) {
        if self.state == CircuitState::Open && now >= self.open_until {
            self.state = CircuitState::HalfOpen;
            self.probes_left = p.probes;
        }
    }

    /// May a delivery go now? Closed: yes. Open: no. Half-open: while probes are left.
    pub fn admit(&mut self, p: &BreakerPolicy, now: i64) -> bool {
        self.tick(p, now);
        match self.state {
            CircuitState::Closed => true,
            CircuitState::Open => false,
            CircuitState::HalfOpen if self.probes_left > 0 => {
                self.probes_left -= 1;
                true
            }
            CircuitState::HalfOpen => false,
        }
    }

    fn open(&mut self, cooldown_ms: i64, now: i64) {
        self.state = CircuitState::Open;
        self.buckets.clear();
        self.cooldown_ms = cooldown_ms;
        self.open_until = now + cooldown_ms;
        self.open_since.get_or_insert(now);
        self.probes_left = 0;
    }

    fn check_disable(&mut self, p: &BreakerPolicy, now: i64) -> Option<Transition> {
        let since = self.open_since?;
        if self.state != CircuitState::Closed && !self.disabled && now - since >= p.disable_after_ms {
            self.disabled = true;
            return Some(Transition::Disable { open_since: since });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: BreakerPolicy = BreakerPolicy {
        window_ms: 10_000,
        min_requests: 10,
        failure_ratio: 0.5,
        cooldown_ms: 1_000,
        max_cooldown_ms: 8_000,
        probes: 2,
        disable_after_ms: 60_000,
    };

    #[test]
    fn a_new_bucket_is_full_and_refills_at_the_rate() {
        let mut b = TokenBucket::new();
        assert_eq!(b.take(10.0, 5, 100, 0, 0), Grant { granted: 5, wait_ms: 0 });
        // Empty, and no wait allowed: nothing, with the time until one token.
        assert_eq!(b.take(10.0, 5, 1, 0, 0), Grant { granted: 0, wait_ms: 100 });
        assert_eq!(b.take(10.0, 5, 1, 0, 50_000), Grant { granted: 0, wait_ms: 50 });
        assert_eq!(b.take(10.0, 5, 3, 0, 100_000), Grant { granted: 1, wait_ms: 0 });
        // Never above burst, however long idle.
        assert_eq!(b.take(10.0, 5, 100, 0, 100_000_000), Grant { granted: 5, wait_ms: 0 });
        // A clock going backwards refills nothing.
        assert_eq!(b.take(10.0, 5, 1, 0, 1), Grant { granted: 0, wait_ms: 100 });
    }

    #[test]
    fn an_empty_bucket_reserves_ahead_within_the_allowed_wait() {
        let mut b = TokenBucket::new();
        b.take(10.0, 5, 5, 0, 0);
        assert_eq!(b.take(10.0, 5, 3, 1_000, 0), Grant { granted: 3, wait_ms: 300 });
        // The next caller queues behind the reservation.
        assert_eq!(b.take(10.0, 5, 2, 1_000, 0), Grant { granted: 2, wait_ms: 500 });
        assert_eq!(b.take(10.0, 5, 2, 400, 0), Grant { granted: 0, wait_ms: 600 });
    }

    #[test]
    fn over_a_long_run_the_bucket_grants_rate_times_time_plus_burst() {
        for max_wait in [0, 50, 1_000] {
            let mut b = TokenBucket::new();
            let (mut total, mut calls, mut now_ms) = (0u64, 0u64, 0i64);
            // A greedy caller that sleeps exactly as told.
            while now_ms < 30_000 {
                let g = b.take(100.0, 10, 4, max_wait, now_ms * 1000);
                calls += 1;
                if g.granted > 0 {
                    total += u64::from(g.granted);
                    now_ms += g.wait_ms as i64;
                } else {
                    now_ms += g.wait_ms.max(1) as i64;
                }
            }
            assert!((2_995..=3_015).contains(&total), "max_wait {max_wait}: {total}");
            if max_wait >= 50 {
                assert!(calls * 3 < total, "max_wait {max_wait}: {calls} calls for {total} tokens");
            }
        }
    }

    #[test]
    fn few_requests_never_open_the_circuit() {
        let mut b = Breaker::default();
        assert_eq!(b.report(&P, 0, 9, 0), vec![]);
        assert_eq!(b.state, CircuitState::Closed);
    }

    #[test]
    fn a_failure_ratio_over_the_minimum_opens_then_probes_close() {
        let mut b = Breaker::default();
        assert_eq!(b.report(&P, 5, 4, 0), vec![]);
        let t = b.report(&P, 0, 1, 100);
        assert_eq!(t, vec![Transition::Opened { failure_ratio: 0.5, window_requests: 10, open_until: 1_100 }]);
        assert!(!b.admit(&P, 500), "open: no delivery");
        assert_eq!(b.report(&P, 3, 3, 600), vec![], "late outcomes of the open period change nothing");
        assert!(b.admit(&P, 1_100), "half-open: first probe");
        assert!(b.admit(&P, 1_100), "second probe");
        assert!(!b.admit(&P, 1_100), "no third probe");
        assert_eq!(b.report(&P, 1, 0, 1_200), vec![Transition::Closed { open_since: 100 }]);
        assert_eq!(b.state, CircuitState::Closed);
        assert!(b.buckets.is_empty());
    }

    #[test]
    fn a_failed_probe_reopens_with_a_doubled_cooldown_up_to_the_cap() {
        let mut b = Breaker::default();
        b.report(&P, 0, 10, 0);
        let mut until = b.open_until;
        for expected in [2_000, 4_000, 8_000, 8_000] {
            assert!(b.admit(&P, until));
            let t = b.report(&P, 0, 1, until);
            assert!(matches!(t[..], [Transition::Opened { .. }]));
            assert_eq!(b.open_until - until, expected);
            until = b.open_until;
        }
        assert_eq!(b.open_since, Some(0), "the streak started at the first opening");
        assert_eq!(b.cooldown_ms, 8_000);
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let mut b = Breaker::default();
        b.report(&P, 0, 9, 0);
        // 10 s later the first 9 failures are out of the window: 1 failure of 1 is below the minimum.
        assert_eq!(b.report(&P, 0, 1, 10_500), vec![]);
    }

    #[test]
    fn open_too_long_disables_once() {
        let mut b = Breaker::default();
        b.report(&P, 0, 10, 0);
        let mut disables = 0;
        let mut now = 0;
        while now < 120_000 {
            now = b.open_until;
            b.admit(&P, now);
            disables += b.report(&P, 0, 1, now).iter().filter(|t| matches!(t, Transition::Disable { .. })).count();
        }
        assert_eq!(disables, 1);
        assert!(b.disabled);
    }
}
