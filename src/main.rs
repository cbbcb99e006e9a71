//! The `auditflow` binary: parse the command line, run one command, map the outcome to an exit code
//! (0 success, 1 runtime failure, 2 invalid configuration).

mod cli;

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::Context;
use auditflow::config::{Config, ConfigError, RegistryConfig};
use auditflow::generate::{GenerateSettings, Generator};
use auditflow::kafka::registry::Registry;
use auditflow::pipeline::Pipeline;
use clap::Parser;
use cli::{Cli, Command, LogFormat, SchemaAction};
use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

/// glibc malloc was the largest item of a `perf` profile of `run` (about 17 % of samples across
/// malloc, free and consolidation); mimalloc is the allocator (`docs/benchmarks-history.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let outcome = runtime.block_on(execute(cli.command));
    // Dropping a runtime waits for every blocking task, and a librdkafka call can hang for good
    // (see `kafka::txn`): what is still running after a short wait is left to the process exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = if error.downcast_ref::<ConfigError>().is_some() { 2 } else { 1 };
            eprintln!("auditflow: {error:#}");
            ExitCode::from(code)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("AUDITFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    // Colour only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config, until_caught_up } => {
            // Installed first: a signal during start-up then stops the run cleanly (before it
            // consumes) instead of ending the process by the signal's default action.
            let shutdown = shutdown_signal().context("installing the SIGTERM and SIGINT handlers")?;
            let config = Config::load(&config)?;
            let options = auditflow::kafka::run::RunOptions { until_caught_up };
            auditflow::kafka::run::run_with(config, shutdown, options).await?;
            Ok(())
        }
        Command::CheckConfig { config } => {
            let config = Config::load(&config)?;
            println!("{}", toml::to_string_pretty(&config.redacted()).context("printing the config")?);
            Ok(())
        }
        Command::Replay { config, input, output_dir } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            let mut settings = config.pipeline_settings();
            // Avro container files carry their own schema: no registry needed.
            settings.avro_enabled = true;
            let mut pipeline = Pipeline::new(settings);
            if let Some(catalog) = config.load_catalog()? {
                pipeline.set_catalog(catalog);
            }
            // A progress bar on a terminal (indicatif draws nothing when stderr is not one): by
            // bytes for a file, a record count for standard input.
            let (reader, bar): (Box<dyn BufRead>, ProgressBar) = if input.as_os_str() == "-" {
                let bar = ProgressBar::new_spinner()
                    .with_style(ProgressStyle::with_template("{spinner} {pos} records, {per_sec}").expect("progress template"));
                (Box::new(std::io::stdin().lock()), bar)
            } else {
                let file = std::fs::File::open(&input).with_context(|| format!("opening {}", input.display()))?;
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                let bar = ProgressBar::new(len).with_style(
                    ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} records, eta {eta}").expect("progress template"),
                );
                (Box::new(std::io::BufReader::new(bar.wrap_read(file))), bar)
            };
            let source = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "stdin".into());
            let now = chrono::Utc::now().timestamp_millis();
            let is_file = bar.length().is_some();
            let mut progress = |records: u64| {
                if records % 1024 == 0 {
                    if is_file {
                        bar.set_message(records.to_string());
                    } else {
                        bar.set_position(records);
                    }
                }
            };
            let summary =
                auditflow::replay::replay(&mut pipeline, reader, &source, &output_dir, &config.topics.dead_letter, now, &mut progress)
                    .with_context(|| format!("replaying {} into {}", input.display(), output_dir.display()))?;
            bar.finish_and_clear();
            eprintln!("replayed {} records", summary.records);
            for (topic, count) in summary.outputs {
                eprintln!("  {count:>8}  {}", output_dir.join(format!("{topic}.ndjson")).display());
            }
            Ok(())
        }
        Command::Generate { count, seed, deny_ratio, jitter_ms, start, concurrent_traces, topic, bootstrap, rate, properties } => {
            let start_ms = match start {
                Some(text) => chrono::DateTime::parse_from_rfc3339(&text).context("--start must be RFC 3339")?.timestamp_millis(),
                None => chrono::Utc::now().timestamp_millis() - 3_600_000,
            };
            let settings = GenerateSettings { seed, deny_ratio, jitter_ms, start_ms, concurrent_traces };
            let mut generator = Generator::new(settings);
            let events = (0..count).map(move |_| {
                let event = generator.next_event();
                let key = event["trace"].as_str().unwrap_or_default().as_bytes().to_vec();
                (key, serde_json::to_vec(&event).expect("json value serializes"))
            });
            match topic {
                Some(topic) => {
                    if rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
                        anyhow::bail!("--rate must be a positive number of events per second");
                    }
                    let context = format!("publishing to {topic} at {bootstrap} (--bootstrap)");
                    let name = topic.clone();
                    let sent = tokio::task::spawn_blocking(move || {
                        if rate.is_some() {
                            // Paced: every event is built before the clock starts, so that the
                            // load costs only its sending.
                            let events: Vec<_> = events.collect();
                            auditflow::kafka::publish::publish(&bootstrap, &topic, &properties, rate, events.into_iter())
                        } else {
                            auditflow::kafka::publish::publish(&bootstrap, &topic, &properties, rate, events)
                        }
                    })
                    .await
                    .context("publishing task")?
                    .context(context)?;
                    eprintln!("published {sent} events to {name}");
                }
                None => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    for (_, value) in events {
                        out.write_all(&value)?;
                        out.write_all(b"\n")?;
                    }
                    out.flush()?;
                }
            }
            Ok(())
        }
        Command::Schema { action: SchemaAction::Print } => {
            println!("{}", auditflow::schemas::AUDIT_EVENT.trim_end());
            Ok(())
        }
        Command::Schema { action: SchemaAction::Register { registry, subject } } => {
            let config = RegistryConfig { url: Some(registry), ..RegistryConfig::default() };
            let registry = Registry::from_config(&config)?.context("no registry url")?;
            let id = registry.register_avro(&subject, auditflow::schemas::AUDIT_EVENT).await?;
            println!("{subject}: id {id}");
            Ok(())
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on the first of either,
/// including one received before it is first polled.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!(message = "Shutdown requested.");
    })
}
