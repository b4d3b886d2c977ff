//! The read side through the API: deliveries, attempts, health, the DLQ lifecycle, tenancy,
//! pagination across time buckets, exact counts across a projector kill -9, and rebuild.

use std::time::{Duration, Instant};

use hookline_schemas::{Codec, DeliveryRequested, Envelope};
use hookline_testkit::TestEnv;
use hookline_testkit::http::call;
use hookline_testkit::process::{ADMIN_TOKEN, Hookline};
use hookline_testkit::receiver::{Behaviour, Receiver};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hookline");
const WAIT: Duration = Duration::from_secs(40);

async fn api(h: &Hookline, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(h.api, method, path, Some(token), body.as_ref()).await
}

/// Polls `path` until `pred` holds.
async fn eventually(h: &Hookline, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, body) = api(h, ADMIN_TOKEN, "GET", path, None).await;
        if code == 200 && pred(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {code} {body}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn setup(env: &TestEnv) -> (Hookline, Receiver) {
    Hookline::create_topics(BIN, env);
    Hookline::migrate(BIN, env);
    let receiver = Receiver::start().await;
    let h = Hookline::start(BIN, env, "all", &[]).await;
    (h, receiver)
}

async fn endpoint(h: &Hookline, tenant: &str, url: String, types: &[&str]) -> String {
    let (code, body) = api(
        h,
        ADMIN_TOKEN,
        "POST",
        "/api/endpoints",
        Some(json!({"tenant_id": tenant, "url": url, "event_types": types})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn trigger(h: &Hookline, tenant: &str, event_type: &str, payload: Value) {
    let (code, body) = api(
        h,
        ADMIN_TOKEN,
        "POST",
        "/api/webhooks/trigger",
        Some(json!({"tenant_id": tenant, "event_type": event_type, "payload": payload})),
    )
    .await;
    assert_eq!(code, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_attempts_health_and_the_dlq_lifecycle() {
    let env = TestEnv::new();
    let (h, receiver) = setup(&env).await;
    receiver.set("/flaky", Behaviour::FailTimes { times: 2, status: 502 });
    receiver.set("/down", Behaviour::Status(500));
    let flaky = endpoint(&h, "acme", receiver.url("/flaky"), &["a.flaky"]).await;
    let down = endpoint(&h, "acme", receiver.url("/down"), &["a.down"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    trigger(&h, "acme", "a.flaky", json!({"n": 1})).await;
    for n in 0..3 {
        trigger(&h, "acme", "a.down", json!({"n": n})).await;
    }

    // The flaky delivery: listed by endpoint, delivered on attempt 3, with three attempts.
    let list = eventually(&h, &format!("/api/deliveries?endpoint_id={flaky}"), "flaky delivered", |b| {
        b["data"][0]["status"] == json!("delivered")
    })
    .await;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    let (_, d) = api(&h, ADMIN_TOKEN, "GET", &format!("/api/deliveries/{id}"), None).await;
    assert_eq!(d["attempts"], json!(3), "{d}");
    assert_eq!(d["last_status_code"], json!(200));
    let (_, a) = api(&h, ADMIN_TOKEN, "GET", &format!("/api/deliveries/{id}/attempts"), None).await;
    let outcomes: Vec<_> = a["data"].as_array().unwrap().iter().map(|x| x["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["failed", "failed", "succeeded"]);
    assert_eq!(a["data"][0]["status_code"], json!(502));

    // Health: 1 success and 2 failures for the flaky endpoint.
    eventually(&h, &format!("/api/endpoints/{flaky}/health?window=10"), "health", |b| {
        b["successes"] == json!(1) && b["failures"] == json!(2)
    })
    .await;

    // Three entries reach the DLQ.
    let dlq = eventually(&h, "/api/webhooks/dlq?tenant_id=acme", "three DLQ entries", |b| {
        b["data"].as_array().is_some_and(|d| d.len() == 3)
    })
    .await;
    let ids: Vec<String> =
        dlq["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert!(dlq["data"].as_array().unwrap().iter().all(|e| e["endpoint_id"] == json!(down)));
    let (_, detail) = api(&h, ADMIN_TOKEN, "GET", &format!("/api/webhooks/dlq/{}", ids[0]), None).await;
    assert_eq!(detail["entry"]["state"], json!("open"), "{detail}");
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 3);
    assert!(detail["entry"]["payload"].as_str().unwrap().contains("\"n\""));

    // Fix the endpoint, replay one: delivered with the same webhook-id, gone from the list.
    receiver.set("/down", Behaviour::Status(200));
    let before = receiver.received("/down").len();
    let (code, r) = api(&h, ADMIN_TOKEN, "POST", &format!("/api/webhooks/dlq/{}/replay", ids[0]), None).await;
    assert_eq!(code, 202, "{r}");
    let token = r["consistency_token"].as_str().unwrap();
    let (_, after) =
        api(&h, ADMIN_TOKEN, "GET", &format!("/api/webhooks/dlq?tenant_id=acme&consistency={token}"), None).await;
    assert!(after["data"].as_array().unwrap().iter().all(|e| e["id"] != json!(ids[0])), "{after}");
    let got = receiver.wait_for("/down", before + 1, WAIT).await;
    let msg_id = detail["entry"]["message_id"].as_str().unwrap();
    assert!(got.iter().skip(before).any(|g| g.headers["webhook-id"] == msg_id), "the replay keeps the webhook-id");
    // A second replay of the same entry: 409, nothing emitted.
    let (code, _) = api(&h, ADMIN_TOKEN, "POST", &format!("/api/webhooks/dlq/{}/replay", ids[0]), None).await;
    assert_eq!(code, 409);

    // Discard another: gone; replaying it afterwards: 409. Unknown ids: 404.
    let (code, r) = api(&h, ADMIN_TOKEN, "DELETE", &format!("/api/webhooks/dlq/{}", ids[1]), None).await;
    assert_eq!(code, 200, "{r}");
    let (code, _) = api(&h, ADMIN_TOKEN, "POST", &format!("/api/webhooks/dlq/{}/replay", ids[1]), None).await;
    assert_eq!(code, 409);
    let (code, _) = api(&h, ADMIN_TOKEN, "POST", "/api/webhooks/dlq/nope/replay", None).await;
    assert_eq!(code, 404);
    let (code, _) = api(&h, ADMIN_TOKEN, "DELETE", "/api/webhooks/dlq/nope", None).await;
    assert_eq!(code, 404);

    // Bulk replay of what is left (one entry), with a visible job.
    let (code, job) = api(
        &h,
        ADMIN_TOKEN,
        "POST",
        "/api/webhooks/dlq/replay",
        Some(json!({"tenant_id": "acme", "endpoint_id": down})),
    )
    .await;
    assert_eq!(code, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap();
    let done =
        eventually(&h, &format!("/api/webhooks/dlq/jobs/{job_id}"), "job done", |b| b["state"] == json!("done")).await;
    assert_eq!(done["replayed"], json!(1), "{done}");
    eventually(&h, "/api/webhooks/dlq?tenant_id=acme", "DLQ empty", |b| b["data"] == json!([])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_never_sees_another_tenants_rows_and_bad_params_are_named() {
    let env = TestEnv::new();
    let (h, receiver) = setup(&env).await;
    receiver.set("/g", Behaviour::Status(500));
    let acme_ep = endpoint(&h, "acme", receiver.url("/a"), &["t.x"]).await;
    let globex_ep = endpoint(&h, "globex", receiver.url("/g"), &["t.x"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    trigger(&h, "acme", "t.x", json!({})).await;
    trigger(&h, "globex", "t.x", json!({})).await;
    let g = eventually(&h, "/api/webhooks/dlq?tenant_id=globex", "globex DLQ", |b| {
        b["data"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    let g_dlq = g["data"][0]["id"].as_str().unwrap().to_string();
    let g_list = eventually(&h, &format!("/api/deliveries?endpoint_id={globex_ep}"), "globex delivery", |b| {
        b["data"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    let g_delivery = g_list["data"][0]["id"].as_str().unwrap().to_string();
    let acme = "acme-token";

    // Every get and list route, as acme, for globex's rows.
    for path in [
        format!("/api/endpoints/{globex_ep}"),
        format!("/api/endpoints/{globex_ep}/health"),
        format!("/api/deliveries/{g_delivery}"),
        format!("/api/deliveries/{g_delivery}/attempts"),
        format!("/api/webhooks/dlq/{g_dlq}"),
    ] {
        let (code, _) = api(&h, acme, "GET", &path, None).await;
        assert_eq!(code, 404, "{path}");
    }
    let (code, _) = api(&h, acme, "POST", &format!("/api/webhooks/dlq/{g_dlq}/replay"), None).await;
    assert_eq!(code, 404);
    let (code, _) = api(&h, acme, "GET", &format!("/api/deliveries?endpoint_id={globex_ep}"), None).await;
    assert_eq!(code, 400);
    let (code, _) = api(&h, acme, "GET", "/api/webhooks/dlq?tenant_id=globex", None).await;
    assert_eq!(code, 403);
    let (code, _) = api(&h, acme, "GET", "/api/deliveries?tenant_id=globex", None).await;
    assert_eq!(code, 403);
    let (_, eps) = api(&h, acme, "GET", "/api/endpoints", None).await;
    assert!(eps["data"].as_array().unwrap().iter().all(|e| e["tenant_id"] == json!("acme")));
    let (_, own) = api(&h, acme, "GET", "/api/webhooks/dlq", None).await;
    assert_eq!(own["data"], json!([]), "acme has no DLQ entries");
    let (code, own) = api(&h, acme, "GET", &format!("/api/deliveries?endpoint_id={acme_ep}"), None).await;
    assert_eq!(code, 200, "{own}");

    // Consumer lag: admin only, every pipeline group listed per partition.
    let (code, _) = api(&h, acme, "GET", "/api/system/lag", None).await;
    assert_eq!(code, 403);
    let (code, lag) = api(&h, ADMIN_TOKEN, "GET", "/api/system/lag", None).await;
    assert_eq!(code, 200, "{lag}");
    let groups: Vec<&str> = lag["groups"].as_array().unwrap().iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert!(
        groups.iter().any(|g| g.ends_with("dispatcher")) && groups.iter().any(|g| g.contains("projector")),
        "{lag}"
    );
    assert!(!lag["groups"][0]["partitions"].as_array().unwrap().is_empty());

    // Bad parameters: 400 naming the parameter.
    for (path, param) in [
        ("/api/deliveries?tenant_id=acme&status=lost", "status"),
        ("/api/deliveries?tenant_id=acme&since=yesterday", "since"),
        ("/api/deliveries?tenant_id=acme&limit=0", "limit"),
        ("/api/deliveries?tenant_id=acme&cursor=zzz", "cursor"),
        ("/api/deliveries?tenant_id=acme&colour=red", "colour"),
        ("/api/webhooks/dlq?tenant_id=acme&since=10&until=5", "since"),
    ] {
        let (code, body) = api(&h, ADMIN_TOKEN, "GET", path, None).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert_eq!(body["field"], json!(param), "{path}: {body}");
    }
    let (code, body) =
        api(&h, ADMIN_TOKEN, "GET", &format!("/api/endpoints/{acme_ep}/health?window=99999"), None).await;
    assert_eq!((code, body["field"].clone()), (400, json!("window")));
}

/// Deliveries spread over three hours, listed two at a time: pages cross time buckets in
/// order, and since/until bound them. Only the api and projector run (nothing is delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_crosses_time_buckets_newest_first() {
    let env = TestEnv::new();
    Hookline::create_topics(BIN, &env);
    Hookline::migrate(BIN, &env);
    let h = Hookline::start(BIN, &env, "api", &[]).await;
    let _p = Hookline::start(BIN, &env, "projector", &[]).await;
    let codec = Codec::new().unwrap();
    let producer = hookline_kafka::producer::EventProducer::new(&env.config.kafka, "test").unwrap();
    let now = hookline_domain::time::now_ms();
    let mut expected = Vec::new();
    for i in 0..5i64 {
        let at = now - i * 3_600_000 - 1000; // one per hour, newest first
        let trigger = format!("trg_{i}");
        let id = hookline_domain::ids::delivery_id(&trigger, "ep_x", at);
        expected.push(id.clone());
        let d = DeliveryRequested {
            envelope: Envelope {
                event_id: hookline_domain::ids::new_event_id(),
                record_type: "DeliveryRequested".into(),
                occurred_at: at,
                tenant_id: "acme".into(),
                trigger_id: Some(trigger),
                delivery_id: Some(id),
                endpoint_id: Some("ep_x".into()),
                attempt: Some(1),
                ..Default::default()
            },
            event_type: "p.q".into(),
            payload: b"{}".to_vec(),
            content_type: "application/json".into(),
            message_id: "m".into(),
            reason: "initial".into(),
            trigger_occurred_at: at,
            not_before: None,
        };
        producer
            .send(&format!("{}deliveries", env.config.kafka.topic_prefix), b"ep_x", &codec.encode(&d).unwrap())
            .await
            .unwrap();
    }
    eventually(&h, "/api/deliveries?tenant_id=acme&limit=10", "five deliveries projected", |b| {
        b["data"].as_array().is_some_and(|d| d.len() == 5)
    })
    .await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/deliveries?tenant_id=acme&limit=2&cursor={c}"),
            None => "/api/deliveries?tenant_id=acme&limit=2".to_string(),
        };
        let (code, page) = api(&h, ADMIN_TOKEN, "GET", &path, None).await;
        assert_eq!(code, 200, "{page}");
        seen.extend(page["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) if !page["data"].as_array().unwrap().is_empty() => cursor = Some(c.to_string()),
            _ => break,
        }
    }
    assert_eq!(seen, expected, "every delivery once, newest first");
    let since = now - 2 * 3_600_000 - 500_000;
    let (_, windowed) =
        api(&h, ADMIN_TOKEN, "GET", &format!("/api/deliveries?tenant_id=acme&since={since}"), None).await;
    assert_eq!(windowed["data"].as_array().unwrap().len(), 3, "{windowed}");
}

/// Health counts stay exact across a kill -9 of the projector mid-stream, and a rebuild while
/// queries run never fails a query and yields the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projector_kill_9_keeps_counts_exact_and_rebuild_switches_without_downtime() {
    let env = TestEnv::new();
    Hookline::create_topics(BIN, &env);
    Hookline::migrate(BIN, &env);
    let receiver = Receiver::start().await;
    // Every role but the projector in one process; the projector alone, so it can be killed.
    let h = Hookline::start(BIN, &env, "api", &[]).await;
    let _r = Hookline::start(BIN, &env, "router", &[]).await;
    let _d = Hookline::start(BIN, &env, "dispatcher", &[]).await;
    let _s = Hookline::start(BIN, &env, "scheduler", &[]).await;
    let mut projector = Hookline::start(BIN, &env, "projector", &[]).await;
    let ep = endpoint(&h, "acme", receiver.url("/count"), &["c.*"]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    const N: usize = 300;
    for b in 0..3 {
        let events: Vec<Value> = (0..N / 3)
            .map(|i| json!({"tenant_id": "acme", "event_type": "c.x", "payload": {"i": b * 1000 + i}}))
            .collect();
        let (code, _) =
            api(&h, ADMIN_TOKEN, "POST", "/api/webhooks/trigger/batch", Some(json!({"events": events}))).await;
        assert_eq!(code, 202);
        if b == 1 {
            projector.kill9();
            projector = Hookline::start(BIN, &env, "projector", &[]).await;
        }
    }
    receiver.wait_for("/count", N, WAIT).await;
    let health_path = format!("/api/endpoints/{ep}/health?window=30");
    let health =
        eventually(&h, &health_path, "exact success count", |b| b["successes"].as_i64() >= Some(N as i64)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, health) = (health, api(&h, ADMIN_TOKEN, "GET", &health_path, None).await.1);
    assert_eq!(health["successes"], json!(N), "no event counted twice: {health}");
    assert_eq!(health["failures"], json!(0));
    let list_path = format!("/api/deliveries?endpoint_id={ep}&limit=500");
    let (_, before) = api(&h, ADMIN_TOKEN, "GET", &list_path, None).await;
    assert_eq!(before["data"].as_array().unwrap().len(), N);

    // Rebuild while a reader keeps querying.
    let stop = tokio_util_like_flag();
    let (h_api, flag) = (h.api, stop.clone());
    let lp = list_path.clone();
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let (code, body) = call(h_api, "GET", &lp, Some(ADMIN_TOKEN), None).await;
            assert_eq!(code, 200, "a query failed during rebuild: {body}");
            n += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n
    });
    let out = std::process::Command::new(BIN)
        .args(["projector", "rebuild"])
        .envs(hookline_testkit::process::test_env_vars(&env, &hookline_testkit::process::sha256_hex(ADMIN_TOKEN)))
        .output()
        .unwrap();
    assert!(out.status.success(), "rebuild: {}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let queries = reader.await.unwrap();
    assert!(queries > 10, "the reader kept querying ({queries} queries)");
    let (_, after) = api(&h, ADMIN_TOKEN, "GET", &list_path, None).await;
    assert_eq!(after["data"], before["data"], "the rebuilt tables answer the same");
    let (_, health_after) = api(&h, ADMIN_TOKEN, "GET", &health_path, None).await;
    assert_eq!(health_after["successes"], json!(N), "{health_after}");
}

fn tokio_util_like_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false))
}
