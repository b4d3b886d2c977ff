use hookline_config::KafkaOptions;

/// Every topic Hookline uses, named `<prefix><name>`.
#[derive(Debug, Clone)]
pub struct Topics {
    /// TriggerRequested, from the API and from producers directly. Key: tenant (or any).
    pub triggers: String,
    /// DeliveryRequested, keyed by endpoint id: the dispatchers' input.
    pub deliveries: String,
    /// Outcome events (AttemptSucceeded, AttemptFailed, MovedToDLQ, ...), keyed by endpoint id.
    pub events: String,
    /// Compacted endpoint configuration (EndpointUpserted / EndpointDeleted), keyed by endpoint id.
    pub endpoints: String,
    /// Records that could not be decoded or applied (RecordQuarantined).
    pub quarantine: String,
    prefix: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        let t = |n: &str| format!("{prefix}{n}");
        Self {
            triggers: t("triggers"),
            deliveries: t("deliveries"),
            events: t("events"),
            endpoints: t("endpoints"),
            quarantine: t("quarantine"),
            prefix: prefix.to_string(),
        }
    }

    pub fn from_options(opts: &KafkaOptions) -> Self {
        Self::new(&opts.topic_prefix)
    }

    /// The retry tier topic holding records delayed by `delay_ms`.
    pub fn retry_tier(&self, delay_ms: u64) -> String {
        format!("{}retry.{}ms", self.prefix, delay_ms)
    }
}
