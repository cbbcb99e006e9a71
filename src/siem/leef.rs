//! IBM QRadar LEEF 2.0 lines, one per event (`docs/siem/leef.md`).
//!
//! `LEEF:2.0|Vendor|Product|Version|EventID|x09|key=value<TAB>key=value…`, no syslog prefix, no
//! trailing delimiter. The attribute delimiter is TAB, QRadar's default, which its custom property
//! expressions (`key=([^\t]+)`) assume. LEEF has no escaping: values lose TAB, CR and LF (each
//! becomes a space), the EventID keeps only `[A-Za-z0-9._:-]`, and the header fields from
//! configuration may not contain `|` or control characters.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::cef::{default_key_prefix, valid_key_prefix};
use super::escape::{custom_key, extra_value_text, leef_event_id, leef_header, leef_value, truncate_utf8, write_i64};
use super::{Encoder, Product, Shared};
use crate::model::EnrichedEvent;

/// EventID, `usrName` and `accountName` are at most 255 characters (cut here at 255 bytes).
const EVENT_ID_MAX: usize = 255;
const NAME_MAX: usize = 255;

/// `devTime` epoch milliseconds need no `devTimeFormat` only with exactly 13 digits.
const THIRTEEN_DIGITS: std::ops::RangeInclusive<i64> = 1_000_000_000_000..=9_999_999_999_999;

/// The Java `SimpleDateFormat` pattern of the RFC 3339 `devTime` written outside that range.
pub const DEV_TIME_FORMAT: &str = "yyyy-MM-dd'T'HH:mm:ss.SSSX";

/// Every attribute key the encoder writes itself; an extra field never takes one of these names.
pub const FIXED_KEYS: [&str; 18] = [
    "devTime",
    "devTimeFormat",
    "cat",
    "sev",
    "usrName",
    "accountName",
    "policy",
    "resource",
    "decision",
    "reason",
    "artifact",
    "target",
    "cloudRegion",
    "policyMode",
    "traceId",
    "eventUid",
    "src",
    "dst",
];

/// Settings of the LEEF encoder (`[siem.leef]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeefConfig {
    /// Write extra input fields as custom attributes (`<prefix><Name>`); QRadar needs a custom
    /// event property per key to show them. Extras `src_ip` / `dst_ip` holding an IP address also
    /// fill the normalized `src` / `dst`. Default true.
    pub extra_fields: bool,
    /// Prefix of those keys: ASCII letters and digits, starting with a letter. Unset: the letters
    /// and digits of `siem.product.vendor` and `siem.product.name` (`AcmeRuntimeGuard`).
    pub custom_key_prefix: Option<String>,
}

impl Default for LeefConfig {
    fn default() -> Self {
        LeefConfig { extra_fields: true, custom_key_prefix: None }
    }
}

impl LeefConfig {
    /// Checks the custom key prefix; returns one message per problem.
    pub fn problems(&self) -> Vec<String> {
        match &self.custom_key_prefix {
            Some(prefix) if !valid_key_prefix(prefix) => {
                vec![format!("siem.leef.custom_key_prefix: {prefix:?} must be ASCII letters and digits, starting with a letter")]
            }
            _ => Vec::new(),
        }
    }

    /// Checks the product identity for the LEEF header, which cannot escape anything: vendor,
    /// name and version must be non-empty and free of `|` and control characters. Only relevant
    /// when the `leef` format is enabled.
    pub fn product_problems(product: &Product) -> Vec<String> {
        [("vendor", &product.vendor), ("name", &product.name), ("version", &product.version)]
            .into_iter()
            .filter(|(_, value)| value.is_empty() || value.contains('|') || value.chars().any(char::is_control))
            .map(|(key, value)| format!("siem.product.{key}: {value:?} must be non-empty, without `|` or control characters (LEEF header)"))
            .collect()
    }

    /// Builds the encoder; the constant start of the header is written once here.
    pub fn build(&self, product: &Product) -> LeefEncoder {
        let mut header = b"LEEF:2.0|".to_vec();
        for part in [&product.vendor, &product.name, &product.version] {
            leef_header(&mut header, part);
            header.push(b'|');
        }
        let key_prefix = self.extra_fields.then(|| match &self.custom_key_prefix {
            Some(prefix) if valid_key_prefix(prefix) => prefix.clone(),
            _ => default_key_prefix(product),
        });
        LeefEncoder { header, key_prefix }
    }
}

/// Encodes events as LEEF 2.0 lines.
#[derive(Debug, Clone)]
pub struct LeefEncoder {
    /// `LEEF:2.0|vendor|product|version|`, sanitised.
    header: Vec<u8>,
    /// Prefix of extra-field keys; `None` when extra fields are not written.
    key_prefix: Option<String>,
}

/// Appends `<TAB><key>=<value>`, `key` given with its TAB and `=`.
#[inline]
fn attr(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    leef_value(out, value);
}

impl LeefEncoder {
    /// Writes `src`/`dst` from IP-valued `src_ip`/`dst_ip` extras, then every extra as
    /// `<prefix><Name>`, in input order. A name that keeps no letters or digits, or whose key is
    /// already taken, is skipped.
    fn write_extras(&self, enriched: &EnrichedEvent, prefix: &str, out: &mut Vec<u8>) {
        let extra = &enriched.event.extra;
        for (name, key) in [("src_ip", b"\tsrc=" as &[u8]), ("dst_ip", b"\tdst=")] {
            if let Some(ip) = extra.get(name).and_then(|v| v.as_str()).and_then(|s| s.parse::<IpAddr>().ok()) {
                out.extend_from_slice(key);
                out.extend_from_slice(ip.to_string().as_bytes());
            }
        }
        let mut written: Vec<String> = Vec::new();
        for (name, value) in extra {
            let Some(key) = custom_key(prefix, name) else { continue };
            if FIXED_KEYS.contains(&key.as_str()) || written.contains(&key) {
                continue;
            }
            out.push(b'\t');
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            leef_value(out, &extra_value_text(value));
            written.push(key);
        }
    }
}

impl Encoder for LeefEncoder {
    fn name(&self) -> &'static str {
        "leef"
    }

    fn encode_shared(&self, enriched: &EnrichedEvent, _shared: &Shared, out: &mut Vec<u8>) {
        let e = &enriched.event;
        out.extend_from_slice(&self.header);
        leef_event_id(out, truncate_utf8(&e.action, EVENT_ID_MAX));
        out.extend_from_slice(b"|x09|devTime=");
        if THIRTEEN_DIGITS.contains(&e.ts_ms) {
            write_i64(out, e.ts_ms);
        } else {
            // Before 2001-09-09 or after 2286 the milliseconds have another digit count, which
            // QRadar would misread (10 digits means seconds): send the text form with its pattern.
            leef_value(out, &e.ts);
            out.extend_from_slice(b"\tdevTimeFormat=");
            out.extend_from_slice(DEV_TIME_FORMAT.as_bytes());
        }
        attr(out, b"\tcat=", &e.result);
        out.extend_from_slice(b"\tsev=");
        write_i64(out, i64::from(enriched.severity.clamp(1, 10)));
        attr(out, b"\tusrName=", truncate_utf8(enriched.actor_id(), NAME_MAX));
        attr(out, b"\taccountName=", truncate_utf8(&e.actor, NAME_MAX));
        attr(out, b"\tpolicy=", &e.policy);
        let target = enriched.target_parts();
        if let Some(parts) = target {
            attr(out, b"\tresource=", parts.cluster);
        }
        attr(out, b"\tdecision=", &e.result);
        if let Some(reason) = &e.reason {
            attr(out, b"\treason=", reason);
        }
        attr(out, b"\tartifact=", &e.artifact);
        attr(out, b"\ttarget=", &e.target);
        if let Some(parts) = target {
            attr(out, b"\tcloudRegion=", parts.region);
        }
        attr(out, b"\tpolicyMode=", &e.mode);
        attr(out, b"\ttraceId=", &e.trace);
        attr(out, b"\teventUid=", &enriched.event_id);
        if let Some(prefix) = &self.key_prefix {
            if !e.extra.is_empty() {
                self.write_extras(enriched, prefix, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::siem::test_support::{arbitrary_event, encode_to_string, enriched, example_product, SEED_A, SEED_B};

    fn example_encoder() -> LeefEncoder {
        LeefConfig::default().build(&example_product())
    }

    /// A LEEF reader written for the tests only, following the format's rules and sharing no
    /// code with the encoder: the header is the first six `|`-separated fields, the delimiter is
    /// resolved from its hex (`x`/`0x`) or literal form, attributes split on the delimiter and
    /// each pair on its first `=`.
    /// Header fields and attribute pairs, in order.
    type Parsed = (Vec<String>, Vec<(String, String)>);

    fn parse(line: &str) -> Result<Parsed, String> {
        if line.contains('\n') || line.contains('\r') {
            return Err("more than one line".into());
        }
        let mut fields = line.splitn(7, '|');
        let header: Vec<String> = fields.by_ref().take(6).map(str::to_owned).collect();
        let body = fields.next().ok_or("fewer than 6 header fields")?;
        if header[0] != "LEEF:2.0" {
            return Err(format!("version {:?}", header[0]));
        }
        let spec = &header[5];
        let delimiter = match spec.strip_prefix("0x").or_else(|| spec.strip_prefix('x')) {
            Some(hex) if (1..=4).contains(&hex.len()) => {
                char::from_u32(u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?).ok_or("bad delimiter")?
            }
            _ if spec.chars().count() == 1 => spec.chars().next().unwrap(),
            _ => return Err(format!("bad delimiter {spec:?}")),
        };
        let mut pairs = Vec::new();
        for pair in body.split(delimiter) {
            let (key, value) = pair.split_once('=').ok_or_else(|| format!("pair without `=`: {pair:?}"))?;
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("bad key {key:?}"));
            }
            if pairs.iter().any(|(k, _): &(String, String)| k == key) {
                return Err(format!("repeated key {key}"));
            }
            pairs.push((key.to_owned(), value.to_owned()));
        }
        Ok((header, pairs))
    }

    fn clean(text: &str) -> String {
        text.replace(['\t', '\r', '\n'], " ")
    }

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

    const SEED_A_LINE: &str = "LEEF:2.0|Acme|RuntimeGuard|1.4.0|deploy|x09|devTime=1773480413120\tcat=allowed\tsev=3\tusrName=j.patel@acme.com\taccountName=user:j.patel@acme.com\tpolicy=prod-billing-deploy-v3\tresource=cluster-prod-02\tdecision=allowed\tartifact=billing-service@v4.2.1\ttarget=aws:us-east-1:cluster-prod-02\tcloudRegion=us-east-1\tpolicyMode=fixed\ttraceId=tr-8f2c7a91-2b14-4e8e\teventUid=7c89f897-af79-5960-b7f4-294fd28cd35a";
    const SEED_B_LINE: &str = "LEEF:2.0|Acme|RuntimeGuard|1.4.0|execute|x09|devTime=1773480425007\tcat=denied\tsev=6\tusrName=fraud-detector\taccountName=service:fraud-detector\tpolicy=prod-billing-deploy-v3\tresource=cluster-prod-02\tdecision=denied\treason=risk score 0.91 > threshold=0.80 | outside change window\tartifact=billing-service@v4.2.1\ttarget=aws:us-east-1:cluster-prod-02\tcloudRegion=us-east-1\tpolicyMode=adaptive\ttraceId=tr-8f2c7a91-2b14-4e8e\teventUid=51e0bab5-771a-5545-80ff-6d8086cb9e0e";

    #[test]
    fn seeds_are_the_worked_examples() {
        assert_eq!(encode_to_string(&example_encoder(), &enriched(SEED_A)), SEED_A_LINE);
        assert_eq!(encode_to_string(&example_encoder(), &enriched(SEED_B)), SEED_B_LINE);
    }

    #[test]
    fn format_notes_sanitising_example() {
        // §9 item 1: `a|b=c\d` LF `e` as a value becomes `a|b=c\d e`.
        let mut event = enriched(SEED_B);
        event.event.reason = Some("a|b=c\\d\ne".into());
        assert!(encode_to_string(&example_encoder(), &event).contains("\treason=a|b=c\\d e\t"));
    }

    #[test]
    fn an_injected_attribute_or_line_stays_inside_its_value() {
        let mut event = enriched(SEED_B);
        event.event.reason = Some("x\tsev=1\tusrName=root\nLEEF:2.0|Evil|X|1|e|x09|sev=10".into());
        event.event.action = "run|x09|sev=1".into();
        let (header, pairs) = parse(&encode_to_string(&example_encoder(), &event)).unwrap();
        assert_eq!(header[4], "run_x09_sev_1");
        assert_eq!(pairs.iter().find(|(k, _)| k == "sev").unwrap().1, "6");
        assert_eq!(pairs.iter().find(|(k, _)| k == "reason").unwrap().1, "x sev=1 usrName=root LEEF:2.0|Evil|X|1|e|x09|sev=10");
    }

    #[test]
    fn times_outside_thirteen_digits_carry_their_format() {
        let event = enriched(&SEED_A.replace("2026-03-14T09:26:53.120Z", "1999-12-31T23:59:59.999Z"));
        let (_, pairs) = parse(&encode_to_string(&example_encoder(), &event)).unwrap();
        assert_eq!(pairs[0], ("devTime".to_owned(), "1999-12-31T23:59:59.999Z".to_owned()));
        assert_eq!(pairs[1], ("devTimeFormat".to_owned(), DEV_TIME_FORMAT.to_owned()));
    }

    #[test]
    fn severity_is_kept_in_one_to_ten() {
        let mut event = enriched(SEED_A);
        for (given, written) in [(0, "1"), (1, "1"), (10, "10"), (200, "10")] {
            event.severity = given;
            let (_, pairs) = parse(&encode_to_string(&example_encoder(), &event)).unwrap();
            assert_eq!(pairs.iter().find(|(k, _)| k == "sev").unwrap().1, written);
        }
    }

    #[test]
    fn extras_become_custom_attributes_and_ips_fill_src_and_dst() {
        let event = enriched(&SEED_A.replace("}", r#","src_ip":"10.0.0.7","dst_ip":"not an ip","ticket":"CHG\t1","n":3}"#));
        let line = encode_to_string(&example_encoder(), &event);
        assert!(line.ends_with("\tsrc=10.0.0.7\tAcmeRuntimeGuardSrcip=10.0.0.7\tAcmeRuntimeGuardDstip=not an ip\tAcmeRuntimeGuardTicket=CHG 1\tAcmeRuntimeGuardN=3"), "{line}");
        let off = LeefConfig { extra_fields: false, ..LeefConfig::default() }.build(&example_product());
        assert!(encode_to_string(&off, &event).ends_with("\teventUid=7c89f897-af79-5960-b7f4-294fd28cd35a"));
    }

    #[test]
    fn product_problems_reject_pipes_and_controls() {
        assert!(LeefConfig::product_problems(&example_product()).is_empty());
        let bad = Product { vendor: "A|B".into(), name: "".into(), version: "1\n".into(), ..example_product() };
        let problems = LeefConfig::product_problems(&bad);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("siem.product.vendor:"));
        // Unvalidated, the encoder still keeps the header intact.
        let (header, _) = parse(&encode_to_string(&LeefConfig::default().build(&bad), &enriched(SEED_A))).unwrap();
        assert_eq!(header[1..4], ["A_B", "", "1_"]);
        assert!(LeefConfig { custom_key_prefix: Some("a-b".into()), ..LeefConfig::default() }.problems().len() == 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// One line; the independent reader finds exactly the expected attributes, in order, each
        /// value as the documented sanitising and truncation leave it.
        #[test]
        fn every_line_reads_back(event in arbitrary_event()) {
            let line = encode_to_string(&example_encoder(), &event);
            let (header, pairs) = parse(&line).map_err(|error| TestCaseError::fail(format!("{error}: {line:?}")))?;
            let e = &event.event;
            let event_id: String = cut(&e.action, 255)
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || "._:-".contains(c) { c } else { '_' })
                .collect();
            prop_assert_eq!(header, ["LEEF:2.0", "Acme", "RuntimeGuard", "1.4.0", event_id.as_str(), "x09"]);

            let mut expected: Vec<(String, String)> = Vec::new();
            let mut push = |key: &str, value: String| expected.push((key.to_owned(), value));
            if (1_000_000_000_000..10_000_000_000_000).contains(&e.ts_ms) {
                push("devTime", e.ts_ms.to_string());
            } else {
                push("devTime", clean(&e.ts));
                push("devTimeFormat", "yyyy-MM-dd'T'HH:mm:ss.SSSX".into());
            }
            push("cat", clean(&e.result));
            push("sev", event.severity.clamp(1, 10).to_string());
            push("usrName", clean(&cut(event.actor_id(), 255)));
            push("accountName", clean(&cut(&e.actor, 255)));
            push("policy", clean(&e.policy));
            if let Some(parts) = event.target_parts() {
                push("resource", clean(parts.cluster));
            }
            push("decision", clean(&e.result));
            if let Some(reason) = &e.reason {
                push("reason", clean(reason));
            }
            push("artifact", clean(&e.artifact));
            push("target", clean(&e.target));
            if let Some(parts) = event.target_parts() {
                push("cloudRegion", clean(parts.region));
            }
            push("policyMode", clean(&e.mode));
            push("traceId", clean(&e.trace));
            push("eventUid", clean(&event.event_id));
            for (name, key) in [("src_ip", "src"), ("dst_ip", "dst")] {
                if let Some(ip) = e.extra.get(name).and_then(|v| v.as_str()).and_then(|s| s.parse::<IpAddr>().ok()) {
                    push(key, ip.to_string());
                }
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
                push(&key, clean(&text));
            }
            prop_assert_eq!(pairs, expected);
        }
    }
}
