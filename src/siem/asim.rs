//! Microsoft Sentinel ASIM Audit Event rows (schema `AuditEvent` 0.1) for the Logs Ingestion API
//! and the built-in `ASimAuditEventLogs` table (`docs/siem/asim.md`).
//!
//! One JSON object per Kafka record; a bridge posts arrays of them to the DCR stream
//! `Custom-ASimAuditEventLogs`. Only real table columns are written (aliases such as `User` or
//! `Dvc` come from the parsers), and every string value is cut to `max_value_bytes` on a UTF-8
//! boundary, because Log Analytics truncates longer values itself, blindly. Extra input fields go
//! into `AdditionalFields.Extra`; when that dynamic value would pass the limit, the extras are left
//! out and `AdditionalFields.ExtraOmitted` is set.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::json::{truncate_utf8, user_email, Message, SeverityBand};
use super::{Encoder, Product, Shared};
use crate::json_out;
use crate::model::{Decision, EnrichedEvent};

/// ASIM schema version written to `EventSchemaVersion`.
pub const SCHEMA_VERSION: &str = "0.1";
/// Largest value Log Analytics keeps whole (64 KB); the default and the upper bound of
/// `max_value_bytes`.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Smallest accepted `max_value_bytes`.
pub const MIN_VALUE_BYTES: usize = 1024;

/// Settings of the ASIM encoder (`[siem.asim]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsimConfig {
    /// `DvcHostname`: the enforcement point. Unset: the product name, as ASIM asks for cloud
    /// sources without a device.
    pub dvc_hostname: Option<String>,
    /// Longest string value, and longest `AdditionalFields` JSON, in bytes (1024 to 65536).
    pub max_value_bytes: usize,
}

impl Default for AsimConfig {
    fn default() -> Self {
        AsimConfig { dvc_hostname: None, max_value_bytes: MAX_VALUE_BYTES }
    }
}

impl AsimConfig {
    /// Checks the settings; returns one message per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(MIN_VALUE_BYTES..=MAX_VALUE_BYTES).contains(&self.max_value_bytes) {
            out.push(format!(
                "siem.asim.max_value_bytes: {} must be between {MIN_VALUE_BYTES} and {MAX_VALUE_BYTES} (Log Analytics truncates values over 64 KB)",
                self.max_value_bytes
            ));
        }
        if self.dvc_hostname.as_deref().is_some_and(|h| h.trim().is_empty()) {
            out.push("siem.asim.dvc_hostname: must not be empty when set".into());
        }
        out
    }

    /// Builds the encoder.
    pub fn build(&self, product: &Product) -> AsimEncoder {
        AsimEncoder { config: self.clone(), product: product.clone() }
    }
}

/// Encodes events as ASIM Audit Event rows.
#[derive(Debug, Clone)]
pub struct AsimEncoder {
    config: AsimConfig,
    product: Product,
}

/// `EventType` of an action (format notes §0.4).
pub fn event_type(action: &str) -> &'static str {
    match action {
        "deploy" => "Install",
        "execute" => "Execute",
        "modify" => "Set",
        "create" => "Create",
        "delete" => "Delete",
        "read" | "get" | "list" => "Read",
        _ => "Other",
    }
}

/// `EventSeverity` of a 0–10 severity (ASIM has no level above High).
pub fn severity(severity: u8) -> &'static str {
    match SeverityBand::of(severity) {
        SeverityBand::Informational => "Informational",
        SeverityBand::Low => "Low",
        SeverityBand::Medium => "Medium",
        SeverityBand::High | SeverityBand::Critical => "High",
    }
}

/// A JSON value with every string (keys included) cut to `.1` bytes.
struct Capped<'a>(&'a Value, usize);

impl Serialize for Capped<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::String(s) => serializer.serialize_str(truncate_utf8(s, self.1)),
            Value::Array(items) => serializer.collect_seq(items.iter().map(|v| Capped(v, self.1))),
            Value::Object(map) => CappedMap(map, self.1).serialize(serializer),
            other => other.serialize(serializer),
        }
    }
}

struct CappedMap<'a>(&'a Map<String, Value>, usize);

impl Serialize for CappedMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(truncate_utf8(key, self.1), &Capped(value, self.1))?;
        }
        map.end()
    }
}

/// The value limit: every string is cut to it on a character boundary.
#[derive(Clone, Copy)]
struct Limit(usize);

impl Limit {
    fn cut(self, text: &str) -> &str {
        truncate_utf8(text, self.0)
    }
}

impl Encoder for AsimEncoder {
    fn name(&self) -> &'static str {
        "asim"
    }

    fn encode_shared(&self, enriched: &EnrichedEvent, shared: &Shared, out: &mut Vec<u8>) {
        let e = &enriched.event;
        let max = self.config.max_value_bytes;
        let limit = Limit(max);
        let (result, dvc_action, dvc_original_action) = match e.decision {
            Decision::Allowed => ("Success", Some("Allow"), None),
            Decision::Denied => ("Failure", Some("Deny"), None),
            Decision::Other => ("NA", None, Some(limit.cut(&e.result))),
        };
        let service = enriched.actor_kind() == "service";
        let (username_type, user_type) = match enriched.actor_kind() {
            "user" if user_email(enriched).is_some() => ("UPN", "Regular"),
            "user" => ("Simple", "Regular"),
            "service" => ("Simple", "Application"),
            _ => ("Simple", "Other"),
        };
        let other_kind = !matches!(enriched.actor_kind(), "user" | "service");
        let parts = enriched.target_parts();
        let event_type = event_type(&e.action);
        json_out::object(out, |row| {
            row.str("TimeGenerated", &e.ts);
            row.str("EventStartTime", &e.ts);
            row.str("EventEndTime", &e.ts);
            row.int("EventCount", 1);
            row.str("EventType", event_type);
            row.str("EventSubType", limit.cut(&e.action));
            row.str("EventResult", result);
            row.str("EventSeverity", severity(enriched.severity));
            row.lit("EventSchema", "AuditEvent");
            row.str("EventSchemaVersion", SCHEMA_VERSION);
            row.opt_str("EventOriginalResultDetails", e.reason.as_deref().map(|text| limit.cut(text)));
            row.str("EventProduct", limit.cut(&self.product.name));
            row.str("EventVendor", limit.cut(&self.product.vendor));
            row.str("EventProductVersion", limit.cut(&self.product.version));
            row.str("EventOriginalUid", &enriched.event_id);
            // The summary line, cut to the value limit (built only when it is too long).
            if Message(enriched).byte_len() <= max {
                shared.write_message(row, "EventMessage", enriched);
            } else {
                row.str("EventMessage", limit.cut(&Message(enriched).to_string()));
            }
            row.opt_str("DvcAction", dvc_action);
            row.opt_str("DvcOriginalAction", dvc_original_action);
            row.str("DvcHostname", limit.cut(self.config.dvc_hostname.as_deref().unwrap_or(&self.product.name)));
            row.str("Operation", limit.cut(&e.action));
            row.str("Object", limit.cut(&e.artifact));
            row.lit("ObjectType", "Cloud Resource");
            // The version is the object's new value only when the action changes the object.
            row.opt_str(
                "NewValue",
                enriched.artifact_version().filter(|_| matches!(event_type, "Install" | "Set" | "Create")).map(|text| limit.cut(text)),
            );
            row.str("ActorUsername", limit.cut(enriched.actor_id()));
            row.str("ActorUsernameType", username_type);
            row.str("ActorUserType", user_type);
            row.opt_str("ActorOriginalUserType", other_kind.then(|| limit.cut(enriched.actor_kind())));
            row.opt_str("ActingAppName", service.then(|| limit.cut(enriched.actor_id())));
            row.opt_str("ActingAppType", service.then_some("Service"));
            row.str("TargetAppName", limit.cut(enriched.artifact_name()));
            row.lit("TargetAppType", "Service");
            row.opt_str("TargetHostname", parts.map(|p| limit.cut(p.cluster)));
            row.str("RuleName", limit.cut(&e.policy));
            // `AdditionalFields`: what the audit schema has no column for. The whole object must
            // fit the value limit too: when the extras make it too long, they are left out.
            row.raw("AdditionalFields", |buf| {
                let start = buf.len();
                let additional = |buf: &mut Vec<u8>, with_extra: bool| {
                    json_out::object(buf, |o| {
                        o.str("TraceId", limit.cut(&e.trace));
                        o.str("PolicyMode", limit.cut(&e.mode));
                        if let Some(p) = parts {
                            o.str("CloudProvider", limit.cut(p.provider));
                            o.str("CloudRegion", limit.cut(p.region));
                        }
                        o.str("Target", limit.cut(&e.target));
                        if !with_extra {
                            o.bool("ExtraOmitted", true);
                        } else if !e.extra.is_empty() {
                            o.serialize("Extra", &CappedMap(&e.extra, max));
                        }
                    })
                };
                additional(buf, true);
                if buf.len() - start > max {
                    buf.truncate(start);
                    additional(buf, false);
                }
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::siem::json::testing::{enriched, hostile, keys, parse, product, raw_event, SEED_A, SEED_B};
    use proptest::prelude::*;

    fn encode_with(config: &AsimConfig, event: &EnrichedEvent) -> Value {
        let mut out = Vec::new();
        config.build(&product()).encode(event, &mut out);
        parse(&out)
    }

    fn encode(event: &EnrichedEvent) -> Value {
        encode_with(&AsimConfig::default(), event)
    }

    #[test]
    fn event_types_follow_the_action_table() {
        let table = [
            ("deploy", "Install"),
            ("execute", "Execute"),
            ("modify", "Set"),
            ("create", "Create"),
            ("delete", "Delete"),
            ("read", "Read"),
            ("get", "Read"),
            ("list", "Read"),
            ("rollback", "Other"),
        ];
        for (action, expected) in table {
            assert_eq!(event_type(action), expected, "{action}");
        }
    }

    #[test]
    fn results_severities_and_actors() {
        let a = encode(&enriched(SEED_A, 0));
        assert_eq!((a["EventResult"].as_str(), a["DvcAction"].as_str()), (Some("Success"), Some("Allow")));
        assert_eq!(a["EventSeverity"], "Informational");
        assert_eq!((a["ActorUsernameType"].as_str(), a["ActorUserType"].as_str()), (Some("UPN"), Some("Regular")));
        let b = encode(&enriched(SEED_B, 0));
        assert_eq!((b["EventResult"].as_str(), b["DvcAction"].as_str()), (Some("Failure"), Some("Deny")));
        assert_eq!(b["EventSeverity"], "Medium");
        assert_eq!((b["ActingAppName"].as_str(), b["ActingAppType"].as_str()), (Some("fraud-detector"), Some("Service")));
        // An execute does not change the artifact: no NewValue; a deploy installs the version.
        assert!(b.get("NewValue").is_none());
        assert_eq!(a["NewValue"], "v4.2.1");
        assert_eq!(severity(4), "Low");
        assert_eq!(severity(10), "High");
        let other = encode(&enriched(&SEED_A.replace("\"allowed\"", "\"challenged\""), 0));
        assert_eq!(other["EventResult"], "NA");
        assert!(other.get("DvcAction").is_none());
        assert_eq!(other["DvcOriginalAction"], "challenged");
    }

    #[test]
    fn dvc_hostname_is_configurable() {
        let config = AsimConfig { dvc_hostname: Some("gw-01".into()), ..AsimConfig::default() };
        assert_eq!(encode_with(&config, &enriched(SEED_A, 0))["DvcHostname"], "gw-01");
        assert_eq!(encode(&enriched(SEED_A, 0))["DvcHostname"], "RuntimeGuard");
    }

    #[test]
    fn long_values_are_cut_on_character_boundaries() {
        let config = AsimConfig { max_value_bytes: MIN_VALUE_BYTES, ..AsimConfig::default() };
        let reason = "€".repeat(400); // 1200 bytes
        let mut extra = Map::new();
        extra.insert("small".into(), Value::from(1));
        let event = raw_event("user:a", "deploy", "x@1", "p", "t", "fixed", "tr", "denied", Some(&reason), extra, 6);
        let row = encode_with(&config, &event);
        assert_eq!(row["EventOriginalResultDetails"].as_str().unwrap(), "€".repeat(341));
        assert_eq!(row["AdditionalFields"]["Extra"]["small"], 1);
        // An extra too large for one AdditionalFields value is left out, and said so.
        let mut extra = Map::new();
        extra.insert("big".into(), Value::from("a".repeat(600)));
        extra.insert("bigger".into(), Value::from("b".repeat(600)));
        let event = raw_event("user:a", "deploy", "x@1", "p", "t", "fixed", "tr", "denied", None, extra, 6);
        let row = encode_with(&config, &event);
        assert!(row["AdditionalFields"].get("Extra").is_none());
        assert_eq!(row["AdditionalFields"]["ExtraOmitted"], true);
        assert_eq!(row["AdditionalFields"]["TraceId"], "tr");
    }

    #[test]
    fn limits_are_checked() {
        assert!(AsimConfig::default().problems().is_empty());
        let config = AsimConfig { max_value_bytes: 100_000, dvc_hostname: Some(" ".into()) };
        assert_eq!(config.problems().len(), 2);
    }

    proptest! {
        #[test]
        fn any_text_round_trips_within_the_limit(
            kind in prop_oneof![Just("user".to_owned()), Just("service".to_owned()), hostile()],
            id in hostile(), action in hostile(), artifact in hostile(), policy in hostile(),
            target in hostile(), mode in hostile(), trace in hostile(), reason in hostile(),
            key in hostile(), value in hostile(),
            result in prop_oneof![Just("allowed".to_owned()), Just("denied".to_owned()), hostile()],
            repeat in 1usize..80,
        ) {
            let actor = format!("{kind}:{id}");
            let mut extra = Map::new();
            extra.insert(key.clone(), Value::String(value.clone()));
            // Long enough, sometimes, to pass the smallest limit.
            let reason = reason.repeat(repeat);
            let event = raw_event(&actor, &action, &artifact, &policy, &target, &mode, &trace, &result, Some(&reason), extra, 6);
            let config = AsimConfig { max_value_bytes: MIN_VALUE_BYTES, ..AsimConfig::default() };
            let row = encode_with(&config, &event);
            let s = |v: &Value| v.as_str().unwrap().to_owned();
            prop_assert_eq!(s(&row["TimeGenerated"]), event.event.ts.clone());
            // Real columns only: PascalCase names, no aliases.
            for key in keys(&row, &["AdditionalFields"]) {
                prop_assert!(key.starts_with(|c: char| c.is_ascii_uppercase()) && !key.contains('_'), "{}", key);
                prop_assert!(!["Dvc", "User", "Application", "Src", "Dst", "IpAddr", "Rule", "Value"].contains(&key.as_str()));
            }
            prop_assert_eq!(s(&row["Operation"]), action.clone());
            prop_assert_eq!(s(&row["Object"]), artifact.clone());
            prop_assert_eq!(s(&row["RuleName"]), policy.clone());
            prop_assert_eq!(s(&row["ActorUsername"]), event.actor_id().to_owned());
            prop_assert_eq!(s(&row["AdditionalFields"]["Target"]), target.clone());
            prop_assert_eq!(s(&row["AdditionalFields"]["PolicyMode"]), mode.clone());
            prop_assert_eq!(s(&row["AdditionalFields"]["TraceId"]), trace.clone());
            prop_assert_eq!(s(&row["AdditionalFields"]["Extra"][&key]), value.clone());
            let details = s(&row["EventOriginalResultDetails"]);
            prop_assert!(details.len() <= MIN_VALUE_BYTES && reason.starts_with(&details));
            prop_assert_eq!(details.len() == reason.len(), reason.len() <= MIN_VALUE_BYTES);
            prop_assert_eq!(s(&row["EventMessage"]), crate::siem::message(&event));
        }
    }
}
