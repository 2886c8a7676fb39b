//! The gateway's Prometheus metrics: requests by route and status, publish latency and
//! failures by topic, and the readiness checks of the brokers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub(super) route: String,
    pub(super) status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TopicLabels {
    pub(super) topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FailureLabels {
    pub(super) topic: String,
    pub(super) reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CheckLabels {
    pub(super) result: &'static str,
}

pub(super) struct Metrics {
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) readiness_checks: Family<CheckLabels, Counter>,
    pub(super) publish_latency: Family<TopicLabels, Histogram>,
    pub(super) publish_failures: Family<FailureLabels, Counter>,
}

impl Metrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            requests: Family::default(),
            readiness_checks: Family::default(),
            // 1 ms to ~16 s doubling: a healthy acks=all publish takes a few ms, and
            // the top buckets still resolve the 5 s default timeout.
            publish_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            publish_failures: Family::default(),
        };
        registry.register(
            "gateway_http_requests",
            "HTTP requests answered by the gateway, by route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "gateway_readiness_checks",
            "Broker metadata checks behind /readyz, by result (reachable or unreachable)",
            metrics.readiness_checks.clone(),
        );
        registry.register_with_unit(
            "gateway_publish_duration",
            "Time from handing a record to the producer to the broker's acknowledgement",
            Unit::Seconds,
            metrics.publish_latency.clone(),
        );
        registry.register(
            "gateway_publish_failures",
            "Records Kafka did not take, by topic and reason",
            metrics.publish_failures.clone(),
        );
        metrics
    }
}
