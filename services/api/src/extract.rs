//! Extractors whose rejections are `application/problem+json`, like every other error.
//!
//! axum's own `Json`, `Path` and `Query` answer a malformed request with a `text/plain` body,
//! which contradicts the API document (every 4xx is a problem). Handlers take these wrappers
//! instead; each maps the rejection through [`ApiProblem`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::ApiProblem;

/// A JSON body (`Content-Type: application/json`).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiProblem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(v))
    }
}

/// A JSON body that may be left out: an empty body, or JSON `null`, means `None`. A body that
/// is present must be JSON and must parse.
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiProblem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_json_media_type);
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiProblem::TooLarge(format!("request body too large: {}", r.body_text()))
            } else {
                ApiProblem::BadRequest(r.body_text())
            }
        })?;
        if bytes.is_empty() {
            return Ok(Self(None));
        }
        if !is_json {
            return Err(ApiProblem::BadRequest("a request body must have `Content-Type: application/json`".into()));
        }
        let axum::Json(v) = axum::Json::<Option<T>>::from_bytes(&bytes)?;
        Ok(Self(v))
    }
}

/// `application/json` or any `+json` media type, parameters ignored.
fn is_json_media_type(v: &str) -> bool {
    let essence = v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiProblem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(v) = axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(v))
    }
}

/// The raw query string as name → value; [`crate::params::Params`] checks names and values.
pub struct ApiQuery(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for ApiQuery {
    type Rejection = ApiProblem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) = axum::extract::Query::from_request_parts(parts, state).await?;
        Ok(Self(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/merge-patch+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("text/json+xml"));
    }
}
