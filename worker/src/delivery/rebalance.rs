//! The consumer's side of a rebalance: the context librdkafka calls back into, which starts a
//! partition task on assign and drains it on revoke (finish or abandon its message, flush its
//! offsets, commit) before the partition goes to another member; and the handle partition
//! tasks use to store offsets and pause their partition.

use super::*;

/// The owned partitions' tasks, by `(topic, partition)`.
pub(super) type PartitionMap = hashbrown::HashMap<(String, i32), PartitionHandle>;
pub(super) type Partitions = Mutex<PartitionMap>;

pub(super) fn lock_partitions(p: &Partitions) -> std::sync::MutexGuard<'_, PartitionMap> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `(topic, partition)` key borrowing its topic: the dispatcher finds each message's
/// partition without allocating a `String` for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TopicPartition<'a>(pub &'a str, pub i32);

impl std::hash::Hash for TopicPartition<'_> {
    /// Exactly as `(String, i32)` hashes, as `Equivalent` requires.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.0, self.1).hash(state);
    }
}

impl hashbrown::Equivalent<(String, i32)> for TopicPartition<'_> {
    fn equivalent(&self, key: &(String, i32)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

impl From<&TopicPartition<'_>> for (String, i32) {
    fn from(k: &TopicPartition<'_>) -> Self {
        (k.0.to_owned(), k.1)
    }
}

/// State the rebalance callbacks share with the loop.
pub struct Shared {
    pub(super) partitions: Partitions,
    pub(super) handler: Arc<Handler>,
    pub(super) readiness: Arc<Readiness>,
    pub(super) metrics: Metrics,
    pub(super) drain: Duration,
    /// The brokers refused this worker (credentials, TLS, a group ACL): it stays not ready,
    /// even with an empty assignment, until it is given partitions.
    pub(super) refused: std::sync::atomic::AtomicBool,
    /// The group has given this member an assignment (even an empty one) since the last
    /// revoke.
    pub(super) assigned: std::sync::atomic::AtomicBool,
    /// Subscribed topics the brokers refuse to let it read: not ready while there are any.
    pub(super) topic_access: TopicAccess,
    /// `exactlyOnce`: commits the transaction on revoke (set once the consumer exists).
    pub(super) committer: std::sync::OnceLock<Arc<super::transact::Committer>>,
}

impl Shared {
    /// Records a refusal: not ready until partitions are assigned.
    pub(super) fn refused(&self) {
        self.refused
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.readiness.set(false);
    }

    /// Ready: assigned, not refused, and every subscribed topic readable.
    pub(super) fn update_readiness(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.readiness.set(
            self.assigned.load(Relaxed)
                && !self.refused.load(Relaxed)
                && !self.topic_access.any_refused(),
        );
    }

    /// A Kafka error of the consumer: a topic refusal is checked topic by topic (see
    /// [`TopicAccess`]); another refusal keeps the worker not ready; the rest is a warning.
    pub(super) fn consumer_error(&self, error: &KafkaError, reason: &str) {
        let hint = crate::kafka::refusal_hint(error, reason);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::TopicAuthorizationFailed) {
            self.topic_access.suspect();
        } else if hint.is_some() {
            self.refused();
        }
        let sep = if reason.is_empty() { "" } else { ": " };
        match hint {
            Some(hint) => {
                tracing::error!(target: "librdkafka", error = %error, hint, "Kafka refused this worker{sep}{reason}")
            }
            None => {
                tracing::warn!(target: "librdkafka", error = %error, "consumer error{sep}{reason}")
            }
        }
    }
}

/// The consumer context: logs through tracing and drains partitions on revoke.
pub struct LoopContext {
    pub(super) shared: Arc<Shared>,
}

pub type LoopConsumer = StreamConsumer<LoopContext>;

impl ClientContext for LoopContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.shared.consumer_error(&error, reason);
    }
}

pub(super) fn is_no_offset(e: &KafkaError) -> bool {
    matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))
}

pub(super) fn tpl_text(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Stops `handles` (soft, then hard after `drain`), flushes deferred work and seals the
/// trackers. Must run on the multi-threaded runtime.
pub(super) async fn drain(
    handles: Vec<((String, i32), PartitionHandle)>,
    handler: &Handler,
    metrics: &Metrics,
    drain: Duration,
) {
    let deadline = tokio::time::Instant::now() + drain;
    for (_, h) in &handles {
        h.soft.cancel();
    }
    let mut sealed = Vec::with_capacity(handles.len());
    for ((topic, partition), h) in handles {
        let PartitionHandle {
            join,
            hard,
            offsets,
            ..
        } = h;
        let mut join = join;
        if tokio::time::timeout_at(deadline, &mut join).await.is_err() {
            tracing::warn!(
                topic,
                partition,
                "drain time is up; abandoning the message in progress"
            );
            hard.cancel();
            let _ = join.await;
        }
        metrics.lag.remove(&PartitionLabels {
            topic: topic.clone(),
            partition,
        });
        sealed.push(offsets);
    }
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let flush_time = remaining.max(Duration::from_secs(2));
    if tokio::time::timeout(flush_time, handler.flush()).await != Ok(true) {
        tracing::warn!("deferred work could not be flushed; its messages will be redelivered");
    }
    for offsets in sealed {
        offsets::lock(&offsets).revoke();
    }
}

impl LoopContext {
    pub(super) fn on_revoke(&self, consumer: &BaseConsumer<LoopContext>, tpl: &TopicPartitionList) {
        let shared = &self.shared;
        shared
            .assigned
            .store(false, std::sync::atomic::Ordering::Relaxed);
        shared.readiness.set(false);
        let revoked: Vec<_> = {
            let mut map = lock_partitions(&shared.partitions);
            tpl.elements()
                .iter()
                .filter_map(|e| {
                    let key = (e.topic().to_owned(), e.partition());
                    map.remove(&key).map(|h| (key, h))
                })
                .collect()
        };
        tracing::info!(partitions = %tpl_text(tpl), running = revoked.len(), "partitions revoked; draining");
        if !revoked.is_empty() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    let handler = shared.handler.clone();
                    let metrics = shared.metrics.clone();
                    let time = shared.drain;
                    // The callback is synchronous (librdkafka gives the partitions up when it
                    // returns); block_in_place lets this worker thread wait for the drain
                    // while the runtime moves its other tasks elsewhere.
                    tokio::task::block_in_place(|| {
                        rt.block_on(drain(revoked, &handler, &metrics, time));
                    });
                }
                _ => {
                    for (_, h) in revoked {
                        h.hard.cancel();
                        offsets::lock(&h.offsets).revoke();
                    }
                    tracing::warn!(
                        "no multi-threaded runtime: revoked work abandoned, not drained"
                    );
                }
            }
        }
        if let Some(committer) = shared.committer.get() {
            let committed = match tokio::runtime::Handle::try_current() {
                Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(|| {
                        rt.block_on(committer.commit(&shared.partitions, consumer))
                    })
                }
                _ => Err("no multi-threaded runtime".to_owned()),
            };
            match committed {
                Ok(_) => tracing::info!("transaction committed on revoke"),
                Err(why) => {
                    shared.metrics.commit_failures.inc();
                    tracing::warn!(reason = %why, "transaction not committed on revoke; its work is handled again");
                }
            }
            return;
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!("offsets committed on revoke"),
            Err(e) if is_no_offset(&e) => {}
            Err(e) => {
                shared.metrics.commit_failures.inc();
                tracing::warn!(error = %e, "commit on revoke failed");
            }
        }
    }
}

impl ConsumerContext for LoopContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.on_revoke(consumer, tpl),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = %tpl_text(tpl), "partitions assigned");
            // A partition paused under its previous task (full queue, DLQ down) must not
            // stay paused now that a fresh task will own it.
            if tpl.count() > 0
                && let Err(e) = consumer.resume(tpl)
            {
                tracing::debug!(error = %e, "resume on assign refused");
            }
        }
        // Ready once the group has given this member its assignment, even an empty one: a
        // replica beyond the partition count is a healthy standby, and reporting it not
        // ready would stall the Deployment's rollouts and the EventConsumer's Ready count.
        // A revoke clears the flag until the next assignment arrives.
        // A refused worker (see `Shared::refused`) with no partitions is not a standby but
        // locked out, so it stays not ready.
        // So is one refused a subscribed topic (see `TopicAccess`).
        if let Rebalance::Assign(tpl) = rebalance {
            use std::sync::atomic::Ordering::Relaxed;
            if tpl.count() > 0 {
                self.shared.refused.store(false, Relaxed);
            }
            self.shared.assigned.store(true, Relaxed);
            self.shared.update_readiness();
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(offsets = %tpl_text(offsets), "offsets committed"),
            Err(e) if is_no_offset(&e) => {}
            Err(e) => {
                self.shared.metrics.commit_failures.inc();
                tracing::warn!(error = %e, "offset commit failed");
            }
        }
    }
}

/// The consumer as partition tasks see it; weak so tasks never keep it alive. In
/// `exactlyOnce` stored offsets go to the open transaction instead of the consumer.
pub struct ConsumerRef {
    pub(super) consumer: Weak<LoopConsumer>,
    pub(super) txn: Option<Arc<crate::transactions::Transactions>>,
}

impl OffsetSink for ConsumerRef {
    fn store(&self, topic: &str, partition: i32, next: i64) -> Result<(), String> {
        if let Some(txn) = &self.txn {
            txn.store(topic, partition, next);
            return Ok(());
        }
        let consumer = self.consumer.upgrade().ok_or("consumer closed")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(next))
            .map_err(|e| e.to_string())?;
        consumer.store_offsets(&tpl).map_err(|e| e.to_string())
    }
}

impl PartitionControl for ConsumerRef {
    fn set_paused(&self, topic: &str, partition: i32, paused: bool) {
        let Some(consumer) = self.consumer.upgrade() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let result = if paused {
            consumer.pause(&tpl)
        } else {
            consumer.resume(&tpl)
        };
        match result {
            // Debug: a partition ahead of a slow sink flips many times a second.
            Ok(()) => tracing::debug!(topic, partition, paused, "partition fetch paused/resumed"),
            Err(e) => tracing::debug!(topic, partition, paused, error = %e, "pause/resume refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TopicPartition;

    #[test]
    fn a_borrowed_topic_partition_finds_and_makes_the_owned_key() {
        let mut map: hashbrown::HashMap<(String, i32), u32> = hashbrown::HashMap::new();
        for (i, topic) in ["orders", "orders.retry.1", "ö-topic"]
            .into_iter()
            .enumerate()
        {
            for partition in 0..64 {
                let n = u32::try_from(i).unwrap() * 100 + u32::try_from(partition).unwrap();
                *map.entry_ref(&TopicPartition(topic, partition))
                    .or_insert(0) += n;
                assert_eq!(map.get(&(topic.to_owned(), partition)), Some(&n));
            }
        }
        assert_eq!(map.len(), 3 * 64);
        assert_eq!(map.get(&TopicPartition("orders.retry.1", 7)), Some(&107));
        assert_eq!(map.get(&TopicPartition("orders", 64)), None);
        assert_eq!(map.get(&TopicPartition("order", 1)), None);
        assert_eq!(map.remove(&TopicPartition("ö-topic", 0)), Some(200));
    }
}
