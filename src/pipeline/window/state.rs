//! The open-window state: compact held events, windows in a slab, per-partition ordered indexes,
//! and an interner for step fields. Pure data structures; the logic is in `mod.rs`.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;

use uuid::Uuid;

use super::summary::{Step, StepFields};
use crate::model::EnrichedEvent;

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

/// Bytes of a trace id stored inline in its window.
pub(super) const INLINE_TRACE: usize = 38;

/// A trace id, inline when at most [`INLINE_TRACE`] bytes (most ids: UUIDs, W3C trace ids), so
/// matching a window's trace reads no memory beyond the window.
#[derive(Debug, Clone)]
pub(super) enum TraceId {
    Inline { len: u8, bytes: [u8; INLINE_TRACE] },
    Heap(Arc<str>),
}

impl TraceId {
    pub fn new(trace: &str) -> Self {
        if trace.len() <= INLINE_TRACE {
            let mut bytes = [0; INLINE_TRACE];
            bytes[..trace.len()].copy_from_slice(trace.as_bytes());
            TraceId::Inline { len: trace.len() as u8, bytes }
        } else {
            TraceId::Heap(trace.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            TraceId::Inline { len, bytes } => &bytes[..*len as usize],
            TraceId::Heap(trace) => trace.as_bytes(),
        }
    }

    pub fn to_arc(&self) -> Arc<str> {
        match self {
            // Copied from a `&str` whole: always UTF-8.
            TraceId::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default().into(),
            TraceId::Heap(trace) => trace.clone(),
        }
    }
}

/// Trace id -> open window: a table keyed by the trace's SipHash (random keys), checked against the
/// trace stored in the window; the rare trace whose hash is taken by another goes to `collided`.
#[derive(Debug)]
pub(super) struct TraceIndex {
    hasher: RandomState,
    by_hash: HashSlots,
    collided: HashMap<Arc<str>, Slot>,
    /// All ones; tests narrow it to force collisions.
    pub mask: u64,
}

impl Default for TraceIndex {
    fn default() -> Self {
        TraceIndex { hasher: RandomState::new(), by_hash: HashSlots::default(), collided: HashMap::new(), mask: u64::MAX }
    }
}

impl TraceIndex {
    pub fn hash(&self, trace: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(trace.as_bytes());
        hasher.finish() & self.mask
    }

    pub fn get(&self, hash: u64, trace: &str, slab: &Slab) -> Option<Slot> {
        if let Some(slot) = self.by_hash.get(hash) {
            if slab.get(slot).trace.as_bytes() == trace.as_bytes() {
                return Some(slot);
            }
        }
        if self.collided.is_empty() {
            None
        } else {
            self.collided.get(trace).copied()
        }
    }

    pub fn insert(&mut self, hash: u64, trace: &str, slot: Slot) {
        if !self.by_hash.insert(hash, slot) {
            self.collided.insert(trace.into(), slot);
        }
    }

    pub fn remove(&mut self, hash: u64, trace: &str, slot: Slot) {
        if self.by_hash.get(hash) == Some(slot) {
            self.by_hash.remove(hash);
        } else {
            self.collided.remove(trace);
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len() + self.collided.len()
    }

    pub fn capacity_bytes(&self) -> usize {
        self.by_hash.capacity_bytes() + self.collided.capacity() * 25
    }
}

/// A linear-probing table of (hash, slot) pairs, 16 bytes each, at most half full: a lookup reads
/// one cache line, where a general hash map reads its control bytes and then its entry.
#[derive(Debug, Default)]
pub(super) struct HashSlots {
    entries: Vec<(u64, Slot)>,
    len: usize,
}

const EMPTY: Slot = Slot::MAX;

impl HashSlots {
    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    pub fn get(&self, hash: u64) -> Option<Slot> {
        if self.len == 0 {
            return None;
        }
        let mut at = hash as usize & self.mask();
        loop {
            let (h, slot) = self.entries[at];
            if slot == EMPTY {
                return None;
            }
            if h == hash {
                return Some(slot);
            }
            at = (at + 1) & self.mask();
        }
    }

    /// Inserts unless `hash` is present; returns whether it inserted.
    pub fn insert(&mut self, hash: u64, slot: Slot) -> bool {
        if 2 * (self.len + 1) > self.entries.len() {
            self.grow();
        }
        let mut at = hash as usize & self.mask();
        loop {
            let (h, s) = self.entries[at];
            if s == EMPTY {
                self.entries[at] = (hash, slot);
                self.len += 1;
                return true;
            }
            if h == hash {
                return false;
            }
            at = (at + 1) & self.mask();
        }
    }

    /// Removes `hash`, shifting back the entries after it (no tombstones).
    pub fn remove(&mut self, hash: u64) {
        if self.len == 0 {
            return;
        }
        let mask = self.mask();
        let mut at = hash as usize & mask;
        loop {
            let (h, s) = self.entries[at];
            if s == EMPTY {
                return;
            }
            if h == hash {
                break;
            }
            at = (at + 1) & mask;
        }
        self.len -= 1;
        let mut hole = at;
        let mut next = (hole + 1) & mask;
        loop {
            let (h, s) = self.entries[next];
            if s == EMPTY {
                break;
            }
            // The entry at `next` may fill the hole if its home is not in (hole, next].
            let home = h as usize & mask;
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                self.entries[hole] = (h, s);
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.entries[hole] = (0, EMPTY);
    }

    fn grow(&mut self) {
        let size = (2 * self.entries.len()).max(16);
        let old = std::mem::replace(&mut self.entries, vec![(0, EMPTY); size]);
        self.len = 0;
        for (h, s) in old {
            if s != EMPTY {
                self.insert(h, s);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn capacity_bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<(u64, Slot)>()
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

/// Eight hex digits (ASCII, either case, first digit in the lowest byte as loaded little-endian)
/// to their 32-bit value; `None` unless all eight are hex digits. Branch-free SWAR.
fn hex8(word: u64) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte: 0x80 when the byte is in [lo, hi], for bytes below 0x80.
    let within = |x: u64, lo: u8, hi: u8| {
        let above_lo = x.wrapping_add(ONES * u64::from(0x80 - lo)) & HIGH;
        let above_hi = x.wrapping_add(ONES * u64::from(0x7f - hi)) & HIGH;
        above_lo & !above_hi
    };
    let ascii = word & HIGH == 0;
    let lower = word | (ONES * 0x20);
    let digit = within(word, b'0', b'9');
    let letter = within(lower, b'a', b'f');
    if !ascii || (digit | letter) != HIGH {
        return None;
    }
    // '0'..'9' -> 0..9; 'a'..'f' (and 'A'..'F') -> 10..15.
    let nibbles = (word & (ONES * 0x0f)) + (letter >> 7) * 9;
    // Bytes n0..n7 (n0 first) -> n0 n1 .. n7 as a 32-bit number.
    let pairs = ((nibbles << 4) | (nibbles >> 8)) & 0x00ff_00ff_00ff_00ff;
    let quads = ((pairs << 8) | (pairs >> 16)) & 0x0000_ffff_0000_ffff;
    let all = (quads << 16) | (quads >> 32);
    Some((all & 0xffff_ffff) as u32)
}

/// Parses a hyphenated UUID (`8-4-4-4-12` hex digits, either case), the form of every event id;
/// `None` for anything else. Several times cheaper than `Uuid::try_parse`, which takes other forms too.
pub(super) fn parse_uuid(text: &str) -> Option<Uuid> {
    let b: &[u8; 36] = text.as_bytes().try_into().ok()?;
    if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let four = |at: usize| u64::from(u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")));
    // Digits 0-7, 8-15 (groups 2 and 3), 16-23 (groups 4 and 5), 24-31.
    let a = hex8(word(0))?;
    let bc = hex8(four(9) | (four(14) << 32))?;
    let de = hex8(four(19) | (four(24) << 32))?;
    let f = hex8(word(28))?;
    Some(Uuid::from_u64_pair((u64::from(a) << 32) | u64::from(bc), (u64::from(de) << 32) | u64::from(f)))
}

/// A fast, unkeyed hash for the interner's keys (field values): a collision only costs sharing.
#[derive(Default)]
pub(super) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        // murmur3 fmix64
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n) | 0x100);
    }
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

impl FastHasher {
    /// Hashes a length and its bytes by words, the last word overlapping when the length is not a
    /// multiple of 8 (the length keeps it unambiguous).
    fn write_field(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        self.mix(n as u64);
        if n < 8 {
            let mut last = 0u64;
            for (i, &b) in bytes.iter().enumerate() {
                last |= u64::from(b) << (8 * i);
            }
            self.mix(last);
            return;
        }
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let mut at = 0;
        while at + 8 < n {
            self.mix(word(at));
            at += 8;
        }
        self.mix(word(n - 8));
    }

    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Shares one [`StepFields`] among all held events with the same fields. Bounded: entries no held
/// event uses any more are purged whenever the table doubles.
#[derive(Debug)]
pub(super) struct Interner {
    map: HashMap<u64, Arc<StepFields>, BuildHasherDefault<PassThrough>>,
    purge_at: usize,
}

const MIN_PURGE_AT: usize = 4096;

impl Default for Interner {
    fn default() -> Self {
        Interner { map: HashMap::default(), purge_at: MIN_PURGE_AT }
    }
}

impl Interner {
    pub fn intern(&mut self, enriched: &EnrichedEvent) -> Arc<StepFields> {
        let e = &enriched.event;
        let mut hasher = FastHasher::default();
        for field in [&enriched.provenance.topic, &e.action, &e.artifact, &e.result, &e.policy, &e.actor, &e.mode] {
            hasher.write_field(field.as_bytes());
        }
        let hash = hasher.finish();
        if let Some(fields) = self.map.get(&hash) {
            // A 64-bit collision with other fields only costs the sharing.
            return if fields.matches(enriched) { fields.clone() } else { Arc::new(StepFields::of(enriched)) };
        }
        if self.map.len() >= self.purge_at {
            self.map.retain(|_, fields| Arc::strong_count(fields) > 1);
            self.purge_at = (2 * self.map.len()).max(MIN_PURGE_AT);
        }
        let fields = Arc::new(StepFields::of(enriched));
        self.map.insert(hash, fields.clone());
        fields
    }

    pub fn len(&self) -> usize {
        self.map.len()
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
    fn trace_ids_inline_or_on_the_heap() {
        let short = "tr-8f2c7a91-2b14-4e8e";
        let long = "x".repeat(INLINE_TRACE + 1);
        assert!(matches!(TraceId::new(short), TraceId::Inline { .. }));
        assert!(matches!(TraceId::new(&long), TraceId::Heap(_)));
        assert_eq!(&*TraceId::new(short).to_arc(), short);
        assert_eq!(TraceId::new(&long).as_bytes(), long.as_bytes());
        assert_eq!(TraceId::new("").as_bytes(), b"");
    }

    proptest::proptest! {
        /// Against a HashMap: random inserts and removes over few hashes (long probe runs).
        #[test]
        fn hash_slots_match_a_map(ops in proptest::collection::vec((0u64..40, proptest::bool::ANY), 0..300)) {
            let mut table = HashSlots::default();
            let mut model = HashMap::new();
            for (i, (hash, insert)) in ops.into_iter().enumerate() {
                // Hashes collide in their low bits, so they share probe runs.
                let hash = hash << 20 | (hash % 3);
                if insert {
                    proptest::prop_assert_eq!(table.insert(hash, i as Slot), !model.contains_key(&hash));
                    model.entry(hash).or_insert(i as Slot);
                } else {
                    table.remove(hash);
                    model.remove(&hash);
                }
                proptest::prop_assert_eq!(table.len(), model.len());
                for h in 0..40u64 {
                    let h = h << 20 | (h % 3);
                    proptest::prop_assert_eq!(table.get(h), model.get(&h).copied());
                }
            }
        }
    }

    #[test]
    fn trace_index_handles_hash_collisions() {
        let mut slab = Slab::default();
        let mut index = TraceIndex { mask: 0, ..TraceIndex::default() };
        let window = |trace: &str| Window {
            trace: TraceId::new(trace),
            hash: 0,
            first_ts: 0,
            last_ts: 0,
            open_seq: 0,
            steps: Vec::new(),
            home: PartRef::new(0, 0),
            more: None,
        };
        let (a, b) = (slab.insert(window("a")), slab.insert(window("b")));
        let h = index.hash("a");
        assert_eq!(h, index.hash("b"));
        index.insert(h, "a", a);
        index.insert(h, "b", b);
        assert_eq!((index.get(h, "a", &slab), index.get(h, "b", &slab), index.get(h, "c", &slab)), (Some(a), Some(b), None));
        index.remove(h, "a", a);
        assert_eq!((index.get(h, "a", &slab), index.get(h, "b", &slab), index.len()), (None, Some(b), 1));
        index.remove(h, "b", b);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn parses_hyphenated_uuids_like_the_uuid_crate() {
        for text in ["7c89f897-af79-5960-b7f4-294fd28cd35a", "CEC2C36B-1A68-5E27-9009-9862FBE0FE52", "00000000-0000-0000-0000-000000000000"] {
            assert_eq!(parse_uuid(text), Some(Uuid::try_parse(text).unwrap()));
        }
        for text in ["", "7c89f897af795960b7f4294fd28cd35a", "7c89f897-af79-5960-b7f4-294fd28cd35g", "7c89f897-af79-5960-b7f4_294fd28cd35a", "{7c89f897-af79-5960-b7f4-294fd28cd35}"] {
            assert_eq!(parse_uuid(text), None, "{text}");
        }
    }

    proptest::proptest! {
        /// Any 36 bytes of hex digits, hyphens and neighbours of the digit ranges: the same answer as
        /// the uuid crate on its hyphenated form.
        #[test]
        fn parse_uuid_agrees_with_the_uuid_crate(
            bytes in proptest::collection::vec(proptest::sample::select(b"0123456789abcdefABCDEF/:@G`g-\x10\x7f".to_vec()), 36),
            mutate in proptest::bool::weighted(0.3),
        ) {
            let mut bytes = bytes;
            if !mutate {
                for (i, b) in bytes.iter_mut().enumerate() {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        *b = b'-';
                    } else if *b == b'-' {
                        *b = b'7';
                    }
                }
            }
            let text = String::from_utf8(bytes).unwrap();
            // At 36 bytes the uuid crate takes only the hyphenated form.
            proptest::prop_assert_eq!(parse_uuid(&text), Uuid::try_parse(&text).ok());
        }
    }

    #[test]
    fn fast_hash_separates_field_boundaries() {
        let h = |fields: (&str, &str)| BuildHasherDefault::<FastHasher>::default().hash_one(fields);
        assert_ne!(h(("ab", "c")), h(("a", "bc")));
        assert_ne!(h(("", "")), h(("\0", "")));
        assert_eq!(h(("deploy", "x@1")), h(("deploy", "x@1")));
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
