//! The enriched event as a record of its own: JSON for extra routes, Avro
//! (`schemas/enriched_event.avsc`, Confluent wire format) for `audit.enriched`.
//!
//! Both carry the same fields: the canonical event, the parts derived from it, severity, policy
//! metadata, provenance and the extra fields (JSON values in JSON; JSON text per field in Avro).

use std::collections::HashMap;

use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::EnrichedEvent;
use crate::schemas;

#[derive(Serialize)]
struct Doc<'a> {
    event_id: &'a str,
    ts: &'a str,
    ts_ms: i64,
    actor: &'a str,
    actor_kind: &'a str,
    actor_id: &'a str,
    action: &'a str,
    artifact: &'a str,
    artifact_name: &'a str,
    artifact_version: Option<&'a str>,
    policy: &'a str,
    target: &'a str,
    provider: Option<&'a str>,
    region: Option<&'a str>,
    cluster: Option<&'a str>,
    mode: &'a str,
    trace: &'a str,
    result: &'a str,
    reason: Option<&'a str>,
    severity: u8,
    policy_owner: Option<&'a str>,
    policy_description: Option<&'a str>,
    compliance: &'a [String],
    policy_unknown: bool,
    source_topic: &'a str,
    source_partition: i32,
    source_offset: i64,
    ingest_ms: i64,
    extra: &'a Map<String, Value>,
}

fn doc(e: &EnrichedEvent) -> Doc<'_> {
    let t = e.target_parts();
    let meta = e.policy_meta.as_deref();
    Doc {
        event_id: &e.event_id,
        ts: &e.event.ts,
        ts_ms: e.event.ts_ms,
        actor: &e.event.actor,
        actor_kind: e.actor_kind(),
        actor_id: e.actor_id(),
        action: &e.event.action,
        artifact: &e.event.artifact,
        artifact_name: e.artifact_name(),
        artifact_version: e.artifact_version(),
        policy: &e.event.policy,
        target: &e.event.target,
        provider: t.map(|t| t.provider),
        region: t.map(|t| t.region),
        cluster: t.map(|t| t.cluster),
        mode: &e.event.mode,
        trace: &e.event.trace,
        result: &e.event.result,
        reason: e.event.reason.as_deref(),
        severity: e.severity,
        policy_owner: meta.and_then(|m| m.owner.as_deref()),
        policy_description: meta.and_then(|m| m.description.as_deref()),
        compliance: meta.map_or(&[], |m| m.compliance.as_slice()),
        policy_unknown: e.policy_unknown,
        source_topic: &e.provenance.topic,
        source_partition: e.provenance.partition,
        source_offset: e.provenance.offset,
        ingest_ms: e.provenance.ingest_ms,
        extra: &e.event.extra,
    }
}

/// Writes the enriched event as one JSON object (absent optional fields are `null`).
pub fn encode_json(e: &EnrichedEvent, out: &mut Vec<u8>) {
    // Borrowed strings, numbers and JSON values into a Vec: serialization cannot fail.
    crate::json_out::write(out, &doc(e));
}

/// Encodes enriched events as Avro datums of `schemas/enriched_event.avsc` in the Confluent wire
/// format, for a schema id the shell registered.
pub struct EnrichedAvro {
    writer: GenericDatumWriter<'static>,
    schema_id: u32,
}

impl EnrichedAvro {
    /// An encoder writing the header for `schema_id`.
    pub fn new(schema_id: u32) -> EnrichedAvro {
        // One schema for the life of the process: leaked so the writer can borrow it.
        let schema: &'static Schema =
            Box::leak(Box::new(Schema::parse_str(schemas::ENRICHED_EVENT).expect("enriched_event.avsc is valid")));
        let writer = GenericDatumWriter::builder(schema).build().expect("enriched_event.avsc resolves");
        EnrichedAvro { writer, schema_id }
    }

    /// Appends magic byte, schema id and the datum of `e` to `out`.
    pub fn encode(&self, e: &EnrichedEvent, out: &mut Vec<u8>) {
        out.push(0);
        out.extend_from_slice(&self.schema_id.to_be_bytes());
        let value = to_avro(&doc(e));
        // The value is built to the schema, field by field; a mismatch is a bug in this file.
        let datum = self.writer.write_value_to_vec(value).expect("enriched value matches its schema");
        out.extend_from_slice(&datum);
    }
}

/// An Avro `string`.
pub(crate) fn text(s: &str) -> Avro {
    Avro::String(s.to_owned())
}

/// An Avro `["null","string"]`.
pub(crate) fn opt(s: Option<&str>) -> Avro {
    match s {
        Some(s) => Avro::Union(1, Box::new(text(s))),
        None => Avro::Union(0, Box::new(Avro::Null)),
    }
}

/// Extra input fields as an Avro `map<string>` of their JSON texts.
pub(crate) fn extra_texts(extra: &Map<String, Value>) -> Avro {
    Avro::Map(extra.iter().map(|(k, v)| (k.clone(), Avro::String(v.to_string()))).collect::<HashMap<String, Avro>>())
}

fn to_avro(d: &Doc<'_>) -> Avro {
    Avro::Record(vec![
        ("event_id".into(), text(d.event_id)),
        ("ts".into(), text(d.ts)),
        ("ts_ms".into(), Avro::Long(d.ts_ms)),
        ("actor".into(), text(d.actor)),
        ("actor_kind".into(), text(d.actor_kind)),
        ("actor_id".into(), text(d.actor_id)),
        ("action".into(), text(d.action)),
        ("artifact".into(), text(d.artifact)),
        ("artifact_name".into(), text(d.artifact_name)),
        ("artifact_version".into(), opt(d.artifact_version)),
        ("policy".into(), text(d.policy)),
        ("target".into(), text(d.target)),
        ("provider".into(), opt(d.provider)),
        ("region".into(), opt(d.region)),
        ("cluster".into(), opt(d.cluster)),
        ("mode".into(), text(d.mode)),
        ("trace".into(), text(d.trace)),
        ("result".into(), text(d.result)),
        ("reason".into(), opt(d.reason)),
        ("severity".into(), Avro::Int(i32::from(d.severity))),
        ("policy_owner".into(), opt(d.policy_owner)),
        ("policy_description".into(), opt(d.policy_description)),
        ("compliance".into(), Avro::Array(d.compliance.iter().map(|c| text(c)).collect())),
        ("policy_unknown".into(), Avro::Boolean(d.policy_unknown)),
        ("source_topic".into(), text(d.source_topic)),
        ("source_partition".into(), Avro::Int(d.source_partition)),
        ("source_offset".into(), Avro::Long(d.source_offset)),
        ("ingest_ms".into(), Avro::Long(d.ingest_ms)),
        ("extra".into(), extra_texts(d.extra)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SourceRecord;
    use crate::pipeline::{decode::json, enrich, validate};
    use apache_avro::reader::datum::GenericDatumReader;

    fn event(text: &str) -> EnrichedEvent {
        let e = validate::validate(json::decode(text.as_bytes()).unwrap(), &Default::default()).unwrap();
        enrich::enrich(
            e,
            &SourceRecord { topic: "audit.raw".into(), partition: 2, offset: 9, ..Default::default() },
            5,
            &Default::default(),
        )
    }

    const EVENT: &str = r#"{"ts":"2026-03-14T09:26:53.120Z","actor":"user:a","action":"deploy","artifact":"svc@1.0","policy":"p","target":"aws:eu-west-1:c1","mode":"fixed","trace":"tr-1","result":"denied","reason":"why","ticket":"CHG-1","n":3}"#;

    #[test]
    fn avro_datum_has_the_confluent_header_and_reads_back() {
        let e = event(EVENT);
        let mut out = Vec::new();
        EnrichedAvro::new(77).encode(&e, &mut out);
        assert_eq!(&out[..5], &[0, 0, 0, 0, 77]);
        let schema = Schema::parse_str(schemas::ENRICHED_EVENT).unwrap();
        let value = GenericDatumReader::builder(&schema).build().unwrap().read_value(&mut &out[5..]).unwrap();
        let Avro::Record(fields) = value else { panic!() };
        let get = |name: &str| fields.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(get("event_id"), Avro::String(e.event_id.clone()));
        assert_eq!(get("cluster"), Avro::Union(1, Box::new(Avro::String("c1".into()))));
        assert_eq!(get("source_offset"), Avro::Long(9));
        let Avro::Map(extra) = get("extra") else { panic!() };
        assert_eq!(extra["ticket"], Avro::String("\"CHG-1\"".into()));
        assert_eq!(extra["n"], Avro::String("3".into()));
    }

    #[test]
    fn json_document_carries_everything() {
        let mut out = Vec::new();
        encode_json(&event(EVENT), &mut out);
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["artifact_name"], "svc");
        assert_eq!(doc["region"], "eu-west-1");
        assert_eq!(doc["severity"], 6);
        assert_eq!(doc["extra"]["ticket"], "CHG-1");
        assert_eq!(doc["source_partition"], 2);
    }
}
