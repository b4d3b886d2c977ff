//! Browser sessions for the pages: an authenticated, encrypted cookie.
//!
//! Signing in posts an API token once; the cookie then carries the token's SHA-256 digest and an
//! expiry, sealed with the operator's master keys (XChaCha20-Poly1305), so any api replica can
//! open it and nothing is stored server-side. The token itself is never in the cookie or a URL.
//! Each request looks the digest up in the configured tokens again, so removing a token from the
//! configuration ends its sessions. The cookie is HttpOnly and SameSite=Strict.
//!
//! CSRF: besides SameSite=Strict, a request authenticated by the cookie that changes state must
//! carry the [`CSRF_HEADER`] (a custom header a cross-origin page cannot send without a CORS
//! preflight, which this API never grants) and, when the browser names one, a same-origin
//! `Origin`. Sign-in and sign-out forms are checked for a same-origin `Origin`.

use std::time::Duration;

use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::{HeaderMap, Method};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hookline_domain::sealing;
use hookline_domain::time;

use crate::AppState;
use crate::auth::{Caller, token_digest_hex};
use crate::problem::ApiProblem;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "hookline_session";
/// Header a cookie-authenticated state-changing request must carry (any non-empty value).
pub const CSRF_HEADER: &str = "x-hookline-csrf";
/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Longest cookie value accepted (a sealed session is about 150 characters).
const MAX_COOKIE_LEN: usize = 512;
/// Domain separation: a sealed endpoint secret never opens as a session.
const PREFIX: &str = "hookline-session-v1\n";

/// A sealed cookie value for the caller whose token is `token`, expiring after [`SESSION_TTL`].
pub fn issue(state: &AppState, token: &str) -> String {
    let expires = time::now_ms() + SESSION_TTL.as_millis() as i64;
    let plain = format!("{PREFIX}{}\n{expires}", token_digest_hex(token));
    URL_SAFE_NO_PAD.encode(sealing::seal(&state.master_keys, plain.as_bytes()))
}

/// The caller of a valid, unexpired session cookie in `headers`.
pub fn caller(headers: &HeaderMap, state: &AppState) -> Option<Caller> {
    let value = cookie_value(headers, COOKIE_NAME)?;
    if value.len() > MAX_COOKIE_LEN {
        return None;
    }
    let sealed = URL_SAFE_NO_PAD.decode(value).ok()?;
    let plain = sealing::open(&state.master_keys, &sealed).ok()?;
    let text = std::str::from_utf8(&plain).ok()?.strip_prefix(PREFIX)?;
    let (digest, expires) = text.split_once('\n')?;
    if expires.parse::<i64>().ok()? <= time::now_ms() {
        return None;
    }
    state.tokens.lookup_digest_hex(digest).cloned()
}

/// The caller of the session cookie, for an API request without a bearer token. A request that
/// changes state must also pass the CSRF checks.
pub fn api_caller(method: &Method, headers: &HeaderMap, state: &AppState) -> Result<Caller, ApiProblem> {
    let caller = caller(headers, state).ok_or(ApiProblem::Unauthorized)?;
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let has_header = headers.get(CSRF_HEADER).is_some_and(|v| !v.is_empty());
        if !has_header || !same_origin(headers) {
            return Err(ApiProblem::Forbidden(
                "a browser session must send the x-hookline-csrf header from the same origin to change anything",
            ));
        }
    }
    Ok(caller)
}

/// False when the browser says the request comes from another origin. Requests without an
/// `Origin` header (non-browser clients, same-origin GETs) pass.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else { return false };
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin);
    origin_host.eq_ignore_ascii_case(host)
}

/// `Set-Cookie` value that stores `value` for [`SESSION_TTL`].
pub fn set_cookie(value: &str, headers: &HeaderMap) -> String {
    format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        secure_attr(headers)
    )
}

/// `Set-Cookie` value that removes the session.
pub fn clear_cookie(headers: &HeaderMap) -> String {
    format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}", secure_attr(headers))
}

/// `Secure` everywhere but on loopback hosts, where browsers allow plain-HTTP development.
/// Outside loopback the pages must be served over HTTPS (e.g. behind a TLS-terminating proxy).
fn secure_attr(headers: &HeaderMap) -> &'static str {
    let host = headers.get(HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let name = host.rsplit_once(':').map(|(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    let name = name.unwrap_or(host);
    let loopback = name == "localhost" || name.starts_with("127.") || name == "[::1]";
    if loopback { "" } else { "; Secure" }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[("cookie", "a=1; hookline_session=xyz; b=2")]);
        assert_eq!(cookie_value(&h, COOKIE_NAME), Some("xyz"));
        assert_eq!(cookie_value(&headers(&[("cookie", "x_hookline_session=1")]), COOKIE_NAME), None);
    }

    #[test]
    fn origin_must_match_host() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.example")])));
        assert!(!same_origin(&headers(&[("origin", "http://127.0.0.1:8080")])));
    }

    #[test]
    fn secure_except_on_loopback() {
        assert_eq!(secure_attr(&headers(&[("host", "127.0.0.1:8080")])), "");
        assert_eq!(secure_attr(&headers(&[("host", "localhost")])), "");
        assert_eq!(secure_attr(&headers(&[("host", "hooks.example.com")])), "; Secure");
        assert_eq!(secure_attr(&headers(&[("host", "hooks.example.com:443")])), "; Secure");
    }
}
