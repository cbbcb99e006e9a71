//! Reading the window changelog back when a partition is assigned (exactly-once mode; see
//! [`crate::pipeline::changelog`]). Blocking: call it on the blocking pool.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::consumer_config;
use crate::config::KafkaConfig;
use crate::model::SourceRecord;
use crate::pipeline::changelog::{Restore, SOURCE_KEY_HEADER};

/// What the changelog saved of one input partition.
#[derive(Debug, Default)]
pub struct Saved {
    /// The live entries (events of open windows), in offset order.
    pub records: Vec<SourceRecord>,
    /// The partition's highest event time at the last commit, if one was saved.
    pub max_event_time: Option<i64>,
}

/// What the changelog saved of `input`/`partition`: reads partition `partition` of `changelog`
/// from its start to its end (committed records only).
pub fn read(kafka: &KafkaConfig, changelog: &str, input: &str, partition: i32, timeout: Duration) -> Result<Saved, KafkaError> {
    let mut settings = consumer_config(kafka);
    settings
        .set("group.id", format!("{}.restore", kafka.group_id))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("statistics.interval.ms", "0");
    let consumer: BaseConsumer = settings.create()?;
    let (low, high) = consumer.fetch_watermarks(changelog, partition, timeout)?;
    let mut restore = Restore::default();
    if high > low {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(changelog, partition, Offset::Beginning)?;
        consumer.assign(&list)?;
        let deadline = Instant::now() + timeout;
        loop {
            if Instant::now() > deadline {
                return Err(KafkaError::Canceled);
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let source_key =
                        message.headers().and_then(|headers| headers.iter().find(|h| h.key == SOURCE_KEY_HEADER).and_then(|h| h.value));
                    restore.apply(message.key(), message.payload(), source_key, message.timestamp().to_millis());
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(error)) => return Err(error),
                None => {}
            }
        }
    }
    let max_event_time = restore.event_time(input, partition);
    Ok(Saved { records: restore.records(input), max_event_time })
}
