//! The health dashboard's data in one call: per endpoint (success rate, latency percentiles,
//! throughput, circuit state, rate limit, open DLQ entries, disabled flag) and per-minute series
//! (outcomes stacked, latency percentiles) for every visible endpoint or for one.
//!
//! Everything comes from the read models (`endpoint_health` per minute, `endpoint_state` from
//! the flow-control events) and the in-memory endpoint catalog (configuration).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use futures::StreamExt;
use hookline_domain::time;
use hookline_projector::query::{EndpointState, Health, percentile};
use hookline_projector::schema::LATENCY_BOUNDS_MS;
use hookline_schemas::EndpointUpserted;
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::endpoints::RateLimitIn;
use crate::params::Params;
use crate::problem::ApiProblem;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most endpoints one answer covers (the rest are counted in `truncated`).
pub const MAX_ENDPOINTS: usize = 500;
/// Read-model queries in flight for one answer.
const READ_CONCURRENCY: usize = 16;
/// Window in minutes when none is asked for, and the largest accepted.
pub const DEFAULT_WINDOW_MINUTES: i64 = 60;
pub const MAX_WINDOW_MINUTES: i64 = 1440;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(overview))
}

/// Query of `GET /api/overview`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct OverviewQuery {
    /// Minutes of history (default 60).
    #[param(minimum = 1, maximum = 1440)]
    window: Option<i64>,
    /// The tenant (admin tokens; a tenant token sees its own).
    tenant_id: Option<String>,
    /// Chart one endpoint instead of all.
    series_endpoint_id: Option<String>,
}

/// Circuit breaker as the dashboard shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OverviewCircuit)]
pub struct CircuitOut {
    /// `closed`, `open`, or `half_open` (open, cool-down over, waiting for a probe to succeed).
    pub state: &'static str,
    /// When it last opened or closed (absent when it never opened).
    pub since: Option<i64>,
    pub open_until: Option<i64>,
    pub failure_ratio: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OverviewEndpoint)]
pub struct EndpointRow {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub description: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<i64>,
    pub rate_limit: Option<RateLimitIn>,
    pub successes: i64,
    pub failures: i64,
    pub deferred: i64,
    pub dead_lettered: i64,
    pub success_rate: Option<f64>,
    pub latency_p50_ms: Option<i32>,
    pub latency_p95_ms: Option<i32>,
    /// Attempts per minute over the window.
    pub throughput_per_minute: f64,
    pub circuit: CircuitOut,
    /// Open DLQ entries.
    pub dlq_depth: i64,
    pub last_deferred_at: Option<i64>,
    pub last_deferred_cause: Option<String>,
}

#[derive(Debug, Serialize, Default, Clone, utoipa::ToSchema)]
#[schema(as = OverviewMinute)]
pub struct MinuteOut {
    pub minute: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub deferred: i64,
    pub dead_lettered: i64,
    pub latency_p50_ms: Option<i32>,
    pub latency_p95_ms: Option<i32>,
    pub latency_p99_ms: Option<i32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OverviewSeries)]
pub struct SeriesOut {
    /// The endpoint the series covers, or none for every listed endpoint.
    pub endpoint_id: Option<String>,
    /// One entry per minute of the window, oldest first (zeros where nothing happened).
    pub minutes: Vec<MinuteOut>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Overview)]
pub struct OverviewOut {
    pub generated_at: i64,
    pub window_minutes: i64,
    pub endpoints: Vec<EndpointRow>,
    /// Endpoints left out beyond [`MAX_ENDPOINTS`].
    pub truncated: usize,
    pub series: SeriesOut,
}

/// The health dashboard's data: per endpoint and per minute.
#[utoipa::path(
    get,
    path = "/api/overview",
    operation_id = "overview",
    tag = "health",
    params(OverviewQuery),
    responses(
        (status = OK, description = "Per-endpoint rows and per-minute series", body = OverviewOut),
        (status = FORBIDDEN, description = "A tenant token named another tenant"),
    )
)]
async fn overview(
    State(state): State<AppState>,
    caller: Caller,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery,
) -> Result<impl IntoResponse, ApiProblem> {
    let p = Params::new(q, &["window", "tenant_id", "series_endpoint_id"])?;
    let window = match p.str("window") {
        None => DEFAULT_WINDOW_MINUTES,
        Some(w) => w.parse::<i64>().ok().filter(|w| (1..=MAX_WINDOW_MINUTES).contains(w)).ok_or_else(|| {
            ApiProblem::invalid("window", format!("must be a number of minutes between 1 and {MAX_WINDOW_MINUTES}"))
        })?,
    };
    let tenant = match (&caller.tenant, p.str("tenant_id")) {
        (Some(own), Some(r)) if r != own => {
            return Err(ApiProblem::Forbidden("a tenant token sees only its own tenant"));
        }
        (Some(own), _) => Some(own.clone()),
        (None, r) => r.map(str::to_string),
    };
    let series_endpoint = p.str("series_endpoint_id").map(str::to_string);
    if let Some(id) = &series_endpoint {
        crate::endpoints::visible(&state, &caller, id)
            .map_err(|_| ApiProblem::invalid("series_endpoint_id", "no such endpoint"))?;
    }

    let mut endpoints = state.catalog.list(tenant.as_deref());
    endpoints.sort_by(|a, b| a.envelope.endpoint_id.cmp(&b.envelope.endpoint_id));
    let truncated = endpoints.len().saturating_sub(MAX_ENDPOINTS);
    endpoints.truncate(MAX_ENDPOINTS);
    let listed = endpoints.len();
    // The charted endpoint is always read, even when it is not among the listed ones.
    if let Some(id) = &series_endpoint
        && !endpoints.iter().any(|e| e.envelope.endpoint_id.as_deref() == Some(id))
        && let Some(e) = state.catalog.get(id)
    {
        endpoints.push(e);
    }

    let now = time::now_ms();
    let reader = state.reader();
    // Futures built up front from owned ids: a closure over borrowed endpoints inside the
    // stream would defeat the `Send` inference axum handlers need.
    let mut reads = Vec::with_capacity(endpoints.len());
    for e in &endpoints {
        let (reader, id) = (reader.clone(), e.envelope.endpoint_id.clone().unwrap_or_default());
        reads.push(async move {
            let health = reader.health(&id, window, now).await?;
            let st = reader.endpoint_state(&id).await?;
            Ok::<_, hookline_projector::CqlError>((health, st))
        });
    }
    let results: Vec<_> = futures::stream::iter(reads).buffered(READ_CONCURRENCY).collect().await;
    let mut read = Vec::with_capacity(results.len());
    for r in results {
        read.push(r.map_err(ApiProblem::internal)?);
    }

    let series_of: Vec<&Health> = read
        .iter()
        .map(|(h, _)| h)
        .filter(|h| series_endpoint.as_deref().is_none_or(|id| h.endpoint_id == id))
        .collect();
    let series = SeriesOut { endpoint_id: series_endpoint.clone(), minutes: minutes(&series_of, window, now) };
    let rows = endpoints.iter().zip(read).take(listed).map(|(e, (h, st))| row(e, h, st, window, now)).collect();
    Ok(Json(OverviewOut { generated_at: now, window_minutes: window, endpoints: rows, truncated, series }))
}

fn row(e: &Arc<EndpointUpserted>, h: Health, st: EndpointState, window: i64, now: i64) -> EndpointRow {
    let deferred = h.minutes.iter().map(|m| i64::from(m.deferred)).sum();
    let dead_lettered = h.minutes.iter().map(|m| i64::from(m.dead_lettered)).sum();
    let circuit = circuit(&st, now);
    EndpointRow {
        id: e.envelope.endpoint_id.clone().unwrap_or_default(),
        tenant_id: e.envelope.tenant_id.clone(),
        url: e.url.clone(),
        description: e.description.clone(),
        enabled: e.enabled,
        disabled_reason: e.disabled_reason.clone().or(st.disabled_reason.filter(|_| !e.enabled)),
        disabled_at: st.disabled_at.filter(|_| !e.enabled),
        rate_limit: e.rate_limit.as_ref().map(|r| RateLimitIn { per_second: r.per_second, burst: r.burst }),
        successes: h.successes,
        failures: h.failures,
        deferred,
        dead_lettered,
        success_rate: h.success_rate,
        latency_p50_ms: h.latency_p50_ms,
        latency_p95_ms: h.latency_p95_ms,
        throughput_per_minute: (h.successes + h.failures) as f64 / window as f64,
        circuit,
        dlq_depth: st.dlq_open,
        last_deferred_at: st.last_deferred_at,
        last_deferred_cause: st.last_deferred_cause,
    }
}

fn circuit(st: &EndpointState, now: i64) -> CircuitOut {
    let state = match st.circuit_state.as_deref() {
        Some(hookline_projector::apply::circuit::OPEN) if st.circuit_open_until.is_some_and(|u| u <= now) => {
            "half_open"
        }
        Some(hookline_projector::apply::circuit::OPEN) => "open",
        _ => "closed",
    };
    CircuitOut {
        state,
        since: st.circuit_since,
        open_until: st.circuit_open_until.filter(|_| state != "closed"),
        failure_ratio: st.circuit_failure_ratio.filter(|_| state != "closed"),
    }
}

/// Per-minute sums over `healths`, one entry for every minute of the window.
fn minutes(healths: &[&Health], window: i64, now: i64) -> Vec<MinuteOut> {
    let last = now / 60_000 * 60_000;
    let first = last - (window - 1) * 60_000;
    let mut sums: BTreeMap<i64, (MinuteOut, Vec<i64>)> = (0..window)
        .map(|i| {
            let minute = first + i * 60_000;
            (minute, (MinuteOut { minute, ..Default::default() }, vec![0; LATENCY_BOUNDS_MS.len() + 1]))
        })
        .collect();
    for h in healths {
        for m in &h.minutes {
            let Some((out, hist)) = sums.get_mut(&m.minute) else { continue };
            out.succeeded += i64::from(m.successes);
            out.failed += i64::from(m.failures);
            out.deferred += i64::from(m.deferred);
            out.dead_lettered += i64::from(m.dead_lettered);
            for (slot, c) in hist.iter_mut().zip(&m.latency_buckets) {
                *slot += i64::from(*c);
            }
        }
    }
    sums.into_values()
        .map(|(mut out, hist)| {
            out.latency_p50_ms = percentile(&hist, 0.50);
            out.latency_p95_ms = percentile(&hist, 0.95);
            out.latency_p99_ms = percentile(&hist, 0.99);
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_projector::query::HealthMinute;

    fn health(id: &str, minutes: Vec<HealthMinute>) -> Health {
        Health {
            endpoint_id: id.into(),
            window_minutes: 5,
            successes: 0,
            failures: 0,
            success_rate: None,
            latency_avg_ms: None,
            latency_p50_ms: None,
            latency_p95_ms: None,
            minutes,
        }
    }

    #[test]
    fn minutes_are_summed_across_endpoints_and_every_minute_is_present() {
        let now = 10 * 60_000 + 5_000;
        let mut fast = vec![0; LATENCY_BOUNDS_MS.len() + 1];
        fast[0] = 3; // three attempts ≤ 5 ms
        let mut slow = vec![0; LATENCY_BOUNDS_MS.len() + 1];
        slow[7] = 1; // one ≤ 1 s
        let a = health(
            "a",
            vec![HealthMinute {
                minute: 9 * 60_000,
                successes: 3,
                failures: 0,
                latency_buckets: fast,
                ..Default::default()
            }],
        );
        let b = health(
            "b",
            vec![HealthMinute {
                minute: 9 * 60_000,
                successes: 0,
                failures: 1,
                deferred: 2,
                dead_lettered: 1,
                latency_buckets: slow,
                ..Default::default()
            }],
        );
        let out = minutes(&[&a, &b], 5, now);
        assert_eq!(out.len(), 5);
        assert_eq!(out.first().unwrap().minute, 6 * 60_000);
        assert_eq!(out.last().unwrap().minute, 10 * 60_000);
        let m = &out[3];
        assert_eq!((m.succeeded, m.failed, m.deferred, m.dead_lettered), (3, 1, 2, 1));
        assert_eq!((m.latency_p50_ms, m.latency_p99_ms), (Some(5), Some(1000)));
        assert_eq!(out[4].latency_p50_ms, None);
    }

    #[test]
    fn an_open_circuit_past_its_cool_down_is_half_open() {
        let open = |until| EndpointState {
            circuit_state: Some("open".into()),
            circuit_since: Some(1),
            circuit_open_until: Some(until),
            ..Default::default()
        };
        assert_eq!(circuit(&open(100), 50).state, "open");
        assert_eq!(circuit(&open(100), 150).state, "half_open");
        assert_eq!(circuit(&EndpointState::default(), 0).state, "closed");
        let closed = EndpointState { circuit_state: Some("closed".into()), ..Default::default() };
        assert_eq!(circuit(&closed, 0).state, "closed");
    }
}
