//! The shared circuit breaker of each endpoint (`cb:<endpoint id>`): outcomes are reported in
//! batches (one pipelined round trip for every endpoint with news) and probes are admitted one
//! by one, both by Lua scripts that apply the rules of [`hookline_domain::flow::Breaker`].

use std::sync::LazyLock;

use hookline_domain::flow::{BreakerPolicy, CircuitState};

use crate::{RedisError, RedisStore};

static REPORT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lua/breaker_report.lua")));
static ADMIT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lua/breaker_admit.lua")));

/// Outcomes of one endpoint since its last report.
#[derive(Debug, Clone)]
pub struct Outcomes {
    pub endpoint_id: String,
    pub successes: u32,
    pub failures: u32,
}

/// The breaker after a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub state: CircuitState,
    pub open_until: i64,
    pub open_since: Option<i64>,
    /// This report opened (`Some(true)`) or closed (`Some(false)`) the circuit.
    pub changed: Option<bool>,
    pub failure_ratio: f64,
    pub window_requests: u32,
    /// The circuit has been open longer than the policy allows: disable the endpoint (once).
    pub disable: bool,
}

/// The breaker as read, for the API.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitView {
    pub state: CircuitState,
    pub open_until: Option<i64>,
    pub open_since: Option<i64>,
}

type RawReport = (String, i64, i64, i64, i64, i64, i64);

impl RedisStore {
    fn breaker_key(&self, endpoint_id: &str) -> String {
        self.key(&format!("cb:{endpoint_id}"))
    }

    /// Reports every endpoint's outcomes in one pipelined round trip; answers in input order.
    pub async fn report_outcomes(
        &self,
        batch: &[Outcomes],
        p: &BreakerPolicy,
        now_ms: Option<i64>,
    ) -> Result<Vec<Reported>, RedisError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms.map(|n| n.to_string()).unwrap_or_default();
        let mut pipe = redis::pipe();
        for o in batch {
            pipe.invoke_script(
                REPORT
                    .key(self.breaker_key(&o.endpoint_id))
                    .arg(o.successes)
                    .arg(o.failures)
                    .arg(p.window_ms)
                    .arg(p.min_requests)
                    .arg(p.failure_ratio)
                    .arg(p.cooldown_ms)
                    .arg(p.max_cooldown_ms)
                    .arg(p.probes)
                    .arg(p.disable_after_ms)
                    .arg(&now),
            );
        }
        let mut c = self.connection();
        let raw: Vec<RawReport> = match pipe.query_async(&mut c).await {
            Ok(r) => r,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis lost its script cache (restart, SCRIPT FLUSH): load once and redo.
                REPORT
                    .prepare_invoke()
                    .load_async(&mut c)
                    .await
                    .map_err(|source| RedisError::Command { command: "SCRIPT LOAD breaker_report", source })?;
                pipe.query_async(&mut c)
                    .await
                    .map_err(|source| RedisError::Command { command: "EVALSHA breaker_report", source })?
            }
            Err(source) => return Err(RedisError::Command { command: "EVALSHA breaker_report", source }),
        };
        Ok(raw
            .into_iter()
            .map(|(state, open_until, open_since, transition, ratio_ppm, requests, disable)| Reported {
                state: CircuitState::parse(&state),
                open_until,
                open_since: (open_since >= 0).then_some(open_since),
                changed: match transition {
                    1 => Some(true),
                    2 => Some(false),
                    _ => None,
                },
                failure_ratio: ratio_ppm as f64 / 1e6,
                window_requests: requests.max(0) as u32,
                disable: disable == 1,
            })
            .collect())
    }

    /// Asks whether a delivery may go now (always in a closed circuit; a probe in a half-open
    /// one while probes are left). Answers (admitted, state, open_until).
    pub async fn admit(
        &self,
        endpoint_id: &str,
        probes: u32,
        now_ms: Option<i64>,
    ) -> Result<(bool, CircuitState, i64), RedisError> {
        let mut c = self.connection();
        let now = now_ms.map(|n| n.to_string()).unwrap_or_default();
        let (admitted, state, open_until): (i64, String, i64) = ADMIT
            .key(self.breaker_key(endpoint_id))
            .arg(probes)
            .arg(now)
            .invoke_async(&mut c)
            .await
            .map_err(|source| RedisError::Command { command: "EVALSHA breaker_admit", source })?;
        Ok((admitted == 1, CircuitState::parse(&state), open_until))
    }

    /// The circuit of each endpoint, in input order (closed when Redis knows nothing of it).
    pub async fn circuits(&self, endpoint_ids: &[String]) -> Result<Vec<CircuitView>, RedisError> {
        if endpoint_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in endpoint_ids {
            pipe.cmd("HMGET").arg(self.breaker_key(id)).arg("state").arg("open_until").arg("open_since");
        }
        let mut c = self.connection();
        let raw: Vec<(Option<String>, Option<i64>, Option<i64>)> =
            pipe.query_async(&mut c).await.map_err(|source| RedisError::Command { command: "HMGET", source })?;
        Ok(raw
            .into_iter()
            .map(|(state, until, since)| {
                let state = state.as_deref().map_or(CircuitState::Closed, CircuitState::parse);
                CircuitView {
                    state,
                    open_until: until.filter(|_| state != CircuitState::Closed),
                    open_since: since.filter(|s| *s >= 0),
                }
            })
            .collect())
    }
}
