//! A small HTTP/1.1 JSON client for Hookline's API (hyper-util's pooled client), loopback only.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Api {
    base: String,
    auth: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Refuses anything that is not a loopback address (or `localhost`): a load test must never
/// aim at a shared or production system by accident.
pub fn ensure_loopback(what: &str, host: &str) -> anyhow::Result<()> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let ok = h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !ok {
        bail!("{what} `{host}` is not a loopback address; the load test only runs against 127.0.0.1/::1/localhost");
    }
    Ok(())
}

/// Host part of `host:port` (IPv6 in brackets allowed).
pub fn host_of(host_port: &str) -> &str {
    match host_port.rfind(':') {
        Some(i) if !host_port[i + 1..].contains(']') => &host_port[..i],
        _ => host_port,
    }
}

impl Api {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        let uri: Uri = base.parse().with_context(|| format!("invalid API URL `{base}`"))?;
        if uri.scheme_str() != Some("http") {
            bail!("API URL `{base}` must be http:// (loopback only)");
        }
        ensure_loopback("API host", uri.host().unwrap_or_default())?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(connector);
        Ok(Self { base: base.trim_end_matches('/').to_string(), auth: format!("Bearer {token}"), client })
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Bytes>) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, &self.auth);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .with_context(|| format!("{path}: no answer within {REQUEST_TIMEOUT:?}"))??;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(StatusCode, serde_json::Value)> {
        let (status, bytes) = self.call(Method::POST, path, Some(Bytes::from(serde_json::to_vec(body)?))).await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)))
    }

    pub async fn ready(&self) -> bool {
        matches!(self.call(Method::GET, "/readyz", None).await, Ok((s, _)) if s == StatusCode::OK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        for ok in ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"] {
            assert!(ensure_loopback("x", ok).is_ok(), "{ok}");
        }
        for bad in ["10.0.0.5", "example.com", "0.0.0.0", "192.168.1.1"] {
            assert!(ensure_loopback("x", bad).is_err(), "{bad}");
        }
        assert!(Api::new("http://10.1.1.1:8080", "t").is_err());
        assert!(Api::new("https://127.0.0.1:8080", "t").is_err());
        assert_eq!(host_of("127.0.0.1:9092"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9092"), "[::1]");
    }
}
