//! What a closed window reports: [`TraceSummary`], its steps, its JSON and Avro forms
//! (`schemas/trace_summary.avsc`).

use std::sync::Arc;

use apache_avro::types::Value as Avro;
use chrono::{SecondsFormat, TimeZone, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::model::{Decision, EnrichedEvent};

/// The descriptive fields of a step, shared (interned) between the steps of all windows that
/// carry the same values; each string is shared too (summaries list actors without copying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFields {
    /// Source topic.
    pub topic: Arc<str>,
    /// The operation attempted.
    pub action: Arc<str>,
    /// What was acted on.
    pub artifact: Arc<str>,
    /// The decision as received.
    pub result: Arc<str>,
    /// The decision, classified.
    pub decision: Decision,
    /// The policy that evaluated the action.
    pub policy: Arc<str>,
    /// Who initiated the action.
    pub actor: Arc<str>,
    /// Execution mode.
    pub mode: Arc<str>,
}

impl StepFields {
    /// The fields of `enriched`.
    pub fn of(enriched: &EnrichedEvent) -> Self {
        let event = &enriched.event;
        StepFields {
            topic: enriched.provenance.topic.as_str().into(),
            action: event.action.as_str().into(),
            artifact: event.artifact.as_str().into(),
            result: event.result.as_str().into(),
            decision: event.decision,
            policy: event.policy.as_str().into(),
            actor: event.actor.as_str().into(),
            mode: event.mode.as_str().into(),
        }
    }

    /// Whether these are the fields of `enriched`.
    pub fn matches(&self, enriched: &EnrichedEvent) -> bool {
        let event = &enriched.event;
        let same = |a: &str, b: &str| eq_bytes(a.as_bytes(), b.as_bytes());
        self.decision == event.decision
            && same(&self.topic, &enriched.provenance.topic)
            && same(&self.action, &event.action)
            && same(&self.artifact, &event.artifact)
            && same(&self.result, &event.result)
            && same(&self.policy, &event.policy)
            && same(&self.actor, &event.actor)
            && same(&self.mode, &event.mode)
    }
}

/// Byte equality, inlined: field values are short, and a `memcmp` call per field costs more.
#[inline]
fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return (0..n).all(|i| a[i] == b[i]);
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    // The last eight bytes, overlapping the previous word when the length is not a multiple of 8.
    word(a, n - 8) == word(b, n - 8)
}

/// One event of a window: 48 bytes, held as it is while the window is open.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Event time, epoch milliseconds.
    pub ts_ms: i64,
    /// Source offset.
    pub offset: i64,
    /// The event id (`EnrichedEvent::event_id`).
    pub event_id: Uuid,
    /// Source topic, action, artifact, result, policy, actor and mode.
    pub fields: Arc<StepFields>,
    /// Source partition.
    pub partition: i32,
}

impl Step {
    /// Source topic.
    pub fn topic(&self) -> &str {
        &self.fields.topic
    }

    /// Step order: event time, then offset, then partition, then topic.
    pub fn order(&self, other: &Step) -> std::cmp::Ordering {
        (self.ts_ms, self.offset, self.partition)
            .cmp(&(other.ts_ms, other.offset, other.partition))
            .then_with(|| self.fields.topic.cmp(&other.fields.topic))
    }
}

/// Why a window closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The watermark passed the last event time plus `gap_ms`.
    Gap,
    /// The watermark passed the first event time plus `max_duration_ms`.
    MaxDuration,
    /// The window reached `max_events_per_trace` (truncated).
    MaxEvents,
    /// Every partition the window holds events of was idle for `idle_timeout_ms`.
    Idle,
    /// Evicted to make room under `max_open_traces` (truncated).
    Capacity,
    /// Flushed on partition revocation or shutdown.
    Flush,
}

impl CloseReason {
    /// The reason as written in outputs: `gap`, `max_duration`, `max_events`, `idle`, `capacity`, `flush`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Gap => "gap",
            CloseReason::MaxDuration => "max_duration",
            CloseReason::MaxEvents => "max_events",
            CloseReason::Idle => "idle",
            CloseReason::Capacity => "capacity",
            CloseReason::Flush => "flush",
        }
    }
}

/// The summary of one closed window of one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    /// UUIDv5 (URL namespace) over `trace|window_start_ms`; see [`summary_id`].
    pub summary_id: Uuid,
    /// The trace id.
    pub trace: Arc<str>,
    /// First event time, epoch milliseconds.
    pub start_ms: i64,
    /// Last event time, epoch milliseconds.
    pub end_ms: i64,
    /// The events, ordered by event time, ties by offset, then partition, then topic.
    pub steps: Vec<Step>,
    /// Events whose decision is `allowed`.
    pub allowed: u32,
    /// Events whose decision is `denied`.
    pub denied: u32,
    /// Distinct actors, sorted.
    pub actors: Vec<Arc<str>>,
    /// Names of the rules that hit, in rule declaration order, each once.
    pub rule_hits: Vec<Arc<str>>,
    /// Whether the window was closed early by a bound (`max_events`, `capacity`).
    pub truncated: bool,
    /// Why the window closed.
    pub close_reason: CloseReason,
}

/// The deterministic id of the window of `trace` starting at `start_ms`: UUIDv5 in the URL
/// namespace over `trace|start_ms` (decimal epoch milliseconds).
pub fn summary_id(trace: &str, start_ms: i64) -> Uuid {
    let mut name = NameBuf::default();
    name.push(trace.as_bytes());
    name.push(b"|");
    name.push_decimal(start_ms);
    name.uuid()
}

/// The name of a UUIDv5, built on the stack when short (ids are computed for every closed window
/// and every rule hit).
pub(super) struct NameBuf {
    stack: [u8; 128],
    len: usize,
    heap: Vec<u8>,
}

impl Default for NameBuf {
    fn default() -> Self {
        NameBuf { stack: [0; 128], len: 0, heap: Vec::new() }
    }
}

impl NameBuf {
    pub(super) fn push(&mut self, bytes: &[u8]) {
        if !self.heap.is_empty() || self.len + bytes.len() > self.stack.len() {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.stack[..self.len]);
            }
            self.heap.extend_from_slice(bytes);
        } else {
            self.stack[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    /// Appends `value` in decimal (what `{}` writes), without the formatting machinery.
    pub(super) fn push_decimal(&mut self, value: i64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if value < 0 {
            self.push(b"-");
        }
        self.push(&digits[at..]);
    }

    /// UUIDv5 in the URL namespace over the name.
    pub(super) fn uuid(&self) -> Uuid {
        let name = if self.heap.is_empty() { &self.stack[..self.len] } else { &self.heap[..] };
        Uuid::new_v5(&Uuid::NAMESPACE_URL, name)
    }
}

/// Epoch milliseconds as RFC 3339 UTC with milliseconds (`2026-04-18T14:22:07.441Z`); empty when
/// out of chrono's range (never for validated events).
pub fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).single().map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)).unwrap_or_default()
}

#[derive(Serialize)]
pub(super) struct SourceJson<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Serialize)]
pub(super) struct StepJson<'a> {
    ts: String,
    ts_ms: i64,
    action: &'a str,
    artifact: &'a str,
    result: &'a str,
    policy: &'a str,
    actor: &'a str,
    mode: &'a str,
    event_id: String,
    source: SourceJson<'a>,
}

impl<'a> StepJson<'a> {
    pub(super) fn of(step: &'a Step) -> Self {
        let f = &*step.fields;
        StepJson {
            ts: rfc3339(step.ts_ms),
            ts_ms: step.ts_ms,
            action: &f.action,
            artifact: &f.artifact,
            result: &f.result,
            policy: &f.policy,
            actor: &f.actor,
            mode: &f.mode,
            event_id: step.event_id.to_string(),
            source: SourceJson { topic: step.topic(), partition: step.partition, offset: step.offset },
        }
    }
}

#[derive(Serialize)]
struct SummaryJson<'a> {
    kind: &'static str,
    summary_id: String,
    trace: &'a str,
    window_start: String,
    window_start_ms: i64,
    window_end: String,
    window_end_ms: i64,
    duration_ms: i64,
    events: usize,
    allowed: u32,
    denied: u32,
    actors: Vec<&'a str>,
    rule_hits: Vec<&'a str>,
    truncated: bool,
    close_reason: &'static str,
    steps: Vec<StepJson<'a>>,
}

impl TraceSummary {
    /// Number of events in the window.
    pub fn events(&self) -> usize {
        self.steps.len()
    }

    /// Last minus first event time.
    pub fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }

    /// Appends the summary as one JSON object (`docs/windowing.md`, "Trace summary").
    pub fn to_json(&self, out: &mut Vec<u8>) {
        let json = SummaryJson {
            kind: "trace_summary",
            summary_id: self.summary_id.to_string(),
            trace: &self.trace,
            window_start: rfc3339(self.start_ms),
            window_start_ms: self.start_ms,
            window_end: rfc3339(self.end_ms),
            window_end_ms: self.end_ms,
            duration_ms: self.duration_ms(),
            events: self.events(),
            allowed: self.allowed,
            denied: self.denied,
            actors: self.actors.iter().map(|a| &**a).collect(),
            rule_hits: self.rule_hits.iter().map(|r| &**r).collect(),
            truncated: self.truncated,
            close_reason: self.close_reason.as_str(),
            steps: self.steps.iter().map(StepJson::of).collect(),
        };
        // Strings and numbers into a Vec: serialization cannot fail.
        crate::json_out::write(out, &json);
    }

    /// The summary as an Avro value of `schemas/trace_summary.avsc`.
    pub fn to_avro_value(&self) -> Avro {
        let string = |s: &str| Avro::String(s.to_owned());
        let steps = self
            .steps
            .iter()
            .map(|step| {
                let f = &*step.fields;
                Avro::Record(vec![
                    ("ts".into(), Avro::String(rfc3339(step.ts_ms))),
                    ("ts_ms".into(), Avro::TimestampMillis(step.ts_ms)),
                    ("action".into(), string(&f.action)),
                    ("artifact".into(), string(&f.artifact)),
                    ("result".into(), string(&f.result)),
                    ("policy".into(), string(&f.policy)),
                    ("actor".into(), string(&f.actor)),
                    ("mode".into(), string(&f.mode)),
                    ("event_id".into(), Avro::String(step.event_id.to_string())),
                    (
                        "source".into(),
                        Avro::Record(vec![
                            ("topic".into(), string(step.topic())),
                            ("partition".into(), Avro::Int(step.partition)),
                            ("offset".into(), Avro::Long(step.offset)),
                        ]),
                    ),
                ])
            })
            .collect();
        Avro::Record(vec![
            ("summary_id".into(), Avro::String(self.summary_id.to_string())),
            ("trace".into(), string(&self.trace)),
            ("window_start".into(), Avro::String(rfc3339(self.start_ms))),
            ("window_start_ms".into(), Avro::TimestampMillis(self.start_ms)),
            ("window_end".into(), Avro::String(rfc3339(self.end_ms))),
            ("window_end_ms".into(), Avro::TimestampMillis(self.end_ms)),
            ("duration_ms".into(), Avro::Long(self.duration_ms())),
            ("events".into(), Avro::Int(i32::try_from(self.events()).unwrap_or(i32::MAX))),
            ("allowed".into(), Avro::Int(i32::try_from(self.allowed).unwrap_or(i32::MAX))),
            ("denied".into(), Avro::Int(i32::try_from(self.denied).unwrap_or(i32::MAX))),
            ("actors".into(), Avro::Array(self.actors.iter().map(|a| string(a)).collect())),
            ("rule_hits".into(), Avro::Array(self.rule_hits.iter().map(|r| string(r)).collect())),
            ("truncated".into(), Avro::Boolean(self.truncated)),
            ("close_reason".into(), string(self.close_reason.as_str())),
            ("steps".into(), Avro::Array(steps)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> TraceSummary {
        let fields = |action: &str, result: &str, decision| {
            Arc::new(StepFields {
                topic: "audit.raw".into(),
                action: action.into(),
                artifact: "billing-service@v4.2.1".into(),
                result: result.into(),
                decision,
                policy: "prod-billing-deploy-v3".into(),
                actor: "user:j.patel@acme.com".into(),
                mode: "fixed".into(),
            })
        };
        let trace: Arc<str> = "tr-8f2c7a91-2b14-4e8e".into();
        TraceSummary {
            summary_id: summary_id(&trace, 1_776_522_127_441),
            trace,
            start_ms: 1_776_522_127_441,
            end_ms: 1_776_522_129_000,
            steps: vec![
                Step {
                    ts_ms: 1_776_522_127_441,
                    event_id: Uuid::nil(),
                    fields: fields("deploy", "denied", Decision::Denied),
                    partition: 0,
                    offset: 7,
                },
                Step {
                    ts_ms: 1_776_522_129_000,
                    event_id: Uuid::max(),
                    fields: fields("deploy", "allowed", Decision::Allowed),
                    partition: 1,
                    offset: 3,
                },
            ],
            allowed: 1,
            denied: 1,
            actors: vec!["user:j.patel@acme.com".into()],
            rule_hits: vec!["flip".into()],
            truncated: false,
            close_reason: CloseReason::Gap,
        }
    }

    #[test]
    fn name_buffer_writes_what_format_writes() {
        for value in [0, 7, -7, 10, 1_776_522_127_441, i64::MAX, i64::MIN] {
            let mut name = NameBuf::default();
            name.push(b"x|");
            name.push_decimal(value);
            assert_eq!(name.uuid(), Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("x|{value}").as_bytes()));
        }
        let long = "t".repeat(200);
        assert_eq!(summary_id(&long, 42), Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("{long}|42").as_bytes()));
        let edge = "t".repeat(126);
        assert_eq!(summary_id(&edge, 42), Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("{edge}|42").as_bytes()));
    }

    #[test]
    fn eq_bytes_is_byte_equality() {
        let texts = ["", "a", "ab", "abcdefg", "abcdefgh", "abcdefgi", "abcdefghi", "bbcdefghi", "abcdefghijklmnopq", "abcdefghijklmnopr"];
        for a in texts {
            for b in texts {
                assert_eq!(eq_bytes(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn summary_id_is_deterministic_over_trace_and_start() {
        let a = summary_id("tr-1", 1_000);
        assert_eq!(a, summary_id("tr-1", 1_000));
        assert_eq!(a, Uuid::new_v5(&Uuid::NAMESPACE_URL, b"tr-1|1000"));
        assert_eq!(summary_id("t", -5), Uuid::new_v5(&Uuid::NAMESPACE_URL, b"t|-5"));
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, summary_id("tr-1", 1_001));
        assert_ne!(a, summary_id("tr-2", 1_000));
    }

    #[test]
    fn json_has_the_documented_fields() {
        let mut out = Vec::new();
        sample().to_json(&mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["kind"], "trace_summary");
        assert_eq!(json["window_start"], "2026-04-18T14:22:07.441Z");
        assert_eq!(json["window_end_ms"], 1_776_522_129_000_i64);
        assert_eq!(json["duration_ms"], 1_559);
        assert_eq!(json["events"], 2);
        assert_eq!(json["close_reason"], "gap");
        assert_eq!(json["rule_hits"][0], "flip");
        assert_eq!(json["steps"][1]["source"]["partition"], 1);
        assert_eq!(json["steps"][0]["result"], "denied");
        assert_eq!(json["steps"][0]["event_id"], "00000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn avro_value_validates_against_the_schema_and_encodes() {
        let schema = apache_avro::Schema::parse_str(crate::schemas::TRACE_SUMMARY).unwrap();
        let value = sample().to_avro_value();
        assert!(value.validate(&schema));
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build().unwrap();
        let bytes = writer.write_value_to_vec(value.clone()).unwrap();
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build().unwrap();
        let read = reader.read_value(&mut bytes.as_slice()).unwrap();
        assert_eq!(read, value);
        let empty = TraceSummary { steps: Vec::new(), actors: Vec::new(), rule_hits: Vec::new(), ..sample() };
        assert!(empty.to_avro_value().validate(&schema));
    }
}
