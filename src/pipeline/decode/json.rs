//! JSON input: one object per record, parsed strictly.
//!
//! Strict means: valid UTF-8, one JSON object and nothing after it, nesting no deeper than
//! serde_json's limit (128), and no key repeated at the top level (a repeated key is a classic way
//! to make two readers of one record see different values). Canonical fields are read straight
//! into their slots without building a JSON tree; other fields are kept as JSON values, in order.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{FieldValue, RawEvent};
use crate::pipeline::reject::{Reject, RejectCode};

/// Parses one JSON record into a [`RawEvent`], or says precisely why it cannot.
pub fn decode(bytes: &[u8]) -> Result<RawEvent, Reject> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        Reject::new(RejectCode::InvalidUtf8, format!("record is not valid utf-8: invalid byte at offset {}", error.valid_up_to()))
    })?;
    if let Some(raw) = decode_flat(text) {
        return Ok(raw);
    }
    let mut duplicate = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = TopLevel { duplicate: &mut duplicate }.deserialize(&mut de).and_then(|raw| {
        de.end()?;
        Ok(raw)
    });
    match parsed {
        Ok(raw) => Ok(raw),
        Err(_) if duplicate.is_some() => {
            Err(Reject::new(RejectCode::DuplicateField, format!("field `{}` appears more than once", duplicate.unwrap_or_default())))
        }
        Err(error) => Err(classify(bytes, error)),
    }
}

/// The fast path for the common shape: one flat object whose keys and values are all strings
/// without escapes, no key repeated. It gives exactly what the serde path gives for such input
/// (a property test checks); anything else (escapes, numbers, `null`, nesting, a repeated key,
/// any syntax error) returns `None` and goes through the serde path, which owns every error.
fn decode_flat(text: &str) -> Option<RawEvent> {
    let bytes = text.as_bytes();
    let skip_ws = |mut at: usize| {
        while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            at += 1;
        }
        at
    };
    // A string token at `at` with no escape and no control character: its text and the index
    // after its closing quote.
    let string = |at: usize| -> Option<(&str, usize)> {
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        let len = crate::scan::find_below_or_eq(&bytes[at + 1..], 0x20, b'"', b'\\')?;
        let end = at + 1 + len;
        // `"` is ASCII, so both ends are character boundaries.
        (bytes[end] == b'"').then(|| (&text[at + 1..end], end + 1))
    };
    let mut at = skip_ws(0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(at + 1);
    let mut raw = RawEvent::default();
    if bytes.get(at) == Some(&b'}') {
        return (skip_ws(at + 1) == bytes.len()).then_some(raw);
    }
    loop {
        let (key, next) = string(at)?;
        at = skip_ws(next);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let (value, next) = string(skip_ws(at + 1))?;
        match RawEvent::slot(key) {
            Some(index) if raw.canonical[index].is_none() => raw.canonical[index] = Some(FieldValue::Text(value.to_owned())),
            // One hash of the key (`entry`), not two (`contains_key`, then `insert`).
            None => match raw.extra.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(Value::String(value.to_owned()));
                }
                serde_json::map::Entry::Occupied(_) => return None,
            },
            _ => return None,
        }
        at = skip_ws(next);
        match bytes.get(at) {
            Some(b',') => at = skip_ws(at + 1),
            Some(b'}') => return (skip_ws(at + 1) == bytes.len()).then_some(raw),
            _ => return None,
        }
    }
}

/// The serde path alone (no fast path), for tests comparing the two.
#[cfg(test)]
fn decode_serde(text: &str) -> Result<RawEvent, serde_json::Error> {
    let mut duplicate = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = TopLevel { duplicate: &mut duplicate }.deserialize(&mut de)?;
    de.end()?;
    Ok(raw)
}

/// Tells "valid JSON but not an object" apart from a syntax error.
fn classify(bytes: &[u8], error: serde_json::Error) -> Reject {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'{') && serde_json::from_slice::<IgnoredAny>(bytes).is_ok() {
        return Reject::new(RejectCode::NotAnObject, "record is valid json but not an object");
    }
    Reject::new(RejectCode::InvalidJson, format!("invalid json: {error}"))
}

/// Deserializes the top-level object, remembering the first repeated key.
struct TopLevel<'a> {
    duplicate: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = RawEvent;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = RawEvent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawEvent::default();
        while let Some(key) = access.next_key::<Key>()? {
            let repeated = match key {
                Key::Slot(index) => {
                    let value = access.next_value::<FieldValue>()?;
                    let repeated = raw.canonical[index].is_some();
                    raw.canonical[index] = Some(value);
                    repeated.then(|| super::CANONICAL[index].to_owned())
                }
                Key::Other(name) => {
                    let value: Value = access.next_value()?;
                    if raw.extra.contains_key(&name) {
                        Some(name)
                    } else {
                        raw.extra.insert(name, value);
                        None
                    }
                }
            };
            if let Some(name) = repeated {
                *self.duplicate = Some(name);
                return Err(de::Error::custom("duplicate field"));
            }
        }
        Ok(raw)
    }
}

/// A top-level key: a canonical slot (matched without allocating) or another name.
enum Key {
    Slot(usize),
    Other(String),
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
                Ok(RawEvent::slot(name).map_or_else(|| Key::Other(name.to_owned()), Key::Slot))
            }
            fn visit_string<E: de::Error>(self, name: String) -> Result<Key, E> {
                Ok(RawEvent::slot(&name).map_or(Key::Other(name), Key::Slot))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> de::Deserialize<'de> for FieldValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldValueVisitor)
    }
}

struct FieldValueVisitor;

impl<'de> Visitor<'de> for FieldValueVisitor {
    type Value = FieldValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldValue, E> {
        Ok(FieldValue::Text(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<FieldValue, E> {
        Ok(FieldValue::Text(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<FieldValue, E> {
        Ok(FieldValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<FieldValue, E> {
        Ok(FieldValue::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a number"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FieldValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::pipeline::decode::CANONICAL;

    fn code(bytes: &[u8]) -> RejectCode {
        decode(bytes).unwrap_err().code
    }

    #[test]
    fn canonical_fields_go_to_slots_and_extras_keep_order() {
        let raw = decode(br#"{"z":1,"ts":"t","a":"x","reason":null,"m":null,"trace":7}"#).unwrap();
        let keys: Vec<&str> = raw.extra.keys().map(String::as_str).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(raw.text("ts"), Some("t"));
        assert_eq!(raw.canonical[9], Some(FieldValue::Null));
        assert_eq!(raw.canonical[7], Some(FieldValue::Other("a number")));
        assert_eq!(raw.canonical[1], None);
    }

    #[test]
    fn escaped_keys_match_canonical_names() {
        let raw = decode(br#"{"t\u0073":"x"}"#).unwrap();
        assert_eq!(raw.text("ts"), Some("x"));
    }

    #[test]
    fn each_malformed_shape_has_its_code() {
        assert_eq!(code(b"{\"a\":"), RejectCode::InvalidJson);
        assert_eq!(code(b"not json"), RejectCode::InvalidJson);
        assert_eq!(code(b"[1,2]"), RejectCode::NotAnObject);
        assert_eq!(code(b"\"str\""), RejectCode::NotAnObject);
        assert_eq!(code(b"42"), RejectCode::NotAnObject);
        assert_eq!(code(b"{} {}"), RejectCode::InvalidJson);
        assert_eq!(code(b"{\"a\":1}\0"), RejectCode::InvalidJson);
        assert_eq!(code(b"{\"a\":\"\xff\xfe\"}"), RejectCode::InvalidUtf8);
    }

    #[test]
    fn duplicate_top_level_key_is_rejected_with_its_name() {
        let reject = decode(br#"{"result":"allowed","result":"denied"}"#).unwrap_err();
        assert_eq!(reject.code, RejectCode::DuplicateField);
        assert_eq!(reject.message, "field `result` appears more than once");
        let reject = decode(br#"{"x":1,"y":2,"x":3}"#).unwrap_err();
        assert_eq!(reject.message, "field `x` appears more than once");
        let reject = decode(br#"{"ts":"a","t\u0073":"b"}"#).unwrap_err();
        assert_eq!(reject.code, RejectCode::DuplicateField, "an escaped spelling is the same key");
    }

    #[test]
    fn flat_string_objects_take_the_fast_path() {
        let text = " {\"ts\" : \"t\",\n\"x\":\"é\" ,\"actor\":\"\"}\t";
        assert_eq!(decode_flat(text), Some(decode_serde(text).unwrap()));
        assert_eq!(decode_flat("{}"), Some(RawEvent::default()));
        for slow in [
            r#"{"ts":"a\"b"}"#,
            r#"{"ts":1}"#,
            r#"{"reason":null}"#,
            r#"{"ts":"a","ts":"b"}"#,
            r#"{"x":"a","x":"b"}"#,
            r#"{"ts":"a"} x"#,
            r#"{"ts":"a",}"#,
            r#"{"ts":"a""#,
            "{\"ts\":\"a\tb\"}",
        ] {
            assert_eq!(decode_flat(slow), None, "{slow}");
        }
    }

    proptest::proptest! {
        /// Whatever the fast path accepts, it decodes exactly as the serde path does; and it
        /// accepts every flat object of escape-free strings with distinct keys.
        #[test]
        fn fast_path_agrees_with_serde(
            fields in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        proptest::sample::select(CANONICAL.to_vec()).prop_map(str::to_owned),
                        "[a-z\"\\\\é]{0,4}",
                    ],
                    proptest::prop_oneof![
                        "[ -~é\\x00-\\x1f]{0,12}".prop_map(serde_json::Value::from),
                        proptest::prelude::any::<i32>().prop_map(serde_json::Value::from),
                        proptest::prelude::Just(serde_json::Value::Null),
                    ],
                ),
                0..8,
            ),
            spaced in proptest::prelude::any::<bool>(),
        ) {
            let sep = if spaced { " \n" } else { "" };
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}{sep}:{sep}{}", serde_json::to_string(k).unwrap(), v))
                .collect();
            let text = format!("{sep}{{{sep}{}{sep}}}{sep}", body.join(&format!("{sep},{sep}")));
            let serde = decode_serde(&text).ok();
            match decode_flat(&text) {
                Some(fast) => prop_assert_eq!(Some(fast), serde),
                None => {
                    let mut keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    let simple = keys.len() == fields.len()
                        && fields.iter().all(|(k, v)| {
                            let plain = |s: &str| !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
                            plain(k) && v.as_str().is_some_and(plain)
                        });
                    prop_assert!(!simple, "a flat escape-free object missed the fast path: {}", text);
                }
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut s = String::from("{\"a\":");
        s.push_str(&"[".repeat(100_000));
        assert_eq!(code(s.as_bytes()), RejectCode::InvalidJson);
        let mut s = String::from("{\"ts\":");
        s.push_str(&"[".repeat(100_000));
        assert_eq!(code(s.as_bytes()), RejectCode::InvalidJson);
    }
}
