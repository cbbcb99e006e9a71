//! Avro input in the Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then one
//! Avro datum written with that (writer) schema.
//!
//! [`AvroSchemas`] caches one entry per schema id, built once when the shell hands it the
//! registry's answer: the parsed writer schema after checking, by Avro's resolution rules, that
//! the reader schema (`schemas/audit_event.avsc`) can read it. Records are then decoded with the
//! writer schema and mapped onto the reader's fields by name: fields the reader lacks are kept as
//! extra fields rather than dropped, and the reader's defaults fill fields the writer lacks.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use serde_json::{Number, Value};

use super::{FieldValue, RawEvent};
use crate::pipeline::reject::{Reject, RejectCode};
use crate::schemas;

/// The reader's field holding deployment-specific extras (a map).
const EXTRA_FIELD: &str = "extra";

/// What is known about one schema id.
enum Entry {
    /// A usable writer schema, with its references resolved once.
    Ready(Arc<Ready>),
    /// Every record with this id is rejected for the same reason.
    Rejected(Reject),
}

/// A writer schema and its resolved datum reader.
struct Ready {
    schema: &'static Schema,
    reader: GenericDatumReader<'static>,
}

/// Writer schemas by id, with the reader schema they are checked against.
pub struct AvroSchemas {
    reader: Schema,
    by_id: HashMap<u32, Entry>,
}

impl std::fmt::Debug for AvroSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroSchemas").field("ids", &self.by_id.keys().collect::<Vec<_>>()).finish()
    }
}

impl Default for AvroSchemas {
    fn default() -> Self {
        Self::new()
    }
}

impl AvroSchemas {
    /// An empty cache with the project's reader schema.
    pub fn new() -> Self {
        let reader = Schema::parse_str(schemas::AUDIT_EVENT).expect("schemas/audit_event.avsc is valid avro");
        AvroSchemas { reader, by_id: HashMap::new() }
    }

    /// Whether the registry's answer for `id` is already cached.
    pub fn contains(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Caches the registry's schema text for `id`: usable if it parses and the reader schema can
    /// read it, otherwise every record with this id is dead-lettered as incompatible.
    pub fn insert(&mut self, id: u32, text: &str) {
        let entry = match Schema::parse_str(text) {
            Err(error) => {
                Entry::Rejected(Reject::new(RejectCode::IncompatibleSchema, format!("schema id {id} is not a valid avro schema: {error}")))
            }
            Ok(writer) => match SchemaCompatibility::can_read(&writer, &self.reader) {
                Ok(_) => {
                    // The reader borrows its schema. Leaking one schema per registered id keeps
                    // the resolved reader for the life of the process without re-resolving per
                    // record; ids are few (one per schema version actually used on the input).
                    let writer: &'static Schema = Box::leak(Box::new(writer));
                    match GenericDatumReader::builder(writer).build() {
                        Ok(reader) => Entry::Ready(Arc::new(Ready { schema: writer, reader })),
                        Err(error) => Entry::Rejected(Reject::new(
                            RejectCode::IncompatibleSchema,
                            format!("schema id {id} cannot be resolved: {error}"),
                        )),
                    }
                }
                Err(error) => Entry::Rejected(Reject::new(
                    RejectCode::IncompatibleSchema,
                    format!("schema id {id} cannot be read as an audit event: {error}"),
                )),
            },
        };
        self.by_id.insert(id, entry);
    }

    /// Caches that the registry has no schema `id` (it answered 404): a permanent failure.
    pub fn insert_unknown(&mut self, id: u32) {
        let reject = Reject::new(RejectCode::UnknownSchemaId, format!("schema registry has no schema with id {id}"));
        self.by_id.insert(id, Entry::Rejected(reject));
    }

    /// Decodes the datum after the 5-byte header of a record with schema `id`.
    ///
    /// The shell fetches every schema before the record reaches the core; an id missing here is
    /// reported as unknown rather than panicking.
    pub fn decode(&self, id: u32, datum: &[u8]) -> Result<RawEvent, Reject> {
        let writer = match self.by_id.get(&id) {
            Some(Entry::Ready(writer)) => writer,
            Some(Entry::Rejected(reject)) => return Err(reject.clone()),
            None => return Err(Reject::new(RejectCode::UnknownSchemaId, format!("schema id {id} was not loaded"))),
        };
        let mut rest = datum;
        let value = writer
            .reader
            .read_value(&mut rest)
            .map_err(|error| Reject::new(RejectCode::InvalidAvro, format!("avro datum does not decode with schema id {id}: {error}")))?;
        if !rest.is_empty() {
            return Err(Reject::new(RejectCode::InvalidAvro, format!("avro datum has {} trailing bytes after the record", rest.len())));
        }
        let (Avro::Record(fields), Schema::Record(record)) = (value, writer.schema) else {
            return Err(Reject::new(RejectCode::InvalidAvro, format!("schema id {id} does not describe a record")));
        };
        // apache-avro reads end-of-input inside a string, boolean or union as null (its container
        // reader relies on it), so a truncated datum can "decode". A null where the writer schema
        // has no null is that truncation.
        for ((name, value), field) in fields.iter().zip(&record.fields) {
            if !null_allowed(value, &field.schema) {
                return Err(Reject::new(
                    RejectCode::InvalidAvro,
                    format!("avro datum ends early: field `{name}` is missing (truncated record?)"),
                ));
            }
        }
        let mut raw = RawEvent::default();
        let mut map_extras = Vec::new();
        for (name, value) in fields {
            if let Some(index) = RawEvent::slot(&name) {
                raw.canonical[index] = Some(field_value(value));
            } else if name == EXTRA_FIELD {
                if let Avro::Map(entries) = strip_union(value) {
                    map_extras.extend(entries);
                }
            } else {
                raw.extra.insert(name, to_json(value));
            }
        }
        // Avro maps are unordered; sort so the output is deterministic. Writer fields win over
        // map entries of the same name.
        map_extras.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, value) in map_extras {
            if RawEvent::slot(&key).is_none() && !raw.extra.contains_key(&key) {
                raw.extra.insert(key, to_json(value));
            }
        }
        Ok(raw)
    }
}

/// A canonical field's Avro value, typed for validation (`string` promoted from `bytes` when UTF-8).
fn field_value(value: Avro) -> FieldValue {
    match strip_union(value) {
        Avro::String(text) => FieldValue::Text(text),
        Avro::Bytes(bytes) => match String::from_utf8(bytes) {
            Ok(text) => FieldValue::Text(text),
            Err(_) => FieldValue::Other("non-utf-8 bytes"),
        },
        Avro::Null => FieldValue::Null,
        Avro::Boolean(_) => FieldValue::Other("a boolean"),
        Avro::Int(_) | Avro::Long(_) | Avro::Float(_) | Avro::Double(_) => FieldValue::Other("a number"),
        Avro::Array(_) => FieldValue::Other("an array"),
        Avro::Map(_) | Avro::Record(_) => FieldValue::Other("an object"),
        _ => FieldValue::Other("a non-string avro value"),
    }
}

/// False when `value` is a null that `schema` cannot hold.
fn null_allowed(value: &Avro, schema: &Schema) -> bool {
    match (value, schema) {
        (Avro::Null, Schema::Null) => true,
        (Avro::Null, _) => false,
        (Avro::Union(index, inner), Schema::Union(union)) if **inner == Avro::Null => {
            matches!(union.variants().get(*index as usize), Some(Schema::Null))
        }
        _ => true,
    }
}

fn strip_union(value: Avro) -> Avro {
    match value {
        Avro::Union(_, inner) => strip_union(*inner),
        other => other,
    }
}

/// Converts an Avro value to JSON: strings stay strings, numbers numbers, bytes become a string
/// when they are UTF-8 (Avro's `string` may be promoted from `bytes`) and an array of bytes otherwise.
fn to_json(value: Avro) -> Value {
    match strip_union(value) {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => Value::Bool(b),
        Avro::Int(n) | Avro::Date(n) | Avro::TimeMillis(n) => Value::from(n),
        Avro::Long(n)
        | Avro::TimeMicros(n)
        | Avro::TimestampMillis(n)
        | Avro::TimestampMicros(n)
        | Avro::TimestampNanos(n)
        | Avro::LocalTimestampMillis(n)
        | Avro::LocalTimestampMicros(n)
        | Avro::LocalTimestampNanos(n) => Value::from(n),
        Avro::Float(f) => Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number),
        Avro::Double(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Avro::String(s) | Avro::Enum(_, s) => Value::String(s),
        Avro::Uuid(u) => Value::String(u.to_string()),
        Avro::Bytes(b) | Avro::Fixed(_, b) => match String::from_utf8(b) {
            Ok(s) => Value::String(s),
            Err(error) => Value::from(error.into_bytes()),
        },
        Avro::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Avro::Map(entries) => {
            let mut entries: Vec<_> = entries.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, to_json(v))).collect())
        }
        Avro::Record(fields) => Value::Object(fields.into_iter().map(|(k, v)| (k, to_json(v))).collect()),
        other => Value::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_avro_datum(schema: &Schema, value: Avro) -> apache_avro::AvroResult<Vec<u8>> {
        apache_avro::writer::datum::GenericDatumWriter::builder(schema).build()?.write_value_to_vec(value)
    }

    const V2: &str = r#"{"type":"record","name":"AuditEvent","namespace":"io.auditflow","fields":[
        {"name":"trace","type":"string"},{"name":"ts","type":"string"},{"name":"actor","type":"string"},
        {"name":"action","type":"string"},{"name":"artifact","type":"string"},{"name":"policy","type":"string"},
        {"name":"target","type":"string"},{"name":"mode","type":"string"},{"name":"result","type":"string"},
        {"name":"region_hint","type":["null","string"],"default":null}]}"#;

    fn v2_datum(region: Option<&str>) -> Vec<u8> {
        let schema = Schema::parse_str(V2).unwrap();
        let mut fields: Vec<(String, Avro)> = [
            ("trace", "tr-1"),
            ("ts", "2026-04-18T14:22:07.441Z"),
            ("actor", "user:a"),
            ("action", "deploy"),
            ("artifact", "x@1"),
            ("policy", "p"),
            ("target", "aws:eu-west-1:c1"),
            ("mode", "fixed"),
            ("result", "allowed"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Avro::String(v.to_owned())))
        .collect();
        let region = match region {
            Some(r) => Avro::Union(1, Box::new(Avro::String(r.into()))),
            None => Avro::Union(0, Box::new(Avro::Null)),
        };
        fields.push(("region_hint".into(), region));
        to_avro_datum(&schema, Avro::Record(fields)).unwrap()
    }

    #[test]
    fn evolved_writer_schema_maps_by_name_and_keeps_unknown_fields() {
        let mut schemas = AvroSchemas::new();
        schemas.insert(7, V2);
        let raw = schemas.decode(7, &v2_datum(Some("eu"))).unwrap();
        assert_eq!(raw.text("trace"), Some("tr-1"));
        assert_eq!(raw.text("result"), Some("allowed"));
        assert_eq!(raw.extra["region_hint"], "eu");
        assert_eq!(raw.canonical[9], None, "no reason in the writer schema");
    }

    #[test]
    fn truncated_and_trailing_datums_are_invalid() {
        let mut schemas = AvroSchemas::new();
        schemas.insert(7, V2);
        let datum = v2_datum(None);
        assert_eq!(schemas.decode(7, &datum[..datum.len() - 3]).unwrap_err().code, RejectCode::InvalidAvro);
        let mut longer = datum.clone();
        longer.push(0);
        assert_eq!(schemas.decode(7, &longer).unwrap_err().code, RejectCode::InvalidAvro);
    }

    /// The nine required fields of the reader schema, each `<name>-v`.
    fn required_fields() -> Vec<(String, Avro)> {
        ["ts", "actor", "action", "artifact", "policy", "target", "mode", "trace", "result"]
            .iter()
            .map(|k| (k.to_string(), Avro::String(format!("{k}-v"))))
            .collect()
    }

    #[test]
    fn every_truncation_of_a_reader_schema_datum_is_rejected() {
        let mut schemas = AvroSchemas::new();
        schemas.insert(1, schemas::AUDIT_EVENT);
        let schema = Schema::parse_str(schemas::AUDIT_EVENT).unwrap();
        let mut fields = required_fields();
        fields.push(("reason".into(), Avro::Union(0, Box::new(Avro::Null))));
        fields.push(("extra".into(), Avro::Map(HashMap::new())));
        let datum = to_avro_datum(&schema, Avro::Record(fields)).unwrap();
        assert!(schemas.decode(1, &datum).is_ok());
        for len in 0..datum.len() {
            let result = schemas.decode(1, &datum[..len]);
            assert_eq!(result.map(|_| ()).unwrap_err().code, RejectCode::InvalidAvro, "truncated to {len} bytes");
        }
    }

    #[test]
    fn another_record_type_is_incompatible() {
        let mut schemas = AvroSchemas::new();
        schemas.insert(9, r#"{"type":"record","name":"Payment","fields":[{"name":"amount","type":"long"}]}"#);
        let reject = schemas.decode(9, &[2]).unwrap_err();
        assert_eq!(reject.code, RejectCode::IncompatibleSchema);
        assert!(reject.message.contains("schema id 9"), "{}", reject.message);
        schemas.insert(10, "not a schema");
        assert_eq!(schemas.decode(10, &[]).unwrap_err().code, RejectCode::IncompatibleSchema);
    }

    #[test]
    fn unknown_and_unloaded_ids_are_rejected() {
        let mut schemas = AvroSchemas::new();
        schemas.insert_unknown(404);
        assert_eq!(schemas.decode(404, &[]).unwrap_err().code, RejectCode::UnknownSchemaId);
        assert_eq!(schemas.decode(405, &[]).unwrap_err().code, RejectCode::UnknownSchemaId);
    }

    #[test]
    fn reader_schema_round_trips_with_extras() {
        let mut schemas = AvroSchemas::new();
        schemas.insert(1, schemas::AUDIT_EVENT);
        let schema = Schema::parse_str(schemas::AUDIT_EVENT).unwrap();
        let mut fields = required_fields();
        fields.push(("reason".into(), Avro::Union(1, Box::new(Avro::String("why".into())))));
        let extra = HashMap::from([
            ("zone".to_owned(), Avro::Union(4, Box::new(Avro::String("b".into())))),
            ("cost".to_owned(), Avro::Union(2, Box::new(Avro::Long(3)))),
        ]);
        fields.push(("extra".into(), Avro::Map(extra)));
        let datum = to_avro_datum(&schema, Avro::Record(fields)).unwrap();
        let raw = schemas.decode(1, &datum).unwrap();
        let keys: Vec<&str> = raw.extra.keys().map(String::as_str).collect();
        assert_eq!(keys, ["cost", "zone"]);
        assert_eq!(raw.extra["cost"], 3);
        assert_eq!(raw.text("reason"), Some("why"));
        assert_eq!(raw.text("mode"), Some("mode-v"));
    }
}
