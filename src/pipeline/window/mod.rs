//! Event-time session windows per trace id: pure, synchronous, bounded. No Kafka, no clock, no I/O.
//!
//! ```text
//! add(event, now) ─► watermark of its partition ─► close windows it passed ─► extend / open / late
//! advance(now)    ─► partitions idle for idle_timeout_ms release their windows
//! closed window   ─► TraceSummary, then the RuleHits of its sequence rules
//! ```
//!
//! The semantics are written down in `docs/windowing.md`. In short: the watermark of a partition is
//! its highest event time minus `allowed_lateness_ms`; a window closes once the watermark of every
//! partition it holds events of reaches `min(last + gap_ms, first + max_duration_ms)`; an event of a
//! trace without an open window whose window would already be closed is emitted as a late event.
//!
//! Cost per event: a hash lookup by trace, an interner lookup, and ordered-index updates only when a
//! window opens, closes, gets an earlier first event or a new partition: closing is never a scan.

mod index;
mod intern;
mod output;
mod rules;
mod settings;
mod state;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use uuid::Uuid;

pub use output::{hit_id, LateEvent, LateReason, RuleHit, RuleType, WindowOutput, SEQUENCE_RULE};
pub use settings::{RuleConfig, WindowSettings, DEFAULT_RULE_SEVERITY, MAX_SPAN_MS};
pub use summary::{rfc3339, summary_id, CloseReason, Step, StepFields, TraceSummary};

use crate::model::{Decision, EnrichedEvent};
use index::{TraceId, TraceIndex};
use intern::Interner;
use rules::Rule;
use state::{Closed, PartIx, PartRef, Partition, Slab, Slot, Window};

/// The open windows of all traces, and the watermarks of all partitions.
#[derive(Debug)]
pub struct Windows {
    gap: i64,
    max_duration: i64,
    lateness: i64,
    idle_timeout: i64,
    max_ahead: i64,
    max_open: usize,
    max_events: usize,
    rules: Vec<Rule>,
    slab: Slab,
    traces: TraceIndex,
    /// (first event time, opening order, window): the capacity eviction order.
    age: BTreeSet<(i64, u64, Slot)>,
    partitions: Vec<Partition>,
    partition_ix: HashMap<Arc<str>, HashMap<i32, PartIx>>,
    /// The partition of the previous event: consecutive events mostly share it.
    last_part: Option<PartIx>,
    interner: Interner,
    closed: Closed,
    next_seq: u64,
    late: u64,
    truncated: u64,
    closed_count: u64,
}

fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Windows {
    /// Empty state. Settings are taken as they are; check them first with [`WindowSettings::problems`]
    /// (zero bounds are raised to 1).
    pub fn new(settings: WindowSettings) -> Self {
        Windows {
            gap: ms(settings.gap_ms),
            max_duration: ms(settings.max_duration_ms),
            lateness: ms(settings.allowed_lateness_ms),
            idle_timeout: ms(settings.idle_timeout_ms),
            max_ahead: ms(settings.max_ahead_ms),
            max_open: settings.max_open_traces.max(1),
            max_events: settings.max_events_per_trace.max(1),
            rules: settings.rules.iter().map(Rule::new).collect(),
            slab: Slab::default(),
            traces: TraceIndex::default(),
            age: BTreeSet::new(),
            partitions: Vec::new(),
            partition_ix: HashMap::new(),
            last_part: None,
            interner: Interner::default(),
            closed: Closed::new(settings.remember_closed),
            next_seq: 0,
            late: 0,
            truncated: 0,
            closed_count: 0,
        }
    }

    /// Adds one validated event, read from its `provenance` (topic, partition, offset) at wall time
    /// `now_ms`; returns what closed or was emitted as a result, in order.
    pub fn add(&mut self, event: &EnrichedEvent, now_ms: i64) -> Vec<WindowOutput> {
        let mut out = Vec::new();
        let e = &event.event;
        let part = self.partition_ix(&event.provenance.topic, event.provenance.partition);
        let st = &mut self.partitions[part as usize];
        let before = st.watermark(self.lateness);
        st.idle = false;
        st.last_wall_ms = now_ms;
        if self.max_ahead == 0 || e.ts_ms <= now_ms.saturating_add(self.max_ahead) {
            st.max_ts = Some(st.max_ts.map_or(e.ts_ms, |max| max.max(e.ts_ms)));
        }
        let watermark = st.watermark(self.lateness);
        if watermark > before {
            self.drain(part, false, &mut out);
        }
        let hash = self.traces.hash(&e.trace);
        if let Some(slot) = self.traces.get(hash, &e.trace, &self.slab) {
            self.extend(slot, event, part, &mut out);
        } else if watermark >= e.ts_ms.saturating_add(self.gap.min(self.max_duration)) {
            self.late += 1;
            let remembered = self
                .closed
                .get(hash, &e.trace)
                .filter(|&(start, end)| e.ts_ms >= start.saturating_sub(self.gap) && e.ts_ms <= end.saturating_add(self.gap));
            out.push(WindowOutput::Late(LateEvent {
                event: Box::new(event.clone()),
                summary_id: remembered.map(|(start, _)| summary_id(&e.trace, start)),
                watermark_ms: watermark,
                reason: if remembered.is_some() { LateReason::WindowClosed } else { LateReason::BehindWatermark },
            }));
        } else {
            self.open(event, hash, part, &mut out);
        }
        out
    }

    /// Re-adds an event of a window that was open when its state was saved (the exactly-once
    /// changelog): it joins or opens its trace's window, but moves no watermark and is never
    /// late, so that no window closes half-restored (a window may hold events of partitions not
    /// restored yet). Call [`Windows::finish_restore`] once every partition is restored.
    pub fn restore(&mut self, event: &EnrichedEvent, now_ms: i64) -> Vec<WindowOutput> {
        let mut out = Vec::new();
        let e = &event.event;
        let part = self.partition_ix(&event.provenance.topic, event.provenance.partition);
        let st = &mut self.partitions[part as usize];
        st.idle = false;
        st.last_wall_ms = now_ms;
        st.restored_max = Some(st.restored_max.map_or(e.ts_ms, |max| max.max(e.ts_ms)));
        let hash = self.traces.hash(&e.trace);
        if let Some(slot) = self.traces.get(hash, &e.trace, &self.slab) {
            self.extend(slot, event, part, &mut out);
        } else {
            self.open(event, hash, part, &mut out);
        }
        out
    }

    /// Ends a restore: each restored partition's watermark moves to its highest restored event
    /// time (if higher), and the windows it passes close as usual.
    pub fn finish_restore(&mut self) -> Vec<WindowOutput> {
        let mut out = Vec::new();
        for part in 0..self.partitions.len() {
            let st = &mut self.partitions[part];
            let Some(restored) = st.restored_max.take() else { continue };
            let before = st.watermark(self.lateness);
            st.max_ts = Some(st.max_ts.map_or(restored, |max| max.max(restored)));
            if st.watermark(self.lateness) > before {
                self.drain(part as PartIx, false, &mut out);
            }
        }
        out
    }

    /// Called on a timer with the wall clock: every partition without an event for
    /// `idle_timeout_ms` becomes idle (its watermark jumps past every window) and the windows it
    /// alone held open close with reason `idle`. Its next event makes it active again.
    pub fn advance(&mut self, now_ms: i64) -> Vec<WindowOutput> {
        let mut out = Vec::new();
        for part in 0..self.partitions.len() {
            let st = &mut self.partitions[part];
            if !st.idle && st.max_ts.is_some() && now_ms.saturating_sub(st.last_wall_ms) >= self.idle_timeout {
                st.idle = true;
                self.drain(part as PartIx, true, &mut out);
            }
        }
        out
    }

    /// The lowest offset of (`topic`, `partition`) held by an open window, if any: the shell never
    /// commits past it. O(log n) in the windows holding events of the partition.
    pub fn held_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let part = *self.partition_ix.get(topic)?.get(&partition)?;
        self.partitions[part as usize].held.first().map(|&(offset, _)| offset)
    }

    /// Closes (reason `flush`) every window holding events of (`topic`, `partition`), oldest first,
    /// and forgets the partition's watermark: on revocation.
    pub fn flush_partition(&mut self, topic: &str, partition: i32) -> Vec<WindowOutput> {
        let mut out = Vec::new();
        let Some(&part) = self.partition_ix.get(topic).and_then(|m| m.get(&partition)) else { return out };
        let mut slots: Vec<(i64, u64, Slot)> = self.partitions[part as usize]
            .held
            .iter()
            .map(|&(_, slot)| {
                let w = self.slab.get(slot);
                (w.first_ts, w.open_seq, slot)
            })
            .collect();
        slots.sort_unstable();
        for (_, _, slot) in slots {
            self.close(slot, CloseReason::Flush, false, &mut out);
        }
        let st = &mut self.partitions[part as usize];
        *st = Partition::new(st.topic.clone(), st.partition);
        out
    }

    /// Closes (reason `flush`) every open window, oldest first, and forgets every watermark: on shutdown.
    pub fn flush_all(&mut self) -> Vec<WindowOutput> {
        let mut out = Vec::new();
        while let Some(&(_, _, slot)) = self.age.first() {
            self.close(slot, CloseReason::Flush, false, &mut out);
        }
        for st in &mut self.partitions {
            *st = Partition::new(st.topic.clone(), st.partition);
        }
        out
    }

    /// Open windows (one per trace at most).
    pub fn open_traces(&self) -> usize {
        self.traces.len()
    }

    /// Events emitted as late since start.
    pub fn late_events(&self) -> u64 {
        self.late
    }

    /// Windows closed since start, for any reason (each emitted one summary).
    pub fn closed_windows(&self) -> u64 {
        self.closed_count
    }

    /// Windows closed early by a bound (`max_events`, `capacity`) since start.
    pub fn truncated_windows(&self) -> u64 {
        self.truncated
    }

    /// The highest event time seen in the partition (restored ones included); `None` before its
    /// first event. Saved with the exactly-once changelog, so that a restart resumes the
    /// partition's watermark where it was ([`Windows::restore_event_time`]).
    pub fn max_event_time(&self, topic: &str, partition: i32) -> Option<i64> {
        let part = *self.partition_ix.get(topic)?.get(&partition)?;
        self.partitions[part as usize].max_ts
    }

    /// Re-sets the partition's highest event time saved before a restart: like a restored event's
    /// time, it moves the watermark at [`Windows::finish_restore`], not before.
    pub fn restore_event_time(&mut self, topic: &str, partition: i32, max_ts: i64) {
        let part = self.partition_ix(topic, partition);
        let st = &mut self.partitions[part as usize];
        st.restored_max = Some(st.restored_max.map_or(max_ts, |max| max.max(max_ts)));
    }

    /// The partition's watermark, if it is known: `None` before its first event; `i64::MAX` when idle.
    pub fn watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        let part = *self.partition_ix.get(topic)?.get(&partition)?;
        let st = &self.partitions[part as usize];
        (st.idle || st.max_ts.is_some()).then(|| st.watermark(self.lateness))
    }

    /// A rough size of the state in bytes, from container capacities and held-event counts (no heap
    /// walk): for gauges. Interned step fields and trace strings are counted at their length.
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        let held: usize = self.age.iter().map(|&(_, _, slot)| self.window_bytes(slot)).sum();
        let index = size_of::<(i64, u64, Slot)>() + 8;
        held + self.slab.capacity_bytes()
            + self.traces.capacity_bytes()
            + self.traces.len() * 3 * index
            + self.interner.len() * (size_of::<StepFields>() + 16)
            + self.interner.texts() * 48
            + self.closed.len() * 96
    }

    fn window_bytes(&self, slot: Slot) -> usize {
        let w = self.slab.get(slot);
        let heap_trace = match &w.trace {
            TraceId::Inline { .. } => 0,
            TraceId::Heap(trace) => 16 + trace.len(),
        };
        w.steps.capacity() * std::mem::size_of::<Step>() + w.more_bytes() + heap_trace
    }

    /// Makes trace hashes collide (two values only), to test the collision path.
    #[cfg(test)]
    fn force_trace_collisions(&mut self) {
        self.traces.mask = 1;
    }

    fn partition_ix(&mut self, topic: &str, partition: i32) -> PartIx {
        if let Some(ix) = self.last_part {
            let st = &self.partitions[ix as usize];
            if st.partition == partition && *st.topic == *topic {
                return ix;
            }
        }
        if let Some(&ix) = self.partition_ix.get(topic).and_then(|m| m.get(&partition)) {
            self.last_part = Some(ix);
            return ix;
        }
        let key: Arc<str> = match self.partition_ix.get_key_value(topic) {
            Some((key, _)) => key.clone(),
            None => topic.into(),
        };
        let ix = PartIx::try_from(self.partitions.len()).expect("fewer than 2^32 partitions");
        self.partitions.push(Partition::new(key.clone(), partition));
        self.partition_ix.entry(key).or_default().insert(partition, ix);
        self.last_part = Some(ix);
        ix
    }

    /// The window's close deadline and the reason it would close for.
    fn deadline(&self, w: &Window) -> (i64, CloseReason) {
        // Never i64::MIN, which marks "no index entry".
        let by_gap = w.last_ts.saturating_add(self.gap).max(i64::MIN + 1);
        let by_duration = w.first_ts.saturating_add(self.max_duration).max(i64::MIN + 1);
        if by_duration <= by_gap {
            (by_duration, CloseReason::MaxDuration)
        } else {
            (by_gap, CloseReason::Gap)
        }
    }

    /// Brings the window's deadline-index entries in line with its deadline: an entry in the index
    /// of each partition whose watermark is still behind it (keyed at most at the deadline), none in
    /// the others. Returns the close reason when no partition holds the window open any more.
    fn reindex(&mut self, slot: Slot) -> Option<CloseReason> {
        let w = self.slab.get(slot);
        let (deadline, reason) = self.deadline(w);
        // Fast path, the common case: one partition, indexed no later than the deadline, behind it.
        if !w.has_more() && w.home.key().is_some_and(|key| key <= deadline) {
            let st = &self.partitions[w.home.part as usize];
            if st.watermark(self.lateness) < deadline {
                return None;
            }
        }
        let mut open = false;
        for pr in self.slab.get_mut(slot).parts_mut() {
            let st = &mut self.partitions[pr.part as usize];
            if st.watermark(self.lateness) >= deadline {
                if let Some(key) = pr.take_key() {
                    st.deadlines.remove(&(key, slot));
                }
            } else {
                open = true;
                match pr.key() {
                    Some(key) if key <= deadline => {}
                    Some(key) => {
                        st.deadlines.remove(&(key, slot));
                        st.deadlines.insert((deadline, slot));
                        pr.set_key(Some(deadline));
                    }
                    None => {
                        st.deadlines.insert((deadline, slot));
                        pr.set_key(Some(deadline));
                    }
                }
            }
        }
        (!open).then_some(reason)
    }

    /// Releases every window of the partition whose deadline key its watermark reached; closes
    /// those no other partition holds open.
    fn drain(&mut self, part: PartIx, idle: bool, out: &mut Vec<WindowOutput>) {
        let watermark = self.partitions[part as usize].watermark(self.lateness);
        loop {
            let deadlines = &mut self.partitions[part as usize].deadlines;
            match deadlines.first() {
                Some(&(key, _)) if key <= watermark => {}
                _ => break,
            }
            let (_, slot) = deadlines.pop_first().expect("checked above");
            if let Some(pr) = self.slab.get_mut(slot).part_mut(part) {
                pr.set_key(None);
            }
            if let Some(reason) = self.reindex(slot) {
                self.close(slot, if idle { CloseReason::Idle } else { reason }, false, out);
            }
        }
    }

    fn step(&mut self, event: &EnrichedEvent) -> Step {
        let id = intern::parse_uuid(&event.event_id).unwrap_or_else(|| Uuid::new_v5(&Uuid::NAMESPACE_URL, event.event_id.as_bytes()));
        Step {
            ts_ms: event.event.ts_ms,
            offset: event.provenance.offset,
            event_id: id,
            fields: self.interner.intern(event),
            partition: event.provenance.partition,
        }
    }

    fn open(&mut self, event: &EnrichedEvent, hash: u64, part: PartIx, out: &mut Vec<WindowOutput>) {
        while self.traces.len() >= self.max_open {
            let &(_, _, oldest) = self.age.first().expect("open windows are in the age index");
            self.close(oldest, CloseReason::Capacity, true, out);
        }
        let step = self.step(event);
        let (ts, offset) = (step.ts_ms, step.offset);
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut window = Window {
            trace: TraceId::new(&event.event.trace),
            hash,
            first_ts: ts,
            last_ts: ts,
            open_seq: seq,
            steps: Vec::with_capacity(4),
            home: PartRef::new(part, offset),
            more: None,
        };
        window.steps.push(step);
        let slot = self.slab.insert(window);
        self.traces.insert(hash, &event.event.trace, slot);
        self.age.insert((ts, seq, slot));
        self.partitions[part as usize].held.insert((offset, slot));
        if let Some(reason) = self.reindex(slot) {
            // Not late, so the watermark is behind the deadline: kept for safety.
            self.close(slot, reason, false, out);
        } else if self.max_events == 1 {
            self.close(slot, CloseReason::MaxEvents, true, out);
        }
    }

    fn extend(&mut self, slot: Slot, event: &EnrichedEvent, part: PartIx, out: &mut Vec<WindowOutput>) {
        let step = self.step(event);
        let (ts, offset) = (step.ts_ms, step.offset);
        let w = self.slab.get_mut(slot);
        let st = &mut self.partitions[part as usize];
        match w.part_mut(part) {
            Some(pr) if offset < pr.min_offset => {
                st.held.remove(&(pr.min_offset, slot));
                st.held.insert((offset, slot));
                pr.min_offset = offset;
            }
            Some(_) => {}
            None => {
                w.push_part(PartRef::new(part, offset));
                st.held.insert((offset, slot));
            }
        }
        if ts < w.first_ts {
            self.age.remove(&(w.first_ts, w.open_seq, slot));
            self.age.insert((ts, w.open_seq, slot));
            w.first_ts = ts;
        }
        let after_last = ts > w.last_ts;
        w.last_ts = w.last_ts.max(ts);
        w.insert(step, after_last);
        let full = w.steps.len() >= self.max_events;
        if let Some(reason) = self.reindex(slot) {
            self.close(slot, reason, false, out);
        } else if full {
            self.close(slot, CloseReason::MaxEvents, true, out);
        }
    }

    /// Removes the window from every index and emits its summary, then its rule hits.
    fn close(&mut self, slot: Slot, reason: CloseReason, truncated: bool, out: &mut Vec<WindowOutput>) {
        let w = self.slab.remove(slot);
        let trace = w.trace.to_arc();
        self.traces.remove(w.hash, &trace, slot);
        self.age.remove(&(w.first_ts, w.open_seq, slot));
        for pr in w.parts() {
            let st = &mut self.partitions[pr.part as usize];
            if let Some(key) = pr.key() {
                st.deadlines.remove(&(key, slot));
            }
            st.held.remove(&(pr.min_offset, slot));
        }
        let steps = w.steps;
        let (mut allowed, mut denied) = (0, 0);
        for step in &steps {
            match step.fields.decision {
                Decision::Allowed => allowed += 1,
                Decision::Denied => denied += 1,
                Decision::Other => {}
            }
        }
        // Distinct actors: steps sharing fields share the actor; a linear check, as traces have few.
        let mut actors: Vec<Arc<str>> = Vec::with_capacity(steps.len().min(4));
        for (i, step) in steps.iter().enumerate() {
            if i > 0 && Arc::ptr_eq(&step.fields, &steps[i - 1].fields) {
                continue;
            }
            if !actors.iter().any(|a| Arc::ptr_eq(a, &step.fields.actor) || *a == step.fields.actor) {
                actors.push(step.fields.actor.clone());
            }
        }
        actors.sort_unstable();
        let id = summary_id(&trace, w.first_ts);
        let mut rule_hits = Vec::new();
        let mut hits = Vec::new();
        for rule in &self.rules {
            let found = rule.evaluate(&steps, (allowed, denied), &trace, id);
            if !found.is_empty() {
                rule_hits.push(rule.name().clone());
                hits.extend(found);
            }
        }
        self.closed_count += 1;
        if truncated {
            self.truncated += 1;
        }
        self.closed.remember(w.hash, trace.clone(), w.first_ts, w.last_ts);
        out.reserve(1 + hits.len());
        out.push(WindowOutput::Summary(TraceSummary {
            summary_id: id,
            trace,
            start_ms: w.first_ts,
            end_ms: w.last_ts,
            steps,
            allowed,
            denied,
            actors,
            rule_hits,
            truncated,
            close_reason: reason,
        }));
        out.extend(hits.into_iter().map(WindowOutput::RuleHit));
    }
}
