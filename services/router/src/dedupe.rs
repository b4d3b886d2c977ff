//! The router's second line of idempotency: a trigger whose (tenant, idempotency key) was
//! already fanned out inside the window creates nothing, even when Redis lost the API's claim
//! (flush, failover) or the trigger was written straight to Kafka.
//!
//! Triggers are keyed by tenant, so one partition holds every trigger of a tenant and the
//! router that owns the partition sees them all, in order. Memory is rebuilt from the log:
//! the first record seen of a partition, a rewind, or a gap in offsets after the partition was
//! taken away by a rebalance (it may have been elsewhere for a while) makes the router read the
//! partition back up to that record before deciding. A gap while the partition stayed here is
//! transaction markers and aborted records (a transactional producer of triggers leaves one
//! marker per transaction): nothing to read back.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use hookline_config::KafkaOptions;
use hookline_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use hookline_kafka::rdkafka::{Message, Offset, TopicPartitionList};
use hookline_schemas::{AnyEvent, Codec};

/// What a keyed trigger was judged.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    First,
    /// The key was fanned out before by this trigger (not this record).
    Duplicate {
        first_trigger_id: String,
    },
}

#[derive(Debug, Clone)]
struct Seen {
    trigger_id: String,
    partition: i32,
    offset: i64,
    at_ms: i64,
}

/// Keys seen per (tenant, key), bounded in time (`window_ms`) and in number (`max_keys`).
pub struct Dedupe {
    window_ms: i64,
    max_keys: usize,
    seen: HashMap<(String, String), Seen>,
    /// Insertion order, for pruning: (at_ms, tenant, key).
    order: VecDeque<(i64, String, String)>,
    /// One past the last offset looked at, per partition.
    next: HashMap<i32, i64>,
    /// Partitions revoked by a rebalance since their last record here.
    interrupted: std::collections::HashSet<i32>,
}

impl Dedupe {
    pub fn new(window_ms: u64, max_keys: usize) -> Self {
        Self {
            window_ms: window_ms as i64,
            max_keys,
            seen: HashMap::new(),
            order: VecDeque::new(),
            next: HashMap::new(),
            interrupted: Default::default(),
        }
    }

    /// `partition` was revoked by a rebalance: records may be written and judged elsewhere
    /// before it comes back.
    pub fn interrupt(&mut self, partition: i32) {
        self.interrupted.insert(partition);
    }

    /// Does `partition` need reading back before `offset` can be judged?
    pub fn needs_restore(&self, partition: i32, offset: i64) -> Option<RestoreFrom> {
        match self.next.get(&partition) {
            Some(&n) if n == offset => None,
            // Held throughout: the gap is markers and aborted records.
            Some(&n) if n < offset && !self.interrupted.contains(&partition) => None,
            Some(&n) if n < offset => Some(RestoreFrom::Offset(n)),
            // First sight, or the partition went back (rewind): read the whole window.
            _ => Some(RestoreFrom::WindowStart),
        }
    }

    /// Judges a keyed trigger (and remembers it). Unkeyed triggers only move the position.
    pub fn check(
        &mut self,
        partition: i32,
        offset: i64,
        tenant: &str,
        key: Option<&str>,
        trigger_id: &str,
        at_ms: i64,
    ) -> Verdict {
        self.next.insert(partition, offset + 1);
        self.interrupted.remove(&partition);
        let Some(key) = key else { return Verdict::First };
        self.prune(at_ms);
        let k = (tenant.to_string(), key.to_string());
        if let Some(s) = self.seen.get(&k)
            && at_ms - s.at_ms < self.window_ms
            && !(s.partition == partition && s.offset == offset)
        {
            return Verdict::Duplicate { first_trigger_id: s.trigger_id.clone() };
        }
        if !self.seen.contains_key(&k) {
            self.order.push_back((at_ms, k.0.clone(), k.1.clone()));
        }
        self.seen.entry(k).or_insert(Seen { trigger_id: trigger_id.to_string(), partition, offset, at_ms });
        Verdict::First
    }

    fn prune(&mut self, now_ms: i64) {
        while let Some((at, _, _)) = self.order.front() {
            if now_ms - at < self.window_ms && self.seen.len() <= self.max_keys {
                break;
            }
            let (_, t, k) = self.order.pop_front().expect("front exists");
            self.seen.remove(&(t, k));
        }
    }

    /// Reads `topic`/`partition` back from `from` up to (not including) `until`, remembering every
    /// keyed trigger. Blocking: run on the blocking pool.
    pub fn restore(
        &mut self,
        kafka: &KafkaOptions,
        codec: &Codec,
        topic: &str,
        partition: i32,
        from: RestoreFrom,
        until: i64,
    ) -> Result<usize, String> {
        let consumer: BaseConsumer = hookline_kafka::client_config(kafka)
            .set("group.id", "hookline-router-restore")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| e.to_string())?;
        let timeout = Duration::from_secs(10);
        let start = match from {
            RestoreFrom::Offset(o) => o,
            RestoreFrom::WindowStart => {
                let since = hookline_domain::time::now_ms() - self.window_ms;
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, partition, Offset::Offset(since)).map_err(|e| e.to_string())?;
                let found = consumer.offsets_for_times(tpl, timeout).map_err(|e| e.to_string())?;
                match found.find_partition(topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    // No record that recent: nothing to read.
                    _ => until,
                }
            }
        };
        if start >= until {
            self.next.insert(partition, until);
            return Ok(0);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start)).map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut remembered = 0;
        let mut position = start;
        while position < until {
            if std::time::Instant::now() > deadline {
                return Err(format!("reading {topic}/{partition} back from {start} to {until} took over 120 s"));
            }
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                // Transaction markers and aborted records take offsets but are never returned:
                // the fetch position says when the range is done.
                let pos = consumer.position().ok().and_then(|tpl| {
                    tpl.find_partition(topic, partition).and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                });
                if pos.is_some_and(|p| p >= until) {
                    break;
                }
                continue;
            };
            let m = m.map_err(|e| e.to_string())?;
            position = m.offset() + 1;
            if m.offset() >= until {
                break;
            }
            if let Some(Ok(AnyEvent::TriggerRequested(t))) = m.payload().map(|b| codec.decode(b)) {
                let id = t.envelope.trigger_id.clone().unwrap_or_default();
                if t.idempotency_key.is_some() {
                    remembered += 1;
                }
                self.check(
                    partition,
                    m.offset(),
                    &t.envelope.tenant_id,
                    t.idempotency_key.as_deref(),
                    &id,
                    t.envelope.occurred_at,
                );
            }
        }
        self.next.insert(partition, until);
        Ok(remembered)
    }
}

/// Where reading back starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreFrom {
    Offset(i64),
    WindowStart,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_inside_the_window_is_a_duplicate() {
        let mut d = Dedupe::new(1_000, 100);
        assert_eq!(d.check(0, 1, "acme", Some("k"), "trg_1", 10), Verdict::First);
        assert_eq!(
            d.check(0, 2, "acme", Some("k"), "trg_2", 20),
            Verdict::Duplicate { first_trigger_id: "trg_1".into() }
        );
        assert_eq!(d.check(0, 3, "globex", Some("k"), "trg_3", 20), Verdict::First, "per tenant");
        assert_eq!(d.check(0, 4, "acme", None, "trg_4", 20), Verdict::First, "no key, no dedupe");
        // Re-reading the first record itself (after a rewind) is not a duplicate...
        assert_eq!(d.check(0, 1, "acme", Some("k"), "trg_1", 10), Verdict::First);
        // ...but the same trigger written twice is.
        assert!(matches!(d.check(0, 6, "acme", Some("k"), "trg_1", 30), Verdict::Duplicate { .. }));
        // After the window the key is free again.
        assert_eq!(d.check(0, 5, "acme", Some("k"), "trg_5", 1_011), Verdict::First);
    }

    #[test]
    fn memory_is_bounded_by_count() {
        let mut d = Dedupe::new(1_000_000, 10);
        for i in 0..100 {
            d.check(0, i, "acme", Some(&format!("k{i}")), &format!("trg_{i}"), i);
        }
        assert!(d.seen.len() <= 11, "{}", d.seen.len());
    }

    #[test]
    fn gaps_and_first_sight_ask_for_a_restore() {
        let mut d = Dedupe::new(1_000, 10);
        assert_eq!(d.needs_restore(3, 10), Some(RestoreFrom::WindowStart));
        d.check(3, 10, "acme", None, "t", 0);
        assert_eq!(d.needs_restore(3, 11), None);
        assert_eq!(d.needs_restore(3, 15), None, "held throughout: the gap is transaction markers");
        assert_eq!(d.needs_restore(3, 5), Some(RestoreFrom::WindowStart), "a rewind");
        d.interrupt(3);
        assert_eq!(d.needs_restore(3, 11), None, "back with nothing written meanwhile");
        assert_eq!(d.needs_restore(3, 15), Some(RestoreFrom::Offset(11)), "written to while elsewhere");
        d.check(3, 15, "acme", None, "t", 0);
        assert_eq!(d.needs_restore(3, 18), None, "held again since");
    }
}
