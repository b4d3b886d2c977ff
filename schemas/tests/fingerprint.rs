//! Our Parsing Canonical Form and CRC-64-AVRO fingerprints against an independent implementation:
//! fastavro's `to_parsing_canonical_form` and `fingerprint(…, "CRC-64-AVRO")`, for every schema
//! file and for a few schemas that exercise the rules our files do not (nested namespaces, dotted
//! names, logical types on other primitives). Known values from the specification's test data are
//! checked without Python in `src/canonical.rs`.
//!
//! Needs `fastavro`: `dev/test` installs it and sets `HOOKLINE_TEST_PYTHON`, which makes a missing
//! `fastavro` a failure; elsewhere the test is skipped with a message when `python3` cannot import it.

use std::io::Write;
use std::process::{Command, Stdio};

use hookline_schemas::*;

/// Prints `[canonical form, fingerprint hex]` for each schema (JSON text) of a JSON list on stdin.
const FASTAVRO: &str = r#"
import json, sys
from fastavro.schema import fingerprint, to_parsing_canonical_form
for text in json.load(sys.stdin):
    form = to_parsing_canonical_form(json.loads(text))
    print(json.dumps([form, fingerprint(form, "CRC-64-AVRO")], ensure_ascii=False))
"#;

const EXTRA_SCHEMAS: &[&str] = &[
    // The hand-checked record of `src/canonical.rs`.
    r#"{
      "doc": "An order.", "namespace": "com.acme", "type": "record", "name": "Order",
      "aliases": ["Purchase"],
      "fields": [
        {"type": {"type": "long", "logicalType": "timestamp-millis"}, "name": "at", "doc": "When."},
        {"name": "line", "type": {"name": "Line", "type": "record", "doc": "A line.",
          "fields": [{"name": "sku", "type": "string", "order": "ignore"},
                     {"name": "price", "type": {"type": "fixed", "size": 8, "name": "Money",
                      "logicalType": "decimal", "precision": 18, "scale": 2}}]}},
        {"name": "prev", "type": ["null", "Line"], "default": null},
        {"name": "state", "type": {"type": "enum", "name": "other.State", "symbols": ["NEW", "PAID"]}},
        {"name": "again", "type": "other.State"},
        {"name": "tags", "type": {"type": "map", "values": {"type": "array", "items": "Money"}}},
        {"name": "bare", "type": {"type": "record", "name": "Bare", "namespace": "", "fields": []}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}}
      ]
    }"#,
    // A dotted name gives its namespace to nested definitions; a nested namespace overrides it
    // for its own subtree only; references resolve in the namespace where they appear.
    r#"{"type": "record", "name": "a.b.Outer", "namespace": "ignored", "fields": [
        {"name": "mid", "type": {"type": "record", "name": "Mid", "fields": [
            {"name": "in", "type": {"type": "record", "name": "In", "namespace": "c", "fields": [
                {"name": "k", "type": {"type": "enum", "name": "Kind", "symbols": ["X"]}}]}},
            {"name": "k2", "type": "c.Kind"}]}},
        {"name": "m2", "type": ["null", "Mid"]},
        {"name": "m3", "type": "a.b.Mid"},
        {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros", "connect.name": "x"}},
        {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "h", "type": {"type": "fixed", "name": "Hash", "size": 32, "aliases": ["Sha"]}}
    ]}"#,
    // Java's `Schema.toString()` of a file with a namespace and a logical type (no whitespace,
    // namespace kept as an attribute).
    r#"{"type":"record","name":"Ping","namespace":"dev.hookline.test","fields":[{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},{"name":"n","type":"int","default":0}]}"#,
];

fn hex(fp: Fingerprint) -> String {
    fp.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn canonical_forms_and_fingerprints_match_fastavro() {
    let required = std::env::var_os("HOOKLINE_TEST_PYTHON");
    let python = required.clone().unwrap_or_else(|| "python3".into());
    let probe = Command::new(&python).args(["-c", "import fastavro"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(required.is_none(), "HOOKLINE_TEST_PYTHON={python:?} cannot import fastavro: {probe:?}");
        eprintln!("skipped: {python:?} has no fastavro (dev/test installs it)");
        return;
    }

    let schemas: Vec<(&str, &str)> =
        SCHEMA_FILES.iter().copied().chain(EXTRA_SCHEMAS.iter().map(|s| ("(extra schema)", *s))).collect();
    let input = serde_json::to_string(&schemas.iter().map(|(_, json)| json).collect::<Vec<_>>()).unwrap();
    let mut child = Command::new(&python)
        .args(["-c", FASTAVRO])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write schemas");
    let out = child.wait_with_output().expect("python output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "fastavro failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    let theirs: Vec<(String, String)> =
        stdout.lines().map(|l| serde_json::from_str(l).expect("[form, fingerprint]")).collect();
    assert_eq!(theirs.len(), schemas.len(), "{stdout}");

    for ((file, json), (form, fp)) in schemas.iter().zip(&theirs) {
        assert_eq!(&parsing_canonical_form(json).unwrap(), form, "{file}: canonical form");
        assert_eq!(&hex(parsing_fingerprint(json).unwrap()), fp, "{file}: fingerprint");
    }

    // And what the codec writes is fastavro's fingerprint of the newest version of each record.
    let codec = Codec::new().unwrap();
    for name in codec.names() {
        let (file, fp) = schemas
            .iter()
            .zip(&theirs)
            .filter(|((file, _), _)| file.starts_with(&format!("{name}.v")))
            .map(|((file, _), (_, fp))| (file, fp))
            .max_by_key(|(file, _)| {
                file.rsplit_once(".v").and_then(|(_, v)| v.trim_end_matches(".avsc").parse::<u32>().ok())
            })
            .expect("a schema file for every record name");
        assert_eq!(&hex(codec.fingerprint_of(name).unwrap()), fp, "{name} is written with {file}");
    }
}
