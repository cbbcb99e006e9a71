//! Enrichment: the parts every output derives from an event, computed once per event.
//!
//! Splits `actor` on its first `:`, `artifact` on its last `@`, `target` into
//! provider/region/cluster when it has exactly three parts; computes the deterministic event id;
//! looks the policy up in the [`catalog::PolicyCatalog`]; sets the severity; records provenance.

pub mod catalog;

use std::sync::Arc;

use uuid::Uuid;

use crate::model::{AuditEvent, Decision, EnrichedEvent, Provenance, SourceRecord, Splits};
use catalog::PolicyCatalog;

/// Severity on the 0–10 scale (CEF, LEEF, ECS), by decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeverityLadder {
    /// Severity of an allowed event (and of a configured extra result).
    pub allowed: u8,
    /// Severity of a denied event, unless the policy catalog overrides it.
    pub denied: u8,
    /// Added to a denial's severity in `adaptive` mode (capped at 10).
    pub adaptive_raise: u8,
}

impl Default for SeverityLadder {
    /// 3 and 6 with no adaptive raise: OCSF Informational / Medium (`docs/siem/README.md`).
    fn default() -> Self {
        SeverityLadder { allowed: 3, denied: 6, adaptive_raise: 0 }
    }
}

impl SeverityLadder {
    /// The severity of an event with this decision, mode and catalog entry.
    pub fn severity(&self, decision: Decision, mode: &str, policy_severity: Option<u8>) -> u8 {
        match decision {
            Decision::Allowed | Decision::Other => self.allowed,
            Decision::Denied => {
                let base = policy_severity.unwrap_or(self.denied);
                let raise = if mode == "adaptive" { self.adaptive_raise } else { 0 };
                base.saturating_add(raise).min(10)
            }
        }
    }
}

/// Enrichment settings: the severity ladder and the policy catalog, if one is configured.
#[derive(Debug, Clone, Default)]
pub struct Enricher {
    /// Severity by decision.
    pub ladder: SeverityLadder,
    /// The policy catalog; `None` when no catalog file is configured.
    pub catalog: Option<Arc<PolicyCatalog>>,
}

impl Enricher {
    /// Enriches a validated event read from `source`, taken in at `ingest_ms`.
    pub fn enrich(&self, event: AuditEvent, source: &SourceRecord, ingest_ms: i64) -> EnrichedEvent {
        let policy_meta = self.catalog.as_ref().and_then(|c| c.get(&event.policy).cloned());
        let policy_unknown = self.catalog.is_some() && policy_meta.is_none();
        let mut enriched = enrich(event, source, ingest_ms, &self.ladder);
        enriched.severity =
            self.ladder.severity(enriched.event.decision, &enriched.event.mode, policy_meta.as_ref().and_then(|m| m.severity));
        enriched.policy_meta = policy_meta;
        enriched.policy_unknown = policy_unknown;
        enriched
    }
}

/// Enriches a validated event with no policy catalog: the ladder's severity, no policy metadata.
pub fn enrich(event: AuditEvent, source: &SourceRecord, ingest_ms: i64, ladder: &SeverityLadder) -> EnrichedEvent {
    let severity = ladder.severity(event.decision, &event.mode, None);
    EnrichedEvent {
        event_id: event_id(&event),
        // Byte offsets of the separators: the parts are read in place, never copied.
        splits: Splits::of(&event),
        severity,
        provenance: Provenance { topic: source.topic.clone(), partition: source.partition, offset: source.offset, ingest_ms },
        policy_meta: None,
        policy_unknown: false,
        event,
    }
}

/// UUIDv5 in the URL namespace over `ts|actor|action|artifact|policy|target|trace|result`, with
/// `ts` in its normalised form: the same event always gets the same id, so consumers can de-duplicate.
pub fn event_id(event: &AuditEvent) -> String {
    use sha1::{Digest, Sha1};
    // UUIDv5 is SHA-1 over namespace and name; the name's parts are hashed in place rather than
    // joined first. `sha1` uses the SHA extensions where the CPU has them (`uuid`'s own v5 does not).
    let mut hasher = Sha1::new();
    hasher.update(Uuid::NAMESPACE_URL.as_bytes());
    let parts =
        [event.ts.as_str(), &event.actor, &event.action, &event.artifact, &event.policy, &event.target, &event.trace, &event.result];
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            hasher.update(b"|");
        }
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let bytes: [u8; 16] = digest[..16].try_into().expect("a SHA-1 digest has 20 bytes");
    let uuid = uuid::Builder::from_sha1_bytes(bytes).into_uuid();
    uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{decode::json, validate};

    fn event(text: &str) -> AuditEvent {
        validate::validate(json::decode(text.as_bytes()).unwrap(), &Default::default()).unwrap()
    }

    proptest::proptest! {
        /// The parts read through the stored separator offsets are those `str`'s splits give, on
        /// any text (multi-byte characters included).
        #[test]
        fn parts_agree_with_str_splits(text in "[a-c:@é\\x{1F600}]{0,10}") {
            let valid = r#"{"ts":"2026-03-14T09:26:53.120Z","actor":"user:a","action":"deploy","artifact":"svc@1","policy":"p","target":"a:b:c","mode":"fixed","trace":"t","result":"allowed"}"#;
            let mut e = event(valid);
            (e.actor, e.artifact, e.target) = (text.clone(), text.clone(), text.clone());
            let e = enrich(e, &SourceRecord::default(), 0, &SeverityLadder::default());
            let (kind, id) = text.split_once(':').unwrap_or(("", &text));
            proptest::prop_assert_eq!((e.actor_kind(), e.actor_id()), (kind, id));
            let (name, version) = match text.rsplit_once('@') {
                Some((name, version)) => (name, Some(version)),
                None => (text.as_str(), None),
            };
            proptest::prop_assert_eq!((e.artifact_name(), e.artifact_version()), (name, version));
            let parts: Vec<&str> = text.split(':').collect();
            let expected = (parts.len() == 3).then(|| (parts[0], parts[1], parts[2]));
            proptest::prop_assert_eq!(e.target_parts().map(|t| (t.provider, t.region, t.cluster)), expected);
        }
    }

    #[test]
    fn event_id_matches_the_format_notes() {
        // Seed A of the SIEM format notes and its published UUIDv5.
        let a = event(
            r#"{"ts":"2026-03-14T09:26:53.120Z","actor":"user:j.patel@acme.com","action":"deploy","artifact":"billing-service@v4.2.1","policy":"prod-billing-deploy-v3","target":"aws:us-east-1:cluster-prod-02","mode":"fixed","trace":"tr-8f2c7a91-2b14-4e8e","result":"allowed"}"#,
        );
        assert_eq!(event_id(&a), "7c89f897-af79-5960-b7f4-294fd28cd35a");
        // The same as the uuid crate's own v5 over the joined name.
        let name = [a.ts.as_str(), &a.actor, &a.action, &a.artifact, &a.policy, &a.target, &a.trace, &a.result].join("|");
        assert_eq!(event_id(&a), Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes()).to_string());
    }

    #[test]
    fn catalog_sets_metadata_severity_and_the_unknown_flag() {
        let catalog = PolicyCatalog::parse("[policies.p]\nowner = \"o\"\nseverity = 9\n").unwrap();
        let enricher = Enricher { ladder: SeverityLadder { allowed: 2, denied: 5, adaptive_raise: 2 }, catalog: Some(Arc::new(catalog)) };
        let base = r#"{"ts":"2026-03-14T09:26:53.120Z","actor":"user:a","action":"x","artifact":"a@1","policy":"POLICY","target":"t","mode":"MODE","trace":"t","result":"RESULT"}"#;
        let run = |policy: &str, mode: &str, result: &str| {
            let text = base.replace("POLICY", policy).replace("MODE", mode).replace("RESULT", result);
            enricher.enrich(event(&text), &SourceRecord::default(), 0)
        };
        let known = run("p", "fixed", "denied");
        assert_eq!((known.severity, known.policy_unknown), (9, false));
        assert_eq!(known.policy_meta.as_ref().unwrap().owner.as_deref(), Some("o"));
        assert_eq!(run("p", "adaptive", "denied").severity, 10, "raise is capped at 10");
        assert_eq!(run("p", "adaptive", "allowed").severity, 2, "allowed events are not raised");
        let unknown = run("q", "adaptive", "denied");
        assert_eq!((unknown.severity, unknown.policy_unknown), (7, true));
        assert!(unknown.policy_meta.is_none());
        let no_catalog = Enricher::default().enrich(
            event(&base.replace("POLICY", "q").replace("MODE", "fixed").replace("RESULT", "denied")),
            &SourceRecord::default(),
            0,
        );
        assert!(!no_catalog.policy_unknown, "without a catalog nothing is flagged");
    }

    #[test]
    fn splits_actor_artifact_and_target() {
        let e = event(
            r#"{"ts":"2026-03-14T09:26:53.120Z","actor":"service:a:b","action":"x","artifact":"pkg@scope@1.0","policy":"p","target":"onprem:dc1","mode":"fixed","trace":"t","result":"denied"}"#,
        );
        let enriched = enrich(e, &SourceRecord::default(), 0, &SeverityLadder::default());
        assert_eq!((enriched.actor_kind(), enriched.actor_id()), ("service", "a:b"));
        assert_eq!(enriched.artifact_name(), "pkg@scope");
        assert_eq!(enriched.artifact_version(), Some("1.0"));
        assert_eq!(enriched.target_parts(), None);
        assert_eq!(enriched.severity, 6);
    }
}
