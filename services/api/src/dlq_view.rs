//! What the DLQ viewer needs beyond the DLQ API: search by id, and the request an entry's
//! attempts sent (its headers).
//!
//! - `GET /api/webhooks/dlq/search?q=…` finds open entries whose entry id or delivery id
//!   contains `q` (case-insensitive), within the usual filters, scanning at most
//!   [`MAX_SEARCH_SCAN`] entries newest first.
//! - `GET /api/webhooks/dlq/{id}/request` shows the method, URL and headers of the request the
//!   dispatcher builds for the entry. Attempts do not record their headers, so they are
//!   rebuilt from the message and the endpoint's *current* configuration; the timestamp and
//!   signature differ per attempt and are described, not shown.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use hookline_domain::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use hookline_projector::query::{Cursor, DlqSummary};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::params::Params;
use crate::problem::ApiProblem;

/// Most open entries one search reads.
pub const MAX_SEARCH_SCAN: usize = 5_000;
/// Entries read per page while searching.
const SEARCH_PAGE: usize = 200;
/// Longest search text.
const MAX_QUERY_LEN: usize = 128;
/// The dispatcher's `user-agent` (see the dispatcher's request builder).
const USER_AGENT: &str = "Hookline/0.1";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search)).routes(routes!(request))
}

/// Query of `GET /api/webhooks/dlq/search`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SearchQuery {
    /// Part of an entry id or delivery id (case-insensitive).
    #[param(min_length = 1, max_length = 128)]
    q: String,
    /// The tenant (required for admin tokens; a tenant token may only name its own).
    tenant_id: Option<String>,
    endpoint_id: Option<String>,
    event_type: Option<String>,
    /// Window start, Unix milliseconds.
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    since: Option<i64>,
    /// Window end, Unix milliseconds.
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    until: Option<i64>,
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<i64>,
}

/// Open DLQ entries matching a search.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DlqSearchResult)]
struct SearchOut {
    data: Vec<DlqSummary>,
    /// Entries read to answer.
    scanned: usize,
    /// True when the scan stopped at its bound before the end of the window.
    truncated: bool,
}

/// Open DLQ entries whose entry id or delivery id contains `q`, newest first.
#[utoipa::path(
    get,
    path = "/api/webhooks/dlq/search",
    operation_id = "dlq_search",
    tag = "dlq",
    params(SearchQuery),
    responses(
        (status = OK, description = "Matching entries (at most the scan bound read)", body = SearchOut),
        (status = FORBIDDEN, description = "A tenant token named another tenant"),
    )
)]
async fn search(
    State(state): State<AppState>,
    caller: Caller,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery,
) -> Result<impl IntoResponse, ApiProblem> {
    let p = Params::new(q, &["q", "tenant_id", "endpoint_id", "event_type", "since", "until", "limit"])?;
    let needle = p
        .str("q")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiProblem::invalid("q", "give part of an entry id or delivery id to search for"))?;
    if needle.len() > MAX_QUERY_LEN {
        return Err(ApiProblem::invalid("q", format!("must be at most {MAX_QUERY_LEN} characters")));
    }
    let needle = needle.to_ascii_lowercase();
    let tenant = match (&caller.tenant, p.str("tenant_id")) {
        (Some(own), Some(r)) if r != own => {
            return Err(ApiProblem::Forbidden("a tenant token sees only its own tenant"));
        }
        (Some(own), _) => own.clone(),
        (None, Some(t)) => t.to_string(),
        (None, None) => return Err(ApiProblem::invalid("tenant_id", "an admin token must name the tenant")),
    };
    let (since, until) = p.window()?;
    let limit = p.limit()?;
    let reader = state.reader();
    let (mut out, mut scanned, mut cursor) = (Vec::new(), 0usize, None::<Cursor>);
    let truncated = loop {
        let page = reader
            .dlq(&tenant, p.str("endpoint_id"), p.str("event_type"), since, until, cursor.take(), SEARCH_PAGE)
            .await
            .map_err(ApiProblem::internal)?;
        scanned += page.data.len();
        let hit = |s: &DlqSummary| {
            s.id.to_ascii_lowercase().contains(&needle)
                || s.delivery_id.as_deref().is_some_and(|d| d.to_ascii_lowercase().contains(&needle))
        };
        out.extend(page.data.iter().filter(|s| hit(s)).cloned());
        if out.len() >= limit {
            out.truncate(limit);
            break false;
        }
        match page.next_cursor.as_deref().and_then(Cursor::parse) {
            Some(_) if page.data.is_empty() => break false,
            Some(_) if scanned >= MAX_SEARCH_SCAN => break true,
            Some(c) => cursor = Some(c),
            None => break false,
        }
    };
    Ok(Json(SearchOut { data: out, scanned, truncated }))
}

/// A header of the request.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DlqRequestHeader)]
struct HeaderOut {
    name: String,
    value: String,
    /// False when the value differs per attempt or is not kept (shown as a description).
    exact: bool,
}

/// The request an entry's attempts sent (rebuilt).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DlqRequest)]
struct RequestOut {
    method: &'static str,
    url: Option<String>,
    headers: Vec<HeaderOut>,
    note: &'static str,
}

/// Method, URL and headers of the request a DLQ entry's attempts sent.
#[utoipa::path(
    get,
    path = "/api/webhooks/dlq/{id}/request",
    operation_id = "dlq_entry_request",
    tag = "dlq",
    params(("id" = String, Path, description = "DLQ entry id")),
    responses(
        (status = OK, description = "The request", body = RequestOut),
        (status = NOT_FOUND, description = "No such entry (or another tenant's)"),
    )
)]
async fn request(
    State(state): State<AppState>,
    caller: Caller,
    crate::extract::ApiPath(id): crate::extract::ApiPath<String>,
) -> Result<impl IntoResponse, ApiProblem> {
    let entry = state.reader().dlq_entry(&id).await.map_err(ApiProblem::internal)?;
    let entry = entry.filter(|e| caller.can_see(&e.tenant_id)).ok_or(ApiProblem::NotFound("DLQ entry"))?;
    let endpoint = entry.endpoint_id.as_deref().and_then(|ep| state.catalog.get(ep));
    let h = |name: &str, value: String, exact: bool| HeaderOut { name: name.into(), value, exact };
    let content_type = match endpoint.as_ref().and_then(|e| e.template.as_ref()) {
        Some(t) => t.content_type.clone(),
        None => entry.content_type.clone().unwrap_or_else(|| "application/json".into()),
    };
    let mut headers = vec![
        h("content-type", content_type, true),
        h(HEADER_ID, entry.message_id.clone().unwrap_or_default(), true),
        h(HEADER_TIMESTAMP, "the attempt's time in Unix seconds".into(), false),
        h(HEADER_SIGNATURE, "one signature per active key of the endpoint, computed per attempt".into(), false),
        h("user-agent", USER_AGENT.into(), true),
    ];
    if let Some(e) = &endpoint {
        headers.extend(e.headers.iter().map(|(k, v)| h(k, v.clone(), true)));
        if let Some(t) = &e.template {
            headers.extend(t.headers.keys().map(|k| h(k, "rendered from the endpoint's template".into(), false)));
        }
    }
    let note = if endpoint.is_some() {
        "Rebuilt from the message and the endpoint's current configuration: attempts do not record their headers."
    } else {
        "The endpoint no longer exists: only the headers every request carries are shown."
    };
    Ok(Json(RequestOut { method: "POST", url: endpoint.map(|e| e.url.clone()), headers, note }))
}
