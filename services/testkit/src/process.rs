//! `hookline` as a child process, configured for one [`TestEnv`].

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestEnv;

/// The admin token every test process accepts.
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The master key test processes seal secrets with (test-only, 32 bytes of 0x2a).
pub const TEST_MASTER_KEYS: &str = "t1:KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";
/// Tenant tokens every test process accepts: (token, tenant).
pub const TENANT_TOKENS: &[(&str, &str)] = &[("acme-token", "acme"), ("globex-token", "globex")];

pub struct Hookline {
    pub child: Child,
    pub api: SocketAddr,
    bin: String,
    role: String,
    /// Where the process's stderr (its log) goes.
    log_path: std::path::PathBuf,
}

/// Environment that points a process at this test's topics, keyspace and Redis prefix, with
/// test-speed retries and the loopback receiver allowed past the SSRF guard.
pub fn test_env_vars(env: &TestEnv, admin_sha256: &str) -> Vec<(String, String)> {
    let c = &env.config;
    vec![
        ("HOOKLINE_KAFKA__TOPIC_PREFIX".into(), c.kafka.topic_prefix.clone()),
        ("HOOKLINE_KAFKA__PARTITIONS".into(), c.kafka.partitions.to_string()),
        ("HOOKLINE_KAFKA__SESSION_TIMEOUT_MS".into(), "6000".into()),
        ("HOOKLINE_CQL__KEYSPACE".into(), c.cql.keyspace.clone()),
        ("HOOKLINE_REDIS__KEY_PREFIX".into(), c.redis.key_prefix.clone()),
        ("HOOKLINE_DISPATCHER__SSRF_ALLOW".into(), "[\"127.0.0.0/8\"]".into()),
        ("HOOKLINE_DISPATCHER__RETRY_SCHEDULE_MS".into(), "[0, 300, 600]".into()),
        ("HOOKLINE_DISPATCHER__RETRY_JITTER".into(), "0.0".into()),
        ("HOOKLINE_SCHEDULER__TIERS_MS".into(), "[200, 1000]".into()),
        ("HOOKLINE_LOG__LEVEL".into(), "info,hookline_dispatcher=debug".into()),
        ("HOOKLINE_API__TOKENS".into(), tokens_toml(admin_sha256)),
        ("HOOKLINE_SECRETS__MASTER_KEYS".into(), TEST_MASTER_KEYS.into()),
    ]
}

fn tokens_toml(admin_sha256: &str) -> String {
    let mut entries = vec![format!("{{name = \"test-admin\", tenant = \"*\", sha256 = \"{admin_sha256}\"}}")];
    for (token, tenant) in TENANT_TOKENS {
        entries
            .push(format!("{{name = \"{tenant}-token\", tenant = \"{tenant}\", sha256 = \"{}\"}}", sha256_hex(token)));
    }
    format!("[{}]", entries.join(", "))
}

impl Hookline {
    /// Creates this test's keyspace and tables (idempotent).
    pub fn migrate(bin: &str, env: &TestEnv) {
        let out = Command::new(bin)
            .args(["schema", "migrate"])
            .envs(test_env_vars(env, &sha256_hex(ADMIN_TOKEN)))
            .output()
            .expect("run hookline schema migrate");
        assert!(out.status.success(), "schema migrate: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Creates this test's topics (idempotent).
    pub fn create_topics(bin: &str, env: &TestEnv) {
        let out = Command::new(bin)
            .args(["topics", "create"])
            .envs(test_env_vars(env, &sha256_hex(ADMIN_TOKEN)))
            .output()
            .expect("run hookline topics create");
        assert!(out.status.success(), "topics create: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts `hookline <role>` and, when it serves the API, waits for `/readyz`. A free port
    /// found by binding port 0 can be taken by another process before the child binds it: the
    /// start is retried on a new port when the child exits that early.
    pub async fn start(bin: &str, env: &TestEnv, role: &str, extra: &[(&str, &str)]) -> Self {
        for attempt in 1..=3 {
            let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
            let api: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let log_path = std::env::temp_dir().join(format!("hookline-{}-{role}-{port}.log", env.id));
            let log = std::fs::File::create(&log_path).expect("log file");
            let child = Command::new(bin)
                .arg(role)
                .envs(test_env_vars(env, &sha256_hex(ADMIN_TOKEN)))
                .env("HOOKLINE_API__LISTEN", api.to_string())
                .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn hookline");
            let mut h = Self { child, api, bin: bin.to_string(), role: role.to_string(), log_path: log_path.clone() };
            if role != "all" && role != "api" {
                return h;
            }
            match h.try_wait_ready(Duration::from_secs(60)).await {
                Ok(()) => return h,
                Err(status) => {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if attempt < 3 && log.contains("Address already in use") {
                        continue;
                    }
                    panic!("hookline exited early: {status}; its log ({log_path:?}) ends with:\n{}", tail(&log, 20));
                }
            }
        }
        unreachable!("the loop returns or panics")
    }

    pub async fn wait_ready(&mut self, timeout: Duration) {
        if let Err(status) = self.try_wait_ready(timeout).await {
            panic!("hookline exited early: {status}");
        }
    }

    /// Waits for `/readyz`; `Err` with the exit status when the process ended first.
    async fn try_wait_ready(&mut self, timeout: Duration) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            if let Ok(s) = tokio::net::TcpStream::connect(self.api).await {
                drop(s);
                let (code, _) = crate::http::call(self.api, "GET", "/readyz", None, None).await;
                if code == 200 {
                    return Ok(());
                }
            }
            assert!(Instant::now() < deadline, "hookline not ready after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no drain, no commit.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }

    /// The value of one series (`name{labels}` exactly as exposed) on this process's
    /// `/metrics`; 0 when it is not there.
    pub async fn metric(&self, series: &str) -> f64 {
        let (code, body) = crate::http::call_raw(self.api, "GET", "/metrics", Some(ADMIN_TOKEN), None).await;
        assert_eq!(code, 200, "GET /metrics");
        String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok())
            .sum()
    }

    /// Triggers this process's API fanned out itself (`api.direct_fanout`) and the broker
    /// acknowledged whole.
    pub async fn direct_fanouts(&self) -> u64 {
        self.metric(r#"hookline_direct_fanouts_total{result="ok"}"#).await as u64
    }

    pub fn bin(&self) -> &str {
        &self.bin
    }

    /// What a failing test should print about this process: its role and log file, its last
    /// `lines` warnings and errors, and its last `lines` lines.
    pub fn log_report(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
        format!(
            "--- {} ({}): {} warnings/errors, the last {lines}:\n{}\n--- its last {lines} lines:\n{}",
            self.role,
            self.log_path.display(),
            warnings.len(),
            warnings[warnings.len().saturating_sub(lines)..].join("\n"),
            tail(&log, lines)
        )
    }
}

impl Drop for Hookline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Hex SHA-256, via `sha256sum` to keep this crate free of hashing dependencies.
pub fn sha256_hex(s: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sha256sum");
    child.stdin.take().expect("stdin").write_all(s.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("sha256sum output");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}
