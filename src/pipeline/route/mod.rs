//! Routing: which topics an enriched event goes to besides the SIEM sinks, and what an alert
//! record looks like (`docs/alerts.md`).
//!
//! Denied events raise a `policy_denied` alert on the alert topic, keyed by trace id. Extra
//! [`Route`]s send the events that satisfy a [`predicate::Predicate`] to a named topic.

pub mod predicate;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{Decision, EnrichedEvent};

/// Alert kind written to the `alert` field of a denied event's alert.
pub const POLICY_DENIED: &str = "policy_denied";

/// An extra route: events satisfying `when` go to `topic` as enriched JSON, keyed by trace id.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's name, for logs and metrics.
    pub name: String,
    /// Destination topic.
    pub topic: String,
    /// The condition.
    pub when: predicate::Predicate,
}

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
    policy: Policy<'a>,
    event: Canonical<'a>,
    source: Source<'a>,
}

#[derive(Serialize)]
struct Policy<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    compliance: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unknown: bool,
}

/// The canonical event as written in alerts and late-event records: the ten fields, then the
/// extra fields in input order.
#[derive(Serialize)]
pub(crate) struct Canonical<'a> {
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

impl<'a> Canonical<'a> {
    /// Borrows the fields of `e`.
    pub(crate) fn of(e: &'a crate::model::AuditEvent) -> Self {
        Canonical {
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
        }
    }
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
        policy: Policy {
            name: &e.policy,
            owner: enriched.policy_meta.as_ref().and_then(|m| m.owner.as_deref()),
            description: enriched.policy_meta.as_ref().and_then(|m| m.description.as_deref()),
            compliance: enriched.policy_meta.as_ref().map_or(&[], |m| m.compliance.as_slice()),
            unknown: enriched.policy_unknown,
        },
        event: Canonical::of(e),
        source: Source { topic: &p.topic, partition: p.partition, offset: p.offset, ingest_ms: p.ingest_ms },
    };
    // Borrowed strings and numbers into a Vec: serialization cannot fail.
    crate::json_out::write(out, &alert);
}
