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
    use super::*;

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
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut s = String::from("{\"a\":");
        s.push_str(&"[".repeat(100_000));
        assert_eq!(code(s.as_bytes()), RejectCode::InvalidJson);
        let mut s = String::from("{\"ts\":");
        s.push_str(&"[".repeat(100_000));
        assert_eq!(code(s.as_bytes()), RejectCode::InvalidJson);
    }
}
