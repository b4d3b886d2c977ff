//! The idempotent producer: acks=all, one copy per record even across broker retries.

use std::time::Duration;

use hookline_config::KafkaOptions;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError as RdKafkaError;
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

/// A shared, cheap-to-clone idempotent producer.
#[derive(Clone)]
pub struct EventProducer {
    inner: PolledProducer<AwaitedReports>,
}

impl EventProducer {
    pub fn new(kafka: &KafkaOptions, client_id: &str) -> Result<Self, KafkaError> {
        let inner = PolledProducer::create(&base_config(kafka, client_id), AwaitedReports)
            .map_err(|source| KafkaError::Client { brokers: kafka.brokers.clone(), source })?;
        Ok(Self { inner })
    }

    /// Appends one record and waits for the broker's acknowledgement. Returns (partition, offset).
    /// A full local queue is waited out for up to [`DELIVERY_TIMEOUT`].
    pub async fn send(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(i32, i64), KafkaError> {
        let failed = |source| KafkaError::Produce { topic: topic.to_string(), source };
        let started = std::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(tx)).key(key).payload(value);
        loop {
            match self.inner.send(record) {
                Ok(()) => break,
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if started.elapsed() < DELIVERY_TIMEOUT =>
                {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((source, _)) => return Err(failed(source)),
            }
        }
        // The report comes from the producer's own thread; a dropped sender means the client
        // was destroyed with the record still queued.
        rx.await.unwrap_or(Err(RdKafkaError::Canceled)).map_err(failed)
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
