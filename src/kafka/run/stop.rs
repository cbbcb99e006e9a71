//! How a run stops: the graceful shutdown (flush windows, drain or commit, leave the group), the
//! exactly-once interruption, and the bounded release of the Kafka clients that ends every stop.

use super::*;

impl Runner {
    /// Stops consuming, waits for in-flight outputs up to `deadline`, commits, and closes.
    ///
    /// Without `leave_group` (the consumer is stuck outside its group, see [`group`]) nothing is
    /// committed and the consumer is not closed: a commit would be refused, and librdkafka's close
    /// can block for good in that state. Open windows are not flushed and an open transaction is
    /// aborted; the next process re-reads everything since the last commit.
    pub(super) async fn shutdown(&mut self, deadline: Duration, leave_group: bool) -> Result<(), RunError> {
        if !leave_group {
            if let Some(eos) = self.eos.as_mut() {
                if tokio::time::timeout(deadline, eos.txn.abort()).await.is_err() {
                    warn!(message = "Shutdown deadline reached before the transaction aborted; the broker aborts it.");
                }
            } else {
                let _ = self.drain_in_flight(deadline).await;
            }
            self.flush_producer().await;
            // Never dropped, so never closed (see above); the process is about to exit.
            std::mem::forget(self.consumer.clone());
            info!(message = "Stopped without committing; the next run re-reads from the last commit.");
            return Ok(());
        }
        let (open, _) = self.pipeline.window_stats();
        // Before the flush forgets them.
        self.save_event_times();
        let flushed = self.pipeline.flush_windows();
        if self.eos.is_some() {
            info!(message = "Shutting down: committing the open transaction.", windows_flushed = open);
            // Sending the flushed windows' outputs can wait for queue space, and the commit for the
            // broker (with a recovery behind it): the deadline bounds both.
            let commit = async {
                self.send_all(flushed, None).await?;
                self.commit_transaction().await
            };
            match tokio::time::timeout(deadline, commit).await {
                Ok(result) => result?,
                Err(_) => warn!(
                    message =
                        "Shutdown deadline reached before the transaction committed; it is aborted by the broker and re-read on restart."
                ),
            }
            return Ok(());
        }
        self.send_all(flushed, None).await?;
        self.tracker.lock().expect("tracker lock").refresh_caps(|_, _| None);
        info!(
            message = "Shutting down: draining in-flight outputs.",
            in_flight = self.in_flight.len(),
            backlog = self.backlog.len(),
            windows_flushed = open
        );
        if !self.drain_in_flight(deadline).await? {
            warn!(message = "Shutdown deadline reached with outputs in flight; they are re-read on restart.");
        }
        let last = self.tracker.lock().expect("tracker lock").all_commits();
        let consumer = self.consumer.clone();
        let committing = tokio::task::spawn_blocking(move || {
            // Right after a broker restart the coordinator may still be loading: try a few times.
            for attempt in 1..=FINAL_COMMIT_ATTEMPTS {
                if commit_list(&consumer, &last, CommitMode::Sync) || attempt == FINAL_COMMIT_ATTEMPTS {
                    break;
                }
                std::thread::sleep(RESEND_BACKOFF);
            }
            consumer.unsubscribe();
        });
        // librdkafka's synchronous commit waits for the coordinator without a limit: after a
        // broker outage it has not returned at all (a frozen broker, in this project's CI).
        let committed = tokio::time::timeout(STEP_WITHIN, committing).await.is_ok();
        if !committed {
            warn!(
                message = "The last offset commit did not finish in time; stopping without it. The next run re-reads from the last commit that went through.",
                within_secs = STEP_WITHIN.as_secs()
            );
            // Closing would wait for the same coordinator: leave the consumer to the exit.
            std::mem::forget(self.consumer.clone());
        }
        self.flush_producer().await;
        Ok(())
    }

    /// Exactly-once: stops after [`Ended::Interrupted`]. The interrupted step may have left a
    /// transactional call running, so the transaction is left alone: the broker aborts it after
    /// its timeout, or the next run's producer (same `transactional.id`) at once. Open windows
    /// are not flushed; the next run re-reads everything since the last commit.
    pub(super) fn stop_interrupted(&self, deadline: Duration) {
        warn!(
            message = "Stop requested while a step still waited on Kafka; stopping without committing. The open transaction is aborted and its records re-read on restart.",
            waited_ms = deadline.as_millis() as u64
        );
    }

    /// The last step of every stop, graceful or on an error: lets go of the Kafka clients without
    /// waiting on them for long, leaving the group unless the consumer was forgotten on purpose
    /// (then the broker drops the member after `session.timeout.ms`). Dropping a client can block
    /// (librdkafka's consumer close waits for the coordinator, a producer's teardown for its
    /// threads); a fenced zombie once did not exit within 90 s in CI.
    pub(super) async fn release(self) {
        let consumer = self.consumer.clone();
        // Everything but the consumer (the producers, the transaction state) on a blocking thread.
        let rest = tokio::task::spawn_blocking(move || drop(self));
        if tokio::time::timeout(STEP_WITHIN, rest).await.is_err() {
            warn!(message = "Releasing the producer did not finish in time; exiting without it.", within_secs = STEP_WITHIN.as_secs());
        }
        close_consumer(consumer, STEP_WITHIN).await;
    }

    /// Waits for every delivery in flight, up to `deadline`; false when the deadline came first.
    pub(super) async fn drain_in_flight(&mut self, deadline: Duration) -> Result<bool, RunError> {
        let drain = async {
            while !self.in_flight.is_empty() {
                self.next_delivery().await?;
            }
            Ok::<(), RunError>(())
        };
        match tokio::time::timeout(deadline, drain).await {
            Ok(result) => result.map(|()| true),
            Err(_) => Ok(false),
        }
    }

    /// Sends what the producer still queues, for up to 5 s.
    pub(super) async fn flush_producer(&self) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
    }
}

/// How long each last step of a graceful stop (the final commit, leaving the group) may take
/// before the stop goes on without it.
pub(super) const STEP_WITHIN: Duration = Duration::from_secs(10);

/// Unsubscribes and closes the consumer, which leaves its group, on a blocking thread:
/// librdkafka's close waits for the group coordinator and can block for good after an outage.
/// Past `within` the thread is left to the process's exit, and the broker drops the member after
/// `session.timeout.ms`.
pub(super) async fn close_consumer(consumer: Arc<StreamConsumer<RunContext>>, within: Duration) {
    // The last reference closes the consumer when dropped.
    let closing = tokio::task::spawn_blocking(move || {
        consumer.unsubscribe();
        drop(consumer)
    });
    if tokio::time::timeout(within, closing).await.is_err() {
        warn!(message = "Leaving the consumer group did not finish in time; stopping without it.", within_secs = within.as_secs());
    }
}
