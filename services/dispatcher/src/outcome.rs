//! Turning an attempt's result into the records that say what happened, in one place:
//! succeeded, failed-will-retry, failed-to-DLQ, endpoint gone.

use std::time::Duration;

use hookline_domain::flow::Transition;
use hookline_domain::retry::{RetryPolicy, StatusClass, classify, honours_retry_after};
use hookline_domain::{ids, time};
use hookline_kafka::Topics;
use hookline_outbound::{AttemptError, Delivered};
use hookline_schemas::{
    AttemptFailed, AttemptSucceeded, CircuitClosed, CircuitOpened, Codec, CodecError, DeliveryDeferred,
    DeliveryRequested, EndpointDisabled, EndpointUpserted, Envelope, Event, MovedToDLQ, reason,
};

/// A record to produce in the current transaction.
#[derive(Debug)]
pub struct Output {
    pub topic: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// What the attempt came to.
pub enum AttemptResult {
    Http(Delivered),
    Failed(AttemptError),
    /// No attempt was possible (endpoint deleted or disabled): straight to the DLQ.
    NotAttempted {
        kind: &'static str,
        message: String,
    },
    /// The request could not be built (template render error, unopenable key): retrying would
    /// fail the same way, so straight to the DLQ with the reason.
    Permanent {
        kind: &'static str,
        message: String,
    },
}

/// Everything that follows from one attempt.
pub struct Outcome {
    pub outputs: Vec<Output>,
    /// An endpoint update to apply locally at once (410 disables the endpoint).
    pub endpoint_update: Option<EndpointUpserted>,
    pub label: &'static str,
    /// With [`Context::inline_retry`]: the next attempt and when, for the caller to make itself.
    pub retry: Option<(Duration, DeliveryRequested)>,
}

pub struct Context<'a> {
    pub codec: &'a Codec,
    pub topics: &'a Topics,
    pub tiers_ms: &'a [u64],
    pub policy: RetryPolicy,
    pub excerpt_bytes: usize,
    /// Ordered endpoints retry in place (the next message waits): the retry is handed back in
    /// [`Outcome::retry`] instead of being parked in a retry tier.
    pub inline_retry: bool,
}

fn envelope_from<E: Event>(d: &DeliveryRequested, now: i64) -> Envelope {
    Envelope {
        event_id: ids::new_event_id(),
        record_type: E::NAME.into(),
        occurred_at: now,
        causation_id: Some(d.envelope.event_id.clone()),
        ..d.envelope.clone()
    }
}

impl Context<'_> {
    pub fn outcome(
        &self,
        d: &DeliveryRequested,
        ep: Option<&EndpointUpserted>,
        result: AttemptResult,
        unit_random: f64,
    ) -> Result<Outcome, CodecError> {
        let now = time::now_ms();
        let attempt = d.envelope.attempt.unwrap_or(1).max(1) as u32;
        let endpoint_key = d.envelope.endpoint_id.clone().unwrap_or_default().into_bytes();
        let mut outputs = Vec::with_capacity(3);
        let mut push = |topic: &str, value: Vec<u8>| {
            outputs.push(Output { topic: topic.to_string(), key: endpoint_key.clone(), value })
        };

        // The failure facts, or success.
        let build_failed = matches!(result, AttemptResult::Permanent { .. });
        let (kind, status, message, excerpt, duration, retry_after, gone) = match result {
            AttemptResult::Http(r) if classify(r.status) == StatusClass::Success => {
                let ev = AttemptSucceeded {
                    envelope: envelope_from::<AttemptSucceeded>(d, now),
                    message_id: d.message_id.clone(),
                    status_code: r.status as i32,
                    duration_ms: r.duration.as_millis() as i32,
                    response_excerpt: r.excerpt.map(|e| truncate(e, self.excerpt_bytes)),
                };
                push(&self.topics.events, self.codec.encode(&ev)?);
                return Ok(Outcome { outputs, endpoint_update: None, label: "succeeded", retry: None });
            }
            AttemptResult::Http(r) => {
                let gone = classify(r.status) == StatusClass::Gone;
                let hint = if honours_retry_after(r.status) { r.retry_after } else { None };
                let msg = format!("HTTP {}", r.status);
                ("http_status", Some(r.status as i32), msg, r.excerpt, r.duration, hint, gone)
            }
            AttemptResult::Failed(e) => (e.kind.as_str(), None, e.message, None, e.duration, None, false),
            AttemptResult::NotAttempted { kind, message } | AttemptResult::Permanent { kind, message } => {
                (kind, None, message, None, Duration::ZERO, None, false)
            }
        };
        let permanent = gone || build_failed || ep.is_none() || ep.is_some_and(|e| !e.enabled);
        let next = if permanent { None } else { self.policy.next_delay(attempt, unit_random, retry_after) };
        let next_at = next.map(|d| now + d.as_millis() as i64);
        let failed = AttemptFailed {
            envelope: envelope_from::<AttemptFailed>(d, now),
            message_id: d.message_id.clone(),
            error_kind: kind.into(),
            status_code: status,
            duration_ms: duration.as_millis() as i32,
            error_message: message.clone(),
            response_excerpt: excerpt.map(|e| truncate(e, self.excerpt_bytes)),
            next_attempt_at: next_at,
        };
        push(&self.topics.events, self.codec.encode(&failed)?);

        let mut endpoint_update = None;
        let mut inline = None;
        let label = match next {
            Some(delay) => {
                let mut retry = d.clone();
                retry.envelope = Envelope {
                    event_id: ids::new_event_id(),
                    occurred_at: now,
                    attempt: Some(attempt as i32 + 1),
                    causation_id: Some(failed.envelope.event_id.clone()),
                    ..d.envelope.clone()
                };
                retry.reason = reason::RETRY.into();
                retry.not_before = next_at;
                if self.inline_retry {
                    inline = Some((delay, retry));
                } else {
                    let topic = match tier_for(delay.as_millis() as u64, self.tiers_ms) {
                        Some(tier) => self.topics.retry_tier(tier),
                        None => self.topics.deliveries.clone(),
                    };
                    push(&topic, self.codec.encode(&retry)?);
                }
                "retrying"
            }
            None => {
                let dlq_reason = if gone {
                    "endpoint_gone"
                } else if build_failed {
                    "permanent"
                } else if ep.is_none() {
                    "endpoint_deleted"
                } else if ep.is_some_and(|e| !e.enabled) {
                    "endpoint_disabled"
                } else {
                    "exhausted"
                };
                let moved = MovedToDLQ {
                    envelope: envelope_from::<MovedToDLQ>(d, now),
                    event_type: d.event_type.clone(),
                    payload: d.payload.clone(),
                    content_type: d.content_type.clone(),
                    message_id: d.message_id.clone(),
                    reason: dlq_reason.into(),
                    last_error_kind: kind.into(),
                    last_status_code: status,
                    last_error_message: message,
                    attempts: if matches!(kind, "endpoint_deleted" | "endpoint_disabled") {
                        attempt as i32 - 1
                    } else {
                        attempt as i32
                    },
                    trigger_occurred_at: d.trigger_occurred_at,
                };
                push(&self.topics.events, self.codec.encode(&moved)?);
                "dead_lettered"
            }
        };
        if gone && let Some(ep) = ep.filter(|e| e.enabled) {
            let (records, update) = disable_records(
                self.codec,
                self.topics,
                ep,
                "gone",
                "gone: the endpoint answered 410",
                &failed.envelope.event_id,
                now,
            )?;
            outputs.extend(records);
            endpoint_update = Some(update);
        }
        Ok(Outcome { outputs, endpoint_update, label, retry: inline })
    }
}

/// EndpointDisabled and the EndpointUpserted that disables `ep` (a new version).
pub fn disable_records(
    codec: &Codec,
    topics: &Topics,
    ep: &EndpointUpserted,
    reason: &str,
    disabled_reason: &str,
    causation: &str,
    now: i64,
) -> Result<(Vec<Output>, EndpointUpserted), CodecError> {
    let key = ep.envelope.endpoint_id.clone().unwrap_or_default().into_bytes();
    let disabled = EndpointDisabled {
        envelope: Envelope {
            event_id: ids::new_event_id(),
            record_type: EndpointDisabled::NAME.into(),
            occurred_at: now,
            tenant_id: ep.envelope.tenant_id.clone(),
            endpoint_id: ep.envelope.endpoint_id.clone(),
            causation_id: Some(causation.to_string()),
            ..Default::default()
        },
        reason: reason.into(),
    };
    let mut update = ep.clone();
    update.envelope = Envelope {
        event_id: ids::new_event_id(),
        record_type: EndpointUpserted::NAME.into(),
        occurred_at: now,
        causation_id: Some(disabled.envelope.event_id.clone()),
        ..ep.envelope.clone()
    };
    update.enabled = false;
    update.version += 1;
    update.disabled_reason = Some(disabled_reason.into());
    let outputs = vec![
        Output { topic: topics.events.clone(), key: key.clone(), value: codec.encode(&disabled)? },
        Output { topic: topics.endpoints.clone(), key, value: codec.encode(&update)? },
    ];
    Ok((outputs, update))
}

/// A delivery flow control turned away: DeliveryDeferred, and the same delivery (same attempt
/// number: none was used) parked until `until_ms`.
pub fn deferred(
    codec: &Codec,
    topics: &Topics,
    tiers_ms: &[u64],
    d: &DeliveryRequested,
    cause: &str,
    until_ms: i64,
) -> Result<Vec<Output>, CodecError> {
    let now = time::now_ms();
    let key = d.envelope.endpoint_id.clone().unwrap_or_default().into_bytes();
    let ev =
        DeliveryDeferred { envelope: envelope_from::<DeliveryDeferred>(d, now), cause: cause.into(), until: until_ms };
    let mut again = d.clone();
    again.envelope = Envelope {
        event_id: ids::new_event_id(),
        occurred_at: now,
        causation_id: Some(ev.envelope.event_id.clone()),
        ..d.envelope.clone()
    };
    again.not_before = Some(until_ms);
    let topic = match tier_for((until_ms - now).max(0) as u64, tiers_ms) {
        Some(tier) => topics.retry_tier(tier),
        None => topics.deliveries.clone(),
    };
    Ok(vec![
        Output { topic: topics.events.clone(), key: key.clone(), value: codec.encode(&ev)? },
        Output { topic, key, value: codec.encode(&again)? },
    ])
}

/// The records of a breaker transition of `ep`; disabling also returns the endpoint update.
pub fn circuit_records(
    codec: &Codec,
    topics: &Topics,
    ep: &EndpointUpserted,
    t: &Transition,
    now: i64,
) -> Result<(Vec<Output>, Option<EndpointUpserted>), CodecError> {
    let key = ep.envelope.endpoint_id.clone().unwrap_or_default().into_bytes();
    let envelope = |name: &str| Envelope {
        event_id: ids::new_event_id(),
        record_type: name.into(),
        occurred_at: now,
        tenant_id: ep.envelope.tenant_id.clone(),
        endpoint_id: ep.envelope.endpoint_id.clone(),
        ..Default::default()
    };
    let one = |value| Ok((vec![Output { topic: topics.events.clone(), key: key.clone(), value }], None));
    match *t {
        Transition::Opened { failure_ratio, window_requests, open_until } => one(codec.encode(&CircuitOpened {
            envelope: envelope(CircuitOpened::NAME),
            failure_ratio,
            window_requests: window_requests as i32,
            open_until,
        })?),
        Transition::Closed { open_since } => {
            one(codec.encode(&CircuitClosed { envelope: envelope(CircuitClosed::NAME), open_since })?)
        }
        Transition::Disable { open_since } if ep.enabled => {
            let reason = format!("circuit open since {open_since} (ms), longer than the breaker allows");
            let (out, update) =
                disable_records(codec, topics, ep, "circuit_open", &reason, &ep.envelope.event_id, now)?;
            Ok((out, Some(update)))
        }
        Transition::Disable { .. } => Ok((Vec::new(), None)),
    }
}

/// The retry tier to park a record in: the largest tier not above the delay; the smallest tier
/// for shorter positive delays; none (straight to the deliveries topic) for no delay.
pub fn tier_for(delay_ms: u64, tiers_ms: &[u64]) -> Option<u64> {
    if delay_ms == 0 || tiers_ms.is_empty() {
        return None;
    }
    tiers_ms.iter().rev().find(|&&t| t <= delay_ms).or(tiers_ms.first()).copied()
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers() {
        let t = [1000, 5000, 30000];
        assert_eq!(tier_for(0, &t), None);
        assert_eq!(tier_for(400, &t), Some(1000));
        assert_eq!(tier_for(4999, &t), Some(1000));
        assert_eq!(tier_for(5000, &t), Some(5000));
        assert_eq!(tier_for(3_600_000, &t), Some(30000));
    }
}
