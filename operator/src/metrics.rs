//! Prometheus metrics of the operator, served on `/metrics` by [`crate::http`].
//!
//! - `eventconsumer_operator_reconciles_total`: reconciles run.
//! - `eventconsumer_operator_reconcile_errors_total{reason}`: reconciles that failed (API errors
//!   such as `ApplyDeployment`) or found a spec they could not carry out (`InvalidSpec`,
//!   `SecretNotFound`, ...).
//! - `eventconsumer_operator_reconcile_duration_seconds`: histogram of reconcile durations.
//! - `eventconsumer_operator_leader`: 1 while this replica holds the leader Lease.
//! - `eventconsumer_operator_consumer_lag{namespace,name}`: the group's lag (all partitions),
//!   `..._consumer_max_partition_lag`: the largest partition's, `..._consumer_dead_letters`:
//!   this consumer's records in its dead-letter topic, `..._autoscaler_desired_replicas`: the
//!   autoscaler's decision. Removed when the EventConsumer goes away.

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

/// Identifies one EventConsumer in the per-consumer series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub namespace: String,
    pub name: String,
}

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
    pub lag: Family<ConsumerLabels, Gauge<i64, AtomicI64>>,
    pub max_partition_lag: Family<ConsumerLabels, Gauge<i64, AtomicI64>>,
    pub dead_letters: Family<ConsumerLabels, Gauge<i64, AtomicI64>>,
    pub desired_replicas: Family<ConsumerLabels, Gauge<i64, AtomicI64>>,
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
            lag: Family::default(),
            max_partition_lag: Family::default(),
            dead_letters: Family::default(),
            desired_replicas: Family::default(),
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
        registry.register(
            "consumer_lag",
            "Messages in the consumer's source topics not yet committed by its group",
            metrics.lag.clone(),
        );
        registry.register(
            "consumer_max_partition_lag",
            "Lag of the consumer's most lagging partition",
            metrics.max_partition_lag.clone(),
        );
        registry.register(
            "consumer_dead_letters",
            "The consumer's records in its dead-letter topic",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "autoscaler_desired_replicas",
            "Worker pods the lag autoscaler wants for the consumer",
            metrics.desired_replicas.clone(),
        );
        (metrics, registry)
    }

    /// Sets the per-consumer series; a `None` value leaves its series out.
    pub fn observe_consumer(
        &self,
        namespace: &str,
        name: &str,
        lag: Option<i64>,
        max_partition_lag: i64,
        dead_letters: Option<i64>,
        desired_replicas: Option<i32>,
    ) {
        let labels = ConsumerLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        if let Some(lag) = lag {
            self.lag.get_or_create(&labels).set(lag);
            self.max_partition_lag
                .get_or_create(&labels)
                .set(max_partition_lag);
        }
        if let Some(dead_letters) = dead_letters {
            self.dead_letters.get_or_create(&labels).set(dead_letters);
        }
        match desired_replicas {
            Some(desired) => {
                self.desired_replicas
                    .get_or_create(&labels)
                    .set(i64::from(desired));
            }
            None => {
                self.desired_replicas.remove(&labels);
            }
        }
    }

    /// Removes the per-consumer series of a consumer that went away.
    pub fn forget_consumer(&self, namespace: &str, name: &str) {
        let labels = ConsumerLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.lag.remove(&labels);
        self.max_partition_lag.remove(&labels);
        self.dead_letters.remove(&labels);
        self.desired_replicas.remove(&labels);
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

    #[test]
    fn consumer_series_appear_and_go_away_with_the_consumer() {
        let (metrics, registry) = Metrics::registered();
        metrics.observe_consumer("shop", "inventory", Some(42), 30, Some(2), Some(3));
        let text = encode(&registry).unwrap();
        for name in [
            "eventconsumer_operator_consumer_lag{namespace=\"shop\",name=\"inventory\"} 42",
            "eventconsumer_operator_consumer_max_partition_lag{namespace=\"shop\",name=\"inventory\"} 30",
            "eventconsumer_operator_consumer_dead_letters{namespace=\"shop\",name=\"inventory\"} 2",
            "eventconsumer_operator_autoscaler_desired_replicas{namespace=\"shop\",name=\"inventory\"} 3",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        metrics.forget_consumer("shop", "inventory");
        let text = encode(&registry).unwrap();
        assert!(!text.contains("inventory"), "{text}");
    }
}
