//! The receiving sink: a bare hyper 1 HTTP/1.1 server on 127.0.0.1 (no router, no middleware)
//! that every load-test endpoint points at (`/ep/{index}`).
//!
//! Per request it reads the body, takes the trigger's `seq` and `sent_at_us` from the JSON
//! payload, optionally verifies the Standard Webhooks signature, applies the endpoint's
//! behaviour (answer, fail, delay, hang) and, on a 2xx answer, records the message: the first
//! success of a (endpoint, seq) pair goes into its group's latency histogram, later ones count
//! as duplicates.
//!
//! State is sharded maps behind plain mutexes: the critical sections are a hash lookup, so
//! contention stays far below what two cores of hookline can deliver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use hookline_domain::signing;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::now_us;

const SHARDS: usize = 64;
/// How long a hanging endpoint holds a request before giving up (hookline's timeouts are
/// shorter, so in practice the client closes first).
const HANG_CAP: Duration = Duration::from_secs(600);
/// Accepted clock skew for `webhook-timestamp`, seconds (the Standard Webhooks default).
const SIGNATURE_TOLERANCE_S: i64 = 300;

/// How one endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// 200 at once.
    Ok,
    /// The first attempt of a fraction `ratio` of the messages (chosen by a hash of endpoint
    /// and seq, so it is deterministic) is answered `status`; retries succeed. Every message is
    /// therefore delivered eventually and "lost" stays meaningful.
    FailFirst { ratio: f64, status: u16 },
    /// Every request is answered `status` with probability `ratio` (retries may fail again).
    FailRandom { ratio: f64, status: u16 },
    /// 200 after a delay.
    Delay(Duration),
    /// Read the request, never answer (until the client gives up).
    Hang,
}

impl std::str::FromStr for Behaviour {
    type Err = String;

    /// `ok`, `hang`, `delay:MS`, `fail:RATIO:STATUS` (random per request) or
    /// `fail-first:RATIO:STATUS` (first attempt of a fraction of the messages).
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let ratio = |v: &str| {
            v.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)).ok_or(format!("ratio `{v}` must be 0..1"))
        };
        let status = |v: &str| {
            v.parse::<u16>().ok().filter(|c| (100..=599).contains(c)).ok_or(format!("status `{v}` must be 100..599"))
        };
        match parts.as_slice() {
            ["ok"] => Ok(Self::Ok),
            ["hang"] => Ok(Self::Hang),
            ["delay", ms] => ms
                .parse()
                .map(|ms| Self::Delay(Duration::from_millis(ms)))
                .map_err(|_| format!("delay `{ms}` must be ms")),
            ["fail", r, c] => Ok(Self::FailRandom { ratio: ratio(r)?, status: status(c)? }),
            ["fail-first", r, c] => Ok(Self::FailFirst { ratio: ratio(r)?, status: status(c)? }),
            _ => Err(format!("`{s}`: use ok, hang, delay:MS, fail:RATIO:STATUS or fail-first:RATIO:STATUS")),
        }
    }
}

/// What the sink knows about one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub group: usize,
    pub behaviour: Behaviour,
}

/// Counters of one endpoint group (e.g. "healthy", "dead").
pub struct GroupStats {
    pub latency_us: Mutex<Histogram<u64>>,
    pub received: AtomicU64,
    pub duplicates: AtomicU64,
}

/// Per-endpoint receipt statistics (rate accuracy).
#[derive(Debug, Default, Clone, Copy)]
pub struct EndpointStats {
    pub received: u64,
    pub first_us: i64,
    pub last_us: i64,
    cur_sec: i64,
    cur_count: u64,
    pub max_per_sec: u64,
}

#[derive(Default)]
struct Entry {
    attempts: u32,
    successes: u32,
}

/// Everything the sink recorded; shared with the run for progress and the report.
pub struct SinkState {
    endpoints: Vec<EndpointSpec>,
    pub groups: Vec<GroupStats>,
    seen: Vec<Mutex<HashMap<u64, Entry>>>,
    per_endpoint: Vec<Mutex<EndpointStats>>,
    verify_key: Option<Vec<u8>>,
    pub requests: AtomicU64,
    pub received: AtomicU64,
    pub duplicates: AtomicU64,
    pub failed_by_design: AtomicU64,
    pub hung: AtomicU64,
    pub bad_signature: AtomicU64,
    pub bad_request: AtomicU64,
    pub first_receipt_us: AtomicI64,
    pub last_receipt_us: AtomicI64,
    /// Latencies since the run last took them (see [`SinkState::take_window`]): the timeline's
    /// per-second percentiles, where stalls show.
    window_us: Mutex<Histogram<u64>>,
    /// Triggers sent before this time (µs) are left out of the latency figures (warm-up).
    pub measure_from_us: AtomicI64,
    /// First receipts of warm-up triggers (counted, no latency recorded).
    pub warmup_received: AtomicU64,
}

pub struct Sink {
    pub addr: SocketAddr,
    pub state: Arc<SinkState>,
    stop: CancellationToken,
}

#[derive(Deserialize)]
struct Payload {
    seq: u64,
    sent_at_us: i64,
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl SinkState {
    /// The latencies recorded since the last call, and a fresh window.
    pub fn take_window(&self) -> Histogram<u64> {
        std::mem::replace(&mut *self.window_us.lock().expect("histogram lock"), new_histogram())
    }

    pub fn new(endpoints: Vec<EndpointSpec>, groups: usize, verify_key: Option<Vec<u8>>) -> Self {
        let n = endpoints.len();
        Self {
            endpoints,
            groups: (0..groups)
                .map(|_| GroupStats {
                    latency_us: Mutex::new(new_histogram()),
                    received: AtomicU64::new(0),
                    duplicates: AtomicU64::new(0),
                })
                .collect(),
            seen: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_endpoint: (0..n).map(|_| Mutex::new(EndpointStats::default())).collect(),
            verify_key,
            requests: AtomicU64::new(0),
            received: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failed_by_design: AtomicU64::new(0),
            hung: AtomicU64::new(0),
            bad_signature: AtomicU64::new(0),
            bad_request: AtomicU64::new(0),
            first_receipt_us: AtomicI64::new(0),
            last_receipt_us: AtomicI64::new(0),
            window_us: Mutex::new(new_histogram()),
            measure_from_us: AtomicI64::new(0),
            warmup_received: AtomicU64::new(0),
        }
    }

    pub fn endpoint_stats(&self) -> Vec<EndpointStats> {
        self.per_endpoint.iter().map(|m| *m.lock().expect("endpoint stats lock")).collect()
    }

    fn handle(&self, endpoint: usize, headers: &http::HeaderMap, body: &[u8]) -> StatusCode {
        let now = now_us();
        let Ok(p) = serde_json::from_slice::<Payload>(body) else {
            self.bad_request.fetch_add(1, Ordering::Relaxed);
            // 200 so a foreign message is not retried forever; counted as a bad request.
            return StatusCode::OK;
        };
        if let Some(key) = &self.verify_key
            && !verify(key, headers, body, now / 1_000_000)
        {
            self.bad_signature.fetch_add(1, Ordering::Relaxed);
            return StatusCode::UNAUTHORIZED;
        }
        let spec = &self.endpoints[endpoint];
        let key = ((endpoint as u64) << 40) | (p.seq & ((1 << 40) - 1));
        let shard = &self.seen[(mix(key) as usize) % SHARDS];
        let first_success = {
            let mut map = shard.lock().expect("sink shard lock");
            let e = map.entry(key).or_default();
            e.attempts += 1;
            let fail = match spec.behaviour {
                Behaviour::FailFirst { ratio, status } if e.attempts == 1 && e.successes == 0 && chosen(key, ratio) => {
                    Some(status)
                }
                Behaviour::FailRandom { ratio, status } if rand::random::<f64>() < ratio => Some(status),
                _ => None,
            };
            if let Some(status) = fail {
                drop(map);
                self.failed_by_design.fetch_add(1, Ordering::Relaxed);
                return StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            }
            e.successes += 1;
            e.successes == 1
        };
        let group = &self.groups[spec.group];
        if first_success {
            let latency = (now - p.sent_at_us).max(1) as u64;
            if p.sent_at_us >= self.measure_from_us.load(Ordering::Relaxed) {
                group.latency_us.lock().expect("histogram lock").saturating_record(latency);
                self.window_us.lock().expect("histogram lock").saturating_record(latency);
            } else {
                self.warmup_received.fetch_add(1, Ordering::Relaxed);
            }
            group.received.fetch_add(1, Ordering::Relaxed);
            self.received.fetch_add(1, Ordering::Relaxed);
            let _ = self.first_receipt_us.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            self.last_receipt_us.fetch_max(now, Ordering::Relaxed);
            let mut s = self.per_endpoint[endpoint].lock().expect("endpoint stats lock");
            s.received += 1;
            if s.first_us == 0 {
                s.first_us = now;
            }
            s.last_us = now;
            let sec = now / 1_000_000;
            if sec == s.cur_sec {
                s.cur_count += 1;
            } else {
                s.cur_sec = sec;
                s.cur_count = 1;
            }
            s.max_per_sec = s.max_per_sec.max(s.cur_count);
        } else {
            group.duplicates.fetch_add(1, Ordering::Relaxed);
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        StatusCode::OK
    }
}

fn verify(key: &[u8], headers: &http::HeaderMap, body: &[u8], now_s: i64) -> bool {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sig)) =
        (h(signing::HEADER_ID), h(signing::HEADER_TIMESTAMP), h(signing::HEADER_SIGNATURE))
    else {
        return false;
    };
    let Ok(ts) = ts.parse::<i64>() else { return false };
    signing::verify_v1(key, id, ts, body, sig, now_s, SIGNATURE_TOLERANCE_S)
}

/// splitmix64: spreads keys over shards and picks failing messages deterministically.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn chosen(key: u64, ratio: f64) -> bool {
    (mix(key ^ 0x5bd1_e995) as f64 / u64::MAX as f64) < ratio
}

fn endpoint_index(path: &str, n: usize) -> Option<usize> {
    path.strip_prefix("/ep/")?.parse::<usize>().ok().filter(|&i| i < n)
}

impl Sink {
    /// Binds 127.0.0.1:`port` (0 = any free port) and serves until dropped or stopped.
    pub async fn start(state: SinkState, port: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(state);
        let stop = CancellationToken::new();
        let (st, token) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => break,
                    a = listener.accept() => a,
                };
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let (st, token) = (st.clone(), token.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| serve(st.clone(), token.clone(), req));
                    let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service);
                    let _ = conn.await;
                });
            }
        });
        Ok(Self { addr, state, stop })
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(
    state: Arc<SinkState>,
    stop: CancellationToken,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let Some(endpoint) = endpoint_index(req.uri().path(), state.endpoints.len()) else {
        return Ok(reply(StatusCode::NOT_FOUND));
    };
    let behaviour = state.endpoints[endpoint].behaviour;
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    match behaviour {
        Behaviour::Hang => {
            state.hung.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(HANG_CAP) => {}
            }
            return Ok(reply(StatusCode::SERVICE_UNAVAILABLE));
        }
        Behaviour::Delay(d) => tokio::time::sleep(d).await,
        _ => {}
    }
    Ok(reply(state.handle(endpoint, &parts.headers, &body)))
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(behaviour: Behaviour, key: Option<Vec<u8>>) -> SinkState {
        SinkState::new(vec![EndpointSpec { group: 0, behaviour }], 1, key)
    }

    fn body(seq: u64) -> Vec<u8> {
        format!("{{\"seq\":{seq},\"sent_at_us\":{}}}", now_us() - 1000).into_bytes()
    }

    #[test]
    fn first_success_is_recorded_and_repeats_are_duplicates() {
        let s = state(Behaviour::Ok, None);
        let h = http::HeaderMap::new();
        assert_eq!(s.handle(0, &h, &body(7)), StatusCode::OK);
        assert_eq!(s.handle(0, &h, &body(7)), StatusCode::OK);
        assert_eq!(s.handle(0, &h, &body(8)), StatusCode::OK);
        assert_eq!(s.received.load(Ordering::Relaxed), 2);
        assert_eq!(s.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(s.groups[0].latency_us.lock().unwrap().len(), 2);
    }

    #[test]
    fn fail_first_fails_only_the_first_attempt_of_chosen_messages() {
        let s = state(Behaviour::FailFirst { ratio: 0.5, status: 503 }, None);
        let h = http::HeaderMap::new();
        let mut failed = 0;
        for seq in 0..1000 {
            if s.handle(0, &h, &body(seq)) != StatusCode::OK {
                failed += 1;
                assert_eq!(s.handle(0, &h, &body(seq)), StatusCode::OK, "the retry succeeds");
            }
        }
        assert!((400..600).contains(&failed), "about half fail once: {failed}");
        assert_eq!(s.received.load(Ordering::Relaxed), 1000);
        assert_eq!(s.duplicates.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn signatures_are_checked_when_a_key_is_given() {
        let key = vec![7u8; 32];
        let s = state(Behaviour::Ok, Some(key.clone()));
        let b = body(1);
        let ts = now_us() / 1_000_000;
        let mut h = http::HeaderMap::new();
        h.insert(signing::HEADER_ID, "msg_1".parse().unwrap());
        h.insert(signing::HEADER_TIMESTAMP, ts.to_string().parse().unwrap());
        h.insert(signing::HEADER_SIGNATURE, signing::sign_v1(&key, "msg_1", ts, &b).parse().unwrap());
        assert_eq!(s.handle(0, &h, &b), StatusCode::OK);
        h.insert(signing::HEADER_SIGNATURE, signing::sign_v1(&[1u8; 32], "msg_1", ts, &b).parse().unwrap());
        assert_eq!(s.handle(0, &h, &body(2)), StatusCode::UNAUTHORIZED);
        assert_eq!(s.bad_signature.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn behaviours_parse_from_the_command_line() {
        assert_eq!("ok".parse::<Behaviour>(), Ok(Behaviour::Ok));
        assert_eq!("delay:250".parse::<Behaviour>(), Ok(Behaviour::Delay(Duration::from_millis(250))));
        assert_eq!("fail:0.2:500".parse::<Behaviour>(), Ok(Behaviour::FailRandom { ratio: 0.2, status: 500 }));
        assert_eq!("fail-first:0.5:503".parse::<Behaviour>(), Ok(Behaviour::FailFirst { ratio: 0.5, status: 503 }));
        assert!("fail:2:500".parse::<Behaviour>().is_err());
        assert!("teapot".parse::<Behaviour>().is_err());
    }

    #[test]
    fn paths_outside_the_endpoint_range_are_refused() {
        assert_eq!(endpoint_index("/ep/3", 4), Some(3));
        assert_eq!(endpoint_index("/ep/4", 4), None);
        assert_eq!(endpoint_index("/other", 4), None);
    }
}
