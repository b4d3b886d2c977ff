//! Reads a topic from the beginning (every partition, no group) and collects decoded events.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookline_config::KafkaOptions;
use hookline_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use hookline_kafka::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use hookline_schemas::{AnyEvent, Codec};

#[derive(Clone)]
pub struct Tap {
    events: Arc<Mutex<Vec<AnyEvent>>>,
}

impl Tap {
    pub fn start(kafka: &KafkaOptions, topic: &str, partitions: i32) -> Self {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", format!("tap-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "20")
            .create()
            .expect("tap consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            let codec = Codec::new().expect("codec");
            loop {
                if let Ok(m) = consumer.recv().await
                    && let Some(Ok(e)) = m.payload().map(|b| codec.decode(b))
                {
                    sink.lock().expect("lock").push(e);
                }
            }
        });
        Self { events }
    }

    pub fn all(&self) -> Vec<AnyEvent> {
        self.events.lock().expect("lock").clone()
    }

    /// Waits until at least `n` collected events satisfy `pred`; returns them.
    pub async fn wait_for(&self, n: usize, timeout: Duration, pred: impl Fn(&AnyEvent) -> bool) -> Vec<AnyEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let got: Vec<_> = self.all().into_iter().filter(|e| pred(e)).collect();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{} of {n} matching events after {timeout:?}", got.len());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
