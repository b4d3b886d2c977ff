//! Through the real CQL server: the migration is idempotent and a row round-trips.

use hookline_projector::{Store, apply, schema};
use hookline_schemas::{AnyEvent, AttemptSucceeded, Envelope};
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
    for e in &events {
        apply::writes(&st, e, 3600, &mut rows);
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
