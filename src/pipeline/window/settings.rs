//! Window settings and sequence-rule declarations, as read from configuration (`[window]`).

use serde::{Deserialize, Serialize};

/// Session-window settings. Every time is in milliseconds; see `docs/windowing.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowSettings {
    /// A window closes once the watermark passes its last event time by this much (default 300 000: 5 min).
    pub gap_ms: u64,
    /// A window closes once the watermark passes its first event time by this much (default 3 600 000: 1 h).
    pub max_duration_ms: u64,
    /// The watermark of a partition trails its highest event time by this much (default 30 000: 30 s).
    pub allowed_lateness_ms: u64,
    /// A partition without any event for this long (wall time) releases all its windows (default 60 000: 60 s).
    pub idle_timeout_ms: u64,
    /// Open windows at most; opening one more first closes the oldest, truncated (default 100 000).
    pub max_open_traces: usize,
    /// Events per window at most; the window closes, truncated, when it holds this many (default 1 000).
    pub max_events_per_trace: usize,
    /// Events stamped more than this far ahead of the wall clock (`now_ms`) do not move the
    /// watermark (they are still windowed), so one event from a skewed clock cannot close every
    /// window and make the partition's later events late. 0 disables (default: replays pass a
    /// fixed `now_ms`); 300 000 (5 min) suits live input.
    pub max_ahead_ms: u64,
    /// Closed windows remembered (trace, start and end only) so that a late event can name the summary
    /// it would have belonged to (default 100 000; 0 disables).
    pub remember_closed: usize,
    /// Sequence rules evaluated on every window when it closes (default none).
    pub rules: Vec<RuleConfig>,
}

impl Default for WindowSettings {
    fn default() -> Self {
        WindowSettings {
            gap_ms: 300_000,
            max_duration_ms: 3_600_000,
            allowed_lateness_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_open_traces: 100_000,
            max_events_per_trace: 1_000,
            max_ahead_ms: 0,
            remember_closed: 100_000,
            rules: Vec::new(),
        }
    }
}

/// Default severity of a rule hit (0–10 scale, above the 6 of a single denial).
pub const DEFAULT_RULE_SEVERITY: u8 = 7;

fn default_severity() -> u8 {
    DEFAULT_RULE_SEVERITY
}

/// One sequence rule, tagged by `type`. Every rule has a unique `name` (reported in hits) and a
/// `severity` (0–10, default 7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleConfig {
    /// `min` or more denied events in one window.
    DenyCount {
        /// Rule name, unique.
        name: String,
        /// Denials needed, at least 1.
        min: u32,
        /// Severity of a hit, 0–10.
        #[serde(default = "default_severity")]
        severity: u8,
    },
    /// A denied event followed, later in the ordered steps, by an allowed event of the same
    /// artifact by the same actor.
    DenyThenAllow {
        /// Rule name, unique.
        name: String,
        /// Severity of a hit, 0–10.
        #[serde(default = "default_severity")]
        severity: u8,
    },
    /// Two consecutive steps of a window with different modes.
    ModeChange {
        /// Rule name, unique.
        name: String,
        /// Severity of a hit, 0–10.
        #[serde(default = "default_severity")]
        severity: u8,
    },
    /// An event with action `action` at most `within_ms` after the latest denied event before it.
    ActionAfterDeny {
        /// Rule name, unique.
        name: String,
        /// The action to look for, e.g. `execute`.
        action: String,
        /// How long after the denial, in event time.
        within_ms: u64,
        /// Only count a denial by the same actor as the action (default false: any denial).
        #[serde(default)]
        same_actor: bool,
        /// Severity of a hit, 0–10.
        #[serde(default = "default_severity")]
        severity: u8,
    },
}

impl RuleConfig {
    /// The rule's name.
    pub fn name(&self) -> &str {
        match self {
            RuleConfig::DenyCount { name, .. }
            | RuleConfig::DenyThenAllow { name, .. }
            | RuleConfig::ModeChange { name, .. }
            | RuleConfig::ActionAfterDeny { name, .. } => name,
        }
    }

    /// The rule's severity.
    pub fn severity(&self) -> u8 {
        match self {
            RuleConfig::DenyCount { severity, .. }
            | RuleConfig::DenyThenAllow { severity, .. }
            | RuleConfig::ModeChange { severity, .. }
            | RuleConfig::ActionAfterDeny { severity, .. } => *severity,
        }
    }
}

impl WindowSettings {
    /// Every problem with these settings, each starting with its key path under `window.`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, value) in [("gap_ms", self.gap_ms), ("max_duration_ms", self.max_duration_ms), ("idle_timeout_ms", self.idle_timeout_ms)]
        {
            if value == 0 || value > MAX_SPAN_MS {
                out.push(format!("window.{key}: must be 1 to {MAX_SPAN_MS}"));
            }
        }
        for (key, value) in [("allowed_lateness_ms", self.allowed_lateness_ms), ("max_ahead_ms", self.max_ahead_ms)] {
            if value > MAX_SPAN_MS {
                out.push(format!("window.{key}: must be at most {MAX_SPAN_MS}"));
            }
        }
        if self.max_open_traces == 0 {
            out.push("window.max_open_traces: must be at least 1".to_owned());
        }
        if self.max_events_per_trace == 0 {
            out.push("window.max_events_per_trace: must be at least 1".to_owned());
        }
        let mut names = std::collections::HashSet::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let path = format!("window.rules[{index}]");
            if rule.name().is_empty() {
                out.push(format!("{path}.name: must not be empty"));
            } else if !names.insert(rule.name()) {
                out.push(format!("{path}.name: {:?} is used by an earlier rule", rule.name()));
            }
            if rule.severity() > 10 {
                out.push(format!("{path}.severity: must be 0 to 10"));
            }
            match rule {
                RuleConfig::DenyCount { min: 0, .. } => out.push(format!("{path}.min: must be at least 1")),
                RuleConfig::ActionAfterDeny { action, within_ms, .. } => {
                    if action.is_empty() {
                        out.push(format!("{path}.action: must not be empty"));
                    }
                    if *within_ms > MAX_SPAN_MS {
                        out.push(format!("{path}.within_ms: must be at most {MAX_SPAN_MS}"));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// Upper bound of every duration setting: 30 days. Keeps event-time arithmetic far from overflow.
pub const MAX_SPAN_MS: u64 = 30 * 24 * 3_600_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_tagged_by_type_and_rejects_unknown_fields() {
        let text = r#"
            gap_ms = 1000
            [[rules]]
            type = "deny_count"
            name = "many-denies"
            min = 3
            [[rules]]
            type = "action_after_deny"
            name = "exec-after-deny"
            action = "execute"
            within_ms = 60000
            severity = 9
        "#;
        let settings: WindowSettings = toml::from_str(text).unwrap();
        assert_eq!(settings.gap_ms, 1000);
        assert_eq!(settings.max_open_traces, 100_000);
        assert_eq!(settings.rules[0], RuleConfig::DenyCount { name: "many-denies".into(), min: 3, severity: 7 });
        assert_eq!(settings.rules[1].severity(), 9);
        assert!(settings.problems().is_empty());
        assert!(toml::from_str::<WindowSettings>("gap = 1").is_err());
        assert!(toml::from_str::<WindowSettings>("[[rules]]\ntype = \"mode_change\"\nname = \"m\"\nmin = 2").is_err());
        assert!(toml::from_str::<WindowSettings>("[[rules]]\ntype = \"sideways\"\nname = \"m\"").is_err());
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let settings = WindowSettings {
            gap_ms: 0,
            max_events_per_trace: 0,
            rules: vec![
                RuleConfig::DenyCount { name: "a".into(), min: 0, severity: 11 },
                RuleConfig::ModeChange { name: "a".into(), severity: 1 },
            ],
            ..WindowSettings::default()
        };
        assert_eq!(
            settings.problems(),
            vec![
                "window.gap_ms: must be 1 to 2592000000",
                "window.max_events_per_trace: must be at least 1",
                "window.rules[0].severity: must be 0 to 10",
                "window.rules[0].min: must be at least 1",
                "window.rules[1].name: \"a\" is used by an earlier rule",
            ]
        );
    }
}
