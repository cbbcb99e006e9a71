//! Unit tests of the windowing core, and a property test against a naive model.

use proptest::prelude::*;
use serde_json::Map;

use super::*;
use crate::model::{AuditEvent, SourceRecord};
use crate::pipeline::enrich::{enrich, SeverityLadder};

const T: &str = "audit.raw";

/// An allowed `deploy` of `x@1` by `user:a` in mode `fixed`.
fn ev(trace: &str, ts_ms: i64, partition: i32, offset: i64) -> EnrichedEvent {
    let event = AuditEvent {
        ts: rfc3339(ts_ms),
        ts_ms,
        actor: "user:a".into(),
        action: "deploy".into(),
        artifact: "x@1".into(),
        policy: "p".into(),
        target: "aws:r:c".into(),
        mode: "fixed".into(),
        trace: trace.into(),
        result: "allowed".into(),
        decision: Decision::Allowed,
        reason: None,
        extra: Map::new(),
    };
    let source = SourceRecord { topic: T.into(), partition, offset, ..SourceRecord::default() };
    enrich(event, &source, 0, &SeverityLadder::default())
}

fn denied(mut e: EnrichedEvent) -> EnrichedEvent {
    e.event.result = "denied".into();
    e.event.decision = Decision::Denied;
    e.event_id = crate::pipeline::enrich::event_id(&e.event);
    e
}

fn settings(gap: u64, max_duration: u64, lateness: u64) -> WindowSettings {
    WindowSettings { gap_ms: gap, max_duration_ms: max_duration, allowed_lateness_ms: lateness, ..WindowSettings::default() }
}

fn summaries(out: &[WindowOutput]) -> Vec<&TraceSummary> {
    out.iter()
        .filter_map(|o| match o {
            WindowOutput::Summary(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn only_summary(out: &[WindowOutput]) -> &TraceSummary {
    let all = summaries(out);
    assert_eq!(all.len(), 1, "{out:?}");
    all[0]
}

fn offsets(s: &TraceSummary) -> Vec<i64> {
    s.steps.iter().map(|s| s.offset).collect()
}

#[test]
fn closes_on_gap_when_the_watermark_passes_last_plus_gap() {
    let mut w = Windows::new(settings(100, 10_000, 10));
    assert!(w.add(&ev("a", 0, 0, 0), 0).is_empty());
    assert!(w.add(&ev("a", 50, 0, 1), 0).is_empty());
    assert!(w.add(&ev("b", 159, 0, 2), 0).is_empty(), "watermark 149 < 150");
    let out = w.add(&ev("b", 160, 0, 3), 0);
    let s = only_summary(&out);
    assert_eq!((&*s.trace, s.start_ms, s.end_ms, s.duration_ms()), ("a", 0, 50, 50));
    assert_eq!((s.close_reason, s.truncated, s.events(), s.allowed, s.denied), (CloseReason::Gap, false, 2, 2, 0));
    assert_eq!(s.summary_id, summary_id("a", 0));
    assert_eq!(w.open_traces(), 1);
    assert_eq!(w.watermark(T, 0), Some(150));
}

#[test]
fn a_new_event_after_the_gap_starts_a_new_window_of_the_same_trace() {
    let mut w = Windows::new(settings(100, 10_000, 0));
    w.add(&ev("a", 0, 0, 0), 0);
    // The event that moves the watermark past the window closes it first, then opens a new one.
    let out = w.add(&ev("a", 100, 0, 1), 0);
    assert_eq!(offsets(only_summary(&out)), vec![0]);
    let out = w.flush_all();
    let s = only_summary(&out);
    assert_eq!((s.start_ms, s.close_reason), (100, CloseReason::Flush));
}

#[test]
fn closes_on_max_duration_and_the_next_event_opens_a_new_window() {
    let mut w = Windows::new(settings(100, 200, 0));
    for (i, ts) in [0, 90, 180].into_iter().enumerate() {
        assert!(w.add(&ev("a", ts, 0, i as i64), 0).is_empty());
    }
    let out = w.add(&ev("b", 200, 0, 3), 0);
    let s = only_summary(&out);
    assert_eq!((s.close_reason, s.truncated, offsets(s)), (CloseReason::MaxDuration, false, vec![0, 1, 2]));
    assert!(w.add(&ev("a", 210, 0, 4), 0).is_empty());
    let out = w.flush_all();
    let a = summaries(&out).into_iter().find(|s| &*s.trace == "a").unwrap();
    assert_eq!((a.start_ms, offsets(a)), (210, vec![4]));
    assert_ne!(a.summary_id, s.summary_id);
}

#[test]
fn out_of_order_events_are_ordered_by_time_then_offset() {
    let mut w = Windows::new(settings(1_000, 10_000, 0));
    for (ts, offset) in [(100, 0), (50, 1), (75, 5), (75, 4), (120, 6), (10, 7)] {
        assert!(w.add(&ev("a", ts, 0, offset), 0).is_empty(), "added to the open window");
    }
    let out = w.flush_all();
    let s = only_summary(&out);
    assert_eq!(
        s.steps.iter().map(|s| (s.ts_ms, s.offset)).collect::<Vec<_>>(),
        vec![(10, 7), (50, 1), (75, 4), (75, 5), (100, 0), (120, 6)]
    );
    assert_eq!((s.start_ms, s.end_ms), (10, 120));
    assert_eq!(s.summary_id, summary_id("a", 10));
}

#[test]
fn late_events_are_emitted_counted_and_name_their_summary() {
    let mut w = Windows::new(settings(100, 10_000, 10));
    w.add(&ev("a", 0, 0, 0), 0);
    w.add(&ev("a", 40, 0, 1), 0);
    let out = w.add(&ev("b", 500, 0, 2), 0);
    let closed = only_summary(&out).summary_id;
    // Within the gap of the closed window: late, and names it.
    let out = w.add(&ev("a", 20, 0, 3), 0);
    let [WindowOutput::Late(late)] = out.as_slice() else { panic!("{out:?}") };
    assert_eq!((late.summary_id, late.reason, late.watermark_ms), (Some(closed), LateReason::WindowClosed, 490));
    assert_eq!(late.event.provenance.offset, 3);
    // No window of its trace nearby: late without a summary id.
    let out = w.add(&ev("c", 100, 0, 4), 0);
    let [WindowOutput::Late(late)] = out.as_slice() else { panic!("{out:?}") };
    assert_eq!((late.summary_id, late.reason), (None, LateReason::BehindWatermark));
    let mut json = Vec::new();
    out[0].to_json(&mut json);
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        (json["kind"].as_str(), json["reason"].as_str(), json["source"]["offset"].as_i64()),
        (Some("late_event"), Some("behind_watermark"), Some(4))
    );
    assert!(json.get("summary_id").is_none());
    assert_eq!(json["event"]["trace"], "c");
    assert_eq!(w.late_events(), 2);
    // Out of order but not past its window's close: a new window, not late (watermark 490 < 400 + 100).
    assert!(w.add(&ev("a", 400, 0, 5), 0).is_empty());
    // Out of order for an open window: added whatever the watermark says.
    assert!(w.add(&ev("b", 5, 0, 6), 0).is_empty());
    assert_eq!(w.late_events(), 2);
    let out = w.flush_all();
    let b = summaries(&out).into_iter().find(|s| &*s.trace == "b").unwrap();
    assert_eq!(offsets(b), vec![6, 2]);
}

#[test]
fn capacity_closes_the_window_with_the_oldest_first_event_truncated() {
    let mut w = Windows::new(WindowSettings { max_open_traces: 2, ..settings(1_000, 10_000, 0) });
    w.add(&ev("a", 10, 0, 0), 0);
    w.add(&ev("b", 5, 0, 1), 0);
    w.add(&ev("a", 11, 0, 2), 0);
    let out = w.add(&ev("c", 20, 0, 3), 0);
    let s = only_summary(&out);
    assert_eq!((&*s.trace, s.close_reason, s.truncated), ("b", CloseReason::Capacity, true));
    // An out-of-order event makes `a` the oldest.
    w.add(&ev("a", 1, 0, 4), 0);
    let out = w.add(&ev("d", 30, 0, 5), 0);
    let s = only_summary(&out);
    assert_eq!((&*s.trace, offsets(s)), ("a", vec![4, 0, 2]));
    assert_eq!((w.open_traces(), w.truncated_windows()), (2, 2));
}

#[test]
fn max_events_closes_truncated_and_further_events_open_a_new_window() {
    let mut w = Windows::new(WindowSettings { max_events_per_trace: 3, ..settings(1_000, 10_000, 0) });
    assert!(w.add(&ev("a", 0, 0, 0), 0).is_empty());
    assert!(w.add(&ev("a", 1, 0, 1), 0).is_empty());
    let out = w.add(&ev("a", 2, 0, 2), 0);
    let s = only_summary(&out);
    assert_eq!((s.close_reason, s.truncated, s.events()), (CloseReason::MaxEvents, true, 3));
    assert_eq!(w.open_traces(), 0);
    assert!(w.add(&ev("a", 3, 0, 3), 0).is_empty());
    assert_eq!(w.open_traces(), 1);
    assert_eq!(w.truncated_windows(), 1);
}

#[test]
fn idle_partitions_release_their_windows() {
    let mut w = Windows::new(WindowSettings { idle_timeout_ms: 1_000, ..settings(100, 10_000, 0) });
    w.add(&ev("a", 0, 0, 0), 0);
    w.add(&ev("b", 0, 1, 0), 500);
    assert!(w.advance(999).is_empty());
    let out = w.advance(1_000);
    let s = only_summary(&out);
    assert_eq!((&*s.trace, s.close_reason, s.truncated), ("a", CloseReason::Idle, false));
    assert_eq!(w.watermark(T, 0), Some(i64::MAX));
    assert!(w.advance(1_499).is_empty());
    assert_eq!(&*only_summary(&w.advance(1_500)).trace, "b");
    assert!(w.advance(5_000).is_empty(), "already idle");
    // The next event makes the partition active again with its old watermark.
    assert!(w.add(&ev("a", 10, 0, 1), 6_000).is_empty());
    assert_eq!((w.open_traces(), w.watermark(T, 0)), (1, Some(10)));
}

#[test]
fn held_offset_is_the_lowest_offset_of_an_open_window_per_partition() {
    let mut w = Windows::new(settings(100, 10_000, 0));
    assert_eq!(w.held_offset(T, 0), None);
    w.add(&ev("a", 0, 0, 5), 0);
    w.add(&ev("b", 1, 0, 6), 0);
    w.add(&ev("a", 2, 0, 7), 0);
    w.add(&ev("a", 3, 1, 3), 0);
    assert_eq!((w.held_offset(T, 0), w.held_offset(T, 1), w.held_offset("other", 0)), (Some(5), Some(3), None));
    // `a` spans partitions 0 and 1: it closes only once both watermarks pass it.
    w.add(&ev("c", 150, 0, 8), 0);
    assert_eq!(w.open_traces(), 2, "b closed, a held by partition 1");
    assert_eq!((w.held_offset(T, 0), w.held_offset(T, 1)), (Some(5), Some(3)));
    let out = w.add(&ev("d", 200, 1, 4), 0);
    assert_eq!(offsets(only_summary(&out)), vec![5, 7, 3]);
    assert_eq!((w.held_offset(T, 0), w.held_offset(T, 1)), (Some(8), Some(4)));
    // Revocation of partition 1 flushes only its windows and forgets its watermark.
    let out = w.flush_partition(T, 1);
    assert_eq!(&*only_summary(&out).trace, "d");
    assert_eq!((w.held_offset(T, 1), w.watermark(T, 1)), (None, None));
    assert_eq!(w.held_offset(T, 0), Some(8));
    assert!(w.flush_partition(T, 9).is_empty());
    let out = w.flush_all();
    assert_eq!(summaries(&out).len(), 1);
    assert_eq!((w.held_offset(T, 0), w.open_traces()), (None, 0));
}

#[test]
fn windows_spanning_partitions_close_on_the_lower_watermark_or_idleness() {
    let mut w = Windows::new(WindowSettings { idle_timeout_ms: 1_000, ..settings(100, 10_000, 0) });
    w.add(&ev("a", 0, 0, 0), 0);
    w.add(&ev("a", 10, 1, 0), 0);
    assert!(w.add(&ev("x", 1_000, 0, 1), 0).is_empty(), "partition 1 still at 10");
    // Partition 1 goes idle first: `a` closes with reason idle.
    w.add(&ev("x", 1_001, 0, 2), 900);
    let out = w.advance(1_000);
    assert_eq!((&*only_summary(&out).trace, only_summary(&out).close_reason), ("a", CloseReason::Idle));
}

#[test]
fn events_far_ahead_of_the_wall_clock_do_not_move_the_watermark() {
    let mut w = Windows::new(WindowSettings { max_ahead_ms: 1_000, ..settings(100, 10_000, 0) });
    w.add(&ev("a", 5_000, 0, 0), 5_000);
    // Stamped a year ahead: windowed, but the watermark stays at 5 000, so `a` stays open.
    assert!(w.add(&ev("b", 5_000 + 31_536_000_000, 0, 1), 5_000).is_empty());
    assert_eq!((w.watermark(T, 0), w.open_traces()), (Some(5_000), 2));
    // Within the allowance, it moves the watermark as usual.
    let out = w.add(&ev("c", 5_900, 0, 2), 5_000);
    assert_eq!(&*only_summary(&out).trace, "a");
    // Without the guard (the default), the skewed event closes everything.
    let mut w = Windows::new(settings(100, 10_000, 0));
    w.add(&ev("a", 5_000, 0, 0), 5_000);
    assert_eq!(summaries(&w.add(&ev("b", 5_000 + 31_536_000_000, 0, 1), 5_000)).len(), 1);
}

#[test]
fn windows_can_move_to_another_thread() {
    fn send<T: Send>() {}
    send::<Windows>();
    send::<WindowOutput>();
}

#[test]
fn summaries_and_rule_hits_are_deterministic() {
    let rules = vec![
        RuleConfig::DenyCount { name: "two-denials".into(), min: 2, severity: 8 },
        RuleConfig::DenyThenAllow { name: "flip".into(), severity: 7 },
        RuleConfig::ModeChange { name: "mode".into(), severity: 5 },
    ];
    let run = || {
        let mut w = Windows::new(WindowSettings { rules: rules.clone(), ..settings(100, 10_000, 0) });
        let mut out = Vec::new();
        out.extend(w.add(&denied(ev("a", 0, 0, 0)), 0));
        out.extend(w.add(&denied(ev("a", 5, 0, 1)), 0));
        out.extend(w.add(&ev("a", 9, 0, 2), 0));
        out.extend(w.add(&ev("b", 500, 0, 3), 0));
        out
    };
    let out = run();
    assert_eq!(out, run());
    let [WindowOutput::Summary(s), WindowOutput::RuleHit(count), WindowOutput::RuleHit(flip)] = out.as_slice() else { panic!("{out:?}") };
    assert_eq!(s.rule_hits.iter().map(|r| &**r).collect::<Vec<_>>(), vec!["two-denials", "flip"]);
    assert_eq!((s.allowed, s.denied), (1, 2));
    assert_eq!((count.rule_type, count.events.len(), count.ts_ms), (RuleType::DenyCount, 2, 5));
    assert_eq!(flip.hit_id, hit_id(s.summary_id, "flip", 0));
    assert_eq!(flip.events.iter().map(|e| e.offset).collect::<Vec<_>>(), vec![0, 2]);
    let mut json = Vec::new();
    out[2].to_json(&mut json);
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["alert"], "sequence_rule");
    assert_eq!(json["alert_id"], flip.hit_id.to_string());
    assert_eq!(json["rule_type"], "deny_then_allow");
    assert_eq!(json["summary_id"], s.summary_id.to_string());
    assert_eq!(json["event_ids"][1], out_event_id(&ev("a", 9, 0, 2)));
    assert_eq!(json["events"][0]["source"]["offset"], 0);
    assert_eq!(json["ts"], "1970-01-01T00:00:00.009Z");
    assert_eq!(out[2].trace(), "a");
    assert_eq!(out[0].timestamp_ms(), 9);
}

fn out_event_id(e: &EnrichedEvent) -> String {
    e.event_id.clone()
}

#[test]
fn state_stays_bounded_under_many_distinct_traces() {
    let mut w = Windows::new(WindowSettings { max_open_traces: 100, remember_closed: 50, ..settings(1_000_000, 10_000_000, 0) });
    let mut closed = 0;
    for i in 0..10_000 {
        let mut e = ev(&format!("t{i}"), i, 0, i);
        e.event.actor = format!("user:{i}");
        closed += summaries(&w.add(&e, 0)).len();
    }
    assert_eq!((w.open_traces(), closed), (100, 9_900));
    assert!(w.closed.len() <= 50);
    assert!(w.interner.len() <= 2 * 4096, "purged: {}", w.interner.len());
    assert!(w.interner.texts() <= 2 * 4096, "purged: {}", w.interner.texts());
    assert_eq!(w.held_offset(T, 0), Some(9_900));
    assert!(w.approx_bytes() < 1_500_000, "interner at most 4096 entries: {}", w.approx_bytes());
}

/// A naive model of the documented semantics: vectors and scans, no indexes.
mod naive {
    use std::collections::{BTreeMap, BTreeSet};

    /// (trace, ts, partition, offset).
    pub type Ev = (u8, i64, i32, i64);

    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Out {
        /// (trace, start, end, (partition, offset) in step order, reason, truncated)
        Summary(u8, i64, i64, Vec<(i32, i64)>, &'static str, bool),
        /// (trace, partition, offset, id of the named window)
        Late(u8, i32, i64, Option<uuid::Uuid>),
    }

    struct Win {
        trace: u8,
        seq: u64,
        steps: Vec<Ev>,
    }

    impl Win {
        fn first(&self) -> i64 {
            self.steps.iter().map(|e| e.1).min().unwrap()
        }
        fn last(&self) -> i64 {
            self.steps.iter().map(|e| e.1).max().unwrap()
        }
        fn parts(&self) -> BTreeSet<i32> {
            self.steps.iter().map(|e| e.2).collect()
        }
    }

    /// Sorted, and without late events' summary ids when `blind`.
    pub fn sorted(mut out: Vec<Out>, blind: bool) -> Vec<Out> {
        if blind {
            for o in &mut out {
                if let Out::Late(_, _, _, id) = o {
                    *id = None;
                }
            }
        }
        out.sort();
        out
    }

    pub struct Model {
        pub gap: i64,
        pub max_duration: i64,
        pub lateness: i64,
        pub idle: i64,
        pub max_open: usize,
        pub max_events: usize,
        /// partition -> (max ts, idle, last wall)
        parts: BTreeMap<i32, (Option<i64>, bool, i64)>,
        wins: Vec<Win>,
        closed: BTreeMap<u8, (i64, i64)>,
        seq: u64,
    }

    impl Model {
        pub fn new(gap: i64, max_duration: i64, lateness: i64, idle: i64, max_open: usize, max_events: usize) -> Self {
            Model {
                gap,
                max_duration,
                lateness,
                idle,
                max_open,
                max_events,
                parts: BTreeMap::new(),
                wins: Vec::new(),
                closed: BTreeMap::new(),
                seq: 0,
            }
        }

        fn wm(&self, p: i32) -> i64 {
            match self.parts.get(&p) {
                Some((_, true, _)) => i64::MAX,
                Some((Some(max), false, _)) => max - self.lateness,
                _ => i64::MIN,
            }
        }

        fn deadline(&self, w: &Win) -> (i64, &'static str) {
            let (g, d) = (w.last() + self.gap, w.first() + self.max_duration);
            if d <= g {
                (d, "max_duration")
            } else {
                (g, "gap")
            }
        }

        fn due(&self, w: &Win) -> Option<&'static str> {
            let (deadline, reason) = self.deadline(w);
            w.parts().iter().all(|&p| self.wm(p) >= deadline).then_some(reason)
        }

        fn close(&mut self, i: usize, reason: &'static str, truncated: bool, out: &mut Vec<Out>) {
            let mut w = self.wins.remove(i);
            w.steps.sort_by_key(|e| (e.1, e.3, e.2));
            let (first, last) = (w.first(), w.last());
            self.closed.insert(w.trace, (first, last));
            out.push(Out::Summary(w.trace, first, last, w.steps.iter().map(|e| (e.2, e.3)).collect(), reason, truncated));
        }

        fn close_due(&mut self, idle: bool, out: &mut Vec<Out>) {
            while let Some((i, reason)) = (0..self.wins.len()).find_map(|i| self.due(&self.wins[i]).map(|r| (i, r))) {
                self.close(i, if idle { "idle" } else { reason }, false, out);
            }
        }

        pub fn add(&mut self, e: Ev, now: i64) -> Vec<Out> {
            let mut out = Vec::new();
            let st = self.parts.entry(e.2).or_insert((None, false, 0));
            *st = (Some(st.0.map_or(e.1, |m| m.max(e.1))), false, now);
            self.close_due(false, &mut out);
            let wm = self.wm(e.2);
            if let Some(i) = self.wins.iter().position(|w| w.trace == e.0) {
                self.wins[i].steps.push(e);
                if let Some(reason) = self.due(&self.wins[i]) {
                    self.close(i, reason, false, &mut out);
                } else if self.wins[i].steps.len() >= self.max_events {
                    self.close(i, "max_events", true, &mut out);
                }
            } else if wm >= e.1 + self.gap.min(self.max_duration) {
                let named = self.closed.get(&e.0).filter(|&&(s, end)| e.1 >= s - self.gap && e.1 <= end + self.gap);
                let id = named.map(|&(s, _)| super::summary_id(&format!("t{}", e.0), s));
                out.push(Out::Late(e.0, e.2, e.3, id));
            } else {
                while self.wins.len() >= self.max_open {
                    let i = (0..self.wins.len()).min_by_key(|&i| (self.wins[i].first(), self.wins[i].seq)).unwrap();
                    self.close(i, "capacity", true, &mut out);
                }
                self.wins.push(Win { trace: e.0, seq: self.seq, steps: vec![e] });
                self.seq += 1;
                if self.max_events == 1 {
                    let i = self.wins.len() - 1;
                    self.close(i, "max_events", true, &mut out);
                }
            }
            out
        }

        pub fn advance(&mut self, now: i64) -> Vec<Out> {
            let mut out = Vec::new();
            let parts: Vec<i32> = self.parts.keys().copied().collect();
            for p in parts {
                let st = self.parts.get_mut(&p).unwrap();
                if !st.1 && st.0.is_some() && now - st.2 >= self.idle {
                    st.1 = true;
                    self.close_due(true, &mut out);
                }
            }
            out
        }

        pub fn flush_partition(&mut self, p: i32) -> Vec<Out> {
            let mut out = Vec::new();
            while let Some(i) = (0..self.wins.len())
                .filter(|&i| self.wins[i].parts().contains(&p))
                .min_by_key(|&i| (self.wins[i].first(), self.wins[i].seq))
            {
                self.close(i, "flush", false, &mut out);
            }
            self.parts.remove(&p);
            out
        }

        pub fn flush_all(&mut self) -> Vec<Out> {
            let mut out = Vec::new();
            while let Some(i) = (0..self.wins.len()).min_by_key(|&i| (self.wins[i].first(), self.wins[i].seq)) {
                self.close(i, "flush", false, &mut out);
            }
            self.parts.clear();
            out
        }

        /// Lowest offset of partition `p` held by an open window.
        pub fn held(&self, p: i32) -> Option<i64> {
            self.wins.iter().flat_map(|w| &w.steps).filter(|e| e.2 == p).map(|e| e.3).min()
        }
    }
}

/// The core's outputs in the naive model's terms. With forced hash collisions, closed windows
/// are remembered per hash, not per trace: late events' summary ids are then not compared.
fn as_naive(out: &[WindowOutput], collide: bool) -> Vec<naive::Out> {
    let trace = |t: &str| t[1..].parse::<u8>().unwrap();
    let mapped: Vec<naive::Out> = out
        .iter()
        .filter_map(|o| match o {
            WindowOutput::Summary(s) => {
                assert_eq!(s.summary_id, summary_id(&s.trace, s.start_ms));
                Some(naive::Out::Summary(
                    trace(&s.trace),
                    s.start_ms,
                    s.end_ms,
                    s.steps.iter().map(|st| (st.partition, st.offset)).collect(),
                    s.close_reason.as_str(),
                    s.truncated,
                ))
            }
            WindowOutput::Late(l) => {
                let p = &l.event.provenance;
                Some(naive::Out::Late(trace(&l.event.event.trace), p.partition, p.offset, l.summary_id))
            }
            WindowOutput::RuleHit(_) => None,
        })
        .collect();
    naive::sorted(mapped, collide)
}

#[derive(Debug, Clone)]
enum Op {
    /// (trace, time step, partition, wall step)
    Add(u8, i64, i32, i64),
    Advance(i64),
    Flush(i32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0u8..6, -60i64..120, 0i32..3, 0i64..40).prop_map(|(t, dt, p, dw)| Op::Add(t, dt, p, dw)),
        2 => (0i64..400).prop_map(Op::Advance),
        1 => (0i32..3).prop_map(Op::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Against the naive model: the same outputs after every operation; every event ends in exactly
    /// one summary or one late output (conservation); held_offset is exactly the lowest offset held;
    /// bounds hold; steps are ordered. Half the cases force trace-hash collisions.
    #[test]
    fn matches_the_naive_model(
        gap in 1u64..200, max_duration in 1u64..400, lateness in 0u64..80, idle in 1u64..300,
        max_open in 1usize..5, max_events in 1usize..6, ops in prop::collection::vec(op(), 1..120),
        collide in any::<bool>(),
    ) {
        let settings = WindowSettings {
            gap_ms: gap, max_duration_ms: max_duration, allowed_lateness_ms: lateness, idle_timeout_ms: idle,
            max_open_traces: max_open, max_events_per_trace: max_events, max_ahead_ms: 0, remember_closed: 1_000, rules: Vec::new(),
        };
        let mut w = Windows::new(settings);
        if collide {
            w.force_trace_collisions();
        }
        let mut model = naive::Model::new(gap as i64, max_duration as i64, lateness as i64, idle as i64, max_open, max_events);
        let (mut ts, mut now, mut next_offset) = (1_000i64, 0i64, [0i64; 3]);
        let mut added = Vec::new();
        let mut seen = Vec::new();
        for op in ops {
            let (got, want) = match op {
                Op::Add(t, dt, p, dw) => {
                    ts = (ts + dt).clamp(0, 4_000);
                    now += dw;
                    let offset = next_offset[p as usize];
                    next_offset[p as usize] += 1;
                    added.push((p, offset));
                    (w.add(&ev(&format!("t{t}"), ts, p, offset), now), model.add((t, ts, p, offset), now))
                }
                Op::Advance(dw) => {
                    now += dw;
                    (w.advance(now), model.advance(now))
                }
                Op::Flush(p) => (w.flush_partition(T, p), model.flush_partition(p)),
            };
            let got = as_naive(&got, collide);
            prop_assert_eq!(&got, &naive::sorted(want, collide));
            seen.extend(got);
            for p in 0..3 {
                prop_assert_eq!(w.held_offset(T, p), model.held(p));
            }
            prop_assert!(w.open_traces() <= max_open);
        }
        let got = as_naive(&w.flush_all(), collide);
        prop_assert_eq!(&got, &naive::sorted(model.flush_all(), collide));
        seen.extend(got);
        let mut emitted = Vec::new();
        for out in &seen {
            match out {
                naive::Out::Summary(_, _, _, steps, _, _) => {
                    prop_assert!(steps.len() <= max_events);
                    emitted.extend(steps.iter().copied());
                }
                naive::Out::Late(_, p, offset, _) => emitted.push((*p, *offset)),
            }
        }
        emitted.sort();
        added.sort();
        prop_assert_eq!(emitted, added, "every event in exactly one summary or late output");
        prop_assert_eq!(w.open_traces(), 0);
        for p in 0..3 {
            prop_assert_eq!(w.held_offset(T, p), None);
        }
    }
}

#[test]
fn interner_shares_combinations_and_each_field_text() {
    let mut interner = super::intern::Interner::default();
    let a = interner.intern(&ev("t1", 0, 0, 0));
    let same = interner.intern(&ev("t2", 5, 1, 9));
    assert!(Arc::ptr_eq(&a, &same), "same fields, one StepFields");
    let mut other = ev("t3", 0, 0, 1);
    other.event.artifact = "y@2".into();
    let b = interner.intern(&other);
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!((&*b.artifact, &*b.actor), ("y@2", "user:a"));
    // A new combination reuses the texts it shares with the first.
    assert!(Arc::ptr_eq(&a.actor, &b.actor) && Arc::ptr_eq(&a.policy, &b.policy) && Arc::ptr_eq(&a.topic, &b.topic));
    assert!(!Arc::ptr_eq(&a.artifact, &b.artifact));
    // The decision is part of the combination: same texts, another decision, other fields.
    let mut denied = ev("t4", 0, 0, 2);
    denied.event.decision = Decision::Denied;
    let c = interner.intern(&denied);
    assert!(!Arc::ptr_eq(&a, &c) && c.decision == Decision::Denied && Arc::ptr_eq(&a.result, &c.result));
    assert_eq!((interner.len(), interner.texts()), (3, 8));
}
