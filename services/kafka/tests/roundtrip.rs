//! Through the real broker: topics are created idempotently, an event encoded with the codec is
//! produced with acks=all and read back by a consumer group.

use std::time::Duration;

use hookline_kafka::admin::{TopicOutcome, create_topics, partition_count, topic_specs};
use hookline_kafka::producer::EventProducer;
use hookline_kafka::rdkafka::Message;
use hookline_kafka::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use hookline_kafka::{Topics, consumer};
use hookline_schemas::{AnyEvent, Codec, DeliveryRequested, Envelope, Event};
use hookline_testkit::TestEnv;

#[tokio::test]
async fn topics_are_created_once_and_events_round_trip_through_a_consumer_group() {
    let env = TestEnv::new();
    let kafka = &env.config.kafka;
    let specs = topic_specs(kafka, &env.config.scheduler);
    let first = create_topics(kafka, &specs).await.unwrap();
    assert!(first.iter().all(|o| matches!(o, TopicOutcome::Created(_))), "{first:?}");
    let second = create_topics(kafka, &specs).await.unwrap();
    assert!(second.iter().all(|o| matches!(o, TopicOutcome::Existed(_))), "{second:?}");

    let topics = Topics::from_options(kafka);
    let n = partition_count(kafka, &topics.deliveries, Duration::from_secs(5)).unwrap();
    assert_eq!(n, Some(kafka.partitions as usize));

    let codec = Codec::new().unwrap();
    let event = DeliveryRequested {
        envelope: Envelope {
            event_id: hookline_domain_free_id(),
            record_type: DeliveryRequested::NAME.into(),
            occurred_at: 1_700_000_000_000,
            tenant_id: "acme".into(),
            endpoint_id: Some("ep-1".into()),
            ..Default::default()
        },
        event_type: "invoice.paid".into(),
        payload: br#"{"amount": 42}"#.to_vec(),
        content_type: "application/json".into(),
        message_id: "msg_1".into(),
        reason: "initial".into(),
        trigger_occurred_at: 1_700_000_000_000,
        not_before: None,
    };
    let bytes = codec.encode(&event).unwrap();
    let producer = EventProducer::new(kafka, "test").unwrap();
    let (partition, offset) = producer.send(&topics.deliveries, b"ep-1", &bytes).await.unwrap();
    assert!(offset >= 0);

    let consumer: StreamConsumer =
        consumer::base_config(kafka, &format!("{}group", kafka.topic_prefix), "test").create().unwrap();
    consumer.subscribe(&[&topics.deliveries]).unwrap();
    let msg =
        tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.expect("a record within 30 s").unwrap();
    assert_eq!(msg.partition(), partition);
    assert_eq!(msg.offset(), offset);
    assert_eq!(msg.key(), Some(&b"ep-1"[..]));
    let decoded = codec.decode(msg.payload().unwrap()).unwrap();
    assert_eq!(decoded, AnyEvent::DeliveryRequested(event));
    consumer.store_offset_from_message(&msg).unwrap();
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
}

fn hookline_domain_free_id() -> String {
    format!("evt-{}", std::process::id())
}
