//! Synthetic audit traffic for demos and benchmarks: traces of several steps by a realistic mix
//! of actors, artifacts, policies and targets, a configurable deny ratio, out-of-order jitter,
//! and a seed so that a run can be repeated exactly. Pure: the caller writes the events.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateSettings {
    /// Seed of the random generator: the same seed gives the same events.
    pub seed: u64,
    /// Probability that a step is denied, 0 to 1.
    pub deny_ratio: f64,
    /// Largest shift of an event's emission against its event time, in ms (0: in order).
    pub jitter_ms: i64,
    /// Event time of the first event, epoch ms.
    pub start_ms: i64,
    /// Traces open at once (their steps interleave).
    pub concurrent_traces: usize,
}

impl Default for GenerateSettings {
    fn default() -> Self {
        GenerateSettings { seed: 1, deny_ratio: 0.1, jitter_ms: 0, start_ms: 1_776_000_000_000, concurrent_traces: 50 }
    }
}

const USERS: &[&str] =
    &["j.patel@acme.com", "m.okafor@acme.com", "s.lindqvist@acme.com", "a.ramos@acme.com", "k.tanaka@acme.com", "d.mensah@acme.com"];
const SERVICES: &[&str] = &["fraud-detector", "ci-runner", "argo-cd", "billing-batch", "risk-scorer", "ledger-sync"];
const ARTIFACTS: &[&str] =
    &["billing-service", "customer-lookup", "ledger-api", "risk-engine", "payments-gateway", "kyc-checker", "report-builder"];
const POLICIES: &[&str] =
    &["prod-billing-deploy-v3", "pii-access-restrict-v2", "change-window-v5", "least-privilege-exec-v1", "data-residency-eu-v2"];
const PROVIDERS: &[(&str, &[&str])] =
    &[("aws", &["us-east-1", "eu-west-1"]), ("gcp", &["europe-west4", "us-central1"]), ("azure", &["westeurope"])];
const NAMESPACES: &[&str] = &["payments", "risk", "identity", "platform"];
const REASONS: &[&str] = &[
    "declared-purpose violation: pii_export not authorized",
    "outside change window",
    "risk score 0.91 > threshold=0.80",
    "artifact signature not trusted",
    "actor lacks role deployer in namespace",
];
/// Step patterns of a trace: a deploy followed by work on what was deployed.
const PATTERNS: &[&[&str]] = &[
    &["deploy", "execute", "execute", "read"],
    &["deploy", "execute", "modify", "execute", "delete"],
    &["read", "execute", "read"],
    &["create", "deploy", "execute", "execute", "execute", "modify"],
    &["execute", "execute", "read", "execute", "execute", "read", "execute", "execute"],
];

/// An endless, seeded stream of events; take as many as needed.
pub struct Generator {
    settings: GenerateSettings,
    rng: StdRng,
    open: Vec<TraceState>,
    next_trace: u64,
    clock_ms: i64,
    held: Vec<(i64, Value)>,
}

struct TraceState {
    id: String,
    steps: &'static [&'static str],
    next: usize,
    actor: String,
    artifact: String,
    policy: &'static str,
    target: String,
    mode: &'static str,
    namespace: &'static str,
}

impl Generator {
    /// A generator with these settings.
    pub fn new(settings: GenerateSettings) -> Generator {
        let rng = StdRng::seed_from_u64(settings.seed);
        let clock_ms = settings.start_ms;
        Generator { settings, rng, open: Vec::new(), next_trace: 0, clock_ms, held: Vec::new() }
    }

    fn new_trace(&mut self) -> TraceState {
        let rng = &mut self.rng;
        self.next_trace += 1;
        let actor = if rng.random_bool(0.5) {
            format!("user:{}", USERS[rng.random_range(0..USERS.len())])
        } else {
            format!("service:{}", SERVICES[rng.random_range(0..SERVICES.len())])
        };
        let artifact = format!(
            "{}@v{}.{}.{}",
            ARTIFACTS[rng.random_range(0..ARTIFACTS.len())],
            rng.random_range(1..9),
            rng.random_range(0..20),
            rng.random_range(0..10)
        );
        let (provider, regions) = PROVIDERS[rng.random_range(0..PROVIDERS.len())];
        let env = if rng.random_bool(0.7) { "prod" } else { "staging" };
        let target = format!("{provider}:{}:cluster-{env}-{:02}", regions[rng.random_range(0..regions.len())], rng.random_range(1..5));
        TraceState {
            id: format!(
                "tr-{:08x}-{:04x}-{:04x}",
                self.settings.seed as u32 ^ self.next_trace as u32,
                self.next_trace & 0xffff,
                rng.random::<u16>()
            ),
            steps: PATTERNS[rng.random_range(0..PATTERNS.len())],
            next: 0,
            actor,
            artifact,
            policy: POLICIES[rng.random_range(0..POLICIES.len())],
            target,
            mode: if rng.random_bool(0.3) { "adaptive" } else { "fixed" },
            namespace: NAMESPACES[rng.random_range(0..NAMESPACES.len())],
        }
    }

    /// The next event in emission order (event times may run backwards by up to `jitter_ms`).
    pub fn next_event(&mut self) -> Value {
        let jitter = self.settings.jitter_ms;
        loop {
            if jitter > 0 {
                // Release held events once the clock has moved past their emission time.
                if let Some(i) = self.held.iter().position(|(due, _)| *due <= self.clock_ms) {
                    return self.held.swap_remove(i).1;
                }
            }
            let event = self.step();
            if jitter > 0 && self.rng.random_bool(0.2) {
                let due = self.clock_ms + self.rng.random_range(1..=jitter);
                self.held.push((due, event));
                continue;
            }
            return event;
        }
    }

    fn step(&mut self) -> Value {
        while self.open.len() < self.settings.concurrent_traces.max(1) {
            let trace = self.new_trace();
            self.open.push(trace);
        }
        let index = self.rng.random_range(0..self.open.len());
        self.clock_ms += self.rng.random_range(1..40);
        let denied = self.rng.random_bool(self.settings.deny_ratio.clamp(0.0, 1.0));
        let reason = denied.then(|| REASONS[self.rng.random_range(0..REASONS.len())]);
        let request_id = format!("req-{:016x}", self.rng.random::<u64>());
        let trace = &mut self.open[index];
        let action = trace.steps[trace.next];
        trace.next += 1;
        let ts =
            chrono::DateTime::from_timestamp_millis(self.clock_ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut event = json!({
            "ts": ts,
            "actor": trace.actor,
            "action": action,
            "artifact": trace.artifact,
            "policy": trace.policy,
            "target": trace.target,
            "mode": trace.mode,
            "trace": trace.id,
            "result": if denied { "denied" } else { "allowed" },
        });
        if let Some(reason) = reason {
            event["reason"] = json!(reason);
        }
        event["request_id"] = json!(request_id);
        event["namespace"] = json!(trace.namespace);
        if trace.next == trace.steps.len() {
            self.open.swap_remove(index);
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{decode::json as decode_json, validate};

    #[test]
    fn same_seed_same_events_and_every_event_validates() {
        let settings = GenerateSettings { seed: 42, deny_ratio: 0.25, jitter_ms: 500, ..Default::default() };
        let a: Vec<Value> = {
            let mut g = Generator::new(settings.clone());
            (0..2000).map(|_| g.next_event()).collect()
        };
        let b: Vec<Value> = {
            let mut g = Generator::new(settings);
            (0..2000).map(|_| g.next_event()).collect()
        };
        assert_eq!(a, b);
        let mut denied = 0;
        let mut out_of_order = 0;
        let mut last_ts = String::new();
        let mut bytes = 0;
        for event in &a {
            let text = serde_json::to_vec(event).unwrap();
            bytes += text.len();
            let parsed = validate::validate(decode_json::decode(&text).unwrap(), &Default::default()).unwrap();
            denied += usize::from(parsed.result == "denied");
            out_of_order += usize::from(parsed.ts < last_ts);
            last_ts = parsed.ts;
        }
        let ratio = denied as f64 / a.len() as f64;
        assert!((0.2..0.3).contains(&ratio), "deny ratio {ratio}");
        assert!(out_of_order > 0, "jitter reorders some events");
        let mean = bytes / a.len();
        assert!((300..500).contains(&mean), "mean event size {mean} bytes");
    }

    #[test]
    fn traces_have_several_steps() {
        let mut g = Generator::new(GenerateSettings::default());
        let mut per_trace = std::collections::HashMap::<String, usize>::new();
        for _ in 0..5000 {
            *per_trace.entry(g.next_event()["trace"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        let multi = per_trace.values().filter(|n| **n >= 3).count();
        assert!(multi * 2 > per_trace.len(), "most traces have three or more steps");
    }
}
