//! One task per owned partition: takes that partition's messages in order, runs the
//! handler with retries, dead-letters what fails for good, and releases offsets.
//!
//! Concurrency comes from partitions running side by side; a partition's own messages
//! never overlap, which is what keeps per-key order. In-flight work is bounded by the
//! small queue in front of each task: when it is full the dispatcher buffers what
//! librdkafka already fetched and pauses the partition (see [`PauseGate`]).
//!
//! Stopping has two strengths: *soft* (a revoke or SIGTERM: let the attempt in progress
//! finish, take no new message, and give up a message that is only waiting — for its next
//! retry or for an unavailable DLQ) and *hard* (the drain time is up: abandon the current
//! message at its next await point). Either way an unfinished message keeps its offset
//! unstored and is redelivered to the partition's next owner.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::metrics::gauge::Gauge;
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::dlq::{self, DlqWriter, SourceRecord};
use super::retry::{self, Attempted, RetryPolicy};
use super::retry_topics::{self as rt, RetryState, RetryTopics};
use crate::handlers::Handler;
use crate::metrics::Metrics;
use crate::offsets::Outcome;
use crate::offsets::{self, Ack, OffsetSink, PartitionOffsets, SharedOffsets};

/// Messages queued in front of a partition task: it bounds in-flight work per partition
/// (librdkafka's own prefetch, queued.max.messages.kbytes, holds more).
///
/// Not smaller: a full queue pauses the partition, which makes librdkafka drop what it
/// prefetched for it and fetch it again after the resume, and the resume waits for the
/// dispatcher's overflow tick: a small queue moved a queue's worth of messages per tick and
/// refetched a whole fetch each time; 4096 holds about one fetch (max.partition.fetch.bytes = 1 MiB of ~300-byte messages), for
/// a few MiB of memory per partition at most.
pub const PARTITION_QUEUE: usize = 4096;

/// What a partition task needs from the consumer.
pub trait PartitionControl: OffsetSink {
    /// Pauses (`true`) or resumes (`false`) fetching of one partition.
    fn set_paused(&self, topic: &str, partition: i32, paused: bool);
}

/// Pauses a partition while any reason holds: a full queue (backpressure) or an
/// unavailable dead-letter or retry topic. Resumes only when none does.
pub struct PauseGate {
    topic: String,
    partition: i32,
    reasons: Mutex<(bool, bool)>,
    control: Arc<dyn PartitionControl>,
}

impl PauseGate {
    pub fn new(topic: &str, partition: i32, control: Arc<dyn PartitionControl>) -> PauseGate {
        PauseGate {
            topic: topic.to_owned(),
            partition,
            reasons: Mutex::new((false, false)),
            control,
        }
    }

    fn update(&self, f: impl FnOnce(&mut (bool, bool))) {
        let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        let before = reasons.0 || reasons.1;
        f(&mut reasons);
        let after = reasons.0 || reasons.1;
        if before != after {
            // Under the lock, so pause and resume calls cannot overtake each other.
            self.control.set_paused(&self.topic, self.partition, after);
        }
    }

    pub fn backpressure(&self, on: bool) {
        self.update(|r| r.0 = on);
    }

    pub fn write_blocked(&self, on: bool) {
        self.update(|r| r.1 = on);
    }
}

/// Everything partition tasks share.
pub struct WorkerContext {
    pub handler: Arc<Handler>,
    pub policy: RetryPolicy,
    pub dlq: DlqWriter,
    /// `Some` in `retryTopics` mode: failed messages wait in these topics, written through
    /// the DLQ writer's producer.
    pub retry_topics: Option<RetryTopics>,
    pub metrics: Metrics,
    pub tally: Arc<crate::delivery::Tally>,
}

/// The dispatcher's side of a partition task.
pub struct PartitionHandle {
    pub tx: mpsc::Sender<OwnedMessage>,
    /// Fetched messages that did not fit the queue, in order.
    pub overflow: VecDeque<OwnedMessage>,
    pub offsets: SharedOffsets,
    pub gate: Arc<PauseGate>,
    pub soft: CancellationToken,
    pub hard: CancellationToken,
    pub join: JoinHandle<()>,
}

impl PartitionHandle {
    /// Starts the task of `topic`/`partition`. `hard_parent` is the process-wide abort.
    pub fn spawn(
        topic: &str,
        partition: i32,
        ctx: Arc<WorkerContext>,
        control: Arc<dyn PartitionControl>,
        hard_parent: &CancellationToken,
    ) -> PartitionHandle {
        let (tx, rx) = mpsc::channel(PARTITION_QUEUE);
        let offsets: SharedOffsets = Arc::new(Mutex::new(PartitionOffsets::new(topic, partition)));
        let gate = Arc::new(PauseGate::new(topic, partition, control.clone()));
        let soft = CancellationToken::new();
        let hard = hard_parent.child_token();
        let join = tokio::spawn(run(
            ctx,
            rx,
            offsets.clone(),
            gate.clone(),
            control,
            soft.clone(),
            hard.clone(),
        ));
        PartitionHandle {
            tx,
            overflow: VecDeque::new(),
            offsets,
            gate,
            soft,
            hard,
            join,
        }
    }

    /// Hands `msg` to the task, or buffers it and pauses the partition when the queue is
    /// full. Returns `false` if the task has ended, which only shutdown's cancellation does: a
    /// panicking task aborts the whole process (see `main.rs`), so no later offset of this
    /// partition can be stored past its unfinished messages; they are redelivered.
    pub fn dispatch(&mut self, msg: OwnedMessage) -> bool {
        if !self.overflow.is_empty() {
            self.overflow.push_back(msg);
            return true;
        }
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.overflow.push_back(msg);
                self.gate.backpressure(true);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Moves buffered messages into the queue as space frees up; resumes when drained.
    pub fn drain_overflow(&mut self) {
        if self.overflow.is_empty() {
            return;
        }
        while let Some(msg) = self.overflow.pop_front() {
            match self.tx.try_send(msg) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    self.overflow.push_front(msg);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.overflow.clear();
                    return;
                }
            }
        }
        self.gate.backpressure(false);
    }
}

async fn run(
    ctx: Arc<WorkerContext>,
    mut rx: mpsc::Receiver<OwnedMessage>,
    offsets: SharedOffsets,
    gate: Arc<PauseGate>,
    control: Arc<dyn PartitionControl>,
    soft: CancellationToken,
    hard: CancellationToken,
) {
    let writes = Arc::new(Semaphore::new(MAX_PENDING_RETRY_WRITES));
    loop {
        if soft.is_cancelled() {
            break;
        }
        // The queue is usually not empty at full speed: take from it without registering
        // with the stop token (a lock per message). Only an empty queue waits, and that is
        // when batched offset stores are handed over.
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                offsets::flush(&offsets, &*control);
                tokio::select! {
                    biased;
                    _ = soft.cancelled() => break,
                    m = rx.recv() => match m {
                        Some(m) => m,
                        None => break,
                    },
                }
            }
        };
        // Not begun yet, so a stop while waiting leaves the message to the next owner.
        // (The cheap check first: the select registers with both tokens.)
        if ctx.handler.is_full() {
            offsets::flush(&offsets, &*control);
            tokio::select! {
                biased;
                _ = soft.cancelled() => break,
                _ = hard.cancelled() => break,
                _ = ctx.handler.wait_for_room() => {}
            }
        }
        let task = Task {
            offsets: &offsets,
            gate: &gate,
            control: &control,
            hard: &hard,
            soft: &soft,
        };
        if let Some(topics) = &ctx.retry_topics {
            process_once(&ctx, topics, &msg, &writes, task).await;
        } else {
            process(&ctx, &msg, task).await;
        }
        if hard.is_cancelled() {
            break;
        }
    }
    // Retry-topic writes still in flight finish (or give up on a stop) before the drain
    // seals the tracker, so what they finished is stored.
    let all = u32::try_from(MAX_PENDING_RETRY_WRITES).unwrap_or(u32::MAX);
    tokio::select! {
        biased;
        _ = hard.cancelled() => {}
        _ = writes.acquire_many(all) => {}
    }
    // Before the drain seals the tracker: what finished is stored.
    offsets::flush(&offsets, &*control);
}

/// Retry-topic writes a partition may have in flight (retryTopics mode) before it waits for
/// one: each holds a copy of its message, so this bounds memory (~1,024 × 300 B here) while
/// leaving room for a burst of failures during a produce round trip.
const MAX_PENDING_RETRY_WRITES: usize = 1024;

/// A message key for log lines, decoded only when a line is actually written (most
/// messages log nothing at the default level).
struct KeyText<'a>(Option<&'a [u8]>);

impl std::fmt::Display for KeyText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(k) => f.write_str(&String::from_utf8_lossy(k)),
            None => Ok(()),
        }
    }
}

fn key_text(msg: &OwnedMessage) -> KeyText<'_> {
    KeyText(msg.key())
}

/// The partition task's handles that the processing of each message uses.
#[derive(Clone, Copy)]
struct Task<'a> {
    offsets: &'a SharedOffsets,
    gate: &'a Arc<PauseGate>,
    control: &'a Arc<dyn PartitionControl>,
    hard: &'a CancellationToken,
    soft: &'a CancellationToken,
}

/// A message counted in `messages_in_flight` for as long as this lives: every way out of
/// processing (done, dead-lettered, abandoned, or the spawned retry-topic write) drops it
/// exactly once.
struct InFlight(Gauge);

impl InFlight {
    fn start(gauge: &Gauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The prologue both delivery modes share: the message is begun in the offset tracker (its
/// ack) and counted in flight.
fn begin<'m>(
    ctx: &WorkerContext,
    msg: &'m OwnedMessage,
    task: Task<'_>,
) -> (Ack, InFlight, KeyText<'m>) {
    let ack = Ack::begin(task.offsets, msg.offset(), task.control.clone());
    (ack, InFlight::start(&ctx.metrics.in_flight), key_text(msg))
}

async fn process(ctx: &WorkerContext, msg: &OwnedMessage, task: Task<'_>) {
    let Task {
        offsets,
        control,
        hard,
        soft,
        ..
    } = task;
    // Batched positions of earlier messages go out before this one can make the task wait
    // (a backoff, an unavailable DLQ or retry topic): they must not wait with it.
    let flush_earlier = || offsets::flush(offsets, &**control);
    let (ack, _in_flight, key) = begin(ctx, msg, task);
    let m = &ctx.metrics;
    let attempted = retry::run(
        &ctx.policy,
        hard,
        soft,
        |_attempt| {
            let started = Instant::now();
            let handler = ctx.handler.clone();
            let ack = ack.clone();
            async move {
                let result = handler.handle(msg, &ack).await;
                m.latency_here.observe(started.elapsed().as_secs_f64());
                result
            }
        },
        |error, attempt, next| {
            flush_earlier();
            m.failed
                .get_or_create(&m.failure_labels(error.class()))
                .inc();
            ctx.tally.failed_attempt();
            match next {
                Some(delay) => {
                    m.retried.get_or_create(&m.labels()).inc();
                    ctx.tally.retried();
                    tracing::warn!(
                        topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
                        key = %key, attempt, error = %error, class = error.class(),
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "attempt failed; retrying"
                    );
                }
                None => tracing::warn!(
                    topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
                    key = %key, attempt, error = %error, class = error.class(),
                    retryable = error.is_retryable(),
                    "message failed; dead-lettering"
                ),
            }
        },
    )
    .await;
    match attempted {
        Attempted::Succeeded(outcome) => {
            m.processed_here.inc();
            ctx.tally.processed();
            if outcome == Outcome::Done {
                ack.release_batched();
            }
            tracing::debug!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, "processed");
        }
        Attempted::Failed(failure) => {
            dead_letter(ctx, msg, &SourceRecord::of(msg), &failure, &ack, task).await;
        }
        Attempted::Cancelled => {
            tracing::info!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, "abandoned unfinished; it will be redelivered");
        }
    }
}

/// Writes `msg` (from `source`) to the DLQ and releases its offset once acknowledged.
async fn dead_letter(
    ctx: &WorkerContext,
    msg: &OwnedMessage,
    source: &SourceRecord,
    failure: &retry::Failure,
    ack: &Ack,
    task: Task<'_>,
) {
    let Task {
        gate, hard, soft, ..
    } = task;
    let m = &ctx.metrics;
    let written = ctx
        .dlq
        .write(msg, source, failure, hard, soft, |blocked| {
            gate.write_blocked(blocked)
        })
        .await;
    if written {
        m.dead_lettered
            .get_or_create(&m.failure_labels(failure.error.class()))
            .inc();
        ctx.tally.dead_lettered();
        tracing::info!(
            topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
            key = %key_text(msg), attempts = failure.attempts, class = failure.error.class(),
            original_topic = %source.topic, original_partition = source.partition,
            original_offset = source.offset, dlq = %ctx.dlq.topic, "dead-lettered"
        );
        ack.release();
    }
}

fn now_ms() -> i64 {
    rt::epoch_ms(chrono::Utc::now())
}

/// `retryTopics` mode: one attempt at `msg` (after waiting until it is due, for a record
/// from a retry topic), then its offset is released, or it moves on to the next retry
/// topic or the DLQ and its offset is released once that write is acknowledged. A revoke
/// or SIGTERM during the wait or a failing write leaves the offset unstored.
async fn process_once(
    ctx: &Arc<WorkerContext>,
    topics: &RetryTopics,
    msg: &OwnedMessage,
    writes: &Arc<Semaphore>,
    task: Task<'_>,
) {
    let Task {
        offsets,
        gate,
        control,
        hard,
        soft,
    } = task;
    // Batched positions of earlier messages go out before this one can make the task wait
    // (a backoff, an unavailable DLQ or retry topic): they must not wait with it.
    let flush_earlier = || offsets::flush(offsets, &**control);
    let (ack, in_flight, key) = begin(ctx, msg, task);
    let m = &ctx.metrics;
    let state = match topics.attempt_of(msg.topic()) {
        None => RetryState::fresh(msg),
        Some(topic_attempt) => {
            let (state, bad) = RetryState::from_retry_record(msg, topic_attempt);
            if !bad.is_empty() {
                tracing::warn!(
                    topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
                    key = %key, bad_headers = %bad.join(","), attempt = state.attempt,
                    "retry record with missing or garbled headers; those fall back (attempt from the topic name, due now, the record itself as source)"
                );
            }
            state
        }
    };
    let wait = state.wait(now_ms(), ctx.policy.longest_delay);
    if !wait.is_zero() {
        let waited = tokio::select! {
            biased;
            _ = hard.cancelled() => false,
            _ = soft.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        };
        if !waited {
            tracing::info!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, "stopped while waiting for a retry; it will be redelivered");
            return;
        }
    }
    let started = Instant::now();
    let attempted = retry::attempt_once(
        &ctx.policy,
        hard,
        ctx.handler.handle_attempt(
            msg,
            &ack,
            &crate::handlers::fault::AttemptOf {
                topic: &state.source.topic,
                partition: state.source.partition,
                offset: state.source.offset,
                number: state.attempt,
            },
        ),
    )
    .await;
    m.latency_here.observe(started.elapsed().as_secs_f64());
    let error = match attempted {
        None => {
            tracing::info!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, "abandoned unfinished; it will be redelivered");
            return;
        }
        Some(Ok(outcome)) => {
            m.processed_here.inc();
            ctx.tally.processed();
            if outcome == Outcome::Done {
                ack.release_batched();
            }
            tracing::debug!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, attempt = state.attempt, "processed");
            return;
        }
        Some(Err(error)) => {
            flush_earlier();
            error
        }
    };
    m.failed
        .get_or_create(&m.failure_labels(error.class()))
        .inc();
    ctx.tally.failed_attempt();
    let now = chrono::Utc::now();
    let first_failure = state.first_failure.unwrap_or(now);
    if let Some(delay) = ctx.policy.next(&error, state.attempt) {
        let next = state.attempt + 1;
        let due =
            rt::epoch_ms(now).saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let target = topics.topic_for(next);
        tracing::warn!(
            topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
            key = %key, attempt = state.attempt, error = %error, class = error.class(),
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            retry_topic = %target, "attempt failed; retrying through the retry topic"
        );
        let headers = rt::retry_headers(msg, &state, next, due, first_failure);
        // The write is not awaited here: the partition moves on at once and the ack is
        // released when the broker acknowledges the copy (the tracker stores no offset past
        // an unfinished one). Awaiting it held the partition for a produce round trip per
        // failure, which at 1 % failures was most of the run's time.
        let permit = tokio::select! {
            biased;
            _ = hard.cancelled() => None,
            p = writes.clone().acquire_owned() => p.ok(),
        };
        let Some(permit) = permit else {
            return;
        };
        let (ctx, msg, gate) = (ctx.clone(), msg.clone(), gate.clone());
        let (hard, soft) = (hard.clone(), soft.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _in_flight = in_flight;
            let m = &ctx.metrics;
            let written = dlq::send_until_acked(
                &ctx.dlq.producer,
                dlq::Outgoing {
                    destination: dlq::Destination::Retry,
                    topic: &target,
                    msg: &msg,
                    headers,
                },
                &hard,
                &soft,
                |blocked| gate.write_blocked(blocked),
                || {
                    m.retry_topic_write_failures
                        .get_or_create(&m.labels())
                        .inc();
                },
            )
            .await;
            if written {
                m.retried.get_or_create(&m.labels()).inc();
                m.retry_topic_writes.get_or_create(&m.labels()).inc();
                ctx.tally.retried();
                ack.release();
            }
        });
    } else {
        tracing::warn!(
            topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
            key = %key, attempt = state.attempt, error = %error, class = error.class(),
            retryable = error.is_retryable(), "message failed; dead-lettering"
        );
        let failure = retry::Failure {
            error,
            attempts: state.attempt,
            first_failure,
            last_failure: now,
        };
        dead_letter(ctx, msg, &state.source, &failure, &ack, task).await;
    }
}

#[cfg(test)]
mod tests;
