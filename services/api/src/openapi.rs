//! The OpenAPI document, served at `GET /openapi.json` (no token needed: it holds no data).
//!
//! Routes and document come from one source: every handler carries `#[utoipa::path]` and is
//! registered with `utoipa_axum::routes!` on an `OpenApiRouter`, which adds the route to the
//! axum router and the operation to the document in one step (see [`crate::router`]). A test
//! below walks the routes the axum router really holds and fails when the document lacks one,
//! or lists one the router does not serve.
//!
//! [`finish`] adds what every operation shares, so handlers only declare what is their own:
//! - the bearer security scheme, required by default; public operations say `security(())`;
//! - `401` on every operation that needs a token, `400` on every operation that takes
//!   parameters or a body, `413` on every operation that takes a body, `500` everywhere;
//! - an `application/problem+json` [`Problem`] body on every error response (4xx and 5xx).
//!
//! Not in the document, by rule: paths under [`UNDOCUMENTED_PREFIXES`] (`/ui/`: HTML pages for
//! people, not an API). Everything else the router serves must be documented.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::content::Content;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::problem::{PROBLEM_JSON, Problem};
use crate::reads::DeliveryStatusDoc;

/// Name of the bearer security scheme in the document.
pub const BEARER_SCHEME: &str = "bearer";
/// Path of the document itself.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Routes under these prefixes are served but deliberately left out of the document: the
/// `/ui/` pages are HTML for people (authenticated like the API), not part of the API contract.
pub const UNDOCUMENTED_PREFIXES: &[&str] = &["/ui/"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hookline API",
        description = "Webhook delivery: endpoints, triggers, deliveries and attempts, the dead-letter queue, \
                       endpoint health and consumer lag. Times are Unix milliseconds. Errors are \
                       `application/problem+json` (RFC 9457) with a `field` when one input is at fault. \
                       A tenant token sees only its own tenant; ids of other tenants answer 404.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    // Schemas only named by `value_type` in query parameters are not collected by `routes!`.
    components(schemas(Problem, DeliveryStatusDoc)),
    tags(
        (name = "endpoints", description = "Endpoint configuration (the compacted endpoints topic is the source of truth)"),
        (name = "keys", description = "Signing keys: rotation, audited reveal, public keys, transformation preview"),
        (name = "triggers", description = "Trigger webhooks (202 once the broker acknowledged)"),
        (name = "deliveries", description = "Deliveries, attempts and endpoint health from the read models"),
        (name = "dlq", description = "The dead-letter queue: list, inspect, replay, discard, bulk replay"),
        (name = "system", description = "Liveness, readiness, consumer lag and this document"),
    )
)]
struct ApiDoc;

/// The document's fixed parts (info, tags, shared schemas); routes add their operations.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Routes of this module: the document itself.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// The serialized document, shared by every request (an `Extension` set in [`crate::router`]).
#[derive(Clone)]
pub struct Document(Arc<Bytes>);

impl Document {
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        // Serializing plain data structures into a Vec cannot fail.
        Self(Arc::new(Bytes::from(serde_json::to_vec(doc).unwrap_or_default())))
    }
}

/// This document (OpenAPI 3.1).
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "system",
    security(()),
    responses((status = OK, description = "The OpenAPI 3.1 document of this API", body = Object))
)]
async fn openapi_json(Extension(doc): Extension<Document>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], Bytes::clone(&doc.0))
}

/// The operations of a path item with their HTTP method names.
pub fn operations(item: &PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
        ("PATCH", &item.patch),
        ("TRACE", &item.trace),
        ("QUERY", &item.query),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_ref().map(|op| (m, op)))
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
        &mut item.query,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Whether an operation needs no token (it declared `security(())`).
pub fn is_public(op: &Operation) -> bool {
    op.security.as_ref().is_some_and(|s| s.iter().any(|r| *r == SecurityRequirement::default()))
}

/// Adds the security scheme and the responses every operation shares (see the module docs).
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        BEARER_SCHEME.into(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "`Authorization: Bearer <token>`. Tokens are configured as SHA-256 digests in `api.tokens`: \
                     tenant `*` for admin tokens (every tenant), a tenant name for tenant tokens.",
                ))
                .build(),
        )),
    );
    doc.security = Some(vec![SecurityRequirement::new(BEARER_SCHEME, Vec::<String>::new())]);
    for item in doc.paths.paths.values_mut() {
        for op in operations_mut(item) {
            let takes_input = op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || op.request_body.is_some();
            if !is_public(op) {
                shared(op, 401, "Missing or unknown bearer token");
            }
            if takes_input {
                shared(op, 400, "Malformed or invalid input; `field` names the parameter at fault");
            }
            if op.request_body.is_some() {
                shared(op, 413, "Request body too large");
            }
            shared(op, 500, "Internal error (logged with its cause; the answer says no more)");
            for (status, resp) in op.responses.responses.iter_mut() {
                let error = status.parse::<u16>().is_ok_and(|s| s >= 400);
                if let (true, RefOr::T(resp)) = (error, resp)
                    && resp.content.is_empty()
                {
                    resp.content.insert(PROBLEM_JSON.into(), RefOr::T(problem_content()));
                }
            }
        }
    }
}

/// Adds `status` to `op` unless the handler documented it with its own words.
fn shared(op: &mut Operation, status: u16, description: &str) {
    op.responses.responses.entry(status.to_string()).or_insert_with(|| {
        let mut r = Response::new(description);
        r.content.insert(PROBLEM_JSON.into(), RefOr::T(problem_content()));
        RefOr::T(r)
    });
}

fn problem_content() -> Content {
    Content::new(Some(Ref::from_schema_name("Problem")))
}

/// Whether a served path is left out of the document by rule ([`UNDOCUMENTED_PREFIXES`]).
pub fn is_undocumented(path: &str) -> bool {
    UNDOCUMENTED_PREFIXES.iter().any(|p| path.starts_with(p) || path == p.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use axum::Router;
    use axum::routing::get;
    use hookline_domain::signing::Scheme;
    use serde_json::Value;

    use super::*;

    /// Method names as they appear in axum's `MethodRouter` Debug output, upper-cased.
    const AXUM_METHODS: &[&str] = &["get", "head", "delete", "options", "patch", "post", "put", "trace", "connect"];

    /// Every (path, METHOD) a router serves; `ANY` for a service mounted on a path.
    ///
    /// axum has no API that lists routes, so this reads the router's `Debug` output
    /// (`PathRouter { routes: {RouteId(n): MethodRouter(MethodRouter { get: …, post: None, … })},
    /// node: Node { paths: {RouteId(n): "/path"} } }`). If a new axum prints it differently, this
    /// panics (never silently finds nothing): adapt the parser.
    fn served<S>(router: &Router<S>) -> BTreeSet<(String, String)> {
        let dbg = format!("{router:?}");
        let main = section(&dbg, "path_router: PathRouter { routes: {", ", fallback_router:");
        let (routes, paths) = main.split_once("}, node: Node { paths: {").expect("axum Debug: `node: Node { paths`");
        let mut id_path = BTreeMap::new();
        for entry in paths.split("RouteId(").skip(1) {
            let (id, rest) = entry.split_once("): \"").expect("axum Debug: `RouteId(n): \"path\"`");
            let path = &rest[..rest.find('"').expect("axum Debug: closing quote of a path")];
            id_path.insert(id.to_string(), path.to_string());
        }
        let mut out = BTreeSet::new();
        for entry in routes.split("RouteId(").skip(1) {
            let (id, rest) = entry.split_once("): ").expect("axum Debug: `RouteId(n): endpoint`");
            let path = id_path.get(id).unwrap_or_else(|| panic!("axum Debug: route {id} has no path")).clone();
            if rest.starts_with("Route(") {
                out.insert((path, "ANY".to_string()));
                continue;
            }
            let fields = rest.strip_prefix("MethodRouter(MethodRouter { ").expect("axum Debug: `MethodRouter {`");
            for m in AXUM_METHODS {
                let at = fields.find(&format!("{m}: ")).unwrap_or_else(|| panic!("axum Debug: no `{m}:` field"));
                let value = fields[at + m.len() + 2..].split([',', ' ']).next().unwrap_or_default();
                if value != "None" {
                    out.insert((path.clone(), m.to_ascii_uppercase()));
                }
            }
        }
        assert!(!out.is_empty(), "axum Debug: no routes found in {dbg}");
        out
    }

    fn section<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
        let from = s.find(start).unwrap_or_else(|| panic!("axum Debug: `{start}` not found in {s}")) + start.len();
        let to = s[from..].find(end).unwrap_or_else(|| panic!("axum Debug: `{end}` not found")) + from;
        &s[from..to]
    }

    fn documented(doc: &utoipa::openapi::OpenApi) -> BTreeSet<(String, String)> {
        doc.paths
            .paths
            .iter()
            .flat_map(|(path, item)| operations(item).map(move |(m, _)| (path.clone(), m.to_string())))
            .collect()
    }

    /// Served routes the document lacks, and documented operations no route serves.
    fn divergence(router: &Router<AppState>, doc: &utoipa::openapi::OpenApi) -> (Vec<String>, Vec<String>) {
        let served = served(router);
        let documented = documented(doc);
        let missing = served
            .iter()
            .filter(|(p, _)| !is_undocumented(p))
            .filter(|r| !documented.contains(*r))
            .map(|(p, m)| format!("{m} {p}"))
            .collect();
        let phantom = documented.iter().filter(|r| !served.contains(*r)).map(|(p, m)| format!("{m} {p}")).collect();
        (missing, phantom)
    }

    fn doc_json() -> Value {
        serde_json::to_value(crate::router(1 << 20).1).unwrap()
    }

    #[test]
    fn every_served_route_is_documented_and_every_documented_one_served() {
        let (router, doc) = crate::router(1 << 20);
        let (missing, phantom) = divergence(&router, &doc);
        assert!(missing.is_empty(), "routes served but missing from the OpenAPI document: {missing:?}");
        assert!(phantom.is_empty(), "operations documented but not served: {phantom:?}");
        // The routes the README lists, so a registration that silently vanished is noticed too.
        let served = served(&router);
        for (m, p) in [
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/openapi.json"),
            ("POST", "/api/endpoints"),
            ("DELETE", "/api/endpoints/{id}"),
            ("POST", "/api/webhooks/trigger/batch"),
            ("GET", "/api/deliveries/{id}/attempts"),
            ("POST", "/api/webhooks/dlq/{id}/replay"),
            ("GET", "/api/webhooks/dlq/jobs/{job_id}"),
            ("GET", "/api/system/lag"),
            ("POST", "/api/endpoints/{id}/keys/{key_id}/reveal"),
        ] {
            assert!(served.contains(&(p.to_string(), m.to_string())), "{m} {p} is not served");
        }
    }

    #[test]
    fn a_route_added_outside_the_document_is_caught() {
        let (router, doc) = crate::router(1 << 20);
        let router = router
            .route("/undocumented", get(|| async { "" }))
            .route_service("/raw", tower_service())
            .route("/ui/extra", get(|| async { "" }))
            .route("/ui/extra/{id}", get(|| async { "" }).post(|| async { "" }))
            .nest_service("/ui/static", tower_service());
        let (missing, phantom) = divergence(&router, &doc);
        assert_eq!(missing, ["ANY /raw", "GET /undocumented"]);
        assert!(phantom.is_empty());

        // And the other direction: an operation missing from the document, or not served.
        let (router, mut doc) = crate::router(1 << 20);
        let readyz = doc.paths.paths.remove("/readyz").unwrap();
        doc.paths.paths.insert("/readyz/gone".into(), readyz);
        let (missing, phantom) = divergence(&router, &doc);
        assert_eq!((missing, phantom), (vec!["GET /readyz".to_string()], vec!["GET /readyz/gone".to_string()]));
    }

    /// A service (not a handler) mounted on a path: it answers every method.
    fn tower_service() -> axum::routing::MethodRouter {
        axum::routing::any(|| async { "" })
    }

    #[test]
    #[ignore = "prints the document"]
    fn print_document() {
        println!("{}", serde_json::to_string_pretty(&doc_json()).unwrap());
    }

    #[test]
    fn the_undocumented_rule_covers_only_ui() {
        assert!(is_undocumented("/ui") && is_undocumented("/ui/dlq") && is_undocumented("/ui/static/app.js"));
        assert!(!is_undocumented("/uix") && !is_undocumented("/metrics") && !is_undocumented("/api/ui"));
    }

    #[test]
    fn operations_are_named_tagged_and_described() {
        let doc = crate::router(1 << 20).1;
        let mut ids = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (m, op) in operations(item) {
                let id = op.operation_id.clone().unwrap_or_else(|| panic!("{m} {path}: no operationId"));
                assert!(ids.insert(id.clone()), "operationId {id} used twice");
                assert!(op.tags.as_ref().is_some_and(|t| t.len() == 1), "{m} {path}: needs one tag");
                assert!(op.summary.is_some() || op.description.is_some(), "{m} {path}: needs a doc comment");
                // Every `{param}` of the path is declared as a path parameter.
                for name in path.split('{').skip(1).filter_map(|s| s.split_once('}')).map(|(n, _)| n) {
                    let declared = op.parameters.iter().flatten().any(|p| match p {
                        RefOr::T(p) => {
                            p.name == name && matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Path)
                        }
                        RefOr::Ref(_) => false,
                    });
                    assert!(declared, "{m} {path}: path parameter `{name}` is not declared");
                }
            }
        }
    }

    #[test]
    fn auth_and_errors_are_documented_everywhere() {
        let doc = doc_json();
        assert_eq!(doc["components"]["securitySchemes"][BEARER_SCHEME]["scheme"], "bearer");
        assert_eq!(doc["security"], serde_json::json!([{ BEARER_SCHEME: [] }]));
        let mut public = vec![];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                if op["security"] == serde_json::json!([{}]) {
                    public.push(path.as_str());
                } else {
                    assert!(responses.contains_key("401"), "{method} {path}: no 401");
                }
                assert!(responses.contains_key("500"), "{method} {path}: no 500");
                for (status, r) in responses {
                    let content = r["content"].as_object().map(|c| c.keys().cloned().collect::<Vec<_>>());
                    if status.as_str() >= "400" && !(path == "/readyz" && status == "503") {
                        assert_eq!(content, Some(vec![PROBLEM_JSON.to_string()]), "{method} {path} {status}");
                        assert_eq!(r["content"][PROBLEM_JSON]["schema"]["$ref"], "#/components/schemas/Problem");
                    }
                }
            }
        }
        assert_eq!(public, ["/healthz", "/metrics", "/openapi.json", "/readyz"]);
    }

    #[test]
    fn every_schema_reference_resolves() {
        fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r);
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = doc_json();
        let mut all = vec![];
        refs(&doc, &mut all);
        assert!(all.len() > 20);
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
            assert!(doc["components"]["schemas"].get(name).is_some(), "dangling $ref {r}");
        }
    }

    #[test]
    fn documented_enums_match_what_the_code_accepts() {
        let doc = doc_json();
        let schemes: Vec<&str> = Scheme::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(doc["components"]["schemas"]["SigningScheme"]["enum"], serde_json::json!(schemes));
        assert_eq!(
            doc["components"]["schemas"]["DeliveryStatus"]["enum"],
            serde_json::json!(crate::reads::DELIVERY_STATUSES)
        );
    }

    #[test]
    fn documented_time_bounds_are_the_checked_ones() {
        let doc = doc_json();
        let mut schemas = vec![];
        for p in ["/api/deliveries", "/api/webhooks/dlq"] {
            for param in doc["paths"][p]["get"]["parameters"].as_array().unwrap() {
                if param["name"] == "since" || param["name"] == "until" {
                    schemas.push(param["schema"].clone());
                }
            }
        }
        let bulk = &doc["components"]["schemas"]["BulkReplayFilter"]["properties"];
        schemas.extend([bulk["since"].clone(), bulk["until"].clone()]);
        assert_eq!(schemas.len(), 6);
        for s in schemas {
            assert_eq!(
                (&s["minimum"], &s["maximum"]),
                (&serde_json::json!(0), &serde_json::json!(crate::params::MAX_TIME_MS))
            );
        }
    }

    #[test]
    fn documented_query_parameters_are_the_accepted_ones() {
        // `Params::documented` refuses what the document does not list; check it accepts the rest.
        let names = |p: &str| -> Vec<String> {
            let doc = doc_json();
            let mut n: Vec<String> = doc["paths"][p]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect();
            n.sort();
            n
        };
        assert_eq!(
            names("/api/deliveries"),
            ["cursor", "endpoint_id", "limit", "since", "status", "tenant_id", "until"]
        );
        assert_eq!(
            names("/api/webhooks/dlq"),
            ["consistency", "cursor", "endpoint_id", "event_type", "limit", "since", "tenant_id", "until"]
        );
        let query = |k: &str| std::collections::HashMap::from([(k.to_string(), "1".to_string())]);
        assert!(crate::params::Params::documented::<crate::reads::HealthQuery>(query("window")).is_ok());
        assert!(crate::params::Params::documented::<crate::reads::HealthQuery>(query("windows")).is_err());
    }
}
