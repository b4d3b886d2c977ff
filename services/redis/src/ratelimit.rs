//! The shared token bucket of each rate-limited endpoint (`rl:<endpoint id>`), taken from
//! atomically by a Lua script loaded once and called by its hash.

use std::sync::LazyLock;

use hookline_domain::flow::Grant;

use crate::{RedisError, RedisStore};

static TAKE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lua/take_tokens.lua")));

impl RedisStore {
    /// Takes up to `want` tokens from the endpoint's bucket (`rate` per second, `burst` deep),
    /// reserving ahead within `max_wait_ms` when it is empty (see `TokenBucket::take`).
    /// `now_us` is for tests; `None` uses the Redis server's clock, shared by every dispatcher.
    pub async fn take_tokens(
        &self,
        endpoint_id: &str,
        rate: f64,
        burst: u32,
        want: u32,
        max_wait_ms: u64,
        now_us: Option<i64>,
    ) -> Result<Grant, RedisError> {
        let mut c = self.connection();
        let now = now_us.map(|n| n.to_string()).unwrap_or_default();
        let (granted, wait_ms): (u32, u64) = TAKE
            .key(self.key(&format!("rl:{endpoint_id}")))
            .arg(rate)
            .arg(burst)
            .arg(want)
            .arg(max_wait_ms)
            .arg(now)
            .invoke_async(&mut c)
            .await
            .map_err(|source| RedisError::Command { command: "EVALSHA take_tokens", source })?;
        Ok(Grant { granted, wait_ms })
    }
}
