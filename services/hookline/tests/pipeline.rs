//! The delivery pipeline end to end: real Kafka, the `hookline` binary as a child process, an
//! in-process receiver. Retries use a test schedule (0, 300 ms, 600 ms; tiers 200 ms, 1 s).

use std::time::Duration;

use hookline_domain::signing;
use hookline_schemas::AnyEvent;
use hookline_testkit::TestEnv;
use hookline_testkit::http::call;
use hookline_testkit::process::{ADMIN_TOKEN, Hookline};
use hookline_testkit::receiver::{Behaviour, Receiver};
use hookline_testkit::tap::Tap;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hookline");
const WAIT: Duration = Duration::from_secs(30);

struct World {
    env: TestEnv,
    hookline: Hookline,
    receiver: Receiver,
    events: Tap,
}

async fn world(partitions: i32) -> World {
    let mut env = TestEnv::new();
    env.config.kafka.partitions = partitions;
    Hookline::create_topics(BIN, &env);
    Hookline::migrate(BIN, &env);
    let receiver = Receiver::start().await;
    let hookline = Hookline::start(BIN, &env, "all", &[]).await;
    let events = Tap::start(&env.config.kafka, &format!("{}events", env.config.kafka.topic_prefix), partitions);
    World { env, hookline, receiver, events }
}

impl World {
    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(self.hookline.api, method, path, Some(ADMIN_TOKEN), body.as_ref()).await
    }

    async fn endpoint(&self, path: &str, types: &[&str]) -> (String, String) {
        let (code, body) = self
            .api(
                "POST",
                "/api/endpoints",
                Some(json!({"tenant_id": "acme", "url": self.receiver.url(path), "event_types": types})),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        (body["id"].as_str().unwrap().to_string(), body["secret"].as_str().unwrap().to_string())
    }

    async fn trigger(&self, event_type: &str, payload: Value) -> String {
        let (code, body) = self
            .api(
                "POST",
                "/api/webhooks/trigger",
                Some(json!({"tenant_id": "acme", "event_type": event_type, "payload": payload})),
            )
            .await;
        assert_eq!(code, 202, "{body}");
        body["trigger_id"].as_str().unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_delivers_signed_byte_exact_payload() {
    let w = world(2).await;
    let (_, secret) = w.endpoint("/ok", &["invoice.*"]).await;
    // Whitespace and key order must survive: the body is delivered byte-exact.
    let raw = r#"{"b": 2,  "a": [1, 2.50]}"#;
    // Sent as raw bytes so the request body is exactly what a producer wrote.
    let request = format!(r#"{{"tenant_id":"acme","event_type":"invoice.paid","payload":{raw}}}"#);
    let (code, body) = hookline_testkit::http::call_raw(
        w.hookline.api,
        "POST",
        "/api/webhooks/trigger",
        Some(ADMIN_TOKEN),
        Some(request.into_bytes()),
    )
    .await;
    assert_eq!(code, 202, "{}", String::from_utf8_lossy(&body));
    let got = w.receiver.wait_for("/ok", 1, WAIT).await;
    let r = &got[0];
    let key = signing::decode_secret(&secret).unwrap();
    let ts: i64 = r.headers["webhook-timestamp"].parse().unwrap();
    assert!(signing::verify_v1(&key, &r.headers["webhook-id"], ts, &r.body, &r.headers["webhook-signature"], ts, 5));
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.body, raw.as_bytes(), "the JSON payload is delivered byte-exact");
    w.events.wait_for(1, WAIT, |e| matches!(e, AnyEvent::AttemptSucceeded(_))).await;

    // Raw bytes with their own content type arrive exactly.
    let bytes = b"\x00\x01binary\xff".to_vec();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let (code, _) = w
        .api(
            "POST",
            "/api/webhooks/trigger",
            Some(json!({"tenant_id":"acme","event_type":"invoice.raw","payload_base64": b64, "content_type": "application/x-thing"})),
        )
        .await;
    assert_eq!(code, 202);
    let got = w.receiver.wait_for("/ok", 2, WAIT).await;
    assert_eq!(got[1].body, bytes);
    assert_eq!(got[1].headers["content-type"], "application/x-thing");
    // An event type nobody subscribes to goes nowhere.
    w.trigger("user.created", json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.receiver.received("/ok").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_twice_then_succeeding_keeps_the_webhook_id() {
    let w = world(2).await;
    w.receiver.set("/flaky", Behaviour::FailTimes { times: 2, status: 503 });
    w.endpoint("/flaky", &["order.created"]).await;
    w.trigger("order.created", json!({"id": 1})).await;
    let got = w.receiver.wait_for("/flaky", 3, WAIT).await;
    let id = &got[0].headers["webhook-id"];
    assert!(got.iter().all(|r| &r.headers["webhook-id"] == id));
    let failed = w.events.wait_for(2, WAIT, |e| matches!(e, AnyEvent::AttemptFailed(_))).await;
    for f in &failed {
        let AnyEvent::AttemptFailed(f) = f else { unreachable!() };
        assert_eq!(f.status_code, Some(503));
        assert!(f.next_attempt_at.is_some());
    }
    let ok = w.events.wait_for(1, WAIT, |e| matches!(e, AnyEvent::AttemptSucceeded(_))).await;
    let AnyEvent::AttemptSucceeded(ok) = &ok[0] else { unreachable!() };
    assert_eq!(ok.envelope.attempt, Some(3));
    // Retries respect the schedule: the 2nd attempt came ≥ 300 ms after the 1st.
    assert!(got[1].at.duration_since(got[0].at) >= Duration::from_millis(280));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhaustion_goes_to_dlq_and_a_replay_delivers_with_the_same_webhook_id() {
    let w = world(2).await;
    w.receiver.set("/down", Behaviour::Status(500));
    let (endpoint_id, _) = w.endpoint("/down", &["invoice.paid"]).await;
    w.trigger("invoice.paid", json!({"n": 1})).await;
    let moved = w.events.wait_for(1, WAIT, |e| matches!(e, AnyEvent::MovedToDLQ(_))).await;
    let AnyEvent::MovedToDLQ(moved) = &moved[0] else { unreachable!() };
    assert_eq!(moved.attempts, 3);
    assert_eq!(moved.reason, "exhausted");
    assert_eq!(moved.last_status_code, Some(500));
    let first = w.receiver.received("/down");
    assert_eq!(first.len(), 3, "one attempt per schedule entry");

    // The endpoint recovers; the operator replays.
    w.receiver.set("/down", Behaviour::Status(200));
    let (replayed, delivery) = hookline_domain::commands::replay(moved, "test", hookline_domain::time::now_ms());
    let codec = hookline_schemas::Codec::new().unwrap();
    let producer = hookline_kafka::producer::EventProducer::new(&w.env.config.kafka, "test").unwrap();
    let prefix = &w.env.config.kafka.topic_prefix;
    producer.send(&format!("{prefix}events"), endpoint_id.as_bytes(), &codec.encode(&replayed).unwrap()).await.unwrap();
    producer
        .send(&format!("{prefix}deliveries"), endpoint_id.as_bytes(), &codec.encode(&delivery).unwrap())
        .await
        .unwrap();
    let got = w.receiver.wait_for("/down", 4, WAIT).await;
    assert_eq!(got[3].headers["webhook-id"], first[0].headers["webhook-id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_and_later_triggers_skip_it() {
    let w = world(2).await;
    w.receiver.set("/gone", Behaviour::Status(410));
    let (id, _) = w.endpoint("/gone", &["a.b"]).await;
    w.endpoint("/other", &["a.b"]).await;
    w.trigger("a.b", json!({})).await;
    w.events.wait_for(1, WAIT, |e| matches!(e, AnyEvent::EndpointDisabled(_))).await;
    w.events.wait_for(1, WAIT, |e| matches!(e, AnyEvent::MovedToDLQ(m) if m.reason == "endpoint_gone")).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, ep) = w.api("GET", &format!("/api/endpoints/{id}"), None).await;
        if ep["enabled"] == json!(false) {
            assert!(ep["disabled_reason"].as_str().unwrap().contains("410"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "endpoint still enabled: {ep}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.trigger("a.b", json!({"second": true})).await;
    w.receiver.wait_for("/other", 2, WAIT).await;
    assert_eq!(w.receiver.received("/gone").len(), 1, "a disabled endpoint gets nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_does_not_stall_a_healthy_one_on_the_same_partition() {
    // One partition: every endpoint shares it.
    let w = world(1).await;
    w.receiver.set("/dead", Behaviour::Hang);
    w.endpoint("/dead", &["x.dead"]).await;
    w.endpoint("/healthy", &["x.ok"]).await;
    for i in 0..40 {
        w.trigger("x.dead", json!({"i": i})).await;
    }
    let start = std::time::Instant::now();
    for i in 0..20 {
        w.trigger("x.ok", json!({"i": i})).await;
    }
    let got = w.receiver.wait_for("/healthy", 20, Duration::from_secs(10)).await;
    let took = got.last().unwrap().at.duration_since(start);
    assert!(took < Duration::from_secs(5), "healthy deliveries took {took:?} behind a dead endpoint");
    // The dead endpoint is capped: at most max_in_flight_per_endpoint (16) connections at once.
    assert!(w.receiver.received("/dead").len() <= 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_url_change_takes_effect_without_restart() {
    let w = world(2).await;
    let (id, _) = w.endpoint("/v1", &["u.*"]).await;
    w.trigger("u.x", json!({})).await;
    w.receiver.wait_for("/v1", 1, WAIT).await;
    let (code, body) = w
        .api(
            "PUT",
            &format!("/api/endpoints/{id}"),
            Some(json!({"url": w.receiver.url("/v2"), "event_types": ["u.*"]})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["version"], json!(2));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    w.trigger("u.x", json!({})).await;
    w.receiver.wait_for("/v2", 1, WAIT).await;
    assert_eq!(w.receiver.received("/v1").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_trigger_is_quarantined_and_the_next_ones_flow() {
    let w = world(1).await;
    w.endpoint("/after", &["p.q"]).await;
    let prefix = &w.env.config.kafka.topic_prefix;
    let producer = hookline_kafka::producer::EventProducer::new(&w.env.config.kafka, "test").unwrap();
    producer.send(&format!("{prefix}triggers"), b"acme", b"this is not avro").await.unwrap();
    producer.send(&format!("{prefix}triggers"), b"acme", &[0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9]).await.unwrap();
    w.trigger("p.q", json!({"after": "poison"})).await;
    w.receiver.wait_for("/after", 1, WAIT).await;
    let q = Tap::start(&w.env.config.kafka, &format!("{prefix}quarantine"), 1);
    let got = q.wait_for(2, WAIT, |e| matches!(e, AnyEvent::RecordQuarantined(_))).await;
    let AnyEvent::RecordQuarantined(first) = &got[0] else { unreachable!() };
    assert_eq!(first.original_topic, format!("{prefix}triggers"));
    assert_eq!(first.original_value.as_deref(), Some(&b"this is not avro"[..]));
    assert!(first.reason.contains("marker"), "{}", first.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_written_straight_to_kafka_is_delivered() {
    let w = world(2).await;
    w.endpoint("/direct", &["k.direct"]).await;
    let t = hookline_schemas::TriggerRequested {
        envelope: hookline_schemas::Envelope {
            event_id: hookline_domain::ids::new_event_id(),
            record_type: "TriggerRequested".into(),
            occurred_at: hookline_domain::time::now_ms(),
            tenant_id: "acme".into(),
            ..Default::default()
        },
        event_type: "k.direct".into(),
        payload: b"{\"via\":\"kafka\"}".to_vec(),
        content_type: "application/json".into(),
        idempotency_key: None,
        endpoint_ids: None,
        source: "kafka".into(),
    };
    let codec = hookline_schemas::Codec::new().unwrap();
    let producer = hookline_kafka::producer::EventProducer::new(&w.env.config.kafka, "test").unwrap();
    producer
        .send(&format!("{}triggers", w.env.config.kafka.topic_prefix), b"acme", &codec.encode(&t).unwrap())
        .await
        .unwrap();
    let got = w.receiver.wait_for("/direct", 1, WAIT).await;
    assert_eq!(got[0].body, b"{\"via\":\"kafka\"}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_problem_naming_the_field_and_changes_nothing() {
    let w = world(1).await;
    let cases = [
        (json!({"tenant_id":"acme","url":"ftp://x","event_types":["a"]}), "url"),
        (json!({"tenant_id":"acme","url":"http://x","event_types":[]}), "event_types"),
        (json!({"tenant_id":"acme","url":"http://x","event_types":["a"],"timeout_ms": 99999999}), "timeout_ms"),
        (json!({"tenant_id":"acme","url":"http://x","event_types":["a"],"colour":"red"}), "colour"),
        (json!({"url":"http://x","event_types":["a"]}), "tenant_id"),
    ];
    for (body, field) in cases {
        let (code, problem) = w.api("POST", "/api/endpoints", Some(body)).await;
        assert_eq!(code, 400, "{problem}");
        let text = problem.to_string();
        assert!(text.contains(field), "{field}: {text}");
    }
    let (_, list) = w.api("GET", "/api/endpoints", None).await;
    assert_eq!(list["data"], json!([]), "nothing was written");
    let (code, _) = call(w.hookline.api, "GET", "/api/endpoints", None, None).await;
    assert_eq!(code, 401);
    let (code, _) = call(w.hookline.api, "GET", "/api/endpoints", Some("wrong"), None).await;
    assert_eq!(code, 401);
    let big = "x".repeat(1_100_000);
    let (code, problem) =
        w.api("POST", "/api/webhooks/trigger", Some(json!({"tenant_id":"acme","event_type":"a","payload": big}))).await;
    assert_eq!(code, 413, "{problem}");
}

/// An HTTP trigger is fanned out exactly once: by the API, beside the trigger record
/// (`api.direct_fanout`, on by default), or by the router (a keyed trigger, or with the
/// option off). Counted on the deliveries topic itself, after time for a second fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_trigger_is_fanned_out_exactly_once_by_the_api_or_by_the_router() {
    let mut w = world(2).await;
    let kafka = w.env.config.kafka.clone();
    let deliveries = Tap::start(&kafka, &format!("{}deliveries", kafka.topic_prefix), 2);
    w.endpoint("/one", &["fan.*"]).await;
    w.endpoint("/two", &["fan.*"]).await;
    let mut triggers = vec![w.trigger("fan.direct", json!({"n": 1})).await];
    let (code, body) = w
        .api(
            "POST",
            "/api/webhooks/trigger",
            Some(
                json!({"tenant_id": "acme", "event_type": "fan.keyed", "payload": {"n": 2}, "idempotency_key": "k-1"}),
            ),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    triggers.push(body["trigger_id"].as_str().unwrap().to_string());
    let events: Vec<Value> =
        (0..3).map(|i| json!({"tenant_id": "acme", "event_type": "fan.batch", "payload": {"i": i}})).collect();
    let (code, body) = w.api("POST", "/api/webhooks/trigger/batch", Some(json!({"events": events}))).await;
    assert_eq!(code, 202, "{body}");
    triggers.extend(body["trigger_ids"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()));
    assert_eq!(w.hookline.direct_fanouts().await, 4, "the unkeyed triggers were fanned out by the API");

    // With the option off, the router fans out every trigger.
    w.hookline.stop();
    w.hookline = Hookline::start(BIN, &w.env, "all", &[("HOOKLINE_API__DIRECT_FANOUT", "false")]).await;
    triggers.push(w.trigger("fan.routed", json!({"n": 3})).await);
    assert_eq!(w.hookline.direct_fanouts().await, 0);

    w.receiver.wait_for("/one", triggers.len(), WAIT).await;
    w.receiver.wait_for("/two", triggers.len(), WAIT).await;
    deliveries.wait_for(2 * triggers.len(), WAIT, |e| matches!(e, AnyEvent::DeliveryRequested(_))).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for t in &triggers {
        let n = deliveries
            .all()
            .iter()
            .filter(|e| matches!(e, AnyEvent::DeliveryRequested(d) if d.envelope.trigger_id.as_deref() == Some(t)))
            .count();
        assert_eq!(n, 2, "trigger {t}: one DeliveryRequested per endpoint");
    }
    assert_eq!(w.receiver.received("/one").len(), triggers.len());
    assert_eq!(w.receiver.received("/two").len(), triggers.len());
}
