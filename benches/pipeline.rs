//! Criterion benches of the core, per event: decode + validate on a typical ~400-byte JSON event,
//! and the whole pipeline (decode to ECS and alert outputs). Run with `cargo bench --bench pipeline`.

use auditflow::config::Config;
use auditflow::model::SourceRecord;
use auditflow::pipeline::{decode, validate, Pipeline};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

/// The allocator the binary runs with (`src/main.rs`), so that the figures are the production ones.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A typical event: the denied reference event with two deployment-specific extra fields (~420 bytes).
const EVENT: &[u8] = br#"{"ts":"2026-04-18T14:28:33.911Z","actor":"service:fraud-detector","action":"execute","artifact":"customer-lookup@v2.8.0","policy":"pii-access-restrict-v2","target":"aws:us-east-1:cluster-prod-02","mode":"adaptive","trace":"tr-8f2c7a91-2b14-4e8e","result":"denied","reason":"declared-purpose violation: pii_export not authorized","request_id":"req-4f1d2a9c-77e0","namespace":"payments"}"#;

fn decode_validate(c: &mut Criterion) {
    let settings = validate::ValidateSettings::default();
    let mut group = c.benchmark_group("decode_validate");
    group.throughput(Throughput::Elements(1));
    // Baseline measured in the same run: serde_json parsing the event into a generic value tree.
    // Report the stages as ratios to it; absolute times on shared machines are noisy.
    group
        .bench_function("baseline_serde_json_value", |b| b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(EVENT)).unwrap()));
    group.bench_function("json", |b| {
        b.iter(|| {
            let raw = decode::json::decode(black_box(EVENT)).unwrap();
            validate::validate(raw, &settings).unwrap()
        })
    });
    let mut schemas = auditflow::pipeline::decode::avro::AvroSchemas::new();
    schemas.insert(1, auditflow::schemas::AUDIT_EVENT);
    let datum = avro_datum();
    group.bench_function("avro", |b| {
        b.iter(|| {
            let raw = schemas.decode(1, black_box(&datum)).unwrap();
            validate::validate(raw, &settings).unwrap()
        })
    });
    group.finish();
}

/// The same event as `EVENT`, as an Avro datum of `schemas/audit_event.avsc` (extras in the map).
fn avro_datum() -> Vec<u8> {
    use apache_avro::types::Value as Avro;
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(EVENT).unwrap();
    let schema = apache_avro::Schema::parse_str(auditflow::schemas::AUDIT_EVENT).unwrap();
    let mut fields = Vec::new();
    let mut extra = std::collections::HashMap::new();
    for (key, value) in json {
        let text = value.as_str().unwrap().to_owned();
        match key.as_str() {
            "reason" => fields.push((key, Avro::Union(1, Box::new(Avro::String(text))))),
            "request_id" | "namespace" => {
                extra.insert(key, Avro::Union(4, Box::new(Avro::String(text))));
            }
            _ => fields.push((key, Avro::String(text))),
        }
    }
    fields.push(("extra".into(), Avro::Map(extra)));
    apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build().unwrap().write_value_to_vec(Avro::Record(fields)).unwrap()
}

fn enrich_and_encode(c: &mut Criterion) {
    let raw = decode::json::decode(EVENT).unwrap();
    let event = validate::validate(raw, &validate::ValidateSettings::default()).unwrap();
    let record = SourceRecord { topic: "audit.raw".into(), ..SourceRecord::default() };
    let mut group = c.benchmark_group("stage");
    group.throughput(Throughput::Elements(1));
    group.bench_function("enrich", |b| {
        b.iter(|| auditflow::pipeline::enrich::enrich(black_box(event.clone()), &record, 0, &Default::default()))
    });
    group.bench_function("clone_event_baseline", |b| b.iter(|| black_box(event.clone())));
    let enriched = auditflow::pipeline::enrich::enrich(event.clone(), &record, 0, &Default::default());
    let mut config = Config::default();
    config.siem.formats = auditflow::config::KNOWN_FORMATS.iter().map(|f| f.to_string()).collect();
    let mut out = Vec::with_capacity(4096);
    for encoder in config.pipeline_settings().encoders {
        group.bench_function(format!("encode_{}", encoder.name()), |b| {
            b.iter(|| {
                out.clear();
                encoder.encode(black_box(&enriched), &mut out);
            })
        });
    }
    group.finish();
}

fn whole_pipeline(c: &mut Criterion) {
    let record = SourceRecord { topic: "audit.raw".into(), payload: Some(EVENT.to_vec()), ..SourceRecord::default() };
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    let mut passthrough = Config::default();
    passthrough.passthrough.topic = Some("copy".into());
    let mut pipeline = Pipeline::new(passthrough.pipeline_settings());
    group.bench_function("passthrough_baseline", |b| b.iter(|| pipeline.process(black_box(&record), 0)));
    let mut pipeline = Pipeline::new(Config::default().pipeline_settings());
    group.bench_function("json_to_ecs_and_alert", |b| b.iter(|| pipeline.process(black_box(&record), 0)));
    let mut all = Config::default();
    all.siem.formats = auditflow::config::KNOWN_FORMATS.iter().map(|f| f.to_string()).collect();
    let mut pipeline = Pipeline::new(all.pipeline_settings());
    group.bench_function("json_to_all_8_formats_and_alert", |b| b.iter(|| pipeline.process(black_box(&record), 0)));
    // The same record over and over keeps one trace's window growing to max_events_per_trace
    // and closing with a 1,000-step summary. A realistic stream: the generator's mix (traces of a
    // few steps, 10 % denied, jitter), so windows open, close and emit summaries as in production.
    let start_ms = 1_790_000_000_000;
    let mut generator = auditflow::generate::Generator::new(auditflow::generate::GenerateSettings {
        seed: 1,
        deny_ratio: 0.1,
        jitter_ms: 500,
        start_ms,
        ..Default::default()
    });
    let stream: Vec<SourceRecord> = (0..65_536)
        .map(|offset| SourceRecord {
            topic: "audit.raw".into(),
            offset,
            payload: Some(serde_json::to_vec(&generator.next_event()).unwrap()),
            ..SourceRecord::default()
        })
        .collect();
    let all_8: Vec<String> = auditflow::config::KNOWN_FORMATS.iter().map(|f| f.to_string()).collect();
    // The `_windows_off` variants are the same stream with `[window] enabled = false`: the cost
    // of decode, validate, enrich, route and the formats alone, beside the default's.
    for (name, formats, windows) in [
        ("generated_stream_to_ecs", vec!["ecs".to_owned()], true),
        ("generated_stream_to_all_8", all_8.clone(), true),
        ("generated_stream_to_ecs_windows_off", vec!["ecs".to_owned()], false),
        ("generated_stream_to_all_8_windows_off", all_8, false),
    ] {
        let mut config = Config::default();
        config.siem.formats = formats;
        config.window.enabled = windows;
        let mut pipeline = Pipeline::new(config.pipeline_settings());
        let mut next = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                // At the end of the stream, start over with fresh windows (its event times would
                // otherwise be late): one pipeline rebuild per 65,536 events.
                if next == stream.len() {
                    next = 0;
                    pipeline = Pipeline::new(config.pipeline_settings());
                }
                let outputs = pipeline.process(black_box(&stream[next]), 0);
                next += 1;
                outputs
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode_validate, enrich_and_encode, whole_pipeline);
criterion_main!(benches);
