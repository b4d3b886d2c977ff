//! Through the real CQL server: the migration is idempotent and a row round-trips.

use hookline_projector::{Store, apply, schema};
use hookline_schemas::{AnyEvent, AttemptFailed, AttemptSucceeded, DeliveryRequested, Envelope, MovedToDLQ};
use hookline_testkit::TestEnv;

/// Rows of many partitions travel in a few unlogged batches, grouped by the replica computed
/// from each row's token, and every row lands.
#[tokio::test]
async fn rows_of_many_partitions_share_batches_per_replica_and_all_land() {
    let env = TestEnv::new();
    let store = Store::connect(&env.config.cql).await.unwrap();
    schema::migrate(&store, 1, 1).await.unwrap();
    let suffix = schema::active_suffix(&store).await.unwrap();
    let st = apply::Statements::prepare(&store.session, &store.keyspace, &suffix).await.unwrap();
    let events: Vec<AnyEvent> = (0..200)
        .map(|i| {
            AttemptSucceeded {
                envelope: Envelope {
                    event_id: format!("ev-{i}"),
                    record_type: "AttemptSucceeded".into(),
                    occurred_at: 1_790_000_000_000 + i,
                    tenant_id: "acme".into(),
                    trigger_id: Some(format!("tr-{i}")),
                    delivery_id: Some(format!("dl-{i}")),
                    endpoint_id: Some(format!("ep-{}", i % 7)),
                    attempt: Some(1),
                    causation_id: None,
                    correlation_id: None,
                },
                message_id: format!("msg-{i}"),
                status_code: 200,
                duration_ms: 3,
                response_excerpt: Some("ok".into()),
            }
            .into()
        })
        .collect();
    let mut rows = Vec::new();
    let view = apply::BatchView::of(&events);
    for e in &events {
        apply::writes(&st, e, 3600, &view, &mut rows);
    }
    let n = rows.len();
    let placement = apply::Placement::by_token(&store.session);
    let node = store.session.get_cluster_state().get_nodes_info()[0].host_id;
    assert!(rows.iter().all(|w| placement.replica(w).is_some_and(|(host, _)| host == node)));
    let groups = apply::group(rows, &placement);
    // 200 events × 4 rows in requests of up to 64 rows (32 KiB), instead of one per partition.
    assert!(groups.len() <= n.div_ceil(32), "{} requests for {n} rows", groups.len());
    for g in groups {
        apply::execute(&store.session, g).await.unwrap();
    }
    let ks = &store.keyspace;
    let count = |table: &'static str| {
        let session = &store.session;
        let q = format!("SELECT COUNT(*) FROM {ks}.{table}{suffix}");
        async move {
            let r = session.query_unpaged(q, ()).await.unwrap().into_rows_result().unwrap();
            r.single_row::<(i64,)>().unwrap().0
        }
    };
    assert_eq!(count("deliveries").await, 200);
    assert_eq!(count("attempts").await, 200);
    assert_eq!(count("deliveries_by_tenant").await, 200);
    assert_eq!(count("deliveries_by_endpoint").await, 200);

    store.execute_ddl(&format!("DROP KEYSPACE {ks}")).await.unwrap();
}

fn envelope(kind: &str, delivery: &str, at: i64, attempt: Option<i32>) -> Envelope {
    Envelope {
        event_id: format!("{kind}-{delivery}-{at}"),
        record_type: kind.into(),
        occurred_at: at,
        tenant_id: "acme".into(),
        trigger_id: Some(format!("tr-{delivery}")),
        delivery_id: Some(delivery.into()),
        endpoint_id: Some("ep-1".into()),
        attempt,
        causation_id: None,
        correlation_id: None,
    }
}

fn requested(delivery: &str, at: i64) -> AnyEvent {
    DeliveryRequested {
        envelope: envelope("DeliveryRequested", delivery, at, None),
        event_type: "order.paid".into(),
        payload: b"{}".to_vec(),
        content_type: "application/json".into(),
        message_id: format!("msg-{delivery}"),
        reason: "initial".into(),
        trigger_occurred_at: at,
        not_before: None,
    }
    .into()
}

fn succeeded(delivery: &str, at: i64, attempt: i32) -> AnyEvent {
    AttemptSucceeded {
        envelope: envelope("AttemptSucceeded", delivery, at, Some(attempt)),
        message_id: format!("msg-{delivery}"),
        status_code: 204,
        duration_ms: 3,
        response_excerpt: None,
    }
    .into()
}

fn failed(delivery: &str, at: i64, attempt: i32, next: Option<i64>) -> AnyEvent {
    AttemptFailed {
        envelope: envelope("AttemptFailed", delivery, at, Some(attempt)),
        message_id: format!("msg-{delivery}"),
        error_kind: "http_status".into(),
        status_code: Some(503),
        duration_ms: 4,
        error_message: format!("attempt {attempt}: 503"),
        response_excerpt: Some("busy".into()),
        next_attempt_at: next,
    }
    .into()
}

fn dead_lettered(delivery: &str, at: i64, attempts: i32) -> AnyEvent {
    MovedToDLQ {
        envelope: envelope("MovedToDLQ", delivery, at, Some(attempts)),
        event_type: "order.paid".into(),
        payload: b"{}".to_vec(),
        content_type: "application/json".into(),
        message_id: format!("msg-{delivery}"),
        reason: "attempts_exhausted".into(),
        last_error_kind: "http_status".into(),
        last_status_code: Some(500),
        last_error_message: "gave up".into(),
        attempts,
        trigger_occurred_at: at,
    }
    .into()
}

/// A batch writes a delivery's status once (the request's rows take the batch's latest status;
/// earlier statuses are left out), and the rows end exactly as when every event is applied
/// alone, in any order within the batch.
#[tokio::test]
async fn a_batch_writes_each_deliverys_latest_status_once_with_the_same_result() {
    let env = TestEnv::new();
    let store = Store::connect(&env.config.cql).await.unwrap();
    schema::migrate(&store, 1, 1).await.unwrap();
    let suffix = schema::active_suffix(&store).await.unwrap();
    let st = apply::Statements::prepare(&store.session, &store.keyspace, &suffix).await.unwrap();
    let t = 1_790_000_000_000;
    // Each delivery's history, in time order.
    let histories = |p: &str| -> Vec<Vec<AnyEvent>> {
        let d = |n: u32| format!("{p}-{n}");
        vec![
            vec![requested(&d(1), t), succeeded(&d(1), t + 5, 1)],
            vec![requested(&d(2), t), failed(&d(2), t + 5, 1, Some(t + 1000)), succeeded(&d(2), t + 1005, 2)],
            vec![
                requested(&d(3), t),
                failed(&d(3), t + 5, 1, Some(t + 1000)),
                failed(&d(3), t + 1005, 2, None),
                dead_lettered(&d(3), t + 1006, 2),
            ],
            vec![requested(&d(4), t)],
            vec![failed(&d(5), t + 5, 1, Some(t + 1000)), succeeded(&d(5), t + 1005, 2)],
            // Redelivered records: the same events twice.
            vec![requested(&d(6), t), succeeded(&d(6), t + 5, 1), requested(&d(6), t), succeeded(&d(6), t + 5, 1)],
            // The same millisecond: a success outranks a failure.
            vec![requested(&d(7), t), failed(&d(7), t + 5, 1, Some(t + 1000)), succeeded(&d(7), t + 5, 1)],
        ]
    };
    async fn write(store: &Store, st: &apply::Statements, events: &[AnyEvent]) -> usize {
        let view = apply::BatchView::of(events);
        let mut rows = Vec::new();
        for e in events {
            apply::writes(st, e, 3600, &view, &mut rows);
        }
        let n = rows.len();
        for g in apply::group(rows, &apply::Placement::of(&store.session)) {
            apply::execute(&store.session, g).await.unwrap();
        }
        n
    }
    // Alone: one event per batch, in time order.
    let mut alone = 0;
    for e in histories("alone").into_iter().flatten() {
        alone += write(&store, &st, std::slice::from_ref(&e)).await;
    }
    // Together: one batch, latest first.
    let mut together: Vec<AnyEvent> = histories("batch").into_iter().flatten().collect();
    together.reverse();
    let batched = write(&store, &st, &together).await;
    // Together again, in time order, on top (a redelivered batch).
    let in_order: Vec<AnyEvent> = histories("again").into_iter().flatten().collect();
    let again = write(&store, &st, &in_order).await;
    assert_eq!(batched, again);
    assert!(batched * 10 < alone * 7, "{batched} row writes in one batch, {alone} alone");

    let ks = &store.keyspace;
    let tables = [
        (
            "deliveries",
            "tenant_id, endpoint_id, trigger_id, message_id, event_type, reason, created_at, status, attempts, \
             last_status_code, last_error, next_attempt_at, updated_at",
        ),
        ("deliveries_by_endpoint", "status, event_type, attempts, created_at"),
        ("deliveries_by_tenant", "status, event_type, attempts, created_at, endpoint_id"),
        (
            "attempts",
            "attempt, outcome, status_code, duration_ms, error_kind, error_message, response_excerpt, next_attempt_at",
        ),
    ];
    let read = |table: &'static str, columns: &'static str, delivery: String| {
        let q = format!("SELECT JSON {columns} FROM {ks}.{table}{suffix} WHERE delivery_id = ? ALLOW FILTERING");
        let session = &store.session;
        async move {
            let rows = session.query_unpaged(q, (delivery.as_str(),)).await.unwrap().into_rows_result().unwrap();
            let mut rows: Vec<String> = rows.rows::<(String,)>().unwrap().map(|r| r.unwrap().0).collect();
            rows.sort();
            rows.join("\n").replace(&delivery, "D")
        }
    };
    for n in 1..=7 {
        for (table, columns) in tables {
            let expected = read(table, columns, format!("alone-{n}")).await;
            assert!(!expected.is_empty() || (table == "attempts" && n == 4), "{table} of delivery {n}: no rows");
            for p in ["batch", "again"] {
                let got = read(table, columns, format!("{p}-{n}")).await;
                assert_eq!(got, expected, "{table} of delivery {n} ({p})");
            }
        }
    }
    let status = read("deliveries", "status, attempts", "batch-3".into()).await;
    assert_eq!(status, r#"{"status": "dead_lettered", "attempts": 2}"#);

    store.execute_ddl(&format!("DROP KEYSPACE {ks}")).await.unwrap();
}

#[tokio::test]
async fn migrate_twice_then_write_and_read_a_row() {
    let env = TestEnv::new();
    let store = Store::connect(&env.config.cql).await.unwrap();
    assert!(!store.release_version().await.unwrap().is_empty());
    schema::migrate(&store, 1, 1).await.unwrap();
    schema::migrate(&store, 1, 1).await.unwrap();

    let ks = &store.keyspace;
    let insert = format!(
        "INSERT INTO {ks}.deliveries (delivery_id, tenant_id, endpoint_id, status, attempts) VALUES (?, ?, ?, ?, ?)"
    );
    store.session.query_unpaged(insert, ("d-1", "acme", "ep-1", "delivered", 2i32)).await.unwrap();
    let rows = store
        .session
        .query_unpaged(
            format!("SELECT tenant_id, status, attempts FROM {ks}.deliveries WHERE delivery_id = ?"),
            ("d-1",),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (tenant, status, attempts): (String, String, i32) = rows.single_row().unwrap();
    assert_eq!((tenant.as_str(), status.as_str(), attempts), ("acme", "delivered", 2));

    store.execute_ddl(&format!("DROP KEYSPACE {ks}")).await.unwrap();
}

/// A table set created before columns were added (here `endpoint_health` without `deferred`
/// and `dead_lettered`) gets them from the next migrate, and keeps its rows.
#[tokio::test]
async fn migrate_adds_new_columns_to_existing_tables() {
    let env = TestEnv::new();
    let store = Store::connect(&env.config.cql).await.unwrap();
    let ks = &store.keyspace;
    store
        .execute_ddl(&format!(
            "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ))
        .await
        .unwrap();
    store
        .execute_ddl(&format!(
            "CREATE TABLE {ks}.endpoint_health (endpoint_id text, bucket bigint, minute timestamp, successes int, \
             failures int, latency_sum_ms bigint, latency_buckets list<int>, PRIMARY KEY ((endpoint_id, bucket), minute))"
        ))
        .await
        .unwrap();
    store
        .session
        .query_unpaged(
            format!("INSERT INTO {ks}.endpoint_health (endpoint_id, bucket, minute, successes) VALUES ('ep', 1, 0, 7)"),
            (),
        )
        .await
        .unwrap();
    schema::migrate(&store, 1, 1).await.unwrap();
    schema::migrate(&store, 1, 1).await.unwrap();
    let rows = store
        .session
        .query_unpaged(
            format!("SELECT successes, deferred, dead_lettered FROM {ks}.endpoint_health WHERE endpoint_id = 'ep' AND bucket = 1"),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let row: (Option<i32>, Option<i32>, Option<i32>) = rows.single_row().unwrap();
    assert_eq!(row, (Some(7), None, None));
    store.execute_ddl(&format!("DROP KEYSPACE {ks}")).await.unwrap();
}
