//! The project's Avro schemas (`schemas/*.avsc`), compiled into the binary.

/// The canonical audit event: the reader schema for Avro input.
pub const AUDIT_EVENT: &str = include_str!("../schemas/audit_event.avsc");

/// The registry subject of the canonical event (TopicNameStrategy on the default input topic).
pub const AUDIT_EVENT_SUBJECT: &str = "audit.raw-value";

/// The enriched event written to `audit.enriched`.
pub const ENRICHED_EVENT: &str = include_str!("../schemas/enriched_event.avsc");

/// The summary of a closed trace window (`TraceSummary::to_avro_value`).
pub const TRACE_SUMMARY: &str = include_str!("../schemas/trace_summary.avsc");

/// A late event, when summaries are Avro (`LateEvent::to_avro_value`).
pub const LATE_EVENT: &str = include_str!("../schemas/late_event.avsc");
