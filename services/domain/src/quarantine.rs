//! The record that sets aside an input record that cannot be decoded or applied.

use hookline_schemas::{Envelope, Event, RecordQuarantined};

use crate::{ids, time};

/// A RecordQuarantined for the record at `topic`/`partition`/`offset`, keeping its bytes.
pub fn record(
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    reason: String,
) -> RecordQuarantined {
    RecordQuarantined {
        envelope: Envelope {
            event_id: ids::new_event_id(),
            record_type: RecordQuarantined::NAME.into(),
            occurred_at: time::now_ms(),
            ..Default::default()
        },
        original_topic: topic.into(),
        original_partition: partition,
        original_offset: offset,
        original_key: key.map(<[u8]>::to_vec),
        original_value: value.map(<[u8]>::to_vec),
        reason,
    }
}
