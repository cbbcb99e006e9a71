//! The pure core: one [`SourceRecord`] in, its [`Outputs`] out. No Kafka, no clock, no I/O.
//!
//! ```text
//! record ─► decode ─► validate ─► enrich ─┬─► siem/<format> ─► audit.siem.<format>  (key: event id)
//!             │ bad       │ bad            └─► route: denied ─► audit.alerts        (key: trace)
//!             └───────────┴──► dead letter ─► audit.dlq (original key and bytes, error headers)
//! ```
//! Every record yields at least one output: a record is never dropped. Last, every output is
//! checked against the producer's `message.max.bytes` ([`limit`]): what cannot be sent becomes a
//! dead letter.

pub mod changelog;
pub mod decode;
pub mod enrich;
pub mod enriched;
pub mod limit;
pub mod reject;
pub mod route;
pub mod validate;
pub mod window;

use std::sync::Arc;

use chrono::{SecondsFormat, TimeZone, Utc};

use crate::model::{EnrichedEvent, Output, Outputs, SourceRecord};
use crate::siem::Encoder;
use decode::avro::AvroSchemas;
use decode::{DecodeLimits, WireFormat};
use enrich::catalog::PolicyCatalog;
use enrich::{Enricher, SeverityLadder};
use enriched::EnrichedAvro;
use reject::{Reject, RejectCode};
use route::Route;
use validate::ValidateSettings;
use window::{WindowOutput, WindowSettings, Windows};

/// Dead-letter header names (`docs/input.md`, "Dead-letter contract").
pub mod dlq_headers {
    /// The stable error code, e.g. `decode.invalid_json`.
    pub const CODE: &str = "auditflow.error.code";
    /// A one-line message for people.
    pub const MESSAGE: &str = "auditflow.error.message";
    /// The topic the record was read from.
    pub const TOPIC: &str = "auditflow.source.topic";
    /// The partition the record was read from, in decimal.
    pub const PARTITION: &str = "auditflow.source.partition";
    /// The offset of the record, in decimal.
    pub const OFFSET: &str = "auditflow.source.offset";
    /// When auditflow rejected the record, RFC 3339 UTC with milliseconds.
    pub const FAILED_AT: &str = "auditflow.failed.at";
}

/// Output topic names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Alerts (denied events).
    pub alerts: String,
    /// Dead letters.
    pub dead_letter: String,
    /// Prefix of the SIEM sink topics; the format name is appended (`audit.siem.` + `ecs`).
    pub siem_prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics { alerts: "audit.alerts".into(), dead_letter: "audit.dlq".into(), siem_prefix: "audit.siem.".into() }
    }
}

/// Everything the core needs, built once from configuration.
pub struct PipelineSettings {
    /// Output topic names.
    pub topics: Topics,
    /// Size limits checked before parsing.
    pub limits: DecodeLimits,
    /// Largest record the producer sends (its `message.max.bytes`): larger outputs become dead
    /// letters ([`limit`]).
    pub max_output_bytes: usize,
    /// Field rules.
    pub validate: ValidateSettings,
    /// Severity by decision.
    pub severity: SeverityLadder,
    /// The policy catalog at start; replace it later with [`Pipeline::set_catalog`].
    pub catalog: Option<Arc<PolicyCatalog>>,
    /// The enabled SIEM encoders; each writes to `topics.siem_prefix + name()`.
    pub encoders: Vec<Box<dyn Encoder>>,
    /// Accept Confluent-framed Avro (a registry is configured); otherwise such records are
    /// dead-lettered as `decode.unknown_format`.
    pub avro_enabled: bool,
    /// Extra routes, in order; an event may match several.
    pub routes: Vec<Route>,
    /// Topic of the enriched Avro output; written once the shell calls [`Pipeline::enable_enriched`].
    pub enriched_topic: Option<String>,
    /// Stamp outputs with the event time (true) or leave the timestamp to the producer (false:
    /// the time of sending). Dead letters keep the input record's timestamp either way.
    pub event_time_timestamps: bool,
    /// Benchmark baseline: forward every record unchanged to this topic and do nothing else.
    pub passthrough: Option<String>,
    /// Per-trace windows; `None` disables them.
    pub window: Option<WindowSettings>,
    /// Topic of trace summaries and late-event records.
    pub sequences_topic: String,
}

/// The core pipeline. See the module docs for the data flow.
pub struct Pipeline {
    windows: Option<Windows>,
    settings: PipelineSettings,
    enricher: Enricher,
    enriched: Option<EnrichedAvro>,
    siem_topics: Vec<String>,
    /// Capacity to give each format's next payload (see `process_valid`).
    siem_sizes: Vec<usize>,
    schemas: AvroSchemas,
    /// Topic of the window changelog (exactly-once mode); see [`changelog`].
    changelog: Option<String>,
    /// Avro trace summaries, and the topic late events go to then.
    window_avro: Option<WindowAvro>,
    /// The latest wall time given to `process` or `advance`, for output timestamps.
    now_ms: i64,
}

/// Event times further ahead of the wall clock than this are not used as output timestamps
/// (the producer's send time is used instead): Kafka rejects records stamped more than
/// `log.message.timestamp.after.max.ms` (1 h by default) in the future, and an event that far
/// ahead is a clock problem at its source, not a time to index by.
pub const MAX_STAMP_AHEAD_MS: i64 = 50 * 60 * 1000;

/// Writes Avro datums of one of the project's schemas in the Confluent wire format (magic byte,
/// schema id, datum), for a schema id the shell registered.
struct AvroWriter {
    writer: apache_avro::writer::datum::GenericDatumWriter<'static>,
    schema_id: u32,
}

impl AvroWriter {
    fn new(schema: &'static str, schema_id: u32) -> Self {
        // One schema for the life of the process: leaked so the writer can borrow it.
        let schema: &'static apache_avro::Schema =
            Box::leak(Box::new(apache_avro::Schema::parse_str(schema).expect("the project's schemas are valid")));
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema).build().expect("the project's schemas resolve");
        AvroWriter { writer, schema_id }
    }

    fn encode(&self, value: apache_avro::types::Value, out: &mut Vec<u8>) {
        out.push(0);
        out.extend_from_slice(&self.schema_id.to_be_bytes());
        // Values are built to their schema (unit tests validate them); a mismatch is a bug.
        let datum = self.writer.write_value_to_vec(value).expect("value matches its schema");
        out.extend_from_slice(&datum);
    }
}

/// With `window.summary_format = "avro"`: trace summaries (`schemas/trace_summary.avsc`) on the
/// sequences topic, late events (`schemas/late_event.avsc`) on their own topic, so that each
/// topic holds one schema.
struct WindowAvro {
    summary: AvroWriter,
    late: AvroWriter,
    late_topic: String,
}

impl Pipeline {
    /// Builds a pipeline.
    pub fn new(settings: PipelineSettings) -> Self {
        let siem_topics: Vec<String> = settings.encoders.iter().map(|e| format!("{}{}", settings.topics.siem_prefix, e.name())).collect();
        let enricher = Enricher { ladder: settings.severity, catalog: settings.catalog.clone() };
        let windows = settings.window.clone().map(Windows::new);
        Pipeline {
            windows,
            settings,
            enricher,
            enriched: None,
            siem_sizes: vec![1024; siem_topics.len()],
            siem_topics,
            schemas: AvroSchemas::new(),
            changelog: None,
            window_avro: None,
            now_ms: 0,
        }
    }

    /// Closes windows of partitions idle for the configured timeout, at wall time `now_ms`.
    pub fn advance(&mut self, now_ms: i64) -> Outputs {
        self.now_ms = now_ms;
        match self.windows.as_mut() {
            Some(windows) => {
                let closed = windows.advance(now_ms);
                let outputs = self.window_outputs(closed);
                self.fit(outputs, None)
            }
            None => Vec::new(),
        }
    }

    /// Closes every open window (graceful shutdown): their summaries and rule hits.
    pub fn flush_windows(&mut self) -> Outputs {
        match self.windows.as_mut() {
            Some(windows) => {
                let closed = windows.flush_all();
                let outputs = self.window_outputs(closed);
                self.fit(outputs, None)
            }
            None => Vec::new(),
        }
    }

    /// Forgets the windows of a revoked partition without emitting them: its new owner re-reads
    /// from the first held offset (the committed offset never passed it) and rebuilds them.
    pub fn drop_partition(&mut self, topic: &str, partition: i32) {
        if let Some(windows) = self.windows.as_mut() {
            windows.flush_partition(topic, partition);
        }
    }

    /// Windows closed so far, and how many of them early by a bound (`truncated`).
    pub fn windows_closed(&self) -> (u64, u64) {
        self.windows.as_ref().map_or((0, 0), |w| (w.closed_windows(), w.truncated_windows()))
    }

    /// Open trace windows, late events so far.
    pub fn window_stats(&self) -> (usize, u64) {
        self.windows.as_ref().map_or((0, 0), |w| (w.open_traces(), w.late_events()))
    }

    /// Turns window outputs into records: summaries and late events to the sequences topic, rule
    /// hits to the alert topic, all keyed by trace. A summary and the hits after it hold the first
    /// offset of each partition of the window until acknowledged.
    fn window_outputs(&self, closed: Vec<WindowOutput>) -> Outputs {
        let mut outputs = Vec::with_capacity(closed.len());
        let mut holds: Vec<(String, i32, i64)> = Vec::new();
        for item in closed {
            match &item {
                WindowOutput::Summary(summary) => {
                    holds.clear();
                    for step in &summary.steps {
                        match holds.iter_mut().find(|(t, p, _)| *p == step.partition && t == step.topic()) {
                            Some(hold) => hold.2 = hold.2.min(step.offset),
                            None => holds.push((step.topic().to_owned(), step.partition, step.offset)),
                        }
                    }
                }
                WindowOutput::RuleHit(_) => {}
                WindowOutput::Late(_) => holds.clear(),
            }
            let topic = match (&item, &self.window_avro) {
                (WindowOutput::RuleHit(_), _) => &self.settings.topics.alerts,
                (WindowOutput::Late(_), Some(avro)) => &avro.late_topic,
                _ => &self.settings.sequences_topic,
            };
            let mut payload = Vec::with_capacity(1024);
            match (&item, &self.window_avro) {
                (WindowOutput::Summary(summary), Some(avro)) => avro.summary.encode(summary.to_avro_value(), &mut payload),
                (WindowOutput::Late(late), Some(avro)) => avro.late.encode(late.to_avro_value(), &mut payload),
                _ => item.to_json(&mut payload),
            }
            outputs.push(Output {
                topic: topic.clone(),
                key: Some(item.trace().as_bytes().to_vec()),
                payload: Some(payload),
                headers: Vec::new(),
                timestamp_ms: self.stamp(item.timestamp_ms()),
                holds: holds.clone(),
                partition: None,
            });
            if let (Some(changelog), WindowOutput::Summary(summary)) = (&self.changelog, &item) {
                for step in &summary.steps {
                    outputs.push(changelog::tombstone(changelog, step.topic(), step.partition, step.offset));
                }
            }
        }
        outputs
    }

    /// The output timestamp for event time `ts_ms`: `None` (the send time) unless outputs carry
    /// event time and `ts_ms` is at most [`MAX_STAMP_AHEAD_MS`] ahead of the wall clock.
    fn stamp(&self, ts_ms: i64) -> Option<i64> {
        (self.settings.event_time_timestamps && (self.now_ms == 0 || ts_ms <= self.now_ms.saturating_add(MAX_STAMP_AHEAD_MS)))
            .then_some(ts_ms)
    }

    /// Writes trace summaries as Avro with the registered `summary_schema_id` from now on, and
    /// late events as Avro with `late_schema_id` to `late_topic` (the shell registers
    /// `schemas/trace_summary.avsc` and `schemas/late_event.avsc` first).
    pub fn enable_avro_summaries(&mut self, summary_schema_id: u32, late_schema_id: u32, late_topic: String) {
        self.window_avro = Some(WindowAvro {
            summary: AvroWriter::new(crate::schemas::TRACE_SUMMARY, summary_schema_id),
            late: AvroWriter::new(crate::schemas::LATE_EVENT, late_schema_id),
            late_topic,
        });
    }

    /// Writes window changelog records to `topic` from now on (exactly-once mode): an entry for
    /// every event that enters a window, a tombstone for every step of a closed one.
    pub fn enable_changelog(&mut self, topic: String) {
        self.changelog = Some(topic);
    }

    /// Re-feeds a changelog entry (see [`changelog::Restore`]) into the windows. It only closes a
    /// window when a bound (`max_events_per_trace`) says so; those outputs are returned.
    /// Call [`Pipeline::finish_restore`] after the last one.
    pub fn restore(&mut self, record: &SourceRecord, now_ms: i64) -> Outputs {
        let Ok(enriched) = self.decode_enrich(record, now_ms) else { return Vec::new() };
        let closed = match self.windows.as_mut() {
            Some(windows) => windows.restore(&enriched, now_ms),
            None => return Vec::new(),
        };
        let outputs = self.window_outputs(closed);
        self.fit(outputs, None)
    }

    /// The highest event time of a partition's windowed events (see [`window::Windows::max_event_time`]);
    /// `None` without windows or before its first event.
    pub fn max_event_time(&self, topic: &str, partition: i32) -> Option<i64> {
        self.windows.as_ref()?.max_event_time(topic, partition)
    }

    /// Re-sets a partition's highest event time saved in the changelog (before
    /// [`Pipeline::finish_restore`]).
    pub fn restore_event_time(&mut self, topic: &str, partition: i32, max_ts: i64) {
        if let Some(windows) = self.windows.as_mut() {
            windows.restore_event_time(topic, partition, max_ts);
        }
    }

    /// Ends a restore: watermarks move to the restored events' times, and the windows they pass
    /// close (their outputs are new: the saved state had them open).
    pub fn finish_restore(&mut self) -> Outputs {
        match self.windows.as_mut() {
            Some(windows) => {
                let closed = windows.finish_restore();
                let outputs = self.window_outputs(closed);
                self.fit(outputs, None)
            }
            None => Vec::new(),
        }
    }

    /// Starts writing enriched Avro records with the registered `schema_id` (the shell registers
    /// `schemas/enriched_event.avsc` first).
    pub fn enable_enriched(&mut self, schema_id: u32) {
        self.enriched = Some(EnrichedAvro::new(schema_id));
    }

    /// Replaces the policy catalog (the shell calls it when the catalog file changed).
    pub fn set_catalog(&mut self, catalog: Arc<PolicyCatalog>) {
        self.enricher.catalog = Some(catalog);
    }

    /// The schema id this record needs and the cache lacks, if any. The shell fetches it from
    /// the registry and hands it over with [`Pipeline::schemas_mut`] before calling `process`.
    pub fn schema_needed(&self, record: &SourceRecord) -> Option<u32> {
        if !self.settings.avro_enabled {
            return None;
        }
        match decode::detect(record.payload.as_deref(), self.settings.limits) {
            Ok(WireFormat::ConfluentAvro { schema_id }) if !self.schemas.contains(schema_id) => Some(schema_id),
            _ => None,
        }
    }

    /// The first offset of `topic`/`partition` still held by an open trace window, if any: the
    /// shell never commits past it, so a restart rebuilds the window by re-reading.
    pub fn held_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.windows.as_ref().and_then(|w| w.held_offset(topic, partition))
    }

    /// The writer-schema cache, to fill with the registry's answers.
    pub fn schemas_mut(&mut self) -> &mut AvroSchemas {
        &mut self.schemas
    }

    /// The output topics to partition sticky (`docs/operations.md`, "Partitioning"): the SIEM
    /// topics if `siem`, the topics keyed by trace id if `traces`. Never the dead-letter topic
    /// (original keys) nor, in passthrough mode, the copy (the baseline keeps the input's
    /// partitioning).
    pub fn sticky_topics(&self, siem: bool, traces: bool) -> Vec<String> {
        if self.settings.passthrough.is_some() {
            return Vec::new();
        }
        let mut topics = if traces { self.trace_keyed_topics() } else { Vec::new() };
        if siem {
            topics.extend(self.siem_topics.iter().cloned());
        }
        topics.sort();
        topics.dedup();
        topics
    }

    /// Every topic this pipeline may write to, for start-up checks.
    pub fn output_topics(&self) -> Vec<String> {
        if let Some(topic) = &self.settings.passthrough {
            return vec![topic.clone()];
        }
        let mut topics = self.trace_keyed_topics();
        topics.push(self.settings.topics.dead_letter.clone());
        topics.extend(self.siem_topics.iter().cloned());
        topics
    }

    /// The outputs keyed by trace id: alerts, enriched records, routes, sequences, late events.
    fn trace_keyed_topics(&self) -> Vec<String> {
        let mut topics = vec![self.settings.topics.alerts.clone()];
        topics.extend(self.settings.enriched_topic.iter().cloned());
        topics.extend(self.settings.routes.iter().map(|r| r.topic.clone()));
        if self.windows.is_some() {
            topics.push(self.settings.sequences_topic.clone());
        }
        if let Some(avro) = &self.window_avro {
            topics.push(avro.late_topic.clone());
        }
        topics
    }

    /// Processes one record read at `now_ms` (epoch milliseconds). Never fails: a bad record
    /// becomes a dead-letter output.
    pub fn process(&mut self, record: &SourceRecord, now_ms: i64) -> Outputs {
        self.now_ms = now_ms;
        let outputs = self.process_unchecked(record, now_ms);
        self.fit(outputs, Some(record))
    }

    /// [`Pipeline::process`] before the size check.
    fn process_unchecked(&mut self, record: &SourceRecord, now_ms: i64) -> Outputs {
        if let Some(topic) = &self.settings.passthrough {
            return vec![Output {
                topic: topic.clone(),
                key: record.key.clone(),
                payload: record.payload.clone(),
                headers: record.headers.clone(),
                timestamp_ms: record.timestamp_ms,
                holds: Vec::new(),
                partition: None,
            }];
        }
        match self.process_valid(record, now_ms) {
            Ok(outputs) => outputs,
            Err(reject) => vec![self.dead_letter(record, &reject, now_ms)],
        }
    }

    /// The first stage for input not keyed by trace: a valid record goes unchanged (value,
    /// headers, timestamp) to `topic` keyed by its trace, so that the second stage, which reads
    /// `topic` with [`Pipeline::process`], sees every event of a trace in one partition. An
    /// invalid record is dead-lettered here, with its original position.
    pub fn repartition(&mut self, record: &SourceRecord, topic: &str, now_ms: i64) -> Outputs {
        self.now_ms = now_ms;
        let trace = match self.decode_enrich(record, now_ms) {
            Ok(enriched) => enriched.event.trace,
            Err(reject) => return self.fit(vec![self.dead_letter(record, &reject, now_ms)], Some(record)),
        };
        let outputs = vec![Output {
            topic: topic.to_owned(),
            key: Some(trace.into_bytes()),
            payload: record.payload.clone(),
            headers: record.headers.clone(),
            timestamp_ms: record.timestamp_ms,
            holds: Vec::new(),
            partition: None,
        }];
        self.fit(outputs, Some(record))
    }

    /// Decode, validate and enrich: the event of a record, or why it is rejected.
    fn decode_enrich(&mut self, record: &SourceRecord, now_ms: i64) -> Result<EnrichedEvent, Reject> {
        let payload = record.payload.as_deref();
        let raw = match decode::detect(payload, self.settings.limits)? {
            WireFormat::Json => decode::json::decode(payload.unwrap_or_default())?,
            WireFormat::ConfluentAvro { schema_id } if self.settings.avro_enabled => {
                self.schemas.decode(schema_id, &payload.unwrap_or_default()[5..])?
            }
            WireFormat::ConfluentAvro { schema_id } => {
                return Err(Reject::new(
                    RejectCode::UnknownFormat,
                    format!("confluent avro record (schema id {schema_id}) but no schema registry is configured (registry.url)"),
                ))
            }
        };
        let event = validate::validate(raw, &self.settings.validate)?;
        Ok(self.enricher.enrich(event, record, now_ms))
    }

    fn process_valid(&mut self, record: &SourceRecord, now_ms: i64) -> Result<Outputs, Reject> {
        let enriched = self.decode_enrich(record, now_ms)?;
        let mut outputs = Vec::with_capacity(self.siem_topics.len() + 1);
        let stamp = self.stamp(enriched.event.ts_ms);
        let event_key = enriched.event_id.as_bytes().to_vec();
        // What several formats write alike (the message), rendered once for all of them.
        let shared = crate::siem::Shared::for_formats(self.settings.encoders.len());
        for ((encoder, topic), size) in self.settings.encoders.iter().zip(&self.siem_topics).zip(&mut self.siem_sizes) {
            // Sized from the format's previous record plus a margin: one allocation, no regrowth
            // in the common case, and little slack held while the record waits to be sent.
            let mut payload = Vec::with_capacity(*size);
            encoder.encode_shared(&enriched, &shared, &mut payload);
            *size = payload.len() + payload.len() / 4 + 64;
            outputs.push(Output {
                topic: topic.clone(),
                key: Some(event_key.clone()),
                payload: Some(payload),
                headers: Vec::new(),
                timestamp_ms: stamp,
                holds: Vec::new(),
                partition: None,
            });
        }
        let trace_key = enriched.event.trace.as_bytes();
        if let (Some(avro), Some(topic)) = (&self.enriched, &self.settings.enriched_topic) {
            let mut payload = Vec::with_capacity(512);
            avro.encode(&enriched, &mut payload);
            outputs.push(Output {
                topic: topic.clone(),
                key: Some(trace_key.to_vec()),
                payload: Some(payload),
                headers: Vec::new(),
                timestamp_ms: stamp,
                holds: Vec::new(),
                partition: None,
            });
        }
        for route in self.settings.routes.iter().filter(|r| r.when.eval(&enriched)) {
            let mut payload = Vec::with_capacity(768);
            enriched::encode_json(&enriched, &mut payload);
            outputs.push(Output {
                topic: route.topic.clone(),
                key: Some(trace_key.to_vec()),
                payload: Some(payload),
                headers: vec![("auditflow.route".to_owned(), Some(route.name.as_bytes().to_vec()))],
                timestamp_ms: stamp,
                holds: Vec::new(),
                partition: None,
            });
        }
        if let Some(windows) = self.windows.as_mut() {
            let closed = windows.add(&enriched, now_ms);
            if let Some(topic) = &self.changelog {
                // Before the window outputs: a window closed by this very event tombstones it.
                if !closed.iter().any(|o| matches!(o, WindowOutput::Late(_))) {
                    outputs.push(changelog::entry(topic, record));
                }
            }
            if !closed.is_empty() {
                outputs.extend(self.window_outputs(closed));
            }
        }
        if route::is_alert(&enriched) {
            let mut payload = Vec::with_capacity(768);
            route::encode_alert(&enriched, &mut payload);
            outputs.push(Output {
                topic: self.settings.topics.alerts.clone(),
                key: Some(enriched.event.trace.as_bytes().to_vec()),
                payload: Some(payload),
                headers: Vec::new(),
                timestamp_ms: stamp,
                holds: Vec::new(),
                partition: None,
            });
        }
        Ok(outputs)
    }

    /// The dead-letter record for `record`: original key, value and headers, plus error headers.
    fn dead_letter(&self, record: &SourceRecord, reject: &Reject, now_ms: i64) -> Output {
        let failed_at = failed_at(now_ms);
        let mut headers = record.headers.clone();
        for (name, value) in [
            (dlq_headers::CODE, reject.code.as_str().to_owned()),
            (dlq_headers::MESSAGE, reject.message.clone()),
            (dlq_headers::TOPIC, record.topic.clone()),
            (dlq_headers::PARTITION, record.partition.to_string()),
            (dlq_headers::OFFSET, record.offset.to_string()),
            (dlq_headers::FAILED_AT, failed_at),
        ] {
            headers.push((name.to_owned(), Some(value.into_bytes())));
        }
        Output {
            topic: self.settings.topics.dead_letter.clone(),
            key: record.key.clone(),
            payload: record.payload.clone(),
            headers,
            timestamp_ms: record.timestamp_ms,
            holds: Vec::new(),
            partition: None,
        }
    }

    /// Makes every output fit `max_output_bytes` ([`limit`]). `record` is the record whose
    /// outputs these are (`None` for window outputs closed by time, flush or restore): its own
    /// outputs (those without `holds`) that do not fit are left out and the record is
    /// dead-lettered once, naming them; other outputs that do not fit are dead-lettered
    /// themselves; dead letters are cut to fit.
    fn fit(&self, outputs: Outputs, record: Option<&SourceRecord>) -> Outputs {
        let max = self.settings.max_output_bytes;
        if outputs.iter().all(|output| limit::wire_size(output) <= max) {
            return outputs;
        }
        let mut kept = Vec::with_capacity(outputs.len() + 1);
        let mut left_out = Vec::new();
        for mut output in outputs {
            let size = limit::wire_size(&output);
            if size <= max {
                kept.push(output);
            } else if output.topic == self.settings.topics.dead_letter {
                limit::truncate(&mut output, max);
                kept.push(output);
            } else if record.is_some() && output.holds.is_empty() {
                left_out.push(format!("{} ({size} bytes)", output.topic));
            } else {
                kept.push(self.dead_letter_output(output, size));
            }
        }
        if let (Some(record), false) = (record, left_out.is_empty()) {
            let reject = Reject::new(
                RejectCode::OutputTooLarge,
                format!("outputs larger than the producer's message.max.bytes ({max}) left out: {}", left_out.join(", ")),
            );
            let mut letter = self.dead_letter(record, &reject, self.now_ms);
            limit::truncate(&mut letter, max);
            kept.push(letter);
        }
        kept
    }

    /// A window output too large to send, as a dead letter: its own key and bytes (cut to fit),
    /// its destination in [`limit::OUTPUT_TOPIC`], and its `holds`, so the input offsets it
    /// covers still wait for it.
    fn dead_letter_output(&self, output: Output, size: usize) -> Output {
        let max = self.settings.max_output_bytes;
        let failed_at = failed_at(self.now_ms);
        let mut headers = output.headers;
        for (name, value) in [
            (dlq_headers::CODE, RejectCode::OutputTooLarge.as_str().to_owned()),
            (
                dlq_headers::MESSAGE,
                format!("a {size}-byte record for {} is larger than the producer's message.max.bytes ({max})", output.topic),
            ),
            (limit::OUTPUT_TOPIC, output.topic),
            (dlq_headers::FAILED_AT, failed_at),
        ] {
            headers.push((name.to_owned(), Some(value.into_bytes())));
        }
        let mut letter = Output {
            topic: self.settings.topics.dead_letter.clone(),
            key: output.key,
            payload: output.payload,
            headers,
            timestamp_ms: output.timestamp_ms,
            holds: output.holds,
            partition: None,
        };
        limit::truncate(&mut letter, max);
        letter
    }
}

/// The `auditflow.failed.at` header value for wall time `now_ms`: RFC 3339 UTC, milliseconds.
fn failed_at(now_ms: i64) -> String {
    Utc.timestamp_millis_opt(now_ms).single().map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
