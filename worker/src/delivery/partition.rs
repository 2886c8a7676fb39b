//! One task per owned partition: takes that partition's messages in order, runs the
//! handler with retries, dead-letters what fails for good, and releases offsets.
//!
//! With `ordering: partition` a partition's own messages never overlap, which keeps per-key
//! order, and concurrency comes from partitions running side by side. With `key` or `none`
//! the task begins each message in offset order (so the offset tracker knows it as
//! unfinished) and runs it in a task of its own, holding one of the worker's
//! [`HELD_PER_CALL`] × `maxInFlight` permits to be held at all; in `key` mode it first waits
//! for the one before it with the same key (see [`KeyLanes`]), then for one of the
//! `maxInFlight` call permits. No offset is stored past an unfinished message in any mode.
//! In-flight work is bounded by the small queue in front of each task and by the permits:
//! when the queue stays full for [`ROOM_WAIT`] the dispatcher buffers what librdkafka
//! already fetched and pauses the partition (see [`PauseGate`]).
//!
//! Stopping has two strengths: *soft* (a revoke or SIGTERM: let the attempt in progress
//! finish, take no new message, and give up a message that is only waiting — for its next
//! retry, for an unavailable DLQ or for its key's turn) and *hard* (the drain time is up:
//! abandon the current message at its next await point). Either way an unfinished message
//! keeps its offset unstored and is redelivered to the partition's next owner.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use eventconsumer_contract::Ordering;
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
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
/// Not smaller: a queue that stays full pauses the partition, which makes librdkafka drop what it
/// prefetched for it and fetch it again after the resume, and the resume waits for the
/// dispatcher's overflow tick: a small queue moved a queue's worth of messages per tick and
/// refetched a whole fetch each time; 4096 holds about one fetch (max.partition.fetch.bytes = 1 MiB of ~300-byte messages), for
/// a few MiB of memory per partition at most.
pub const PARTITION_QUEUE: usize = 4096;

/// How long the dispatcher waits for room in a full partition queue before it pauses the
/// partition. Pausing makes librdkafka drop what it prefetched for the partition and fetch
/// it again after the resume: with a pause on every full queue, the healthy worker spent
/// most of a run refetching (~480,000 msg/s over 3,000,000 orders) while both cores were
/// busy for only ~1 of them; waiting for room instead kept both busy (~800,000 msg/s). The
/// wait holds every partition's dispatch, so it is short: the other tasks' queues hold
/// tens of milliseconds of work at full speed, and a partition that is really stuck (a
/// backoff, a slow sink) is paused after it, costing the others this much once per pause.
pub const ROOM_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// Free slots the dispatcher waits for in a full queue: one wake-up per this many
/// messages rather than a ping-pong of one message per wake-up.
pub const ROOM: usize = PARTITION_QUEUE / 8;

/// What [`PartitionHandle::dispatch`] did with a message.
pub enum Dispatch {
    Queued,
    /// The queue is full: the message comes back.
    Full(OwnedMessage),
    /// The task has ended, which only shutdown's cancellation does (a panicking task aborts
    /// the whole process, see `main.rs`, so no later offset of the partition can be stored
    /// past its unfinished messages). The message comes back to be dropped, unstored: it is
    /// redelivered to the partition's next owner.
    Ended(OwnedMessage),
}

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
    /// Which messages may run at the same time.
    pub ordering: Ordering,
    /// `exactlyOnce`: the open transaction, held by each piece of work that writes (see
    /// [`crate::transactions`]); `None` at least once.
    pub txn: Option<Arc<crate::transactions::Transactions>>,
    /// The worker's `maxInFlight` permits (`key` and `none` ordering): one per message being
    /// handled (its key's turn has come), across its partitions.
    pub in_flight: Arc<Semaphore>,
    /// [`HELD_PER_CALL`] × `maxInFlight` permits (`key` and `none` ordering): one per message
    /// begun and not finished, waiting for its turn or handled, across its partitions.
    pub held: Arc<Semaphore>,
}

/// Messages a worker holds per `maxInFlight` slot (`key` and `none` ordering): as many
/// waiting for their key's turn as are being handled. With only `maxInFlight` held, the
/// messages waiting behind a busy key took slots from calls: 1,000 keys and 256 slots kept
/// ~200 calls open of 256 (the ordering benchmark); twice as many held keeps the calls full
/// while a slow key's backlog still pauses the partition rather than growing.
pub const HELD_PER_CALL: usize = 2;

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

    /// Hands `msg` to the task. A full queue gives the message back ([`Dispatch::Full`]):
    /// the dispatcher waits a moment for room ([`PartitionHandle::room`]) and only then
    /// buffers it and pauses the partition ([`PartitionHandle::overflow_and_pause`]). Once
    /// the partition is buffering, later messages join the buffer, in order.
    pub fn dispatch(&mut self, msg: OwnedMessage) -> Dispatch {
        if !self.overflow.is_empty() {
            self.overflow.push_back(msg);
            return Dispatch::Queued;
        }
        match self.tx.try_send(msg) {
            Ok(()) => Dispatch::Queued,
            Err(mpsc::error::TrySendError::Full(msg)) => Dispatch::Full(msg),
            Err(mpsc::error::TrySendError::Closed(msg)) => Dispatch::Ended(msg),
        }
    }

    /// A future that resolves once [`ROOM`] slots of the queue are free (or the task has
    /// ended), owning what it needs so the partition map need not stay locked meanwhile.
    pub fn room(&self) -> impl Future<Output = ()> + use<> {
        let tx = self.tx.clone();
        async move {
            let _ = tx.reserve_many(ROOM).await;
        }
    }

    /// Buffers `msg`, which found the queue full for [`ROOM_WAIT`], and pauses the
    /// partition until the buffer is drained.
    pub fn overflow_and_pause(&mut self, msg: OwnedMessage) {
        self.overflow.push_back(msg);
        self.gate.backpressure(true);
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
    // `key` and `none` ordering: the messages running in tasks of their own.
    let mut running: JoinSet<()> = JoinSet::new();
    let mut lanes = KeyLanes::default();
    'messages: loop {
        if soft.is_cancelled() {
            break;
        }
        while running.try_join_next().is_some() {}
        // The queue is usually not empty at full speed: take from it without registering
        // with the stop token (a lock per message). Only an empty queue waits, and that is
        // when batched offset stores are handed over (again each time a concurrent message
        // finishes while it waits, so an idle partition's position is not left behind).
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => loop {
                offsets::flush(&offsets, &*control);
                tokio::select! {
                    biased;
                    _ = soft.cancelled() => break 'messages,
                    m = rx.recv() => match m {
                        Some(m) => break m,
                        None => break 'messages,
                    },
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                }
            },
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
        if ctx.ordering == Ordering::Partition {
            let begun = begin(&ctx, &msg, task);
            process_begun(&ctx, &msg, &writes, task, begun).await;
        } else {
            // A permit first, so a worker holding all it may stops taking messages (its
            // queue fills and the partition pauses) instead of holding more.
            let held = match ctx.held.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    offsets::flush(&offsets, &*control);
                    tokio::select! {
                        biased;
                        _ = soft.cancelled() => break,
                        _ = hard.cancelled() => break,
                        p = ctx.held.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                    }
                }
            };
            let Begun(ack, in_flight) = begin(&ctx, &msg, task);
            let turn = match ctx.ordering {
                Ordering::Key => lanes.join(msg.key()),
                Ordering::Partition | Ordering::Unordered => Turn::now(),
            };
            running.spawn(run_concurrently(
                Concurrent {
                    ctx: ctx.clone(),
                    offsets: offsets.clone(),
                    gate: gate.clone(),
                    control: control.clone(),
                    soft: soft.clone(),
                    hard: hard.clone(),
                    writes: writes.clone(),
                    _held: held,
                },
                msg,
                turn,
                Begun(ack, in_flight),
            ));
        }
        if hard.is_cancelled() {
            break;
        }
    }
    // Messages running concurrently finish their attempt (or give up on a hard stop), and
    // those waiting for their key's turn give up, before the tracker is sealed.
    while running.join_next().await.is_some() {}
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

/// What a message running in a task of its own owns (`key` and `none` ordering).
struct Concurrent {
    ctx: Arc<WorkerContext>,
    offsets: SharedOffsets,
    gate: Arc<PauseGate>,
    control: Arc<dyn PartitionControl>,
    soft: CancellationToken,
    hard: CancellationToken,
    writes: Arc<Semaphore>,
    /// Returned to the worker's held permits when the message is finished or given up
    /// (kept only for its drop).
    _held: OwnedSemaphorePermit,
}

impl Concurrent {
    fn task(&self) -> Task<'_> {
        Task {
            offsets: &self.offsets,
            gate: &self.gate,
            control: &self.control,
            hard: &self.hard,
            soft: &self.soft,
        }
    }
}

/// Waits for the message's turn (its key's previous message finished), then processes it as
/// the partition mode would; a stop while waiting gives it up, unstored.
async fn run_concurrently(owned: Concurrent, msg: OwnedMessage, turn: Turn, begun: Begun) {
    let (ctx, soft, hard) = (&owned.ctx, &owned.soft, &owned.hard);
    let Turn { after, done } = turn;
    if let Some(after) = after {
        tokio::select! {
            biased;
            _ = hard.cancelled() => return,
            _ = soft.cancelled() => {
                tracing::info!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key_text(&msg), "stopped while waiting for its key's turn; it will be redelivered");
                return;
            }
            // An error means the previous message's task ended without a word: finished
            // or given up, either way its turn is over.
            _ = after => {}
        }
    }
    // Then one of the `maxInFlight` slots; waiting for it is still only waiting.
    let _slot = match ctx.in_flight.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => tokio::select! {
            biased;
            _ = hard.cancelled() => return,
            _ = soft.cancelled() => {
                tracing::info!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key_text(&msg), "stopped while waiting for a free maxInFlight slot; it will be redelivered");
                return;
            }
            p = ctx.in_flight.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        },
    };
    process_begun(ctx, &msg, &owned.writes, owned.task(), begun).await;
    drop(done);
}

/// Processes a begun message in the consumer's delivery mode.
async fn process_begun(
    ctx: &Arc<WorkerContext>,
    msg: &OwnedMessage,
    writes: &Arc<Semaphore>,
    task: Task<'_>,
    begun: Begun,
) {
    match &ctx.retry_topics {
        Some(topics) => process_once(ctx, topics, msg, writes, task, begun).await,
        None => process(ctx, msg, task, begun).await,
    }
}

/// `key` ordering: for each key, the signal its last begun message gives when it is done.
/// A message waits for its predecessor's signal and leaves its own for the next one, so the
/// messages of a key run one after another in offset order, each waiting in its own task.
/// Messages without a key have no order to keep and run at once.
#[derive(Default)]
struct KeyLanes {
    last: HashMap<Vec<u8>, oneshot::Receiver<()>>,
    /// Size at which finished lanes are swept out (doubles with the live ones).
    sweep_at: usize,
}

/// Where a message stands in its key's lane: what it waits for, and what it signals (by
/// being dropped) when it is done.
struct Turn {
    after: Option<oneshot::Receiver<()>>,
    done: Option<oneshot::Sender<()>>,
}

impl Turn {
    fn now() -> Turn {
        Turn {
            after: None,
            done: None,
        }
    }
}

/// Smallest sweep threshold: below it the map is small enough to keep finished lanes.
const MIN_LANE_SWEEP: usize = 1024;

impl KeyLanes {
    fn join(&mut self, key: Option<&[u8]>) -> Turn {
        let Some(key) = key else {
            return Turn::now();
        };
        let (done, signal) = oneshot::channel();
        let after = self.last.insert(key.to_vec(), signal);
        if self.last.len() > self.sweep_at.max(MIN_LANE_SWEEP) {
            // A lane whose last message is done holds a closed receiver: drop it.
            self.last
                .retain(|_, rx| matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
            self.sweep_at = self.last.len() * 2;
        }
        Turn {
            after,
            done: Some(done),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.last.len()
    }
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

/// A message begun in the offset tracker (its ack) and counted in flight.
struct Begun(Ack, InFlight);

/// The prologue every delivery mode and ordering shares, run in offset order by the
/// partition task: the message is begun in the offset tracker and counted in flight.
fn begin(ctx: &WorkerContext, msg: &OwnedMessage, task: Task<'_>) -> Begun {
    let ack = Ack::begin(task.offsets, msg.offset(), task.control.clone());
    Begun(ack, InFlight::start(&ctx.metrics.in_flight))
}

async fn process(ctx: &WorkerContext, msg: &OwnedMessage, task: Task<'_>, begun: Begun) {
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
    let Begun(ack, _in_flight) = begun;
    let key = key_text(msg);
    let m = &ctx.metrics;
    // exactlyOnce: the hold of the attempt that succeeded, kept until its offset is stored.
    let succeeded_hold = Mutex::new(None);
    let attempted = retry::run(
        &ctx.policy,
        hard,
        soft,
        |_attempt| {
            let started = Instant::now();
            let handler = ctx.handler.clone();
            let ack = ack.clone();
            let succeeded_hold = &succeeded_hold;
            async move {
                let hold = crate::transactions::hold(ctx.txn.as_ref()).await;
                let result = handler.handle(msg, &ack).await;
                m.latency_here.observe(started.elapsed().as_secs_f64());
                if result.is_ok() {
                    *succeeded_hold.lock().unwrap_or_else(|p| p.into_inner()) = hold;
                }
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
    let succeeded_hold = succeeded_hold
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    match attempted {
        Attempted::Succeeded(outcome) => {
            m.processed_here.inc();
            ctx.tally.processed();
            if outcome == Outcome::Done {
                ack.release_batched();
            }
            drop(succeeded_hold);
            tracing::debug!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, "processed");
        }
        Attempted::Failed(failure) => {
            drop(succeeded_hold);
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
    let hold = crate::transactions::hold(ctx.txn.as_ref()).await;
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
    drop(hold);
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
    begun: Begun,
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
    let Begun(ack, in_flight) = begun;
    let key = key_text(msg);
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
    let hold = crate::transactions::hold(ctx.txn.as_ref()).await;
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
            drop(hold);
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
            // The failed attempt wrote nothing; this write and its store keep its hold.
            let hold = hold;
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
            drop(hold);
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
        // The dead-letter write takes a hold of its own (holds never nest).
        drop(hold);
        dead_letter(ctx, msg, &state.source, &failure, &ack, task).await;
    }
}

#[cfg(test)]
mod tests;
