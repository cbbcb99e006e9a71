//! Decoding: record bytes to a [`RawEvent`], detected per record.
//!
//! A value that starts with the Confluent magic byte `0` is Avro in the Confluent wire format;
//! anything else is read as JSON. Decoding only checks shape; field rules live in `validate`.

pub mod avro;
pub mod json;

use serde_json::{Map, Value};

use crate::pipeline::reject::{Reject, RejectCode};

/// The canonical fields in schema order, `reason` last. `RawEvent::canonical` is indexed by position.
pub const CANONICAL: [&str; 10] = ["ts", "actor", "action", "artifact", "policy", "target", "mode", "trace", "result", "reason"];

/// The value of a canonical field as decoded, before the field rules.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A string.
    Text(String),
    /// An explicit null.
    Null,
    /// Any other type, named for the error message (`a number`, `an object`, ...).
    Other(&'static str),
}

/// A decoded record before validation: the canonical fields by position, the rest in input order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawEvent {
    /// `CANONICAL[i]` is in slot `i`; `None` when absent.
    pub canonical: [Option<FieldValue>; 10],
    /// Fields beyond the canonical ones, in the order the producer wrote them.
    pub extra: Map<String, Value>,
}

impl RawEvent {
    /// The slot of a canonical field name.
    pub fn slot(name: &str) -> Option<usize> {
        // A `match` compiles to length and byte comparisons; a scan of `CANONICAL` compared up
        // to ten strings per key.
        match name {
            "ts" => Some(0),
            "actor" => Some(1),
            "action" => Some(2),
            "artifact" => Some(3),
            "policy" => Some(4),
            "target" => Some(5),
            "mode" => Some(6),
            "trace" => Some(7),
            "result" => Some(8),
            "reason" => Some(9),
            _ => None,
        }
    }

    /// The canonical field `name` as text, if it is text (for tests and diagnostics).
    pub fn text(&self, name: &str) -> Option<&str> {
        match Self::slot(name).and_then(|i| self.canonical[i].as_ref()) {
            Some(FieldValue::Text(text)) => Some(text),
            _ => None,
        }
    }
}

/// The wire format of one record value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// A JSON document.
    Json,
    /// Confluent framing: magic byte 0, a big-endian schema id, an Avro datum.
    ConfluentAvro {
        /// The schema id from the 5-byte header.
        schema_id: u32,
    },
}

/// Limits applied before any parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted record value, in bytes.
    pub max_record_bytes: usize,
}

/// Checks the value's presence and size and detects its wire format.
pub fn detect(payload: Option<&[u8]>, limits: DecodeLimits) -> Result<WireFormat, Reject> {
    let Some(bytes) = payload else {
        return Err(Reject::new(RejectCode::Tombstone, "record has no value (tombstone)"));
    };
    if bytes.is_empty() {
        return Err(Reject::new(RejectCode::EmptyPayload, "record value is empty"));
    }
    if bytes.len() > limits.max_record_bytes {
        return Err(Reject::new(
            RejectCode::RecordTooLarge,
            format!("record value is {} bytes, over limits.max_record_bytes = {}", bytes.len(), limits.max_record_bytes),
        ));
    }
    if bytes[0] == 0 {
        let Some(header) = bytes.get(1..5) else {
            return Err(Reject::new(
                RejectCode::TruncatedFraming,
                format!("confluent-framed value is {} bytes, shorter than its 5-byte header", bytes.len()),
            ));
        };
        let schema_id = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        return Ok(WireFormat::ConfluentAvro { schema_id });
    }
    if bytes[0] < 0x20 && !bytes[0].is_ascii_whitespace() || bytes[0] >= 0x80 {
        return Err(Reject::new(
            RejectCode::UnknownFormat,
            format!("first byte 0x{:02x} is neither json nor the confluent magic byte 0", bytes[0]),
        ));
    }
    Ok(WireFormat::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits { max_record_bytes: 16 };

    #[test]
    fn slots_follow_the_canonical_order() {
        for (index, name) in CANONICAL.iter().enumerate() {
            assert_eq!(RawEvent::slot(name), Some(index), "{name}");
        }
        for other in ["", "Ts", "ts ", "traces", "extra"] {
            assert_eq!(RawEvent::slot(other), None, "{other}");
        }
    }

    #[test]
    fn detects_presence_size_and_framing() {
        assert_eq!(detect(None, LIMITS).unwrap_err().code, RejectCode::Tombstone);
        assert_eq!(detect(Some(b""), LIMITS).unwrap_err().code, RejectCode::EmptyPayload);
        assert_eq!(detect(Some(&[b' '; 17]), LIMITS).unwrap_err().code, RejectCode::RecordTooLarge);
        assert_eq!(detect(Some(&[0, 0, 1]), LIMITS).unwrap_err().code, RejectCode::TruncatedFraming);
        assert_eq!(detect(Some(&[0, 0, 0, 1, 2, 9]), LIMITS).unwrap(), WireFormat::ConfluentAvro { schema_id: 258 });
        assert_eq!(detect(Some(b"{}"), LIMITS).unwrap(), WireFormat::Json);
        assert_eq!(detect(Some(&[1, 0, 0, 0, 1, 2]), LIMITS).unwrap_err().code, RejectCode::UnknownFormat);
        assert_eq!(detect(Some(&[0xef, 0xbb, 0xbf, b'{', b'}']), LIMITS).unwrap_err().code, RejectCode::UnknownFormat);
    }
}
