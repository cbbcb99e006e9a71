//! The group watchdog: notices a consumer that stays out of its group while the cluster is up.
//!
//! librdkafka (2.12) sometimes never rejoins its group after the session expired during a broker
//! outage (its issue #2944): the process stays up, holds no partitions, and reads nothing. The
//! watchdog reads the consumer's statistics; once the group membership has not been steady for
//! `kafka.group_stuck_timeout_ms`, the run loop asks the cluster for its metadata. If a broker
//! answers, the consumer is stuck, and the run stops with
//! [`crate::kafka::run::RunError::GroupStuck`] so that the supervisor starts a fresh process; if
//! none does, it is an outage, and the clock starts again (`docs/operations.md`, "Broker outages").

use std::time::{Duration, Instant};

/// What the watchdog reads from one statistics report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSample<'a> {
    /// librdkafka's group handler state (`up` once the coordinator is known).
    pub state: &'a str,
    /// librdkafka's join state: `steady` when the member holds its assignment, or none.
    pub join_state: &'a str,
}

/// The consumer has been out of a steady membership for too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// How long, up to the report that tripped the watchdog.
    pub for_: Duration,
    /// The group handler state then.
    pub state: String,
    /// The join state then.
    pub join_state: String,
}

/// Tracks how long the membership has been unsteady.
#[derive(Debug)]
pub struct GroupWatch {
    timeout: Option<Duration>,
    since: Option<Instant>,
}

impl GroupWatch {
    /// A watchdog that trips after `timeout`; `None` never trips.
    pub fn new(timeout: Option<Duration>) -> Self {
        GroupWatch { timeout, since: None }
    }

    /// Takes one report. A steady membership stops the clock; otherwise the clock runs from the
    /// first unsteady report, and `Some` is returned once it reaches the timeout.
    pub fn observe(&mut self, sample: GroupSample<'_>, now: Instant) -> Option<Stuck> {
        let timeout = self.timeout?;
        if sample.join_state == "steady" {
            self.since = None;
            return None;
        }
        let since = *self.since.get_or_insert(now);
        let for_ = now.saturating_duration_since(since);
        (for_ >= timeout).then(|| Stuck { for_, state: sample.state.to_owned(), join_state: sample.join_state.to_owned() })
    }

    /// Starts the clock again at `now`: no broker answered, so this is an outage, which the
    /// consumer cannot end by itself.
    pub fn restart(&mut self, now: Instant) {
        if self.since.is_some() {
            self.since = Some(now);
        }
    }
}

/// The watchdog's view of a librdkafka statistics report; `None` for a client without a group.
pub fn sample(statistics: &rdkafka::Statistics) -> Option<GroupSample<'_>> {
    let group = statistics.cgrp.as_ref()?;
    Some(GroupSample { state: &group.state, join_state: &group.join_state })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEADY: GroupSample = GroupSample { state: "up", join_state: "steady" };
    const JOINING: GroupSample = GroupSample { state: "up", join_state: "wait-join" };

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn trips_after_the_timeout_of_unsteady_membership() {
        let t = Instant::now();
        let mut watch = GroupWatch::new(Some(Duration::from_secs(60)));
        assert_eq!(watch.observe(STEADY, t), None);
        assert_eq!(watch.observe(JOINING, at(t, 5)), None);
        assert_eq!(watch.observe(JOINING, at(t, 64)), None, "59 s unsteady");
        let stuck = watch.observe(JOINING, at(t, 65)).expect("60 s unsteady");
        assert_eq!(stuck, Stuck { for_: Duration::from_secs(60), state: "up".into(), join_state: "wait-join".into() });
    }

    #[test]
    fn a_steady_report_stops_the_clock_and_an_outage_restarts_it() {
        let t = Instant::now();
        let mut watch = GroupWatch::new(Some(Duration::from_secs(60)));
        assert_eq!(watch.observe(JOINING, t), None);
        assert_eq!(watch.observe(STEADY, at(t, 50)), None);
        assert_eq!(watch.observe(JOINING, at(t, 100)), None);
        assert_eq!(watch.observe(JOINING, at(t, 159)), None, "59 s unsteady since the steady report");
        assert!(watch.observe(JOINING, at(t, 160)).is_some());
        watch.restart(at(t, 161));
        assert_eq!(watch.observe(JOINING, at(t, 220)), None, "no broker answered at 161 s: a new minute from then");
        assert!(watch.observe(JOINING, at(t, 221)).is_some());
        watch.observe(STEADY, at(t, 222));
        watch.restart(at(t, 223));
        assert_eq!(watch.observe(STEADY, at(t, 1_000)), None, "a restart does not start a stopped clock");
    }

    #[test]
    fn without_a_timeout_it_never_trips() {
        let t = Instant::now();
        let mut watch = GroupWatch::new(None);
        assert_eq!(watch.observe(JOINING, t), None);
        assert_eq!(watch.observe(JOINING, at(t, 1_000_000)), None);
    }

    #[test]
    fn reads_the_group_from_librdkafka_statistics() {
        let report = |join_state: &str| {
            serde_json::from_value::<rdkafka::Statistics>(serde_json::json!({
                "name": "c", "client_id": "c", "type": "consumer", "ts": 0, "time": 0, "age": 0, "replyq": 0,
                "msg_cnt": 0, "msg_size": 0, "msg_max": 0, "msg_size_max": 0, "tx": 0, "tx_bytes": 0, "rx": 0,
                "rx_bytes": 0, "txmsgs": 0, "txmsg_bytes": 0, "rxmsgs": 0, "rxmsg_bytes": 0, "simple_cnt": 0,
                "metadata_cache_cnt": 0, "topics": {},
                "brokers": {},
                "cgrp": { "state": "up", "stateage": 1, "join_state": join_state, "rebalance_age": 1,
                          "rebalance_cnt": 1, "rebalance_reason": "", "assignment_size": 0 },
            }))
            .expect("a statistics report")
        };
        let joining = report("wait-join");
        assert_eq!(sample(&joining), Some(GroupSample { state: "up", join_state: "wait-join" }));
        let mut producer = report("steady");
        producer.cgrp = None;
        assert_eq!(sample(&producer), None);
    }
}
