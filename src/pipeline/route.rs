//! Routing: which topics an enriched event goes to besides the SIEM sinks, and what an alert
//! record looks like (`docs/alerts.md`).
//!
//! Denied events raise a `policy_denied` alert on the alert topic, keyed by trace id.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{Decision, EnrichedEvent};

/// Alert kind written to the `alert` field of a denied event's alert.
pub const POLICY_DENIED: &str = "policy_denied";

/// Whether the event raises an alert.
pub fn is_alert(event: &EnrichedEvent) -> bool {
    event.event.decision == Decision::Denied
}

#[derive(Serialize)]
struct Alert<'a> {
    alert: &'static str,
    alert_id: &'a str,
    severity: u8,
    trace: &'a str,
    ts: &'a str,
    event_id: &'a str,
    event: Canonical<'a>,
    source: Source<'a>,
}

#[derive(Serialize)]
struct Canonical<'a> {
    ts: &'a str,
    actor: &'a str,
    action: &'a str,
    artifact: &'a str,
    policy: &'a str,
    target: &'a str,
    mode: &'a str,
    trace: &'a str,
    result: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(Serialize)]
struct Source<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    ingest_ms: i64,
}

/// Encodes the `policy_denied` alert of a denied event as one JSON object.
pub fn encode_alert(enriched: &EnrichedEvent, out: &mut Vec<u8>) {
    let e = &enriched.event;
    let p = &enriched.provenance;
    let alert = Alert {
        alert: POLICY_DENIED,
        alert_id: &enriched.event_id,
        severity: enriched.severity,
        trace: &e.trace,
        ts: &e.ts,
        event_id: &enriched.event_id,
        event: Canonical {
            ts: &e.ts,
            actor: &e.actor,
            action: &e.action,
            artifact: &e.artifact,
            policy: &e.policy,
            target: &e.target,
            mode: &e.mode,
            trace: &e.trace,
            result: &e.result,
            reason: e.reason.as_deref(),
            extra: &e.extra,
        },
        source: Source { topic: &p.topic, partition: p.partition, offset: p.offset, ingest_ms: p.ingest_ms },
    };
    // Borrowed strings and numbers into a Vec: serialization cannot fail.
    serde_json::to_writer(out, &alert).expect("alert serializes");
}
