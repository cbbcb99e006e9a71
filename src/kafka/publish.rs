//! Publishing records to a topic as fast as the broker takes them (for `auditflow generate`).

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// Sends every `(key, value)` to `topic` and waits for all acknowledgements; returns how many.
/// `properties` are extra librdkafka producer properties.
pub async fn publish(
    bootstrap: &str,
    topic: &str,
    properties: &[(String, String)],
    records: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
) -> Result<u64, KafkaError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("enable.idempotence", "true").set("linger.ms", "10").set("compression.type", "lz4");
    for (key, value) in properties {
        config.set(key, value);
    }
    let producer: FutureProducer = config.create()?;
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0u64;
    for (key, value) in records {
        loop {
            match producer.send_result(FutureRecord::to(topic).key(&key).payload(&value)) {
                Ok(delivery) => {
                    in_flight.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => match in_flight.next().await {
                    Some(result) => check(result)?,
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                },
                Err((error, _)) => return Err(error),
            }
        }
        sent += 1;
        while in_flight.len() > 100_000 {
            if let Some(result) = in_flight.next().await {
                check(result)?;
            }
        }
    }
    while let Some(result) = in_flight.next().await {
        check(result)?;
    }
    Ok(sent)
}

fn check(
    result: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
) -> Result<(), KafkaError> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(error),
        Err(_) => Err(KafkaError::Canceled),
    }
}
