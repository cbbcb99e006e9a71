//! The dead-letter contract: every per-record failure maps to one stable [`RejectCode`].
//!
//! Codes are append-only. Never rename or reuse one: dashboards, alerts and replays of the
//! dead-letter topic key on them. `tests/data/reject_codes.txt` holds the golden list.

use std::fmt;

/// A stable, low-cardinality reason why a record was dead-lettered.
///
/// The code goes into the `auditflow.error.code` header and the `code` label of
/// `auditflow_records_dead_lettered_total`; the message beside it is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectCode {
    /// The record has no value (a tombstone).
    Tombstone,
    /// The record value is empty.
    EmptyPayload,
    /// The record value is larger than `limits.max_record_bytes`.
    RecordTooLarge,
    /// A JSON record is not valid UTF-8.
    InvalidUtf8,
    /// The value is not valid JSON (syntax, nesting too deep, trailing data).
    InvalidJson,
    /// The JSON value is valid but not an object.
    NotAnObject,
    /// The same key appears twice in one JSON object.
    DuplicateField,
    /// The value starts with neither `{` (JSON) nor the Confluent magic byte 0 (Avro).
    UnknownFormat,
    /// A Confluent-framed value is shorter than its 5-byte header.
    TruncatedFraming,
    /// The registry does not know the schema id in the Confluent header.
    UnknownSchemaId,
    /// The writer schema cannot be resolved against the reader schema.
    IncompatibleSchema,
    /// The Avro datum does not decode with its writer schema.
    InvalidAvro,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON or Avro type.
    WrongType,
    /// `ts` is not RFC 3339 with an explicit offset.
    BadTimestamp,
    /// `actor` is not `kind:id` with both parts non-empty.
    BadActor,
    /// `mode` is not an accepted value.
    BadMode,
    /// `result` is not an accepted value.
    BadResult,
    /// `trace` is empty.
    EmptyTrace,
    /// A field is longer than its configured bound.
    FieldTooLong,
    /// A canonical field contains a control character.
    ControlCharacter,
    /// An output of the record is larger than the producer can send (`message.max.bytes`).
    OutputTooLarge,
}

impl RejectCode {
    /// Every code, in declaration order.
    pub const ALL: &'static [RejectCode] = &[
        Self::Tombstone,
        Self::EmptyPayload,
        Self::RecordTooLarge,
        Self::InvalidUtf8,
        Self::InvalidJson,
        Self::NotAnObject,
        Self::DuplicateField,
        Self::UnknownFormat,
        Self::TruncatedFraming,
        Self::UnknownSchemaId,
        Self::IncompatibleSchema,
        Self::InvalidAvro,
        Self::MissingField,
        Self::WrongType,
        Self::BadTimestamp,
        Self::BadActor,
        Self::BadMode,
        Self::BadResult,
        Self::EmptyTrace,
        Self::FieldTooLong,
        Self::ControlCharacter,
        Self::OutputTooLarge,
    ];

    /// The code as it appears in headers and metrics, dotted snake_case (`stage.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tombstone => "decode.tombstone",
            Self::EmptyPayload => "decode.empty_payload",
            Self::RecordTooLarge => "decode.record_too_large",
            Self::InvalidUtf8 => "decode.invalid_utf8",
            Self::InvalidJson => "decode.invalid_json",
            Self::NotAnObject => "decode.not_an_object",
            Self::DuplicateField => "decode.duplicate_field",
            Self::UnknownFormat => "decode.unknown_format",
            Self::TruncatedFraming => "decode.truncated_framing",
            Self::UnknownSchemaId => "decode.unknown_schema_id",
            Self::IncompatibleSchema => "decode.incompatible_schema",
            Self::InvalidAvro => "decode.invalid_avro",
            Self::MissingField => "validate.missing_field",
            Self::WrongType => "validate.wrong_type",
            Self::BadTimestamp => "validate.bad_timestamp",
            Self::BadActor => "validate.bad_actor",
            Self::BadMode => "validate.bad_mode",
            Self::BadResult => "validate.bad_result",
            Self::EmptyTrace => "validate.empty_trace",
            Self::FieldTooLong => "validate.field_too_long",
            Self::ControlCharacter => "validate.control_character",
            Self::OutputTooLarge => "output.too_large",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A per-record failure: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Reject {
    /// The stable code.
    pub code: RejectCode,
    /// Lowercase, no trailing period; names the field and the bound where there is one.
    pub message: String,
}

impl Reject {
    /// A reject with the given code and message.
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Reject { code, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_match_golden_list() {
        let listed: Vec<&str> =
            include_str!("../../tests/data/reject_codes.txt").lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).collect();
        let ours: Vec<&str> = RejectCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(ours, listed, "reject codes are append-only: update the golden list on purpose");
        let mut dedup = ours.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), ours.len());
    }
}
