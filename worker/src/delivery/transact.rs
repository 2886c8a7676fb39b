//! `exactlyOnce`: the commit of the open transaction (see [`crate::transactions`]) with the
//! offsets of the work it holds, on a timer, at the count bound, on revoke and at shutdown.
//!
//! A commit takes the transaction exclusively (the work in progress finishes first), hands
//! the partitions' batched positions over, sends them with the consumer's group metadata
//! (KIP-447: a worker that lost its partitions in a rebalance is fenced by the group
//! generation, and its transaction aborts), commits and begins the next transaction. A
//! worker whose assignment librdkafka reports lost never commits ([`ASSIGNMENT_LOST`]).
//! Any failure spoils the transaction: the worker aborts it and starts over.

use super::*;
use rdkafka::producer::Producer as _;

use crate::producer::TRANSACTION_CALL_TIMEOUT;
use crate::transactions::Transactions;
use rebalance::Partitions;

/// How often the open transaction is committed when work is waiting in it: every commit
/// costs two broker round trips and a marker per partition written to, so much shorter
/// halves throughput; much longer delays what `read_committed` readers see. 100 ms is
/// Kafka Streams' commit interval under exactly-once.
pub(super) const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// Why a worker whose partitions the group took away (its session expired: a stopped or
/// stalled process) aborts instead of committing. Once librdkafka has left the old group
/// generation, the offsets would go with no generation the broker could fence, and the
/// outputs of work the partitions' new owner does again would be committed twice.
pub(super) const ASSIGNMENT_LOST: &str = "the group gave this worker's partitions to another \
    (its session expired while it was stopped or stalled): what it did since its last commit \
    is aborted, and it starts over from the committed offsets";

/// What commits: the transaction's bookkeeping, its producer and the offset sink that
/// partition tasks store through.
pub struct Committer {
    pub(super) txn: Arc<Transactions>,
    pub(super) producer: Producer,
    pub(super) control: Arc<ConsumerRef>,
}

impl Committer {
    /// Commits the open transaction with every offset stored so far and begins the next.
    /// `Ok(false)`: nothing to commit. `Err`: the transaction is spoiled (the reason).
    pub(super) async fn commit(
        &self,
        partitions: &Partitions,
        consumer: &(impl Consumer<LoopContext> + Sync),
    ) -> Result<bool, String> {
        let exclusive = self.txn.exclusive().await;
        for handle in lock_partitions(partitions).values() {
            offsets::flush(&handle.offsets, &*self.control);
        }
        if let Some(why) = self.txn.spoiled() {
            return Err(why);
        }
        if consumer.assignment_lost() {
            self.txn.spoil(ASSIGNMENT_LOST);
            return Err(ASSIGNMENT_LOST.to_owned());
        }
        let group = consumer.group_metadata();
        let (positions, written) = self.txn.take(&exclusive);
        if positions.is_empty() && !written {
            return Ok(false);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &positions {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| e.to_string())?;
        }
        let producer = self.producer.client().clone();
        let started = Instant::now();
        let committed = tokio::task::spawn_blocking(move || -> Result<(), String> {
            if tpl.count() > 0 {
                let group = group.ok_or("the consumer has no group metadata (not in the group)")?;
                producer
                    .send_offsets_to_transaction(&tpl, &group, TRANSACTION_CALL_TIMEOUT)
                    .map_err(|e| format!("sending the offsets to the transaction failed: {e}"))?;
            }
            wait_for_acknowledgements(&producer);
            producer
                .commit_transaction(TRANSACTION_CALL_TIMEOUT)
                .map_err(|e| format!("the commit failed: {e}"))?;
            producer
                .begin_transaction()
                .map_err(|e| format!("the next transaction did not begin: {e}"))
        })
        .await
        .unwrap_or_else(|e| Err(format!("the commit task failed: {e}")));
        drop(exclusive);
        match committed {
            Ok(()) => {
                tracing::debug!(
                    partitions = positions.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "transaction committed"
                );
                Ok(true)
            }
            Err(why) => {
                self.txn.spoil(why.clone());
                Err(why)
            }
        }
    }

    /// Aborts the open transaction (after it was spoiled, or instead of a commit).
    pub(super) async fn abort(&self) {
        let _exclusive = self.txn.exclusive().await;
        let producer = self.producer.client().clone();
        let aborted = tokio::task::spawn_blocking(move || {
            producer.abort_transaction(TRANSACTION_CALL_TIMEOUT)
        })
        .await;
        match aborted {
            Ok(Ok(())) => tracing::info!("transaction aborted"),
            // A fenced or failed producer cannot abort; the broker aborts its transaction
            // when the next producer with this id starts, or when it times out.
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the transaction could not be aborted here; the broker aborts it")
            }
            Err(e) => tracing::warn!(error = %e, "the abort task failed"),
        }
    }
}

/// Waits (blocking) until every queued record of the transaction was acknowledged or
/// failed, at most [`TRANSACTION_CALL_TIMEOUT`]. `commit_transaction` flushes by itself, but
/// rdkafka's flush, finding records in flight, waits on the producer's event queue for up
/// to 100 ms while the producer's own thread serves their acknowledgements: every commit
/// took 100 ms (measured: p50 100 ms, max 105 ms over 64 commits at 200 orders/s).
fn wait_for_acknowledgements(producer: &rdkafka::producer::FutureProducer) {
    let deadline = Instant::now() + TRANSACTION_CALL_TIMEOUT;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(ACK_POLL);
    }
}

/// How often [`wait_for_acknowledgements`] looks: a broker round trip on loopback is about
/// a millisecond, so a commit waits at most that much longer than its last record.
const ACK_POLL: Duration = Duration::from_millis(1);

/// Commits every [`COMMIT_INTERVAL`], or at once at the count bound, until `stop` or until
/// the transaction is spoiled.
pub(super) async fn run_commits(
    committer: Arc<Committer>,
    consumer: Weak<LoopConsumer>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = committer.txn.rewind().cancelled() => return,
            _ = committer.txn.due() => {}
            _ = tokio::time::sleep(COMMIT_INTERVAL) => {}
        }
        let Some(consumer) = consumer.upgrade() else {
            return;
        };
        if committer
            .commit(&shared.partitions, &*consumer)
            .await
            .is_err()
        {
            return;
        }
    }
}
