//! `auditflow replay`: the same [`Pipeline`] with no Kafka. NDJSON in (one record value per
//! line), one NDJSON file per output topic out (`<dir>/<topic>.ndjson`).
//!
//! SIEM and alert outputs are written as their payloads, one per line. Dead letters are written
//! as a JSON object with the error headers and the original line, since a file has no headers.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::model::SourceRecord;
use crate::pipeline::Pipeline;

/// Counts from one replay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Input records read.
    pub records: u64,
    /// Records per output topic.
    pub outputs: Vec<(String, u64)>,
}

/// Replays every line of `input` through `pipeline` into files under `output_dir`.
/// `ingest_ms` is the ingest time recorded in provenance (fixed, so replays are reproducible).
pub fn replay(
    pipeline: &mut Pipeline,
    input: impl BufRead,
    source_name: &str,
    output_dir: &Path,
    dead_letter_topic: &str,
    ingest_ms: i64,
) -> std::io::Result<ReplaySummary> {
    std::fs::create_dir_all(output_dir)?;
    let mut files: HashMap<String, (BufWriter<File>, u64)> = HashMap::new();
    let mut summary = ReplaySummary::default();
    for (index, line) in input.split(b'\n').enumerate() {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.records += 1;
        let record = SourceRecord {
            topic: source_name.to_owned(),
            partition: 0,
            offset: index as i64,
            payload: Some(line),
            ..SourceRecord::default()
        };
        for output in pipeline.process(&record, ingest_ms) {
            let entry = match files.get_mut(&output.topic) {
                Some(entry) => entry,
                None => {
                    let file = File::create(output_dir.join(format!("{}.ndjson", output.topic)))?;
                    files.entry(output.topic.clone()).or_insert((BufWriter::new(file), 0))
                }
            };
            if output.topic == dead_letter_topic {
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
    }
    for (topic, (mut writer, count)) in files {
        writer.flush()?;
        summary.outputs.push((topic, count));
    }
    summary.outputs.sort();
    Ok(summary)
}
