//! The Kafka side of one redrive, run on a blocking thread: take the end offsets of the
//! dead-letter topic, then read it from the committed position up to them and replay the
//! selected records in transactions.
//!
//! # Exactly once
//!
//! The replayed records and the position in the dead-letter topic are committed in one
//! Kafka transaction (`send_offsets_to_transaction` with the redrive's own consumer group,
//! `eventconsumer-redrive.<uid>`). The transactional id is derived from the redrive's uid as
//! well, so a new operator (after a crash, or when leadership moves) fences the old one at
//! `init_transactions` and aborts its open transaction — first thing, before it reads the
//! committed position, which a `read_committed` reader cannot read while that transaction is
//! open: so a resume never waits for the dead instance's transaction to time out. Either a batch's records and its
//! position are both visible to `read_committed` readers, or neither is; a restart resumes at
//! the committed position. The counters travel with the position as the committed offset's
//! metadata, so they are exact too, even when the operator stops between a commit and the
//! status write that reports it.
//!
//! # No loop
//!
//! The end offsets are taken once, stored in status before anything is replayed, and never
//! moved: a replayed record that fails again lands in the dead-letter topic after them, and
//! this redrive does not replay it again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use eventconsumer_contract::acl::{self, Acl, ResourceType};
use k8s_openapi::jiff::Timestamp;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::resource::{DeadLetterRedriveStatus, PartitionProgress, Phase, SkippedBy};
use super::select::{Decision, RecordHeader, Selection, SkipReason, decide};
use super::status::{self, StatusWriter, Written};
use crate::kafka::KafkaAccess;
use crate::lag::{RefusalContext, authentication_refused, group_refused};
use crate::status::{KAFKA_AUTHENTICATION_FAILED, KAFKA_AUTHORIZATION_FAILED};

/// Timeout of each blocking Kafka call (metadata, watermarks, committed offsets,
/// transaction steps): long enough for a broker under load or a coordinator election,
/// short enough that an unreachable cluster shows up in status within a minute.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// Most dead-letter records read per transaction: large enough that the commit (a few round
/// trips) and the status write after it stay cheap per record, small enough that progress
/// shows often and a crash redoes little.
const TRANSACTION_MAX_RECORDS: usize = 500;
/// Longest a transaction stays open, so a slow trickle of records still commits (and shows
/// progress) every second.
const TRANSACTION_MAX_TIME: Duration = Duration::from_secs(1);
/// `transaction.timeout.ms` of the redrive's producer: how long the broker keeps a
/// transaction open without it ending. A transaction lasts [`TRANSACTION_MAX_TIME`] plus its
/// commit, so 15 s leaves room for a slow broker; it bounds how long a transaction of an
/// instance that died stays open when no instance takes over and fences it (which the next
/// one does at once), holding back `read_committed` readers of the replay targets (the
/// librdkafka default of 60 s held them four times longer).
const TRANSACTION_TIMEOUT_MS: &str = "15000";
/// How long one poll waits for records before checking for cancellation and the batch time.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Prefix of the consumer group and transactional id of a redrive, followed by its uid.
pub const ID_PREFIX: &str = eventconsumer_contract::acl::REDRIVE_ID_PREFIX;
/// How long a full producer queue is given to drain before the send is tried again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(50);

/// The redrive's consumer: its context keeps the refusals that only reach it as events.
type DeadLetterConsumer = BaseConsumer<RefusalContext>;
type ReplayProducer = ThreadedProducer<DefaultProducerContext>;
/// How long [`transaction_failed`] waits for the transaction's own error: it is known at once,
/// and the bound keeps a hung broker from holding the redrive longer than its other steps.
const CAUSE_WAIT: Duration = Duration::from_secs(5);

/// A failed transaction step as the error to report. A record the brokers refused (no Write
/// on its topic) makes the transaction abortable, and the next step may fail only with an
/// erroneous state; a commit then cannot succeed, and answers with the error that made the
/// transaction abortable, which names the refusal. `needs`: every ACL the transaction takes.
fn transaction_failed(
    producer: &ReplayProducer,
    action: &str,
    error: KafkaError,
    needs: Vec<Acl>,
) -> ReplayError {
    let abortable = matches!(&error, KafkaError::Transaction(e) if e.txn_requires_abort());
    let mut source = error;
    // Only in the abortable state, where the commit is sure to fail.
    if abortable
        && refused_kind(&source).is_none()
        && let Err(cause) = producer.commit_transaction(CAUSE_WAIT)
        && refused_kind(&cause).is_some()
    {
        source = cause;
    }
    ReplayError::Kafka {
        action: action.to_owned(),
        source,
        needs: needs.into(),
    }
}

/// Why a redrive could not make progress against Kafka; the caller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// `needs`: the ACLs the action takes, of which the message names those of the kind a
    /// refusal names (topic, group, transactional id).
    #[error("{action}: {source}{}", missing_acl(.source, .needs))]
    Kafka {
        action: String,
        #[source]
        source: KafkaError,
        needs: Box<[Acl]>,
    },
    #[error("topic {topic:?} does not exist")]
    TopicMissing { topic: String },
    #[error(
        "partition {partition} of dead-letter topic {topic:?} is gone (the topic has {partitions} partitions now); the redrive cannot complete"
    )]
    PartitionGone {
        topic: String,
        partition: i32,
        partitions: i32,
    },
    #[error("the consumer of group {group:?} has no group metadata to commit with")]
    NoGroupMetadata { group: String },
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
}

impl ReplayError {
    fn kafka(action: impl Into<String>) -> impl FnOnce(KafkaError) -> ReplayError {
        ReplayError::kafka_needing(action, Vec::new())
    }

    /// Like [`Self::kafka`], for an action that takes the ACLs `needs`.
    fn kafka_needing(
        action: impl Into<String>,
        needs: Vec<Acl>,
    ) -> impl FnOnce(KafkaError) -> ReplayError {
        let action = action.into();
        move |source| ReplayError::Kafka {
            action,
            source,
            needs: needs.into(),
        }
    }

    /// CamelCase reason for the `Blocked` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            ReplayError::Kafka { source, .. } if refused_kind(source).is_some() => {
                KAFKA_AUTHORIZATION_FAILED
            }
            ReplayError::Kafka { source, .. } if authentication_refused(source) => {
                KAFKA_AUTHENTICATION_FAILED
            }
            ReplayError::Kafka { .. } => "KafkaUnavailable",
            ReplayError::TopicMissing { .. } => "TopicMissing",
            ReplayError::PartitionGone { .. } => "PartitionGone",
            ReplayError::NoGroupMetadata { .. } => "KafkaUnavailable",
            ReplayError::Status(_) => "StatusWriteFailed",
        }
    }

    /// True when retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ReplayError::PartitionGone { .. })
    }
}

/// The kind of resource the brokers refused this principal, when `error` is such a refusal.
fn refused_kind(error: &KafkaError) -> Option<ResourceType> {
    use RDKafkaErrorCode as C;
    match error.rdkafka_error_code()? {
        C::TopicAuthorizationFailed => Some(ResourceType::Topic),
        C::GroupAuthorizationFailed => Some(ResourceType::Group),
        C::TransactionalIdAuthorizationFailed => Some(ResourceType::TransactionalId),
        C::ClusterAuthorizationFailed => Some(ResourceType::Cluster),
        _ => None,
    }
}

/// What a refusal adds to the message: the ACLs of `needs` of the refused kind.
fn missing_acl(error: &KafkaError, needs: &[Acl]) -> String {
    let Some(kind) = refused_kind(error) else {
        return String::new();
    };
    let named: Vec<String> = needs
        .iter()
        .filter(|acl| acl.resource == kind)
        .map(Acl::to_string)
        .collect();
    if named.is_empty() {
        "; an ACL is missing (README, Kafka ACLs)".to_owned()
    } else {
        format!(
            "; an ACL is missing: this principal needs {}",
            named.join(" and ")
        )
    }
}

/// How a run ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every partition reached its end offset; status says Succeeded.
    Succeeded { replayed: i64, skipped: i64 },
    /// Cancelled (deleted, shutdown, leadership lost): the open transaction is left to be
    /// aborted by the next instance's fencing or the broker's transaction timeout.
    Stopped,
}

/// Everything one run needs.
pub struct Job {
    pub access: KafkaAccess,
    pub uid: String,
    /// The dead-letter topic, used only when the redrive has not started yet.
    pub dead_letter_topic: String,
    pub selection: Selection,
    pub status: DeadLetterRedriveStatus,
}

/// Per-partition counters, committed as the offset's metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub scanned: i64,
    pub replayed: i64,
    pub filter: i64,
    pub max_redrives: i64,
    pub invalid: i64,
}

impl Counts {
    /// The offset metadata form: `v1 <scanned> <replayed> <filter> <maxRedrives> <invalid>`.
    pub fn encode(&self) -> String {
        format!(
            "v1 {} {} {} {} {}",
            self.scanned, self.replayed, self.filter, self.max_redrives, self.invalid
        )
    }

    /// Reads [`Counts::encode`]; `None` for anything else (no commit yet).
    pub fn decode(metadata: &str) -> Option<Counts> {
        let mut parts = metadata.split(' ');
        if parts.next() != Some("v1") {
            return None;
        }
        let mut next = || parts.next().and_then(|n| n.parse::<i64>().ok());
        let counts = Counts {
            scanned: next()?,
            replayed: next()?,
            filter: next()?,
            max_redrives: next()?,
            invalid: next()?,
        };
        Some(counts)
    }

    fn add(&mut self, other: &Counts) {
        self.scanned += other.scanned;
        self.replayed += other.replayed;
        self.filter += other.filter;
        self.max_redrives += other.max_redrives;
        self.invalid += other.invalid;
    }

    fn skip(&mut self, reason: SkipReason) {
        match reason {
            SkipReason::Filter => self.filter += 1,
            SkipReason::MaxRedrives => self.max_redrives += 1,
            SkipReason::Invalid => self.invalid += 1,
        }
    }
}

/// Writes the totals of `counts` into `status`.
fn report(status: &mut DeadLetterRedriveStatus, counts: &BTreeMap<i32, Counts>) {
    let mut total = Counts::default();
    counts.values().for_each(|c| total.add(c));
    status.scanned = total.scanned;
    status.replayed = total.replayed;
    status.skipped_by = SkippedBy {
        filter: total.filter,
        max_redrives: total.max_redrives,
        invalid: total.invalid,
    };
    status.skipped = total.filter + total.max_redrives + total.invalid;
}

fn now() -> String {
    Timestamp::now().to_string()
}

/// Runs the redrive until it succeeds, is cancelled, or fails. Blocking.
pub fn run(
    job: Job,
    writer: &StatusWriter,
    cancel: &CancellationToken,
) -> Result<Ended, ReplayError> {
    let Job {
        access,
        uid,
        dead_letter_topic,
        selection,
        mut status,
    } = job;
    let id = format!("{ID_PREFIX}{uid}");
    let consumer: DeadLetterConsumer = access
        .client_config()
        .set("group.id", &id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create_with_context(RefusalContext::default())
        .map_err(ReplayError::kafka("creating the dead-letter consumer"))?;

    // 1. The snapshot, stored before anything is replayed.
    if status.partitions.is_empty() {
        let partitions = partition_count(
            &consumer,
            &dead_letter_topic,
            acl::redrive_read(&dead_letter_topic),
        )?;
        let mut progress = Vec::new();
        for partition in 0..partitions {
            let (low, high) = consumer
                .fetch_watermarks(&dead_letter_topic, partition, KAFKA_TIMEOUT)
                .map_err(ReplayError::kafka_needing(
                    format!("reading the end offset of {dead_letter_topic}/{partition}"),
                    vec![acl::redrive_read(&dead_letter_topic)],
                ))?;
            progress.push(PartitionProgress {
                partition,
                end_offset: high,
                position: low,
            });
        }
        status.phase = Some(Phase::Running);
        status.started_at = Some(now());
        status.dead_letter_topic = Some(dead_letter_topic.clone());
        status.consumer_group = Some(selection.group.clone());
        status.partitions = progress;
        status.message = Some(running(&selection.group, &dead_letter_topic));
        status::set_condition(&mut status, status::BLOCKED, false, "Running", "");
        if writer.write(&status).map_err(ReplayError::Status)? == Written::Gone {
            return Ok(Ended::Stopped);
        }
    }
    let topic = status
        .dead_letter_topic
        .clone()
        .unwrap_or(dead_letter_topic);
    let now_partitions = partition_count(&consumer, &topic, acl::redrive_read(&topic))?;
    if let Some(gone) = status
        .partitions
        .iter()
        .find(|p| p.partition >= now_partitions && p.position < p.end_offset)
    {
        return Err(ReplayError::PartitionGone {
            topic,
            partition: gone.partition,
            partitions: now_partitions,
        });
    }
    let mut selection = selection;
    if let Some(group) = &status.consumer_group {
        selection.group = group.clone();
    }
    for (source, count) in selection.source_topics.iter_mut() {
        *count = partition_count(&consumer, source, acl::redrive_write(source))?;
    }
    let end: BTreeMap<i32, i64> = status
        .partitions
        .iter()
        .map(|p| (p.partition, p.end_offset))
        .collect();

    // 2. Fence the previous instance before reading where it left off. An instance that died
    //    between adding its position to a transaction and committing it leaves pending
    //    offsets in the redrive's group, and a `read_committed` read of committed offsets
    //    (KIP-447's require_stable) waits until that transaction ends: before this order the
    //    read waited for the broker to abort it at the transaction timeout (60 s by default)
    //    and failed as if Kafka were down. `init_transactions` with the same transactional id
    //    aborts the open transaction at once, and returns only when the abort is complete.
    let producer: ReplayProducer = access
        .client_config()
        .set("transactional.id", &id)
        .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)
        .create()
        .map_err(ReplayError::kafka("creating the transactional producer"))?;
    producer
        .init_transactions(KAFKA_TIMEOUT)
        .map_err(ReplayError::kafka_needing(
            format!(
                "initialising transactions of {id} (which fences and aborts a previous instance's open transaction)"
            ),
            vec![acl::redrive_transactional_id()],
        ))?;

    // 3. Where the last committed transaction left off.
    let mut query = TopicPartitionList::new();
    for partition in end.keys() {
        query.add_partition(&topic, *partition);
    }
    let committed = consumer
        .committed_offsets(query, KAFKA_TIMEOUT)
        .map_err(|error| {
            // A refused group only times out; name the refusal instead.
            let source = if group_refused(&consumer, &error) {
                KafkaError::MetadataFetch(RDKafkaErrorCode::GroupAuthorizationFailed)
            } else {
                error
            };
            ReplayError::Kafka {
                action: format!("reading the committed offsets of {id}"),
                source,
                needs: Box::new([acl::redrive_group()]),
            }
        })?;
    let mut positions: BTreeMap<i32, Option<i64>> = BTreeMap::new();
    let mut counts: BTreeMap<i32, Counts> = BTreeMap::new();
    for element in committed.elements_for_topic(&topic) {
        let position = match element.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        positions.insert(element.partition(), position);
        counts.insert(
            element.partition(),
            Counts::decode(element.metadata()).unwrap_or_default(),
        );
    }
    let mut remaining: BTreeSet<i32> = end
        .iter()
        .filter(|(p, e)| {
            let position = positions.get(p).copied().flatten();
            let start = status.partitions.iter().find(|s| s.partition == **p);
            position.or(start.map(|s| s.position)).unwrap_or(0) < **e
        })
        .map(|(p, _)| *p)
        .collect();
    sync_positions(&mut status, &positions);
    report(&mut status, &counts);

    if !remaining.is_empty() {
        let mut assignment = TopicPartitionList::new();
        for partition in &remaining {
            let offset = match positions.get(partition).copied().flatten() {
                Some(o) => Offset::Offset(o),
                None => Offset::Beginning,
            };
            assignment
                .add_partition_offset(&topic, *partition, offset)
                .map_err(ReplayError::kafka("assigning the dead-letter partitions"))?;
        }
        consumer
            .assign(&assignment)
            .map_err(ReplayError::kafka("assigning the dead-letter partitions"))?;
        let group = consumer
            .group_metadata()
            .ok_or_else(|| ReplayError::NoGroupMetadata { group: id.clone() })?;
        // Running again after a wait: the message of the wait no longer applies.
        status.message = Some(running(&selection.group, &topic));
        status::set_condition(&mut status, status::BLOCKED, false, "Running", "");
        if writer.write(&status).map_err(ReplayError::Status)? == Written::Gone {
            return Ok(Ended::Stopped);
        }

        // What a transaction does: write the source topics, add the position in the group.
        let transaction_needs: Vec<Acl> = selection
            .source_topics
            .keys()
            .map(|t| acl::redrive_write(t))
            .chain([acl::redrive_group(), acl::redrive_transactional_id()])
            .collect();
        while !remaining.is_empty() {
            if cancel.is_cancelled() {
                return Ok(Ended::Stopped);
            }
            producer
                .begin_transaction()
                .map_err(ReplayError::kafka_needing(
                    "beginning a transaction",
                    vec![acl::redrive_transactional_id()],
                ))?;
            let mut moved: BTreeSet<i32> = BTreeSet::new();
            let mut read = 0;
            let started = Instant::now();
            while read < TRANSACTION_MAX_RECORDS
                && started.elapsed() < TRANSACTION_MAX_TIME
                && !remaining.is_empty()
            {
                if cancel.is_cancelled() {
                    // A crash between produce and commit: the transaction stays open and is
                    // aborted by the next instance's init_transactions.
                    return Ok(Ended::Stopped);
                }
                let message = match consumer.poll(POLL_INTERVAL) {
                    None => continue,
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        // At the end of what can be read, yet before the end offset: either
                        // only transaction markers or aborted records were left (the
                        // consumer's position skipped them), or retention deleted the rest
                        // (the low watermark passed the end offset).
                        let Some(&partition_end) = end.get(&partition) else {
                            continue;
                        };
                        let position = current_position(&consumer, &topic, partition);
                        let low = consumer
                            .fetch_watermarks(&topic, partition, KAFKA_TIMEOUT)
                            .ok()
                            .map(|(low, _)| low);
                        if position.max(low).is_some_and(|p| p >= partition_end) {
                            positions.insert(partition, Some(partition_end));
                            moved.insert(partition);
                            finish_partition(&consumer, &topic, partition, &mut remaining);
                        }
                        continue;
                    }
                    Some(Err(error)) => {
                        return Err(ReplayError::Kafka {
                            action: format!("reading {topic}"),
                            source: error,
                            needs: Box::new([acl::redrive_read(&topic)]),
                        });
                    }
                    Some(Ok(message)) => message,
                };
                let partition = message.partition();
                let offset = message.offset();
                let Some(&partition_end) = end.get(&partition) else {
                    continue;
                };
                if offset >= partition_end {
                    positions.insert(partition, Some(partition_end));
                    moved.insert(partition);
                    finish_partition(&consumer, &topic, partition, &mut remaining);
                    continue;
                }
                read += 1;
                let count = counts.entry(partition).or_default();
                count.scanned += 1;
                let headers: Vec<RecordHeader> = message
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                match decide(&selection, message.timestamp().to_millis(), &headers) {
                    Decision::OtherGroup => {}
                    Decision::Skip(reason) => count.skip(reason),
                    Decision::Replay(replay) => {
                        let mut out = OwnedHeaders::new_with_capacity(replay.headers.len());
                        for (key, value) in &replay.headers {
                            out = out.insert(Header {
                                key,
                                value: value.as_deref(),
                            });
                        }
                        let mut record: BaseRecord<'_, [u8], [u8]> =
                            BaseRecord::to(&replay.topic).headers(out);
                        if let Some(key) = message.key() {
                            record = record.key(key);
                        }
                        if let Some(payload) = message.payload() {
                            record = record.payload(payload);
                        }
                        if let Some(p) = replay.partition {
                            record = record.partition(p);
                        }
                        send(&producer, record)?;
                        count.replayed += 1;
                    }
                }
                positions.insert(partition, Some(offset + 1));
                moved.insert(partition);
                if offset + 1 >= partition_end {
                    finish_partition(&consumer, &topic, partition, &mut remaining);
                }
            }
            let mut offsets = TopicPartitionList::new();
            for partition in &moved {
                if let Some(Some(position)) = positions.get(partition) {
                    let mut element = offsets.add_partition(&topic, *partition);
                    element
                        .set_offset(Offset::Offset(*position))
                        .map_err(ReplayError::kafka("recording the position"))?;
                    element
                        .set_metadata(counts.get(partition).copied().unwrap_or_default().encode());
                }
            }
            if offsets.count() > 0 {
                producer
                    .send_offsets_to_transaction(&offsets, &group, KAFKA_TIMEOUT)
                    .map_err(|error| {
                        transaction_failed(
                            &producer,
                            "adding the position to the transaction",
                            error,
                            transaction_needs.clone(),
                        )
                    })?;
            }
            if let Err(error) = producer.commit_transaction(KAFKA_TIMEOUT) {
                let failed = transaction_failed(
                    &producer,
                    "committing a transaction",
                    error,
                    transaction_needs.clone(),
                );
                // Best effort: a fenced or fatal producer cannot abort, and the next
                // instance's init_transactions aborts whatever is left open.
                let _ = producer.abort_transaction(KAFKA_TIMEOUT);
                return Err(failed);
            }
            if !moved.is_empty() || remaining.is_empty() {
                sync_positions(&mut status, &positions);
                report(&mut status, &counts);
                if writer.write(&status).map_err(ReplayError::Status)? == Written::Gone {
                    return Ok(Ended::Stopped);
                }
            }
        }
    }

    for progress in &mut status.partitions {
        progress.position = progress.position.max(progress.end_offset);
    }
    status.phase = Some(Phase::Succeeded);
    status.completed_at = Some(now());
    status.message = Some(format!(
        "replayed {} dead letters of group {}, skipped {}",
        status.replayed, selection.group, status.skipped
    ));
    status::set_condition(&mut status, status::BLOCKED, false, "Succeeded", "");
    status::set_condition(
        &mut status,
        status::COMPLETE,
        true,
        "Succeeded",
        "every dead letter up to the end offsets taken at the start was handled",
    );
    writer.write(&status).map_err(ReplayError::Status)?;
    Ok(Ended::Succeeded {
        replayed: status.replayed,
        skipped: status.skipped,
    })
}

fn running(group: &str, topic: &str) -> String {
    format!(
        "replaying the dead letters of group {group} in {topic} up to the end offsets taken at the start"
    )
}

/// `needs`: the ACL that lets this principal see `topic`.
fn partition_count(
    consumer: &DeadLetterConsumer,
    topic: &str,
    needs: Acl,
) -> Result<i32, ReplayError> {
    let action = format!("reading the metadata of {topic}");
    let metadata = consumer
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .map_err(ReplayError::kafka_needing(
            action.clone(),
            vec![needs.clone()],
        ))?;
    match metadata.topics().first() {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(i32::try_from(t.partitions().len()).unwrap_or(i32::MAX))
        }
        // Not "missing": the brokers hide a topic this principal may not describe.
        Some(t)
            if t.error().map(RDKafkaErrorCode::from)
                == Some(RDKafkaErrorCode::TopicAuthorizationFailed) =>
        {
            Err(ReplayError::Kafka {
                action,
                source: KafkaError::MetadataFetch(RDKafkaErrorCode::TopicAuthorizationFailed),
                needs: Box::new([needs]),
            })
        }
        _ => Err(ReplayError::TopicMissing {
            topic: topic.to_owned(),
        }),
    }
}

fn current_position(consumer: &DeadLetterConsumer, topic: &str, partition: i32) -> Option<i64> {
    let positions = consumer.position().ok()?;
    match positions.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

fn finish_partition(
    consumer: &DeadLetterConsumer,
    topic: &str,
    partition: i32,
    remaining: &mut BTreeSet<i32>,
) {
    if remaining.remove(&partition) {
        let mut done = TopicPartitionList::new();
        done.add_partition(topic, partition);
        // Pausing only saves fetching records past the end offset, which are ignored anyway.
        let _ = consumer.pause(&done);
    }
}

fn sync_positions(status: &mut DeadLetterRedriveStatus, positions: &BTreeMap<i32, Option<i64>>) {
    for progress in &mut status.partitions {
        if let Some(Some(position)) = positions.get(&progress.partition) {
            progress.position = (*position).min(progress.end_offset);
        }
    }
}

fn send(
    producer: &ReplayProducer,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), ReplayError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(QUEUE_FULL_WAIT);
            }
            Err((error, back)) => {
                return Err(ReplayError::Kafka {
                    action: format!("replaying a record to {}", back.topic),
                    source: error,
                    needs: Box::new([acl::redrive_write(back.topic)]),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
