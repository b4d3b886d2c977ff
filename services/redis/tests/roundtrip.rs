//! Through the real Redis: a prefixed key round-trips.

use hookline_redis::RedisStore;
use hookline_testkit::TestEnv;

#[tokio::test]
async fn ping_set_get_del() {
    let env = TestEnv::new();
    let store = RedisStore::connect(&env.config.redis).await.unwrap();
    store.ping().await.unwrap();
    let key = store.key("roundtrip");
    assert!(key.starts_with(&env.config.redis.key_prefix));
    let mut c = store.connection();
    let _: () = redis::cmd("SET").arg(&key).arg("v1").arg("EX").arg(60).query_async(&mut c).await.unwrap();
    let got: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut c).await.unwrap();
    assert_eq!(got.as_deref(), Some("v1"));
    let removed: i64 = redis::cmd("DEL").arg(&key).query_async(&mut c).await.unwrap();
    assert_eq!(removed, 1);
}
