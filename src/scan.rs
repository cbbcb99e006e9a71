//! Word-at-a-time byte scans for the per-record hot paths (JSON escaping, control-character
//! checks): eight bytes per step instead of one, with no `unsafe`.

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
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Exact whole-word tests: "some byte is below n" (n <= 128), and "some byte is zero".
    let has_below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGHS != 0;
    let hit = |w: u64| has_below(w, below) || has_below(w ^ (ONES * u64::from(a)), 1) || has_below(w ^ (ONES * u64::from(b)), 1);
    let is_match = |x: u8| x < below || x == a || x == b;
    let mut at = 0;
    while at + 8 <= bytes.len() {
        if hit(u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))) {
            // The word holds a match: find it among its eight bytes.
            return bytes[at..at + 8].iter().position(|&x| is_match(x)).map(|i| at + i);
        }
        at += 8;
    }
    bytes[at..].iter().position(|&x| is_match(x)).map(|i| at + i)
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
