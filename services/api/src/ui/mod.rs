//! The two web pages, served by the api process under `/ui/`: the DLQ viewer and the health
//! dashboard.
//!
//! Server-rendered shells (upon templates) plus a little JavaScript that calls the JSON API with
//! the session cookie; charts are hand-drawn SVG. Every asset is embedded in the binary
//! (`include_str!`), so the pages work without internet access. A strict Content-Security-Policy
//! allows scripts, styles and connections from this origin only.
//!
//! - [`session`]: sign-in cookie, CSRF checks.

pub mod session;

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Form, Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, routing::post};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;

/// Where signing in leads when no (valid) `next` is given.
const HOME: &str = "/ui/dlq";
/// Longest token accepted by the sign-in form.
const MAX_TOKEN_LEN: usize = 512;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// (name, content type, body) of every embedded asset.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("assets/app.css")),
    ("common.js", "text/javascript; charset=utf-8", include_str!("assets/common.js")),
    ("charts.js", "text/javascript; charset=utf-8", include_str!("assets/charts.js")),
    ("dlq.js", "text/javascript; charset=utf-8", include_str!("assets/dlq.js")),
    ("health.js", "text/javascript; charset=utf-8", include_str!("assets/health.js")),
];

static TEMPLATES: LazyLock<upon::Engine<'static>> = LazyLock::new(|| {
    let mut engine = upon::Engine::new();
    engine.set_default_formatter(&escape_html);
    for (name, source) in [
        ("header", include_str!("templates/header.html")),
        ("login", include_str!("templates/login.html")),
        ("dlq", include_str!("templates/dlq.html")),
        ("health", include_str!("templates/health.html")),
    ] {
        // The templates are compiled into the binary; the unit tests render every one.
        engine.add_template(name, source).unwrap_or_else(|e| panic!("ui template {name}: {e}"));
    }
    engine
});

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { redirect(HOME) }))
        .route("/ui/", get(|| async { redirect(HOME) }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/dlq", get(dlq_page))
        .route("/ui/health", get(health_page))
        .route("/ui/assets/{name}", get(asset))
}

/// Every value written into a page is HTML-escaped.
fn escape_html(f: &mut upon::fmt::Formatter<'_>, value: &upon::Value) -> upon::fmt::Result {
    use std::fmt::Write;
    match value {
        upon::Value::String(s) => {
            for c in s.chars() {
                match c {
                    '&' => f.write_str("&amp;")?,
                    '<' => f.write_str("&lt;")?,
                    '>' => f.write_str("&gt;")?,
                    '"' => f.write_str("&quot;")?,
                    '\'' => f.write_str("&#39;")?,
                    c => f.write_char(c)?,
                }
            }
            Ok(())
        }
        other => upon::fmt::default(f, other),
    }
}

fn render(name: &str, ctx: impl Serialize) -> Result<String, upon::Error> {
    TEMPLATES.template(name).render(ctx).to_string()
}

fn page_headers(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: under it browsers send `Origin: null` with form posts, which the
    // same-origin check of sign-in and sign-out must refuse.
    h.insert(HeaderName::from_static("referrer-policy"), HeaderValue::from_static("same-origin"));
    r
}

fn html(status: StatusCode, name: &str, ctx: impl Serialize) -> Response {
    match render(name, ctx) {
        Ok(body) => page_headers(status, body),
        Err(e) => {
            tracing::error!(template = name, error = %e, "rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the server log").into_response()
        }
    }
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `next` only ever leads to one of our pages (no open redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("/ui//") && !n.contains(['\\', '\r', '\n']) => n,
        _ => HOME,
    }
}

#[derive(Serialize)]
struct LoginCtx<'a> {
    error: &'a str,
    next: &'a str,
}

async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let next = safe_next(q.get("next").map(String::as_str));
    if session::caller(&headers, &state).is_some() {
        return redirect(next);
    }
    html(StatusCode::OK, "login", LoginCtx { error: "", next })
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    if !session::same_origin(&headers) {
        let error = "This sign-in came from another site and was refused. Open this page directly and sign in here.";
        return html(StatusCode::FORBIDDEN, "login", LoginCtx { error, next });
    }
    let token = form.token.trim();
    let Some(caller) = (token.len() <= MAX_TOKEN_LEN).then(|| state.tokens.lookup(token)).flatten() else {
        let error = "That token is not valid. Paste the whole API token (no \"Bearer \" prefix) and try again.";
        return html(StatusCode::UNAUTHORIZED, "login", LoginCtx { error, next });
    };
    tracing::info!(actor = caller.name, "signed in to the pages");
    let mut r = redirect(next);
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&session::issue(&state, token), &headers)) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}

async fn logout(headers: HeaderMap) -> Response {
    if !session::same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "sign-out from another site refused").into_response();
    }
    let mut r = redirect("/ui/login");
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(&headers)) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}

#[derive(Serialize)]
struct PageCtx<'a> {
    title: &'a str,
    is_dlq: bool,
    is_health: bool,
    name: &'a str,
    scope: String,
    tenant: &'a str,
    admin: bool,
}

fn page(state: &AppState, headers: &HeaderMap, name: &'static str, title: &str, path: &str) -> Response {
    let Some(caller) = session::caller(headers, state) else {
        return redirect(&format!("/ui/login?next={path}"));
    };
    html(StatusCode::OK, name, ctx(&caller, name, title))
}

fn ctx<'a>(caller: &'a Caller, page: &str, title: &'a str) -> PageCtx<'a> {
    PageCtx {
        title,
        is_dlq: page == "dlq",
        is_health: page == "health",
        name: &caller.name,
        scope: match &caller.tenant {
            Some(t) => format!("tenant {t}"),
            None => "admin".into(),
        },
        tenant: caller.tenant.as_deref().unwrap_or_default(),
        admin: caller.tenant.is_none(),
    }
}

async fn dlq_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    page(&state, &headers, "dlq", "DLQ viewer", "/ui/dlq")
}

async fn health_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    page(&state, &headers, "health", "Health dashboard", "/ui/health")
}

async fn asset(Path(name): Path<String>) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut r = (*body).into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Assets change with the binary; a short cache keeps upgrades visible.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(tenant: Option<&str>) -> Caller {
        Caller { name: "ops <b>".into(), tenant: tenant.map(str::to_string) }
    }

    #[test]
    fn every_page_renders_and_escapes() {
        let admin = caller(None);
        for (page, title) in [("dlq", "DLQ viewer"), ("health", "Health dashboard")] {
            let out = render(page, ctx(&admin, page, title)).unwrap();
            assert!(out.contains("ops &lt;b&gt;") && !out.contains("ops <b>"), "{page} escapes values");
            assert!(out.contains("aria-current=\"page\""), "{page} marks the current page");
            assert!(out.contains(&format!("/ui/assets/{page}.js")));
            assert!(!out.contains("http://") && !out.contains("https://"), "{page} loads nothing from elsewhere");
        }
        let tenant = caller(Some("acme"));
        let out = render("dlq", ctx(&tenant, "dlq", "DLQ viewer")).unwrap();
        assert!(out.contains("data-tenant=\"acme\"") && out.contains("data-admin=\"false\""));
        let out = render("login", LoginCtx { error: "bad \"x\"", next: "/ui/dlq" }).unwrap();
        assert!(out.contains("bad &quot;x&quot;") && out.contains("role=\"alert\""));
    }

    #[test]
    fn next_never_leaves_the_pages() {
        assert_eq!(safe_next(Some("/ui/health")), "/ui/health");
        for bad in ["https://evil.example", "//evil.example", "/ui//evil.example", "/api/x", "/ui/\\x"] {
            assert_eq!(safe_next(Some(bad)), HOME, "{bad}");
        }
        assert_eq!(safe_next(None), HOME);
    }

    #[test]
    fn every_asset_referenced_by_a_page_is_embedded() {
        for name in ["app.css", "common.js", "charts.js", "dlq.js", "health.js"] {
            assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{name}");
        }
        for (name, _, body) in ASSETS {
            // The SVG namespace is a name, not a location.
            let body = body.replace("http://www.w3.org/2000/svg", "");
            assert!(!body.contains("http://") && !body.contains("https://"), "{name} loads nothing from elsewhere");
        }
    }
}
