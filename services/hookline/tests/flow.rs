//! Flow control end to end: rate limits shared by two dispatcher processes, the circuit
//! breaker's transitions, idempotency under concurrency and a Redis flush, and Redis stopped,
//! restarted and stalled mid-load. Tests that stop or flush Redis run their own `redis-server`
//! so nothing else on the shared test stack is disturbed.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hookline_schemas::AnyEvent;
use hookline_testkit::TestEnv;
use hookline_testkit::http::call;
use hookline_testkit::process::{ADMIN_TOKEN, Hookline};
use hookline_testkit::receiver::{Behaviour, Receiver};
use hookline_testkit::tap::Tap;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hookline");

/// The timing-sensitive tests (limiter accuracy, Redis outages under load) take turns, so one
/// test's load does not starve another's dispatchers on a 2-core machine.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A private `redis-server` on a free port, stoppable and restartable on the same port.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("hookline-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Self { port, child: None, dir };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let bin = std::env::var("HOOKLINE_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (installed by dev/stack): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cmd(&["PING"]).is_none() {
            assert!(Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    }

    /// One command through redis-cli-free RESP: good enough for PING, FLUSHALL, INFO, EXISTS.
    fn cmd(&self, args: &[&str]) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = Vec::new();
        // Read until the reply looks complete (bulk replies announce their length).
        loop {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out);
            if let Some(rest) = text.strip_prefix('$') {
                let (len, body) = rest.split_once("\r\n")?;
                if body.len() >= len.parse::<usize>().ok()? {
                    break;
                }
            } else if text.ends_with("\r\n") {
                break;
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// Calls of the flow-control scripts so far (EVALSHA and EVAL).
    fn script_calls(&self) -> u64 {
        let info = self.cmd(&["INFO", "commandstats"]).unwrap_or_default();
        info.lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn api(h: &Hookline, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(h.api, method, path, Some(ADMIN_TOKEN), body.as_ref()).await
}

async fn endpoint(h: &Hookline, url: String, event_type: &str, extra: Value) -> String {
    let mut body = json!({"tenant_id": "acme", "url": url, "event_types": [event_type]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (code, out) = api(h, "POST", "/api/endpoints", Some(body)).await;
    assert_eq!(code, 201, "{out}");
    out["id"].as_str().unwrap().to_string()
}

async fn trigger_batch(h: &Hookline, event_type: &str, from: usize, n: usize) {
    let events: Vec<Value> =
        (from..from + n).map(|i| json!({"tenant_id": "acme", "event_type": event_type, "payload": {"n": i}})).collect();
    let (code, out) = api(h, "POST", "/api/webhooks/trigger/batch", Some(json!({ "events": events }))).await;
    assert_eq!(code, 202, "{out}");
}

fn unique_ids(r: &Receiver, path: &str) -> HashSet<String> {
    r.received(path).iter().map(|x| x.headers["webhook-id"].clone()).collect()
}

/// Waits until every process's log (role `role`) contains `needle`.
async fn wait_for_log(env: &TestEnv, role: &str, procs: &[&Hookline], needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for p in procs {
        let path = std::env::temp_dir().join(format!("hookline-{}-{role}-{}.log", env.id, p.api.port()));
        while !std::fs::read_to_string(&path).unwrap_or_default().contains(needle) {
            assert!(Instant::now() < deadline, "{path:?} never logged {needle:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn setup(env: &TestEnv) {
    Hookline::create_topics(BIN, env);
    Hookline::migrate(BIN, env);
}

/// Two dispatchers in one group, two endpoints limited to 100/s: each endpoint's receiver sees
/// 100/s ±5% over 30 s, and Redis is called a fraction of a time per delivery.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_hold_with_two_dispatcher_processes() {
    let _turn = HEAVY.lock().await;
    let redis = PrivateRedis::start();
    let env = TestEnv::new();
    setup(&env);
    let url = redis.url();
    // The limiter, not the in-flight cap, must be what holds the rate back, even on a loaded machine.
    let extra = [("HOOKLINE_REDIS__URL", url.as_str()), ("HOOKLINE_DISPATCHER__MAX_IN_FLIGHT_PER_ENDPOINT", "64")];
    let front = Hookline::start(BIN, &env, "api", &extra).await;
    let _router = Hookline::start(BIN, &env, "router", &extra).await;
    let d1 = Hookline::start(BIN, &env, "dispatcher", &extra).await;
    let d2 = Hookline::start(BIN, &env, "dispatcher", &extra).await;
    let receiver = Receiver::start().await;
    // A burst of 25 rides out scheduling stalls of a loaded machine (tokens do not pile up
    // beyond it) and bounds the overshoot to 25 in 3,000 (0.8%) over the 30 s.
    let limit = json!({"rate_limit": {"per_second": 100.0, "burst": 25}});
    endpoint(&front, receiver.url("/a"), "limited.a", limit.clone()).await;
    endpoint(&front, receiver.url("/b"), "limited.b", limit).await;
    // Let the group settle (a rebalance mid-run re-delivers what was in flight: at-least-once).
    wait_for_log(&env, "dispatcher", &[&d1, &d2], "partitions assigned", Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls_before = redis.script_calls();
    // 4,000 each: more than 30 s of work at 100/s.
    for i in 0..8 {
        trigger_batch(&front, "limited.a", i * 500, 500).await;
        trigger_batch(&front, "limited.b", i * 500, 500).await;
    }
    let first = receiver.wait_for("/a", 1, Duration::from_secs(60)).await[0].at;
    receiver.wait_for("/b", 1, Duration::from_secs(60)).await;
    // Skip the start (the initial burst and the second dispatcher joining), then 30 s.
    let from = first + Duration::from_secs(3);
    let to = from + Duration::from_secs(30);
    tokio::time::sleep_until((to + Duration::from_millis(500)).into()).await;
    let mut total = 0;
    for path in ["/a", "/b"] {
        let got = receiver.received(path);
        total += got.len();
        let in_window = got.iter().filter(|r| r.at >= from && r.at < to).count();
        let rate = in_window as f64 / 30.0;
        println!("{path}: {in_window} deliveries in 30 s = {rate:.1}/s");
        assert!((95.0..=105.0).contains(&rate), "{path}: {rate:.1}/s is not 100/s ±5%");
        let mut seen: HashMap<&str, Vec<Duration>> = HashMap::new();
        for r in &got {
            seen.entry(r.headers["webhook-id"].as_str()).or_default().push(r.at - first);
        }
        let twice: Vec<_> = seen.iter().filter(|(_, v)| v.len() > 1).take(5).collect();
        assert!(
            twice.is_empty(),
            "{path}: {} of {} messages arrived more than once, e.g. {twice:?}",
            seen.values().filter(|v| v.len() > 1).count(),
            seen.len()
        );
    }
    let calls = redis.script_calls() - calls_before;
    println!("redis script calls: {calls} for {total} deliveries = {:.3} per delivery", calls as f64 / total as f64);
    assert!((calls as f64) < total as f64 * 1.5, "{calls} Redis calls for {total} deliveries");
}

/// A failing endpoint opens its circuit; deliveries are deferred without using attempts; a
/// probe after the cool-down closes it once the endpoint recovers; nothing is lost.
#[tokio::test(flavor = "multi_thread")]
async fn the_circuit_opens_defers_probes_and_closes() {
    let env = TestEnv::new();
    setup(&env);
    let flow = [
        ("HOOKLINE_FLOW__BREAKER_MIN_REQUESTS", "5"),
        ("HOOKLINE_FLOW__BREAKER_WINDOW_MS", "10000"),
        ("HOOKLINE_FLOW__BREAKER_COOLDOWN_MS", "1000"),
        ("HOOKLINE_FLOW__BREAKER_MAX_COOLDOWN_MS", "2000"),
        ("HOOKLINE_FLOW__BREAKER_PROBES", "1"),
        ("HOOKLINE_FLOW__BREAKER_SYNC_MS", "100"),
        ("HOOKLINE_DISPATCHER__RETRY_SCHEDULE_MS", "[0, 300, 600, 900, 1200, 1500, 2000, 3000, 3000, 3000]"),
    ];
    let h = Hookline::start(BIN, &env, "all", &flow).await;
    let events = Tap::start(&env.config.kafka, &format!("{}events", env.config.kafka.topic_prefix), 4);
    let receiver = Receiver::start().await;
    receiver.set("/c", Behaviour::Status(503));
    let ep = endpoint(&h, receiver.url("/c"), "breaker.test", json!({})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    trigger_batch(&h, "breaker.test", 0, 20).await;
    let opened = events.wait_for(1, Duration::from_secs(30), |e| matches!(e, AnyEvent::CircuitOpened(_))).await;
    let AnyEvent::CircuitOpened(o) = &opened[0] else { unreachable!() };
    assert_eq!(o.envelope.endpoint_id.as_deref(), Some(ep.as_str()));
    assert!(o.window_requests >= 5 && o.failure_ratio >= 0.5, "{o:?}");
    let (code, circuit) = api(&h, "GET", &format!("/api/endpoints/{ep}/circuit"), None).await;
    assert_eq!(code, 200, "{circuit}");
    assert_ne!(circuit["state"], "closed", "{circuit}");
    // While open, deliveries are deferred, not attempted.
    events
        .wait_for(
            1,
            Duration::from_secs(15),
            |e| matches!(e, AnyEvent::DeliveryDeferred(d) if d.cause == "circuit_open"),
        )
        .await;
    receiver.set("/c", Behaviour::Status(200));
    events.wait_for(1, Duration::from_secs(30), |e| matches!(e, AnyEvent::CircuitClosed(_))).await;
    // Everything arrives, each message once with a 2xx.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = events
            .all()
            .iter()
            .filter_map(|e| match e {
                AnyEvent::AttemptSucceeded(s) => Some(s.message_id.clone()),
                _ => None,
            })
            .collect::<HashSet<_>>();
        if delivered.len() == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "{} of 20 delivered", delivered.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = events.all();
    assert!(!all.iter().any(|e| matches!(e, AnyEvent::MovedToDLQ(_))), "nothing dead-lettered");
    // No attempt while deferred: every attempt number of a message is used at most once.
    let mut attempts: HashMap<(String, i32), usize> = HashMap::new();
    for e in &all {
        let (id, n) = match e {
            AnyEvent::AttemptFailed(f) => (f.message_id.clone(), f.envelope.attempt.unwrap_or(0)),
            AnyEvent::AttemptSucceeded(s) => (s.message_id.clone(), s.envelope.attempt.unwrap_or(0)),
            _ => continue,
        };
        *attempts.entry((id, n)).or_default() += 1;
    }
    assert!(attempts.values().all(|&c| c == 1), "an attempt number was used twice: {attempts:?}");
    let deferred = all.iter().filter(|e| matches!(e, AnyEvent::DeliveryDeferred(_))).count();
    let failed = all.iter().filter(|e| matches!(e, AnyEvent::AttemptFailed(_))).count();
    println!("20 messages: {failed} failed attempts, {deferred} deferrals");
    let (_, circuit) = api(&h, "GET", &format!("/api/endpoints/{ep}/circuit"), None).await;
    assert_eq!(circuit["state"], "closed", "{circuit}");
}

/// 50 concurrent identical triggers: one fan-out, every caller the same trigger id. After a
/// Redis flush and a restart of every role, the same key still delivers nothing new.
#[tokio::test(flavor = "multi_thread")]
async fn idempotency_holds_under_a_race_and_a_redis_flush() {
    let redis = PrivateRedis::start();
    let env = TestEnv::new();
    setup(&env);
    let url = redis.url();
    let extra = [("HOOKLINE_REDIS__URL", url.as_str())];
    let mut h = Hookline::start(BIN, &env, "all", &extra).await;
    let receiver = Receiver::start().await;
    endpoint(&h, receiver.url("/i"), "order.created", json!({})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let body = json!({"tenant_id": "acme", "event_type": "order.created", "payload": {"order": 1}, "idempotency_key": "order-1"});
    let calls = (0..50).map(|_| call(h.api, "POST", "/api/webhooks/trigger", Some(ADMIN_TOKEN), Some(&body)));
    let answers = futures::future::join_all(calls).await;
    let ids: HashSet<String> = answers
        .iter()
        .map(|(code, b)| {
            assert_eq!(*code, 202, "{b}");
            b["trigger_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every caller gets the same trigger id: {ids:?}");
    receiver.wait_for("/i", 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.received("/i").len(), 1, "one fan-out");

    // Redis loses every key; every role restarts (the router rebuilds its memory from the log).
    assert!(redis.cmd(&["FLUSHALL"]).unwrap().starts_with("+OK"));
    h.stop();
    let h = Hookline::start(BIN, &env, "all", &extra).await;
    let (code, b) = call(h.api, "POST", "/api/webhooks/trigger", Some(ADMIN_TOKEN), Some(&body)).await;
    assert_eq!(code, 202, "{b}");
    // A different key still goes through, proving the pipeline runs.
    let other = json!({"tenant_id": "acme", "event_type": "order.created", "payload": {"order": 2}, "idempotency_key": "order-2"});
    let (code, _) = call(h.api, "POST", "/api/webhooks/trigger", Some(ADMIN_TOKEN), Some(&other)).await;
    assert_eq!(code, 202);
    receiver.wait_for("/i", 2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = receiver.received("/i");
    assert_eq!(
        got.len(),
        2,
        "order-1 once, order-2 once: {:?}",
        got.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect::<Vec<_>>()
    );
}

/// Redis killed, restarted and stalled while deliveries flow: every message arrives exactly
/// once, the rate limit keeps working on local state, and shared state resumes by itself.
#[tokio::test(flavor = "multi_thread")]
async fn redis_down_restarted_and_stalled_mid_load_loses_and_duplicates_nothing() {
    let _turn = HEAVY.lock().await;
    let mut redis = PrivateRedis::start();
    let env = TestEnv::new();
    setup(&env);
    let url = redis.url();
    let extra = [("HOOKLINE_REDIS__URL", url.as_str()), ("HOOKLINE_FLOW__REDIS_RETRY_MS", "300")];
    let h = Hookline::start(BIN, &env, "all", &extra).await;
    let receiver = Receiver::start().await;
    let ep =
        endpoint(&h, receiver.url("/r"), "load.r", json!({"rate_limit": {"per_second": 400.0, "burst": 40}})).await;
    endpoint(&h, receiver.url("/u"), "load.u", json!({})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let mut sent = 0;
    // ~10 s at 200 triggers/s per endpoint; Redis killed at 2 s, back at 4 s, stalled 6-7.5 s.
    let mut phase = 0;
    while started.elapsed() < Duration::from_secs(10) {
        trigger_batch(&h, "load.r", sent, 20).await;
        trigger_batch(&h, "load.u", sent, 20).await;
        sent += 20;
        let t = started.elapsed();
        if phase == 0 && t > Duration::from_secs(2) {
            redis.kill();
            phase = 1;
        } else if phase == 1 && t > Duration::from_secs(4) {
            redis.restart();
            phase = 2;
        } else if phase == 2 && t > Duration::from_secs(6) {
            redis.signal("-STOP");
            phase = 3;
        } else if phase == 3 && t > Duration::from_millis(7_500) {
            redis.signal("-CONT");
            phase = 4;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(phase, 4);
    for path in ["/r", "/u"] {
        receiver.wait_for(path, sent, Duration::from_secs(60)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for path in ["/r", "/u"] {
        let got = receiver.received(path);
        assert_eq!(unique_ids(&receiver, path).len(), sent, "{path}: every message");
        assert_eq!(got.len(), sent, "{path}: no message twice");
    }
    // Shared state is back: the endpoint's bucket lives in Redis again.
    let key = format!("{}rl:{ep}", env.config.redis.key_prefix);
    trigger_batch(&h, "load.r", sent, 5).await;
    receiver.wait_for("/r", sent + 5, Duration::from_secs(20)).await;
    assert_eq!(redis.cmd(&["EXISTS", &key]).as_deref(), Some(":1\r\n"), "bucket {key} in Redis again");
    let log = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("hookline-{}-all", env.id)))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(log.contains("redis unreachable"), "the fallback is logged");
    assert!(log.contains("redis answers again"), "the return to shared state is logged");
}

/// Batch delivery: one signed request carries several messages (a JSON array, each element
/// with its own id); each message gets its own outcome; a failed batch is split: every message
/// retries on its own schedule and arrives once.
#[tokio::test(flavor = "multi_thread")]
async fn batches_carry_several_messages_each_with_its_own_outcome() {
    let env = TestEnv::new();
    setup(&env);
    let h = Hookline::start(BIN, &env, "all", &[]).await;
    let events = Tap::start(&env.config.kafka, &format!("{}events", env.config.kafka.topic_prefix), 4);
    let receiver = Receiver::start().await;
    let batch = json!({"batch": {"max_size": 10, "max_wait_ms": 300}});
    endpoint(&h, receiver.url("/batch"), "batch.ok", batch.clone()).await;
    receiver.set("/flaky", Behaviour::FailTimes { times: 1, status: 500 });
    endpoint(&h, receiver.url("/flaky"), "batch.flaky", batch).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    trigger_batch(&h, "batch.ok", 0, 25).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let elements = loop {
        let elements: Vec<Value> = receiver
            .received("/batch")
            .iter()
            .flat_map(|r| {
                let arr: Vec<Value> = serde_json::from_slice(&r.body).expect("a JSON array body");
                assert_eq!(r.headers["webhook-batch-size"], arr.len().to_string());
                assert!(r.headers["webhook-id"].starts_with("batch_"), "{:?}", r.headers);
                assert!(r.headers["webhook-signature"].starts_with("v1,"), "signed");
                arr
            })
            .collect();
        if elements.len() >= 25 {
            break elements;
        }
        assert!(Instant::now() < deadline, "{} of 25 messages", elements.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let requests = receiver.received("/batch").len();
    assert!((3..=10).contains(&requests), "25 messages in {requests} requests (max 10 per batch)");
    let ns: HashSet<i64> = elements.iter().map(|e| e["data"]["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, (0..25).collect(), "every message once");
    let ids: HashSet<String> = elements.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 25);
    assert!(elements.iter().all(|e| e["type"] == "batch.ok" && e["timestamp"].is_string()));
    let succeeded = events
        .wait_for(
            25,
            Duration::from_secs(20),
            |e| matches!(e, AnyEvent::AttemptSucceeded(s) if ids.contains(&s.message_id)),
        )
        .await;
    assert_eq!(succeeded.len(), 25, "one outcome per message");

    // The first request fails: each of its messages fails alone and retries alone.
    trigger_batch(&h, "batch.flaky", 0, 5).await;
    let failed = events
        .wait_for(1, Duration::from_secs(30), |e| matches!(e, AnyEvent::AttemptFailed(f) if f.status_code == Some(500)))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let delivered: HashSet<i64> = receiver
            .received("/flaky")
            .iter()
            .skip(1)
            .flat_map(|r| serde_json::from_slice::<Vec<Value>>(&r.body).unwrap())
            .map(|e| e["data"]["n"].as_i64().unwrap())
            .collect();
        if delivered == (0..5).collect() {
            break;
        }
        assert!(Instant::now() < deadline, "delivered after the failure: {delivered:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first: Vec<Value> = serde_json::from_slice(&receiver.received("/flaky")[0].body).unwrap();
    let failed_events =
        events.all().iter().filter(|e| matches!(e, AnyEvent::AttemptFailed(f) if f.status_code == Some(500))).count();
    assert_eq!(failed_events, first.len(), "one AttemptFailed per message of the failed batch ({failed:?})");
}

/// Ordered endpoints: one message in flight, in log order; a failing message is retried in
/// place and the next waits for it; other endpoints on the partition are not held up.
#[tokio::test(flavor = "multi_thread")]
async fn ordered_delivery_keeps_log_order_through_failures_and_retries() {
    let mut env = TestEnv::new();
    // One partition: the ordered endpoint and the free one share it.
    env.config.kafka.partitions = 1;
    setup(&env);
    let h = Hookline::start(BIN, &env, "all", &[]).await;
    let receiver = Receiver::start().await;
    receiver.set("/fifo", Behaviour::FailTimes { times: 2, status: 503 });
    endpoint(&h, receiver.url("/fifo"), "fifo.e", json!({"ordered": true})).await;
    receiver.set("/free", Behaviour::Delay(Duration::from_millis(5)));
    endpoint(&h, receiver.url("/free"), "free.e", json!({})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..20 {
        let body = json!({"tenant_id": "acme", "event_type": "fifo.e", "payload": {"n": i}});
        let (code, _) = api(&h, "POST", "/api/webhooks/trigger", Some(body)).await;
        assert_eq!(code, 202);
    }
    trigger_batch(&h, "free.e", 0, 50).await;
    // The free endpoint is done long before the ordered one finishes its retries.
    let free_done = receiver.wait_for("/free", 50, Duration::from_secs(30)).await.last().unwrap().at;
    let got = receiver.wait_for("/fifo", 22, Duration::from_secs(60)).await;
    let order: Vec<i64> =
        got.iter().map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["n"].as_i64().unwrap()).collect();
    let mut expected = vec![0, 0];
    expected.extend(0..20);
    assert_eq!(order, expected, "log order, the first retried in place before the next");
    assert!(free_done < got[2].at, "the free endpoint did not wait for the ordered one's retries");
}
