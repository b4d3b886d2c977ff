//! Signing and template throughput. Not run in CI:
//! `cargo bench -p hookline-domain --bench signing -- --quick`
//!
//! Signatures/s per scheme on 1 KiB and 64 KiB bodies (the RSA key is the 2048-bit test key),
//! template renders/s for a typical JSON transform, and secret open (unseal) cost.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hookline_domain::sealing::{self, MasterKeys};
use hookline_domain::signing::{KeyMaterial, Scheme, generate};
use hookline_domain::transform::{RenderContext, TemplateEngine};
use hookline_schemas::Template;

const RSA_KEY: &str = include_str!("../tests/vectors/rsa-test-key.pem");

fn key(scheme: Scheme) -> KeyMaterial {
    match scheme {
        Scheme::RsaPkcs1v15Sha256 | Scheme::RsaPssSha256 => KeyMaterial::parse(scheme, RSA_KEY).unwrap(),
        _ => KeyMaterial::parse(scheme, &generate(scheme).unwrap().secret).unwrap(),
    }
}

fn signing(c: &mut Criterion) {
    let mut g = c.benchmark_group("sign");
    g.throughput(Throughput::Elements(1));
    for scheme in Scheme::ALL {
        let key = key(scheme);
        for size in [1024usize, 64 * 1024] {
            let body = vec![b'x'; size];
            g.bench_with_input(BenchmarkId::new(scheme.as_str(), format!("{}KiB", size / 1024)), &body, |b, body| {
                b.iter(|| key.sign(black_box("msg_2Lq1"), black_box(1_712_345_678), black_box(body)).unwrap())
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("parse_key");
    g.bench_function("rsa-2048-pkcs8-pem", |b| {
        b.iter(|| KeyMaterial::parse(Scheme::RsaPssSha256, black_box(RSA_KEY)).unwrap())
    });
    g.finish();

    let keys = MasterKeys::parse(&MasterKeys::generate_entry("k1").unwrap()).unwrap();
    let sealed = sealing::seal(&keys, b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    c.bench_function("unseal", |b| b.iter(|| sealing::open(&keys, black_box(&sealed)).unwrap()));
}

const PAYLOAD: &str = r#"{"id": 42, "customer": {"name": "Ada \"The\" Lovelace", "email": "ada@example.com"},
  "items": [{"sku": "A-1", "qty": 2, "price": 9.5}, {"sku": "B-2", "qty": 1, "price": 20},
            {"sku": "C-3", "qty": 5, "price": 1.25}, {"sku": "D-4", "qty": 1, "price": 99}],
  "paid": true, "currency": "EUR", "note": null}"#;

const BODY: &str = r#"{
  "type": "{{ event_type }}",
  "id": "{{ message_id }}",
  "order": {{ payload.id }},
  "customer": {"name": "{{ payload.customer.name }}", "email": "{{ payload.customer.email }}"},
  "lines": [{% for item in payload.items %}{"sku": "{{ item.sku }}", "qty": {{ item.qty }}}{% if not loop.last %},{% endif %}{% endfor %}],
  "note": "{{ payload.note | default: "none" }}",
  "day": "{{ timestamp | date: "%Y-%m-%d" }}",
  "raw": {{ payload | json }}
}"#;

fn templates(c: &mut Criterion) {
    let engine = TemplateEngine::default();
    let mut headers = BTreeMap::new();
    headers.insert("X-Order".to_owned(), "order-{{ payload.id }}".to_owned());
    let t = Template { body: BODY.into(), headers, content_type: "application/json".into() };
    let compiled = engine.compile(&t).unwrap();
    let ctx = RenderContext {
        payload: PAYLOAD.as_bytes(),
        payload_content_type: "application/json",
        event_type: "order.paid",
        message_id: "msg_1",
        delivery_id: "del_1",
        endpoint_id: "ep_1",
        tenant_id: "t_1",
        attempt: 1,
        timestamp_ms: 1_712_345_678_000,
    };
    let mut g = c.benchmark_group("template");
    g.throughput(Throughput::Elements(1));
    g.bench_function("render_typical", |b| b.iter(|| compiled.render(black_box(&ctx)).unwrap()));
    g.bench_function("compile_typical", |b| b.iter(|| engine.compile(black_box(&t)).unwrap()));
    g.finish();
}

criterion_group!(benches, signing, templates);
criterion_main!(benches);
