//! Google SecOps (Chronicle) UDM events in the ingestion JSON form (`docs/siem/udm.md`): camelCase
//! field names, enum values as strings, repeated fields as arrays.
//!
//! Each Kafka record is one UDM event, bare by default (the object that goes into
//! `{"inlineSource":{"events":[{"udm": …}]}}` of the Chronicle API's `events:import`), or
//! already wrapped as `{"udm": …}` with `wrap_event`, so a bridge only has to join records into the
//! `events` array. Extra input fields go into `additional` as `extra.<name>`.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::json::{user_email, write, Message, SeverityBand, Truncated};
use super::{Encoder, Product};
use crate::model::{Decision, EnrichedEvent};

/// Longest `metadata.productVersion`, in bytes.
pub const MAX_PRODUCT_VERSION: usize = 32;
/// Longest `metadata.productEventType`, in bytes.
pub const MAX_PRODUCT_EVENT_TYPE: usize = 64;
/// Longest `metadata.productLogId`, in bytes.
pub const MAX_PRODUCT_LOG_ID: usize = 256;

/// Settings of the UDM encoder (`[siem.udm]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdmConfig {
    /// Write each event as `{"udm": <event>}` (one element of `inlineSource.events` of
    /// `events:import`) instead of the bare UDM event. Default false.
    pub wrap_event: bool,
}

impl UdmConfig {
    /// Builds the encoder.
    pub fn build(&self, product: &Product) -> UdmEncoder {
        UdmEncoder { config: self.clone(), product: product.clone() }
    }
}

/// Encodes events as UDM events.
#[derive(Debug, Clone)]
pub struct UdmEncoder {
    config: UdmConfig,
    product: Product,
}

/// `metadata.eventType` of an action (format notes §0.4).
pub fn event_type(action: &str) -> &'static str {
    match action {
        "deploy" | "modify" => "USER_RESOURCE_UPDATE_CONTENT",
        "execute" | "read" | "get" | "list" => "USER_RESOURCE_ACCESS",
        "create" => "USER_RESOURCE_CREATION",
        "delete" => "USER_RESOURCE_DELETION",
        _ => "GENERIC_EVENT",
    }
}

/// `securityResult.severity` (ProductSeverity) of a 0–10 severity.
pub fn severity(severity: u8) -> &'static str {
    match SeverityBand::of(severity) {
        SeverityBand::Informational => "INFORMATIONAL",
        SeverityBand::Low => "LOW",
        SeverityBand::Medium => "MEDIUM",
        SeverityBand::High => "HIGH",
        SeverityBand::Critical => "CRITICAL",
    }
}

/// `cloud.environment` (CloudEnvironment) of a target provider, when UDM names it.
fn cloud_environment(provider: &str) -> Option<&'static str> {
    match provider {
        "aws" => Some("AMAZON_WEB_SERVICES"),
        "gcp" | "google" => Some("GOOGLE_CLOUD_PLATFORM"),
        "azure" => Some("MICROSOFT_AZURE"),
        _ => None,
    }
}

#[derive(Serialize)]
struct Wrapped<'a> {
    udm: Event<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    metadata: Metadata<'a>,
    principal: Principal<'a>,
    target: Target<'a>,
    security_result: [SecurityResult<'a>; 1],
    additional: Additional<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    event_timestamp: &'a str,
    event_type: &'static str,
    vendor_name: &'a str,
    product_name: &'a str,
    product_version: Truncated<'a>,
    product_event_type: Truncated<'a>,
    product_log_id: Truncated<'a>,
    description: Message<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Principal<'a> {
    user: User<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct User<'a> {
    userid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_addresses: Option<[&'a str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_type: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Target<'a> {
    application: &'a str,
    resource: Resource<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_ancestors: Option<[Ancestor<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud: Option<Cloud>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<Location<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Resource<'a> {
    name: &'a str,
    product_object_id: &'a str,
    resource_type: &'static str,
    resource_subtype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attribute: Option<Attribute<'a>>,
}

#[derive(Serialize)]
struct Attribute<'a> {
    labels: [Label<'a>; 1],
}

#[derive(Serialize)]
struct Label<'a> {
    key: &'static str,
    value: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ancestor<'a> {
    name: &'a str,
    resource_type: &'static str,
}

#[derive(Serialize)]
struct Cloud {
    environment: &'static str,
}

#[derive(Serialize)]
struct Location<'a> {
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SecurityResult<'a> {
    action: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    action_details: Option<&'a str>,
    rule_name: &'a str,
    rule_type: &'a str,
    summary: Summary<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    severity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<[&'static str; 1]>,
}

/// `<action> <result>`, e.g. `deploy allowed`.
struct Summary<'a>(&'a str, &'a str);

impl Serialize for Summary<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{} {}", self.0, self.1))
    }
}

/// `additional` (a protobuf Struct): trace, raw actor and target, then each extra as
/// `extra.<name>`, so no extra can collide with the fixed keys.
struct Additional<'a> {
    trace: &'a str,
    actor: &'a str,
    target: &'a str,
    extra: &'a Map<String, Value>,
}

struct ExtraKey<'a>(&'a str);

impl Serialize for ExtraKey<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("extra.{}", self.0))
    }
}

impl Serialize for Additional<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3 + self.extra.len()))?;
        map.serialize_entry("trace_id", self.trace)?;
        map.serialize_entry("actor", self.actor)?;
        map.serialize_entry("target", self.target)?;
        for (key, value) in self.extra {
            map.serialize_entry(&ExtraKey(key), value)?;
        }
        map.end()
    }
}

impl Encoder for UdmEncoder {
    fn name(&self) -> &'static str {
        "udm"
    }

    fn encode(&self, enriched: &EnrichedEvent, out: &mut Vec<u8>) {
        let e = &enriched.event;
        let service = enriched.actor_kind == "service";
        let parts = enriched.target_parts.as_ref();
        let (action, action_details) = match e.decision {
            Decision::Allowed => ("ALLOW", None),
            Decision::Denied => ("BLOCK", None),
            Decision::Other => ("UNKNOWN_ACTION", Some(e.result.as_str())),
        };
        let event = Event {
            metadata: Metadata {
                event_timestamp: &e.ts,
                event_type: event_type(&e.action),
                vendor_name: &self.product.vendor,
                product_name: &self.product.name,
                product_version: Truncated(&self.product.version, MAX_PRODUCT_VERSION),
                product_event_type: Truncated(&e.action, MAX_PRODUCT_EVENT_TYPE),
                product_log_id: Truncated(&enriched.event_id, MAX_PRODUCT_LOG_ID),
                description: Message(enriched),
            },
            principal: Principal {
                user: User {
                    userid: &enriched.actor_id,
                    email_addresses: user_email(enriched).map(|email| [email]),
                    account_type: service.then_some("SERVICE_ACCOUNT_TYPE"),
                },
                application: service.then_some(enriched.actor_id.as_str()),
            },
            target: Target {
                application: &enriched.artifact_name,
                resource: Resource {
                    name: &enriched.artifact_name,
                    product_object_id: &e.artifact,
                    resource_type: "SERVICE",
                    resource_subtype: "artifact",
                    attribute: enriched
                        .artifact_version
                        .as_deref()
                        .map(|version| Attribute { labels: [Label { key: "version", value: version }] }),
                },
                resource_ancestors: parts.map(|t| [Ancestor { name: &t.cluster, resource_type: "CLUSTER" }]),
                cloud: parts.and_then(|t| cloud_environment(&t.provider)).map(|environment| Cloud { environment }),
                location: parts.map(|t| Location { name: &t.region }),
            },
            security_result: [SecurityResult {
                action: [action],
                action_details,
                rule_name: &e.policy,
                rule_type: &e.mode,
                summary: Summary(&e.action, &e.result),
                description: e.reason.as_deref(),
                severity: severity(enriched.severity),
                category: (e.decision == Decision::Denied).then_some(["POLICY_VIOLATION"]),
            }],
            additional: Additional { trace: &e.trace, actor: &e.actor, target: &e.target, extra: &e.extra },
        };
        if self.config.wrap_event {
            write(out, &Wrapped { udm: event });
        } else {
            write(out, &event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::siem::json::testing::{enriched, hostile, keys, parse, product, raw_event, SEED_A, SEED_B};
    use proptest::prelude::*;

    fn encode_with(config: &UdmConfig, event: &EnrichedEvent) -> Value {
        let mut out = Vec::new();
        config.build(&product()).encode(event, &mut out);
        parse(&out)
    }

    fn encode(event: &EnrichedEvent) -> Value {
        encode_with(&UdmConfig::default(), event)
    }

    #[test]
    fn event_types_follow_the_action_table() {
        assert_eq!(event_type("deploy"), "USER_RESOURCE_UPDATE_CONTENT");
        assert_eq!(event_type("modify"), "USER_RESOURCE_UPDATE_CONTENT");
        assert_eq!(event_type("execute"), "USER_RESOURCE_ACCESS");
        assert_eq!(event_type("create"), "USER_RESOURCE_CREATION");
        assert_eq!(event_type("delete"), "USER_RESOURCE_DELETION");
        for read in ["read", "get", "list"] {
            assert_eq!(event_type(read), "USER_RESOURCE_ACCESS");
        }
        assert_eq!(event_type("rollback"), "GENERIC_EVENT");
    }

    #[test]
    fn decisions_and_severities() {
        let a = encode(&enriched(SEED_A, 0));
        let b = encode(&enriched(SEED_B, 0));
        assert_eq!(a["securityResult"][0]["action"], serde_json::json!(["ALLOW"]));
        assert_eq!(a["securityResult"][0]["severity"], "INFORMATIONAL");
        assert!(a["securityResult"][0].get("category").is_none());
        assert_eq!(b["securityResult"][0]["action"], serde_json::json!(["BLOCK"]));
        assert_eq!(b["securityResult"][0]["severity"], "MEDIUM");
        assert_eq!(b["securityResult"][0]["category"], serde_json::json!(["POLICY_VIOLATION"]));
        assert_eq!(severity(4), "LOW");
        assert_eq!(severity(9), "HIGH");
        assert_eq!(severity(10), "CRITICAL");
        let other = encode(&enriched(&SEED_A.replace("\"allowed\"", "\"challenged\""), 0));
        assert_eq!(other["securityResult"][0]["action"], serde_json::json!(["UNKNOWN_ACTION"]));
        assert_eq!(other["securityResult"][0]["actionDetails"], "challenged");
    }

    #[test]
    fn wrapper_is_optional() {
        let config = UdmConfig { wrap_event: true };
        let wrapped = encode_with(&config, &enriched(SEED_A, 0));
        assert_eq!(wrapped["udm"], encode(&enriched(SEED_A, 0)));
    }

    #[test]
    fn length_limits_cut_on_character_boundaries() {
        let action = "é".repeat(40); // 80 bytes
        let event = raw_event("user:a", &action, "x", "p", "t", "fixed", "t", "allowed", None, Map::new(), 3);
        let mut product = product();
        product.version = "€".repeat(20); // 60 bytes
        let mut out = Vec::new();
        UdmConfig::default().build(&product).encode(&event, &mut out);
        let v: Value = parse(&out);
        assert_eq!(v["metadata"]["productEventType"].as_str().unwrap(), "é".repeat(32));
        assert_eq!(v["metadata"]["productVersion"].as_str().unwrap(), "€".repeat(10));
    }

    proptest! {
        #[test]
        fn any_text_round_trips(
            kind in prop_oneof![Just("user".to_owned()), Just("service".to_owned()), hostile()],
            id in hostile(), action in hostile(), artifact in hostile(), policy in hostile(),
            target in hostile(), mode in hostile(), trace in hostile(), reason in hostile(),
            key in hostile(), value in hostile(), version in hostile(),
            result in prop_oneof![Just("allowed".to_owned()), Just("denied".to_owned()), hostile()],
        ) {
            let actor = format!("{kind}:{id}");
            let mut extra = Map::new();
            extra.insert(key.clone(), Value::String(value.clone()));
            let event = raw_event(&actor, &action, &artifact, &policy, &target, &mode, &trace, &result, Some(&reason), extra, 6);
            let mut product = product();
            product.version = version.clone();
            let mut out = Vec::new();
            UdmConfig::default().build(&product).encode(&event, &mut out);
            let v: Value = parse(&out);
            // Ingestion names are camelCase; only `additional` (a Struct) holds free-form keys.
            for key in keys(&v, &["additional"]) {
                prop_assert!(!key.contains('_') && key.starts_with(|c: char| c.is_ascii_lowercase()), "{}", key);
            }
            let s = |v: &Value| v.as_str().unwrap().to_owned();
            prop_assert_eq!(s(&v["principal"]["user"]["userid"]), event.actor_id.clone());
            prop_assert_eq!(s(&v["target"]["resource"]["productObjectId"]), artifact.clone());
            prop_assert_eq!(s(&v["securityResult"][0]["ruleName"]), policy.clone());
            prop_assert_eq!(s(&v["securityResult"][0]["ruleType"]), mode.clone());
            prop_assert_eq!(s(&v["securityResult"][0]["description"]), reason.clone());
            prop_assert_eq!(s(&v["securityResult"][0]["summary"]), format!("{action} {result}"));
            prop_assert_eq!(s(&v["additional"]["trace_id"]), trace.clone());
            prop_assert_eq!(s(&v["additional"]["actor"]), actor.clone());
            prop_assert_eq!(s(&v["additional"]["target"]), target.clone());
            prop_assert_eq!(s(&v["additional"][&format!("extra.{key}")]), value.clone());
            prop_assert_eq!(s(&v["metadata"]["description"]), crate::siem::message(&event));
            let event_type = s(&v["metadata"]["productEventType"]);
            prop_assert!(event_type.len() <= MAX_PRODUCT_EVENT_TYPE && action.starts_with(&event_type));
            let version_out = s(&v["metadata"]["productVersion"]);
            prop_assert!(version_out.len() <= MAX_PRODUCT_VERSION && version.starts_with(&version_out));
        }
    }
}
