//! Golden tests: `tests/data/siem/<format>/<case>.input.json` encoded with the worked-example
//! product identity must equal `<case>.expected` byte for byte. `UPDATE_GOLDEN=1` rewrites the
//! expected files; review the diff.

use std::path::Path;

use auditflow::model::SourceRecord;
use auditflow::pipeline::Pipeline;

use crate::util::golden_config;

/// The `*.input.json` cases of `dir`, sorted, each with its record (trailing newline trimmed).
fn input_cases(dir: &Path) -> Vec<(std::path::PathBuf, SourceRecord)> {
    let mut inputs: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().ends_with(".input.json")).collect();
    inputs.sort();
    inputs
        .into_iter()
        .map(|input| {
            let payload = std::fs::read(&input).unwrap().trim_ascii_end().to_vec();
            (input, SourceRecord { topic: "audit.raw".into(), payload: Some(payload), ..SourceRecord::default() })
        })
        .collect()
}

/// Checks the `format` output among `outputs` against `expected_path` byte for byte (rewriting the
/// file first with `UPDATE_GOLDEN=1`).
fn check_output(outputs: &[auditflow::model::Output], format: &str, expected_path: &Path) {
    let siem = outputs.iter().find(|o| o.topic == format!("audit.siem.{format}")).expect("a siem output");
    let mut actual = siem.payload.clone().unwrap();
    actual.push(b'\n');
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(expected_path, &actual).unwrap();
    }
    let expected = std::fs::read(expected_path).unwrap();
    assert_eq!(String::from_utf8_lossy(&actual), String::from_utf8_lossy(&expected), "{} differs", expected_path.display());
}

fn check_format(format: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/siem").join(format);
    let mut config = golden_config();
    config.siem.formats = vec![format.to_owned()];
    let mut pipeline = Pipeline::new(config.pipeline_settings());
    let mut cases = 0;
    for (input, record) in input_cases(&dir) {
        let outputs = pipeline.process(&record, 0);
        let expected_path = input.with_file_name(input.file_name().unwrap().to_string_lossy().replace(".input.json", ".expected"));
        check_output(&outputs, format, &expected_path);
        cases += 1;
    }
    assert!(cases >= 2, "{format}: expected at least two golden cases, found {cases}");
}

#[test]
fn ecs_matches_golden_files() {
    check_format("ecs");
}

#[test]
fn ocsf_matches_golden_files() {
    check_format("ocsf");
}

#[test]
fn udm_matches_golden_files() {
    check_format("udm");
}

#[test]
fn asim_matches_golden_files() {
    check_format("asim");
}

#[test]
fn otlp_matches_golden_files() {
    check_format("otlp");
}

/// The worked examples of `docs/siem/<format>.md` are the golden lines themselves, so the docs
/// cannot drift from the encoders.
#[test]
fn docs_show_the_golden_records() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for format in ["ocsf", "udm", "asim", "otlp"] {
        let doc = std::fs::read_to_string(root.join(format!("docs/siem/{format}.md"))).unwrap();
        for case in ["seed_a", "seed_b"] {
            for suffix in ["input.json", "expected"] {
                let path = root.join(format!("tests/data/siem/{format}/{case}.{suffix}"));
                let line = std::fs::read_to_string(&path).unwrap();
                assert!(doc.contains(line.trim_end()), "docs/siem/{format}.md does not show {}", path.display());
            }
        }
    }
}

#[test]
fn splunk_matches_golden_files() {
    check_format("splunk");
}

#[test]
fn cef_matches_golden_files() {
    check_format("cef");
}

#[test]
fn leef_matches_golden_files() {
    check_format("leef");
}

/// The worked examples on the format pages are the golden files, unchanged.
#[test]
fn docs_show_the_golden_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for format in ["splunk", "cef", "leef"] {
        let page = std::fs::read_to_string(root.join(format!("docs/siem/{format}.md"))).unwrap();
        for case in ["seed_a", "seed_b", "hostile"] {
            let path = root.join(format!("tests/data/siem/{format}/{case}.expected"));
            let expected = std::fs::read_to_string(&path).unwrap();
            assert!(
                page.contains(&format!("\n{expected}```")),
                "docs/siem/{format}.md does not show {} as a line of its own",
                path.display()
            );
        }
    }
}

/// Time units, per format, at the boundaries: the epoch, just after 2038-01-19 (2^31 seconds), a
/// far date, and millisecond precision. Splunk: seconds with three decimals; OCSF, CEF, LEEF:
/// integer ms; OTLP: integer ns as a string; ECS, UDM, ASIM: RFC 3339 with milliseconds.
#[test]
fn time_units_hold_at_the_boundaries() {
    let mut config = golden_config();
    config.siem.formats = auditflow::config::KNOWN_FORMATS.iter().map(|f| f.to_string()).collect();
    let mut pipeline = Pipeline::new(config.pipeline_settings());
    for (ts, ms) in [
        ("1970-01-01T00:00:00.000Z", 0_i64),
        ("1970-01-01T00:00:00.001Z", 1),
        ("2038-01-19T03:14:08.001Z", 2_147_483_648_001),
        ("2262-04-11T23:47:16.854Z", 9_223_372_036_854),
        ("2026-03-14T09:26:53.120Z", 1_773_480_413_120),
    ] {
        let event = format!(
            r#"{{"ts":"{ts}","actor":"user:a","action":"deploy","artifact":"a@1","policy":"p","target":"aws:r:c","mode":"fixed","trace":"t","result":"allowed"}}"#
        );
        let record = SourceRecord { topic: "audit.raw".into(), payload: Some(event.into_bytes()), ..SourceRecord::default() };
        let outputs = pipeline.process(&record, 0);
        let text = |format: &str| {
            let output = outputs.iter().find(|o| o.topic == format!("audit.siem.{format}")).unwrap();
            String::from_utf8(output.payload.clone().unwrap()).unwrap()
        };
        let json = |format: &str| serde_json::from_str::<serde_json::Value>(&text(format)).unwrap();
        let seconds = format!("{}.{:03}", ms / 1000, ms % 1000);
        assert!(text("splunk").starts_with(&format!("{{\"time\":{seconds},")), "splunk {ts}: {}", text("splunk"));
        assert_eq!(json("ocsf")["time"], ms, "ocsf {ts}");
        assert!(text("cef").contains(&format!("rt={ms} ")), "cef {ts}: {}", text("cef"));
        // LEEF: epoch ms while it has the 13 digits QRadar expects (2001 to 2286), otherwise the
        // text time with its devTimeFormat (docs/siem/leef.md).
        let leef_time = if ms.to_string().len() == 13 { format!("devTime={ms}\t") } else { format!("devTime={ts}\tdevTimeFormat=") };
        assert!(text("leef").contains(&leef_time), "leef {ts}: {}", text("leef"));
        let otlp = json("otlp");
        let nanos = otlp["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["timeUnixNano"].as_str().unwrap().to_owned();
        assert_eq!(nanos, (i128::from(ms) * 1_000_000).to_string(), "otlp {ts}");
        assert_eq!(json("ecs")["@timestamp"], ts, "ecs {ts}");
        assert_eq!(json("udm")["metadata"]["eventTimestamp"], ts, "udm {ts}");
        assert_eq!(json("asim")["TimeGenerated"], ts, "asim {ts}");
    }
}

/// Every OTLP golden record parses into the OTLP protobuf types with the `opentelemetry-proto`
/// crate's own JSON mapping (hex trace ids, int64 as strings), and keeps its time, severity and
/// trace id; trace ids that are not 32 hex characters leave `traceId` empty.
#[test]
fn otlp_parses_into_the_protobuf_types() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/siem/otlp");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".expected") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let request: ExportLogsServiceRequest = serde_json::from_str(text.trim_end()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        let raw_record = &raw["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(record.time_unix_nano.to_string(), raw_record["timeUnixNano"].as_str().unwrap());
        assert_eq!(i64::from(record.severity_number), raw_record["severityNumber"].as_i64().unwrap());
        match raw_record["traceId"].as_str() {
            Some(hex) => assert_eq!(record.trace_id.iter().map(|b| format!("{b:02x}")).collect::<String>(), hex),
            None => assert!(record.trace_id.is_empty(), "{}: a non-W3C trace id must not become traceId", path.display()),
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} OTLP golden records");
}

/// Every format with a policy catalog: `tests/data/siem-catalog/<case>.input.json` encoded in all
/// eight formats must equal `<case>.<format>.expected`. These cases pin the catalog-driven fields
/// (owner, description, compliance, catalog severity, unknown-policy flag) and odd input (escapes,
/// non-ASCII, extra fields of every JSON type) that the per-format worked examples do not show.
#[test]
fn every_format_with_a_policy_catalog_matches_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/siem-catalog");
    let mut config = golden_config();
    config.siem.formats = auditflow::config::KNOWN_FORMATS.iter().map(|f| f.to_string()).collect();
    config.enrich.policy_catalog = Some(dir.join("policies.toml"));
    let mut settings = config.pipeline_settings();
    settings.catalog = config.load_catalog().unwrap();
    let mut pipeline = Pipeline::new(settings);
    let mut checked = 0;
    for (input, record) in input_cases(&dir) {
        let outputs = pipeline.process(&record, 0);
        for format in auditflow::config::KNOWN_FORMATS {
            let name = input.file_name().unwrap().to_string_lossy().replace(".input.json", &format!(".{format}.expected"));
            check_output(&outputs, format, &input.with_file_name(name));
            checked += 1;
        }
    }
    assert!(checked >= 3 * 8, "expected at least three catalog cases, checked {checked} records");
}
