//! The endpoint catalog: every endpoint, held in memory, loaded from the compacted endpoints
//! topic at start and followed live. The router, the dispatchers and the API each hold one.
//!
//! Invariant: a record replaces the held endpoint only if its `version` is not older, so
//! applying the same records twice, or a writer applying its own write early, is harmless.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hookline_config::KafkaOptions;
use hookline_domain::subscriptions::SubscriptionIndex;
use hookline_schemas::{AnyEvent, Codec, EndpointUpserted};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{KafkaError, Topics};

#[derive(Default)]
struct State {
    endpoints: HashMap<String, Arc<EndpointUpserted>>,
    /// Deleted endpoint ids with the version they were deleted at.
    deleted: HashMap<String, i64>,
    index: SubscriptionIndex,
}

/// How long start-up waits for the endpoints topic to exist and have leaders.
const LOAD_RETRY_FOR: Duration = Duration::from_secs(30);

/// (partition, high watermark) of every partition of `topic`; empty when it does not exist.
fn end_offsets(c: &BaseConsumer, topic: &str) -> Result<Vec<(i32, i64)>, rdkafka::error::KafkaError> {
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let Some(t) = md.topics().first().filter(|t| t.error().is_none()) else { return Ok(vec![]) };
    t.partitions()
        .iter()
        .map(|p| c.fetch_watermarks(topic, p.id(), Duration::from_secs(5)).map(|(_, high)| (p.id(), high)))
        .collect()
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    state: Arc<RwLock<State>>,
    loaded: watch::Receiver<bool>,
    loaded_tx: Arc<watch::Sender<bool>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self { state: Arc::default(), loaded: rx, loaded_tx: Arc::new(tx) }
    }

    /// The endpoint, if it exists (deleted endpoints do not).
    pub fn get(&self, id: &str) -> Option<Arc<EndpointUpserted>> {
        self.read().endpoints.get(id).cloned()
    }

    /// Enabled endpoints of `tenant` subscribed to `event_type`.
    pub fn subscribed(&self, tenant: &str, event_type: &str) -> Vec<Arc<EndpointUpserted>> {
        let s = self.read();
        s.index
            .matching(tenant, event_type)
            .into_iter()
            .filter_map(|id| s.endpoints.get(&id).cloned())
            .filter(|e| e.enabled)
            .collect()
    }

    /// Every endpoint of `tenant` (or of every tenant), ordered by id.
    pub fn list(&self, tenant: Option<&str>) -> Vec<Arc<EndpointUpserted>> {
        let s = self.read();
        let mut v: Vec<_> =
            s.endpoints.values().filter(|e| tenant.is_none_or(|t| e.envelope.tenant_id == t)).cloned().collect();
        v.sort_by(|a, b| a.envelope.endpoint_id.cmp(&b.envelope.endpoint_id));
        v
    }

    pub fn len(&self) -> usize {
        self.read().endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once everything on the topic at start has been applied.
    pub fn is_loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    /// Waits until loaded.
    pub async fn wait_loaded(&self) {
        let mut rx = self.loaded.clone();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Applies one record of the endpoints topic.
    pub fn apply(&self, event: AnyEvent) {
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        match event {
            AnyEvent::EndpointUpserted(e) => {
                let Some(id) = e.envelope.endpoint_id.clone() else { return };
                if s.endpoints.get(&id).is_some_and(|cur| cur.version > e.version)
                    || s.deleted.get(&id).is_some_and(|&v| v >= e.version)
                {
                    return;
                }
                s.index.set(&e.envelope.tenant_id, &id, &e.event_types);
                s.deleted.remove(&id);
                s.endpoints.insert(id, Arc::new(e));
            }
            AnyEvent::EndpointDeleted(d) => {
                let Some(id) = d.envelope.endpoint_id.clone() else { return };
                let version = s.endpoints.get(&id).map_or(i64::MAX, |e| e.version);
                s.endpoints.remove(&id);
                s.index.remove(&id);
                s.deleted.insert(id, version);
            }
            _ => {}
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows the endpoints topic until `shutdown`: reads it from the beginning, marks the
    /// catalog loaded once every partition reached its end-of-start position, then stays live.
    pub async fn follow(
        &self,
        kafka: &KafkaOptions,
        codec: Arc<Codec>,
        shutdown: CancellationToken,
    ) -> Result<(), KafkaError> {
        let topics = Topics::from_options(kafka);
        let topic = topics.endpoints.clone();
        let brokers = kafka.brokers.clone();
        let client_err = |source| KafkaError::Client { brokers: brokers.clone(), source };

        // No consumer group: every follower reads everything and never commits.
        let mut cfg = crate::client_config(kafka);
        cfg.set("group.id", format!("{}catalog-unused", kafka.topic_prefix))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "50");
        let consumer: StreamConsumer = cfg.create().map_err(client_err)?;

        // End offsets at start, per partition (blocking metadata calls off the executor). A
        // topic created a moment ago may not have leaders yet: retry for a bounded time.
        let probe: Arc<BaseConsumer> = Arc::new(cfg.create().map_err(client_err)?);
        let deadline = tokio::time::Instant::now() + LOAD_RETRY_FOR;
        let ends = loop {
            let (t, probe) = (topic.clone(), probe.clone());
            let attempt = tokio::task::spawn_blocking(move || end_offsets(&probe, &t))
                .await
                .map_err(|e| KafkaError::CreateTopic { topic: topic.clone(), reason: e.to_string() })?;
            match attempt {
                Ok(ends) if !ends.is_empty() => break ends,
                Ok(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(KafkaError::CreateTopic {
                        topic: topic.clone(),
                        reason: "topic does not exist; run `hookline topics create`".into(),
                    });
                }
                Err(source) if tokio::time::Instant::now() >= deadline => {
                    return Err(KafkaError::Metadata { brokers: kafka.brokers.clone(), source });
                }
                other => {
                    tracing::debug!(?other, topic, "endpoint catalog: topic not ready yet; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
            }
        };
        let mut tpl = TopicPartitionList::new();
        for (p, _) in &ends {
            tpl.add_partition_offset(&topic, *p, Offset::Beginning).map_err(client_err)?;
        }
        consumer.assign(&tpl).map_err(client_err)?;

        let mut pending: Vec<(i32, i64)> = ends.into_iter().filter(|(_, high)| *high > 0).collect();
        let mut check = tokio::time::interval(Duration::from_millis(100));
        loop {
            if !self.is_loaded() {
                // Positions account for control records that are never delivered.
                if let Ok(pos) = consumer.position() {
                    pending.retain(|(p, high)| {
                        let at = pos.find_partition(&topic, *p).and_then(|e| e.offset().to_raw()).unwrap_or(-1);
                        at < *high
                    });
                }
                if pending.is_empty() {
                    tracing::info!(endpoints = self.len(), "endpoint catalog loaded");
                    let _ = self.loaded_tx.send(true);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = check.tick() => {}
                msg = consumer.recv() => {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, topic, "endpoint catalog: consumer error");
                            continue;
                        }
                    };
                    match msg.payload().map(|b| codec.decode(b)) {
                        Some(Ok(ev)) => self.apply(ev),
                        Some(Err(e)) => tracing::warn!(error = %e, partition = msg.partition(), offset = msg.offset(), "endpoint catalog: undecodable record skipped"),
                        None => {
                            // A tombstone: the key is the endpoint id.
                            if let Some(id) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) {
                                let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
                                s.endpoints.remove(id);
                                s.index.remove(id);
                            }
                        }
                    }
                }
            }
        }
    }
}
