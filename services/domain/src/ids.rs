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

/// The id of the delivery of `trigger_id` (accepted at `trigger_ms`) to `endpoint_id`: the same
/// inputs always give the same id. It is a UUIDv7 whose time is the trigger's, so ids sort by
/// time and the read side can find a delivery's time bucket from its id alone.
pub fn delivery_id(trigger_id: &str, endpoint_id: &str, trigger_ms: i64) -> String {
    derive_timed(trigger_ms, &["delivery", trigger_id, endpoint_id])
}

/// The millisecond timestamp inside a time-ordered id (UUIDv7), if it is one.
pub fn id_time_ms(id: &str) -> Option<i64> {
    let u = Uuid::parse_str(id).ok()?;
    if u.get_version_num() != 7 {
        return None;
    }
    let b = u.as_bytes();
    Some(i64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]))
}

/// A UUIDv7 with the given time and the rest derived from `parts` (deterministic).
fn derive_timed(ms: i64, parts: &[&str]) -> String {
    let hashed = Uuid::new_v5(&NAMESPACE, parts.join("\u{1f}").as_bytes());
    let mut b = *hashed.as_bytes();
    let ms = (ms.max(0) as u64).to_be_bytes();
    b[..6].copy_from_slice(&ms[2..]);
    b[6] = (b[6] & 0x0F) | 0x70; // version 7
    b[8] = (b[8] & 0x3F) | 0x80; // RFC 4122 variant
    Uuid::from_bytes(b).to_string()
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

/// The delivery id of a replay of a DLQ entry (time-ordered at the replay).
pub fn replay_delivery_id(delivery_id: &str, replay_event_id: &str, replay_ms: i64) -> String {
    derive_timed(replay_ms, &["replay", delivery_id, replay_event_id])
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
        assert_eq!(delivery_id("t1", "e1", 5), delivery_id("t1", "e1", 5));
        assert_ne!(delivery_id("t1", "e1", 5), delivery_id("t1", "e2", 5));
        // Separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(delivery_id("ab", "c", 5), delivery_id("a", "bc", 5));
        assert!(message_id(&delivery_id("t", "e", 5)).starts_with("msg_"));
        // Time-ordered, and the time can be read back.
        let (a, b) = (delivery_id("t9", "e", 1_700_000_000_000), delivery_id("t1", "e", 1_700_000_000_001));
        assert!(a < b);
        assert_eq!(id_time_ms(&a), Some(1_700_000_000_000));
        assert_eq!(Uuid::parse_str(&a).unwrap().get_version_num(), 7);
    }

    #[test]
    fn event_ids_are_time_ordered() {
        let a = new_event_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_event_id();
        assert!(a < b);
    }
}
