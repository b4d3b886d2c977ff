//! `docker/compose.yaml` and `docker/Dockerfile`, checked by reading them (no container engine
//! runs here or in CI):
//!
//! - structure: known service keys only, an image everywhere, resource limits everywhere, a
//!   health check on every long-running service (only Hookline worker roles without an HTTP
//!   listener may disable theirs), referenced networks, volumes, secrets and dependencies exist;
//! - Hookline services use the image built from the Dockerfile, run a real subcommand of the
//!   binary (parsed from `services/hookline/src/main.rs`), and start after the one-shot jobs
//!   (`topics create`, `schema migrate`) completed successfully;
//! - every `HOOKLINE_*` variable of every Hookline service, with the secrets file layered in as
//!   the binary would (`HOOKLINE_CONFIG`), loads through the real `Config::load` — unknown keys
//!   and bad values fail exactly as they would at start;
//! - Kafka (KRaft quorum, cluster id, listeners) and ScyllaDB (seeds) are consistent with each
//!   other and with what the Hookline services are told.

// figment's `Jail` closures return its large error type by design.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hookline_config::{Config, ConfigError};
use serde_norway::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn docker_dir() -> PathBuf {
    repo().join("docker")
}

/// The compose file with YAML merge keys (`<<: *anchor`) applied, as Compose applies them.
fn compose() -> Value {
    let path = docker_dir().join("compose.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut doc: Value = serde_norway::from_str(&text).expect("compose.yaml is valid YAML");
    // A merged mapping may itself carry a `<<` (an anchor built on another anchor): repeat.
    for _ in 0..8 {
        doc.apply_merge().expect("merge keys");
    }
    assert!(!has_merge_key(&doc), "unresolved `<<` merge keys");
    doc
}

fn has_merge_key(v: &Value) -> bool {
    match v {
        Value::Mapping(m) => m.contains_key("<<") || m.values().any(has_merge_key),
        Value::Sequence(s) => s.iter().any(has_merge_key),
        _ => false,
    }
}

fn services(doc: &Value) -> BTreeMap<String, Value> {
    doc.get("services")
        .and_then(Value::as_mapping)
        .expect("a services mapping")
        .iter()
        .map(|(k, v)| (k.as_str().expect("service name").to_string(), v.clone()))
        .collect()
}

fn names(doc: &Value, section: &str) -> BTreeSet<String> {
    doc.get(section)
        .and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Sequence(s)) => s.iter().filter_map(scalar).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// A service's environment, as a map (both the mapping and the `KEY=value` list forms).
fn environment(svc: &Value) -> BTreeMap<String, String> {
    match svc.get("environment") {
        Some(Value::Mapping(m)) => {
            m.iter().map(|(k, v)| (k.as_str().expect("env name").to_string(), scalar(v).unwrap_or_default())).collect()
        }
        Some(Value::Sequence(s)) => s
            .iter()
            .filter_map(Value::as_str)
            .map(|kv| kv.split_once('=').map_or((kv.to_string(), String::new()), |(k, v)| (k.into(), v.into())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Compose interpolation as seen with no variables set: `${X:-d}` / `${X-d}` give `d`, `$$` is
/// a literal `$`. A bare `${X}` would be empty when unset, which is never what we mean.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("${") {
            let end = r.find('}').unwrap_or_else(|| panic!("unclosed ${{ in {s:?}"));
            let expr = &r[..end];
            let default = expr
                .split_once(":-")
                .or_else(|| expr.split_once('-'))
                .map(|(_, d)| d)
                .unwrap_or_else(|| panic!("`${{{expr}}}` in {s:?} has no default"));
            out.push_str(default);
            rest = &r[end + 1..];
        } else {
            panic!("bare `$` in {s:?}: write `${{VAR:-default}}` or `$$`");
        }
    }
    out.push_str(rest);
    out
}

// ------------------------------------------------------------------------------------------
// The Hookline side
// ------------------------------------------------------------------------------------------

const IMAGE_PATH: &str = "/usr/local/bin/hookline";

fn is_hookline(svc: &Value) -> bool {
    svc.get("build").is_some()
}

fn command(svc: &Value) -> String {
    strings(svc.get("command")).join(" ")
}

/// Every command line of the binary, from the clap derive in `services/hookline/src/main.rs`:
/// `api`, …, `topics create`, `schema migrate`, `projector`, `projector rebuild`, ….
fn binary_commands() -> BTreeSet<String> {
    let main = std::fs::read_to_string(repo().join("services/hookline/src/main.rs")).expect("main.rs");
    let enums = parse_enums(&main);
    let top = enums.get("Command").expect("enum Command in main.rs");
    let mut out = BTreeSet::new();
    for (variant, sub) in top {
        let name = kebab(variant);
        match sub {
            None => {
                out.insert(name);
            }
            Some((sub, optional)) => {
                if *optional {
                    out.insert(name.clone());
                }
                for (v, _) in enums.get(sub).unwrap_or_else(|| panic!("enum {sub} in main.rs")) {
                    out.insert(format!("{name} {}", kebab(v)));
                }
            }
        }
    }
    out
}

/// enum name → variants, each with its nested subcommand enum (and whether it is optional).
type Variants = Vec<(String, Option<(String, bool)>)>;

fn parse_enums(src: &str) -> BTreeMap<String, Variants> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Variants)> = None;
    let mut depth = 0usize;
    for line in src.lines().map(str::trim) {
        if let Some((name, variants)) = current.as_mut() {
            if line.starts_with("///") || line.starts_with("#[") || line.is_empty() {
                continue;
            }
            if depth == 0 && line == "}" {
                out.insert(name.clone(), std::mem::take(variants));
                current = None;
                continue;
            }
            if depth == 0 {
                let ident: String = line.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !ident.is_empty() {
                    variants.push((ident, None));
                }
            } else if let Some((_, ty)) = line.split_once(':') {
                let ty = ty.trim().trim_end_matches(',').trim();
                let (inner, optional) = match ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')) {
                    Some(t) => (t, true),
                    None => (ty, false),
                };
                if inner.ends_with("Action")
                    && let Some(last) = variants.last_mut()
                {
                    last.1 = Some((inner.to_string(), optional));
                }
            }
            depth += line.matches('{').count();
            depth = depth.saturating_sub(line.matches('}').count());
            continue;
        }
        if let Some(name) = line.strip_prefix("enum ").or_else(|| line.strip_prefix("pub enum "))
            && let Some(name) = name.strip_suffix('{')
        {
            current = Some((name.trim().to_string(), Vec::new()));
            depth = 0;
        }
    }
    out
}

fn kebab(ident: &str) -> String {
    let mut out = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.extend(c.to_lowercase());
    }
    out
}

const ROLES: &[&str] = &["api", "router", "dispatcher", "scheduler", "projector"];
/// Roles without an HTTP listener (only the api serves /healthz).
const ROLES_WITHOUT_PROBE: &[&str] = &["router", "dispatcher", "scheduler", "projector"];
const TOPICS_JOB: &str = "topics create";
const MIGRATE_JOB: &str = "schema migrate";

/// The service running `cmd` (exactly one).
fn service_running<'a>(svcs: &'a BTreeMap<String, Value>, cmd: &str) -> (&'a String, &'a Value) {
    let found: Vec<_> = svcs.iter().filter(|(_, s)| is_hookline(s) && command(s) == cmd).collect();
    assert_eq!(found.len(), 1, "exactly one service runs `hookline {cmd}`: {:?}", found.iter().map(|f| f.0));
    found[0]
}

/// The effective configuration of a Hookline service: its `HOOKLINE_*` environment and, when
/// `HOOKLINE_CONFIG` names a mounted secret, that secret's example file as the `--config` layer.
fn load_service_config(name: &str, svc: &Value, doc: &Value) -> Result<Config, ConfigError> {
    let env = environment(svc);
    let file = env.get("HOOKLINE_CONFIG").map(|p| secret_example(name, svc, doc, &interpolate(p)));
    load_with(&env, file.as_deref())
}

/// Loads through the real loader with exactly `env` as the process environment.
fn load_with(env: &BTreeMap<String, String>, file: Option<&Path>) -> Result<Config, ConfigError> {
    let mut out = None;
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        for (k, v) in env {
            jail.set_env(k, interpolate(v));
        }
        out = Some(Config::load(file));
        Ok(())
    });
    out.expect("jail ran")
}

/// `/run/secrets/<name>` → the committed example of the secret's file (`x.toml` → `x.example.toml`).
fn secret_example(service: &str, svc: &Value, doc: &Value, path: &str) -> PathBuf {
    let secret = path
        .strip_prefix("/run/secrets/")
        .unwrap_or_else(|| panic!("{service}: HOOKLINE_CONFIG={path} is not a mounted secret"));
    let mounted: Vec<String> = match svc.get("secrets") {
        Some(Value::Sequence(s)) => s
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string).or_else(|| str_at(v, &["source"]).map(Into::into)))
            .collect(),
        _ => Vec::new(),
    };
    assert!(
        mounted.iter().any(|m| m == secret),
        "{service}: HOOKLINE_CONFIG names secret `{secret}` it does not mount"
    );
    let file = str_at(doc, &["secrets", secret, "file"]).unwrap_or_else(|| panic!("secret `{secret}` has no file"));
    let example = docker_dir().join(file.replace(".toml", ".example.toml"));
    assert!(example.exists(), "secret `{secret}`: no example file {}", example.display());
    example
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "restart",
    "stop_grace_period",
    "networks",
    "hostname",
    "ports",
    "volumes",
    "secrets",
    "healthcheck",
    "deploy",
    "depends_on",
    "ulimits",
    "logging",
];

#[test]
fn structure_is_complete_and_references_resolve() {
    let doc = compose();
    let top: BTreeSet<String> = doc.as_mapping().unwrap().keys().filter_map(Value::as_str).map(Into::into).collect();
    for k in &top {
        assert!(
            k.starts_with("x-")
                || ["name", "services", "networks", "volumes", "secrets", "configs"].contains(&k.as_str()),
            "unknown top-level key `{k}`"
        );
    }
    let svcs = services(&doc);
    let (networks, volumes, secrets) = (names(&doc, "networks"), names(&doc, "volumes"), names(&doc, "secrets"));
    for (name, svc) in &svcs {
        for k in svc.as_mapping().unwrap().keys().filter_map(Value::as_str) {
            assert!(SERVICE_KEYS.contains(&k), "{name}: unexpected key `{k}` (typo?)");
        }
        let image = str_at(svc, &["image"]).unwrap_or_else(|| panic!("{name}: no image"));
        let image = interpolate(image);
        assert!(image.contains(':') && !image.ends_with(":latest"), "{name}: pin the image tag ({image})");
        for net in strings(svc.get("networks")) {
            assert!(networks.contains(&net), "{name}: network `{net}` is not declared");
        }
        for vol in strings(svc.get("volumes")) {
            let source = vol.split(':').next().unwrap_or_default();
            if !source.starts_with(['.', '/']) {
                assert!(volumes.contains(source), "{name}: volume `{source}` is not declared");
            }
        }
        for s in strings(svc.get("secrets")) {
            assert!(secrets.contains(&s), "{name}: secret `{s}` is not declared");
        }
        if let Some(deps) = svc.get("depends_on").and_then(Value::as_mapping) {
            for (dep, how) in deps {
                let dep = dep.as_str().unwrap();
                assert!(svcs.contains_key(dep), "{name}: depends on unknown service `{dep}`");
                let cond = str_at(how, &["condition"]).unwrap_or_else(|| panic!("{name} → {dep}: no condition"));
                let needed = if str_at(&svcs[dep], &["restart"]) == Some("no") {
                    "service_completed_successfully"
                } else {
                    "service_healthy"
                };
                assert_eq!(cond, needed, "{name} → {dep}");
            }
        }
        let limits = ["deploy", "resources", "limits"].iter().try_fold(svc, |v, k| v.get(*k));
        let limits = limits.unwrap_or_else(|| panic!("{name}: no deploy.resources.limits"));
        assert!(limits.get("cpus").is_some() && limits.get("memory").is_some(), "{name}: limit cpus and memory");

        // Health: every long-running service has a probe; only worker roles may disable it.
        if str_at(svc, &["restart"]) == Some("no") {
            continue;
        }
        let hc = svc.get("healthcheck").unwrap_or_else(|| panic!("{name}: no healthcheck"));
        if hc.get("disable").and_then(Value::as_bool) == Some(true) {
            assert!(
                is_hookline(svc) && ROLES_WITHOUT_PROBE.contains(&command(svc).as_str()),
                "{name}: only Hookline roles without an HTTP listener may disable the health check"
            );
        } else {
            assert!(!strings(hc.get("test")).is_empty(), "{name}: healthcheck without a test");
        }
    }
    for vol in &volumes {
        assert!(
            svcs.values().any(|s| strings(s.get("volumes")).iter().any(|v| v.split(':').next() == Some(vol))),
            "volume `{vol}` is declared but unused"
        );
    }
}

#[test]
fn hookline_services_run_the_built_image_and_real_commands() {
    let doc = compose();
    let svcs = services(&doc);
    let commands = binary_commands();
    for c in ["api", "router", "dispatcher", "scheduler", "projector", "all", TOPICS_JOB, MIGRATE_JOB] {
        assert!(commands.contains(c), "the binary has no `{c}` command (parsed: {commands:?})");
    }
    let hookline: Vec<_> = svcs.iter().filter(|(_, s)| is_hookline(s)).collect();
    assert!(hookline.len() >= ROLES.len() + 2, "every role and both jobs");
    let (_, first) = hookline[0];
    for (name, svc) in &hookline {
        assert_eq!(svc.get("image"), first.get("image"), "{name}: every Hookline service uses one image");
        assert_eq!(str_at(svc, &["build", "context"]), Some(".."), "{name}: build context is the repo root");
        let dockerfile = str_at(svc, &["build", "dockerfile"]).unwrap_or_else(|| panic!("{name}: no dockerfile"));
        assert!(repo().join(dockerfile).exists(), "{name}: {dockerfile} does not exist");
        assert!(svc.get("entrypoint").is_none(), "{name}: keep the image's entrypoint ({IMAGE_PATH})");
        let cmd = command(svc);
        assert!(commands.contains(&cmd), "{name}: `hookline {cmd}` is not a command of the binary");
    }
    let (topics_job, topics) = service_running(&svcs, TOPICS_JOB);
    let (migrate_job, migrate) = service_running(&svcs, MIGRATE_JOB);
    for job in [topics, migrate] {
        assert_eq!(str_at(job, &["restart"]), Some("no"), "one-shot jobs do not restart");
    }
    let kafka: Vec<_> = svcs.iter().filter(|(_, s)| environment(s).contains_key("KAFKA_NODE_ID")).collect();
    let scylla: Vec<_> = svcs.keys().filter(|n| n.starts_with("scylla")).collect();
    for (k, _) in &kafka {
        assert!(topics.get("depends_on").and_then(|d| d.get(k.as_str())).is_some(), "topics job waits for {k}");
    }
    for s in &scylla {
        assert!(migrate.get("depends_on").and_then(|d| d.get(s.as_str())).is_some(), "migrate job waits for {s}");
    }
    for role in ROLES {
        let (name, svc) = service_running(&svcs, role);
        let deps = svc.get("depends_on").unwrap_or_else(|| panic!("{name}: no depends_on"));
        assert_eq!(
            str_at(deps, &[topics_job, "condition"]),
            Some("service_completed_successfully"),
            "{name} starts after the topics exist"
        );
        if matches!(*role, "api" | "projector") {
            assert_eq!(
                str_at(deps, &[migrate_job, "condition"]),
                Some("service_completed_successfully"),
                "{name} starts after the keyspace is migrated"
            );
        }
    }
}

#[test]
fn every_hookline_setting_loads_through_the_real_config() {
    let doc = compose();
    let svcs = services(&doc);
    let kafka: Vec<&String> =
        svcs.iter().filter(|(_, s)| environment(s).contains_key("KAFKA_NODE_ID")).map(|x| x.0).collect();
    let scylla: Vec<&String> = svcs.keys().filter(|n| n.starts_with("scylla")).collect();
    assert!(kafka.len() >= 3 && scylla.len() >= 3, "3 brokers and 3 ScyllaDB nodes");
    for (name, svc) in svcs.iter().filter(|(_, s)| is_hookline(s)) {
        let env = environment(svc);
        for k in env.keys().filter(|k| k.starts_with("HOOKLINE_")) {
            // The loader only reads HOOKLINE_<SECTION>__<KEY>: a single underscore is ignored silently.
            assert!(k.contains("__") || k == "HOOKLINE_CONFIG", "{name}: {k} is not a configuration variable");
        }
        let c = load_service_config(name, svc, &doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        let brokers: BTreeSet<String> = c.kafka.brokers.split(',').map(|b| b.trim().to_string()).collect();
        let expected: BTreeSet<String> = kafka.iter().map(|k| format!("{k}:9092")).collect();
        assert_eq!(brokers, expected, "{name}: kafka.brokers lists every broker");
        assert_eq!(c.kafka.replication_factor, 3, "{name}: topics replicated 3 times");
        let nodes: BTreeSet<String> = c.cql.nodes.iter().cloned().collect();
        let expected: BTreeSet<String> = scylla.iter().map(|s| format!("{s}:9042")).collect();
        assert_eq!(nodes, expected, "{name}: cql.nodes lists every ScyllaDB node");
        assert_eq!(c.cql.replication_factor, 3, "{name}: keyspace replicated 3 times");
        assert!(c.redis.url.starts_with("redis://redis:"), "{name}: redis.url names the redis service");
        assert_eq!(c.log.format, "json", "{name}: JSON logs for a log shipper");
        let replicas = svc.get("deploy").and_then(|d| d.get("replicas")).and_then(Value::as_u64).unwrap_or(1);
        if replicas > 1 {
            assert!(c.kafka.instance_id.is_empty(), "{name}: replicas must not share kafka.instance_id");
        }
        let cmd = command(svc);
        let needs_keys = matches!(cmd.as_str(), "api" | "dispatcher" | "all");
        assert_eq!(
            env.contains_key("HOOKLINE_CONFIG"),
            needs_keys,
            "{name}: only roles that seal/open secrets get them"
        );
        if cmd == "api" {
            assert!(c.api.listen.ip().is_unspecified(), "{name}: the api must listen beyond loopback");
            let port = c.api.listen.port().to_string();
            let probe = strings(svc.get("healthcheck").and_then(|h| h.get("test"))).join(" ");
            assert!(probe.contains(&format!(":{port}/healthz")), "{name}: probe the listen port ({probe})");
            let published = strings(svc.get("ports")).iter().map(|p| interpolate(p)).collect::<Vec<_>>();
            assert!(published.iter().any(|p| p.ends_with(&format!(":{port}"))), "{name}: publish {port}");
            assert!(!c.api.tokens.is_empty(), "{name}: the example secrets file shows an API token");
        }
    }
}

#[test]
fn the_check_refuses_what_the_binary_refuses() {
    // The checker is only worth something if it fails: an unknown key and a bad value.
    let mut env = BTreeMap::from([("HOOKLINE_KAFKA__BROKERS".to_string(), "kafka-1:9092".to_string())]);
    assert!(load_with(&env, None).is_ok());
    env.insert("HOOKLINE_KAFKA__BROKER".into(), "kafka-1:9092".into());
    let err = load_with(&env, None).unwrap_err().to_string();
    assert!(err.contains("broker"), "{err}");
    env.remove("HOOKLINE_KAFKA__BROKER");
    env.insert("HOOKLINE_KAFKA__REPLICATION_FACTOR".into(), "0".into());
    assert!(load_with(&env, None).is_err());
    assert_eq!(interpolate("${HOOKLINE_IMAGE:-hookline:dev}"), "hookline:dev");
    assert_eq!(interpolate("a$$(b)"), "a$(b)");
    let commands = binary_commands();
    assert!(commands.contains("projector rebuild") && commands.contains("secrets new-master-key"), "{commands:?}");
    assert!(!commands.contains("topics"), "`topics` alone needs an action");
}

#[test]
fn kafka_brokers_form_one_kraft_cluster() {
    let doc = compose();
    let svcs = services(&doc);
    let brokers: Vec<(&String, BTreeMap<String, String>)> =
        svcs.iter().map(|(n, s)| (n, environment(s))).filter(|(_, e)| e.contains_key("KAFKA_NODE_ID")).collect();
    assert_eq!(brokers.len(), 3, "3 brokers");
    let one = |key: &str| -> BTreeSet<String> { brokers.iter().filter_map(|(_, e)| e.get(key).cloned()).collect() };
    let cluster = one("CLUSTER_ID");
    assert_eq!(cluster.len(), 1, "one CLUSTER_ID for every broker");
    let id = cluster.first().unwrap();
    assert!(id.len() == 22 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{id}");
    let voters = one("KAFKA_CONTROLLER_QUORUM_VOTERS");
    assert_eq!(voters.len(), 1, "one voter list for every broker");
    let mut node_ids = BTreeSet::new();
    let mut expected = BTreeSet::new();
    for (name, env) in &brokers {
        let id = env["KAFKA_NODE_ID"].clone();
        assert!(node_ids.insert(id.clone()), "{name}: duplicate KAFKA_NODE_ID {id}");
        assert!(env["KAFKA_PROCESS_ROLES"].contains("controller"), "{name}: combined broker+controller");
        let controller_port = env["KAFKA_LISTENERS"]
            .split(',')
            .find_map(|l| l.strip_prefix("CONTROLLER://"))
            .and_then(|a| a.rsplit(':').next())
            .unwrap_or_else(|| panic!("{name}: no CONTROLLER listener"))
            .to_string();
        expected.insert(format!("{id}@{name}:{controller_port}"));
        let advertised = interpolate(&env["KAFKA_ADVERTISED_LISTENERS"]);
        assert!(advertised.contains(&format!("PLAINTEXT://{name}:9092")), "{name}: advertises itself ({advertised})");
        let rf: u32 = env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"].parse().unwrap();
        let isr: u32 = env["KAFKA_MIN_INSYNC_REPLICAS"].parse().unwrap();
        assert!(rf as usize <= brokers.len() && isr < rf, "{name}: replication settings fit the cluster");
        for port in strings(svcs[*name].get("ports")) {
            let host_port = port.split(':').next().unwrap();
            assert!(advertised.contains(&format!(":{host_port}")), "{name}: published {port} is advertised");
        }
    }
    let listed: BTreeSet<String> = voters.first().unwrap().split(',').map(str::to_string).collect();
    assert_eq!(listed, expected, "the quorum voters are exactly the brokers");
}

#[test]
fn scylla_nodes_form_one_cluster() {
    let doc = compose();
    let svcs = services(&doc);
    let nodes: Vec<(&String, &Value)> = svcs.iter().filter(|(n, _)| n.starts_with("scylla")).collect();
    assert_eq!(nodes.len(), 3, "3 ScyllaDB nodes");
    for (name, svc) in &nodes {
        assert!(str_at(svc, &["image"]).is_some_and(|i| i.starts_with("scylladb/scylla:")), "{name}: image");
        let cmd = strings(svc.get("command"));
        let seeds = cmd
            .iter()
            .find_map(|a| a.strip_prefix("--seeds="))
            .unwrap_or_else(|| panic!("{name}: no --seeds= ({cmd:?})"));
        for seed in seeds.split(',') {
            assert!(svcs.contains_key(seed), "{name}: seed {seed} is not a service");
        }
        for flag in ["--smp", "--memory"] {
            assert!(cmd.iter().any(|a| a == flag), "{name}: set {flag} (containers share the host's cores)");
        }
    }
}

#[test]
fn dockerfile_builds_a_small_non_root_image() {
    let text = std::fs::read_to_string(docker_dir().join("Dockerfile")).expect("docker/Dockerfile");
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    let stages: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l.starts_with("FROM ")).map(|(i, _)| i).collect();
    assert!(stages.len() >= 2, "multi-stage build");
    let first_from = lines[stages[0]];
    let builder = first_from.split(" AS ").nth(1).expect("named builder stage").trim();
    let final_stage = &lines[*stages.last().unwrap()..];
    assert!(final_stage[0].contains("-slim") || final_stage[0].contains("distroless"), "small runtime base");
    assert!(
        text.contains("cargo build --release --locked -p hookline"),
        "builds the hookline binary from the lock file"
    );
    let user = final_stage.iter().rev().find_map(|l| l.strip_prefix("USER ")).expect("USER in the final stage");
    let uid = user.split(':').next().unwrap().trim();
    assert!(!matches!(uid, "root" | "0"), "non-root user ({user})");
    assert!(
        final_stage.iter().any(|l| l.starts_with(&format!("COPY --from={builder} ")) && l.ends_with(IMAGE_PATH)),
        "the binary is copied to {IMAGE_PATH}"
    );
    assert!(
        final_stage.iter().any(|l| *l == format!("ENTRYPOINT [\"{IMAGE_PATH}\"]")),
        "the entrypoint is the binary, so compose commands are its arguments"
    );
    let ignore =
        std::fs::read_to_string(docker_dir().join("Dockerfile.dockerignore")).expect("Dockerfile.dockerignore");
    for p in ["target/", ".stack/", "docker/secrets/"] {
        assert!(ignore.lines().any(|l| l.trim() == p), "the build context excludes {p}");
    }
}
