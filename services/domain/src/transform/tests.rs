use std::time::{Duration, Instant};

use super::*;

fn template(body: &str, content_type: &str) -> Template {
    Template { body: body.into(), headers: BTreeMap::new(), content_type: content_type.into() }
}

fn ctx(payload: &[u8]) -> RenderContext<'_> {
    RenderContext {
        payload,
        payload_content_type: "application/json",
        event_type: "order.paid",
        message_id: "msg_1",
        delivery_id: "del_1",
        endpoint_id: "ep_1",
        tenant_id: "t_1",
        attempt: 2,
        timestamp_ms: 1_614_265_330_123,
    }
}

fn render(body: &str, payload: &str) -> Result<String, RenderError> {
    let compiled = TemplateEngine::default().compile(&template(body, "application/json")).unwrap();
    compiled.render(&ctx(payload.as_bytes())).map(|r| r.body)
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

const ORDER: &str = r#"{"id": 42, "customer": {"name": "Ada \"The\" Lovelace\nLondon ✓", "email": "ada@example.com"},
    "items": [{"sku": "A-1", "qty": 2, "price": 9.5}, {"sku": "B-2", "qty": 1, "price": 20}],
    "paid": true, "note": null}"#;

#[test]
fn typical_transform() {
    let body = r#"{
  "type": "{{ event_type }}",
  "id": "{{ message_id }}",
  "attempt": {{ attempt }},
  "order": {{ payload.id }},
  "customer": "{{ payload.customer.name }}",
  "skus": [{% for item in payload.items %}"{{ item.sku }}"{% if not loop.last %},{% endif %}{% endfor %}],
  "paid": {{ payload.paid }},
  "at": "{{ timestamp_rfc3339 }}"
}"#;
    let out = render(body, ORDER).unwrap();
    assert_eq!(
        json(&out),
        serde_json::json!({
            "type": "order.paid", "id": "msg_1", "attempt": 2, "order": 42,
            "customer": "Ada \"The\" Lovelace\nLondon ✓",
            "skus": ["A-1", "B-2"], "paid": true, "at": "2021-02-25T15:02:10.123Z"
        })
    );
}

#[test]
fn json_filter_emits_subtrees() {
    let out = render(r#"{"items": {{ payload.items | json }}, "c": {{ payload.customer | json }}, "n": {{ payload.note | json }}, "s": {{ payload.customer.name | json }}}"#, ORDER).unwrap();
    let v = json(&out);
    let p = json(ORDER);
    assert_eq!(v["items"], p["items"]);
    assert_eq!(v["c"], p["customer"]);
    assert_eq!(v["n"], serde_json::Value::Null);
    assert_eq!(v["s"], p["customer"]["name"]);
    // Lists and maps written with the default formatter are JSON too.
    assert_eq!(json(&render("{{ payload.items }}", ORDER).unwrap()), p["items"]);
}

#[test]
fn strings_are_escaped_in_json_templates() {
    let payload = r#"{"s": "quote \" backslash \\ newline \n tab \t ctrl \u0001 unicode é ✓ 😀 </script>"}"#;
    let out = render(r#"{"v": "{{ payload.s }}"}"#, payload).unwrap();
    assert_eq!(json(&out)["v"], json(payload)["s"]);
    // An attempt to break out of the string stays inside it.
    let out =
        render(r#"{"v": "{{ payload.s }}", "admin": false}"#, r#"{"s": "\", \"admin\": true, \"x\": \""}"#).unwrap();
    assert_eq!(json(&out)["admin"], false);
    // Non-JSON templates write strings as they are.
    let compiled =
        TemplateEngine::default().compile(&template("name={{ payload.customer.name }}", "text/plain")).unwrap();
    assert_eq!(compiled.render(&ctx(ORDER.as_bytes())).unwrap().body, "name=Ada \"The\" Lovelace\nLondon ✓");
}

#[test]
fn defaults_dates_and_small_filters() {
    let out = render(
        r#"{"nick": "{{ payload.customer?.nickname | default: "n/a" }}", "note": "{{ payload.note | default: "none" }}",
            "name": "{{ payload.customer.name | default: "n/a" | upper }}", "day": "{{ timestamp | date: "%Y-%m-%d %H:%M" }}",
            "n": {{ payload.items | length }}, "ts": "{{ timestamp | rfc3339 }}"}"#,
        ORDER,
    )
    .unwrap();
    let v = json(&out);
    assert_eq!(v["nick"], "n/a");
    assert_eq!(v["note"], "none");
    assert_eq!(v["name"], "ADA \"THE\" LOVELACE\nLONDON ✓");
    assert_eq!(v["day"], "2021-02-25 15:02");
    assert_eq!(v["n"], 2);
    assert_eq!(v["ts"], "2021-02-25T15:02:10.123Z");
}

#[test]
fn compile_errors_have_line_and_column() {
    let engine = TemplateEngine::default();
    let e = engine
        .compile(&template("{\n  \"a\": {{ payload.a }},\n  \"b\": {{ payload.b \n}", "application/json"))
        .unwrap_err();
    // The unclosed expression is noticed at the closing brace on line 4.
    assert_eq!((e.field.as_str(), e.line, e.column), ("body", 4, 1), "{e}");
    assert!(e.message.starts_with("invalid syntax"), "{e}");
    let e = engine.compile(&template("ok\n  {% if x %}never closed", "text/plain")).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    let e = engine.compile(&template("a\n{% include \"other\" %}", "text/plain")).unwrap_err();
    assert_eq!((e.line, e.column), (2, 1));
    assert!(e.message.contains("include"));
    let mut t = template("{}", "application/json");
    t.headers.insert("X-Order".into(), "{{ payload.id ".into());
    let e = engine.compile(&t).unwrap_err();
    assert_eq!(e.field, "headers.X-Order");
}

#[test]
fn render_errors_point_at_the_users_source() {
    // The loop guards inserted after `for` tags must not shift reported positions.
    let body = "[{% for i in payload.items %}{% for j in payload.items %}{{ j.nope }}{% endfor %}{% endfor %}]";
    let Err(RenderError::Template { field, line, column, message }) = render(body, ORDER) else { panic!() };
    assert_eq!(field, "body");
    // upon points at the failing member, `.nope`.
    assert_eq!((line, column), (1, body.find(".nope").unwrap() + 1), "{message}");
    assert!(message.contains("not found"), "{message}");
}

#[test]
fn headers_render_and_refuse_injection() {
    let mut t = template(r#"{"id": {{ payload.id }}}"#, "application/json; charset=utf-8");
    t.headers.insert("X-Order".into(), " order-{{ payload.id }}\n".into());
    t.headers.insert("X-Customer".into(), "{{ payload.customer.email }}".into());
    let compiled = TemplateEngine::default().compile(&t).unwrap();
    let r = compiled.render(&ctx(ORDER.as_bytes())).unwrap();
    assert_eq!(r.headers, [("X-Customer".into(), "ada@example.com".into()), ("X-Order".into(), "order-42".into())]);
    assert_eq!(r.content_type, "application/json; charset=utf-8");
    t.headers.insert("X-Name".into(), "{{ payload.customer.name }}".into());
    let compiled = TemplateEngine::default().compile(&t).unwrap();
    assert_eq!(
        compiled.render(&ctx(ORDER.as_bytes())).unwrap_err(),
        RenderError::InvalidHeaderValue { name: "X-Name".into() }
    );
}

#[test]
fn literal_closing_braces_are_accepted() {
    let out = render(r#"{"a": {"b": {"c": {{ payload.id }}}}, "d": "}}"}"#, ORDER).unwrap();
    assert_eq!(json(&out), serde_json::json!({"a": {"b": {"c": 42}}, "d": "}}"}));
    // Errors after an escaped brace still point at the user's text.
    let Err(RenderError::Template { line, column, .. }) = render("{\"a\": {\"b\": 1}},\n {{ payload.nope }}", ORDER)
    else {
        panic!()
    };
    assert_eq!((line, column), (2, 12));
}

#[test]
fn json_output_is_checked() {
    let Err(RenderError::InvalidJsonOutput { line, .. }) = render("{\"a\": {{ payload.customer.name | raw }}}", ORDER)
    else {
        panic!()
    };
    assert_eq!(line, 1);
    // A missing value is `null` in JSON templates; inside quotes that is the string "null".
    assert_eq!(json(&render(r#"{"a": {{ payload.note }}}"#, ORDER).unwrap())["a"], serde_json::Value::Null);
}

#[test]
fn payloads_that_are_not_json() {
    let compiled =
        TemplateEngine::default().compile(&template("got: {{ payload }}{{ payload_base64 }}", "text/plain")).unwrap();
    let mut c = ctx(b"plain text");
    c.payload_content_type = "text/plain";
    assert_eq!(compiled.render(&c).unwrap().body, "got: plain text");
    let mut c = ctx(&[0xff, 0xfe]);
    c.payload_content_type = "application/octet-stream";
    assert_eq!(compiled.render(&c).unwrap().body, "got: //4=");
    assert!(matches!(compiled.render(&ctx(b"{not json")), Err(RenderError::PayloadNotJson(_))));
}

fn big_array(n: usize) -> String {
    format!(r#"{{"xs": [{}]}}"#, (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(","))
}

#[test]
fn silent_nested_loops_hit_the_work_limit_quickly() {
    let payload = big_array(10_000);
    let started = Instant::now();
    let e =
        render("{% for a in payload.xs %}{% for b in payload.xs %}{% endfor %}{% endfor %}null", &payload).unwrap_err();
    assert_eq!(e, RenderError::TooMuchWork { field: "body".into(), limit: 100_000 });
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // Trimmed tags keep their whitespace behaviour with the guard in place.
    assert_eq!(
        render(
            "[ {%- for a in payload.xs -%} \n {{ a }} {%- if not loop.last %},{% endif %} {%- endfor -%} ]",
            &big_array(3)
        )
        .unwrap(),
        "[0,1,2]"
    );
    // Within budget is fine, and the budget is per render.
    let compiled = TemplateEngine::default()
        .compile(&template("{% for a in payload.xs %}{% endfor %}1", "application/json"))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(compiled.render(&ctx(big_array(60_000).as_bytes())).unwrap().body, "1");
    }
}

#[test]
fn giant_output_is_cut_off() {
    let payload = big_array(10_000);
    let started = Instant::now();
    let e = render("[{% for a in payload.xs %}{{ payload.xs | json }},{% endfor %}0]", &payload).unwrap_err();
    assert_eq!(e, RenderError::OutputTooLarge { field: "body".into(), limit: 256 * 1024 });
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let limits = Limits { max_output_bytes: 10, ..Limits::default() };
    let compiled = TemplateEngine::new(limits).compile(&template("{{ payload.xs }}", "application/json")).unwrap();
    assert!(matches!(compiled.render(&ctx(payload.as_bytes())), Err(RenderError::OutputTooLarge { .. })));
}

#[test]
fn oversized_payload_is_refused() {
    let limits = Limits { max_payload_bytes: 100, ..Limits::default() };
    let compiled = TemplateEngine::new(limits).compile(&template("{}", "application/json")).unwrap();
    assert_eq!(
        compiled.render(&ctx(big_array(1000).as_bytes())).unwrap_err(),
        RenderError::PayloadTooLarge { size: big_array(1000).len(), limit: 100 }
    );
}

#[test]
fn hostile_inputs_error_instead_of_panicking() {
    let engine = TemplateEngine::default();
    let nested = format!("{}{}", "[".repeat(100), "]".repeat(100));
    for (body, payload) in [
        ("{{ payload.xs.999999 }}", big_array(2)),
        ("{{ payload | date: \"%Y\" }}", big_array(2)),
        ("{{ payload.xs | upper }}", big_array(2)),
        ("{{ unknown_fn(payload) }}", big_array(2)),
        ("{{ payload | nope }}", big_array(2)),
        ("{% for k, v in payload.xs %}{% endfor %}", big_array(2)),
        ("{{ payload | json }}", nested.clone()),
        (&"{% if true %}".repeat(1000), big_array(1)),
    ] {
        match engine.compile(&template(body, "application/json")) {
            Ok(c) => assert!(c.render(&ctx(payload.as_bytes())).is_err() || body.contains("json"), "{body}"),
            Err(e) => assert!(!e.message.is_empty()),
        }
    }
    assert!(engine.compile(&template(&"x".repeat(MAX_TEMPLATE_LEN + 1), "text/plain")).is_err());
}

#[test]
fn compiled_templates_are_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledTemplate>();
    assert_send_sync::<TemplateEngine>();
    assert!(is_json_content_type("application/vnd.api+json; charset=utf-8"));
    assert!(is_json_content_type("Application/JSON"));
    assert!(!is_json_content_type("text/plain"));
    assert!(!is_json_content_type("+json"));
}
