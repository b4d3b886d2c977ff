//! What operators see from outside: `/metrics` (every family, checked by `promtool check
//! metrics`), the worker roles' metrics listener, and `/readyz`.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hookline_testkit::TestEnv;
use hookline_testkit::http::call;
use hookline_testkit::process::{ADMIN_TOKEN, Hookline};
use hookline_testkit::receiver::{Behaviour, Receiver};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_hookline");

/// `promtool check metrics` over `text`; panics with its complaints.
fn promtool_check(text: &str) {
    use std::io::Write;
    let bin = std::env::var("HOOKLINE_TEST_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = Command::new(&bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin} (dev/test installs Debian's prometheus package): {e}"));
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GET `path`: (status line and headers, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let (head, body) = get(addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    // axum answers with a length, not chunks, for a String body.
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_cover_the_pipeline_and_pass_promtool() {
    let env = TestEnv::new();
    Hookline::create_topics(BIN, &env);
    Hookline::migrate(BIN, &env);
    let h = Hookline::start(BIN, &env, "all", &[]).await;
    let receiver = Receiver::start().await;
    receiver.set("/bad", Behaviour::Status(500));
    for (path, ty) in [("/ok", "m.ok"), ("/bad", "m.bad")] {
        let body = json!({"tenant_id": "acme", "url": receiver.url(path), "event_types": [ty]});
        let (code, b) = call(h.api, "POST", "/api/endpoints", Some(ADMIN_TOKEN), Some(&body)).await;
        assert_eq!(code, 201, "{b}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for ty in ["m.ok", "m.bad"] {
        for i in 0..5 {
            let body = json!({"tenant_id": "acme", "event_type": ty, "payload": {"i": i}});
            let (code, _) = call(h.api, "POST", "/api/webhooks/trigger", Some(ADMIN_TOKEN), Some(&body)).await;
            assert_eq!(code, 202);
        }
    }
    let bad = json!({"tenant_id": "acme", "event_type": "", "payload": {}});
    let (code, _) = call(h.api, "POST", "/api/webhooks/trigger", Some(ADMIN_TOKEN), Some(&bad)).await;
    assert_eq!(code, 400);
    receiver.wait_for("/ok", 5, Duration::from_secs(30)).await;
    // Three attempts each (test schedule), then the DLQ.
    receiver.wait_for("/bad", 15, Duration::from_secs(30)).await;
    let expected = [
        "hookline_triggers_accepted_total{source=\"api\"} 10",
        "hookline_triggers_rejected_total{reason=\"invalid\"} 1",
        "hookline_deliveries_total{outcome=\"succeeded\",error_kind=\"\"} 5",
        "hookline_deliveries_total{outcome=\"dead_lettered\",error_kind=\"http_status\"} 5",
        "hookline_deliveries_total{outcome=\"retrying\",error_kind=\"http_status\"} 10",
        "hookline_attempts_total{status_class=\"2xx\"} 5",
        "hookline_attempts_total{status_class=\"5xx\"} 15",
        "hookline_attempt_duration_seconds_count{status_class=\"2xx\"} 5",
        "hookline_retries_scheduled_total 10",
        "hookline_dlq_moved_total 5",
        "hookline_consumer_lag{group=\"dispatcher\"",
        "hookline_kafka_producer_queue{client=\"dispatcher-a\"}",
        "hookline_kafka_producer_queue{client=\"dispatcher-b\"}",
        "hookline_kafka_producer_queue{client=\"api\"}",
        "hookline_redis_calls_total{op=\"breaker_report\",result=\"ok\"}",
        "hookline_cql_call_duration_seconds_bucket{le=",
        "hookline_record_age_at_pickup_seconds_bucket{le=\"0.0005\",op=\"router\"}",
        "hookline_record_age_at_pickup_seconds_count{op=\"dispatcher\"}",
        "hookline_record_age_at_pickup_seconds_count{op=\"projector\"}",
        "hookline_process_resident_memory_bytes ",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = scrape(h.api).await;
        let missing: Vec<_> = expected.iter().filter(|e| !text.contains(*e)).collect();
        if missing.is_empty() {
            break text;
        }
        assert!(Instant::now() < deadline, "missing {missing:?} in\n{text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(text.contains("hookline_retries_due_total "), "{text}");
    let events = text
        .lines()
        .find_map(|l| l.strip_prefix("hookline_projector_events_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(events > 0.0, "the projector counts what it applies");
    // Each role's age histogram exists from its start: check that records were observed.
    let picked_up = |role: &str| {
        let prefix = format!("hookline_record_age_at_pickup_seconds_count{{op=\"{role}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
    };
    assert!(picked_up("router") >= 10.0, "the router observed each of the 10 triggers\n{text}");
    assert!(
        picked_up("dispatcher") >= 20.0,
        "the dispatcher observed the 5 good deliveries and the 15 attempts to the failing endpoint\n{text}"
    );
    assert!(picked_up("projector") > 0.0, "the projector observed its records\n{text}");
    promtool_check(&text);

    // Readiness names its checks.
    let (code, ready) = call(h.api, "GET", "/readyz", None, None).await;
    assert_eq!(code, 200, "{ready}");
    let names: Vec<&str> = ready["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for n in ["kafka", "endpoint_catalog", "cql", "redis"] {
        assert!(names.contains(&n), "{n} in {ready}");
    }

    // A worker role without the api serves its own metrics when asked to.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let _worker =
        Hookline::start(BIN, &env, "scheduler", &[("HOOKLINE_TELEMETRY__METRICS_LISTEN", listen.as_str())]).await;
    let addr = listen.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the worker's metrics listener never came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let worker = scrape(addr).await;
    assert!(worker.contains("hookline_retries_due_total"), "{worker}");
    promtool_check(&worker);
    let (head, _) = get(addr, "/healthz").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// With `telemetry.otlp_endpoint` set, a delivery's spans (trigger accepted, routed, delivered,
/// with their ids) reach an OTLP/HTTP collector.
#[tokio::test(flavor = "multi_thread")]
async fn spans_are_exported_over_otlp_when_configured() {
    use std::sync::{Arc, Mutex};
    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let b = bodies.clone();
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let b = b.clone();
            async move {
                b.lock().unwrap().push(body.to_vec());
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let env = TestEnv::new();
    Hookline::create_topics(BIN, &env);
    Hookline::migrate(BIN, &env);
    let mut h = Hookline::start(BIN, &env, "all", &[("HOOKLINE_TELEMETRY__OTLP_ENDPOINT", otlp.as_str())]).await;
    let receiver = Receiver::start().await;
    let body = json!({"tenant_id": "acme", "url": receiver.url("/t"), "event_types": ["traced.e"]});
    let (code, _) = call(h.api, "POST", "/api/endpoints", Some(ADMIN_TOKEN), Some(&body)).await;
    assert_eq!(code, 201);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = json!({"tenant_id": "acme", "event_type": "traced.e", "payload": {"x": 1}});
    let (code, out) = call(h.api, "POST", "/api/webhooks/trigger", Some(ADMIN_TOKEN), Some(&t)).await;
    assert_eq!(code, 202);
    let trigger_id = out["trigger_id"].as_str().unwrap().to_string();
    receiver.wait_for("/t", 1, Duration::from_secs(30)).await;
    // The API fans the trigger out itself, so the webhook can arrive before the router has taken
    // the trigger record (and opened its `route` span): wait for the router's pickup first.
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.metric(r#"hookline_record_age_at_pickup_seconds_count{op="router"}"#).await == 0.0 {
        assert!(Instant::now() < deadline, "the router never took the trigger record");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A clean stop flushes whatever the batch exporter still holds.
    h.stop();
    let found = |needle: &[u8]| bodies.lock().unwrap().iter().any(|b| b.windows(needle.len()).any(|w| w == needle));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(found(b"deliver") && found(b"http_post") && found(b"route") && found(trigger_id.as_bytes())) {
        assert!(Instant::now() < deadline, "spans with the trigger id never reached the collector");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(found(b"accept_trigger"));
}
