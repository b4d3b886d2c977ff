//! Topic administration.

use std::time::Duration;

use hookline_config::{KafkaOptions, SchedulerOptions};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, Producer};

use crate::{KafkaError, Topics};

/// What `create_topics` did with one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    Created(String),
    Existed(String),
}

/// A topic to create, with its partition count and config.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub config: Vec<(&'static str, String)>,
}

/// The topics an installation needs.
pub fn topic_specs(kafka: &KafkaOptions, scheduler: &SchedulerOptions) -> Vec<TopicSpec> {
    let topics = Topics::from_options(kafka);
    let n = kafka.partitions;
    let plain = |name: String| TopicSpec { name, partitions: n, config: vec![] };
    let mut specs = vec![
        plain(topics.triggers.clone()),
        plain(topics.deliveries.clone()),
        plain(topics.events.clone()),
        TopicSpec {
            name: topics.endpoints.clone(),
            partitions: n,
            config: vec![
                ("cleanup.policy", "compact".into()),
                // Keep deletions visible long enough for every reader to see them.
                ("delete.retention.ms", (7 * 24 * 3600 * 1000u64).to_string()),
                ("min.compaction.lag.ms", "60000".into()),
            ],
        },
        TopicSpec { name: topics.quarantine.clone(), partitions: 1, config: vec![] },
    ];
    for &tier in &scheduler.tiers_ms {
        specs.push(plain(topics.retry_tier(tier)));
    }
    specs
}

fn admin_client(kafka: &KafkaOptions) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    crate::client_config(kafka).create().map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })
}

/// Creates every missing topic; existing topics are left alone. Safe to run repeatedly.
pub async fn create_topics(kafka: &KafkaOptions, specs: &[TopicSpec]) -> Result<Vec<TopicOutcome>, KafkaError> {
    let admin = admin_client(kafka)?;
    let new: Vec<NewTopic> = specs
        .iter()
        .map(|s| {
            let mut t = NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(kafka.replication_factor));
            for (k, v) in &s.config {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new.iter(), &opts)
        .await
        .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(name) => out.push(TopicOutcome::Created(name)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => out.push(TopicOutcome::Existed(name)),
            Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, reason: code.to_string() }),
        }
    }
    Ok(out)
}

/// Deletes every topic whose name starts with `prefix` (a throwaway run's topics); returns
/// their names. `prefix` must not be empty.
pub async fn delete_topics_with_prefix(kafka: &KafkaOptions, prefix: &str) -> Result<Vec<String>, KafkaError> {
    if prefix.is_empty() {
        return Err(KafkaError::Internal("refusing to delete topics with an empty prefix".into()));
    }
    let md = tokio::task::block_in_place(|| metadata(kafka, None, Duration::from_secs(10)))?;
    let names: Vec<String> =
        md.topics().iter().map(|t| t.name().to_string()).filter(|n| n.starts_with(prefix)).collect();
    if names.is_empty() {
        return Ok(names);
    }
    let admin = admin_client(kafka)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = admin
        .delete_topics(&refs, &opts)
        .await
        .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    for r in results {
        if let Err((topic, code)) = r {
            return Err(KafkaError::Internal(format!("deleting topic {topic}: {code}")));
        }
    }
    Ok(names)
}

/// Cluster metadata (of `topic` only, or of every topic), from a short-lived client (blocking).
fn metadata(
    kafka: &KafkaOptions,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<rdkafka::metadata::Metadata, KafkaError> {
    let p: BaseProducer = crate::client_config(kafka)
        .create()
        .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
    p.client()
        .fetch_metadata(topic, timeout)
        .map_err(|source| KafkaError::Metadata { brokers: kafka.brokers.clone(), source })
}

/// Fetches cluster metadata: succeeds only when a broker answers.
pub fn ping(kafka: &KafkaOptions, timeout: Duration) -> Result<usize, KafkaError> {
    Ok(metadata(kafka, None, timeout)?.brokers().len())
}

/// How many topics and partitions the cluster holds (internal topics included).
pub fn footprint(kafka: &KafkaOptions, timeout: Duration) -> Result<(usize, usize), KafkaError> {
    let md = metadata(kafka, None, timeout)?;
    Ok((md.topics().len(), md.topics().iter().map(|t| t.partitions().len()).sum()))
}

/// Partition count of `topic`, or `None` when it does not exist.
pub fn partition_count(kafka: &KafkaOptions, topic: &str, timeout: Duration) -> Result<Option<usize>, KafkaError> {
    let md = metadata(kafka, Some(topic), timeout)?;
    Ok(md.topics().first().filter(|t| t.error().is_none()).map(|t| t.partitions().len()))
}
