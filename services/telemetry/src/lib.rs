//! Hookline's Prometheus metrics: every name in [`names`], one process-wide registry, and the
//! text exposition ([`render`]) that the api's `/metrics` (and each worker role's metrics
//! listener) serves.
//!
//! - [`names`]: metric and label names, the one place they are spelled.
//! - [`Metrics`]: the families, reached through [`metrics()`].
//! - [`gauge_fn`]: gauges read when scraped (producer queues, Redis fallback, RSS).
//!
//! No I/O here beyond reading `/proc/self/statm` at scrape time.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::{Registry, Unit};

/// Metric names (without the `_total` suffix Prometheus adds to counters) and label names.
pub mod names {
    pub const TRIGGERS_ACCEPTED: &str = "hookline_triggers_accepted";
    pub const TRIGGERS_REJECTED: &str = "hookline_triggers_rejected";
    pub const DELIVERIES: &str = "hookline_deliveries";
    pub const ATTEMPT_DURATION: &str = "hookline_attempt_duration";
    pub const ATTEMPTS: &str = "hookline_attempts";
    pub const RETRIES_SCHEDULED: &str = "hookline_retries_scheduled";
    pub const RETRIES_DUE: &str = "hookline_retries_due";
    pub const DLQ_MOVED: &str = "hookline_dlq_moved";
    pub const DLQ_OPEN: &str = "hookline_dlq_open";
    pub const DEFERRED: &str = "hookline_deferred";
    pub const CIRCUIT_TRANSITIONS: &str = "hookline_circuit_transitions";
    pub const CIRCUITS_NOT_CLOSED: &str = "hookline_circuits_not_closed";
    pub const CONSUMER_LAG: &str = "hookline_consumer_lag";
    pub const PROJECTOR_EVENTS: &str = "hookline_projector_events";
    pub const PROJECTOR_ROWS: &str = "hookline_projector_rows";
    pub const KAFKA_PRODUCER_QUEUE: &str = "hookline_kafka_producer_queue";
    pub const REDIS_CALLS: &str = "hookline_redis_calls";
    pub const REDIS_CALL_DURATION: &str = "hookline_redis_call_duration";
    pub const REDIS_FALLBACK: &str = "hookline_redis_fallback";
    pub const CQL_CALLS: &str = "hookline_cql_calls";
    pub const CQL_CALL_DURATION: &str = "hookline_cql_call_duration";
    pub const KAFKA_TXN_COMMITS: &str = "hookline_kafka_txn_commits";
    pub const DIRECT_FANOUTS: &str = "hookline_direct_fanouts";
    pub const KAFKA_TXN_COMMIT_DURATION: &str = "hookline_kafka_txn_commit_duration";
    pub const RECORD_AGE_AT_PICKUP: &str = "hookline_record_age_at_pickup";
    pub const PROCESS_RSS: &str = "hookline_process_resident_memory";

    pub const OUTCOME: &str = "outcome";
    pub const ERROR_KIND: &str = "error_kind";
    pub const REASON: &str = "reason";
    pub const SOURCE: &str = "source";
    pub const STATUS_CLASS: &str = "status_class";
    pub const CAUSE: &str = "cause";
    pub const TO: &str = "to";
    pub const GROUP: &str = "group";
    pub const TOPIC: &str = "topic";
    pub const PARTITION: &str = "partition";
    pub const OP: &str = "op";
    pub const RESULT: &str = "result";
    pub const CLIENT: &str = "client";
}

pub type Labels = Vec<(&'static str, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;
/// A gauge read at scrape time: (name, labels, probe).
type GaugeFn = (&'static str, Labels, Arc<dyn Fn() -> i64 + Send + Sync>);

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~33 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// Every metric family of the process.
pub struct Metrics {
    pub triggers_accepted: Counters,
    pub triggers_rejected: Counters,
    pub deliveries: Counters,
    pub attempt_duration: Histograms,
    pub attempts: Counters,
    pub retries_scheduled: Counter,
    pub retries_due: Counter,
    pub dlq_moved: Counter,
    pub dlq_open: Gauge,
    pub deferred: Counters,
    pub circuit_transitions: Counters,
    pub circuits_not_closed: Gauge,
    pub consumer_lag: Gauges,
    pub projector_events: Counter<u64, AtomicU64>,
    /// Row writes the projector sent (a batch writes each delivery's status once).
    pub projector_rows: Counter<u64, AtomicU64>,
    pub redis_calls: Counters,
    pub redis_call_duration: Histograms,
    pub redis_fallback: Gauge,
    pub cql_calls: Counters,
    pub cql_call_duration: Histograms,
    pub kafka_txn_commits: Counters,
    /// Triggers the API fanned out itself (`api.direct_fanout`), by result.
    pub direct_fanouts: Counters,
    pub kafka_txn_commit_duration: Histograms,
    /// How old a record is (since its Kafka timestamp) when a role takes it from its consumer:
    /// each hop's share of the trigger-to-receipt latency.
    pub record_age_at_pickup: Histograms,
    scraped: Gauges,
    registry: Registry,
    gauge_fns: Mutex<Vec<GaugeFn>>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        use names::*;
        let mut r = Registry::default();
        let counters = |r: &mut Registry, name: &str, help: &str| {
            let f = Counters::default();
            r.register(name, help, f.clone());
            f
        };
        let histograms = |r: &mut Registry, name: &str, help: &str| {
            let f = Histograms::new_with_constructor(latency_histogram as fn() -> Histogram);
            r.register_with_unit(name, help, Unit::Seconds, f.clone());
            f
        };
        let triggers_accepted =
            counters(&mut r, TRIGGERS_ACCEPTED, "Triggers written to the triggers topic, by source");
        let triggers_rejected = counters(&mut r, TRIGGERS_REJECTED, "Trigger requests refused, by reason");
        let deliveries = counters(&mut r, DELIVERIES, "Delivery attempts and deferrals, by outcome and error kind");
        let attempt_duration = histograms(&mut r, ATTEMPT_DURATION, "Duration of HTTP attempts, by status class");
        let attempts = counters(&mut r, ATTEMPTS, "HTTP attempts by status class (2xx..5xx, error)");
        let retries_scheduled = Counter::default();
        r.register(RETRIES_SCHEDULED, "Retries parked in a retry tier", retries_scheduled.clone());
        let retries_due = Counter::default();
        r.register(RETRIES_DUE, "Retries forwarded to the deliveries topic when due", retries_due.clone());
        let dlq_moved = Counter::default();
        r.register(DLQ_MOVED, "Deliveries moved to the DLQ", dlq_moved.clone());
        let dlq_open = Gauge::default();
        r.register(DLQ_OPEN, "Open DLQ entries, as projected (projector process)", dlq_open.clone());
        let deferred = counters(&mut r, DEFERRED, "Deliveries deferred without an attempt, by cause");
        let circuit_transitions = counters(&mut r, CIRCUIT_TRANSITIONS, "Circuit breaker transitions, by new state");
        let circuits_not_closed = Gauge::default();
        r.register(
            CIRCUITS_NOT_CLOSED,
            "Endpoints whose circuit this dispatcher sees open or half-open",
            circuits_not_closed.clone(),
        );
        let consumer_lag = Gauges::default();
        r.register(
            CONSUMER_LAG,
            "Records behind the end of the log, per consumer group and partition",
            consumer_lag.clone(),
        );
        let projector_events = Counter::default();
        r.register(PROJECTOR_EVENTS, "Events applied to the read models", projector_events.clone());
        let projector_rows = Counter::default();
        r.register(PROJECTOR_ROWS, "Row writes sent by the projector", projector_rows.clone());
        let redis_calls = counters(&mut r, REDIS_CALLS, "Redis calls, by operation and result (ok, error, timeout)");
        let redis_call_duration = histograms(&mut r, REDIS_CALL_DURATION, "Duration of Redis calls, by operation");
        let redis_fallback = Gauge::default();
        r.register(
            REDIS_FALLBACK,
            "1 while flow control runs on local state because Redis is unreachable",
            redis_fallback.clone(),
        );
        let cql_calls = counters(&mut r, CQL_CALLS, "CQL calls, by operation and result");
        let cql_call_duration = histograms(&mut r, CQL_CALL_DURATION, "Duration of CQL calls, by operation");
        let kafka_txn_commits =
            counters(&mut r, KAFKA_TXN_COMMITS, "Kafka transaction commits, by role (op) and result");
        let direct_fanouts = counters(
            &mut r,
            DIRECT_FANOUTS,
            "Triggers the API fanned out itself, by result (ok: every record acknowledged)",
        );
        let kafka_txn_commit_duration = histograms(
            &mut r,
            KAFKA_TXN_COMMIT_DURATION,
            "Duration of Kafka transaction commits (offsets + end of transaction), by role (op)",
        );
        let record_age_at_pickup = histograms(
            &mut r,
            RECORD_AGE_AT_PICKUP,
            "Age of a record (since its Kafka timestamp) when a role takes it from its consumer, by role (op)",
        );
        let scraped = Gauges::default();
        r.register(KAFKA_PRODUCER_QUEUE, "Messages queued or in flight in a Kafka producer", scraped.clone());
        Self {
            triggers_accepted,
            triggers_rejected,
            deliveries,
            attempt_duration,
            attempts,
            retries_scheduled,
            retries_due,
            dlq_moved,
            dlq_open,
            deferred,
            circuit_transitions,
            circuits_not_closed,
            consumer_lag,
            projector_events,
            projector_rows,
            redis_calls,
            redis_call_duration,
            redis_fallback,
            cql_calls,
            cql_call_duration,
            kafka_txn_commits,
            direct_fanouts,
            kafka_txn_commit_duration,
            record_age_at_pickup,
            scraped,
            registry: r,
            gauge_fns: Mutex::default(),
        }
    }
}

/// `[(name, value)]` as a label set.
pub fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

/// Registers a producer-queue style gauge read at scrape time (`KAFKA_PRODUCER_QUEUE` only).
pub fn gauge_fn(name: &'static str, labels: Labels, f: impl Fn() -> i64 + Send + Sync + 'static) {
    metrics().gauge_fns.lock().unwrap_or_else(|p| p.into_inner()).push((name, labels, Arc::new(f)));
}

/// The histogram of records' age at pickup by `role`, to keep and feed per record.
pub fn record_age_histogram(role: &'static str) -> Histogram {
    metrics().record_age_at_pickup.get_or_create(&labels([(names::OP, role)])).clone()
}

/// Records one call's duration and result.
pub fn observe(h: &Histograms, c: &Counters, op: &'static str, ok: &str, took: Duration) {
    h.get_or_create(&labels([(names::OP, op)])).observe(took.as_secs_f64());
    c.get_or_create(&labels([(names::OP, op), (names::RESULT, ok)])).inc();
}

/// The status class label of an HTTP status.
pub fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// Resident memory of this process in bytes (Linux), 0 elsewhere.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// The exposition of every metric of the process in the Prometheus text format (0.0.4), which
/// every scraper and `promtool check metrics` read.
pub fn render() -> String {
    let m = metrics();
    for (_, labels, f) in m.gauge_fns.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        m.scraped.get_or_create(labels).set(f());
    }
    let mut open = String::with_capacity(16 * 1024);
    let _ = encode(&mut open, &m.registry);
    let mut out = to_prometheus_text(&open);
    out.push_str(&format!(
        "# HELP {n}_bytes Resident set size of this process.\n# TYPE {n}_bytes gauge\n{n}_bytes {}\n",
        rss_bytes(),
        n = names::PROCESS_RSS
    ));
    out
}

/// OpenMetrics text (what the registry encodes) to Prometheus text: a counter family is named
/// after its `_total` samples, and `# UNIT` / `# EOF` lines go.
fn to_prometheus_text(open: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        open.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_values() {
        let m = metrics();
        m.triggers_accepted.get_or_create(&labels([(names::SOURCE, "api")])).inc();
        m.deliveries.get_or_create(&labels([(names::OUTCOME, "succeeded"), (names::ERROR_KIND, "")])).inc();
        observe(&m.redis_call_duration, &m.redis_calls, "take_tokens", "ok", Duration::from_millis(2));
        gauge_fn(names::KAFKA_PRODUCER_QUEUE, labels([(names::CLIENT, "test")]), || 7);
        let text = render();
        assert!(text.contains("hookline_triggers_accepted_total{source=\"api\"} 1"), "{text}");
        assert!(text.contains("hookline_redis_call_duration_seconds_bucket"), "{text}");
        assert!(text.contains("hookline_kafka_producer_queue{client=\"test\"} 7"), "{text}");
        assert!(text.contains("hookline_process_resident_memory_bytes "), "{text}");
        assert!(text.contains("# TYPE hookline_triggers_accepted_total counter"), "{text}");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        assert!(rss_bytes() > 0);
        if let Ok(out) = std::env::var("HOOKLINE_METRICS_SAMPLE") {
            std::fs::write(out, &text).expect("write the sample");
        }
    }
}
