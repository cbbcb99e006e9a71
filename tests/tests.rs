//! auditflow's integration tests, one binary.
//!
//! - `golden`: every SIEM format against its worked examples, byte for byte.
//! - `replay`: the whole pipeline through files, no Kafka.
//! - `kafka`: the real local broker and registry started by `scripts/stack up`
//!   (addresses from `AUDITFLOW_TEST_BOOTSTRAP` and `AUDITFLOW_TEST_REGISTRY`, loopback defaults).

mod avro;
mod delivery;
mod enrich;
mod golden;
mod kafka;
mod ops;
mod replay;
mod util;
mod window;
