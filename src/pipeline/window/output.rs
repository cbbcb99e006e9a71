//! What the windowing core emits besides summaries: sequence-rule hits (alerts) and late events.

use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use super::summary::{step_fields, time_field, NameBuf, SourceJson, Step, TraceSummary};
use crate::json_out;
use crate::model::EnrichedEvent;
use crate::pipeline::route::Canonical;

/// Alert kind of a sequence-rule hit on the alert topic.
pub const SEQUENCE_RULE: &str = "sequence_rule";

/// Everything the windowing core emits.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowOutput {
    /// A window closed.
    Summary(TraceSummary),
    /// A sequence rule hit in a window that closed (emitted right after its summary).
    RuleHit(RuleHit),
    /// An event arrived after its window closed.
    Late(LateEvent),
}

impl WindowOutput {
    /// The trace id: the record key for every kind of output.
    pub fn trace(&self) -> &str {
        match self {
            WindowOutput::Summary(s) => &s.trace,
            WindowOutput::RuleHit(h) => &h.trace,
            WindowOutput::Late(l) => &l.event.event.trace,
        }
    }

    /// The event time the record should carry: window end, hit time, or the late event's time.
    pub fn timestamp_ms(&self) -> i64 {
        match self {
            WindowOutput::Summary(s) => s.end_ms,
            WindowOutput::RuleHit(h) => h.ts_ms,
            WindowOutput::Late(l) => l.event.event.ts_ms,
        }
    }

    /// Appends the output as one JSON object.
    pub fn to_json(&self, out: &mut Vec<u8>) {
        match self {
            WindowOutput::Summary(s) => s.to_json(out),
            WindowOutput::RuleHit(h) => h.to_json(out),
            WindowOutput::Late(l) => l.to_json(out),
        }
    }
}

/// The kind of a sequence rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleType {
    /// N or more denials in one window.
    DenyCount,
    /// A denial, then an allow of the same artifact by the same actor.
    DenyThenAllow,
    /// The mode changes between consecutive steps.
    ModeChange,
    /// A given action shortly after a denial.
    ActionAfterDeny,
}

impl RuleType {
    /// The `type` value of the rule's configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleType::DenyCount => "deny_count",
            RuleType::DenyThenAllow => "deny_then_allow",
            RuleType::ModeChange => "mode_change",
            RuleType::ActionAfterDeny => "action_after_deny",
        }
    }
}

/// One hit of a sequence rule in one closed window.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    /// The rule's name.
    pub rule: Arc<str>,
    /// The rule's kind.
    pub rule_type: RuleType,
    /// The trace id.
    pub trace: Arc<str>,
    /// The summary of the window the hit was found in.
    pub summary_id: Uuid,
    /// UUIDv5 (URL namespace) over `summary_id|rule|index`, index counting this rule's hits in the window from 0.
    pub hit_id: Uuid,
    /// Severity, 0–10, from the rule.
    pub severity: u8,
    /// The events behind the hit, in step order.
    pub events: Vec<Step>,
    /// Event time of the hit: the time of its last event.
    pub ts_ms: i64,
    /// One line for people, e.g. `3 denials (threshold 3)`.
    pub description: String,
}

/// The id of the `index`th hit of `rule` in the window `summary_id`.
pub fn hit_id(summary_id: Uuid, rule: &str, index: usize) -> Uuid {
    let mut name = NameBuf::default();
    name.push(summary_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes());
    name.push(b"|");
    name.push(rule.as_bytes());
    name.push(b"|");
    name.push_decimal(index as i64);
    name.uuid()
}

impl RuleHit {
    /// Appends the hit as one `sequence_rule` alert (`docs/windowing.md`, "Rule-hit alert").
    pub fn to_json(&self, out: &mut Vec<u8>) {
        json_out::object(out, |o| {
            let mut buf = Uuid::encode_buffer();
            o.str("alert", SEQUENCE_RULE);
            o.str("alert_id", self.hit_id.hyphenated().encode_lower(&mut buf));
            o.int("severity", i64::from(self.severity));
            o.str("trace", &self.trace);
            time_field(o, "ts", self.ts_ms);
            o.str("rule", &self.rule);
            o.str("rule_type", self.rule_type.as_str());
            o.str("summary_id", self.summary_id.hyphenated().encode_lower(&mut buf));
            o.str("description", &self.description);
            o.array("event_ids", |list| {
                for step in &self.events {
                    list.str(step.event_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
                }
            });
            o.array("events", |list| {
                for step in &self.events {
                    list.object(|s| step_fields(s, step));
                }
            });
        });
    }
}

/// Why an event was late.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LateReason {
    /// The trace's window that this event falls into (within `gap_ms` of it) has closed; `summary_id` names it.
    WindowClosed,
    /// Behind the watermark with no remembered window of its trace nearby; `summary_id` is absent.
    BehindWatermark,
}

impl LateReason {
    /// `window_closed` or `behind_watermark`.
    pub fn as_str(self) -> &'static str {
        match self {
            LateReason::WindowClosed => "window_closed",
            LateReason::BehindWatermark => "behind_watermark",
        }
    }
}

/// An event that arrived when its window had already closed (or would have): emitted as it is, never dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct LateEvent {
    /// The event, with its id and provenance.
    pub event: Box<EnrichedEvent>,
    /// The summary the event would have belonged to, when a closed window of its trace is remembered near it.
    pub summary_id: Option<Uuid>,
    /// The watermark of the event's partition when it arrived.
    pub watermark_ms: i64,
    /// Why it is late.
    pub reason: LateReason,
}

#[derive(Serialize)]
struct LateJson<'a> {
    kind: &'static str,
    trace: &'a str,
    event_id: &'a str,
    ts: &'a str,
    ts_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_id: Option<String>,
    reason: &'static str,
    watermark_ms: i64,
    event: Canonical<'a>,
    source: LateSource<'a>,
}

#[derive(Serialize)]
struct LateSource<'a> {
    #[serde(flatten)]
    at: SourceJson<'a>,
    ingest_ms: i64,
}

impl LateEvent {
    /// Appends the late event as one JSON object of kind `late_event` (`docs/windowing.md`, "Late event").
    pub fn to_json(&self, out: &mut Vec<u8>) {
        let e = &self.event.event;
        let p = &self.event.provenance;
        let json = LateJson {
            kind: "late_event",
            trace: &e.trace,
            event_id: &self.event.event_id,
            ts: &e.ts,
            ts_ms: e.ts_ms,
            summary_id: self.summary_id.map(|id| id.to_string()),
            reason: self.reason.as_str(),
            watermark_ms: self.watermark_ms,
            event: Canonical::of(e),
            source: LateSource { at: SourceJson { topic: &p.topic, partition: p.partition, offset: p.offset }, ingest_ms: p.ingest_ms },
        };
        crate::json_out::write(out, &json);
    }
}
