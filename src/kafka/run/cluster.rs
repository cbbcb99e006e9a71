//! What a run asks of the cluster before it starts: topics to check or create (inputs, outputs,
//! internal topics), their limits, metadata and partition counts.

use super::*;

/// Creates an internal topic (the window changelog, compacted, or the repartition topic) with as
/// many partitions as the largest input topic when `missing`, or checks that the existing one has
/// enough partitions.
pub(super) async fn ensure_internal(
    config: &Config,
    producer: &Producer,
    changelog: &str,
    missing: bool,
    compact: bool,
) -> Result<(), RunError> {
    let metadata = cluster_metadata(producer).await.map_err(|source| RunError::Kafka { context: "reading topic metadata", source })?;
    let count = |name: &str| partition_count(&metadata, name);
    let needed = config.topics.input.iter().map(|t| count(t)).max().unwrap_or(1).max(1);
    if !missing {
        let have = count(changelog);
        if have < needed {
            return Err(RunError::Config(crate::config::ConfigError::Invalid(vec![format!(
                "internal topic {changelog} has {have} partitions, fewer than the input's {needed}; delete it or name another (topics.window_changelog, topics.repartition)"
            )])));
        }
        return Ok(());
    }
    if !config.topics.create_missing {
        return Err(RunError::MissingTopics { bootstrap: config.kafka.bootstrap_servers.clone(), missing: vec![changelog.to_owned()] });
    }
    let admin = admin_client(&config.kafka)?;
    let partitions = i32::try_from(needed).unwrap_or(i32::MAX);
    let topic = NewTopic::new(changelog, partitions, TopicReplication::Fixed(config.topics.new_topic_replication_factor))
        .set("cleanup.policy", if compact { "compact" } else { "delete" });
    let options = AdminOptions::new().operation_timeout(Some(CONNECT_TIMEOUT));
    let results = admin.create_topics([&topic], &options).await.map_err(|source| RunError::Kafka { context: "creating topics", source })?;
    for result in results {
        match result {
            Ok(name) => info!(message = "Created an internal topic.", topic = %name, partitions, compact),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(RunError::CreateTopics { refused: vec![format!("{name}: {code}")] }),
        }
    }
    Ok(())
}

/// An admin client with the producer's connection settings.
pub(super) fn admin_client(kafka: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, RunError> {
    producer_config(kafka).create().map_err(|source| RunError::Kafka { context: "creating the admin client", source })
}

/// Warns about output topics whose `max.message.bytes` is below the producer's
/// `message.max.bytes`: the broker refuses the batches the producer builds for them, and the
/// refused records are retried without end (`docs/input.md`, "Records too large to send"). Only a
/// warning: a topic that receives small records works. A failure to read the configs is logged.
pub(super) async fn warn_small_topic_limits(config: &Config, topics: &[String]) {
    let producer_max = config.max_message_bytes();
    let admin = match admin_client(&config.kafka) {
        Ok(admin) => admin,
        Err(error) => return debug!(message = "Could not read the topics' max.message.bytes.", %error),
    };
    let specifiers: Vec<ResourceSpecifier<'_>> = topics.iter().map(|topic| ResourceSpecifier::Topic(topic)).collect();
    let options = AdminOptions::new().request_timeout(Some(CONNECT_TIMEOUT));
    let results = match admin.describe_configs(&specifiers, &options).await {
        Ok(results) => results,
        Err(error) => return debug!(message = "Could not read the topics' max.message.bytes.", %error),
    };
    let small: Vec<String> = results
        .iter()
        .flatten()
        .filter_map(|resource| {
            let OwnedResourceSpecifier::Topic(name) = &resource.specifier else { return None };
            let entry = resource.entries.iter().find(|entry| entry.name == "max.message.bytes")?;
            let limit: usize = entry.value.as_deref()?.parse().ok()?;
            (limit < producer_max).then(|| format!("{name} ({limit})"))
        })
        .collect();
    if !small.is_empty() {
        warn!(
            message = "Output topics accept smaller batches than the producer builds: lower kafka.producer_properties.\"message.max.bytes\" or raise the topics' max.message.bytes.",
            producer_message_max_bytes = producer_max,
            topics = %small.join(", ")
        );
    }
}

/// Creates the missing output topics with the configured partitions and replication factor.
pub(super) async fn create_topics(config: &Config, missing: &[String]) -> Result<(), RunError> {
    let admin = admin_client(&config.kafka)?;
    let factor = config.topics.new_topic_replication_factor;
    let topics: Vec<NewTopic> =
        missing.iter().map(|name| NewTopic::new(name, config.topics.new_topic_partitions, TopicReplication::Fixed(factor))).collect();
    let options = AdminOptions::new().operation_timeout(Some(CONNECT_TIMEOUT));
    let results = admin.create_topics(&topics, &options).await.map_err(|source| RunError::Kafka { context: "creating topics", source })?;
    let mut refused = Vec::new();
    for result in results {
        match result {
            Ok(name) => info!(message = "Created topic.", topic = %name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => refused.push(format!("{name}: {code}")),
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(RunError::CreateTopics { refused })
    }
}

/// Fetches cluster metadata (off the runtime threads); returns the topics that do not exist.
pub(super) async fn check_cluster(
    producer: &Producer,
    errors: &ErrorContext,
    bootstrap: &str,
    topics: &[String],
) -> Result<Vec<String>, RunError> {
    let metadata = cluster_metadata(producer).await.map_err(|error| {
        if let Some(reason) = errors.authentication_failure() {
            return RunError::Authentication { bootstrap: bootstrap.to_owned(), reason };
        }
        if let Some(reason) = errors.tls_failure() {
            return RunError::Tls { bootstrap: bootstrap.to_owned(), reason };
        }
        RunError::Unreachable { bootstrap: bootstrap.to_owned(), secs: CONNECT_TIMEOUT.as_secs(), detail: error.to_string() }
    })?;
    let present: Vec<&str> = metadata.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name()).collect();
    let mut missing: Vec<String> = topics.iter().filter(|t| !present.contains(&t.as_str())).cloned().collect();
    missing.sort();
    missing.dedup();
    Ok(missing)
}

/// The cluster's metadata, all topics, fetched off the runtime threads.
pub(super) async fn cluster_metadata(producer: &Producer) -> Result<rdkafka::metadata::Metadata, KafkaError> {
    let client = producer.clone();
    tokio::task::spawn_blocking(move || client.client().fetch_metadata(None, CONNECT_TIMEOUT)).await.expect("metadata task")
}

/// How many partitions `topic` has in `metadata` (0 when it is not there).
pub(super) fn partition_count(metadata: &rdkafka::metadata::Metadata, topic: &str) -> usize {
    metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len())
}

/// Sticky partitioning for `topics`, with their partition counts from the cluster's metadata
/// (they exist by now).
pub(super) async fn sticky_partitions(producer: &Producer, topics: &[String]) -> Result<Sticky, RunError> {
    let metadata = cluster_metadata(producer).await.map_err(|source| RunError::Kafka { context: "reading topic metadata", source })?;
    let counts: Vec<(String, usize)> = topics.iter().map(|topic| (topic.clone(), partition_count(&metadata, topic))).collect();
    info!(message = "Sticky partitioning.", topics = ?counts, window_ms = sticky::WINDOW.as_millis() as u64);
    Ok(Sticky::new(counts, std::time::Instant::now()))
}
