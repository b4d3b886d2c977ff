//! Flow control in front of every attempt: the endpoint's circuit breaker, then its rate limit.
//!
//! State is shared in Redis so every dispatcher agrees; each process keeps a local copy so
//! the common case costs no round trip:
//! - Rate limit: tokens are taken from the shared bucket in small batches (`prefetch_ms` of
//!   the rate) and handed out locally; one acquirer per endpoint per process talks to Redis.
//! - Breaker: outcomes are counted locally and reported every `breaker_sync_ms` in one
//!   pipelined round trip for every endpoint with news; the answer is the state the next
//!   deliveries see. Only a half-open circuit costs a round trip per delivery (probe admission).
//!
//! Redis down or slow (a call over `redis_timeout_ms`): the same rules run on local state
//! ([`hookline_domain::flow`]), a warning is logged once, `redis_fallback` says so, and Redis is
//! tried again after `redis_retry_ms`; shared state resumes by itself when it answers.
//! Nothing is lost or duplicated either way: flow control only decides *when* a delivery goes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hookline_config::{FlowOptions, RedisOptions};
use hookline_domain::flow::{Breaker, BreakerPolicy, CircuitState, Grant, TokenBucket, Transition};
use hookline_domain::time;
use hookline_redis::RedisStore;
use hookline_redis::breaker::Outcomes;
use hookline_schemas::RateLimit;
use tokio_util::sync::CancellationToken;

/// Why a delivery does not go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Go,
    /// Defer until `until_ms` (DeliveryDeferred with this cause; no attempt used).
    Defer {
        cause: &'static str,
        until_ms: i64,
    },
}

fn deferred_metric(cause: &'static str) {
    use hookline_telemetry::{labels, metrics, names};
    metrics().deferred.get_or_create(&labels([(names::CAUSE, cause)])).inc();
}

pub const CAUSE_RATE_LIMITED: &str = "rate_limited";
pub const CAUSE_CIRCUIT_OPEN: &str = "circuit_open";

/// A breaker transition for the dispatcher loop to record on the log.
#[derive(Debug, Clone)]
pub struct BreakerChange {
    pub endpoint_id: String,
    pub transition: Transition,
}

/// How long a delivery turned away by a half-open circuit (probes used up) waits.
const PROBE_WAIT_MS: i64 = 1_000;
/// Longest spread of the deliveries an open circuit turned away (see [`Flow::spread`]).
const MAX_SPREAD_MS: i64 = 10_000;
/// Locally held tokens older than this are dropped (the shared bucket moved on).
const TOKEN_TTL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct LocalLimit {
    tokens: u32,
    fetched: Option<Instant>,
    fallback: TokenBucket,
}

#[derive(Default)]
struct LocalBreaker {
    /// What deliveries see: from Redis when it answers, else from `local`.
    state: CircuitState,
    open_until: i64,
    successes: u32,
    failures: u32,
    local: Breaker,
}

/// Counters for metrics and the load report.
#[derive(Default, Debug)]
pub struct FlowStats {
    pub redis_calls: std::sync::atomic::AtomicU64,
    pub redis_errors: std::sync::atomic::AtomicU64,
    pub deferred_rate_limited: std::sync::atomic::AtomicU64,
    pub deferred_circuit_open: std::sync::atomic::AtomicU64,
}

pub struct Flow {
    store: Arc<OnceLock<RedisStore>>,
    opts: FlowOptions,
    policy: BreakerPolicy,
    down_until: AtomicI64,
    fallback: AtomicBool,
    limits: Mutex<HashMap<String, Arc<tokio::sync::Mutex<LocalLimit>>>>,
    breakers: Mutex<HashMap<String, LocalBreaker>>,
    pub stats: FlowStats,
}

/// The map's value for `key`, inserted by default first; allocates the key only when inserting
/// (these run once per delivery).
fn entry<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

pub fn policy(o: &FlowOptions) -> BreakerPolicy {
    BreakerPolicy {
        window_ms: o.breaker_window_ms as i64,
        min_requests: o.breaker_min_requests,
        failure_ratio: o.breaker_failure_ratio,
        cooldown_ms: o.breaker_cooldown_ms as i64,
        max_cooldown_ms: o.breaker_max_cooldown_ms as i64,
        probes: o.breaker_probes,
        disable_after_ms: o.breaker_disable_after_ms as i64,
    }
}

impl Flow {
    /// Starts connecting to Redis in the background (flow control runs on local state until
    /// the first connection succeeds).
    pub fn start(redis: &RedisOptions, opts: &FlowOptions, shutdown: CancellationToken) -> Arc<Self> {
        let store = RedisStore::connect_in_background(redis, Duration::from_millis(opts.redis_retry_ms), shutdown);
        Arc::new(Self {
            store,
            opts: opts.clone(),
            policy: policy(opts),
            down_until: AtomicI64::new(0),
            fallback: AtomicBool::new(false),
            limits: Mutex::default(),
            breakers: Mutex::default(),
            stats: FlowStats::default(),
        })
    }

    /// True while flow control runs on local state.
    pub fn in_fallback(&self) -> bool {
        self.fallback.load(Ordering::Relaxed)
    }

    fn redis(&self) -> Option<&RedisStore> {
        if time::now_ms() < self.down_until.load(Ordering::Relaxed) {
            return None;
        }
        self.store.get()
    }

    fn failed(&self, error: &str) {
        self.stats.redis_errors.fetch_add(1, Ordering::Relaxed);
        self.down_until.store(time::now_ms() + self.opts.redis_retry_ms as i64, Ordering::Relaxed);
        if !self.fallback.swap(true, Ordering::Relaxed) {
            hookline_telemetry::metrics().redis_fallback.set(1);
            tracing::warn!(error, "flow control: redis unreachable; rate limits and breakers run on local state");
        }
    }

    fn answered(&self) {
        if self.fallback.swap(false, Ordering::Relaxed) {
            hookline_telemetry::metrics().redis_fallback.set(0);
            tracing::info!("flow control: redis answers again; rate limits and breakers use shared state");
        }
    }

    /// Runs `call` against Redis with the configured timeout; `None` (and fallback) on failure.
    async fn call<T, F>(&self, op: &'static str, call: impl FnOnce(RedisStore) -> F) -> Option<T>
    where
        F: Future<Output = Result<T, hookline_redis::RedisError>>,
    {
        let store = self.redis()?.clone();
        self.stats.redis_calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let r = tokio::time::timeout(Duration::from_millis(self.opts.redis_timeout_ms), call(store)).await;
        let m = hookline_telemetry::metrics();
        let result = match &r {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "error",
            Err(_) => "timeout",
        };
        hookline_telemetry::observe(&m.redis_call_duration, &m.redis_calls, op, result, started.elapsed());
        match r {
            Ok(Ok(v)) => {
                self.answered();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.failed(&format!("no answer within {} ms", self.opts.redis_timeout_ms));
                None
            }
        }
    }

    /// The breaker, then the rate limit. An ordered endpoint never defers (that would reorder):
    /// it waits in place for as long as it takes (`wait_in_place`).
    pub async fn gate(&self, endpoint_id: &str, limit: Option<&RateLimit>, wait_in_place: bool) -> Gate {
        if !self.opts.enabled {
            return Gate::Go;
        }
        loop {
            match self.breaker_gate(endpoint_id).await {
                Gate::Go => break,
                Gate::Defer { until_ms, .. } if wait_in_place => {
                    let ms = (until_ms - time::now_ms()).clamp(10, PROBE_WAIT_MS);
                    tokio::time::sleep(Duration::from_millis(ms as u64)).await;
                }
                Gate::Defer { cause, until_ms } => {
                    self.stats.deferred_circuit_open.fetch_add(1, Ordering::Relaxed);
                    deferred_metric(CAUSE_CIRCUIT_OPEN);
                    return Gate::Defer { cause, until_ms: until_ms + self.spread() };
                }
            }
        }
        let Some(limit) = limit else { return Gate::Go };
        let max_wait = if wait_in_place { u64::MAX } else { self.opts.rate_limit_max_wait_ms };
        match self.acquire(endpoint_id, limit, max_wait).await {
            Ok(()) => Gate::Go,
            Err(wait_ms) => {
                self.stats.deferred_rate_limited.fetch_add(1, Ordering::Relaxed);
                deferred_metric(CAUSE_RATE_LIMITED);
                Gate::Defer { cause: CAUSE_RATE_LIMITED, until_ms: time::now_ms() + wait_ms as i64 }
            }
        }
    }

    async fn breaker_gate(&self, endpoint_id: &str) -> Gate {
        let now = time::now_ms();
        {
            let map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
            // Unknown endpoints are closed: the common case costs one lookup, no allocation.
            let Some(b) = map.get(endpoint_id) else { return Gate::Go };
            match b.state {
                CircuitState::Closed => return Gate::Go,
                CircuitState::Open if now < b.open_until => {
                    return Gate::Defer { cause: CAUSE_CIRCUIT_OPEN, until_ms: b.open_until };
                }
                _ => {}
            }
        }
        // Cool-down over or half-open: ask for a probe slot (shared, so every dispatcher
        // together lets `probes` deliveries through).
        let probes = self.policy.probes;
        let shared = self.call("breaker_admit", |s| async move { s.admit(endpoint_id, probes, None).await }).await;
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let b = entry(&mut map, endpoint_id);
        let admitted = match shared {
            Some((admitted, state, open_until)) => {
                b.state = state;
                b.open_until = open_until;
                admitted
            }
            None => {
                let admitted = b.local.admit(&self.policy, now);
                b.state = b.local.state;
                b.open_until = b.local.open_until;
                admitted
            }
        };
        if admitted {
            Gate::Go
        } else {
            Gate::Defer { cause: CAUSE_CIRCUIT_OPEN, until_ms: b.open_until.max(now + PROBE_WAIT_MS) }
        }
    }

    /// A random wait added to a circuit-open deferral (not to an ordered endpoint's wait in
    /// place, which makes no herd): up to a third of the first cool-down, at most
    /// [`MAX_SPREAD_MS`]. Without it, every delivery deferred while the circuit was open
    /// comes back the moment the cool-down ends, finds the circuit half-open with its probes
    /// out, and is deferred again every [`PROBE_WAIT_MS`] until a probe answers: thousands of
    /// records a second through the retry tiers and the dispatcher, which other endpoints'
    /// deliveries felt (scenario c of the load tool). Spread, the backlog returns as a trickle,
    /// which is also what a recovering endpoint wants.
    fn spread(&self) -> i64 {
        spread_ms(self.policy.cooldown_ms, rand::random::<f64>())
    }

    /// Takes one token, waiting up to `max_wait_ms`; `Err(wait)` when the wait would be longer.
    async fn acquire(&self, endpoint_id: &str, limit: &RateLimit, max_wait_ms: u64) -> Result<(), u64> {
        let started = Instant::now();
        let entry = {
            let mut map = self.limits.lock().unwrap_or_else(|p| p.into_inner());
            entry(&mut map, endpoint_id).clone()
        };
        // One acquirer per endpoint in this process (tokio's mutex is fair: FIFO).
        let mut local = entry.lock().await;
        let rate = limit.per_second.max(1e-3);
        let burst = limit.burst.max(1) as u32;
        let want = ((rate * self.opts.rate_limit_prefetch_ms as f64 / 1000.0).floor() as u32).clamp(1, burst);
        if local.tokens > 0 && local.fetched.is_some_and(|f| f.elapsed() < TOKEN_TTL) {
            local.tokens -= 1;
            return Ok(());
        }
        let budget = max_wait_ms.saturating_sub(started.elapsed().as_millis() as u64);
        let shared = self
            .call("take_tokens", |s| async move { s.take_tokens(endpoint_id, rate, burst, want, budget, None).await })
            .await;
        let grant = match shared {
            Some(g) => g,
            None => {
                let share = self.opts.rate_limit_fallback_share;
                let now_us = time::now_ms() * 1000;
                local.fallback.take(rate * share, burst, want, budget, now_us)
            }
        };
        match grant {
            Grant { granted: 0, wait_ms } => Err(wait_ms.max(1)),
            Grant { granted, wait_ms } => {
                // A reservation: the tokens are ours once due (the lock keeps this process's
                // other deliveries of the endpoint queued behind them, in order).
                if wait_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                }
                local.tokens = granted - 1;
                local.fetched = Some(Instant::now());
                Ok(())
            }
        }
    }

    /// Counts an attempt's outcome for the endpoint's breaker.
    pub fn record(&self, endpoint_id: &str, success: bool) {
        if !self.opts.enabled {
            return;
        }
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let b = entry(&mut map, endpoint_id);
        if success {
            b.successes += 1;
        } else {
            b.failures += 1;
        }
    }

    /// Reports every endpoint's outcomes since the last sync; returns the transitions to record.
    pub async fn sync(&self) -> Vec<BreakerChange> {
        let now = time::now_ms();
        {
            let map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.values().filter(|b| b.state != CircuitState::Closed).count();
            hookline_telemetry::metrics().circuits_not_closed.set(n as i64);
        }
        let batch: Vec<Outcomes> = {
            let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, b| {
                b.state != CircuitState::Closed || b.successes + b.failures > 0 || b.local.state != CircuitState::Closed
            });
            map.iter_mut()
                .filter(|(_, b)| b.successes + b.failures > 0)
                .map(|(id, b)| Outcomes {
                    endpoint_id: id.clone(),
                    successes: std::mem::take(&mut b.successes),
                    failures: std::mem::take(&mut b.failures),
                })
                .collect()
        };
        if batch.is_empty() {
            return Vec::new();
        }
        let policy = self.policy;
        let shared = {
            let b = &batch;
            self.call("breaker_report", |s| async move { s.report_outcomes(b, &policy, None).await }).await
        };
        let mut changes = Vec::new();
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        for (i, o) in batch.iter().enumerate() {
            let b = map.entry(o.endpoint_id.clone()).or_default();
            // The local copy always follows, so a Redis outage starts from recent state.
            let local = b.local.report(&policy, o.successes, o.failures, now);
            let transitions = match &shared {
                Some(reports) => {
                    let r = &reports[i];
                    b.state = r.state;
                    b.open_until = r.open_until;
                    let mut t = Vec::new();
                    match r.changed {
                        Some(true) => t.push(Transition::Opened {
                            failure_ratio: r.failure_ratio,
                            window_requests: r.window_requests,
                            open_until: r.open_until,
                        }),
                        Some(false) => t.push(Transition::Closed { open_since: r.open_since.unwrap_or(now) }),
                        None => {}
                    }
                    if r.disable {
                        t.push(Transition::Disable { open_since: r.open_since.unwrap_or(now) });
                    }
                    t
                }
                None => {
                    b.state = b.local.state;
                    b.open_until = b.local.open_until;
                    local
                }
            };
            changes.extend(
                transitions.into_iter().map(|t| BreakerChange { endpoint_id: o.endpoint_id.clone(), transition: t }),
            );
        }
        changes
    }
}

/// [`Flow::spread`] for a uniform `unit` in [0, 1).
fn spread_ms(cooldown_ms: i64, unit: f64) -> i64 {
    let max = (cooldown_ms / 3).clamp(0, MAX_SPREAD_MS);
    (unit.clamp(0.0, 1.0) * max as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_deferrals_are_spread_over_a_third_of_the_cooldown_at_most_ten_seconds() {
        assert_eq!(spread_ms(30_000, 0.0), 0);
        assert_eq!(spread_ms(30_000, 0.5), 5_000);
        assert_eq!(spread_ms(30_000, 0.999_999), 9_999);
        assert_eq!(spread_ms(600_000, 0.999_999), 9_999);
        assert_eq!(spread_ms(1_000, 0.999_999), 332);
        assert_eq!(spread_ms(1_000, 1.0), 333);
        assert_eq!(spread_ms(100, 2.0), 33);
    }
}
