//! Idempotency keys of triggers (`idem:<tenant>:<key>`), claimed with `SET NX PX`.
//!
//! The value is `p:<trigger id>` while the claimant publishes the trigger and `d:<trigger id>`
//! once the log acknowledged it, so a concurrent identical request can wait for the outcome
//! instead of answering with an id that might never exist.

use std::sync::LazyLock;

use crate::{RedisError, RedisStore};

/// Deletes the key only if it still holds the caller's claim.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")
});

/// The state of an idempotency key after a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the key now and must publish, then [`RedisStore::confirm_claim`].
    Won,
    /// Another request holds it; `done` once its trigger was acknowledged.
    Taken { trigger_id: String, done: bool },
}

impl RedisStore {
    fn idem_key(&self, tenant: &str, key: &str) -> String {
        // Length-prefixed so no tenant/key pair can collide with another.
        self.key(&format!("idem:{}:{tenant}:{key}", tenant.len()))
    }

    /// Claims `key` for `trigger_id` for `window_ms`, or says who holds it.
    pub async fn claim(&self, tenant: &str, key: &str, trigger_id: &str, window_ms: u64) -> Result<Claim, RedisError> {
        let k = self.idem_key(tenant, key);
        let mut c = self.connection();
        let set: Option<String> = redis::cmd("SET")
            .arg(&k)
            .arg(format!("p:{trigger_id}"))
            .arg("NX")
            .arg("PX")
            .arg(window_ms)
            .arg("GET")
            .query_async(&mut c)
            .await
            .map_err(|source| RedisError::Command { command: "SET NX GET", source })?;
        Ok(match set {
            None => Claim::Won,
            Some(v) => match v.split_once(':') {
                Some(("d", id)) => Claim::Taken { trigger_id: id.to_string(), done: true },
                Some((_, id)) => Claim::Taken { trigger_id: id.to_string(), done: false },
                None => Claim::Taken { trigger_id: v, done: false },
            },
        })
    }

    /// Marks the claim done (the trigger is on the log), keeping the key's remaining lifetime.
    pub async fn confirm_claim(&self, tenant: &str, key: &str, trigger_id: &str) -> Result<(), RedisError> {
        let mut c = self.connection();
        redis::cmd("SET")
            .arg(self.idem_key(tenant, key))
            .arg(format!("d:{trigger_id}"))
            .arg("XX")
            .arg("KEEPTTL")
            .query_async::<Option<String>>(&mut c)
            .await
            .map(|_| ())
            .map_err(|source| RedisError::Command { command: "SET XX KEEPTTL", source })
    }

    /// Gives the key up (the trigger was not accepted), unless someone else holds it by now.
    pub async fn release_claim(&self, tenant: &str, key: &str, trigger_id: &str) -> Result<(), RedisError> {
        let mut c = self.connection();
        RELEASE
            .key(self.idem_key(tenant, key))
            .arg(format!("p:{trigger_id}"))
            .invoke_async::<i64>(&mut c)
            .await
            .map(|_| ())
            .map_err(|source| RedisError::Command { command: "EVALSHA release_claim", source })
    }
}
