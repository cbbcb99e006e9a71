//! The open-window state: compact held events, windows in a slab, per-partition ordered indexes,
//! and an interner for step fields. Pure data structures; the logic is in `mod.rs`.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;

use uuid::Uuid;

use super::summary::StepFields;
use crate::model::AuditEvent;

/// Index of a window in the slab.
pub(super) type Slot = u32;
/// Index of a partition in `Windows::partitions`.
pub(super) type PartIx = u32;

/// One event held by an open window: 48 bytes.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub ts_ms: i64,
    pub offset: i64,
    pub event_id: Uuid,
    pub fields: Arc<StepFields>,
    pub part: PartIx,
    /// The partition number (fits in padding): the stable tie-break of step order.
    pub partition: i32,
}

impl Held {
    /// Step order: event time, then offset, then partition number (then the internal partition index,
    /// for equal partition numbers of different topics).
    pub fn order(&self) -> (i64, i64, i32, PartIx) {
        (self.ts_ms, self.offset, self.partition, self.part)
    }
}

/// A partition a window holds events of.
#[derive(Debug, Clone, Copy)]
pub(super) struct PartRef {
    pub part: PartIx,
    /// The key of the window's entry in the partition's deadline index; `None` once the partition's
    /// watermark has passed the window's deadline. Always ≤ the window's current deadline.
    pub key: Option<i64>,
    /// The lowest offset of this partition held by the window (its entry in the held index).
    pub min_offset: i64,
}

/// An open window.
#[derive(Debug)]
pub(super) struct Window {
    pub trace: Arc<str>,
    pub first_ts: i64,
    pub last_ts: i64,
    /// Opening order, the tie-break of the age index.
    pub open_seq: u64,
    /// Ordered by [`Held::order`].
    pub steps: Vec<Held>,
    /// The partition of the first event; `more` holds any others (empty when input is keyed by trace).
    pub home: PartRef,
    pub more: Vec<PartRef>,
}

impl Window {
    pub fn parts(&self) -> impl Iterator<Item = &PartRef> {
        std::iter::once(&self.home).chain(self.more.iter())
    }

    pub fn parts_mut(&mut self) -> impl Iterator<Item = &mut PartRef> {
        std::iter::once(&mut self.home).chain(self.more.iter_mut())
    }

    pub fn part_mut(&mut self, part: PartIx) -> Option<&mut PartRef> {
        if self.home.part == part {
            Some(&mut self.home)
        } else {
            self.more.iter_mut().find(|p| p.part == part)
        }
    }

    /// Inserts `held` at its place in step order (a push when events arrive in order).
    pub fn insert(&mut self, held: Held) {
        if self.steps.last().is_none_or(|last| last.order() <= held.order()) {
            self.steps.push(held);
        } else {
            let at = self.steps.partition_point(|s| s.order() <= held.order());
            self.steps.insert(at, held);
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

/// Hashes a `u64` key to itself: the interner's keys are already SipHash values.
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Shares one [`StepFields`] among all held events with the same fields. Bounded: entries no held
/// event uses any more are purged whenever the table doubles.
#[derive(Debug)]
pub(super) struct Interner {
    map: HashMap<u64, Arc<StepFields>, BuildHasherDefault<PassThrough>>,
    hasher: RandomState,
    purge_at: usize,
}

const MIN_PURGE_AT: usize = 4096;

impl Default for Interner {
    fn default() -> Self {
        Interner { map: HashMap::default(), hasher: RandomState::new(), purge_at: MIN_PURGE_AT }
    }
}

impl Interner {
    pub fn intern(&mut self, e: &AuditEvent) -> Arc<StepFields> {
        let hash = self.hasher.hash_one((&e.action, &e.artifact, &e.result, &e.policy, &e.actor, &e.mode));
        if let Some(fields) = self.map.get(&hash) {
            // A 64-bit collision with other fields only costs the sharing.
            return if fields.matches(e) { fields.clone() } else { Arc::new(StepFields::of(e)) };
        }
        if self.map.len() >= self.purge_at {
            self.map.retain(|_, fields| Arc::strong_count(fields) > 1);
            self.purge_at = (2 * self.map.len()).max(MIN_PURGE_AT);
        }
        let fields = Arc::new(StepFields::of(e));
        self.map.insert(hash, fields.clone());
        fields
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// The last closed window of recently closed traces, for naming the summary of a late event.
/// FIFO-bounded to `capacity` traces.
#[derive(Debug, Default)]
pub(super) struct Closed {
    by_trace: HashMap<Arc<str>, (i64, i64)>,
    order: VecDeque<(Arc<str>, i64)>,
    capacity: usize,
}

impl Closed {
    pub fn new(capacity: usize) -> Self {
        Closed { capacity, ..Closed::default() }
    }

    pub fn remember(&mut self, trace: Arc<str>, start_ms: i64, end_ms: i64) {
        if self.capacity == 0 {
            return;
        }
        if self.order.len() >= self.capacity {
            if let Some((old, start)) = self.order.pop_front() {
                if self.by_trace.get(&old).is_some_and(|&(s, _)| s == start) {
                    self.by_trace.remove(&old);
                }
            }
        }
        self.by_trace.insert(trace.clone(), (start_ms, end_ms));
        self.order.push_back((trace, start_ms));
    }

    /// (start, end) of the last remembered closed window of `trace`.
    pub fn get(&self, trace: &str) -> Option<(i64, i64)> {
        self.by_trace.get(trace).copied()
    }

    pub fn len(&self) -> usize {
        self.by_trace.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_event_is_compact() {
        assert_eq!(std::mem::size_of::<Held>(), 48);
    }

    #[test]
    fn closed_memory_is_bounded_and_keeps_the_latest_window() {
        let mut closed = Closed::new(2);
        closed.remember("a".into(), 1, 2);
        closed.remember("a".into(), 10, 20);
        assert_eq!(closed.get("a"), Some((10, 20)));
        closed.remember("b".into(), 1, 2);
        // The queue's oldest entry (a, 1) is stale: evicting it keeps a's latest window.
        assert_eq!(closed.get("a"), Some((10, 20)));
        closed.remember("c".into(), 1, 2);
        assert_eq!(closed.get("a"), None);
        assert!(closed.len() <= 2 && closed.order.len() <= 2);
        assert_eq!(Closed::new(0).get("a"), None);
    }
}
