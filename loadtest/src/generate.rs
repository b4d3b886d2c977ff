//! Trigger generators for both paths into Hookline: the HTTP API (batch or single) and
//! `TriggerRequested` records written straight to the triggers topic.
//!
//! Closed loop: `concurrency` workers each send their next chunk as soon as the previous one
//! was acknowledged (maximum throughput). Open loop: a 5 ms ticker releases the triggers due at
//! the target rate, each chunk in its own task, so a slow answer does not delay later sends
//! (no coordinated omission) up to `MAX_IN_FLIGHT` chunks; beyond that the chunk is shed and
//! counted. Every payload carries `seq` and its send time `sent_at_us`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::ValueEnum;
use hookline_kafka::producer::EventProducer;
use hookline_schemas::{Codec, Envelope, TriggerRequested};
use http::Method;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::api::Api;
use crate::clock::now_us;
use crate::scenario::Plan;

const MAX_IN_FLIGHT: usize = 4096;
const TICK: Duration = Duration::from_millis(5);

/// How triggers enter Hookline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerPath {
    /// `POST /api/webhooks/trigger/batch` with `--batch` events per request.
    HttpBatch,
    /// `POST /api/webhooks/trigger`, one event per request.
    HttpSingle,
    /// Avro `TriggerRequested` records produced to `<prefix>triggers` (acks=all, idempotent).
    Kafka,
}

pub struct GenConfig {
    pub path: TriggerPath,
    pub count: u64,
    pub rate: Option<f64>,
    pub duration: Duration,
    pub batch: usize,
    pub concurrency: usize,
    pub tenant: String,
    pub pad: String,
}

/// What the generator did, shared with the progress loop.
#[derive(Default)]
pub struct GenStats {
    pub attempted: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub errors: AtomicU64,
    pub shed: AtomicU64,
    pub first_send_us: AtomicI64,
    pub last_ack_us: AtomicI64,
    pub statuses: Mutex<BTreeMap<String, u64>>,
    pub first_error: Mutex<Option<String>>,
}

impl GenStats {
    fn note(&self, outcome: &str, n: u64, error: Option<String>) {
        *self.statuses.lock().expect("status lock").entry(outcome.to_string()).or_default() += n;
        if let Some(e) = error {
            self.first_error.lock().expect("error lock").get_or_insert(e);
        }
    }
}

/// Where triggers go.
pub enum Target {
    Http(Box<Api>),
    Kafka { producer: EventProducer, topic: String, codec: Arc<Codec> },
}

pub struct Generator {
    cfg: GenConfig,
    plan: Arc<Plan>,
    target: Target,
    pub stats: Arc<GenStats>,
}

fn payload(seq: u64, pad: &str) -> String {
    if pad.is_empty() {
        format!("{{\"seq\":{seq},\"sent_at_us\":{}}}", now_us())
    } else {
        format!("{{\"seq\":{seq},\"sent_at_us\":{},\"pad\":\"{pad}\"}}", now_us())
    }
}

impl Generator {
    pub fn new(cfg: GenConfig, plan: Arc<Plan>, target: Target) -> Self {
        Self { cfg, plan, target, stats: Arc::new(GenStats::default()) }
    }

    fn chunk(&self) -> u64 {
        match self.cfg.path {
            TriggerPath::HttpSingle => 1,
            TriggerPath::HttpBatch | TriggerPath::Kafka => self.cfg.batch.max(1) as u64,
        }
    }

    /// Sends triggers `seqs` and records the outcome.
    async fn send(&self, seqs: Range<u64>) {
        let n = seqs.end - seqs.start;
        let s = &self.stats;
        s.attempted.fetch_add(n, Ordering::Relaxed);
        let _ = s.first_send_us.compare_exchange(0, now_us(), Ordering::Relaxed, Ordering::Relaxed);
        let ok = match &self.target {
            Target::Http(api) => self.send_http(api, seqs).await,
            Target::Kafka { producer, topic, codec } => self.send_kafka(producer, topic, codec, seqs).await,
        };
        if ok > 0 {
            s.accepted.fetch_add(ok, Ordering::Relaxed);
            s.last_ack_us.fetch_max(now_us(), Ordering::Relaxed);
        }
    }

    async fn send_http(&self, api: &Api, seqs: Range<u64>) -> u64 {
        let n = seqs.end - seqs.start;
        let event = |seq: u64| {
            format!(
                "{{\"tenant_id\":\"{}\",\"event_type\":\"{}\",\"payload\":{}}}",
                self.cfg.tenant,
                self.plan.event_type(seq),
                payload(seq, &self.cfg.pad)
            )
        };
        let (path, body) = match self.cfg.path {
            TriggerPath::HttpSingle => ("/api/webhooks/trigger", event(seqs.start)),
            _ => (
                "/api/webhooks/trigger/batch",
                format!("{{\"events\":[{}]}}", seqs.map(event).collect::<Vec<_>>().join(",")),
            ),
        };
        match api.call(Method::POST, path, Some(Bytes::from(body))).await {
            Ok((status, _)) if status.is_success() => {
                self.stats.note(status.as_str(), n, None);
                n
            }
            Ok((status, body)) => {
                self.stats.rejected.fetch_add(n, Ordering::Relaxed);
                let text = String::from_utf8_lossy(&body).chars().take(300).collect::<String>();
                self.stats.note(status.as_str(), n, Some(format!("{status}: {text}")));
                0
            }
            Err(e) => {
                self.stats.errors.fetch_add(n, Ordering::Relaxed);
                self.stats.note("transport-error", n, Some(format!("{e:#}")));
                0
            }
        }
    }

    async fn send_kafka(&self, producer: &EventProducer, topic: &str, codec: &Codec, seqs: Range<u64>) -> u64 {
        let sends = seqs.map(|seq| {
            let record = TriggerRequested {
                envelope: Envelope {
                    event_id: hookline_domain::ids::new_event_id(),
                    record_type: "TriggerRequested".into(),
                    occurred_at: hookline_domain::time::now_ms(),
                    tenant_id: self.cfg.tenant.clone(),
                    ..Default::default()
                },
                event_type: self.plan.event_type(seq),
                payload: payload(seq, &self.cfg.pad).into_bytes(),
                content_type: "application/json".into(),
                idempotency_key: None,
                endpoint_ids: None,
                source: "loadtest".into(),
            };
            async move {
                let bytes = codec.encode(&record).map_err(|e| e.to_string())?;
                producer.send(topic, self.cfg.tenant.as_bytes(), &bytes).await.map_err(|e| e.to_string())
            }
        });
        let results = futures::future::join_all(sends).await;
        let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
        let failed = results.len() as u64 - ok;
        if ok > 0 {
            self.stats.note("acked", ok, None);
        }
        if failed > 0 {
            self.stats.errors.fetch_add(failed, Ordering::Relaxed);
            let first = results.into_iter().find_map(|r| r.err());
            self.stats.note("produce-error", failed, first);
        }
        ok
    }

    /// Runs to completion: `count` triggers sent, or `duration` elapsed.
    pub async fn run(self: Arc<Self>) {
        match self.cfg.rate {
            None => self.closed_loop().await,
            Some(rate) => self.open_loop(rate).await,
        }
    }

    async fn closed_loop(self: Arc<Self>) {
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let workers = (0..self.cfg.concurrency.max(1)).map(|_| {
            let (g, next) = (self.clone(), next.clone());
            tokio::spawn(async move {
                let chunk = g.chunk();
                loop {
                    let start = next.fetch_add(chunk, Ordering::Relaxed);
                    if start >= g.cfg.count || started.elapsed() >= g.cfg.duration {
                        break;
                    }
                    g.send(start..(start + chunk).min(g.cfg.count)).await;
                }
            })
        });
        futures::future::join_all(workers).await;
    }

    async fn open_loop(self: Arc<Self>, rate: f64) {
        let started = Instant::now();
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        let mut sent = 0u64;
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while sent < self.cfg.count && started.elapsed() < self.cfg.duration {
            ticker.tick().await;
            let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(self.cfg.count);
            while sent < due {
                let end = (sent + self.chunk()).min(due);
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let g = self.clone();
                        tasks.spawn(async move {
                            g.send(sent..end).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        self.stats.shed.fetch_add(end - sent, Ordering::Relaxed);
                    }
                }
                sent = end;
            }
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_carries_seq_and_send_time() {
        let v: serde_json::Value = serde_json::from_str(&payload(42, "")).unwrap();
        assert_eq!(v["seq"], 42);
        assert!(v["sent_at_us"].as_i64().unwrap() > 1_600_000_000_000_000);
        let v: serde_json::Value = serde_json::from_str(&payload(1, "xx")).unwrap();
        assert_eq!(v["pad"], "xx");
    }
}
