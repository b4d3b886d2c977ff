//! The live API against its own OpenAPI document (`GET /openapi.json`).
//!
//! 1. Every documented operation exists on the running binary (a secured one answers 401
//!    without a token, never 404/405).
//! 2. Real resources (an endpoint, deliveries, DLQ entries, a bulk replay job) are sent through
//!    every operation that reads or changes them, and each answer is checked against the
//!    document with schemathesis' checks, so shapes are validated on real data, not only on
//!    the 4xx answers random ids get.
//! 3. schemathesis (`st run`) fuzzes every operation with a bounded number of generated
//!    requests (`--max-examples`, and the run is killed after [`FUZZ_TIMEOUT`]); checks: no
//!    5xx, every status, content type and body as documented.
//!
//! Needs the local stack and `HOOKLINE_TEST_PYTHON` naming a Python with schemathesis (`dev/test`
//! installs both). Without schemathesis this test fails; it never skips.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hookline_testkit::TestEnv;
use hookline_testkit::http::{call, call_raw};
use hookline_testkit::process::{ADMIN_TOKEN, Hookline, TENANT_TOKENS};
use hookline_testkit::receiver::{Behaviour, Receiver};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hookline");
const WAIT: Duration = Duration::from_secs(40);
/// `api.max_payload_bytes` by default.
const MAX_PAYLOAD: usize = 921_600;
/// The schemathesis release `dev/test` installs.
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Generated requests per operation and phase (`HOOKLINE_FUZZ_EXAMPLES` overrides).
const MAX_EXAMPLES: u32 = 20;
/// Seed of the generated requests, so a failure reproduces (`HOOKLINE_FUZZ_SEED` overrides).
const FUZZ_SEED: u64 = 20_240_917;
/// Longest the fuzz run may take before it is killed and the test fails.
const FUZZ_TIMEOUT: Duration = Duration::from_secs(480);
/// What every answer must satisfy.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// The Python that runs schemathesis; panics (the test fails) when it is not there.
fn python() -> String {
    let python = std::env::var("HOOKLINE_TEST_PYTHON").expect(
        "HOOKLINE_TEST_PYTHON must name a Python with schemathesis installed (dev/test sets it up: \
         ~/.cache/hookline/pyenv)",
    );
    let out = Command::new(&python)
        .args(["-c", "import schemathesis; print(schemathesis.SCHEMATHESIS_VERSION)"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "schemathesis is not installed in {python} (dev/test installs schemathesis=={SCHEMATHESIS_VERSION}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!("schemathesis {version} in {python}");
    python
}

async fn api(h: &Hookline, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(h.api, method, path, Some(ADMIN_TOKEN), body.as_ref()).await
}

/// Polls `path` until `pred` holds.
async fn eventually(h: &Hookline, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, body) = api(h, "GET", path, None).await;
        if code == 200 && pred(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {code} {body}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_api_conforms_to_its_openapi_document() {
    let env = TestEnv::new();
    let python = python();
    Hookline::create_topics(BIN, &env);
    Hookline::migrate(BIN, &env);
    let receiver = Receiver::start().await;
    receiver.set("/down", Behaviour::Status(500));
    let h = Hookline::start(BIN, &env, "all", &[]).await;
    let base = format!("http://{}", h.api);

    let doc = every_documented_operation_is_served(&h).await;
    let known = seed(&h, &receiver).await;
    check_known_resources(&python, &base, &doc, &known);
    fuzz(&python, &base, &env.id);
}

/// The document is served without a token, and each operation it lists answers on the live
/// binary: 401 without a token for secured ones (so the route exists), 2xx for public ones.
async fn every_documented_operation_is_served(h: &Hookline) -> Value {
    let (code, raw) = call_raw(h.api, "GET", "/openapi.json", None, None).await;
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_slice(&raw).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut n = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let concrete = path.replace("{id}", "x").replace("{key_id}", "x").replace("{job_id}", "x");
            let (code, body) = call(h.api, &method.to_uppercase(), &concrete, None, None).await;
            if op["security"] == json!([{}]) {
                assert!((200..300).contains(&code), "{method} {path} (public): {code} {body}");
            } else {
                assert_eq!(code, 401, "{method} {path} without a token: {body}");
                assert_eq!(body["type"], "unauthorized");
            }
            n += 1;
        }
    }
    assert!(n >= 25, "only {n} operations documented");
    doc
}

/// Ids of real resources.
struct Known {
    endpoint: String,
    ed25519_endpoint: String,
    key_id: String,
    delivery: String,
    dlq: Vec<String>,
    job: String,
}

/// An endpoint that accepts, one (ed25519-signed) that fails so three messages land in the DLQ,
/// a delivered message and an (empty) bulk replay job.
async fn seed(h: &Hookline, receiver: &Receiver) -> Known {
    let mut ids = vec![];
    for (url, types, scheme) in [("/ok", "s.ok", "hmac-sha256"), ("/down", "s.down", "ed25519")] {
        let (code, body) = api(
            h,
            "POST",
            "/api/endpoints",
            Some(json!({"tenant_id": "acme", "url": receiver.url(url), "event_types": [types], "signing_scheme": scheme})),
        )
        .await;
        assert_eq!(code, 201, "{body}");
        ids.push((body["id"].as_str().unwrap().to_string(), body["signing_keys"][0]["key_id"].clone()));
    }
    let (endpoint, ed25519_endpoint) = (ids[0].0.clone(), ids[1].0.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut events = vec![json!({"tenant_id": "acme", "event_type": "s.ok", "payload": {"n": 0}})];
    // Binary payloads come back base64 in the DLQ; JSON ones as text.
    events.push(json!({"tenant_id": "acme", "event_type": "s.down", "payload_base64": "/wA=", "content_type": "application/octet-stream"}));
    events.extend((1..3).map(|n| json!({"tenant_id": "acme", "event_type": "s.down", "payload": {"n": n}})));
    let (code, body) = api(h, "POST", "/api/webhooks/trigger/batch", Some(json!({ "events": events }))).await;
    assert_eq!(code, 202, "{body}");

    let list = eventually(h, &format!("/api/deliveries?endpoint_id={endpoint}"), "delivered", |b| {
        b["data"][0]["status"] == "delivered"
    })
    .await;
    let delivery = list["data"][0]["id"].as_str().unwrap().to_string();
    let dlq = eventually(h, &format!("/api/webhooks/dlq?tenant_id=acme&endpoint_id={ed25519_endpoint}"), "DLQ", |b| {
        b["data"].as_array().is_some_and(|d| d.len() == 3)
    })
    .await;
    let dlq = dlq["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    let (code, body) =
        api(h, "POST", "/api/webhooks/dlq/replay", Some(json!({"tenant_id": "acme", "event_type": "nothing.matches"})))
            .await;
    assert_eq!(code, 202, "{body}");
    let job = body["job_id"].as_str().unwrap().to_string();
    eventually(h, &format!("/api/webhooks/dlq/jobs/{job}"), "job", |b| b["state"] == "done").await;
    Known { endpoint, ed25519_endpoint, key_id: ids[0].1.as_str().unwrap().to_string(), delivery, dlq, job }
}

/// Sends real resources through every operation that takes them and checks each answer
/// against the document (schemathesis' checks, run from its Python API).
fn check_known_resources(python: &str, base: &str, doc: &Value, k: &Known) {
    let (acme, globex) = (TENANT_TOKENS[0].0, TENANT_TOKENS[1].0);
    let ep = json!({ "id": k.endpoint });
    // (token, method, path template, path params, query, body, expected status)
    // (json! recurses per token, so the list is built in parts.)
    let endpoints = json!([
        [ADMIN_TOKEN, "GET", "/healthz", {}, {}, null, 200],
        [ADMIN_TOKEN, "GET", "/readyz", {}, {}, null, 200],
        [ADMIN_TOKEN, "GET", "/openapi.json", {}, {}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/endpoints", {}, {}, null, 200],
        [acme, "GET", "/api/endpoints", {}, {}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/endpoints/{id}", ep, {}, null, 200],
        [globex, "GET", "/api/endpoints/{id}", ep, {}, null, 404],
        [ADMIN_TOKEN, "PUT", "/api/endpoints/{id}", ep, {},
            {"url": "http://127.0.0.1:9/ok", "event_types": ["s.ok"], "rate_limit": {"per_second": 5.5, "burst": 3},
             "batch": {"max_size": 10, "max_wait_ms": 100}, "template": {"body": "{\"k\": {{ event_type | json }}}"},
             "headers": {"x-team": "a"}, "retry_schedule_ms": [0, 1000]}, 200],
        [ADMIN_TOKEN, "GET", "/api/endpoints/{id}/health", ep, {"window": 10}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/endpoints/{id}/public-keys", {"id": k.ed25519_endpoint}, {}, null, 200],
        [ADMIN_TOKEN, "POST", "/api/endpoints/{id}/keys/{key_id}/reveal", {"id": k.endpoint, "key_id": k.key_id}, {}, null, 200],
        [ADMIN_TOKEN, "POST", "/api/endpoints/{id}/keys/rotate", ep, {}, {"grace_seconds": 60}, 200],
        [ADMIN_TOKEN, "POST", "/api/endpoints/{id}/keys/rotate", ep, {}, null, 200],
        [ADMIN_TOKEN, "POST", "/api/endpoints/{id}/transform/preview", ep, {},
            {"event_type": "s.ok", "payload": {"a": [1, 2]}}, 200],
        [ADMIN_TOKEN, "POST", "/api/endpoints/{id}/transform/preview", ep, {},
            {"event_type": "s.ok", "payload": {}, "template": {"body": "{{ nope"}}, 400],
    ]);
    let reads_and_dlq = json!([
        [ADMIN_TOKEN, "GET", "/api/deliveries", {}, {"endpoint_id": k.endpoint}, null, 200],
        [acme, "GET", "/api/deliveries", {}, {"status": "delivered", "limit": 1}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/deliveries", {}, {}, null, 400],
        [ADMIN_TOKEN, "GET", "/api/deliveries/{id}", {"id": k.delivery}, {}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/deliveries/{id}/attempts", {"id": k.delivery}, {}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/webhooks/dlq", {}, {"tenant_id": "acme"}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/webhooks/dlq", {}, {"tenant_id": "acme", "limit": 1}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/webhooks/dlq/{id}", {"id": k.dlq[0]}, {}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/webhooks/dlq/{id}", {"id": k.dlq[1]}, {}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/webhooks/dlq/{id}", {"id": k.dlq[2]}, {}, null, 200],
        [ADMIN_TOKEN, "POST", "/api/webhooks/dlq/{id}/replay", {"id": k.dlq[0]}, {}, null, 202],
        [ADMIN_TOKEN, "POST", "/api/webhooks/dlq/{id}/replay", {"id": k.dlq[0]}, {}, null, 409],
        [acme, "DELETE", "/api/webhooks/dlq/{id}", {"id": k.dlq[1]}, {}, null, 200],
        [ADMIN_TOKEN, "DELETE", "/api/webhooks/dlq/{id}", {"id": k.dlq[1]}, {}, null, 409],
        [globex, "DELETE", "/api/webhooks/dlq/{id}", {"id": k.dlq[2]}, {}, null, 404],
        [ADMIN_TOKEN, "GET", "/api/webhooks/dlq/jobs/{job_id}", {"job_id": k.job}, {}, null, 200],
        [ADMIN_TOKEN, "POST", "/api/webhooks/dlq/replay", {}, {}, {"tenant_id": "acme", "max": 1}, 202],
        [acme, "POST", "/api/webhooks/dlq/replay", {}, {}, {"tenant_id": "globex"}, 403],
    ]);
    let the_rest = json!([
        [ADMIN_TOKEN, "GET", "/api/system/lag", {}, {}, null, 200],
        [ADMIN_TOKEN, "GET", "/metrics", {}, {}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/circuits", {}, {}, null, 200],
        [acme, "GET", "/api/endpoints/{id}/circuit", ep, {}, null, 200],
        [globex, "GET", "/api/endpoints/{id}/circuit", ep, {}, null, 404],
        [ADMIN_TOKEN, "GET", "/api/overview", {}, {"tenant_id": "acme", "window": 30}, null, 200],
        [acme, "GET", "/api/overview", {}, {"series_endpoint_id": k.endpoint}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/webhooks/dlq/search", {}, {"tenant_id": "acme", "q": &k.dlq[2][..8]}, null, 200],
        [ADMIN_TOKEN, "GET", "/api/webhooks/dlq/search", {}, {"tenant_id": "acme"}, null, 400],
        [ADMIN_TOKEN, "GET", "/api/webhooks/dlq/{id}/request", {"id": k.dlq[2]}, {}, null, 200],
        [globex, "GET", "/api/webhooks/dlq/{id}/request", {"id": k.dlq[2]}, {}, null, 404],
        [acme, "GET", "/api/system/lag", {}, {}, null, 403],
        [ADMIN_TOKEN, "POST", "/api/webhooks/trigger", {}, {},
            {"tenant_id": "acme", "event_type": "s.ok", "payload": [1, "two"], "idempotency_key": "k1"}, 202],
        [acme, "POST", "/api/webhooks/trigger", {}, {}, {"event_type": "s.ok", "payload": {}, "endpoint_ids": [k.endpoint]}, 202],
        [ADMIN_TOKEN, "POST", "/api/webhooks/trigger", {}, {}, {"event_type": "s.ok", "payload": {}}, 400],
        // The largest payload the default configuration accepts fits the event log (it used to
        // answer 503 above 1,000,000 bytes); one byte more is 413.
        [ADMIN_TOKEN, "POST", "/api/webhooks/trigger", {}, {},
            {"tenant_id": "acme", "event_type": "s.big", "payload": "x".repeat(MAX_PAYLOAD - 2)}, 202],
        [ADMIN_TOKEN, "POST", "/api/webhooks/trigger", {}, {},
            {"tenant_id": "acme", "event_type": "s.big", "payload": "x".repeat(MAX_PAYLOAD - 1)}, 413],
        [ADMIN_TOKEN, "POST", "/api/webhooks/trigger/batch", {}, {}, {"events": []}, 400],
        [ADMIN_TOKEN, "POST", "/api/endpoints", {}, {}, {"tenant_id": "acme", "url": "ftp://x", "event_types": ["a"]}, 400],
        [ADMIN_TOKEN, "DELETE", "/api/endpoints/{id}", ep, {}, null, 204],
        [ADMIN_TOKEN, "GET", "/api/endpoints/{id}", ep, {}, null, 404],
    ]);
    let calls: Vec<Value> =
        [endpoints, reads_and_dlq, the_rest].into_iter().flat_map(|v| v.as_array().unwrap().clone()).collect();
    // Every documented operation is exercised here at least once.
    let exercised: std::collections::BTreeSet<(String, String)> =
        calls.iter().map(|c| (c[2].as_str().unwrap().to_string(), c[1].as_str().unwrap().to_lowercase())).collect();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                exercised.contains(&(path.clone(), method.clone())),
                "{method} {path} is not exercised with real data"
            );
        }
    }
    let script = r#"
import json, sys
import schemathesis
from schemathesis.checks import (content_type_conformance, not_a_server_error,
    response_schema_conformance, status_code_conformance)

d = json.load(sys.stdin)
schema = schemathesis.openapi.from_url(d["base"] + "/openapi.json")
checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
failed = 0
for token, method, path, params, query, body, expected in d["calls"]:
    op = schema[path][method]
    kwargs = {"path_parameters": params, "query": query}
    if body is not None:
        kwargs["body"] = body
        kwargs["media_type"] = "application/json"
    case = op.Case(**kwargs)
    label = f"{method} {case.formatted_path} {json.dumps(query)}"
    try:
        response = case.call_and_validate(base_url=d["base"], headers={"Authorization": "Bearer " + token}, checks=checks)
    except Exception as e:  # a failed check raises, with every failure in its message
        failed += 1
        print(f"FAIL {label}: {e}")
        continue
    if response.status_code != expected:
        failed += 1
        print(f"FAIL {label}: status {response.status_code}, expected {expected}: {response.text[:500]}")
    else:
        print(f"ok   {label} -> {response.status_code}")
sys.exit(1 if failed else 0)
"#;
    let input = json!({ "base": base, "calls": calls });
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "answers on real resources contradict the document:\n{}\n{}",
        report.lines().filter(|l| l.starts_with("FAIL")).collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `st run` over every operation, bounded in examples and time.
fn fuzz(python: &str, base: &str, id: &str) {
    let examples = std::env::var("HOOKLINE_FUZZ_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.to_string());
    let seed = std::env::var("HOOKLINE_FUZZ_SEED").unwrap_or_else(|_| FUZZ_SEED.to_string());
    let dir = std::env::temp_dir().join(format!("hookline-{id}-schemathesis"));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("st-run.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let entry = "import sys\nfrom schemathesis.cli import schemathesis\nsys.argv[0] = 'st'\nsys.exit(schemathesis())";
    let mut child = Command::new(python)
        .args(["-c", entry, "run", &format!("{base}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples, "--seed", &seed])
        .args(["--workers", "2", "--request-timeout", "20", "--generation-database", "none"])
        .args(["--no-color", "--output-truncate", "false", "--suppress-health-check", "too_slow,filter_too_much"])
        .current_dir(&dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run schemathesis");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > FUZZ_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = std::fs::read_to_string(&log_path).unwrap_or_default();
    eprintln!("{report}\n(schemathesis took {:.0?}; log {})", started.elapsed(), log_path.display());
    let status = status.unwrap_or_else(|| panic!("schemathesis did not finish within {FUZZ_TIMEOUT:?}"));
    assert!(status.success(), "schemathesis found answers that contradict the document (seed {seed}); see above");
}
