//! Byte scans for the per-record hot paths: word-at-a-time scans (JSON escaping, control-character
//! checks; eight bytes per step instead of one, with no `unsafe`), and single-byte searches in
//! short fields (the actor, artifact and target splits).

/// Whether any byte of `bytes` is below `below` or equal to `a` or `b`. `below` must be at most
/// 128 (the word test is exact only then).
#[inline]
pub fn any_below_or_eq(bytes: &[u8], below: u8, a: u8, b: u8) -> bool {
    find_below_or_eq(bytes, below, a, b).is_some()
}

/// Index of the first byte of `bytes` that is below `below` or equal to `a` or `b`. `below` must
/// be at most 128.
#[inline]
pub fn find_below_or_eq(bytes: &[u8], below: u8, a: u8, b: u8) -> Option<usize> {
    debug_assert!(below <= 128);
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // Per byte, the high bit of `(v - n) & !v` is set where the byte is below n (n <= 128),
    // exactly for the lowest such byte (a borrow can only flag bytes above a real match). The
    // union of the three tests therefore flags the first match in its lowest set bit: loading
    // little-endian, the first byte is the lowest.
    let below_n = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v;
    let hits = |w: u64| (below_n(w, below) | below_n(w ^ (ONES * u64::from(a)), 1) | below_n(w ^ (ONES * u64::from(b)), 1)) & HIGHS;
    let first = |mask: u64| (mask.trailing_zeros() / 8) as usize;
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let mask = hits(u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes")));
        if mask != 0 {
            return Some(at + first(mask));
        }
        at += 8;
    }
    let rest = &bytes[at..];
    if rest.is_empty() {
        return None;
    }
    // The last bytes in one word, padded with a byte that matches none of the tests (at least
    // 128, so not below `below`, and neither `a` nor `b`).
    let pad = if a != 0xff && b != 0xff {
        0xff
    } else if a != 0xfe && b != 0xfe {
        0xfe
    } else {
        0xfd
    };
    let mut word = [pad; 8];
    word[..rest.len()].copy_from_slice(rest);
    let mask = hits(u64::from_le_bytes(word));
    (mask != 0).then(|| at + first(mask))
}

/// Index of the first `byte` in `bytes`. A plain loop: on short fields (actor, artifact, target)
/// it beats the setup of `memchr` and of `str`'s pattern searchers.
#[inline]
pub fn first(bytes: &[u8], byte: u8) -> Option<usize> {
    bytes.iter().position(|&b| b == byte)
}

/// Index of the last `byte` in `bytes` (see [`first`]).
#[inline]
pub fn last(bytes: &[u8], byte: u8) -> Option<usize> {
    bytes.iter().rposition(|&b| b == byte)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn matches_a_byte_loop(bytes in proptest::collection::vec(any::<u8>(), 0..40), below in 0u8..=128, a: u8, b: u8) {
            let expected = bytes.iter().any(|&x| x < below || x == a || x == b);
            prop_assert_eq!(any_below_or_eq(&bytes, below, a, b), expected);
        }

        #[test]
        fn find_matches_a_byte_loop(bytes in proptest::collection::vec(any::<u8>(), 0..40), below in 0u8..=128, a: u8, b: u8) {
            let expected = bytes.iter().position(|&x| x < below || x == a || x == b);
            prop_assert_eq!(find_below_or_eq(&bytes, below, a, b), expected);
        }

        /// Bytes drawn near the tested values (and the padding bytes), so that matches are
        /// frequent, often several in one word.
        #[test]
        fn find_matches_a_byte_loop_near_the_tested_values(
            bytes in proptest::collection::vec(prop_oneof![0u8..4, 30u8..36, 90u8..94, 126u8..130, 250u8..=255, any::<u8>()], 0..40),
            below in prop_oneof![Just(0u8), Just(1u8), 30u8..36, Just(128u8)],
            a in prop_oneof![Just(0xffu8), Just(0xfeu8), 30u8..36, any::<u8>()],
            b in prop_oneof![Just(0xffu8), Just(0xfdu8), 90u8..94, any::<u8>()],
        ) {
            let expected = bytes.iter().position(|&x| x < below || x == a || x == b);
            prop_assert_eq!(find_below_or_eq(&bytes, below, a, b), expected);
        }

        #[test]
        fn finds_one_special_byte_anywhere(len in 0usize..40, at in 0usize..40, special in prop_oneof![Just(0x1fu8), Just(b'"'), Just(b'\\')]) {
            let mut bytes = vec![b'a'; len];
            if at < len {
                bytes[at] = special;
            }
            prop_assert_eq!(any_below_or_eq(&bytes, 0x20, b'"', b'\\'), at < len);
        }
    }
}
