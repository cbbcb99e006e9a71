//! Pieces shared by the JSON encoders (OCSF, UDM, ASIM, OTLP): the severity bands every one of
//! them maps the 0–10 scale onto, UTF-8-safe truncation, and the summary line's length.

use std::fmt;

use crate::model::EnrichedEvent;

/// The 0–10 severity folded into the five bands the JSON formats name.
///
/// 0–3 Informational, 4–5 Low, 6–7 Medium, 8–9 High, 10 Critical (values above 10 count as 10).
/// With the default ladder (allowed 3, denied 6) this gives the format notes' table: allowed is
/// Informational, denied is Medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeverityBand {
    /// 0–3.
    Informational,
    /// 4–5.
    Low,
    /// 6–7.
    Medium,
    /// 8–9.
    High,
    /// 10.
    Critical,
}

impl SeverityBand {
    /// The band of a 0–10 severity.
    pub fn of(severity: u8) -> SeverityBand {
        match severity {
            0..=3 => SeverityBand::Informational,
            4..=5 => SeverityBand::Low,
            6..=7 => SeverityBand::Medium,
            8..=9 => SeverityBand::High,
            _ => SeverityBand::Critical,
        }
    }
}

/// The longest prefix of `text` that is at most `max` bytes and ends on a character boundary.
pub fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The shared one-line summary ([`super::message`]): its length without building it, and its
/// `Display`.
#[derive(Clone, Copy)]
pub struct Message<'a>(pub &'a EnrichedEvent);

impl Message<'_> {
    /// Length of the message in bytes.
    pub fn byte_len(&self) -> usize {
        let e = &self.0.event;
        // "<action> of <artifact> on <target> by <actor> <result> by policy <policy>"
        e.action.len() + e.artifact.len() + e.target.len() + e.actor.len() + e.result.len() + e.policy.len() + 24
    }
}

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0.event;
        write!(f, "{} of {} on {} by {} {} by policy {}", e.action, e.artifact, e.target, e.actor, e.result, e.policy)
    }
}

/// `user.name` style email: the actor id when the actor kind is `user` and the id contains `@`.
pub fn user_email(event: &EnrichedEvent) -> Option<&str> {
    (event.actor_kind() == "user" && event.actor_id().contains('@')).then_some(event.actor_id())
}

/// Test helpers shared by the encoders' unit and property tests.
#[cfg(test)]
pub(crate) mod testing {
    use serde_json::{Map, Value};

    use crate::model::{AuditEvent, Decision, EnrichedEvent, SourceRecord};
    use crate::pipeline::enrich::{enrich, SeverityLadder};
    use crate::pipeline::{decode::json, validate};
    use crate::siem::Product;

    /// The product identity of the worked examples.
    pub fn product() -> Product {
        Product { vendor: "Acme".into(), name: "RuntimeGuard".into(), version: "1.4.0".into(), source: "runtime-guard".into() }
    }

    /// Seed A of the format notes.
    pub const SEED_A: &str = r#"{"ts":"2026-03-14T09:26:53.120Z","actor":"user:j.patel@acme.com","action":"deploy","artifact":"billing-service@v4.2.1","policy":"prod-billing-deploy-v3","target":"aws:us-east-1:cluster-prod-02","mode":"fixed","trace":"tr-8f2c7a91-2b14-4e8e","result":"allowed"}"#;
    /// Seed B of the format notes.
    pub const SEED_B: &str = r#"{"ts":"2026-03-14T09:27:05.007Z","actor":"service:fraud-detector","action":"execute","artifact":"billing-service@v4.2.1","policy":"prod-billing-deploy-v3","target":"aws:us-east-1:cluster-prod-02","mode":"adaptive","trace":"tr-8f2c7a91-2b14-4e8e","result":"denied","reason":"risk score 0.91 > threshold=0.80 | outside change window"}"#;

    /// Validates and enriches a JSON event with the default settings (plus `challenged` as an
    /// extra result), taken in at `ingest_ms`.
    pub fn enriched(text: &str, ingest_ms: i64) -> EnrichedEvent {
        let settings = validate::ValidateSettings { extra_results: vec!["challenged".into()], ..Default::default() };
        let event = validate::validate(json::decode(text.as_bytes()).unwrap(), &settings).unwrap();
        enrich(event, &SourceRecord::default(), ingest_ms, &SeverityLadder::default())
    }

    /// Builds an event field by field, bypassing validation, so property tests can put any
    /// string anywhere.
    #[allow(clippy::too_many_arguments)]
    pub fn raw_event(
        actor: &str,
        action: &str,
        artifact: &str,
        policy: &str,
        target: &str,
        mode: &str,
        trace: &str,
        result: &str,
        reason: Option<&str>,
        extra: Map<String, Value>,
        severity: u8,
    ) -> EnrichedEvent {
        let decision = match result {
            "allowed" => Decision::Allowed,
            "denied" => Decision::Denied,
            _ => Decision::Other,
        };
        let event = AuditEvent {
            ts: "2026-03-14T09:26:53.120Z".into(),
            ts_ms: 1_773_480_413_120,
            actor: actor.into(),
            action: action.into(),
            artifact: artifact.into(),
            policy: policy.into(),
            target: target.into(),
            mode: mode.into(),
            trace: trace.into(),
            result: result.into(),
            decision,
            reason: reason.map(str::to_owned),
            extra,
        };
        let ladder = SeverityLadder { allowed: severity, denied: severity, adaptive_raise: 0 };
        enrich(event, &SourceRecord::default(), 1_773_480_413_250, &ladder)
    }

    /// Parses an encoder's output, checking first that it is one line with every control
    /// character escaped (no raw byte below 0x20), so it cannot end the record or start another.
    pub fn parse(out: &[u8]) -> Value {
        assert!(!out.iter().any(|b| *b < 0x20), "raw control byte in {}", String::from_utf8_lossy(out));
        serde_json::from_slice(out).expect("valid JSON")
    }

    /// Object keys anywhere in `value`, except below the keys named in `skip` (free-form maps).
    pub fn keys(value: &Value, skip: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    out.push(key.clone());
                    if !skip.contains(&key.as_str()) {
                        out.extend(keys(inner, skip));
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| out.extend(keys(v, skip))),
            _ => {}
        }
        out
    }

    /// Strings with the characters that break naive encoders: quotes, backslashes, control
    /// characters (NUL, CR, LF, DEL), separators and non-ASCII text up to four bytes per char.
    pub fn hostile() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex("([\"\\\\\u{0}\r\n\t\u{7f}|=:@ ,;{}<>é€𝄞]|[a-z0-9]|[\u{80}-\u{10ffff}]){0,24}").unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bands_cover_the_scale_and_match_the_default_ladder() {
        assert_eq!(SeverityBand::of(3), SeverityBand::Informational);
        assert_eq!(SeverityBand::of(6), SeverityBand::Medium);
        assert_eq!(SeverityBand::of(0), SeverityBand::Informational);
        assert_eq!(SeverityBand::of(4), SeverityBand::Low);
        assert_eq!(SeverityBand::of(8), SeverityBand::High);
        assert_eq!(SeverityBand::of(10), SeverityBand::Critical);
        assert_eq!(SeverityBand::of(255), SeverityBand::Critical);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_utf8("abc", 5), "abc");
        assert_eq!(truncate_utf8("aé", 2), "a");
        assert_eq!(truncate_utf8("€€", 5), "€");
        assert_eq!(truncate_utf8("𝄞", 3), "");
    }

    #[test]
    fn message_length_is_exact() {
        let event = testing::enriched(testing::SEED_B, 0);
        assert_eq!(Message(&event).byte_len(), super::super::message(&event).len());
        assert_eq!(Message(&event).to_string(), super::super::message(&event));
    }

    proptest! {
        #[test]
        fn truncation_is_a_boundary_prefix(text in "\\PC{0,40}", max in 0usize..60) {
            let cut = truncate_utf8(&text, max);
            prop_assert!(cut.len() <= max);
            prop_assert!(text.starts_with(cut));
            // Maximal: the next character would not fit.
            if cut.len() < text.len() {
                let next = text[cut.len()..].chars().next().unwrap();
                prop_assert!(cut.len() + next.len_utf8() > max);
            }
        }
    }
}
