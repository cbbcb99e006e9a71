//! Fuzzes the whole core on arbitrary record values: JSON, Confluent-framed Avro (with the
//! reader schema and a second registered version), and everything else. The invariant: no panic,
//! and either outputs or exactly one dead letter carrying the original bytes.
#![no_main]

use std::sync::Mutex;

use auditflow::config::Config;
use auditflow::model::SourceRecord;
use auditflow::pipeline::Pipeline;
use libfuzzer_sys::fuzz_target;

static PIPELINE: Mutex<Option<Pipeline>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = PIPELINE.lock().unwrap();
    let pipeline = guard.get_or_insert_with(|| {
        let mut config = Config::default();
        config.registry.url = Some("http://unused".into());
        let mut pipeline = Pipeline::new(config.pipeline_settings());
        pipeline.schemas_mut().insert(1, auditflow::schemas::AUDIT_EVENT);
        pipeline.schemas_mut().insert_unknown(2);
        pipeline
    });
    let record = SourceRecord { topic: "fuzz".into(), payload: Some(data.to_vec()), ..SourceRecord::default() };
    let outputs = pipeline.process(&record, 0);
    assert!(!outputs.is_empty());
    if outputs.iter().any(|o| o.topic == "audit.dlq") {
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].payload.as_deref(), Some(data));
    }
});
