//! Endpoint configuration rules. The API turns a request into an [`EndpointUpserted`] only
//! through [`validate`], so the router and dispatchers can trust what is on the endpoints topic.

use std::collections::BTreeMap;

use hookline_schemas::EndpointUpserted;

use crate::signing::Scheme;
use crate::subscriptions::validate_pattern;
use crate::transform::{CompileError, TemplateEngine};

/// A field that failed validation: `field` is the JSON path of the request (`event_types[2]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

/// A template that does not compile, as `template.body` / `template.headers.<name>`.
impl From<CompileError> for FieldError {
    fn from(e: CompileError) -> Self {
        err(format!("template.{}", e.field), format!("line {}, column {}: {}", e.line, e.column, e.message))
    }
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), reason: reason.into() }
}

/// Limits that come from the platform's configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_timeout_ms: u64,
}

pub const MAX_URL_LEN: usize = 2048;
pub const MAX_DESCRIPTION_LEN: usize = 1024;
pub const MAX_SUBSCRIPTIONS: usize = 100;
pub const MAX_HEADERS: usize = 50;
pub const MAX_HEADER_VALUE_LEN: usize = 4096;
pub const MAX_TEMPLATE_LEN: usize = 64 * 1024;
/// Headers the platform sets itself; an endpoint may not override them.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Checks a whole endpoint configuration.
pub fn validate(e: &EndpointUpserted, limits: &Limits) -> Result<(), FieldError> {
    validate_url(&e.url)?;
    if e.description.len() > MAX_DESCRIPTION_LEN {
        return Err(err("description", format!("at most {MAX_DESCRIPTION_LEN} bytes")));
    }
    if e.event_types.is_empty() {
        return Err(err("event_types", "must list at least one event type or pattern"));
    }
    if e.event_types.len() > MAX_SUBSCRIPTIONS {
        return Err(err("event_types", format!("at most {MAX_SUBSCRIPTIONS} entries")));
    }
    for (i, p) in e.event_types.iter().enumerate() {
        validate_pattern(p).map_err(|r| err(format!("event_types[{i}]"), r))?;
    }
    if e.timeout_ms < 100 || e.timeout_ms as u64 > limits.max_timeout_ms {
        return Err(err("timeout_ms", format!("must be between 100 and {}", limits.max_timeout_ms)));
    }
    validate_headers(&e.headers, "headers")?;
    if let Some(s) = &e.retry_schedule_ms {
        if s.is_empty() || s.len() > 50 {
            return Err(err("retry_schedule_ms", "must have 1 to 50 entries"));
        }
        if let Some(i) = s.iter().position(|&d| !(0..=7 * 86_400_000).contains(&d)) {
            return Err(err(format!("retry_schedule_ms[{i}]"), "must be between 0 and 7 days in ms"));
        }
    }
    if let Some(r) = &e.rate_limit {
        if !(r.per_second > 0.0 && r.per_second <= 100_000.0) {
            return Err(err("rate_limit.per_second", "must be above 0 and at most 100000"));
        }
        if !(1..=100_000).contains(&r.burst) {
            return Err(err("rate_limit.burst", "must be between 1 and 100000"));
        }
    }
    if let Some(b) = &e.batch {
        if !(1..=1000).contains(&b.max_size) {
            return Err(err("batch.max_size", "must be between 1 and 1000"));
        }
        if !(1..=60_000).contains(&b.max_wait_ms) {
            return Err(err("batch.max_wait_ms", "must be between 1 and 60000"));
        }
    }
    if let Some(t) = &e.template {
        if t.body.len() > MAX_TEMPLATE_LEN {
            return Err(err("template.body", format!("at most {MAX_TEMPLATE_LEN} bytes")));
        }
        if t.content_type.is_empty() || t.content_type.len() > 200 {
            return Err(err("template.content_type", "must be 1 to 200 characters"));
        }
        validate_headers(&t.headers, "template.headers")?;
        TemplateEngine::default().compile(t).map_err(FieldError::from)?;
    }
    for (i, k) in e.signing_keys.iter().enumerate() {
        if k.scheme.parse::<Scheme>().is_err() {
            return Err(err(format!("signing_keys[{i}].scheme"), "is not a known signature scheme"));
        }
    }
    Ok(())
}

pub fn validate_url(url: &str) -> Result<(), FieldError> {
    if url.len() > MAX_URL_LEN {
        return Err(err("url", format!("at most {MAX_URL_LEN} characters")));
    }
    let uri: http::Uri = url.parse().map_err(|_| err("url", "is not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(err("url", "must start with http:// or https://")),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => {}
        _ => return Err(err("url", "must name a host")),
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(err("url", "must not carry credentials; use custom headers"));
    }
    Ok(())
}

fn validate_headers(headers: &BTreeMap<String, String>, field: &str) -> Result<(), FieldError> {
    if headers.len() > MAX_HEADERS {
        return Err(err(field, format!("at most {MAX_HEADERS} headers")));
    }
    for (name, value) in headers {
        let path = format!("{field}.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(err(path, "is not a valid header name"));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(err(path, "is set by Hookline and cannot be overridden"));
        }
        if value.len() > MAX_HEADER_VALUE_LEN || http::HeaderValue::from_str(value).is_err() {
            return Err(err(path, "value must be visible ASCII, at most 4096 bytes"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_schemas::{Envelope, RateLimit, SigningKey, Template};

    fn ok() -> EndpointUpserted {
        EndpointUpserted {
            envelope: Envelope::default(),
            url: "https://example.com/hook".into(),
            description: String::new(),
            event_types: vec!["invoice.*".into()],
            enabled: true,
            version: 1,
            headers: BTreeMap::new(),
            timeout_ms: 10_000,
            retry_schedule_ms: None,
            rate_limit: None,
            batch: None,
            ordered: false,
            template: None,
            signing_keys: vec![],
            disabled_reason: None,
            created_at: 0,
        }
    }

    const LIMITS: Limits = Limits { max_timeout_ms: 60_000 };

    #[test]
    fn each_rule_names_its_field() {
        assert!(validate(&ok(), &LIMITS).is_ok());
        type Mutation = Box<dyn Fn(&mut EndpointUpserted)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|e| e.url = "ftp://x".into()), "url"),
            (Box::new(|e| e.url = "not a url".into()), "url"),
            (Box::new(|e| e.url = "https://user:pw@x.com/".into()), "url"),
            (Box::new(|e| e.event_types = vec![]), "event_types"),
            (Box::new(|e| e.event_types = vec!["a".into(), "b*".into()]), "event_types[1]"),
            (Box::new(|e| e.timeout_ms = 3_600_000), "timeout_ms"),
            (Box::new(|e| e.timeout_ms = 5), "timeout_ms"),
            (Box::new(|e| e.headers = BTreeMap::from([("webhook-id".into(), "x".into())])), "headers.webhook-id"),
            (Box::new(|e| e.headers = BTreeMap::from([("bad name".into(), "x".into())])), "headers.bad name"),
            (Box::new(|e| e.retry_schedule_ms = Some(vec![])), "retry_schedule_ms"),
            (Box::new(|e| e.retry_schedule_ms = Some(vec![0, -1])), "retry_schedule_ms[1]"),
            (Box::new(|e| e.rate_limit = Some(RateLimit { per_second: 0.0, burst: 1 })), "rate_limit.per_second"),
            (
                Box::new(|e| {
                    e.template = Some(Template {
                        body: "{{ payload.x ".into(),
                        headers: BTreeMap::new(),
                        content_type: "application/json".into(),
                    })
                }),
                "template.body",
            ),
            (
                Box::new(|e| {
                    e.signing_keys = vec![SigningKey {
                        key_id: "k".into(),
                        scheme: "hmac-md5".into(),
                        sealed_secret: vec![],
                        public_key: None,
                        created_at: 0,
                        expires_at: None,
                    }]
                }),
                "signing_keys[0].scheme",
            ),
        ];
        for (mutate, field) in cases {
            let mut e = ok();
            mutate(&mut e);
            assert_eq!(validate(&e, &LIMITS).unwrap_err().field, field);
        }
    }
}
