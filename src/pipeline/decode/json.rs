//! JSON input: one object per record, parsed strictly.
//!
//! Strict means: valid UTF-8, one JSON object and nothing after it, nesting no deeper than
//! serde_json's limit (128), and no key repeated at the top level (a repeated key is a classic way
//! to make two readers of one record see different values).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::RawEvent;
use crate::pipeline::reject::{Reject, RejectCode};

/// Parses one JSON record into a [`RawEvent`], or says precisely why it cannot.
pub fn decode(bytes: &[u8]) -> Result<RawEvent, Reject> {
    if let Err(error) = std::str::from_utf8(bytes) {
        return Err(Reject::new(
            RejectCode::InvalidUtf8,
            format!("record is not valid utf-8: invalid byte at offset {}", error.valid_up_to()),
        ));
    }
    let mut duplicate = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = TopLevel { duplicate: &mut duplicate }.deserialize(&mut de).and_then(|map| {
        de.end()?;
        Ok(map)
    });
    match parsed {
        Ok(fields) => Ok(RawEvent { fields }),
        Err(_) if duplicate.is_some() => Err(Reject::new(
            RejectCode::DuplicateField,
            format!("field `{}` appears more than once", duplicate.unwrap_or_default()),
        )),
        Err(error) => Err(classify(bytes, error)),
    }
}

/// Tells "valid JSON but not an object" apart from a syntax error.
fn classify(bytes: &[u8], error: serde_json::Error) -> Reject {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'{') && serde_json::from_slice::<de::IgnoredAny>(bytes).is_ok() {
        return Reject::new(RejectCode::NotAnObject, "record is valid json but not an object");
    }
    Reject::new(RejectCode::InvalidJson, format!("invalid json: {error}"))
}

/// Deserializes the top-level object, remembering the first repeated key.
struct TopLevel<'a> {
    duplicate: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::with_capacity(12);
        while let Some(key) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if map.contains_key(&key) {
                *self.duplicate = Some(key);
                return Err(de::Error::custom("duplicate field"));
            }
            map.insert(key, value);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(bytes: &[u8]) -> RejectCode {
        decode(bytes).unwrap_err().code
    }

    #[test]
    fn object_keeps_field_order() {
        let raw = decode(br#"{"z":1,"a":"x","m":null}"#).unwrap();
        let keys: Vec<&str> = raw.fields.keys().map(String::as_str).collect();
        assert_eq!(keys, ["z", "a", "m"]);
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
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut s = String::from("{\"a\":");
        s.push_str(&"[".repeat(100_000));
        assert_eq!(code(s.as_bytes()), RejectCode::InvalidJson);
    }
}
