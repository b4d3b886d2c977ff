//! Identifiers. Event ids are UUIDv7 (time-ordered); ids that must be stable across
//! re-processing are UUIDv5 derived from the ids they depend on, so a crash and replay of the
//! same input yields the same id (and therefore no second delivery).

use uuid::Uuid;

/// Namespace of every derived Hookline id.
const NAMESPACE: Uuid = Uuid::from_u128(0x6a1c_5f0e_8d2b_4c1a_9e7d_3b5f_0c2e_4a81);

/// A new time-ordered id (UUIDv7) as text.
pub fn new_event_id() -> String {
    Uuid::now_v7().to_string()
}

/// The id of the delivery of `trigger_id` to `endpoint_id`: the same inputs always give the same id.
pub fn delivery_id(trigger_id: &str, endpoint_id: &str) -> String {
    derive(&["delivery", trigger_id, endpoint_id])
}

/// The trigger id of a record a producer wrote straight to Kafka without one: stable per
/// (topic, partition, offset), so re-reading the record yields the same trigger.
pub fn trigger_id_from_position(topic: &str, partition: i32, offset: i64) -> String {
    derive(&["trigger", topic, &partition.to_string(), &offset.to_string()])
}

/// The `webhook-id` of a delivery: `msg_` + the delivery id without dashes. Stable across
/// retries and replays.
pub fn message_id(delivery_id: &str) -> String {
    format!("msg_{}", delivery_id.replace('-', ""))
}

/// The delivery id of the n-th replay of a DLQ entry.
pub fn replay_delivery_id(delivery_id: &str, dlq_event_id: &str) -> String {
    derive(&["replay", delivery_id, dlq_event_id])
}

fn derive(parts: &[&str]) -> String {
    let joined = parts.join("\u{1f}");
    Uuid::new_v5(&NAMESPACE, joined.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(delivery_id("t1", "e1"), delivery_id("t1", "e1"));
        assert_ne!(delivery_id("t1", "e1"), delivery_id("t1", "e2"));
        // Separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(delivery_id("ab", "c"), delivery_id("a", "bc"));
        assert!(message_id(&delivery_id("t", "e")).starts_with("msg_"));
    }

    #[test]
    fn event_ids_are_time_ordered() {
        let a = new_event_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_event_id();
        assert!(a < b);
    }
}
