//! Formatters and filters available to endpoint templates.
//!
//! Formatters decide how a value is written:
//! - JSON templates' default formatter writes strings JSON-escaped without quotes (safe inside
//!   `"…"`), numbers and booleans as JSON, `None` as `null`, lists and maps as compact JSON.
//! - Other templates' default formatter writes strings as they are, `None` as nothing, lists
//!   and maps as compact JSON.
//! - `json`: the value as a complete JSON value (strings quoted): `{{ payload.items | json }}`.
//! - `raw`: strings unescaped, for the rare JSON template that embeds pre-escaped text.
//!
//! Filters (functions) transform a value before it is written:
//! - `default: x` — `x` when the value is `None` or an empty string. Missing fields are an error
//!   in `upon` unless looked up with `?.`: `{{ payload?.nickname | default: "n/a" }}`.
//! - `date: "%Y-%m-%d"` — a UTC ms timestamp with a strftime subset (see [`super::date`]).
//! - `rfc3339` — a UTC ms timestamp as `2024-01-02T03:04:05.678Z`.
//! - `upper`, `lower`, `length` (of a string, list or map).

use std::cell::Cell;
use std::fmt::Write;

use upon::{Value, fmt};

use super::date;

/// Writes `s` JSON-escaped, without quotes.
pub fn write_escaped(f: &mut impl Write, s: &str) -> std::fmt::Result {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f | 0x7f => {
                f.write_str(&s[start..i])?;
                write!(f, "\\u{b:04x}")?;
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        f.write_str(&s[start..i])?;
        f.write_str(esc)?;
        start = i + 1;
    }
    f.write_str(&s[start..])
}

fn write_float(f: &mut fmt::Formatter<'_>, x: f64) -> fmt::Result {
    match serde_json::Number::from_f64(x) {
        Some(n) => Ok(write!(f, "{n}")?),
        None => Err(fmt::Error::from(format!("{x} cannot be written as JSON"))),
    }
}

/// Writes `v` as a complete JSON value, piece by piece (so the output cap stops it early).
pub fn write_json(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::None => f.write_str("null")?,
        Value::Bool(b) => write!(f, "{b}")?,
        Value::Integer(i) => write!(f, "{i}")?,
        Value::Float(x) => write_float(f, *x)?,
        Value::String(s) => {
            f.write_char('"')?;
            write_escaped(f, s)?;
            f.write_char('"')?;
        }
        Value::List(items) => {
            f.write_char('[')?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_char(',')?;
                }
                write_json(f, item)?;
            }
            f.write_char(']')?;
        }
        Value::Map(map) => {
            f.write_char('{')?;
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    f.write_char(',')?;
                }
                f.write_char('"')?;
                write_escaped(f, k)?;
                f.write_str("\":")?;
                write_json(f, item)?;
            }
            f.write_char('}')?;
        }
    }
    Ok(())
}

/// Default formatter of JSON templates.
pub fn json_default(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::String(s) => Ok(write_escaped(f, s)?),
        other => write_json(f, other),
    }
}

/// Default formatter of other templates.
pub fn text_default(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::None => Ok(()),
        Value::String(s) => Ok(f.write_str(s)?),
        Value::Float(x) => write_float(f, *x),
        other => write_json(f, other),
    }
}

/// The `raw` formatter.
pub fn raw(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    text_default(f, v)
}

thread_local! {
    /// Loop iterations left in the render running on this thread. Rendering is synchronous,
    /// so a thread-local is exactly "this render".
    static LOOP_BUDGET: Cell<u64> = const { Cell::new(u64::MAX) };
    static LOOP_TRIPPED: Cell<bool> = const { Cell::new(false) };
}

/// Arms the loop budget for a render on this thread.
pub fn arm_loop_budget(iterations: u64) {
    LOOP_BUDGET.with(|b| b.set(iterations));
    LOOP_TRIPPED.with(|t| t.set(false));
}

/// True when the last render on this thread ran out of loop budget.
pub fn loop_budget_tripped() -> bool {
    LOOP_TRIPPED.with(Cell::get)
}

/// The loop guard formatter: writes nothing, fails once the budget is spent.
pub fn loop_guard(_: &mut fmt::Formatter<'_>, _: &Value) -> fmt::Result {
    LOOP_BUDGET.with(|b| match b.get() {
        0 => {
            LOOP_TRIPPED.with(|t| t.set(true));
            Err(fmt::Error::from("loop iteration limit reached"))
        }
        n => {
            b.set(n - 1);
            Ok(())
        }
    })
}

pub fn default(v: &Value, fallback: Value) -> Value {
    match v {
        Value::None => fallback,
        Value::String(s) if s.is_empty() => fallback,
        other => other.clone(),
    }
}

fn as_ms(v: &Value) -> Result<i64, String> {
    match v {
        Value::Integer(i) => Ok(*i),
        Value::Float(x) if x.is_finite() && x.abs() < 9.0e15 => Ok(*x as i64),
        Value::String(s) => s.trim().parse().map_err(|_| format!("expected a timestamp in ms, got the string `{s}`")),
        other => Err(format!("expected a timestamp in ms, got {}", type_name(other))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::None => "none",
        Value::Bool(_) => "a bool",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::String(_) => "a string",
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
    }
}

pub fn date(v: &Value, format: &str) -> Result<String, String> {
    date::format(as_ms(v)?, format)
}

pub fn rfc3339(v: &Value) -> Result<String, String> {
    Ok(date::rfc3339(as_ms(v)?))
}

pub fn length(v: &Value) -> Result<i64, String> {
    match v {
        Value::String(s) => Ok(s.chars().count() as i64),
        Value::List(l) => Ok(l.len() as i64),
        Value::Map(m) => Ok(m.len() as i64),
        other => Err(format!("length of {} is undefined", type_name(other))),
    }
}

pub fn upper(s: &str) -> String {
    s.to_uppercase()
}

pub fn lower(s: &str) -> String {
    s.to_lowercase()
}
