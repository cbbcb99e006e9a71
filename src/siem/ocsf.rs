//! OCSF 1.8.0 API Activity events (class 6003, category 6 Application Activity), one JSON object
//! per event (`docs/siem/ocsf.md`).
//!
//! Every decision, deploy or execute, is one API Activity: the actor asks for an operation
//! (`api.operation`) on a resource (the artifact), and the `security_control` profile carries the
//! decision (`action_id`, `disposition_id`, `policy`, `is_alert`). Profiles are listed in
//! `metadata.profiles` only when their attributes are written: `cloud` only when the target names
//! a provider and region. Extra input fields go under `unmapped.extra`, never over OCSF names.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::json::{user_email, SeverityBand};
use super::{Encoder, Product, ProductJson, Shared};
use crate::json_out::{self, Literal};
use crate::model::{Decision, EnrichedEvent};

/// OCSF schema version written to `metadata.version`.
pub const OCSF_VERSION: &str = "1.8.0";
/// `class_uid` of API Activity.
pub const CLASS_UID: u32 = 6003;
/// `category_uid` of Application Activity.
pub const CATEGORY_UID: u32 = 6;

/// Settings of the OCSF encoder (`[siem.ocsf]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OcsfConfig {
    /// Set `is_alert: true` on denied events (allowed events are never alerts).
    pub alert_on_deny: bool,
    /// `metadata.log_name`.
    pub log_name: String,
    /// `src_endpoint.name` when the event says nothing about where the request came from (no
    /// `src_ip`/`src_host` extra and not a service actor). OCSF requires `src_endpoint` in class
    /// 6003, with at least one identifying attribute.
    pub unknown_source_name: String,
}

/// Default of [`OcsfConfig::alert_on_deny`].
pub const DEFAULT_ALERT_ON_DENY: bool = true;
/// Default of [`OcsfConfig::log_name`].
pub const DEFAULT_LOG_NAME: &str = "runtime_audit";
/// Default of [`OcsfConfig::unknown_source_name`].
pub const DEFAULT_UNKNOWN_SOURCE_NAME: &str = "unknown";

impl Default for OcsfConfig {
    fn default() -> Self {
        OcsfConfig {
            alert_on_deny: DEFAULT_ALERT_ON_DENY,
            log_name: DEFAULT_LOG_NAME.into(),
            unknown_source_name: DEFAULT_UNKNOWN_SOURCE_NAME.into(),
        }
    }
}

impl OcsfConfig {
    /// Checks the settings; returns one message per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.unknown_source_name.trim().is_empty() {
            out.push("siem.ocsf.unknown_source_name: must not be empty (OCSF needs one src_endpoint attribute)".into());
        }
        if self.log_name.trim().is_empty() {
            out.push("siem.ocsf.log_name: must not be empty".into());
        }
        out
    }

    /// Builds the encoder.
    pub fn build(&self, product: &Product) -> OcsfEncoder {
        OcsfEncoder { config: self.clone(), product: product.json(), log_name: Literal::new(&self.log_name) }
    }
}

/// Encodes events as OCSF API Activity records.
#[derive(Debug, Clone)]
pub struct OcsfEncoder {
    config: OcsfConfig,
    product: ProductJson,
    log_name: Literal,
}

/// The activity of an action (format notes §0.4): `(activity_id, activity_name)`.
///
/// `activity_id` 99 (Other) carries the source's own name in `activity_name`, as OCSF asks for
/// every `99` caption.
pub fn activity(action: &str) -> (u8, &str) {
    match action {
        "create" => (1, "Create"),
        "read" | "get" | "list" => (2, "Read"),
        "deploy" | "modify" => (3, "Update"),
        "delete" => (4, "Delete"),
        "execute" => (99, "Execute"),
        other => (99, other),
    }
}

/// The caption of a `type_uid` of class 6003 (the schema's generated `type_uid` enum).
fn type_name(activity_id: u8) -> &'static str {
    match activity_id {
        1 => "API Activity: Create",
        2 => "API Activity: Read",
        3 => "API Activity: Update",
        4 => "API Activity: Delete",
        _ => "API Activity: Other",
    }
}

/// `severity_id` and its caption for a 0–10 severity.
pub fn severity(severity: u8) -> (u8, &'static str) {
    match SeverityBand::of(severity) {
        SeverityBand::Informational => (1, "Informational"),
        SeverityBand::Low => (2, "Low"),
        SeverityBand::Medium => (3, "Medium"),
        SeverityBand::High => (4, "High"),
        SeverityBand::Critical => (5, "Critical"),
    }
}

/// OCSF's spelling of a cloud provider (`cloud.provider` is free text; OCSF examples use these).
fn provider(name: &str) -> &str {
    match name {
        "aws" => "AWS",
        "azure" => "Azure",
        "gcp" => "GCP",
        other => other,
    }
}

/// A string extra, when present and non-empty.
fn extra_str<'a>(extra: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    extra.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

impl Encoder for OcsfEncoder {
    fn name(&self) -> &'static str {
        "ocsf"
    }

    fn encode_shared(&self, enriched: &EnrichedEvent, shared: &Shared, out: &mut Vec<u8>) {
        let e = &enriched.event;
        let (activity_id, activity_name) = activity(&e.action);
        let (severity_id, severity_caption) = severity(enriched.severity);
        let (status_id, status, action_id, action, disposition_id, disposition) = match e.decision {
            Decision::Allowed => (1, "Success", 1, "Allowed", 1, "Allowed"),
            Decision::Denied => (2, "Failure", 2, "Denied", 2, "Blocked"),
            // Neither allowed nor denied: OCSF's `99` captions carry the source's own value.
            Decision::Other => (0, "Unknown", 99, e.result.as_str(), 99, e.result.as_str()),
        };
        let service = (enriched.actor_kind() == "service").then_some(enriched.actor_id());
        let (type_id, user_type) = match enriched.actor_kind() {
            "user" => (1, "User"),
            "service" => (4, "Service"),
            other => (99, other),
        };
        let src_ip = extra_str(&e.extra, "src_ip").filter(|ip| ip.parse::<IpAddr>().is_ok());
        let src_host = extra_str(&e.extra, "src_host");
        let known_source = src_ip.is_some() || src_host.is_some() || service.is_some();
        let parts = enriched.target_parts();
        json_out::object(out, |doc| {
            doc.int("class_uid", i64::from(CLASS_UID));
            doc.lit("class_name", "API Activity");
            doc.int("category_uid", i64::from(CATEGORY_UID));
            doc.lit("category_name", "Application Activity");
            doc.int("activity_id", i64::from(activity_id));
            doc.str("activity_name", activity_name);
            doc.int("type_uid", i64::from(CLASS_UID * 100 + u32::from(activity_id)));
            doc.lit("type_name", type_name(activity_id));
            doc.int("time", e.ts_ms);
            doc.int("timezone_offset", 0);
            doc.int("severity_id", i64::from(severity_id));
            doc.lit("severity", severity_caption);
            doc.int("status_id", status_id);
            doc.str("status", status);
            doc.opt_str("status_detail", e.reason.as_deref());
            doc.int("action_id", action_id);
            doc.str("action", action);
            doc.int("disposition_id", disposition_id);
            doc.str("disposition", disposition);
            doc.bool("is_alert", self.config.alert_on_deny && e.decision == Decision::Denied);
            shared.write_message(doc, "message", enriched);
            doc.object("metadata", |o| {
                o.lit("version", OCSF_VERSION);
                o.object("product", |p| {
                    p.literal("name", &self.product.name);
                    p.literal("vendor_name", &self.product.vendor);
                    p.literal("version", &self.product.version);
                });
                o.str("uid", &enriched.event_id);
                o.str("correlation_uid", &e.trace);
                o.str("original_time", &e.ts);
                o.literal("log_name", &self.log_name);
                let profiles: &[&'static str] =
                    if parts.is_some() { &["cloud", "security_control", "trace"] } else { &["security_control", "trace"] };
                o.lit_array("profiles", profiles.iter().copied());
            });
            doc.object("actor", |o| {
                o.object("user", |u| {
                    u.str("name", enriched.actor_id());
                    u.str("uid", &e.actor);
                    u.opt_str("email_addr", user_email(enriched));
                    u.int("type_id", type_id);
                    u.str("type", user_type);
                });
                o.opt_str("app_name", service);
                o.object_array_of_one("authorizations", |a| {
                    a.str("decision", &e.result);
                    a.object("policy", |p| p.str("name", &e.policy));
                });
            });
            doc.object("api", |o| o.str("operation", &e.action));
            doc.object("src_endpoint", |o| {
                o.opt_str("ip", src_ip);
                o.opt_str("hostname", src_host);
                o.opt_str("svc_name", service);
                o.opt_str("name", (!known_source).then_some(self.config.unknown_source_name.as_str()));
            });
            if let Some(t) = parts {
                doc.object("dst_endpoint", |o| o.str("name", t.cluster));
            }
            doc.object_array_of_one("resources", |o| {
                o.str("uid", &e.artifact);
                o.str("name", enriched.artifact_name());
                o.opt_str("version", enriched.artifact_version());
                o.lit("type", "artifact");
                o.int("role_id", 1);
                o.lit("role", "Target");
                o.opt_str("region", parts.map(|t| t.region));
            });
            if let Some(t) = parts {
                doc.object("cloud", |o| {
                    o.str("provider", provider(t.provider));
                    o.str("region", t.region);
                });
            }
            doc.object("policy", |o| {
                o.str("name", &e.policy);
                o.bool("is_applied", true);
            });
            doc.object("trace", |o| o.str("uid", &e.trace));
            doc.object("unmapped", |o| {
                o.str("policy_mode", &e.mode);
                o.str("actor", &e.actor);
                o.str("target", &e.target);
                if !e.extra.is_empty() {
                    o.map("extra", &e.extra);
                }
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::siem::json::testing::{enriched, hostile, parse, product, raw_event, SEED_A, SEED_B};
    use proptest::prelude::*;

    fn encode(event: &EnrichedEvent) -> Value {
        let mut out = Vec::new();
        OcsfConfig::default().build(&product()).encode(event, &mut out);
        parse(&out)
    }

    /// Attributes that class 6003 requires, read from the OCSF 1.8.0 schema source
    /// (`events/base_event.json`, `events/application/application.json`,
    /// `events/application/api_activity.json`, and the objects they name): `requirement:
    /// "required"` in the class and its base, and in the objects used (`metadata`, `api`,
    /// `trace`, `cloud`, `policy`).
    const REQUIRED: &[&str] = &[
        // base_event
        "activity_id",
        "category_uid",
        "class_uid",
        "metadata",
        "severity_id",
        "time",
        "type_uid",
        // api_activity
        "actor",
        "api",
        "src_endpoint",
        // objects
        "metadata.product",
        "metadata.version",
        "api.operation",
    ];

    fn get<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
        path.split('.').try_fold(value, |v, key| v.get(key))
    }

    /// Required attributes, `at_least_one` constraints of the objects written, profile
    /// attributes only with their profile, and `type_uid` consistency.
    fn assert_valid_6003(record: &Value) {
        for path in REQUIRED {
            assert!(get(record, path).is_some_and(|v| !v.is_null()), "missing {path} in {record}");
        }
        let any_of = |object: &str, keys: &[&str]| {
            let o = get(record, object).unwrap_or_else(|| panic!("no {object}"));
            assert!(keys.iter().any(|k| o.get(*k).is_some()), "{object} needs one of {keys:?}: {o}");
        };
        // objects/actor.json, user.json, network_endpoint.json, policy.json `constraints`.
        any_of("actor", &["process", "user", "invoked_by", "session", "app_name", "app_uid"]);
        any_of("actor.user", &["account", "name", "uid"]);
        any_of("src_endpoint", &["ip", "uid", "name", "hostname", "svc_name", "instance_uid", "interface_uid", "interface_name", "domain"]);
        any_of("policy", &["name", "type", "uid"]);
        let profiles: Vec<&str> = record["metadata"]["profiles"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        // profiles/cloud.json: `cloud` is required by the profile, and only valid with it (as is
        // resources[].region, a cloud-profile attribute of resource_details).
        assert_eq!(profiles.contains(&"cloud"), record.get("cloud").is_some());
        if profiles.contains(&"cloud") {
            assert!(record["cloud"]["provider"].is_string());
        } else {
            assert!(record["resources"][0].get("region").is_none());
        }
        // objects/trace.json: `uid` is required.
        assert!(profiles.contains(&"trace") && record["trace"]["uid"].is_string());
        assert_eq!(record["class_uid"], 6003);
        assert_eq!(record["category_uid"], 6);
        let activity = record["activity_id"].as_u64().unwrap();
        assert_eq!(record["type_uid"].as_u64().unwrap(), 6003 * 100 + activity);
    }

    #[test]
    fn seeds_are_valid_6003_records() {
        for seed in [SEED_A, SEED_B] {
            assert_valid_6003(&encode(&enriched(seed, 0)));
        }
    }

    #[test]
    fn activity_follows_the_action_table() {
        assert_eq!(activity("deploy"), (3, "Update"));
        assert_eq!(activity("modify"), (3, "Update"));
        assert_eq!(activity("create"), (1, "Create"));
        assert_eq!(activity("delete"), (4, "Delete"));
        for read in ["read", "get", "list"] {
            assert_eq!(activity(read), (2, "Read"));
        }
        assert_eq!(activity("execute"), (99, "Execute"));
        assert_eq!(activity("rollback"), (99, "rollback"));
        let b = encode(&enriched(SEED_B, 0));
        assert_eq!((b["activity_id"].as_u64(), b["type_uid"].as_u64()), (Some(99), Some(600_399)));
        assert_eq!(b["type_name"], "API Activity: Other");
        let a = encode(&enriched(SEED_A, 0));
        assert_eq!((a["activity_id"].as_u64(), a["type_uid"].as_u64()), (Some(3), Some(600_303)));
    }

    #[test]
    fn severity_ids_and_captions_agree() {
        let captions = ["Unknown", "Informational", "Low", "Medium", "High", "Critical"];
        for s in 0..=10u8 {
            let (id, caption) = severity(s);
            assert_eq!(captions[usize::from(id)], caption);
        }
        assert_eq!(severity(3), (1, "Informational"));
        assert_eq!(severity(6), (3, "Medium"));
        let b = encode(&enriched(SEED_B, 0));
        assert_eq!((b["severity_id"].as_u64(), b["severity"].as_str()), (Some(3), Some("Medium")));
        assert_eq!((b["status_id"].as_u64(), b["status"].as_str()), (Some(2), Some("Failure")));
        assert_eq!((b["action_id"].as_u64(), b["action"].as_str()), (Some(2), Some("Denied")));
        assert_eq!((b["disposition_id"].as_u64(), b["disposition"].as_str()), (Some(2), Some("Blocked")));
        assert_eq!(b["is_alert"], true);
    }

    #[test]
    fn time_is_integer_milliseconds() {
        let a = encode(&enriched(SEED_A, 0));
        assert_eq!(a["time"].as_i64(), Some(1_773_480_413_120));
        assert!(a["time"].is_i64());
    }

    #[test]
    fn other_results_use_the_other_captions() {
        let text = SEED_A.replace("\"allowed\"", "\"challenged\"");
        let r = encode(&enriched(&text, 0));
        assert_eq!((r["action_id"].as_u64(), r["action"].as_str()), (Some(99), Some("challenged")));
        assert_eq!((r["disposition_id"].as_u64(), r["disposition"].as_str()), (Some(99), Some("challenged")));
        assert_eq!((r["status_id"].as_u64(), r["status"].as_str()), (Some(0), Some("Unknown")));
        assert_eq!(r["is_alert"], false);
        assert_valid_6003(&r);
    }

    #[test]
    fn source_endpoint_prefers_real_data() {
        let text = SEED_A.replace("}", r#","src_ip":"10.1.2.3","src_host":"bastion-1"}"#);
        let r = encode(&enriched(&text, 0));
        assert_eq!(r["src_endpoint"], serde_json::json!({"ip":"10.1.2.3","hostname":"bastion-1"}));
        let text = SEED_A.replace("}", r#","src_ip":"not an ip"}"#);
        let r = encode(&enriched(&text, 0));
        assert_eq!(r["src_endpoint"], serde_json::json!({"name":"unknown"}));
        assert_eq!(r["unmapped"]["extra"]["src_ip"], "not an ip");
        let b = encode(&enriched(SEED_B, 0));
        assert_eq!(b["src_endpoint"], serde_json::json!({"svc_name":"fraud-detector"}));
    }

    #[test]
    fn without_a_three_part_target_there_is_no_cloud_profile() {
        let text = SEED_A.replace("aws:us-east-1:cluster-prod-02", "onprem-dc1");
        let r = encode(&enriched(&text, 0));
        assert_eq!(r["metadata"]["profiles"], serde_json::json!(["security_control", "trace"]));
        assert!(r.get("cloud").is_none() && r.get("dst_endpoint").is_none());
        assert_valid_6003(&r);
    }

    proptest! {
        #[test]
        fn any_text_gives_a_valid_record_with_the_same_values(
            kind in prop_oneof![Just("user".to_owned()), Just("service".to_owned()), hostile()],
            id in hostile(), action in hostile(), artifact in hostile(), policy in hostile(),
            target in hostile(), mode in hostile(), trace in hostile(), reason in hostile(),
            key in hostile(), value in hostile(),
            result in prop_oneof![Just("allowed".to_owned()), Just("denied".to_owned()), hostile()],
            severity in 0u8..=10,
        ) {
            let actor = format!("{kind}:{id}");
            let mut extra = Map::new();
            extra.insert(key.clone(), Value::String(value.clone()));
            let event = raw_event(&actor, &action, &artifact, &policy, &target, &mode, &trace, &result, Some(&reason), extra, severity);
            let r = encode(&event);
            assert_valid_6003(&r);
            prop_assert_eq!(&r["api"]["operation"], &Value::String(action.clone()));
            prop_assert_eq!(&r["actor"]["user"]["uid"], &Value::String(actor.clone()));
            prop_assert_eq!(&r["resources"][0]["uid"], &Value::String(artifact.clone()));
            prop_assert_eq!(&r["policy"]["name"], &Value::String(policy.clone()));
            prop_assert_eq!(&r["unmapped"]["target"], &Value::String(target.clone()));
            prop_assert_eq!(&r["unmapped"]["policy_mode"], &Value::String(mode.clone()));
            prop_assert_eq!(&r["trace"]["uid"], &Value::String(trace.clone()));
            prop_assert_eq!(&r["status_detail"], &Value::String(reason.clone()));
            prop_assert_eq!(&r["unmapped"]["extra"][&key], &Value::String(value.clone()));
            prop_assert_eq!(r["message"].as_str().unwrap(), crate::siem::message(&event));
            let (id, caption) = super::severity(severity);
            prop_assert_eq!((r["severity_id"].as_u64(), r["severity"].as_str()), (Some(u64::from(id)), Some(caption)));
        }
    }
}
