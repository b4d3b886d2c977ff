//! Events to CQL writes.
//!
//! Idempotence and order: every row write carries `USING TIMESTAMP` = the event's time in µs
//! plus a rank per event kind (a success outranks a failure of the same millisecond), so
//! applying an event twice, or applying events of different topics out of order, leaves the
//! same cells. Health aggregates are not written here: they are absolute values checkpointed
//! with the consumer position (see `role`).

use hookline_domain::ids;
use hookline_schemas::AnyEvent;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use crate::schema::{DELIVERY_BUCKET_MS, DLQ_BUCKET_MS};
use crate::store::CqlError;

/// Delivery states shown by the API.
pub mod status {
    pub const PENDING: &str = "pending";
    pub const RETRYING: &str = "retrying";
    pub const DELIVERED: &str = "delivered";
    pub const DEAD_LETTERED: &str = "dead_lettered";
    pub const REPLAYED: &str = "replayed";
    pub const DISCARDED: &str = "discarded";
}

/// DLQ entry states.
pub mod dlq_state {
    pub const OPEN: &str = "open";
    pub const REPLAYED: &str = "replayed";
    pub const DISCARDED: &str = "discarded";
}

/// Circuit breaker states shown by the API (`endpoint_state.circuit_state`; absent = never opened).
pub mod circuit {
    pub const OPEN: &str = "open";
    pub const CLOSED: &str = "closed";
}

/// Prepared statements of one table set.
pub struct Statements {
    delivery_requested: PreparedStatement,
    by_endpoint_requested: PreparedStatement,
    by_tenant_requested: PreparedStatement,
    delivery_status: PreparedStatement,
    by_endpoint_status: PreparedStatement,
    by_tenant_status: PreparedStatement,
    attempt: PreparedStatement,
    dlq: PreparedStatement,
    dlq_facts: PreparedStatement,
    dlq_by_tenant: PreparedStatement,
    dlq_handled: PreparedStatement,
    dlq_unlist: PreparedStatement,
    endpoint_upsert: PreparedStatement,
    endpoint_delete: PreparedStatement,
    circuit: PreparedStatement,
    endpoint_disabled: PreparedStatement,
    deferred: PreparedStatement,
    pub dlq_open: PreparedStatement,
    pub read_dlq_open: PreparedStatement,
    pub health: PreparedStatement,
    pub checkpoint: PreparedStatement,
    pub read_health: PreparedStatement,
    pub read_checkpoints: PreparedStatement,
}

impl Statements {
    pub async fn prepare(session: &Session, ks: &str, s: &str) -> Result<Self, CqlError> {
        let p = |q: String| async move {
            session.prepare(q.clone()).await.map_err(|e| CqlError::Prepare { statement: q, source: Box::new(e) })
        };
        Ok(Self {
            delivery_requested: p(format!(
                "UPDATE {ks}.deliveries{s} USING TIMESTAMP ? AND TTL ? SET tenant_id = ?, endpoint_id = ?, \
                 trigger_id = ?, message_id = ?, event_type = ?, reason = ?, created_at = ?, status = ?, \
                 attempts = ?, updated_at = ? WHERE delivery_id = ?"
            ))
            .await?,
            by_endpoint_requested: p(format!(
                "UPDATE {ks}.deliveries_by_endpoint{s} USING TIMESTAMP ? AND TTL ? SET status = ?, event_type = ?, \
                 attempts = ?, created_at = ? WHERE tenant_id = ? AND endpoint_id = ? AND bucket = ? AND delivery_id = ?"
            ))
            .await?,
            by_tenant_requested: p(format!(
                "UPDATE {ks}.deliveries_by_tenant{s} USING TIMESTAMP ? AND TTL ? SET status = ?, event_type = ?, \
                 attempts = ?, created_at = ?, endpoint_id = ? WHERE tenant_id = ? AND bucket = ? AND delivery_id = ?"
            ))
            .await?,
            delivery_status: p(format!(
                "UPDATE {ks}.deliveries{s} USING TIMESTAMP ? AND TTL ? SET status = ?, attempts = ?, \
                 last_status_code = ?, last_error = ?, next_attempt_at = ?, updated_at = ? WHERE delivery_id = ?"
            ))
            .await?,
            by_endpoint_status: p(format!(
                "UPDATE {ks}.deliveries_by_endpoint{s} USING TIMESTAMP ? AND TTL ? SET status = ?, attempts = ? \
                 WHERE tenant_id = ? AND endpoint_id = ? AND bucket = ? AND delivery_id = ?"
            ))
            .await?,
            by_tenant_status: p(format!(
                "UPDATE {ks}.deliveries_by_tenant{s} USING TIMESTAMP ? AND TTL ? SET status = ?, attempts = ? \
                 WHERE tenant_id = ? AND bucket = ? AND delivery_id = ?"
            ))
            .await?,
            attempt: p(format!(
                "INSERT INTO {ks}.attempts{s} (delivery_id, attempt, tenant_id, event_id, occurred_at, outcome, \
                 status_code, duration_ms, error_kind, error_message, response_excerpt, next_attempt_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?"
            ))
            .await?,
            // Split in two: the driver serialises rows of at most 16 values.
            dlq: p(format!(
                "UPDATE {ks}.dlq{s} USING TIMESTAMP ? AND TTL ? SET tenant_id = ?, delivery_id = ?, trigger_id = ?, \
                 correlation_id = ?, endpoint_id = ?, event_type = ?, message_id = ?, payload = ?, content_type = ? \
                 WHERE dlq_id = ?"
            ))
            .await?,
            dlq_facts: p(format!(
                "UPDATE {ks}.dlq{s} USING TIMESTAMP ? AND TTL ? SET moved_at = ?, attempts = ?, reason = ?, \
                 last_error_kind = ?, last_status_code = ?, last_error_message = ?, trigger_occurred_at = ?, \
                 state = ? WHERE dlq_id = ?"
            ))
            .await?,
            dlq_by_tenant: p(format!(
                "INSERT INTO {ks}.dlq_by_tenant{s} (tenant_id, bucket, dlq_id, delivery_id, endpoint_id, event_type, \
                 moved_at, last_error_kind, last_status_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 USING TIMESTAMP ? AND TTL ?"
            ))
            .await?,
            dlq_handled: p(format!(
                "UPDATE {ks}.dlq{s} USING TIMESTAMP ? AND TTL ? SET state = ?, handled_at = ?, handled_by = ?, \
                 replay_delivery_id = ? WHERE dlq_id = ?"
            ))
            .await?,
            dlq_unlist: p(format!(
                "DELETE FROM {ks}.dlq_by_tenant{s} USING TIMESTAMP ? WHERE tenant_id = ? AND bucket = ? AND dlq_id = ?"
            ))
            .await?,
            endpoint_upsert: p(format!(
                "UPDATE {ks}.endpoints{s} USING TIMESTAMP ? SET url = ?, description = ?, event_types = ?, \
                 enabled = ?, disabled_reason = ?, version = ?, updated_at = ? WHERE tenant_id = ? AND endpoint_id = ?"
            ))
            .await?,
            endpoint_delete: p(format!(
                "DELETE FROM {ks}.endpoints{s} USING TIMESTAMP ? WHERE tenant_id = ? AND endpoint_id = ?"
            ))
            .await?,
            circuit: p(format!(
                "UPDATE {ks}.endpoint_state{s} USING TIMESTAMP ? SET tenant_id = ?, circuit_state = ?, \
                 circuit_since = ?, circuit_open_until = ?, circuit_failure_ratio = ?, circuit_window_requests = ? \
                 WHERE endpoint_id = ?"
            ))
            .await?,
            endpoint_disabled: p(format!(
                "UPDATE {ks}.endpoint_state{s} USING TIMESTAMP ? SET tenant_id = ?, disabled_at = ?, \
                 disabled_reason = ? WHERE endpoint_id = ?"
            ))
            .await?,
            deferred: p(format!(
                "UPDATE {ks}.endpoint_state{s} USING TIMESTAMP ? SET tenant_id = ?, last_deferred_at = ?, \
                 last_deferred_cause = ?, deferred_until = ? WHERE endpoint_id = ?"
            ))
            .await?,
            dlq_open: p(format!("UPDATE {ks}.endpoint_state{s} SET dlq_open = ? WHERE endpoint_id = ?")).await?,
            read_dlq_open: p(format!("SELECT dlq_open FROM {ks}.endpoint_state{s} WHERE endpoint_id = ?")).await?,
            health: p(format!(
                "UPDATE {ks}.endpoint_health{s} USING TTL ? SET successes = ?, failures = ?, latency_sum_ms = ?, \
                 latency_buckets = ?, deferred = ?, dead_lettered = ? WHERE endpoint_id = ? AND bucket = ? AND minute = ?"
            ))
            .await?,
            checkpoint: p(format!(
                "UPDATE {ks}.checkpoints{s} SET next_offset = ?, updated_at = ? WHERE topic = ? AND partition = ?"
            ))
            .await?,
            read_health: p(format!(
                "SELECT successes, failures, latency_sum_ms, latency_buckets, deferred, dead_lettered \
                 FROM {ks}.endpoint_health{s} \
                 WHERE endpoint_id = ? AND bucket = ? AND minute = ?"
            ))
            .await?,
            read_checkpoints: p(format!("SELECT partition, next_offset FROM {ks}.checkpoints{s} WHERE topic = ?"))
                .await?,
        })
    }
}

/// Write time of an event: µs, ranked within its millisecond.
fn ts(occurred_ms: i64, rank: i64) -> i64 {
    occurred_ms * 1000 + rank
}

fn delivery_bucket(delivery_id: &str, fallback_ms: i64) -> i64 {
    ids::id_time_ms(delivery_id).unwrap_or(fallback_ms) / DELIVERY_BUCKET_MS
}

pub fn dlq_bucket(dlq_id: &str, fallback_ms: i64) -> i64 {
    ids::id_time_ms(dlq_id).unwrap_or(fallback_ms) / DLQ_BUCKET_MS
}

/// Applies one event's row writes (not health aggregates). Safe to repeat.
pub async fn apply(session: &Session, st: &Statements, event: &AnyEvent, ttl: i32) -> Result<(), CqlError> {
    let e = event.envelope();
    let tenant = e.tenant_id.as_str();
    let endpoint = e.endpoint_id.as_deref().unwrap_or_default();
    let delivery = e.delivery_id.as_deref().unwrap_or_default();
    let at = e.occurred_at;
    let attempt = e.attempt.unwrap_or(0);
    let bucket = delivery_bucket(delivery, at);
    let now = CqlTimestamp(at);
    macro_rules! run {
        ($stmt:expr, $values:expr) => {
            session
                .execute_unpaged($stmt, $values)
                .await
                .map_err(|err| CqlError::Execute { statement: stringify!($stmt).into(), source: Box::new(err) })?
        };
    }
    match event {
        AnyEvent::DeliveryRequested(d) if d.reason != hookline_schemas::reason::RETRY => {
            let t = ts(at, 0);
            let created = CqlTimestamp(ids::id_time_ms(delivery).unwrap_or(at));
            run!(
                &st.delivery_requested,
                (
                    t,
                    ttl,
                    tenant,
                    endpoint,
                    e.trigger_id.as_deref(),
                    &d.message_id,
                    &d.event_type,
                    &d.reason,
                    created,
                    status::PENDING,
                    0i32,
                    now,
                    delivery
                )
            );
            run!(
                &st.by_endpoint_requested,
                (t, ttl, status::PENDING, &d.event_type, 0i32, created, tenant, endpoint, bucket, delivery)
            );
            run!(
                &st.by_tenant_requested,
                (t, ttl, status::PENDING, &d.event_type, 0i32, created, endpoint, tenant, bucket, delivery)
            );
        }
        AnyEvent::AttemptSucceeded(s) => {
            let t = ts(at, 3);
            run!(
                &st.delivery_status,
                (
                    t,
                    ttl,
                    status::DELIVERED,
                    attempt,
                    Some(s.status_code),
                    None::<&str>,
                    None::<CqlTimestamp>,
                    now,
                    delivery
                )
            );
            run!(&st.by_endpoint_status, (t, ttl, status::DELIVERED, attempt, tenant, endpoint, bucket, delivery));
            run!(&st.by_tenant_status, (t, ttl, status::DELIVERED, attempt, tenant, bucket, delivery));
            run!(
                &st.attempt,
                (
                    delivery,
                    attempt,
                    tenant,
                    &e.event_id,
                    now,
                    "succeeded",
                    Some(s.status_code),
                    s.duration_ms,
                    None::<&str>,
                    None::<&str>,
                    s.response_excerpt.as_deref(),
                    None::<CqlTimestamp>,
                    t,
                    ttl
                )
            );
        }
        AnyEvent::AttemptFailed(f) => {
            let t = ts(at, 1);
            let st_name = if f.next_attempt_at.is_some() { status::RETRYING } else { status::DEAD_LETTERED };
            let next = f.next_attempt_at.map(CqlTimestamp);
            let err = format!("{}: {}", f.error_kind, f.error_message);
            run!(
                &st.delivery_status,
                (t, ttl, st_name, attempt, f.status_code, Some(err.as_str()), next, now, delivery)
            );
            run!(&st.by_endpoint_status, (t, ttl, st_name, attempt, tenant, endpoint, bucket, delivery));
            run!(&st.by_tenant_status, (t, ttl, st_name, attempt, tenant, bucket, delivery));
            run!(
                &st.attempt,
                (
                    delivery,
                    attempt,
                    tenant,
                    &e.event_id,
                    now,
                    "failed",
                    f.status_code,
                    f.duration_ms,
                    Some(f.error_kind.as_str()),
                    Some(f.error_message.as_str()),
                    f.response_excerpt.as_deref(),
                    next,
                    t,
                    ttl
                )
            );
        }
        AnyEvent::MovedToDLQ(m) => {
            let t = ts(at, 4);
            let dlq_id = e.event_id.as_str();
            run!(
                &st.dlq,
                (
                    t,
                    ttl,
                    tenant,
                    delivery,
                    e.trigger_id.as_deref(),
                    e.correlation_id.as_deref(),
                    endpoint,
                    &m.event_type,
                    &m.message_id,
                    &m.payload,
                    &m.content_type,
                    dlq_id
                )
            );
            run!(
                &st.dlq_facts,
                (
                    t,
                    ttl,
                    now,
                    m.attempts,
                    &m.reason,
                    &m.last_error_kind,
                    m.last_status_code,
                    &m.last_error_message,
                    CqlTimestamp(m.trigger_occurred_at),
                    dlq_state::OPEN,
                    dlq_id
                )
            );
            run!(
                &st.dlq_by_tenant,
                (
                    tenant,
                    dlq_bucket(dlq_id, at),
                    dlq_id,
                    delivery,
                    endpoint,
                    &m.event_type,
                    now,
                    &m.last_error_kind,
                    m.last_status_code,
                    t,
                    ttl
                )
            );
            run!(
                &st.delivery_status,
                (
                    t,
                    ttl,
                    status::DEAD_LETTERED,
                    m.attempts,
                    m.last_status_code,
                    Some(m.last_error_message.as_str()),
                    None::<CqlTimestamp>,
                    now,
                    delivery
                )
            );
            run!(
                &st.by_endpoint_status,
                (t, ttl, status::DEAD_LETTERED, m.attempts, tenant, endpoint, bucket, delivery)
            );
            run!(&st.by_tenant_status, (t, ttl, status::DEAD_LETTERED, m.attempts, tenant, bucket, delivery));
        }
        AnyEvent::DLQReplayed(_) | AnyEvent::DLQDiscarded(_) => {
            // The entry id is the MovedToDLQ event id, which the command names as its cause.
            let Some(dlq_id) = e.causation_id.as_deref() else { return Ok(()) };
            let t = ts(at, 5);
            let (state, actor, replay_id) = match event {
                AnyEvent::DLQReplayed(r) => (dlq_state::REPLAYED, r.actor.as_str(), Some(r.new_delivery_id.as_str())),
                AnyEvent::DLQDiscarded(d) => (dlq_state::DISCARDED, d.actor.as_str(), None),
                _ => unreachable!(),
            };
            run!(&st.dlq_handled, (t, ttl, state, now, actor, replay_id, dlq_id));
            run!(&st.dlq_unlist, (t, tenant, dlq_bucket(dlq_id, at), dlq_id));
            let shown = if state == dlq_state::REPLAYED { status::REPLAYED } else { status::DISCARDED };
            run!(&st.by_endpoint_status, (t, ttl, shown, attempt, tenant, endpoint, bucket, delivery));
            run!(&st.by_tenant_status, (t, ttl, shown, attempt, tenant, bucket, delivery));
        }
        AnyEvent::EndpointUpserted(u) => {
            let t = ts(at, 0);
            run!(
                &st.endpoint_upsert,
                (
                    t,
                    &u.url,
                    &u.description,
                    &u.event_types,
                    u.enabled,
                    u.disabled_reason.as_deref(),
                    u.version,
                    now,
                    tenant,
                    endpoint
                )
            );
        }
        AnyEvent::EndpointDeleted(_) => {
            run!(&st.endpoint_delete, (ts(at, 1), tenant, endpoint));
        }
        AnyEvent::CircuitOpened(o) if !endpoint.is_empty() => {
            let values = (Some(CqlTimestamp(o.open_until)), Some(o.failure_ratio), Some(o.window_requests));
            run!(&st.circuit, (ts(at, 6), tenant, circuit::OPEN, now, values.0, values.1, values.2, endpoint));
        }
        AnyEvent::CircuitClosed(_) if !endpoint.is_empty() => {
            // Outranks an opening of the same millisecond: a close follows the open it ends.
            run!(
                &st.circuit,
                (ts(at, 7), tenant, circuit::CLOSED, now, None::<CqlTimestamp>, None::<f64>, None::<i32>, endpoint)
            );
        }
        AnyEvent::EndpointDisabled(d) if !endpoint.is_empty() => {
            run!(&st.endpoint_disabled, (ts(at, 2), tenant, now, &d.reason, endpoint));
        }
        AnyEvent::DeliveryDeferred(d) if !endpoint.is_empty() => {
            run!(&st.deferred, (ts(at, 0), tenant, now, &d.cause, CqlTimestamp(d.until), endpoint));
        }
        _ => {}
    }
    Ok(())
}
