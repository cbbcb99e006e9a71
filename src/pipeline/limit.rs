//! Output size: every record the core returns can be produced.
//!
//! librdkafka refuses, at `produce()`, a record larger than the producer's `message.max.bytes`
//! (1,000,000 by default), and no retry can change that. One such record would stop the run, and
//! the restart would stop on it again. So the pipeline checks every output before the shell sees
//! it (`Pipeline::fit`):
//!
//! ```text
//! a record's own output too large ─► left out; the record goes to the dead-letter topic
//!                                    (`output.too_large`, naming each output left out)
//! a window output too large       ─► goes to the dead-letter topic itself, its destination in
//!                                    `auditflow.error.output_topic`
//! a dead letter too large         ─► keeps as much of its value as fits, and says so in
//!                                    `auditflow.error.truncated` (the original length)
//! ```

use crate::model::Output;

/// librdkafka's worst-case framing of one record besides its key, value and headers
/// (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`: a length, attributes, timestamp and offset deltas,
/// key and value lengths, header count).
const RECORD_OVERHEAD: usize = 36;

/// Worst-case framing of one header besides its name and value: two varint lengths.
const HEADER_OVERHEAD: usize = 10;

/// Header on a dead letter whose value was cut to fit: the original value's length in bytes.
pub const TRUNCATED: &str = "auditflow.error.truncated";

/// Header on a dead-lettered window output: the topic it was meant for.
pub const OUTPUT_TOPIC: &str = "auditflow.error.output_topic";

/// The size librdkafka checks against `message.max.bytes`, or an upper bound of it: key, value,
/// headers and framing.
pub fn wire_size(output: &Output) -> usize {
    let headers: usize = output.headers.iter().map(|(name, value)| HEADER_OVERHEAD + name.len() + value.as_ref().map_or(0, Vec::len)).sum();
    RECORD_OVERHEAD + output.key.as_ref().map_or(0, Vec::len) + output.payload.as_ref().map_or(0, Vec::len) + headers
}

/// Cuts a dead letter's value so that the record is at most `max` bytes, and adds the
/// [`TRUNCATED`] header with the original length. When the key and headers alone leave no room,
/// the source record's own headers go first (auditflow's `auditflow.*` headers stay), then the
/// key, then every header but the code and the length.
pub fn truncate(output: &mut Output, max: usize) {
    if wire_size(output) <= max {
        return;
    }
    // Measured without the value, which then gets the room left. A null value stays null.
    let payload = output.payload.take();
    let original = payload.as_ref().map_or(0, Vec::len);
    output.headers.push((TRUNCATED.to_owned(), Some(original.to_string().into_bytes())));
    if wire_size(output) > max {
        output.headers.retain(|(name, _)| name.starts_with("auditflow."));
    }
    if wire_size(output) > max {
        output.key = None;
    }
    if wire_size(output) > max {
        // Only a limit near librdkafka's minimum (1,000) gets here: the code and the length stay.
        output.headers.retain(|(name, _)| name == super::dlq_headers::CODE || name == TRUNCATED);
    }
    output.payload = payload.map(|mut payload| {
        payload.truncate(max.saturating_sub(wire_size(output)));
        payload
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(key: usize, payload: usize, headers: &[(&str, usize)]) -> Output {
        Output {
            topic: "t".into(),
            key: Some(vec![b'k'; key]),
            payload: Some(vec![b'v'; payload]),
            headers: headers.iter().map(|(name, len)| (name.to_string(), Some(vec![b'h'; *len]))).collect(),
            timestamp_ms: None,
            holds: Vec::new(),
            partition: None,
        }
    }

    #[test]
    fn wire_size_counts_key_value_headers_and_framing() {
        assert_eq!(wire_size(&output(0, 0, &[])), RECORD_OVERHEAD);
        assert_eq!(wire_size(&output(3, 100, &[("ab", 5)])), RECORD_OVERHEAD + 3 + 100 + HEADER_OVERHEAD + 2 + 5);
    }

    #[test]
    fn a_dead_letter_that_fits_is_left_alone() {
        let mut fits = output(3, 100, &[("source", 5)]);
        let before = fits.clone();
        truncate(&mut fits, wire_size(&before));
        assert_eq!(fits, before);
    }

    #[test]
    fn a_dead_letter_keeps_the_start_of_its_value_and_says_how_long_it_was() {
        let mut letter = output(3, 5_000, &[("source", 5), ("auditflow.error.code", 4)]);
        letter.payload = Some((0..5_000u32).map(|i| (i % 251) as u8).collect());
        let original = letter.payload.clone().unwrap();
        truncate(&mut letter, 1_000);
        assert_eq!(wire_size(&letter), 1_000, "as much of the value as fits");
        let kept = letter.payload.as_deref().unwrap();
        assert_eq!(kept, &original[..kept.len()]);
        assert_eq!(letter.headers.last().unwrap(), &(TRUNCATED.to_owned(), Some(b"5000".to_vec())));
        assert_eq!(letter.headers.len(), 3, "the source's headers stay while they fit");
        assert_eq!(letter.key.as_deref(), Some(&b"kkk"[..]));
    }

    #[test]
    fn source_headers_then_the_key_give_way_when_they_alone_do_not_fit() {
        let mut letter = output(10, 50, &[("big", 600), ("auditflow.error.code", 4)]);
        truncate(&mut letter, 300);
        assert!(wire_size(&letter) <= 300);
        let names: Vec<&str> = letter.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["auditflow.error.code", TRUNCATED]);
        assert_eq!(letter.key.as_deref(), Some(&[b'k'; 10][..]), "the key fits once the big header is gone");
        let mut letter = output(600, 50, &[("auditflow.error.code", 4)]);
        truncate(&mut letter, 300);
        assert!(wire_size(&letter) <= 300);
        assert_eq!(letter.key, None);
    }

    #[test]
    fn a_null_value_stays_null() {
        let mut tombstone = output(600, 0, &[("auditflow.error.code", 4)]);
        tombstone.payload = None;
        truncate(&mut tombstone, 300);
        assert_eq!((tombstone.payload, tombstone.key), (None, None));
        assert_eq!(tombstone.headers.last().unwrap(), &(TRUNCATED.to_owned(), Some(b"0".to_vec())));
    }

    #[test]
    fn at_the_smallest_limit_the_code_and_the_length_remain() {
        let mut letter = output(10, 5_000, &[("auditflow.error.code", 16), ("auditflow.error.message", 2_000)]);
        truncate(&mut letter, 1_000);
        assert_eq!(wire_size(&letter), 1_000);
        let names: Vec<&str> = letter.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["auditflow.error.code", TRUNCATED]);
    }
}
