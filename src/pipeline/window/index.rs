//! Trace id -> open window: inline trace ids and an open-addressing table keyed by a keyed hash.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use super::state::{Slab, Slot};

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

/// Hashes a `u64` key to itself, for maps whose keys are already hashes.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::window::state::{PartRef, Window};

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
}
