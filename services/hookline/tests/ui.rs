//! The two pages in a real headless browser (Debian's Chromium driven by playwright-core from
//! Node), against the real stack: sign in; a failing endpoint's message appears in the DLQ
//! viewer; its detail shows payload, headers and every attempt; the endpoint is fixed, the
//! entry replayed and it leaves the list; another is discarded; a filtered set is bulk
//! replayed; the dashboard shows the failure spike and the open circuit; signed-out access is
//! refused. The browser script is `tests/ui/pages.cjs`; it saves screenshots under
//! `artifacts/ui/` (git-ignored).
//!
//! The dispatcher does not emit circuit events yet (flow control is separate work), so this
//! test produces a `CircuitOpened` and a `DeliveryDeferred` for the failing endpoint onto the
//! events topic itself, with the real codec, as the dispatcher will.
//!
//! `dev/test` installs Chromium and playwright-core and exports `HOOKLINE_TEST_CHROMIUM` and
//! `HOOKLINE_TEST_NODE_MODULES` (and `HOOKLINE_TEST_NODE`); with the stack up and those missing
//! the test fails rather than skipping.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::{get, post};
use hookline_schemas::{CircuitOpened, Codec, DeliveryDeferred, Envelope, Event};
use hookline_testkit::TestEnv;
use hookline_testkit::http::call;
use hookline_testkit::process::{ADMIN_TOKEN, Hookline, TENANT_TOKENS};
use hookline_testkit::receiver::{Behaviour, Receiver};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hookline");
const WAIT: Duration = Duration::from_secs(60);
/// Longest the browser script may run.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the browser tests need it. Run them through `dev/test`, which installs Chromium and playwright-core and exports it")
    })
}

async fn api(h: &Hookline, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(h.api, method, path, Some(ADMIN_TOKEN), body.as_ref()).await
}

async fn eventually(h: &Hookline, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, body) = api(h, "GET", path, None).await;
        if code == 200 && pred(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {code} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn endpoint(h: &Hookline, tenant: &str, url: String, types: &[&str], description: &str) -> String {
    let (code, body) = api(
        h,
        "POST",
        "/api/endpoints",
        Some(json!({"tenant_id": tenant, "url": url, "event_types": types, "description": description})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn trigger(h: &Hookline, tenant: &str, event_type: &str, payload: Value) {
    let (code, body) = api(
        h,
        "POST",
        "/api/webhooks/trigger",
        Some(json!({"tenant_id": tenant, "event_type": event_type, "payload": payload})),
    )
    .await;
    assert_eq!(code, 202, "{body}");
}

/// A small HTTP server the browser script calls to change the receiver (fix an endpoint) and to
/// read what the receiver got.
async fn control(receiver: Receiver) -> SocketAddr {
    async fn set(State(r): State<Receiver>, Path((name, status)): Path<(String, u16)>) -> &'static str {
        r.set(&format!("/{name}"), Behaviour::Status(status));
        "ok"
    }
    async fn received(State(r): State<Receiver>, Path(name): Path<String>) -> axum::Json<Value> {
        axum::Json(json!({ "received": r.received(&format!("/{name}")).len() }))
    }
    let app = axum::Router::new()
        .route("/receiver/{name}/status/{status}", post(set))
        .route("/receiver/{name}", get(received))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Flow-control events for `endpoint`, as the dispatcher's circuit breaker will emit them.
async fn open_circuit(env: &TestEnv, tenant: &str, endpoint: &str) {
    let codec = Codec::new().unwrap();
    let producer = hookline_kafka::producer::EventProducer::new(&env.config.kafka, "ui-test").unwrap();
    let now = hookline_domain::time::now_ms();
    let envelope = |name: &str| Envelope {
        event_id: hookline_domain::ids::new_event_id(),
        record_type: name.into(),
        occurred_at: now,
        tenant_id: tenant.into(),
        endpoint_id: Some(endpoint.into()),
        ..Default::default()
    };
    let opened = CircuitOpened {
        envelope: envelope(CircuitOpened::NAME),
        failure_ratio: 1.0,
        window_requests: 9,
        open_until: now + 10 * 60_000,
    };
    let deferred = DeliveryDeferred {
        envelope: envelope(DeliveryDeferred::NAME),
        cause: "circuit_open".into(),
        until: now + 10 * 60_000,
    };
    let topic = format!("{}events", env.config.kafka.topic_prefix);
    producer.send(&topic, endpoint.as_bytes(), &codec.encode(&opened).unwrap()).await.unwrap();
    producer.send(&topic, endpoint.as_bytes(), &codec.encode(&deferred).unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_viewer_and_health_dashboard_in_a_real_browser() {
    let env = TestEnv::new();
    let chromium = required_env("HOOKLINE_TEST_CHROMIUM");
    let node_modules = required_env("HOOKLINE_TEST_NODE_MODULES");
    let node = std::env::var("HOOKLINE_TEST_NODE").unwrap_or_else(|_| "node".into());

    Hookline::create_topics(BIN, &env);
    Hookline::migrate(BIN, &env);
    let receiver = Receiver::start().await;
    let h = Hookline::start(BIN, &env, "all", &[]).await;
    receiver.set("/orders", Behaviour::Status(500));
    receiver.set("/billing", Behaviour::Status(503));
    let orders = endpoint(&h, "acme", receiver.url("/orders"), &["order.*"], "Order sync").await;
    let billing = endpoint(&h, "acme", receiver.url("/billing"), &["invoice.*"], "Billing").await;
    let ok = endpoint(&h, "acme", receiver.url("/ok"), &["user.*"], "Users").await;
    endpoint(&h, "globex", receiver.url("/globex"), &["user.*"], "Globex users").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 1..=3 {
        trigger(&h, "acme", "order.created", json!({"order_id": n, "items": [{"sku": "A-1", "qty": n}]})).await;
    }
    for n in 1..=2 {
        trigger(&h, "acme", "invoice.paid", json!({"invoice_id": n, "amount_cents": 1250 * n})).await;
    }
    for n in 1..=6 {
        trigger(&h, "acme", "user.signed_up", json!({"user_id": n})).await;
    }
    receiver.wait_for("/ok", 6, WAIT).await;
    eventually(&h, "/api/webhooks/dlq?tenant_id=acme", "five DLQ entries", |b| {
        b["data"].as_array().is_some_and(|d| d.len() == 5)
    })
    .await;
    open_circuit(&env, "acme", &orders).await;

    // The read side of flow control through the API: circuit, deferral, open DLQ counts.
    let overview = eventually(&h, "/api/overview?tenant_id=acme&window=15", "circuit projected", |b| {
        b["endpoints"].as_array().is_some_and(|eps| {
            eps.iter().any(|e| {
                e["id"] == json!(orders) && e["circuit"]["state"] == json!("open") && e["deferred"] == json!(1)
            })
        })
    })
    .await;
    let row =
        |id: &str| overview["endpoints"].as_array().unwrap().iter().find(|e| e["id"] == json!(id)).unwrap().clone();
    assert_eq!(row(&orders)["dlq_depth"], json!(3), "{overview}");
    assert_eq!(row(&orders)["successes"], json!(0));
    assert_eq!(row(&orders)["failures"], json!(9), "three attempts of three messages: {overview}");
    assert_eq!(row(&billing)["dlq_depth"], json!(2));
    assert_eq!(row(&ok)["success_rate"], json!(1.0));
    assert_eq!(row(&ok)["circuit"]["state"], json!("closed"));
    assert_eq!(overview["endpoints"].as_array().unwrap().len(), 3, "only acme's endpoints");
    let minutes = overview["series"]["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 15);
    let failed: i64 = minutes.iter().map(|m| m["failed"].as_i64().unwrap()).sum();
    assert_eq!(failed, 15, "every failed attempt of both failing endpoints is charted");
    let (code, _) = call(h.api, "GET", "/api/overview?tenant_id=acme", Some(TENANT_TOKENS[1].0), None).await;
    assert_eq!(code, 403, "a tenant token never reads another tenant's overview");

    // The browser part.
    let control = control(receiver.clone()).await;
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../artifacts/ui");
    std::fs::create_dir_all(&artifacts).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/pages.cjs");
    let scenario = json!({
        "base": format!("http://{}", h.api),
        "control": format!("http://{control}"),
        "admin_token": ADMIN_TOKEN,
        "tenant_token": TENANT_TOKENS[1].0,
        "orders": {"id": orders, "url": receiver.url("/orders")},
        "billing": {"id": billing, "url": receiver.url("/billing")},
        "ok": {"id": ok, "url": receiver.url("/ok")},
    });
    let child = tokio::process::Command::new(&node)
        .arg(&script)
        .env("HOOKLINE_TEST_CHROMIUM", &chromium)
        .env("HOOKLINE_TEST_NODE_MODULES", &node_modules)
        .env("UI_SCENARIO", scenario.to_string())
        .env("UI_ARTIFACTS", &artifacts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {node}: {e}"));
    let out = tokio::time::timeout(BROWSER_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the browser script did not finish within {BROWSER_TIMEOUT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "browser script failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("ALL STEPS PASSED"), "{stdout}");

    // What the browser did, as the API sees it: one of three orders entries left, billing empty;
    // the replays reached the receiver.
    let left = eventually(&h, "/api/webhooks/dlq?tenant_id=acme", "one entry left", |b| {
        b["data"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    assert_eq!(left["data"][0]["endpoint_id"], json!(orders), "{left}");
    assert_eq!(receiver.received("/orders").len(), 9 + 1, "three attempts each, then one replay");
    assert_eq!(receiver.received("/billing").len(), 6 + 2, "three attempts each, then two bulk replays");
    eventually(&h, "/api/overview?tenant_id=acme", "open DLQ counts follow", |b| {
        b["endpoints"].as_array().is_some_and(|eps| {
            eps.iter().any(|e| e["id"] == json!(orders) && e["dlq_depth"] == json!(1))
                && eps.iter().any(|e| e["id"] == json!(billing) && e["dlq_depth"] == json!(0))
        })
    })
    .await;
}
