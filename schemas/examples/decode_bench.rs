//! Decode cost per record: `cargo run --release -p hookline-schemas --example decode_bench`.
//! Encodes a DeliveryRequested (a 200-byte JSON payload) and an AttemptSucceeded like the
//! dispatcher's, then decodes each N times; prints ns per decode.

use std::time::Instant;

use hookline_schemas::{AnyEvent, AttemptSucceeded, Codec, DeliveryRequested, Envelope};

fn envelope(name: &str) -> Envelope {
    Envelope {
        event_id: "0190f1e2-0000-7000-8000-000000000001".into(),
        record_type: name.into(),
        occurred_at: 1_700_000_000_123,
        tenant_id: "acme".into(),
        trigger_id: Some("trg_01a22671a41c74c0b096e4e621283103".into()),
        delivery_id: Some("dlv_01a22671a41c74c0b096e4e621283104".into()),
        endpoint_id: Some("ep_01a22671a045771a8d31c2bc90b801b9".into()),
        attempt: Some(1),
        causation_id: Some("0190f1e2-0000-7000-8000-000000000002".into()),
        correlation_id: None,
    }
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let codec = Codec::new().expect("schemas");
    let requested = codec
        .encode(&DeliveryRequested {
            envelope: envelope("DeliveryRequested"),
            event_type: "invoice.paid".into(),
            payload: format!("{{\"id\":\"in_1\",\"amount\":4200,\"pad\":\"{}\"}}", "x".repeat(160)).into_bytes(),
            content_type: "application/json".into(),
            message_id: "msg_01a22671a41c74c0b096e4e621283105".into(),
            reason: "initial".into(),
            trigger_occurred_at: 1_700_000_000_000,
            not_before: None,
        })
        .expect("encode");
    let succeeded = codec
        .encode(&AttemptSucceeded {
            envelope: envelope("AttemptSucceeded"),
            message_id: "msg_01a22671a41c74c0b096e4e621283105".into(),
            status_code: 204,
            duration_ms: 3,
            response_excerpt: Some("ok".into()),
        })
        .expect("encode");
    for (name, bytes) in [("DeliveryRequested", &requested), ("AttemptSucceeded", &succeeded)] {
        let started = Instant::now();
        for _ in 0..n {
            let e: AnyEvent = codec.decode(std::hint::black_box(bytes)).expect("decode");
            std::hint::black_box(e);
        }
        let ns = started.elapsed().as_nanos() as f64 / n as f64;
        println!("{name:18} {} bytes: {ns:7.0} ns per decode ({n} decodes)", bytes.len());
    }
}
