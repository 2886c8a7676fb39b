//! The delivery loop: one consumer in a group, a task per owned partition, offsets stored
//! only behind finished work, and a clean drain on revoke and on SIGTERM.
//!
//! * **Fetching** — one task calls `recv()` on a [`StreamConsumer`] and hands each message
//!   to its partition's task ([`partition`]). Rebalance callbacks run inside that `recv()`.
//! * **Offsets** — `enable.auto.offset.store=false`; offsets are stored through
//!   [`crate::offsets`] once a message succeeded, or its dead-letter record was acknowledged, and
//!   never past an unfinished message. `enable.auto.commit` commits stored offsets in the
//!   background; the loop commits at once when it has caught up (no message for a tick),
//!   and synchronously on revoke and at shutdown.
//! * **Revoke** — before librdkafka gives partitions up, their tasks stop taking messages,
//!   an attempt in progress gets up to the shutdown grace to finish (a message waiting for a
//!   retry or for the DLQ is left unstored to the next owner at once), deferred work
//!   (analytics windows) is flushed, the trackers refuse later stores, and stored offsets
//!   are committed synchronously.
//! * **Shutdown** — stop fetching, drain in-flight work within the grace, flush, commit,
//!   close the consumer (leaving the group), log one summary line.
//!
//! Why a dispatcher with per-partition channels rather than `split_partition_queue`: messages
//! fetched before a split stay in the main queue, and every assignment deactivates the split
//! queues, so a rebalance would need careful re-splitting to keep per-partition order. One
//! `recv()` loop keeps rebalance callbacks, dispatch and pausing in one place; the
//! per-partition queues and `pause`/`resume` give the same isolation between partitions.

pub mod dlq;
pub mod partition;
mod rebalance;
pub mod retry;
pub mod retry_topics;
mod topic_access;
mod transact;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::handlers::Handler;
use crate::http::Readiness;
use crate::metrics::{Metrics, PartitionLabels};
use crate::offsets::{self, OffsetSink};
use crate::producer::Producer;
use partition::{Dispatch, PartitionControl, PartitionHandle, WorkerContext};
use rebalance::{ConsumerRef, TopicPartition, drain, is_no_offset, lock_partitions};
pub use rebalance::{LoopConsumer, LoopContext, Shared};
use topic_access::{Change, TopicAccess};
use transact::Committer;

/// How often buffered messages are moved into partition queues while `recv()` is idle
/// (all partitions paused): short enough not to add visible latency.
const OVERFLOW_TICK: Duration = Duration::from_millis(50);
/// Idle overflow ticks after which a caught-up worker commits its stored offsets at once
/// (two: the first may run before the last message's position was handed over), rather
/// than up to a second later in the background: a lag-based autoscaler reading committed
/// offsets sees a caught-up group as caught up, and a crash after a burst redelivers nothing.
const CAUGHT_UP_COMMITS: u8 = 2;
/// How often consumer lag is measured; the watermark query is a broker round trip.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// Background commit period of stored offsets: shorter than librdkafka's 5 s default so
/// fewer messages are redelivered after a crash.
const AUTO_COMMIT_INTERVAL_MS: &str = "1000";
/// How long a crashed worker keeps its partitions: 10 s (below Kafka's 45 s default) so a
/// killed pod's partitions move on quickly; heartbeats every 3 s keep a live one safe.
const SESSION_TIMEOUT_MS: &str = "10000";
const HEARTBEAT_INTERVAL_MS: &str = "3000";
/// librdkafka's prefetch per partition (default 64 MiB). What it fetched for a partition
/// whose queue is full ends up in that partition's overflow buffer, so this bounds the
/// memory a slow partition can hold; 4 MiB still keeps fast partitions busy.
const QUEUED_MAX_KBYTES: &str = "4096";
/// How long librdkafka waits before fetching a partition again once its queue passed that
/// threshold (default 1000 ms). With a 4 MiB queue the default made the loop read a burst,
/// then sit idle for most of a second; 10 ms
/// refills the queue as soon as it drains, at the cost of a few more fetch requests.
const FETCH_QUEUE_BACKOFF_MS: &str = "10";
/// retryTopics mode: how often the consumer refreshes topic metadata (default 5 min). The
/// group subscribes to retry topics that may not exist yet; this is how soon it starts
/// reading one after it was created.
const RETRY_MODE_METADATA_REFRESH_MS: &str = "5000";

/// When a worker that was reading has caught up: a tick with no message after ticks with
/// some owes [`CAUGHT_UP_COMMITS`] commits, one per idle tick.
#[derive(Debug, Default)]
struct CaughtUp {
    received: bool,
    owed: u8,
}

impl CaughtUp {
    fn received(&mut self) {
        self.received = true;
    }

    /// An overflow tick: whether to commit now.
    fn tick(&mut self) -> bool {
        if std::mem::take(&mut self.received) {
            self.owed = CAUGHT_UP_COMMITS;
            return false;
        }
        let commit = self.owed > 0;
        self.owed = self.owed.saturating_sub(1);
        commit
    }
}

/// Totals for the summary line at exit.
#[derive(Debug, Default)]
pub struct Tally {
    processed: AtomicU64,
    dead_lettered: AtomicU64,
    retried: AtomicU64,
    failed_attempts: AtomicU64,
}

impl Tally {
    pub fn processed(&self) {
        self.processed.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }
    pub fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }
    pub fn failed_attempt(&self) {
        self.failed_attempts.fetch_add(1, Ordering::Relaxed);
    }
    /// (processed, dead-lettered, retried, failed attempts).
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        (
            self.processed.load(Ordering::Relaxed),
            self.dead_lettered.load(Ordering::Relaxed),
            self.retried.load(Ordering::Relaxed),
            self.failed_attempts.load(Ordering::Relaxed),
        )
    }
}

/// The consumer configuration on top of the connection settings.
pub fn consumer_config(settings: &Settings) -> rdkafka::ClientConfig {
    let mut config = settings.kafka.clone();
    // exactlyOnce commits offsets only in its transactions.
    let auto_commit = settings.transactional_id.is_none();
    config
        .set("group.id", &settings.group_id)
        .set("client.id", &settings.consumer_name)
        .set("enable.auto.commit", auto_commit.to_string())
        // librdkafka's default, said here: outputs of earlier stages are read only once
        // their transactions committed.
        .set("isolation.level", "read_committed")
        .set("auto.commit.interval.ms", AUTO_COMMIT_INTERVAL_MS)
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", settings.initial_offset.as_str())
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS);
    fetch_tuning(&mut config);
    if !settings.retry_topics.is_empty() {
        config.set(
            "topic.metadata.refresh.interval.ms",
            RETRY_MODE_METADATA_REFRESH_MS,
        );
    }
    config
}

/// The worker's fetch settings (prefetch bound and refill backoff), also given to the
/// benchmark's ceilings so they are measured with the same fetching.
pub fn fetch_tuning(config: &mut rdkafka::ClientConfig) -> &mut rdkafka::ClientConfig {
    config
        .set("queued.max.messages.kbytes", QUEUED_MAX_KBYTES)
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
}

/// What a finished run reports.
#[derive(Debug)]
pub struct Summary {
    pub processed: u64,
    pub dead_lettered: u64,
    pub retried: u64,
    pub failed_attempts: u64,
    /// In-flight work finished within the grace (otherwise it was abandoned unstored,
    /// to be redelivered: nothing is lost either way).
    pub drained_in_time: bool,
    /// The final commit succeeded: the process exits with code 0.
    pub clean: bool,
    /// `exactlyOnce`: the open transaction was spoiled and aborted; the caller starts the
    /// loop again, from the last committed offsets.
    pub rewind: bool,
}

impl Summary {
    /// A run that did nothing and asks to be started again (`exactlyOnce`).
    fn starting_over() -> Summary {
        Summary {
            processed: 0,
            dead_lettered: 0,
            retried: 0,
            failed_attempts: 0,
            drained_in_time: true,
            clean: false,
            rewind: true,
        }
    }
}

/// Runs the consumer until `stop` fires, then drains and closes it.
pub async fn run(
    settings: &Settings,
    metrics: Metrics,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let handler_label = settings.handler.label();
    // exactlyOnce: one transactional producer for outputs, dead letters and retry records.
    let (output, dlq_producer, txn) = match &settings.transactional_id {
        None => (
            Producer::new(&settings.kafka, settings.retry.attempt_timeout)?,
            Producer::new(&settings.kafka, settings.retry.attempt_timeout)?,
            None,
        ),
        Some(id) => {
            let (kafka, timeout, id) = (
                settings.kafka.clone(),
                settings.retry.attempt_timeout,
                id.clone(),
            );
            let started = tokio::task::spawn_blocking(move || {
                Producer::transactional(&kafka, timeout, &id).map_err(|e| {
                    format!(
                        "exactlyOnce: the transactional producer {id:?} did not start: {e}{}",
                        crate::kafka::refusal_hint(&e, "")
                            .map(|h| format!(" ({h})"))
                            .unwrap_or_default()
                    )
                })
            })
            .await?;
            match started {
                Ok((producer, txn)) => (producer.clone(), producer, Some(txn)),
                // Not ready, and tried again with the rewind's backoff: a missing ACL or
                // an unreachable transaction coordinator can be fixed without a restart.
                Err(why) => {
                    tracing::error!(reason = %why, "the transactional producer did not start; trying again");
                    return Ok(Summary::starting_over());
                }
            }
        }
    };
    let handler = Arc::new(Handler::new(
        &settings.handler,
        &settings.output_topic,
        &settings.consumer_name,
        &settings.retry,
        output.clone(),
    )?);
    let tally = Arc::new(Tally::default());
    let ctx = Arc::new(WorkerContext {
        handler: handler.clone(),
        policy: retry::RetryPolicy::new(&settings.retry),
        dlq: dlq::DlqWriter {
            topic: settings.dlq_topic.clone(),
            origin: dlq::Origin {
                group_id: settings.group_id.clone(),
                consumer_name: settings.consumer_name.clone(),
                handler: handler_label.clone(),
            },
            producer: dlq_producer.clone(),
            metrics: metrics.clone(),
        },
        retry_topics: match settings.delivery_mode {
            eventconsumer_contract::DeliveryMode::Blocking => None,
            eventconsumer_contract::DeliveryMode::RetryTopics => Some(
                retry_topics::RetryTopics::new(&settings.group_id, &settings.retry_topics),
            ),
        },
        metrics: metrics.clone(),
        tally: tally.clone(),
        ordering: settings.ordering,
        txn: txn.clone(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight)),
        held: Arc::new(tokio::sync::Semaphore::new(
            settings
                .max_in_flight
                .saturating_mul(partition::HELD_PER_CALL),
        )),
    });
    let shared = Arc::new(Shared {
        partitions: Mutex::new(rebalance::PartitionMap::new()),
        handler: handler.clone(),
        readiness: readiness.clone(),
        metrics: metrics.clone(),
        drain: settings.shutdown_grace,
        refused: std::sync::atomic::AtomicBool::new(false),
        assigned: std::sync::atomic::AtomicBool::new(false),
        committer: std::sync::OnceLock::new(),
        topic_access: TopicAccess::new(
            settings
                .topics
                .iter()
                .chain(&settings.retry_topics)
                .cloned()
                .collect(),
            settings
                .kafka
                .clone()
                .set(
                    "client.id",
                    format!("{}-read-check", settings.consumer_name),
                )
                .set("group.id", &settings.group_id)
                .clone(),
        ),
    });
    let consumer: Arc<LoopConsumer> =
        Arc::new(consumer_config(settings).create_with_context(LoopContext {
            shared: shared.clone(),
        })?);
    // In retryTopics mode the group also reads its own retry topics.
    let topics: Vec<&str> = settings
        .topics
        .iter()
        .chain(&settings.retry_topics)
        .map(String::as_str)
        .collect();
    consumer.subscribe(&topics)?;
    let control: Arc<ConsumerRef> = Arc::new(ConsumerRef {
        consumer: Arc::downgrade(&consumer),
        txn: txn.clone(),
    });
    let committer = txn.as_ref().map(|txn| {
        Arc::new(Committer {
            txn: txn.clone(),
            producer: output.clone(),
            control: control.clone(),
        })
    });
    if let Some(c) = &committer {
        let _ = shared.committer.set(c.clone());
    }
    tracing::info!(
        handler = %handler_label, topics = %settings.topics.join(","), group = %settings.group_id,
        output = %settings.output_topic, dlq = %settings.dlq_topic,
        delivery_mode = settings.delivery_mode.as_str(),
        retry_topics = %settings.retry_topics.join(","),
        transactional_id = settings.transactional_id.as_deref().unwrap_or("(at least once)"),
        "consumer started"
    );

    warn_about_missing_topics(&consumer, settings).await;

    // Aborts everything still running when the drain time is up.
    let hard = CancellationToken::new();
    let windows = handler.as_analytics().map(|_| {
        let handler = handler.clone();
        let hard = hard.clone();
        tokio::spawn(async move {
            if let Some(a) = handler.as_analytics() {
                a.run_windows(hard).await;
            }
        })
    });
    let lag_stop = CancellationToken::new();
    let lag = tokio::spawn(measure_lag(
        Arc::downgrade(&consumer),
        shared.clone(),
        lag_stop.clone(),
    ));

    let commits_stop = CancellationToken::new();
    let commits = committer.clone().map(|c| {
        tokio::spawn(transact::run_commits(
            c,
            Arc::downgrade(&consumer),
            shared.clone(),
            commits_stop.clone(),
        ))
    });
    // Never cancelled at least once.
    let rewind = txn.as_ref().map(|t| t.rewind().clone()).unwrap_or_default();

    let mut tick = tokio::time::interval(OVERFLOW_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut caught_up = CaughtUp::default();
    // Stop or rewind as one token, checked per message without a wait on it: polling a
    // token's `cancelled()` registers with it and unregisters again, a lock each, and the
    // dispatcher did that for two tokens per message (callgrind).
    let quit = CancellationToken::new();
    let quit_on = tokio::spawn({
        let (stop, rewind, quit) = (stop.clone(), rewind.clone(), quit.clone());
        async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = rewind.cancelled() => {}
            }
            quit.cancel();
        }
    });
    loop {
        if quit.is_cancelled() {
            break;
        }
        tokio::select! {
            biased;
            // A message first: the other branches are polled only when none is ready.
            received = consumer.recv() => match received {
                Ok(msg) => {
                    caught_up.received();
                    hand_over(&shared, msg.detach(), |topic, partition| {
                        PartitionHandle::spawn(topic, partition, ctx.clone(), control.clone(), &hard)
                    })
                    .await;
                }
                Err(e) => shared.consumer_error(&e, ""),
            },
            _ = quit.cancelled() => break,
            _ = tick.tick() => {
                for handle in lock_partitions(&shared.partitions).values_mut() {
                    handle.drain_overflow();
                }
                // At least once (a transaction commits on its own clock).
                if caught_up.tick() && committer.is_none() {
                    // Asynchronous: the commit callback logs a failure; nothing new to
                    // commit is not one.
                    if let Err(e) = consumer.commit_consumer_state(CommitMode::Async)
                        && !is_no_offset(&e)
                    {
                        tracing::debug!(error = %e, "caught-up commit not sent");
                    }
                }
                if shared.topic_access.claim(Instant::now()) {
                    tokio::task::spawn_blocking({
                        let shared = shared.clone();
                        move || check_topic_access(&shared)
                    });
                }
            }
        }
    }

    quit_on.abort();
    // Shutdown: no more fetching from here on.
    tracing::info!(
        grace_s = settings.shutdown_grace.as_secs_f64(),
        "stopping: draining in-flight work"
    );
    readiness.set(false);
    lag_stop.cancel();
    let rewinding = rewind.is_cancelled();
    if rewinding {
        // The transaction aborts: nothing in progress can be kept, so nothing waits.
        hard.cancel();
    }
    let running: Vec<_> = lock_partitions(&shared.partitions).drain().collect();
    let deadline = tokio::time::Instant::now() + settings.shutdown_grace;
    drain(running, &handler, &metrics, settings.shutdown_grace).await;
    hard.cancel();
    if let Some(w) = windows {
        let _ = w.await;
    }
    let _ = lag.await;
    commits_stop.cancel();
    if let Some(c) = commits {
        let _ = c.await;
    }
    let drained_in_time = tokio::time::Instant::now() <= deadline;
    let committed = match &committer {
        Some(c) => {
            let outcome = if rewind.is_cancelled() {
                Err(c.txn.spoiled().unwrap_or_default())
            } else {
                c.commit(&shared.partitions, &*consumer).await.map(|_| ())
            };
            match outcome {
                Ok(()) => true,
                Err(why) => {
                    metrics.commit_failures.inc();
                    tracing::error!(reason = %why, "final transaction not committed; it is aborted");
                    c.abort().await;
                    false
                }
            }
        }
        None => match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => true,
            Err(e) if is_no_offset(&e) => true,
            Err(e) => {
                metrics.commit_failures.inc();
                tracing::error!(error = %e, "final commit failed");
                false
            }
        },
    };
    // Leave the group now rather than when the last reference happens to drop.
    consumer.unsubscribe();
    drop(control);
    drop(committer);
    drop(ctx);
    match Arc::try_unwrap(consumer) {
        Ok(consumer) => drop(consumer),
        Err(_) => tracing::warn!("consumer still referenced at shutdown"),
    }
    output.flush(Duration::from_secs(5));
    dlq_producer.flush(Duration::from_secs(5));
    let (processed, dead_lettered, retried, failed_attempts) = tally.totals();
    tracing::info!(
        processed,
        dead_lettered,
        retried,
        failed_attempts,
        committed,
        drained_in_time,
        uptime_s = started.elapsed().as_secs(),
        "worker stopped: {processed} processed, {dead_lettered} dead-lettered, {retried} retries, offsets {}",
        if committed {
            "committed"
        } else {
            "NOT committed"
        }
    );
    Ok(Summary {
        processed,
        dead_lettered,
        retried,
        failed_attempts,
        drained_in_time,
        clean: committed,
        rewind: rewind.is_cancelled() && !stop.is_cancelled(),
    })
}

/// Hands a fetched message to its partition's task (started by `start` for a partition
/// seen for the first time). A full queue gets [`partition::ROOM_WAIT`] to make room, and
/// only then is the message buffered and the partition paused. The wait is not under the
/// lock; nothing else dispatches meanwhile (the loop is the only dispatcher, and
/// rebalances run inside its `recv()`), so the partition's order holds.
async fn hand_over(
    shared: &Shared,
    msg: OwnedMessage,
    start: impl FnOnce(&str, i32) -> PartitionHandle,
) {
    let (msg, room) = {
        let key = TopicPartition(msg.topic(), msg.partition());
        let mut map = lock_partitions(&shared.partitions);
        let handle = map.entry_ref(&key).or_insert_with(|| start(key.0, key.1));
        match handle.dispatch(msg) {
            Dispatch::Queued => return,
            Dispatch::Ended(msg) => {
                map.remove(&TopicPartition(msg.topic(), msg.partition()));
                return;
            }
            Dispatch::Full(msg) => (msg, handle.room()),
        }
    };
    let roomy = tokio::time::timeout(partition::ROOM_WAIT, room)
        .await
        .is_ok();
    let mut map = lock_partitions(&shared.partitions);
    let Some(handle) = map.get_mut(&TopicPartition(msg.topic(), msg.partition())) else {
        return;
    };
    match if roomy {
        handle.dispatch(msg)
    } else {
        Dispatch::Full(msg)
    } {
        Dispatch::Queued => {}
        Dispatch::Ended(msg) => {
            map.remove(&TopicPartition(msg.topic(), msg.partition()));
        }
        Dispatch::Full(msg) => handle.overflow_and_pause(msg),
    }
}

/// Runs a [`TopicAccess`] check, names what changed and updates readiness.
fn check_topic_access(shared: &Shared) {
    match shared.topic_access.check() {
        Change::Same => return,
        Change::Refused(topics) => {
            let needs = topics
                .iter()
                .map(|t| format!("Read on topic {t}"))
                .collect::<Vec<_>>()
                .join(", ");
            tracing::error!(
                needs,
                hint = "an ACL is missing: the worker reads nothing from these topics and is \
                        not ready until it is granted (README, Kafka ACLs)",
                "Kafka refused this worker: an ACL is missing: this principal needs {needs}"
            );
        }
        Change::Cleared => tracing::info!("the brokers now let this worker read every topic"),
    }
    shared.update_readiness();
}

/// Logs a warning for an output or dead-letter topic the brokers do not have. Nothing
/// stops: with auto-creation off, sends to it fail and are retried (the partition pauses for
/// the DLQ) until someone creates it, and this line says why up front.
async fn warn_about_missing_topics(consumer: &Arc<LoopConsumer>, settings: &Settings) {
    let topics: Vec<(&'static str, String)> = [
        ("output", settings.output_topic.clone()),
        ("dead-letter", settings.dlq_topic.clone()),
    ]
    .into_iter()
    .chain(settings.retry_topics.iter().map(|t| ("retry", t.clone())))
    .collect();
    let c = consumer.clone();
    let missing = tokio::task::spawn_blocking(move || {
        topics
            .into_iter()
            // --no-output (a testing aid) has no output topic to look for.
            .filter(|(_, topic)| topic != crate::config::NO_OUTPUT_TOPIC)
            .filter(|(_, topic)| {
                match c.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                    Ok(md) => md
                        .topics()
                        .first()
                        .is_none_or(|t| t.error().is_some() || t.partitions().is_empty()),
                    // Brokers unreachable: the consumer reports that on its own.
                    Err(_) => false,
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (role, topic) in missing {
        tracing::warn!(topic = %topic, role, "the {role} topic does not exist; sends to it fail and are retried until it is created");
    }
}

/// Sets the lag gauge of every owned partition: high watermark − stored position.
async fn measure_lag(consumer: Weak<LoopConsumer>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut every = tokio::time::interval(LAG_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let owned: Vec<(String, i32, Option<i64>)> = lock_partitions(&shared.partitions)
            .iter()
            .map(|((t, p), h)| (t.clone(), *p, offsets::lock(&h.offsets).stored()))
            .collect();
        let Some(c) = consumer.upgrade() else { return };
        let measured = tokio::task::spawn_blocking(move || {
            owned
                .into_iter()
                .filter_map(|(t, p, stored)| {
                    let (_, high) = c.fetch_watermarks(&t, p, Duration::from_secs(2)).ok()?;
                    Some((t, p, high - stored?))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (topic, partition, lag) in measured {
            shared
                .metrics
                .lag
                .get_or_create(&PartitionLabels { topic, partition })
                .set(lag.max(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use rdkafka::mocking::MockCluster;

    fn settings(bootstrap: &str) -> Settings {
        let argv = [
            "w",
            "run",
            "--handler",
            "order",
            "--action",
            "inventory",
            "--topics",
            "in",
            "--group-id",
            "g",
            "--output-topic",
            "out",
            "--dlq-topic",
            "in.dlq",
            "--bootstrap-servers",
            bootstrap,
            "--shutdown-grace",
            "5",
        ];
        let Command::Run(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("run")
        };
        Settings::from_args(&args).unwrap()
    }

    fn order(id: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "order_id": id, "customer_id": "c",
            "items": [{"product_id": "p", "quantity": 1, "price": 2.5}],
            "total": 2.5, "created_at": "t",
        }))
        .unwrap()
    }

    #[test]
    fn a_worker_commits_on_the_first_idle_ticks_after_reading_and_not_while_busy_or_long_idle() {
        let mut c = CaughtUp::default();
        assert!(!c.tick(), "nothing read yet");
        c.received();
        assert!(!c.tick(), "still reading");
        c.received();
        assert!(!c.tick(), "still reading");
        let idle: Vec<bool> = (0..4).map(|_| c.tick()).collect();
        assert_eq!(idle, vec![true, true, false, false]);
        assert_eq!(usize::from(CAUGHT_UP_COMMITS), 2);
        c.received();
        assert!(!c.tick());
        assert!(c.tick(), "caught up again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_loop_commits_offsets_of_processed_and_dead_lettered_messages_on_a_mock_cluster() {
        let cluster = MockCluster::new(1).unwrap();
        for (topic, partitions) in [("in", 2), ("out", 1), ("in.dlq", 1)] {
            cluster.create_topic(topic, partitions, 1).unwrap();
        }
        let bootstrap = cluster.bootstrap_servers();
        let s = settings(&bootstrap);
        let producer = Producer::new(&s.kafka, Duration::from_secs(5)).unwrap();
        for (i, value) in [order("o-1"), order("o-2"), b"poison".to_vec(), order("o-3")]
            .iter()
            .enumerate()
        {
            let key = format!("k{}", i % 2);
            producer
                .send("in", Some(key.as_bytes()), value, None)
                .await
                .unwrap();
        }
        let (_registry, metrics) = crate::metrics::registry_with("order/inventory");
        let readiness = Arc::new(Readiness::default());
        let stop = CancellationToken::new();
        let run = tokio::spawn({
            let (s, readiness, stop) = (s.clone(), readiness.clone(), stop.clone());
            async move { super::run(&s, metrics, readiness, stop).await }
        });

        let checker: Arc<BaseConsumer> =
            Arc::new(consumer_config(&s).set("group.id", "g").create().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = checker.clone();
            let committed = tokio::task::spawn_blocking(move || {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition("in", 0);
                tpl.add_partition("in", 1);
                c.committed_offsets(tpl, Duration::from_secs(2))
                    .map(|t| {
                        t.elements()
                            .iter()
                            .filter_map(|e| match e.offset() {
                                Offset::Offset(o) => Some(o),
                                _ => None,
                            })
                            .sum::<i64>()
                    })
                    .unwrap_or(0)
            })
            .await
            .unwrap();
            if committed == 4 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {committed} of 4 offsets committed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(readiness.get(), "ready while assigned");
        stop.cancel();
        let summary = run.await.unwrap().unwrap();
        assert_eq!((summary.processed, summary.dead_lettered), (3, 1));
        assert!(summary.clean);
        assert!(!readiness.get(), "not ready after stopping");
    }
}
