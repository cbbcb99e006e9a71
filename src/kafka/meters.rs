//! Metric handles of the run loop's hot path, registered once: looking a metric up by name and
//! labels on every record and every delivery cost more than the rest of the bookkeeping.

use std::collections::HashMap;
use std::sync::Arc;

use metrics::{Counter, Histogram};

/// The handles of one output topic, shared by its deliveries in flight.
pub struct OutputTopic {
    /// The topic name, for logs.
    pub name: String,
    /// `auditflow_records_produced_total{topic}`.
    pub produced: Counter,
    /// `auditflow_delivery_retries_total{topic}`.
    pub retries: Counter,
}

/// Cached handles; create it after the recorder is installed.
pub struct Meters {
    /// `auditflow_process_seconds`.
    pub process: Histogram,
    /// `auditflow_produce_seconds`.
    pub produce: Histogram,
    received: HashMap<String, Counter>,
    outputs: HashMap<String, Arc<OutputTopic>>,
}

impl Meters {
    /// Registers the unlabelled handles.
    pub fn new() -> Self {
        Meters {
            process: metrics::histogram!("auditflow_process_seconds"),
            produce: metrics::histogram!("auditflow_produce_seconds"),
            received: HashMap::new(),
            outputs: HashMap::new(),
        }
    }

    /// `auditflow_records_received_total{topic}`.
    pub fn received(&mut self, topic: &str) -> &Counter {
        if !self.received.contains_key(topic) {
            self.received.insert(topic.to_owned(), metrics::counter!("auditflow_records_received_total", "topic" => topic.to_owned()));
        }
        &self.received[topic]
    }

    /// The handles of output topic `topic`.
    pub fn output(&mut self, topic: &str) -> Arc<OutputTopic> {
        if let Some(handles) = self.outputs.get(topic) {
            return handles.clone();
        }
        let handles = Arc::new(OutputTopic {
            name: topic.to_owned(),
            produced: metrics::counter!("auditflow_records_produced_total", "topic" => topic.to_owned()),
            retries: metrics::counter!("auditflow_delivery_retries_total", "topic" => topic.to_owned()),
        });
        self.outputs.insert(topic.to_owned(), handles.clone());
        handles
    }
}

impl Default for Meters {
    fn default() -> Self {
        Meters::new()
    }
}
