//! DLQ commands: each turns a MovedToDLQ entry into the records to append.
//!
//! Replay appends DLQReplayed and a new DeliveryRequested (reason `replay`) under a new
//! delivery id, keeping the message's `webhook-id` so receivers can deduplicate. Discard
//! appends DLQDiscarded. Whether the entry is still in the DLQ is the caller's check (the read
//! side knows); these functions only build records.

use hookline_schemas::{DLQDiscarded, DLQReplayed, DeliveryRequested, Envelope, Event, MovedToDLQ, reason};

use crate::ids;

fn envelope<E: Event>(m: &MovedToDLQ, now: i64) -> Envelope {
    Envelope {
        event_id: ids::new_event_id(),
        record_type: E::NAME.into(),
        occurred_at: now,
        causation_id: Some(m.envelope.event_id.clone()),
        ..m.envelope.clone()
    }
}

/// The records of replaying `m`.
pub fn replay(m: &MovedToDLQ, actor: &str, now: i64) -> (DLQReplayed, DeliveryRequested) {
    let mut replayed =
        DLQReplayed { envelope: envelope::<DLQReplayed>(m, now), new_delivery_id: String::new(), actor: actor.into() };
    let old = m.envelope.delivery_id.clone().unwrap_or_default();
    let new_id = ids::replay_delivery_id(&old, &replayed.envelope.event_id, now);
    replayed.new_delivery_id = new_id.clone();
    let delivery = DeliveryRequested {
        envelope: Envelope {
            event_id: ids::new_event_id(),
            record_type: DeliveryRequested::NAME.into(),
            delivery_id: Some(new_id),
            attempt: Some(1),
            causation_id: Some(replayed.envelope.event_id.clone()),
            occurred_at: now,
            ..m.envelope.clone()
        },
        event_type: m.event_type.clone(),
        payload: m.payload.clone(),
        content_type: m.content_type.clone(),
        message_id: m.message_id.clone(),
        reason: reason::REPLAY.into(),
        trigger_occurred_at: now,
        not_before: None,
    };
    (replayed, delivery)
}

/// The record of discarding `m`.
pub fn discard(m: &MovedToDLQ, actor: &str, now: i64) -> DLQDiscarded {
    DLQDiscarded { envelope: envelope::<DLQDiscarded>(m, now), actor: actor.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_the_webhook_id_under_a_new_delivery() {
        let m = MovedToDLQ {
            envelope: Envelope {
                event_id: "e1".into(),
                delivery_id: Some("d1".into()),
                endpoint_id: Some("ep".into()),
                tenant_id: "t".into(),
                ..Default::default()
            },
            event_type: "x.y".into(),
            payload: b"{}".to_vec(),
            content_type: "application/json".into(),
            message_id: "msg_1".into(),
            reason: "exhausted".into(),
            last_error_kind: "http_status".into(),
            last_status_code: Some(500),
            last_error_message: "HTTP 500".into(),
            attempts: 3,
            trigger_occurred_at: 1,
        };
        let (r, d) = replay(&m, "ops", 10);
        assert_eq!(d.message_id, "msg_1");
        assert_eq!(d.reason, "replay");
        assert_eq!(d.envelope.delivery_id.as_deref(), Some(r.new_delivery_id.as_str()));
        assert_ne!(r.new_delivery_id, "d1");
        assert_eq!(r.envelope.delivery_id.as_deref(), Some("d1"));
        assert_eq!(d.envelope.causation_id.as_deref(), Some(r.envelope.event_id.as_str()));
        assert_eq!(discard(&m, "ops", 11).envelope.delivery_id.as_deref(), Some("d1"));
    }
}
