//! auditflow: a stream processor for runtime audit telemetry on Kafka.
//!
//! ```text
//! audit.raw ─► decode ─► validate ─► enrich ─┬─► siem/<format> ─► audit.siem.<format>
//!  (group)       │ bad       │ bad            └─► route: denied ─► audit.alerts
//!                └───────────┴──► dead letter ─► audit.dlq
//! offsets: committed per partition, never past a record whose outputs are not all acknowledged
//! ```
//!
//! The core ([`pipeline`], [`siem`], [`model`]) is synchronous and free of I/O: one
//! [`model::SourceRecord`] in, its [`model::Outputs`] out. The Kafka shell ([`kafka`]) and
//! [`replay`] feed it records and ship its outputs.
#![deny(missing_docs)]

pub mod config;
pub mod generate;
pub mod json_out;
pub mod kafka;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod replay;
pub mod scan;
pub mod schemas;
pub mod siem;
