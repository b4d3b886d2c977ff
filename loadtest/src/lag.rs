//! Consumer lag over time: the committed offsets of a Hookline consumer group against the high
//! watermarks of its input topic, summed over partitions, sampled once a second.
//!
//! The sampler creates a consumer with the group's id but never subscribes, so it only reads
//! the group's offsets (OffsetFetch) and never joins or disturbs the group. Transaction commit
//! markers occupy offsets too, so a fully caught-up transactional group can show a lag of about
//! one per partition.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hookline_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use hookline_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

const TIMEOUT: Duration = Duration::from_secs(2);

/// Lag of one group over the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LagReport {
    pub group: String,
    pub topic: String,
    pub max: i64,
    pub last: i64,
    /// (seconds since start, lag) per sample.
    pub samples: Vec<(f64, i64)>,
}

struct Probe {
    consumer: BaseConsumer,
    report: LagReport,
}

impl Probe {
    fn new(brokers: &str, group: String, topic: String) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", &group)
            .set("client.id", "hookline-loadtest-lag")
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self { consumer, report: LagReport { group, topic, ..Default::default() } })
    }

    fn lag(&self) -> anyhow::Result<i64> {
        let topic = &self.report.topic;
        let md = self.consumer.fetch_metadata(Some(topic), TIMEOUT)?;
        let partitions: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition(topic, p);
        }
        let committed = self.consumer.committed_offsets(tpl, TIMEOUT)?;
        // One ListOffsets request for every partition's end (-1 = latest) rather than a
        // watermark query per partition, which loaded the broker the run measures.
        let mut latest = TopicPartitionList::new();
        for &p in &partitions {
            latest.add_partition_offset(topic, p, Offset::End)?;
        }
        let ends = self.consumer.offsets_for_times(latest, TIMEOUT)?;
        let mut total = 0;
        for &p in &partitions {
            let high = match ends.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => continue,
            };
            // Topics are created per run, so an uncommitted group is at offset 0.
            let at = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            };
            total += (high - at).max(0);
        }
        Ok(total)
    }
}

/// Samples each group's lag once a second on its own thread.
pub struct LagSampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<LagReport>>>,
}

impl LagSampler {
    /// `groups`: (group id, input topic).
    pub fn start(brokers: &str, groups: Vec<(String, String)>) -> anyhow::Result<Self> {
        let mut probes =
            groups.into_iter().map(|(g, t)| Probe::new(brokers, g, t)).collect::<anyhow::Result<Vec<_>>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let tick = Instant::now();
                let t = (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0;
                for p in &mut probes {
                    if let Ok(lag) = p.lag() {
                        p.report.samples.push((t, lag));
                        p.report.max = p.report.max.max(lag);
                        p.report.last = lag;
                    }
                }
                let spent = tick.elapsed();
                let mut left = Duration::from_secs(1).saturating_sub(spent);
                while !left.is_zero() && !flag.load(Ordering::Relaxed) {
                    let step = left.min(Duration::from_millis(100));
                    std::thread::sleep(step);
                    left -= step;
                }
            }
            probes.into_iter().map(|p| p.report).collect()
        });
        Ok(Self { stop, handle: Some(handle) })
    }

    pub fn finish(mut self) -> Vec<LagReport> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl Drop for LagSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
