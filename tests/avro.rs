//! Avro input in the Confluent wire format, against the real Kafka broker and Apicurio registry.

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use auditflow::config::RegistryConfig;
use auditflow::kafka::registry::Registry;
use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::util::*;

/// Version 2 of the event schema: fields in another order, `extra` dropped, and an added optional
/// field with a default. Compatible with version 1 by Avro's resolution rules.
const V2: &str = r#"{"type":"record","name":"AuditEvent","namespace":"io.auditflow","fields":[
  {"name":"trace","type":"string"},{"name":"result","type":"string"},{"name":"ts","type":"string"},
  {"name":"actor","type":"string"},{"name":"action","type":"string"},{"name":"artifact","type":"string"},
  {"name":"policy","type":"string"},{"name":"target","type":"string"},{"name":"mode","type":"string"},
  {"name":"reason","type":["null","string"],"default":null},
  {"name":"region_hint","type":["null","string"],"default":null}]}"#;

const OTHER: &str = r#"{"type":"record","name":"Payment","namespace":"io.example","fields":[{"name":"amount","type":"long"}]}"#;

pub(crate) fn canonical(trace: &str, result: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ts", "2026-04-18T14:28:33.911Z".into()),
        ("actor", "service:fraud-detector".into()),
        ("action", "execute".into()),
        ("artifact", "customer-lookup@v2.8.0".into()),
        ("policy", "pii-access-restrict-v2".into()),
        ("target", "aws:us-east-1:cluster-prod-02".into()),
        ("mode", "adaptive".into()),
        ("trace", trace.into()),
        ("result", result.into()),
    ]
}

/// Encodes the canonical fields with `schema`, in the schema's own field order.
pub(crate) fn datum(schema_text: &str, values: &[(&'static str, String)]) -> Vec<u8> {
    let schema = Schema::parse_str(schema_text).unwrap();
    let json: serde_json::Value = serde_json::from_str(schema_text).unwrap();
    let by_name: HashMap<&str, &String> = values.iter().map(|(k, v)| (*k, v)).collect();
    let fields = json["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = f["name"].as_str().unwrap().to_owned();
            let value = match (name.as_str(), by_name.get(name.as_str())) {
                ("reason" | "region_hint", None) => Avro::Union(0, Box::new(Avro::Null)),
                ("reason" | "region_hint", Some(v)) => Avro::Union(1, Box::new(Avro::String((*v).clone()))),
                ("extra", _) => Avro::Map(HashMap::new()),
                (_, Some(v)) => Avro::String((*v).clone()),
                (other, None) => panic!("no value for {other}"),
            };
            (name, value)
        })
        .collect();
    to_avro_datum(&schema, Avro::Record(fields)).unwrap()
}

fn to_avro_datum(schema: &Schema, value: Avro) -> apache_avro::AvroResult<Vec<u8>> {
    GenericDatumWriter::builder(schema).build()?.write_value_to_vec(value)
}

fn code_of(message: &OwnedMessage) -> String {
    let headers = message.headers().unwrap();
    let header = headers.iter().find(|h| h.key == "auditflow.error.code").unwrap();
    String::from_utf8(header.value.unwrap().to_vec()).unwrap()
}

/// Two compatible schema versions decode to the same canonical event; an unknown schema id, a
/// schema of another record type, a truncated datum and a wrong magic byte are dead letters.
#[tokio::test(flavor = "multi_thread")]
async fn avro_versions_decode_alike_and_bad_avro_is_dead_lettered() {
    let _guard = REGISTRY_LOCK.read().await;
    let raw = unique("avro");
    let (alerts, dlq, prefix) = (format!("{raw}.alerts"), format!("{raw}.dlq"), format!("{raw}.siem."));
    create_topics(&[&raw, &alerts, &dlq, &format!("{prefix}ecs")], 1).await;
    let registry = Registry::from_config(&RegistryConfig { url: Some(registry_url()), ..Default::default() }).unwrap().unwrap();
    let subject = format!("{raw}-value");
    let v1 = registry.register_avro(&subject, auditflow::schemas::AUDIT_EVENT).await.unwrap();
    let v2 = registry.register_avro(&subject, V2).await.unwrap();
    let other = registry.register_avro(&format!("{raw}-payment-value"), OTHER).await.unwrap();
    assert_ne!(v1, v2);

    let event = canonical("tr-avro-1", "denied");
    let good_v1 = datum(auditflow::schemas::AUDIT_EVENT, &event);
    let good_v2 = datum(V2, &event);
    let payment = to_avro_datum(&Schema::parse_str(OTHER).unwrap(), Avro::Record(vec![("amount".into(), Avro::Long(5))])).unwrap();
    let mut wrong_magic = confluent(v1, &good_v1);
    wrong_magic[0] = 1;
    let values: Vec<(&str, Vec<u8>)> = vec![
        ("v1", confluent(v1, &good_v1)),
        ("v2", confluent(v2, &good_v2)),
        ("unknown-id", confluent(1_999_999_999, &good_v1)),
        ("other-type", confluent(other, &payment)),
        ("truncated", confluent(v1, &good_v1[..good_v1.len() - 4])),
        ("wrong-magic", wrong_magic),
        (
            "json",
            serde_json::to_vec(
                &event.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(v.as_str()))).collect::<serde_json::Map<_, _>>(),
            )
            .unwrap(),
        ),
    ];
    let inputs: Vec<Input> = values
        .iter()
        .map(|(key, value)| Input { partition: 0, key: Some(key.as_bytes().to_vec()), value: Some(value.clone()), headers: vec![] })
        .collect();
    produce(&raw, &inputs).await;

    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let more = format!("[registry]\nurl = \"{}\"\n", registry_url());
    let config = write_config_with(dir.path(), &group, &raw, &alerts, &dlq, &prefix, &more);
    let app = Auditflow::start(&config);
    await_committed_to_end(&group, &raw, Duration::from_secs(60));
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");

    let ecs = read_all(&format!("{prefix}ecs"));
    assert_eq!(ecs.len(), 3, "v1, v2 and json decode: {log}");
    let docs: Vec<serde_json::Value> = ecs.iter().map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap()).collect();
    let strip = |d: &serde_json::Value| {
        let mut d = d.clone();
        d["runtime_audit"].as_object_mut().unwrap().remove("extra");
        d
    };
    assert_eq!(strip(&docs[0]), strip(&docs[1]), "v1 and v2 give the same canonical event");
    assert_eq!(strip(&docs[0]), strip(&docs[2]), "avro and json give the same canonical event");
    assert_eq!(docs[1]["runtime_audit"]["extra"]["region_hint"], serde_json::Value::Null, "v2's added field is carried");
    assert_eq!(read_all(&alerts).len(), 3);

    let dead = read_all(&dlq);
    let codes: HashMap<String, String> = dead.iter().map(|m| (String::from_utf8(m.key().unwrap().to_vec()).unwrap(), code_of(m))).collect();
    assert_eq!(codes.len(), 4, "{codes:?}");
    assert_eq!(codes["unknown-id"], "decode.unknown_schema_id");
    assert_eq!(codes["other-type"], "decode.incompatible_schema");
    assert_eq!(codes["truncated"], "decode.invalid_avro");
    assert_eq!(codes["wrong-magic"], "decode.unknown_format");
    for message in &dead {
        let key = std::str::from_utf8(message.key().unwrap()).unwrap();
        let original = &values.iter().find(|(k, _)| *k == key).unwrap().1;
        assert_eq!(message.payload().unwrap(), original.as_slice(), "original bytes of {key}");
    }
}

/// The registry stops mid-stream: auditflow pauses, commits nothing past the record that needs a
/// schema, logs the failure, and once the registry is back every record lands as it would have.
#[tokio::test(flavor = "multi_thread")]
async fn registry_outage_pauses_and_resumes_without_loss() {
    registry_outage(false, false).await;
}

/// The same with an outage longer than `max.poll.interval.ms` (7 s here) and the group watchdog
/// (5 s here): librdkafka leaves the group while auditflow does not poll. The run must not stop
/// for it (librdkafka delivers statistics only while the consumer is polled, and the watchdog's
/// clock is held while consumption is paused); once the registry is back the consumer rejoins and
/// nothing is lost (the records held during the outage are written twice: see the end).
#[tokio::test(flavor = "multi_thread")]
async fn registry_outage_longer_than_the_poll_interval_is_not_taken_for_a_stuck_group() {
    registry_outage(true, false).await;
}

/// The long outage in exactly-once mode: what the instance wrote while out of the group is in a
/// transaction that cannot commit (the group moved on), so a `read_committed` reader finds every
/// record exactly once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_registry_outage_longer_than_the_poll_interval_gives_every_record_once() {
    registry_outage(true, true).await;
}

async fn registry_outage(beyond_poll_interval: bool, exactly_once: bool) {
    let _guard = REGISTRY_LOCK.write().await;
    let raw = unique("outage");
    let (alerts, dlq, prefix) = (format!("{raw}.alerts"), format!("{raw}.dlq"), format!("{raw}.siem."));
    create_topics(&[&raw, &alerts, &dlq, &format!("{prefix}ecs")], 1).await;
    let registry = Registry::from_config(&RegistryConfig { url: Some(registry_url()), ..Default::default() }).unwrap().unwrap();
    let id = registry.register_avro(&format!("{raw}-value"), V2).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let more = format!("[registry]\nurl = \"{}\"\n", registry_url());
    let config = write_config_with(dir.path(), &group, &raw, &alerts, &dlq, &prefix, &more);
    if beyond_poll_interval {
        let consumer = "\"max.poll.interval.ms\" = \"7000\"\n\"statistics.interval.ms\" = \"1000\"\n";
        std::fs::write(&config, with_kafka_settings(&config, "group_stuck_timeout_ms = 5000\n", consumer)).unwrap();
    }
    if exactly_once {
        make_exactly_once(&config, &format!("{group}-tx"));
    }
    let mut app = Auditflow::start(&config);

    let json = |i: usize| {
        let map: serde_json::Map<String, serde_json::Value> =
            canonical(&format!("tr-json-{i}"), "allowed").into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
        Input { partition: 0, key: None, value: Some(serde_json::to_vec(&map).unwrap()), headers: vec![] }
    };
    let avro = |i: usize| Input {
        partition: 0,
        key: None,
        value: Some(confluent(id, &datum(V2, &canonical(&format!("tr-avro-{i}"), "allowed")))),
        headers: vec![],
    };
    produce(&raw, &[json(0), json(1)]).await;
    await_committed_to_end(&group, &raw, Duration::from_secs(60));

    stack(&["down", "registry"]);
    let _restart = RestartRegistryOnDrop;
    let positions = produce(&raw, &[avro(0), json(2), avro(1), json(3)]).await;
    await_log(&app.log, "Schema registry unavailable", Duration::from_secs(30));
    let held = committed(&group, &raw, 1);
    assert_eq!(held, vec![(0, positions[0].1)], "no commit past the record waiting for its schema");
    if beyond_poll_interval {
        // Out of the group (librdkafka leaves it when not polled for max.poll.interval.ms), and
        // for longer than the watchdog's timeout: the run must still be going.
        // A failed request counts as "still a member": the loop asks again.
        let members = || group_members(&group).unwrap_or(usize::MAX);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while members() != 0 {
            assert!(std::time::Instant::now() < deadline, "the consumer never left the group");
            assert!(app.exited().is_none(), "auditflow exited");
            std::thread::sleep(Duration::from_millis(200));
        }
        let left = std::time::Instant::now();
        while left.elapsed() < Duration::from_secs(8) {
            assert!(
                app.exited().is_none(),
                "the watchdog stopped a deliberately paused run:\n{}",
                std::fs::read_to_string(&app.log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    stack(&["up", "registry"]);

    await_committed_to_end(&group, &raw, Duration::from_secs(90));
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("Schema registry is back; resuming."), "{log}");
    assert_eq!(read_all(&dlq).len(), 0, "nothing dead-lettered by the outage");
    let traces: Vec<String> = read_all(&format!("{prefix}ecs"))
        .iter()
        .map(|m| serde_json::from_slice::<serde_json::Value>(m.payload().unwrap()).unwrap()["trace"]["id"].as_str().unwrap().to_owned())
        .collect();
    let expected = ["tr-json-0", "tr-json-1", "tr-avro-0", "tr-json-2", "tr-avro-1", "tr-json-3"];
    if beyond_poll_interval && !exactly_once {
        // Out of the group, this instance no longer owned what it held when the registry came
        // back; it wrote those records, and read them again from the last commit when it rejoined:
        // at-least-once, every record, first copies in order.
        let mut first: Vec<&str> = Vec::new();
        for trace in &traces {
            if !first.contains(&trace.as_str()) {
                first.push(trace);
            }
        }
        assert_eq!(first, expected, "every record, first copies in order: {traces:?}");
    } else {
        assert_eq!(traces, expected, "every record, in order");
    }
}

/// Brings the registry back even when the outage test fails half-way, so later tests have it.
struct RestartRegistryOnDrop;

impl Drop for RestartRegistryOnDrop {
    fn drop(&mut self) {
        stack(&["up", "registry"]);
    }
}
