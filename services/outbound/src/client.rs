//! [`OutboundClient`]: one pooled hyper-util client over hyper-rustls, shared by every delivery.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::RETRY_AFTER;
use http::uri::Scheme;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::error::{AttemptError, ErrorKind, OutboundError, classify};
use crate::options::OutboundOptions;
use crate::resolver::GuardedResolver;
use crate::retry_after::parse_retry_after;
use crate::ssrf::SsrfGuard;

type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

/// One webhook POST.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Sent as given (appended, so repeated names are kept). Never logged or echoed in errors.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Total budget from the start of the attempt to the end of reading the (capped) body.
    pub timeout: Duration,
}

/// The endpoint answered with an HTTP status; any status, including 3xx/4xx/5xx. The caller
/// decides what counts as success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub status: u16,
    /// Time from the start of the attempt to the end of reading the (capped) body.
    pub duration: Duration,
    /// The first `response_excerpt_bytes` of the body as lossy UTF-8; `None` if the body is empty.
    pub excerpt: Option<String>,
    /// The parsed `Retry-After` header, if present and valid.
    pub retry_after: Option<Duration>,
}

/// The shared outbound HTTP client. Cloning is cheap and shares the connection pool.
#[derive(Clone)]
pub struct OutboundClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<Connector, Full<Bytes>>,
    guard: Arc<SsrfGuard>,
    max_response_bytes: usize,
    response_excerpt_bytes: usize,
}

impl OutboundClient {
    pub fn new(opts: OutboundOptions) -> Result<Self, OutboundError> {
        let guard = Arc::new(SsrfGuard::new(&opts.ssrf_allow)?);

        // The ring provider is named explicitly: relying on the process default would pick
        // aws-lc-rs if another crate enables it, and two installed providers panic at start.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_webpki_roots()
            .with_no_client_auth();

        let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(guard.clone()));
        // The connector sees https URLs too; hyper-rustls layers TLS on the TCP stream it returns.
        http.enforce_http(false);
        http.set_nodelay(true);
        // Zero would fail every connect instantly; treat it as "only the total timeout applies".
        http.set_connect_timeout((!opts.connect_timeout.is_zero()).then_some(opts.connect_timeout));

        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);

        let client = Client::builder(TokioExecutor::new())
            // Without a timer the pool never evicts idle connections.
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(opts.max_idle_per_host)
            .build(https);

        Ok(Self {
            inner: Arc::new(Inner {
                client,
                guard,
                max_response_bytes: opts.max_response_bytes,
                response_excerpt_bytes: opts.response_excerpt_bytes,
            }),
        })
    }

    /// POSTs once. Redirects are not followed. `Ok` means the endpoint answered with a status;
    /// `Err` means it did not (bad URL, refused address, network, TLS, timeout, garbage).
    pub async fn post(&self, req: OutboundRequest) -> Result<Delivered, AttemptError> {
        let start = Instant::now();
        let fail = |kind: ErrorKind, message: String| AttemptError::new(kind, message, start.elapsed());

        let uri = self.check_url(&req.url).map_err(|(kind, message)| fail(kind, message))?;
        let mut request = Request::new(Full::new(req.body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        for (name, value) in req.headers {
            headers.append(name, value);
        }

        match tokio::time::timeout(req.timeout, self.exchange(request)).await {
            Ok(Ok(answer)) => {
                let duration = start.elapsed();
                tracing::debug!(status = answer.status, elapsed_ms = duration.as_millis() as u64, "endpoint answered");
                Ok(Delivered {
                    status: answer.status,
                    duration,
                    excerpt: excerpt(&answer.body, self.inner.response_excerpt_bytes),
                    retry_after: answer.retry_after,
                })
            }
            Ok(Err((kind, message))) => {
                tracing::debug!(kind = kind.as_str(), %message, "attempt failed");
                Err(fail(kind, message))
            }
            Err(_elapsed) => {
                Err(fail(ErrorKind::Timeout, format!("no complete response within {} ms", req.timeout.as_millis())))
            }
        }
    }

    /// Only absolute http(s) URLs with a host. An IP-literal host is judged here because
    /// HttpConnector connects to literals without consulting the resolver (and its guard).
    fn check_url(&self, url: &str) -> Result<Uri, (ErrorKind, String)> {
        let invalid = |why: &str| (ErrorKind::InvalidUrl, why.to_owned());
        let uri: Uri = url.parse().map_err(|_| invalid("not a valid URL"))?;
        match uri.scheme() {
            Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => {}
            Some(_) => return Err(invalid("only http and https URLs are supported")),
            None => return Err(invalid("URL is not absolute")),
        }
        let host = uri.host().unwrap_or_default();
        if host.is_empty() {
            return Err(invalid("URL has no host"));
        }
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = literal.parse::<IpAddr>()
            && !self.inner.guard.permits(ip)
        {
            return Err((ErrorKind::SsrfBlocked, format!("{ip} is in a refused address range")));
        }
        Ok(uri)
    }

    /// Sends the request and reads the head and at most `max_response_bytes` of the body.
    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Answer, (ErrorKind, String)> {
        let response = self.inner.client.request(request).await.map_err(|e| classify(&e, e.is_connect()))?;
        let (parts, body) = response.into_parts();
        let retry_after = parts
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = read_capped(body, self.inner.max_response_bytes)
            .await
            .map_err(|e| (ErrorKind::Protocol, format!("reading the response body failed: {e}")))?;
        Ok(Answer { status: parts.status.as_u16(), retry_after, body })
    }
}

struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Bytes,
}

/// Reads until the body ends or `max` bytes are in hand. Returning early drops the body, which
/// makes hyper close the connection instead of draining an unbounded response into the void.
async fn read_capped(mut body: Incoming, max: usize) -> Result<Bytes, hyper::Error> {
    let mut buf = BytesMut::new();
    while buf.len() < max {
        let Some(frame) = body.frame().await else { break };
        if let Ok(data) = frame?.into_data() {
            let take = data.len().min(max - buf.len());
            buf.extend_from_slice(&data[..take]);
        }
    }
    Ok(buf.freeze())
}

/// The first `limit` bytes as lossy UTF-8, without a replacement character for a multi-byte
/// character the cut split in two.
fn excerpt(body: &[u8], limit: usize) -> Option<String> {
    let cut = &body[..body.len().min(limit)];
    let cut = if cut.len() < body.len() { trim_split_char(cut) } else { cut };
    (!cut.is_empty()).then(|| String::from_utf8_lossy(cut).into_owned())
}

/// Drops a trailing incomplete UTF-8 sequence, if any (and only if something remains).
fn trim_split_char(b: &[u8]) -> &[u8] {
    for back in 1..=b.len().min(4) {
        let byte = b[b.len() - back];
        let is_continuation = byte & 0xC0 == 0x80;
        if !is_continuation {
            let needed = match byte {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if needed > back && back < b.len() { &b[..b.len() - back] } else { b };
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(allow: &[&str]) -> OutboundClient {
        let opts = OutboundOptions { ssrf_allow: allow.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        OutboundClient::new(opts).unwrap()
    }

    #[test]
    fn excerpt_caps_and_keeps_whole_characters() {
        assert_eq!(excerpt(b"", 10), None);
        assert_eq!(excerpt(b"hello", 0), None);
        assert_eq!(excerpt(b"hello", 10).as_deref(), Some("hello"));
        assert_eq!(excerpt(b"hello", 3).as_deref(), Some("hel"));
        // "héllo": é is two bytes at 1..3; a cut at 2 splits it.
        assert_eq!(excerpt("héllo".as_bytes(), 2).as_deref(), Some("h"));
        assert_eq!(excerpt("héllo".as_bytes(), 3).as_deref(), Some("hé"));
        // "€" is three bytes; cutting after two of them keeps "a".
        assert_eq!(excerpt("a€b".as_bytes(), 3).as_deref(), Some("a"));
        // Invalid bytes are replaced, not an error.
        assert_eq!(excerpt(&[b'a', 0xFF, b'b'], 10).as_deref(), Some("a\u{FFFD}b"));
        // A lone split character is kept lossily rather than becoming no excerpt.
        assert_eq!(excerpt("€".as_bytes(), 1).as_deref(), Some("\u{FFFD}"));
    }

    #[tokio::test]
    async fn check_url_rejects_bad_urls_and_refused_literals() {
        let c = client(&[]);
        for bad in [
            "ftp://example.com/",
            "http://",
            "http:///path",
            "/relative",
            "example.com",
            "garbage",
            "http://exa mple.com/",
            "",
        ] {
            let (kind, _) = c.check_url(bad).unwrap_err();
            assert_eq!(kind, ErrorKind::InvalidUrl, "{bad:?}");
        }
        for refused in [
            "http://127.0.0.1/",
            "https://[::1]:8443/",
            "http://169.254.169.254/latest",
            "http://[::ffff:10.0.0.1]/",
            "http://0.0.0.0:80/",
        ] {
            let (kind, _) = c.check_url(refused).unwrap_err();
            assert_eq!(kind, ErrorKind::SsrfBlocked, "{refused:?}");
        }
        for ok in ["http://93.184.216.34/hook", "https://[2606:2800:220:1::]/", "https://example.com:8443/x?y=1"] {
            assert!(c.check_url(ok).is_ok(), "{ok:?}");
        }
        assert!(client(&["127.0.0.0/8"]).check_url("http://127.0.0.1:1/").is_ok());
    }

    #[test]
    fn invalid_allow_list_fails_construction() {
        let opts = OutboundOptions { ssrf_allow: vec!["not-a-cidr".into()], ..Default::default() };
        match OutboundClient::new(opts) {
            Err(OutboundError::InvalidAllowList { entry }) => assert_eq!(entry, "not-a-cidr"),
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("invalid allow-list accepted"),
        }
    }
}
