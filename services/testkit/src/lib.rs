//! Test support for integration tests against the real local stack (`dev/test` starts it).
//!
//! - [`TestEnv`] gives each test its own topic prefix, keyspace and Redis key prefix, so tests
//!   run in parallel and never see each other's data.
//! - [`receiver`]: an in-process webhook receiver that records what arrived and can fail,
//!   hang or answer any status on demand.
//! - [`process`]: the `hookline` binary as a child process (start, SIGTERM, kill -9).
//! - [`http`]: a tiny JSON HTTP/1.1 client.
//! - [`tap`]: reads a topic from the beginning and collects decoded events.

pub mod http;
pub mod process;
pub mod receiver;
pub mod tap;

use hookline_config::Config;

/// Set by `dev/test` once the stack answers.
pub const STACK_MARKER: &str = "HOOKLINE_TEST_STACK";

/// Per-test configuration.
pub struct TestEnv {
    pub config: Config,
    pub id: String,
}

impl TestEnv {
    /// The stack's addresses from the environment, with names unique to this test.
    ///
    /// Panics with instructions when the stack is not running: a test that needs Kafka must
    /// fail, not pass, without it.
    pub fn new() -> Self {
        assert!(
            std::env::var_os(STACK_MARKER).is_some(),
            "this test needs the local stack: run it through `dev/test` (or `dev/stack up` and export `dev/stack env`)"
        );
        let mut config = Config::load(None).expect("test config");
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        config.kafka.topic_prefix = format!("t{id}.");
        config.kafka.partitions = 4;
        config.cql.keyspace = format!("t{id}");
        config.redis.key_prefix = format!("t{id}:");
        Self { config, id }
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}
