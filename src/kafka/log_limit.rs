//! Warnings about single records, rate limited: a stream of malformed records, or a topic that
//! refuses every delivery, must not turn the log into a copy of the stream. Of each kind, the
//! first [`BURST`] occurrences of every [`INTERVAL`] are logged, the rest counted; the next line
//! logged says how many were left out. The metrics count every occurrence.

use std::time::{Duration, Instant};

/// The length of a rate-limit window.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Lines of one kind logged per window.
pub const BURST: u32 = 5;

/// The rate limit of one kind of warning.
#[derive(Debug, Default)]
pub struct LogLimit {
    /// When the current window ends; `None` before the first occurrence.
    window_end: Option<Instant>,
    /// Lines logged in the current window.
    logged: u32,
    /// Occurrences not logged since the last line.
    left_out: u64,
}

impl LogLimit {
    /// Whether an occurrence at `now` may be logged; if so, how many were left out since the
    /// last line (to be written with it).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.window_end.is_none_or(|end| now >= end) {
            self.window_end = Some(now + INTERVAL);
            self.logged = 0;
        }
        if self.logged < BURST {
            self.logged += 1;
            Some(std::mem::take(&mut self.left_out))
        } else {
            self.left_out += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_window_then_a_count_of_those_left_out() {
        let start = Instant::now();
        let mut limit = LogLimit::default();
        for _ in 0..BURST {
            assert_eq!(limit.allow(start), Some(0));
        }
        for i in 1..=1_000u32 {
            assert_eq!(limit.allow(start + INTERVAL * i / 1_001), None);
        }
        assert_eq!(limit.allow(start + INTERVAL), Some(1_000), "a new window: logged, with the count");
        assert_eq!(limit.allow(start + INTERVAL + Duration::from_millis(1)), Some(0));
        for _ in 2..BURST {
            assert_eq!(limit.allow(start + INTERVAL + Duration::from_millis(2)), Some(0));
        }
        assert_eq!(limit.allow(start + INTERVAL + Duration::from_millis(3)), None);
        assert_eq!(limit.allow(start + INTERVAL * 5), Some(1), "after a quiet spell the next is logged at once");
    }
}
