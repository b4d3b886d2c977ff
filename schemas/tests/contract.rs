//! The Avro contract: every event round-trips, old readers read new writers, bad bytes are errors.

use std::collections::BTreeMap;

use apache_avro::{Schema, types::Value};
use hookline_schemas::*;

fn env(name: &str) -> Envelope {
    Envelope {
        event_id: "0190f1e2-0000-7000-8000-000000000001".into(),
        record_type: name.into(),
        occurred_at: 1_700_000_000_123,
        tenant_id: "acme".into(),
        trigger_id: Some("t-1".into()),
        delivery_id: Some("d-1".into()),
        endpoint_id: Some("e-1".into()),
        attempt: Some(2),
        causation_id: None,
        correlation_id: Some("c-1".into()),
    }
}

fn samples() -> Vec<AnyEvent> {
    let payload = br#"{"id":"inv_1","amount":42}"#.to_vec();
    vec![
        TriggerRequested {
            envelope: env("TriggerRequested"),
            event_type: "invoice.paid".into(),
            payload: payload.clone(),
            content_type: "application/json".into(),
            idempotency_key: Some("k1".into()),
            endpoint_ids: Some(vec!["e-1".into(), "e-2".into()]),
            source: "api".into(),
        }
        .into(),
        DeliveryRequested {
            envelope: env("DeliveryRequested"),
            event_type: "invoice.paid".into(),
            payload: vec![0, 159, 146, 150, 255],
            content_type: "application/octet-stream".into(),
            message_id: "msg_1".into(),
            reason: reason::RETRY.into(),
            trigger_occurred_at: 1_700_000_000_000,
            not_before: Some(1_700_000_005_000),
        }
        .into(),
        AttemptSucceeded {
            envelope: env("AttemptSucceeded"),
            message_id: "msg_1".into(),
            status_code: 204,
            duration_ms: 12,
            response_excerpt: None,
        }
        .into(),
        AttemptFailed {
            envelope: env("AttemptFailed"),
            message_id: "msg_1".into(),
            error_kind: "http_status".into(),
            status_code: Some(503),
            duration_ms: 30,
            error_message: "503 Service Unavailable".into(),
            response_excerpt: Some("busy".into()),
            next_attempt_at: Some(1_700_000_300_000),
        }
        .into(),
        DeliveryDeferred { envelope: env("DeliveryDeferred"), cause: "rate_limited".into(), until: 1 }.into(),
        MovedToDLQ {
            envelope: env("MovedToDLQ"),
            event_type: "invoice.paid".into(),
            payload: payload.clone(),
            content_type: "application/json".into(),
            message_id: "msg_1".into(),
            reason: "exhausted".into(),
            last_error_kind: "timeout".into(),
            last_status_code: None,
            last_error_message: "timed out after 10s".into(),
            attempts: 8,
            trigger_occurred_at: 5,
        }
        .into(),
        DLQReplayed { envelope: env("DLQReplayed"), new_delivery_id: "d-2".into(), actor: "admin".into() }.into(),
        DLQDiscarded { envelope: env("DLQDiscarded"), actor: "admin".into() }.into(),
        CircuitOpened { envelope: env("CircuitOpened"), failure_ratio: 0.75, window_requests: 40, open_until: 9 }
            .into(),
        CircuitClosed { envelope: env("CircuitClosed"), open_since: 3 }.into(),
        EndpointUpserted {
            envelope: env("EndpointUpserted"),
            url: "https://example.com/hook".into(),
            description: "billing".into(),
            event_types: vec!["invoice.*".into()],
            enabled: true,
            version: 3,
            headers: BTreeMap::from([("x-team".into(), "billing".into())]),
            timeout_ms: 10_000,
            retry_schedule_ms: Some(vec![0, 1000, 2000]),
            rate_limit: Some(RateLimit { per_second: 100.0, burst: 20 }),
            batch: Some(BatchPolicy { max_size: 50, max_wait_ms: 200 }),
            ordered: true,
            template: Some(Template {
                body: "{{ payload }}".into(),
                headers: BTreeMap::new(),
                content_type: "application/json".into(),
            }),
            signing_keys: vec![SigningKey {
                key_id: "k1".into(),
                scheme: "hmac-sha256".into(),
                sealed_secret: vec![1, 2, 3],
                public_key: None,
                created_at: 1,
                expires_at: Some(2),
            }],
            disabled_reason: None,
            created_at: 1,
        }
        .into(),
        EndpointDeleted { envelope: env("EndpointDeleted") }.into(),
        EndpointDisabled { envelope: env("EndpointDisabled"), reason: "gone".into() }.into(),
        RecordQuarantined {
            envelope: env("RecordQuarantined"),
            original_topic: "hookline.triggers".into(),
            original_partition: 1,
            original_offset: 77,
            original_key: None,
            original_value: Some(vec![1, 2]),
            reason: "bad marker".into(),
        }
        .into(),
    ]
}

fn encode_any(codec: &Codec, e: &AnyEvent) -> Vec<u8> {
    macro_rules! enc {
        ($($n:ident),*) => {
            match e { $(AnyEvent::$n(v) => codec.encode(v),)* }
        };
    }
    enc!(
        TriggerRequested,
        DeliveryRequested,
        AttemptSucceeded,
        AttemptFailed,
        DeliveryDeferred,
        MovedToDLQ,
        DLQReplayed,
        DLQDiscarded,
        CircuitOpened,
        CircuitClosed,
        EndpointUpserted,
        EndpointDeleted,
        EndpointDisabled,
        RecordQuarantined
    )
    .expect("encode")
}

#[test]
fn every_event_type_round_trips() {
    let codec = Codec::new().unwrap();
    let samples = samples();
    assert_eq!(samples.len(), EVENT_NAMES.len(), "a sample for every event");
    for sample in samples {
        let bytes = encode_any(&codec, &sample);
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(codec.peek_name(&bytes).unwrap(), sample.name());
        assert_eq!(codec.decode(&bytes).unwrap(), sample, "{}", sample.name());
    }
}

#[test]
fn every_event_has_exactly_one_current_schema_and_identical_envelopes() {
    let codec = Codec::new().unwrap();
    let mut names: Vec<_> = codec.names().collect();
    names.sort();
    let mut expected = EVENT_NAMES.to_vec();
    expected.sort();
    assert_eq!(names, expected);
    let envelope_of = |json: &str| {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["fields"][0].clone()
    };
    let first = envelope_of(SCHEMA_FILES[0].1);
    for (file, json) in SCHEMA_FILES {
        assert_eq!(envelope_of(json), first, "{file}: envelope differs");
    }
}

#[test]
fn typed_decode_checks_the_type() {
    let codec = Codec::new().unwrap();
    let bytes = codec.encode(&DLQDiscarded { envelope: env("DLQDiscarded"), actor: "a".into() }).unwrap();
    let ok: DLQDiscarded = codec.decode_as(&bytes).unwrap();
    assert_eq!(ok.actor, "a");
    let err = codec.decode_as::<DLQReplayed>(&bytes).unwrap_err();
    assert!(matches!(err, CodecError::WrongType { expected: "DLQReplayed", .. }), "{err}");
}

/// A newer AttemptSucceeded (v2 adds `http_version` with a default) published after this
/// binary was built: the old reader resolves it into the v1 type it knows.
#[test]
fn old_reader_reads_records_of_a_newer_schema() {
    let v1 = SCHEMA_FILES.iter().find(|(f, _)| *f == "AttemptSucceeded.v1.avsc").unwrap().1;
    let mut v2: serde_json::Value = serde_json::from_str(v1).unwrap();
    v2["fields"].as_array_mut().unwrap().push(serde_json::json!({
        "name": "http_version", "type": "string", "default": "1.1", "doc": "HTTP version used."
    }));
    let v2_json = v2.to_string();
    let v2_schema = Schema::parse_str(&v2_json).unwrap();

    // Write a record with v2, exactly as a newer Hookline would.
    let Value::Record(mut fields) = apache_avro::to_value(AttemptSucceeded {
        envelope: env("AttemptSucceeded"),
        message_id: "m".into(),
        status_code: 200,
        duration_ms: 3,
        response_excerpt: Some("ok".into()),
    })
    .unwrap() else {
        panic!("record")
    };
    fields.push(("http_version".into(), Value::String("2".into())));
    #[allow(deprecated)]
    let datum = apache_avro::to_avro_datum(&v2_schema, Value::Record(fields)).unwrap();
    let fp = parsing_fingerprint(&v2_json).unwrap();
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend_from_slice(&fp.to_le_bytes());
    bytes.extend_from_slice(&datum);

    // The old codec alone does not know the new writer schema: a typed error, not a panic.
    let old = Codec::new().unwrap();
    assert!(matches!(old.decode(&bytes), Err(CodecError::UnknownSchema { .. })));

    // Given the published v2 file, the old reader types read it.
    let old = old.with_writer_schemas([("AttemptSucceeded.v2.avsc".to_string(), v2_json)]).unwrap();
    let AnyEvent::AttemptSucceeded(read) = old.decode(&bytes).unwrap() else { panic!("type") };
    assert_eq!(read.status_code, 200);
    assert_eq!(read.response_excerpt.as_deref(), Some("ok"));
    // And what the old codec writes is still v1.
    let written = old.encode(&read).unwrap();
    assert_eq!(u64::from_le_bytes(written[2..10].try_into().unwrap()), old.fingerprint_of("AttemptSucceeded").unwrap());
}

#[test]
fn corrupt_and_unknown_records_are_typed_errors() {
    let codec = Codec::new().unwrap();
    assert!(matches!(codec.decode(b""), Err(CodecError::TooShort { len: 0 })));
    assert!(matches!(codec.decode(b"{\"json\": true}"), Err(CodecError::BadMarker { .. })));
    let mut unknown = vec![0xC3, 0x01];
    unknown.extend_from_slice(&[9; 8]);
    assert!(matches!(codec.decode(&unknown), Err(CodecError::UnknownSchema { .. })));

    // Every truncation and every single-byte corruption of every sample: an error or a value,
    // never a panic.
    for sample in samples() {
        let bytes = encode_any(&codec, &sample);
        for cut in 0..bytes.len() {
            assert!(codec.decode(&bytes[..cut]).is_err(), "{} cut at {cut}", sample.name());
        }
        for i in 10..bytes.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let _ = codec.decode(&b);
            }
        }
    }
    // A length prefix claiming a huge string is refused without allocating it.
    let mut huge = encode_any(&codec, &samples()[6]);
    huge.truncate(10);
    huge.extend_from_slice(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    assert!(codec.decode(&huge).is_err());
}

/// Records carry the specification's fingerprint of their schema file (what Java and fastavro
/// compute); the same record with the legacy header that earlier versions wrote decodes the same.
#[test]
fn writes_the_specification_fingerprint_and_reads_the_legacy_one() {
    let codec = Codec::new().unwrap();
    for sample in samples() {
        let bytes = encode_any(&codec, &sample);
        let (file, json) = SCHEMA_FILES.iter().find(|(f, _)| f.starts_with(&format!("{}.v", sample.name()))).unwrap();
        let spec = parsing_fingerprint(json).unwrap();
        assert_eq!(bytes[2..10], spec.to_le_bytes(), "{file}");

        let legacy = legacy_fingerprint(spec).unwrap_or_else(|| panic!("{file} has no legacy fingerprint"));
        assert_ne!(legacy, spec, "{file}: every schema has a logical type, so the two differ");
        let mut old = bytes.clone();
        old[2..10].copy_from_slice(&legacy.to_le_bytes());
        assert_eq!(codec.peek_name(&old).unwrap(), sample.name());
        assert_eq!(codec.decode(&old).unwrap(), sample, "{file} with its legacy header");
        // A legacy record re-encoded gets the specification's header.
        assert_eq!(encode_any(&codec, &codec.decode(&old).unwrap()), bytes);
    }
}

/// The legacy fingerprints are apache-avro 0.22's (what earlier versions wrote), one for each
/// schema version released before the change. They are frozen in the codec: if a newer apache-avro
/// computes something else, this test fails and must be relaxed; the frozen values stay.
#[test]
fn legacy_fingerprints_are_what_apache_avro_wrote() {
    let mut with_legacy = 0;
    for (file, json) in SCHEMA_FILES {
        let Some(legacy) = legacy_fingerprint(parsing_fingerprint(json).unwrap()) else { continue };
        let written = Schema::parse_str(json).unwrap().fingerprint::<apache_avro::rabin::Rabin>();
        assert_eq!(legacy.to_le_bytes().as_slice(), &written.bytes[..], "{file}");
        with_legacy += 1;
    }
    assert_eq!(with_legacy, 14, "the 14 schema versions released before the change");
}
