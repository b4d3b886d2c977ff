//! The binary as an operator runs it.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hookline");

#[test]
fn a_bad_config_value_exits_2_naming_the_key_and_value() {
    for (var, value, key) in [
        ("HOOKLINE_KAFKA__PARTITIONS", "0", "kafka.partitions"),
        ("HOOKLINE_KAFKA__PARTITIONS", "lots", "kafka.partitions"),
        ("HOOKLINE_API__LISTEN", "nowhere", "api.listen"),
        ("HOOKLINE_LOG__FORMAT", "xml", "log.format"),
    ] {
        let out = Command::new(BIN).args(["config", "check"]).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key) && stderr.contains(value), "{var}={value}: {stderr}");
    }
}

#[test]
fn roles_that_hold_secrets_refuse_to_start_without_a_valid_master_key() {
    for (value, hint) in [("", "secrets.master_keys"), ("k1:c2hvcnQ=", "secrets.master_keys")] {
        let out = Command::new(BIN).arg("dispatcher").env("HOOKLINE_SECRETS__MASTER_KEYS", value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{value:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(hint) && !stderr.contains("c2hvcnQ"), "{stderr}");
    }
    let out = Command::new(BIN).args(["secrets", "new-master-key", "--id", "k7"]).output().unwrap();
    let entry = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(entry.starts_with("k7:") && entry.len() > 40, "{entry}");
    // config check never prints the key.
    let out =
        Command::new(BIN).args(["config", "check"]).env("HOOKLINE_SECRETS__MASTER_KEYS", &entry).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&entry[3..]));
}

#[test]
fn a_missing_config_file_is_an_error() {
    let out = Command::new(BIN).args(["--config", "/nonexistent/hookline.toml", "config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/hookline.toml"));
}

#[test]
fn config_check_prints_the_effective_config() {
    let out = Command::new(BIN).args(["config", "check"]).env("HOOKLINE_KAFKA__PARTITIONS", "7").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("partitions = 7"));
}

#[test]
fn all_roles_answer_healthz_stop_on_sigterm_and_log_plain_text() {
    let env = hookline_testkit::TestEnv::new();
    hookline_testkit::process::Hookline::create_topics(BIN, &env);
    hookline_testkit::process::Hookline::migrate(BIN, &env);
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(BIN)
        .arg("all")
        .env("HOOKLINE_API__LISTEN", format!("127.0.0.1:{port}"))
        .env("HOOKLINE_KAFKA__TOPIC_PREFIX", &env.config.kafka.topic_prefix)
        .env("HOOKLINE_CQL__KEYSPACE", &env.config.cql.keyspace)
        .env("HOOKLINE_SECRETS__MASTER_KEYS", hookline_testkit::process::TEST_MASTER_KEYS)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some(b) = http_get(port, "/healthz") {
            break b;
        }
        assert!(Instant::now() < deadline, "no /healthz within 30 s");
        assert!(child.try_wait().unwrap().is_none(), "hookline exited early");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.starts_with("HTTP/1.1 200") && body.contains("\"ok\""), "{body}");

    // Ready once Kafka answers and the endpoint catalog is loaded.
    let ready = loop {
        let r = http_get(port, "/readyz").unwrap();
        if r.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ready.starts_with("HTTP/1.1 200") && ready.contains("\"endpoint_catalog\""), "{ready}");

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "hookline did not stop within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    // A pipe (or a file, or journald) gets plain text: colour codes only on a terminal.
    assert!(stderr.contains(" INFO ") && !stderr.contains('\u{1b}'), "{stderr:?}");
}

/// A minimal HTTP/1.1 GET, so the test needs no client crate.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
