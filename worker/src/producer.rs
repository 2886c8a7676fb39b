//! The producer handlers and the dead-letter writer publish through: idempotent, acks=all.
//!
//! At least once, a send returns only once the broker acknowledged the record (or failed),
//! because the delivery loop stores an input offset only after everything the message
//! caused is durable. Idempotence stops the producer's own retries from duplicating records.
//!
//! In a transaction (`exactlyOnce`) a send returns once the record is queued: the commit
//! flushes every queued record and commits only if all were acknowledged, so waiting for
//! each acknowledgement would buy nothing but a broker round trip per message. A queued
//! record that fails spoils the transaction (see [`crate::transactions`]).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::transactions::{Entered, Transactions};

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

/// At least once each send waits for its acknowledgement before its partition's next
/// message, so time spent lingering is added to every message (librdkafka's default of 5 ms
/// held an order worker to ~1,000 outcome events/s on six partitions): send at once.
const AWAITED_LINGER_MS: &str = "0";
/// In a transaction sends are queued without waiting: a few milliseconds of lingering
/// batch them, and the commit every 100 ms flushes whatever still lingers.
const QUEUED_LINGER_MS: &str = "5";

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
        Producer::lingering(base, delivery_timeout, AWAITED_LINGER_MS)
    }

    fn lingering(
        base: &ClientConfig,
        delivery_timeout: Duration,
        linger_ms: &str,
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
            .set("linger.ms", linger_ms);
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
        let mut producer = Producer::lingering(&config, delivery_timeout, QUEUED_LINGER_MS)?;
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

    /// `exactlyOnce`: holds this producer's open transaction for a piece of work that
    /// writes ([`crate::transactions::hold`]).
    pub async fn enter(&self) -> Option<Entered> {
        crate::transactions::hold(self.txn.as_ref()).await
    }

    /// Publishes one record: at least once, returns when the broker acknowledged it; in a
    /// transaction, once it is queued (the commit waits for the acknowledgement).
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
        if let Some(txn) = &self.txn {
            return self.queue(txn, record).await;
        }
        // Queue-full waits count against the same budget as delivery.
        match self
            .inner
            .send(record, Timeout::After(self.delivery_timeout))
            .await
        {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(refused(topic, &e)),
        }
    }

    /// Queues `record` in the open transaction and returns; a task waits for its
    /// acknowledgement and spoils the transaction if it fails. Not queued (`Err`): it is
    /// not in the transaction, and the caller may retry. Returns in the poll that queued
    /// the record, so a caller dropped at an await (attempt timeout, stop) queued nothing.
    async fn queue(
        &self,
        txn: &Arc<Transactions>,
        mut record: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<(), PublishError> {
        let topic = record.topic.to_owned();
        let deadline = tokio::time::Instant::now() + self.delivery_timeout;
        loop {
            match self.inner.send_result(record) {
                Ok(delivery) => {
                    txn.wrote();
                    let txn = txn.clone();
                    tokio::spawn(async move {
                        match delivery.await {
                            Ok(Ok(_)) => {}
                            Ok(Err((e, _))) => {
                                let e = refused(&topic, &e);
                                txn.spoil(format!("a write in the transaction failed: {e}"));
                            }
                            Err(_) => txn.spoil(format!(
                                "a write to {topic} in the transaction was cancelled (the producer closed)"
                            )),
                        }
                    });
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if tokio::time::Instant::now() < deadline =>
                {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                Err((e, _)) => return Err(refused(&topic, &e)),
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

/// The error of a write Kafka refused or that failed, logged with a hint when the broker
/// refused this principal (a missing ACL).
fn refused(topic: &str, e: &KafkaError) -> PublishError {
    if let Some(hint) = crate::kafka::refusal_hint(e, "") {
        tracing::error!(topic, error = %e, hint, "Kafka refused this worker's write");
    }
    PublishError {
        topic: topic.to_owned(),
        reason: e.to_string(),
    }
}

/// How long a transactional send waits before queueing again when librdkafka's queue is
/// full: the queue drains at broker speed, so a millisecond wastes little and spins little.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);
