//! Command-line definitions: what the flags are, not what they do (`main.rs` runs them).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Stream processor for runtime audit telemetry on Kafka.
#[derive(Debug, Parser)]
#[command(name = "auditflow", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "human", env = "AUDITFLOW_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event.
    Json,
}

/// auditflow's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume the input topics as a consumer group and write every output, until SIGTERM/SIGINT.
    Run {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Stop once every assigned partition is read to its end and every output acknowledged
        /// (benchmarks, one-shot catch-up jobs). With several input topics, "every partition" is
        /// every partition number: librdkafka reports the end of a partition without its topic.
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Validate a configuration file and print the effective settings (secrets redacted).
    CheckConfig {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the pipeline on a file with no Kafka: NDJSON in, one NDJSON file per output topic out.
    Replay {
        /// The configuration file (defaults apply without one).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Input file, or `-` for standard input.
        #[arg(long, short)]
        input: PathBuf,
        /// Directory for the output files.
        #[arg(long, short)]
        output_dir: PathBuf,
    },
    /// Generate realistic synthetic events (NDJSON on standard output, or to a topic).
    Generate {
        /// How many events.
        #[arg(long, short = 'n', default_value_t = 1000)]
        count: u64,
        /// Seed: the same seed gives the same events.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of denied steps, 0 to 1.
        #[arg(long, default_value_t = 0.1)]
        deny_ratio: f64,
        /// Largest out-of-order shift of an event against its event time, in ms.
        #[arg(long, default_value_t = 0)]
        jitter_ms: i64,
        /// Event time of the first event (RFC 3339); default: now minus one hour.
        #[arg(long)]
        start: Option<String>,
        /// Traces open at once.
        #[arg(long, default_value_t = 50)]
        concurrent_traces: usize,
        /// Publish to this topic (keyed by trace id) instead of printing.
        #[arg(long)]
        topic: Option<String>,
        /// Kafka bootstrap servers for `--topic`.
        #[arg(long, env = "AUDITFLOW_KAFKA_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// With `--topic`: publish at this many events per second, evenly, instead of as fast as
        /// the broker takes them (every event is built first, in memory). Each record's
        /// timestamp is its send time.
        #[arg(long)]
        rate: Option<f64>,
        /// With `--topic`: a librdkafka producer property, `KEY=VALUE` (repeatable), e.g. `linger.ms=5`.
        #[arg(long = "property", value_parser = key_value)]
        properties: Vec<(String, String)>,
    },
    /// Print the Avro schemas, or register them in the schema registry.
    Schema {
        /// What to do.
        #[command(subcommand)]
        action: SchemaAction,
    },
}

/// `schema` sub-commands.
#[derive(Debug, Subcommand)]
pub enum SchemaAction {
    /// Print the canonical event schema.
    Print,
    /// Register the canonical event schema under `<topic>-value`.
    Register {
        /// Registry base URL (Confluent-compatible API).
        #[arg(long, env = "AUDITFLOW_REGISTRY_URL")]
        registry: String,
        /// Subject to register under.
        #[arg(long, default_value = "audit.raw-value")]
        subject: String,
    },
}

/// Parses `KEY=VALUE`.
fn key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    Ok((key.to_owned(), value.to_owned()))
}
