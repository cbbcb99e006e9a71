//! Validation: a [`RawEvent`] becomes a typed [`AuditEvent`] or a [`Reject`] naming the rule.
//!
//! The contract is `schemas/audit_event.avsc` plus field rules (see `docs/input.md`):
//! `ts` is RFC 3339 with an explicit offset, normalised to UTC with milliseconds; `actor` is
//! `kind:id`; `mode` and `result` take known values; `trace` is non-empty; every field is bounded.
//! Fields beyond the canonical ones pass through, in order.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::model::{AuditEvent, Decision};
use crate::pipeline::decode::RawEvent;
use crate::pipeline::reject::{Reject, RejectCode};

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

/// The canonical fields, in schema order; each is a required string.
const REQUIRED: [&str; 9] = ["ts", "actor", "action", "artifact", "policy", "target", "mode", "trace", "result"];

/// Checks every rule and builds the typed event.
pub fn validate(raw: RawEvent, settings: &ValidateSettings) -> Result<AuditEvent, Reject> {
    let mut slots: [Option<Value>; 9] = Default::default();
    let mut reason = None;
    let mut extra = Map::new();
    for (key, value) in raw.fields {
        match REQUIRED.iter().position(|name| *name == key) {
            Some(index) => slots[index] = Some(value),
            None if key == "reason" => reason = Some(value),
            None => {
                extra.insert(key, value);
            }
        }
    }
    let mut fields: [String; 9] = Default::default();
    for (index, slot) in slots.into_iter().enumerate() {
        let name = REQUIRED[index];
        let text = required_string(name, slot)?;
        let bound = if name == "trace" { settings.max_trace_bytes } else { settings.max_field_bytes };
        check_length(name, &text, bound)?;
        if let Some(at) = text.find(|c: char| c.is_control()) {
            return Err(Reject::new(
                RejectCode::ControlCharacter,
                format!("field `{name}` contains a control character at byte {at}"),
            ));
        }
        fields[index] = text;
    }
    let reason = match reason {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            check_length("reason", &text, settings.max_field_bytes)?;
            Some(text)
        }
        Some(other) => return Err(wrong_type("reason", "a string or null", &other)),
    };
    let [ts_raw, actor, action, artifact, policy, target, mode, trace, result] = fields;

    let (ts, ts_ms) = normalise_ts(&ts_raw)?;
    match actor.split_once(':') {
        Some((kind, id)) if !kind.is_empty() && !id.is_empty() => {}
        _ => {
            return Err(Reject::new(
                RejectCode::BadActor,
                format!("field `actor` must be `kind:id` with both parts non-empty, got {actor:?}"),
            ))
        }
    }
    if !settings.modes.iter().any(|m| *m == mode) {
        return Err(Reject::new(
            RejectCode::BadMode,
            format!("field `mode` must be one of {:?}, got {mode:?}", settings.modes),
        ));
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

/// Parses RFC 3339 with an explicit offset; returns the UTC form with milliseconds and epoch ms.
pub fn normalise_ts(text: &str) -> Result<(String, i64), Reject> {
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|error| {
        Reject::new(
            RejectCode::BadTimestamp,
            format!("field `ts` must be rfc 3339 with an explicit offset (e.g. 2026-04-18T14:22:07.441Z), got {text:?}: {error}"),
        )
    })?;
    let utc = parsed.with_timezone(&Utc);
    Ok((utc.to_rfc3339_opts(SecondsFormat::Millis, true), utc.timestamp_millis()))
}

fn required_string(name: &str, slot: Option<Value>) -> Result<String, Reject> {
    match slot {
        Some(Value::String(text)) => Ok(text),
        None | Some(Value::Null) => {
            Err(Reject::new(RejectCode::MissingField, format!("missing required field `{name}`")))
        }
        Some(other) => Err(wrong_type(name, "a string", &other)),
    }
}

fn check_length(name: &str, text: &str, bound: usize) -> Result<(), Reject> {
    if text.len() > bound {
        return Err(Reject::new(
            RejectCode::FieldTooLong,
            format!("field `{name}` is {} bytes, over the limit of {bound}", text.len()),
        ));
    }
    Ok(())
}

fn wrong_type(name: &str, expected: &str, found: &Value) -> Reject {
    let kind = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Reject::new(RejectCode::WrongType, format!("field `{name}` must be {expected}, found {kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::decode::json;

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
