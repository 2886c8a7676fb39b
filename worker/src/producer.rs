//! The producer handlers and the dead-letter writer publish through: idempotent, acks=all.
//!
//! A send returns only once the broker acknowledged the record (or failed), because the
//! delivery loop stores an input offset only after everything the message caused is
//! durable. Idempotence stops the producer's own retries from duplicating records.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

/// Why a record was not acknowledged. Always worth retrying: the broker or topic may
/// come back.
#[derive(Debug, Clone, thiserror::Error)]
#[error("publishing to {topic} failed: {reason}")]
pub struct PublishError {
    pub topic: String,
    pub reason: String,
}

/// An acknowledged-send producer.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    delivery_timeout: Duration,
}

/// Shortest delivery timeout librdkafka accepts usefully; below it sends fail before a
/// single broker round trip on a busy machine.
const MIN_DELIVERY_TIMEOUT: Duration = Duration::from_secs(1);

impl Producer {
    /// A producer on `base` (bootstrap and security settings) whose sends fail after
    /// `delivery_timeout` rather than hang: the caller retries with its own backoff.
    pub fn new(
        base: &ClientConfig,
        delivery_timeout: Duration,
    ) -> Result<Producer, rdkafka::error::KafkaError> {
        let delivery_timeout = delivery_timeout.max(MIN_DELIVERY_TIMEOUT);
        let mut config = base.clone();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            )
            // A missing topic (auto-creation is off on our brokers) should fail a send in
            // about a second so the caller's backoff takes over, instead of librdkafka's
            // default of waiting 30 s for the topic to appear.
            .set("topic.metadata.propagation.max.ms", "1000")
            // Outcome events are small and latency matters more than batching here.
            .set("linger.ms", "5");
        Ok(Producer {
            inner: config.create()?,
            delivery_timeout,
        })
    }

    /// Publishes one record and waits for the broker's acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<(), PublishError> {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        // Queue-full waits count against the same budget as delivery.
        match self
            .inner
            .send(record, Timeout::After(self.delivery_timeout))
            .await
        {
            Ok(_) => Ok(()),
            Err((e, _)) => {
                if let Some(hint) = crate::kafka::refusal_hint(&e, "") {
                    tracing::error!(topic, error = %e, hint, "Kafka refused this worker's write");
                }
                Err(PublishError {
                    topic: topic.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Waits up to `timeout` for queued records to be delivered (used at shutdown).
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer as _;
        if let Err(e) = self.inner.flush(Timeout::After(timeout)) {
            tracing::warn!(error = %e, "producer flush incomplete");
        }
    }
}
