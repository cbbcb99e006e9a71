//! The open-window state: windows in a slab, their partitions, per-partition state, and the
//! memory of closed windows. Pure data structures; the logic is in `mod.rs`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use super::index::{PassThrough, TraceId};
use super::summary::Step;

/// Index of a window in the slab.
pub(super) type Slot = u32;
/// Index of a partition in `Windows::partitions`.
pub(super) type PartIx = u32;

/// A partition a window holds events of: 24 bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct PartRef {
    pub part: PartIx,
    /// The key of the window's entry in the partition's deadline index ([`NO_KEY`] for none, once
    /// the partition's watermark has passed the window's deadline). Always ≤ the window's deadline.
    key: i64,
    /// The lowest offset of this partition held by the window (its entry in the held index).
    pub min_offset: i64,
}

/// "No entry in the deadline index": deadlines are always above it.
const NO_KEY: i64 = i64::MIN;

impl PartRef {
    pub fn new(part: PartIx, min_offset: i64) -> Self {
        PartRef { part, key: NO_KEY, min_offset }
    }

    pub fn key(&self) -> Option<i64> {
        (self.key != NO_KEY).then_some(self.key)
    }

    pub fn set_key(&mut self, key: Option<i64>) {
        self.key = key.unwrap_or(NO_KEY);
    }

    pub fn take_key(&mut self) -> Option<i64> {
        let key = self.key();
        self.key = NO_KEY;
        key
    }
}

/// An open window.
/// Exactly two cache lines, the fields an event reads first in the first line.
#[derive(Debug)]
#[repr(C, align(64))]
pub(super) struct Window {
    pub trace: TraceId,
    /// Ordered by [`Step::order`].
    pub steps: Vec<Step>,
    pub first_ts: i64,
    pub last_ts: i64,
    /// The partition of the first event; `more` holds any others (none when input is keyed by trace).
    pub home: PartRef,
    /// Opening order, the tie-break of the age index.
    pub open_seq: u64,
    /// The trace's hash in the [`TraceIndex`].
    pub hash: u64,
    /// Boxed so that it costs one pointer (the window stays at two cache lines) in the common case.
    #[allow(clippy::box_collection)]
    pub more: Option<Box<Vec<PartRef>>>,
}

impl Window {
    fn more(&self) -> &[PartRef] {
        self.more.as_deref().map_or(&[], Vec::as_slice)
    }

    pub fn has_more(&self) -> bool {
        self.more.is_some()
    }

    /// Adds a partition (rare: only when input is not keyed by trace).
    pub fn push_part(&mut self, part: PartRef) {
        self.more.get_or_insert_with(Default::default).push(part);
    }

    pub fn more_bytes(&self) -> usize {
        self.more.as_ref().map_or(0, |more| 24 + more.capacity() * std::mem::size_of::<PartRef>())
    }

    pub fn parts(&self) -> impl Iterator<Item = &PartRef> {
        std::iter::once(&self.home).chain(self.more().iter())
    }

    pub fn parts_mut(&mut self) -> impl Iterator<Item = &mut PartRef> {
        let more = self.more.as_deref_mut().map_or(&mut [][..], Vec::as_mut_slice);
        std::iter::once(&mut self.home).chain(more.iter_mut())
    }

    pub fn part_mut(&mut self, part: PartIx) -> Option<&mut PartRef> {
        if self.home.part == part {
            Some(&mut self.home)
        } else {
            self.more.as_deref_mut()?.iter_mut().find(|p| p.part == part)
        }
    }

    /// Inserts `held` at its place in step order: a push, without reading the last step, when
    /// `after_last` (its time is past every step's).
    pub fn insert(&mut self, step: Step, after_last: bool) {
        if after_last || self.steps.last().is_none_or(|last| last.order(&step).is_le()) {
            self.steps.push(step);
        } else {
            let at = self.steps.partition_point(|s| s.order(&step).is_le());
            self.steps.insert(at, step);
        }
    }
}

/// Per-(topic, partition) state.
#[derive(Debug)]
pub(super) struct Partition {
    pub topic: Arc<str>,
    pub partition: i32,
    /// Highest event time seen since the partition was (re)assigned.
    pub max_ts: Option<i64>,
    /// Highest event time re-added by [`super::Windows::restore`], applied to `max_ts` at
    /// [`super::Windows::finish_restore`].
    pub restored_max: Option<i64>,
    /// No event for `idle_timeout_ms` (wall time): the watermark is past every window.
    pub idle: bool,
    /// Wall time of the last event.
    pub last_wall_ms: i64,
    /// (deadline key, window) of the windows this partition has not yet released.
    pub deadlines: BTreeSet<(i64, Slot)>,
    /// (lowest held offset, window) of every open window holding events of this partition.
    pub held: BTreeSet<(i64, Slot)>,
}

impl Partition {
    pub fn new(topic: Arc<str>, partition: i32) -> Self {
        Partition {
            topic,
            partition,
            max_ts: None,
            restored_max: None,
            idle: false,
            last_wall_ms: 0,
            deadlines: BTreeSet::new(),
            held: BTreeSet::new(),
        }
    }

    /// Highest event time minus lateness; `i64::MIN` before any event, `i64::MAX` when idle.
    pub fn watermark(&self, lateness: i64) -> i64 {
        if self.idle {
            i64::MAX
        } else {
            self.max_ts.map_or(i64::MIN, |max| max.saturating_sub(lateness))
        }
    }
}

/// A slab of windows with a free list; slots are reused.
#[derive(Debug, Default)]
pub(super) struct Slab {
    windows: Vec<Option<Window>>,
    free: Vec<Slot>,
}

impl Slab {
    pub fn insert(&mut self, window: Window) -> Slot {
        match self.free.pop() {
            Some(slot) => {
                self.windows[slot as usize] = Some(window);
                slot
            }
            None => {
                self.windows.push(Some(window));
                Slot::try_from(self.windows.len() - 1).expect("fewer than 2^32 open windows")
            }
        }
    }

    pub fn remove(&mut self, slot: Slot) -> Window {
        let window = self.windows[slot as usize].take().expect("slot is open");
        self.free.push(slot);
        window
    }

    pub fn get(&self, slot: Slot) -> &Window {
        self.windows[slot as usize].as_ref().expect("slot is open")
    }

    pub fn get_mut(&mut self, slot: Slot) -> &mut Window {
        self.windows[slot as usize].as_mut().expect("slot is open")
    }

    pub fn capacity_bytes(&self) -> usize {
        self.windows.capacity() * std::mem::size_of::<Option<Window>>() + self.free.capacity() * 4
    }
}

/// The last closed window of recently closed traces, for naming the summary of a late event.
/// Keyed by the trace's hash in the [`TraceIndex`] and checked against the trace: two traces with
/// the same 64-bit hash (never, in practice) keep only the later one. FIFO-bounded to `capacity`.
#[derive(Debug, Default)]
pub(super) struct Closed {
    by_hash: HashMap<u64, (Arc<str>, i64, i64), BuildHasherDefault<PassThrough>>,
    order: VecDeque<(u64, i64)>,
    capacity: usize,
}

impl Closed {
    pub fn new(capacity: usize) -> Self {
        Closed { capacity, ..Closed::default() }
    }

    pub fn remember(&mut self, hash: u64, trace: Arc<str>, start_ms: i64, end_ms: i64) {
        if self.capacity == 0 {
            return;
        }
        if self.order.len() >= self.capacity {
            if let Some((old, start)) = self.order.pop_front() {
                if self.by_hash.get(&old).is_some_and(|&(_, s, _)| s == start) {
                    self.by_hash.remove(&old);
                }
            }
        }
        self.by_hash.insert(hash, (trace, start_ms, end_ms));
        self.order.push_back((hash, start_ms));
    }

    /// (start, end) of the last remembered closed window of `trace`.
    pub fn get(&self, hash: u64, trace: &str) -> Option<(i64, i64)> {
        self.by_hash.get(&hash).filter(|(t, _, _)| **t == *trace).map(|&(_, start, end)| (start, end))
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_event_is_compact() {
        assert_eq!(std::mem::size_of::<Step>(), 48);
        assert_eq!(std::mem::size_of::<Window>(), 128);
        assert_eq!(std::mem::size_of::<Option<Window>>(), 128);
        assert_eq!(std::mem::size_of::<TraceId>(), 40);
    }

    #[test]
    fn closed_memory_is_bounded_and_keeps_the_latest_window() {
        let mut closed = Closed::new(2);
        closed.remember(1, "a".into(), 1, 2);
        closed.remember(1, "a".into(), 10, 20);
        assert_eq!(closed.get(1, "a"), Some((10, 20)));
        assert_eq!(closed.get(1, "z"), None, "same hash, other trace");
        closed.remember(2, "b".into(), 1, 2);
        // The queue's oldest entry (a, 1) is stale: evicting it keeps a's latest window.
        assert_eq!(closed.get(1, "a"), Some((10, 20)));
        closed.remember(3, "c".into(), 1, 2);
        assert_eq!(closed.get(1, "a"), None);
        assert!(closed.len() <= 2 && closed.order.len() <= 2);
        assert_eq!(Closed::new(0).get(1, "a"), None);
    }
}
