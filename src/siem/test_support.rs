//! Test helpers for the encoders: the format notes' seed events, the worked-example product, and
//! proptest strategies that build events straight from arbitrary strings (bypassing validation, so
//! the encoders are tested on inputs validation would reject too).

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{message, message_parts, Encoder, Product, Shared};
use crate::model::{AuditEvent, Decision, EnrichedEvent, SourceRecord};
use crate::pipeline::decode::json;
use crate::pipeline::enrich::{enrich, SeverityLadder};
use crate::pipeline::validate::{validate, ValidateSettings};

/// Seed A of the format notes ("deploy allowed").
pub const SEED_A: &str = r#"{"ts":"2026-03-14T09:26:53.120Z","actor":"user:j.patel@acme.com","action":"deploy","artifact":"billing-service@v4.2.1","policy":"prod-billing-deploy-v3","target":"aws:us-east-1:cluster-prod-02","mode":"fixed","trace":"tr-8f2c7a91-2b14-4e8e","result":"allowed"}"#;
/// Seed B of the format notes ("execute denied").
pub const SEED_B: &str = r#"{"ts":"2026-03-14T09:27:05.007Z","actor":"service:fraud-detector","action":"execute","artifact":"billing-service@v4.2.1","policy":"prod-billing-deploy-v3","target":"aws:us-east-1:cluster-prod-02","mode":"adaptive","trace":"tr-8f2c7a91-2b14-4e8e","result":"denied","reason":"risk score 0.91 > threshold=0.80 | outside change window"}"#;

/// A JSON input event through decode, validate and enrich, as the pipeline would see it.
pub fn enriched(json_text: &str) -> EnrichedEvent {
    let raw = json::decode(json_text.as_bytes()).expect("test event decodes");
    let event = validate(raw, &ValidateSettings::default()).expect("test event is valid");
    enrich(event, &SourceRecord::default(), 0, &SeverityLadder::default())
}

/// The product identity of the worked examples.
pub fn example_product() -> Product {
    Product { vendor: "Acme".into(), name: "RuntimeGuard".into(), version: "1.4.0".into(), source: "runtime-guard".into() }
}

/// Encodes one event to a string (every encoder writes UTF-8).
pub fn encode_to_string(encoder: &dyn Encoder, event: &EnrichedEvent) -> String {
    let mut out = Vec::new();
    encoder.encode(event, &mut out);
    String::from_utf8(out).expect("encoders write UTF-8")
}

/// Strings made to break line formats: mostly the characters that need escaping, some arbitrary
/// Unicode, sometimes thousands of characters long; plus fully arbitrary strings.
pub fn hostile_string() -> impl Strategy<Value = String> {
    let special = prop_oneof![
        4 => prop::sample::select(vec!['|', '=', '\\', '\r', '\n', '\t', '\0', ' ', '^', '"', '\u{7f}', '\u{85}', '\u{2028}']),
        2 => prop::sample::select(vec!['é', 'ß', '€', '😀', 'ǆ', '\u{301}']),
        3 => prop::char::range('a', 'z'),
        1 => any::<char>(),
    ];
    let short = prop::collection::vec(special, 0..24).prop_map(|v| v.into_iter().collect::<String>());
    prop_oneof![
        4 => short.clone(),
        // Long values (up to several KB) are a short hostile piece repeated, which is much cheaper
        // to generate than thousands of independent characters and still puts multi-byte
        // characters across every length limit.
        1 => (short, 1usize..400).prop_map(|(piece, times)| piece.repeat(times)),
        2 => any::<String>(),
    ]
}

/// An extra field value: a hostile string or a JSON number, boolean or null.
fn extra_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => hostile_string().prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
    ]
}

/// Events whose every text field is arbitrary: actor kinds and targets sometimes well-formed so
/// the optional fields appear, severities past 10, timestamps anywhere in the `i64` range.
pub fn arbitrary_event() -> impl Strategy<Value = EnrichedEvent> {
    let actor = prop_oneof![
        hostile_string(),
        (prop::sample::select(vec!["user", "service", "bot"]), hostile_string()).prop_map(|(k, id)| format!("{k}:{id}")),
    ];
    let target = prop_oneof![
        hostile_string(),
        (hostile_string(), hostile_string(), hostile_string()).prop_map(|(p, r, c)| format!(
            "{}:{}:{}",
            p.replace(':', ""),
            r.replace(':', ""),
            c.replace(':', "")
        )),
    ];
    let result = prop_oneof![Just("allowed".to_owned()), Just("denied".to_owned()), hostile_string()];
    let times = prop_oneof![any::<i64>(), 0i64..4_000_000_000_000];
    let texts = (hostile_string(), hostile_string(), hostile_string(), hostile_string(), hostile_string(), hostile_string());
    let extras = prop::collection::vec((hostile_string(), extra_value()), 0..4);
    (actor, target, result, times, texts, prop::option::of(hostile_string()), extras, 0u8..=255).prop_map(
        |(actor, target, result, ts_ms, (ts, action, artifact, policy, mode, trace), reason, extras, severity)| {
            let decision = match result.as_str() {
                "allowed" => Decision::Allowed,
                "denied" => Decision::Denied,
                _ => Decision::Other,
            };
            let extra: Map<String, Value> = extras.into_iter().collect();
            let event = AuditEvent { ts, ts_ms, actor, action, artifact, policy, target, mode, trace, result, decision, reason, extra };
            let mut enriched = enrich(event, &SourceRecord::default(), 0, &SeverityLadder::default());
            enriched.severity = severity;
            enriched
        },
    )
}

#[test]
fn message_parts_join_to_the_message() {
    for seed in [SEED_A, SEED_B] {
        let event = enriched(seed);
        assert_eq!(message_parts(&event).concat(), message(&event));
    }
}

proptest! {
    /// The shared message is the message as serde_json writes it, and a `Shared` filled by one
    /// format and read by the next gives every format the bytes it writes on its own.
    #[test]
    fn shared_pieces_change_no_output(event in arbitrary_event()) {
        let shared = Shared::default();
        let expected = serde_json::to_string(&message(&event)).unwrap();
        prop_assert_eq!(std::str::from_utf8(shared.message_json(&event)).unwrap(), expected.as_str());
        let mut config = crate::config::Config::default();
        config.siem.formats = crate::config::KNOWN_FORMATS.iter().map(|f| f.to_string()).collect();
        let encoders = config.pipeline_settings().encoders;
        let shared = Shared::for_formats(encoders.len());
        for encoder in &encoders {
            let alone = encode_to_string(encoder.as_ref(), &event);
            let mut out = Vec::new();
            encoder.encode_shared(&event, &shared, &mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), alone, "{}", encoder.name());
        }
    }
}
