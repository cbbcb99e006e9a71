//! Exactly-once mode: committing transactions, and recovering from a failed one (abort or a new
//! producer, then a rewind to the committed offsets), including while the broker is unreachable.

use super::*;

impl Runner {
    /// Exactly-once: adds the positions processed so far to the open transaction and commits it.
    /// A revoke since the last look, a failed delivery or a failed commit aborts it instead.
    pub(super) async fn commit_transaction(&mut self) -> Result<(), RunError> {
        if self.rewind_if_revoked().await? {
            return Ok(());
        }
        self.save_event_times();
        let eos = self.eos.as_mut().expect("exactly-once state");
        let changelog = eos.pending.drain();
        if !changelog.is_empty() {
            self.send_now(changelog, None).await?;
        }
        let eos = self.eos.as_ref().expect("exactly-once state");
        if !eos.txn.is_open() {
            return Ok(());
        }
        while !self.in_flight.is_empty() {
            self.next_delivery().await?;
        }
        let eos = self.eos.as_mut().expect("exactly-once state");
        if eos.failed {
            self.start_failing();
            return self.rewind("a delivery of the transaction failed").await;
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in &eos.positions {
            // Adding a valid topic, partition and offset cannot fail.
            let _ = offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        let Some(group) = self.consumer.group_metadata() else {
            return self.rewind("the consumer has no group metadata").await;
        };
        let started = std::time::Instant::now();
        match eos.txn.commit(offsets, group).await {
            Ok(()) => {
                self.end_failing();
                metrics::counter!("auditflow_transactions_total", "outcome" => "committed").increment(1);
                metrics::histogram!("auditflow_transaction_commit_seconds").record(started.elapsed().as_secs_f64());
                Ok(())
            }
            Err(failure) => self.recover(failure).await,
        }
    }

    /// Exactly-once: puts the highest event time of each partition where it moved among the
    /// transaction's changelog records, so that a restart resumes its watermark. Only with a
    /// transaction open: an idle commit tick writes nothing.
    pub(super) fn save_event_times(&mut self) {
        let Some(eos) = self.eos.as_mut() else { return };
        if !eos.txn.is_open() {
            return;
        }
        for tp in eos.positions.keys() {
            let Some(max_ts) = self.pipeline.max_event_time(&tp.0, tp.1) else { continue };
            if eos.event_times.get(tp) != Some(&max_ts) {
                eos.event_times.insert(tp.clone(), max_ts);
                eos.pending.push(crate::pipeline::changelog::event_time(&eos.changelog, &tp.0, tp.1, max_ts));
            }
        }
    }

    /// Exactly-once: after a revoke, aborts the open transaction and rewinds (the revoked
    /// partitions' records are the new owner's now). Returns whether it rewound.
    pub(super) async fn rewind_if_revoked(&mut self) -> Result<bool, RunError> {
        let Some(eos) = self.eos.as_ref() else { return Ok(false) };
        if !eos.rewind.swap(false, Ordering::SeqCst) {
            return Ok(false);
        }
        self.rewind("partitions were revoked").await?;
        Ok(true)
    }

    /// Handles a failed transactional call as librdkafka prescribes: abort (or, when fatal, a
    /// new producer), then rewind.
    pub(super) async fn recover(&mut self, failure: Failure) -> Result<(), RunError> {
        warn!(message = "Transaction failed; aborting and rewinding to the committed offsets.", %failure);
        self.start_failing();
        if failure.is_fenced() {
            let eos = self.eos.as_ref().expect("exactly-once state");
            if !eos.timed_out_by_the_broker() {
                return Err(RunError::Fenced { transactional_id: eos.transactional_id.clone() });
            }
            warn!(
                message = "The transaction outlived transaction_timeout_ms, so the broker aborted it and fenced this producer; replacing the producer.",
                timeout_ms = eos.timeout.as_millis() as u64
            );
        }
        if failure.is_fenced() || matches!(failure, Failure::Fatal(_) | Failure::Hung { .. }) {
            self.new_producer().await?;
        }
        self.rewind("the transaction failed").await
    }

    /// Creates and initialises a new transactional producer (fencing the old one). While the
    /// broker is unreachable (the initialisation times out or hangs) it tries again, for up to
    /// [`OUTAGE_RETRY_FOR`].
    pub(super) async fn new_producer(&mut self) -> Result<(), RunError> {
        let mut retry = OutageRetry::new();
        loop {
            let eos = self.eos.as_mut().expect("exactly-once state");
            let producer: Producer = eos
                .producer_settings
                .create_with_context(DeliveryContext::new(eos.errors.clone(), self.report_sender.clone()))
                .map_err(|source| RunError::Kafka { context: "creating the producer", source })?;
            match Transactions::init(producer.clone(), eos.timeout).await {
                Ok(txn) => {
                    eos.txn = txn;
                    self.producer = producer;
                    metrics::counter!("auditflow_producer_restarts_total").increment(1);
                    return Ok(());
                }
                Err(failure) if failure.is_fenced() => return Err(RunError::Fenced { transactional_id: eos.transactional_id.clone() }),
                Err(failure @ (Failure::Abort(_) | Failure::Hung { .. })) => {
                    if !retry.wait("initialising a new transactional producer", &failure).await {
                        return Err(RunError::Transaction { detail: failure.to_string() });
                    }
                }
                Err(failure) => return Err(RunError::Transaction { detail: failure.to_string() }),
            }
        }
    }

    /// Aborts the open transaction, forgets everything processed since the last commit (windows,
    /// backlog, deliveries) and seeks every assigned partition back to its committed offset.
    pub(super) async fn rewind(&mut self, why: &str) -> Result<(), RunError> {
        let eos = self.eos.as_mut().expect("exactly-once state");
        let outlived = eos.timed_out_by_the_broker();
        if let Err(failure) = eos.txn.abort().await {
            // See `recover`: a transaction older than its timeout was fenced by the broker.
            if failure.is_fenced() && !outlived {
                return Err(RunError::Fenced { transactional_id: eos.transactional_id.clone() });
            }
            warn!(message = "Abort failed; replacing the producer.", %failure);
            self.new_producer().await?;
        }
        metrics::counter!("auditflow_transactions_total", "outcome" => "aborted").increment(1);
        self.in_flight.clear();
        self.resends.clear();
        self.backlog.clear();
        self.blocked = None;
        let _ = self.pipeline.flush_windows();
        let eos = self.eos.as_mut().expect("exactly-once state");
        eos.positions.clear();
        eos.pending.clear();
        eos.event_times.clear();
        eos.restored.clear();
        eos.failed = false;
        eos.assigned.store(true, Ordering::SeqCst);
        let timeout = eos.timeout;
        // The committed offsets come from the group coordinator: while the broker is unreachable
        // (frozen, restarting) the fetch times out. Nothing is read meanwhile, so trying again
        // is safe; the state above is already forgotten.
        let mut retry = OutageRetry::new();
        loop {
            match seek_to_committed(self.consumer.clone(), timeout).await {
                Ok(partitions) => {
                    info!(message = "Transaction aborted; rewound to the committed offsets.", why, partitions);
                    return Ok(());
                }
                Err(error) => {
                    if !retry.wait("rewinding to the committed offsets", &error).await {
                        return Err(RunError::Kafka { context: "rewinding to the committed offsets", source: error });
                    }
                }
            }
        }
    }

    /// Exactly-once: after an assignment (or a rewind), restores the windows of every assigned
    /// partition not restored yet, so that windows open at a crash close even if no new record
    /// comes.
    pub(super) async fn restore_assigned(&mut self) -> Result<(), RunError> {
        let Some(eos) = self.eos.as_ref() else { return Ok(()) };
        if !eos.assigned.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        let assignment = tokio::task::spawn_blocking(move || consumer.assignment())
            .await
            .expect("assignment task")
            .map_err(|source| RunError::Kafka { context: "reading the assignment", source })?;
        let mut restored = 0;
        for elem in assignment.elements() {
            let tp: TopicPartition = (Arc::from(elem.topic()), elem.partition());
            if !self.eos.as_ref().expect("exactly-once state").restored.contains(&tp) {
                self.restore(&tp).await?;
                restored += 1;
            }
        }
        let closed = self.pipeline.finish_restore();
        info!(message = "Assigned partitions restored.", partitions = restored, assigned = assignment.count(), closed = closed.len());
        self.send_all(closed, None).await
    }

    /// Exactly-once: rebuilds the open windows of `tp` from the changelog before its first record.
    pub(super) async fn restore(&mut self, tp: &TopicPartition) -> Result<(), RunError> {
        let eos = self.eos.as_ref().expect("exactly-once state");
        let (kafka, changelog, timeout) = (eos.kafka.clone(), eos.changelog.clone(), eos.timeout);
        let (topic, partition) = tp.clone();
        let saved = tokio::task::spawn_blocking(move || crate::kafka::restore::read(&kafka, &changelog, &topic, partition, timeout))
            .await
            .expect("restore task")
            .map_err(|source| RunError::Kafka { context: "reading the window changelog", source })?;
        let records = saved.records;
        let now = chrono::Utc::now().timestamp_millis();
        let mut closed = Vec::new();
        for record in &records {
            if let Some(schema_id) = self.pipeline.schema_needed(record) {
                let mut backoff = REGISTRY_BACKOFF_MIN;
                while !self.load_schema(schema_id).await {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(REGISTRY_BACKOFF_MAX);
                }
            }
            closed.extend(self.pipeline.restore(record, now));
        }
        if let Some(max_ts) = saved.max_event_time {
            self.pipeline.restore_event_time(&tp.0, tp.1, max_ts);
        }
        info!(
            message = "Windows restored from the changelog.",
            topic = %tp.0,
            partition = tp.1,
            events = records.len(),
            max_event_time = saved.max_event_time.map(crate::pipeline::window::rfc3339)
        );
        self.eos.as_mut().expect("exactly-once state").restored.insert(tp.clone());
        self.send_all(closed, None).await
    }
}

/// Seeks every assigned partition back to its committed offset (the beginning where none is
/// committed); returns how many partitions it seeked.
pub(super) async fn seek_to_committed(consumer: Arc<StreamConsumer<RunContext>>, timeout: Duration) -> KafkaResult<usize> {
    tokio::task::spawn_blocking(move || -> KafkaResult<usize> {
        let assignment = consumer.assignment()?;
        let mut committed = consumer.committed_offsets(assignment, timeout)?;
        let uncommitted: Vec<(String, i32)> = committed
            .elements()
            .iter()
            .filter(|e| !matches!(e.offset(), Offset::Offset(_)))
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for (topic, partition) in uncommitted {
            committed.set_partition_offset(&topic, partition, Offset::Beginning)?;
        }
        let count = committed.count();
        if count > 0 {
            consumer.seek_partitions(committed, timeout)?;
        }
        Ok(count)
    })
    .await
    .expect("seek task")
}

/// How long exactly-once recovery (a new producer, the rewind) keeps trying while the broker is
/// unreachable before the run stops with an error for its supervisor.
pub(super) const OUTAGE_RETRY_FOR: Duration = Duration::from_secs(300);

/// Spaced retries of a recovery step while the broker is unreachable: 1 s, doubling up to 10 s,
/// for up to [`OUTAGE_RETRY_FOR`].
pub(super) struct OutageRetry {
    started: tokio::time::Instant,
    pause: Duration,
    for_: Duration,
}

impl OutageRetry {
    pub(super) fn new() -> Self {
        Self::for_(OUTAGE_RETRY_FOR)
    }

    pub(super) fn for_(for_: Duration) -> Self {
        OutageRetry { started: tokio::time::Instant::now(), pause: Duration::from_secs(1), for_ }
    }

    /// Logs the failure of `step` and waits before the next try; false when the time is up.
    pub(super) async fn wait(&mut self, step: &'static str, error: &dyn std::fmt::Display) -> bool {
        if self.started.elapsed() + self.pause > self.for_ {
            return false;
        }
        warn!(message = "Recovery step failed; trying again.", step, %error, retry_in_ms = self.pause.as_millis() as u64);
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(10));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recovery after an outage tries again 1, 2, 4, 8 s apart (then every 10 s) and gives up
    /// before a pause would pass its time.
    #[tokio::test(start_paused = true)]
    async fn outage_retries_back_off_and_stop_when_the_time_is_up() {
        let started = tokio::time::Instant::now();
        let mut retry = OutageRetry::for_(Duration::from_secs(40));
        let mut tries = 0;
        while retry.wait("a step", &"broker unreachable").await {
            tries += 1;
        }
        // 1 + 2 + 4 + 8 + 10 + 10 = 35; another 10 s would pass 40.
        assert_eq!(tries, 6);
        assert_eq!(started.elapsed(), Duration::from_secs(35));
        assert_eq!(OutageRetry::new().for_, OUTAGE_RETRY_FOR);
    }
}
