//! The Avro specification's Parsing Canonical Form and its CRC-64-AVRO (Rabin) fingerprint.
//!
//! Computed here over the schema JSON rather than taken from apache-avro, whose canonical form
//! keeps a primitive carrying a `logicalType` as `{"type":"long"}` where the specification (and
//! Java's `SchemaNormalization`, fastavro, …) give `"long"`. Every Hookline schema has such a field,
//! so apache-avro's fingerprints match no other library's.

use serde_json::{Map, Value};

use crate::codec::Fingerprint;
use crate::error::CodecError;

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The Parsing Canonical Form of a schema given as JSON text, as the Avro specification defines
/// it: [PRIMITIVES], [FULLNAMES], [STRIP], [ORDER], [STRINGS], [INTEGERS], [WHITESPACE].
///
/// The input must be a valid schema; this checks only what it needs to produce the form.
pub fn parsing_canonical_form(schema_json: &str) -> Result<String, CodecError> {
    canonical_form(schema_json).map_err(|reason| CodecError::CanonicalForm { schema: "schema text".into(), reason })
}

/// The CRC-64-AVRO (Rabin) fingerprint of a schema's Parsing Canonical Form: what Java's
/// `SchemaNormalization.parsingFingerprint64` and fastavro's `fingerprint(…, "CRC-64-AVRO")`
/// compute, and what single-object encoding puts in bytes 2–9 (little-endian).
pub fn parsing_fingerprint(schema_json: &str) -> Result<Fingerprint, CodecError> {
    Ok(crc64_avro(parsing_canonical_form(schema_json)?.as_bytes()))
}

/// The Parsing Canonical Form, with the reason for a failure as a plain string for callers that
/// add their own context.
pub(crate) fn canonical_form(schema_json: &str) -> Result<String, String> {
    let schema: Value = serde_json::from_str(schema_json).map_err(|e| format!("not JSON: {e}"))?;
    let mut out = String::with_capacity(schema_json.len() / 2);
    write_schema(&mut out, &schema, None)?;
    Ok(out)
}

/// The 64-bit Rabin fingerprint the Avro specification defines ("CRC-64-AVRO") of `bytes`.
pub fn crc64_avro(bytes: &[u8]) -> Fingerprint {
    bytes.iter().fold(EMPTY, |fp, &b| (fp >> 8) ^ FP_TABLE[((fp ^ u64::from(b)) & 0xff) as usize])
}

const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const FP_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut bit = 0;
        while bit < 8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            bit += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// Writes the canonical form of `schema`, whose enclosing namespace is `namespace`.
fn write_schema(out: &mut String, schema: &Value, namespace: Option<&str>) -> Result<(), String> {
    match schema {
        // A primitive, or a reference to a named type defined earlier.
        Value::String(name) => write_type_name(out, name, namespace),
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(out, branch, namespace)?;
            }
            out.push(']');
            Ok(())
        }
        Value::Object(obj) => write_object(out, obj, namespace),
        other => Err(format!("{other} is not a schema")),
    }
}

fn write_object(out: &mut String, obj: &Map<String, Value>, namespace: Option<&str>) -> Result<(), String> {
    let Some(Value::String(ty)) = obj.get("type") else {
        return Err(format!("an object schema needs a string \"type\": {}", Value::Object(obj.clone())));
    };
    match ty.as_str() {
        "record" | "error" => {
            let (full, inner) = full_name(obj, namespace)?;
            out.push_str("{\"name\":");
            write_string(out, &full);
            out.push_str(",\"type\":");
            write_string(out, ty);
            out.push_str(",\"fields\":[");
            let Some(Value::Array(fields)) = obj.get("fields") else {
                return Err(format!("record {full} has no \"fields\" array"));
            };
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let (Some(Value::String(name)), Some(field_type)) = (field.get("name"), field.get("type")) else {
                    return Err(format!("a field of {full} lacks a string \"name\" or a \"type\""));
                };
                // Field names are not type names: never qualified.
                out.push_str("{\"name\":");
                write_string(out, name);
                out.push_str(",\"type\":");
                write_schema(out, field_type, inner.as_deref())?;
                out.push('}');
            }
            out.push_str("]}");
        }
        "enum" => {
            let (full, _) = full_name(obj, namespace)?;
            out.push_str("{\"name\":");
            write_string(out, &full);
            out.push_str(",\"type\":\"enum\",\"symbols\":[");
            let Some(Value::Array(symbols)) = obj.get("symbols") else {
                return Err(format!("enum {full} has no \"symbols\" array"));
            };
            for (i, symbol) in symbols.iter().enumerate() {
                let Value::String(symbol) = symbol else { return Err(format!("enum {full} has a non-string symbol")) };
                if i > 0 {
                    out.push(',');
                }
                write_string(out, symbol);
            }
            out.push_str("]}");
        }
        "fixed" => {
            let (full, _) = full_name(obj, namespace)?;
            // [INTEGERS]: no quotes, no leading zeros.
            let size = match obj.get("size") {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => s.parse::<u64>().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("fixed {full} has no non-negative integer \"size\""))?;
            out.push_str("{\"name\":");
            write_string(out, &full);
            out.push_str(&format!(",\"type\":\"fixed\",\"size\":{size}}}"));
        }
        "array" => {
            let items = obj.get("items").ok_or("an array schema has no \"items\"")?;
            out.push_str("{\"type\":\"array\",\"items\":");
            write_schema(out, items, namespace)?;
            out.push('}');
        }
        "map" => {
            let values = obj.get("values").ok_or("a map schema has no \"values\"")?;
            out.push_str("{\"type\":\"map\",\"values\":");
            write_schema(out, values, namespace)?;
            out.push('}');
        }
        // [PRIMITIVES] and [STRIP]: `{"type":"long","logicalType":…}` is just "long"; likewise
        // `{"type":"SomeRecord"}` is the reference "SomeRecord".
        name => write_type_name(out, name, namespace)?,
    }
    Ok(())
}

/// A primitive as itself; a named type by its fullname ([FULLNAMES]): a name with a dot is already
/// full, otherwise it is in the enclosing namespace.
fn write_type_name(out: &mut String, name: &str, namespace: Option<&str>) -> Result<(), String> {
    if PRIMITIVES.contains(&name) || name.contains('.') {
        write_string(out, name);
    } else {
        write_string(out, &qualify(name, namespace));
    }
    Ok(())
}

/// The fullname of a named type's definition, and the namespace its nested definitions inherit.
fn full_name(obj: &Map<String, Value>, enclosing: Option<&str>) -> Result<(String, Option<String>), String> {
    let Some(Value::String(name)) = obj.get("name") else {
        return Err(format!("a named type has no string \"name\": {}", Value::Object(obj.clone())));
    };
    if let Some((namespace, _)) = name.rsplit_once('.') {
        return Ok((name.clone(), Some(namespace.to_string())));
    }
    let namespace = match obj.get("namespace") {
        // "" is the null namespace; an absent (or null) attribute inherits the enclosing one.
        Some(Value::String(ns)) => (!ns.is_empty()).then_some(ns.as_str()),
        Some(Value::Null) | None => enclosing,
        Some(other) => return Err(format!("namespace {other} of {name} is not a string")),
    };
    Ok((qualify(name, namespace), namespace.map(str::to_string)))
}

fn qualify(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

/// [STRINGS]: serde_json writes non-ASCII characters as UTF-8 and escapes only what JSON requires
/// (quote, backslash, control characters), none of which a valid name or symbol contains.
fn write_string(out: &mut String, s: &str) {
    out.push_str(&Value::String(s.to_string()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Canonical forms and fingerprints from the Avro project's cross-language test data
    /// (apache/avro `share/test/data/schema-tests.txt`, whose fingerprints Java checks against a
    /// direct implementation of the algorithm). Fingerprints there are Java `long`s.
    const SPEC_VECTORS: &[(&str, &str, i64)] = &[
        (r#""null""#, r#""null""#, 7195948357588979594),
        (r#"{"type":"null"}"#, r#""null""#, 7195948357588979594),
        (r#"{"type":"long"}"#, r#""long""#, -3434872931120570953),
        (r#""string""#, r#""string""#, -8142146995180207161),
        (r#"[ "int" , {"type":"boolean"} ]"#, r#"["int","boolean"]"#, 5392556393470105090),
        (
            r#"{"fields":[], "type":"record", "name":"foo"}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            -4824392279771201922,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}"#,
            r#"{"name":"x.y.foo","type":"record","fields":[]}"#,
            5916914534497305771,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}"#,
            r#"{"name":"a.b.foo","type":"record","fields":[]}"#,
            -4616218487480524110,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            -4824392279771201922,
        ),
        (
            r#"{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":"true"},
                          {"order":"descending","name":"f2","doc":"Hello","type":"int"}],
                 "type":"record", "name":"foo" }"#,
            r#"{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}"#,
            -4860222112080293046,
        ),
        (
            r#"{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}"#,
            r#"{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}"#,
            -4448647247586288245,
        ),
        (
            r#"{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}"#,
            r#"{"name":"x.y.z.foo","type":"fixed","size":32}"#,
            -3064184465700546786,
        ),
        (r#"{ "items":{"type":"null"}, "type":"array"}"#, r#"{"type":"array","items":"null"}"#, -589620603366471059),
        (r#"{ "values":"string", "type":"map"}"#, r#"{"type":"map","values":"string"}"#, -8732877298790414990),
        (
            r#"{"name":"PigValue","type":"record",
                "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}"#,
            r#"{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}"#,
            -1759257747318642341,
        ),
    ];

    #[test]
    fn matches_the_avro_projects_test_vectors() {
        for (input, canonical, fingerprint) in SPEC_VECTORS {
            assert_eq!(parsing_canonical_form(input).unwrap(), *canonical, "{input}");
            assert_eq!(parsing_fingerprint(input).unwrap(), *fingerprint as u64, "{input}");
        }
        // The specification's own example of the byte order on the wire: "null" is 0x63dd24e7cc258f8a,
        // written little-endian.
        assert_eq!(crc64_avro(br#""null""#).to_le_bytes(), [0x8a, 0x8f, 0x25, 0xcc, 0xe7, 0x24, 0xdd, 0x63]);
    }

    #[test]
    fn same_rabin_as_apache_avro_on_bytes() {
        use apache_avro::{Schema, rabin::Rabin};
        // A schema without logical types, where apache-avro's canonical form is the specification's.
        let json = r#"{"type":"record","name":"r","namespace":"n","fields":[{"name":"a","type":{"type":"map","values":"double"}}]}"#;
        let theirs = Schema::parse_str(json).unwrap().fingerprint::<Rabin>();
        assert_eq!(parsing_fingerprint(json).unwrap().to_le_bytes().as_slice(), &theirs.bytes[..]);
    }

    /// Checked by hand against the specification: namespaces inherited by nested definitions and
    /// applied to references (but not to field names or symbols), a dotted name overriding the
    /// namespace, "" meaning no namespace, logical types and decimal's extra attributes stripped,
    /// doc/default/aliases/order stripped, attributes reordered, whitespace removed.
    /// (`tests/fingerprint.rs` also checks this schema against fastavro.)
    #[test]
    fn a_hand_checked_record() {
        let input = r#"{
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
        }"#;
        let expected = concat!(
            r#"{"name":"com.acme.Order","type":"record","fields":["#,
            r#"{"name":"at","type":"long"},"#,
            r#"{"name":"line","type":{"name":"com.acme.Line","type":"record","fields":["#,
            r#"{"name":"sku","type":"string"},"#,
            r#"{"name":"price","type":{"name":"com.acme.Money","type":"fixed","size":8}}]}},"#,
            r#"{"name":"prev","type":["null","com.acme.Line"]},"#,
            r#"{"name":"state","type":{"name":"other.State","type":"enum","symbols":["NEW","PAID"]}},"#,
            r#"{"name":"again","type":"other.State"},"#,
            r#"{"name":"tags","type":{"type":"map","values":{"type":"array","items":"com.acme.Money"}}},"#,
            r#"{"name":"bare","type":{"name":"Bare","type":"record","fields":[]}},"#,
            r#"{"name":"day","type":"int"}]}"#,
        );
        assert_eq!(parsing_canonical_form(input).unwrap(), expected);
        assert_eq!(parsing_fingerprint(input).unwrap(), crc64_avro(expected.as_bytes()));
    }

    #[test]
    fn escapes_quoted_sizes_and_object_references_are_normalized() {
        // [STRINGS]: \u escapes become the characters themselves. [INTEGERS]: no quotes, no
        // leading zeros. [PRIMITIVES]/[FULLNAMES]: `{"type":"Name"}` is the reference "ns.Name".
        let input = r#"{"type":"record","name":"\u0052","namespace":"n","fields":[
            {"name":"e","type":{"type":"enum","name":"E","symbols":["\u0041"]}},
            {"name":"f","type":{"type":"fixed","name":"F","size":"016"}},
            {"name":"g","type":{"type":"E"}}]}"#;
        assert_eq!(
            parsing_canonical_form(input).unwrap(),
            concat!(
                r#"{"name":"n.R","type":"record","fields":[{"name":"e","type":{"name":"n.E","type":"enum","symbols":["A"]}},"#,
                r#"{"name":"f","type":{"name":"n.F","type":"fixed","size":16}},{"name":"g","type":"n.E"}]}"#
            )
        );
    }

    #[test]
    fn non_schemas_are_errors() {
        for bad in ["", "42", r#"{"name":"x"}"#, r#"{"type":"record","fields":[]}"#, r#"{"type":"fixed","name":"f"}"#] {
            assert!(parsing_canonical_form(bad).is_err(), "{bad}");
        }
    }
}
