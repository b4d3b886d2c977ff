//! The flow-control scripts against the real Redis: they apply exactly the rules of
//! `hookline_domain::flow` (the dispatcher's local fallback), and idempotency claims are exclusive.

use hookline_domain::flow::{Breaker, BreakerPolicy, CircuitState, TokenBucket, Transition};
use hookline_redis::RedisStore;
use hookline_redis::breaker::Outcomes;
use hookline_redis::idempotency::Claim;
use hookline_testkit::TestEnv;
use rand::{Rng, SeedableRng};

const POLICY: BreakerPolicy = BreakerPolicy {
    window_ms: 10_000,
    min_requests: 10,
    failure_ratio: 0.5,
    cooldown_ms: 1_000,
    max_cooldown_ms: 8_000,
    probes: 2,
    disable_after_ms: 60_000,
};

async fn store() -> RedisStore {
    RedisStore::connect(&TestEnv::new().config.redis).await.expect("redis")
}

#[tokio::test]
async fn the_bucket_script_takes_exactly_like_the_local_bucket() {
    let store = store().await;
    let mut local = TokenBucket::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut now_us = 1_700_000_000_000_000i64;
    for i in 0..500 {
        now_us += rng.random_range(0..30_000);
        let want = rng.random_range(1..6);
        let max_wait = [0, 20, 100][rng.random_range(0..3)];
        let remote = store.take_tokens("ep1", 100.0, 10, want, max_wait, Some(now_us)).await.unwrap();
        assert_eq!(remote, local.take(100.0, 10, want, max_wait, now_us), "step {i} at {now_us}");
    }
}

#[tokio::test]
async fn the_breaker_scripts_follow_the_local_state_machine() {
    let store = store().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut local = Breaker::default();
    let mut now = 1_700_000_000_000i64;
    let (mut opened, mut closed, mut disabled) = (0, 0, 0);
    for i in 0..2_000 {
        now += rng.random_range(0..400);
        if rng.random_bool(0.3) {
            let (admitted, state, _) = store.admit("ep1", POLICY.probes, Some(now)).await.unwrap();
            assert_eq!(admitted, local.admit(&POLICY, now), "admit, step {i}");
            assert_eq!(state, local.state, "state after admit, step {i}");
            continue;
        }
        // Mostly failing phases and mostly succeeding phases, so every transition happens.
        let failing = (i / 150) % 2 == 0;
        let (s, f) =
            if failing { (rng.random_range(0..2), rng.random_range(0..4)) } else { (rng.random_range(0..4), 0) };
        let o = Outcomes { endpoint_id: "ep1".into(), successes: s, failures: f };
        let remote = store.report_outcomes(&[o], &POLICY, Some(now)).await.unwrap().remove(0);
        let transitions = local.report(&POLICY, s, f, now);
        assert_eq!(remote.state, local.state, "state, step {i}");
        for t in &transitions {
            match *t {
                Transition::Opened { open_until, .. } => {
                    opened += 1;
                    assert_eq!(remote.changed, Some(true), "step {i}");
                    assert_eq!(remote.open_until, open_until, "step {i}");
                }
                Transition::Closed { open_since } => {
                    closed += 1;
                    assert_eq!(remote.changed, Some(false), "step {i}");
                    assert_eq!(remote.open_since, Some(open_since), "step {i}");
                }
                Transition::Disable { .. } => {
                    disabled += 1;
                    assert!(remote.disable, "step {i}");
                }
            }
        }
        if transitions.is_empty() {
            assert_eq!(remote.changed, None, "step {i}");
            assert!(!remote.disable, "step {i}");
        }
    }
    assert!(opened > 3 && closed > 3, "the run must exercise the transitions: {opened} opened, {closed} closed");
    let _ = disabled;
    let view = store.circuits(&["ep1".into(), "never-seen".into()]).await.unwrap();
    assert_eq!(view[0].state, local.state);
    assert_eq!(view[1].state, CircuitState::Closed);
}

#[tokio::test]
async fn an_open_circuit_stays_open_too_long_and_asks_for_disabling_once() {
    let store = store().await;
    let mut now = 1_700_000_000_000i64;
    let o = |f| vec![Outcomes { endpoint_id: "ep2".into(), successes: 0, failures: f }];
    let r = store.report_outcomes(&o(10), &POLICY, Some(now)).await.unwrap().remove(0);
    assert_eq!((r.state, r.changed), (CircuitState::Open, Some(true)));
    let mut disables = 0;
    for _ in 0..30 {
        now += 8_000;
        let (admitted, _, _) = store.admit("ep2", POLICY.probes, Some(now)).await.unwrap();
        assert!(admitted, "a probe after the cool-down");
        let r = store.report_outcomes(&o(1), &POLICY, Some(now)).await.unwrap().remove(0);
        disables += usize::from(r.disable);
    }
    assert_eq!(disables, 1);
}

#[tokio::test]
async fn fifty_concurrent_claims_of_one_key_have_one_winner() {
    let store = store().await;
    let claims = (0..50).map(|i| {
        let store = store.clone();
        async move { (i, store.claim("acme", "order-1", &format!("trg_{i}"), 60_000).await.unwrap()) }
    });
    let results = futures::future::join_all(claims).await;
    let winners: Vec<_> = results.iter().filter(|(_, c)| *c == Claim::Won).map(|(i, _)| *i).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = format!("trg_{}", winners[0]);
    for (_, c) in &results {
        if let Claim::Taken { trigger_id, done } = c {
            assert_eq!(trigger_id, &winner);
            assert!(!done);
        }
    }
    store.confirm_claim("acme", "order-1", &winner).await.unwrap();
    let again = store.claim("acme", "order-1", "trg_late", 60_000).await.unwrap();
    assert_eq!(again, Claim::Taken { trigger_id: winner.clone(), done: true });
    // Another tenant's identical key is another key.
    assert_eq!(store.claim("globex", "order-1", "trg_g", 60_000).await.unwrap(), Claim::Won);
    // A failed publish releases the claim, but only the claimant's own.
    store.release_claim("acme", "order-1", "trg_late").await.unwrap();
    assert!(matches!(store.claim("acme", "order-1", "x", 60_000).await.unwrap(), Claim::Taken { .. }));
    store.release_claim("globex", "order-1", "trg_g").await.unwrap();
    assert_eq!(store.claim("globex", "order-1", "trg_g2", 60_000).await.unwrap(), Claim::Won);
}

/// Two dispatchers (two connections) report failures of one endpoint at the same time: the
/// circuit opens exactly once, one probe is admitted between them, and one success closes it once.
#[tokio::test(flavor = "multi_thread")]
async fn breaker_transitions_from_two_clients_at_once_happen_once() {
    let env = TestEnv::new();
    let a = RedisStore::connect(&env.config.redis).await.unwrap();
    let b = RedisStore::connect(&env.config.redis).await.unwrap();
    let policy = BreakerPolicy { cooldown_ms: 2_000, max_cooldown_ms: 8_000, probes: 1, ..POLICY };
    let report = |s: RedisStore| async move {
        let mut opened = 0;
        for _ in 0..30 {
            let o = [Outcomes { endpoint_id: "shared".into(), successes: 0, failures: 1 }];
            let r = s.report_outcomes(&o, &policy, None).await.unwrap().remove(0);
            opened += usize::from(r.changed == Some(true));
        }
        opened
    };
    let (x, y) = tokio::join!(tokio::spawn(report(a.clone())), tokio::spawn(report(b.clone())));
    assert_eq!(x.unwrap() + y.unwrap(), 1, "one CircuitOpened between both");
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let (pa, pb) = tokio::join!(a.admit("shared", policy.probes, None), b.admit("shared", policy.probes, None));
    let admitted = usize::from(pa.unwrap().0) + usize::from(pb.unwrap().0);
    assert_eq!(admitted, 1, "one probe between both");
    let ok = |s: RedisStore| async move {
        let o = [Outcomes { endpoint_id: "shared".into(), successes: 1, failures: 0 }];
        s.report_outcomes(&o, &policy, None).await.unwrap().remove(0).changed
    };
    let (ca, cb) = tokio::join!(ok(a.clone()), ok(b.clone()));
    let closed = [ca, cb].iter().filter(|c| **c == Some(false)).count();
    assert_eq!(closed, 1, "one CircuitClosed between both");
    assert_eq!(a.circuits(&["shared".into()]).await.unwrap()[0].state, CircuitState::Closed);
}
