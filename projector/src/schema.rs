//! Keyspace and tables, shaped by the queries they answer. CQL accepted by both ScyllaDB and
//! Cassandra: no SAI, no materialized views, no Scylla-only options.
//!
//! `migrate` is idempotent (`IF NOT EXISTS` everywhere): run it at every deploy.

use crate::store::{CqlError, Store};

/// Table definitions; `{ks}` is replaced by the keyspace and `{ttl}` by the retention in seconds.
pub const TABLES: &[(&str, &str)] = &[
    (
        "deliveries_by_id",
        "CREATE TABLE IF NOT EXISTS {ks}.deliveries_by_id (
            delivery_id text PRIMARY KEY,
            tenant_id text, endpoint_id text, trigger_id text, message_id text, event_type text,
            status text, attempts int, last_status_code int, last_error text,
            next_attempt_at timestamp, created_at timestamp, updated_at timestamp
        ) WITH default_time_to_live = {ttl}",
    ),
    (
        "deliveries_by_endpoint",
        "CREATE TABLE IF NOT EXISTS {ks}.deliveries_by_endpoint (
            tenant_id text, endpoint_id text, day int, created_at timestamp, delivery_id text,
            status text, event_type text,
            PRIMARY KEY ((tenant_id, endpoint_id, day), created_at, delivery_id)
        ) WITH CLUSTERING ORDER BY (created_at DESC, delivery_id DESC) AND default_time_to_live = {ttl}",
    ),
    (
        "attempts_by_delivery",
        "CREATE TABLE IF NOT EXISTS {ks}.attempts_by_delivery (
            delivery_id text, attempt int, tenant_id text, occurred_at timestamp, outcome text,
            status_code int, duration_ms int, error_kind text, error_message text,
            response_excerpt text,
            PRIMARY KEY (delivery_id, attempt)
        ) WITH default_time_to_live = {ttl}",
    ),
    (
        "dlq_by_tenant",
        "CREATE TABLE IF NOT EXISTS {ks}.dlq_by_tenant (
            tenant_id text, day int, moved_at timestamp, delivery_id text, endpoint_id text,
            event_type text,
            PRIMARY KEY ((tenant_id, day), moved_at, delivery_id)
        ) WITH CLUSTERING ORDER BY (moved_at DESC, delivery_id DESC) AND default_time_to_live = {ttl}",
    ),
    (
        "dlq_by_id",
        "CREATE TABLE IF NOT EXISTS {ks}.dlq_by_id (
            delivery_id text PRIMARY KEY, tenant_id text, endpoint_id text, event_type text,
            message_id text, payload blob, content_type text, moved_at timestamp, attempts int,
            last_error_kind text, last_status_code int, last_error_message text, state text
        ) WITH default_time_to_live = {ttl}",
    ),
    (
        "endpoints",
        "CREATE TABLE IF NOT EXISTS {ks}.endpoints (
            tenant_id text, endpoint_id text, url text, description text, event_types list<text>,
            enabled boolean, version bigint, config blob, updated_at timestamp,
            PRIMARY KEY (tenant_id, endpoint_id)
        )",
    ),
    (
        "endpoint_health_minute",
        "CREATE TABLE IF NOT EXISTS {ks}.endpoint_health_minute (
            endpoint_id text, day int, minute timestamp, successes int, failures int,
            latency_sum_ms bigint, latency_buckets list<int>,
            PRIMARY KEY ((endpoint_id, day), minute)
        ) WITH CLUSTERING ORDER BY (minute DESC) AND default_time_to_live = {ttl}",
    ),
];

/// Creates the keyspace and every table if missing. Returns the statements run.
pub async fn migrate(store: &Store, replication_factor: i32, retention_days: u32) -> Result<usize, CqlError> {
    let ks = &store.keyspace;
    store
        .execute_ddl(&format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
        ))
        .await?;
    let ttl = u64::from(retention_days) * 86_400;
    for (_, ddl) in TABLES {
        store.execute_ddl(&ddl.replace("{ks}", ks).replace("{ttl}", &ttl.to_string())).await?;
    }
    Ok(TABLES.len() + 1)
}
