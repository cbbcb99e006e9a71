//! Against the real local Kafka broker and Apicurio registry (`scripts/stack up`).

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::Schema;
use auditflow::config::RegistryConfig;
use auditflow::kafka::registry::{Registry, RegistryError};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::util::*;

const REFERENCE: &str = include_str!("data/events/reference.ndjson");

fn headers_of(message: &OwnedMessage) -> HashMap<String, String> {
    message
        .headers()
        .map(|h| h.iter().map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())).collect())
        .unwrap_or_default()
}

/// Reference event number `line` (0 allowed, 1 denied) with its trace id replaced by `trace`.
fn reference_in_trace(line: usize, trace: &str) -> String {
    let event = REFERENCE.lines().nth(line).unwrap();
    let value = event.replacen("tr-8f2c7a91-2b14-4e8e", trace, 1);
    assert_ne!(value, event, "the reference event names its trace");
    value
}

fn input(partition: i32, key: &str, value: Option<&[u8]>) -> Input {
    Input { partition, key: Some(key.as_bytes().to_vec()), value: value.map(<[u8]>::to_vec), headers: Vec::new() }
}

/// The first end-to-end path (issue #2): reference events to ECS and alerts, malformed records to
/// the dead-letter topic with their original bytes and key, and offsets committed to the end.
#[tokio::test(flavor = "multi_thread")]
async fn reference_events_and_malformed_records_land_where_they_belong() {
    let raw = unique("raw");
    let (alerts, dlq, prefix) = (format!("{raw}.alerts"), format!("{raw}.dlq"), format!("{raw}.siem."));
    let ecs = format!("{prefix}ecs");
    create_topics(&[&raw], 2).await;
    create_topics(&[&alerts, &dlq, &ecs], 1).await;
    let mut lines = REFERENCE.lines();
    let (allowed, denied) = (lines.next().unwrap(), lines.next().unwrap());
    let mut with_headers = input(1, "k-trunc", Some(b"{\"ts\":"));
    with_headers.headers = vec![("origin", b"ci")];
    let inputs = vec![
        input(0, "tr-8f2c7a91-2b14-4e8e", Some(allowed.as_bytes())),
        input(0, "tr-8f2c7a91-2b14-4e8e", Some(denied.as_bytes())),
        with_headers,
        input(1, "k-array", Some(b"[1,2,3]")),
        input(1, "k-utf8", Some(b"{\"ts\":\"\xc3\x28\"}")),
        input(0, "k-tomb", None),
        input(1, "k-missing", Some(br#"{"ts":"2026-04-18T14:22:07.441Z","actor":"user:x"}"#)),
    ];
    let positions = produce(&raw, &inputs).await;

    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let config = write_config(dir.path(), &group, &raw, &alerts, &dlq, &prefix);
    let app = Auditflow::start(&config);
    let committed = await_committed_to_end(&group, &raw, Duration::from_secs(60));
    assert_eq!(committed, vec![(0, 3), (1, 4)]);
    let (status, log) = app.stop();
    assert!(status.success(), "auditflow exited with {status}:\n{log}");

    // ECS: one record per valid event, keyed by event id, byte-equal to the golden files.
    let ecs_records = read_all(&ecs);
    assert_eq!(ecs_records.len(), 2, "{log}");
    for (record, golden) in ecs_records.iter().zip(["reference_allowed", "reference_denied"]) {
        let expected = std::fs::read_to_string(format!("{}/tests/data/siem/ecs/{golden}.expected", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(record.payload_view::<str>().unwrap().unwrap(), expected.trim_end());
        let doc: serde_json::Value = serde_json::from_str(expected.trim_end()).unwrap();
        assert_eq!(record.key().unwrap(), doc["event"]["id"].as_str().unwrap().as_bytes());
        assert_eq!(
            record.timestamp().to_millis(),
            Some(chrono::DateTime::parse_from_rfc3339(doc["@timestamp"].as_str().unwrap()).unwrap().timestamp_millis())
        );
    }

    // Alerts: the one denied event, keyed by trace.
    let alert_records = read_all(&alerts);
    assert_eq!(alert_records.len(), 1);
    let alert: serde_json::Value = serde_json::from_slice(alert_records[0].payload().unwrap()).unwrap();
    assert_eq!(alert_records[0].key().unwrap(), b"tr-8f2c7a91-2b14-4e8e");
    assert_eq!(alert["alert"], "policy_denied");
    assert_eq!(alert["severity"], 6);
    assert_eq!(alert["event"]["actor"], "service:fraud-detector");
    assert_eq!(alert["event"]["reason"], "declared-purpose violation: pii_export not authorized");
    assert_eq!(alert["source"]["topic"], raw.as_str());
    assert_eq!(alert["source"]["partition"], 0);
    assert_eq!(alert["source"]["offset"], 1);

    // Dead letters: original key and bytes, original headers first, then the error headers.
    let dead = read_all(&dlq);
    let expected = [
        ("k-tomb", "decode.tombstone"),
        ("k-trunc", "decode.invalid_json"),
        ("k-array", "decode.not_an_object"),
        ("k-utf8", "decode.invalid_utf8"),
        ("k-missing", "validate.missing_field"),
    ];
    assert_eq!(dead.len(), expected.len(), "{log}");
    let by_key: HashMap<&str, usize> =
        inputs.iter().enumerate().map(|(i, inp)| (std::str::from_utf8(inp.key.as_deref().unwrap()).unwrap(), i)).collect();
    for (key, code) in expected {
        let message = dead.iter().find(|m| m.key() == Some(key.as_bytes())).unwrap_or_else(|| panic!("no dead letter for {key}"));
        let source = &inputs[by_key[key]];
        let (partition, offset) = positions[by_key[key]];
        assert_eq!(message.payload(), source.value.as_deref(), "original bytes kept for {key}");
        let headers = headers_of(message);
        assert_eq!(headers["auditflow.error.code"], code, "{key}");
        assert!(!headers["auditflow.error.message"].is_empty());
        assert_eq!(headers["auditflow.source.topic"], raw);
        assert_eq!(headers["auditflow.source.partition"], partition.to_string());
        assert_eq!(headers["auditflow.source.offset"], offset.to_string());
        assert!(chrono::DateTime::parse_from_rfc3339(&headers["auditflow.failed.at"]).is_ok());
    }
    let trunc = dead.iter().find(|m| m.key() == Some(b"k-trunc")).unwrap();
    let first = trunc.headers().unwrap().get(0);
    assert_eq!((first.key, first.value), ("origin", Some(&b"ci"[..])), "original headers come first");
    assert_eq!(
        headers_of(dead.iter().find(|m| m.key() == Some(b"k-missing")).unwrap())["auditflow.error.message"],
        "missing required field `action`"
    );

    // Conservation: every input record ended somewhere.
    assert_eq!(inputs.len(), 2 + dead.len());
}

/// A broker that cannot be reached gives one line naming the setting, and a non-zero exit.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_broker_is_reported_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditflow.toml");
    std::fs::write(&path, "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_auditflow"))
        .args(["run", "--config"])
        .arg(&path)
        .env("AUDITFLOW_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("auditflow: cannot reach Kafka at 127.0.0.1:1"), "{stderr}");
    assert!(lines[0].contains("kafka.bootstrap_servers"), "{stderr}");
}

/// A missing input topic is an error naming it; missing output topics are created (and with
/// `topics.create_missing = false` they are named instead).
#[tokio::test(flavor = "multi_thread")]
async fn missing_inputs_are_named_and_missing_outputs_created() {
    let run = |config: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_auditflow"))
            .args(["run", "--config"])
            .arg(config)
            .env("AUDITFLOW_LOG", "off")
            .output()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let raw = unique("absent");
    let config = write_config(dir.path(), &unique("g"), &raw, "audit.none.alerts", "audit.none.dlq", "audit.none.");
    let output = run(&config);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&raw) && stderr.contains("[topics]"), "{stderr}");

    let raw = unique("present");
    create_topics(&[&raw], 1).await;
    let (alerts, dlq, prefix) = (format!("{raw}.alerts"), format!("{raw}.dlq"), format!("{raw}.siem."));
    let config = write_config_with(dir.path(), &unique("g"), &raw, &alerts, &dlq, &prefix, "[topics]\ncreate_missing = false\n");
    let text = std::fs::read_to_string(&config).unwrap().replacen("[topics]\ncreate_missing = false\n", "", 1).replacen(
        "[topics]\n",
        "[topics]\ncreate_missing = false\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let output = run(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&dlq) && stderr.contains("topics.create_missing = true"), "{stderr}");

    let group = unique("g");
    let config = write_config(dir.path(), &group, &raw, &alerts, &dlq, &prefix);
    let app = Auditflow::start(&config);
    produce(&raw, &[Input { partition: 0, key: None, value: Some(b"{bad".to_vec()), headers: vec![] }]).await;
    await_committed_to_end(&group, &raw, Duration::from_secs(60));
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("Created topic."), "{log}");
    assert_eq!(read_all(&dlq).len(), 1, "the created dead-letter topic holds the bad record");
}

/// `schemas/audit_event.avsc` registers in Apicurio through schema_registry_converter and reads
/// back by id as the same schema; an unknown id is a permanent "not found".
#[tokio::test(flavor = "multi_thread")]
async fn audit_event_schema_round_trips_through_the_registry() {
    let _guard = REGISTRY_LOCK.read().await;
    let registry = Registry::from_config(&RegistryConfig { url: Some(registry_url()), ..RegistryConfig::default() }).unwrap().unwrap();
    let subject = format!("{}-value", unique("roundtrip"));
    let id = registry.register_avro(&subject, auditflow::schemas::AUDIT_EVENT).await.expect("register");
    let again = registry.register_avro(&subject, auditflow::schemas::AUDIT_EVENT).await.expect("register again");
    assert_eq!(id, again, "registering the same schema twice returns the same id");
    let fetched = registry.fetch(id).await.expect("fetch by id");
    let ours = Schema::parse_str(auditflow::schemas::AUDIT_EVENT).unwrap();
    let theirs = Schema::parse_str(&fetched).unwrap();
    assert_eq!(theirs.canonical_form(), ours.canonical_form());
    match registry.fetch(2_000_000_000).await {
        Err(RegistryError::NotFound(2_000_000_000)) => {}
        other => panic!("expected not found, got {other:?}"),
    }
}

/// A registry that does not answer is a transient error, never "not found".
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_registry_is_transient() {
    let registry =
        Registry::from_config(&RegistryConfig { url: Some("http://127.0.0.1:1/apis/ccompat/v7".into()), ..RegistryConfig::default() })
            .unwrap()
            .unwrap();
    let error = registry.fetch(1).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
}

/// `run --until-caught-up` (benchmarks, one-shot catch-up jobs) exits by itself once every
/// partition is read to its end and every output acknowledged: all events formatted, offsets
/// committed to the end. Many records per partition, so that the last ones arrive in the same
/// fetch as the end-of-partition events (a run once waited forever when they did).
#[tokio::test(flavor = "multi_thread")]
async fn until_caught_up_stops_after_every_record_is_out() {
    let raw = unique("raw");
    let (alerts, dlq, prefix) = (format!("{raw}.alerts"), format!("{raw}.dlq"), format!("{raw}.siem."));
    create_topics(&[&raw], 4).await;
    let events = 4_000;
    let inputs: Vec<Input> = (0..events)
        .map(|i| {
            let trace = format!("tr-catch-up-{}", i % 97);
            input(i % 4, &trace, Some(reference_in_trace(0, &trace).as_bytes()))
        })
        .collect();
    produce(&raw, &inputs).await;

    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let config = write_config(dir.path(), &group, &raw, &alerts, &dlq, &prefix);
    let text = catch_up(&config);
    assert!(text.contains("Caught up with every assigned partition"), "{text}");
    // librdkafka reports the partitions' ends as errors too: they are not logged as such.
    assert!(!text.contains("ERROR"), "{text}");
    assert_eq!(read_all(&format!("{prefix}ecs")).len(), events as usize, "one ECS record per event");
    assert_eq!(committed_total(&group, &raw, 4), i64::from(events), "offsets committed to the end of every partition");
}

/// `--until-caught-up` over two input topics whose partitions share numbers: partition 0 of a
/// short topic reaching its end must not stop the run while partition 0 of a long one still has
/// records to fetch (librdkafka's end-of-partition event names the partition number only; a run
/// once stopped after the long topic's first fetch, about 2,600 of its 12,000 events).
#[tokio::test(flavor = "multi_thread")]
async fn until_caught_up_waits_for_every_topic_not_only_every_partition_number() {
    let (short, long) = (unique("short"), unique("long"));
    create_topics(&[&short, &long], 1).await;
    let trace = "tr-two-topics";
    let record = reference_in_trace(0, trace);
    produce(&short, &(0..10).map(|_| input(0, trace, Some(record.as_bytes()))).collect::<Vec<_>>()).await;
    // Over 1 MiB (max.partition.fetch.bytes): more than one fetch.
    let events = 12_000;
    produce(&long, &(0..events).map(|_| input(0, trace, Some(record.as_bytes()))).collect::<Vec<_>>()).await;

    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let (alerts, dlq, prefix) = (format!("{long}.alerts"), format!("{long}.dlq"), format!("{long}.siem."));
    let config = write_config(dir.path(), &group, &long, &alerts, &dlq, &prefix);
    let text =
        std::fs::read_to_string(&config).unwrap().replace(&format!("input = [\"{long}\"]"), &format!("input = [\"{short}\", \"{long}\"]"));
    assert!(text.contains(&short), "the config lists both topics");
    std::fs::write(&config, text).unwrap();
    let log = catch_up(&config);
    assert!(log.contains("Caught up with every assigned partition"), "{log}");
    assert_eq!(read_all(&format!("{prefix}ecs")).len(), 10 + events, "one ECS record per event of both topics");
    assert_eq!(committed_total(&group, &long, 1), events as i64, "the long topic committed to its end");
    assert_eq!(committed_total(&group, &short, 1), 10, "the short topic committed to its end");
}

/// `--until-caught-up` with input not keyed by trace (`topics.keyed_by_trace = false`): the
/// run re-keys every event through its repartition topic, which it reads too, and stops only
/// once the re-keyed events are processed as well, not when the raw topic is at its end.
#[tokio::test(flavor = "multi_thread")]
async fn until_caught_up_also_processes_what_it_repartitioned() {
    let raw = unique("raw");
    create_topics(&[&raw], 2).await;
    let events = 3_000;
    let inputs: Vec<Input> = (0..events)
        .map(|i| {
            let trace = format!("tr-rekeyed-{}", i % 31);
            input(i % 2, "unrelated-key", Some(reference_in_trace(0, &trace).as_bytes()))
        })
        .collect();
    produce(&raw, &inputs).await;
    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let (alerts, dlq, prefix) = (format!("{raw}.alerts"), format!("{raw}.dlq"), format!("{raw}.siem."));
    let config = write_config(dir.path(), &group, &raw, &alerts, &dlq, &prefix);
    let text = std::fs::read_to_string(&config).unwrap().replace("[topics]\n", "[topics]\nkeyed_by_trace = false\n");
    assert!(text.contains("keyed_by_trace = false"), "the config has a [topics] table");
    std::fs::write(&config, text).unwrap();
    let log = catch_up(&config);
    assert!(log.contains("Caught up with every assigned partition"), "{log}");
    assert_eq!(read_all(&format!("{prefix}ecs")).len(), events as usize, "every event formatted after its re-keying");
    assert_eq!(committed_total(&group, &format!("{group}.repartition"), 2), i64::from(events), "the repartition topic read to its end");
}

/// Records larger than the producer may send (`message.max.bytes`, here 100,000) never stop the
/// run (librdkafka refuses them at `produce()`, and a restart would meet them again): an event
/// whose ECS document is too large is dead-lettered whole (`output.too_large`), a 300,000-byte
/// malformed record is dead-lettered with the start of its bytes and its length, and the events
/// around them come out as usual, with offsets committed to the end; in both delivery modes (in
/// exactly-once mode a refused record used to abort every transaction, for ever). An output topic
/// that takes smaller batches than the producer builds (the alerts topic here) is named in a
/// warning at start.
#[tokio::test(flavor = "multi_thread")]
async fn records_too_large_to_send_are_dead_lettered_and_the_run_goes_on() {
    let raw = unique("raw");
    create_topics(&[&raw], 1).await;
    let event = |trace: &str, note: usize| {
        let body = reference_in_trace(0, trace);
        assert!(body.ends_with('}'));
        format!("{},\"note\":\"{}\"}}", &body[..body.len() - 1], "x".repeat(note)).into_bytes()
    };
    let (big_event, malformed) = (event("tr-big", 99_000), vec![b'!'; 300_000]);
    let inputs = [
        input(0, "tr-a", Some(&event("tr-a", 10))),
        input(0, "tr-big", Some(&big_event)),
        input(0, "junk", Some(&malformed)),
        input(0, "tr-d", Some(&event("tr-d", 10))),
    ]
    .into_iter()
    // Ten small malformed records: twelve dead letters in all, for the rate-limited warning.
    .chain((0..10).map(|_| input(0, "junk", Some(b"{bad"))))
    .collect::<Vec<_>>();
    produce(&raw, &inputs).await;

    let dir = tempfile::tempdir().unwrap();
    for mode in ["at-least-once", "exactly-once"] {
        let (alerts, dlq, prefix) = (format!("{raw}.{mode}.alerts"), format!("{raw}.{mode}.dlq"), format!("{raw}.{mode}.siem."));
        create_topic_with(&alerts, &[("max.message.bytes", "50000")]).await;
        create_topic_with(&dlq, &[("max.message.bytes", "200000")]).await;
        let group = unique("group");
        let run_dir = dir.path().join(mode);
        std::fs::create_dir(&run_dir).unwrap();
        let config = write_config(&run_dir, &group, &raw, &alerts, &dlq, &prefix);
        let limited = with_kafka_settings(&config, "[kafka.producer_properties]\n\"message.max.bytes\" = \"100000\"\n", "");
        std::fs::write(&config, limited).unwrap();
        if mode == "exactly-once" {
            make_exactly_once(&config, &unique("txn"));
        }
        let log = catch_up(&config);
        let warning = log
            .lines()
            .find(|line| line.contains("Output topics accept smaller batches than the producer builds"))
            .unwrap_or_else(|| panic!("{mode}: {log}"));
        assert!(
            warning.contains(&format!("topics={alerts} (50000)")) && warning.contains("producer_message_max_bytes=100000"),
            "{warning}"
        );
        assert!(!warning.contains(&dlq), "the dead-letter topic takes 200,000 bytes: {warning}");
        // Twelve records dead-lettered within seconds: five warning lines (rate limited,
        // `kafka::log_limit`), the first for the record too large to send.
        let lines: Vec<&str> = log.lines().filter(|line| line.contains("Record dead-lettered.")).collect();
        assert_eq!(lines.len(), 5, "{mode}: {lines:?}");
        assert!(lines[0].contains("code=output.too_large") && lines[0].contains("not_logged_since_last=0"), "{}", lines[0]);

        let ecs = read_all(&format!("{prefix}ecs"));
        let traces: Vec<String> = ecs
            .iter()
            .map(|m| serde_json::from_slice::<serde_json::Value>(m.payload().unwrap()).unwrap()["trace"]["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(traces, ["tr-a", "tr-d"], "{mode}: the events that fit come out");
        let letters = read_all(&dlq);
        assert_eq!(letters.len(), 12, "{mode}: one dead letter per record that could not go out");
        let too_large = headers_of(&letters[0]);
        assert_eq!(too_large["auditflow.error.code"], "output.too_large");
        assert!(too_large["auditflow.error.message"].contains(&format!("left out: {prefix}ecs (")), "{too_large:?}");
        assert_eq!(too_large["auditflow.source.offset"], "1");
        assert_eq!(letters[0].payload(), Some(big_event.as_slice()), "{mode}: the original bytes, whole");
        let cut = headers_of(&letters[1]);
        assert_eq!(cut["auditflow.error.code"], "decode.invalid_json");
        assert_eq!(cut["auditflow.error.truncated"], "300000");
        let kept = letters[1].payload().unwrap();
        assert!(kept.len() > 90_000 && kept.len() < 100_000 && kept.iter().all(|b| *b == b'!'), "{}", kept.len());
        assert_eq!(committed_total(&group, &raw, 1), 14, "{mode}: offsets committed to the end");
    }
}

/// Outputs the broker refuses for as long as nothing changes (alerts larger than their topic's
/// `max.message.bytes`, which the producer's own limit does not catch): nothing is dropped and
/// the run goes on retrying, but after `delivery.unready_after_failing_ms` (2 s here) `/ready`
/// answers 503 with the reason, the `auditflow_outputs_failing_since_seconds` gauge says since
/// when, and one error line says so. Once the topic takes them (its limit raised), the alert goes out, `/ready`
/// answers 200 again and offsets are committed to the end. In both delivery modes (exactly-once:
/// every transaction holding an alert aborts until then).
#[tokio::test(flavor = "multi_thread")]
async fn outputs_refused_for_good_turn_ready_off_until_they_go_through() {
    let raw = unique("raw");
    create_topics(&[&raw], 1).await;
    let inputs = vec![
        input(0, "tr-ok", Some(reference_in_trace(0, "tr-ok").as_bytes())),
        input(0, "tr-denied", Some(reference_in_trace(1, "tr-denied").as_bytes())),
    ];
    produce(&raw, &inputs).await;
    let dir = tempfile::tempdir().unwrap();
    for mode in ["at-least-once", "exactly-once"] {
        let (alerts, dlq, prefix) = (format!("{raw}.{mode}.alerts"), format!("{raw}.{mode}.dlq"), format!("{raw}.{mode}.siem."));
        create_topic_with(&alerts, &[("max.message.bytes", "300")]).await;
        let group = unique("group");
        let run_dir = dir.path().join(mode);
        std::fs::create_dir(&run_dir).unwrap();
        let config = write_config(&run_dir, &group, &raw, &alerts, &dlq, &prefix);
        let text = std::fs::read_to_string(&config).unwrap().replace("[delivery]\n", "[delivery]\nunready_after_failing_ms = 2000\n");
        std::fs::write(&config, format!("[metrics]\nlisten = \"127.0.0.1:0\"\n{text}")).unwrap();
        if mode == "exactly-once" {
            make_exactly_once(&config, &unique("txn"));
        }
        let app = Auditflow::start(&config);
        let addr = metrics_addr(&app);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let body = loop {
            let (status, body) = get(&addr, "/ready");
            if status == 503 && body.contains("outputs failing to be delivered") {
                break body;
            }
            assert!(std::time::Instant::now() < deadline, "{mode}: /ready never said so: {status} {body}");
            std::thread::sleep(Duration::from_millis(200));
        };
        let (_, metrics) = get(&addr, "/metrics");
        let since = sample(&metrics, "auditflow_outputs_failing_since_seconds", &[]).unwrap_or(0.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(since > 0.0 && now - since >= 2.0, "{mode}: {body}; failing since {since}, now {now}");
        await_log(&app.log, "Outputs have failed without a break", Duration::from_secs(10));
        assert!(read_all(&alerts).is_empty(), "{mode}: the broker refused the alert");
        assert!(committed_total(&group, &raw, 1) < 2, "{mode}: the denied event's offset waits");

        alter_topic(&alerts, &[("max.message.bytes", "1000000")]).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while get(&addr, "/ready").0 != 200 {
            assert!(std::time::Instant::now() < deadline, "{mode}: /ready stayed 503 after the topic took the alert");
            std::thread::sleep(Duration::from_millis(200));
        }
        await_log(&app.log, "Outputs go through again", Duration::from_secs(10));
        await_committed_total(&group, &raw, 1, 2, Duration::from_secs(60));
        let (status, log) = app.stop();
        assert!(status.success(), "{mode}: {log}");
        assert_eq!(read_all(&alerts).len(), 1, "{mode}: the alert went out once the topic took it");
        assert_eq!(read_all(&format!("{prefix}ecs")).len(), 2, "{mode}: every event formatted");
    }
}

/// Sticky partitioning takes up partitions added to a SIEM topic while auditflow runs (from the
/// producer's metadata, refreshed here every second instead of every 5 minutes): after the ECS
/// topic grows from 1 partition to 3, the next events are spread over the new partitions too,
/// and every event comes out once.
#[tokio::test(flavor = "multi_thread")]
async fn sticky_partitioning_takes_up_partitions_added_while_running() {
    let raw = unique("raw");
    let prefix = format!("{raw}.siem.");
    let ecs = format!("{prefix}ecs");
    create_topics(&[&raw, &ecs], 1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &unique("group"), &raw, &format!("{raw}.alerts"), &format!("{raw}.dlq"), &prefix);
    let fast = "[kafka.producer_properties]\n\"topic.metadata.refresh.interval.ms\" = \"1000\"\n\"statistics.interval.ms\" = \"1000\"\n";
    std::fs::write(&config, with_kafka_settings(&config, fast, "")).unwrap();
    let events = |range: std::ops::Range<usize>| -> Vec<Input> {
        range
            .map(|i| {
                let trace = format!("tr-grow-{i}");
                input(0, &trace, Some(reference_in_trace(0, &trace).as_bytes()))
            })
            .collect()
    };
    let await_ecs = |count: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while read_all(&ecs).len() < count {
            assert!(std::time::Instant::now() < deadline, "{count} ECS records not out in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let app = Auditflow::start(&config);
    produce(&raw, &events(0..200)).await;
    await_ecs(200);
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap()).create().unwrap();
    let grown = admin.create_partitions([&NewPartitions::new(&ecs, 3)], &AdminOptions::new()).await.unwrap();
    assert!(grown.iter().all(Result::is_ok), "{grown:?}");
    await_log(&app.log, "Sticky partitioning: the topic has more partitions now.", Duration::from_secs(30));
    produce(&raw, &events(200..3_000)).await;
    await_ecs(3_000);
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains(&format!("topic={ecs} partitions=3")), "{log}");

    let records = read_all(&ecs);
    assert_eq!(records.len(), 3_000, "every event once");
    let ids: std::collections::HashSet<&[u8]> = records.iter().map(|m| m.key().unwrap()).collect();
    assert_eq!(ids.len(), 3_000, "one record per event id");
    let mut per_partition = [0usize; 3];
    for record in &records {
        per_partition[record.partition() as usize] += 1;
    }
    assert!(per_partition[1] + per_partition[2] > 0, "the new partitions are used: {per_partition:?}");
}

/// `generate --topic --rate`: the latency benchmark's load. 1,500 events at 3,000 per second take
/// at least half a second of send times (CreateTime, stamped at send), keyed by trace; as fast as
/// possible (no `--rate`) the same events go out too. A slow machine can only stretch the span.
#[test]
fn generate_paces_its_load_and_keys_it_by_trace() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (paced, unpaced) = (unique("gen-paced"), unique("gen-unpaced"));
    runtime.block_on(create_topics(&[&paced, &unpaced], 2));
    for (topic, rate) in [(&paced, Some("3000")), (&unpaced, None)] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_auditflow"));
        command.args(["generate", "--count", "1500", "--seed", "3", "--topic", topic, "--bootstrap", &bootstrap()]);
        command.args(["--property", "linger.ms=5"]);
        if let Some(rate) = rate {
            command.args(["--rate", rate]);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stderr).contains("published 1500 events"));
    }
    let messages = read_all(&paced);
    assert_eq!(messages.len(), 1500);
    let times: Vec<i64> = messages.iter().map(|m| m.timestamp().to_millis().unwrap()).collect();
    let span = times.iter().max().unwrap() - times.iter().min().unwrap();
    assert!(span >= 490, "1,500 events at 3,000/s sent within {span} ms");
    for m in &messages {
        let event: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(event["trace"].as_str().unwrap().as_bytes(), m.key().unwrap(), "keyed by trace");
    }
    assert_eq!(read_all(&unpaced).len(), 1500);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_auditflow"))
        .args(["generate", "--count", "1", "--topic", &paced, "--bootstrap", &bootstrap(), "--rate", "0"])
        .output()
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--rate must be a positive number"));
}

/// Runs `auditflow run --until-caught-up` on `config` and returns its log; panics unless it
/// exits 0 within 90 s. The log has auditflow's debug lines (the end-of-input checks among them).
fn catch_up(config: &std::path::Path) -> String {
    let log = config.with_extension("log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_auditflow"))
        .args(["run", "--until-caught-up", "--config"])
        .arg(config)
        .env("AUDITFLOW_LOG", "info,auditflow=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 90 s after start:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exited with {status}:\n{text}");
    text
}

/// `topics.siem_partitioning` (docs/operations.md, "Partitioning"). With `key`, a record's
/// partition is a function of its key: two runs over the same input put every event id in the
/// same partition. With `sticky` (the default), the key does not choose the partition: a third
/// run puts most event ids elsewhere than the key runs, over several partitions, and every event
/// still comes out exactly once. The alerts topic (keyed by trace) stays on the key in both.
#[tokio::test(flavor = "multi_thread")]
async fn siem_records_go_by_key_or_sticky_by_time_and_none_is_lost() {
    let raw = unique("raw");
    create_topics(&[&raw], 4).await;
    let events = 6_000;
    let inputs: Vec<Input> = (0..events)
        .map(|i| {
            // A trace per event: every event id differs.
            let trace = format!("tr-partitioning-{i}");
            input(i % 4, &trace, Some(reference_in_trace(1, &trace).as_bytes()))
        })
        .collect();
    produce(&raw, &inputs).await;

    let dir = tempfile::tempdir().unwrap();
    // Partition of each key in `topic`, checking that every event is there once.
    let partitions_by_key = |topic: &str| -> HashMap<Vec<u8>, i32> {
        let records = read_all(topic);
        let by_key: HashMap<Vec<u8>, i32> = records.iter().map(|m| (m.key().unwrap().to_vec(), m.partition())).collect();
        assert_eq!(records.len(), events as usize, "{topic}: one record per event");
        assert_eq!(by_key.len(), events as usize, "{topic}: one key per event");
        by_key
    };
    let mut runs = Vec::new();
    for (name, partitioning) in [("key-1", "key"), ("key-2", "key"), ("sticky", "sticky")] {
        let prefix = format!("{raw}.{name}.");
        let (ecs, alerts) = (format!("{prefix}siem.ecs"), format!("{prefix}alerts"));
        create_topics(&[&ecs, &alerts], 4).await;
        let run_dir = dir.path().join(name);
        std::fs::create_dir(&run_dir).unwrap();
        let config = write_config(&run_dir, &unique("group"), &raw, &alerts, &format!("{prefix}dlq"), &format!("{prefix}siem."));
        let text = std::fs::read_to_string(&config).unwrap();
        let edited = text.replacen("[topics]\n", &format!("[topics]\nsiem_partitioning = \"{partitioning}\"\n"), 1);
        assert_ne!(edited, text, "the test config has a [topics] table");
        std::fs::write(&config, edited).unwrap();
        let log = catch_up(&config);
        assert_eq!(log.contains("Sticky partitioning."), partitioning == "sticky", "{log}");
        runs.push((partitions_by_key(&ecs), partitions_by_key(&alerts)));
    }
    let same = |a: &HashMap<Vec<u8>, i32>, b: &HashMap<Vec<u8>, i32>| a.iter().filter(|(k, p)| b.get(*k) == Some(p)).count();
    let (key_1, key_2, sticky) = (&runs[0], &runs[1], &runs[2]);
    assert_eq!(same(&key_1.0, &key_2.0), events as usize, "by key, every event id lands in the same partition twice");
    assert_eq!(same(&key_1.1, &sticky.1), events as usize, "alerts stay on the key with sticky SIEM topics");
    let used: std::collections::HashSet<i32> = sticky.0.values().copied().collect();
    assert!(used.len() >= 2, "sticky moves over partitions with time: {used:?}");
    let kept = same(&key_1.0, &sticky.0);
    assert!(kept < events as usize * 9 / 10, "sticky does not follow the key: {kept} of {events} in the key's partition");
}
