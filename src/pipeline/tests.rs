//! Unit tests of the core pipeline: where each record goes, and that nothing is ever lost.

use proptest::prelude::*;

use super::*;
use crate::config::Config;

const ALLOWED: &[u8] = br#"{"ts":"2026-04-18T14:22:07.441Z","actor":"user:j.patel@acme.com","action":"deploy","artifact":"billing-service@v4.2.1","policy":"prod-billing-deploy-v3","target":"aws:us-east-1:cluster-prod-02","mode":"fixed","trace":"tr-8f2c7a91-2b14-4e8e","result":"allowed"}"#;

fn pipeline() -> Pipeline {
    Pipeline::new(Config::default().pipeline_settings())
}

fn record(payload: Option<&[u8]>) -> SourceRecord {
    SourceRecord {
        topic: "audit.raw".into(),
        partition: 3,
        offset: 42,
        key: Some(b"k".to_vec()),
        headers: vec![("h".into(), Some(b"v".to_vec()))],
        payload: payload.map(<[u8]>::to_vec),
        timestamp_ms: Some(7),
    }
}

fn dead_letter_code(outputs: &Outputs) -> Option<String> {
    let [only] = outputs.as_slice() else { return None };
    if only.topic != "audit.dlq" {
        return None;
    }
    only.headers.iter().find(|(k, _)| k == dlq_headers::CODE).map(|(_, v)| String::from_utf8(v.clone().unwrap()).unwrap())
}

#[test]
fn allowed_event_goes_to_siem_only() {
    let outputs = pipeline().process(&record(Some(ALLOWED)), 0);
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].topic, "audit.siem.ecs");
    assert_eq!(outputs[0].key.as_deref().map(<[u8]>::len), Some(36), "keyed by the event uuid");
    assert_eq!(outputs[0].timestamp_ms, Some(1_776_522_127_441));
}

#[test]
fn denied_event_goes_to_siem_and_alerts() {
    let denied = String::from_utf8(ALLOWED.to_vec()).unwrap().replace("\"allowed\"", "\"denied\"");
    let outputs = pipeline().process(&record(Some(denied.as_bytes())), 0);
    let topics: Vec<&str> = outputs.iter().map(|o| o.topic.as_str()).collect();
    assert_eq!(topics, ["audit.siem.ecs", "audit.alerts"]);
    assert_eq!(outputs[1].key.as_deref(), Some(&b"tr-8f2c7a91-2b14-4e8e"[..]));
}

#[test]
fn dead_letter_keeps_key_bytes_headers_and_timestamp() {
    let outputs = pipeline().process(&record(Some(b"{oops")), 1_776_522_127_441);
    assert_eq!(dead_letter_code(&outputs).as_deref(), Some("decode.invalid_json"));
    let dl = &outputs[0];
    assert_eq!(dl.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(dl.payload.as_deref(), Some(&b"{oops"[..]));
    assert_eq!(dl.timestamp_ms, Some(7));
    let headers: Vec<(&str, &str)> =
        dl.headers.iter().map(|(k, v)| (k.as_str(), std::str::from_utf8(v.as_deref().unwrap()).unwrap())).collect();
    assert_eq!(headers[0], ("h", "v"));
    assert_eq!(headers[2].0, dlq_headers::MESSAGE);
    assert!(headers[2].1.starts_with("invalid json: "), "{}", headers[2].1);
    assert_eq!(
        &headers[3..],
        &[
            (dlq_headers::TOPIC, "audit.raw"),
            (dlq_headers::PARTITION, "3"),
            (dlq_headers::OFFSET, "42"),
            (dlq_headers::FAILED_AT, "2026-04-18T14:22:07.441Z"),
        ]
    );
}

#[test]
fn hostile_inputs_are_dead_lettered_with_their_code() {
    let huge = format!("{{\"reason\":\"{}\"}}", "x".repeat(2 << 20));
    let nested = format!("{}{}", "{\"a\":".repeat(10_000), "1");
    let with_nul = String::from_utf8(ALLOWED.to_vec()).unwrap().replace("deploy", "dep\\u0000loy");
    let cases: Vec<(Option<&[u8]>, &str)> = vec![
        (None, "decode.tombstone"),
        (Some(b""), "decode.empty_payload"),
        (Some(huge.as_bytes()), "decode.record_too_large"),
        (Some(b"{\"a\":\"\xff\"}"), "decode.invalid_utf8"),
        (Some(b"{\"a\":1,\"a\":2}"), "decode.duplicate_field"),
        (Some(nested.as_bytes()), "decode.invalid_json"),
        (Some(b"{\"a\":1}\x00"), "decode.invalid_json"),
        (Some(b"\x00\x00\x00"), "decode.truncated_framing"),
        (Some(b"\x01\x00\x00\x00\x01\x02"), "decode.unknown_format"),
        (Some(b"[]"), "decode.not_an_object"),
        (Some(with_nul.as_bytes()), "validate.control_character"),
    ];
    let mut p = pipeline();
    for (payload, code) in cases {
        let outputs = p.process(&record(payload), 0);
        assert_eq!(
            dead_letter_code(&outputs).as_deref(),
            Some(code),
            "{:?}",
            payload.map(|b| String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned())
        );
        if payload.is_some_and(|p| p.len() >= 1_000_000) {
            // Larger than the producer sends: the start of the value, and its length in a header.
            let kept = outputs[0].payload.as_deref().unwrap();
            assert_eq!(kept, &payload.unwrap()[..kept.len()]);
            assert_eq!(header(&outputs[0], limit::TRUNCATED).map(str::parse::<usize>), Some(Ok(payload.unwrap().len())));
            assert!(limit::wire_size(&outputs[0]) <= 1_000_000);
        } else {
            assert_eq!(outputs[0].payload.as_deref(), payload, "original bytes kept");
        }
    }
}

/// The value of header `name` of `output`, as text.
fn header<'a>(output: &'a Output, name: &str) -> Option<&'a str> {
    output.headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v.as_deref()?).ok())
}

/// A pipeline whose producer sends records of at most `max` bytes (`message.max.bytes`).
fn pipeline_sending_at_most(max: &str, windows: bool) -> Pipeline {
    let mut config = Config::default();
    config.kafka.producer_properties.insert("message.max.bytes".into(), max.into());
    config.window.enabled = windows;
    config.window.settings.gap_ms = 1000;
    config.window.settings.allowed_lateness_ms = 0;
    Pipeline::new(config.pipeline_settings())
}

/// The ALLOWED event, denied, with an extra field `note` of `n` bytes.
fn denied_with_note(n: usize) -> Vec<u8> {
    let text = String::from_utf8(ALLOWED.to_vec()).unwrap().replace("\"allowed\"", "\"denied\"");
    format!("{},\"note\":\"{}\"}}", &text[..text.len() - 1], "x".repeat(n)).into_bytes()
}

/// Topics and sizes of the outputs of `event` when nothing limits them.
fn unlimited_sizes(event: &[u8]) -> Vec<(String, usize)> {
    let outputs = pipeline_sending_at_most("1000000000", false).process(&record(Some(event)), 0);
    outputs.iter().map(|o| (o.topic.clone(), limit::wire_size(o))).collect()
}

#[test]
fn outputs_too_large_to_send_are_left_out_and_the_record_dead_lettered_once() {
    // The event fits, and so does its dead letter with its headers; its ECS document, which
    // carries the note and more, does not.
    let event = String::from_utf8(denied_with_note(99_000)).unwrap().replace("\"denied\"", "\"allowed\"").into_bytes();
    let sizes = unlimited_sizes(&event);
    assert_eq!(sizes.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["audit.siem.ecs"]);
    assert!(sizes[0].1 > 100_000, "{sizes:?}");
    let outputs = pipeline_sending_at_most("100000", false).process(&record(Some(&event)), 1_776_522_127_441);
    let topics: Vec<&str> = outputs.iter().map(|o| o.topic.as_str()).collect();
    assert_eq!(topics, ["audit.dlq"]);
    let letter = &outputs[0];
    assert_eq!(header(letter, dlq_headers::CODE), Some("output.too_large"));
    assert_eq!(
        header(letter, dlq_headers::MESSAGE),
        Some(
            format!("outputs larger than the producer's message.max.bytes (100000) left out: audit.siem.ecs ({} bytes)", sizes[0].1)
                .as_str()
        )
    );
    assert_eq!(letter.payload.as_deref(), Some(event.as_slice()), "the original bytes, whole: they fit");
    assert_eq!(header(letter, limit::TRUNCATED), None);
    assert_eq!(header(letter, dlq_headers::OFFSET), Some("42"));
    assert_eq!(header(letter, dlq_headers::FAILED_AT), Some("2026-04-18T14:22:07.441Z"));
}

#[test]
fn only_the_outputs_that_do_not_fit_are_left_out() {
    let event = denied_with_note(3_000);
    let sizes = unlimited_sizes(&event);
    let (ecs, alert) = (sizes[0].1, sizes[1].1);
    assert!(alert < ecs, "{sizes:?}");
    let max = (alert + ecs) / 2;
    let outputs = pipeline_sending_at_most(&max.to_string(), false).process(&record(Some(&event)), 0);
    let topics: Vec<&str> = outputs.iter().map(|o| o.topic.as_str()).collect();
    assert_eq!(topics, ["audit.alerts", "audit.dlq"]);
    assert_eq!(
        header(&outputs[1], dlq_headers::MESSAGE).unwrap(),
        format!("outputs larger than the producer's message.max.bytes ({max}) left out: audit.siem.ecs ({ecs} bytes)")
    );
    assert_eq!(outputs[1].payload.as_deref(), Some(event.as_slice()));
}

#[test]
fn a_summary_too_large_to_send_is_dead_lettered_with_its_destination_and_holds() {
    const T0: i64 = 1_776_522_127_441;
    let mut p = pipeline_sending_at_most("6000", true);
    let mut summaries = Vec::new();
    // Twenty steps of one trace make a summary of about 8 KB; the next trace's event, 10 s on,
    // closes it.
    for i in 0..20 {
        let outputs = p.process(&traced("long", T0 + i * 100, i), 0);
        assert!(outputs.iter().all(|o| o.topic == "audit.siem.ecs"), "{outputs:?}");
    }
    for output in p.process(&traced("next", T0 + 20_000, 20), 0) {
        if output.topic != "audit.siem.ecs" {
            summaries.push(output);
        }
    }
    let [letter] = summaries.as_slice() else { panic!("one output besides ECS: {summaries:?}") };
    assert_eq!(letter.topic, "audit.dlq");
    assert_eq!(header(letter, dlq_headers::CODE), Some("output.too_large"));
    assert_eq!(header(letter, limit::OUTPUT_TOPIC), Some("audit.sequences"));
    assert_eq!(letter.key.as_deref(), Some(&b"long"[..]));
    assert_eq!(letter.holds, [("audit.raw".to_owned(), 0, 0)], "the offsets it covers still wait for it");
    let original: usize = header(letter, limit::TRUNCATED).unwrap().parse().unwrap();
    assert!(original > 6_000);
    let kept = std::str::from_utf8(letter.payload.as_deref().unwrap()).unwrap();
    assert!(kept.starts_with("{\"kind\":\"trace_summary\""), "{kept}");
    assert!(limit::wire_size(letter) <= 6_000);
}

proptest! {
    /// Whatever the limit and the event, every output fits the limit and a record that loses an
    /// output is dead-lettered.
    #[test]
    fn every_output_fits_the_producer(max in 1_000usize..20_000, note in 0usize..20_000, denied in any::<bool>()) {
        let mut event = denied_with_note(note);
        if !denied {
            event = String::from_utf8(event).unwrap().replace("\"denied\"", "\"allowed\"").into_bytes();
        }
        let outputs = pipeline_sending_at_most(&max.to_string(), true).process(&record(Some(&event)), 0);
        prop_assert!(outputs.iter().all(|o| limit::wire_size(o) <= max));
        let full = pipeline_sending_at_most("1000000", true).process(&record(Some(&event)), 0);
        let lost = full.iter().any(|o| limit::wire_size(o) > max);
        prop_assert_eq!(outputs.iter().any(|o| o.topic == "audit.dlq"), lost);
    }
}

proptest! {
    /// Any bytes at all: no panic, and either the record's normal outputs or exactly one dead letter
    /// carrying the original bytes.
    #[test]
    fn random_bytes_give_outputs_or_one_dead_letter(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let outputs = pipeline().process(&record(Some(&bytes)), 0);
        prop_assert!(!outputs.is_empty());
        if outputs.iter().any(|o| o.topic == "audit.dlq") {
            prop_assert_eq!(outputs.len(), 1);
            prop_assert_eq!(outputs[0].payload.as_deref(), Some(bytes.as_slice()));
        }
    }

    /// Mutations of a valid event (a byte changed, inserted or cut): same rule.
    #[test]
    fn mutated_events_give_outputs_or_one_dead_letter(at in 0usize..ALLOWED.len(), byte in any::<u8>(), kind in 0u8..3) {
        let mut bytes = ALLOWED.to_vec();
        match kind {
            0 => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            _ => bytes.truncate(at),
        }
        let outputs = pipeline().process(&record(Some(&bytes)), 0);
        prop_assert!(!outputs.is_empty());
        let dead = outputs.iter().filter(|o| o.topic == "audit.dlq").count();
        prop_assert!(dead == 0 || outputs.len() == 1);
    }
}

/// A valid allowed event of `trace` at `ts_ms`, read from audit.raw/0 at `offset`.
fn traced(trace: &str, ts_ms: i64, offset: i64) -> SourceRecord {
    traced_in(0, trace, ts_ms, offset)
}

fn traced_in(partition: i32, trace: &str, ts_ms: i64, offset: i64) -> SourceRecord {
    let ts = Utc.timestamp_millis_opt(ts_ms).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true);
    let text =
        String::from_utf8(ALLOWED.to_vec()).unwrap().replace("2026-04-18T14:22:07.441Z", &ts).replace("tr-8f2c7a91-2b14-4e8e", trace);
    SourceRecord { partition, offset, ..record(Some(text.as_bytes())) }
}

fn changelog_pipeline() -> Pipeline {
    let mut config = Config::default();
    config.window.settings.gap_ms = 1000;
    config.window.settings.allowed_lateness_ms = 0;
    let mut pipeline = Pipeline::new(config.pipeline_settings());
    pipeline.enable_changelog("cl".into());
    pipeline
}

#[test]
fn changelog_records_open_windows_and_rebuilds_them_after_a_restart() {
    const T0: i64 = 1_776_522_127_441;
    let mut first = changelog_pipeline();
    let mut restore = changelog::Restore::default();
    let mut log = Vec::new();
    for record in [traced("t1", T0, 0), traced("t1", T0 + 500, 1), traced("t2", T0 + 10_000, 2), traced("t1", T0 + 100, 3)] {
        for output in first.process(&record, 0) {
            if output.topic == "cl" {
                assert_eq!(output.partition, Some(0), "changelog records stay in their source partition");
                let source_key = output.headers.first().and_then(|(_, v)| v.clone());
                restore.apply(output.key.as_deref(), output.payload.as_deref(), source_key.as_deref(), output.timestamp_ms);
                let (_, _, offset) = changelog::parse_key(output.key.as_deref().unwrap()).unwrap();
                log.push((offset, output.payload.is_some()));
            }
        }
    }
    // t2's event closes t1 (entry first, then t1's tombstones); offset 3 is late: no entry.
    assert_eq!(log, [(0, true), (1, true), (2, true), (0, false), (1, false)]);
    let live = restore.records("audit.raw");
    assert_eq!(live.iter().map(|r| r.offset).collect::<Vec<_>>(), [2]);

    let mut second = changelog_pipeline();
    for record in &live {
        assert!(second.restore(record, 0).is_empty(), "the live entry re-enters a window");
    }
    assert!(second.finish_restore().is_empty());
    assert_eq!(second.window_stats().0, 1);
    let summaries = |outputs: Outputs| -> Vec<serde_json::Value> {
        outputs
            .iter()
            .filter(|o| o.topic == "audit.sequences")
            .map(|o| serde_json::from_slice(o.payload.as_deref().unwrap()).unwrap())
            .collect()
    };
    let before = summaries(first.flush_windows());
    let after = summaries(second.flush_windows());
    assert_eq!(before.len(), 1);
    assert_eq!(before, after, "the restored window closes into the same summary");
}

/// A window over two partitions, held open by the slower one: restoring the faster partition
/// first must not close it half-restored.
#[test]
fn restore_closes_no_window_before_every_partition_is_back() {
    const T0: i64 = 1_776_522_127_441;
    let mut first = changelog_pipeline();
    let mut restore = changelog::Restore::default();
    for record in [traced_in(0, "t1", T0, 0), traced_in(1, "t1", T0 + 100, 0), traced_in(0, "t2", T0 + 5000, 1)] {
        for output in first.process(&record, 0).into_iter().filter(|o| o.topic == "cl") {
            let source_key = output.headers.first().and_then(|(_, v)| v.clone());
            restore.apply(output.key.as_deref(), output.payload.as_deref(), source_key.as_deref(), output.timestamp_ms);
        }
    }
    assert_eq!(first.window_stats().0, 2, "partition 1 holds t1 open");
    let live = restore.records("audit.raw");
    assert_eq!(live.iter().map(|r| (r.partition, r.offset)).collect::<Vec<_>>(), [(0, 0), (0, 1), (1, 0)]);
    let mut second = changelog_pipeline();
    for record in &live {
        assert!(second.restore(record, 0).is_empty());
    }
    assert!(second.finish_restore().is_empty());
    let steps = |outputs: Outputs| -> Vec<usize> {
        let mut steps: Vec<usize> = outputs
            .iter()
            .filter(|o| o.topic == "audit.sequences")
            .map(|o| serde_json::from_slice::<serde_json::Value>(o.payload.as_deref().unwrap()).unwrap()["steps"].as_array().unwrap().len())
            .collect();
        steps.sort_unstable();
        steps
    };
    assert_eq!(steps(second.flush_windows()), [1, 2]);
    assert_eq!(steps(first.flush_windows()), [1, 2]);
}

#[test]
fn repartition_rekeys_valid_records_by_trace_and_dead_letters_the_rest() {
    let mut pipeline = pipeline();
    let outputs = pipeline.repartition(&record(Some(ALLOWED)), "g.repartition", 0);
    assert_eq!(outputs.len(), 1);
    let out = &outputs[0];
    assert_eq!(out.topic, "g.repartition");
    assert_eq!(out.key.as_deref(), Some(&b"tr-8f2c7a91-2b14-4e8e"[..]));
    assert_eq!(out.payload.as_deref(), Some(ALLOWED), "the value is forwarded unchanged");
    assert_eq!(out.headers, record(None).headers);
    assert_eq!(out.timestamp_ms, Some(7));
    assert_eq!(pipeline.window_stats().0, 0, "nothing is windowed in the first stage");
    let bad = pipeline.repartition(&record(Some(b"{\"ts\": oops")), "g.repartition", 0);
    assert_eq!(dead_letter_code(&bad).as_deref(), Some("decode.invalid_json"));
}

#[test]
fn avro_summaries_are_confluent_framed_and_late_events_go_to_their_own_topic() {
    const T0: i64 = 1_776_522_127_441;
    let mut pipeline = changelog_pipeline();
    pipeline.enable_avro_summaries(7, 8, "audit.sequences.late".into());
    let mut outputs = Vec::new();
    for record in [traced("t1", T0, 0), traced("t1", T0 + 500, 1), traced("t2", T0 + 10_000, 2), traced("t1", T0 + 100, 3)] {
        outputs.extend(pipeline.process(&record, 0));
    }
    let summary = outputs.iter().find(|o| o.topic == "audit.sequences").expect("t1 closed");
    let payload = summary.payload.as_deref().unwrap();
    assert_eq!(payload[..5], [0, 0, 0, 0, 7], "magic byte and schema id");
    let schema = apache_avro::Schema::parse_str(crate::schemas::TRACE_SUMMARY).unwrap();
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build().unwrap();
    let value = reader.read_value(&mut &payload[5..]).unwrap();
    let apache_avro::types::Value::Record(fields) = value else { panic!("a record") };
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(field("trace"), apache_avro::types::Value::String("t1".into()));
    let apache_avro::types::Value::Array(steps) = field("steps") else { panic!("steps") };
    assert_eq!(steps.len(), 2);
    let late = outputs.iter().find(|o| o.topic == "audit.sequences.late").expect("offset 3 is late");
    let payload = late.payload.as_deref().unwrap();
    assert_eq!(payload[..5], [0, 0, 0, 0, 8], "magic byte and the late event schema's id");
    let schema = apache_avro::Schema::parse_str(crate::schemas::LATE_EVENT).unwrap();
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build().unwrap();
    let mut datum = &payload[5..];
    let apache_avro::types::Value::Record(fields) = reader.read_value(&mut datum).unwrap() else { panic!("a record") };
    assert!(datum.is_empty(), "one datum, nothing after it");
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(field("trace"), apache_avro::types::Value::String("t1".into()));
    assert_eq!(field("reason"), apache_avro::types::Value::String("window_closed".into()));
    let apache_avro::types::Value::Record(source) = field("source") else { panic!("source") };
    assert_eq!(source.iter().find(|(n, _)| n == "offset").map(|(_, v)| v.clone()), Some(apache_avro::types::Value::Long(3)));
    assert!(pipeline.output_topics().contains(&"audit.sequences.late".to_owned()));
}

#[test]
fn event_times_far_ahead_of_the_clock_are_not_used_as_timestamps() {
    const T0: i64 = 1_776_522_127_441;
    let mut pipeline = pipeline();
    let stamp = |pipeline: &mut Pipeline, now: i64| pipeline.process(&traced("t", T0, 0), now)[0].timestamp_ms;
    assert_eq!(stamp(&mut pipeline, T0 - MAX_STAMP_AHEAD_MS), Some(T0), "at the bound: event time");
    assert_eq!(stamp(&mut pipeline, T0 - MAX_STAMP_AHEAD_MS - 1), None, "beyond it: the send time");
    assert_eq!(stamp(&mut pipeline, T0 + 86_400_000), Some(T0), "old events keep their time");
}

#[test]
fn sticky_topics_are_the_siem_ones_and_on_request_the_trace_keyed_ones() {
    let mut config = Config::default();
    config.siem.formats = vec!["ecs".into(), "cef".into()];
    config.routes = vec![crate::config::RouteConfig { name: "r".into(), topic: "audit.r".into(), when: "result = denied".into() }];
    let pipeline = Pipeline::new(config.pipeline_settings());
    let siem = vec!["audit.siem.cef".to_owned(), "audit.siem.ecs".to_owned()];
    assert_eq!(pipeline.sticky_topics(true, false), siem);
    assert_eq!(pipeline.sticky_topics(false, false), Vec::<String>::new());
    let all = pipeline.sticky_topics(true, true);
    assert_eq!(all, ["audit.alerts", "audit.r", "audit.sequences", "audit.siem.cef", "audit.siem.ecs"]);
    assert!(!all.contains(&config.topics.dead_letter), "dead letters keep their original keys' partitions");
    config.passthrough.topic = Some("copy".into());
    let passthrough = Pipeline::new(config.pipeline_settings());
    assert!(passthrough.sticky_topics(true, true).is_empty(), "the baseline copies with the input's partitioning");
}
