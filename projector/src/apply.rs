//! Events to CQL writes.
//!
//! Idempotence and order: every row write carries `USING TIMESTAMP` = the event's time in µs
//! plus a rank per event kind (a success outranks a failure of the same millisecond), so
//! applying an event twice, or applying events of different topics out of order, leaves the
//! same cells. Health aggregates are not written here: they are absolute values checkpointed
//! with the consumer position (see `role`).

use std::collections::HashMap;
use std::sync::Arc;

use hookline_domain::ids;
use hookline_schemas::AnyEvent;
use scylla::client::session::Session;
use scylla::cluster::ClusterState;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
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
    delivery_requested_settled: PreparedStatement,
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
            // A delivery requested and given a later status in the same batch: one write.
            delivery_requested_settled: p(format!(
                "UPDATE {ks}.deliveries{s} USING TIMESTAMP ? AND TTL ? SET tenant_id = ?, endpoint_id = ?, \
                 trigger_id = ?, message_id = ?, event_type = ?, reason = ?, created_at = ?, status = ?, \
                 attempts = ?, last_status_code = ?, last_error = ?, next_attempt_at = ?, updated_at = ? \
                 WHERE delivery_id = ?"
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

/// One row write: its statement, values and an upper estimate of its size.
pub struct Write<'a> {
    name: &'static str,
    statement: &'a PreparedStatement,
    values: Box<dyn SerializeRow + Send + Sync + 'a>,
    bytes: usize,
}

/// Size estimate of a row's fixed part: timestamps, numbers and the values' length prefixes.
/// The event's ids and short text ([`text_bytes`]) are added to every row of it, and large
/// text (payloads, response excerpts, error messages, URLs) to the rows that hold it: an upper
/// bound whatever the lengths (ids of triggers written straight to Kafka are not bounded).
const ROW_BYTES: usize = 256;
/// Most statements in one batch request.
const MAX_BATCH_STATEMENTS: usize = 64;
/// Largest estimated batch: under Cassandra's default `batch_size_fail_threshold` (50 KiB,
/// which applies to batches spanning partitions; ScyllaDB's is 1 MiB). A larger single write
/// goes alone, as a plain statement.
const MAX_BATCH_BYTES: usize = 32 * 1024;

/// The node (and shard) a write should go to: the first replica of its partition's token.
/// Writes with one replica share batches: one request applies many partitions' rows on the
/// node that owns them, where one request per partition cost the store most of its CPU.
#[derive(Clone)]
pub struct Placement {
    state: Option<Arc<ClusterState>>,
}

impl Placement {
    /// The cluster as the session knows it now. With one node every write goes to it, and
    /// no token is computed.
    pub fn of(session: &Session) -> Self {
        let state = session.get_cluster_state();
        Self { state: (state.get_nodes_info().len() > 1).then_some(state) }
    }

    /// Computes every write's replica even on one node (to check the computation there).
    pub fn by_token(session: &Session) -> Self {
        Self { state: Some(session.get_cluster_state()) }
    }

    /// First replica (host id, shard) of the write's partition (`None`: one node, or not known).
    pub fn replica(&self, w: &Write<'_>) -> Option<(uuid::Uuid, u32)> {
        let state = self.state.as_ref()?;
        let (ks, table) = (w.statement.get_keyspace_name()?, w.statement.get_table_name()?);
        let token = w.statement.calculate_token(&w.values).ok().flatten()?;
        state.get_token_endpoints(ks, table, token).first().map(|(node, shard)| (node.host_id, *shard))
    }
}

/// Row writes grouped into requests: writes whose partitions have the same first replica share
/// an unlogged batch, up to [`MAX_BATCH_STATEMENTS`] and [`MAX_BATCH_BYTES`]; in the order
/// the writes came.
pub fn group<'a>(writes: Vec<Write<'a>>, placement: &Placement) -> Vec<Vec<Write<'a>>> {
    chunk_by(writes, |w| placement.replica(w), |w| w.bytes)
}

/// Items grouped by `key` into chunks of at most [`MAX_BATCH_STATEMENTS`] items and
/// [`MAX_BATCH_BYTES`] (an item larger than that is a chunk of its own); a full chunk starts a
/// new one for its key. Chunks appear in the order their first item came.
fn chunk_by<T, K: std::hash::Hash + Eq>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    bytes: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut open: HashMap<K, (usize, usize)> = HashMap::new();
    let mut chunks: Vec<Vec<T>> = Vec::new();
    for item in items {
        let (k, b) = (key(&item), bytes(&item));
        match open.get_mut(&k) {
            Some((i, used)) if chunks[*i].len() < MAX_BATCH_STATEMENTS && *used + b <= MAX_BATCH_BYTES => {
                *used += b;
                chunks[*i].push(item);
            }
            _ => {
                open.insert(k, (chunks.len(), b));
                chunks.push(vec![item]);
            }
        }
    }
    chunks
}

/// Sends one group of writes (see [`group`]): a plain execution for one write, an unlogged
/// batch otherwise. Every statement carries its own write timestamp, so the batch changes
/// nothing about which cell wins.
pub async fn execute(session: &Session, group: Vec<Write<'_>>) -> Result<(), CqlError> {
    if group.len() == 1 {
        let w = &group[0];
        session
            .execute_unpaged(w.statement, &w.values)
            .await
            .map_err(|err| CqlError::Execute { statement: w.name.into(), source: Box::new(err) })?;
        return Ok(());
    }
    let mut batch = Batch::new(BatchType::Unlogged);
    let mut values = Vec::with_capacity(group.len());
    for w in group {
        batch.append_statement(w.statement.clone());
        values.push(w.values);
    }
    session
        .batch(&batch, values)
        .await
        .map_err(|err| CqlError::Execute { statement: "row batch".into(), source: Box::new(err) })?;
    Ok(())
}

/// Bytes of the event's ids and short text, any of which a row of the event may hold.
fn text_bytes(event: &AnyEvent) -> usize {
    fn opt(s: &Option<String>) -> usize {
        s.as_ref().map_or(0, String::len)
    }
    let e = event.envelope();
    let ids = e.event_id.len()
        + e.tenant_id.len()
        + opt(&e.trigger_id)
        + opt(&e.delivery_id)
        + opt(&e.endpoint_id)
        + opt(&e.causation_id)
        + opt(&e.correlation_id);
    ids + match event {
        AnyEvent::DeliveryRequested(d) => {
            d.event_type.len() + d.content_type.len() + d.message_id.len() + d.reason.len()
        }
        AnyEvent::AttemptSucceeded(a) => a.message_id.len(),
        AnyEvent::AttemptFailed(f) => f.message_id.len() + f.error_kind.len(),
        AnyEvent::DeliveryDeferred(d) => d.cause.len(),
        AnyEvent::MovedToDLQ(m) => {
            m.event_type.len() + m.content_type.len() + m.message_id.len() + m.reason.len() + m.last_error_kind.len()
        }
        AnyEvent::DLQReplayed(r) => r.new_delivery_id.len() + r.actor.len(),
        AnyEvent::DLQDiscarded(d) => d.actor.len(),
        AnyEvent::EndpointUpserted(u) => opt(&u.disabled_reason),
        AnyEvent::EndpointDisabled(d) => d.reason.len(),
        _ => 0,
    }
}

/// A delivery's status as one event sets it: the columns that every status write of the
/// deliveries table (and, status and attempts, of both listings) sets.
struct Status {
    t: i64,
    status: &'static str,
    attempts: i32,
    code: Option<i32>,
    error: Option<String>,
    next: Option<CqlTimestamp>,
    at: CqlTimestamp,
}

/// Write time of the status an event gives its delivery, if it gives one (no allocation: the
/// batch view asks this of every event).
fn status_time(event: &AnyEvent) -> Option<i64> {
    let rank = match event {
        AnyEvent::AttemptSucceeded(_) => 3,
        AnyEvent::AttemptFailed(_) => 1,
        AnyEvent::MovedToDLQ(_) => 4,
        _ => return None,
    };
    Some(ts(event.envelope().occurred_at, rank))
}

/// The status an event gives its delivery, if it gives one.
fn status_of(event: &AnyEvent) -> Option<Status> {
    let t = status_time(event)?;
    let e = event.envelope();
    let (at, attempt) = (e.occurred_at, e.attempt.unwrap_or(0));
    let status =
        |status, attempts, code, error, next| Status { t, status, attempts, code, error, next, at: CqlTimestamp(at) };
    Some(match event {
        AnyEvent::AttemptSucceeded(s) => status(status::DELIVERED, attempt, Some(s.status_code), None, None),
        AnyEvent::AttemptFailed(f) => status(
            if f.next_attempt_at.is_some() { status::RETRYING } else { status::DEAD_LETTERED },
            attempt,
            f.status_code,
            Some(format!("{}: {}", f.error_kind, f.error_message)),
            f.next_attempt_at.map(CqlTimestamp),
        ),
        AnyEvent::MovedToDLQ(m) => {
            status(status::DEAD_LETTERED, m.attempts, m.last_status_code, Some(m.last_error_message.clone()), None)
        }
        _ => return None,
    })
}

/// A delivery's first request (a retry's request changes no row).
fn first_request(event: &AnyEvent) -> Option<&hookline_schemas::DeliveryRequested> {
    match event {
        AnyEvent::DeliveryRequested(d) if d.reason != hookline_schemas::reason::RETRY => Some(d),
        _ => None,
    }
}

/// What a batch of events says about each of its deliveries, so that the batch writes a
/// delivery's status rows once: status rows that a later event of the same batch overwrites
/// anyway are left out, and a delivery requested and settled in the same batch (the common
/// case: the request and its first attempt's outcome are a few ms apart) gets its first rows
/// already holding the later status — four row writes where there were seven.
///
/// The merged rows carry the later event's write time, so the cells end as they would after
/// the separate writes; a request re-read later (older write time) changes nothing either way.
#[derive(Default)]
pub struct BatchView<'a> {
    latest: HashMap<&'a str, Latest<'a>>,
}

struct Latest<'a> {
    /// Write time of the latest status in the batch.
    t: i64,
    event: &'a AnyEvent,
    /// A first request for the delivery, older than that status, is in the batch too.
    requested: bool,
}

impl<'a> BatchView<'a> {
    pub fn of(events: impl IntoIterator<Item = &'a AnyEvent>) -> Self {
        let mut latest: HashMap<&'a str, Latest<'a>> = HashMap::new();
        let mut requests = Vec::new();
        for event in events {
            let e = event.envelope();
            let Some(delivery) = e.delivery_id.as_deref() else { continue };
            if first_request(event).is_some() {
                requests.push((delivery, ts(e.occurred_at, 0)));
            } else if let Some(t) = status_time(event) {
                match latest.get(delivery) {
                    Some(l) if l.t >= t => {}
                    _ => {
                        latest.insert(delivery, Latest { t, event, requested: false });
                    }
                }
            }
        }
        for (delivery, t) in requests {
            if let Some(l) = latest.get_mut(delivery).filter(|l| t < l.t) {
                l.requested = true;
            }
        }
        Self { latest }
    }

    /// The later status a first request written at `t` takes on, if the batch holds one.
    fn settled(&self, delivery: &str, t: i64) -> Option<Status> {
        self.latest.get(delivery).filter(|l| t < l.t).and_then(|l| status_of(l.event))
    }

    /// Whether the status rows an event writes at `t` are left out: a later status of the
    /// same batch overwrites them, or they went with the delivery's first rows.
    fn skips_status(&self, delivery: &str, t: i64) -> bool {
        self.latest.get(delivery).is_some_and(|l| t < l.t || l.requested)
    }
}

/// Applies one event's row writes at once (tests and one-off use; the role groups the writes of
/// many events with [`writes`], [`group`] and [`execute`]). Safe to repeat.
pub async fn apply(session: &Session, st: &Statements, event: &AnyEvent, ttl: i32) -> Result<(), CqlError> {
    let mut out = Vec::new();
    writes(st, event, ttl, &BatchView::default(), &mut out);
    for g in group(out, &Placement::of(session)) {
        execute(session, g).await?;
    }
    Ok(())
}

/// The row writes of one event (not health aggregates), appended to `out`; `batch` is the view
/// of the batch the event is part of (see [`BatchView`]). Safe to repeat.
pub fn writes<'a>(st: &'a Statements, event: &'a AnyEvent, ttl: i32, batch: &BatchView<'a>, out: &mut Vec<Write<'a>>) {
    let e = event.envelope();
    let tenant = e.tenant_id.as_str();
    let endpoint = e.endpoint_id.as_deref().unwrap_or_default();
    let delivery = e.delivery_id.as_deref().unwrap_or_default();
    let at = e.occurred_at;
    let attempt = e.attempt.unwrap_or(0);
    let bucket = delivery_bucket(delivery, at);
    let now = CqlTimestamp(at);
    let text = text_bytes(event);
    macro_rules! run {
        ($stmt:expr, $values:expr) => {
            run!($stmt, $values, 0)
        };
        ($stmt:expr, $values:expr, $large:expr) => {
            out.push(Write {
                name: stringify!($stmt),
                statement: $stmt,
                values: Box::new($values),
                bytes: ROW_BYTES + text + $large,
            })
        };
    }
    // The delivery's row in the per-endpoint and the per-tenant listings: status and attempts.
    macro_rules! listings {
        ($t:expr, $status:expr, $attempts:expr) => {
            run!(&st.by_endpoint_status, ($t, ttl, $status, $attempts, tenant, endpoint, bucket, delivery));
            run!(&st.by_tenant_status, ($t, ttl, $status, $attempts, tenant, bucket, delivery));
        };
    }
    // The delivery's status in its row and both listings, unless the batch writes it otherwise.
    let status_rows = |out: &mut Vec<Write<'a>>| {
        // Checked before building the row (a failure's message is formatted for it).
        if status_time(event).is_none_or(|t| batch.skips_status(delivery, t)) {
            return;
        }
        let Some(s) = status_of(event) else { return };
        let large = s.error.as_ref().map_or(0, String::len);
        out.push(Write {
            name: "delivery_status",
            statement: &st.delivery_status,
            values: Box::new((s.t, ttl, s.status, s.attempts, s.code, s.error, s.next, s.at, delivery)),
            bytes: ROW_BYTES + text + large,
        });
        let rows: [(&'static str, &'a PreparedStatement, Box<dyn SerializeRow + Send + Sync + 'a>); 2] = [
            (
                "by_endpoint_status",
                &st.by_endpoint_status,
                Box::new((s.t, ttl, s.status, s.attempts, tenant, endpoint, bucket, delivery)),
            ),
            (
                "by_tenant_status",
                &st.by_tenant_status,
                Box::new((s.t, ttl, s.status, s.attempts, tenant, bucket, delivery)),
            ),
        ];
        for (name, statement, values) in rows {
            out.push(Write { name, statement, values, bytes: ROW_BYTES + text });
        }
    };
    match event {
        AnyEvent::DeliveryRequested(d) if d.reason != hookline_schemas::reason::RETRY => {
            let created = CqlTimestamp(ids::id_time_ms(delivery).unwrap_or(at));
            // A later status of the same batch goes with the first rows (see `BatchView`).
            let settled = batch.settled(delivery, ts(at, 0));
            let (t, shown, attempts) =
                settled.as_ref().map_or((ts(at, 0), status::PENDING, 0), |s| (s.t, s.status, s.attempts));
            match settled {
                Some(s) => {
                    let large = s.error.as_ref().map_or(0, String::len);
                    run!(
                        &st.delivery_requested_settled,
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
                            shown,
                            attempts,
                            s.code,
                            s.error,
                            s.next,
                            s.at,
                            delivery
                        ),
                        large
                    )
                }
                None => run!(
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
                        shown,
                        attempts,
                        now,
                        delivery
                    )
                ),
            }
            run!(
                &st.by_endpoint_requested,
                (t, ttl, shown, &d.event_type, attempts, created, tenant, endpoint, bucket, delivery)
            );
            run!(
                &st.by_tenant_requested,
                (t, ttl, shown, &d.event_type, attempts, created, endpoint, tenant, bucket, delivery)
            );
        }
        AnyEvent::AttemptSucceeded(s) => {
            let t = ts(at, 3);
            status_rows(out);
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
                ),
                s.response_excerpt.as_ref().map_or(0, String::len)
            );
        }
        AnyEvent::AttemptFailed(f) => {
            let t = ts(at, 1);
            let next = f.next_attempt_at.map(CqlTimestamp);
            status_rows(out);
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
                ),
                f.error_message.len() + f.response_excerpt.as_ref().map_or(0, String::len)
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
                ),
                m.payload.len()
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
                ),
                m.last_error_message.len()
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
            status_rows(out);
        }
        AnyEvent::DLQReplayed(_) | AnyEvent::DLQDiscarded(_) => {
            // The entry id is the MovedToDLQ event id, which the command names as its cause.
            let Some(dlq_id) = e.causation_id.as_deref() else { return };
            let t = ts(at, 5);
            let (state, actor, replay_id) = match event {
                AnyEvent::DLQReplayed(r) => (dlq_state::REPLAYED, r.actor.as_str(), Some(r.new_delivery_id.as_str())),
                AnyEvent::DLQDiscarded(d) => (dlq_state::DISCARDED, d.actor.as_str(), None),
                _ => unreachable!(),
            };
            run!(&st.dlq_handled, (t, ttl, state, now, actor, replay_id, dlq_id));
            run!(&st.dlq_unlist, (t, tenant, dlq_bucket(dlq_id, at), dlq_id));
            let shown = if state == dlq_state::REPLAYED { status::REPLAYED } else { status::DISCARDED };
            listings!(t, shown, attempt);
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
                ),
                u.url.len() + u.description.len() + u.event_types.iter().map(String::len).sum::<usize>()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_chunk_per_replica_in_arrival_order_bounded_by_count_and_bytes() {
        let small = 100;
        let items = vec![(1, 'a', small), (2, 'b', small), (1, 'c', small), (3, 'd', small), (2, 'e', small)];
        let chunks = chunk_by(items, |&(k, _, _)| k, |&(_, _, b)| b);
        let shown: Vec<String> = chunks.iter().map(|g| g.iter().map(|&(_, c, _)| c).collect()).collect();
        assert_eq!(shown, ["ac", "be", "d"]);
        assert!(chunk_by(Vec::<(u8, usize)>::new(), |&(k, _)| k, |&(_, b)| b).is_empty());

        // A full chunk (by count) starts a new one for its key.
        let many: Vec<(u8, usize)> = (0..MAX_BATCH_STATEMENTS + 3).map(|i| (0, i)).collect();
        let sizes: Vec<usize> = chunk_by(many, |&(k, _)| k, |_| 1).iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_BATCH_STATEMENTS, 3]);

        // By bytes: a chunk never passes the limit; an item over it is alone.
        let third = MAX_BATCH_BYTES / 3;
        let items = vec![(0u8, third), (0, third), (0, third), (0, third), (0, MAX_BATCH_BYTES * 2), (0, 1)];
        let chunks = chunk_by(items, |&(k, _)| k, |&(_, b)| b);
        let sizes: Vec<Vec<usize>> = chunks.iter().map(|g| g.iter().map(|&(_, b)| b).collect()).collect();
        assert_eq!(sizes, [vec![third, third, third], vec![third], vec![MAX_BATCH_BYTES * 2], vec![1]]);
        assert!(sizes.iter().filter(|c| c.len() > 1).all(|c| c.iter().sum::<usize>() <= MAX_BATCH_BYTES));
    }

    #[test]
    fn a_rows_size_estimate_counts_the_events_ids_whatever_their_length() {
        use hookline_schemas::{AttemptSucceeded, Envelope};
        let event = |tenant: String| -> AnyEvent {
            AttemptSucceeded {
                envelope: Envelope {
                    event_id: "ev".into(),
                    record_type: "AttemptSucceeded".into(),
                    occurred_at: 0,
                    tenant_id: tenant,
                    trigger_id: Some("tr".into()),
                    delivery_id: Some("dl".into()),
                    endpoint_id: Some("ep".into()),
                    attempt: Some(1),
                    causation_id: None,
                    correlation_id: None,
                },
                message_id: "msg".into(),
                status_code: 200,
                duration_ms: 1,
                response_excerpt: None,
            }
            .into()
        };
        assert_eq!(text_bytes(&event("acme".into())), 2 + 4 + 2 + 2 + 2 + 3);
        // A trigger written straight to Kafka may carry a huge id: its rows then go alone.
        let huge = text_bytes(&event("t".repeat(100_000)));
        assert!(ROW_BYTES + huge > MAX_BATCH_BYTES);
    }
}
