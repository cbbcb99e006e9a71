//! The records that flow through auditflow: what comes in ([`SourceRecord`]), the typed canonical
//! event ([`AuditEvent`]), the enriched view every encoder reads ([`EnrichedEvent`]) and what goes
//! out ([`Output`]). Plain data: no I/O, no Kafka types.

use std::sync::Arc;

use serde_json::{Map, Value};

/// One record as read from an input topic (or a replay file), before any decoding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceRecord {
    /// Topic the record was read from.
    pub topic: String,
    /// Partition the record was read from.
    pub partition: i32,
    /// Offset of the record in its partition.
    pub offset: i64,
    /// Record key, unchanged.
    pub key: Option<Vec<u8>>,
    /// Record headers, in order, unchanged.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Record value; `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Broker or producer timestamp in epoch milliseconds, when the record has one.
    pub timestamp_ms: Option<i64>,
}

/// The policy decision carried by an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The policy allowed the action.
    Allowed,
    /// The policy denied the action.
    Denied,
    /// Another decision value accepted by configuration (`validate.extra_results`); routed like
    /// `allowed` (it is not an alert), reported verbatim in every format.
    Other,
}

/// The canonical audit event after validation: the eight fields, the decision, and any
/// deployment-specific extras in their original order.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Event time normalised to UTC with millisecond precision, e.g. `2026-04-18T14:22:07.441Z`.
    pub ts: String,
    /// Event time as epoch milliseconds (the same instant as `ts`).
    pub ts_ms: i64,
    /// Who initiated the action, `kind:id`.
    pub actor: String,
    /// The operation attempted, e.g. `deploy` or `execute`.
    pub action: String,
    /// What was acted on, usually `name@version`.
    pub artifact: String,
    /// The policy that evaluated the action.
    pub policy: String,
    /// Where execution occurred, usually `provider:region:cluster`.
    pub target: String,
    /// Execution mode, e.g. `fixed` or `adaptive`.
    pub mode: String,
    /// Correlation id shared by the events of one trace.
    pub trace: String,
    /// The decision as received (`allowed`, `denied`, or a configured extra value).
    pub result: String,
    /// The decision, classified.
    pub decision: Decision,
    /// Why the policy decided so; mostly present on denials.
    pub reason: Option<String>,
    /// Fields beyond the canonical ones, carried through in input order.
    pub extra: Map<String, Value>,
}

/// An [`AuditEvent`] with the parts every output format derives from it, computed once.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichedEvent {
    /// The validated event.
    pub event: AuditEvent,
    /// Deterministic id: UUIDv5 (URL namespace) over the canonical fields; see `enrich`.
    pub event_id: String,
    /// Where `actor`, `artifact` and `target` split into the parts read through
    /// [`EnrichedEvent::actor_kind`] and its siblings: byte offsets, not copies.
    pub splits: Splits,
    /// Severity on the 0–10 scale shared by CEF, LEEF and ECS.
    pub severity: u8,
    /// Where the event came from.
    pub provenance: Provenance,
    /// The policy's entry in the policy catalog; `None` when the policy is not in the catalog
    /// (the event passes through, flagged as an unknown policy).
    pub policy_meta: Option<Arc<PolicyMeta>>,
    /// True when a policy catalog is configured and does not know this policy.
    pub policy_unknown: bool,
}

/// The separator positions of an event's `actor` (first `:`), `artifact` (last `@`) and `target`
/// (its two `:` when it has exactly three parts), as byte offsets into those fields. Computed
/// once by `enrich`; the parts are read through [`EnrichedEvent`]'s accessors, which never copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Splits {
    /// Offset of the first `:` in `actor`.
    pub actor_colon: Option<u32>,
    /// Offset of the last `@` in `artifact`.
    pub artifact_at: Option<u32>,
    /// Offsets of the two `:` in `target`, when it has exactly three parts.
    pub target_colons: Option<(u32, u32)>,
}

impl Splits {
    /// The separators of `event`'s fields.
    pub fn of(event: &AuditEvent) -> Splits {
        use crate::scan::{first, last};
        let offset = |at: usize| u32::try_from(at).ok();
        let target = event.target.as_bytes();
        let target_colons = first(target, b':').and_then(|one| {
            let two = one + 1 + first(&target[one + 1..], b':')?;
            first(&target[two + 1..], b':').is_none().then_some((offset(one)?, offset(two)?))
        });
        Splits {
            actor_colon: first(event.actor.as_bytes(), b':').and_then(offset),
            artifact_at: last(event.artifact.as_bytes(), b'@').and_then(offset),
            target_colons,
        }
    }
}

impl EnrichedEvent {
    /// The part of `actor` before the first `:` (`user`, `service`, ...); empty without a `:`.
    #[inline]
    pub fn actor_kind(&self) -> &str {
        let actor = &self.event.actor;
        self.splits.actor_colon.and_then(|at| actor.get(..at as usize)).unwrap_or("")
    }

    /// The part of `actor` after the first `:` (the whole actor without one).
    #[inline]
    pub fn actor_id(&self) -> &str {
        let actor = &self.event.actor;
        self.splits.actor_colon.and_then(|at| actor.get(at as usize + 1..)).unwrap_or(actor)
    }

    /// `artifact` before its last `@` (the whole artifact when it has no `@`).
    #[inline]
    pub fn artifact_name(&self) -> &str {
        let artifact = &self.event.artifact;
        self.splits.artifact_at.and_then(|at| artifact.get(..at as usize)).unwrap_or(artifact)
    }

    /// `artifact` after its last `@`, when there is one.
    #[inline]
    pub fn artifact_version(&self) -> Option<&str> {
        let artifact = &self.event.artifact;
        self.splits.artifact_at.and_then(|at| artifact.get(at as usize + 1..))
    }

    /// `provider`, `region` and `cluster` when `target` has exactly three `:`-separated parts.
    #[inline]
    pub fn target_parts(&self) -> Option<TargetParts<'_>> {
        let target = &self.event.target;
        let (first, second) = self.splits.target_colons?;
        let (first, second) = (first as usize, second as usize);
        Some(TargetParts { provider: target.get(..first)?, region: target.get(first + 1..second)?, cluster: target.get(second + 1..)? })
    }
}

/// What the policy catalog says about one policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyMeta {
    /// Team or person that owns the policy.
    pub owner: Option<String>,
    /// What the policy enforces.
    pub description: Option<String>,
    /// Severity (0–10) that replaces the ladder's value for this policy's denials.
    pub severity: Option<u8>,
    /// Compliance control ids the policy implements, e.g. `SOC2:CC6.1`, `PCI-DSS:7.2.1`, `ISO27001:A.8.2`.
    pub compliance: Vec<String>,
}

/// The three parts of a `provider:region:cluster` target, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetParts<'a> {
    /// Cloud or platform provider, e.g. `aws`.
    pub provider: &'a str,
    /// Region, e.g. `us-east-1`.
    pub region: &'a str,
    /// Cluster name, e.g. `cluster-prod-02`.
    pub cluster: &'a str,
}

/// Where an event was read from and when auditflow took it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Ingest time, epoch milliseconds, as given to `Pipeline::process`.
    pub ingest_ms: i64,
}

/// One record to produce. The core returns outputs and never sends them.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Destination topic.
    pub topic: String,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value; `None` only when a tombstone is dead-lettered.
    pub payload: Option<Vec<u8>>,
    /// Record headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Record timestamp (CreateTime) in epoch milliseconds; `None` lets the producer choose.
    pub timestamp_ms: Option<i64>,
    /// Input positions (topic, partition, offset) this output covers besides the record being
    /// processed, e.g. the first event of each partition in a trace summary: the shell commits
    /// none of them past until the output is acknowledged. Empty for a record's own outputs.
    pub holds: Vec<(String, i32, i64)>,
    /// Destination partition; `None` lets the producer's partitioner choose (by key). Set only
    /// for window changelog records, which live in the partition of their source record.
    pub partition: Option<i32>,
}

/// The outputs of one input record. Always at least one: every record ends somewhere.
pub type Outputs = Vec<Output>;
