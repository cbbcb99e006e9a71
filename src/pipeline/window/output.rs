//! What the windowing core emits besides summaries: sequence-rule hits (alerts) and late events.

use std::sync::Arc;

use apache_avro::types::Value as Avro;
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
            o.str("alert", SEQUENCE_RULE);
            o.uuid("alert_id", &self.hit_id);
            o.int("severity", i64::from(self.severity));
            o.str("trace", &self.trace);
            time_field(o, "ts", self.ts_ms);
            o.str("rule", &self.rule);
            o.str("rule_type", self.rule_type.as_str());
            o.uuid("summary_id", &self.summary_id);
            o.str("description", &self.description);
            o.array("event_ids", |list| {
                for step in &self.events {
                    list.uuid(&step.event_id);
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

    /// The late event as a value of `schemas/late_event.avsc`: the fields of the JSON form but
    /// `kind` (the schema names it), extra input fields as their JSON text.
    pub fn to_avro_value(&self) -> Avro {
        let e = &self.event.event;
        let p = &self.event.provenance;
        use crate::pipeline::enriched::{extra_texts, opt, text};
        Avro::Record(vec![
            ("trace".into(), text(&e.trace)),
            ("event_id".into(), text(&self.event.event_id)),
            ("ts".into(), text(&e.ts)),
            ("ts_ms".into(), Avro::TimestampMillis(e.ts_ms)),
            ("summary_id".into(), opt(self.summary_id.map(|id| id.to_string()).as_deref())),
            ("reason".into(), text(self.reason.as_str())),
            ("watermark_ms".into(), Avro::TimestampMillis(self.watermark_ms)),
            (
                "event".into(),
                Avro::Record(vec![
                    ("ts".into(), text(&e.ts)),
                    ("actor".into(), text(&e.actor)),
                    ("action".into(), text(&e.action)),
                    ("artifact".into(), text(&e.artifact)),
                    ("policy".into(), text(&e.policy)),
                    ("target".into(), text(&e.target)),
                    ("mode".into(), text(&e.mode)),
                    ("trace".into(), text(&e.trace)),
                    ("result".into(), text(&e.result)),
                    ("reason".into(), opt(e.reason.as_deref())),
                    ("extra".into(), extra_texts(&e.extra)),
                ]),
            ),
            (
                "source".into(),
                Avro::Record(vec![
                    ("topic".into(), text(&p.topic)),
                    ("partition".into(), Avro::Int(p.partition)),
                    ("offset".into(), Avro::Long(p.offset)),
                    ("ingest_ms".into(), Avro::TimestampMillis(p.ingest_ms)),
                ]),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SourceRecord;
    use crate::pipeline::{decode::json, enrich, validate};
    use apache_avro::types::Value as V;

    fn late(text: &str, summary_id: Option<Uuid>) -> LateEvent {
        let event = validate::validate(json::decode(text.as_bytes()).unwrap(), &Default::default()).unwrap();
        let record = SourceRecord { topic: "audit.raw".into(), partition: 2, offset: 41, ..Default::default() };
        let enriched = enrich::enrich(event, &record, 1_776_522_130_000, &Default::default());
        LateEvent { event: Box::new(enriched), summary_id, watermark_ms: 1_776_522_129_000, reason: LateReason::BehindWatermark }
    }

    /// The Avro form matches the schema, reads back equal, and carries what the JSON form does:
    /// every string and number alike, extra fields as their JSON text, absent optionals as null.
    #[test]
    fn avro_value_validates_and_carries_the_json_forms_fields() {
        let schema = apache_avro::Schema::parse_str(crate::schemas::LATE_EVENT).unwrap();
        let full = r#"{"ts":"2026-04-18T14:22:07.441+02:00","actor":"user:j.patel","action":"deploy","artifact":"billing@v4","policy":"p1","target":"aws:eu-west-1:c1","mode":"fixed","trace":"tr-1","result":"denied","reason":"outside \"window\"","ticket":{"id":7},"n":3}"#;
        let bare = r#"{"ts":"2026-04-18T14:22:07.441Z","actor":"user:a","action":"read","artifact":"x","policy":"p","target":"t","mode":"adaptive","trace":"tr-2","result":"allowed"}"#;
        for (text, summary_id) in [(full, Some(Uuid::from_u128(9))), (bare, None)] {
            let late = late(text, summary_id);
            let value = late.to_avro_value();
            assert!(value.validate(&schema), "{value:?}");
            let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build().unwrap();
            let bytes = writer.write_value_to_vec(value.clone()).unwrap();
            let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build().unwrap();
            assert_eq!(reader.read_value(&mut bytes.as_slice()).unwrap(), value);

            let mut out = Vec::new();
            late.to_json(&mut out);
            let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
            compare(&value, &json, "");
            let field = |value: &V, name: &str| match value {
                V::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap(),
                other => panic!("not a record: {other:?}"),
            };
            let V::Map(extra) = field(&field(&value, "event"), "extra") else { panic!("extra is a map") };
            let mut keys: Vec<&str> = extra.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, if text == full { vec!["n", "ticket"] } else { vec![] });
        }
    }

    /// Asserts that every field of the Avro `value` equals its namesake in `json` (null where the
    /// JSON form leaves it out; map values are JSON texts).
    fn compare(value: &V, json: &serde_json::Value, path: &str) {
        match value {
            V::Record(fields) => {
                for (name, field) in fields {
                    // Extra fields are flattened into the JSON form's `event` object.
                    let json = if name == "extra" { json } else { json.get(name).unwrap_or(&serde_json::Value::Null) };
                    compare(field, json, &format!("{path}.{name}"));
                }
            }
            V::Union(_, inner) => compare(inner, json, path),
            V::Null => assert!(json.is_null(), "{path}: {json}"),
            V::String(text) => assert_eq!(json.as_str(), Some(text.as_str()), "{path}"),
            V::Int(n) => assert_eq!(json.as_i64(), Some(i64::from(*n)), "{path}"),
            V::Long(n) | V::TimestampMillis(n) => assert_eq!(json.as_i64(), Some(*n), "{path}"),
            V::Map(entries) => {
                for (key, text) in entries {
                    let V::String(text) = text else { panic!("{path}.{key}: not a string") };
                    let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
                    assert_eq!(json.get(key), Some(&parsed), "{path}.{key}");
                }
            }
            other => panic!("{path}: unexpected {other:?}"),
        }
    }
}
