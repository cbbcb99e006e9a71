//! Interning of step fields, and the parse of event ids: the per-event work of turning an
//! `EnrichedEvent` into a compact `Step`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use uuid::Uuid;

use super::index::PassThrough;
use super::summary::{eq_bytes, StepFields};
use crate::model::EnrichedEvent;

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

/// A table of shared values, keyed by their 64-bit hash. Bounded: entries nothing else holds
/// any more are purged whenever the table doubles.
#[derive(Debug)]
struct Table<T: ?Sized> {
    map: HashMap<u64, Arc<T>, BuildHasherDefault<PassThrough>>,
    purge_at: usize,
}

const MIN_PURGE_AT: usize = 4096;

impl<T: ?Sized> Default for Table<T> {
    fn default() -> Self {
        Table { map: HashMap::default(), purge_at: MIN_PURGE_AT }
    }
}

impl<T: ?Sized> Table<T> {
    /// The value stored under `hash` when `same` accepts it (a 64-bit collision with another
    /// value only costs the sharing: `make` builds an unshared one); else `make`'s, now stored.
    fn get_or_insert(&mut self, hash: u64, same: impl FnOnce(&T) -> bool, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        if let Some(value) = self.map.get(&hash) {
            return if same(value) { value.clone() } else { make() };
        }
        if self.map.len() >= self.purge_at {
            self.map.retain(|_, value| Arc::strong_count(value) > 1);
            self.purge_at = (2 * self.map.len()).max(MIN_PURGE_AT);
        }
        let value = make();
        self.map.insert(hash, value.clone());
        value
    }
}

/// Shares one [`StepFields`] among all held events with the same fields, and, when a combination
/// is new, each field's text among all step fields with that value (most values recur even when
/// their combination does not: the same actor deploys several artifacts). A step then costs one
/// allocation at most instead of eight.
#[derive(Debug, Default)]
pub(super) struct Interner {
    fields: Table<StepFields>,
    texts: Table<str>,
}

impl Interner {
    pub fn intern(&mut self, enriched: &EnrichedEvent) -> Arc<StepFields> {
        let e = &enriched.event;
        let texts = [&enriched.provenance.topic, &e.action, &e.artifact, &e.result, &e.policy, &e.actor, &e.mode].map(|t| t.as_str());
        let hashes = texts.map(|text| {
            let mut hasher = FastHasher::default();
            hasher.write_field(text.as_bytes());
            hasher.finish()
        });
        let mut combined = FastHasher::default();
        for hash in hashes {
            combined.mix(hash);
        }
        combined.mix(e.decision as u64);
        let Interner { fields, texts: shared } = self;
        fields.get_or_insert(
            combined.finish(),
            |fields| fields.matches(enriched),
            || {
                let mut text =
                    |i: usize| shared.get_or_insert(hashes[i], |t| eq_bytes(t.as_bytes(), texts[i].as_bytes()), || Arc::from(texts[i]));
                Arc::new(StepFields {
                    topic: text(0),
                    action: text(1),
                    artifact: text(2),
                    result: text(3),
                    decision: e.decision,
                    policy: text(4),
                    actor: text(5),
                    mode: text(6),
                })
            },
        )
    }

    /// Shared step-field combinations held.
    pub fn len(&self) -> usize {
        self.fields.map.len()
    }

    /// Shared field texts held.
    pub fn texts(&self) -> usize {
        self.texts.map.len()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn parses_hyphenated_uuids_like_the_uuid_crate() {
        for text in ["7c89f897-af79-5960-b7f4-294fd28cd35a", "CEC2C36B-1A68-5E27-9009-9862FBE0FE52", "00000000-0000-0000-0000-000000000000"]
        {
            assert_eq!(parse_uuid(text), Some(Uuid::try_parse(text).unwrap()));
        }
        for text in [
            "",
            "7c89f897af795960b7f4294fd28cd35a",
            "7c89f897-af79-5960-b7f4-294fd28cd35g",
            "7c89f897-af79-5960-b7f4_294fd28cd35a",
            "{7c89f897-af79-5960-b7f4-294fd28cd35}",
        ] {
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
}
