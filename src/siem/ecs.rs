//! Elastic Common Schema 9.4.0 documents, one JSON object per event (`docs/siem/ecs.md`).
//!
//! `event.category` is `api`, the only ECS category whose expected types include both the action
//! types and `allowed`/`denied`. Custom fields live under `runtime_audit.*`; extra input fields go
//! under `runtime_audit.extra`, never over ECS names.

use serde::{Deserialize, Serialize};

use super::json::user_email;
use super::{actor_type, ecs_event_type, outcome, Encoder, Product, ProductJson, Shared};
use crate::json_out::{self, Literal};
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
        EcsEncoder {
            config: self.clone(),
            product: product.json(),
            dataset: Literal::new(&self.dataset),
            namespace: Literal::new(&self.namespace),
        }
    }
}

/// Encodes events as ECS documents.
#[derive(Debug, Clone)]
pub struct EcsEncoder {
    config: EcsConfig,
    product: ProductJson,
    dataset: Literal,
    namespace: Literal,
}

impl Encoder for EcsEncoder {
    fn name(&self) -> &'static str {
        "ecs"
    }

    fn encode_shared(&self, enriched: &EnrichedEvent, shared: &Shared, out: &mut Vec<u8>) {
        let e = &enriched.event;
        let meta = enriched.policy_meta.as_deref();
        json_out::object(out, |doc| {
            doc.str("@timestamp", &e.ts);
            doc.object("ecs", |o| o.lit("version", ECS_VERSION));
            shared.write_message(doc, "message", enriched);
            doc.object("event", |o| {
                o.lit("kind", "event");
                o.lit_array("category", ["api"]);
                let decision = match e.decision {
                    Decision::Allowed => Some("allowed"),
                    Decision::Denied => Some("denied"),
                    Decision::Other => None,
                };
                o.lit_array("type", std::iter::once(ecs_event_type(&e.action)).chain(decision));
                o.str("action", &e.action);
                o.lit("outcome", outcome(e.decision));
                o.int("severity", i64::from(enriched.severity));
                o.opt_str("reason", e.reason.as_deref());
                o.str("id", &enriched.event_id);
                o.literal("dataset", &self.dataset);
                o.lit("module", "runtime_audit");
                o.literal("provider", &self.product.source);
            });
            doc.object("user", |o| {
                o.str("id", &e.actor);
                o.str("name", enriched.actor_id());
                o.opt_str("email", user_email(enriched));
            });
            doc.object("related", |o| o.str_array("user", [enriched.actor_id()]));
            doc.object("rule", |o| {
                o.str("name", &e.policy);
                o.opt_str("description", meta.and_then(|m| m.description.as_deref()));
                if let Some(owner) = meta.and_then(|m| m.owner.as_deref()) {
                    o.str_array("author", [owner]);
                }
            });
            doc.object("trace", |o| o.str("id", &e.trace));
            let target = enriched.target_parts();
            if let Some(t) = target {
                doc.object("cloud", |o| {
                    o.str("provider", t.provider);
                    o.str("region", t.region);
                });
            }
            doc.object("orchestrator", |o| {
                if let Some(t) = target {
                    o.object("cluster", |c| c.str("name", t.cluster));
                }
                o.object("resource", |r| r.str("name", enriched.artifact_name()));
            });
            doc.object("observer", |o| {
                o.literal("vendor", &self.product.vendor);
                o.literal("product", &self.product.name);
            });
            if self.config.data_stream {
                doc.object("data_stream", |o| {
                    o.lit("type", "logs");
                    o.literal("dataset", &self.dataset);
                    o.literal("namespace", &self.namespace);
                });
            }
            doc.object("runtime_audit", |o| {
                o.str("actor", &e.actor);
                o.lit("actor_type", actor_type(enriched));
                o.str("artifact", &e.artifact);
                o.opt_str("artifact_version", enriched.artifact_version());
                o.str("target", &e.target);
                o.str("policy_mode", &e.mode);
                o.str("result", &e.result);
                if let Some(m) = meta.filter(|m| !m.compliance.is_empty()) {
                    o.str_array("compliance", m.compliance.iter().map(String::as_str));
                }
                if enriched.policy_unknown {
                    o.bool("policy_unknown", true);
                }
                if !e.extra.is_empty() {
                    o.map("extra", &e.extra);
                }
            });
        });
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
