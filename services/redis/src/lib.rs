//! Redis adapter: the only crate that talks to Redis. Every key is prefixed with the
//! configured `key_prefix`.
//!
//! - [`ratelimit`]: per-endpoint token buckets (`rl:<endpoint>`), one Lua script.
//! - [`breaker`]: per-endpoint circuit breakers (`cb:<endpoint>`), two Lua scripts.
//! - [`idempotency`]: trigger idempotency keys (`idem:<tenant>:<key>`), `SET NX`.
//!
//! The scripts (`src/lua/`) implement the rules of `hookline_domain::flow`, which the
//! dispatcher also runs locally while Redis cannot be reached.

pub mod breaker;
pub mod idempotency;
pub mod ratelimit;

use hookline_config::RedisOptions;
use redis::aio::ConnectionManager;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("redis command {command}: {source}")]
    Command {
        command: &'static str,
        #[source]
        source: redis::RedisError,
    },
}

/// A reconnecting, multiplexed connection plus the key prefix.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisStore {
    pub async fn connect(opts: &RedisOptions) -> Result<Self, RedisError> {
        let err = |source| RedisError::Connect { url: redact(&opts.url), source };
        let client = redis::Client::open(opts.url.as_str()).map_err(err)?;
        let conn = ConnectionManager::new(client).await.map_err(err)?;
        Ok(Self { conn, prefix: opts.key_prefix.clone() })
    }

    /// `<prefix><key>`.
    pub fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Connects in the background, retrying every `retry` until it succeeds or `shutdown`; the
    /// cell is empty until then (callers run on local state meanwhile). The first failure is
    /// logged as a warning, later ones at debug.
    pub fn connect_in_background(
        opts: &RedisOptions,
        retry: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::sync::Arc<std::sync::OnceLock<RedisStore>> {
        let cell: std::sync::Arc<std::sync::OnceLock<RedisStore>> = std::sync::Arc::default();
        let (opts, out) = (opts.clone(), cell.clone());
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match RedisStore::connect(&opts).await {
                    Ok(s) => {
                        let _ = cell.set(s);
                        tracing::info!(failures, "connected to redis");
                        return;
                    }
                    Err(e) if failures == 0 => tracing::warn!(error = %e, "cannot connect to redis yet; retrying"),
                    Err(e) => tracing::debug!(error = %e, "cannot connect to redis yet; retrying"),
                }
                failures += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        });
        out
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(|source| RedisError::Command { command: "PING", source })
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("redis://:secret@h:1/0"), "redis://***@h:1/0");
        assert_eq!(super::redact("redis://h:1"), "redis://h:1");
    }
}
