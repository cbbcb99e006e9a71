//! SIEM encoders: one module per output format, each turning an [`EnrichedEvent`] into the bytes
//! a stock connector for that SIEM reads without custom parsing.
//!
//! Every format is specified in `docs/siem/<format>.md` with worked examples that the golden tests
//! in `tests/data/siem/` check byte for byte. Vocabulary shared by all formats lives here.

pub mod asim;
pub mod cef;
pub mod ecs;
pub mod escape;
pub mod json;
pub mod leef;
pub mod ocsf;
pub mod otlp;
pub mod splunk;
#[cfg(test)]
mod test_support;
pub mod udm;

use serde::{Deserialize, Serialize};

use crate::json_out::Literal;
use crate::model::{Decision, EnrichedEvent};

/// Identity of the product that emits the records, as shown in every format's vendor/product fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Product {
    /// Vendor name (CEF `Device Vendor`, ECS `observer.vendor`).
    pub vendor: String,
    /// Product name (CEF `Device Product`, ECS `observer.product`).
    pub name: String,
    /// Product version (CEF `Device Version`).
    pub version: String,
    /// Short source id (ECS `event.provider`, Splunk `source`).
    pub source: String,
}

impl Default for Product {
    fn default() -> Self {
        Product {
            vendor: "auditflow".into(),
            name: "auditflow".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            source: "auditflow".into(),
        }
    }
}

impl Product {
    /// The fields rendered as JSON string literals, for the JSON encoders to write without a scan.
    pub fn json(&self) -> ProductJson {
        ProductJson {
            vendor: Literal::new(&self.vendor),
            name: Literal::new(&self.name),
            version: Literal::new(&self.version),
            source: Literal::new(&self.source),
        }
    }
}

/// [`Product`] as JSON string literals (see [`Product::json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductJson {
    /// Vendor name.
    pub vendor: Literal,
    /// Product name.
    pub name: Literal,
    /// Product version.
    pub version: Literal,
    /// Short source id.
    pub source: Literal,
}

/// One output format: its name (the suffix of its sink topic) and its encoder.
pub trait Encoder: Send + Sync {
    /// The format's short name, e.g. `ecs`; the default sink topic is `audit.siem.<name>`.
    fn name(&self) -> &'static str;
    /// Appends the encoded record for `event` to `out`, taking pieces several formats write
    /// alike from `shared` (one per event, given to every encoder of the event) instead of
    /// rendering them again.
    fn encode_shared(&self, event: &EnrichedEvent, shared: &Shared, out: &mut Vec<u8>);
    /// Appends the encoded record for `event` to `out`, on its own.
    fn encode(&self, event: &EnrichedEvent, out: &mut Vec<u8>) {
        self.encode_shared(event, &Shared::default(), out);
    }
}

/// Pieces of an event that several formats write identically, each rendered at most once per
/// event when more than one format is enabled: the pipeline makes one per event and hands it to
/// every encoder. With one format (or [`Shared::default`]) nothing is kept: each piece is written
/// in place, as without sharing.
#[derive(Debug, Default)]
pub struct Shared {
    keep: bool,
    message_json: std::cell::OnceCell<Vec<u8>>,
}

impl Shared {
    /// Pieces for `formats` encoders of one event: kept for the next encoder when there are several.
    pub fn for_formats(formats: usize) -> Self {
        Shared { keep: formats > 1, message_json: std::cell::OnceCell::new() }
    }

    /// The event's [`message`] as a JSON string literal, quotes included (rendered on first use).
    pub fn message_json(&self, event: &EnrichedEvent) -> &[u8] {
        self.message_json.get_or_init(|| {
            let parts = message_parts(event);
            let mut json = Vec::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 8);
            crate::json_out::string_of_parts(&mut json, &parts);
            json
        })
    }

    /// Writes `"key":"<the event's message>"`: the kept rendering, or in place.
    pub fn write_message(&self, o: &mut crate::json_out::Object<'_>, key: &'static str, event: &EnrichedEvent) {
        if self.keep {
            o.json(key, self.message_json(event));
        } else {
            o.str_parts(key, &message_parts(event));
        }
    }
}

/// The ECS `event.type` category of an action (format notes §0.4).
pub fn ecs_event_type(action: &str) -> &'static str {
    match action {
        "deploy" | "modify" => "change",
        "execute" => "start",
        "create" => "creation",
        "delete" => "deletion",
        "read" | "get" | "list" => "access",
        _ => "info",
    }
}

/// `user`, `service`, or `other`: the actor kinds every format distinguishes.
pub fn actor_type(event: &EnrichedEvent) -> &'static str {
    match event.actor_kind() {
        "user" => "user",
        "service" => "service",
        _ => "other",
    }
}

/// The one-line human summary shared by all formats:
/// `<action> of <artifact> on <target> by <actor> <result> by policy <policy>`.
pub fn message(event: &EnrichedEvent) -> String {
    let e = &event.event;
    format!("{} of {} on {} by {} {} by policy {}", e.action, e.artifact, e.target, e.actor, e.result, e.policy)
}

/// The pieces of [`message`], in order, for encoders that write (and truncate) the summary
/// without building the string.
pub fn message_parts(event: &EnrichedEvent) -> [&str; 11] {
    let e = &event.event;
    [&e.action, " of ", &e.artifact, " on ", &e.target, " by ", &e.actor, " ", &e.result, " by policy ", &e.policy]
}

/// ECS-style outcome of a decision.
pub fn outcome(decision: Decision) -> &'static str {
    match decision {
        Decision::Allowed => "success",
        Decision::Denied => "failure",
        Decision::Other => "unknown",
    }
}
