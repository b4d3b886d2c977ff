//! `hookline all` as a child process, configured for one run: a fresh topic prefix (and Redis
//! key prefix), a random admin token, a free API port on 127.0.0.1 and the loopback sink let
//! through the SSRF guard. Everything else comes from the caller's environment
//! (`eval "$(dev/stack env)"`), plus any `--hookline-env KEY=VALUE` overrides.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::api::Api;

pub struct Hookline {
    child: Child,
    pub pid: u32,
    pub api_url: String,
    pub log: PathBuf,
}

/// The run's keyspace (see [`run_env`]).
fn keyspace_of(prefix: &str) -> String {
    prefix.trim_end_matches('.').replace(['.', '-'], "_")
}

/// The run whose topics and keyspace are still to be removed (brokers, prefix): what an
/// interrupted tool removes on its way out ([`clean_up_after_interrupt`]).
static PENDING_CLEAN_UP: Mutex<Option<(String, String)>> = Mutex::new(None);

/// Records (`Some`) or forgets (`None`) the run an interrupt must clean up after.
pub fn set_pending_clean_up(run: Option<(&str, &str)>) {
    *PENDING_CLEAN_UP.lock().unwrap_or_else(|e| e.into_inner()) = run.map(|(b, p)| (b.to_string(), p.to_string()));
}

/// After an interrupt (the run's future, hence its `hookline all` child, already dropped):
/// removes the interrupted run's topics and keyspace, as a finished run does.
pub async fn clean_up_after_interrupt() {
    let pending = PENDING_CLEAN_UP.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((brokers, prefix)) = pending {
        match clean_up(&brokers, &prefix).await {
            Ok(what) => eprintln!("loadtest: removed {what}"),
            Err(e) => eprintln!("loadtest: could not remove the run's topics and keyspace: {e:#}"),
        }
    }
}

/// Deletes a run's topics and drops its keyspace; says what it removed.
pub async fn clean_up(brokers: &str, prefix: &str) -> anyhow::Result<String> {
    let mut config = hookline_config::Config::load(None)?;
    config.kafka.brokers = brokers.to_string();
    let topics = hookline_kafka::admin::delete_topics_with_prefix(&config.kafka, prefix).await?;
    let ks = keyspace_of(prefix);
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&config.cql.nodes)
        .connection_timeout(Duration::from_secs(10))
        .build()
        .await
        .context("connecting to the CQL store")?;
    session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ()).await.context("dropping the keyspace")?;
    Ok(format!("{} topic(s) {prefix}* and keyspace {ks}", topics.len()))
}

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// 32 random bytes, base64: the run's master key (its secrets live only as long as the run).
fn run_master_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// The environment of the child: what makes this run isolated and reachable.
pub fn run_env(
    prefix: &str,
    token: &str,
    api_port: u16,
    partitions: u32,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env = vec![
        ("HOOKLINE_KAFKA__TOPIC_PREFIX".to_string(), prefix.to_string()),
        ("HOOKLINE_KAFKA__PARTITIONS".into(), partitions.to_string()),
        ("HOOKLINE_REDIS__KEY_PREFIX".into(), format!("{}:", prefix.trim_end_matches('.'))),
        ("HOOKLINE_API__LISTEN".into(), format!("127.0.0.1:{api_port}")),
        (
            "HOOKLINE_API__TOKENS".into(),
            format!("[{{name = \"loadtest\", tenant = \"*\", sha256 = \"{}\"}}]", sha256_hex(token)),
        ),
        ("HOOKLINE_DISPATCHER__SSRF_ALLOW".into(), "[\"127.0.0.0/8\"]".into()),
        // A keyspace of its own per run, and a throwaway master key for the run's secrets.
        ("HOOKLINE_CQL__KEYSPACE".into(), keyspace_of(prefix)),
        ("HOOKLINE_SECRETS__MASTER_KEYS".into(), format!("lt:{}", run_master_key())),
    ];
    env.extend(extra.iter().cloned());
    env
}

impl Hookline {
    /// Creates the run's topics, starts `hookline all` and waits for `/readyz`.
    pub async fn start(
        bin: &Path,
        env: &[(String, String)],
        api_port: u16,
        token: &str,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        if !bin.is_file() {
            bail!(
                "hookline binary {} not found (cargo build --release -p hookline, or pass --hookline)",
                bin.display()
            );
        }
        let out = Command::new(bin)
            .args(["topics", "create"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .with_context(|| format!("running {} topics create", bin.display()))?;
        if !out.status.success() {
            bail!("hookline topics create failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let out = Command::new(bin)
            .args(["schema", "migrate"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .with_context(|| format!("running {} schema migrate", bin.display()))?;
        if !out.status.success() {
            bail!("hookline schema migrate failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let log_file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(bin)
            .arg("all")
            .envs(env.iter().map(|(k, v)| (k, v)))
            // Even a SIGKILL of this tool then stops the child (noticed within 0.5 s, then drained).
            .env("HOOKLINE_EXIT_WITH_PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} all", bin.display()))?;
        let pid = child.id();
        let mut h = Self { child, pid, api_url: format!("http://127.0.0.1:{api_port}"), log };
        let api = Api::new(&h.api_url, token)?;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = h.child.try_wait()? {
                bail!("hookline exited during startup ({status}); log: {}", h.log.display());
            }
            if api.ready().await {
                return Ok(h);
            }
            if Instant::now() > deadline {
                h.kill();
                bail!("hookline not ready after 90 s; log: {}", h.log.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM (graceful drain), then SIGKILL after `grace`. Says how it ended.
    pub fn stop(&mut self, grace: Duration) -> String {
        let t0 = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        while t0.elapsed() < grace {
            if let Ok(Some(status)) = self.child.try_wait() {
                return format!("stopped by SIGTERM in {:.1} s ({status})", t0.elapsed().as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        format!("did not stop within {grace:?} of SIGTERM; killed")
    }

    /// How the process ended, if it already did.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{status}; log: {}", self.log.display())),
            _ => None,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hookline {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_hex_sha256() {
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
