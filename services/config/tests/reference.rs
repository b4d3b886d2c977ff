//! The configuration reference (`services/config/CONFIGURATION.md`) is generated from the
//! options structs: their `///` docs (read from `src/**/*.rs`), the embedded defaults (from
//! `Config::defaults()`) and the `HOOKLINE_*` variable names. This test fails when the committed
//! file is stale; regenerate it with
//!
//! ```text
//! UPDATE_DOCS=1 cargo test -p hookline-config --test reference
//! ```
//!
//! It also fails when a field has no doc comment, or when the parsed structs and the defaults
//! disagree about which keys exist (so a struct the parser cannot see is noticed, not skipped).

// figment's `Jail` closures return its large error type by design.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hookline_config::{Config, ENV_PREFIX};

const OUTPUT: &str = "CONFIGURATION.md";

/// One field of an options struct, as written in the source.
#[derive(Debug, Clone)]
struct Field {
    /// The key as serde sees it (after `rename`).
    key: String,
    ty: String,
    doc: String,
    flatten: bool,
}

#[derive(Debug, Clone)]
struct Struct {
    doc: String,
    fields: Vec<Field>,
}

/// Every `struct Name { ... }` with named fields in `src/**/*.rs`, by name.
fn parse_structs(dir: &Path) -> BTreeMap<String, Struct> {
    let mut files = Vec::new();
    collect_rs(dir, &mut files);
    files.sort();
    let mut out = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        parse_file(&text, &mut out);
    }
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn parse_file(text: &str, out: &mut BTreeMap<String, Struct>) {
    let mut doc: Vec<String> = Vec::new();
    let mut attrs: Vec<String> = Vec::new();
    let mut current: Option<(String, Struct)> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            continue;
        }
        if line.starts_with("#[") {
            attrs.push(line.to_string());
            continue;
        }
        if let Some((_, s)) = current.as_mut() {
            if line == "}" {
                let (name, s) = current.take().expect("open struct");
                out.insert(name, s);
            } else if let Some((name, ty)) = field_decl(line) {
                let serde: Vec<&String> = attrs.iter().filter(|a| a.starts_with("#[serde(")).collect();
                if !serde.iter().any(|a| a.contains("skip)") || a.contains("skip,") || a.contains("skip_deserializing"))
                {
                    let key = serde.iter().find_map(|a| quoted_after(a, "rename = ")).unwrap_or(name);
                    let flatten = serde.iter().any(|a| a.contains("flatten"));
                    s.fields.push(Field { key, ty, doc: doc.join(" ").trim().to_string(), flatten });
                }
            }
            doc.clear();
            attrs.clear();
            continue;
        }
        if let Some(name) = struct_start(line) {
            current = Some((name, Struct { doc: doc.join(" ").trim().to_string(), fields: Vec::new() }));
        }
        if !line.is_empty() && !line.starts_with("//") {
            doc.clear();
            attrs.clear();
        }
    }
}

/// `pub struct Name {` → `Name` (tuple and unit structs are not options structs).
fn struct_start(line: &str) -> Option<String> {
    let rest = line.strip_prefix("pub struct ").or_else(|| line.strip_prefix("struct "))?;
    let rest = rest.strip_suffix('{')?.trim();
    rest.chars().all(|c| c.is_alphanumeric() || c == '_').then(|| rest.to_string())
}

/// `pub name: Type,` → (`name`, `Type`).
fn field_decl(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("pub(crate) ").or_else(|| line.strip_prefix("pub ")).unwrap_or(line);
    let (name, ty) = rest.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some((name.to_string(), ty.trim().trim_end_matches(',').trim().to_string()))
}

fn quoted_after(attr: &str, marker: &str) -> Option<String> {
    let rest = &attr[attr.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// `Option<Vec<X>>` → (`X`, is_list).
fn inner_type(ty: &str) -> (&str, bool) {
    let mut t = ty.trim();
    let mut list = false;
    loop {
        if let Some(inner) = t.strip_prefix("Option<").and_then(|r| r.strip_suffix('>')) {
            t = inner.trim();
        } else if let Some(inner) = t.strip_prefix("Vec<").and_then(|r| r.strip_suffix('>')) {
            t = inner.trim();
            list = true;
        } else {
            return (t, list);
        }
    }
}

/// One row of the reference.
#[derive(Debug)]
struct Row {
    /// `kafka.brokers`, or `api.tokens[].name` for a field of a list entry.
    key: String,
    /// `HOOKLINE_KAFKA__BROKERS`; empty for fields of list entries (set with the whole list).
    env: String,
    ty: String,
    default: String,
    doc: String,
}

struct Section {
    key: String,
    doc: String,
    rows: Vec<Row>,
}

fn env_name(path: &[String]) -> String {
    format!("{ENV_PREFIX}{}", path.join("__").to_uppercase())
}

fn lookup<'a>(v: &'a toml::Value, path: &[String]) -> Option<&'a toml::Value> {
    path.iter().try_fold(v, |v, k| v.get(k.as_str()))
}

fn render_default(v: Option<&toml::Value>) -> String {
    match v {
        None => "unset".into(),
        Some(v) => format!("`{}`", render_toml(v)),
    }
}

fn render_toml(v: &toml::Value) -> String {
    match v {
        toml::Value::Array(a) => format!("[{}]", a.iter().map(render_toml).collect::<Vec<_>>().join(", ")),
        toml::Value::Table(t) => {
            format!(
                "{{ {} }}",
                t.iter().map(|(k, v)| format!("{k} = {}", render_toml(v))).collect::<Vec<_>>().join(", ")
            )
        }
        other => other.to_string(),
    }
}

/// Rows for the fields of struct `name` under `path` (`in_list`: inside a list entry).
fn rows(
    structs: &BTreeMap<String, Struct>,
    defaults: &toml::Value,
    name: &str,
    path: &[String],
    in_list: bool,
    out: &mut Vec<Row>,
) {
    let s = structs.get(name).unwrap_or_else(|| panic!("struct {name} not found under src/"));
    for f in &s.fields {
        let (inner, list) = inner_type(&f.ty);
        let mut p = path.to_vec();
        if f.flatten {
            rows(structs, defaults, inner, &p, in_list, out);
            continue;
        }
        p.push(f.key.clone());
        let key = display_key(&p);
        assert!(!f.doc.is_empty(), "`{key}` ({name}.{}) has no `///` doc comment", f.key);
        let nested = structs.contains_key(inner);
        if nested && !list {
            rows(structs, defaults, inner, &p, in_list, out);
            continue;
        }
        out.push(Row {
            key,
            env: if in_list { String::new() } else { env_name(&p) },
            ty: f.ty.clone(),
            default: if in_list { "—".into() } else { render_default(lookup(defaults, &p)) },
            doc: f.doc.clone(),
        });
        if nested {
            let mut item = p.clone();
            if let Some(last) = item.last_mut() {
                last.push_str("[]");
            }
            rows(structs, defaults, inner, &item, true, out);
        }
    }
}

fn display_key(path: &[String]) -> String {
    path.join(".")
}

fn sections(structs: &BTreeMap<String, Struct>, defaults: &toml::Value) -> Vec<Section> {
    let root = structs.get("Config").expect("struct Config");
    root.fields
        .iter()
        .map(|f| {
            let (inner, _) = inner_type(&f.ty);
            let s = structs.get(inner).unwrap_or_else(|| panic!("section struct {inner} not found"));
            let mut out = Vec::new();
            rows(structs, defaults, inner, std::slice::from_ref(&f.key), false, &mut out);
            Section { key: f.key.clone(), doc: s.doc.clone(), rows: out }
        })
        .collect()
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn markdown(sections: &[Section]) -> String {
    let mut md = String::new();
    md.push_str(
        "# Configuration reference\n\n\
         <!-- Generated from services/config/src (the options structs' `///` docs) and defaults.toml by\n     \
         services/config/tests/reference.rs. Do not edit by hand; regenerate with\n     \
         UPDATE_DOCS=1 cargo test -p hookline-config --test reference -->\n\n\
         Configuration is layered: the embedded [`defaults.toml`](src/defaults.toml), then the TOML file given\n\
         with `--config FILE` (or `HOOKLINE_CONFIG=FILE`), then environment variables\n\
         `HOOKLINE_<SECTION>__<KEY>` (double underscore between levels). Unknown keys are refused and every\n\
         value is validated at start; a bad one stops the process with exit code 2 and a message naming the\n\
         key. `hookline config check` prints the effective configuration (secrets redacted).\n\n\
         Lists and tables can be set from the environment in TOML-like syntax, e.g.\n\
         `HOOKLINE_CQL__NODES='[\"10.0.0.1:9042\", \"10.0.0.2:9042\"]'` or\n\
         `HOOKLINE_API__TOKENS='[{name=\"ops\", tenant=\"*\", sha256=\"…\"}]'`; fields of list entries\n\
         (`api.tokens[].name`) are set with their whole list.\n",
    );
    md.push_str("\nSections: ");
    md.push_str(&sections.iter().map(|s| format!("[`[{0}]`](#{0})", s.key)).collect::<Vec<_>>().join(", "));
    md.push('\n');
    for s in sections {
        md.push_str(&format!("\n## {}\n\n", s.key));
        if !s.doc.is_empty() {
            md.push_str(&format!("{}\n\n", s.doc));
        }
        md.push_str("| key | environment variable | type | default | description |\n");
        md.push_str("| --- | --- | --- | --- | --- |\n");
        for r in &s.rows {
            let env = if r.env.is_empty() { "—".to_string() } else { format!("`{}`", r.env) };
            md.push_str(&format!(
                "| `{}` | {} | `{}` | {} | {} |\n",
                r.key,
                env,
                cell(&r.ty),
                cell(&r.default),
                cell(&r.doc)
            ));
        }
    }
    md
}

/// Leaf keys of the serialized defaults (list contents excluded).
fn default_leaves(v: &toml::Value, path: &mut Vec<String>, out: &mut BTreeSet<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                path.push(k.clone());
                default_leaves(v, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.join("."));
        }
    }
}

fn generate() -> (String, Vec<Section>, toml::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let structs = parse_structs(&dir.join("src"));
    let config = Config::defaults().expect("the embedded defaults are valid");
    let defaults = toml::Value::try_from(&config).expect("Config serializes");
    let sections = sections(&structs, &defaults);
    (markdown(&sections), sections, defaults)
}

#[test]
fn reference_matches_the_options_structs() {
    let (_, sections, defaults) = generate();
    let documented: BTreeSet<String> =
        sections.iter().flat_map(|s| s.rows.iter()).filter(|r| !r.key.contains("[]")).map(|r| r.key.clone()).collect();
    let mut shipped = BTreeSet::new();
    default_leaves(&defaults, &mut Vec::new(), &mut shipped);
    let missing: Vec<_> = shipped.difference(&documented).collect();
    assert!(missing.is_empty(), "keys with a default but no row (struct not parsed?): {missing:?}");
    for row in sections.iter().flat_map(|s| s.rows.iter()).filter(|r| !r.key.contains("[]")) {
        assert!(
            // An empty map default has no leaves.
            shipped.contains(&row.key) || row.ty.starts_with("Option<") || row.ty.contains("Map<"),
            "`{}` is documented but has no default and is not optional",
            row.key
        );
    }
}

#[test]
fn committed_reference_is_current() {
    let (md, _, _) = generate();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(OUTPUT);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &md).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == md,
        "{} is stale: regenerate it with `UPDATE_DOCS=1 cargo test -p hookline-config --test reference`",
        path.display()
    );
}

#[test]
fn parser_reads_docs_renames_and_nesting() {
    let src = r#"
/// The root.
pub struct Config {
    /// A section.
    pub flow: FlowOptions,
}
/// Flow control.
#[derive(Debug)]
pub struct FlowOptions {
    /// Limiter,
    /// two lines.
    pub limiter: LimiterOptions,
    /// Renamed.
    #[serde(default, rename = "max-wait")]
    pub max_wait_ms: Option<u64>,
    #[serde(skip)]
    pub cache: u8,
}
pub struct LimiterOptions {
    /// Tokens per second.
    pub rate: f64,
}
pub enum NotAStruct {
    A,
}
"#;
    let mut structs = BTreeMap::new();
    parse_file(src, &mut structs);
    let defaults: toml::Value = toml::from_str("[flow.limiter]\nrate = 2.5\n").unwrap();
    let s = sections(&structs, &defaults);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].doc, "Flow control.");
    let keys: Vec<_> = s[0].rows.iter().map(|r| (r.key.as_str(), r.env.as_str(), r.default.as_str())).collect();
    assert_eq!(
        keys,
        vec![
            ("flow.limiter.rate", "HOOKLINE_FLOW__LIMITER__RATE", "`2.5`"),
            ("flow.max-wait", "HOOKLINE_FLOW__MAX-WAIT", "unset"),
        ]
    );
    assert_eq!(s[0].rows[0].doc, "Tokens per second.");
}

#[test]
fn list_syntax_shown_in_the_reference_loads_from_the_environment() {
    figment::Jail::expect_with(|jail| {
        // No `clear_env` here: it would race with `UPDATE_DOCS` being read by the test above.
        jail.set_env("HOOKLINE_CQL__NODES", r#"["10.0.0.1:9042", "10.0.0.2:9042"]"#);
        let sha = "a".repeat(64);
        jail.set_env("HOOKLINE_API__TOKENS", format!(r#"[{{name="ops", tenant="*", sha256="{sha}"}}]"#));
        let c = Config::load(None).expect("valid");
        assert_eq!(c.cql.nodes, ["10.0.0.1:9042", "10.0.0.2:9042"]);
        assert_eq!(c.api.tokens.len(), 1);
        assert_eq!((c.api.tokens[0].name.as_str(), c.api.tokens[0].tenant.as_str()), ("ops", "*"));
        Ok(())
    });
}
