//! Through the real CQL server: the migration is idempotent and a row round-trips.

use hookline_projector::{Store, schema};
use hookline_testkit::TestEnv;

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
