//! `auditflow run`: the receive loop between the consumer group, the core and the producer.
//!
//! One task owns the loop: it takes a record, runs [`Pipeline::process`], sends every output, and
//! tracks acknowledgements in [`OffsetTracker`]. Offsets are committed every
//! `delivery.commit_interval_ms`, on partition revoke, and at shutdown, and never past a record
//! whose outputs are not all acknowledged (at-least-once). A failed delivery is sent again; it is
//! never dropped.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::offsets::{OffsetTracker, TopicPartition};
use super::{consumer_config, producer_config};
use crate::config::Config;
use crate::model::{Output, SourceRecord};
use crate::pipeline::{dlq_headers, Pipeline};

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
    /// Input or output topics do not exist.
    #[error("topics missing on {bootstrap}: {}; create them or change [topics]", .missing.join(", "))]
    MissingTopics {
        /// The configured bootstrap servers.
        bootstrap: String,
        /// The missing topic names.
        missing: Vec<String>,
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

/// How long start-up waits for the cluster's metadata.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before sending an output again after its delivery failed.
const RESEND_BACKOFF: Duration = Duration::from_millis(500);

/// Consumer context: commits a partition's acknowledged offset when it is revoked.
struct RunContext {
    tracker: Arc<Mutex<OffsetTracker>>,
}

impl ClientContext for RunContext {}

impl ConsumerContext for RunContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else { return };
        let mut list = TopicPartitionList::new();
        {
            let mut tracker = self.tracker.lock().expect("tracker lock");
            for elem in revoked.elements() {
                if let Some(offset) = tracker.remove(&(elem.topic().to_owned(), elem.partition())) {
                    // Building a list from known-good values cannot fail.
                    let _ = list.add_partition_offset(elem.topic(), elem.partition(), Offset::Offset(offset));
                }
            }
        }
        if list.count() > 0 {
            if let Err(error) = consumer.commit(&list, CommitMode::Sync) {
                warn!(message = "Commit on revoke failed; the next owner re-reads from the last commit.", %error);
            }
        }
        info!(message = "Partitions revoked.", partitions = revoked.count());
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result {
            warn!(message = "Offset commit failed.", %error);
            metrics::counter!("auditflow_commit_errors_total").increment(1);
        }
    }
}

/// A delivery in flight: which record it belongs to and its output topic.
struct Tag {
    tp: TopicPartition,
    offset: i64,
    topic: Arc<str>,
}

type Delivered = (Tag, Result<(), (KafkaError, OwnedMessage)>);

/// Runs until `shutdown` resolves, then drains in-flight outputs, commits, and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let mut pipeline = Pipeline::new(config.pipeline_settings());
    let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
    let consumer: Arc<StreamConsumer<RunContext>> = Arc::new(
        consumer_config(&config.kafka)
            .create_with_context(RunContext { tracker: tracker.clone() })
            .map_err(|source| RunError::Kafka { context: "creating the consumer", source })?,
    );
    let producer: FutureProducer = producer_config(&config.kafka)
        .create()
        .map_err(|source| RunError::Kafka { context: "creating the producer", source })?;

    let mut wanted: Vec<String> = config.topics.input.clone();
    wanted.extend(pipeline.output_topics());
    check_cluster(&producer, &config.kafka.bootstrap_servers, &wanted).await?;
    let inputs: Vec<&str> = config.topics.input.iter().map(String::as_str).collect();
    consumer.subscribe(&inputs).map_err(|source| RunError::Kafka { context: "subscribing", source })?;
    info!(message = "Consuming.", topics = ?inputs, group = %config.kafka.group_id);

    let dead_letter = config.topics.dead_letter.clone();
    let max_in_flight = config.delivery.max_in_flight;
    let mut in_flight: FuturesUnordered<BoxFuture<'static, Delivered>> = FuturesUnordered::new();
    let mut commit_tick = tokio::time::interval(Duration::from_millis(config.delivery.commit_interval_ms.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let can_take = tracker.lock().expect("tracker lock").in_flight() < max_in_flight;
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(delivered) = in_flight.next(), if !in_flight.is_empty() => {
                on_delivered(delivered, &tracker, &producer, &in_flight)?;
            }
            _ = commit_tick.tick() => commit(&consumer, &tracker),
            received = consumer.recv(), if can_take => {
                let message = match received {
                    Ok(message) => message,
                    Err(error) => {
                        warn!(message = "Consumer error.", %error);
                        metrics::counter!("auditflow_consumer_errors_total").increment(1);
                        continue;
                    }
                };
                let record = source_record(&message);
                drop(message);
                metrics::counter!("auditflow_records_received_total", "topic" => record.topic.clone()).increment(1);
                let outputs = pipeline.process(&record, chrono::Utc::now().timestamp_millis());
                let tp = (record.topic.clone(), record.partition);
                tracker.lock().expect("tracker lock").begin(&tp, record.offset, outputs.len() as u32);
                for output in &outputs {
                    if output.topic == dead_letter {
                        let code = dlq_code(output);
                        warn!(message = "Record dead-lettered.", topic = %record.topic, partition = record.partition, offset = record.offset, code = %code);
                        metrics::counter!("auditflow_records_dead_lettered_total", "code" => code).increment(1);
                    }
                    let future = loop {
                        match send(&producer, output) {
                            Ok(future) => break future,
                            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                                // The producer queue is the bound: wait for a delivery, then retry.
                                match in_flight.next().await {
                                    Some(delivered) => on_delivered(delivered, &tracker, &producer, &in_flight)?,
                                    None => tokio::time::sleep(Duration::from_millis(10)).await,
                                }
                            }
                            Err(source) => return Err(RunError::Kafka { context: "producing", source }),
                        }
                    };
                    let tag = Tag { tp: tp.clone(), offset: record.offset, topic: Arc::from(output.topic.as_str()) };
                    in_flight.push(Box::pin(await_delivery(tag, future)));
                }
            }
        }
    }

    info!(message = "Shutting down: draining in-flight outputs.", in_flight = in_flight.len());
    let drain = async {
        while let Some(delivered) = in_flight.next().await {
            on_delivered(delivered, &tracker, &producer, &in_flight)?;
        }
        Ok::<(), RunError>(())
    };
    match tokio::time::timeout(Duration::from_millis(config.delivery.shutdown_timeout_ms), drain).await {
        Ok(result) => result?,
        Err(_) => warn!(message = "Shutdown deadline reached with outputs in flight; they are re-read on restart."),
    }
    let last = tracker.lock().expect("tracker lock").all_commits();
    let closing = consumer.clone();
    let _ = tokio::task::spawn_blocking(move || {
        commit_list(&closing, &last, CommitMode::Sync);
        closing.unsubscribe();
    })
    .await;
    let flushing = producer.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(5))).await;
    info!(message = "Stopped.");
    Ok(())
}

/// Fetches cluster metadata (off the runtime threads) and checks that every topic exists.
async fn check_cluster(producer: &FutureProducer, bootstrap: &str, topics: &[String]) -> Result<(), RunError> {
    let client = producer.clone();
    let metadata = tokio::task::spawn_blocking(move || client.client().fetch_metadata(None, CONNECT_TIMEOUT))
        .await
        .expect("metadata task");
    let metadata = metadata.map_err(|error| RunError::Unreachable {
        bootstrap: bootstrap.to_owned(),
        secs: CONNECT_TIMEOUT.as_secs(),
        detail: error.to_string(),
    })?;
    let present: Vec<&str> = metadata.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name()).collect();
    let mut missing: Vec<String> = topics.iter().filter(|t| !present.contains(&t.as_str())).cloned().collect();
    missing.dedup();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RunError::MissingTopics { bootstrap: bootstrap.to_owned(), missing })
    }
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

fn send(producer: &FutureProducer, output: &Output) -> Result<DeliveryFuture, KafkaError> {
    let mut headers = OwnedHeaders::new_with_capacity(output.headers.len());
    for (key, value) in &output.headers {
        headers = headers.insert(Header { key, value: value.as_deref() });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&output.topic).headers(headers);
    if let Some(key) = output.key.as_deref() {
        record = record.key(key);
    }
    if let Some(payload) = output.payload.as_deref() {
        record = record.payload(payload);
    }
    if let Some(ts) = output.timestamp_ms {
        record = record.timestamp(ts);
    }
    producer.send_result(record).map_err(|(error, _)| error)
}

async fn await_delivery(tag: Tag, future: DeliveryFuture) -> Delivered {
    let result = match future.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(failure)) => Err(failure),
        // The producer dropped the message without an answer: only at teardown.
        Err(_) => Err((KafkaError::Canceled, OwnedMessage::new(None, None, tag.topic.to_string(), rdkafka::Timestamp::NotAvailable, 0, 0, None))),
    };
    (tag, result)
}

/// Marks an acknowledged output, or sends a failed one again after a pause.
fn on_delivered(
    (tag, result): Delivered,
    tracker: &Mutex<OffsetTracker>,
    producer: &FutureProducer,
    in_flight: &FuturesUnordered<BoxFuture<'static, Delivered>>,
) -> Result<(), RunError> {
    match result {
        Ok(()) => {
            metrics::counter!("auditflow_records_produced_total", "topic" => tag.topic.to_string()).increment(1);
            tracker.lock().expect("tracker lock").ack(&tag.tp, tag.offset);
        }
        Err((error, message)) => {
            if let Some((code, reason)) = producer.client().fatal_error() {
                return Err(RunError::Kafka { context: "producer fatal error", source: KafkaError::MessageProduction(code) })
                    .inspect_err(|_| error!(message = "Producer fatal error.", %reason));
            }
            warn!(message = "Delivery failed; sending again.", topic = %tag.topic, %error);
            metrics::counter!("auditflow_delivery_retries_total", "topic" => tag.topic.to_string()).increment(1);
            let producer = producer.clone();
            in_flight.push(Box::pin(async move {
                tokio::time::sleep(RESEND_BACKOFF).await;
                loop {
                    match resend(&producer, &message) {
                        Ok(future) => return await_delivery(tag, future).await,
                        Err(_) => tokio::time::sleep(RESEND_BACKOFF).await,
                    }
                }
            }));
        }
    }
    Ok(())
}

fn resend(producer: &FutureProducer, message: &OwnedMessage) -> Result<DeliveryFuture, KafkaError> {
    let output = Output {
        topic: message.topic().to_owned(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default(),
        timestamp_ms: message.timestamp().to_millis(),
    };
    send(producer, &output)
}

/// Commits the offsets that moved since the last commit, without blocking (on the timer).
fn commit(consumer: &StreamConsumer<RunContext>, tracker: &Mutex<OffsetTracker>) {
    let commits = tracker.lock().expect("tracker lock").take_commits();
    commit_list(consumer, &commits, CommitMode::Async);
}

/// Commits the given offsets; `CommitMode::Sync` blocks, so call it off the runtime threads.
fn commit_list(consumer: &StreamConsumer<RunContext>, commits: &[(TopicPartition, i64)], mode: CommitMode) {
    if commits.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in commits {
        // Adding a valid topic, partition and offset cannot fail.
        let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    if let Err(error) = consumer.commit(&list, mode) {
        warn!(message = "Offset commit failed.", %error);
        metrics::counter!("auditflow_commit_errors_total").increment(1);
    }
}
