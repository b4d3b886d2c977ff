//! Transformation: an endpoint's `upon` template turns the event into the body (and optionally
//! headers) sent. Compile once per endpoint configuration version with
//! [`TemplateEngine::compile`], then [`CompiledTemplate::render`] per delivery.
//!
//! Template variables: `payload` (the event body parsed as JSON when its content type is JSON,
//! else the body as a string when it is UTF-8, else `None` with `payload_base64` set),
//! `event_type`, `message_id`, `delivery_id`, `endpoint_id`, `tenant_id`, `attempt`,
//! `timestamp` (UTC ms) and `timestamp_rfc3339`. `payload_base64` is `None` unless the payload
//! is neither JSON nor UTF-8. Formatters and filters: see [`filters`].
//!
//! Syntax is `upon`'s, with one fix: literal `}}` (common when closing nested JSON objects) is
//! accepted and written as is; `upon` alone would read it as a closing delimiter (see [`scan`]).
//!
//! Bounds, every one a [`RenderError`] (a permanent failure of that delivery) and never a panic:
//! - payload size ([`Limits::max_payload_bytes`]): it bounds the context built per render;
//! - output size ([`Limits::max_output_bytes`], headers [`Limits::max_header_bytes`]): the
//!   writer refuses the first byte over the cap, which stops rendering there;
//! - loop work ([`Limits::max_loop_iterations`]): `upon` 0.11 has no iteration limit, and a loop
//!   that emits nothing never meets the output cap, so every loop body gets a guard (see
//!   [`scan`]) that counts iterations across the whole render. Work per iteration is bounded by
//!   the template's size (at most 64 KiB), so this bounds render time;
//! - includes: endpoint templates cannot register partials, so `{% include %}` is refused at
//!   compile time (and the engine's include depth is set to 1 as a backstop).
//!
//! When the template's content type is JSON the output must parse as JSON.

pub mod date;
pub mod filters;
pub mod scan;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hookline_schemas::Template;
use upon::Value;

use crate::endpoint::{MAX_HEADER_VALUE_LEN, MAX_TEMPLATE_LEN};

/// Render bounds. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest rendered body, in bytes. Default 256 KiB.
    pub max_output_bytes: usize,
    /// Largest rendered header value, in bytes. Default 4096.
    pub max_header_bytes: usize,
    /// Most loop iterations in one render (all loops, body and headers together). Default 100 000.
    pub max_loop_iterations: u64,
    /// Largest event payload a template renders from, in bytes. Default 1 MiB.
    pub max_payload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output_bytes: 256 * 1024,
            max_header_bytes: MAX_HEADER_VALUE_LEN,
            max_loop_iterations: 100_000,
            max_payload_bytes: 1024 * 1024,
        }
    }
}

/// A template that does not compile. `field` is `body` or `headers.<name>`; `line` and `column`
/// are 1-based (column in characters) in that template's source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {field}: line {line}, column {column}: {message}")]
pub struct CompileError {
    pub field: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why a render failed. All of these are permanent for the delivery (retrying renders the same
/// template over the same payload); the `Display` text is the reason to record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("payload is {size} bytes; templates render payloads of at most {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("payload is declared as JSON but does not parse: {0}")]
    PayloadNotJson(String),
    #[error("template {field}: line {line}, column {column}: {message}")]
    Template { field: String, line: usize, column: usize, message: String },
    #[error("template {field}: output exceeds {limit} bytes")]
    OutputTooLarge { field: String, limit: usize },
    #[error("template {field}: more than {limit} loop iterations")]
    TooMuchWork { field: String, limit: u64 },
    #[error("rendered body is not valid JSON (line {line}, column {column} of the output): {message}")]
    InvalidJsonOutput { line: usize, column: usize, message: String },
    #[error(
        "template headers.{name}: rendered value is not a valid header value (control characters such as a newline?)"
    )]
    InvalidHeaderValue { name: String },
    #[error("template {field}: internal error while rendering")]
    Internal { field: String },
}

/// What a template renders from. Borrowed: build one per delivery attempt.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    /// The event payload, exactly as triggered.
    pub payload: &'a [u8],
    /// The payload's content type (decides whether `payload` is parsed as JSON).
    pub payload_content_type: &'a str,
    pub event_type: &'a str,
    pub message_id: &'a str,
    pub delivery_id: &'a str,
    pub endpoint_id: &'a str,
    pub tenant_id: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Time of the event, UTC ms.
    pub timestamp_ms: i64,
}

/// A rendered request body and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: String,
    /// Header templates' results, names as configured, values trimmed.
    pub headers: Vec<(String, String)>,
    pub content_type: String,
}

/// True for `application/json`, `text/json` and `*/*+json`, parameters ignored.
pub fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || (essence.contains('/') && essence.ends_with("+json"))
}

struct Inner {
    json: upon::Engine<'static>,
    text: upon::Engine<'static>,
    limits: Limits,
}

/// Compiles endpoint templates. Cheap to clone; build one per process.
#[derive(Clone)]
pub struct TemplateEngine {
    inner: Arc<Inner>,
}

impl fmt::Debug for TemplateEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateEngine").field("limits", &self.inner.limits).finish()
    }
}

impl Default for TemplateEngine {
    fn default() -> Self {
        TemplateEngine::new(Limits::default())
    }
}

fn engine<F>(default_formatter: &'static F) -> upon::Engine<'static>
where
    F: Fn(&mut upon::fmt::Formatter<'_>, &Value) -> upon::fmt::Result + Sync + Send + 'static,
{
    let mut e = upon::Engine::new();
    e.set_default_formatter(default_formatter);
    e.set_max_include_depth(1);
    e.add_formatter("json", filters::write_json);
    e.add_formatter("raw", filters::raw);
    e.add_formatter(scan::LOOP_GUARD, filters::loop_guard);
    e.add_function("default", filters::default);
    e.add_function("date", filters::date);
    e.add_function("rfc3339", filters::rfc3339);
    e.add_function("length", filters::length);
    e.add_function("upper", filters::upper);
    e.add_function("lower", filters::lower);
    e
}

impl TemplateEngine {
    pub fn new(limits: Limits) -> Self {
        let inner = Inner { json: engine(&filters::json_default), text: engine(&filters::text_default), limits };
        TemplateEngine { inner: Arc::new(inner) }
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Compiles an endpoint's template (body and header templates). Errors point at the first
    /// problem, with its line and column.
    pub fn compile(&self, t: &Template) -> Result<CompiledTemplate, CompileError> {
        let json_output = is_json_content_type(&t.content_type);
        let body = self.compile_one("body", &t.body, if json_output { &self.inner.json } else { &self.inner.text })?;
        let mut headers = Vec::with_capacity(t.headers.len());
        for (name, source) in &t.headers {
            let field = format!("headers.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(CompileError { field, line: 1, column: 1, message: "not a valid header name".into() });
            }
            headers.push((name.clone(), self.compile_one(&field, source, &self.inner.text)?));
        }
        Ok(CompiledTemplate {
            inner: self.inner.clone(),
            json_output,
            content_type: t.content_type.clone(),
            body,
            headers,
        })
    }

    fn compile_one(&self, field: &str, source: &str, engine: &upon::Engine<'static>) -> Result<Part, CompileError> {
        let err = |(line, column): (usize, usize), message: String| CompileError {
            field: field.into(),
            line,
            column,
            message,
        };
        if source.len() > MAX_TEMPLATE_LEN {
            return Err(err((1, 1), format!("template is longer than {MAX_TEMPLATE_LEN} bytes")));
        }
        let prepared = scan::prepare(source);
        if let Some(at) = prepared.include_at {
            return Err(err(scan::line_col(source, at), "`include` is not available in endpoint templates".into()));
        }
        let template = engine.compile(prepared.source.clone()).map_err(|e| {
            let (pos, message) = upon_error(&e);
            err(pos.map_or((1, 1), |(l, c)| map_position(source, &prepared, l, c)), message)
        })?;
        Ok(Part { source: source.to_owned(), prepared, template })
    }
}

struct Part {
    source: String,
    prepared: scan::Prepared,
    template: upon::Template<'static>,
}

/// A (line, column) in the prepared source, as the same position in the user's source.
fn map_position(source: &str, prepared: &scan::Prepared, line: usize, col: usize) -> (usize, usize) {
    let at = scan::offset_of(&prepared.source, line, col);
    scan::line_col(source, scan::original_offset(at, &prepared.edits))
}

/// A compiled endpoint template. `Send + Sync`; cache it per endpoint configuration version.
pub struct CompiledTemplate {
    inner: Arc<Inner>,
    json_output: bool,
    content_type: String,
    body: Part,
    headers: Vec<(String, Part)>,
}

impl fmt::Debug for CompiledTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledTemplate")
            .field("content_type", &self.content_type)
            .field("headers", &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// (1-based line and column, message) of an `upon` error. `upon` shows the position only in
/// its alternate (`{:#}`) form, as `--> <name>:LINE:COL`.
fn upon_error(e: &upon::Error) -> (Option<(usize, usize)>, String) {
    let message = e.to_string();
    let pretty = format!("{e:#}");
    let pos = pretty.lines().find_map(|l| l.trim_start().strip_prefix("--> ")).and_then(|loc| {
        let mut it = loc.rsplitn(3, ':');
        let col = it.next()?.trim().parse().ok()?;
        let line = it.next()?.trim().parse().ok()?;
        Some((line, col))
    });
    (pos, message)
}

/// An `io::Write` into a buffer that refuses to grow past `limit`.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.overflowed = true;
            return Err(io::Error::other("output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl CompiledTemplate {
    /// The content type of the rendered body.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// Renders body and headers for one delivery.
    pub fn render(&self, ctx: &RenderContext<'_>) -> Result<Rendered, RenderError> {
        let limits = &self.inner.limits;
        if ctx.payload.len() > limits.max_payload_bytes {
            return Err(RenderError::PayloadTooLarge { size: ctx.payload.len(), limit: limits.max_payload_bytes });
        }
        let globals = context(ctx)?;
        filters::arm_loop_budget(limits.max_loop_iterations);
        let engine = if self.json_output { &self.inner.json } else { &self.inner.text };
        let body = self.render_part("body", &self.body, engine, &globals, limits.max_output_bytes)?;
        if self.json_output
            && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&body)
        {
            return Err(RenderError::InvalidJsonOutput {
                line: e.line(),
                column: e.column(),
                message: json_reason(&e),
            });
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, part) in &self.headers {
            let field = format!("headers.{name}");
            let value = self.render_part(&field, part, &self.inner.text, &globals, limits.max_header_bytes)?;
            let value = value.trim();
            if http::HeaderValue::from_str(value).is_err() {
                return Err(RenderError::InvalidHeaderValue { name: name.clone() });
            }
            headers.push((name.clone(), value.to_owned()));
        }
        Ok(Rendered { body, headers, content_type: self.content_type.clone() })
    }

    fn render_part(
        &self,
        field: &str,
        part: &Part,
        engine: &upon::Engine<'static>,
        globals: &Value,
        limit: usize,
    ) -> Result<String, RenderError> {
        let mut out = CappedWriter { buf: Vec::new(), limit, overflowed: false };
        // `upon` may panic on an internal invariant; a template must never take the process down.
        let result = catch_unwind(AssertUnwindSafe(|| part.template.render(engine, globals).to_writer(&mut out)))
            .map_err(|_| RenderError::Internal { field: field.into() })?;
        if out.overflowed {
            return Err(RenderError::OutputTooLarge { field: field.into(), limit });
        }
        if filters::loop_budget_tripped() {
            return Err(RenderError::TooMuchWork { field: field.into(), limit: self.inner.limits.max_loop_iterations });
        }
        if let Err(e) = result {
            let (pos, message) = upon_error(&e);
            let (line, column) = pos.map_or((1, 1), |(l, c)| map_position(&part.source, &part.prepared, l, c));
            return Err(RenderError::Template { field: field.into(), line, column, message });
        }
        // Every write came from `&str`s, so the bytes are UTF-8.
        String::from_utf8(out.buf).map_err(|_| RenderError::Internal { field: field.into() })
    }
}

/// serde_json's message without its " at line L column C" suffix (reported separately).
fn json_reason(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

fn to_value(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::None,
        serde_json::Value::Bool(b) => Value::Bool(b),
        // Integers beyond i64 (u64 above 2^63) become floats: `upon` has no wider integer.
        serde_json::Value::Number(n) => {
            n.as_i64().map(Value::Integer).unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN)))
        }
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(a) => Value::List(a.into_iter().map(to_value).collect()),
        serde_json::Value::Object(o) => Value::Map(o.into_iter().map(|(k, v)| (k, to_value(v))).collect()),
    }
}

fn context(ctx: &RenderContext<'_>) -> Result<Value, RenderError> {
    let mut m = BTreeMap::new();
    if is_json_content_type(ctx.payload_content_type) {
        let v: serde_json::Value =
            serde_json::from_slice(ctx.payload).map_err(|e| RenderError::PayloadNotJson(e.to_string()))?;
        m.insert("payload".into(), to_value(v));
    } else {
        match std::str::from_utf8(ctx.payload) {
            Ok(s) => {
                m.insert("payload".into(), Value::String(s.to_owned()));
            }
            Err(_) => {
                m.insert("payload".into(), Value::None);
                m.insert("payload_base64".into(), Value::String(B64.encode(ctx.payload)));
            }
        }
    }
    m.entry("payload_base64".into()).or_insert(Value::None);
    let s = |x: &str| Value::String(x.to_owned());
    m.insert("event_type".into(), s(ctx.event_type));
    m.insert("message_id".into(), s(ctx.message_id));
    m.insert("delivery_id".into(), s(ctx.delivery_id));
    m.insert("endpoint_id".into(), s(ctx.endpoint_id));
    m.insert("tenant_id".into(), s(ctx.tenant_id));
    m.insert("attempt".into(), Value::Integer(i64::from(ctx.attempt)));
    m.insert("timestamp".into(), Value::Integer(ctx.timestamp_ms));
    m.insert("timestamp_rfc3339".into(), Value::String(date::rfc3339(ctx.timestamp_ms)));
    Ok(Value::Map(m))
}

#[cfg(test)]
mod tests;
