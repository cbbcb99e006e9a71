//! Notices when the whole process stood still: a SIGSTOP, a long pause of a suspended VM or a
//! hung host. Exactly-once mode asks it to tell a transaction the broker timed out while
//! auditflow waited for it (recover: new producer) from one that timed out while auditflow itself
//! was frozen, when a replacement may have taken over its `transactional.id` (a zombie: stop).
//!
//! A thread sleeps [`TICK`] at a time; a sleep that took [`STALL`] longer than asked means the
//! process was not running, and the time it ended is remembered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the watching thread sleeps between looks.
pub const TICK: Duration = Duration::from_millis(250);
/// How much longer than [`TICK`] a sleep must take to count as a stall: far above scheduling
/// delays on a loaded machine, far below a transaction timeout.
pub const STALL: Duration = Duration::from_secs(5);

/// The end of the latest stall of the process, shared with its watching thread.
#[derive(Debug, Clone)]
pub struct StallWatch {
    base: Instant,
    /// Milliseconds from `base` to the end of the latest stall, plus one; 0 for none.
    last_end: Arc<AtomicU64>,
    /// Milliseconds from `base` to the watching thread's latest look.
    last_look: Arc<AtomicU64>,
    /// Whether a watching thread feeds this watch.
    threaded: bool,
}

impl StallWatch {
    /// A watch with no thread: only [`StallWatch::record`] feeds it.
    pub fn new() -> Self {
        StallWatch { base: Instant::now(), last_end: Arc::default(), last_look: Arc::default(), threaded: false }
    }

    /// Starts the watching thread (it runs until the process exits).
    pub fn start() -> Self {
        let mut watch = Self::new();
        watch.threaded = true;
        let feed = watch.clone();
        let spawned = std::thread::Builder::new().name("auditflow-stall-watch".into()).spawn(move || loop {
            let before = Instant::now();
            std::thread::sleep(TICK);
            feed.record(before, Instant::now());
        });
        if let Err(error) = spawned {
            tracing::warn!(message = "Could not start the stall watch; a fenced producer is always taken for a zombie.", %error);
            // No thread: report a stall at every question, the safe answer.
            watch.last_end.store(u64::MAX, Ordering::Relaxed);
        }
        watch
    }

    /// Takes one look: a sleep from `before` to `after` longer than [`TICK`] + [`STALL`] was a
    /// stall ending at `after`.
    pub fn record(&self, before: Instant, after: Instant) {
        self.last_look.fetch_max(self.ms(after), Ordering::Relaxed);
        if after.saturating_duration_since(before) > TICK + STALL {
            self.last_end.fetch_max(self.ms(after) + 1, Ordering::Relaxed);
        }
    }

    /// Whether a stall ended at or after `since`. Also true while the watching thread has not
    /// looked for longer than a stall (the process has just resumed and the thread not yet).
    pub fn stalled_since(&self, since: Instant) -> bool {
        let last = self.last_end.load(Ordering::Relaxed);
        let look = self.last_look.load(Ordering::Relaxed);
        last == u64::MAX
            || last > self.ms(since)
            || (self.threaded && self.ms(Instant::now()).saturating_sub(look) > (TICK + STALL).as_millis() as u64)
    }

    /// Milliseconds from `base` to `at` (0 before it).
    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64
    }
}

impl Default for StallWatch {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sleep_far_longer_than_asked_counts_and_only_after_the_moment_asked() {
        let watch = StallWatch::new();
        let t0 = watch.base + Duration::from_secs(100);
        watch.record(t0, t0 + TICK + Duration::from_secs(1));
        assert!(!watch.stalled_since(watch.base), "a slow tick is not a stall");
        watch.record(t0, t0 + TICK + STALL + Duration::from_secs(1));
        assert!(watch.stalled_since(t0), "the stall ended after t0");
        assert!(!watch.stalled_since(t0 + Duration::from_secs(30)), "it ended before that");
    }

    #[test]
    fn a_running_watch_sees_no_stall() {
        let watch = StallWatch::start();
        let since = Instant::now();
        std::thread::sleep(TICK * 2);
        assert!(!watch.stalled_since(since));
    }
}
