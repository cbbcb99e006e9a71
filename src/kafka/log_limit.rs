//! Warnings about single records, rate limited: a stream of malformed records, or a topic that
//! refuses every delivery, must not turn the log into a copy of the stream. The first occurrence
//! is logged at once; after it, at most one line per [`INTERVAL`], which says how many were left
//! out. The metrics count every occurrence.

use std::time::{Duration, Instant};

/// The shortest time between two lines of one kind.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The rate limit of one kind of warning.
#[derive(Debug, Default)]
pub struct LogLimit {
    /// When the next line may be written; `None` before the first.
    next: Option<Instant>,
    /// Occurrences not logged since the last line.
    left_out: u64,
}

impl LogLimit {
    /// Whether an occurrence at `now` may be logged; if so, how many were left out since the
    /// last line (to be written with it).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.next {
            Some(next) if now < next => {
                self.left_out += 1;
                None
            }
            _ => {
                self.next = Some(now + INTERVAL);
                Some(std::mem::take(&mut self.left_out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_per_interval_with_the_count_left_out() {
        let start = Instant::now();
        let mut limit = LogLimit::default();
        assert_eq!(limit.allow(start), Some(0));
        for i in 1..=1_000u32 {
            assert_eq!(limit.allow(start + INTERVAL * i / 1_001), None);
        }
        assert_eq!(limit.allow(start + INTERVAL), Some(1_000));
        assert_eq!(limit.allow(start + INTERVAL + Duration::from_millis(1)), None);
        assert_eq!(limit.allow(start + INTERVAL * 5), Some(1), "after a quiet spell the next is logged at once");
    }
}
