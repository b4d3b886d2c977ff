//! A producer whose delivery reports are taken by a thread of its own, waiting in 1 s slices.
//!
//! rust-rdkafka's `FutureProducer` (a `ThreadedProducer` inside) has such a thread, but it waits
//! in 100 ms slices, and `BaseProducer::poll` hands librdkafka the time left in whole
//! milliseconds: the last fraction of a millisecond of every slice goes in zero-timeout polls, a
//! spin of up to 1 ms per slice, whether or not anything is produced. Measured on an idle
//! `hookline all` (one trigger a second): 9 ms of CPU per second for each of its six producer
//! threads, 54 of the process's 80 ms/s. A delivery report still wakes the thread at once
//! (librdkafka signals its queue); the slice only sets how often that spin comes and how soon
//! the thread of a dropped producer ends.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError as RdKafkaError, KafkaResult};
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, Message};
use tokio::sync::oneshot;

/// How long one wait of the reporting thread lasts (see the module doc).
const POLL_SLICE: Duration = Duration::from_secs(1);

/// A cheap-to-clone producer; its thread ends within [`POLL_SLICE`] of the last clone's drop,
/// and drops (purges and destroys) the librdkafka client there.
pub struct PolledProducer<C: ProducerContext + 'static> {
    shared: Arc<Shared<C>>,
}

struct Shared<C: ProducerContext + 'static> {
    base: Arc<BaseProducer<C>>,
    stop: Arc<AtomicBool>,
}

impl<C: ProducerContext + 'static> Drop for Shared<C> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl<C: ProducerContext + 'static> Clone for PolledProducer<C> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<C: ProducerContext + 'static> Deref for PolledProducer<C> {
    type Target = BaseProducer<C>;
    fn deref(&self) -> &BaseProducer<C> {
        &self.shared.base
    }
}

impl<C: ProducerContext + 'static> PolledProducer<C> {
    pub fn create(cfg: &ClientConfig, context: C) -> KafkaResult<Self> {
        let base: Arc<BaseProducer<C>> = Arc::new(cfg.create_with_context(context)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_base, thread_stop) = (base.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kafka-reports".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    thread_base.poll(POLL_SLICE);
                }
            })
            .map_err(|e| RdKafkaError::ClientCreation(format!("cannot start the delivery-report thread: {e}")))?;
        Ok(Self { shared: Arc::new(Shared { base, stop }) })
    }
}

/// Where a record landed (partition, offset), or why it did not.
pub type Report = Result<(i32, i64), RdKafkaError>;

/// Each record's report goes to the one-shot channel sent with it.
pub struct AwaitedReports;

impl ClientContext for AwaitedReports {}

impl ProducerContext for AwaitedReports {
    type DeliveryOpaque = Box<oneshot::Sender<Report>>;

    fn delivery(&self, result: &DeliveryResult<'_>, to: Self::DeliveryOpaque) {
        let report = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        // The sender may have given up waiting (a dropped future): nothing to tell then.
        let _ = to.send(report);
    }
}

/// Reports are not awaited one by one: a transaction's commit fails if any record failed.
pub struct UnawaitedReports;

impl ClientContext for UnawaitedReports {}

impl ProducerContext for UnawaitedReports {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread takes its first wait and sees the stop flag once the last clone is gone.
    #[test]
    fn the_reporting_thread_ends_after_the_last_clone_is_dropped() {
        let mut cfg = ClientConfig::new();
        // Nothing listens there: no broker is needed to create (and drop) a producer.
        cfg.set("bootstrap.servers", "127.0.0.1:1");
        let p = PolledProducer::create(&cfg, UnawaitedReports).expect("producer");
        let weak = Arc::downgrade(&p.shared.base);
        let q = p.clone();
        drop(p);
        assert!(weak.upgrade().is_some(), "a clone still holds it");
        drop(q);
        let deadline = std::time::Instant::now() + POLL_SLICE * 5;
        while weak.upgrade().is_some() {
            assert!(std::time::Instant::now() < deadline, "the thread still holds the producer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
