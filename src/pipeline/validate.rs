//! Validation: a [`RawEvent`] becomes a typed [`AuditEvent`] or a [`Reject`] naming the rule.
//!
//! The contract is `schemas/audit_event.avsc` plus field rules (see `docs/input.md`):
//! `ts` is RFC 3339 with an explicit offset, normalised to UTC with milliseconds; `actor` is
//! `kind:id`; `mode` and `result` take known values; `trace` is non-empty; every field is bounded.
//! Fields beyond the canonical ones pass through, in order.

use crate::model::{AuditEvent, Decision};
use crate::pipeline::decode::{FieldValue, RawEvent, CANONICAL};
use crate::pipeline::reject::{Reject, RejectCode};
use chrono::{DateTime, SecondsFormat, Utc};

/// Field rules, built once from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateSettings {
    /// Accepted `mode` values (always includes `fixed` and `adaptive`).
    pub modes: Vec<String>,
    /// Accepted `result` values besides `allowed` and `denied`.
    pub extra_results: Vec<String>,
    /// Longest accepted canonical field (and `reason`), in bytes.
    pub max_field_bytes: usize,
    /// Longest accepted `trace`, in bytes.
    pub max_trace_bytes: usize,
}

impl Default for ValidateSettings {
    fn default() -> Self {
        ValidateSettings {
            modes: vec!["fixed".into(), "adaptive".into()],
            extra_results: Vec::new(),
            max_field_bytes: 2048,
            max_trace_bytes: 256,
        }
    }
}

/// Checks every rule and builds the typed event.
pub fn validate(raw: RawEvent, settings: &ValidateSettings) -> Result<AuditEvent, Reject> {
    let RawEvent { canonical, extra } = raw;
    let [ts, actor, action, artifact, policy, target, mode, trace, result, reason] = canonical;
    let mut fields: [String; 9] = Default::default();
    for (index, slot) in [ts, actor, action, artifact, policy, target, mode, trace, result].into_iter().enumerate() {
        let name = CANONICAL[index];
        let text = required_string(name, slot)?;
        let bound = if name == "trace" { settings.max_trace_bytes } else { settings.max_field_bytes };
        check_length(name, &text, bound)?;
        if let Some(at) = find_control(&text) {
            return Err(Reject::new(RejectCode::ControlCharacter, format!("field `{name}` contains a control character at byte {at}")));
        }
        fields[index] = text;
    }
    let reason = match reason {
        None | Some(FieldValue::Null) => None,
        Some(FieldValue::Text(text)) => {
            check_length("reason", &text, settings.max_field_bytes)?;
            Some(text)
        }
        Some(FieldValue::Other(kind)) => return Err(wrong_type("reason", "a string or null", kind)),
    };
    let [ts_raw, actor, action, artifact, policy, target, mode, trace, result] = fields;

    let (ts, ts_ms) = normalise_ts(ts_raw)?;
    match crate::scan::first(actor.as_bytes(), b':') {
        Some(at) if at > 0 && at + 1 < actor.len() => {}
        _ => {
            return Err(Reject::new(
                RejectCode::BadActor,
                format!("field `actor` must be `kind:id` with both parts non-empty, got {actor:?}"),
            ))
        }
    }
    if !settings.modes.contains(&mode) {
        return Err(Reject::new(RejectCode::BadMode, format!("field `mode` must be one of {:?}, got {mode:?}", settings.modes)));
    }
    let decision = match result.as_str() {
        "allowed" => Decision::Allowed,
        "denied" => Decision::Denied,
        other if settings.extra_results.iter().any(|r| r == other) => Decision::Other,
        other => {
            return Err(Reject::new(
                RejectCode::BadResult,
                format!("field `result` must be `allowed` or `denied` (or a configured extra), got {other:?}"),
            ))
        }
    };
    if trace.is_empty() {
        return Err(Reject::new(RejectCode::EmptyTrace, "field `trace` is empty"));
    }
    Ok(AuditEvent { ts, ts_ms, actor, action, artifact, policy, target, mode, trace, result, decision, reason, extra })
}

/// Byte offset of the first control character (Unicode `Cc`: U+0000–U+001F, U+007F–U+009F).
/// Most text has no byte that could start one (below 0x20, 0x7F, or 0xC2, the lead byte of
/// U+0080–U+00BF), which a byte scan settles without decoding characters.
fn find_control(text: &str) -> Option<usize> {
    if !crate::scan::any_below_or_eq(text.as_bytes(), 0x20, 0x7F, 0xC2) {
        return None;
    }
    text.find(|c: char| c.is_control())
}

/// Parses RFC 3339 with an explicit offset; returns the UTC form with milliseconds and epoch ms.
/// A value already in that form (`2026-04-18T14:22:07.441Z`, the common case) is kept as it is.
pub fn normalise_ts(text: String) -> Result<(String, i64), Reject> {
    if let Some(ms) = canonical_utc_millis(text.as_bytes()) {
        return Ok((text, ms));
    }
    let parsed = DateTime::parse_from_rfc3339(&text).map_err(|error| {
        Reject::new(
            RejectCode::BadTimestamp,
            format!("field `ts` must be rfc 3339 with an explicit offset (e.g. 2026-04-18T14:22:07.441Z), got {text:?}: {error}"),
        )
    })?;
    let utc = parsed.with_timezone(&Utc);
    Ok((utc.to_rfc3339_opts(SecondsFormat::Millis, true), utc.timestamp_millis()))
}

/// Epoch ms of a timestamp written exactly as `YYYY-MM-DDTHH:MM:SS.mmmZ`, with every field in
/// range; `None` for anything else (which then goes through the full RFC 3339 parser).
fn canonical_utc_millis(b: &[u8]) -> Option<i64> {
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        b[range].iter().try_fold(0i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli)
}

fn required_string(name: &str, slot: Option<FieldValue>) -> Result<String, Reject> {
    match slot {
        Some(FieldValue::Text(text)) => Ok(text),
        None | Some(FieldValue::Null) => Err(Reject::new(RejectCode::MissingField, format!("missing required field `{name}`"))),
        Some(FieldValue::Other(kind)) => Err(wrong_type(name, "a string", kind)),
    }
}

fn check_length(name: &str, text: &str, bound: usize) -> Result<(), Reject> {
    if text.len() > bound {
        return Err(Reject::new(RejectCode::FieldTooLong, format!("field `{name}` is {} bytes, over the limit of {bound}", text.len())));
    }
    Ok(())
}

fn wrong_type(name: &str, expected: &str, kind: &str) -> Reject {
    Reject::new(RejectCode::WrongType, format!("field `{name}` must be {expected}, found {kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::decode::json;
    use serde_json::{Map, Value};

    const SEED_B: &str = r#"{"ts":"2026-04-18T14:28:33.911Z","actor":"service:fraud-detector","action":"execute","artifact":"customer-lookup@v2.8.0","policy":"pii-access-restrict-v2","target":"aws:us-east-1:cluster-prod-02","mode":"adaptive","trace":"tr-8f2c7a91-2b14-4e8e","result":"denied","reason":"declared-purpose violation: pii_export not authorized"}"#;

    fn check(text: &str) -> Result<AuditEvent, Reject> {
        validate(json::decode(text.as_bytes())?, &ValidateSettings::default())
    }

    fn with(field: &str, value: Value) -> String {
        let mut map: Map<String, Value> = serde_json::from_str(SEED_B).unwrap();
        if value == Value::Bool(false) {
            map.remove(field);
        } else {
            map.insert(field.into(), value);
        }
        serde_json::to_string(&map).unwrap()
    }

    #[test]
    fn reference_event_validates() {
        let event = check(SEED_B).unwrap();
        assert_eq!(event.ts, "2026-04-18T14:28:33.911Z");
        assert_eq!(event.ts_ms, 1_776_522_513_911);
        assert_eq!(event.decision, Decision::Denied);
        assert_eq!(event.reason.as_deref(), Some("declared-purpose violation: pii_export not authorized"));
        assert!(event.extra.is_empty());
    }

    #[test]
    fn timestamp_is_normalised_to_utc_millis() {
        let event = check(&with("ts", "2026-04-18T16:28:33.9117+02:00".into())).unwrap();
        assert_eq!(event.ts, "2026-04-18T14:28:33.911Z");
        let event = check(&with("ts", "2026-04-18T14:28:33Z".into())).unwrap();
        assert_eq!(event.ts, "2026-04-18T14:28:33.000Z");
    }

    #[test]
    fn each_rule_rejects_with_its_code() {
        let cases = [
            ("ts", Value::from("2026-04-18T14:28:33.911"), RejectCode::BadTimestamp),
            ("ts", Value::from("yesterday"), RejectCode::BadTimestamp),
            ("ts", Value::from(1_776_522_513_911_i64), RejectCode::WrongType),
            ("actor", Value::from("fraud-detector"), RejectCode::BadActor),
            ("actor", Value::from(":x"), RejectCode::BadActor),
            ("actor", Value::from("user:"), RejectCode::BadActor),
            ("mode", Value::from("manual"), RejectCode::BadMode),
            ("result", Value::from("maybe"), RejectCode::BadResult),
            ("trace", Value::from(""), RejectCode::EmptyTrace),
            ("trace", Value::from("t".repeat(257)), RejectCode::FieldTooLong),
            ("policy", Value::from("p".repeat(2049)), RejectCode::FieldTooLong),
            ("action", Value::from("exe\u{0}cute"), RejectCode::ControlCharacter),
            ("target", Value::from("a\nb"), RejectCode::ControlCharacter),
            ("policy", Value::Null, RejectCode::MissingField),
            ("policy", Value::Bool(false), RejectCode::MissingField),
            ("artifact", serde_json::json!(["x"]), RejectCode::WrongType),
            ("reason", Value::from(3), RejectCode::WrongType),
        ];
        for (field, value, code) in cases {
            let reject = check(&with(field, value.clone())).unwrap_err();
            assert_eq!(reject.code, code, "{field} = {value}: {}", reject.message);
            assert!(reject.message.contains(field), "message names the field: {}", reject.message);
        }
    }

    #[test]
    fn fast_timestamp_path_agrees_with_the_full_parser() {
        for text in [
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "2026-04-18T14:22:07.441Z",
            "2100-12-31T00:00:00.001Z",
            "1969-12-31T23:59:59.999Z",
            "2024-02-29T12:00:00.500Z",
        ] {
            let full = DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis();
            assert_eq!(canonical_utc_millis(text.as_bytes()), Some(full), "{text}");
        }
        for text in [
            "2023-02-29T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-04-18T24:00:00.000Z",
            "2026-04-18T14:22:07.441+00:00",
            "2026-04-18 14:22:07.441Z",
        ] {
            assert_eq!(canonical_utc_millis(text.as_bytes()), None, "{text}");
        }
        assert_eq!(normalise_ts("2023-02-29T00:00:00.000Z".into()).unwrap_err().code, RejectCode::BadTimestamp);
    }

    proptest::proptest! {
        #[test]
        fn fast_path_matches_chrono_on_random_instants(ms in -30_000_000_000_000i64..30_000_000_000_000i64) {
            let text = chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true);
            if text.len() == 24 {
                proptest::prop_assert_eq!(canonical_utc_millis(text.as_bytes()), Some(ms));
            }
        }

        /// The byte pre-check never hides a control character: C0, DEL, C1 (U+0080–U+009F) and
        /// their neighbours (U+00A0–U+00FF share or follow the 0xC2/0xC3 lead bytes).
        #[test]
        fn find_control_agrees_with_char_is_control(text in "[a-z\\x00-\\x1f\\x7f\\u{80}-\\u{ff}\\u{100}-\\u{2fff}]{0,12}") {
            proptest::prop_assert_eq!(find_control(&text), text.find(|c: char| c.is_control()));
        }
    }

    #[test]
    fn configured_extra_values_are_accepted() {
        let settings = ValidateSettings {
            modes: vec!["fixed".into(), "adaptive".into(), "audit-only".into()],
            extra_results: vec!["challenged".into()],
            ..ValidateSettings::default()
        };
        let text = with("mode", "audit-only".into());
        let event = validate(json::decode(text.as_bytes()).unwrap(), &settings).unwrap();
        assert_eq!(event.mode, "audit-only");
        let text = with("result", "challenged".into());
        let event = validate(json::decode(text.as_bytes()).unwrap(), &settings).unwrap();
        assert_eq!(event.decision, Decision::Other);
    }

    #[test]
    fn extra_fields_pass_through_in_order() {
        let text = SEED_B.replacen('{', r#"{"zone":"b","cost":3,"#, 1).replace("}", r#","labels":{"team":"x"}}"#);
        let event = check(&text).unwrap();
        let keys: Vec<&str> = event.extra.keys().map(String::as_str).collect();
        assert_eq!(keys, ["zone", "cost", "labels"]);
        assert_eq!(event.extra["labels"]["team"], "x");
    }
}
