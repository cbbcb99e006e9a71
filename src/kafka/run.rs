//! `auditflow run`: the receive loop between the consumer group, the core and the producer.
//!
//! One task owns the loop: it takes a record, runs [`Pipeline::process`], sends every output, and
//! tracks acknowledgements in [`OffsetTracker`]. Offsets are committed every
//! `delivery.commit_interval_ms`, on partition revoke, and at shutdown, and never past a record
//! whose outputs are not all acknowledged (at-least-once). A failed delivery is sent again; it is
//! never dropped.
//!
//! In exactly-once mode ([`super::txn`]) the outputs, the window changelog and the input positions
//! go into one Kafka transaction per commit interval instead; any failure aborts it and rewinds
//! the consumer to the committed positions, and a partition's open windows are restored from the
//! changelog ([`super::restore`]) before its first record is processed.
//!
//! This file holds the loop and the per-record steps; beside it, `run/cluster.rs` checks and
//! creates topics before the loop starts, `run/eos.rs` commits transactions and recovers from
//! failed ones, and `run/stop.rs` ends every run (graceful shutdown, the exactly-once
//! interruption, the bounded release of the clients).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, OwnedResourceSpecifier, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use smallvec::SmallVec;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::deliveries::{DeliveryContext, InFlight, Report};
use super::group::{self, GroupWatch, Stuck};
use super::log_limit::LogLimit;
use super::meters::{Meters, OutputTopic};
use super::offsets::{OffsetTracker, TopicPartition};
use super::registry::{Registry, RegistryError};
use super::sticky::{self, Sticky};
use super::txn::{Failure, Transactions};
use super::{consumer_config, producer_config};
use crate::config::{Config, DeliveryMode, KafkaConfig, Partitioning};
use crate::metrics::Health;
use crate::model::{Output, SourceRecord};
use crate::pipeline::{dlq_headers, Pipeline};

mod cluster;
mod eos;
mod stop;

use cluster::*;

/// Why `run` stopped with an error. Each message names the setting to check.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No broker answered.
    #[error("cannot reach Kafka at {bootstrap} within {secs}s: check kafka.bootstrap_servers and kafka.properties (security.protocol, sasl.*): {detail}")]
    Unreachable {
        /// The configured bootstrap servers.
        bootstrap: String,
        /// Seconds waited.
        secs: u64,
        /// librdkafka's message.
        detail: String,
    },
    /// The broker rejected the credentials.
    #[error("authentication to Kafka at {bootstrap} failed: check kafka.properties sasl.username / sasl.password (and sasl.mechanism, security.protocol): {reason}")]
    Authentication {
        /// The configured bootstrap servers.
        bootstrap: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// The TLS handshake with the broker failed (e.g. its certificate is not trusted).
    #[error("TLS handshake with Kafka at {bootstrap} failed: check kafka.properties ssl.ca.location (the CA that signed the broker's certificate) and security.protocol: {reason}")]
    Tls {
        /// The configured bootstrap servers.
        bootstrap: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// Input topics (or, with `topics.create_missing = false`, output topics) do not exist.
    #[error("topics missing on {bootstrap}: {}; create them, change [topics], or set topics.create_missing = true for outputs", .missing.join(", "))]
    MissingTopics {
        /// The configured bootstrap servers.
        bootstrap: String,
        /// The missing topic names.
        missing: Vec<String>,
    },
    /// The configuration refers to something unusable (e.g. the policy catalog file).
    #[error("{0}")]
    Config(crate::config::ConfigError),
    /// The broker refused to create missing output topics.
    #[error("cannot create topics (topics.create_missing): {}; create them yourself or grant this principal CREATE on the cluster", .refused.join("; "))]
    CreateTopics {
        /// `topic: broker error` for each refusal.
        refused: Vec<String>,
    },
    /// The metrics endpoint cannot start.
    #[error("cannot serve metrics on {listen} (metrics.listen): {detail}")]
    Metrics {
        /// The configured address.
        listen: String,
        /// Why.
        detail: String,
    },
    /// The registry settings are unusable.
    #[error("{0}")]
    Registry(RegistryError),
    /// Another instance with the same `transactional.id` fenced this one (exactly-once mode).
    #[error("fenced: another instance took over transactional.id {transactional_id}; give every instance its own delivery.transactional_id (this one stops, as a zombie must)")]
    Fenced {
        /// The id both instances use.
        transactional_id: String,
    },
    /// The transactional producer could not start (exactly-once mode).
    #[error("exactly-once mode: the transactional producer cannot start (check delivery.transactional_id, and that the broker allows transactions for this principal): {detail}")]
    Transaction {
        /// Why.
        detail: String,
    },
    /// The consumer stayed out of its group while the cluster answered (the group watchdog,
    /// `kafka.group_stuck_timeout_ms`). Nothing was committed; a new process re-reads from the
    /// last commit.
    #[error("consumer group {group}: no steady membership for {secs}s (join state {join_state}) although the cluster answers (librdkafka sometimes never rejoins after an outage, its issue #2944; or a member blocks the rebalance). Stopping so that the supervisor restarts auditflow; nothing is lost (docs/operations.md, \"Broker outages\")")]
    GroupStuck {
        /// The group id.
        group: String,
        /// Seconds without a steady membership.
        secs: u64,
        /// librdkafka's join state then.
        join_state: String,
    },
    /// A Kafka client could not be created or failed for good.
    #[error("kafka client error ({context}): {source}")]
    Kafka {
        /// What was being done.
        context: &'static str,
        /// The client error.
        source: KafkaError,
    },
}

/// The producer, with a context that remembers authentication failures for start-up errors and
/// reports deliveries on the run loop's channel.
type Producer = ThreadedProducer<DeliveryContext>;

/// Remembers the last authentication failure librdkafka reported (and logs every error as the
/// default context does).
#[derive(Default, Clone)]
pub struct ErrorContext {
    authentication: Arc<Mutex<Option<String>>>,
    tls: Arc<Mutex<Option<String>>>,
}

impl ErrorContext {
    /// librdkafka's reason of the last authentication failure, if there was one.
    fn authentication_failure(&self) -> Option<String> {
        self.authentication.lock().expect("error context lock").clone()
    }

    /// librdkafka's reason of the last TLS failure, if there was one.
    fn tls_failure(&self) -> Option<String> {
        self.tls.lock().expect("error context lock").clone()
    }
}

impl ClientContext for ErrorContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication) {
            *self.authentication.lock().expect("error context lock") = Some(reason.to_owned());
        }
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::SSL) {
            *self.tls.lock().expect("error context lock") = Some(reason.to_owned());
        }
        error!(message = "Kafka client error.", %error, reason);
    }
}

/// How long start-up waits for the cluster's metadata.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// At-least-once: how often every tracked partition's offset is committed again, moved or not.
const COMMIT_REFRESH: Duration = Duration::from_secs(10);
/// Tries of the last commit at shutdown, `RESEND_BACKOFF` apart.
const FINAL_COMMIT_ATTEMPTS: u32 = 5;
/// Pause before sending an output again after its delivery failed.
const RESEND_BACKOFF: Duration = Duration::from_millis(500);

/// Consumer context: commits a partition's acknowledged offset when it is revoked, reports the
/// assignment to [`Health`] and consumer lag to the metrics.
struct RunContext {
    tracker: Arc<Mutex<OffsetTracker>>,
    health: Arc<Health>,
    /// Partitions revoked since the loop last looked: their backlog and windows are dropped
    /// ([`forget_revoked`]).
    revoked: Mutex<Vec<TopicPartition>>,
    /// Set on every revoke; exactly-once mode then aborts the open transaction and rewinds.
    rewind: Arc<AtomicBool>,
    /// Set on every assignment; exactly-once mode then restores the new partitions' windows.
    assigned: Arc<AtomicBool>,
    /// Counts revokes and assignments: a burst of reads stops at one (see the run loop).
    rebalances: AtomicU64,
    /// The group watchdog, fed by the statistics reports.
    watch: Mutex<GroupWatch>,
    /// Set when the watchdog trips; the run loop then checks that a broker answers.
    stuck: Mutex<Option<Stuck>>,
}

impl RunContext {
    /// Starts the group watchdog's clock again and forgets a verdict not acted on yet.
    fn restart_watch(&self) {
        self.watch.lock().expect("watch lock").restart(std::time::Instant::now());
        self.stuck.lock().expect("stuck lock").take();
    }
}

impl ClientContext for RunContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // With `--until-caught-up` (`enable.partition.eof`) librdkafka also reports each
        // partition's end here, besides in the message stream, where the run loop handles it:
        // not an error.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            return debug!(message = "End of a partition reached.", reason);
        }
        error!(message = "Kafka client error.", %error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Some(sample) = group::sample(&statistics) {
            metrics::gauge!("auditflow_consumer_group_steady").set(if sample.join_state == "steady" { 1.0 } else { 0.0 });
            if let Some(stuck) = self.watch.lock().expect("watch lock").observe(sample, std::time::Instant::now()) {
                *self.stuck.lock().expect("stuck lock") = Some(stuck);
            }
        }
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // librdkafka reports -1 for partitions it does not consume, and for the internal one.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!("auditflow_consumer_lag", "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for RunContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else { return };
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        self.rewind.store(true, Ordering::SeqCst);
        let mut list = TopicPartitionList::new();
        {
            let mut tracker = self.tracker.lock().expect("tracker lock");
            let mut gone = self.revoked.lock().expect("revoked lock");
            for elem in revoked.elements() {
                let tp: TopicPartition = (Arc::from(elem.topic()), elem.partition());
                if let Some(offset) = tracker.remove(&tp) {
                    // Building a list from known-good values cannot fail.
                    let _ = list.add_partition_offset(elem.topic(), elem.partition(), Offset::Offset(offset));
                }
                gone.push(tp);
            }
        }
        if list.count() > 0 {
            if let Err(error) = consumer.commit(&list, CommitMode::Sync) {
                warn!(message = "Commit on revoke failed; the next owner re-reads from the last commit.", %error);
            }
        }
        info!(message = "Partitions revoked.", partitions = revoked.count());
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(error) = rebalance {
            warn!(message = "Rebalance error.", %error);
            return;
        }
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        info!(message = "Assignment changed.", partitions = assigned);
        self.assigned.store(true, Ordering::SeqCst);
        self.health.assigned(assigned);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let failed: Vec<_> = offsets.elements().into_iter().filter(|elem| result.is_err() || elem.error().is_err()).collect();
        if failed.is_empty() {
            return;
        }
        match &result {
            Err(error) => warn!(message = "Offset commit failed; it is sent again at the next commit tick.", %error),
            Ok(()) => warn!(
                message = "Offset commit failed for some partitions; they are sent again at the next commit tick.",
                partitions = failed.len()
            ),
        }
        metrics::counter!("auditflow_commit_errors_total").increment(1);
        let mut tracker = self.tracker.lock().expect("tracker lock");
        for elem in failed {
            if let Offset::Offset(offset) = elem.offset() {
                tracker.commit_failed(&(Arc::from(elem.topic()), elem.partition()), offset);
            }
        }
    }
}

/// A delivery in flight: the input positions it holds back and its output topic.
struct Tag {
    /// Usually one position (the record's own), so kept inline.
    holds: SmallVec<[(TopicPartition, i64); 1]>,
    topic: Arc<OutputTopic>,
    sent: std::time::Instant,
    /// Exactly-once: the transaction the output was sent in.
    epoch: u64,
    /// At-least-once: a delivery of it failed, and it is being sent again.
    retried: bool,
}

/// Most deliveries, or most records already fetched, taken in one turn of the run loop.
const BURST: usize = 256;

/// Backoff of registry retries: from `REGISTRY_BACKOFF_MIN`, doubling up to `REGISTRY_BACKOFF_MAX`.
const REGISTRY_BACKOFF_MIN: Duration = Duration::from_millis(200);
const REGISTRY_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The loop is waiting for the registry to answer for a schema id.
struct Blocked {
    schema_id: u32,
    backoff: Duration,
    retry_at: tokio::time::Instant,
}

/// The state of one `run`: the core, the clients and what is in flight.
struct Runner {
    /// When every tracked partition was last committed, moved or not (see `commit`).
    last_full_commit: std::time::Instant,
    pipeline: Pipeline,
    registry: Option<Registry>,
    tracker: Arc<Mutex<OffsetTracker>>,
    consumer: Arc<StreamConsumer<RunContext>>,
    producer: Producer,
    /// What each output in flight holds back, by the id its delivery report carries.
    in_flight: InFlight<Tag>,
    /// Delivery reports of every producer of this run.
    reports: mpsc::UnboundedReceiver<Report>,
    /// The reports' sender, for a new producer's context.
    report_sender: mpsc::UnboundedSender<Report>,
    /// Failed outputs (at-least-once) waiting for their pause to end: their id and message.
    resends: FuturesUnordered<BoxFuture<'static, (usize, OwnedMessage)>>,
    /// Records received but not yet processed, in order: filled while the registry is down.
    backlog: VecDeque<SourceRecord>,
    blocked: Option<Blocked>,
    /// Outputs being sent again after a failed delivery (at-least-once).
    retrying: usize,
    /// Since when (epoch ms) outputs have failed without a break: some output was being retried
    /// all along, or (exactly-once) every transaction since was aborted.
    failing_since: Option<i64>,
    /// Whether the current failing spell was reported (past `delivery.unready_after_failing_ms`).
    failing_reported: bool,
    /// Whether consumption is paused (see `can_take`).
    paused: bool,
    dead_letter: String,
    max_in_flight: usize,
    catalog: CatalogWatch,
    /// Exactly-once state; `None` in at-least-once mode.
    eos: Option<Eos>,
    /// The repartition topic when input is not keyed by trace: records of other topics go there.
    repartition: Option<String>,
    meters: Meters,
    /// Topic names shared by the offset bookkeeping (one allocation per topic, not per record).
    topic_names: HashMap<String, Arc<str>>,
    /// Partitions by time for the topics partitioned sticky (`topics.siem_partitioning`,
    /// `topics.trace_partitioning`; `docs/operations.md`, "Partitioning"); `None`: all by key.
    sticky: Option<Sticky>,
    /// Rate limits of the per-record warnings: dead letters, failed deliveries, consumer errors.
    dead_letter_log: LogLimit,
    delivery_log: LogLimit,
    consumer_log: LogLimit,
}

/// The shared name of `topic`.
fn intern(names: &mut HashMap<String, Arc<str>>, topic: &str) -> Arc<str> {
    if let Some(name) = names.get(topic) {
        return name.clone();
    }
    let name: Arc<str> = Arc::from(topic);
    names.insert(topic.to_owned(), name.clone());
    name
}

/// The state of exactly-once mode.
struct Eos {
    txn: Transactions<DeliveryContext>,
    /// The window changelog topic.
    changelog: String,
    kafka: KafkaConfig,
    /// Settings of the transactional producer, to create a new one after a fatal error.
    producer_settings: ClientConfig,
    errors: ErrorContext,
    /// The next offset of every partition processed since the last rewind.
    positions: HashMap<TopicPartition, i64>,
    /// Partitions whose windows were restored from the changelog since the last rewind.
    restored: HashSet<TopicPartition>,
    /// A delivery of the open transaction failed: it must be aborted.
    failed: bool,
    /// The open transaction's changelog records, folded, written just before it commits.
    pending: crate::pipeline::changelog::Pending,
    /// The highest event time of each partition as written to the changelog (committed, or in
    /// the open transaction) since the last rewind: only changes are written again.
    event_times: HashMap<TopicPartition, i64>,
    rewind: Arc<AtomicBool>,
    assigned: Arc<AtomicBool>,
    timeout: Duration,
    transactional_id: String,
    /// Tells whether auditflow itself stood still (see `timed_out_by_the_broker`).
    stalls: super::stall::StallWatch,
}

impl Eos {
    /// Whether a fenced error means the broker aborted the open transaction for outliving its
    /// timeout (KIP-588 bumps the epoch), not that another instance took over: the transaction
    /// is older than its timeout, and the process ran all along. A process that was frozen
    /// (SIGSTOP, a suspended VM) may have been replaced meanwhile; it stops, as a zombie must.
    fn timed_out_by_the_broker(&self) -> bool {
        self.txn.outlived_its_timeout() && !self.stalls.stalled_since(self.txn.began())
    }
}

/// The policy catalog file and the modification time of the version loaded.
struct CatalogWatch {
    path: Option<std::path::PathBuf>,
    loaded: Option<std::time::SystemTime>,
}

impl CatalogWatch {
    fn modified(&self) -> Option<std::time::SystemTime> {
        self.path.as_ref().and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    }
}

/// Runs until `shutdown` resolves, then drains in-flight outputs, commits, and returns. When it
/// has resolved by the end of start-up (it is checked once, just before subscribing), the run
/// returns there, having read nothing.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    run_with(config, shutdown, RunOptions::default()).await
}

/// Options of `run` beyond the configuration file.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Stop (as on SIGTERM) once every assigned partition is read to its end and every output
    /// is acknowledged: for benchmarks and one-shot catch-up jobs.
    pub until_caught_up: bool,
}

/// [`run`] with options.
pub async fn run_with(config: Config, shutdown: impl Future<Output = ()>, options: RunOptions) -> Result<(), RunError> {
    let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
    let health = Arc::new(Health::default());
    let unready_after = Duration::from_millis(config.delivery.unready_after_failing_ms);
    health.unready_when_failing_for(unready_after);
    let rewind: Arc<AtomicBool> = Arc::default();
    let assigned: Arc<AtomicBool> = Arc::default();
    let exactly_once = config.delivery.mode == DeliveryMode::ExactlyOnce;
    if let Some(listen) = config.metrics.listen.as_deref() {
        let handle = crate::metrics::install_recorder().map_err(|detail| RunError::Metrics { listen: listen.to_owned(), detail })?;
        let addr = crate::metrics::serve(listen, handle, health.clone())
            .await
            .map_err(|error| RunError::Metrics { listen: listen.to_owned(), detail: error.to_string() })?;
        info!(message = "Serving /metrics, /health and /ready.", %addr);
    }
    let mut consumer_settings = consumer_config(&config.kafka);
    let starts_at_latest = matches!(consumer_settings.get("auto.offset.reset"), Some("latest" | "largest" | "end"));
    if options.until_caught_up {
        consumer_settings.set("enable.partition.eof", "true");
    }
    if exactly_once {
        consumer_settings.set("isolation.level", "read_committed");
    }
    let consumer: Arc<StreamConsumer<RunContext>> = Arc::new(
        consumer_settings
            .create_with_context(RunContext {
                tracker: tracker.clone(),
                health: health.clone(),
                revoked: Mutex::default(),
                rewind: rewind.clone(),
                assigned: assigned.clone(),
                rebalances: AtomicU64::new(0),
                watch: Mutex::new(GroupWatch::new(
                    Some(Duration::from_millis(config.kafka.group_stuck_timeout_ms)).filter(|t| !t.is_zero()),
                )),
                stuck: Mutex::default(),
            })
            .map_err(|source| RunError::Kafka { context: "creating the consumer", source })?,
    );
    let errors = ErrorContext::default();
    let mut producer_settings = producer_config(&config.kafka);
    if producer_settings.get("statistics.interval.ms").is_none() {
        // The producer's statistics carry the partition counts sticky partitioning follows.
        producer_settings.set("statistics.interval.ms", "5000");
    }
    if exactly_once {
        producer_settings
            .set("transactional.id", config.transactional_id())
            .set("transaction.timeout.ms", config.delivery.transaction_timeout_ms.to_string());
    }
    let (report_sender, reports) = mpsc::unbounded_channel();
    let producer: Producer = producer_settings
        .create_with_context(DeliveryContext::new(errors.clone(), report_sender.clone()))
        .map_err(|source| RunError::Kafka { context: "creating the producer", source })?;
    let registry = Registry::from_config(&config.registry).map_err(RunError::Registry)?;
    let mut runner = Runner {
        pipeline: Pipeline::new(config.pipeline_settings()),
        registry,
        tracker,
        consumer,
        producer,
        in_flight: InFlight::default(),
        reports,
        report_sender,
        resends: FuturesUnordered::new(),
        backlog: VecDeque::new(),
        blocked: None,
        retrying: 0,
        failing_since: None,
        failing_reported: false,
        paused: false,
        dead_letter: config.topics.dead_letter.clone(),
        max_in_flight: config.delivery.max_in_flight,
        catalog: CatalogWatch { path: config.enrich.policy_catalog.clone(), loaded: None },
        eos: None,
        repartition: None,
        meters: Meters::new(),
        topic_names: HashMap::new(),
        sticky: None,
        dead_letter_log: LogLimit::default(),
        delivery_log: LogLimit::default(),
        consumer_log: LogLimit::default(),
        last_full_commit: std::time::Instant::now(),
    };
    runner.catalog.loaded = runner.catalog.modified();
    if let Some(catalog) = config.load_catalog().map_err(RunError::Config)? {
        info!(message = "Policy catalog loaded.", policies = catalog.len());
        runner.pipeline.set_catalog(catalog);
    }

    // Kafka first (the more basic problem), then the registry: each names its own settings.
    check_cluster(&runner.producer, &errors, &config.kafka.bootstrap_servers, &[]).await?;
    if let Some(registry) = runner.registry.as_ref() {
        registry.probe().await.map_err(RunError::Registry)?;
    }
    if config.enriched.enabled {
        let subject = config.enriched.subject.clone().unwrap_or_else(|| format!("{}-value", config.enriched.topic));
        let registry =
            runner.registry.as_ref().ok_or_else(|| RunError::Registry(RegistryError::Config("enriched output needs a registry".into())))?;
        let id = registry.register_avro(&subject, crate::schemas::ENRICHED_EVENT).await.map_err(RunError::Registry)?;
        info!(message = "Registered the enriched event schema.", %subject, schema_id = id);
        runner.pipeline.enable_enriched(id);
    }
    if config.window.enabled && config.window.summary_format == crate::config::SummaryFormat::Avro {
        let subject = format!("{}-value", config.topics.sequences);
        let registry = runner
            .registry
            .as_ref()
            .ok_or_else(|| RunError::Registry(RegistryError::Config("window.summary_format = \"avro\" needs a registry".into())))?;
        let id = registry.register_avro(&subject, crate::schemas::TRACE_SUMMARY).await.map_err(RunError::Registry)?;
        info!(message = "Registered the trace summary schema.", %subject, schema_id = id);
        let late_topic = config.late_events_topic();
        let late_subject = format!("{late_topic}-value");
        let late_id = registry.register_avro(&late_subject, crate::schemas::LATE_EVENT).await.map_err(RunError::Registry)?;
        info!(message = "Registered the late event schema.", subject = %late_subject, schema_id = late_id);
        runner.pipeline.enable_avro_summaries(id, late_id, late_topic);
    }
    let changelog = config.window_changelog_topic();
    if exactly_once && config.window.enabled && config.passthrough.topic.is_none() {
        runner.pipeline.enable_changelog(changelog.clone());
    }
    let mut wanted: Vec<String> = config.topics.input.clone();
    wanted.extend(runner.pipeline.output_topics());
    if exactly_once {
        wanted.push(changelog.clone());
    }
    let repartition = config.repartition_topic();
    wanted.extend(repartition.clone());
    let missing = check_cluster(&runner.producer, &errors, &config.kafka.bootstrap_servers, &wanted).await?;
    let inputs_missing: Vec<String> = missing.iter().filter(|t| config.topics.input.contains(t)).cloned().collect();
    if !inputs_missing.is_empty() || (!missing.is_empty() && !config.topics.create_missing) {
        return Err(RunError::MissingTopics { bootstrap: config.kafka.bootstrap_servers.clone(), missing });
    }
    let (internal_missing, missing): (Vec<String>, Vec<String>) =
        missing.into_iter().partition(|t| *t == changelog || Some(t) == repartition.as_ref());
    if !missing.is_empty() {
        create_topics(&config, &missing).await?;
    }
    let outputs: Vec<String> =
        wanted.iter().filter(|t| !config.topics.input.contains(t) && !internal_missing.contains(t)).cloned().collect();
    warn_small_topic_limits(&config, &outputs).await;
    if exactly_once {
        ensure_internal(&config, &runner.producer, &changelog, internal_missing.contains(&changelog), true).await?;
        let timeout = Duration::from_millis(config.delivery.transaction_timeout_ms);
        let txn = Transactions::init(runner.producer.clone(), timeout)
            .await
            .map_err(|failure| RunError::Transaction { detail: failure.to_string() })?;
        info!(message = "Exactly-once mode: transactional producer ready.", transactional_id = %config.transactional_id(), %changelog);
        runner.eos = Some(Eos {
            txn,
            changelog,
            kafka: config.kafka.clone(),
            producer_settings,
            errors: errors.clone(),
            positions: HashMap::new(),
            restored: HashSet::new(),
            failed: false,
            pending: Default::default(),
            event_times: HashMap::new(),
            rewind: rewind.clone(),
            assigned: assigned.clone(),
            timeout,
            transactional_id: config.transactional_id(),
            stalls: super::stall::StallWatch::start(),
        });
    }
    if let Some(topic) = &repartition {
        ensure_internal(&config, &runner.producer, topic, internal_missing.contains(topic), false).await?;
        info!(message = "Input is not keyed by trace: valid records are re-keyed through the repartition topic.", %topic);
    }
    runner.repartition = repartition.clone();
    let sticky_topics = runner
        .pipeline
        .sticky_topics(config.topics.siem_partitioning == Partitioning::Sticky, config.topics.trace_partitioning == Partitioning::Sticky);
    if !sticky_topics.is_empty() {
        runner.sticky = Some(sticky_partitions(&runner.producer, &sticky_topics).await?);
    }
    // Shared: the loop watches it, and in exactly-once mode so does the interruption below.
    let shutdown = shutdown.shared();
    // A stop requested during start-up ends the run here, before it joins the group: nothing has
    // been read, so there is nothing to flush or commit.
    if shutdown.clone().now_or_never().is_some() {
        info!(message = "Stop requested during start-up; stopping before consuming.");
        runner.release().await;
        info!(message = "Stopped.");
        return Ok(());
    }
    let mut inputs: Vec<&str> = config.topics.input.iter().map(String::as_str).collect();
    inputs.extend(repartition.as_deref());
    runner.consumer.subscribe(&inputs).map_err(|source| RunError::Kafka { context: "subscribing", source })?;
    info!(message = "Consuming.", topics = ?inputs, group = %config.kafka.group_id);

    let mut commit_tick = tokio::time::interval(Duration::from_millis(config.delivery.commit_interval_ms.max(1)));
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    let mut catalog_tick = tokio::time::interval(Duration::from_millis(config.enrich.catalog_check_interval_ms.max(100)));
    let deadline = Duration::from_millis(config.delivery.shutdown_timeout_ms);
    // Partition numbers read to their end (only reported with `until_caught_up`). librdkafka's
    // end-of-partition event names the partition but not its topic, hence numbers, compared with
    // the distinct numbers assigned; when they are all at their end, `read_to_the_end` settles
    // it for every topic (partition 0 of one topic at its end says nothing of another's).
    let mut at_end = std::collections::HashSet::new();
    // Whether to ask `read_to_the_end` at the next quiet moment: every number is at its end,
    // nothing received waits in the backlog and, when the run feeds its own repartition topic,
    // nothing is in flight to it. Armed by end-of-partition events and, while every number stays
    // at its end, by the heartbeat (the moment may come later, or the answer be no).
    let mut check_end = false;
    let looping = async {
        let mut shutdown = std::pin::pin!(shutdown.clone());
        Ok::<Ended, RunError>(loop {
            if check_end && runner.backlog.is_empty() && (runner.repartition.is_none() || runner.in_flight.is_empty()) {
                check_end = false;
                if read_to_the_end(&runner.consumer, starts_at_latest).await {
                    info!(message = "Caught up with every assigned partition; stopping.");
                    break Ended::Stop;
                }
            }
            runner.rewind_if_revoked().await?;
            runner.restore_assigned().await?;
            runner.drain_backlog().await?;
            let can_take = runner.can_take();
            let retry_at = runner.blocked.as_ref().map(|b| b.retry_at);
            tokio::select! {
                biased;
                _ = &mut shutdown => break Ended::Stop,
                Some(report) = runner.reports.recv() => {
                    // Every delivery already reported, in one turn of the loop (under load they
                    // come in bursts, one per record of a produce batch).
                    let now = std::time::Instant::now();
                    runner.on_delivered(report, now)?;
                    for _ in 0..BURST {
                        match runner.reports.try_recv() {
                            Ok(report) => runner.on_delivered(report, now)?,
                            Err(_) => break,
                        }
                    }
                }
                Some((id, message)) = runner.resends.next(), if !runner.resends.is_empty() => runner.resend(id, message),
                _ = commit_tick.tick() => runner.commit().await?,
                _ = heartbeat.tick() => {
                    health.beat();
                    if runner.paused {
                        // Not polling on purpose (registry down, or the in-flight bound): librdkafka
                        // leaves the group after max.poll.interval.ms and rejoins at the next poll.
                        // That is not the stuck state the watchdog looks for.
                        runner.consumer.context().restart_watch();
                    }
                    if let Some(stuck) = runner.stuck_in_group().await {
                        break Ended::GroupStuck(stuck);
                    }
                    runner.advance_windows().await?;
                    runner.grow_sticky();
                    runner.report_failing(&health, unready_after);
                    if options.until_caught_up {
                        let numbers = assigned_partition_numbers(&runner.consumer);
                        debug!(
                            message = "Catching up.",
                            numbers_at_end = at_end.len(),
                            numbers,
                            backlog = runner.backlog.len(),
                            in_flight = runner.in_flight.len()
                        );
                        check_end |= at_end.len() >= numbers;
                    }
                    metrics::gauge!("auditflow_in_flight_records").set(runner.tracker.lock().expect("tracker lock").in_flight() as f64);
                }
                _ = catalog_tick.tick(), if runner.catalog.path.is_some() => runner.reload_catalog(&config),
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => {
                    runner.retry_registry().await;
                }
                received = runner.consumer.recv(), if can_take => {
                    // This record and those already fetched behind it, up to a burst: the backlog
                    // takes them in order (at most a burst more records held than one at a time).
                    // A burst stops at a rebalance, so that the backlog never holds records read
                    // before a revoke behind records read after it.
                    let rebalances = runner.consumer.context().rebalances.load(Ordering::SeqCst);
                    // A rebalance runs inside the call that returns the next record: what the backlog
                    // holds of revoked partitions is forgotten before anything read after it goes in.
                    forget_revoked(&runner.consumer, &mut runner.backlog, &mut runner.pipeline);
                    let mut received = Some(received);
                    let mut taken = 0;
                    while let Some(result) = received.take() {
                        if taken > 0 && runner.consumer.context().rebalances.load(Ordering::SeqCst) != rebalances {
                            forget_revoked(&runner.consumer, &mut runner.backlog, &mut runner.pipeline);
                        }
                        match result {
                            Ok(message) => {
                                let record = source_record(&message);
                                runner.meters.received(&record.topic).increment(1);
                                at_end.remove(&record.partition);
                                // More to read: wait for the ends again.
                                check_end = false;
                                runner.backlog.push_back(record);
                            }
                            Err(KafkaError::PartitionEOF(partition)) => {
                                at_end.insert(partition);
                                // Whatever the backlog still holds is processed before the check (at
                                // the top of the loop): requiring an empty backlog here missed the
                                // end when the last records arrived in the same burst as the last
                                // end-of-partition event, and the run never stopped.
                                check_end = options.until_caught_up && at_end.len() >= assigned_partition_numbers(&runner.consumer);
                                break;
                            }
                            Err(error) => {
                                if let Some(left_out) = runner.consumer_log.allow(std::time::Instant::now()) {
                                    warn!(message = "Consumer error.", %error, not_logged_since_last = left_out);
                                }
                                metrics::counter!("auditflow_consumer_errors_total").increment(1);
                                break;
                            }
                        }
                        taken += 1;
                        if taken < BURST && runner.consumer.context().rebalances.load(Ordering::SeqCst) == rebalances {
                            received = runner.consumer.recv().now_or_never();
                        }
                    }
                }
            }
        })
    };
    // Exactly-once: a stop that finds the loop inside a step waiting on Kafka (a commit or a
    // recovery during a broker outage can take minutes) interrupts it once `deadline` has passed.
    // Dropping the step at any point is safe there: nothing counts until a transaction commits.
    let interrupt = async {
        shutdown.clone().await;
        tokio::time::sleep(deadline).await;
    };
    let ended = tokio::select! {
        biased;
        ended = looping => ended,
        () = interrupt, if exactly_once => Ok(Ended::Interrupted),
    };
    let result = match ended {
        Err(error) => Err(error),
        Ok(Ended::Stop) => runner.shutdown(deadline, true).await,
        Ok(Ended::Interrupted) => {
            runner.stop_interrupted(deadline);
            Ok(())
        }
        Ok(Ended::GroupStuck(stuck)) => {
            error!(
                message = "The consumer has been out of its group too long while the cluster answers; stopping for a restart.",
                secs = stuck.for_.as_secs(),
                state = %stuck.state,
                join_state = %stuck.join_state
            );
            health.group_stuck();
            runner.shutdown(deadline, false).await.and(Err(RunError::GroupStuck {
                group: config.kafka.group_id.clone(),
                secs: stuck.for_.as_secs(),
                join_state: stuck.join_state,
            }))
        }
    };
    runner.release().await;
    if result.is_ok() {
        info!(message = "Stopped.");
    }
    result
}

/// Why the main loop of [`run_with`] ended.
enum Ended {
    /// A stop was requested (or, with `until_caught_up`, everything was read).
    Stop,
    /// Exactly-once: a stop was requested and the loop was still inside a step after the
    /// shutdown deadline.
    Interrupted,
    /// The consumer was stuck outside its group.
    GroupStuck(Stuck),
}

impl Runner {
    /// The watchdog's verdict, if it tripped and a broker answers a metadata request (no broker
    /// answering is an outage: the watchdog's clock then starts again).
    async fn stuck_in_group(&mut self) -> Option<Stuck> {
        let context = self.consumer.context();
        let stuck = context.stuck.lock().expect("stuck lock").take()?;
        match cluster_metadata(&self.producer).await {
            Ok(_) => Some(stuck),
            Err(error) => {
                warn!(message = "The consumer is out of its group and no broker answers; waiting for the cluster.", %error);
                context.restart_watch();
                None
            }
        }
    }

    fn topic_name(&mut self, topic: &str) -> Arc<str> {
        intern(&mut self.topic_names, topic)
    }

    fn has_room(&self) -> bool {
        if self.eos.is_some() {
            return self.in_flight.len() < self.max_in_flight;
        }
        self.tracker.lock().expect("tracker lock").in_flight() < self.max_in_flight
    }

    /// Processes backlog records in order until it is empty, the in-flight bound is reached, or
    /// a record needs a schema the registry cannot give now.
    async fn drain_backlog(&mut self) -> Result<(), RunError> {
        while self.blocked.is_none() && self.has_room() {
            let Some(record) = self.backlog.pop_front() else { break };
            if let Some(schema_id) = self.pipeline.schema_needed(&record) {
                if !self.load_schema(schema_id).await {
                    self.backlog.push_front(record);
                    self.block(schema_id);
                    break;
                }
            }
            self.process(record).await?;
        }
        Ok(())
    }

    /// Asks the registry once for `schema_id`; caches a schema or a permanent "not found".
    /// Returns false when the registry is unavailable (transient).
    async fn load_schema(&mut self, schema_id: u32) -> bool {
        let Some(registry) = self.registry.as_ref() else { return true };
        match registry.fetch(schema_id).await {
            Ok(text) => {
                self.pipeline.schemas_mut().insert(schema_id, &text);
                info!(message = "Loaded writer schema.", schema_id);
                true
            }
            Err(RegistryError::NotFound(_)) => {
                self.pipeline.schemas_mut().insert_unknown(schema_id);
                true
            }
            Err(error) => {
                warn!(message = "Schema registry unavailable; pausing consumption and retrying.", schema_id, %error);
                metrics::counter!("auditflow_registry_errors_total").increment(1);
                false
            }
        }
    }

    /// Pauses every assigned partition until the registry answers for `schema_id`.
    fn block(&mut self, schema_id: u32) {
        self.blocked =
            Some(Blocked { schema_id, backoff: REGISTRY_BACKOFF_MIN, retry_at: tokio::time::Instant::now() + REGISTRY_BACKOFF_MIN });
    }

    async fn retry_registry(&mut self) {
        let Some(blocked) = self.blocked.take() else { return };
        if self.load_schema(blocked.schema_id).await {
            info!(message = "Schema registry is back; resuming.", schema_id = blocked.schema_id);
        } else {
            let backoff = (blocked.backoff * 2).min(REGISTRY_BACKOFF_MAX);
            self.blocked = Some(Blocked { backoff, retry_at: tokio::time::Instant::now() + backoff, ..blocked });
        }
    }

    /// Takes up partitions added to the sticky topics, as the producer's metadata shows them.
    fn grow_sticky(&mut self) {
        let Some(sticky) = self.sticky.as_mut() else { return };
        for (topic, partitions) in sticky.grow(&self.producer.context().partition_counts()) {
            info!(message = "Sticky partitioning: the topic has more partitions now.", %topic, partitions);
        }
    }

    /// Closes idle windows, sends what they emit, and refreshes every partition's window cap.
    async fn advance_windows(&mut self) -> Result<(), RunError> {
        let outputs = self.pipeline.advance(chrono::Utc::now().timestamp_millis());
        self.send_all(outputs, None).await?;
        let pipeline = &self.pipeline;
        self.tracker.lock().expect("tracker lock").refresh_caps(|topic, partition| pipeline.held_offset(topic, partition));
        let (open, late) = self.pipeline.window_stats();
        metrics::gauge!("auditflow_open_traces").set(open as f64);
        metrics::gauge!("auditflow_late_events").set(late as f64);
        let (closed, truncated) = self.pipeline.windows_closed();
        metrics::counter!("auditflow_windows_closed_total").absolute(closed);
        metrics::counter!("auditflow_windows_truncated_total").absolute(truncated);
        Ok(())
    }

    /// Whether the loop may take another record from the consumer: not while the registry
    /// blocks, records wait in the backlog, or the in-flight bound is reached. While it may not,
    /// the consumer is simply not polled: librdkafka stops fetching once its own queue
    /// (`queued.max.messages.kbytes`) is full, so memory stays bounded, and nothing fetched is
    /// purged. (librdkafka's pause/resume purges pre-fetched records; with rust-rdkafka's
    /// StreamConsumer we saw consumption stall after many pause/resume cycles, so it is not used.)
    fn can_take(&mut self) -> bool {
        let cause = if self.blocked.is_some() {
            Some("registry")
        } else if !self.has_room() {
            Some("in_flight")
        } else {
            None
        };
        let can = cause.is_none() && self.backlog.is_empty();
        if let Some(cause) = cause.filter(|_| !self.paused) {
            debug!(message = "Consumption paused.", cause);
            metrics::counter!("auditflow_consumer_pauses_total", "cause" => cause).increment(1);
        }
        if self.paused != cause.is_some() {
            self.paused = cause.is_some();
            metrics::gauge!("auditflow_consumer_paused").set(if self.paused { 1.0 } else { 0.0 });
        }
        can
    }

    /// Runs the core on one record and sends every output.
    async fn process(&mut self, record: SourceRecord) -> Result<(), RunError> {
        let tp = (self.topic_name(&record.topic), record.partition);
        if self.eos.as_ref().is_some_and(|eos| !eos.restored.contains(&tp)) {
            self.restore(&tp).await?;
            let closed = self.pipeline.finish_restore();
            self.send_all(closed, None).await?;
        }
        let started = std::time::Instant::now();
        let now = chrono::Utc::now().timestamp_millis();
        let outputs = match self.repartition.as_deref() {
            Some(topic) if topic != record.topic => self.pipeline.repartition(&record, topic, now),
            _ => self.pipeline.process(&record, now),
        };
        self.meters.process.record(started.elapsed().as_secs_f64());
        let own = outputs.iter().filter(|o| o.holds.is_empty()).count() as u32;
        if let Some(eos) = self.eos.as_mut() {
            eos.positions.insert(tp.clone(), record.offset + 1);
        } else {
            let mut tracker = self.tracker.lock().expect("tracker lock");
            tracker.begin(&tp, record.offset, own);
            tracker.set_cap(&tp, self.pipeline.held_offset(&tp.0, tp.1));
        }
        self.send_all(outputs, Some((&tp, record.offset))).await
    }

    /// Counts a dead letter by its code, and logs it (rate limited): with the position of the
    /// record it stands for (`own`), or as a window output too large to send (`pipeline::limit`).
    fn note_dead_letter(&mut self, output: &Output, own: Option<(&TopicPartition, i64)>) {
        let code = dlq_code(output);
        if let Some(left_out) = self.dead_letter_log.allow(std::time::Instant::now()) {
            match own {
                Some(((topic, partition), offset)) => warn!(
                    message = "Record dead-lettered.",
                    topic = %topic,
                    partition,
                    offset,
                    code = %code,
                    not_logged_since_last = left_out
                ),
                None => warn!(message = "Window output dead-lettered.", code = %code, not_logged_since_last = left_out),
            }
        }
        metrics::counter!("auditflow_records_dead_lettered_total", "code" => code).increment(1);
    }

    /// Sends outputs; each holds back its `holds`, or the record at `own` when it has none.
    async fn send_all(&mut self, outputs: Vec<Output>, own: Option<(&TopicPartition, i64)>) -> Result<(), RunError> {
        // Exactly-once: changelog records wait for the commit, folded (see `changelog::Pending`).
        let outputs = match self.eos.as_mut() {
            Some(eos) => outputs
                .into_iter()
                .filter_map(|output| {
                    if output.topic == eos.changelog {
                        eos.pending.push(output);
                        None
                    } else {
                        Some(output)
                    }
                })
                .collect(),
            None => outputs,
        };
        self.send_now(outputs, own).await
    }

    /// [`Runner::send_all`] without holding changelog records back.
    async fn send_now(&mut self, outputs: Vec<Output>, own: Option<(&TopicPartition, i64)>) -> Result<(), RunError> {
        let mut epoch = 0;
        if let Some(eos) = self.eos.as_mut() {
            if outputs.is_empty() {
                return Ok(());
            }
            if let Err(failure) = eos.txn.begin() {
                return self.recover(failure).await;
            }
            epoch = eos.txn.epoch();
        }
        // One send time for the record's outputs: they are sent together.
        let sent = std::time::Instant::now();
        for output in &outputs {
            if output.topic == self.dead_letter {
                self.note_dead_letter(output, own);
            }
            let holds: SmallVec<[(TopicPartition, i64); 1]> = if self.eos.is_some() {
                SmallVec::new()
            } else if output.holds.is_empty() {
                own.map(|(tp, offset)| (tp.clone(), offset)).into_iter().collect()
            } else {
                let mut tracker = self.tracker.lock().expect("tracker lock");
                output
                    .holds
                    .iter()
                    .map(|(topic, partition, offset)| {
                        let tp = (intern(&mut self.topic_names, topic), *partition);
                        tracker.hold(&tp, *offset);
                        (tp, *offset)
                    })
                    .collect()
            };
            let id = self.in_flight.insert(Tag { holds, topic: self.meters.output(&output.topic), sent, epoch, retried: false });
            let partition = self.sticky.as_ref().and_then(|sticky| sticky.partition(&output.topic, sent));
            loop {
                match send(&self.producer, output, id, partition) {
                    Ok(()) => break,
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                        // The producer queue is the bound: wait for a delivery, then retry.
                        if self.in_flight.len() > 1 || !self.resends.is_empty() {
                            self.next_delivery().await?;
                        } else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    Err(source) => {
                        if self.eos.is_some() {
                            // A fatal producer error (fenced among them) surfaces here first.
                            // Without one raised yet (a fenced producer's sends fail with
                            // `State` before librdkafka raises it), abort: the abort call
                            // then reports what the producer's state really is, and a fenced
                            // producer stops instead of fencing its replacement back.
                            let failure = match self.producer.client().fatal_error() {
                                Some((code, _)) => Failure::Fatal(KafkaError::MessageProduction(code)),
                                None => Failure::Abort(source),
                            };
                            // The rest of these outputs belong to the state the rewind drops.
                            return self.recover(failure).await;
                        }
                        return Err(RunError::Kafka { context: "producing", source });
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits for one delivery report, or for a failed output's pause to end, and handles it.
    async fn next_delivery(&mut self) -> Result<(), RunError> {
        tokio::select! {
            Some(report) = self.reports.recv() => self.on_delivered(report, std::time::Instant::now()),
            Some((id, message)) = self.resends.next(), if !self.resends.is_empty() => {
                self.resend(id, message);
                Ok(())
            }
        }
    }

    /// Sends a failed output again (at-least-once), or waits another pause when it cannot be queued.
    fn resend(&mut self, id: usize, message: OwnedMessage) {
        if resend(&self.producer, &message, id).is_err() {
            self.resend_later(id, message);
        }
    }

    /// Queues `message` (in flight as `id`) to be sent again after [`RESEND_BACKOFF`].
    fn resend_later(&mut self, id: usize, message: OwnedMessage) {
        self.resends.push(Box::pin(async move {
            tokio::time::sleep(RESEND_BACKOFF).await;
            (id, message)
        }));
    }

    /// Marks an acknowledged output, or sends a failed one again after a pause.
    /// `now` is the time the delivery was taken (one clock read serves a burst of them).
    /// A report for an output no longer tracked (the transaction it belonged to was rewound) is ignored.
    fn on_delivered(&mut self, (id, result): Report, now: std::time::Instant) -> Result<(), RunError> {
        let Some(mut tag) = self.in_flight.remove(id) else { return Ok(()) };
        match result {
            Ok(()) => {
                self.meters.produce.record(now.saturating_duration_since(tag.sent).as_secs_f64());
                tag.topic.produced.increment(1);
                if tag.retried {
                    self.retrying -= 1;
                    if self.retrying == 0 {
                        self.end_failing();
                    }
                }
                let mut tracker = self.tracker.lock().expect("tracker lock");
                for (tp, offset) in &tag.holds {
                    tracker.ack(tp, *offset);
                }
            }
            Err(failure) if self.eos.is_some() => {
                let error = &failure.0;
                // Never sent again: the transaction is aborted and its records re-processed.
                let eos = self.eos.as_mut().expect("exactly-once state");
                if tag.epoch == eos.txn.epoch() && eos.txn.is_open() {
                    // One line per transaction: when the broker is away, every record in flight
                    // fails at once (thousands of lines for one abort, before).
                    if !eos.failed {
                        warn!(message = "Delivery failed in the open transaction; it will be aborted.", topic = %tag.topic.name, %error);
                    }
                    eos.failed = true;
                }
            }
            Err(failure) => {
                let (error, message) = *failure;
                if !tag.retried {
                    tag.retried = true;
                    self.retrying += 1;
                }
                self.start_failing();
                if let Some((code, reason)) = self.producer.client().fatal_error() {
                    error!(message = "Producer fatal error.", %reason);
                    return Err(RunError::Kafka { context: "producer fatal error", source: KafkaError::MessageProduction(code) });
                }
                if let Some(left_out) = self.delivery_log.allow(std::time::Instant::now()) {
                    warn!(message = "Delivery failed; sending again.", topic = %tag.topic.name, %error, not_logged_since_last = left_out);
                }
                tag.topic.retries.increment(1);
                let id = self.in_flight.insert(tag);
                self.resend_later(id, message);
            }
        }
        Ok(())
    }

    /// Outputs failed (a delivery, or an exactly-once transaction): a failing spell begins, unless
    /// one is on.
    fn start_failing(&mut self) {
        self.failing_since.get_or_insert_with(|| chrono::Utc::now().timestamp_millis());
    }

    /// Outputs go through again: the failing spell, if any, ends.
    fn end_failing(&mut self) {
        if let Some(since) = self.failing_since.take() {
            if self.failing_reported {
                let secs = (chrono::Utc::now().timestamp_millis() - since) / 1000;
                info!(message = "Outputs go through again; /ready answers 200.", failed_for_secs = secs);
            }
            self.failing_reported = false;
        }
    }

    /// On the heartbeat: the failing spell to the gauge (when it began, so that a late heartbeat
    /// cannot make it read younger than `/ready` says) and to `/ready`, and one error line once
    /// it has lasted `after` (zero: never).
    fn report_failing(&mut self, health: &Health, after: Duration) {
        metrics::gauge!("auditflow_outputs_failing_since_seconds").set(self.failing_since.map_or(0.0, |since| since as f64 / 1000.0));
        health.failing_since(self.failing_since);
        let secs = self.failing_since.map_or(0, |since| (chrono::Utc::now().timestamp_millis() - since).max(0) / 1000);
        if !self.failing_reported && !after.is_zero() && self.failing_since.is_some() && secs >= after.as_secs() as i64 {
            self.failing_reported = true;
            error!(
                message = "Outputs have failed without a break; /ready answers 503 until one goes through. Nothing is dropped: they are retried and offsets wait.",
                secs,
                retrying = self.retrying
            );
        }
    }

    /// Reloads the policy catalog when its file changed; a file that fails to load keeps the old catalog.
    fn reload_catalog(&mut self, config: &Config) {
        let modified = self.catalog.modified();
        if modified.is_none() || modified == self.catalog.loaded {
            return;
        }
        self.catalog.loaded = modified;
        match config.load_catalog() {
            Ok(Some(catalog)) => {
                info!(message = "Policy catalog reloaded.", policies = catalog.len());
                metrics::counter!("auditflow_catalog_reloads_total").increment(1);
                self.pipeline.set_catalog(catalog);
            }
            Ok(None) => {}
            Err(error) => {
                warn!(message = "Policy catalog not reloaded; keeping the previous one.", %error);
                metrics::counter!("auditflow_catalog_errors_total").increment(1);
            }
        }
    }

    /// On the timer: commits the open transaction (exactly-once), or the offsets that moved since
    /// the last commit, without blocking (at-least-once).
    async fn commit(&mut self) -> Result<(), RunError> {
        if self.eos.is_some() {
            return self.commit_transaction().await;
        }
        // Every partition now and then, moved or not: librdkafka does not always report a commit
        // lost in a broker restart, and a stream that has ended has nothing to move it again.
        let all = self.last_full_commit.elapsed() >= COMMIT_REFRESH;
        let commits = {
            let mut tracker = self.tracker.lock().expect("tracker lock");
            if all {
                tracker.take_all_commits()
            } else {
                tracker.take_commits()
            }
        };
        if all {
            self.last_full_commit = std::time::Instant::now();
        }
        commit_list(&self.consumer, &commits, CommitMode::Async);
        Ok(())
    }
}

/// Forgets what was read from partitions revoked since the last call: their records still in
/// the backlog (not processed, so not committed: the partition's next owner, maybe this instance
/// again, reads them from the committed offset) and their windows. Processing them would write
/// their outputs twice, and, if the partition came back, track offsets of an older assignment.
/// (Parts of the runner, not the runner: a record borrowed from the consumer is alive meanwhile.)
fn forget_revoked(consumer: &StreamConsumer<RunContext>, backlog: &mut VecDeque<SourceRecord>, pipeline: &mut Pipeline) {
    let gone: Vec<TopicPartition> = std::mem::take(&mut *consumer.context().revoked.lock().expect("revoked lock"));
    if gone.is_empty() {
        return;
    }
    let before = backlog.len();
    backlog.retain(|r| !gone.iter().any(|(topic, partition)| *partition == r.partition && **topic == *r.topic));
    if backlog.len() < before {
        debug!(message = "Dropped backlog records of revoked partitions.", records = before - backlog.len());
    }
    for (topic, partition) in gone {
        pipeline.drop_partition(&topic, partition);
    }
}

/// The distinct partition numbers assigned (over all topics); `usize::MAX` while nothing is
/// assigned, so that "every partition read to its end" cannot hold then.
fn assigned_partition_numbers(consumer: &StreamConsumer<RunContext>) -> usize {
    let Ok(assignment) = consumer.assignment() else { return usize::MAX };
    let numbers: HashSet<i32> = assignment.elements().iter().map(|e| e.partition()).collect();
    if numbers.is_empty() {
        usize::MAX
    } else {
        numbers.len()
    }
}

/// Whether the consumer has taken every record of every assigned partition: its position (past
/// the last record or transaction marker taken) at or past the partition's high watermark as of
/// the last fetch. A partition nothing was taken from this run starts at its committed offset,
/// or, with none, at its low watermark (the high one with `auto.offset.reset = latest`). Used by
/// `--until-caught-up`, whose end-of-partition events do not name their topic. A read-committed
/// consumer behind an open transaction is not at the end until it ends. Local but for the
/// committed offsets of partitions nothing was taken from (the group coordinator's answer): a
/// broker query per partition would wait behind the consumer's long-polling fetch, and a
/// check of several seconds starved the loop that should receive the records.
async fn read_to_the_end(consumer: &Arc<StreamConsumer<RunContext>>, starts_at_latest: bool) -> bool {
    let Ok(positions) = consumer.position() else { return false };
    let mut unstarted = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for elem in positions.elements() {
        let Some((low, high)) = cached_watermarks(consumer, elem.topic(), elem.partition()) else {
            // No fetch answered for this partition yet.
            return false;
        };
        match elem.offset() {
            Offset::Offset(position) if position < high => {
                debug!(message = "Not at the end yet.", topic = elem.topic(), partition = elem.partition(), position, high);
                return false;
            }
            Offset::Offset(_) => {}
            _ => {
                unstarted.add_partition(elem.topic(), elem.partition());
                ends.insert((elem.topic().to_owned(), elem.partition()), (low, high));
            }
        }
    }
    if unstarted.count() == 0 {
        return true;
    }
    let consumer = consumer.clone();
    let committed = tokio::task::spawn_blocking(move || consumer.committed_offsets(unstarted, Duration::from_secs(10))).await;
    let Ok(Ok(committed)) = committed else { return false };
    committed.elements().iter().all(|elem| {
        let (low, high) = ends[&(elem.topic().to_owned(), elem.partition())];
        // librdkafka may not know the low watermark (-1): an empty partition starts at 0.
        let low = low.max(0);
        let start = match elem.offset() {
            Offset::Offset(committed) => committed,
            _ if starts_at_latest => high,
            _ => low,
        };
        if start < high {
            debug!(message = "Not at the end yet.", topic = elem.topic(), partition = elem.partition(), start, high);
        }
        start >= high
    })
}

/// The low and high watermarks of a partition as of the consumer's last fetch from it (no
/// request: librdkafka keeps them); `None` before the first.
fn cached_watermarks(consumer: &StreamConsumer<RunContext>, topic: &str, partition: i32) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` is borrowed; librdkafka reads the
    // NUL-terminated topic name and writes the two integers, nothing else.
    let code = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(consumer.client().native_ptr(), topic.as_ptr(), partition, &mut low, &mut high)
    };
    (code == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low, high))
}

fn source_record(message: &impl Message) -> SourceRecord {
    SourceRecord {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default(),
        payload: message.payload().map(<[u8]>::to_vec),
        timestamp_ms: message.timestamp().to_millis(),
    }
}

fn dlq_code(output: &Output) -> String {
    output
        .headers
        .iter()
        .find(|(name, _)| name == dlq_headers::CODE)
        .and_then(|(_, value)| value.as_deref())
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .unwrap_or_default()
}

/// Queues `output` with its in-flight `id`, which its delivery report carries, to
/// `output.partition`, else `partition`, else the partition of its key's hash.
fn send(producer: &Producer, output: &Output, id: usize, partition: Option<i32>) -> Result<(), KafkaError> {
    let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(&output.topic, id);
    // Most outputs have no headers: skip librdkafka's header list allocation for them.
    if !output.headers.is_empty() {
        let mut headers = OwnedHeaders::new_with_capacity(output.headers.len());
        for (key, value) in &output.headers {
            headers = headers.insert(Header { key, value: value.as_deref() });
        }
        record = record.headers(headers);
    }
    if let Some(key) = output.key.as_deref() {
        record = record.key(key);
    }
    if let Some(payload) = output.payload.as_deref() {
        record = record.payload(payload);
    }
    if let Some(ts) = output.timestamp_ms {
        record = record.timestamp(ts);
    }
    if let Some(partition) = output.partition.or(partition) {
        record = record.partition(partition);
    }
    producer.send(record).map_err(|(error, _)| error)
}

/// Queues a failed message again, as it was (topic, key, value, headers, timestamp).
fn resend(producer: &Producer, message: &OwnedMessage, id: usize) -> Result<(), KafkaError> {
    let output = Output {
        topic: message.topic().to_owned(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default(),
        timestamp_ms: message.timestamp().to_millis(),
        holds: Vec::new(),
        // The partition it was sent to: a resend keeps a SIEM record where sticky put it.
        partition: Some(message.partition()).filter(|p| *p >= 0),
    };
    send(producer, &output, id, None)
}

/// Commits the given offsets; `CommitMode::Sync` blocks, so call it off the runtime threads.
/// Commits `commits`; false when the commit failed (logged and counted).
fn commit_list(consumer: &StreamConsumer<RunContext>, commits: &[(TopicPartition, i64)], mode: CommitMode) -> bool {
    if commits.is_empty() {
        return true;
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in commits {
        // Adding a valid topic, partition and offset cannot fail.
        let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    if let Err(error) = consumer.commit(&list, mode) {
        warn!(message = "Offset commit failed.", %error);
        metrics::counter!("auditflow_commit_errors_total").increment(1);
        return false;
    }
    true
}
