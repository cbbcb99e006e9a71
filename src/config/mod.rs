//! Configuration: one TOML file (`config/auditflow.toml` documents every key), environment
//! overrides for addresses and secrets, and validation that reports every problem with its key path.
//!
//! `Config` is what the file says; [`Config::pipeline_settings`] builds the core's settings once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::pipeline::decode::DecodeLimits;
use crate::pipeline::enrich::catalog::PolicyCatalog;
use crate::pipeline::enrich::SeverityLadder;
use crate::pipeline::route::predicate::Predicate;
use crate::pipeline::route::Route;
use crate::pipeline::validate::ValidateSettings;
use crate::pipeline::window::WindowSettings;
use crate::pipeline::{PipelineSettings, Topics};
use crate::siem::{
    asim::AsimConfig, cef::CefConfig, ecs::EcsConfig, leef::LeefConfig, ocsf::OcsfConfig, otlp::OtlpConfig, splunk::SplunkConfig,
    udm::UdmConfig, Encoder, Product,
};

/// The SIEM formats this build can write.
pub const KNOWN_FORMATS: &[&str] = &["ecs", "splunk", "cef", "leef", "ocsf", "udm", "asim", "otlp"];

/// A configuration that could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("config file {path}: {message}")]
    Parse {
        /// The path given.
        path: String,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// The values break one or more rules; one line per problem, each starting with its key path.
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka connection and client properties.
    pub kafka: KafkaConfig,
    /// Topic names.
    pub topics: TopicsConfig,
    /// Confluent-compatible schema registry.
    pub registry: RegistryConfig,
    /// Size bounds.
    pub limits: LimitsConfig,
    /// Accepted values beyond the defaults.
    pub validate: ValidateConfig,
    /// Severity ladder.
    pub severity: SeverityConfig,
    /// Enrichment: the policy catalog.
    pub enrich: EnrichConfig,
    /// SIEM outputs.
    pub siem: SiemConfig,
    /// Delivery and flow control.
    pub delivery: DeliveryConfig,
    /// The enriched Avro output.
    pub enriched: EnrichedConfig,
    /// Extra routes: events matching a predicate go to a named topic.
    pub routes: Vec<RouteConfig>,
    /// Metrics and health endpoints.
    pub metrics: MetricsConfig,
    /// Benchmark baseline mode.
    pub passthrough: PassthroughConfig,
    /// Per-trace event-time windows and sequence rules (`docs/windowing.md`).
    pub window: WindowConfig,
}

/// `[window]`: per-trace session windows, summaries on `topics.sequences`, rule hits on
/// `topics.alerts`. Every other key is a [`WindowSettings`] field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Window events per trace. Default true.
    pub enabled: bool,
    /// Encoding of trace summaries on `topics.sequences`: `json`, or `avro`
    /// (`schemas/trace_summary.avsc`, registered as `<topics.sequences>-value`, Confluent wire
    /// format; needs `registry.url`). With `avro`, late-event records go as Avro too
    /// (`schemas/late_event.avsc`, registered as `<topics.late_events>-value`) to
    /// `topics.late_events`, as one topic holds one schema. Default `json`.
    pub summary_format: SummaryFormat,
    /// The window settings and rules.
    #[serde(flatten)]
    pub settings: WindowSettings,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig { enabled: true, summary_format: SummaryFormat::Json, settings: WindowSettings::default() }
    }
}

/// `[passthrough]`: the benchmark baseline. With `topic` set, every input record is forwarded
/// unchanged (key, value, headers, timestamp) to that topic and the pipeline does nothing else,
/// with the same clients, settings and offset handling as a normal run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassthroughConfig {
    /// Destination topic; unset (the default): normal processing.
    pub topic: Option<String>,
}

/// `[metrics]`: the Prometheus, liveness and readiness endpoint of `run`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` to serve `/metrics`, `/health` and `/ready` on, e.g. `0.0.0.0:9464`.
    /// Unset (the default): no endpoint. Port 0 picks a free port (logged at start).
    pub listen: Option<String>,
}

/// How trace summaries are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SummaryFormat {
    /// JSON objects (`docs/windowing.md`).
    #[default]
    Json,
    /// Avro datums of `schemas/trace_summary.avsc` in the Confluent wire format.
    Avro,
}

/// `[enriched]`: the enriched event as Avro (`schemas/enriched_event.avsc`) in the Confluent wire
/// format, registered in the schema registry at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichedConfig {
    /// Write enriched events. Needs `registry.url`. Default false.
    pub enabled: bool,
    /// Destination topic. Default `audit.enriched`.
    pub topic: String,
    /// Registry subject of the schema. Default `<topic>-value` (TopicNameStrategy).
    pub subject: Option<String>,
}

impl Default for EnrichedConfig {
    fn default() -> Self {
        EnrichedConfig { enabled: false, topic: "audit.enriched".into(), subject: None }
    }
}

/// `[[routes]]`: one extra route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name, for logs, metrics and the `auditflow.route` header.
    pub name: String,
    /// Destination topic; events are written as enriched JSON keyed by trace id.
    pub topic: String,
    /// Predicate, e.g. `action = deploy and target matches prod` (`docs/routing.md`).
    pub when: String,
}

/// `[kafka]`: where the brokers are and how to talk to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list. Env override: `AUDITFLOW_KAFKA_BOOTSTRAP_SERVERS`.
    pub bootstrap_servers: String,
    /// Consumer group id. Env override: `AUDITFLOW_KAFKA_GROUP_ID`.
    pub group_id: String,
    /// librdkafka properties for both consumer and producer (TLS, SASL, ...), passed through as
    /// they are. A value `${NAME}` is read from the environment variable `NAME`.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only.
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    pub producer_properties: BTreeMap<String, String>,
    /// How long the consumer may stay out of a steady group membership, with a broker answering,
    /// before the run stops with an error for its supervisor to restart it (librdkafka sometimes
    /// never rejoins after a long outage; `docs/operations.md`, "Broker outages"). 0: never.
    pub group_stuck_timeout_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            group_id: "auditflow".into(),
            properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
            group_stuck_timeout_ms: 360_000,
        }
    }
}

/// `[topics]`: input and output topic names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Topics consumed as one group.
    pub input: Vec<String>,
    /// Alerts: denied events.
    pub alerts: String,
    /// Dead letters.
    pub dead_letter: String,
    /// Prefix of SIEM sink topics; the format name is appended.
    pub siem_prefix: String,
    /// Trace summaries and late-event records (`docs/windowing.md`).
    pub sequences: String,
    /// Window changelog of exactly-once mode (compacted; `docs/delivery.md`). Unset:
    /// `<kafka.group_id>.windows-changelog`.
    pub window_changelog: Option<String>,
    /// Whether producers key input records by trace id, so that every event of a trace is in
    /// one partition. When false, auditflow first re-keys valid records by trace through
    /// `repartition` (`docs/windowing.md`, "Locality"). Default true.
    pub keyed_by_trace: bool,
    /// Late-event records when `window.summary_format = "avro"`. Unset: `<topics.sequences>.late`.
    pub late_events: Option<String>,
    /// The internal topic of re-keyed records when `keyed_by_trace = false`. Unset:
    /// `<kafka.group_id>.repartition`.
    pub repartition: Option<String>,
    /// Create missing output topics at start through the admin API (input topics are never
    /// created: their partitioning is the producers' decision). Default true.
    pub create_missing: bool,
    /// Partitions of created topics; -1 takes the broker's `num.partitions`. Default -1.
    pub new_topic_partitions: i32,
    /// Replication factor of created topics; -1 takes the broker's `default.replication.factor`. Default -1.
    pub new_topic_replication_factor: i32,
    /// How SIEM records (keyed by event id) are spread over their topic's partitions. Default `sticky`.
    pub siem_partitioning: Partitioning,
    /// How records keyed by trace id (alerts, sequences, late events, routes, enriched) are spread
    /// over their topic's partitions. Default `key`.
    pub trace_partitioning: Partitioning,
}

/// How an output topic's records are spread over its partitions (`docs/operations.md`,
/// "Partitioning").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// By a hash of the key (librdkafka's `partitioner`): a key always lands in one partition.
    Key,
    /// All of a topic's records go to one partition for 10 ms, then to the next, round robin: one
    /// produce batch per topic and linger interval instead of one per partition (librdkafka sends
    /// a request per partition batch). Keys are still written; they do not choose the partition.
    Sticky,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        let t = Topics::default();
        TopicsConfig {
            input: vec!["audit.raw".into()],
            alerts: t.alerts,
            dead_letter: t.dead_letter,
            siem_prefix: t.siem_prefix,
            sequences: "audit.sequences".into(),
            window_changelog: None,
            keyed_by_trace: true,
            late_events: None,
            repartition: None,
            create_missing: true,
            new_topic_partitions: -1,
            new_topic_replication_factor: -1,
            siem_partitioning: Partitioning::Sticky,
            trace_partitioning: Partitioning::Key,
        }
    }
}

/// `[registry]`: the Confluent-compatible schema registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API, e.g. `http://127.0.0.1:8081/apis/ccompat/v7` for
    /// Apicurio. Unset: Avro input is dead-lettered. Env override: `AUDITFLOW_REGISTRY_URL`.
    pub url: Option<String>,
    /// Basic-auth user name.
    pub username: Option<String>,
    /// Basic-auth password; `${NAME}` reads the environment. Env override: `AUDITFLOW_REGISTRY_PASSWORD`.
    pub password: Option<String>,
}

/// `[limits]`: bounds on input sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted record value. Default 1 MiB (Kafka's default `max.message.bytes`).
    pub max_record_bytes: usize,
    /// Longest accepted canonical field or `reason`. Default 2048.
    pub max_field_bytes: usize,
    /// Longest accepted `trace`. Default 256.
    pub max_trace_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let v = ValidateSettings::default();
        LimitsConfig { max_record_bytes: 1 << 20, max_field_bytes: v.max_field_bytes, max_trace_bytes: v.max_trace_bytes }
    }
}

/// `[validate]`: values accepted beyond the canonical ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidateConfig {
    /// Extra accepted `mode` values (besides `fixed`, `adaptive`).
    pub extra_modes: Vec<String>,
    /// Extra accepted `result` values (besides `allowed`, `denied`); routed like `allowed`.
    pub extra_results: Vec<String>,
}

/// `[severity]`: severity on the 0–10 scale by decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityConfig {
    /// Severity of allowed events. Default 3.
    pub allowed: u8,
    /// Severity of denied events, unless the policy catalog sets one. Default 6.
    pub denied: u8,
    /// Added to a denial's severity when the event's mode is `adaptive` (capped at 10). Default 0.
    pub adaptive_raise: u8,
}

impl Default for SeverityConfig {
    fn default() -> Self {
        let l = SeverityLadder::default();
        SeverityConfig { allowed: l.allowed, denied: l.denied, adaptive_raise: l.adaptive_raise }
    }
}

/// `[enrich]`: the policy catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// Path of the policy catalog TOML file (see `config/policies.toml`); relative paths are
    /// relative to the working directory. Unset: no catalog, no policy is flagged unknown.
    pub policy_catalog: Option<PathBuf>,
    /// How often `run` checks the catalog file for changes, in ms; a changed file is reloaded
    /// without a restart (a file that fails to parse is logged and the old catalog kept). Default 2000.
    pub catalog_check_interval_ms: u64,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig { policy_catalog: None, catalog_check_interval_ms: 2000 }
    }
}

/// `[siem]`: which formats to write and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiemConfig {
    /// Enabled formats; each writes to `topics.siem_prefix + format`. Default `["ecs"]`.
    pub formats: Vec<String>,
    /// Product identity shown in every format.
    pub product: Product,
    /// Elastic Common Schema settings.
    pub ecs: EcsConfig,
    /// OCSF API Activity settings.
    pub ocsf: OcsfConfig,
    /// Google SecOps UDM settings.
    pub udm: UdmConfig,
    /// Microsoft Sentinel ASIM Audit Event settings.
    pub asim: AsimConfig,
    /// OpenTelemetry OTLP JSON logs settings.
    pub otlp: OtlpConfig,
    /// Splunk HEC envelope settings.
    pub splunk: SplunkConfig,
    /// ArcSight CEF settings.
    pub cef: CefConfig,
    /// QRadar LEEF settings.
    pub leef: LeefConfig,
}

impl Default for SiemConfig {
    fn default() -> Self {
        SiemConfig {
            formats: vec!["ecs".into()],
            product: Product::default(),
            ecs: EcsConfig::default(),
            ocsf: OcsfConfig::default(),
            udm: UdmConfig::default(),
            asim: AsimConfig::default(),
            otlp: OtlpConfig::default(),
            splunk: SplunkConfig::default(),
            cef: CefConfig::default(),
            leef: LeefConfig::default(),
        }
    }
}

/// `[delivery]`: flow control and commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Most records whose outputs are not yet all acknowledged; at the bound the consumer stops
    /// taking records until acknowledgements arrive. Default 10000.
    pub max_in_flight: usize,
    /// How often acknowledged offsets are committed, in ms. Default 1000.
    pub commit_interval_ms: u64,
    /// On SIGTERM/SIGINT, how long to wait for in-flight outputs before exiting, in ms. Default 30000.
    pub shutdown_timeout_ms: u64,
    /// Timestamp of output records: `event` (the event's `ts`, what SIEM connectors use as the
    /// event time) or `send` (when auditflow sends it). Kafka's time-based retention counts from
    /// the record timestamp, so with `event`, events older than an output topic's `retention.ms`
    /// are deleted at the broker's next retention check: use `send` for backfills. Default `event`.
    pub output_timestamp: OutputTimestamp,
    /// `at_least_once` (acknowledged outputs, then offset commits) or `exactly_once` (outputs,
    /// window changelog and input offsets in one Kafka transaction). Default `at_least_once`.
    pub mode: DeliveryMode,
    /// Exactly-once: the producer's `transactional.id`. It must be unique per instance and the
    /// same across its restarts (a restart then aborts what the crashed run left open at once).
    /// Unset: `<kafka.group_id>-<hostname>`.
    pub transactional_id: Option<String>,
    /// Exactly-once: the broker aborts a transaction left open this long, in ms. Default 60000.
    pub transaction_timeout_ms: u64,
    /// `/ready` answers 503 once outputs have failed without a break for this long, in ms:
    /// deliveries retried (at-least-once) or transactions aborted with none committed
    /// (exactly-once). 0: never. Default 60000.
    pub unready_after_failing_ms: u64,
}

/// The delivery guarantee (`docs/delivery.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Every output acknowledged before its input offset is committed; a crash may repeat outputs.
    #[default]
    AtLeastOnce,
    /// Outputs and input offsets committed atomically in Kafka transactions.
    ExactlyOnce,
}

/// Which time output records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputTimestamp {
    /// The event time.
    Event,
    /// The time of sending.
    Send,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_in_flight: 10_000,
            commit_interval_ms: 1000,
            shutdown_timeout_ms: 30_000,
            output_timestamp: OutputTimestamp::Event,
            mode: DeliveryMode::AtLeastOnce,
            transactional_id: None,
            transaction_timeout_ms: 60_000,
            unready_after_failing_ms: 60_000,
        }
    }
}

impl Config {
    /// The window changelog topic of exactly-once mode.
    pub fn window_changelog_topic(&self) -> String {
        self.topics.window_changelog.clone().unwrap_or_else(|| format!("{}.windows-changelog", self.kafka.group_id))
    }

    /// Where late-event records go when summaries are Avro.
    pub fn late_events_topic(&self) -> String {
        self.topics.late_events.clone().unwrap_or_else(|| format!("{}.late", self.topics.sequences))
    }

    /// The internal re-keying topic, when input is not keyed by trace (and windows are on).
    pub fn repartition_topic(&self) -> Option<String> {
        (!self.topics.keyed_by_trace && self.window.enabled && self.passthrough.topic.is_none())
            .then(|| self.topics.repartition.clone().unwrap_or_else(|| format!("{}.repartition", self.kafka.group_id)))
    }

    /// The producer's `transactional.id` in exactly-once mode.
    pub fn transactional_id(&self) -> String {
        self.delivery.transactional_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_owned());
            format!("{}-{host}", self.kafka.group_id)
        })
    }

    /// Reads, parses, applies environment overrides and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Parse { path: path.display().to_string(), message })?;
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        config.load_catalog()?;
        Ok(config)
    }

    /// Reads and parses the policy catalog file, if one is configured.
    pub fn load_catalog(&self) -> Result<Option<Arc<PolicyCatalog>>, ConfigError> {
        let Some(path) = self.enrich.policy_catalog.as_deref() else { return Ok(None) };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let catalog = PolicyCatalog::parse(&text)
            .map_err(|message| ConfigError::Invalid(vec![format!("enrich.policy_catalog ({}): {message}", path.display())]))?;
        Ok(Some(Arc::new(catalog)))
    }

    /// Parses TOML text (no environment, no validation).
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|error| error.to_string().trim_end().to_owned())
    }

    /// Applies `AUDITFLOW_*` overrides and `${NAME}` references, reading variables through `env`.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env("AUDITFLOW_KAFKA_BOOTSTRAP_SERVERS") {
            self.kafka.bootstrap_servers = v;
        }
        if let Some(v) = env("AUDITFLOW_KAFKA_GROUP_ID") {
            self.kafka.group_id = v;
        }
        if let Some(v) = env("AUDITFLOW_REGISTRY_URL") {
            self.registry.url = Some(v);
        }
        if let Some(v) = env("AUDITFLOW_REGISTRY_PASSWORD") {
            self.registry.password = Some(v);
        }
        let mut problems = Vec::new();
        let mut resolve = |path: String, value: &mut String| {
            if let Some(name) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                match env(name) {
                    Some(found) => *value = found,
                    None => problems.push(format!("{path}: environment variable {name} is not set")),
                }
            }
        };
        for (section, map) in [
            ("kafka.properties", &mut self.kafka.properties),
            ("kafka.consumer_properties", &mut self.kafka.consumer_properties),
            ("kafka.producer_properties", &mut self.kafka.producer_properties),
        ] {
            for (key, value) in map.iter_mut() {
                resolve(format!("{section}.\"{key}\""), value);
            }
        }
        if let Some(password) = self.registry.password.as_mut() {
            resolve("registry.password".into(), password);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Checks every rule; returns all problems at once, each with its key path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.kafka.bootstrap_servers.trim().is_empty() {
            problems.push("kafka.bootstrap_servers: must not be empty".to_owned());
        }
        if self.kafka.group_id.trim().is_empty() {
            problems.push("kafka.group_id: must not be empty".to_owned());
        }
        if self.topics.input.is_empty() {
            problems.push("topics.input: name at least one input topic".to_owned());
        }
        for (key, name) in [("topics.alerts", &self.topics.alerts), ("topics.dead_letter", &self.topics.dead_letter)] {
            if name.is_empty() {
                problems.push(format!("{key}: must not be empty"));
            }
        }
        for (index, format) in self.siem.formats.iter().enumerate() {
            if !KNOWN_FORMATS.contains(&format.as_str()) {
                problems.push(format!("siem.formats[{index}]: unknown format {format:?}; known: {KNOWN_FORMATS:?}"));
            }
        }
        problems.extend(self.siem.ecs.problems());
        problems.extend(self.siem.ocsf.problems());
        problems.extend(self.siem.asim.problems());
        problems.extend(self.siem.otlp.problems());
        problems.extend(self.siem.splunk.problems());
        problems.extend(self.siem.cef.problems());
        problems.extend(self.siem.leef.problems());
        if self.siem.formats.iter().any(|f| f == "leef") {
            problems.extend(LeefConfig::product_problems(&self.siem.product));
        }
        if self.limits.max_record_bytes == 0 {
            problems.push("limits.max_record_bytes: must be at least 1".to_owned());
        }
        if self.severity.allowed > 10 || self.severity.denied > 10 || self.severity.adaptive_raise > 10 {
            problems.push("severity: values are on the 0-10 scale".to_owned());
        }
        if self.window.enabled && self.window.summary_format == SummaryFormat::Avro && self.registry.url.is_none() {
            problems.push("window.summary_format: avro needs registry.url (the schema is registered there)".to_owned());
        }
        if self.enriched.enabled && self.registry.url.is_none() {
            problems.push("enriched.enabled: needs registry.url (the schema is registered there)".to_owned());
        }
        for (index, route) in self.routes.iter().enumerate() {
            if route.topic.is_empty() {
                problems.push(format!("routes[{index}].topic: must not be empty"));
            }
            if let Err(error) = Predicate::parse(&route.when) {
                problems.push(format!("routes[{index}].when: {error}"));
            }
        }
        if self.window.enabled {
            problems.extend(self.window.settings.problems());
        }
        if self.delivery.max_in_flight == 0 {
            problems.push("delivery.max_in_flight: must be at least 1".to_owned());
        }
        if self.delivery.transactional_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            problems.push("delivery.transactional_id: must not be empty when set".to_owned());
        }
        if self.delivery.transaction_timeout_ms < 1000 {
            problems.push("delivery.transaction_timeout_ms: must be at least 1000".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The producer's `message.max.bytes` (from `kafka.producer_properties`, else
    /// `kafka.properties`, else librdkafka's default, 1,000,000): the largest record auditflow
    /// sends. Larger outputs become dead letters (`src/pipeline/limit.rs`).
    pub fn max_message_bytes(&self) -> usize {
        [&self.kafka.producer_properties, &self.kafka.properties]
            .into_iter()
            .find_map(|properties| properties.get("message.max.bytes"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(1_000_000)
    }

    /// Builds the core's settings.
    pub fn pipeline_settings(&self) -> PipelineSettings {
        let mut modes = vec!["fixed".to_owned(), "adaptive".to_owned()];
        modes.extend(self.validate.extra_modes.iter().cloned());
        let encoders = self
            .siem
            .formats
            .iter()
            .filter_map(|format| -> Option<Box<dyn Encoder>> {
                match format.as_str() {
                    "ecs" => Some(Box::new(self.siem.ecs.build(&self.siem.product))),
                    "ocsf" => Some(Box::new(self.siem.ocsf.build(&self.siem.product))),
                    "udm" => Some(Box::new(self.siem.udm.build(&self.siem.product))),
                    "asim" => Some(Box::new(self.siem.asim.build(&self.siem.product))),
                    "otlp" => Some(Box::new(self.siem.otlp.build(&self.siem.product))),
                    "splunk" => Some(Box::new(self.siem.splunk.build(&self.siem.product))),
                    "cef" => Some(Box::new(self.siem.cef.build(&self.siem.product))),
                    "leef" => Some(Box::new(self.siem.leef.build(&self.siem.product))),
                    _ => None,
                }
            })
            .collect();
        PipelineSettings {
            topics: Topics {
                alerts: self.topics.alerts.clone(),
                dead_letter: self.topics.dead_letter.clone(),
                siem_prefix: self.topics.siem_prefix.clone(),
            },
            limits: DecodeLimits { max_record_bytes: self.limits.max_record_bytes },
            max_output_bytes: self.max_message_bytes(),
            validate: ValidateSettings {
                modes,
                extra_results: self.validate.extra_results.clone(),
                max_field_bytes: self.limits.max_field_bytes,
                max_trace_bytes: self.limits.max_trace_bytes,
            },
            severity: SeverityLadder {
                allowed: self.severity.allowed,
                denied: self.severity.denied,
                adaptive_raise: self.severity.adaptive_raise,
            },
            catalog: None,
            routes: self
                .routes
                .iter()
                .filter_map(|r| {
                    let when = Predicate::parse(&r.when).ok()?;
                    Some(Route { name: r.name.clone(), topic: r.topic.clone(), when })
                })
                .collect(),
            enriched_topic: self.enriched.enabled.then(|| self.enriched.topic.clone()),
            event_time_timestamps: self.delivery.output_timestamp == OutputTimestamp::Event,
            passthrough: self.passthrough.topic.clone(),
            window: self.window.enabled.then(|| self.window.settings.clone()),
            sequences_topic: self.topics.sequences.clone(),
            encoders,
            avro_enabled: self.registry.url.is_some(),
        }
    }
}

impl Config {
    /// A copy safe to print: passwords, secrets and keys replaced by `<redacted>`.
    pub fn redacted(&self) -> Config {
        let mut copy = self.clone();
        for map in [&mut copy.kafka.properties, &mut copy.kafka.consumer_properties, &mut copy.kafka.producer_properties] {
            for (key, value) in map.iter_mut() {
                if is_secret_key(key) {
                    *value = "<redacted>".into();
                }
            }
        }
        if copy.registry.password.is_some() {
            copy.registry.password = Some("<redacted>".into());
        }
        copy
    }
}

/// librdkafka property names whose values are secrets.
fn is_secret_key(key: &str) -> bool {
    ["password", "secret", "key.pem", "sasl.oauthbearer.config", "ssl.key"].iter().any(|s| key.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_validates() {
        let config = Config::parse(include_str!("../../config/auditflow.toml")).unwrap();
        config.validate().unwrap();
        assert_eq!(config.topics.input, ["audit.raw"]);
        let docker = Config::parse(include_str!("../../config/auditflow.docker.toml")).unwrap();
        docker.validate().unwrap();
    }

    #[test]
    fn the_output_limit_is_the_producers_message_max_bytes() {
        let mut config = Config::default();
        assert_eq!(config.max_message_bytes(), 1_000_000, "librdkafka's default");
        config.kafka.properties.insert("message.max.bytes".into(), "2000000".into());
        assert_eq!(config.pipeline_settings().max_output_bytes, 2_000_000);
        config.kafka.producer_properties.insert("message.max.bytes".into(), " 300000".into());
        assert_eq!(config.max_message_bytes(), 300_000, "the producer's own setting wins");
    }

    #[test]
    fn example_config_states_the_defaults() {
        // `config/auditflow.toml` documents every key with its default: the file and the code agree.
        let example = Config::parse(include_str!("../../config/auditflow.toml")).unwrap();
        assert_eq!(toml::to_string(&example).unwrap(), toml::to_string(&Config::default()).unwrap());
    }

    #[test]
    fn every_known_format_builds_its_encoder() {
        let mut config = Config::default();
        config.siem.formats = KNOWN_FORMATS.iter().map(|f| f.to_string()).collect();
        config.validate().unwrap();
        let names: Vec<&str> = config.pipeline_settings().encoders.iter().map(|e| e.name()).collect();
        assert_eq!(names, KNOWN_FORMATS);
    }

    #[test]
    fn format_settings_are_validated() {
        let mut config = Config::default();
        config.siem.ocsf.unknown_source_name = String::new();
        config.siem.asim.max_value_bytes = 1 << 20;
        config.siem.otlp.attribute_prefix = "a b".into();
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else { panic!() };
        let keys: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(keys, ["siem.ocsf.unknown_source_name", "siem.asim.max_value_bytes", "siem.otlp.attribute_prefix"]);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let error = Config::parse("[kafka]\nbootstrap = \"x\"\n").unwrap_err();
        assert!(error.contains("unknown field `bootstrap`"), "{error}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut config = Config::default();
        config.topics.input.clear();
        config.siem.formats.push("syslog".into());
        config.siem.ecs.namespace = "Prod-1".into();
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else { panic!() };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("topics.input:"));
        assert!(problems[1].starts_with("siem.formats[1]:"));
        assert!(problems[2].starts_with("siem.ecs.namespace:"));
    }

    #[test]
    fn routes_and_enriched_output_are_checked() {
        let mut config =
            Config::parse("[enriched]\nenabled = true\n[[routes]]\nname = \"r\"\ntopic = \"t\"\nwhen = \"action = \"\n").unwrap();
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else { panic!() };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("enriched.enabled: needs registry.url"));
        assert_eq!(problems[1], "routes[0].when: expected a value, found the end");
        config.routes[0].when = "action = deploy".into();
        config.registry.url = Some("http://r".into());
        config.validate().unwrap();
        assert_eq!(config.pipeline_settings().routes.len(), 1);
    }

    #[test]
    fn leef_checks_the_product_identity_only_when_enabled() {
        let mut config = Config::parse("[siem.product]\nvendor = \"A|B\"\n[siem.splunk]\nindex = \"Main\"\n").unwrap();
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else { panic!() };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("siem.splunk.index:"));
        config.siem.splunk.index = None;
        config.siem.formats.push("leef".into());
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else { panic!() };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("siem.product.vendor:"));
    }

    #[test]
    fn env_references_and_overrides_apply() {
        let mut config = Config::parse("[kafka.properties]\n\"sasl.password\" = \"${KPASS}\"\n").unwrap();
        let env = |name: &str| match name {
            "KPASS" => Some("s3cret".to_owned()),
            "AUDITFLOW_KAFKA_BOOTSTRAP_SERVERS" => Some("k1:9092".to_owned()),
            _ => None,
        };
        config.apply_env(env).unwrap();
        assert_eq!(config.kafka.properties["sasl.password"], "s3cret");
        assert_eq!(config.kafka.bootstrap_servers, "k1:9092");
        let mut config = Config::parse("[kafka.properties]\n\"sasl.password\" = \"${MISSING}\"\n").unwrap();
        let error = config.apply_env(|_| None).unwrap_err().to_string();
        assert!(error.contains("kafka.properties.\"sasl.password\": environment variable MISSING is not set"), "{error}");
    }
}
