//! Through the real broker: a transactional producer fenced by another one with its
//! transactional id (what the coordinator also does when a stall makes a transaction outlive
//! `transaction.timeout.ms`) is replaced by a new producer instead of failing its role.

use std::time::{Duration, Instant};

use hookline_kafka::admin::{create_topics, topic_specs};
use hookline_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use hookline_kafka::rdkafka::{Message, TopicPartitionList};
use hookline_kafka::txn::TxnProducer;
use hookline_kafka::{Topics, consumer};
use hookline_testkit::TestEnv;

/// Reads `topic` as a committed reader until `until` shows up (30 s at most); returns every
/// value seen.
async fn read_until(kafka: &hookline_config::KafkaOptions, group: &str, topic: &str, until: &[u8]) -> Vec<Vec<u8>> {
    let reader: StreamConsumer =
        consumer::base_config(kafka, &format!("{}{group}", kafka.topic_prefix), "test").create().unwrap();
    reader.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|v: &Vec<u8>| v == until) {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, reader.recv()).await.expect("the committed record within 30 s").unwrap();
        seen.push(msg.payload().unwrap_or_default().to_vec());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_lost_a_record_aborts_at_commit() {
    let env = TestEnv::new();
    let kafka = &env.config.kafka;
    create_topics(kafka, &topic_specs(kafka, &env.config.scheduler)).await.unwrap();
    let topics = Topics::from_options(kafka);
    let none = TopicPartitionList::new();
    let mut p = TxnProducer::new(kafka, "test", &format!("{}txn-poison", kafka.topic_prefix)).unwrap();

    p.send(&topics.deliveries, b"k", b"before").unwrap();
    // Over the producer's message.max.bytes (1 MB): refused at once.
    let huge = vec![b'x'; 2_000_000];
    assert!(p.send(&topics.deliveries, b"k", &huge).is_err());
    assert!(p.send(&topics.deliveries, b"k", b"after").is_err(), "a poisoned transaction takes nothing more");
    assert!(p.is_open());
    let failed = tokio::task::block_in_place(|| p.commit_blocking(None, &none));
    assert!(
        matches!(failed, Err(hookline_kafka::KafkaError::Produce { .. })),
        "the commit reports the lost record: {failed:?}"
    );
    assert!(!p.is_open());

    // The next transaction is a fresh one.
    p.send(&topics.deliveries, b"k", b"kept").unwrap();
    tokio::task::block_in_place(|| p.commit_blocking(None, &none)).expect("the next transaction commits");
    let seen = read_until(kafka, "txn-poison-reader", &topics.deliveries, b"kept").await;
    assert!(
        !seen.iter().any(|v| v == b"before" || v == b"after"),
        "nothing of the aborted transaction is read committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_producer_is_renewed_and_commits_again() {
    let env = TestEnv::new();
    let kafka = &env.config.kafka;
    create_topics(kafka, &topic_specs(kafka, &env.config.scheduler)).await.unwrap();
    let topics = Topics::from_options(kafka);
    let tid = format!("{}txn-test", kafka.topic_prefix);
    let none = TopicPartitionList::new();

    let mut first = TxnProducer::new(kafka, "test", &tid).unwrap();
    first.send(&topics.deliveries, b"k", b"lost").unwrap();
    // Same transactional id: the coordinator fences `first` and aborts its open transaction.
    let _second = TxnProducer::new(kafka, "test", &tid).unwrap();
    let fenced = tokio::task::block_in_place(|| first.commit_blocking(None, &none));
    assert!(fenced.is_err(), "a fenced producer cannot commit");

    // The failed commit replaced the producer: the next transaction goes through.
    first.send(&topics.deliveries, b"k", b"kept").unwrap();
    tokio::task::block_in_place(|| first.commit_blocking(None, &none)).expect("the renewed producer commits");

    let seen = read_until(kafka, "txn-reader", &topics.deliveries, b"kept").await;
    assert!(!seen.iter().any(|v| v == b"lost"), "the fenced transaction's record is never read committed");
}
