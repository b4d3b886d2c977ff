//! Crashes: kill -9 of the dispatcher and of the router under load, of the API in the middle of
//! its direct fan-outs, and a retry that falls due while every process is down. Nothing may be lost; a duplicate may only repeat a webhook-id.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hookline_testkit::TestEnv;
use hookline_testkit::http::call;
use hookline_testkit::process::{ADMIN_TOKEN, Hookline};
use hookline_testkit::receiver::{Behaviour, Receiver};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hookline");

async fn create_endpoint(api: &Hookline, url: String, types: &[&str]) {
    let (code, body) = call(
        api.api,
        "POST",
        "/api/endpoints",
        Some(ADMIN_TOKEN),
        Some(&json!({"tenant_id": "acme", "url": url, "event_types": types})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

async fn trigger_batch(api: &Hookline, event_type: &str, from: usize, n: usize) {
    let events: Vec<Value> =
        (from..from + n).map(|i| json!({"tenant_id": "acme", "event_type": event_type, "payload": {"i": i}})).collect();
    let (code, body) =
        call(api.api, "POST", "/api/webhooks/trigger/batch", Some(ADMIN_TOKEN), Some(&json!({"events": events}))).await;
    assert_eq!(code, 202, "{body}");
}

/// Distinct payload indexes received, and whether every duplicate repeated its webhook-id.
fn distinct(receiver: &Receiver, path: &str) -> (HashSet<u64>, usize) {
    let mut ids_by_i = std::collections::HashMap::new();
    let got = receiver.received(path);
    for r in &got {
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        let i = v["i"].as_u64().unwrap();
        let id = r.headers["webhook-id"].clone();
        let prev = ids_by_i.insert(i, id.clone());
        assert!(prev.is_none_or(|p| p == id), "a duplicate of message {i} carried another webhook-id");
    }
    (ids_by_i.keys().copied().collect(), got.len())
}

/// Waits until all `n` messages arrived; returns how many were redelivered. On a timeout, the
/// panic names the missing messages and shows what `procs` logged.
async fn wait_all(receiver: &Receiver, path: &str, n: usize, timeout: Duration, procs: &[&Hookline]) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let (set, total) = distinct(receiver, path);
        if set.len() == n {
            return total - n;
        }
        if Instant::now() >= deadline {
            let missing: Vec<usize> = (0..n).filter(|i| !set.contains(&(*i as u64))).collect();
            let logs: Vec<String> = procs.iter().map(|p| p.log_report(15)).collect();
            panic!(
                "{path}: {} of {n} distinct messages after {timeout:?}; {} missing, the first: {:?}\n{}",
                set.len(),
                missing.len(),
                &missing[..missing.len().min(30)],
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fresh topics and tables, one process per role, and an endpoint `/sink` for `load.*`.
struct Roles {
    env: TestEnv,
    receiver: Receiver,
    api: Hookline,
    scheduler: Hookline,
    router: Hookline,
    dispatcher: Hookline,
}

async fn roles(api_env: &[(&str, &str)]) -> Roles {
    let env = TestEnv::new();
    Hookline::create_topics(BIN, &env);
    Hookline::migrate(BIN, &env);
    let receiver = Receiver::start().await;
    let api = Hookline::start(BIN, &env, "api", api_env).await;
    let scheduler = Hookline::start(BIN, &env, "scheduler", &[]).await;
    let router = Hookline::start(BIN, &env, "router", &[]).await;
    let dispatcher = Hookline::start(BIN, &env, "dispatcher", &[]).await;
    create_endpoint(&api, receiver.url("/sink"), &["load.*"]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    Roles { env, receiver, api, scheduler, router, dispatcher }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_dispatcher_and_of_the_router_under_load_loses_nothing() {
    // Every trigger through the router (the API's direct fan-out has its own test below).
    let Roles { env, receiver, api, scheduler, mut router, mut dispatcher } =
        roles(&[("HOOKLINE_API__DIRECT_FANOUT", "false")]).await;
    // Slow enough that deliveries are in flight when the kill lands.
    receiver.set("/sink", Behaviour::Delay(Duration::from_millis(30)));

    const N: usize = 600;
    for b in 0..3 {
        trigger_batch(&api, "load.tick", b * 100, 100).await;
    }
    receiver.wait_for("/sink", 30, Duration::from_secs(30)).await;
    dispatcher.kill9();
    router.kill9();
    // Triggers keep arriving while both are dead: the API only needs Kafka.
    for b in 3..6 {
        trigger_batch(&api, "load.tick", b * 100, 100).await;
    }
    let router2 = Hookline::start(BIN, &env, "router", &[]).await;
    let dispatcher2 = Hookline::start(BIN, &env, "dispatcher", &[]).await;
    let procs = [&api, &scheduler, &router, &dispatcher, &router2, &dispatcher2];
    let dupes = wait_all(&receiver, "/sink", N, Duration::from_secs(60), &procs).await;
    eprintln!("kill -9 test: {N} messages delivered, {dupes} redelivered with the same webhook-id");
}

/// One trigger; `Some(status)`, or `None` when the API went away before answering.
async fn try_trigger(api: std::net::SocketAddr, i: usize) -> Option<u16> {
    let body = json!({"tenant_id": "acme", "event_type": "load.tick", "payload": {"i": i}});
    let answer = hookline_testkit::http::try_call_raw(
        api,
        "POST",
        "/api/webhooks/trigger",
        Some(ADMIN_TOKEN),
        Some(body.to_string().into_bytes()),
    )
    .await;
    // A connection closed before a status line (the kill) reads as status 0: no answer.
    answer.map(|(status, _)| status).filter(|&status| status != 0)
}

/// kill -9 of the API while its direct fan-outs are in flight: every trigger it accepted (202)
/// is delivered; one it never answered may be delivered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_api_mid_fan_out_loses_no_accepted_trigger() {
    let Roles { env, receiver, mut api, scheduler, router, dispatcher } = roles(&[]).await;

    // Four senders, one trigger at a time each, until the API is gone (at most 2,000 each).
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(HashSet::new()));
    let senders: Vec<_> = (0..4)
        .map(|k| {
            let (addr, accepted) = (api.api, accepted.clone());
            tokio::spawn(async move {
                for i in (k * 2000)..(k * 2000 + 2000) {
                    match try_trigger(addr, i).await {
                        Some(202) => {
                            accepted.lock().unwrap().insert(i as u64);
                        }
                        // Not accepted (a slow broker on a busy machine): nothing to check.
                        Some(503) => {}
                        Some(code) => panic!("trigger {i}: {code}"),
                        None => return,
                    }
                }
            })
        })
        .collect();
    receiver.wait_for("/sink", 50, Duration::from_secs(30)).await;
    assert!(api.direct_fanouts().await > 0, "the API fanned the triggers out itself");
    api.kill9();
    for s in senders {
        s.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= 40, "{} accepted before the kill", accepted.len());

    // A new API takes triggers at once.
    let api2 = Hookline::start(BIN, &env, "api", &[]).await;
    for b in 0..3 {
        trigger_batch(&api2, "load.tick", 10_000 + b * 100, 100).await;
    }
    let procs = [&api, &api2, &scheduler, &router, &dispatcher];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (got, _) = distinct(&receiver, "/sink");
        let missing =
            accepted.iter().chain(&(10_000..10_300).collect::<Vec<u64>>()).filter(|i| !got.contains(i)).count();
        if missing == 0 {
            let unanswered = got.iter().filter(|i| **i < 10_000 && !accepted.contains(i)).count();
            eprintln!(
                "kill -9 of the api: {} accepted, all delivered; {unanswered} unanswered but delivered",
                accepted.len()
            );
            break;
        }
        let logs: Vec<String> = procs.iter().map(|p| p.log_report(15)).collect();
        assert!(Instant::now() < deadline, "{missing} accepted triggers not delivered after 60 s\n{}", logs.join("\n"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_due_while_every_process_is_down_fires_promptly_after_restart() {
    let env = TestEnv::new();
    Hookline::create_topics(BIN, &env);
    Hookline::migrate(BIN, &env);
    let receiver = Receiver::start().await;
    receiver.set("/later", Behaviour::FailTimes { times: 1, status: 500 });
    let schedule = [("HOOKLINE_DISPATCHER__RETRY_SCHEDULE_MS", "[0, 4000]")];
    let mut all = Hookline::start(BIN, &env, "all", &schedule).await;
    create_endpoint(&all, receiver.url("/later"), &["r.*"]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    trigger_batch(&all, "r.x", 0, 1).await;
    let first = receiver.wait_for("/later", 1, Duration::from_secs(30)).await[0].at;
    // Let the failure and its parked retry commit, then take everything down past the due time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    all.kill9();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let restarted = Instant::now();
    let _all = Hookline::start(BIN, &env, "all", &schedule).await;
    let got = receiver.wait_for("/later", 2, Duration::from_secs(30)).await;
    let late_by = got[1].at.duration_since(restarted);
    assert!(got[1].at.duration_since(first) >= Duration::from_secs(4), "not before its due time");
    eprintln!("retry fired {late_by:?} after the restart began");
    assert!(late_by < Duration::from_secs(15), "the overdue retry took {late_by:?} after restart");
    assert_eq!(got[0].headers["webhook-id"], got[1].headers["webhook-id"]);
}
