//! Telemetry endpoints of `auditflow run`: Prometheus metrics at `/metrics`, liveness at
//! `/health`, readiness at `/ready` (`docs/operations.md` lists every metric).
//!
//! The run loop and the Kafka client callbacks report into [`Health`]; the endpoint only reads it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// A run loop that has not ticked for this long is reported dead by `/health`.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// Buckets (seconds) of the latency histograms: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Liveness and readiness, shared by the run loop, the consumer context and the endpoint.
#[derive(Debug)]
pub struct Health {
    heartbeat_ms: AtomicI64,
    joined: AtomicBool,
    assigned: AtomicI64,
    producer_failed: AtomicBool,
    group_stuck: AtomicBool,
    /// When outputs began failing without a break (epoch ms), 0 while they go through.
    failing_since_ms: AtomicI64,
    /// How long a failing spell lasts before `/ready` says so (ms); 0: never.
    failing_unready_ms: AtomicI64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            heartbeat_ms: AtomicI64::new(now_ms()),
            joined: AtomicBool::new(false),
            assigned: AtomicI64::new(0),
            producer_failed: AtomicBool::new(false),
            group_stuck: AtomicBool::new(false),
            failing_since_ms: AtomicI64::new(0),
            failing_unready_ms: AtomicI64::new(0),
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Health {
    /// The run loop is alive.
    pub fn beat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The consumer joined its group and holds `partitions` partitions.
    pub fn assigned(&self, partitions: usize) {
        self.joined.store(true, Ordering::Relaxed);
        self.assigned.store(partitions as i64, Ordering::Relaxed);
        metrics::gauge!("auditflow_assigned_partitions").set(partitions as f64);
    }

    /// The producer hit a fatal error.
    pub fn producer_failed(&self) {
        self.producer_failed.store(true, Ordering::Relaxed);
    }

    /// The consumer is stuck outside its group (the group watchdog tripped); the run stops.
    pub fn group_stuck(&self) {
        self.group_stuck.store(true, Ordering::Relaxed);
    }

    /// `/ready` answers 503 once outputs have been failing for `after` (zero: never).
    pub fn unready_when_failing_for(&self, after: Duration) {
        self.failing_unready_ms.store(after.as_millis() as i64, Ordering::Relaxed);
    }

    /// Outputs have been failing without a break since `since` (epoch ms), or go through (`None`).
    pub fn failing_since(&self, since: Option<i64>) {
        self.failing_since_ms.store(since.unwrap_or(0), Ordering::Relaxed);
    }

    /// `Ok` while the process is alive and useful, else why not.
    pub fn live(&self) -> Result<(), &'static str> {
        if self.group_stuck.load(Ordering::Relaxed) {
            return Err("consumer stuck outside its group");
        }
        if now_ms() - self.heartbeat_ms.load(Ordering::Relaxed) >= STALL_AFTER.as_millis() as i64 {
            return Err("run loop stalled");
        }
        Ok(())
    }

    /// `Ok` when ready to process, else why not.
    pub fn ready(&self) -> Result<(), &'static str> {
        self.live()?;
        if self.producer_failed.load(Ordering::Relaxed) {
            return Err("producer failed");
        }
        let (since, after) = (self.failing_since_ms.load(Ordering::Relaxed), self.failing_unready_ms.load(Ordering::Relaxed));
        if since > 0 && after > 0 && now_ms() - since >= after {
            return Err("outputs failing to be delivered");
        }
        if !self.joined.load(Ordering::Relaxed) {
            return Err("consumer group not joined yet");
        }
        Ok(())
    }
}

/// Installs the Prometheus recorder for the `metrics` facade. Call once, before any metric.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS).map_err(|error| error.to_string())?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|error| error.to_string())?;
    Ok(handle)
}

/// Binds `listen` and serves the endpoints until the task is dropped; returns the bound address.
pub async fn serve(listen: &str, handle: PrometheusHandle, health: Arc<Health>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (handle, health) = (handle.clone(), health.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = respond(request.uri().path(), &handle, &health);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(addr)
}

fn respond(path: &str, handle: &PrometheusHandle, health: &Health) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => (StatusCode::OK, handle.render()),
        "/health" => match health.live() {
            Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        "/ready" => match health.ready() {
            Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        _ => (StatusCode::NOT_FOUND, "not found: try /metrics, /health or /ready\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_group_fails_both_health_and_readiness() {
        let health = Health::default();
        assert_eq!(health.ready(), Err("consumer group not joined yet"));
        health.assigned(2);
        assert_eq!((health.live(), health.ready()), (Ok(()), Ok(())));
        health.group_stuck();
        assert_eq!(health.live(), Err("consumer stuck outside its group"));
        assert_eq!(health.ready(), Err("consumer stuck outside its group"));
    }

    #[test]
    fn failing_outputs_turn_readiness_off_only_after_the_set_time() {
        let health = Health::default();
        health.assigned(1);
        health.unready_when_failing_for(Duration::from_secs(60));
        let now = now_ms();
        health.failing_since(Some(now - 59_000));
        assert_eq!(health.ready(), Ok(()), "a spell shorter than the limit");
        health.failing_since(Some(now - 61_000));
        assert_eq!(health.ready(), Err("outputs failing to be delivered"));
        assert_eq!(health.live(), Ok(()), "liveness is not affected: a restart would not help");
        health.failing_since(None);
        assert_eq!(health.ready(), Ok(()));
        health.unready_when_failing_for(Duration::ZERO);
        health.failing_since(Some(now - 3_600_000));
        assert_eq!(health.ready(), Ok(()), "zero: never");
    }
}
