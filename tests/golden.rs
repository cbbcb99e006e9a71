//! Golden tests: `tests/data/siem/<format>/<case>.input.json` encoded with the worked-example
//! product identity must equal `<case>.expected` byte for byte. `UPDATE_GOLDEN=1` rewrites the
//! expected files; review the diff.

use std::path::Path;

use auditflow::model::SourceRecord;
use auditflow::pipeline::Pipeline;

use crate::util::golden_config;

fn check_format(format: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/siem").join(format);
    let mut config = golden_config();
    config.siem.formats = vec![format.to_owned()];
    let mut pipeline = Pipeline::new(config.pipeline_settings());
    let mut cases = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for input in entries.iter().filter(|p| p.to_string_lossy().ends_with(".input.json")) {
        let record = SourceRecord {
            topic: "audit.raw".into(),
            payload: Some(std::fs::read(input).unwrap().trim_ascii_end().to_vec()),
            ..SourceRecord::default()
        };
        let outputs = pipeline.process(&record, 0);
        let siem = outputs.iter().find(|o| o.topic == format!("audit.siem.{format}")).expect("a siem output");
        let mut actual = siem.payload.clone().unwrap();
        actual.push(b'\n');
        let expected_path = input.with_file_name(input.file_name().unwrap().to_string_lossy().replace(".input.json", ".expected"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&expected_path, &actual).unwrap();
        }
        let expected = std::fs::read(&expected_path).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&actual),
            String::from_utf8_lossy(&expected),
            "{} differs from {}",
            input.display(),
            expected_path.display()
        );
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
