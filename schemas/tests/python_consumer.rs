//! The data teams' example (`examples/consume.py`, stock `fastavro`, no Hookline code) decodes
//! records written by this crate's codec.
//!
//! `examples/samples.hex` holds a few records encoded here, and `avro/fingerprints.json` the
//! header fingerprint the codec writes for every schema file (apache-avro's canonical form, which
//! differs from fastavro's for schemas with logical types, so consumers look fingerprints up
//! rather than compute them). Both are committed for data teams; this test fails when either is
//! stale (regenerate with `UPDATE_DOCS=1 cargo test -p hookline-schemas --test python_consumer`),
//! then runs the example on the samples and checks the decoded fields. The Python side needs `fastavro`: `dev/test` installs it
//! (and sets `HOOKLINE_TEST_PYTHON`, which makes a missing `fastavro` a failure); elsewhere the
//! Python half is skipped with a message when `fastavro` is not importable.

use std::path::{Path, PathBuf};
use std::process::Command;

use hookline_schemas::*;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn env(name: &str, attempt: i32) -> Envelope {
    Envelope {
        event_id: "0190f1e2-0000-7000-8000-000000000001".into(),
        record_type: name.into(),
        occurred_at: 1_700_000_000_123,
        tenant_id: "acme".into(),
        trigger_id: Some("0190f1e2-0000-7000-8000-0000000000aa".into()),
        delivery_id: Some("0190f1e2-0000-7000-8000-0000000000bb".into()),
        endpoint_id: Some("ep_billing".into()),
        attempt: Some(attempt),
        causation_id: None,
        correlation_id: Some("0190f1e2-0000-7000-8000-0000000000aa".into()),
    }
}

/// `<RecordName> <hex>` lines, in a fixed order.
fn samples_hex() -> String {
    let codec = Codec::new().expect("schemas load");
    let payload = br#"{"id":"inv_1","amount":42}"#.to_vec();
    let mut lines = vec![
        "# Records written by Hookline's codec (schemas/tests/python_consumer.rs): `<RecordName> <hex>`.".to_string(),
    ];
    let mut push = |name: &str, bytes: Vec<u8>| {
        lines.push(format!("{name} {}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    };
    push(
        "TriggerRequested",
        codec
            .encode(&TriggerRequested {
                // A trigger concerns no delivery or endpoint yet.
                envelope: Envelope {
                    delivery_id: None,
                    endpoint_id: None,
                    attempt: None,
                    ..env("TriggerRequested", 0)
                },
                event_type: "invoice.paid".into(),
                payload: payload.clone(),
                content_type: "application/json".into(),
                idempotency_key: Some("inv_1-paid".into()),
                endpoint_ids: None,
                source: "api".into(),
            })
            .expect("encode"),
    );
    push(
        "AttemptFailed",
        codec
            .encode(&AttemptFailed {
                envelope: env("AttemptFailed", 1),
                message_id: "msg_0190f1e2".into(),
                error_kind: "http_status".into(),
                status_code: Some(503),
                duration_ms: 30,
                error_message: "503 Service Unavailable".into(),
                response_excerpt: Some("busy".into()),
                next_attempt_at: Some(1_700_000_005_123),
            })
            .expect("encode"),
    );
    push(
        "AttemptSucceeded",
        codec
            .encode(&AttemptSucceeded {
                envelope: env("AttemptSucceeded", 2),
                message_id: "msg_0190f1e2".into(),
                status_code: 204,
                duration_ms: 12,
                response_excerpt: None,
            })
            .expect("encode"),
    );
    lines.join("\n") + "\n"
}

/// `{"<file>": "<8 header bytes as hex>", ...}` for every released schema file.
fn fingerprints_json() -> String {
    let mut lines = Vec::new();
    for (file, json) in SCHEMA_FILES {
        let name = file.split(".v").next().expect("<Record>.v<N>.avsc");
        let codec = Codec::from_files([(file.to_string(), json.to_string())]).expect("schema parses");
        let fp = codec.fingerprint_of(name).expect("fingerprint");
        let hex: String = fp.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect();
        lines.push(format!("  \"{file}\": \"{hex}\""));
    }
    lines.sort();
    format!("{{\n{}\n}}\n", lines.join(",\n"))
}

fn check_committed(path: PathBuf, fresh: String) {
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &fresh).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: regenerate it with `UPDATE_DOCS=1 cargo test -p hookline-schemas --test python_consumer`",
        path.display()
    );
}

#[test]
fn committed_samples_are_current() {
    check_committed(examples().join("samples.hex"), samples_hex());
}

#[test]
fn committed_fingerprints_are_current() {
    let fresh = fingerprints_json();
    let table: serde_json::Value = serde_json::from_str(&fresh).expect("valid JSON");
    assert_eq!(table.as_object().map(|m| m.len()), Some(SCHEMA_FILES.len()));
    check_committed(Path::new(env!("CARGO_MANIFEST_DIR")).join("avro/fingerprints.json"), fresh);
}

#[test]
fn python_example_decodes_rust_records() {
    let required = std::env::var_os("HOOKLINE_TEST_PYTHON");
    let python = required.clone().unwrap_or_else(|| "python3".into());
    let probe = Command::new(&python).args(["-c", "import fastavro"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(required.is_none(), "HOOKLINE_TEST_PYTHON={python:?} cannot import fastavro: {probe:?}");
        eprintln!("skipped: {python:?} has no fastavro (dev/test installs it)");
        return;
    }
    // Decode the committed file: it is what data teams test against (kept current above).
    let out = Command::new(&python)
        .arg(examples().join("consume.py"))
        .arg("--decode-hex")
        .arg(examples().join("samples.hex"))
        .output()
        .expect("run consume.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "consume.py failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    let trigger = &rows[0];
    assert_eq!(trigger["type"], "TriggerRequested");
    assert_eq!(trigger["record"]["event_type"], "invoice.paid");
    assert_eq!(trigger["record"]["envelope"]["tenant_id"], "acme");
    assert_eq!(trigger["record"]["idempotency_key"], "inv_1-paid");
    assert!(trigger["record"]["endpoint_ids"].is_null());
    assert!(trigger["record"]["envelope"]["endpoint_id"].is_null());
    // timestamp-millis comes out as a datetime (printed in ISO 8601)
    assert_eq!(trigger["record"]["envelope"]["occurred_at"], "2023-11-14T22:13:20.123+00:00");
    // bytes are printed as base64
    assert_eq!(trigger["record"]["payload"], "eyJpZCI6Imludl8xIiwiYW1vdW50Ijo0Mn0=");
    let failed = &rows[1];
    assert_eq!(failed["type"], "AttemptFailed");
    assert_eq!(failed["record"]["status_code"], 503);
    assert_eq!(failed["record"]["next_attempt_at"], "2023-11-14T22:13:25.123+00:00");
    assert_eq!(failed["record"]["envelope"]["attempt"], 1);
    assert_eq!(failed["record"]["envelope"]["endpoint_id"], "ep_billing");
    let ok = &rows[2];
    assert_eq!(ok["type"], "AttemptSucceeded");
    assert_eq!(ok["record"]["status_code"], 204);
    assert!(ok["record"]["response_excerpt"].is_null());
}
