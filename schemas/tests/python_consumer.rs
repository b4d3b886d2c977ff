//! The data teams' example (`examples/consume.py`, stock `fastavro`, no Hookline code) decodes
//! records written by this crate's codec.
//!
//! `examples/samples.hex` holds a few records encoded here, `examples/samples-legacy.hex` the same
//! records as earlier versions wrote them (legacy fingerprints; frozen), and `avro/fingerprints.json`
//! the fingerprint of every schema file with its legacy one. The samples and the table are
//! committed for data teams; this test fails when either is stale (regenerate with `UPDATE_DOCS=1
//! cargo test -p hookline-schemas --test python_consumer`), checks that the codec reads the
//! legacy samples, then runs the example on both files and checks the decoded fields, and on the
//! new ones with nothing but the `.avsc` files (fingerprints computed by fastavro). The Python side
//! needs `fastavro`: `dev/test` installs it (and sets `HOOKLINE_TEST_PYTHON`, which makes a
//! missing `fastavro` a failure); elsewhere the Python half is skipped with a message when
//! `fastavro` is not importable.

use std::ffi::OsString;
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

/// `{"<file>": {"fingerprint": "<8 header bytes as hex>", "legacy": "<hex>"}, ...}` for every
/// released schema file; `legacy` only for versions released before the codec wrote the
/// specification's fingerprint.
fn fingerprints_json() -> String {
    let hex = |fp: Fingerprint| fp.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut lines = Vec::new();
    for (file, json) in SCHEMA_FILES {
        let fp = parsing_fingerprint(json).expect("schema has a canonical form");
        let legacy = legacy_fingerprint(fp).map(|l| format!(", \"legacy\": \"{}\"", hex(l))).unwrap_or_default();
        lines.push(format!("  \"{file}\": {{\"fingerprint\": \"{}\"{legacy}}}", hex(fp)));
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
    let codec = Codec::new().expect("schemas load");
    for name in codec.names() {
        let written = codec.fingerprint_of(name).expect("fingerprint").to_le_bytes();
        let hex: String = written.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            fresh.contains(&format!("\"fingerprint\": \"{hex}\"")),
            "{name}: the table lists what the codec writes"
        );
    }
    check_committed(Path::new(env!("CARGO_MANIFEST_DIR")).join("avro/fingerprints.json"), fresh);
}

/// `(record name, bytes)` of every line of a samples file.
fn read_samples(file: &str) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(examples().join(file)).expect("samples file");
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, hex) = l.split_once(' ').expect("`<RecordName> <hex>`");
            let bytes =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect();
            (name.to_string(), bytes)
        })
        .collect()
}

/// Records that earlier versions wrote (legacy headers) decode to the same events as the ones
/// written today.
#[test]
fn legacy_samples_decode_like_current_ones() {
    let codec = Codec::new().expect("schemas load");
    let current = read_samples("samples.hex");
    let legacy = read_samples("samples-legacy.hex");
    assert_eq!(legacy.len(), current.len());
    for ((name, old), (_, new)) in legacy.iter().zip(&current) {
        assert_ne!(old[2..10], new[2..10], "{name}: the legacy sample has the legacy header");
        assert_eq!(old[10..], new[10..], "{name}: same datum");
        assert_eq!(codec.peek_name(old).unwrap(), name);
        assert_eq!(codec.decode(old).unwrap(), codec.decode(new).unwrap(), "{name}");
    }
}

/// The Python that has fastavro, or None (skip) when it is not required.
fn python_with_fastavro() -> Option<OsString> {
    let required = std::env::var_os("HOOKLINE_TEST_PYTHON");
    let python = required.clone().unwrap_or_else(|| "python3".into());
    let probe = Command::new(&python).args(["-c", "import fastavro"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(required.is_none(), "HOOKLINE_TEST_PYTHON={python:?} cannot import fastavro: {probe:?}");
        eprintln!("skipped: {python:?} has no fastavro (dev/test installs it)");
        return None;
    }
    Some(python)
}

/// Runs `consume.py --decode-hex <samples>` with the given schema folder; the JSON rows, or the
/// process output on failure.
fn run_example(python: &OsString, schemas: &Path, samples: &str) -> Result<Vec<serde_json::Value>, String> {
    let out = Command::new(python)
        .arg(examples().join("consume.py"))
        .arg("--schemas")
        .arg(schemas)
        .arg("--decode-hex")
        .arg(examples().join(samples))
        .output()
        .expect("run consume.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("consume.py failed: {}{stdout}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(stdout.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect())
}

fn check_rows(rows: &[serde_json::Value]) {
    assert_eq!(rows.len(), 3, "{rows:?}");
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

#[test]
fn python_example_decodes_rust_records() {
    let Some(python) = python_with_fastavro() else { return };
    // Decode the committed files: they are what data teams test against (kept current above).
    let avro = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    check_rows(&run_example(&python, &avro, "samples.hex").unwrap());
    check_rows(&run_example(&python, &avro, "samples-legacy.hex").unwrap());

    // New records need nothing but the schema files: fastavro's own fingerprints match them.
    // Legacy records are then unknown, which is what the published table is for.
    let bare = std::env::temp_dir().join(format!("hookline-avsc-only-{}", std::process::id()));
    std::fs::create_dir_all(&bare).unwrap();
    for (file, json) in SCHEMA_FILES {
        std::fs::write(bare.join(file), json).unwrap();
    }
    let new = run_example(&python, &bare, "samples.hex");
    let old = run_example(&python, &bare, "samples-legacy.hex");
    let _ = std::fs::remove_dir_all(&bare);
    check_rows(&new.unwrap());
    let err = old.expect_err("legacy records need the published table");
    assert!(err.contains("unknown writer schema"), "{err}");
}
