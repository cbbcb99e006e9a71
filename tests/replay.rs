//! `auditflow replay`: the whole pipeline through files, no Kafka.

use std::process::Command;

/// Reference events and a broken line, through the binary: one file per output topic, every
/// record accounted for, the SIEM file equal to the ECS golden files (default product identity
/// aside, checked via the event ids).
#[test]
fn replay_writes_one_file_per_output_topic() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    let mut text = include_str!("data/events/reference.ndjson").to_owned();
    text.push_str("{\"ts\": oops\n\n");
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_auditflow"))
        .args(["replay", "--input"])
        .arg(&input)
        .arg("--output-dir")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let ecs: Vec<serde_json::Value> = read("audit.siem.ecs.ndjson").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(ecs.len(), 2);
    assert_eq!(ecs[0]["event"]["outcome"], "success");
    assert_eq!(ecs[1]["event"]["outcome"], "failure");
    assert_eq!(ecs[1]["observer"]["vendor"], "auditflow");
    let alerts = read("audit.alerts.ndjson");
    assert_eq!(alerts.lines().count(), 1);
    assert!(alerts.contains("\"alert\":\"policy_denied\""));
    let dlq: Vec<serde_json::Value> = read("audit.dlq.ndjson").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["headers"]["auditflow.error.code"], "decode.invalid_json");
    assert_eq!(dlq[0]["headers"]["auditflow.source.offset"], "2");
    assert_eq!(dlq[0]["value"], "{\"ts\": oops");
}

/// Replay reads standard input with `--input -`.
#[test]
fn replay_reads_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditflow"))
        .args(["replay", "--input", "-", "--output-dir"])
        .arg(dir.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(include_bytes!("data/events/reference.ndjson")).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(dir.path().join("audit.siem.ecs.ndjson")).unwrap().lines().count(), 2);
}

/// An Avro object container file (schema in its header, no registry) replays to the same
/// records as the same events in NDJSON: the datums go through the Kafka Avro decoding.
#[test]
fn replay_reads_avro_container_files_like_ndjson() {
    use apache_avro::types::Value as Avro;
    let dir = tempfile::tempdir().unwrap();
    let ndjson = include_str!("data/events/reference.ndjson");
    let schema = apache_avro::Schema::parse_str(auditflow::schemas::AUDIT_EVENT).unwrap();
    let mut writer = apache_avro::Writer::new(&schema, Vec::new()).unwrap();
    let names = ["ts", "actor", "action", "artifact", "policy", "target", "mode", "trace", "result"];
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
        let mut fields: Vec<(String, Avro)> =
            names.iter().map(|n| (n.to_string(), Avro::String(event[*n].as_str().unwrap().to_owned()))).collect();
        let reason = event
            .get("reason")
            .and_then(|r| r.as_str())
            .map_or(Avro::Union(0, Box::new(Avro::Null)), |r| Avro::Union(1, Box::new(Avro::String(r.to_owned()))));
        fields.push(("reason".into(), reason));
        let extra = event
            .iter()
            .filter(|(k, _)| !names.contains(&k.as_str()) && *k != "reason")
            .map(|(k, v)| {
                (k.clone(), Avro::Union(4, Box::new(Avro::String(v.as_str().expect("string extras in the reference events").to_owned()))))
            })
            .collect();
        fields.push(("extra".into(), Avro::Map(extra)));
        writer.append_value(Avro::Record(fields)).unwrap();
    }
    let avro_path = dir.path().join("events.avro");
    std::fs::write(&avro_path, writer.into_inner().unwrap()).unwrap();
    let ndjson_path = dir.path().join("events.ndjson");
    std::fs::write(&ndjson_path, ndjson).unwrap();

    let run = |input: &std::path::Path, out: &str| {
        let out = dir.path().join(out);
        let output = Command::new(env!("CARGO_BIN_EXE_auditflow"))
            .args(["replay", "--input"])
            .arg(input)
            .arg("--output-dir")
            .arg(&out)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let mut files: Vec<(String, String)> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap()))
            .collect();
        files.sort();
        files
    };
    let from_avro = run(&avro_path, "avro");
    let from_ndjson = run(&ndjson_path, "ndjson");
    assert!(from_avro.iter().any(|(name, text)| name == "audit.siem.ecs.ndjson" && text.lines().count() == 2), "{from_avro:?}");
    assert!(!from_avro.iter().any(|(name, _)| name == "audit.dlq.ndjson"), "no dead letters: {from_avro:?}");
    // Same files, same records; only provenance differs: the source name and the ingest time.
    let ingest = regex::Regex::new(r#""ingest_ms":\d+"#).unwrap();
    let normalise = |files: Vec<(String, String)>| -> Vec<(String, String)> {
        files
            .into_iter()
            .map(|(n, t)| (n, ingest.replace_all(&t.replace("events.avro", "SOURCE").replace("events.ndjson", "SOURCE"), "").into_owned()))
            .collect()
    };
    assert_eq!(normalise(from_avro), normalise(from_ndjson));
}
