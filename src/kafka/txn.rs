//! Kafka transactions of exactly-once mode (`delivery.mode = "exactly_once"`).
//!
//! ```text
//! first output ─► begin ─► outputs + changelog records ─► (commit tick) send_offsets ─► commit
//!                                                     └─► on failure: abort ─► rewind to committed
//! ```
//!
//! librdkafka's transactional calls block (they wait for the coordinator), so each runs on
//! tokio's blocking pool, never on a runtime thread. Their errors are handled as librdkafka
//! prescribes ([`Failure::class`]): retriable errors are retried, abortable ones abort the
//! transaction, and fatal ones (a fenced producer among them) need a new producer.
//!
//! A call that does not return at all is given up too ([`Failure::Hung`]): librdkafka (2.12,
//! and later releases as of its issues #5456 and #5511) never times out the group coordinator
//! request inside `send_offsets_to_transaction`, which then blocks for good when the coordinator
//! goes away at the wrong moment. It did in this project's CI, on a broker restart.

use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::TopicPartitionList;
use tracing::warn;

/// What a failed transactional call requires.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Abort the transaction, rewind the consumer to the committed offsets, and go on.
    #[error("transaction must be aborted: {0}")]
    Abort(KafkaError),
    /// The producer is unusable (fatal error, fenced by a newer instance with the same
    /// `transactional.id`): create a new one, then rewind.
    #[error("transactional producer failed for good: {0}")]
    Fatal(KafkaError),
    /// A call did not return within its timeout and [`HUNG_AFTER`] more: the producer is stuck in
    /// it. Create a new producer (which fences the stuck one), then rewind. The stuck call keeps
    /// its thread and the old producer until it returns, if ever.
    #[error("transactional call {call} did not return within {}s; the producer is replaced", .after.as_secs())]
    Hung {
        /// The librdkafka call.
        call: &'static str,
        /// How long it was given.
        after: Duration,
    },
}

/// Whether `error` says a newer producer with the same `transactional.id` took over (this one is
/// a zombie: it must stop, not start a new producer and fence the other back).
pub fn is_fenced(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(error.rdkafka_error_code(), Some(Code::Fenced | Code::ProducerFenced | Code::InvalidProducerEpoch))
}

/// How to handle one error of a transactional call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Call again.
    Retry,
    /// See [`Failure::Abort`].
    Abort,
    /// See [`Failure::Fatal`].
    Fatal,
}

impl Failure {
    /// Whether this failure says the producer was fenced (see [`is_fenced`]).
    pub fn is_fenced(&self) -> bool {
        match self {
            Failure::Abort(error) | Failure::Fatal(error) => is_fenced(error),
            Failure::Hung { .. } => false,
        }
    }

    /// librdkafka's classification of `error`: fatal first, then abortable, then retriable.
    /// Errors without transactional flags (timeouts of the client itself) count as abortable.
    pub fn class(error: &KafkaError) -> Class {
        match error {
            KafkaError::Transaction(e) if e.is_fatal() => Class::Fatal,
            KafkaError::Transaction(e) if e.txn_requires_abort() => Class::Abort,
            KafkaError::Transaction(e) if e.is_retriable() => Class::Retry,
            _ => Class::Abort,
        }
    }
}

/// How long retriable errors are retried before the transaction is given up (aborted).
const RETRY_FOR: Duration = Duration::from_secs(30);
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long past its own timeout one call may run before it counts as hung.
pub const HUNG_AFTER: Duration = Duration::from_secs(10);

/// Runs `call` on the blocking pool, retrying retriable errors for up to [`RETRY_FOR`]. Each
/// call is given `timeout`; one still running `timeout` + [`HUNG_AFTER`] after it began is left
/// to its thread ([`Failure::Hung`]).
async fn blocking<C, F>(producer: &ThreadedProducer<C>, what: &'static str, timeout: Duration, call: F) -> Result<(), Failure>
where
    C: ProducerContext + 'static,
    F: Fn(&ThreadedProducer<C>) -> Result<(), KafkaError> + Send + 'static,
{
    blocking_within(producer, what, timeout + HUNG_AFTER, call).await
}

/// [`blocking`], with `per_call` the time after which one call counts as hung.
async fn blocking_within<C, F>(producer: &ThreadedProducer<C>, what: &'static str, per_call: Duration, call: F) -> Result<(), Failure>
where
    C: ProducerContext + 'static,
    F: Fn(&ThreadedProducer<C>) -> Result<(), KafkaError> + Send + 'static,
{
    let producer = producer.clone();
    // When the current call began: a retry starts the clock again.
    let began = std::sync::Arc::new(std::sync::Mutex::new(Instant::now()));
    let began_in_task = began.clone();
    let mut task = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            *began_in_task.lock().expect("call clock") = Instant::now();
            match call(&producer) {
                Ok(()) => return Ok(()),
                Err(error) => match Failure::class(&error) {
                    Class::Retry if started.elapsed() < RETRY_FOR => {
                        warn!(message = "Retriable transaction error; retrying.", call = what, %error);
                        std::thread::sleep(RETRY_PAUSE);
                    }
                    Class::Retry | Class::Abort => return Err(Failure::Abort(error)),
                    Class::Fatal => return Err(Failure::Fatal(error)),
                },
            }
        }
    });
    loop {
        let deadline = *began.lock().expect("call clock") + per_call;
        match tokio::time::timeout_at(deadline.into(), &mut task).await {
            Ok(joined) => return joined.expect("transaction task panicked"),
            // A retry began since: wait for it in turn.
            Err(_) if *began.lock().expect("call clock") + per_call > Instant::now() => {}
            Err(_) => return Err(Failure::Hung { call: what, after: per_call }),
        }
    }
}

/// The transaction state of one transactional producer.
pub struct Transactions<C: ProducerContext + 'static> {
    producer: ThreadedProducer<C>,
    timeout: Duration,
    open: bool,
    /// When the open transaction began.
    began: Instant,
    epoch: u64,
}

impl<C: ProducerContext + 'static> Transactions<C> {
    /// Takes a producer created with a `transactional.id` and initialises it: this fences any
    /// older producer with the same id and aborts what it left open.
    pub async fn init(producer: ThreadedProducer<C>, timeout: Duration) -> Result<Self, Failure> {
        blocking(&producer, "init_transactions", timeout, move |p| p.init_transactions(timeout)).await?;
        Ok(Transactions { producer, timeout, open: false, began: Instant::now(), epoch: 0 })
    }

    /// The producer, to send records in the open transaction.
    pub fn producer(&self) -> &ThreadedProducer<C> {
        &self.producer
    }

    /// Whether a transaction is open.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Whether the open transaction has been open longer than `transaction.timeout.ms`. The
    /// broker then aborts it and bumps the producer epoch, and the producer's next transactional
    /// call fails as fenced although no other instance took over (KIP-588). A fenced error on a
    /// younger transaction can only come from another instance.
    pub fn outlived_its_timeout(&self) -> bool {
        self.open && self.began.elapsed() >= self.timeout
    }

    /// When the open (or last) transaction began.
    pub fn began(&self) -> Instant {
        self.began
    }

    /// Counts transactions begun: deliveries tagged with an older epoch belong to a finished one.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Begins a transaction unless one is open (a local call: it does not block).
    pub fn begin(&mut self) -> Result<(), Failure> {
        if self.open {
            return Ok(());
        }
        self.producer.begin_transaction().map_err(|error| match Failure::class(&error) {
            Class::Fatal => Failure::Fatal(error),
            _ => Failure::Abort(error),
        })?;
        self.open = true;
        self.began = Instant::now();
        self.epoch += 1;
        Ok(())
    }

    /// Adds the consumer positions `offsets` to the open transaction and commits it. This
    /// flushes every record sent in it first. On error the transaction stays open: abort it.
    pub async fn commit(&mut self, offsets: TopicPartitionList, group: ConsumerGroupMetadata) -> Result<(), Failure> {
        let timeout = self.timeout;
        if offsets.count() > 0 {
            blocking(&self.producer, "send_offsets_to_transaction", timeout, move |p| {
                p.send_offsets_to_transaction(&offsets, &group, timeout)
            })
            .await?;
        }
        blocking(&self.producer, "commit_transaction", timeout, move |p| p.commit_transaction(timeout)).await?;
        self.open = false;
        Ok(())
    }

    /// Aborts the open transaction, if any: its records are never seen by `read_committed`
    /// consumers.
    pub async fn abort(&mut self) -> Result<(), Failure> {
        if !self.open {
            return Ok(());
        }
        let timeout = self.timeout;
        let result = blocking(&self.producer, "abort_transaction", timeout, move |p| p.abort_transaction(timeout)).await;
        if result.is_ok() {
            self.open = false;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode as Code;

    #[test]
    fn fencing_is_recognised_in_every_form_librdkafka_reports_it() {
        for code in [Code::Fenced, Code::ProducerFenced, Code::InvalidProducerEpoch] {
            assert!(is_fenced(&KafkaError::MessageProduction(code)), "{code:?}");
        }
        for code in [Code::QueueFull, Code::MessageTimedOut, Code::Fatal] {
            assert!(!is_fenced(&KafkaError::MessageProduction(code)), "{code:?}");
        }
    }

    /// The guard against librdkafka calls that never return (its issue #5456): a call blocked
    /// past the limit is reported as hung while it still blocks, and the caller goes on.
    #[tokio::test]
    async fn a_call_that_does_not_return_is_given_up_as_hung() {
        use rdkafka::config::ClientConfig;
        use rdkafka::producer::DefaultProducerContext;
        // No broker is needed: the call below never reaches librdkafka.
        let producer: ThreadedProducer<DefaultProducerContext> =
            ClientConfig::new().set("bootstrap.servers", "127.0.0.1:1").create().expect("producer");
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = std::sync::Mutex::new(wait);
        let started = Instant::now();
        let outcome = blocking_within(&producer, "stuck_call", Duration::from_millis(300), move |_| {
            let _ = wait.lock().unwrap().recv();
            Ok(())
        })
        .await;
        assert!(matches!(outcome, Err(Failure::Hung { call: "stuck_call", .. })), "{outcome:?}");
        assert!(!outcome.as_ref().unwrap_err().is_fenced());
        assert!(started.elapsed() < Duration::from_secs(10), "given up at the limit, not when the call returned");
        assert!(outcome.unwrap_err().to_string().contains("stuck_call"));
        // Let the blocked thread go, so that the test runtime can shut down.
        release.send(()).unwrap();
    }

    #[tokio::test]
    async fn a_call_that_returns_in_time_gives_its_outcome() {
        use rdkafka::config::ClientConfig;
        use rdkafka::producer::DefaultProducerContext;
        let producer: ThreadedProducer<DefaultProducerContext> =
            ClientConfig::new().set("bootstrap.servers", "127.0.0.1:1").create().expect("producer");
        let ok = blocking_within(&producer, "quick", Duration::from_secs(30), |_| Ok(())).await;
        assert!(ok.is_ok(), "{ok:?}");
        let failed = blocking_within(&producer, "quick", Duration::from_secs(30), |_| Err(KafkaError::Canceled)).await;
        assert!(matches!(failed, Err(Failure::Abort(KafkaError::Canceled))), "{failed:?}");
    }

    /// Only an open transaction older than its timeout can have been fenced by the broker itself.
    #[test]
    fn a_transaction_outlives_its_timeout_only_while_open_and_older_than_it() {
        use rdkafka::config::ClientConfig;
        use rdkafka::producer::DefaultProducerContext;
        let producer: ThreadedProducer<DefaultProducerContext> =
            ClientConfig::new().set("bootstrap.servers", "127.0.0.1:1").create().expect("producer");
        let timeout = Duration::from_secs(60);
        let mut txn = Transactions { producer, timeout, open: true, began: Instant::now(), epoch: 1 };
        assert!(!txn.outlived_its_timeout(), "just begun");
        txn.began = Instant::now() - Duration::from_secs(61);
        assert!(txn.outlived_its_timeout());
        txn.open = false;
        assert!(!txn.outlived_its_timeout(), "none open");
    }

    #[test]
    fn errors_without_transactional_flags_abort() {
        // Client-side failures carry no retriable/abortable/fatal flags: abort and rewind is safe.
        assert_eq!(Failure::class(&KafkaError::Canceled), Class::Abort);
        assert_eq!(Failure::class(&KafkaError::MessageProduction(Code::MessageTimedOut)), Class::Abort);
    }
}
