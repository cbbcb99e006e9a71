//! Criterion bench of the windowing core: `Windows::add` per event in steady state with about 10k
//! and 100k open traces (each trace gets 10 events, round robin, then closes on the gap while new
//! traces open), and the state's heap size per open trace, measured with a counting allocator.
//!
//! Run with `cargo bench --bench window`; add `-- --memory-only` to print only the memory figures,
//! or `-- --timing-only` for a plain timing loop (for profiling).

use std::alloc::{GlobalAlloc, Layout};
use std::fmt::Write;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use auditflow::model::{AuditEvent, Decision, EnrichedEvent, SourceRecord};
use auditflow::pipeline::enrich::{enrich, SeverityLadder};
use auditflow::pipeline::window::{RuleConfig, WindowSettings, Windows};
use criterion::{black_box, BenchmarkId, Criterion, Throughput};

/// Counts live heap bytes, over mimalloc: the allocator the binary runs with (`src/main.rs`).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// 2026-04-18T14:22:07.441Z
const BASE_MS: i64 = 1_776_522_127_441;

/// 64 event shapes: 8 actors, 4 artifacts, 2 actions; shape 63 is denied and shape 31 runs in
/// adaptive mode (see `Stream::heavy` for how often they are picked).
fn templates() -> Vec<EnrichedEvent> {
    (0..64)
        .map(|i| {
            let denied = i == 63;
            let event = AuditEvent {
                ts: "2026-04-18T14:22:07.441Z".into(),
                ts_ms: BASE_MS,
                actor: format!("user:dev{}@acme.com", i % 8),
                action: if i % 2 == 0 { "deploy" } else { "execute" }.into(),
                artifact: format!("billing-service@v4.2.{}", i % 4),
                policy: "prod-billing-deploy-v3".into(),
                target: "aws:us-east-1:cluster-prod-02".into(),
                mode: if i == 31 { "adaptive" } else { "fixed" }.into(),
                trace: String::new(),
                result: if denied { "denied" } else { "allowed" }.into(),
                decision: if denied { Decision::Denied } else { Decision::Allowed },
                reason: None,
                extra: Default::default(),
            };
            let source = SourceRecord { topic: "audit.raw".into(), ..SourceRecord::default() };
            enrich(event, &source, 0, &SeverityLadder::default())
        })
        .collect()
}

fn rules() -> Vec<RuleConfig> {
    vec![
        RuleConfig::DenyCount { name: "repeated-denials".into(), min: 3, severity: 7 },
        RuleConfig::DenyThenAllow { name: "deny-then-allow".into(), severity: 8 },
        RuleConfig::ModeChange { name: "mode-change".into(), severity: 5 },
        RuleConfig::ActionAfterDeny {
            name: "exec-after-deny".into(),
            action: "execute".into(),
            within_ms: 60_000,
            same_actor: false,
            severity: 9,
        },
    ]
}

fn trace_name(i: usize) -> String {
    let mut s = String::with_capacity(24);
    write!(s, "tr-{:08x}-{:04x}-4e8e", i.wrapping_mul(2_654_435_761) as u32, i % 65_536).unwrap();
    s
}

/// A steady stream holding about `open` traces open: `active` = `open` / 2 slots; event `j` goes
/// to slot `j % active`; each slot's trace gets `per_trace` (10) events, `active` ms apart (one
/// round), then the slot moves on to a new trace, slots staggered. The gap is 10 rounds (ten times
/// the spacing of a trace's events, like a 5 min gap over events 30 s apart), so a finished trace
/// stays open 10 more rounds: `active` × (1 + 10 / 10) = `open` windows.
struct Stream {
    slot: usize,
    round: usize,
    /// Alert-heavy: every shape equally likely (1 event in 64 denied, 1 in 64 adaptive: about
    /// 1.4 rule hits per 10-event window). Otherwise typical: 1 in 256 each (about 0.2 hits per window).
    heavy: bool,
    active: usize,
    per_trace: usize,
    names: Vec<String>,
    templates: Vec<EnrichedEvent>,
    j: usize,
}

impl Stream {
    fn new(open: usize, per_trace: usize, heavy: bool) -> Self {
        let active = open / 2;
        // Four generations of names per slot: a name is reused long after its window closed.
        Stream {
            slot: 0,
            round: 0,
            heavy,
            active,
            per_trace,
            names: (0..4 * active).map(trace_name).collect(),
            templates: templates(),
            j: 0,
        }
    }

    fn settings(&self) -> WindowSettings {
        let no_rules = std::env::args().any(|a| a == "--no-rules");
        WindowSettings {
            gap_ms: 10 * self.active as u64,
            max_duration_ms: 100 * self.active as u64 * self.per_trace as u64,
            allowed_lateness_ms: 0,
            max_open_traces: 2 * self.active,
            rules: if no_rules { Vec::new() } else { rules() },
            remember_closed: if std::env::args().any(|a| a == "--no-remember") { 0 } else { 100_000 },
            ..WindowSettings::default()
        }
    }

    /// The next event's (template, trace name) indexes; counters instead of divisions, so the
    /// harness costs little next to `add`.
    fn next(&mut self) -> (usize, usize) {
        let j = self.j;
        self.j += 1;
        let slot = self.slot;
        self.slot += 1;
        if self.slot == self.active {
            self.slot = 0;
            self.round += 1;
        }
        // Slots move to their next trace at staggered rounds, so the open count stays level.
        let generation = ((self.round + slot % self.per_trace) / self.per_trace) % 4;
        // A scrambled shape per event, so every window sees a mix.
        let r = (j.wrapping_mul(0x9e37_79b9) >> 7) % 256;
        let shape = match (self.heavy, r) {
            (true, _) => r % 64,
            (false, 0) => 63,
            (false, 1) => 31,
            (false, _) => [r % 62, r % 62 + 1][usize::from(r % 62 >= 31)],
        };
        (shape, slot + generation * self.active)
    }

    /// Feeds the next event to `windows` (or, without one, only prepares it: the harness cost);
    /// returns the number of outputs.
    fn step_with(&mut self, windows: Option<&mut Windows>) -> usize {
        let j = self.j as i64;
        let (shape, name) = self.next();
        let (event, name) = (&mut self.templates[shape], &mut self.names[name]);
        std::mem::swap(&mut event.event.trace, name);
        event.event.ts_ms = BASE_MS + j;
        event.provenance.offset = j;
        let n = match windows {
            Some(windows) => windows.add(black_box(&*event), 0).len(),
            None => black_box(&*event).event.trace.len(),
        };
        std::mem::swap(&mut event.event.trace, name);
        n
    }

    fn step(&mut self, windows: &mut Windows) -> usize {
        self.step_with(Some(windows))
    }
}

fn add(c: &mut Criterion) {
    let mut group = c.benchmark_group("window_add");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(6));
    for (name, open, heavy) in [("10k", 10_000, false), ("100k", 100_000, false), ("100k_alert_heavy", 100_000, true)] {
        let mut stream = Stream::new(open, 10, heavy);
        let mut windows = Windows::new(stream.settings());
        for _ in 0..open * 30 {
            stream.step(&mut windows);
        }
        eprintln!("window_add/{name}: {} open traces in steady state", windows.open_traces());
        group.bench_function(BenchmarkId::from_parameter(name), |b| b.iter(|| stream.step(&mut windows)));
        eprintln!("window_add/{name}: {} open traces after the run", windows.open_traces());
    }
    // The harness alone (picking and preparing the event, without `add`): subtract it.
    let mut stream = Stream::new(100_000, 10, false);
    group.bench_function("harness_only_100k", |b| b.iter(|| stream.step_with(None)));
    group.finish();
}

/// Heap bytes per open trace: 1,000,000 distinct traces of one event each through a state bounded
/// to 100,000 open traces, then 100,000 open traces of 10 events each.
fn memory() {
    let report = |label: &str, windows: &Windows, bytes: isize| {
        let open = windows.open_traces();
        println!(
            "memory/{label}: {open} open traces, {:.1} MiB heap, {} bytes per open trace (approx_bytes {} per trace)",
            bytes as f64 / 1_048_576.0,
            bytes / open.max(1) as isize,
            windows.approx_bytes() / open.max(1),
        );
    };
    for remember_closed in [100_000, 0] {
        let before = live();
        let settings =
            WindowSettings { max_open_traces: 100_000, remember_closed, gap_ms: 3_600_000, rules: rules(), ..WindowSettings::default() };
        let mut windows = Windows::new(settings);
        let mut templates = templates();
        for i in 0..1_000_000 {
            let event = &mut templates[i % 64];
            event.event.trace = trace_name(i);
            event.event.ts_ms = BASE_MS + i as i64;
            event.provenance.offset = i as i64;
            drop(windows.add(event, 0));
        }
        drop(templates);
        report(&format!("1M traces x 1 event, remember_closed={remember_closed}"), &windows, live() - before);
    }
    let before = live();
    let mut stream = Stream::new(100_000, 10, false);
    let mut windows =
        Windows::new(WindowSettings { max_duration_ms: u64::MAX / 4, gap_ms: 1 << 40, remember_closed: 0, ..stream.settings() });
    let stream_bytes = live() - before;
    for _ in 0..1_000_000 {
        stream.step(&mut windows);
    }
    report("100k traces x 10 events, remember_closed=0", &windows, live() - before - stream_bytes);
}

/// `--timing-only`: ns per event over 3M events after the warm-up, without criterion.
fn timing() {
    let small = std::env::args().any(|a| a == "--small");
    let heavy = std::env::args().any(|a| a == "--heavy");
    let big = std::env::args().any(|a| a == "--big");
    let sizes: &[usize] = match (small, big) {
        (true, _) => &[10_000],
        (_, true) => &[100_000],
        _ => &[10_000, 100_000],
    };
    for &open in sizes {
        let mut stream = Stream::new(open, 10, heavy);
        let mut windows = Windows::new(stream.settings());
        for _ in 0..open * 30 {
            stream.step(&mut windows);
        }
        let n = if small { 200_000 } else { 3_000_000 };
        let (start, cpu) = (std::time::Instant::now(), cpu_ms());
        for _ in 0..n {
            black_box(stream.step(&mut windows));
        }
        let (wall, cpu) = (start.elapsed().as_nanos() as f64 / n as f64, (cpu_ms() - cpu) as f64 * 1e6 / n as f64);
        let start = std::time::Instant::now();
        for _ in 0..n {
            black_box(stream.step_with(None));
        }
        let harness = start.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "timing/{open}: {wall:.0} ns per event wall, {cpu:.0} ns CPU, harness alone {harness:.0} ns, {} open",
            windows.open_traces()
        );
    }
}

/// CPU time of this thread in ms (from /proc, 10 ms resolution): robust to a loaded machine.
fn cpu_ms() -> i64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<i64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) * 10
}

fn main() {
    if std::env::args().any(|a| a == "--timing-only") {
        return timing();
    }
    memory();
    if std::env::args().any(|a| a == "--memory-only") {
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    add(&mut criterion);
    criterion.final_summary();
}
