//! Acknowledgement tracking over plain integers: which offset each partition may commit.
//!
//! A record is *done* when every one of its outputs is acknowledged. A partition's committable
//! offset is its lowest offset not yet done, or one past the highest offset seen when all are done
//! (Kafka commits the next offset to read). So a commit never passes a record whose outputs are
//! still in flight, whatever order acknowledgements arrive in.
//!
//! Two more things hold a partition back: outputs that cover earlier records (a trace summary
//! holds the first offset of its window until it is acknowledged, see [`OffsetTracker::hold`]),
//! and a cap (the first offset still held by an open window, see [`OffsetTracker::set_cap`]).

use std::collections::{BTreeMap, HashMap};

/// A topic and partition.
pub type TopicPartition = (std::sync::Arc<str>, i32);

#[derive(Debug, Default)]
struct Partition {
    /// Offset -> outputs not yet acknowledged.
    pending: BTreeMap<i64, u32>,
    /// One past the highest offset begun.
    next: i64,
    /// The last offset handed out by `take_commits`.
    committed: i64,
    /// Commits never pass this offset (the first one an open window holds).
    cap: Option<i64>,
}

impl Partition {
    fn committable(&self) -> i64 {
        let acked = self.pending.keys().next().copied().unwrap_or(self.next);
        self.cap.map_or(acked, |cap| acked.min(cap))
    }
}

/// Per-partition acknowledgement state.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<TopicPartition, Partition>,
    in_flight: usize,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `offset` produced `outputs` outputs, all now in flight. Zero outputs means done.
    pub fn begin(&mut self, tp: &TopicPartition, offset: i64, outputs: u32) {
        let part = match self.partitions.get_mut(tp) {
            Some(part) => part,
            None => {
                self.partitions.entry(tp.clone()).or_insert_with(|| Partition { next: offset, committed: offset, ..Partition::default() })
            }
        };
        if outputs > 0 {
            let count = part.pending.entry(offset).or_insert(0);
            if *count == 0 {
                self.in_flight += 1;
            }
            *count += outputs;
        }
        part.next = part.next.max(offset + 1);
    }

    /// Records that one more output, covering `offset` and later records, is in flight: `offset`
    /// is not committed past until it is acknowledged (with [`OffsetTracker::ack`]).
    pub fn hold(&mut self, tp: &TopicPartition, offset: i64) {
        let part = match self.partitions.get_mut(tp) {
            Some(part) => part,
            None => self.partitions.entry(tp.clone()).or_insert_with(|| Partition {
                next: offset + 1,
                committed: offset,
                ..Partition::default()
            }),
        };
        let count = part.pending.entry(offset).or_insert(0);
        if *count == 0 {
            self.in_flight += 1;
        }
        *count += 1;
    }

    /// Sets (or clears) the offset commits of `tp` must not pass.
    pub fn set_cap(&mut self, tp: &TopicPartition, cap: Option<i64>) {
        if let Some(part) = self.partitions.get_mut(tp) {
            part.cap = cap;
        }
    }

    /// Sets every tracked partition's cap from `cap_of` (called after windows closed).
    pub fn refresh_caps(&mut self, cap_of: impl Fn(&str, i32) -> Option<i64>) {
        for ((topic, partition), part) in &mut self.partitions {
            part.cap = cap_of(topic, *partition);
        }
    }

    /// Records one acknowledged output of `offset`. Unknown partitions (revoked meanwhile) are ignored.
    pub fn ack(&mut self, tp: &TopicPartition, offset: i64) {
        let Some(part) = self.partitions.get_mut(tp) else { return };
        if let Some(left) = part.pending.get_mut(&offset) {
            *left -= 1;
            if *left == 0 {
                part.pending.remove(&offset);
                self.in_flight -= 1;
            }
        }
    }

    /// Records whose outputs are not all acknowledged, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The offset `tp` may commit now (the next offset to read), if the partition is tracked.
    pub fn committable(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).map(Partition::committable)
    }

    /// Committable offsets that moved since the last call, marked as handed out.
    pub fn take_commits(&mut self) -> Vec<(TopicPartition, i64)> {
        let mut out = Vec::new();
        for (tp, part) in &mut self.partitions {
            let offset = part.committable();
            if offset > part.committed {
                part.committed = offset;
                out.push((tp.clone(), offset));
            }
        }
        out.sort();
        out
    }

    /// A commit of `offset` for `tp` failed (e.g. the group coordinator was still loading after
    /// a broker restart): the next [`OffsetTracker::take_commits`] hands the partition's
    /// committable offset out again, even when no record moved it since. Without this, a stream
    /// that had ended stayed committed short of its end until the next record came.
    pub fn commit_failed(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(part) = self.partitions.get_mut(tp) {
            part.committed = part.committed.min(offset - 1);
        }
    }

    /// Like [`OffsetTracker::take_commits`], but every tracked partition, moved or not: a commit
    /// whose request or answer was lost (a broker restart) is sent again.
    pub fn take_all_commits(&mut self) -> Vec<(TopicPartition, i64)> {
        for part in self.partitions.values_mut() {
            part.committed = part.committed.max(part.committable());
        }
        self.all_commits()
    }

    /// The committable offset of every tracked partition, whether or not it moved.
    pub fn all_commits(&self) -> Vec<(TopicPartition, i64)> {
        let mut out: Vec<_> = self.partitions.iter().map(|(tp, part)| (tp.clone(), part.committable())).collect();
        out.sort();
        out
    }

    /// Forgets a partition (revoked); returns its committable offset. Later acks for it are ignored.
    pub fn remove(&mut self, tp: &TopicPartition) -> Option<i64> {
        let part = self.partitions.remove(tp)?;
        self.in_flight -= part.pending.len();
        Some(part.committable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tp(p: i32) -> TopicPartition {
        ("t".into(), p)
    }

    #[test]
    fn a_failed_commit_is_handed_out_again() {
        let mut tracker = OffsetTracker::new();
        tracker.begin(&tp(0), 10, 1);
        tracker.ack(&tp(0), 10);
        assert_eq!(tracker.take_commits(), vec![(tp(0), 11)]);
        assert_eq!(tracker.take_commits(), vec![], "nothing moved");
        tracker.commit_failed(&tp(0), 11);
        assert_eq!(tracker.take_commits(), vec![(tp(0), 11)], "the failed commit again");
        assert_eq!(tracker.take_commits(), vec![]);
        // An older commit failing after a newer one went out: the newest is sent again, never less.
        tracker.begin(&tp(0), 11, 0);
        assert_eq!(tracker.take_commits(), vec![(tp(0), 12)]);
        tracker.commit_failed(&tp(0), 11);
        assert_eq!(tracker.take_commits(), vec![(tp(0), 12)]);
        tracker.commit_failed(&tp(9), 5);
        assert_eq!(tracker.take_commits(), vec![], "an unknown partition is ignored");
        assert_eq!(tracker.take_all_commits(), vec![(tp(0), 12)], "all, moved or not");
        assert_eq!(tracker.take_commits(), vec![]);
    }

    #[test]
    fn commit_waits_for_the_lowest_unacknowledged_offset() {
        let mut t = OffsetTracker::new();
        t.begin(&tp(0), 10, 2);
        t.begin(&tp(0), 11, 1);
        t.begin(&tp(0), 12, 0);
        assert_eq!(t.committable(&tp(0)), Some(10));
        t.ack(&tp(0), 11);
        assert_eq!(t.committable(&tp(0)), Some(10));
        t.ack(&tp(0), 10);
        assert_eq!(t.committable(&tp(0)), Some(10), "offset 10 still has one output in flight");
        t.ack(&tp(0), 10);
        assert_eq!(t.committable(&tp(0)), Some(13));
        assert_eq!(t.take_commits(), vec![(tp(0), 13)]);
        assert!(t.take_commits().is_empty());
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn removed_partition_ignores_late_acks() {
        let mut t = OffsetTracker::new();
        t.begin(&tp(1), 0, 1);
        assert_eq!(t.remove(&tp(1)), Some(0));
        t.ack(&tp(1), 0);
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.committable(&tp(1)), None);
    }

    #[test]
    fn holds_and_caps_keep_commits_back() {
        let mut t = OffsetTracker::new();
        for offset in 0..10 {
            t.begin(&tp(0), offset, 1);
            t.ack(&tp(0), offset);
        }
        assert_eq!(t.committable(&tp(0)), Some(10));
        t.set_cap(&tp(0), Some(4));
        assert_eq!(t.committable(&tp(0)), Some(4), "an open window holds offset 4");
        t.set_cap(&tp(0), None);
        t.hold(&tp(0), 4);
        t.hold(&tp(0), 4);
        assert_eq!(t.committable(&tp(0)), Some(4), "a summary covering offset 4 is in flight");
        t.ack(&tp(0), 4);
        assert_eq!(t.committable(&tp(0)), Some(4));
        t.ack(&tp(0), 4);
        assert_eq!(t.committable(&tp(0)), Some(10));
        t.hold(&tp(7), 3);
        assert_eq!(t.committable(&tp(7)), Some(3), "a hold on an untracked partition tracks it");
    }

    proptest! {
        /// Against a naive model: the committable offset is never past an unacknowledged record,
        /// and equals the first unacknowledged one.
        #[test]
        fn matches_naive_model(outputs in prop::collection::vec(0u32..4, 1..60), order in prop::collection::vec(any::<prop::sample::Index>(), 0..200)) {
            let mut t = OffsetTracker::new();
            let mut left: Vec<u32> = outputs.clone();
            for (offset, n) in outputs.iter().enumerate() {
                t.begin(&tp(0), offset as i64, *n);
            }
            for pick in order {
                let open: Vec<usize> = (0..left.len()).filter(|i| left[*i] > 0).collect();
                if open.is_empty() { break; }
                let i = open[pick.index(open.len())];
                left[i] -= 1;
                t.ack(&tp(0), i as i64);
                let expected = left.iter().position(|n| *n > 0).unwrap_or(left.len()) as i64;
                prop_assert_eq!(t.committable(&tp(0)), Some(expected));
                prop_assert_eq!(t.in_flight(), left.iter().filter(|n| **n > 0).count());
            }
        }
    }
}
