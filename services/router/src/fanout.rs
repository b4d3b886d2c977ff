//! One trigger record in, its output records out. Pure apart from reading the catalog.

use crate::dedupe::{Dedupe, Verdict};
use hookline_domain::{ids, subscriptions, time};
use hookline_kafka::Topics;
use hookline_kafka::catalog::Catalog;
use std::sync::Arc;

use hookline_schemas::{
    AnyEvent, Codec, DeliveryRequested, EndpointUpserted, Envelope, Event, TriggerRequested, reason,
};

/// A record to produce.
#[derive(Debug)]
pub struct Output {
    pub topic: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// Header on a TriggerRequested whose deliveries the API wrote itself (`api.direct_fanout`):
/// the router takes note of it (idempotency memory, offsets) and fans out nothing.
pub const ROUTED_HEADER: &str = "hookline-routed";

/// Routes one record of the triggers topic. With `dedupe`, a keyed trigger whose key was
/// fanned out inside the window gives no records; so does one marked `routed` (its deliveries
/// are already on the log, see [`ROUTED_HEADER`]).
#[allow(clippy::too_many_arguments)]
pub fn route_record(
    dedupe: Option<&mut Dedupe>,
    catalog: &Catalog,
    codec: &Codec,
    topics: &Topics,
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    routed: bool,
) -> Vec<Output> {
    let quarantine = |reason: String| {
        tracing::warn!(topic, partition, offset, reason, "trigger quarantined");
        let q = hookline_domain::quarantine::record(topic, partition, offset, key, value, reason);
        match codec.encode(&q) {
            Ok(v) => vec![Output { topic: topics.quarantine.clone(), key: topic.as_bytes().to_vec(), value: v }],
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a quarantine record; dropping the bad trigger");
                vec![]
            }
        }
    };
    let Some(value) = value else { return quarantine("empty record (no value)".into()) };
    let trigger = match codec.decode(value) {
        Ok(AnyEvent::TriggerRequested(t)) => t,
        Ok(other) => return quarantine(format!("expected TriggerRequested, found {}", other.name())),
        Err(e) => return quarantine(format!("undecodable: {e}")),
    };
    if let Err(reason) = check(&trigger) {
        return quarantine(reason);
    }
    let trigger_id =
        trigger.envelope.trigger_id.clone().unwrap_or_else(|| ids::trigger_id_from_position(topic, partition, offset));
    let _span = tracing::info_span!("route", trigger_id, partition, offset, event_type = trigger.event_type).entered();
    let tenant = &trigger.envelope.tenant_id;
    if let Some(d) = dedupe
        && let Verdict::Duplicate { first_trigger_id } = d.check(
            partition,
            offset,
            tenant,
            trigger.idempotency_key.as_deref(),
            &trigger_id,
            trigger.envelope.occurred_at,
        )
    {
        tracing::info!(
            trigger_id,
            first_trigger_id,
            partition,
            offset,
            "duplicate trigger (idempotency key); no fan-out"
        );
        return vec![];
    }
    if routed {
        return vec![];
    }
    deliveries(codec, topics, &trigger, &trigger_id, targets(catalog, &trigger))
}

/// The enabled endpoints a trigger goes to: those it names (of its tenant), or else those
/// subscribed to its event type.
pub fn targets(catalog: &Catalog, trigger: &TriggerRequested) -> Vec<Arc<EndpointUpserted>> {
    let tenant = &trigger.envelope.tenant_id;
    match &trigger.endpoint_ids {
        Some(explicit) => explicit
            .iter()
            .filter_map(|id| catalog.get(id))
            .filter(|e| e.enabled && &e.envelope.tenant_id == tenant)
            .collect(),
        None => catalog.subscribed(tenant, &trigger.event_type),
    }
}

/// One DeliveryRequested (first attempt) per target, keyed by endpoint id; the delivery ids
/// derive from (trigger, endpoint), so writing them again never makes a second delivery.
pub fn deliveries(
    codec: &Codec,
    topics: &Topics,
    trigger: &TriggerRequested,
    trigger_id: &str,
    targets: Vec<Arc<EndpointUpserted>>,
) -> Vec<Output> {
    let tenant = &trigger.envelope.tenant_id;
    let now = time::now_ms();
    let mut out = Vec::with_capacity(targets.len());
    for ep in targets {
        let Some(endpoint_id) = ep.envelope.endpoint_id.clone() else { continue };
        let delivery_id = ids::delivery_id(trigger_id, &endpoint_id, trigger.envelope.occurred_at);
        let d = DeliveryRequested {
            envelope: Envelope {
                event_id: ids::new_event_id(),
                record_type: DeliveryRequested::NAME.into(),
                occurred_at: now,
                tenant_id: tenant.clone(),
                trigger_id: Some(trigger_id.to_string()),
                endpoint_id: Some(endpoint_id.clone()),
                attempt: Some(1),
                causation_id: Some(trigger.envelope.event_id.clone()),
                correlation_id: Some(trigger.envelope.correlation_id.clone().unwrap_or_else(|| trigger_id.to_string())),
                delivery_id: Some(delivery_id.clone()),
            },
            event_type: trigger.event_type.clone(),
            payload: trigger.payload.clone(),
            content_type: trigger.content_type.clone(),
            message_id: ids::message_id(&delivery_id),
            reason: reason::INITIAL.into(),
            trigger_occurred_at: trigger.envelope.occurred_at,
            not_before: None,
        };
        match codec.encode(&d) {
            Ok(v) => out.push(Output { topic: topics.deliveries.clone(), key: endpoint_id.into_bytes(), value: v }),
            Err(e) => tracing::error!(error = %e, "cannot encode a DeliveryRequested"),
        }
    }
    out
}

/// A trigger the router would take (the API checks the same before fanning out itself).
pub fn check(t: &TriggerRequested) -> Result<(), String> {
    subscriptions::validate_event_type(&t.event_type).map_err(|r| format!("event_type: {r}"))?;
    if t.envelope.tenant_id.is_empty() {
        return Err("envelope.tenant_id is empty".into());
    }
    if t.content_type.is_empty() {
        return Err("content_type is empty".into());
    }
    Ok(())
}
