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
            if value.is_empty() || value.len() > 100 || value.contains('-') || value.chars().any(|c| c.is_uppercase())
            {
                out.push(format!(
                    "siem.ecs.{key}: {value:?} must be 1 to 100 lowercase bytes without `-` (an ECS data stream rule)"
                ));
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
        serde_json::to_writer(out, &doc).expect("ecs document serializes");
    }
}
