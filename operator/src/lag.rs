//! The operator's reads and writes of Kafka for lag, dead-letter counts and retry topics, all
//! blocking librdkafka calls run on the blocking pool under one shared [`Semaphore`], each with
//! a tight timeout, so no reconcile ever waits on a broker.
//!
//! Clients are shared per cluster and credentials ([`KafkaAccess`]): one group-less
//! `BaseConsumer` per cluster reads topic metadata and watermarks for every consumer there
//! (four consumers of `order.placed` cost one watermark query per partition, not four).
//! librdkafka reads committed offsets only for the client's own `group.id`, and rdkafka 0.39's
//! `AdminClient` has no ListConsumerGroupOffsets, so the committed offsets of a group are read
//! by a short-lived consumer with that `group.id` (never subscribing, so it never joins the
//! group), created per query and dropped at once: memory stays bounded by the semaphore, not by
//! the number of EventConsumers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventconsumer_contract::headers::DLT_CONSUMER_GROUP;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::Semaphore;

use crate::crd::InitialOffset;
use crate::kafka::KafkaAccess;

/// Longest wait for one broker request (metadata, watermarks, committed offsets). Long enough
/// for a loaded broker, short enough that an unreachable cluster costs one slot for 5 s per
/// measurement round, not a stalled operator.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Blocking Kafka calls in flight at once, over all clusters: each may hold a short-lived
/// librdkafka client (threads and buffers), so this bounds the operator's memory; 4 keeps a
/// round over 1,000 consumers well inside the 15 s interval on a local broker.
pub const KAFKA_CONCURRENCY: usize = 4;
/// Time one dead-letter scan may read per round; the rest is read in the next round.
const SCAN_BUDGET: Duration = Duration::from_secs(2);
/// Prefetch of the dead-letter scanner, in KiB: small, since it only counts headers.
const SCAN_QUEUE_KIB: &str = "1024";
/// Per-fetch cap of the dead-letter scanner, in bytes (librdkafka's minimum useful value is
/// one maximal message, 1 MB by default).
const SCAN_FETCH_BYTES: &str = "1048576";
/// `group.id` of the dead-letter scanner, which only assigns partitions and never commits.
const SCAN_GROUP: &str = eventconsumer_contract::acl::DLQ_SCAN_GROUP;
/// `client.id` of the operator's Kafka clients, so broker logs and quotas can tell them apart.
const CLIENT_ID: &str = "eventconsumer-operator";

/// A failed Kafka read or write, naming what it was about.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KafkaOpError {
    #[error("creating a Kafka client for {servers}: {message}")]
    Client { servers: String, message: String },
    #[error("reading metadata of topic {topic:?} from {servers}: {message}")]
    Metadata {
        servers: String,
        topic: String,
        message: String,
    },
    /// A metadata request failed after the brokers refused the client's credentials or TLS.
    #[error(
        "reading metadata of topic {topic:?} from {servers}: {cause}; the brokers refused this \
         client: {refused}"
    )]
    Refused {
        servers: String,
        topic: String,
        cause: String,
        refused: String,
    },
    #[error("topic {topic:?} does not exist")]
    TopicMissing { topic: String },
    #[error(
        "the brokers refuse this principal topic {topic:?}: an ACL is missing (Read on it; \
         README, Kafka security)"
    )]
    TopicDenied { topic: String },
    #[error("reading the offsets of {topic}/{partition}: {message}")]
    Watermarks {
        topic: String,
        partition: i32,
        message: String,
    },
    #[error("reading the committed offsets of group {group:?}: {message}")]
    Committed { group: String, message: String },
    #[error(
        "the brokers refuse this principal group {group:?}: an ACL is missing (Describe on \
         it; README, Kafka security)"
    )]
    GroupDenied { group: String },
    #[error("reading dead-letter topic {topic:?}: {message}")]
    Scan { topic: String, message: String },
    #[error("creating topic {topic:?}: {message}")]
    CreateTopic { topic: String, message: String },
    #[error("the Kafka task stopped: {0}")]
    Task(String),
}

/// Why the brokers will not serve the operator's clients, where a user must act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessProblem {
    /// The credentials or the TLS handshake were refused.
    Authentication,
    /// The principal lacks an ACL.
    Authorization,
}

impl KafkaOpError {
    /// The refusal this error is, if it is one (rather than an outage or a missing topic).
    pub fn access_problem(&self) -> Option<AccessProblem> {
        match self {
            KafkaOpError::Refused { .. } => Some(AccessProblem::Authentication),
            KafkaOpError::TopicDenied { .. } | KafkaOpError::GroupDenied { .. } => {
                Some(AccessProblem::Authorization)
            }
            _ => None,
        }
    }
}

/// Offsets of one partition: the oldest retained and the next to be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    pub low: i64,
    pub high: i64,
}

/// The lag of a partition given the group's committed offset, counted like the workers would
/// start: without a commit from the oldest retained record (`earliest`) or not at all
/// (`latest`); a commit older than the oldest retained record counts from that record.
pub fn partition_lag(marks: Watermarks, committed: Option<i64>, initial: InitialOffset) -> i64 {
    let from = match (committed, initial) {
        (Some(offset), _) => offset.max(marks.low),
        (None, InitialOffset::Earliest) => marks.low,
        (None, InitialOffset::Latest) => marks.high,
    };
    marks.high.saturating_sub(from).max(0)
}

/// The context of the shared metadata clients: remembers the last time the brokers refused the
/// client's credentials or TLS, because a metadata request then only times out, and the
/// status should say why.
#[derive(Default)]
pub struct RefusalContext {
    refused: Mutex<Option<String>>,
    /// The brokers refused to find the group's coordinator (no Describe on the group): the
    /// committed-offsets request then only times out.
    group_denied: AtomicBool,
}

impl RefusalContext {
    /// librdkafka's reason for the last refusal (it names the broker and the mechanism, never
    /// a credential), if any.
    fn refusal(&self) -> Option<String> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }

    /// Forgets the last refusal once a request succeeded: a later outage must not be blamed
    /// on credentials the brokers have since accepted.
    fn accepted(&self) {
        if let Ok(mut refused) = self.refused.lock() {
            *refused = None;
        }
    }
}

impl ClientContext for RefusalContext {
    fn error(&self, error: KafkaError, reason: &str) {
        use RDKafkaErrorCode as C;
        let code = error.rdkafka_error_code();
        // A rejected client certificate shows only as a transport failure naming the alert.
        let tls_alert = code == Some(C::BrokerTransportFailure)
            && eventconsumer_contract::transport_failure_names_tls(reason);
        match code {
            _ if tls_alert || authentication_refused(&error) => {
                if let Ok(mut refused) = self.refused.lock() {
                    *refused = Some(reason.to_owned());
                }
            }
            Some(C::GroupAuthorizationFailed) => self.group_denied.store(true, Ordering::Relaxed),
            _ => tracing::debug!(%error, reason, "Kafka client error"),
        }
    }
}

impl ConsumerContext for RefusalContext {}

type MetadataClient = BaseConsumer<RefusalContext>;

/// How long each poll waits where the error events must all be served: a poll that serves
/// only log events answers `None` like an empty queue, so a zero wait stops at the first log
/// line and leaves the error events behind it unserved (which is how a refused password once
/// showed only as a transport failure). Paid on a failed request only.
const DRAIN_WAIT: Duration = Duration::from_millis(5);

/// Serves the events queued on `client` (errors reach its context this way), at most a
/// thousand, each poll waiting `wait` for the next: a client nobody polls would otherwise
/// pile them up.
fn drain(client: &MetadataClient, wait: Duration) {
    for _ in 0..1000 {
        if client.poll(wait).is_none() {
            break;
        }
    }
}

/// Whether `error` is the brokers refusing this client's credentials or its TLS handshake.
pub fn authentication_refused(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(C::Authentication | C::SaslAuthenticationFailed | C::SSL)
    )
}

/// Whether `error`, of a group request `consumer` made, is the brokers refusing this principal
/// the group. A refused coordinator lookup comes as an event (to the context, or as a consumer
/// error) while the request waits, and the request times out: the queued events are served to
/// tell a missing ACL from an outage.
pub fn group_refused(consumer: &BaseConsumer<RefusalContext>, error: &KafkaError) -> bool {
    let denied =
        |e: &KafkaError| e.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupAuthorizationFailed);
    let mut refused = denied(error);
    for _ in 0..1000 {
        match consumer.poll(DRAIN_WAIT) {
            None => break,
            Some(Err(event)) => refused |= denied(&event),
            Some(Ok(_)) => {}
        }
    }
    refused || consumer.context().group_denied.load(Ordering::Relaxed)
}

/// Shared clients and the concurrency limit.
pub struct KafkaClients {
    permits: Arc<Semaphore>,
    metadata: Mutex<HashMap<KafkaAccess, Arc<MetadataClient>>>,
}

impl Default for KafkaClients {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(KAFKA_CONCURRENCY)),
            metadata: Mutex::new(HashMap::new()),
        }
    }
}

impl KafkaClients {
    /// Drops the shared clients of clusters no consumer uses any more.
    pub fn retain(&self, used: &HashSet<&KafkaAccess>) {
        if let Ok(mut clients) = self.metadata.lock() {
            clients.retain(|access, _| used.contains(access));
        }
    }

    /// Runs `work` on the blocking pool once a permit is free.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, KafkaOpError> + Send + 'static,
    ) -> Result<T, KafkaOpError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| KafkaOpError::Task(e.to_string()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| KafkaOpError::Task(e.to_string()))?
    }

    fn shared(&self, access: &KafkaAccess) -> Result<Arc<MetadataClient>, KafkaOpError> {
        let mut clients = self
            .metadata
            .lock()
            .map_err(|e| KafkaOpError::Task(e.to_string()))?;
        if let Some(client) = clients.get(access) {
            return Ok(client.clone());
        }
        let client: MetadataClient = base_config(access)
            .create_with_context(RefusalContext::default())
            .map_err(|e| KafkaOpError::Client {
                servers: access.bootstrap_servers.clone(),
                message: e.to_string(),
            })?;
        let client = Arc::new(client);
        clients.insert(access.clone(), client.clone());
        Ok(client)
    }

    /// Partitions and watermarks of each of `topics`: `Err` for the whole call when the
    /// cluster cannot be reached, a per-topic `Err` for a topic that does not exist.
    pub async fn topics(
        &self,
        access: &KafkaAccess,
        topics: Vec<String>,
    ) -> Result<BTreeMap<String, Result<BTreeMap<i32, Watermarks>, KafkaOpError>>, KafkaOpError>
    {
        let client = self.shared(access)?;
        let servers = access.bootstrap_servers.clone();
        self.blocking(move || {
            // Events (such as "broker down") pile up in a client nobody polls; drain them
            // without waiting, as a successful round needs none of them.
            drain(&client, Duration::ZERO);
            let mut out = BTreeMap::new();
            for topic in topics {
                let metadata = client
                    .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
                    .map_err(|e| {
                        // A refusal of the credentials reaches the context as an event while
                        // the request waits: serve the events first, or the first round after
                        // a bad password would only say "transport failure".
                        drain(&client, DRAIN_WAIT);
                        match client.context().refusal() {
                            Some(refused) => KafkaOpError::Refused {
                                servers: servers.clone(),
                                topic: topic.clone(),
                                cause: e.to_string(),
                                refused,
                            },
                            None => KafkaOpError::Metadata {
                                servers: servers.clone(),
                                topic: topic.clone(),
                                message: e.to_string(),
                            },
                        }
                    })?;
                client.context().accepted();
                let denied = metadata.topics().iter().any(|t| {
                    t.name() == topic
                        && t.error().map(RDKafkaErrorCode::from)
                            == Some(RDKafkaErrorCode::TopicAuthorizationFailed)
                });
                if denied {
                    out.insert(
                        topic.clone(),
                        Err(KafkaOpError::TopicDenied {
                            topic: topic.clone(),
                        }),
                    );
                    continue;
                }
                let partitions: Vec<i32> = metadata
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic && t.error().is_none())
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect();
                if partitions.is_empty() {
                    out.insert(
                        topic.clone(),
                        Err(KafkaOpError::TopicMissing {
                            topic: topic.clone(),
                        }),
                    );
                    continue;
                }
                let mut marks = BTreeMap::new();
                let mut failed = None;
                for partition in partitions {
                    match client.fetch_watermarks(&topic, partition, REQUEST_TIMEOUT) {
                        Ok((low, high)) => {
                            marks.insert(partition, Watermarks { low, high });
                        }
                        Err(e) => {
                            failed = Some(KafkaOpError::Watermarks {
                                topic: topic.clone(),
                                partition,
                                message: e.to_string(),
                            });
                            break;
                        }
                    }
                }
                out.insert(topic, failed.map_or(Ok(marks), Err));
            }
            Ok(out)
        })
        .await
    }

    /// The committed offsets of `group` for `partitions` (`None`: no commit).
    pub async fn committed(
        &self,
        access: &KafkaAccess,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<BTreeMap<(String, i32), Option<i64>>, KafkaOpError> {
        let mut config = base_config(access);
        config.set("group.id", group);
        let group = group.to_owned();
        self.blocking(move || {
            let error = |message: String| KafkaOpError::Committed {
                group: group.clone(),
                message,
            };
            let consumer: MetadataClient = config
                .create_with_context(RefusalContext::default())
                .map_err(|e| error(e.to_string()))?;
            let mut list = TopicPartitionList::new();
            for (topic, partition) in &partitions {
                list.add_partition(topic, *partition);
            }
            let committed = consumer
                .committed_offsets(list, REQUEST_TIMEOUT)
                .map_err(|e| {
                    if group_refused(&consumer, &e) {
                        KafkaOpError::GroupDenied {
                            group: group.clone(),
                        }
                    } else {
                        error(e.to_string())
                    }
                })?;
            // A partition the brokers would not answer for is an error, not "no commit":
            // counting it from the oldest record would invent lag.
            committed
                .elements()
                .iter()
                .map(|e| {
                    if let Err(failed) = e.error() {
                        return Err(match failed.rdkafka_error_code() {
                            Some(RDKafkaErrorCode::GroupAuthorizationFailed) => {
                                KafkaOpError::GroupDenied {
                                    group: group.clone(),
                                }
                            }
                            Some(RDKafkaErrorCode::TopicAuthorizationFailed) => {
                                KafkaOpError::TopicDenied {
                                    topic: e.topic().to_owned(),
                                }
                            }
                            _ => error(format!("{}/{}: {failed}", e.topic(), e.partition())),
                        });
                    }
                    let offset = match e.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    };
                    Ok(((e.topic().to_owned(), e.partition()), offset))
                })
                .collect()
        })
        .await
    }

    /// Reads `topic` from each partition's `from` offset on, for at most [`SCAN_BUDGET`],
    /// calling `count` with each record's consumer-group header. Returns the next offset to
    /// read per partition.
    pub async fn scan_dead_letters(
        &self,
        access: &KafkaAccess,
        topic: &str,
        from: BTreeMap<i32, i64>,
        groups: BTreeSet<String>,
    ) -> Result<(BTreeMap<i32, i64>, BTreeMap<(i32, String), i64>), KafkaOpError> {
        let mut config = base_config(access);
        config
            // librdkafka refuses assign() without a group; this one never subscribes (so never
            // joins) and never commits.
            .set("group.id", SCAN_GROUP)
            .set("enable.partition.eof", "true")
            .set("queued.max.messages.kbytes", SCAN_QUEUE_KIB)
            .set("fetch.max.bytes", SCAN_FETCH_BYTES);
        let topic = topic.to_owned();
        self.blocking(move || {
            let error = |message: String| KafkaOpError::Scan {
                topic: topic.clone(),
                message,
            };
            let consumer: BaseConsumer = config.create().map_err(|e| error(e.to_string()))?;
            let mut list = TopicPartitionList::new();
            for (partition, offset) in &from {
                list.add_partition_offset(&topic, *partition, Offset::Offset(*offset))
                    .map_err(|e| error(e.to_string()))?;
            }
            consumer.assign(&list).map_err(|e| error(e.to_string()))?;
            let mut next = from.clone();
            let mut open: BTreeSet<i32> = from.keys().copied().collect();
            let mut counts: BTreeMap<(i32, String), i64> = BTreeMap::new();
            let deadline = Instant::now() + SCAN_BUDGET;
            while !open.is_empty() && Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        open.remove(&partition);
                    }
                    // The scanner's group is looked up although it never joins: its refusal
                    // is a missing ACL of this principal, named like the lag read's.
                    Some(Err(e))
                        if e.rdkafka_error_code()
                            == Some(RDKafkaErrorCode::GroupAuthorizationFailed) =>
                    {
                        return Err(KafkaOpError::GroupDenied {
                            group: SCAN_GROUP.to_owned(),
                        });
                    }
                    Some(Err(e)) => return Err(error(e.to_string())),
                    Some(Ok(message)) => {
                        next.insert(message.partition(), message.offset().saturating_add(1));
                        let group = message.headers().and_then(|headers| {
                            headers
                                .iter()
                                .find(|h| h.key == DLT_CONSUMER_GROUP)
                                .and_then(|h| h.value)
                                .and_then(|v| std::str::from_utf8(v).ok())
                                .map(str::to_owned)
                        });
                        if let Some(group) = group.filter(|g| groups.contains(g)) {
                            *counts.entry((message.partition(), group)).or_insert(0) += 1;
                        }
                    }
                }
            }
            Ok((next, counts))
        })
        .await
    }

    /// Creates `topics` with `partitions` partitions and the broker's default replication
    /// factor; a topic that already exists counts as created.
    pub async fn create_topics(
        &self,
        access: &KafkaAccess,
        topics: Vec<String>,
        partitions: i32,
    ) -> Result<(), KafkaOpError> {
        let admin: AdminClient<DefaultClientContext> =
            base_config(access)
                .create()
                .map_err(|e| KafkaOpError::Client {
                    servers: access.bootstrap_servers.clone(),
                    message: e.to_string(),
                })?;
        // -1: the broker's default.replication.factor (KIP-464).
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(-1)))
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(REQUEST_TIMEOUT))
            .operation_timeout(Some(REQUEST_TIMEOUT));
        let results =
            admin
                .create_topics(&new, &options)
                .await
                .map_err(|e| KafkaOpError::CreateTopic {
                    topic: topics.join(", "),
                    message: e.to_string(),
                })?;
        for result in results {
            if let Err((topic, code)) = result
                && code != RDKafkaErrorCode::TopicAlreadyExists
            {
                return Err(KafkaOpError::CreateTopic {
                    topic,
                    message: code.to_string(),
                });
            }
        }
        Ok(())
    }
}

fn base_config(access: &KafkaAccess) -> ClientConfig {
    let mut config = access.client_config();
    config
        .set("client.id", CLIENT_ID)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // The operator never creates a source topic by reading it.
        .set("allow.auto.create.topics", "false")
        // Matches REQUEST_TIMEOUT: a dead broker connection fails a request, not hangs it.
        .set("socket.timeout.ms", "5000");
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_lag_counts_like_the_workers_would_start() {
        let marks = Watermarks { low: 10, high: 50 };
        assert_eq!(partition_lag(marks, Some(40), InitialOffset::Earliest), 10);
        assert_eq!(partition_lag(marks, None, InitialOffset::Earliest), 40);
        assert_eq!(partition_lag(marks, None, InitialOffset::Latest), 0);
        assert_eq!(
            partition_lag(marks, Some(3), InitialOffset::Latest),
            40,
            "a commit older than the retained records counts from the oldest one"
        );
        assert_eq!(partition_lag(marks, Some(60), InitialOffset::Earliest), 0);
    }
}
