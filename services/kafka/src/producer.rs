//! The idempotent producer: acks=all, one copy per record even across broker retries.

use std::time::Duration;

use hookline_config::KafkaOptions;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::oneshot;

use crate::KafkaError;
use crate::polled::{AwaitedReports, PolledProducer};

/// How long a send may wait in the local queue and for the broker's ack.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings shared by every Hookline producer.
pub fn base_config(kafka: &KafkaOptions, client_id: &str) -> ClientConfig {
    let mut c = crate::client_config(kafka);
    c.set("client.id", client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", kafka.linger_ms.to_string())
        .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string());
    // lz4 unless the operator chose a codec in `kafka.client_properties`.
    crate::set_unless_chosen(&mut c, kafka, "compression.type", &["compression.codec"], "lz4");
    c
}

/// One record for [`EventProducer::send_all`].
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// One header (name, value), if any.
    pub header: Option<(&'a str, &'a [u8])>,
}

/// A shared, cheap-to-clone idempotent producer.
#[derive(Clone)]
pub struct EventProducer {
    inner: PolledProducer<AwaitedReports>,
}

impl EventProducer {
    pub fn new(kafka: &KafkaOptions, client_id: &str) -> Result<Self, KafkaError> {
        Self::create(kafka, base_config(kafka, client_id))
    }

    /// A producer whose records wait at most `linger_ms` to be batched, instead of
    /// `kafka.linger_ms`.
    pub fn with_linger(kafka: &KafkaOptions, client_id: &str, linger_ms: u32) -> Result<Self, KafkaError> {
        let mut c = base_config(kafka, client_id);
        c.set("linger.ms", linger_ms.to_string());
        Self::create(kafka, c)
    }

    fn create(kafka: &KafkaOptions, c: ClientConfig) -> Result<Self, KafkaError> {
        let inner = PolledProducer::create(&c, AwaitedReports)
            .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
        Ok(Self { inner })
    }

    /// Appends one record and waits for the broker's acknowledgement. Returns (partition, offset).
    /// A full local queue is waited out for up to [`DELIVERY_TIMEOUT`].
    pub async fn send(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(i32, i64), KafkaError> {
        let failed = |source| KafkaError::Produce { topic: topic.to_string(), source };
        let deadline = std::time::Instant::now() + DELIVERY_TIMEOUT;
        let report = self.enqueue(&Record { topic, key, value, header: None }, deadline).await.map_err(failed)?;
        report.await.map_err(failed)
    }

    /// Appends every record, then waits for all the broker's acknowledgements. Not atomic: on
    /// an error some of the records may be on the log. The records go out in the same requests
    /// as far as `linger.ms` and the partitions allow. A full local queue is waited out for up
    /// to [`DELIVERY_TIMEOUT`] in all. Returns only once no record of the call is still queued
    /// or in flight, so that the caller's accounting of bytes in flight holds.
    pub async fn send_all(&self, records: &[Record<'_>]) -> Result<(), KafkaError> {
        let deadline = std::time::Instant::now() + DELIVERY_TIMEOUT;
        let mut reports = Vec::with_capacity(records.len());
        let mut failed = None;
        for r in records {
            match self.enqueue(r, deadline).await {
                Ok(report) => reports.push((r.topic, report)),
                Err(e) => {
                    failed = Some((r.topic, e));
                    break;
                }
            }
        }
        for (topic, report) in reports {
            if let Err(e) = report.await {
                failed.get_or_insert((topic, e));
            }
        }
        failed.map_or(Ok(()), |(topic, source)| Err(KafkaError::Produce { topic: topic.to_string(), source }))
    }

    /// Puts `r` in the local queue (a full queue is waited out until `deadline`); the future
    /// resolves with the broker's acknowledgement.
    async fn enqueue(
        &self,
        r: &Record<'_>,
        deadline: std::time::Instant,
    ) -> Result<impl Future<Output = Result<(i32, i64), RdKafkaError>> + use<>, RdKafkaError> {
        let (tx, rx) = oneshot::channel();
        let mut record = BaseRecord::with_opaque_to(r.topic, Box::new(tx)).key(r.key).payload(r.value);
        if let Some((name, v)) = r.header {
            record = record.headers(OwnedHeaders::new().insert(Header { key: name, value: Some(v) }));
        }
        loop {
            match self.inner.send(record) {
                Ok(()) => break,
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if std::time::Instant::now() < deadline =>
                {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((source, _)) => return Err(source),
            }
        }
        // The report comes from the producer's own thread; a dropped sender means the client
        // was destroyed with the record still queued.
        Ok(async move { rx.await.unwrap_or(Err(RdKafkaError::Canceled)) })
    }

    /// Messages queued or in flight in this producer, as a probe for a metrics gauge.
    pub fn queue_probe(&self) -> impl Fn() -> i64 + Send + Sync + 'static {
        use rdkafka::producer::Producer;
        let p = self.inner.clone();
        move || i64::from(p.in_flight_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_unless_the_operator_chose_a_codec() {
        let mut kafka = hookline_config::Config::defaults().expect("defaults").kafka;
        assert_eq!(base_config(&kafka, "t").get("compression.type"), Some("lz4"));
        kafka.client_properties.insert("compression.type".into(), "none".into());
        assert_eq!(base_config(&kafka, "t").get("compression.type"), Some("none"));
    }
}
