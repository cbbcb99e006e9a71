//! ArcSight Common Event Format (CEF:0) lines, one per event (`docs/siem/cef.md`), mapped so that
//! Microsoft Sentinel's CEF connector fills `CommonSecurityLog` columns.
//!
//! The Kafka value is the bare line (starting at `CEF:`, no syslog prefix, no newline). Header
//! fields and extension values are escaped differently (see [`super::escape`]); every value is
//! first cut to the dictionary's length on a character boundary. Extension keys come in one fixed
//! order, `msg` always last.

use serde::{Deserialize, Serialize};

use super::escape::{capitalized, cef_extension, cef_header, custom_key, extra_value_text, truncate_utf8, write_i64, write_parts};
use super::{message_parts, outcome, Encoder, Product, Shared};
use crate::model::{Decision, EnrichedEvent};

/// Header lengths: vendor, product, version, device event class id, name.
const VENDOR_MAX: usize = 63;
const PRODUCT_MAX: usize = 63;
const VERSION_MAX: usize = 31;
const CLASS_ID_MAX: usize = 1023;
const NAME_MAX: usize = 512;
/// Extension lengths from the CEF dictionary.
const ACT_MAX: usize = 63;
const OUTCOME_MAX: usize = 63;
const STRING_MAX: usize = 1023;
const CUSTOM_STRING_MAX: usize = 4000;
const EXTERNAL_ID_MAX: usize = 40;

/// Every extension key the encoder writes itself; an extra field never takes one of these names.
pub const FIXED_KEYS: [&str; 23] = [
    "rt",
    "act",
    "outcome",
    "suser",
    "suid",
    "sourceServiceName",
    "cat",
    "dhost",
    "destinationServiceName",
    "cs1Label",
    "cs1",
    "cs2Label",
    "cs2",
    "cs3Label",
    "cs3",
    "cs4Label",
    "cs4",
    "cs5Label",
    "cs5",
    "externalId",
    "reason",
    "msg",
    "cs6",
];

/// Settings of the CEF encoder (`[siem.cef]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CefConfig {
    /// Write extra input fields as custom extension keys (`<prefix><Name>`), which Sentinel keeps
    /// in `AdditionalExtensions`. Default true.
    pub extra_fields: bool,
    /// Prefix of those keys: ASCII letters and digits, starting with a letter. Unset: the letters
    /// and digits of `siem.product.vendor` and `siem.product.name` (`AcmeRuntimeGuard`), CEF's
    /// `VendorProductKeyName` convention.
    pub custom_key_prefix: Option<String>,
}

impl Default for CefConfig {
    fn default() -> Self {
        CefConfig { extra_fields: true, custom_key_prefix: None }
    }
}

/// Whether `prefix` can start a custom key: ASCII letters and digits, starting with a letter.
pub(crate) fn valid_key_prefix(prefix: &str) -> bool {
    prefix.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) && prefix.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The default custom key prefix: the ASCII letters and digits of vendor and product name.
pub(crate) fn default_key_prefix(product: &Product) -> String {
    let prefix: String = product.vendor.chars().chain(product.name.chars()).filter(char::is_ascii_alphanumeric).collect();
    if valid_key_prefix(&prefix) {
        prefix
    } else {
        format!("x{prefix}")
    }
}

impl CefConfig {
    /// Checks the custom key prefix; returns one message per problem.
    pub fn problems(&self) -> Vec<String> {
        match &self.custom_key_prefix {
            Some(prefix) if !valid_key_prefix(prefix) => {
                vec![format!("siem.cef.custom_key_prefix: {prefix:?} must be ASCII letters and digits, starting with a letter")]
            }
            _ => Vec::new(),
        }
    }

    /// Builds the encoder; the constant start of the header is written once here.
    pub fn build(&self, product: &Product) -> CefEncoder {
        let mut header = b"CEF:0|".to_vec();
        cef_header(&mut header, truncate_utf8(&product.vendor, VENDOR_MAX));
        header.push(b'|');
        cef_header(&mut header, truncate_utf8(&product.name, PRODUCT_MAX));
        header.push(b'|');
        cef_header(&mut header, truncate_utf8(&product.version, VERSION_MAX));
        header.push(b'|');
        let key_prefix = self.extra_fields.then(|| match &self.custom_key_prefix {
            // An invalid configured prefix is refused by validation; never write an unsafe key.
            Some(prefix) if valid_key_prefix(prefix) => prefix.clone(),
            _ => default_key_prefix(product),
        });
        CefEncoder { header, key_prefix }
    }
}

/// Encodes events as CEF lines.
#[derive(Debug, Clone)]
pub struct CefEncoder {
    /// `CEF:0|vendor|product|version|`, escaped and truncated.
    header: Vec<u8>,
    /// Prefix of extra-field keys; `None` when extra fields are not written.
    key_prefix: Option<String>,
}

/// Appends ` <key>=<value>` with `value` cut to `max` bytes and extension-escaped.
#[inline]
fn ext(out: &mut Vec<u8>, key: &[u8], value: &str, max: usize) {
    out.extend_from_slice(key);
    cef_extension(out, truncate_utf8(value, max));
}

impl CefEncoder {
    /// Writes the extra input fields as ` <prefix><Name>=<value>` pairs, in input order. A name
    /// that keeps no letters or digits, or whose key is already taken, is skipped.
    fn write_extras(&self, enriched: &EnrichedEvent, prefix: &str, out: &mut Vec<u8>) {
        let mut written: Vec<String> = Vec::new();
        for (name, value) in &enriched.event.extra {
            let Some(key) = custom_key(prefix, name) else { continue };
            if FIXED_KEYS.contains(&key.as_str()) || written.contains(&key) {
                continue;
            }
            out.push(b' ');
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            cef_extension(out, truncate_utf8(&extra_value_text(value), STRING_MAX));
            written.push(key);
        }
    }
}

impl Encoder for CefEncoder {
    fn name(&self) -> &'static str {
        "cef"
    }

    fn encode_shared(&self, enriched: &EnrichedEvent, _shared: &Shared, out: &mut Vec<u8>) {
        let e = &enriched.event;
        let mut buf = [0u8; 16];
        let (action_head, action_rest) = capitalized(&e.action, &mut buf);

        out.extend_from_slice(&self.header);
        write_parts(out, &[&e.action, ":", &e.result], CLASS_ID_MAX, cef_header);
        out.push(b'|');
        write_parts(out, &[action_head, action_rest, " ", &e.result], NAME_MAX, cef_header);
        out.push(b'|');
        write_i64(out, i64::from(enriched.severity.min(10)));
        out.push(b'|');

        out.extend_from_slice(b"rt=");
        write_i64(out, e.ts_ms);
        let act = match e.decision {
            Decision::Allowed => "allow",
            Decision::Denied => "deny",
            Decision::Other => &e.result,
        };
        ext(out, b" act=", act, ACT_MAX);
        ext(out, b" outcome=", outcome(e.decision), OUTCOME_MAX);
        ext(out, b" suser=", enriched.actor_id(), STRING_MAX);
        ext(out, b" suid=", &e.actor, STRING_MAX);
        if enriched.actor_kind() == "service" {
            ext(out, b" sourceServiceName=", enriched.actor_id(), STRING_MAX);
        }
        out.extend_from_slice(b" cat=");
        write_parts(out, &["/Runtime/", action_head, action_rest], STRING_MAX, cef_extension);
        if let Some(parts) = enriched.target_parts() {
            ext(out, b" dhost=", parts.cluster, STRING_MAX);
        }
        ext(out, b" destinationServiceName=", enriched.artifact_name(), STRING_MAX);
        ext(out, b" cs1Label=policy cs1=", &e.policy, CUSTOM_STRING_MAX);
        ext(out, b" cs2Label=artifact cs2=", &e.artifact, CUSTOM_STRING_MAX);
        ext(out, b" cs3Label=target cs3=", &e.target, CUSTOM_STRING_MAX);
        ext(out, b" cs4Label=policyMode cs4=", &e.mode, CUSTOM_STRING_MAX);
        ext(out, b" cs5Label=traceId cs5=", &e.trace, CUSTOM_STRING_MAX);
        ext(out, b" externalId=", &enriched.event_id, EXTERNAL_ID_MAX);
        if let Some(reason) = &e.reason {
            ext(out, b" reason=", reason, STRING_MAX);
        }
        if let Some(prefix) = &self.key_prefix {
            if !e.extra.is_empty() {
                self.write_extras(enriched, prefix, out);
            }
        }
        // `msg` is last. Receivers drop trailing whitespace of the last value, so the encoder drops
        // it first (escapes never end in whitespace), and the output says what is received.
        out.extend_from_slice(b" msg=");
        let start = out.len();
        write_parts(out, &message_parts(enriched), STRING_MAX, cef_extension);
        while out.len() > start && out.last().is_some_and(|b| *b <= b' ') {
            out.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::siem::message;
    use crate::siem::test_support::{arbitrary_event, encode_to_string, enriched, example_product, hostile_string, SEED_A, SEED_B};

    fn example_encoder() -> CefEncoder {
        CefConfig::default().build(&example_product())
    }

    /// A CEF reader written for the tests only, from the format's rules, sharing no code with the
    /// encoder: header fields split on unescaped `|` (with `\\` and `\|` unescaped), extension keys
    /// found at each unescaped `=` (the key is the run of non-spaces before it), values unescaped
    /// (`\\`, `\=`, `\n`, `\r`; any other escape is an error), the last value without trailing
    /// whitespace.
    struct Parsed {
        header: Vec<String>,
        extension: Vec<(String, String)>,
    }

    fn parse(line: &str) -> Result<Parsed, String> {
        if line.contains('\n') || line.contains('\r') {
            return Err("more than one line".into());
        }
        let rest = line.strip_prefix("CEF:").ok_or("no CEF: prefix")?;
        let mut header = Vec::new();
        let mut field = String::new();
        let mut chars = rest.char_indices();
        let mut extension_start = None;
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, c @ ('\\' | '|'))) => field.push(c),
                    other => return Err(format!("bad header escape {other:?}")),
                },
                '|' => {
                    header.push(std::mem::take(&mut field));
                    if header.len() == 7 {
                        extension_start = Some(at + 1);
                        break;
                    }
                }
                c => field.push(c),
            }
        }
        let extension = &rest[extension_start.ok_or("fewer than 7 header fields")?..];
        // Positions of unescaped `=`.
        let bytes = extension.as_bytes();
        let mut equals = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'=' => {
                    equals.push(i);
                    i += 1
                }
                _ => i += 1,
            }
        }
        let mut pairs = Vec::new();
        let mut key_starts = Vec::new();
        for &eq in &equals {
            let key_start = extension[..eq].rfind(' ').map_or(0, |space| space + 1);
            let key = &extension[key_start..eq];
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("bad key {key:?}"));
            }
            key_starts.push(key_start);
        }
        if equals.first().is_some_and(|_| key_starts[0] != 0) {
            return Err("text before the first key".into());
        }
        for (n, &eq) in equals.iter().enumerate() {
            let key = extension[key_starts[n]..eq].to_owned();
            let raw = match key_starts.get(n + 1) {
                Some(&next) => {
                    // One separating space before the next key.
                    if next == 0 || bytes[next - 1] != b' ' {
                        return Err("keys not separated by a space".into());
                    }
                    &extension[eq + 1..next - 1]
                }
                None => extension[eq + 1..].trim_end_matches(|c: char| c <= ' '),
            };
            let mut value = String::new();
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('\\') => value.push('\\'),
                        Some('=') => value.push('='),
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        other => return Err(format!("bad extension escape {other:?} in {raw:?}")),
                    }
                } else {
                    value.push(c);
                }
            }
            pairs.push((key, value));
        }
        Ok(Parsed { header, extension: pairs })
    }

    /// Cuts `text` to at most `max` bytes on a character boundary (the test's own version).
    fn cut(text: &str, max: usize) -> String {
        let mut out = String::new();
        for c in text.chars() {
            if out.len() + c.len_utf8() > max {
                break;
            }
            out.push(c);
        }
        out
    }

    fn capital(word: &str) -> String {
        let mut chars = word.chars();
        chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
    }

    fn header_text(text: &str, max: usize) -> String {
        cut(text, max).replace(['\r', '\n'], " ")
    }

    const SEED_A_LINE: &str = "CEF:0|Acme|RuntimeGuard|1.4.0|deploy:allowed|Deploy allowed|3|rt=1773480413120 act=allow outcome=success suser=j.patel@acme.com suid=user:j.patel@acme.com cat=/Runtime/Deploy dhost=cluster-prod-02 destinationServiceName=billing-service cs1Label=policy cs1=prod-billing-deploy-v3 cs2Label=artifact cs2=billing-service@v4.2.1 cs3Label=target cs3=aws:us-east-1:cluster-prod-02 cs4Label=policyMode cs4=fixed cs5Label=traceId cs5=tr-8f2c7a91-2b14-4e8e externalId=7c89f897-af79-5960-b7f4-294fd28cd35a msg=deploy of billing-service@v4.2.1 on aws:us-east-1:cluster-prod-02 by user:j.patel@acme.com allowed by policy prod-billing-deploy-v3";

    #[test]
    fn seed_a_is_the_worked_example_with_the_full_message() {
        assert_eq!(encode_to_string(&example_encoder(), &enriched(SEED_A)), SEED_A_LINE);
    }

    #[test]
    fn seed_b_escapes_the_equals_sign_and_keeps_the_pipe() {
        let line = encode_to_string(&example_encoder(), &enriched(SEED_B));
        assert!(line.starts_with("CEF:0|Acme|RuntimeGuard|1.4.0|execute:denied|Execute denied|6|rt=1773480425007 act=deny outcome=failure suser=fraud-detector suid=service:fraud-detector sourceServiceName=fraud-detector cat=/Runtime/Execute "), "{line}");
        assert!(
            line.contains(
                " externalId=51e0bab5-771a-5545-80ff-6d8086cb9e0e reason=risk score 0.91 > threshold\\=0.80 | outside change window msg="
            ),
            "{line}"
        );
        let parsed = parse(&line).unwrap();
        let reason = parsed.extension.iter().find(|(k, _)| k == "reason").unwrap();
        assert_eq!(reason.1, "risk score 0.91 > threshold=0.80 | outside change window");
    }

    #[test]
    fn format_notes_escaping_example() {
        // §9 item 1: `a|b=c\d` LF `e` in the header and in the extension.
        let input = "a|b=c\\d\ne";
        let mut event = enriched(SEED_B);
        event.event.action = input.into();
        event.event.reason = Some(input.into());
        let line = encode_to_string(&example_encoder(), &event);
        assert!(line.contains("|a\\|b=c\\\\d e:denied|A\\|b=c\\\\d e denied|"), "{line}");
        assert!(line.contains(" reason=a|b\\=c\\\\d\\ne "), "{line}");
    }

    #[test]
    fn a_forged_key_stays_inside_its_value() {
        let mut event = enriched(SEED_B);
        event.event.reason = Some("x act=allow suser=admin\r\nCEF:0|Evil|X|1|1|n|10|".into());
        let parsed = parse(&encode_to_string(&example_encoder(), &event)).unwrap();
        assert_eq!(parsed.extension.iter().filter(|(k, _)| k == "act").count(), 1);
        assert_eq!(parsed.extension.iter().find(|(k, _)| k == "act").unwrap().1, "deny");
        assert_eq!(parsed.extension.iter().find(|(k, _)| k == "reason").unwrap().1, event.event.reason.unwrap());
    }

    #[test]
    fn long_values_are_cut_on_character_boundaries() {
        let mut event = enriched(SEED_B);
        event.event.reason = Some("é".repeat(600)); // 1200 bytes
        event.event.policy = "=".repeat(5000);
        let line = encode_to_string(&example_encoder(), &event);
        let parsed = parse(&line).unwrap();
        let get = |key: &str| parsed.extension.iter().find(|(k, _)| k == key).unwrap().1.clone();
        assert_eq!(get("reason"), "é".repeat(511));
        assert_eq!(get("cs1"), "=".repeat(4000));
        assert_eq!(get("msg").len(), 1023);
    }

    #[test]
    fn extra_fields_become_prefixed_alphanumeric_keys() {
        let event = enriched(&SEED_A.replace("}", r#","ticket_id":"CHG=1","cost":3,"cs1":"x","ticket-id":"dup","__":"none"}"#));
        let line = encode_to_string(&example_encoder(), &event);
        assert!(line.contains(" AcmeRuntimeGuardTicketid=CHG\\=1 AcmeRuntimeGuardCost=3 AcmeRuntimeGuardCs1=x msg="), "{line}");
        let off = CefConfig { extra_fields: false, ..CefConfig::default() }.build(&example_product());
        assert!(!encode_to_string(&off, &event).contains("AcmeRuntimeGuard"));
        let custom = CefConfig { custom_key_prefix: Some("rg".into()), ..CefConfig::default() }.build(&example_product());
        assert!(encode_to_string(&custom, &event).contains(" rgTicketid=CHG\\=1 "));
        // A prefix can spell a fixed key together with an extra's name (`cs` + `1`): such an extra
        // is skipped, never written over the fixed key.
        let clash = CefConfig { custom_key_prefix: Some("cs".into()), ..CefConfig::default() }.build(&example_product());
        let event = enriched(&SEED_A.replace("}", r#","1":"forged"}"#));
        let parsed = parse(&encode_to_string(&clash, &event)).unwrap();
        assert_eq!(parsed.extension.iter().find(|(k, _)| k == "cs1").unwrap().1, "prod-billing-deploy-v3");
    }

    #[test]
    fn default_key_prefix_is_vendor_and_product_letters() {
        assert_eq!(default_key_prefix(&example_product()), "AcmeRuntimeGuard");
        let odd = Product { vendor: "4 Corp.".into(), name: "Rün-Guard".into(), ..example_product() };
        assert_eq!(default_key_prefix(&odd), "x4CorpRnGuard");
    }

    #[test]
    fn problems_name_the_key() {
        assert!(CefConfig::default().problems().is_empty());
        for bad in ["", "9lives", "a_b", "é"] {
            let problems = CefConfig { custom_key_prefix: Some(bad.into()), ..CefConfig::default() }.problems();
            assert!(problems.len() == 1 && problems[0].starts_with("siem.cef.custom_key_prefix:"), "{bad}: {problems:?}");
        }
    }

    #[test]
    fn header_fields_from_configuration_are_escaped_and_cut() {
        let product = Product {
            vendor: format!("A|c\\me{}", "v".repeat(100)),
            name: "Runtime\nGuard".into(),
            version: "1".repeat(40),
            source: "s".into(),
        };
        let line = encode_to_string(&CefConfig::default().build(&product), &enriched(SEED_A));
        let parsed = parse(&line).unwrap();
        assert_eq!(parsed.header[1], cut(&product.vendor, 63));
        assert_eq!(parsed.header[2], "Runtime Guard");
        assert_eq!(parsed.header[3], "1".repeat(31));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// One line; the independent reader finds exactly the expected keys, in order, and reads
        /// back every value as the documented truncation (and header line-break blanking) leaves it.
        #[test]
        fn every_line_reads_back(event in arbitrary_event(), vendor in hostile_string()) {
            let product = Product { vendor, ..example_product() };
            let config = CefConfig { custom_key_prefix: Some("AcmeRuntimeGuard".into()), ..CefConfig::default() };
            let line = encode_to_string(&config.build(&product), &event);
            let parsed = parse(&line).map_err(|error| TestCaseError::fail(format!("{error}: {line:?}")))?;
            let e = &event.event;

            let severity = event.severity.min(10).to_string();
            let expected_header = [
                "0".to_owned(),
                header_text(&product.vendor, 63),
                "RuntimeGuard".to_owned(),
                "1.4.0".to_owned(),
                header_text(&format!("{}:{}", e.action, e.result), 1023),
                header_text(&format!("{} {}", capital(&e.action), e.result), 512),
                severity,
            ];
            prop_assert_eq!(&parsed.header, &expected_header);

            let act = match e.result.as_str() { "allowed" => "allow", "denied" => "deny", other => other };
            let status = match e.result.as_str() { "allowed" => "success", "denied" => "failure", _ => "unknown" };
            let mut expected: Vec<(String, String)> = vec![
                ("rt".into(), e.ts_ms.to_string()),
                ("act".into(), cut(act, 63)),
                ("outcome".into(), status.into()),
                ("suser".into(), cut(event.actor_id(), 1023)),
                ("suid".into(), cut(&e.actor, 1023)),
            ];
            if event.actor_kind() == "service" {
                expected.push(("sourceServiceName".into(), cut(event.actor_id(), 1023)));
            }
            expected.push(("cat".into(), cut(&format!("/Runtime/{}", capital(&e.action)), 1023)));
            if let Some(parts) = event.target_parts() {
                expected.push(("dhost".into(), cut(parts.cluster, 1023)));
            }
            expected.push(("destinationServiceName".into(), cut(event.artifact_name(), 1023)));
            for (n, (label, value)) in
                [("policy", &e.policy), ("artifact", &e.artifact), ("target", &e.target), ("policyMode", &e.mode), ("traceId", &e.trace)]
                    .into_iter()
                    .enumerate()
            {
                expected.push((format!("cs{}Label", n + 1), label.into()));
                expected.push((format!("cs{}", n + 1), cut(value, 4000)));
            }
            expected.push(("externalId".into(), cut(&event.event_id, 40)));
            if let Some(reason) = &e.reason {
                expected.push(("reason".into(), cut(reason, 1023)));
            }
            let mut keys: Vec<String> = Vec::new();
            for (name, value) in &e.extra {
                let letters: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
                let mut letters = letters.chars();
                let Some(first) = letters.next() else { continue };
                let key = format!("AcmeRuntimeGuard{}{}", first.to_ascii_uppercase(), letters.as_str());
                if keys.contains(&key) {
                    continue;
                }
                keys.push(key.clone());
                let text = match value { serde_json::Value::String(s) => s.clone(), other => other.to_string() };
                expected.push((key, cut(&text, 1023)));
            }
            // Trailing whitespace and controls are dropped, except CR and LF, which end as `\r`/`\n`.
            let msg = cut(&message(&event), 1023);
            expected.push(("msg".into(), msg.trim_end_matches(|c: char| c <= ' ' && c != '\n' && c != '\r').to_owned()));
            prop_assert_eq!(parsed.extension, expected);
        }
    }
}
