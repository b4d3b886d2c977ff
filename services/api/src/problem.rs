//! Errors as `application/problem+json` (RFC 9457). Bad input gets a 4xx naming what is wrong;
//! internal errors are logged with their cause and answered with a bare 5xx.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error (RFC 9457 problem details).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// What kind of error: invalid-field, bad-request, unauthorized, forbidden, not-found, conflict,
    /// payload-too-large, unavailable, internal.
    #[serde(rename = "type")]
    #[schema(example = "invalid-field")]
    pub kind: &'static str,
    /// A short summary of the kind.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// The offending request field, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiProblem {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(&'static str),
    /// Logged, never shown.
    #[error("internal error")]
    Internal(String),
}

impl ApiProblem {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

impl IntoResponse for ApiProblem {
    fn into_response(self) -> Response {
        let (status, kind, title, field) = match &self {
            ApiProblem::Invalid { field, .. } => {
                (StatusCode::BAD_REQUEST, "invalid-field", "Invalid request field", Some(field.clone()))
            }
            ApiProblem::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request", None),
            ApiProblem::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", None),
            ApiProblem::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden", None),
            ApiProblem::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found", None),
            ApiProblem::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict", None),
            ApiProblem::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large", None),
            ApiProblem::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", None),
            ApiProblem::Internal(cause) => {
                tracing::error!(cause, "internal error answering a request");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", None)
            }
        };
        let detail = match &self {
            ApiProblem::Internal(_) => "internal error; see the server log".to_string(),
            other => other.to_string(),
        };
        let body = Problem { kind, title, status: status.as_u16(), detail, field };
        let mut resp = (status, Json(body)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<JsonRejection> for ApiProblem {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiProblem::TooLarge(format!("request body too large: {}", b.body_text()))
            }
            other => ApiProblem::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiProblem {
    fn from(r: QueryRejection) -> Self {
        ApiProblem::BadRequest(r.body_text())
    }
}

impl From<PathRejection> for ApiProblem {
    fn from(r: PathRejection) -> Self {
        ApiProblem::BadRequest(r.body_text())
    }
}
