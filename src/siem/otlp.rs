//! OpenTelemetry logs in OTLP JSON (`docs/siem/otlp.md`): each Kafka record is one complete
//! `ExportLogsServiceRequest` (`{"resourceLogs":[…]}`) holding one log record, as the collector's
//! Kafka receiver reads it with `encoding: otlp_json`.
//!
//! The OTLP JSON rules that differ from plain protobuf JSON are kept here: lowerCamelCase keys,
//! enums as integers, 64-bit integers (`timeUnixNano`, `intValue`) as decimal strings computed
//! from integers, and `traceId`/`spanId` as lowercase hex of exactly 16/8 bytes or absent. Our
//! trace ids (`tr-…`) are not W3C ids: they go to the `<prefix>.trace_id` attribute, and
//! `traceId` is set only when the trace already is a W3C trace id or `traceparent`.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::json::{user_email, SeverityBand};
use super::{Encoder, Product, ProductJson, Shared};
use crate::json_out::{self, Array, Literal, Object};
use crate::model::EnrichedEvent;

/// Semantic conventions version of the attribute names.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.44.0";
/// Instrumentation scope name.
pub const SCOPE_NAME: &str = "runtime_audit";

/// Settings of the OTLP encoder (`[siem.otlp]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Namespace of the custom attributes (`<prefix>.actor`, ...) and of the event name
    /// (`<prefix>.decision`). An organisation prefix such as `acme.runtime_audit` guards against
    /// future semantic-convention names.
    pub attribute_prefix: String,
    /// The third part of a `provider:region:cluster` target is a Kubernetes cluster: write it as
    /// `k8s.cluster.name`. Off: the cluster stays only in `<prefix>.target`.
    pub kubernetes_targets: bool,
}

/// Default of [`OtlpConfig::attribute_prefix`].
pub const DEFAULT_ATTRIBUTE_PREFIX: &str = "runtime_audit";

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig { attribute_prefix: DEFAULT_ATTRIBUTE_PREFIX.into(), kubernetes_targets: true }
    }
}

impl OtlpConfig {
    /// Checks the settings; returns one message per problem.
    pub fn problems(&self) -> Vec<String> {
        let p = &self.attribute_prefix;
        let valid = !p.is_empty()
            && !p.starts_with('.')
            && !p.ends_with('.')
            && !p.contains("..")
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if valid {
            Vec::new()
        } else {
            vec![format!("siem.otlp.attribute_prefix: {p:?} must be dot-separated names of ASCII letters, digits, `_` or `-`")]
        }
    }

    /// Builds the encoder.
    pub fn build(&self, product: &Product) -> OtlpEncoder {
        let key = |suffix: &str| Literal::new(&format!("{}.{suffix}", self.attribute_prefix));
        OtlpEncoder {
            config: self.clone(),
            product: product.json(),
            keys: Keys {
                event_name: key("decision"),
                event_id: key("event_id"),
                action: key("action"),
                result: key("result"),
                reason: key("reason"),
                actor: key("actor"),
                actor_type: key("actor.type"),
                artifact: key("artifact"),
                policy_mode: key("policy.mode"),
                target: key("target"),
                trace_id: key("trace_id"),
                extra: format!("{}.extra", self.attribute_prefix),
                user_name: Literal::new("user.name"),
                user_email: Literal::new("user.email"),
                artifact_version: Literal::new("artifact.version"),
                rule_name: Literal::new("security_rule.name"),
                cloud_provider: Literal::new("cloud.provider"),
                cloud_region: Literal::new("cloud.region"),
                cluster_name: Literal::new("k8s.cluster.name"),
                service_name: Literal::new("service.name"),
                service_version: Literal::new("service.version"),
            },
        }
    }
}

/// Attribute keys, under the configured prefix or OpenTelemetry's, rendered once as JSON.
#[derive(Debug, Clone)]
struct Keys {
    event_name: Literal,
    event_id: Literal,
    action: Literal,
    result: Literal,
    reason: Literal,
    actor: Literal,
    actor_type: Literal,
    artifact: Literal,
    policy_mode: Literal,
    target: Literal,
    trace_id: Literal,
    /// The prefix of extra fields' keys (`<prefix>.extra`), joined to each field name.
    extra: String,
    user_name: Literal,
    user_email: Literal,
    artifact_version: Literal,
    rule_name: Literal,
    cloud_provider: Literal,
    cloud_region: Literal,
    cluster_name: Literal,
    service_name: Literal,
    service_version: Literal,
}

/// Encodes events as OTLP JSON log requests.
#[derive(Debug, Clone)]
pub struct OtlpEncoder {
    config: OtlpConfig,
    product: ProductJson,
    keys: Keys,
}

/// `severityNumber` and `severityText` of a 0–10 severity.
pub fn severity(severity: u8) -> (u8, &'static str) {
    match SeverityBand::of(severity) {
        SeverityBand::Informational => (9, "INFO"),
        SeverityBand::Low => (10, "INFO2"),
        SeverityBand::Medium => (13, "WARN"),
        SeverityBand::High => (17, "ERROR"),
        SeverityBand::Critical => (21, "FATAL"),
    }
}

/// W3C trace context found in a trace field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext<'a> {
    /// 32 lowercase hex characters, not all zero.
    pub trace_id: &'a str,
    /// 16 lowercase hex characters, not all zero (from a `traceparent` only).
    pub span_id: Option<&'a str>,
    /// The trace flags byte (from a `traceparent` only).
    pub flags: Option<u8>,
}

fn lower_hex_id(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) && text.bytes().any(|b| b != b'0')
}

/// The W3C ids in `trace`: a bare 32-hex trace id, or a version-00 `traceparent`
/// (`00-<trace id>-<parent id>-<flags>`). Anything else, our `tr-…` ids included, gives `None`:
/// an id is never padded, hashed or cut into shape.
pub fn trace_context(trace: &str) -> Option<TraceContext<'_>> {
    if lower_hex_id(trace, 32) {
        return Some(TraceContext { trace_id: trace, span_id: None, flags: None });
    }
    let mut parts = trace.split('-');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("00"), Some(trace_id), Some(span_id), Some(flags), None)
            if lower_hex_id(trace_id, 32)
                && lower_hex_id(span_id, 16)
                && flags.len() == 2
                && flags.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Some(TraceContext { trace_id, span_id: Some(span_id), flags: u8::from_str_radix(flags, 16).ok() })
        }
        _ => None,
    }
}

/// Epoch milliseconds as OTLP's `fixed64` nanoseconds: a decimal string, exact (the digits of the
/// milliseconds followed by six zeros, no floating point). `None` before 1970 or past the
/// `u64` range (year 2554), where OTLP has no value.
pub fn unix_nanos(ms: i64) -> Option<UnixNanos> {
    const MAX_MS: i64 = (u64::MAX / 1_000_000) as i64;
    (0..=MAX_MS).contains(&ms).then_some(UnixNanos(ms))
}

/// A nanosecond timestamp serialized as a decimal string; see [`unix_nanos`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixNanos(i64);

impl Serialize for UnixNanos {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == 0 {
            serializer.serialize_str("0")
        } else {
            serializer.collect_str(&format_args!("{}000000", self.0))
        }
    }
}

impl UnixNanos {
    /// Writes `"key":"<nanoseconds>"`.
    fn write(self, o: &mut Object<'_>, key: &'static str) {
        if self.0 == 0 {
            o.str(key, "0");
        } else {
            o.str_parts(key, &[itoa::Buffer::new().format(self.0), "000000"]);
        }
    }
}

/// One attribute with a string value: `{"key":…,"value":{"stringValue":…}}`.
fn attribute(list: &mut Array<'_>, key: &Literal, value: &str) {
    list.object(|kv| {
        kv.literal("key", key);
        kv.object("value", |v| v.str("stringValue", value));
    });
}

/// The fields of an OTLP `AnyValue` holding any JSON value (an extra input field).
fn any_value(o: &mut Object<'_>, value: &Value) {
    match value {
        // An empty AnyValue is OTLP's null.
        Value::Null => {}
        Value::Bool(b) => o.bool("boolValue", *b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => o.str("intValue", itoa::Buffer::new().format(i)),
            // Past i64: keep every digit as text rather than round it.
            (None, Some(u), _) => o.str("stringValue", itoa::Buffer::new().format(u)),
            (None, None, Some(f)) => o.serialize("doubleValue", &f),
            (None, None, None) => o.str("stringValue", &n.to_string()),
        },
        Value::String(text) => o.str("stringValue", text),
        Value::Array(items) => o.object("arrayValue", |a| {
            a.array("values", |list| {
                for item in items {
                    list.object(|v| any_value(v, item));
                }
            })
        }),
        Value::Object(map) => o.object("kvlistValue", |kv| {
            kv.array("values", |list| {
                for (key, item) in map {
                    list.object(|entry| {
                        entry.str("key", key);
                        entry.object("value", |v| any_value(v, item));
                    });
                }
            })
        }),
    }
}

impl Encoder for OtlpEncoder {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn encode_shared(&self, enriched: &EnrichedEvent, shared: &Shared, out: &mut Vec<u8>) {
        let e = &enriched.event;
        let k = &self.keys;
        let (severity_number, severity_text) = severity(enriched.severity);
        let context = trace_context(&e.trace);
        let parts = enriched.target_parts();
        let user = enriched.actor_kind() == "user";
        // The record's attributes in the order of the worked examples; `<prefix>.trace_id` comes
        // after the fixed attributes and before the extras.
        let fixed: [Option<(&Literal, &str)>; 16] = [
            Some((&k.event_id, &enriched.event_id)),
            Some((&k.action, &e.action)),
            Some((&k.result, &e.result)),
            e.reason.as_deref().map(|reason| (&k.reason, reason)),
            Some((&k.actor, &e.actor)),
            Some((&k.actor_type, super::actor_type(enriched))),
            user.then_some((&k.user_name, enriched.actor_id())),
            user_email(enriched).map(|email| (&k.user_email, email)),
            Some((&k.artifact, &e.artifact)),
            enriched.artifact_version().map(|version| (&k.artifact_version, version)),
            Some((&k.rule_name, &e.policy)),
            Some((&k.policy_mode, &e.mode)),
            Some((&k.target, &e.target)),
            parts.map(|t| (&k.cloud_provider, t.provider)),
            parts.map(|t| (&k.cloud_region, t.region)),
            parts.filter(|_| self.config.kubernetes_targets).map(|t| (&k.cluster_name, t.cluster)),
        ];
        json_out::object(out, |request| {
            request.object_array_of_one("resourceLogs", |logs| {
                logs.object("resource", |resource| {
                    resource.array("attributes", |list| {
                        for (key, value) in [(&k.service_name, &self.product.source), (&k.service_version, &self.product.version)] {
                            list.object(|kv| {
                                kv.literal("key", key);
                                kv.object("value", |v| v.literal("stringValue", value));
                            });
                        }
                    })
                });
                logs.object_array_of_one("scopeLogs", |scope_logs| {
                    scope_logs.object("scope", |scope| {
                        scope.lit("name", SCOPE_NAME);
                        scope.lit("version", env!("CARGO_PKG_VERSION"));
                    });
                    scope_logs.lit("schemaUrl", SCHEMA_URL);
                    scope_logs.object_array_of_one("logRecords", |record| {
                        if let Some(time) = unix_nanos(e.ts_ms) {
                            time.write(record, "timeUnixNano");
                        }
                        if let Some(observed) = unix_nanos(enriched.provenance.ingest_ms).filter(|n| n.0 > 0) {
                            observed.write(record, "observedTimeUnixNano");
                        }
                        record.int("severityNumber", i64::from(severity_number));
                        record.lit("severityText", severity_text);
                        record.literal("eventName", &k.event_name);
                        record.object("body", |body| shared.write_message(body, "stringValue", enriched));
                        record.array("attributes", |list| {
                            for (key, value) in fixed.iter().flatten() {
                                attribute(list, key, value);
                            }
                            attribute(list, &k.trace_id, &e.trace);
                            for (name, value) in &e.extra {
                                list.object(|kv| {
                                    kv.str_parts("key", &[&k.extra, ".", name]);
                                    kv.object("value", |v| any_value(v, value));
                                });
                            }
                        });
                        record.opt_str("traceId", context.map(|c| c.trace_id));
                        record.opt_str("spanId", context.and_then(|c| c.span_id));
                        if let Some(flags) = context.and_then(|c| c.flags) {
                            record.int("flags", i64::from(flags));
                        }
                    });
                });
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::siem::json::testing::{enriched, hostile, keys, parse, product, raw_event, SEED_A, SEED_B};
    use proptest::prelude::*;

    fn encode_with(config: &OtlpConfig, event: &EnrichedEvent) -> Value {
        let mut out = Vec::new();
        config.build(&product()).encode(event, &mut out);
        parse(&out)
    }

    fn encode(event: &EnrichedEvent) -> Value {
        encode_with(&OtlpConfig::default(), event)
    }

    fn record(request: &Value) -> &Value {
        &request["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    }

    fn attribute<'v>(record: &'v Value, key: &str) -> Option<&'v Value> {
        let attributes = record["attributes"].as_array().unwrap();
        let mut found = attributes.iter().filter(|a| a["key"] == key);
        let first = found.next().map(|a| &a["value"]);
        assert!(found.next().is_none(), "duplicate attribute {key}");
        first
    }

    #[test]
    fn nanoseconds_are_exact_decimal_strings() {
        let ns = |ms| serde_json::to_string(&unix_nanos(ms).unwrap()).unwrap();
        assert_eq!(ns(1_773_480_413_120), "\"1773480413120000000\"");
        assert_eq!(ns(1_773_480_425_007), "\"1773480425007000000\"");
        assert_eq!(ns(0), "\"0\"");
        assert_eq!(ns(1), "\"1000000\"");
        // The last millisecond that fits a u64 of nanoseconds, and its neighbours.
        assert_eq!(ns(18_446_744_073_709), "\"18446744073709000000\"");
        assert!(unix_nanos(18_446_744_073_710).is_none());
        assert!(unix_nanos(-1).is_none());
        // A value f64 cannot hold exactly survives unchanged.
        assert_eq!(ns(9_007_199_254_741), "\"9007199254741000000\"");
        let r = encode(&enriched(SEED_B, 1_773_480_425_120));
        assert_eq!(record(&r)["timeUnixNano"], "1773480425007000000");
        assert_eq!(record(&r)["observedTimeUnixNano"], "1773480425120000000");
        assert!(record(&encode(&enriched(SEED_B, 0)))["observedTimeUnixNano"].is_null());
    }

    #[test]
    fn severities_are_integers_with_text() {
        let a = record(&encode(&enriched(SEED_A, 0))).clone();
        assert_eq!((a["severityNumber"].as_u64(), a["severityText"].as_str()), (Some(9), Some("INFO")));
        let b = record(&encode(&enriched(SEED_B, 0))).clone();
        assert_eq!((b["severityNumber"].as_u64(), b["severityText"].as_str()), (Some(13), Some("WARN")));
        assert_eq!(severity(4), (10, "INFO2"));
        assert_eq!(severity(8), (17, "ERROR"));
        assert_eq!(severity(10), (21, "FATAL"));
    }

    #[test]
    fn only_w3c_trace_ids_reach_trace_id() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_context(id), Some(TraceContext { trace_id: id, span_id: None, flags: None }));
        let parent = format!("00-{id}-00f067aa0ba902b7-01");
        assert_eq!(trace_context(&parent), Some(TraceContext { trace_id: id, span_id: Some("00f067aa0ba902b7"), flags: Some(1) }));
        for bad in [
            "tr-8f2c7a91-2b14-4e8e",
            "4BF92F3577B34DA6A3CE929D0E0E4736",
            "00000000000000000000000000000000",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f3577b34da6a3ce929d0e0e47366",
            "4bf92f3577b34da6a3ce929d0e0e473g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "",
        ] {
            assert_eq!(trace_context(bad), None, "{bad}");
        }
        let with = |trace: &str| SEED_A.replace("tr-8f2c7a91-2b14-4e8e", trace);
        let r = encode(&enriched(&with(id), 0));
        assert_eq!(record(&r)["traceId"], id);
        assert!(record(&r).get("spanId").is_none());
        let r = encode(&enriched(&with(&parent), 0));
        assert_eq!((record(&r)["traceId"].as_str(), record(&r)["spanId"].as_str()), (Some(id), Some("00f067aa0ba902b7")));
        assert_eq!(record(&r)["flags"], 1);
        assert_eq!(attribute(record(&r), "runtime_audit.trace_id").unwrap()["stringValue"], parent.as_str());
        let r = encode(&enriched(SEED_A, 0));
        assert!(record(&r).get("traceId").is_none() && record(&r).get("spanId").is_none());
        assert_eq!(attribute(record(&r), "runtime_audit.trace_id").unwrap()["stringValue"], "tr-8f2c7a91-2b14-4e8e");
    }

    #[test]
    fn extras_become_typed_attributes() {
        let text =
            SEED_A.replace("}", r#","n":-3,"big":18446744073709551615,"f":0.5,"ok":true,"none":null,"list":[1,"a"],"obj":{"k":"v"}}"#);
        let r = encode(&enriched(&text, 0));
        let rec = record(&r);
        let a = |key: &str| attribute(rec, &format!("runtime_audit.extra.{key}")).unwrap().clone();
        assert_eq!(a("n"), serde_json::json!({"intValue":"-3"}));
        assert_eq!(a("big"), serde_json::json!({"stringValue":"18446744073709551615"}));
        assert_eq!(a("f"), serde_json::json!({"doubleValue":0.5}));
        assert_eq!(a("ok"), serde_json::json!({"boolValue":true}));
        assert_eq!(a("none"), serde_json::json!({}));
        assert_eq!(a("list"), serde_json::json!({"arrayValue":{"values":[{"intValue":"1"},{"stringValue":"a"}]}}));
        assert_eq!(a("obj"), serde_json::json!({"kvlistValue":{"values":[{"key":"k","value":{"stringValue":"v"}}]}}));
    }

    #[test]
    fn prefix_and_kubernetes_are_configurable() {
        let config = OtlpConfig { attribute_prefix: "acme.runtime_audit".into(), kubernetes_targets: false };
        let r = encode_with(&config, &enriched(SEED_A, 0));
        let rec = record(&r);
        assert_eq!(rec["eventName"], "acme.runtime_audit.decision");
        assert!(attribute(rec, "acme.runtime_audit.actor").is_some());
        assert!(attribute(rec, "k8s.cluster.name").is_none());
        assert!(OtlpConfig::default().problems().is_empty());
        for bad in ["", ".x", "x.", "a..b", "a b"] {
            let config = OtlpConfig { attribute_prefix: bad.into(), ..OtlpConfig::default() };
            assert_eq!(config.problems().len(), 1, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn any_text_round_trips_with_unique_keys(
            kind in prop_oneof![Just("user".to_owned()), Just("service".to_owned()), hostile()],
            id in hostile(), action in hostile(), artifact in hostile(), policy in hostile(),
            target in hostile(), mode in hostile(), trace in hostile(), reason in hostile(),
            key in hostile(), value in hostile(),
            result in prop_oneof![Just("allowed".to_owned()), Just("denied".to_owned()), hostile()],
            ms in 0i64..=18_446_744_073_709,
        ) {
            let actor = format!("{kind}:{id}");
            let mut extra = serde_json::Map::new();
            extra.insert(key.clone(), Value::String(value.clone()));
            let mut event = raw_event(&actor, &action, &artifact, &policy, &target, &mode, &trace, &result, Some(&reason), extra, 6);
            event.event.ts_ms = ms;
            let r = encode(&event);
            // OTLP JSON keys are lowerCamelCase everywhere (attribute names are values).
            for key in keys(&r, &[]) {
                prop_assert!(!key.contains('_') && key.starts_with(|c: char| c.is_ascii_lowercase()), "{}", key);
            }
            let rec = record(&r);
            let s = |key: &str| attribute(rec, key).map(|v| v["stringValue"].as_str().unwrap().to_owned());
            prop_assert_eq!(s("runtime_audit.action"), Some(action.clone()));
            prop_assert_eq!(s("runtime_audit.actor"), Some(actor.clone()));
            prop_assert_eq!(s("runtime_audit.artifact"), Some(artifact.clone()));
            prop_assert_eq!(s("security_rule.name"), Some(policy.clone()));
            prop_assert_eq!(s("runtime_audit.target"), Some(target.clone()));
            prop_assert_eq!(s("runtime_audit.policy.mode"), Some(mode.clone()));
            prop_assert_eq!(s("runtime_audit.trace_id"), Some(trace.clone()));
            prop_assert_eq!(s("runtime_audit.reason"), Some(reason.clone()));
            prop_assert_eq!(s(&format!("runtime_audit.extra.{key}")), Some(value.clone()));
            prop_assert_eq!(rec["body"]["stringValue"].as_str().unwrap(), crate::siem::message(&event));
            // Time: exact integer nanoseconds as a decimal string.
            let ns: u128 = rec["timeUnixNano"].as_str().unwrap().parse().unwrap();
            prop_assert_eq!(ns, ms as u128 * 1_000_000);
            // traceId only for W3C ids, and then well-formed.
            match rec.get("traceId") {
                Some(id) => prop_assert!(lower_hex_id(id.as_str().unwrap(), 32)),
                None => prop_assert!(trace_context(&trace).is_none()),
            }
        }
    }
}
