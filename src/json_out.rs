//! Serializing output records as JSON.
//!
//! Every JSON output (SIEM formats, alerts, summaries, late events, enriched JSON) goes through
//! [`write`]. It uses `sonic-rs`, whose serde serializer writes the same bytes as `serde_json`'s
//! compact one (same escaping: `"`, `\\` and U+0000–U+001F; same number formatting) but scans
//! strings with SIMD: about twice as fast per document (`docs/benchmarks.md`). The golden tests
//! pin the bytes of every format, and the escaping proptests read them back with `serde_json`.

use serde::Serialize;

/// Appends `value` as compact JSON to `out`. Borrowed strings, numbers and `serde_json` values
/// cannot fail to serialize into a `Vec`, so an error here is a bug.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    sonic_rs::to_writer(out, value).expect("output record serializes");
}
