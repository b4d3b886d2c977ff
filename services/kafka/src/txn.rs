//! Transactional consume-transform-produce: outputs and the consumer's offsets are committed
//! in one Kafka transaction, so each state change is on the log exactly once even when a
//! process dies between producing and committing.
//!
//! The transaction calls of librdkafka block; they run under `block_in_place`, so the caller
//! must be on the multi-threaded runtime. Producing while a commit is running is not allowed:
//! one task owns the [`TxnProducer`] and interleaves sends and commits.

use std::time::Duration;

use hookline_config::KafkaOptions;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::producer::{BaseRecord, Producer};

use crate::KafkaError;
use crate::polled::{PolledProducer, UnawaitedReports};

/// Longest a transaction call may block.
pub const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// A commit taking this long is logged (it is also in the commit-duration histogram).
const SLOW_COMMIT: Duration = Duration::from_secs(2);

/// The transactional id of `role`: stable when `kafka.instance_id` is set, random otherwise.
pub fn transactional_id(kafka: &KafkaOptions, role: &str) -> String {
    if kafka.instance_id.is_empty() {
        format!("{}{role}-{}", kafka.topic_prefix, uuid::Uuid::now_v7().simple())
    } else {
        format!("{}{role}-{}", kafka.topic_prefix, kafka.instance_id)
    }
}

pub struct TxnProducer {
    inner: PolledProducer<UnawaitedReports>,
    open: bool,
    /// Why a record could not join the open transaction: such a transaction must never commit
    /// (its offsets would move past the lost record), so the next commit aborts it and returns
    /// this error instead.
    poisoned: Option<KafkaError>,
    /// The role committing, as the metrics' `op` label.
    role: &'static str,
    /// How to build the producer again after a fatal error (see [`TxnProducer::renew_if_fatal`]).
    cfg: rdkafka::ClientConfig,
    brokers: String,
    /// The current producer, for the queue gauge (which outlives a renewal).
    current: std::sync::Arc<std::sync::Mutex<PolledProducer<UnawaitedReports>>>,
}

/// A transactional producer from `cfg`, its transactions initialised (blocking).
fn create(cfg: &rdkafka::ClientConfig, brokers: &str) -> Result<PolledProducer<UnawaitedReports>, KafkaError> {
    let inner = PolledProducer::create(cfg, UnawaitedReports)
        .map_err(|source| KafkaError::Client { brokers: brokers.to_string(), source })?;
    inner.init_transactions(TXN_TIMEOUT).map_err(|source| KafkaError::Transaction { source })?;
    Ok(inner)
}

impl TxnProducer {
    /// A producer with its own transactional id for `role` (the metrics label);
    /// `init_transactions` fences older instances with the same id.
    pub fn new(kafka: &KafkaOptions, role: &'static str, transactional_id: &str) -> Result<Self, KafkaError> {
        let mut cfg = crate::producer::base_config(kafka, transactional_id);
        // Transactions last one commit interval (tens of ms); a short timeout bounds how long a
        // crashed instance's open transaction can hold back read_committed readers.
        cfg.set("transactional.id", transactional_id).set("transaction.timeout.ms", "10000");
        // A transaction begun right after a commit meets the coordinator still writing the
        // previous one's markers (CONCURRENT_TRANSACTIONS): librdkafka retries AddOffsetsToTxn
        // after `retry.backoff.ms`, 100 ms by default, which made every commit cycle ~100 ms.
        // Markers take a few ms on a healthy cluster; back off from 5 ms (exponentially, to
        // 250 ms when the cluster is really unwell).
        cfg.set("retry.backoff.ms", "5").set("retry.backoff.max.ms", "250");
        let inner = tokio::task::block_in_place(|| create(&cfg, &kafka.brokers))?;
        let current = std::sync::Arc::new(std::sync::Mutex::new(inner.clone()));
        Ok(Self { inner, open: false, poisoned: None, role, cfg, brokers: kafka.brokers.clone(), current })
    }

    /// Two producers for `role` (transactional ids `<id>-a`, `<id>-b`) to take turns: a
    /// transaction begun on the producer that just committed meets the coordinator still
    /// finishing that commit (CONCURRENT_TRANSACTIONS, retried after a backoff); the other
    /// producer's last transaction is a whole turn older, and one can commit on the blocking
    /// pool while the other takes the next records.
    pub fn pair(kafka: &KafkaOptions, role: &'static str) -> Result<[Self; 2], KafkaError> {
        let tid = transactional_id(kafka, role);
        Ok([Self::new(kafka, role, &format!("{tid}-a"))?, Self::new(kafka, role, &format!("{tid}-b"))?])
    }

    /// After a fatal error — the coordinator fenced this producer, e.g. because a stall made
    /// its transaction outlive `transaction.timeout.ms` — builds a new producer with the same
    /// transactional id (blocking), so the role goes on instead of failing; the caller rewinds
    /// to its committed offsets as after any failed commit. A failure to build one is logged
    /// and tried again at the next use.
    fn renew_if_fatal(&mut self) {
        let Some((code, reason)) = self.inner.client().fatal_error() else { return };
        tracing::warn!(role = self.role, %code, reason, "kafka producer failed fatally; starting a new one with the same transactional id");
        match create(&self.cfg, &self.brokers) {
            Ok(inner) => {
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = inner.clone();
                self.inner = inner;
                self.open = false;
            }
            Err(e) => {
                tracing::warn!(role = self.role, error = %e, "kafka producer not renewed yet; retrying at the next use")
            }
        }
    }

    /// Messages queued or in flight in this producer, as a probe for a metrics gauge.
    pub fn queue_probe(&self) -> impl Fn() -> i64 + Send + Sync + 'static {
        use rdkafka::producer::Producer;
        let current = self.current.clone();
        move || i64::from(current.lock().unwrap_or_else(|p| p.into_inner()).in_flight_count())
    }

    /// Opens a transaction unless one is open, first replacing a producer that failed fatally
    /// (blocking when it does).
    fn begin(&mut self) -> Result<(), KafkaError> {
        if !self.open {
            self.renew_if_fatal();
            self.inner.begin_transaction().map_err(|source| KafkaError::Transaction { source })?;
            self.open = true;
        }
        Ok(())
    }

    fn ensure_open(&mut self) -> Result<(), KafkaError> {
        if !self.open && self.inner.client().fatal_error().is_some() {
            return tokio::task::block_in_place(|| self.begin());
        }
        self.begin()
    }

    /// Enqueues a record in the current transaction (opening one if needed). Does not wait.
    ///
    /// A record the transaction cannot take (too large, a producer fenced after a broker stall)
    /// poisons it: this and later sends return [`KafkaError::Poisoned`], and the next commit
    /// aborts the transaction and returns the record's error, so the caller handles it like
    /// any failed commit (rewind and redo).
    pub fn send(&mut self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), KafkaError> {
        if self.poisoned.is_none()
            && let Err(e) = self.enqueue(topic, key, value)
        {
            tracing::warn!(role = self.role, topic, error = %e, "a record could not join the open transaction; it will be aborted");
            self.poisoned = Some(e);
        }
        if self.poisoned.is_some() { Err(KafkaError::Poisoned) } else { Ok(()) }
    }

    fn enqueue(&mut self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), KafkaError> {
        self.ensure_open()?;
        let mut record = BaseRecord::to(topic).key(key).payload(value);
        loop {
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    // Local queue full: let the background thread drain, then retry.
                    record = r;
                    self.inner.poll(Duration::from_millis(10));
                }
                Err((source, _)) => return Err(KafkaError::Produce { topic: topic.to_string(), source }),
            }
        }
    }

    /// Whether a transaction is open (records or offsets pending) or a failed send is still to
    /// be reported by the next commit.
    pub fn is_open(&self) -> bool {
        self.open || self.poisoned.is_some()
    }

    /// Commits the open transaction with `offsets` (next offsets to read) for `consumer`'s
    /// group. With no open transaction and no offsets, does nothing.
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &StreamConsumer<C>,
        offsets: &TopicPartitionList,
    ) -> Result<(), KafkaError> {
        // Nothing to do (an idle tick): no need to leave the runtime for it.
        if offsets.count() == 0 && !self.is_open() {
            return Ok(());
        }
        let meta = if offsets.count() > 0 { consumer.group_metadata() } else { None };
        tokio::task::block_in_place(|| self.commit_blocking(meta.as_ref(), offsets))
    }

    /// Commits the open transaction with `offsets` for the group of `meta`, blocking: for a
    /// producer handed to the blocking pool while the caller goes on with another producer
    /// (see the dispatcher's double-buffered commits). With no open transaction and no
    /// offsets, does nothing.
    pub fn commit_blocking(
        &mut self,
        meta: Option<&rdkafka::consumer::ConsumerGroupMetadata>,
        offsets: &TopicPartitionList,
    ) -> Result<(), KafkaError> {
        if let Some(e) = self.poisoned.take() {
            self.abort_blocking();
            return Err(e);
        }
        if offsets.count() == 0 && !self.open {
            return Ok(());
        }
        if offsets.count() > 0 && meta.is_none() {
            // Aborted: the consumer left its group, so these records are someone else's work.
            self.abort_blocking();
            return Err(KafkaError::NoGroupMetadata);
        }
        self.begin()?;
        self.open = false;
        let started = std::time::Instant::now();
        let result = (|| {
            if let Some(meta) = meta.filter(|_| offsets.count() > 0) {
                self.inner.send_offsets_to_transaction(offsets, meta, TXN_TIMEOUT)?;
            }
            self.drain(started + TXN_TIMEOUT);
            self.inner.commit_transaction(TXN_TIMEOUT)
        })();
        self.observe(result.is_ok(), started);
        if let Err(source) = result {
            let _ = self.inner.abort_transaction(TXN_TIMEOUT);
            self.renew_if_fatal();
            return Err(KafkaError::Transaction { source });
        }
        Ok(())
    }

    /// Waits (blocking) until every record of the transaction is acknowledged, or `deadline`.
    ///
    /// rust-rdkafka's `commit_transaction` flushes first, and its flush polls the producer's
    /// queue in 100 ms slices while the producer's own thread takes the delivery reports:
    /// every commit with a record still in flight waited ~100 ms (measured: the router's
    /// commits took 67–100 ms on average at 1,000 triggers/s). Here the wait is in 1 ms steps,
    /// each nudging librdkafka to send at once (a zero-timeout flush skips `linger.ms`), so
    /// the flush inside `commit_transaction` finds nothing left to wait for.
    fn drain(&self, deadline: std::time::Instant) {
        while self.inner.in_flight_count() > 0 && std::time::Instant::now() < deadline {
            let _ = self.inner.flush(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn observe(&self, ok: bool, started: std::time::Instant) {
        let m = hookline_telemetry::metrics();
        let result = if ok { "ok" } else { "error" };
        let took = started.elapsed();
        hookline_telemetry::observe(&m.kafka_txn_commit_duration, &m.kafka_txn_commits, self.role, result, took);
        // An open transaction holds back every read_committed reader of its partitions: a slow
        // commit is a stall downstream, worth a line in the log.
        if took >= SLOW_COMMIT {
            tracing::warn!(role = self.role, result, ms = took.as_millis() as u64, "a transaction commit was slow");
        }
    }

    /// Aborts the open transaction, if any, and forgets a failed send.
    pub fn abort(&mut self) -> Result<(), KafkaError> {
        self.poisoned = None;
        if self.open {
            self.open = false;
            if self.inner.client().fatal_error().is_some() {
                // Its transaction died with it; the next use builds a new producer.
                return Ok(());
            }
            tokio::task::block_in_place(|| self.inner.abort_transaction(TXN_TIMEOUT))
                .map_err(|source| KafkaError::Transaction { source })?;
        }
        Ok(())
    }

    /// Aborts the open transaction, if any, blocking; a transaction that cannot be aborted
    /// expires by itself (`transaction.timeout.ms`), and a producer that failed fatally is
    /// replaced.
    fn abort_blocking(&mut self) {
        self.poisoned = None;
        if self.open {
            self.open = false;
            if let Err(e) = self.inner.abort_transaction(TXN_TIMEOUT) {
                tracing::debug!(role = self.role, error = %e, "aborting the transaction failed; it expires by itself");
            }
            self.renew_if_fatal();
        }
    }
}
