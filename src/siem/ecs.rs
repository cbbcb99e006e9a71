//! Elastic Common Schema 9.4.0 documents, one JSON object per event (`docs/siem/ecs.md`).
//!
//! `event.category` is `api`, the only ECS category whose expected types include both the action
//! types and `allowed`/`denied`. Custom fields live under `runtime_audit.*`; extra input fields go
//! under `runtime_audit.extra`, never over ECS names.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{actor_type, ecs_event_type, message, outcome, Encoder, Product};
use crate::model::{Decision, EnrichedEvent};

/// ECS version written to `ecs.version`.
pub const ECS_VERSION: &str = "9.4.0";

/// Settings of the ECS encoder (`[siem.ecs]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EcsConfig {
    /// Write `data_stream.*`. Turn off when the ingest side sets its own (Elastic Agent's Kafka
    /// input does): those fields are `constant_keyword`, and a mismatch is rejected.
    pub data_stream: bool,
    /// `data_stream.dataset`: lowercase, no `-`, at most 100 bytes.
    pub dataset: String,
    /// `data_stream.namespace`: lowercase, no `-`, at most 100 bytes. With the Confluent
    /// Elasticsearch sink the topic name is the namespace.
    pub namespace: String,
}

impl Default for EcsConfig {
    fn default() -> Self {
        EcsConfig { data_stream: true, dataset: "runtime_audit.decision".into(), namespace: "default".into() }
    }
}

impl EcsConfig {
    /// Checks the data stream names; returns one message per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, value) in [("dataset", &self.dataset), ("namespace", &self.namespace)] {
            if value.is_empty() || value.len() > 100 || value.contains('-') || value.chars().any(|c| c.is_uppercase()) {
                out.push(format!("siem.ecs.{key}: {value:?} must be 1 to 100 lowercase bytes without `-` (an ECS data stream rule)"));
            }
        }
        out
    }

    /// Builds the encoder.
    pub fn build(&self, product: &Product) -> EcsEncoder {
        EcsEncoder { config: self.clone(), product: product.clone() }
    }
}

/// Encodes events as ECS documents.
#[derive(Debug, Clone)]
pub struct EcsEncoder {
    config: EcsConfig,
    product: Product,
}

#[derive(Serialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    ecs: Version,
    message: String,
    event: Event<'a>,
    user: User<'a>,
    related: Related<'a>,
    rule: Rule<'a>,
    trace: Id<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud: Option<Cloud<'a>>,
    orchestrator: Orchestrator<'a>,
    observer: Observer<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_stream: Option<DataStream<'a>>,
    runtime_audit: RuntimeAudit<'a>,
}

#[derive(Serialize)]
struct Version {
    version: &'static str,
}

#[derive(Serialize)]
struct Event<'a> {
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    kind_type: Vec<&'static str>,
    action: &'a str,
    outcome: &'static str,
    severity: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    id: &'a str,
    dataset: &'a str,
    module: &'static str,
    provider: &'a str,
}

#[derive(Serialize)]
struct User<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

#[derive(Serialize)]
struct Related<'a> {
    user: [&'a str; 1],
}

#[derive(Serialize)]
struct Name<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Rule<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<[&'a str; 1]>,
}

#[derive(Serialize)]
struct Id<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct Cloud<'a> {
    provider: &'a str,
    region: &'a str,
}

#[derive(Serialize)]
struct Orchestrator<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<Name<'a>>,
    resource: Name<'a>,
}

#[derive(Serialize)]
struct Observer<'a> {
    vendor: &'a str,
    product: &'a str,
}

#[derive(Serialize)]
struct DataStream<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    dataset: &'a str,
    namespace: &'a str,
}

#[derive(Serialize)]
struct RuntimeAudit<'a> {
    actor: &'a str,
    actor_type: &'static str,
    artifact: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_version: Option<&'a str>,
    target: &'a str,
    policy_mode: &'a str,
    result: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    compliance: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    policy_unknown: bool,
    #[serde(skip_serializing_if = "Map::is_empty")]
    extra: &'a Map<String, Value>,
}

impl Encoder for EcsEncoder {
    fn name(&self) -> &'static str {
        "ecs"
    }

    fn encode(&self, enriched: &EnrichedEvent, out: &mut Vec<u8>) {
        let e = &enriched.event;
        let mut kind_type = vec![ecs_event_type(&e.action)];
        match e.decision {
            Decision::Allowed => kind_type.push("allowed"),
            Decision::Denied => kind_type.push("denied"),
            Decision::Other => {}
        }
        let email = (enriched.actor_kind == "user" && enriched.actor_id.contains('@')).then_some(enriched.actor_id.as_str());
        let doc = Doc {
            timestamp: &e.ts,
            ecs: Version { version: ECS_VERSION },
            message: message(enriched),
            event: Event {
                kind: "event",
                category: ["api"],
                kind_type,
                action: &e.action,
                outcome: outcome(e.decision),
                severity: enriched.severity,
                reason: e.reason.as_deref(),
                id: &enriched.event_id,
                dataset: &self.config.dataset,
                module: "runtime_audit",
                provider: &self.product.source,
            },
            user: User { id: &e.actor, name: &enriched.actor_id, email },
            related: Related { user: [&enriched.actor_id] },
            rule: Rule {
                name: &e.policy,
                description: enriched.policy_meta.as_ref().and_then(|m| m.description.as_deref()),
                author: enriched.policy_meta.as_ref().and_then(|m| m.owner.as_deref()).map(|o| [o]),
            },
            trace: Id { id: &e.trace },
            cloud: enriched.target_parts.as_ref().map(|t| Cloud { provider: &t.provider, region: &t.region }),
            orchestrator: Orchestrator {
                cluster: enriched.target_parts.as_ref().map(|t| Name { name: &t.cluster }),
                resource: Name { name: &enriched.artifact_name },
            },
            observer: Observer { vendor: &self.product.vendor, product: &self.product.name },
            data_stream: self.config.data_stream.then(|| DataStream {
                kind: "logs",
                dataset: &self.config.dataset,
                namespace: &self.config.namespace,
            }),
            runtime_audit: RuntimeAudit {
                actor: &e.actor,
                actor_type: actor_type(enriched),
                artifact: &e.artifact,
                artifact_version: enriched.artifact_version.as_deref(),
                target: &e.target,
                policy_mode: &e.mode,
                result: &e.result,
                compliance: enriched.policy_meta.as_ref().map_or(&[], |m| m.compliance.as_slice()),
                policy_unknown: enriched.policy_unknown,
                extra: &e.extra,
            },
        };
        // Serializing borrowed strings and numbers into a Vec cannot fail.
        crate::json_out::write(out, &doc);
    }
}

#[cfg(test)]
mod field_check {
    //! Every field the encoder writes outside `runtime_audit.*` is an ECS 9.4.0 field of the
    //! right type, and the categorisation values are ones ECS allows. The table is taken from the
    //! official `ecs_flat.yml` of elastic/ecs v9.4.0 (name, type, array or not).

    use serde_json::Value;

    use super::*;
    use crate::model::SourceRecord;
    use crate::pipeline::enrich::catalog::PolicyCatalog;
    use crate::pipeline::enrich::Enricher;
    use crate::pipeline::{decode::json, validate};

    /// (field, ECS type, array) for every ECS field this encoder may write.
    const ECS_FIELDS: &[(&str, &str, bool)] = &[
        ("@timestamp", "date", false),
        ("ecs.version", "keyword", false),
        ("message", "match_only_text", false),
        ("event.kind", "keyword", false),
        ("event.category", "keyword", true),
        ("event.type", "keyword", true),
        ("event.action", "keyword", false),
        ("event.outcome", "keyword", false),
        ("event.severity", "long", false),
        ("event.reason", "keyword", false),
        ("event.id", "keyword", false),
        ("event.dataset", "keyword", false),
        ("event.module", "keyword", false),
        ("event.provider", "keyword", false),
        ("user.id", "keyword", false),
        ("user.name", "keyword", false),
        ("user.email", "keyword", false),
        ("related.user", "keyword", true),
        ("rule.name", "keyword", false),
        ("rule.description", "keyword", false),
        ("rule.author", "keyword", true),
        ("trace.id", "keyword", false),
        ("cloud.provider", "keyword", false),
        ("cloud.region", "keyword", false),
        ("orchestrator.cluster.name", "keyword", false),
        ("orchestrator.resource.name", "keyword", false),
        ("observer.vendor", "keyword", false),
        ("observer.product", "keyword", false),
        ("data_stream.type", "constant_keyword", false),
        ("data_stream.dataset", "constant_keyword", false),
        ("data_stream.namespace", "constant_keyword", false),
    ];
    /// `event.type` values ECS expects with `event.category: api`.
    const API_TYPES: &[&str] = &["access", "admin", "allowed", "change", "creation", "deletion", "denied", "end", "info", "start", "user"];

    fn leaves(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) if prefix != "runtime_audit" => {
                for (k, v) in map {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    leaves(&path, v, out);
                }
            }
            _ => out.push((prefix.to_owned(), value.clone())),
        }
    }

    fn type_matches(ecs_type: &str, array: bool, value: &Value) -> bool {
        let scalar_ok = |v: &Value| match ecs_type {
            "long" => v.is_i64() || v.is_u64(),
            "date" => v.as_str().is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
            _ => v.is_string(),
        };
        match value {
            Value::Array(items) => array && items.iter().all(scalar_ok),
            other => !array && scalar_ok(other),
        }
    }

    #[test]
    fn every_emitted_field_is_ecs_with_its_type() {
        let catalog = PolicyCatalog::parse("[policies.p]\nowner = \"o\"\ndescription = \"d\"\ncompliance = [\"SOC2:CC6.1\"]\n").unwrap();
        let enricher = Enricher { catalog: Some(std::sync::Arc::new(catalog)), ..Default::default() };
        let encoder = EcsConfig::default().build(&Product::default());
        for action in ["deploy", "execute", "modify", "create", "delete", "read", "get", "list", "rollback"] {
            for result in ["allowed", "denied"] {
                for (actor, target) in [("user:a@b.c", "aws:r:c"), ("service:s", "onprem")] {
                    let text = format!(
                        r#"{{"ts":"2026-03-14T09:26:53.120Z","actor":"{actor}","action":"{action}","artifact":"x@1","policy":"p","target":"{target}","mode":"fixed","trace":"t","result":"{result}","reason":"r","extra1":1}}"#
                    );
                    let event = validate::validate(json::decode(text.as_bytes()).unwrap(), &Default::default()).unwrap();
                    let enriched = enricher.enrich(event, &SourceRecord::default(), 0);
                    let mut out = Vec::new();
                    encoder.encode(&enriched, &mut out);
                    let doc: Value = serde_json::from_slice(&out).unwrap();
                    let mut fields = Vec::new();
                    leaves("", &doc, &mut fields);
                    for (path, value) in fields {
                        if path == "runtime_audit" {
                            continue;
                        }
                        let (_, ecs_type, array) = ECS_FIELDS
                            .iter()
                            .find(|(name, _, _)| *name == path)
                            .unwrap_or_else(|| panic!("{path} is not an ECS field (custom fields go under runtime_audit)"));
                        assert!(
                            type_matches(ecs_type, *array, &value),
                            "{path} = {value} is not a {ecs_type}{}",
                            if *array { " array" } else { "" }
                        );
                    }
                    assert_eq!(doc["event"]["category"], serde_json::json!(["api"]));
                    assert!(["event"].contains(&doc["event"]["kind"].as_str().unwrap()));
                    assert!(["success", "failure", "unknown"].contains(&doc["event"]["outcome"].as_str().unwrap()));
                    for t in doc["event"]["type"].as_array().unwrap() {
                        assert!(API_TYPES.contains(&t.as_str().unwrap()), "event.type {t} is not expected with category api");
                    }
                }
            }
        }
    }
}
