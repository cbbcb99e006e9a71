//! Google SecOps (Chronicle) UDM events in the ingestion JSON form (`docs/siem/udm.md`): camelCase
//! field names, enum values as strings, repeated fields as arrays.
//!
//! Each Kafka record is one UDM event, bare by default (the object that goes into
//! `{"inlineSource":{"events":[{"udm": …}]}}` of the Chronicle API's `events:import`), or
//! already wrapped as `{"udm": …}` with `wrap_event`, so a bridge only has to join records into the
//! `events` array. Extra input fields go into `additional` as `extra.<name>`.

use serde::{Deserialize, Serialize};

use super::json::{truncate_utf8, user_email, SeverityBand};
use super::{Encoder, Product, ProductJson, Shared};
use crate::json_out::{self, Literal, Object};
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
        let mut json = product.json();
        json.version = Literal::new(truncate_utf8(&product.version, MAX_PRODUCT_VERSION));
        UdmEncoder { config: self.clone(), product: json }
    }
}

/// Encodes events as UDM events.
#[derive(Debug, Clone)]
pub struct UdmEncoder {
    config: UdmConfig,
    /// The product fields, the version cut to `MAX_PRODUCT_VERSION`.
    product: ProductJson,
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

impl Encoder for UdmEncoder {
    fn name(&self) -> &'static str {
        "udm"
    }

    fn encode_shared(&self, enriched: &EnrichedEvent, shared: &Shared, out: &mut Vec<u8>) {
        if self.config.wrap_event {
            json_out::object(out, |wrapped| wrapped.object("udm", |event| self.event(enriched, shared, event)));
        } else {
            json_out::object(out, |event| self.event(enriched, shared, event));
        }
    }
}

impl UdmEncoder {
    /// The fields of one UDM event.
    fn event(&self, enriched: &EnrichedEvent, shared: &Shared, doc: &mut Object<'_>) {
        let e = &enriched.event;
        let service = enriched.actor_kind() == "service";
        let parts = enriched.target_parts();
        let (action, action_details) = match e.decision {
            Decision::Allowed => ("ALLOW", None),
            Decision::Denied => ("BLOCK", None),
            Decision::Other => ("UNKNOWN_ACTION", Some(e.result.as_str())),
        };
        doc.object("metadata", |o| {
            o.str("eventTimestamp", &e.ts);
            o.lit("eventType", event_type(&e.action));
            o.literal("vendorName", &self.product.vendor);
            o.literal("productName", &self.product.name);
            o.literal("productVersion", &self.product.version);
            o.str("productEventType", truncate_utf8(&e.action, MAX_PRODUCT_EVENT_TYPE));
            o.str("productLogId", truncate_utf8(&enriched.event_id, MAX_PRODUCT_LOG_ID));
            shared.write_message(o, "description", enriched);
        });
        doc.object("principal", |o| {
            o.object("user", |u| {
                u.str("userid", enriched.actor_id());
                if let Some(email) = user_email(enriched) {
                    u.str_array("emailAddresses", [email]);
                }
                if service {
                    u.lit("accountType", "SERVICE_ACCOUNT_TYPE");
                }
            });
            o.opt_str("application", service.then_some(enriched.actor_id()));
        });
        doc.object("target", |o| {
            o.str("application", enriched.artifact_name());
            o.object("resource", |r| {
                r.str("name", enriched.artifact_name());
                r.str("productObjectId", &e.artifact);
                r.lit("resourceType", "SERVICE");
                r.lit("resourceSubtype", "artifact");
                if let Some(version) = enriched.artifact_version() {
                    r.object("attribute", |a| {
                        a.object_array_of_one("labels", |l| {
                            l.lit("key", "version");
                            l.str("value", version);
                        })
                    });
                }
            });
            if let Some(t) = parts {
                o.object_array_of_one("resourceAncestors", |a| {
                    a.str("name", t.cluster);
                    a.lit("resourceType", "CLUSTER");
                });
                if let Some(environment) = cloud_environment(t.provider) {
                    o.object("cloud", |c| c.lit("environment", environment));
                }
                o.object("location", |l| l.str("name", t.region));
            }
        });
        doc.object_array_of_one("securityResult", |o| {
            o.lit_array("action", [action]);
            o.opt_str("actionDetails", action_details);
            o.str("ruleName", &e.policy);
            o.str("ruleType", &e.mode);
            o.str_parts("summary", &[&e.action, " ", &e.result]);
            o.opt_str("description", e.reason.as_deref());
            o.lit("severity", severity(enriched.severity));
            if e.decision == Decision::Denied {
                o.lit_array("category", ["POLICY_VIOLATION"]);
            }
        });
        // `additional` (a protobuf Struct): trace, raw actor and target, then each extra as
        // `extra.<name>`, so no extra can collide with the fixed keys.
        doc.object("additional", |o| {
            o.str("trace_id", &e.trace);
            o.str("actor", &e.actor);
            o.str("target", &e.target);
            for (name, value) in &e.extra {
                o.value_at(&["extra.", name], value);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::siem::json::testing::{enriched, hostile, keys, parse, product, raw_event, SEED_A, SEED_B};
    use proptest::prelude::*;
    use serde_json::{Map, Value};

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
            prop_assert_eq!(s(&v["principal"]["user"]["userid"]), event.actor_id().to_owned());
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
