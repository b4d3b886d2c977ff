use rdkafka::error::KafkaError as RdError;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka client for {brokers}: {source}")]
    Client {
        brokers: String,
        #[source]
        source: RdError,
    },
    #[error("creating topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("producing to {topic}: {source}")]
    Produce {
        topic: String,
        #[source]
        source: RdError,
    },
    #[error("fetching metadata from {brokers}: {source}")]
    Metadata {
        brokers: String,
        #[source]
        source: RdError,
    },
    #[error("kafka transaction: {source}")]
    Transaction {
        #[source]
        source: RdError,
    },
    /// A record (this one or an earlier one) could not join the open transaction; it will be
    /// aborted at the next commit, which returns that record's error.
    #[error("the open transaction lost a record; it will be aborted")]
    Poisoned,
    #[error("the consumer has no group metadata (not in a group yet)")]
    NoGroupMetadata,
    /// A task running Kafka calls off the async executor failed (panicked or was cancelled).
    #[error("a Kafka task failed: {0}")]
    Internal(String),
    #[error("encoding record: {0}")]
    Codec(#[from] hookline_schemas::CodecError),
}
