//! Outputs in flight and their delivery reports. Every send carries a numeric id; the
//! producer's delivery callback puts `(id, outcome)` on a channel the run loop reads in bursts,
//! and the id finds what the output holds back in a slab. This replaces a future, a boxed
//! one-shot channel and a task node per output (rdkafka's `FutureProducer`).

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use tokio::sync::mpsc;

use super::run::ErrorContext;

/// A delivery report: the id given at send, and the outcome (the message, for a resend, when
/// it failed; boxed, so that a report is two words while it waits on the channel).
pub type Report = (usize, Result<(), Box<(KafkaError, OwnedMessage)>>);

/// The producer context: reports errors like [`ErrorContext`], every delivery on a channel, and
/// the partition counts of the topics it writes, from its statistics.
pub struct DeliveryContext {
    /// Error reporting and the last authentication and TLS failures.
    errors: ErrorContext,
    reports: mpsc::UnboundedSender<Report>,
    /// Partitions of each topic in the producer's metadata at its last statistics, which
    /// librdkafka refreshes every `topic.metadata.refresh.interval.ms` (5 min by default).
    partitions: Mutex<HashMap<String, usize>>,
}

impl DeliveryContext {
    /// A context sending reports to `reports`.
    pub fn new(errors: ErrorContext, reports: mpsc::UnboundedSender<Report>) -> Self {
        DeliveryContext { errors, reports, partitions: Mutex::default() }
    }

    /// The partition count of each topic the producer knows, as of its last statistics
    /// (`statistics.interval.ms`); empty before the first.
    pub fn partition_counts(&self) -> HashMap<String, usize> {
        self.partitions.lock().expect("partitions lock").clone()
    }
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error(error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let counts = statistics
            .topics
            .iter()
            // librdkafka lists the unassigned-partition queue as partition -1.
            .map(|(name, topic)| (name.clone(), topic.partitions.keys().filter(|p| **p >= 0).count()))
            .collect();
        *self.partitions.lock().expect("partitions lock") = counts;
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((error, message)) => Err(Box::new((error.clone(), message.detach()))),
        };
        // Closed only when the run loop is gone, and then nobody waits for the report.
        let _ = self.reports.send((id, outcome));
    }
}

/// Values by id, for the outputs in flight. An id is a slot and the slot's generation, so a
/// report that arrives after [`InFlight::clear`] (the producer reports purged messages late)
/// finds nothing instead of another output's entry.
#[derive(Debug)]
pub struct InFlight<T> {
    /// Generation and value of each slot.
    slots: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
    live: usize,
}

// An id holds a 32-bit slot and a 32-bit generation.
const _: () = assert!(usize::BITS == 64, "auditflow needs a 64-bit target");

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        InFlight { slots: Vec::new(), free: Vec::new(), live: 0 }
    }
}

impl<T> InFlight<T> {
    /// Stores `value`; returns its id.
    pub fn insert(&mut self, value: T) -> usize {
        self.live += 1;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push((0, None));
                (self.slots.len() - 1) as u32
            }
        };
        let entry = &mut self.slots[slot as usize];
        entry.1 = Some(value);
        ((entry.0 as usize) << 32) | slot as usize
    }

    /// Takes the value of `id`; `None` when it was taken or cleared already.
    pub fn remove(&mut self, id: usize) -> Option<T> {
        let (slot, generation) = (id as u32, (id >> 32) as u32);
        let entry = self.slots.get_mut(slot as usize)?;
        if entry.0 != generation || entry.1.is_none() {
            return None;
        }
        entry.0 = entry.0.wrapping_add(1);
        self.free.push(slot);
        self.live -= 1;
        entry.1.take()
    }

    /// Forgets every value; reports for them find nothing from now on.
    pub fn clear(&mut self) {
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            if entry.1.take().is_some() {
                entry.0 = entry.0.wrapping_add(1);
                self.free.push(slot as u32);
            }
        }
        self.live = 0;
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_find_their_value_once() {
        let mut in_flight = InFlight::default();
        let a = in_flight.insert("a");
        let b = in_flight.insert("b");
        assert_eq!(in_flight.len(), 2);
        assert_eq!(in_flight.remove(b), Some("b"));
        assert_eq!(in_flight.remove(b), None, "taken already");
        // The slot is reused under a new generation: the old id still finds nothing.
        let c = in_flight.insert("c");
        assert_ne!(b, c);
        assert_eq!(in_flight.remove(b), None);
        assert_eq!((in_flight.remove(a), in_flight.remove(c)), (Some("a"), Some("c")));
        assert!(in_flight.is_empty());
    }

    #[test]
    fn cleared_ids_find_nothing_even_after_their_slot_is_reused() {
        let mut in_flight = InFlight::default();
        let ids: Vec<usize> = (0..4).map(|i| in_flight.insert(i)).collect();
        in_flight.clear();
        assert!(in_flight.is_empty());
        let fresh: Vec<usize> = (10..14).map(|i| in_flight.insert(i)).collect();
        for id in &ids {
            assert_eq!(in_flight.remove(*id), None);
        }
        let values: Vec<i32> = fresh.iter().map(|id| in_flight.remove(*id).unwrap()).collect();
        assert_eq!(values, vec![10, 11, 12, 13]);
    }

    #[test]
    fn generations_wrap_without_confusing_ids() {
        let mut in_flight = InFlight::default();
        in_flight.slots.push((u32::MAX, None));
        in_flight.free.push(0);
        let old = in_flight.insert(1);
        assert_eq!(in_flight.remove(old), Some(1));
        let new = in_flight.insert(2);
        assert_ne!(old, new);
        assert_eq!((in_flight.remove(old), in_flight.remove(new)), (None, Some(2)));
    }
}
