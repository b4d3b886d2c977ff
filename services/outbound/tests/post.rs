//! `OutboundClient::post` against in-process servers on 127.0.0.1 (port 0): a hyper server for
//! well-behaved endpoints and raw TCP listeners for misbehaving ones.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use hookline_outbound::{Delivered, ErrorKind, OutboundClient, OutboundOptions, OutboundRequest};

const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("webhook-signature");
const SIGNATURE: &str = "v1,c2VjcmV0LXNpZ25hdHVyZQ==";
const LOOPBACK_V4: &str = "127.0.0.0/8";
const LOOPBACK_V6: &str = "::1/128";
/// Headroom for scheduling on a loaded 2-core CI box.
const SLACK: Duration = Duration::from_secs(2);

/// What the hyper test server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: Mutex<Vec<(String, Option<String>, Bytes)>>,
}

/// Starts a hyper HTTP/1.1 server whose answer is `respond(path)`; records connections and
/// requests (path, signature header, body).
async fn hyper_server(respond: fn(&str) -> Response<Full<Bytes>>) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen_by_server = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            seen_by_server.connections.fetch_add(1, Ordering::SeqCst);
            let seen = seen_by_server.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let signature = req.headers().get(&SIGNATURE_HEADER).map(|v| v.to_str().unwrap().to_owned());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        seen.requests.lock().unwrap().push((path.clone(), signature, body));
                        Ok::<_, Infallible>(respond(&path))
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, seen)
}

/// Starts a raw TCP server that runs `behave` on every accepted connection.
async fn raw_server<F, Fut>(behave: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(behave(stream));
        }
    });
    addr
}

/// Reads (most of) the request so the client is past writing it before we answer.
async fn read_request(stream: &mut tokio::net::TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf).await;
}

fn client_with(allow: &[&str]) -> OutboundClient {
    OutboundClient::new(OutboundOptions {
        connect_timeout: Duration::from_secs(2),
        max_response_bytes: 64 * 1024,
        response_excerpt_bytes: 1024,
        ssrf_allow: allow.iter().map(|s| s.to_string()).collect(),
        max_idle_per_host: 8,
    })
    .unwrap()
}

fn client() -> OutboundClient {
    client_with(&[LOOPBACK_V4])
}

fn request(url: String, timeout: Duration) -> OutboundRequest {
    OutboundRequest {
        url,
        headers: vec![
            (SIGNATURE_HEADER, HeaderValue::from_static(SIGNATURE)),
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
        ],
        body: Bytes::from_static(br#"{"type":"invoice.paid"}"#),
        timeout,
    }
}

fn answer(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder().status(status).body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap()
}

#[tokio::test]
async fn ok_response_returns_status_and_excerpt() {
    let (addr, seen) = hyper_server(|_| answer(StatusCode::OK, "thanks, got it")).await;
    let d = client().post(request(format!("http://{addr}/hooks"), Duration::from_secs(5))).await.unwrap();
    assert_eq!(d.status, 200);
    assert_eq!(d.excerpt.as_deref(), Some("thanks, got it"));
    assert_eq!(d.retry_after, None);
    let requests = seen.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, "/hooks");
    assert_eq!(requests[0].1.as_deref(), Some(SIGNATURE), "headers are sent");
    assert_eq!(&requests[0].2[..], br#"{"type":"invoice.paid"}"#, "body is sent");
}

#[tokio::test]
async fn empty_body_has_no_excerpt() {
    let (addr, _) = hyper_server(|_| answer(StatusCode::NO_CONTENT, "")).await;
    let d = client().post(request(format!("http://{addr}/"), Duration::from_secs(5))).await.unwrap();
    assert_eq!(d, Delivered { status: 204, duration: d.duration, excerpt: None, retry_after: None });
}

#[tokio::test]
async fn unavailable_with_retry_after_is_delivered_with_delay() {
    let (addr, _) = hyper_server(|_| {
        Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header(RETRY_AFTER, "7")
            .body(Full::new(Bytes::from_static(b"busy")))
            .unwrap()
    })
    .await;
    let d = client().post(request(format!("http://{addr}/"), Duration::from_secs(5))).await.unwrap();
    assert_eq!(d.status, 503);
    assert_eq!(d.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(d.excerpt.as_deref(), Some("busy"));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (addr, seen) = hyper_server(|path| {
        if path == "/moved" {
            return answer(StatusCode::OK, "followed");
        }
        Response::builder().status(StatusCode::FOUND).header(LOCATION, "/moved").body(Full::default()).unwrap()
    })
    .await;
    let d = client().post(request(format!("http://{addr}/old"), Duration::from_secs(5))).await.unwrap();
    assert_eq!(d.status, 302);
    let paths: Vec<String> = seen.requests.lock().unwrap().iter().map(|r| r.0.clone()).collect();
    assert_eq!(paths, ["/old"]);
}

#[tokio::test]
async fn two_posts_reuse_one_connection() {
    let (addr, seen) = hyper_server(|_| answer(StatusCode::OK, "ok")).await;
    let client = client();
    for _ in 0..2 {
        let d = client.post(request(format!("http://{addr}/"), Duration::from_secs(5))).await.unwrap();
        assert_eq!(d.status, 200);
    }
    // A clone shares the pool too.
    let d = client.clone().post(request(format!("http://{addr}/"), Duration::from_secs(5))).await.unwrap();
    assert_eq!(d.status, 200);
    assert_eq!(seen.requests.lock().unwrap().len(), 3);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn server_that_never_answers_times_out() {
    let addr = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        // Hold the connection open without answering.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(stream);
    })
    .await;
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = client().post(request(format!("http://{addr}/"), timeout)).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(elapsed >= timeout && elapsed < timeout + SLACK, "took {elapsed:?}");
    assert!(err.duration >= timeout);
    assert!(!err.message.contains(SIGNATURE));
}

#[tokio::test]
async fn body_that_stalls_before_the_cap_times_out() {
    // The timeout covers the body read: headers arrive, then the body stops short of the cap.
    let addr = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial").await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let started = Instant::now();
    let err = client().post(request(format!("http://{addr}/"), Duration::from_millis(300))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_millis(300) + SLACK);
}

#[tokio::test]
async fn huge_body_is_capped_and_returns_promptly() {
    const BODY_LEN: usize = 5 * 1024 * 1024;
    let addr = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BODY_LEN}\r\n\r\n");
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..BODY_LEN / chunk.len() {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // Never finish cleanly: a client that waits for the end hits its timeout instead.
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    let d = client().post(request(format!("http://{addr}/"), timeout)).await.unwrap();
    assert_eq!(d.status, 200);
    assert_eq!(d.excerpt.as_deref().map(str::len), Some(1024));
    assert!(d.excerpt.unwrap().bytes().all(|b| b == b'x'));
    assert!(started.elapsed() < SLACK, "took {:?}", started.elapsed());
}

#[tokio::test]
async fn refused_connection_is_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = client().post(request(format!("http://{addr}/"), Duration::from_secs(5))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Connect, "{err}");
    assert!(!err.message.contains(SIGNATURE));
}

#[tokio::test]
async fn garbage_response_is_protocol_error() {
    let addr = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        let _ = stream.write_all(b"SMTP ready, not HTTP\r\n\r\n").await;
    })
    .await;
    let err = client().post(request(format!("http://{addr}/"), Duration::from_secs(5))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
}

#[tokio::test]
async fn closing_without_answer_is_protocol_error() {
    let addr = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        drop(stream);
    })
    .await;
    let err = client().post(request(format!("http://{addr}/"), Duration::from_secs(5))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_tls_error() {
    let addr = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
    })
    .await;
    let err = client().post(request(format!("https://{addr}/"), Duration::from_secs(5))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Tls, "{err}");
}

#[tokio::test]
async fn loopback_literal_is_blocked_without_allow_list() {
    let (addr, seen) = hyper_server(|_| answer(StatusCode::OK, "ok")).await;
    let err = client_with(&[]).post(request(format!("http://{addr}/"), Duration::from_secs(5))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::SsrfBlocked, "{err}");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 0, "no connection may be made");

    let d = client_with(&[LOOPBACK_V4]).post(request(format!("http://{addr}/"), Duration::from_secs(5))).await.unwrap();
    assert_eq!(d.status, 200);
}

#[tokio::test]
async fn localhost_name_is_blocked_after_resolution() {
    let (addr, seen) = hyper_server(|_| answer(StatusCode::OK, "ok")).await;
    let url = format!("http://localhost:{}/", addr.port());
    let err = client_with(&[]).post(request(url.clone(), Duration::from_secs(5))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::SsrfBlocked, "{err}");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 0, "no connection may be made");

    // The resolver passes allowed addresses through (and HttpConnector tries each in turn).
    let d = client_with(&[LOOPBACK_V4, LOOPBACK_V6]).post(request(url, Duration::from_secs(5))).await.unwrap();
    assert_eq!(d.status, 200);
}

#[tokio::test]
async fn metadata_and_private_literals_are_blocked() {
    // Refused before any connect is tried: nothing listens on these.
    for url in ["http://169.254.169.254/latest/meta-data", "http://10.0.0.1/", "http://[::ffff:127.0.0.1]:1/"] {
        let err = client_with(&[]).post(request(url.to_owned(), Duration::from_secs(5))).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::SsrfBlocked, "{url}: {err}");
    }
}

#[tokio::test]
async fn invalid_urls_are_rejected() {
    for url in [
        "ftp://example.com/file",
        "http://",
        "http:///nohost",
        "not a url",
        "",
        "mailto:a@example.com",
        "//example.com/",
    ] {
        let err = client().post(request(url.to_owned(), Duration::from_secs(5))).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidUrl, "{url:?}: {err}");
    }
}

#[tokio::test]
async fn unresolvable_name_is_dns_error() {
    // `.invalid` never resolves (RFC 6761); bounded in case the system resolver is slow.
    let url = "http://hookline-outbound-test.invalid/".to_owned();
    let err = client().post(request(url, Duration::from_secs(15))).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Dns | ErrorKind::Timeout), "{err}");
    if err.kind == ErrorKind::Timeout {
        eprintln!("system resolver did not answer in time; DNS classification not exercised");
    }
}
