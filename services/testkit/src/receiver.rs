//! An in-process receiver on 127.0.0.1 (port 0).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;

/// How a path answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    Status(u16),
    /// Answer `status` the first `times` requests, then 200.
    FailTimes {
        times: usize,
        status: u16,
    },
    /// Accept and never answer.
    Hang,
    /// Answer 200 after a delay.
    Delay(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    behaviour: HashMap<String, Behaviour>,
    seen: HashMap<String, usize>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move { handle(s, uri, headers, body).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn set(&self, path: &str, b: Behaviour) {
        self.state.lock().expect("lock").behaviour.insert(path.into(), b);
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        self.state.lock().expect("lock").received.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Waits until `path` received at least `n` requests; returns them.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received(path);
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{path}: {} of {n} requests after {timeout:?}", got.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(state: Arc<Mutex<State>>, uri: Uri, headers: HeaderMap, body: Bytes) -> axum::response::Response {
    let path = uri.path().to_string();
    let behaviour = {
        let mut s = state.lock().expect("lock");
        let n = {
            let c = s.seen.entry(path.clone()).or_default();
            *c += 1;
            *c
        };
        let b = s.behaviour.get(&path).cloned().unwrap_or(Behaviour::Status(200));
        let headers =
            headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string())).collect();
        s.received.push(Received { path: path.clone(), headers, body: body.to_vec(), at: Instant::now() });
        match b {
            Behaviour::FailTimes { times, status } if n <= times => Behaviour::Status(status),
            Behaviour::FailTimes { .. } => Behaviour::Status(200),
            other => other,
        }
    };
    match behaviour {
        Behaviour::Status(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::OK).into_response(),
        Behaviour::Hang => futures::future::pending().await,
        Behaviour::Delay(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
        Behaviour::FailTimes { .. } => StatusCode::OK.into_response(),
    }
}
