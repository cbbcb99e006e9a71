//! Sequence rules, evaluated once per window when it closes, over its steps in order (event time,
//! ties by offset, partition, topic). Evaluation reads nothing but the steps, so the same window always
//! yields the same hits with the same ids.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::output::{hit_id, RuleHit, RuleType};
use super::settings::RuleConfig;
use super::summary::Step;
use crate::model::Decision;

/// A rule ready to evaluate.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    name: Arc<str>,
    severity: u8,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    DenyCount { min: usize },
    DenyThenAllow,
    ModeChange,
    ActionAfterDeny { action: String, within_ms: i64, same_actor: bool },
}

impl Rule {
    pub(super) fn new(config: &RuleConfig) -> Self {
        let kind = match config {
            RuleConfig::DenyCount { min, .. } => Kind::DenyCount { min: (*min).max(1) as usize },
            RuleConfig::DenyThenAllow { .. } => Kind::DenyThenAllow,
            RuleConfig::ModeChange { .. } => Kind::ModeChange,
            RuleConfig::ActionAfterDeny { action, within_ms, same_actor, .. } => Kind::ActionAfterDeny {
                action: action.clone(),
                within_ms: i64::try_from(*within_ms).unwrap_or(i64::MAX),
                same_actor: *same_actor,
            },
        };
        Rule { name: config.name().into(), severity: config.severity(), kind }
    }

    pub(super) fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn rule_type(&self) -> RuleType {
        match self.kind {
            Kind::DenyCount { .. } => RuleType::DenyCount,
            Kind::DenyThenAllow => RuleType::DenyThenAllow,
            Kind::ModeChange => RuleType::ModeChange,
            Kind::ActionAfterDeny { .. } => RuleType::ActionAfterDeny,
        }
    }

    /// The hits of this rule in the ordered `steps` of one window, in order of their last event.
    /// `allowed` and `denied` count the steps' decisions: rules that cannot hit are skipped.
    pub(super) fn evaluate(&self, steps: &[Step], counts: (u32, u32), trace: &Arc<str>, summary_id: Uuid) -> Vec<RuleHit> {
        let (allowed, denials) = counts;
        let mut found: Vec<(Vec<usize>, String)> = Vec::new();
        let denied = |s: &Step| s.fields.decision == Decision::Denied;
        match &self.kind {
            Kind::DenyCount { min } if (denials as usize) < *min => {}
            Kind::DenyThenAllow if denials == 0 || allowed == 0 => {}
            Kind::ActionAfterDeny { .. } if denials == 0 => {}
            Kind::DenyCount { min } => {
                let denials: Vec<usize> = (0..steps.len()).filter(|&i| denied(&steps[i])).collect();
                if denials.len() >= *min {
                    let description = format!("{} denials in one trace window (threshold {min})", denials.len());
                    found.push((denials[..*min].to_vec(), description));
                }
            }
            Kind::DenyThenAllow => {
                // (actor, artifact) -> the first denial not yet followed by an allow.
                let mut pending: HashMap<(&str, &str), usize> = HashMap::new();
                for (i, step) in steps.iter().enumerate() {
                    let key = (&*step.fields.actor, &*step.fields.artifact);
                    match step.fields.decision {
                        Decision::Denied => {
                            pending.entry(key).or_insert(i);
                        }
                        Decision::Allowed => {
                            if let Some(deny) = pending.remove(&key) {
                                let description = format!("{} allowed on {} after a denial", key.0, key.1);
                                found.push((vec![deny, i], description));
                            }
                        }
                        Decision::Other => {}
                    }
                }
            }
            Kind::ModeChange => {
                for (i, pair) in steps.windows(2).enumerate() {
                    if !Arc::ptr_eq(&pair[0].fields, &pair[1].fields) && pair[0].fields.mode != pair[1].fields.mode {
                        let description = format!("mode changed from {} to {}", pair[0].fields.mode, pair[1].fields.mode);
                        found.push((vec![i, i + 1], description));
                    }
                }
            }
            Kind::ActionAfterDeny { action, within_ms, same_actor } => {
                // The latest denial so far, overall or per actor.
                let mut last_any: Option<usize> = None;
                let mut last_by_actor: HashMap<&str, usize> = HashMap::new();
                for (i, step) in steps.iter().enumerate() {
                    if *step.fields.action == **action {
                        let deny = if *same_actor { last_by_actor.get(&*step.fields.actor).copied() } else { last_any };
                        if let Some(d) = deny {
                            let after = step.ts_ms - steps[d].ts_ms;
                            if after <= *within_ms {
                                let description = format!("{action} {after} ms after a denial (within {within_ms} ms)");
                                found.push((vec![d, i], description));
                            }
                        }
                    }
                    if denied(step) {
                        last_any = Some(i);
                        last_by_actor.insert(&step.fields.actor, i);
                    }
                }
            }
        }
        found
            .into_iter()
            .enumerate()
            .map(|(index, (at, description))| {
                let events: Vec<Step> = at.iter().map(|&i| steps[i].clone()).collect();
                RuleHit {
                    rule: self.name.clone(),
                    rule_type: self.rule_type(),
                    trace: trace.clone(),
                    summary_id,
                    hit_id: hit_id(summary_id, &self.name, index),
                    severity: self.severity,
                    ts_ms: events.last().map_or(0, |s| s.ts_ms),
                    events,
                    description,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::window::summary::StepFields;

    /// Steps from `(ts, actor, artifact, action, decision, mode)`.
    fn steps(spec: &[(i64, &str, &str, &str, Decision, &str)]) -> Vec<Step> {
        spec.iter()
            .enumerate()
            .map(|(i, &(ts, actor, artifact, action, decision, mode))| Step {
                ts_ms: ts,
                event_id: Uuid::from_u128(i as u128),
                fields: Arc::new(StepFields {
                    topic: "t".into(),
                    action: action.into(),
                    artifact: artifact.into(),
                    result: match decision {
                        Decision::Allowed => "allowed".into(),
                        Decision::Denied => "denied".into(),
                        Decision::Other => "audited".into(),
                    },
                    decision,
                    policy: "p".into(),
                    actor: actor.into(),
                    mode: mode.into(),
                }),
                partition: 0,
                offset: i as i64,
            })
            .collect()
    }

    fn run(config: RuleConfig, steps: &[Step]) -> Vec<RuleHit> {
        let trace: Arc<str> = "tr".into();
        let count = |d| steps.iter().filter(|s| s.fields.decision == d).count() as u32;
        let counts = (count(Decision::Allowed), count(Decision::Denied));
        Rule::new(&config).evaluate(steps, counts, &trace, super::super::summary::summary_id("tr", 0))
    }

    fn offsets(hit: &RuleHit) -> Vec<i64> {
        hit.events.iter().map(|s| s.offset).collect()
    }

    use Decision::{Allowed as A, Denied as D, Other as O};

    #[test]
    fn deny_count_needs_min_denials() {
        let rule = || RuleConfig::DenyCount { name: "dc".into(), min: 3, severity: 8 };
        let two = steps(&[(1, "u", "x", "run", D, "fixed"), (2, "u", "x", "run", A, "fixed"), (3, "u", "x", "run", D, "fixed")]);
        assert!(run(rule(), &two).is_empty());
        let four = steps(&[
            (1, "u", "x", "run", D, "f"),
            (2, "v", "y", "run", D, "f"),
            (3, "u", "x", "run", O, "f"),
            (4, "u", "x", "run", D, "f"),
            (5, "u", "x", "run", D, "f"),
        ]);
        let hits = run(rule(), &four);
        assert_eq!(hits.len(), 1);
        assert_eq!(offsets(&hits[0]), vec![0, 1, 3], "the first `min` denials");
        assert_eq!((hits[0].ts_ms, hits[0].severity, hits[0].rule_type), (4, 8, RuleType::DenyCount));
        assert_eq!(hits[0].description, "4 denials in one trace window (threshold 3)");
    }

    #[test]
    fn deny_then_allow_matches_actor_and_artifact_in_order() {
        let rule = || RuleConfig::DenyThenAllow { name: "dta".into(), severity: 7 };
        // Allow before deny, other actor, other artifact: no hit.
        let none = steps(&[
            (1, "u", "x", "run", A, "f"),
            (2, "u", "x", "run", D, "f"),
            (3, "v", "x", "run", A, "f"),
            (4, "u", "y", "run", A, "f"),
            (5, "u", "x", "run", O, "f"),
        ]);
        assert!(run(rule(), &none).is_empty());
        let two = steps(&[
            (1, "u", "x", "run", D, "f"),
            (2, "u", "x", "run", D, "f"),
            (3, "u", "x", "run", A, "f"),
            (4, "u", "x", "run", A, "f"),
            (5, "u", "x", "run", D, "f"),
            (6, "u", "x", "run", A, "f"),
        ]);
        let hits = run(rule(), &two);
        assert_eq!(hits.iter().map(offsets).collect::<Vec<_>>(), vec![vec![0, 2], vec![4, 5]]);
        assert_ne!(hits[0].hit_id, hits[1].hit_id);
        assert_eq!(hits[1].hit_id, hit_id(hits[1].summary_id, "dta", 1));
        let name = format!("{}|dta|1", hits[1].summary_id);
        assert_eq!(hits[1].hit_id, Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes()), "UUIDv5 over summary_id|rule|index");
    }

    #[test]
    fn mode_change_reports_each_change() {
        let rule = || RuleConfig::ModeChange { name: "mc".into(), severity: 5 };
        let same = steps(&[(1, "u", "x", "run", A, "fixed"), (2, "v", "y", "run", D, "fixed")]);
        assert!(run(rule(), &same).is_empty());
        assert!(run(rule(), &steps(&[(1, "u", "x", "run", A, "fixed")])).is_empty());
        let flips = steps(&[
            (1, "u", "x", "run", A, "fixed"),
            (2, "u", "x", "run", A, "adaptive"),
            (3, "u", "x", "run", A, "adaptive"),
            (4, "u", "x", "run", A, "fixed"),
        ]);
        let hits = run(rule(), &flips);
        assert_eq!(hits.iter().map(offsets).collect::<Vec<_>>(), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(hits[0].description, "mode changed from fixed to adaptive");
    }

    #[test]
    fn action_after_deny_within_the_interval() {
        let rule = |same_actor| RuleConfig::ActionAfterDeny {
            name: "aad".into(),
            action: "execute".into(),
            within_ms: 100,
            same_actor,
            severity: 9,
        };
        // Too late after the denial, action before any denial, other action: no hit.
        let none = steps(&[
            (0, "u", "x", "execute", A, "f"),
            (10, "u", "x", "deploy", D, "f"),
            (111, "u", "x", "execute", A, "f"),
            (150, "u", "x", "deploy", D, "f"),
            (160, "u", "x", "modify", A, "f"),
        ]);
        assert!(run(rule(false), &none).is_empty());
        let hit = steps(&[(10, "u", "x", "deploy", D, "f"), (50, "v", "x", "deploy", D, "f"), (110, "u", "y", "execute", A, "f")]);
        let hits = run(rule(false), &hit);
        assert_eq!(hits.iter().map(offsets).collect::<Vec<_>>(), vec![vec![1, 2]], "the latest denial");
        assert_eq!(hits[0].description, "execute 60 ms after a denial (within 100 ms)");
        let hits = run(rule(true), &hit);
        assert_eq!(hits.iter().map(offsets).collect::<Vec<_>>(), vec![vec![0, 2]], "the latest denial by the same actor");
        let other_actor = steps(&[(10, "v", "x", "deploy", D, "f"), (20, "u", "x", "execute", A, "f")]);
        assert!(run(rule(true), &other_actor).is_empty());
        // A denied execute counts as the action and, afterwards, as a denial.
        let denied_exec = steps(&[(10, "u", "x", "execute", D, "f"), (20, "u", "x", "execute", D, "f")]);
        assert_eq!(run(rule(false), &denied_exec).iter().map(offsets).collect::<Vec<_>>(), vec![vec![0, 1]]);
    }
}
