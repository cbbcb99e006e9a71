//! Per-trace windows against the real broker: summaries, sequence rules, late events, recovery.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::message::Message;
use serde_json::Value;

use crate::util::*;

const RULES: &str = r#"[window]
gap_ms = 60000
allowed_lateness_ms = 1000
idle_timeout_ms = 1500
[[window.rules]]
type = "deny_count"
name = "repeated-denies"
min = 2
[[window.rules]]
type = "deny_then_allow"
name = "allowed-after-deny"
[[window.rules]]
type = "mode_change"
name = "mode-flip"
[[window.rules]]
type = "action_after_deny"
name = "execute-after-deny"
action = "execute"
within_ms = 5000
"#;

fn event(ts: &str, action: &str, result: &str, mode: &str, trace: &str) -> Input {
    let text = format!(
        r#"{{"ts":"{ts}","actor":"service:fraud-detector","action":"{action}","artifact":"customer-lookup@v2.8.0","policy":"pii-access-restrict-v2","target":"aws:us-east-1:cluster-prod-02","mode":"{mode}","trace":"{trace}","result":"{result}"}}"#
    );
    Input { partition: 0, key: Some(trace.as_bytes().to_vec()), value: Some(text.into_bytes()), headers: vec![] }
}

/// A fresh one-partition input topic and a config for it in a temporary directory (kept alive by
/// the returned guard): `(raw, group, config, dir)`; outputs go to `<raw>.alerts`, `<raw>.dlq`,
/// `<raw>.siem.*` and `<raw>.sequences`.
async fn one_partition_run() -> (String, String, std::path::PathBuf, tempfile::TempDir) {
    let raw = unique("win");
    let (alerts, dlq, prefix) = (format!("{raw}.alerts"), format!("{raw}.dlq"), format!("{raw}.siem."));
    create_topics(&[&raw], 1).await;
    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let config = write_config(dir.path(), &group, &raw, &alerts, &dlq, &prefix);
    (raw, group, config, dir)
}

fn json(m: &rdkafka::message::OwnedMessage) -> Value {
    serde_json::from_slice(m.payload().unwrap()).unwrap()
}

/// Four steps of one trace, sent out of order, become one summary with its steps in event-time
/// order and four rule hits on the alert topic, each naming the events behind it; an event that
/// arrives after its window closed becomes a late-event record.
#[tokio::test(flavor = "multi_thread")]
async fn summaries_rules_and_late_events_reach_their_topics() {
    let (raw, group, config, _dir) = one_partition_run().await;
    let text = std::fs::read_to_string(&config).unwrap();
    let window_start = text.find("[window]").unwrap();
    let window_end = window_start + text[window_start..].find("[siem").unwrap();
    std::fs::write(&config, format!("{}{}{}", &text[..window_start], RULES, &text[window_end..])).unwrap();

    let app = Auditflow::start(&config);
    let positions = produce(
        &raw,
        &[
            event("2026-11-28T10:00:00.000Z", "deploy", "allowed", "fixed", "tr-a"),
            event("2026-11-28T10:00:02.000Z", "execute", "denied", "adaptive", "tr-a"),
            event("2026-11-28T10:00:01.000Z", "execute", "denied", "adaptive", "tr-a"),
            event("2026-11-28T10:00:03.000Z", "execute", "allowed", "adaptive", "tr-a"),
            event("2026-11-28T10:00:03.500Z", "read", "allowed", "fixed", "tr-b"),
        ],
    )
    .await;
    await_committed_to_end(&group, &raw, Duration::from_secs(60));
    // Far behind the watermark (10:00:02.5): its window would have closed long ago.
    produce(&raw, &[event("2026-11-28T09:50:00.000Z", "execute", "denied", "fixed", "tr-a")]).await;
    await_committed_to_end(&group, &raw, Duration::from_secs(60));
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");

    let sequences: Vec<Value> = read_all(&format!("{raw}.sequences")).iter().map(json).collect();
    let summaries: Vec<&Value> = sequences.iter().filter(|v| v["kind"] == "trace_summary").collect();
    assert_eq!(summaries.len(), 2, "{sequences:#?}");
    let a = summaries.iter().find(|s| s["trace"] == "tr-a").unwrap();
    let times: Vec<&str> = a["steps"].as_array().unwrap().iter().map(|s| s["ts"].as_str().unwrap()).collect();
    assert_eq!(times, ["2026-11-28T10:00:00.000Z", "2026-11-28T10:00:01.000Z", "2026-11-28T10:00:02.000Z", "2026-11-28T10:00:03.000Z"]);
    assert_eq!((a["events"].as_u64(), a["denied"].as_u64(), a["allowed"].as_u64()), (Some(4), Some(2), Some(2)));
    assert_eq!(a["duration_ms"], 3000);
    assert_eq!(a["close_reason"], "idle");
    let mut hits: Vec<&str> = a["rule_hits"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    hits.sort();
    assert_eq!(hits, ["allowed-after-deny", "execute-after-deny", "mode-flip", "repeated-denies"]);

    let late: Vec<&Value> = sequences.iter().filter(|v| v["kind"] == "late_event").collect();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["trace"], "tr-a");
    assert_eq!(late[0]["ts"], "2026-11-28T09:50:00.000Z");

    let alert_records = read_all(&format!("{raw}.alerts"));
    let rule_alerts: Vec<Value> = alert_records.iter().map(json).filter(|v| v["alert"] == "sequence_rule").collect();
    // execute-after-deny hits twice: the executes at :02 and :03 each follow the denial at :01.
    assert_eq!(rule_alerts.len(), 5, "{rule_alerts:#?}");
    assert_eq!(rule_alerts.iter().filter(|h| h["rule"] == "execute-after-deny").count(), 2);
    let denies = rule_alerts.iter().find(|h| h["rule"] == "repeated-denies").unwrap();
    assert_eq!(denies["trace"], "tr-a");
    assert_eq!(denies["summary_id"], a["summary_id"]);
    let offsets: HashSet<i64> = denies["events"].as_array().unwrap().iter().map(|e| e["source"]["offset"].as_i64().unwrap()).collect();
    assert_eq!(offsets, HashSet::from([positions[1].1, positions[2].1]), "the two denials, by offset");
    assert!(alert_records.iter().all(|m| m.key().is_some()));
}

/// Exactly-once: a restart resumes each partition's watermark from the changelog (its highest
/// event time is saved with every commit). The first run windows events up to 10:00:10 and stops
/// (its windows flushed, so no event is left in the changelog); the second, same group and
/// transactional id, gets an event at 09:50, far behind the saved watermark: it is reported late
/// (`behind_watermark`), as it would have been without the restart, instead of opening a window.
#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_restart_resumes_the_watermark() {
    let (raw, group, config, _dir) = one_partition_run().await;
    make_exactly_once(&config, &unique("txn"));

    let app = Auditflow::start(&config);
    produce(
        &raw,
        &[
            event("2026-11-28T10:00:00.000Z", "deploy", "allowed", "fixed", "tr-a"),
            event("2026-11-28T10:00:10.000Z", "deploy", "allowed", "fixed", "tr-b"),
        ],
    )
    .await;
    await_committed_to_end(&group, &raw, Duration::from_secs(60));
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");

    let app = Auditflow::start(&config);
    produce(&raw, &[event("2026-11-28T09:50:00.000Z", "execute", "allowed", "fixed", "tr-c")]).await;
    await_committed_to_end(&group, &raw, Duration::from_secs(60));
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");
    let restored = log.lines().find(|l| l.contains("Windows restored from the changelog.")).unwrap_or_else(|| panic!("{log}"));
    assert!(restored.contains("events=0") && restored.contains("max_event_time=\"2026-11-28T10:00:10.000Z\""), "{restored}");

    let sequences: Vec<Value> = read_all(&format!("{raw}.sequences")).iter().map(json).collect();
    let late: Vec<&Value> = sequences.iter().filter(|v| v["kind"] == "late_event").collect();
    assert_eq!(late.len(), 1, "{sequences:#?}");
    assert_eq!((late[0]["trace"].as_str(), late[0]["reason"].as_str()), (Some("tr-c"), Some("behind_watermark")));
    let summaries: Vec<&str> = sequences.iter().filter(|v| v["kind"] == "trace_summary").map(|v| v["trace"].as_str().unwrap()).collect();
    assert_eq!(summaries, ["tr-a", "tr-b"], "the late event opened no window");
}

/// SIGKILL while windows are open: the committed offset never passed their first events, so the
/// restart re-reads them, and every trace's summary is emitted with none of its events missing.
/// (A summary may repeat with the same id in at-least-once mode.)
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_with_open_windows_loses_no_summary() {
    let raw = unique("winkill");
    let (alerts, dlq, prefix) = (format!("{raw}.alerts"), format!("{raw}.dlq"), format!("{raw}.siem."));
    create_topics(&[&raw], 2).await;
    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let config = write_config(dir.path(), &group, &raw, &alerts, &dlq, &prefix);
    // Long idle timeout: the windows are still open when the process is killed.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("idle_timeout_ms = 1000", "idle_timeout_ms = 600000")
        .replace("gap_ms = 1000", "gap_ms = 5000");
    std::fs::write(&config, text).unwrap();

    let mut inputs = Vec::new();
    let mut expected: HashMap<String, usize> = HashMap::new();
    // Step-major order: event time only moves forward, no event is late.
    for step in 0..5 {
        for t in 0..40 {
            let trace = format!("tr-{t:03}");
            let ts = format!("2026-11-28T10:00:{:02}.{:03}Z", step, t);
            let mut input = event(&ts, "execute", if step == 2 { "denied" } else { "allowed" }, "fixed", &trace);
            input.partition = t % 2;
            inputs.push(input);
            *expected.entry(trace.clone()).or_default() += 1;
        }
    }
    let app = Auditflow::start(&config);
    produce(&raw, &inputs).await;
    // Everything is processed and its SIEM outputs acknowledged...
    let ecs = format!("{prefix}ecs");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while read_all(&ecs).len() < inputs.len() {
        assert!(std::time::Instant::now() < deadline, "events not processed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...but the open windows hold the committed offsets back.
    assert_eq!(committed_total(&group, &raw, 2), 0, "no commit past the first event of an open window");
    app.kill();

    let config_text = std::fs::read_to_string(&config).unwrap().replace("idle_timeout_ms = 600000", "idle_timeout_ms = 1000");
    std::fs::write(&config, config_text).unwrap();
    let app = Auditflow::start(&config);
    await_committed_to_end(&group, &raw, Duration::from_secs(60));
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");

    let summaries: Vec<Value> = read_all(&format!("{raw}.sequences")).iter().map(json).filter(|v| v["kind"] == "trace_summary").collect();
    let mut by_trace: HashMap<String, HashSet<String>> = HashMap::new();
    for s in &summaries {
        let ids = by_trace.entry(s["trace"].as_str().unwrap().to_owned()).or_default();
        ids.extend(s["steps"].as_array().unwrap().iter().map(|st| st["event_id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(by_trace.len(), expected.len(), "every trace has a summary");
    for (trace, count) in &expected {
        assert_eq!(by_trace[trace].len(), *count, "{trace}: every event is in its summary");
    }
    let distinct: HashSet<&str> = summaries.iter().map(|s| s["summary_id"].as_str().unwrap()).collect();
    eprintln!("recovery: {} summaries, {} distinct ids", summaries.len(), distinct.len());
    assert_eq!(distinct.len(), expected.len(), "one summary id per trace window; repeats share it");
}

/// Summaries of `topic`, by summary id: the sorted event ids, the counts, the actors and the rule
/// hits (what a window is, without the source positions or the close reason, which depend on
/// the route records took).
fn summaries_by_id(topic: &str) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for message in read_all(topic) {
        let summary = json(&message);
        if summary["kind"] != "trace_summary" {
            continue;
        }
        let mut ids: Vec<&str> = summary["steps"].as_array().unwrap().iter().map(|s| s["event_id"].as_str().unwrap()).collect();
        ids.sort_unstable();
        let shape = serde_json::json!({
            "events": ids, "trace": summary["trace"], "start": summary["window_start_ms"], "end": summary["window_end_ms"],
            "allowed": summary["allowed"], "denied": summary["denied"], "actors": summary["actors"], "rule_hits": summary["rule_hits"],
        });
        let id = summary["summary_id"].as_str().unwrap().to_owned();
        if let Some(earlier) = out.insert(id.clone(), shape.clone()) {
            assert_eq!(earlier, shape, "summary {id} repeated with other content");
        }
    }
    out
}

/// Locality: input spread round-robin over 4 partitions (`keyed_by_trace = false`) and read by
/// two instances (in exactly-once mode) gives the same trace summaries as one instance on input
/// keyed by trace. The
/// events are re-keyed through the repartition topic; lateness is wide so that the order in
/// which the partitions are read cannot make an event late.
#[tokio::test(flavor = "multi_thread")]
async fn unkeyed_input_on_two_instances_gives_the_summaries_of_keyed_input() {
    let settings = "[[window.rules]]\ntype = \"deny_count\"\nname = \"any-deny\"\nmin = 1\n";
    let events = |keyed: bool| -> Vec<Input> {
        let start_ms = 1_790_000_000_000;
        let mut generator = auditflow::generate::Generator::new(auditflow::generate::GenerateSettings {
            seed: 5,
            deny_ratio: 0.2,
            start_ms,
            ..Default::default()
        });
        (0..2000)
            .map(|i| {
                let text = serde_json::to_vec(&generator.next_event()).unwrap();
                let trace = serde_json::from_slice::<Value>(&text).unwrap()["trace"].as_str().unwrap().to_owned();
                let hash = trace.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
                let partition = if keyed { (hash % 4) as i32 } else { i % 4 };
                Input { partition, key: keyed.then(|| trace.into_bytes()), value: Some(text), headers: vec![] }
            })
            .collect()
    };
    let run = |keyed: bool| async move {
        let raw = unique(if keyed { "keyed" } else { "unkeyed" });
        create_topics(&[&raw], 4).await;
        let dir = tempfile::tempdir().unwrap();
        let group = unique("group");
        let config = write_config(dir.path(), &group, &raw, &format!("{raw}.alerts"), &format!("{raw}.dlq"), &format!("{raw}.siem."));
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("allowed_lateness_ms = 100", "allowed_lateness_ms = 3600000")
            .replace("[topics]\n", &format!("[topics]\nkeyed_by_trace = {keyed}\n"));
        std::fs::write(&config, format!("{text}\n{settings}")).unwrap();
        // Unkeyed: two instances in exactly-once mode (each its own transactional.id), so the
        // repartition stage, windows and changelog run in transactions too.
        let configs: Vec<std::path::PathBuf> = if keyed {
            vec![config.clone()]
        } else {
            (0..2)
                .map(|i| {
                    let path = config.with_file_name(format!("instance{i}.toml"));
                    std::fs::copy(&config, &path).unwrap();
                    make_exactly_once(&path, &format!("{group}-{i}"));
                    path
                })
                .collect()
        };
        let apps: Vec<Auditflow> = configs.iter().map(|c| Auditflow::start(c)).collect();
        for app in &apps {
            // Unkeyed: 4 raw + 4 repartition partitions over two instances.
            await_log(&app.log, "Assignment changed. partitions=4", Duration::from_secs(60));
        }
        produce(&raw, &events(keyed)).await;
        await_committed_to_end(&group, &raw, Duration::from_secs(120));
        if !keyed {
            let repartition = format!("{group}.repartition");
            await_committed_past_records(&group, &repartition, 4, Duration::from_secs(120));
            assert_eq!(read_all(&repartition).len(), 2000, "every valid record re-keyed once");
        }
        for app in apps {
            let (status, log) = app.stop();
            assert!(status.success(), "{log}");
        }
        assert!(read_all(&format!("{raw}.dlq")).is_empty());
        summaries_by_id(&format!("{raw}.sequences"))
    };
    let keyed = run(true).await;
    let unkeyed = run(false).await;
    assert!(keyed.len() > 100, "{} summaries", keyed.len());
    let events: usize = keyed.values().map(|s| s["events"].as_array().unwrap().len()).sum();
    assert_eq!(events, 2000, "every event in one summary");
    let differing: Vec<&String> = keyed.keys().filter(|id| unkeyed.get(*id) != keyed.get(*id)).collect();
    assert!(
        differing.is_empty(),
        "{} of {} summaries differ, e.g. {:?} vs {:?}",
        differing.len(),
        keyed.len(),
        keyed.get(differing[0]),
        unkeyed.get(differing[0])
    );
    assert_eq!(keyed.len(), unkeyed.len());
}

/// `summary_format = "avro"`: summaries on the topic, and the late event on the late topic, are
/// Confluent-framed Avro whose schemas a consumer gets from the registry alone.
#[tokio::test(flavor = "multi_thread")]
async fn avro_summaries_decode_with_the_registry_alone() {
    let _registry = REGISTRY_LOCK.read().await;
    let raw = unique("winavro");
    create_topics(&[&raw], 1).await;
    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let more = format!("[registry]\nurl = \"{}\"\n", registry_url());
    let config =
        write_config_with(dir.path(), &group, &raw, &format!("{raw}.alerts"), &format!("{raw}.dlq"), &format!("{raw}.siem."), &more);
    let text = std::fs::read_to_string(&config).unwrap().replace("[window]\n", "[window]\nsummary_format = \"avro\"\n");
    std::fs::write(&config, text).unwrap();
    let app = Auditflow::start(&config);
    produce(
        &raw,
        &[
            event("2026-11-28T10:00:00.000Z", "deploy", "allowed", "fixed", "tr-a"),
            event("2026-11-28T10:00:00.400Z", "execute", "denied", "fixed", "tr-a"),
            event("2026-11-28T10:00:05.000Z", "read", "allowed", "fixed", "tr-b"),
        ],
    )
    .await;
    await_committed_to_end(&group, &raw, Duration::from_secs(60));
    produce(&raw, &[event("2026-11-28T09:50:00.000Z", "execute", "denied", "fixed", "tr-a")]).await;
    await_committed_to_end(&group, &raw, Duration::from_secs(60));
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");

    let registry = auditflow::kafka::registry::Registry::from_config(&auditflow::config::RegistryConfig {
        url: Some(registry_url()),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    let mut traces = Vec::new();
    for message in read_all(&format!("{raw}.sequences")) {
        let payload = message.payload().unwrap();
        assert_eq!(payload[0], 0, "Confluent magic byte");
        let id = u32::from_be_bytes(payload[1..5].try_into().unwrap());
        let schema = apache_avro::Schema::parse_str(&registry.fetch(id).await.unwrap()).unwrap();
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build().unwrap();
        let apache_avro::types::Value::Record(fields) = reader.read_value(&mut &payload[5..]).unwrap() else { panic!("a record") };
        let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap();
        let (apache_avro::types::Value::String(trace), apache_avro::types::Value::Array(steps)) = (field("trace"), field("steps")) else {
            panic!("fields")
        };
        traces.push((trace, steps.len()));
    }
    traces.sort();
    assert_eq!(traces, [("tr-a".to_owned(), 2), ("tr-b".to_owned(), 1)]);
    let late = read_all(&format!("{raw}.sequences.late"));
    assert_eq!(late.len(), 1);
    let payload = late[0].payload().unwrap();
    assert_eq!(payload[0], 0, "Confluent magic byte");
    let id = u32::from_be_bytes(payload[1..5].try_into().unwrap());
    let schema = apache_avro::Schema::parse_str(&registry.fetch(id).await.unwrap()).unwrap();
    assert_eq!(schema.name().map(|n| n.fullname(None)), Some("io.auditflow.LateEvent".to_owned()));
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build().unwrap();
    let apache_avro::types::Value::Record(fields) = reader.read_value(&mut &payload[5..]).unwrap() else { panic!("a record") };
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(field("trace"), apache_avro::types::Value::String("tr-a".into()));
    assert_eq!(field("ts"), apache_avro::types::Value::String("2026-11-28T09:50:00.000Z".into()));
}

/// Peak RSS (VmHWM) and current RSS (VmRSS) of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field =
        |name: &str| status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap();
    (field("VmHWM:"), field("VmRSS:"))
}

/// The child of `a_million_traces_stay_within_the_open_trace_bound`: alone in its process, it
/// opens 1,000,000 distinct traces against the default bound of 100,000 open traces and prints
/// its peak RSS growth.
#[test]
#[ignore = "run by a_million_traces_stay_within_the_open_trace_bound in its own process"]
fn million_traces_child() {
    use auditflow::model::{AuditEvent, Decision, SourceRecord};
    use auditflow::pipeline::window::{CloseReason, WindowOutput, WindowSettings, Windows};
    let (_, baseline) = rss_kib();
    let settings = WindowSettings::default();
    let bound = settings.max_open_traces;
    let mut windows = Windows::new(settings);
    let ladder = auditflow::pipeline::enrich::SeverityLadder::default();
    let (mut summaries, mut steps, mut capacity_closed, mut max_open) = (0u64, 0u64, 0u64, 0usize);
    let mut count = |out: Vec<WindowOutput>| {
        for o in out {
            if let WindowOutput::Summary(s) = o {
                summaries += 1;
                steps += s.steps.len() as u64;
                capacity_closed += u64::from(s.close_reason == CloseReason::Capacity && s.truncated);
            }
        }
    };
    let event = AuditEvent {
        ts: String::new(),
        ts_ms: 1_790_000_000_000,
        actor: "user:j.patel@acme.com".into(),
        action: "deploy".into(),
        artifact: "billing-service@v4.2.1".into(),
        policy: "prod-deploy-v3".into(),
        target: "aws:us-east-1:cluster-prod-02".into(),
        mode: "fixed".into(),
        trace: String::new(),
        result: "allowed".into(),
        decision: Decision::Allowed,
        reason: None,
        extra: Default::default(),
    };
    let mut enriched =
        auditflow::pipeline::enrich::enrich(event, &SourceRecord { topic: "raw".into(), ..SourceRecord::default() }, 0, &ladder);
    for i in 0..1_000_000i64 {
        // Only what windows read changes per event: the trace and the source position.
        enriched.event.trace.clear();
        std::fmt::Write::write_fmt(&mut enriched.event.trace, format_args!("tr-{i:016x}-million")).unwrap();
        enriched.provenance.partition = (i % 4) as i32;
        enriched.provenance.offset = i / 4;
        count(windows.add(&enriched, 0));
        max_open = max_open.max(windows.open_traces());
    }
    let approx = windows.approx_bytes();
    let (peak, _) = rss_kib();
    count(windows.flush_all());
    println!("MILLION open_max={max_open} bound={bound} summaries={summaries} steps={steps} capacity_closed={capacity_closed} approx_bytes={approx} peak_growth_kib={}", peak.saturating_sub(baseline));
}

/// Bounded state: 1,000,000 distinct traces against the default `max_open_traces` (100,000).
/// Run in a child process so that its peak RSS is its own: open windows never exceed the
/// bound, the oldest are closed early (`capacity`, `truncated: true`) and none is lost, and the
/// peak RSS growth stays under the documented 256 MiB (docs/windowing.md, "Bounded state").
#[test]
fn a_million_traces_stay_within_the_open_trace_bound() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "window::million_traces_child", "--ignored", "--nocapture", "--test-threads", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find_map(|l| l.find("MILLION ").map(|at| &l[at..])).expect("the child's report");
    let value =
        |name: &str| -> u64 { line.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{name}="))).unwrap().parse().unwrap() };
    eprintln!("{line}");
    assert_eq!(value("open_max"), value("bound"), "open traces reach the bound and never pass it");
    assert_eq!(value("capacity_closed"), 900_000, "every trace beyond the bound closed the oldest window early");
    assert_eq!(value("summaries"), 1_000_000, "every trace summarised once");
    assert_eq!(value("steps"), 1_000_000, "no event lost");
    assert!(value("peak_growth_kib") < 256 * 1024, "peak RSS growth {} KiB", value("peak_growth_kib"));
}
