//! The window changelog of exactly-once mode: how open trace windows survive a crash without
//! holding input offsets back.
//!
//! ```text
//! event enters a window ─► put   key "topic/partition/offset", value = the source record's bytes
//! window closes         ─► tombstone for every step of its summary (same keys)
//! partition assigned    ─► read the changelog partition, keep the live keys, re-feed them in
//!                          offset order into the windows (outputs discarded: already written)
//! each commit           ─► key "topic/partition/max_ts", value = the partition's highest event
//!                          time, for every partition processed in the transaction: the restart
//!                          resumes its watermark where it was, windows open or not
//! ```
//!
//! The changelog record lives in the partition of its source record and is written in the same
//! Kafka transaction as the outputs and the input offsets, so the committed changelog always
//! holds exactly the events of the windows open at the committed offsets.

use std::collections::HashMap;

use crate::model::{Output, SourceRecord};

/// Header carrying the source record's key on a changelog entry (absent when it had none).
pub const SOURCE_KEY_HEADER: &str = "auditflow.source.key";

/// The changelog key of a source position: `topic/partition/offset` (topic names cannot hold `/`).
pub fn key(topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    format!("{topic}/{partition}/{offset}").into_bytes()
}

/// The changelog key of a partition's highest event time (see [`event_time`]).
pub fn event_time_key(topic: &str, partition: i32) -> Vec<u8> {
    format!("{topic}/{partition}/max_ts").into_bytes()
}

/// The entry saving `topic`/`partition`'s highest event time, `max_ts` (epoch ms, in decimal).
pub fn event_time(changelog: &str, topic: &str, partition: i32, max_ts: i64) -> Output {
    Output {
        topic: changelog.to_owned(),
        key: Some(event_time_key(topic, partition)),
        payload: Some(max_ts.to_string().into_bytes()),
        headers: Vec::new(),
        timestamp_ms: None,
        holds: Vec::new(),
        partition: Some(partition),
    }
}

/// Reads a key written by [`event_time_key`].
fn parse_event_time_key(key: &[u8]) -> Option<(String, i32)> {
    let text = std::str::from_utf8(key).ok()?.strip_suffix("/max_ts")?;
    let (topic, partition) = text.rsplit_once('/')?;
    Some((topic.to_owned(), partition.parse().ok()?)).filter(|(topic, _)| !topic.is_empty())
}

/// Reads a key written by [`key`]; `None` for anything else.
pub fn parse_key(key: &[u8]) -> Option<(String, i32, i64)> {
    let text = std::str::from_utf8(key).ok()?;
    let mut parts = text.rsplitn(3, '/');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next().filter(|t| !t.is_empty())?;
    Some((topic.to_owned(), partition, offset))
}

/// The entry recording that `record` is in an open window.
pub fn entry(changelog: &str, record: &SourceRecord) -> Output {
    Output {
        topic: changelog.to_owned(),
        key: Some(key(&record.topic, record.partition, record.offset)),
        payload: Some(record.payload.clone().unwrap_or_default()),
        headers: record.key.iter().map(|k| (SOURCE_KEY_HEADER.to_owned(), Some(k.clone()))).collect(),
        timestamp_ms: record.timestamp_ms,
        holds: Vec::new(),
        partition: Some(record.partition),
    }
}

/// The tombstone removing the entry of the event at `topic`/`partition`/`offset`.
pub fn tombstone(changelog: &str, topic: &str, partition: i32, offset: i64) -> Output {
    Output {
        topic: changelog.to_owned(),
        key: Some(key(topic, partition, offset)),
        payload: None,
        headers: Vec::new(),
        timestamp_ms: None,
        holds: Vec::new(),
        partition: Some(partition),
    }
}

/// Folds changelog records, read in order, into the live entries of `topic`: the source records
/// to re-feed, in offset order. Later records win; a tombstone removes; foreign keys are skipped.
#[derive(Debug, Default)]
pub struct Restore {
    live: HashMap<(String, i32, i64), SourceRecord>,
    event_times: HashMap<(String, i32), i64>,
}

impl Restore {
    /// Applies one changelog record (key, value, headers, timestamp).
    pub fn apply(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, source_key: Option<&[u8]>, timestamp_ms: Option<i64>) {
        if let Some(partition) = key.and_then(parse_event_time_key) {
            match value.and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse().ok()) {
                Some(max_ts) => self.event_times.insert(partition, max_ts),
                None => self.event_times.remove(&partition),
            };
            return;
        }
        let Some(position) = key.and_then(parse_key) else { return };
        match value {
            None => {
                self.live.remove(&position);
            }
            Some(payload) => {
                let record = SourceRecord {
                    topic: position.0.clone(),
                    partition: position.1,
                    offset: position.2,
                    key: source_key.map(<[u8]>::to_vec),
                    headers: Vec::new(),
                    payload: Some(payload.to_vec()),
                    timestamp_ms,
                };
                self.live.insert(position, record);
            }
        }
    }

    /// The live entries of `topic`, in offset order.
    pub fn records(self, topic: &str) -> Vec<SourceRecord> {
        let mut records: Vec<SourceRecord> = self.live.into_values().filter(|r| r.topic == topic).collect();
        records.sort_by_key(|r| (r.partition, r.offset));
        records
    }

    /// The saved highest event time of `topic`/`partition`, if any.
    pub fn event_time(&self, topic: &str, partition: i32) -> Option<i64> {
        self.event_times.get(&(topic.to_owned(), partition)).copied()
    }
}

/// The changelog records of one open transaction, folded: an entry whose tombstone comes in the
/// same transaction is never written (the window opened and closed between two commits), so a
/// catch-up, where most windows close within a commit interval, writes almost no changelog.
/// Only the net state reaches the topic, which is all a restore reads.
#[derive(Debug, Default)]
pub struct Pending {
    records: HashMap<Vec<u8>, Output>,
}

impl Pending {
    /// Takes one changelog output (an entry or a tombstone).
    pub fn push(&mut self, mut output: Output) {
        // The key lives in the map while the record waits; `drain` puts it back.
        let Some(key) = output.key.take() else { return };
        if output.payload.is_none() && self.records.get(&key).is_some_and(|o| o.payload.is_some()) {
            self.records.remove(&key);
        } else {
            self.records.insert(key, output);
        }
    }

    /// The records to write before the transaction commits; empties the buffer.
    pub fn drain(&mut self) -> Vec<Output> {
        self.records
            .drain()
            .map(|(key, mut output)| {
                output.key = Some(key);
                output
            })
            .collect()
    }

    /// Forgets everything (the transaction was aborted).
    pub fn clear(&mut self) {
        self.records.clear();
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_keys_round_trip_and_are_not_entry_keys() {
        let key = event_time_key("audit.raw-x_1", 3);
        assert_eq!(parse_event_time_key(&key), Some(("audit.raw-x_1".into(), 3)));
        assert_eq!(parse_key(&key), None, "never read as an event position");
        let output = event_time("cl", "raw", 2, 1_776_521_527_441);
        assert_eq!((output.payload.as_deref(), output.partition), (Some(&b"1776521527441"[..]), Some(2)));
        for bad in [&b"/1/max_ts"[..], b"t/x/max_ts", b"t/1/max", b"max_ts"] {
            assert_eq!(parse_event_time_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_round_trip_and_reject_garbage() {
        assert_eq!(parse_key(&key("audit.raw-events_1", 3, 42)), Some(("audit.raw-events_1".into(), 3, 42)));
        for bad in [&b"x/1"[..], b"/1/2", b"t/p/2", b"t/1/o", b"\xff/1/2", b""] {
            assert_eq!(parse_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn restore_keeps_the_last_value_and_drops_tombstoned_entries() {
        let mut restore = Restore::default();
        restore.apply(Some(&key("raw", 0, 7)), Some(b"seven"), Some(b"k"), Some(1));
        restore.apply(Some(&key("raw", 0, 3)), Some(b"three"), None, Some(2));
        restore.apply(Some(&key("raw", 0, 5)), Some(b"five"), None, Some(3));
        restore.apply(Some(&key("raw", 0, 5)), None, None, None);
        restore.apply(Some(&key("other", 0, 1)), Some(b"other topic"), None, None);
        restore.apply(Some(b"not a key"), Some(b"ignored"), None, None);
        // Highest event times: the last value wins, per topic and partition; not an entry.
        restore.apply(Some(&event_time_key("raw", 0)), Some(b"1000"), None, None);
        restore.apply(Some(&event_time_key("raw", 0)), Some(b"2000"), None, None);
        restore.apply(Some(&event_time_key("raw", 1)), Some(b"500"), None, None);
        assert_eq!(
            (restore.event_time("raw", 0), restore.event_time("raw", 1), restore.event_time("raw", 2)),
            (Some(2000), Some(500), None)
        );
        let records = restore.records("raw");
        let got: Vec<(i64, &[u8])> = records.iter().map(|r| (r.offset, r.payload.as_deref().unwrap())).collect();
        assert_eq!(got, vec![(3, &b"three"[..]), (7, &b"seven"[..])]);
        assert_eq!(records[1].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(records[1].timestamp_ms, Some(1));
    }

    #[test]
    fn pending_writes_only_the_net_state_of_a_transaction() {
        let record =
            |offset| SourceRecord { topic: "raw".into(), partition: 1, offset, payload: Some(b"e".to_vec()), ..SourceRecord::default() };
        let mut pending = Pending::default();
        pending.push(entry("cl", &record(1)));
        pending.push(entry("cl", &record(2)));
        pending.push(tombstone("cl", "raw", 1, 1)); // opened and closed in this transaction
        pending.push(tombstone("cl", "raw", 1, 0)); // entry written by an earlier transaction
        let mut out: Vec<(Vec<u8>, bool)> = pending.drain().into_iter().map(|o| (o.key.unwrap(), o.payload.is_some())).collect();
        out.sort();
        assert_eq!(out, vec![(key("raw", 1, 0), false), (key("raw", 1, 2), true)]);
        assert!(pending.is_empty());
    }
}
