//! Reads for the API, over the active table set. Lists page newest-first across time buckets
//! with an opaque cursor `<bucket>:<last id>`.

use scylla::client::session::Session;
use scylla::value::CqlTimestamp;
use serde::Serialize;

use crate::apply::dlq_bucket;
use crate::schema::{DELIVERY_BUCKET_MS, DLQ_BUCKET_MS, HEALTH_BUCKET_MS, LATENCY_BOUNDS_MS};
use crate::store::{CqlError, Store};

/// Most buckets one list call scans (bounds the work of a sparse range).
pub const MAX_BUCKETS_SCANNED: i64 = 24 * 8;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    pub tenant_id: String,
    pub endpoint_id: String,
    pub trigger_id: Option<String>,
    pub message_id: Option<String>,
    pub event_type: Option<String>,
    pub reason: Option<String>,
    pub status: Option<String>,
    pub attempts: Option<i32>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliverySummary {
    pub id: String,
    pub endpoint_id: Option<String>,
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub attempts: Option<i32>,
    pub created_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub attempt: i32,
    pub occurred_at: Option<i64>,
    pub outcome: Option<String>,
    pub status_code: Option<i32>,
    pub duration_ms: Option<i32>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub response_excerpt: Option<String>,
    pub next_attempt_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DlqEntry {
    pub id: String,
    pub tenant_id: String,
    pub delivery_id: Option<String>,
    pub trigger_id: Option<String>,
    pub correlation_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub event_type: Option<String>,
    pub message_id: Option<String>,
    #[serde(skip)]
    pub payload: Vec<u8>,
    pub content_type: Option<String>,
    pub moved_at: Option<i64>,
    pub attempts: Option<i32>,
    pub reason: Option<String>,
    pub last_error_kind: Option<String>,
    pub last_status_code: Option<i32>,
    pub last_error_message: Option<String>,
    pub trigger_occurred_at: Option<i64>,
    pub state: Option<String>,
    pub handled_at: Option<i64>,
    pub handled_by: Option<String>,
    pub replay_delivery_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DlqSummary {
    pub id: String,
    pub delivery_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub event_type: Option<String>,
    pub moved_at: Option<i64>,
    pub last_error_kind: Option<String>,
    pub last_status_code: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct HealthMinute {
    pub minute: i64,
    pub successes: i32,
    pub failures: i32,
    pub latency_sum_ms: i64,
    pub latency_buckets: Vec<i32>,
    /// Deliveries postponed without an attempt (rate limited, circuit open).
    pub deferred: i32,
    /// Messages moved to the DLQ.
    pub dead_lettered: i32,
}

/// Flow-control state of one endpoint, from its events.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EndpointState {
    pub endpoint_id: String,
    /// `open`, `closed`, or `None` when the circuit never opened.
    pub circuit_state: Option<String>,
    /// When the circuit last changed state.
    pub circuit_since: Option<i64>,
    pub circuit_open_until: Option<i64>,
    pub circuit_failure_ratio: Option<f64>,
    pub circuit_window_requests: Option<i32>,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub last_deferred_at: Option<i64>,
    pub last_deferred_cause: Option<String>,
    pub deferred_until: Option<i64>,
    /// Open DLQ entries (moved minus replayed and discarded).
    pub dlq_open: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub endpoint_id: String,
    pub window_minutes: i64,
    pub successes: i64,
    pub failures: i64,
    pub success_rate: Option<f64>,
    pub latency_avg_ms: Option<f64>,
    pub latency_p50_ms: Option<i32>,
    pub latency_p95_ms: Option<i32>,
    pub minutes: Vec<HealthMinute>,
}

/// A page and the cursor of the next one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Where a list starts: a bucket and, within it, ids strictly below `after`.
#[derive(Debug, Clone)]
pub struct Cursor {
    pub bucket: i64,
    pub after: Option<String>,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Self> {
        let (b, id) = s.split_once(':')?;
        Some(Self { bucket: b.parse().ok()?, after: (!id.is_empty()).then(|| id.to_string()) })
    }

    fn render(bucket: i64, id: &str) -> String {
        format!("{bucket}:{id}")
    }
}

fn rows_err(q: &str, e: impl std::fmt::Display) -> CqlError {
    CqlError::Rows { statement: q.to_string(), reason: e.to_string() }
}

async fn query<R>(
    session: &Session,
    q: &str,
    values: impl scylla::serialize::row::SerializeRow,
) -> Result<Vec<R>, CqlError>
where
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    let r = session
        .query_unpaged(q.to_string(), values)
        .await
        .map_err(|e| CqlError::Execute { statement: q.to_string(), source: Box::new(e) })?
        .into_rows_result()
        .map_err(|e| rows_err(q, e))?;
    let rows = r.rows::<R>().map_err(|e| rows_err(q, e))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(|e| rows_err(q, e))
}

fn ms(t: Option<CqlTimestamp>) -> Option<i64> {
    t.map(|t| t.0)
}

/// Read access to one table set.
#[derive(Clone)]
pub struct Reader {
    pub store: Store,
    pub suffix: String,
}

type DeliveryRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<i32>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
);

impl Reader {
    fn t(&self, table: &str) -> String {
        format!("{}.{}{}", self.store.keyspace, table, self.suffix)
    }

    pub async fn delivery(&self, id: &str) -> Result<Option<Delivery>, CqlError> {
        let q = format!(
            "SELECT delivery_id, tenant_id, endpoint_id, trigger_id, message_id, event_type, reason, status, attempts, \
             last_status_code, last_error, next_attempt_at, created_at, updated_at FROM {} WHERE delivery_id = ?",
            self.t("deliveries")
        );
        let rows: Vec<DeliveryRow> = query(&self.store.session, &q, (id,)).await?;
        Ok(rows.into_iter().next().map(|r| Delivery {
            id: r.0,
            tenant_id: r.1.unwrap_or_default(),
            endpoint_id: r.2.unwrap_or_default(),
            trigger_id: r.3,
            message_id: r.4,
            event_type: r.5,
            reason: r.6,
            status: r.7,
            attempts: r.8,
            last_status_code: r.9,
            last_error: r.10,
            next_attempt_at: ms(r.11),
            created_at: ms(r.12),
            updated_at: ms(r.13),
        }))
    }

    pub async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>, CqlError> {
        let q = format!(
            "SELECT attempt, occurred_at, outcome, status_code, duration_ms, error_kind, error_message, \
             response_excerpt, next_attempt_at FROM {} WHERE delivery_id = ?",
            self.t("attempts")
        );
        type Row = (
            i32,
            Option<CqlTimestamp>,
            Option<String>,
            Option<i32>,
            Option<i32>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<CqlTimestamp>,
        );
        let rows: Vec<Row> = query(&self.store.session, &q, (delivery_id,)).await?;
        Ok(rows
            .into_iter()
            .map(|r| Attempt {
                attempt: r.0,
                occurred_at: ms(r.1),
                outcome: r.2,
                status_code: r.3,
                duration_ms: r.4,
                error_kind: r.5,
                error_message: r.6,
                response_excerpt: r.7,
                next_attempt_at: ms(r.8),
            })
            .collect())
    }

    /// Deliveries of a tenant (or of one of its endpoints), newest first, between `since` and
    /// `until` (ms), optionally with one status.
    #[allow(clippy::too_many_arguments)]
    pub async fn deliveries(
        &self,
        tenant: &str,
        endpoint: Option<&str>,
        status: Option<&str>,
        since: i64,
        until: i64,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<DeliverySummary>, CqlError> {
        let (table, by_endpoint) = match endpoint {
            Some(_) => (self.t("deliveries_by_endpoint"), true),
            None => (self.t("deliveries_by_tenant"), false),
        };
        let endpoint_col = if by_endpoint { "" } else { ", endpoint_id" };
        let where_ep = if by_endpoint { " AND endpoint_id = ?" } else { "" };
        let first_bucket = until / DELIVERY_BUCKET_MS;
        let last_bucket = since / DELIVERY_BUCKET_MS;
        let (mut bucket, mut after) = match cursor {
            Some(c) => (c.bucket.min(first_bucket), c.after),
            None => (first_bucket, None),
        };
        let mut out = Vec::new();
        let mut scanned = 0;
        while bucket >= last_bucket && scanned < MAX_BUCKETS_SCANNED {
            let lower = if after.is_some() { " AND delivery_id < ?" } else { "" };
            let q = format!(
                "SELECT delivery_id, status, event_type, attempts, created_at{endpoint_col} FROM {table} \
                 WHERE tenant_id = ?{where_ep} AND bucket = ?{lower} LIMIT {}",
                limit * 4 + 1
            );
            type Row = (String, Option<String>, Option<String>, Option<i32>, Option<CqlTimestamp>);
            let rows: Vec<(Row, Option<String>)> = if by_endpoint {
                let ep = endpoint.unwrap_or_default();
                let r: Vec<Row> = match &after {
                    Some(a) => query(&self.store.session, &q, (tenant, ep, bucket, a.as_str())).await?,
                    None => query(&self.store.session, &q, (tenant, ep, bucket)).await?,
                };
                r.into_iter().map(|r| (r, Some(ep.to_string()))).collect()
            } else {
                type RowT = (String, Option<String>, Option<String>, Option<i32>, Option<CqlTimestamp>, Option<String>);
                let r: Vec<RowT> = match &after {
                    Some(a) => query(&self.store.session, &q, (tenant, bucket, a.as_str())).await?,
                    None => query(&self.store.session, &q, (tenant, bucket)).await?,
                };
                r.into_iter().map(|r| ((r.0, r.1, r.2, r.3, r.4), r.5)).collect()
            };
            let exhausted = rows.len() <= limit * 4;
            for ((id, st, et, att, created), ep) in rows {
                let created = ms(created);
                after = Some(id.clone());
                if created.is_some_and(|c| c < since || c > until) {
                    continue;
                }
                if status.is_some_and(|s| st.as_deref() != Some(s)) {
                    continue;
                }
                out.push(DeliverySummary {
                    id,
                    endpoint_id: ep,
                    status: st,
                    event_type: et,
                    attempts: att,
                    created_at: created,
                });
                if out.len() == limit {
                    let last = &out[limit - 1].id;
                    return Ok(Page { next_cursor: Some(Cursor::render(bucket, last)), data: out });
                }
            }
            if exhausted {
                bucket -= 1;
                after = None;
                scanned += 1;
            }
        }
        let next = (bucket >= last_bucket).then(|| Cursor::render(bucket, after.as_deref().unwrap_or("")));
        Ok(Page { data: out, next_cursor: next })
    }

    pub async fn dlq_entry(&self, id: &str) -> Result<Option<DlqEntry>, CqlError> {
        let q = format!(
            "SELECT dlq_id, tenant_id, delivery_id, trigger_id, correlation_id, endpoint_id, event_type, message_id, \
             payload, content_type, moved_at, attempts, reason, last_error_kind, last_status_code FROM {} WHERE dlq_id = ?",
            self.t("dlq")
        );
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<Vec<u8>>,
            Option<String>,
            Option<CqlTimestamp>,
            Option<i32>,
            Option<String>,
            Option<String>,
            Option<i32>,
        );
        let rows: Vec<Row> = query(&self.store.session, &q, (id,)).await?;
        let Some(r) = rows.into_iter().next() else { return Ok(None) };
        let q2 = format!(
            "SELECT last_error_message, trigger_occurred_at, state, handled_at, handled_by, replay_delivery_id FROM {} \
             WHERE dlq_id = ?",
            self.t("dlq")
        );
        type Row2 = (
            Option<String>,
            Option<CqlTimestamp>,
            Option<String>,
            Option<CqlTimestamp>,
            Option<String>,
            Option<String>,
        );
        let more: Vec<Row2> = query(&self.store.session, &q2, (id,)).await?;
        let m = more.into_iter().next().unwrap_or((None, None, None, None, None, None));
        if r.1.is_none() {
            return Ok(None); // only a handled-state fragment: the entry itself expired
        }
        Ok(Some(DlqEntry {
            id: r.0,
            tenant_id: r.1.unwrap_or_default(),
            delivery_id: r.2,
            trigger_id: r.3,
            correlation_id: r.4,
            endpoint_id: r.5,
            event_type: r.6,
            message_id: r.7,
            payload: r.8.unwrap_or_default(),
            content_type: r.9,
            moved_at: ms(r.10),
            attempts: r.11,
            reason: r.12,
            last_error_kind: r.13,
            last_status_code: r.14,
            last_error_message: m.0,
            trigger_occurred_at: ms(m.1),
            state: m.2,
            handled_at: ms(m.3),
            handled_by: m.4,
            replay_delivery_id: m.5,
        }))
    }

    /// Open DLQ entries of a tenant, newest first, filtered by endpoint and event type.
    #[allow(clippy::too_many_arguments)]
    pub async fn dlq(
        &self,
        tenant: &str,
        endpoint: Option<&str>,
        event_type: Option<&str>,
        since: i64,
        until: i64,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<DlqSummary>, CqlError> {
        let table = self.t("dlq_by_tenant");
        let first_bucket = until / DLQ_BUCKET_MS;
        let last_bucket = since / DLQ_BUCKET_MS;
        let (mut bucket, mut after) = match cursor {
            Some(c) => (c.bucket.min(first_bucket), c.after),
            None => (first_bucket, None),
        };
        let mut out = Vec::new();
        let mut scanned = 0;
        while bucket >= last_bucket && scanned < MAX_BUCKETS_SCANNED {
            let lower = if after.is_some() { " AND dlq_id < ?" } else { "" };
            let fetch = limit * 4 + 1;
            let q = format!(
                "SELECT dlq_id, delivery_id, endpoint_id, event_type, moved_at, last_error_kind, last_status_code \
                 FROM {table} WHERE tenant_id = ? AND bucket = ?{lower} LIMIT {fetch}"
            );
            type Row = (
                String,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<CqlTimestamp>,
                Option<String>,
                Option<i32>,
            );
            let rows: Vec<Row> = match &after {
                Some(a) => query(&self.store.session, &q, (tenant, bucket, a.as_str())).await?,
                None => query(&self.store.session, &q, (tenant, bucket)).await?,
            };
            let exhausted = rows.len() < fetch;
            for r in rows {
                after = Some(r.0.clone());
                let moved = ms(r.4);
                if moved.is_some_and(|m| m < since || m > until)
                    || endpoint.is_some_and(|e| r.2.as_deref() != Some(e))
                    || event_type.is_some_and(|t| r.3.as_deref() != Some(t))
                {
                    continue;
                }
                out.push(DlqSummary {
                    id: r.0,
                    delivery_id: r.1,
                    endpoint_id: r.2,
                    event_type: r.3,
                    moved_at: moved,
                    last_error_kind: r.5,
                    last_status_code: r.6,
                });
                if out.len() == limit {
                    let last = out[limit - 1].id.clone();
                    return Ok(Page {
                        next_cursor: Some(Cursor::render(dlq_bucket(&last, 0).max(bucket), &last)),
                        data: out,
                    });
                }
            }
            if exhausted {
                bucket -= 1;
                after = None;
                scanned += 1;
            }
        }
        let next = (bucket >= last_bucket).then(|| Cursor::render(bucket, after.as_deref().unwrap_or("")));
        Ok(Page { data: out, next_cursor: next })
    }

    /// Health of an endpoint over the last `window_minutes` before `now`.
    pub async fn health(&self, endpoint: &str, window_minutes: i64, now: i64) -> Result<Health, CqlError> {
        let from = now - window_minutes * 60_000;
        let table = self.t("endpoint_health");
        let q = format!(
            "SELECT minute, successes, failures, latency_sum_ms, latency_buckets, deferred, dead_lettered \
             FROM {table} WHERE endpoint_id = ? AND bucket = ? AND minute >= ?"
        );
        let mut minutes = Vec::new();
        let mut b = now / HEALTH_BUCKET_MS;
        while b >= from / HEALTH_BUCKET_MS {
            type Row =
                (CqlTimestamp, Option<i32>, Option<i32>, Option<i64>, Option<Vec<i32>>, Option<i32>, Option<i32>);
            let rows: Vec<Row> = query(&self.store.session, &q, (endpoint, b, CqlTimestamp(from))).await?;
            minutes.extend(rows.into_iter().map(|r| HealthMinute {
                minute: r.0.0,
                successes: r.1.unwrap_or(0),
                failures: r.2.unwrap_or(0),
                latency_sum_ms: r.3.unwrap_or(0),
                latency_buckets: r.4.unwrap_or_default(),
                deferred: r.5.unwrap_or(0),
                dead_lettered: r.6.unwrap_or(0),
            }));
            b -= 1;
        }
        minutes.sort_by_key(|m| m.minute);
        let successes: i64 = minutes.iter().map(|m| i64::from(m.successes)).sum();
        let failures: i64 = minutes.iter().map(|m| i64::from(m.failures)).sum();
        let total = successes + failures;
        let latency: i64 = minutes.iter().map(|m| m.latency_sum_ms).sum();
        let mut hist = vec![0i64; LATENCY_BOUNDS_MS.len() + 1];
        for m in &minutes {
            for (i, c) in m.latency_buckets.iter().enumerate() {
                if let Some(h) = hist.get_mut(i) {
                    *h += i64::from(*c);
                }
            }
        }
        Ok(Health {
            endpoint_id: endpoint.to_string(),
            window_minutes,
            successes,
            failures,
            success_rate: (total > 0).then(|| successes as f64 / total as f64),
            latency_avg_ms: (total > 0).then(|| latency as f64 / total as f64),
            latency_p50_ms: percentile(&hist, 0.50),
            latency_p95_ms: percentile(&hist, 0.95),
            minutes,
        })
    }

    /// Flow-control state of an endpoint (circuit, disabled, deferrals, open DLQ entries).
    pub async fn endpoint_state(&self, endpoint: &str) -> Result<EndpointState, CqlError> {
        let q = format!(
            "SELECT circuit_state, circuit_since, circuit_open_until, circuit_failure_ratio, circuit_window_requests, \
             disabled_at, disabled_reason, last_deferred_at, last_deferred_cause, deferred_until, dlq_open \
             FROM {} WHERE endpoint_id = ?",
            self.t("endpoint_state")
        );
        type Row = (
            Option<String>,
            Option<CqlTimestamp>,
            Option<CqlTimestamp>,
            Option<f64>,
            Option<i32>,
            Option<CqlTimestamp>,
            Option<String>,
            Option<CqlTimestamp>,
            Option<String>,
            Option<CqlTimestamp>,
            Option<i64>,
        );
        let rows: Vec<Row> = query(&self.store.session, &q, (endpoint,)).await?;
        let Some(r) = rows.into_iter().next() else {
            return Ok(EndpointState { endpoint_id: endpoint.to_string(), ..Default::default() });
        };
        Ok(EndpointState {
            endpoint_id: endpoint.to_string(),
            circuit_state: r.0,
            circuit_since: ms(r.1),
            circuit_open_until: ms(r.2),
            circuit_failure_ratio: r.3,
            circuit_window_requests: r.4,
            disabled_at: ms(r.5),
            disabled_reason: r.6,
            last_deferred_at: ms(r.7),
            last_deferred_cause: r.8,
            deferred_until: ms(r.9),
            dlq_open: r.10.unwrap_or(0),
        })
    }

    /// Checkpoints of `topic` with the time each was written (projector progress).
    pub async fn checkpoint_times(&self, topic: &str) -> Result<Vec<(i32, i64, Option<i64>)>, CqlError> {
        let q = format!("SELECT partition, next_offset, updated_at FROM {} WHERE topic = ?", self.t("checkpoints"));
        let rows: Vec<(i32, Option<i64>, Option<CqlTimestamp>)> = query(&self.store.session, &q, (topic,)).await?;
        Ok(rows.into_iter().map(|(p, o, t)| (p, o.unwrap_or(0), ms(t))).collect())
    }

    /// Projection positions (next offsets) of the events topic, by partition.
    pub async fn checkpoints(&self, topic: &str) -> Result<Vec<(i32, i64)>, CqlError> {
        let q = format!("SELECT partition, next_offset FROM {} WHERE topic = ?", self.t("checkpoints"));
        let rows: Vec<(i32, Option<i64>)> = query(&self.store.session, &q, (topic,)).await?;
        Ok(rows.into_iter().map(|(p, o)| (p, o.unwrap_or(0))).collect())
    }
}

/// The upper bound of the bucket holding the q-th quantile (an upper estimate).
pub fn percentile(hist: &[i64], q: f64) -> Option<i32> {
    let total: i64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (i, c) in hist.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(i32::MAX));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_buckets() {
        let mut h = vec![0i64; LATENCY_BOUNDS_MS.len() + 1];
        h[0] = 50; // ≤ 5 ms
        h[4] = 45; // ≤ 100 ms
        h[7] = 5; // ≤ 1 s
        assert_eq!(percentile(&h, 0.5), Some(5));
        assert_eq!(percentile(&h, 0.95), Some(100));
        assert_eq!(percentile(&h, 0.99), Some(1000));
        assert_eq!(percentile(&[0; 13], 0.5), None);
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor::parse(&Cursor::render(42, "abc")).unwrap();
        assert_eq!((c.bucket, c.after.as_deref()), (42, Some("abc")));
        assert!(Cursor::parse("garbage").is_none());
    }
}
