//! Sticky partitioning of the SIEM topics (`siem.partitioning = "sticky"`).
//!
//! librdkafka sends one produce request per partition batch, and a batch leaves `linger.ms`
//! after its first record. Spread by key hash over N partitions, a topic's records make N small
//! batches per linger interval, and the broker pays its per-request cost N times. SIEM records
//! are keyed by event id, which is unique: no two records share a key, so there is no per-key
//! order that hashing would keep. Here every record of a topic goes to one partition for
//! [`WINDOW`], then to the next, round robin: about one batch per topic and window, full ones,
//! and an even spread over time. The key is still written (connectors use it as the document id).

use std::time::{Duration, Instant};

/// How long a SIEM topic's records stay on one partition: twice the default `linger.ms`, as
/// librdkafka's own sticky partitioner for keyless records (`sticky.partitioning.linger.ms`).
pub const WINDOW: Duration = Duration::from_millis(10);

/// The partition to use for each sticky topic, by time.
#[derive(Debug)]
pub struct Sticky {
    /// Topic, its partition count (> 0), and a per-topic offset so that topics do not all move
    /// to the same partition number at once.
    topics: Vec<(String, u32, u32)>,
    start: Instant,
}

impl Sticky {
    /// Sticky partitioning for `topics` (name, partition count) from `start`. Topics with no
    /// partitions known (metadata not there yet) are left to the key hash.
    pub fn new(topics: impl IntoIterator<Item = (String, usize)>, start: Instant) -> Self {
        let topics = topics
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .enumerate()
            .map(|(i, (name, count))| {
                let count = u32::try_from(count).unwrap_or(u32::MAX);
                (name, count, u32::try_from(i).unwrap_or(0) % count)
            })
            .collect();
        Sticky { topics, start }
    }

    /// The partition for a record of `topic` sent at `at`; `None` for a topic not handled here.
    pub fn partition(&self, topic: &str, at: Instant) -> Option<i32> {
        let (_, count, offset) = self.topics.iter().find(|(name, _, _)| name == topic)?;
        // u64 milliseconds last 584 million years; the u128 of `as_millis` is not needed.
        let window = at.saturating_duration_since(self.start).as_millis() as u64 / WINDOW.as_millis() as u64;
        let partition = (window + u64::from(*offset)) % u64::from(*count);
        // Below the count, a u32: fits an i32 as Kafka's partition counts do.
        Some(i32::try_from(partition).unwrap_or(0))
    }

    /// Takes up partitions added to a topic since (`counts`: partition counts by topic, from
    /// the producer's metadata); returns the topics that grew, with their new counts. Counts
    /// never shrink: Kafka cannot remove partitions, and a topic missing from `counts` keeps its own.
    pub fn grow(&mut self, counts: &std::collections::HashMap<String, usize>) -> Vec<(String, usize)> {
        let mut grown = Vec::new();
        for (name, count, _) in &mut self.topics {
            let Some(&now) = counts.get(name.as_str()) else { continue };
            let now = u32::try_from(now).unwrap_or(u32::MAX);
            if now > *count {
                *count = now;
                grown.push((name.clone(), now as usize));
            }
        }
        grown
    }

    /// Whether any topic is partitioned here.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sticky() -> (Sticky, Instant) {
        let start = Instant::now();
        (Sticky::new([("audit.siem.ecs".to_owned(), 4), ("audit.siem.cef".to_owned(), 3), ("empty".to_owned(), 0)], start), start)
    }

    #[test]
    fn a_topic_stays_on_one_partition_within_a_window_then_moves_round_robin() {
        let (sticky, start) = sticky();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(sticky.partition("audit.siem.ecs", at(0)), Some(0));
        assert_eq!(sticky.partition("audit.siem.ecs", at(9)), Some(0));
        assert_eq!(sticky.partition("audit.siem.ecs", at(10)), Some(1));
        assert_eq!(sticky.partition("audit.siem.ecs", at(35)), Some(3));
        assert_eq!(sticky.partition("audit.siem.ecs", at(40)), Some(0));
        // Over many windows every partition gets the same share.
        let mut seen = [0u32; 4];
        for ms in (0..4000).step_by(5) {
            seen[sticky.partition("audit.siem.ecs", at(ms)).unwrap() as usize] += 1;
        }
        assert_eq!(seen, [200; 4]);
    }

    #[test]
    fn partitions_added_later_are_taken_up_and_counts_never_shrink() {
        let (mut sticky, start) = sticky();
        let counts = |pairs: &[(&str, usize)]| pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect();
        assert_eq!(sticky.grow(&counts(&[("audit.siem.ecs", 4), ("audit.alerts", 9)])), []);
        assert_eq!(sticky.grow(&counts(&[("audit.siem.ecs", 6), ("audit.siem.cef", 2)])), [("audit.siem.ecs".to_owned(), 6)]);
        let mut seen = [0u32; 6];
        for ms in (0..600).step_by(10) {
            seen[sticky.partition("audit.siem.ecs", start + Duration::from_millis(ms)).unwrap() as usize] += 1;
        }
        assert_eq!(seen, [10; 6], "the new partitions get their share");
        assert_eq!(sticky.partition("audit.siem.cef", start + Duration::from_millis(20)), Some(0), "cef keeps its 3");
        assert_eq!(sticky.partition("audit.alerts", start), None, "a topic not sticky stays so");
    }

    #[test]
    fn topics_are_offset_and_unknown_or_empty_ones_are_left_to_the_key() {
        let (sticky, start) = sticky();
        assert_eq!(sticky.partition("audit.siem.cef", start), Some(1));
        assert_eq!(sticky.partition("audit.siem.cef", start + Duration::from_millis(20)), Some(0));
        assert_eq!(sticky.partition("audit.alerts", start), None);
        assert_eq!(sticky.partition("empty", start), None);
        assert!(!sticky.is_empty());
        assert!(Sticky::new(Vec::<(String, usize)>::new(), start).is_empty());
    }

    #[test]
    fn a_clock_before_the_start_uses_the_first_window() {
        let start = Instant::now() + Duration::from_secs(1);
        let sticky = Sticky::new([("t".to_owned(), 2)], start);
        assert_eq!(sticky.partition("t", Instant::now()), Some(0));
    }
}
