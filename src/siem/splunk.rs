//! Splunk HTTP Event Collector envelopes, one JSON object per event (`docs/siem/splunk.md`),
//! pre-formatted for Splunk Connect for Kafka (`splunk.hec.json.event.formatted=true`).
//!
//! The connector reads the value into a class that knows only `time`, `host`, `source`,
//! `sourcetype`, `index`, `event` and `fields` (a string-to-string map); anything else makes it
//! silently wrap the whole envelope as the event. So the envelope has exactly those keys, `fields`
//! holds only strings, and `time` is epoch seconds printed from integers (`1773480413.120`).
//! The JSON is written by hand, straight into the output buffer; values go through serde_json's
//! string escaper.

use serde::{Deserialize, Serialize};

use super::escape::{json_string, write_epoch_seconds};
use super::{actor_type, outcome, Encoder, Product, Shared};
use crate::model::EnrichedEvent;

/// Settings of the Splunk encoder (`[siem.splunk]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplunkConfig {
    /// Envelope `index`. Unset: no `index` key, so HEC uses the token's default index. When set it
    /// must be on the token's list of allowed indexes, or HEC refuses the batch.
    pub index: Option<String>,
    /// Envelope `sourcetype`. Unset: `<vendor>:<product>:decision` from `[siem.product]`, in
    /// lowercase with everything but letters, digits, `_`, `-` and `.` removed
    /// (`acme:runtimeguard:decision`).
    pub sourcetype: Option<String>,
    /// Envelope `source`. Unset: `siem.product.source`.
    pub source: Option<String>,
    /// Envelope `host` for every event. Unset: the cluster of a `provider:region:cluster` target,
    /// else the whole target.
    pub host: Option<String>,
    /// Write the index-time `fields` (`audit_result`, `audit_action`, `audit_policy`,
    /// `audit_actor_type`) for fast `tstats`. Default true.
    pub indexed_fields: bool,
}

impl Default for SplunkConfig {
    fn default() -> Self {
        SplunkConfig { index: None, sourcetype: None, source: None, host: None, indexed_fields: true }
    }
}

impl SplunkConfig {
    /// Checks the envelope settings; returns one message per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(index) = &self.index {
            let valid_chars = index.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
            let valid_start = index.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !valid_chars || !valid_start || index.contains("kvstore") {
                out.push(format!(
                    "siem.splunk.index: {index:?} is not a Splunk index name (lowercase letters, digits, `_` and `-`, \
                     starting with a letter or digit, without \"kvstore\")"
                ));
            }
        }
        for (key, value) in [("sourcetype", &self.sourcetype), ("source", &self.source), ("host", &self.host)] {
            if let Some(value) = value {
                if value.trim().is_empty() || value.chars().any(char::is_control) {
                    out.push(format!("siem.splunk.{key}: {value:?} must be non-blank and free of control characters"));
                }
            }
        }
        out
    }

    /// Builds the encoder; the constant part of the envelope is serialized once here.
    pub fn build(&self, product: &Product) -> SplunkEncoder {
        let sourcetype = self.sourcetype.clone().unwrap_or_else(|| default_sourcetype(product));
        let source = self.source.as_deref().unwrap_or(&product.source);
        let mut after_host = Vec::new();
        after_host.extend_from_slice(b",\"source\":");
        json_string(&mut after_host, source);
        after_host.extend_from_slice(b",\"sourcetype\":");
        json_string(&mut after_host, &sourcetype);
        if let Some(index) = &self.index {
            after_host.extend_from_slice(b",\"index\":");
            json_string(&mut after_host, index);
        }
        after_host.extend_from_slice(b",\"event\":{\"ts\":");
        let host = self.host.as_deref().map(|host| {
            let mut quoted = Vec::new();
            json_string(&mut quoted, host);
            quoted
        });
        let mut vendor_product = Vec::new();
        json_string(&mut vendor_product, &format!("{} {}", product.vendor, product.name));
        SplunkEncoder { after_host, host, vendor_product, indexed_fields: self.indexed_fields }
    }
}

/// `<vendor>:<product>:decision`, lowercase, keeping letters, digits, `_`, `-` and `.`.
fn default_sourcetype(product: &Product) -> String {
    let clean = |text: &str| -> String {
        text.chars().filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.')).flat_map(char::to_lowercase).collect()
    };
    format!("{}:{}:decision", clean(&product.vendor), clean(&product.name))
}

/// The Splunk CIM severity word for a 0–10 severity, in the bands of CEF's header severity:
/// 0–3 `informational` (CEF "Low"), 4–6 `medium`, 7–8 `high`, 9–10 and above `critical`.
pub fn cim_severity(severity: u8) -> &'static str {
    match severity {
        0..=3 => "informational",
        4..=6 => "medium",
        7..=8 => "high",
        _ => "critical",
    }
}

/// Encodes events as pre-formatted HEC envelopes.
#[derive(Debug, Clone)]
pub struct SplunkEncoder {
    /// `,"source":…,"sourcetype":…[,"index":…],"event":{"ts":`, serialized once.
    after_host: Vec<u8>,
    /// The configured host as a JSON string, if any.
    host: Option<Vec<u8>>,
    /// `"<vendor> <product>"` as a JSON string.
    vendor_product: Vec<u8>,
    indexed_fields: bool,
}

/// Appends `,"<key>":<value>` where `key` is given with its comma, quotes and colon.
#[inline]
fn field(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    json_string(out, value);
}

impl Encoder for SplunkEncoder {
    fn name(&self) -> &'static str {
        "splunk"
    }

    fn encode_shared(&self, enriched: &EnrichedEvent, _shared: &Shared, out: &mut Vec<u8>) {
        let e = &enriched.event;
        let parts = enriched.target_parts();
        let dest = parts.map_or(e.target.as_str(), |t| t.cluster);
        out.extend_from_slice(b"{\"time\":");
        write_epoch_seconds(out, e.ts_ms);
        out.extend_from_slice(b",\"host\":");
        match &self.host {
            Some(host) => out.extend_from_slice(host),
            None => json_string(out, dest),
        }
        out.extend_from_slice(&self.after_host);
        json_string(out, &e.ts);
        field(out, b",\"event_id\":", &enriched.event_id);
        field(out, b",\"actor\":", &e.actor);
        field(out, b",\"actor_type\":", actor_type(enriched));
        field(out, b",\"user\":", enriched.actor_id());
        field(out, b",\"action\":", &e.action);
        field(out, b",\"result\":", &e.result);
        field(out, b",\"status\":", outcome(e.decision));
        if let Some(reason) = &e.reason {
            field(out, b",\"reason\":", reason);
        }
        field(out, b",\"artifact\":", &e.artifact);
        field(out, b",\"artifact_name\":", enriched.artifact_name());
        if let Some(version) = enriched.artifact_version() {
            field(out, b",\"artifact_version\":", version);
        }
        field(out, b",\"policy\":", &e.policy);
        field(out, b",\"mode\":", &e.mode);
        field(out, b",\"target\":", &e.target);
        if let Some(t) = parts {
            field(out, b",\"cloud_provider\":", t.provider);
            field(out, b",\"cloud_region\":", t.region);
        }
        field(out, b",\"dest\":", dest);
        field(out, b",\"trace\":", &e.trace);
        field(out, b",\"severity\":", cim_severity(enriched.severity));
        out.extend_from_slice(b",\"vendor_product\":");
        out.extend_from_slice(&self.vendor_product);
        if !e.extra.is_empty() {
            out.extend_from_slice(b",\"extra\":");
            // Serializing a JSON map into a Vec cannot fail.
            crate::json_out::write(out, &e.extra);
        }
        out.push(b'}');
        if self.indexed_fields {
            field(out, b",\"fields\":{\"audit_result\":", &e.result);
            field(out, b",\"audit_action\":", &e.action);
            field(out, b",\"audit_policy\":", &e.policy);
            field(out, b",\"audit_actor_type\":", actor_type(enriched));
            out.push(b'}');
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::siem::test_support::{arbitrary_event, encode_to_string, enriched, example_product, SEED_A, SEED_B};

    fn example_encoder() -> SplunkEncoder {
        SplunkConfig { index: Some("security".into()), ..SplunkConfig::default() }.build(&example_product())
    }

    #[test]
    fn seed_a_is_the_worked_example() {
        let text = encode_to_string(&example_encoder(), &enriched(SEED_A));
        assert!(text.starts_with(r#"{"time":1773480413.120,"host":"cluster-prod-02","source":"runtime-guard","#), "{text}");
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["sourcetype"], "acme:runtimeguard:decision");
        assert_eq!(value["event"]["severity"], "informational");
        assert_eq!(value["event"]["user"], "j.patel@acme.com");
        assert_eq!(value["event"].get("reason"), None);
        assert_eq!(
            value["fields"],
            json!({"audit_result":"allowed","audit_action":"deploy","audit_policy":"prod-billing-deploy-v3","audit_actor_type":"user"})
        );
    }

    #[test]
    fn seed_b_carries_the_reason_and_a_zero_padded_time() {
        let text = encode_to_string(&example_encoder(), &enriched(SEED_B));
        assert!(text.starts_with(r#"{"time":1773480425.007,"#), "{text}");
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["event"]["reason"], "risk score 0.91 > threshold=0.80 | outside change window");
        assert_eq!(value["event"]["status"], "failure");
        assert_eq!(value["event"]["severity"], "medium");
    }

    #[test]
    fn configuration_overrides_the_envelope() {
        let config = SplunkConfig {
            index: None,
            sourcetype: Some("st".into()),
            source: Some("src".into()),
            host: Some("gw-1".into()),
            indexed_fields: false,
        };
        let text = encode_to_string(&config.build(&example_product()), &enriched(SEED_A));
        let value: Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["time", "host", "source", "sourcetype", "event"]);
        assert_eq!((&value["host"], &value["source"], &value["sourcetype"]), (&json!("gw-1"), &json!("src"), &json!("st")));
    }

    #[test]
    fn host_falls_back_to_the_raw_target() {
        let event = enriched(&SEED_A.replace("aws:us-east-1:cluster-prod-02", "onprem:dc1"));
        let value: Value = serde_json::from_str(&encode_to_string(&example_encoder(), &event)).unwrap();
        assert_eq!(value["host"], "onprem:dc1");
        assert_eq!(value["event"]["dest"], "onprem:dc1");
        assert_eq!(value["event"].get("cloud_region"), None);
    }

    #[test]
    fn problems_name_the_key() {
        assert!(SplunkConfig::default().problems().is_empty());
        let bad = SplunkConfig {
            index: Some("Security".into()),
            host: Some("a\nb".into()),
            sourcetype: Some(" ".into()),
            ..SplunkConfig::default()
        };
        let problems = bad.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("siem.splunk.index:"));
        assert!(problems[1].starts_with("siem.splunk.sourcetype:"));
        assert!(problems[2].starts_with("siem.splunk.host:"));
        for index in ["_internal", "-x", "my_kvstore", ""] {
            assert_eq!(SplunkConfig { index: Some(index.into()), ..SplunkConfig::default() }.problems().len(), 1, "{index}");
        }
    }

    #[test]
    fn default_sourcetype_is_cleaned() {
        let product = Product { vendor: "Acme Corp.".into(), name: "Runtime Guard!".into(), ..example_product() };
        assert_eq!(default_sourcetype(&product), "acmecorp.:runtimeguard:decision");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Whatever the field values, the output is one line of valid JSON with exactly the
        /// envelope keys, string-only `fields`, a time equal to the event's milliseconds, and every
        /// value reading back as it went in.
        #[test]
        fn envelope_is_valid_json_that_round_trips(event in arbitrary_event(), host in proptest::option::of(".{0,8}")) {
            let config = SplunkConfig { index: Some("security".into()), host: host.clone(), ..SplunkConfig::default() };
            let text = encode_to_string(&config.build(&example_product()), &event);
            prop_assert!(!text.contains('\n') && !text.contains('\r'));
            let value: Value = serde_json::from_str(&text).unwrap();
            let envelope = value.as_object().unwrap();
            let keys: Vec<&str> = envelope.keys().map(String::as_str).collect();
            prop_assert_eq!(keys, ["time", "host", "source", "sourcetype", "index", "event", "fields"]);
            // The time as written, not as an f64: seconds, a dot, three digits.
            let time_text = &text["{\"time\":".len()..text.find(",\"host\"").unwrap()];
            let (seconds, millis) = time_text.trim_start_matches('-').split_once('.').unwrap();
            prop_assert_eq!(millis.len(), 3);
            let magnitude = seconds.parse::<i128>().unwrap() * 1000 + millis.parse::<i128>().unwrap();
            let sign = if time_text.starts_with('-') { -1 } else { 1 };
            prop_assert_eq!(sign * magnitude, event.event.ts_ms as i128);

            let e = &event.event;
            let expected_host = host.as_deref().unwrap_or(event.target_parts().map_or(e.target.as_str(), |t| t.cluster));
            prop_assert_eq!(&envelope["host"], expected_host);
            let body = envelope["event"].as_object().unwrap();
            for (key, expected) in [
                ("ts", e.ts.as_str()), ("event_id", &event.event_id), ("actor", &e.actor), ("user", event.actor_id()),
                ("action", &e.action), ("result", &e.result), ("artifact", &e.artifact),
                ("artifact_name", event.artifact_name()), ("policy", &e.policy), ("mode", &e.mode),
                ("target", &e.target), ("trace", &e.trace),
            ] {
                prop_assert_eq!(&body[key], expected, "{}", key);
            }
            prop_assert_eq!(body.get("reason").and_then(Value::as_str), e.reason.as_deref());
            prop_assert_eq!(body.get("artifact_version").and_then(Value::as_str), event.artifact_version());
            let expected_extra = (!e.extra.is_empty()).then(|| Value::Object(e.extra.clone()));
            prop_assert_eq!(body.get("extra"), expected_extra.as_ref());
            let fields = envelope["fields"].as_object().unwrap();
            prop_assert!(fields.keys().all(|k| k.starts_with("audit_")));
            prop_assert!(fields.values().all(Value::is_string));
            prop_assert_eq!(&fields["audit_policy"], e.policy.as_str());
        }
    }
}
