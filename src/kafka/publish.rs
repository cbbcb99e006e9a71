//! Publishing records to a topic, as fast as the broker takes them or at a steady rate (for
//! `auditflow generate` and the latency benchmark's load).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

/// Counts acknowledgements and keeps the first delivery error.
#[derive(Default)]
struct Acks {
    ok: AtomicU64,
    failed: Mutex<Option<KafkaError>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.lock().expect("acks lock").get_or_insert_with(|| error.clone());
            }
        }
    }
}

/// With a rate: records due within this much of now are sent at once.
const PACE_STEP: Duration = Duration::from_micros(500);

/// How long `publish` waits for the last acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// Sends every `(key, value)` to `topic` and waits for all acknowledgements; returns how many.
/// `properties` are extra librdkafka producer properties. With `rate` (events per second), record
/// `i` is sent no earlier than 0.5 ms before `i / rate` seconds after the first, so the load is
/// steady; each record's timestamp is its send time. Blocking: one thread sends and serves the
/// acknowledgements (no future or channel per record, so the load costs little CPU beside the
/// process it is aimed at).
pub fn publish(
    bootstrap: &str,
    topic: &str,
    properties: &[(String, String)],
    rate: Option<f64>,
    records: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
) -> Result<u64, KafkaError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("enable.idempotence", "true").set("linger.ms", "10").set("compression.type", "lz4");
    for (key, value) in properties {
        config.set(key, value);
    }
    let producer: rdkafka::producer::BaseProducer<Acks> = config.create_with_context(Acks::default())?;
    let failed = |producer: &rdkafka::producer::BaseProducer<Acks>| producer.context().failed.lock().expect("acks lock").take();
    let started = Instant::now();
    let mut sent = 0u64;
    for (key, value) in records {
        if let Some(rate) = rate {
            // Records due within the next half millisecond go now: a burst is at most that much.
            // The wait is a plain sleep: rust-rdkafka's `poll(timeout)` spins through the last
            // fraction of a millisecond (librdkafka takes whole milliseconds), which at this
            // rate cost more CPU than the sending.
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()).filter(|w| *w >= PACE_STEP) {
                std::thread::sleep(wait);
            }
        }
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
                Err((error, _)) => return Err(error),
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
        if let Some(error) = failed(&producer) {
            return Err(error);
        }
    }
    producer.flush(FLUSH_TIMEOUT)?;
    if let Some(error) = failed(&producer) {
        return Err(error);
    }
    let acknowledged = producer.context().ok.load(Ordering::Relaxed);
    if acknowledged != sent {
        return Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut));
    }
    Ok(sent)
}
