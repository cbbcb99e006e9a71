//! Enrichment: the parts every output derives from an event, computed once per event.
//!
//! Splits `actor` on its first `:`, `artifact` on its last `@`, `target` into
//! provider/region/cluster when it has exactly three parts; computes the deterministic event id and
//! the severity; records provenance.

use uuid::Uuid;

use crate::model::{AuditEvent, Decision, EnrichedEvent, Provenance, SourceRecord, TargetParts};

/// Severity on the 0–10 scale (CEF, LEEF, ECS), by decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeverityLadder {
    /// Severity of an allowed event (and of a configured extra result).
    pub allowed: u8,
    /// Severity of a denied event.
    pub denied: u8,
}

impl Default for SeverityLadder {
    /// 3 and 6: the ladder of `docs/siem/README.md` (OCSF Informational / Medium).
    fn default() -> Self {
        SeverityLadder { allowed: 3, denied: 6 }
    }
}

/// Enriches a validated event read from `source`, taken in at `ingest_ms`.
pub fn enrich(event: AuditEvent, source: &SourceRecord, ingest_ms: i64, ladder: &SeverityLadder) -> EnrichedEvent {
    let (actor_kind, actor_id) = event.actor.split_once(':').unwrap_or(("", &event.actor));
    let (artifact_name, artifact_version) = match event.artifact.rsplit_once('@') {
        Some((name, version)) => (name.to_owned(), Some(version.to_owned())),
        None => (event.artifact.clone(), None),
    };
    let mut parts = event.target.split(':');
    let target_parts = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(provider), Some(region), Some(cluster), None) => Some(TargetParts {
            provider: provider.to_owned(),
            region: region.to_owned(),
            cluster: cluster.to_owned(),
        }),
        _ => None,
    };
    let severity = match event.decision {
        Decision::Denied => ladder.denied,
        Decision::Allowed | Decision::Other => ladder.allowed,
    };
    EnrichedEvent {
        event_id: event_id(&event),
        actor_kind: actor_kind.to_owned(),
        actor_id: actor_id.to_owned(),
        artifact_name,
        artifact_version,
        target_parts,
        severity,
        provenance: Provenance {
            topic: source.topic.clone(),
            partition: source.partition,
            offset: source.offset,
            ingest_ms,
        },
        policy_meta: None,
        event,
    }
}

/// UUIDv5 in the URL namespace over `ts|actor|action|artifact|policy|target|trace|result`, with
/// `ts` in its normalised form: the same event always gets the same id, so consumers can de-duplicate.
pub fn event_id(event: &AuditEvent) -> String {
    let name = [
        event.ts.as_str(),
        &event.actor,
        &event.action,
        &event.artifact,
        &event.policy,
        &event.target,
        &event.trace,
        &event.result,
    ]
    .join("|");
    Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{decode::json, validate};

    fn event(text: &str) -> AuditEvent {
        validate::validate(json::decode(text.as_bytes()).unwrap(), &Default::default()).unwrap()
    }

    #[test]
    fn event_id_matches_the_format_notes() {
        // Seed A of the SIEM format notes and its published UUIDv5.
        let a = event(r#"{"ts":"2026-03-14T09:26:53.120Z","actor":"user:j.patel@acme.com","action":"deploy","artifact":"billing-service@v4.2.1","policy":"prod-billing-deploy-v3","target":"aws:us-east-1:cluster-prod-02","mode":"fixed","trace":"tr-8f2c7a91-2b14-4e8e","result":"allowed"}"#);
        assert_eq!(event_id(&a), "7c89f897-af79-5960-b7f4-294fd28cd35a");
    }

    #[test]
    fn splits_actor_artifact_and_target() {
        let e = event(r#"{"ts":"2026-03-14T09:26:53.120Z","actor":"service:a:b","action":"x","artifact":"pkg@scope@1.0","policy":"p","target":"onprem:dc1","mode":"fixed","trace":"t","result":"denied"}"#);
        let enriched = enrich(e, &SourceRecord::default(), 0, &SeverityLadder::default());
        assert_eq!((enriched.actor_kind.as_str(), enriched.actor_id.as_str()), ("service", "a:b"));
        assert_eq!(enriched.artifact_name, "pkg@scope");
        assert_eq!(enriched.artifact_version.as_deref(), Some("1.0"));
        assert_eq!(enriched.target_parts, None);
        assert_eq!(enriched.severity, 6);
    }
}
