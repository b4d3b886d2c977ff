//! Signatures and transformation end to end: every scheme verifies at the receiver, rotation
//! signs with both keys, JWKS publishes public keys, templates shape the body, a template that
//! fails to render sends the message to the DLQ with the reason, secrets stay sealed.

use std::time::Duration;

use hookline_domain::signing::{Scheme, VerifyKey};
use hookline_schemas::AnyEvent;
use hookline_testkit::TestEnv;
use hookline_testkit::http::call;
use hookline_testkit::process::{ADMIN_TOKEN, Hookline};
use hookline_testkit::receiver::{Received, Receiver};
use hookline_testkit::tap::Tap;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hookline");
const WAIT: Duration = Duration::from_secs(30);

async fn api(h: &Hookline, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(h.api, method, path, Some(ADMIN_TOKEN), body.as_ref()).await
}

fn verify(scheme: Scheme, key: &str, r: &Received) -> bool {
    let ts: i64 = r.headers["webhook-timestamp"].parse().unwrap();
    VerifyKey::parse(scheme, key)
        .unwrap()
        .verify_header(&r.headers["webhook-id"], ts, &r.body, &r.headers["webhook-signature"], ts, 60)
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scheme_verifies_rotation_signs_twice_and_jwks_lists_public_keys() {
    let env = TestEnv::new();
    Hookline::create_topics(BIN, &env);
    Hookline::migrate(BIN, &env);
    let receiver = Receiver::start().await;
    let h = Hookline::start(BIN, &env, "all", &[]).await;
    let mut created = Vec::new();
    for scheme in Scheme::ALL {
        let path = format!("/{}", scheme.as_str());
        let (code, ep) = api(
            &h,
            "POST",
            "/api/endpoints",
            Some(json!({"tenant_id": "acme", "url": receiver.url(&path), "event_types": ["s.*"], "signing_scheme": scheme.as_str()})),
        )
        .await;
        assert_eq!(code, 201, "{ep}");
        assert!(ep["secret"].is_string());
        let (_, again) = api(&h, "GET", &format!("/api/endpoints/{}", ep["id"].as_str().unwrap()), None).await;
        assert!(
            again.get("secret").is_none() && !again.to_string().contains(ep["secret"].as_str().unwrap()),
            "secrets are shown once"
        );
        created.push((scheme, path, ep));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (code, _) = api(
        &h,
        "POST",
        "/api/webhooks/trigger",
        Some(json!({"tenant_id": "acme", "event_type": "s.one", "payload": {"x": 1}})),
    )
    .await;
    assert_eq!(code, 202);
    for (scheme, path, ep) in &created {
        let got = receiver.wait_for(path, 1, WAIT).await;
        let key = match scheme.is_asymmetric() {
            true => ep["signing_keys"][0]["public_key"].as_str().unwrap().to_string(),
            false => ep["secret"].as_str().unwrap().to_string(),
        };
        assert!(verify(*scheme, &key, &got[0]), "{scheme} signature did not verify: {:?}", got[0].headers);
        assert!(got[0].headers["webhook-signature"].starts_with(&format!("{},", scheme.tag())));
    }

    // The reference Standard Webhooks library (Python `standardwebhooks`) verifies the `v1`
    // delivery exactly as a receiver would, from the raw headers and body.
    let hmac_ep = &created.iter().find(|c| c.0 == Scheme::HmacSha256).unwrap();
    let got = receiver.received(&hmac_ep.1);
    off_the_shelf_verify(hmac_ep.2["secret"].as_str().unwrap(), &got[0]);

    // JWKS: the asymmetric endpoints publish their public keys; HMAC ones publish none.
    let (_, ed) = (0, &created.iter().find(|c| c.0 == Scheme::Ed25519).unwrap().2);
    let (code, jwks) =
        api(&h, "GET", &format!("/api/endpoints/{}/public-keys", ed["id"].as_str().unwrap()), None).await;
    assert_eq!(code, 200);
    assert_eq!(jwks["keys"][0]["kty"], json!("OKP"), "{jwks}");
    let hmac = &created.iter().find(|c| c.0 == Scheme::HmacSha256).unwrap().2;
    let hmac_id = hmac["id"].as_str().unwrap();
    let (_, none) = api(&h, "GET", &format!("/api/endpoints/{hmac_id}/public-keys"), None).await;
    assert_eq!(none["keys"], json!([]));

    // Rotation: the next message is signed by the old and the new key; both verify.
    let (code, rotated) = api(&h, "POST", &format!("/api/endpoints/{hmac_id}/keys/rotate"), Some(json!({}))).await;
    assert_eq!(code, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_eq!(rotated["signing_keys"].as_array().unwrap().len(), 2);
    assert!(rotated["signing_keys"][0]["expires_at"].is_i64());
    tokio::time::sleep(Duration::from_millis(500)).await;
    api(
        &h,
        "POST",
        "/api/webhooks/trigger",
        Some(json!({"tenant_id": "acme", "event_type": "s.two", "payload": {"x": 2}})),
    )
    .await;
    let got = receiver.wait_for("/hmac-sha256", 2, WAIT).await;
    let second = &got[1];
    assert_eq!(second.headers["webhook-signature"].split(' ').count(), 2, "{:?}", second.headers);
    assert!(verify(Scheme::HmacSha256, hmac["secret"].as_str().unwrap(), second));
    assert!(verify(Scheme::HmacSha256, &new_secret, second));

    // Reveal shows a stored secret again, on an explicit call.
    let key_id = rotated["signing_keys"][1]["key_id"].as_str().unwrap();
    let (code, shown) = api(&h, "POST", &format!("/api/endpoints/{hmac_id}/keys/{key_id}/reveal"), None).await;
    assert_eq!((code, shown["secret"].as_str()), (200, Some(new_secret.as_str())));
}

fn off_the_shelf_verify(secret: &str, r: &Received) {
    let (ok, err) = run_reference_verifier(secret, r, &r.body);
    assert!(ok, "standardwebhooks refused our signature: {err}");
    // And the same verifier refuses a body we did not sign, so this check can fail.
    let mut tampered = r.body.clone();
    tampered.push(b' ');
    assert!(!run_reference_verifier(secret, r, &tampered).0, "the reference verifier accepted a tampered body");
}

fn run_reference_verifier(secret: &str, r: &Received, body: &[u8]) -> (bool, String) {
    use base64::Engine as _;
    let python = std::env::var("HOOKLINE_TEST_PYTHON")
        .expect("HOOKLINE_TEST_PYTHON must name a Python with `standardwebhooks` installed (dev/test sets it up)");
    let input = json!({
        "secret": secret,
        "headers": r.headers,
        "body": base64::engine::general_purpose::STANDARD.encode(body),
    });
    let script = "import base64, json, sys\n\
from standardwebhooks.webhooks import Webhook\n\
d = json.load(sys.stdin)\n\
Webhook(d['secret']).verify(base64.b64decode(d['body']), d['headers'])\n\
print('verified')\n";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("verified"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_shape_the_body_and_a_render_failure_goes_to_the_dlq() {
    let env = TestEnv::new();
    Hookline::create_topics(BIN, &env);
    Hookline::migrate(BIN, &env);
    let receiver = Receiver::start().await;
    let h = Hookline::start(BIN, &env, "all", &[]).await;
    let events =
        Tap::start(&env.config.kafka, &format!("{}events", env.config.kafka.topic_prefix), env.config.kafka.partitions);

    // A template that does not compile is refused with its line and column; nothing is written.
    let (code, problem) = api(
        &h,
        "POST",
        "/api/endpoints",
        Some(json!({"tenant_id": "acme", "url": receiver.url("/t"), "event_types": ["t.*"],
            "template": {"body": "{\"a\": 1,\n \"b\": {{ payload.x | }}"}})),
    )
    .await;
    assert_eq!(code, 400, "{problem}");
    assert!(problem["field"].as_str().unwrap().starts_with("template"), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("line 2"), "{problem}");

    let template = r#"{"kind": {{ event_type | json }}, "customer": {{ payload.customer.name | json }}, "items": {{ payload.items | json }}}"#;
    let (code, ep) = api(
        &h,
        "POST",
        "/api/endpoints",
        Some(json!({"tenant_id": "acme", "url": receiver.url("/t"), "event_types": ["t.*"], "template": {"body": template}})),
    )
    .await;
    assert_eq!(code, 201, "{ep}");
    let id = ep["id"].as_str().unwrap();
    let payload = json!({"customer": {"name": "Zoë \"Z\" O'Neil\n"}, "items": [1, {"a": null}]});
    let (code, preview) = api(
        &h,
        "POST",
        &format!("/api/endpoints/{id}/transform/preview"),
        Some(json!({"event_type": "t.paid", "payload": payload})),
    )
    .await;
    assert_eq!(code, 200, "{preview}");
    let expected = json!({"kind": "t.paid", "customer": "Zoë \"Z\" O'Neil\n", "items": [1, {"a": null}]});
    assert_eq!(serde_json::from_str::<Value>(preview["body"].as_str().unwrap()).unwrap(), expected);
    tokio::time::sleep(Duration::from_millis(500)).await;
    api(
        &h,
        "POST",
        "/api/webhooks/trigger",
        Some(json!({"tenant_id": "acme", "event_type": "t.paid", "payload": payload})),
    )
    .await;
    let got = receiver.wait_for("/t", 1, WAIT).await;
    assert_eq!(serde_json::from_slice::<Value>(&got[0].body).unwrap(), expected);
    // The signature covers the transformed bytes actually sent.
    assert!(verify(Scheme::HmacSha256, ep["secret"].as_str().unwrap(), &got[0]));

    // A payload the template cannot render: permanent failure, DLQ with the reason, no request.
    api(
        &h,
        "POST",
        "/api/webhooks/trigger",
        Some(json!({"tenant_id": "acme", "event_type": "t.bad", "payload": {"nothing": true}})),
    )
    .await;
    let moved = events.wait_for(1, WAIT, |e| matches!(e, AnyEvent::MovedToDLQ(_))).await;
    let AnyEvent::MovedToDLQ(m) = &moved[0] else { unreachable!() };
    assert_eq!(m.reason, "permanent");
    assert_eq!(m.last_error_kind, "template");
    assert!(!m.last_error_message.is_empty());
    assert_eq!(receiver.received("/t").len(), 1, "no request for a message that cannot render");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_stops_the_dispatcher_with_a_clear_message() {
    let env = TestEnv::new();
    Hookline::create_topics(BIN, &env);
    Hookline::migrate(BIN, &env);
    let h = Hookline::start(BIN, &env, "api", &[]).await;
    let (code, _) = api(
        &h,
        "POST",
        "/api/endpoints",
        Some(json!({"tenant_id": "acme", "url": "http://127.0.0.1:9/x", "event_types": ["a"]})),
    )
    .await;
    assert_eq!(code, 201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = "z9:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let mut d = Hookline::start(BIN, &env, "dispatcher", &[("HOOKLINE_SECRETS__MASTER_KEYS", other)]).await;
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the dispatcher kept running with a wrong master key");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
}
