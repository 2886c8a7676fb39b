//! The producer handlers and the dead-letter writer publish through: idempotent, acks=all.
//!
//! A send returns only once the broker acknowledged the record (or failed), because the
//! delivery loop stores an input offset only after everything the message caused is
//! durable. Idempotence stops the producer's own retries from duplicating records.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::transactions::{Entered, Pending, Transactions};

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
    /// `exactlyOnce`: the open transaction every send goes into.
    txn: Option<Arc<Transactions>>,
}

/// How long a transaction may stay open before the broker aborts it, at least: a worker
/// killed with one open blocks its partitions' next owner until then (a restarted container,
/// same transactional id, aborts it at once). Short, since a transaction normally lives for
/// one commit interval; never below the delivery timeout, which librdkafka requires.
const MIN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the transaction calls (init, offsets, commit, abort) may take.
pub const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(30);

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
            txn: None,
        })
    }

    /// A transactional producer with `transactional_id`, initialised (fencing an earlier
    /// producer with the same id and aborting what it left open) and in a transaction.
    /// Blocks for broker round trips: call it off the async threads.
    pub fn transactional(
        base: &ClientConfig,
        delivery_timeout: Duration,
        transactional_id: &str,
    ) -> Result<(Producer, Arc<Transactions>), rdkafka::error::KafkaError> {
        use rdkafka::producer::Producer as _;
        let delivery_timeout = delivery_timeout.max(MIN_DELIVERY_TIMEOUT);
        let mut config = base.clone();
        config.set("transactional.id", transactional_id).set(
            "transaction.timeout.ms",
            delivery_timeout
                .max(MIN_TRANSACTION_TIMEOUT)
                .as_millis()
                .to_string(),
        );
        let mut producer = Producer::new(&config, delivery_timeout)?;
        producer.inner.init_transactions(TRANSACTION_CALL_TIMEOUT)?;
        producer.inner.begin_transaction()?;
        let txn = Arc::new(Transactions::default());
        producer.txn = Some(txn.clone());
        Ok((producer, txn))
    }

    /// The librdkafka producer, for the transaction calls of the delivery loop.
    pub fn client(&self) -> &FutureProducer {
        &self.inner
    }

    /// `exactlyOnce`: holds the open transaction for a piece of work that writes (see
    /// [`crate::transactions`]); `None` (at once) at least once.
    pub async fn enter(&self) -> Option<Entered> {
        match &self.txn {
            Some(t) => Some(t.enter().await),
            None => None,
        }
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
        // In a transaction a send that fails, or is dropped unfinished, spoils it.
        let pending = Pending::start(self.txn.as_ref());
        // Queue-full waits count against the same budget as delivery.
        let sent = self
            .inner
            .send(record, Timeout::After(self.delivery_timeout))
            .await;
        pending.done(&sent.as_ref().map(|_| ()).map_err(|(e, _)| e));
        match sent {
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
