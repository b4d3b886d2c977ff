//! Hookline's configuration: one options struct per role, loaded in layers — the embedded
//! `defaults.toml`, then an optional TOML file, then `HOOKLINE_*` environment variables (`__`
//! separates levels: `HOOKLINE_KAFKA__BROKERS`) — and validated before anything starts. Every
//! error names the offending key and value.

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// The embedded defaults, as shipped.
pub const DEFAULTS_TOML: &str = include_str!("defaults.toml");
/// Environment variable prefix.
pub const ENV_PREFIX: &str = "HOOKLINE_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key has the wrong type, is unknown, or is missing.
    #[error("configuration: {0}")]
    Load(String),
    /// A key parsed but its value is out of range.
    #[error("configuration: invalid value {value} for key `{key}`: {reason}")]
    Invalid { key: &'static str, value: String, reason: &'static str },
    #[error("configuration file {path} cannot be read: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub log: LogOptions,
    pub kafka: KafkaOptions,
    pub cql: CqlOptions,
    pub redis: RedisOptions,
    pub api: ApiOptions,
    pub dispatcher: DispatcherOptions,
    pub scheduler: SchedulerOptions,
    pub projector: ProjectorOptions,
    pub flow: FlowOptions,
    pub telemetry: TelemetryOptions,
    pub secrets: SecretsOptions,
}

/// Encryption of endpoint secrets at rest.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsOptions {
    /// Operator master keys, `id:base64-32-bytes` comma separated; the first seals new secrets,
    /// all of them open existing ones (rotate by prepending a new key). Required by the api and
    /// dispatcher roles; `hookline secrets new-master-key` prints one. Never logged.
    pub master_keys: String,
}

impl std::fmt::Debug for SecretsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsOptions").field("master_keys", &"<redacted>").finish()
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogOptions {
    /// Filter in `tracing` env-filter syntax, e.g. `info,hookline_dispatcher=debug`. Default `info`.
    pub level: String,
    /// `text` (human) or `json` (one object per line). Default `text`.
    pub format: String,
}

/// Kafka: the source of truth.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaOptions {
    /// Bootstrap servers, comma separated `host:port`. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Prefix of every topic name (lets several installations share a cluster). Default `hookline.`.
    pub topic_prefix: String,
    /// Partitions of the triggers, deliveries and events topics at creation. Default 12.
    pub partitions: i32,
    /// Replication factor of created topics. Default 1 (local); use 3 in production.
    pub replication_factor: i32,
    /// Producer linger in ms: how long records wait to be batched. Default 5: librdkafka's
    /// idempotent producer keeps one request in flight per partition and busy-polls while
    /// newer records have waited longer than this, so a linger near the broker's
    /// acknowledgement time saves CPU (measured at 1,000 triggers/s: 1 instead of 5 costs Hookline
    /// 14% and Kafka 25% more CPU for a p50 1–6 ms lower and no better p99). Transaction commits
    /// send at once whatever the linger.
    pub linger_ms: u32,
    /// Consumer group session timeout in ms. Default 10000.
    pub session_timeout_ms: u32,
    /// Stable identity of this process (e.g. a pod name), used in transactional ids so that a
    /// restarted instance fences its predecessor and aborts its open transaction at once.
    /// Empty (default) = a random id per start: safe, but after a crash readers wait for the
    /// dead instance's open transaction to expire: the 10 s transaction timeout plus up to the
    /// broker's `transaction.abort.timed.out.transaction.cleanup.interval.ms` (10 s by default).
    #[serde(default)]
    pub instance_id: String,
    /// Extra librdkafka properties for every Kafka client Hookline creates, e.g. TLS or SASL:
    /// `{ "security.protocol" = "SASL_SSL", "sasl.mechanism" = "SCRAM-SHA-512", ... }`, or
    /// `debug`, or `compression.type` (Hookline's producers use `lz4` unless it is set here), or
    /// the consumers' prefetch queue (unless set here, `queued.max.messages.kbytes` is 2048, and
    /// librdkafka's 65536 for the dispatcher; `fetch.queue.backoff.ms` is 10).
    /// Properties Hookline sets itself (delivery guarantees, group and transaction settings)
    /// are refused. Default none.
    #[serde(default)]
    pub client_properties: std::collections::BTreeMap<String, String>,
}

/// librdkafka properties Hookline sets itself: its guarantees depend on them, so
/// `kafka.client_properties` may not name them.
pub const RESERVED_KAFKA_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "client.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "transactional.id",
    "transaction.timeout.ms",
    "isolation.level",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "partition.assignment.strategy",
    "message.timeout.ms",
    "linger.ms",
    "queue.buffering.max.ms",
    "session.timeout.ms",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
];

/// The CQL store (ScyllaDB; Cassandra in tests).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CqlOptions {
    /// Contact points, `host:port`. Default `["127.0.0.1:9042"]`.
    pub nodes: Vec<String>,
    /// Keyspace. Default `hookline`.
    pub keyspace: String,
    /// Replication factor of the keyspace at creation (SimpleStrategy). Default 1.
    pub replication_factor: i32,
}

/// Redis: rate limits, circuit state, idempotency keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisOptions {
    /// Connection URL. Default `redis://127.0.0.1:6379`.
    pub url: String,
    /// Prefix of every key. Default `hookline:`.
    pub key_prefix: String,
}

/// The HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiOptions {
    /// Listen address. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Largest accepted trigger payload in bytes (413 above). Default 921600 (900 KiB), the
    /// most that fits, with the event's other fields, in a Kafka record (1,000,000 bytes).
    pub max_payload_bytes: usize,
    /// Most events in one batch trigger. Default 500.
    pub max_batch_size: usize,
    /// Fan a trigger out in the API itself: its DeliveryRequested records are written beside
    /// its TriggerRequested record, and the 202 follows the broker's acknowledgement of every
    /// one, so the deliveries skip the router's hop and its transaction (at 1,000 triggers/s,
    /// trigger-to-receipt p50 about a seventh of the routed one). Not atomic: a 503 may follow
    /// some of the records, and some endpoints then receive a trigger the client is told to
    /// send again. Only for triggers without an idempotency key (the router writes a keyed
    /// trigger's deliveries all or none, and its log-backed dedupe judges repeats), to at most
    /// 128 endpoints, none of them ordered, under 1 MiB with every delivery, and while this API takes at
    /// most 2,000 triggers a second (above that the router's transactions drain a burst
    /// faster); every other trigger goes through the router. Default true.
    pub direct_fanout: bool,
    /// API tokens. Each is stored as the hex SHA-256 of the token, never the token itself.
    /// `tenant = "*"` makes an admin token (every tenant). Default none.
    #[serde(default)]
    pub tokens: Vec<TokenOptions>,
}

/// One API token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenOptions {
    /// Who holds it (shown in audit fields such as a DLQ replay's actor).
    pub name: String,
    /// The tenant it acts for, or `*` for an admin token.
    pub tenant: String,
    /// Lower-case hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
}

/// Dispatchers: outbound HTTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherOptions {
    /// Requests in flight to one endpoint from one partition worker. Default 16.
    pub max_in_flight_per_endpoint: usize,
    /// Records held (in flight or waiting) per partition before the partition is paused. Default 2000.
    pub max_in_flight_per_partition: usize,
    /// TCP+TLS connect timeout in ms. Default 5000.
    pub connect_timeout_ms: u64,
    /// Total request timeout in ms when the endpoint sets none. Default 15000.
    pub default_timeout_ms: u64,
    /// Upper bound of any endpoint's timeout in ms. Default 60000.
    pub max_timeout_ms: u64,
    /// Most response-body bytes read. Default 65536.
    pub max_response_bytes: usize,
    /// Bytes of the response body kept as an excerpt in events. Default 1024.
    pub response_excerpt_bytes: usize,
    /// Networks exempt from the SSRF guard (CIDR, e.g. `127.0.0.0/8`). Default none.
    pub ssrf_allow: Vec<String>,
    /// Delays before each attempt in ms (first is the first attempt). Default
    /// 0, 5s, 5m, 30m, 2h, 5h, 10h, 10h.
    pub retry_schedule_ms: Vec<u64>,
    /// Relative jitter applied to each retry delay (0.2 = ±20%). Default 0.2.
    pub retry_jitter: f64,
}

/// The retry scheduler.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerOptions {
    /// Delays of the retry tier topics in ms, ascending. Default 1s, 5s, 30s, 5m, 30m, 2h.
    pub tiers_ms: Vec<u64>,
}

/// The projector (read side).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectorOptions {
    /// Days rows are kept (CQL TTL). Default 30.
    pub retention_days: u32,
}

/// Metrics and trace export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryOptions {
    /// Address of a listener serving `/metrics` and `/healthz` for processes without the api
    /// role (the api serves `/metrics` itself), e.g. `0.0.0.0:9464`; empty = none. Default empty.
    pub metrics_listen: String,
    /// OTLP/HTTP endpoint that receives trace spans (e.g. `http://127.0.0.1:4318/v1/traces`);
    /// empty = no export. Default empty.
    pub otlp_endpoint: String,
    /// `service.name` of exported spans. Default `hookline`.
    pub service_name: String,
}

/// Flow control: rate limits, circuit breakers, idempotency (state shared in Redis).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowOptions {
    /// Rate limits and circuit breakers in front of every attempt. `false` turns both off (for
    /// measuring their cost; endpoint limits are then not enforced). Default true.
    pub enabled: bool,
    /// A rate-limited delivery waits in place for a token up to this long (ms); a longer wait
    /// defers it (DeliveryDeferred, no attempt used). Default 1000.
    pub rate_limit_max_wait_ms: u64,
    /// Tokens taken from Redis per round trip cover this many ms of the endpoint's rate (at
    /// least one token), so a busy endpoint costs a fraction of a Redis call per delivery. Default 50.
    pub rate_limit_prefetch_ms: u64,
    /// Share of an endpoint's rate a dispatcher uses on its own while Redis is unreachable.
    /// Deliveries are keyed by endpoint, so one dispatcher owns an endpoint at a time and 1.0
    /// keeps the limit exact. Default 1.0.
    pub rate_limit_fallback_share: f64,
    /// Sliding window of outcomes the circuit breaker judges, in ms. Default 30000.
    pub breaker_window_ms: u64,
    /// Fewest outcomes in the window before the failure ratio can open the circuit. Default 20.
    pub breaker_min_requests: u32,
    /// Failure ratio (0..1] at or above which the circuit opens. Default 0.5.
    pub breaker_failure_ratio: f64,
    /// First cool-down of an open circuit in ms, doubled after each failed probe. Default 30000.
    pub breaker_cooldown_ms: u64,
    /// Longest cool-down in ms. Default 600000 (10 min).
    pub breaker_max_cooldown_ms: u64,
    /// Probe deliveries let through a half-open circuit. Default 3.
    pub breaker_probes: u32,
    /// A circuit open (or half-open) this long disables its endpoint (EndpointDisabled), in ms.
    /// Default 432000000 (5 days).
    pub breaker_disable_after_ms: u64,
    /// How often a dispatcher reports outcomes to the shared breakers, in ms. Default 250.
    pub breaker_sync_ms: u64,
    /// How long a trigger's idempotency key holds, in ms. Default 86400000 (24 h).
    pub idempotency_window_ms: u64,
    /// Most idempotency keys a router remembers per process (its log-based second line of
    /// defence when Redis lost a key). Default 1000000.
    pub idempotency_memory_keys: usize,
    /// A Redis call slower than this (ms) counts as failed: the caller falls back to local
    /// state and retries Redis after `redis_retry_ms`. Default 250.
    pub redis_timeout_ms: u64,
    /// After a failed Redis call, use local state this long before trying Redis again (ms). Default 1000.
    pub redis_retry_ms: u64,
}

impl Config {
    /// Defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        // Every key lives in a section, so config variables always contain `__`; others with the
        // prefix (HOOKLINE_CONFIG, HOOKLINE_TEST_STACK, ...) are not configuration keys.
        Self::load_from(file, Env::prefixed(ENV_PREFIX).filter(|k| k.as_str().contains("__")).split("__"))
    }

    /// Defaults only (tests).
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::figment(None, None)
    }

    fn load_from(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        Self::figment(file, Some(env))
    }

    fn figment(file: Option<&Path>, env: Option<Env>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULTS_TOML));
        if let Some(path) = file {
            // Figment ignores a missing file; a named file that cannot be read is an error here.
            std::fs::metadata(path).map_err(|source| ConfigError::File { path: path.display().to_string(), source })?;
            fig = fig.merge(Toml::file(path));
        }
        if let Some(env) = env {
            fig = fig.merge(env);
        }
        let config: Config = fig.extract().map_err(|e| ConfigError::Load(describe(&e, &fig)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and relations that types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, value: impl std::fmt::Debug, reason: &'static str) -> ConfigError {
            ConfigError::Invalid { key, value: format!("{value:?}"), reason }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(bad("log.format", &self.log.format, "must be `text` or `json`"));
        }
        if self.kafka.brokers.trim().is_empty() {
            return Err(bad("kafka.brokers", &self.kafka.brokers, "must name at least one host:port"));
        }
        for b in self.kafka.brokers.split(',') {
            if b.trim().rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                return Err(bad("kafka.brokers", &self.kafka.brokers, "each entry must be host:port"));
            }
        }
        if !valid_topic_prefix(&self.kafka.topic_prefix) {
            return Err(bad(
                "kafka.topic_prefix",
                &self.kafka.topic_prefix,
                "use only [a-zA-Z0-9._-], at most 200 chars",
            ));
        }
        if !(1..=10_000).contains(&self.kafka.partitions) {
            return Err(bad("kafka.partitions", self.kafka.partitions, "must be between 1 and 10000"));
        }
        if !(1..=16).contains(&self.kafka.replication_factor) {
            return Err(bad("kafka.replication_factor", self.kafka.replication_factor, "must be between 1 and 16"));
        }
        if self.kafka.linger_ms > 1000 {
            return Err(bad("kafka.linger_ms", self.kafka.linger_ms, "must be at most 1000"));
        }
        for key in self.kafka.client_properties.keys() {
            if RESERVED_KAFKA_PROPERTIES.contains(&key.as_str()) {
                return Err(bad(
                    "kafka.client_properties",
                    key,
                    "this property is set by Hookline itself (see its own key) and cannot be overridden",
                ));
            }
            if key.is_empty()
                || !key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_')
            {
                return Err(bad("kafka.client_properties", key, "not a librdkafka property name"));
            }
        }
        if !self.kafka.instance_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(bad("kafka.instance_id", &self.kafka.instance_id, "use only [a-zA-Z0-9._-]"));
        }
        if !(1000..=300_000).contains(&self.kafka.session_timeout_ms) {
            return Err(bad(
                "kafka.session_timeout_ms",
                self.kafka.session_timeout_ms,
                "must be between 1000 and 300000",
            ));
        }
        if self.cql.nodes.is_empty() {
            return Err(bad("cql.nodes", &self.cql.nodes, "must name at least one host:port"));
        }
        if !valid_identifier(&self.cql.keyspace) {
            return Err(bad(
                "cql.keyspace",
                &self.cql.keyspace,
                "must be a CQL identifier: [a-z0-9_], starting with a letter, at most 48 chars",
            ));
        }
        if !(1..=16).contains(&self.cql.replication_factor) {
            return Err(bad("cql.replication_factor", self.cql.replication_factor, "must be between 1 and 16"));
        }
        if !(self.redis.url.starts_with("redis://") || self.redis.url.starts_with("rediss://")) {
            return Err(bad("redis.url", &self.redis.url, "must start with redis:// or rediss://"));
        }
        if !(1024..=900 * 1024).contains(&self.api.max_payload_bytes) {
            return Err(bad(
                "api.max_payload_bytes",
                self.api.max_payload_bytes,
                "must be between 1 KiB and 900 KiB (an event must fit a 1,000,000-byte Kafka record)",
            ));
        }
        if !(1..=10_000).contains(&self.api.max_batch_size) {
            return Err(bad("api.max_batch_size", self.api.max_batch_size, "must be between 1 and 10000"));
        }
        for t in &self.api.tokens {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(bad(
                    "api.tokens.sha256",
                    &t.name,
                    "must be 64 lower-case hex digits (sha256sum of the token)",
                ));
            }
            if t.tenant.is_empty() || t.name.is_empty() {
                return Err(bad("api.tokens", &t.name, "each token needs a name and a tenant (or * for admin)"));
            }
        }
        let d = &self.dispatcher;
        if !(1..=1000).contains(&d.max_in_flight_per_endpoint) {
            return Err(bad(
                "dispatcher.max_in_flight_per_endpoint",
                d.max_in_flight_per_endpoint,
                "must be between 1 and 1000",
            ));
        }
        if !(1..=1_000_000).contains(&d.max_in_flight_per_partition) {
            return Err(bad(
                "dispatcher.max_in_flight_per_partition",
                d.max_in_flight_per_partition,
                "must be between 1 and 1000000",
            ));
        }
        if !(100..=60_000).contains(&d.connect_timeout_ms) {
            return Err(bad("dispatcher.connect_timeout_ms", d.connect_timeout_ms, "must be between 100 and 60000"));
        }
        if !(100..=600_000).contains(&d.max_timeout_ms) {
            return Err(bad("dispatcher.max_timeout_ms", d.max_timeout_ms, "must be between 100 and 600000"));
        }
        if d.default_timeout_ms < 100 || d.default_timeout_ms > d.max_timeout_ms {
            return Err(bad(
                "dispatcher.default_timeout_ms",
                d.default_timeout_ms,
                "must be between 100 and dispatcher.max_timeout_ms",
            ));
        }
        if !(1..=16 * 1024 * 1024).contains(&d.max_response_bytes) {
            return Err(bad("dispatcher.max_response_bytes", d.max_response_bytes, "must be between 1 and 16 MiB"));
        }
        if d.response_excerpt_bytes > d.max_response_bytes {
            return Err(bad(
                "dispatcher.response_excerpt_bytes",
                d.response_excerpt_bytes,
                "must not exceed dispatcher.max_response_bytes",
            ));
        }
        if d.retry_schedule_ms.is_empty() || d.retry_schedule_ms.len() > 50 {
            return Err(bad("dispatcher.retry_schedule_ms", &d.retry_schedule_ms, "must have 1 to 50 entries"));
        }
        if d.retry_schedule_ms.iter().any(|&ms| ms > 7 * 24 * 3600 * 1000) {
            return Err(bad("dispatcher.retry_schedule_ms", &d.retry_schedule_ms, "each delay must be at most 7 days"));
        }
        if !(0.0..=0.5).contains(&d.retry_jitter) {
            return Err(bad("dispatcher.retry_jitter", d.retry_jitter, "must be between 0.0 and 0.5"));
        }
        let tiers = &self.scheduler.tiers_ms;
        if tiers.is_empty() || tiers.len() > 20 || tiers.windows(2).any(|w| w[0] >= w[1]) || tiers[0] < 100 {
            return Err(bad(
                "scheduler.tiers_ms",
                tiers,
                "must be 1 to 20 strictly ascending delays, the first at least 100",
            ));
        }
        let t = &self.telemetry;
        if !t.metrics_listen.is_empty() && t.metrics_listen.parse::<SocketAddr>().is_err() {
            return Err(bad(
                "telemetry.metrics_listen",
                &t.metrics_listen,
                "must be empty or host:port (an IP address)",
            ));
        }
        if !(t.otlp_endpoint.is_empty()
            || t.otlp_endpoint.starts_with("http://")
            || t.otlp_endpoint.starts_with("https://"))
        {
            return Err(bad("telemetry.otlp_endpoint", &t.otlp_endpoint, "must be empty or an http(s):// URL"));
        }
        if t.service_name.is_empty() || t.service_name.len() > 100 {
            return Err(bad("telemetry.service_name", &t.service_name, "must be 1 to 100 characters"));
        }
        let f = &self.flow;
        if f.rate_limit_max_wait_ms > 60_000 {
            return Err(bad("flow.rate_limit_max_wait_ms", f.rate_limit_max_wait_ms, "must be at most 60000"));
        }
        if !(1..=1000).contains(&f.rate_limit_prefetch_ms) {
            return Err(bad("flow.rate_limit_prefetch_ms", f.rate_limit_prefetch_ms, "must be between 1 and 1000"));
        }
        if !(f.rate_limit_fallback_share > 0.0 && f.rate_limit_fallback_share <= 1.0) {
            return Err(bad("flow.rate_limit_fallback_share", f.rate_limit_fallback_share, "must be in (0, 1]"));
        }
        if !(1000..=86_400_000).contains(&f.breaker_window_ms) {
            return Err(bad("flow.breaker_window_ms", f.breaker_window_ms, "must be between 1000 and 86400000"));
        }
        if !(1..=1_000_000).contains(&f.breaker_min_requests) {
            return Err(bad("flow.breaker_min_requests", f.breaker_min_requests, "must be between 1 and 1000000"));
        }
        if !(f.breaker_failure_ratio > 0.0 && f.breaker_failure_ratio <= 1.0) {
            return Err(bad("flow.breaker_failure_ratio", f.breaker_failure_ratio, "must be in (0, 1]"));
        }
        if !(100..=86_400_000).contains(&f.breaker_cooldown_ms) {
            return Err(bad("flow.breaker_cooldown_ms", f.breaker_cooldown_ms, "must be between 100 and 86400000"));
        }
        if f.breaker_max_cooldown_ms < f.breaker_cooldown_ms || f.breaker_max_cooldown_ms > 7 * 86_400_000 {
            return Err(bad(
                "flow.breaker_max_cooldown_ms",
                f.breaker_max_cooldown_ms,
                "must be at least flow.breaker_cooldown_ms and at most 7 days",
            ));
        }
        if !(1..=1000).contains(&f.breaker_probes) {
            return Err(bad("flow.breaker_probes", f.breaker_probes, "must be between 1 and 1000"));
        }
        if f.breaker_disable_after_ms < 1000 {
            return Err(bad("flow.breaker_disable_after_ms", f.breaker_disable_after_ms, "must be at least 1000"));
        }
        if !(10..=10_000).contains(&f.breaker_sync_ms) {
            return Err(bad("flow.breaker_sync_ms", f.breaker_sync_ms, "must be between 10 and 10000"));
        }
        if !(1000..=30 * 86_400_000).contains(&f.idempotency_window_ms) {
            return Err(bad(
                "flow.idempotency_window_ms",
                f.idempotency_window_ms,
                "must be between 1000 and 2592000000 (30 days)",
            ));
        }
        if !(1000..=100_000_000).contains(&f.idempotency_memory_keys) {
            return Err(bad(
                "flow.idempotency_memory_keys",
                f.idempotency_memory_keys,
                "must be between 1000 and 100000000",
            ));
        }
        if !(10..=60_000).contains(&f.redis_timeout_ms) {
            return Err(bad("flow.redis_timeout_ms", f.redis_timeout_ms, "must be between 10 and 60000"));
        }
        if !(10..=600_000).contains(&f.redis_retry_ms) {
            return Err(bad("flow.redis_retry_ms", f.redis_retry_ms, "must be between 10 and 600000"));
        }
        if !(1..=3650).contains(&self.projector.retention_days) {
            return Err(bad("projector.retention_days", self.projector.retention_days, "must be between 1 and 3650"));
        }
        Ok(())
    }
}

/// `<what is wrong> for key `a.b` = <value> (from <source>)`, keys in lower case.
fn describe(err: &figment::Error, fig: &Figment) -> String {
    err.clone()
        .into_iter()
        .map(|e| {
            let key = e.path.iter().map(|p| p.to_lowercase()).collect::<Vec<_>>().join(".");
            let source = e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_else(|| "defaults".into());
            if key.is_empty() {
                return format!("{} (from {source})", e.kind);
            }
            match fig.find_value(&key) {
                Ok(v) => format!("{} for key `{key}` = {} (from {source})", e.kind, render(&v)),
                Err(_) => format!("{} for key `{key}` (from {source})", e.kind),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn render(v: &figment::value::Value) -> String {
    use figment::value::Value;
    match v {
        Value::String(_, s) => format!("{s:?}"),
        other => serde_json_like(other),
    }
}

fn serde_json_like(v: &figment::value::Value) -> String {
    // Scalars print as themselves; compound values as TOML.
    toml::to_string(v).map(|s| s.trim().to_string()).unwrap_or_else(|_| "<value>".into())
}

fn valid_topic_prefix(p: &str) -> bool {
    p.len() <= 200 && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn valid_identifier(s: &str) -> bool {
    s.len() <= 48
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    fn with_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut out = None;
        figment::Jail::expect_with(|jail| {
            for (k, v) in vars {
                jail.set_env(k, v);
            }
            out = Some(Config::load(None));
            Ok(())
        });
        out.expect("jail ran")
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.kafka.partitions, 12);
        assert_eq!(c.dispatcher.retry_schedule_ms.len(), 8);
    }

    #[test]
    fn env_overrides_nested_keys() {
        let c = with_env(&[
            ("HOOKLINE_CONFIG", "x.toml"),
            ("HOOKLINE_KAFKA__BROKERS", "10.0.0.1:19092"),
            ("HOOKLINE_KAFKA__PARTITIONS", "3"),
        ])
        .unwrap();
        assert_eq!(c.kafka.brokers, "10.0.0.1:19092");
        assert_eq!(c.kafka.partitions, 3);
    }

    #[test]
    fn type_errors_name_key_and_value() {
        let err = with_env(&[("HOOKLINE_KAFKA__PARTITIONS", "many")]).unwrap_err().to_string();
        assert!(err.contains("`kafka.partitions`") && err.contains("many"), "{err}");
    }

    #[test]
    fn range_errors_name_key_and_value() {
        let err = with_env(&[("HOOKLINE_KAFKA__PARTITIONS", "0")]).unwrap_err().to_string();
        assert!(err.contains("kafka.partitions") && err.contains('0'), "{err}");
        let err = with_env(&[("HOOKLINE_LOG__FORMAT", "xml")]).unwrap_err().to_string();
        assert!(err.contains("log.format") && err.contains("xml"), "{err}");
    }

    #[test]
    fn kafka_client_properties_pass_through_but_not_over_our_own() {
        let c =
            with_env(&[("HOOKLINE_KAFKA__CLIENT_PROPERTIES", r#"{"security.protocol"="SASL_SSL", "debug"="eos"}"#)])
                .unwrap();
        assert_eq!(c.kafka.client_properties.get("security.protocol").map(String::as_str), Some("SASL_SSL"));
        let err = with_env(&[("HOOKLINE_KAFKA__CLIENT_PROPERTIES", r#"{"enable.idempotence"="false"}"#)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafka.client_properties") && err.contains("enable.idempotence"), "{err}");
        let err = with_env(&[("HOOKLINE_KAFKA__CLIENT_PROPERTIES", r#"{"Not A Key"="1"}"#)]).unwrap_err().to_string();
        assert!(err.contains("not a librdkafka property"), "{err}");
    }

    #[test]
    fn file_layer_and_unknown_keys() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("h.toml", "[api]\nlisten = \"0.0.0.0:9000\"\n")?;
            let c = Config::load(Some(Path::new("h.toml"))).unwrap();
            assert_eq!(c.api.listen.port(), 9000);
            jail.create_file("bad.toml", "[api]\nlisten_port = 9000\n")?;
            let err = Config::load(Some(Path::new("bad.toml"))).unwrap_err().to_string();
            assert!(err.contains("listen_port"), "{err}");
            Ok(())
        });
    }
}
