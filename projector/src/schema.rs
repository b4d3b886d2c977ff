//! Keyspace and tables, shaped by the queries they answer. CQL accepted by both ScyllaDB and
//! Cassandra: no SAI, no materialized views, no Scylla-only options.
//!
//! Every projected table belongs to a *table set* named by a suffix (`""` for the first, then
//! `_g2`, `_g3`, ...): `hookline projector rebuild` fills a fresh set beside the live one and
//! switches readers to it through the `projection_meta` row. `migrate` is idempotent.
//!
//! Buckets: deliveries are bucketed by hour of their (time-ordered) delivery id; the DLQ by day
//! of its entry id; health by hour of the minute.

use crate::store::{CqlError, Store};

/// Milliseconds in a delivery bucket (one hour).
pub const DELIVERY_BUCKET_MS: i64 = 3_600_000;
/// Milliseconds in a DLQ bucket (one day).
pub const DLQ_BUCKET_MS: i64 = 86_400_000;
/// Milliseconds in a health bucket (one hour of minutes).
pub const HEALTH_BUCKET_MS: i64 = 3_600_000;
/// Upper bounds (ms) of the latency histogram kept per endpoint and minute; one more bucket
/// counts everything above the last bound.
pub const LATENCY_BOUNDS_MS: [i32; 12] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

/// Tables of one set; `{ks}` is the keyspace, `{s}` the set suffix, `{ttl}` retention seconds.
pub const SET_TABLES: &[(&str, &str)] = &[
    (
        "deliveries",
        "CREATE TABLE IF NOT EXISTS {ks}.deliveries{s} (
            delivery_id text PRIMARY KEY,
            tenant_id text, endpoint_id text, trigger_id text, message_id text, event_type text,
            reason text, status text, attempts int, last_status_code int, last_error text,
            next_attempt_at timestamp, created_at timestamp, updated_at timestamp
        ) WITH default_time_to_live = {ttl}",
    ),
    (
        "deliveries_by_endpoint",
        "CREATE TABLE IF NOT EXISTS {ks}.deliveries_by_endpoint{s} (
            tenant_id text, endpoint_id text, bucket bigint, delivery_id text,
            status text, event_type text, attempts int, created_at timestamp,
            PRIMARY KEY ((tenant_id, endpoint_id, bucket), delivery_id)
        ) WITH CLUSTERING ORDER BY (delivery_id DESC) AND default_time_to_live = {ttl}",
    ),
    (
        "deliveries_by_tenant",
        "CREATE TABLE IF NOT EXISTS {ks}.deliveries_by_tenant{s} (
            tenant_id text, bucket bigint, delivery_id text, endpoint_id text,
            status text, event_type text, attempts int, created_at timestamp,
            PRIMARY KEY ((tenant_id, bucket), delivery_id)
        ) WITH CLUSTERING ORDER BY (delivery_id DESC) AND default_time_to_live = {ttl}",
    ),
    (
        "attempts",
        "CREATE TABLE IF NOT EXISTS {ks}.attempts{s} (
            delivery_id text, attempt int, tenant_id text, event_id text, occurred_at timestamp,
            outcome text, status_code int, duration_ms int, error_kind text, error_message text,
            response_excerpt text, next_attempt_at timestamp,
            PRIMARY KEY (delivery_id, attempt)
        ) WITH default_time_to_live = {ttl}",
    ),
    (
        "dlq",
        "CREATE TABLE IF NOT EXISTS {ks}.dlq{s} (
            dlq_id text PRIMARY KEY, tenant_id text, delivery_id text, trigger_id text,
            correlation_id text, endpoint_id text, event_type text, message_id text,
            payload blob, content_type text, moved_at timestamp, attempts int, reason text,
            last_error_kind text, last_status_code int, last_error_message text,
            trigger_occurred_at timestamp, state text, handled_at timestamp, handled_by text,
            replay_delivery_id text
        ) WITH default_time_to_live = {ttl}",
    ),
    (
        "dlq_by_tenant",
        "CREATE TABLE IF NOT EXISTS {ks}.dlq_by_tenant{s} (
            tenant_id text, bucket bigint, dlq_id text, delivery_id text, endpoint_id text,
            event_type text, moved_at timestamp, last_error_kind text, last_status_code int,
            PRIMARY KEY ((tenant_id, bucket), dlq_id)
        ) WITH CLUSTERING ORDER BY (dlq_id DESC) AND default_time_to_live = {ttl}",
    ),
    (
        "endpoints",
        "CREATE TABLE IF NOT EXISTS {ks}.endpoints{s} (
            tenant_id text, endpoint_id text, url text, description text, event_types list<text>,
            enabled boolean, disabled_reason text, version bigint, updated_at timestamp,
            PRIMARY KEY (tenant_id, endpoint_id)
        )",
    ),
    (
        "endpoint_health",
        "CREATE TABLE IF NOT EXISTS {ks}.endpoint_health{s} (
            endpoint_id text, bucket bigint, minute timestamp, successes int, failures int,
            latency_sum_ms bigint, latency_buckets list<int>, deferred int, dead_lettered int,
            PRIMARY KEY ((endpoint_id, bucket), minute)
        ) WITH CLUSTERING ORDER BY (minute DESC) AND default_time_to_live = {ttl}",
    ),
    (
        // Flow-control state per endpoint for the health dashboard. Circuit and disabled
        // columns are written from events with event-time write timestamps (last event wins);
        // `dlq_open` is an absolute count checkpointed with the events partition (see `role`).
        "endpoint_state",
        "CREATE TABLE IF NOT EXISTS {ks}.endpoint_state{s} (
            endpoint_id text PRIMARY KEY, tenant_id text,
            circuit_state text, circuit_since timestamp, circuit_open_until timestamp,
            circuit_failure_ratio double, circuit_window_requests int,
            disabled_at timestamp, disabled_reason text,
            last_deferred_at timestamp, last_deferred_cause text, deferred_until timestamp,
            dlq_open bigint
        )",
    ),
    (
        "checkpoints",
        "CREATE TABLE IF NOT EXISTS {ks}.checkpoints{s} (
            topic text, partition int, next_offset bigint, updated_at timestamp,
            PRIMARY KEY (topic, partition)
        )",
    ),
];

/// Columns added to set tables after their first release: (table, column, CQL type). `migrate`
/// adds the missing ones to tables created before (CREATE TABLE IF NOT EXISTS leaves them be).
pub const ADDED_COLUMNS: &[(&str, &str, &str)] =
    &[("endpoint_health", "deferred", "int"), ("endpoint_health", "dead_lettered", "int")];

/// Tables shared by every set.
pub const SHARED_TABLES: &[(&str, &str)] = &[
    (
        "projection_meta",
        "CREATE TABLE IF NOT EXISTS {ks}.projection_meta (
            name text PRIMARY KEY, active_suffix text, building_suffix text, updated_at timestamp
        )",
    ),
    (
        "dlq_claims",
        "CREATE TABLE IF NOT EXISTS {ks}.dlq_claims (
            dlq_id text PRIMARY KEY, action text, actor text, claimed_at timestamp
        ) WITH default_time_to_live = {ttl}",
    ),
    (
        "dlq_jobs",
        "CREATE TABLE IF NOT EXISTS {ks}.dlq_jobs (
            job_id text PRIMARY KEY, tenant_id text, filter text, state text, total int,
            replayed int, skipped int, failed int, created_at timestamp, updated_at timestamp
        ) WITH default_time_to_live = {ttl}",
    ),
];

fn render(ddl: &str, ks: &str, suffix: &str, ttl: u64) -> String {
    ddl.replace("{ks}", ks).replace("{s}", suffix).replace("{ttl}", &ttl.to_string())
}

/// Creates the keyspace, the shared tables and the table set `suffix` if missing.
pub async fn migrate_set(
    store: &Store,
    replication_factor: i32,
    retention_days: u32,
    suffix: &str,
) -> Result<usize, CqlError> {
    let ks = &store.keyspace;
    store
        .execute_ddl(&format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
        ))
        .await?;
    let ttl = u64::from(retention_days) * 86_400;
    for (_, ddl) in SHARED_TABLES.iter().chain(SET_TABLES) {
        store.execute_ddl(&render(ddl, ks, suffix, ttl)).await?;
    }
    for (table, column, cql_type) in ADDED_COLUMNS {
        ensure_column(store, &format!("{table}{suffix}"), column, cql_type).await?;
    }
    Ok(1 + SHARED_TABLES.len() + SET_TABLES.len())
}

/// Adds `column` to `table` unless it is there. Two processes migrating at once may both try;
/// the loser's error is ignored when the column exists afterwards.
async fn ensure_column(store: &Store, table: &str, column: &str, cql_type: &str) -> Result<(), CqlError> {
    if has_column(store, table, column).await? {
        return Ok(());
    }
    match store.execute_ddl(&format!("ALTER TABLE {}.{table} ADD {column} {cql_type}", store.keyspace)).await {
        Ok(()) => Ok(()),
        Err(_) if has_column(store, table, column).await? => Ok(()),
        Err(e) => Err(e),
    }
}

async fn has_column(store: &Store, table: &str, column: &str) -> Result<bool, CqlError> {
    const Q: &str =
        "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ? AND column_name = ?";
    let rows = store
        .session
        .query_unpaged(Q, (store.keyspace.as_str(), table, column))
        .await
        .map_err(|e| CqlError::Execute { statement: Q.into(), source: Box::new(e) })?
        .into_rows_result()
        .map_err(|e| CqlError::Rows { statement: Q.into(), reason: e.to_string() })?;
    Ok(rows.rows_num() > 0)
}

/// Creates the keyspace and the *active* table set (the first one on a fresh keyspace).
pub async fn migrate(store: &Store, replication_factor: i32, retention_days: u32) -> Result<usize, CqlError> {
    let n = migrate_set(store, replication_factor, retention_days, "").await?;
    let suffix = active_suffix(store).await?;
    if !suffix.is_empty() {
        migrate_set(store, replication_factor, retention_days, &suffix).await?;
    }
    Ok(n)
}

/// The suffix of the table set readers and the live projector use.
pub async fn active_suffix(store: &Store) -> Result<String, CqlError> {
    let q = format!("SELECT active_suffix FROM {}.projection_meta WHERE name = 'main'", store.keyspace);
    let rows = store
        .session
        .query_unpaged(q.clone(), ())
        .await
        .map_err(|e| CqlError::Execute { statement: q.clone(), source: Box::new(e) })?
        .into_rows_result()
        .map_err(|e| CqlError::Rows { statement: q.clone(), reason: e.to_string() })?;
    let row: Option<(Option<String>,)> =
        rows.maybe_first_row().map_err(|e| CqlError::Rows { statement: q, reason: e.to_string() })?;
    Ok(row.and_then(|r| r.0).unwrap_or_default())
}

/// Makes `suffix` the table set readers and the live projector use.
pub async fn set_active_suffix(store: &Store, suffix: &str) -> Result<(), CqlError> {
    let q = format!(
        "UPDATE {}.projection_meta SET active_suffix = '{suffix}', updated_at = toTimestamp(now()) WHERE name = 'main'",
        store.keyspace
    );
    store.execute_ddl(&q).await
}

/// Drops every table of set `suffix`.
pub async fn drop_set(store: &Store, suffix: &str) -> Result<(), CqlError> {
    for (name, _) in SET_TABLES {
        store.execute_ddl(&format!("DROP TABLE IF EXISTS {}.{name}{suffix}", store.keyspace)).await?;
    }
    Ok(())
}
