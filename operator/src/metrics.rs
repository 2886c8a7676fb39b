//! Prometheus metrics of the operator, served on `/metrics` by [`crate::http`].
//!
//! - `eventconsumer_operator_reconciles_total`: reconciles run.
//! - `eventconsumer_operator_reconcile_errors_total{reason}`: reconciles that failed (API errors
//!   such as `ApplyDeployment`) or found a spec they could not carry out (`InvalidSpec`,
//!   `SecretNotFound`, ...).
//! - `eventconsumer_operator_reconcile_duration_seconds`: histogram of reconcile durations.
//! - `eventconsumer_operator_leader`: 1 while this replica holds the leader Lease.

use std::sync::atomic::AtomicI64;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Prefix of every metric name.
const PREFIX: &str = "eventconsumer_operator";
/// Buckets from 5 ms doubling to ~20 s: a reconcile is a few API calls, usually tens of ms;
/// the top buckets show a struggling API server.
const DURATION_BUCKET_START: f64 = 0.005;
const DURATION_BUCKET_FACTOR: f64 = 2.0;
const DURATION_BUCKET_COUNT: u16 = 12;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
}

/// The operator's metrics, cheap to clone (every metric is an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub reconciles: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub leader: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Counter::default(),
            errors: Family::default(),
            duration: Histogram::new(exponential_buckets(
                DURATION_BUCKET_START,
                DURATION_BUCKET_FACTOR,
                DURATION_BUCKET_COUNT,
            )),
            leader: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Creates the metrics and a registry that exposes them.
    pub fn registered() -> (Self, Registry) {
        let metrics = Self::default();
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "reconciles",
            "Reconciles of EventConsumers run",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed or found a spec they could not carry out, by reason",
            metrics.errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            metrics.duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            metrics.leader.clone(),
        );
        (metrics, registry)
    }

    /// Counts a reconcile and returns a guard that records its duration when dropped.
    pub fn reconcile_started(&self) -> DurationGuard<'_> {
        self.reconciles.inc();
        DurationGuard {
            histogram: &self.duration,
            start: Instant::now(),
        }
    }

    pub fn error(&self, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Errors counted so far with `reason`.
    pub fn errors_with_reason(&self, reason: &str) -> u64 {
        self.errors
            .get_or_create(&ErrorLabels {
                reason: reason.to_owned(),
            })
            .get()
    }
}

/// Observes the time since its creation into the duration histogram on drop.
pub struct DurationGuard<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for DurationGuard<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// The registry in Prometheus text format.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric() {
        let (metrics, registry) = Metrics::registered();
        drop(metrics.reconcile_started());
        metrics.error("ApplyDeployment");
        metrics.leader.set(1);
        let text = encode(&registry).unwrap();
        for name in [
            "eventconsumer_operator_reconciles_total 1",
            "eventconsumer_operator_reconcile_errors_total{reason=\"ApplyDeployment\"} 1",
            "eventconsumer_operator_reconcile_duration_seconds_count 1",
            "eventconsumer_operator_leader 1",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
