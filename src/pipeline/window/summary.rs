//! What a closed window reports: [`TraceSummary`], its steps, its JSON and Avro forms
//! (`schemas/trace_summary.avsc`).

use std::sync::Arc;

use apache_avro::types::Value as Avro;
use chrono::{SecondsFormat, TimeZone, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::json_out::{self, Object};
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
pub(super) fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
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
    match rfc3339_bytes(ms) {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => Utc.timestamp_millis_opt(ms).single().map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)).unwrap_or_default(),
    }
}

/// [`rfc3339`] without chrono or an allocation, for years 0000–9999 (`None` outside them).
/// Days to civil date after Howard Hinnant's `civil_from_days`.
pub fn rfc3339_bytes(ms: i64) -> Option<[u8; 24]> {
    const MIN_MS: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    if !(MIN_MS..=MAX_MS).contains(&ms) {
        return None;
    }
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: i64| {
        for slot in out[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, ms_of_day / 3_600_000);
    put(14, 2, ms_of_day / 60_000 % 60);
    put(17, 2, ms_of_day / 1_000 % 60);
    put(20, 3, ms_of_day % 1_000);
    Some(out)
}

/// Writes `"key":"<rfc 3339 of ms>"`.
pub(super) fn time_field(o: &mut Object<'_>, key: &'static str, ms: i64) {
    match rfc3339_bytes(ms) {
        // Digits and `-:.TZ`: nothing to escape.
        Some(bytes) => o.raw(key, |out| json_out::quoted(out, &bytes)),
        None => o.str(key, &rfc3339(ms)),
    }
}

/// The fields of one step object (`steps[]` of a summary, `events[]` of a rule hit).
pub(super) fn step_fields(o: &mut Object<'_>, step: &Step) {
    let f = &*step.fields;
    time_field(o, "ts", step.ts_ms);
    o.int("ts_ms", step.ts_ms);
    o.str("action", &f.action);
    o.str("artifact", &f.artifact);
    o.str("result", &f.result);
    o.str("policy", &f.policy);
    o.str("actor", &f.actor);
    o.str("mode", &f.mode);
    o.uuid("event_id", &step.event_id);
    o.object("source", |source| {
        source.str("topic", step.topic());
        source.int("partition", i64::from(step.partition));
        source.int("offset", step.offset);
    });
}

#[derive(Serialize)]
pub(super) struct SourceJson<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
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
        json_out::object(out, |o| {
            o.str("kind", "trace_summary");
            o.uuid("summary_id", &self.summary_id);
            o.str("trace", &self.trace);
            time_field(o, "window_start", self.start_ms);
            o.int("window_start_ms", self.start_ms);
            time_field(o, "window_end", self.end_ms);
            o.int("window_end_ms", self.end_ms);
            o.int("duration_ms", self.duration_ms());
            o.int("events", self.events() as i64);
            o.int("allowed", i64::from(self.allowed));
            o.int("denied", i64::from(self.denied));
            o.str_array("actors", self.actors.iter().map(|a| &**a));
            o.str_array("rule_hits", self.rule_hits.iter().map(|r| &**r));
            o.bool("truncated", self.truncated);
            o.str("close_reason", self.close_reason.as_str());
            o.array("steps", |list| {
                for step in &self.steps {
                    list.object(|s| step_fields(s, step));
                }
            });
        });
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

    /// `sample()` as JSON, as the serde serializer wrote it before the hand-written writer.
    const PINNED: &str = r#"{"kind":"trace_summary","summary_id":"86b7f2ac-6141-5669-bde0-d022c12e46d4","trace":"tr-8f2c7a91-2b14-4e8e","window_start":"2026-04-18T14:22:07.441Z","window_start_ms":1776522127441,"window_end":"2026-04-18T14:22:09.000Z","window_end_ms":1776522129000,"duration_ms":1559,"events":2,"allowed":1,"denied":1,"actors":["user:j.patel@acme.com"],"rule_hits":["flip"],"truncated":false,"close_reason":"gap","steps":[{"ts":"2026-04-18T14:22:07.441Z","ts_ms":1776522127441,"action":"deploy","artifact":"billing-service@v4.2.1","result":"denied","policy":"prod-billing-deploy-v3","actor":"user:j.patel@acme.com","mode":"fixed","event_id":"00000000-0000-0000-0000-000000000000","source":{"topic":"audit.raw","partition":0,"offset":7}},{"ts":"2026-04-18T14:22:09.000Z","ts_ms":1776522129000,"action":"deploy","artifact":"billing-service@v4.2.1","result":"allowed","policy":"prod-billing-deploy-v3","actor":"user:j.patel@acme.com","mode":"fixed","event_id":"ffffffff-ffff-ffff-ffff-ffffffffffff","source":{"topic":"audit.raw","partition":1,"offset":3}}]}"#;

    /// A rule hit over `sample()`'s steps as JSON, as the serde serializer wrote it.
    const HIT_PINNED: &str = r#"{"alert":"sequence_rule","alert_id":"00000000-0000-0000-0000-000000000007","severity":7,"trace":"tr-\"q\"","ts":"2026-04-18T14:22:09.000Z","rule":"flip","rule_type":"deny_then_allow","summary_id":"86b7f2ac-6141-5669-bde0-d022c12e46d4","description":"deny then allow","event_ids":["00000000-0000-0000-0000-000000000000","ffffffff-ffff-ffff-ffff-ffffffffffff"],"events":[{"ts":"2026-04-18T14:22:07.441Z","ts_ms":1776522127441,"action":"deploy","artifact":"billing-service@v4.2.1","result":"denied","policy":"prod-billing-deploy-v3","actor":"user:j.patel@acme.com","mode":"fixed","event_id":"00000000-0000-0000-0000-000000000000","source":{"topic":"audit.raw","partition":0,"offset":7}},{"ts":"2026-04-18T14:22:09.000Z","ts_ms":1776522129000,"action":"deploy","artifact":"billing-service@v4.2.1","result":"allowed","policy":"prod-billing-deploy-v3","actor":"user:j.patel@acme.com","mode":"fixed","event_id":"ffffffff-ffff-ffff-ffff-ffffffffffff","source":{"topic":"audit.raw","partition":1,"offset":3}}]}"#;

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
    fn fast_rfc3339_matches_chrono() {
        let chrono = |ms: i64| Utc.timestamp_millis_opt(ms).single().unwrap().to_rfc3339_opts(SecondsFormat::Millis, true);
        let edges = [0, -1, 1, 951_782_400_000, 1_776_522_127_441, -62_167_219_200_000, 253_402_300_799_999, 4_107_542_399_999];
        for ms in edges.into_iter().chain((-40_000i64..40_000).map(|d| d * 1_550_000_007 + 13)) {
            let fast = rfc3339_bytes(ms).unwrap_or_else(|| panic!("{ms} is in range"));
            assert_eq!(std::str::from_utf8(&fast).unwrap(), chrono(ms), "{ms}");
        }
        assert_eq!(rfc3339_bytes(-62_167_219_200_001), None);
        assert_eq!(rfc3339_bytes(253_402_300_800_000), None);
    }

    #[test]
    fn rule_hit_json_bytes_are_pinned() {
        let summary = sample();
        let hit = crate::pipeline::window::output::RuleHit {
            rule: "flip".into(),
            rule_type: crate::pipeline::window::output::RuleType::DenyThenAllow,
            trace: "tr-\"q\"".into(),
            summary_id: summary.summary_id,
            hit_id: Uuid::from_u128(7),
            severity: 7,
            events: summary.steps.clone(),
            ts_ms: 1_776_522_129_000,
            description: "deny then allow".into(),
        };
        let mut out = Vec::new();
        hit.to_json(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), HIT_PINNED);
    }

    #[test]
    fn json_bytes_are_pinned() {
        let mut out = Vec::new();
        sample().to_json(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), PINNED);
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
