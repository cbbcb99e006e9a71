//! `auditflow replay`: the same [`Pipeline`] with no Kafka. Records in, one NDJSON file per output
//! topic out (`<dir>/<topic>.ndjson`).
//!
//! ```text
//! NDJSON (one record value per line) ─┐
//!                                     ├─► Pipeline::process ─► <dir>/<topic>.ndjson
//! Avro object container file ─────────┘   end of input: open windows flushed
//! ```
//!
//! An Avro object container file (detected by its `Obj\x01` magic) is read with the writer schema
//! in its header: each datum goes through the same Avro decoding as a Confluent-framed Kafka
//! record, with the file's schema standing in for the registry's.
//!
//! SIEM and alert outputs are written as their payloads, one per line. Dead letters are written
//! as a JSON object with the error headers and the original value, since a file has no headers.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::model::{Output, SourceRecord};
use crate::pipeline::Pipeline;

/// Counts from one replay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Input records read.
    pub records: u64,
    /// Records per output topic.
    pub outputs: Vec<(String, u64)>,
}

/// The schema id under which an Avro container file's writer schema is given to the pipeline
/// (files carry their schema; there is no registry id).
const FILE_SCHEMA_ID: u32 = 0;

/// The magic bytes that open an Avro object container file.
pub const AVRO_MAGIC: &[u8; 4] = b"Obj\x01";

/// Replays `input` (NDJSON, or an Avro object container file when it starts with
/// [`AVRO_MAGIC`]) through `pipeline` into files under `output_dir`, then flushes the open
/// windows. `ingest_ms` is the ingest time recorded in provenance (fixed, so replays are
/// reproducible). `progress` is called with the number of records read so far.
pub fn replay(
    pipeline: &mut Pipeline,
    mut input: impl BufRead,
    source_name: &str,
    output_dir: &Path,
    dead_letter_topic: &str,
    ingest_ms: i64,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<ReplaySummary> {
    std::fs::create_dir_all(output_dir)?;
    let mut sink = Sink { dir: output_dir, dead_letter_topic, files: HashMap::new() };
    let mut summary = ReplaySummary::default();
    let is_avro = input.fill_buf()?.starts_with(AVRO_MAGIC);
    let mut each = |record: SourceRecord, pipeline: &mut Pipeline| -> std::io::Result<()> {
        summary.records += 1;
        progress(summary.records);
        sink.write(pipeline.process(&record, ingest_ms))
    };
    if is_avro {
        avro_records(pipeline, input, source_name, &mut each)?;
    } else {
        ndjson_records(input, source_name, |record| each(record, pipeline))?;
    }
    sink.write(pipeline.flush_windows())?;
    summary.outputs = sink.finish()?;
    Ok(summary)
}

/// Calls `each` with a record per non-blank line.
fn ndjson_records(
    input: impl BufRead,
    source_name: &str,
    mut each: impl FnMut(SourceRecord) -> std::io::Result<()>,
) -> std::io::Result<()> {
    for (index, line) in input.split(b'\n').enumerate() {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        each(SourceRecord {
            topic: source_name.to_owned(),
            partition: 0,
            offset: index as i64,
            payload: Some(line),
            ..SourceRecord::default()
        })?;
    }
    Ok(())
}

/// Calls `each` with a Confluent-framed record per datum of an Avro container file, after giving
/// the pipeline the file's writer schema.
fn avro_records(
    pipeline: &mut Pipeline,
    input: impl Read,
    source_name: &str,
    each: &mut dyn FnMut(SourceRecord, &mut Pipeline) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let invalid = |error: apache_avro::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("avro container file: {error}"));
    let reader = apache_avro::Reader::new(input).map_err(invalid)?;
    let schema = reader.writer_schema().clone();
    let text = serde_json::to_string(&schema).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    pipeline.schemas_mut().insert(FILE_SCHEMA_ID, &text);
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build().map_err(invalid)?;
    for (index, value) in reader.enumerate() {
        let value = value.map_err(invalid)?;
        let mut payload = vec![0];
        payload.extend_from_slice(&FILE_SCHEMA_ID.to_be_bytes());
        writer.write_value(&mut payload, value).map_err(invalid)?;
        each(
            SourceRecord {
                topic: source_name.to_owned(),
                partition: 0,
                offset: index as i64,
                payload: Some(payload),
                ..SourceRecord::default()
            },
            pipeline,
        )?;
    }
    Ok(())
}

/// The output files, opened on first use.
struct Sink<'a> {
    dir: &'a Path,
    dead_letter_topic: &'a str,
    files: HashMap<String, (BufWriter<File>, u64)>,
}

impl Sink<'_> {
    fn write(&mut self, outputs: Vec<Output>) -> std::io::Result<()> {
        for output in outputs {
            let entry = match self.files.get_mut(&output.topic) {
                Some(entry) => entry,
                None => {
                    let file = File::create(self.dir.join(format!("{}.ndjson", output.topic)))?;
                    self.files.entry(output.topic.clone()).or_insert((BufWriter::new(file), 0))
                }
            };
            if output.topic == self.dead_letter_topic {
                let headers: Map<String, Value> = output
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(String::from_utf8_lossy(v.as_deref().unwrap_or_default()))))
                    .collect();
                let original = String::from_utf8_lossy(output.payload.as_deref().unwrap_or_default());
                serde_json::to_writer(&mut entry.0, &json!({"headers": headers, "value": original}))?;
            } else {
                entry.0.write_all(output.payload.as_deref().unwrap_or_default())?;
            }
            entry.0.write_all(b"\n")?;
            entry.1 += 1;
        }
        Ok(())
    }

    fn finish(self) -> std::io::Result<Vec<(String, u64)>> {
        let mut outputs = Vec::new();
        for (topic, (mut writer, count)) in self.files {
            writer.flush()?;
            outputs.push((topic, count));
        }
        outputs.sort();
        Ok(outputs)
    }
}
