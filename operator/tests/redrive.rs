//! DeadLetterRedrive against the local stack: a real API server (CEL rules, status
//! subresource) and a real Kafka broker (transactions, read_committed). Dead-letter records
//! are produced directly, with the headers the worker writes; each test has its own
//! namespace, topics and in-process operator.
#![forbid(unsafe_code)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eventconsumer_contract::headers;
use eventconsumer_operator::leader::Timings;
use eventconsumer_operator::redrive::replay::ID_PREFIX;
use eventconsumer_operator::redrive::{DeadLetterRedrive, DeadLetterRedriveStatus, Phase};
use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use support::{TIMEOUT, TestEnv, order_manifest};
use testkit::{create_topic, eventually, kafka_bootstrap, unique_name};

/// Partitions of the source topic in every test.
const SOURCE_PARTITIONS: i32 = 3;
/// Partitions of the dead-letter topic: more than one, so positions are per partition.
const DLQ_PARTITIONS: i32 = 2;
/// A group sharing the dead-letter topic, whose records a redrive must leave alone.
const OTHER_GROUP: &str = "shop.analytics";

/// One dead-letter record as the worker writes it.
struct DeadLetter {
    id: String,
    group: String,
    class: String,
    redrive_count: Option<u32>,
}

impl DeadLetter {
    fn new(id: impl Into<String>, group: &str, class: &str) -> Self {
        Self {
            id: id.into(),
            group: group.to_owned(),
            class: class.to_owned(),
            redrive_count: None,
        }
    }

    /// The source partition recorded in `ec-dlt-original-partition`.
    fn original_partition(&self) -> i32 {
        i32::try_from(self.id.bytes().map(u32::from).sum::<u32>() % 3).unwrap_or(0)
    }
}

/// How dead letters are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writing {
    /// As the worker writes them: no transaction.
    Plain,
    /// In a transaction that commits.
    Committed,
    /// In a transaction that aborts: read_committed readers never see them.
    Aborted,
}

/// A consumer reading `source` with `dlq` as its dead-letter topic, in the test's namespace.
struct Setup {
    env: TestEnv,
    bootstrap: String,
    source: String,
    dlq: String,
    consumer: String,
    group: String,
}

impl Setup {
    /// Creates the namespace and the dead-letter topic; the source topic only when asked.
    async fn new(prefix: &str, create_source: bool) -> Setup {
        let env = TestEnv::new(prefix).await;
        let bootstrap = kafka_bootstrap();
        let source = unique_name("redrive-src");
        let dlq = unique_name("redrive-dlq");
        create_topic(&bootstrap, &dlq, DLQ_PARTITIONS).await;
        if create_source {
            create_topic(&bootstrap, &source, SOURCE_PARTITIONS).await;
        }
        let consumer = unique_name("payment");
        let group = format!("{}.{consumer}", env.ns);
        Setup {
            env,
            bootstrap,
            source,
            dlq,
            consumer,
            group,
        }
    }

    fn consumer_manifest(&self) -> Value {
        let mut manifest = order_manifest(&self.consumer);
        manifest["spec"]["kafka"]["bootstrapServers"] = json!(self.bootstrap);
        manifest["spec"]["kafka"]["topics"] = json!([self.source]);
        manifest["spec"]["delivery"] = json!({ "deadLetterTopic": self.dlq });
        manifest
    }

    fn redrives(&self) -> Api<DeadLetterRedrive> {
        Api::namespaced(self.env.client.clone(), &self.env.ns)
    }

    async fn create_redrive(&self, name: &str, spec: Value) -> DeadLetterRedrive {
        let mut spec = spec;
        spec["consumer"] = json!(self.consumer);
        self.redrives()
            .create(&PostParams::default(), &redrive_manifest(name, spec))
            .await
            .unwrap_or_else(|e| panic!("creating DeadLetterRedrive {name}: {e}"))
    }

    async fn redrive_where(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&DeadLetterRedriveStatus) -> bool,
    ) -> DeadLetterRedriveStatus {
        let api = self.redrives();
        eventually(what, TIMEOUT, || async {
            let status = api.get_opt(name).await.ok().flatten()?.status?;
            check(&status).then_some(status)
        })
        .await
    }

    /// Writes `records` to the dead-letter topic, spread over its partitions.
    async fn dead_letter(&self, records: Vec<DeadLetter>) {
        self.dead_letter_as(records, Writing::Plain).await;
    }

    /// Writes `records` to the dead-letter topic as `writing` says.
    async fn dead_letter_as(&self, records: Vec<DeadLetter>, writing: Writing) {
        let bootstrap = self.bootstrap.clone();
        let dlq = self.dlq.clone();
        let source = self.source.clone();
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", &bootstrap)
                .set("linger.ms", "20");
            if writing != Writing::Plain {
                config.set("transactional.id", unique_name("dlq-writer"));
            }
            let producer: ThreadedProducer<DefaultProducerContext> =
                config.create().expect("a producer");
            if writing != Writing::Plain {
                producer
                    .init_transactions(Duration::from_secs(30))
                    .expect("init_transactions");
                producer.begin_transaction().expect("begin_transaction");
            }
            for (n, record) in records.iter().enumerate() {
                let partition = i32::try_from(n).unwrap_or(0) % DLQ_PARTITIONS;
                let original_partition = record.original_partition().to_string();
                let offset = n.to_string();
                let mut pairs: Vec<(&str, String)> = vec![
                    ("traceparent", format!("00-{}-01", record.id)),
                    (headers::RETRY_ATTEMPT, "5".into()),
                    (headers::RETRY_ORIGINAL_TOPIC, source.clone()),
                    (headers::DLT_ORIGINAL_TOPIC, source.clone()),
                    (headers::DLT_ORIGINAL_PARTITION, original_partition),
                    (headers::DLT_ORIGINAL_OFFSET, offset),
                    (headers::DLT_ORIGINAL_TIMESTAMP, "1764000000000".into()),
                    (headers::DLT_ORIGINAL_TIMESTAMP_TYPE, "CreateTime".into()),
                    (headers::DLT_CONSUMER_GROUP, record.group.clone()),
                    (headers::DLT_CONSUMER_NAME, consumer.clone()),
                    (headers::DLT_HANDLER, "order/payment".into()),
                    (headers::DLT_ATTEMPTS, "5".into()),
                    (headers::DLT_ERROR_CLASS, record.class.clone()),
                    (headers::DLT_ERROR_RETRYABLE, "true".into()),
                    (
                        headers::DLT_ERROR_MESSAGE,
                        "payment service timed out".into(),
                    ),
                    (
                        headers::DLT_FIRST_FAILURE,
                        "2026-11-26T09:00:00.000Z".into(),
                    ),
                    (headers::DLT_LAST_FAILURE, "2026-11-26T09:00:03.000Z".into()),
                ];
                if let Some(count) = record.redrive_count {
                    pairs.push((headers::REDRIVE_COUNT, count.to_string()));
                    pairs.push((headers::REDRIVE_NAME, "earlier/redrive".into()));
                }
                let mut hs = OwnedHeaders::new_with_capacity(pairs.len());
                for (key, value) in &pairs {
                    hs = hs.insert(Header {
                        key,
                        value: Some(value.as_bytes()),
                    });
                }
                let payload = format!("{{\"orderId\":\"{}\"}}", record.id);
                let mut next = BaseRecord::to(&dlq)
                    .partition(partition)
                    .key(record.id.as_bytes())
                    .payload(payload.as_bytes())
                    .headers(hs);
                loop {
                    match producer.send(next) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(_), back)) => {
                            next = back;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err((e, _)) => panic!("producing a dead letter: {e}"),
                    }
                }
            }
            match writing {
                Writing::Plain => producer
                    .flush(Duration::from_secs(30))
                    .expect("the dead letters are acknowledged"),
                Writing::Committed => producer
                    .commit_transaction(Duration::from_secs(30))
                    .expect("the transaction commits"),
                Writing::Aborted => producer
                    .abort_transaction(Duration::from_secs(30))
                    .expect("the transaction aborts"),
            }
        })
        .await
        .expect("the producing thread does not panic");
    }

    /// The first status of redrive `name` that reports replayed records: watched rather than
    /// polled, so the caller acts right after the first committed transaction.
    async fn first_progress(&self, name: &str) -> DeadLetterRedriveStatus {
        let mut progress = watcher(
            self.redrives(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .applied_objects()
        .filter_map(|r| async move { r.ok().and_then(|d| d.status) })
        .filter(|s| futures::future::ready(s.replayed > 0))
        .boxed();
        tokio::time::timeout(TIMEOUT, progress.next())
            .await
            .expect("the redrive makes progress in time")
            .expect("a status with progress")
    }

    /// `count` dead letters of the consumer's group.
    async fn backlog(&self, count: usize) {
        let records: Vec<_> = (0..count)
            .map(|n| DeadLetter::new(format!("order-{n:05}"), &self.group, "timeout"))
            .collect();
        self.dead_letter(records).await;
    }

    /// Every committed record of the source topic (read with isolation.level=read_committed).
    async fn source_records(&self) -> Vec<OwnedMessage> {
        read_committed(&self.bootstrap, &self.source, SOURCE_PARTITIONS).await
    }
}

fn redrive_manifest(name: &str, spec: Value) -> DeadLetterRedrive {
    serde_json::from_value(json!({
        "apiVersion": "eventconsumer.dev/v1alpha1",
        "kind": "DeadLetterRedrive",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("a valid DeadLetterRedrive")
}

async fn read_committed(bootstrap: &str, topic: &str, partitions: i32) -> Vec<OwnedMessage> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", unique_name("redrive-reader"))
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            assignment
                .add_partition_offset(&topic, p, Offset::Beginning)
                .expect("an offset");
        }
        consumer.assign(&assignment).expect("assigning");
        let mut at_end = BTreeSet::new();
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + TIMEOUT;
        while at_end.len() < usize::try_from(partitions).unwrap_or(0) {
            assert!(
                std::time::Instant::now() < deadline,
                "reading {topic} to its end took too long"
            );
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    out.push(m.detach());
                }
            }
        }
        out
    })
    .await
    .expect("the reading thread does not panic")
}

fn header(message: &OwnedMessage, key: &str) -> Option<String> {
    message.headers().and_then(|hs| {
        hs.iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

fn ids(messages: &[OwnedMessage]) -> Vec<String> {
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned())
        .collect();
    ids.sort();
    ids
}

fn finished(status: &DeadLetterRedriveStatus) -> bool {
    status.phase.is_some_and(Phase::is_finished)
}

fn blocked_reason(status: &DeadLetterRedriveStatus) -> Option<&str> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Blocked" && c.status == "True")
        .map(|c| c.reason.as_str())
}

#[tokio::test]
async fn a_redrive_replays_only_this_groups_dead_letters_of_the_class_once_with_redrive_headers() {
    let setup = Setup::new("dlr-select", true).await;
    setup.env.apply(&setup.consumer_manifest()).await;
    let group = setup.group.as_str();
    let mut records = Vec::new();
    for n in 0..4 {
        records.push(DeadLetter::new(
            format!("mine-timeout-{n}"),
            group,
            "timeout",
        ));
    }
    for n in 0..3 {
        records.push(DeadLetter::new(
            format!("mine-invalid-{n}"),
            group,
            "validation",
        ));
    }
    for n in 0..3 {
        records.push(DeadLetter::new(
            format!("other-timeout-{n}"),
            OTHER_GROUP,
            "timeout",
        ));
    }
    let wanted: BTreeMap<String, i32> = records
        .iter()
        .filter(|r| r.id.starts_with("mine-timeout"))
        .map(|r| (r.id.clone(), r.original_partition()))
        .collect();
    setup.dead_letter(records).await;
    let _operator = setup.env.start_operator();

    let name = unique_name("after-outage");
    setup
        .create_redrive(&name, json!({ "errorClass": "timeout" }))
        .await;
    let status = setup
        .redrive_where(&name, "the redrive to finish", finished)
        .await;

    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:?}");
    assert_eq!(
        (status.scanned, status.replayed, status.skipped),
        (10, 4, 3),
        "{status:?}"
    );
    assert_eq!(status.skipped_by.filter, 3);
    assert_eq!(
        status.dead_letter_topic.as_deref(),
        Some(setup.dlq.as_str())
    );
    assert_eq!(status.consumer_group.as_deref(), Some(setup.group.as_str()));
    assert!(status.started_at.is_some() && status.completed_at.is_some());
    assert_eq!(status.partitions.len(), 2);
    assert!(
        status
            .partitions
            .iter()
            .all(|p| p.position == p.end_offset && p.end_offset == 5),
        "{:?}",
        status.partitions
    );
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True")
    );

    let events: Api<Event> = Api::namespaced(setup.env.client.clone(), &setup.env.ns);
    let note = eventually("a Succeeded Event on the redrive", TIMEOUT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            let about_it = e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&name);
            (about_it && e.reason.as_deref() == Some("Succeeded")).then_some(e.note)
        })
    })
    .await;
    assert_eq!(note.as_deref(), Some("replayed 4 dead letters, skipped 3"));

    let replayed = setup.source_records().await;
    assert_eq!(
        ids(&replayed),
        wanted.keys().cloned().collect::<Vec<_>>(),
        "each selected dead letter exactly once"
    );
    let redrive_name = format!("{}/{name}", setup.env.ns);
    for message in &replayed {
        let id = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        assert_eq!(Some(message.partition()), wanted.get(&id).copied());
        assert_eq!(
            message.payload(),
            Some(format!("{{\"orderId\":\"{id}\"}}").as_bytes())
        );
        assert_eq!(
            header(message, headers::REDRIVE_COUNT).as_deref(),
            Some("1")
        );
        assert_eq!(
            header(message, headers::REDRIVE_NAME).as_deref(),
            Some(redrive_name.as_str())
        );
        assert_eq!(
            header(message, "traceparent"),
            Some(format!("00-{id}-01")),
            "the original headers are kept"
        );
        let keys: Vec<String> = message
            .headers()
            .map(|hs| hs.iter().map(|h| h.key.to_owned()).collect())
            .unwrap_or_default();
        assert!(
            keys.iter()
                .all(|k| !k.starts_with(headers::DLT_PREFIX)
                    && !k.starts_with(headers::RETRY_PREFIX)),
            "failure and retry headers are dropped: {keys:?}"
        );
    }
}

#[tokio::test]
async fn dead_letters_written_after_the_snapshot_are_not_replayed_and_waits_show_in_status() {
    // No source topic yet: the redrive takes its snapshot, then waits for the topic, so
    // records can be added between the snapshot and the replay.
    let setup = Setup::new("dlr-snapshot", false).await;
    let group = setup.group.as_str();
    let before: Vec<_> = (0..4)
        .map(|n| DeadLetter::new(format!("before-{n}"), group, "timeout"))
        .collect();
    setup.dead_letter(before).await;
    let _operator = setup.env.start_operator();

    let name = unique_name("snapshot");
    setup.create_redrive(&name, json!({})).await;
    let status = setup
        .redrive_where(&name, "the redrive to wait for its EventConsumer", |s| {
            blocked_reason(s) == Some("ConsumerNotFound")
        })
        .await;
    assert_eq!(status.phase, Some(Phase::Pending));
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&setup.consumer),
        "{status:?}"
    );

    setup.env.apply(&setup.consumer_manifest()).await;
    let status = setup
        .redrive_where(
            &name,
            "the snapshot, then a wait for the source topic",
            |s| !s.partitions.is_empty() && blocked_reason(s) == Some("TopicMissing"),
        )
        .await;
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(
        status.partitions.iter().map(|p| p.end_offset).sum::<i64>(),
        4
    );
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&setup.source),
        "{status:?}"
    );

    let after: Vec<_> = (0..3)
        .map(|n| DeadLetter::new(format!("after-{n}"), group, "timeout"))
        .collect();
    setup.dead_letter(after).await;
    create_topic(&setup.bootstrap, &setup.source, SOURCE_PARTITIONS).await;

    let status = setup
        .redrive_where(&name, "the redrive to finish", finished)
        .await;
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:?}");
    assert_eq!((status.scanned, status.replayed), (4, 4), "{status:?}");
    assert_eq!(
        ids(&setup.source_records().await),
        ["before-0", "before-1", "before-2", "before-3"]
    );
}

#[tokio::test]
async fn a_dead_letter_that_reached_max_redrives_is_skipped_and_counted() {
    let setup = Setup::new("dlr-max", true).await;
    setup.env.apply(&setup.consumer_manifest()).await;
    let group = setup.group.as_str();
    let records = vec![
        DeadLetter {
            redrive_count: Some(2),
            ..DeadLetter::new("twice", group, "timeout")
        },
        DeadLetter {
            redrive_count: Some(3),
            ..DeadLetter::new("three-times", group, "timeout")
        },
        DeadLetter::new("never", group, "timeout"),
    ];
    setup.dead_letter(records).await;
    let _operator = setup.env.start_operator();

    let name = unique_name("max");
    setup
        .create_redrive(&name, json!({ "maxRedrives": 3 }))
        .await;
    let status = setup
        .redrive_where(&name, "the redrive to finish", finished)
        .await;
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:?}");
    assert_eq!((status.replayed, status.skipped), (2, 1), "{status:?}");
    assert_eq!(status.skipped_by.max_redrives, 1);

    let replayed = setup.source_records().await;
    assert_eq!(ids(&replayed), ["never", "twice"]);
    let count_of = |id: &str| {
        replayed
            .iter()
            .find(|m| m.key() == Some(id.as_bytes()))
            .and_then(|m| header(m, headers::REDRIVE_COUNT))
    };
    assert_eq!(count_of("twice").as_deref(), Some("3"));
    assert_eq!(count_of("never").as_deref(), Some("1"));
}

#[tokio::test]
async fn a_redrive_interrupted_by_a_crash_resumes_and_replays_each_dead_letter_exactly_once() {
    const RECORDS: usize = 20_000;
    let setup = Setup::new("dlr-crash", true).await;
    setup.env.apply(&setup.consumer_manifest()).await;
    setup.backlog(RECORDS).await;

    let operator = setup.env.start_operator();
    let name = unique_name("big");
    setup.create_redrive(&name, json!({})).await;
    let at_crash = setup.first_progress(&name).await;
    operator.crash().await;
    assert_eq!(
        at_crash.phase,
        Some(Phase::Running),
        "the crash comes mid-redrive"
    );
    assert!(at_crash.replayed < i64::try_from(RECORDS).unwrap_or(i64::MAX));

    let _operator = setup.env.start_operator();
    let status = setup
        .redrive_where(&name, "the resumed redrive to finish", finished)
        .await;
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:?}");
    assert_eq!(
        status.replayed,
        i64::try_from(RECORDS).unwrap_or_default(),
        "{status:?}"
    );

    let replayed = setup.source_records().await;
    let ids = ids(&replayed);
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), RECORDS, "every dead letter was replayed");
    assert_eq!(ids.len(), RECORDS, "no dead letter was replayed twice");
}

/// What a `kill -9` of the operator leaves when it lands between adding a batch's position
/// to the transaction and committing it: as the redrive's transactional producer, up to
/// `batch` more dead letters replayed into the source topic and their position sent to the
/// transaction, then the producer gone without a commit or an abort (librdkafka does neither
/// when a producer is destroyed). Returns how many records that transaction holds.
async fn leave_a_transaction_open(setup: &Setup, uid: &str, batch: usize) -> usize {
    let id = format!("{ID_PREFIX}{uid}");
    let bootstrap = setup.bootstrap.clone();
    let dlq = setup.dlq.clone();
    let source = setup.source.clone();
    tokio::task::spawn_blocking(move || {
        let wait = Duration::from_secs(30);
        // First, as the operator does, fence the crashed instance (its thread may still run).
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("transactional.id", &id)
            .create()
            .expect("a transactional producer");
        producer.init_transactions(wait).expect("init_transactions");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &id)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()
            .expect("a consumer");
        let mut query = TopicPartitionList::new();
        for p in 0..DLQ_PARTITIONS {
            query.add_partition(&dlq, p);
        }
        let committed = consumer
            .committed_offsets(query, wait)
            .expect("the committed position");
        let mut assignment = TopicPartitionList::new();
        for p in 0..DLQ_PARTITIONS {
            let at = match committed.find_partition(&dlq, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            assignment
                .add_partition_offset(&dlq, p, at)
                .expect("an offset");
        }
        consumer.assign(&assignment).expect("assigning");
        producer.begin_transaction().expect("begin_transaction");
        let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
        let mut at_end = BTreeSet::new();
        let mut read = 0;
        let deadline = std::time::Instant::now() + TIMEOUT;
        while read < batch && at_end.len() < usize::try_from(DLQ_PARTITIONS).unwrap_or(0) {
            assert!(
                std::time::Instant::now() < deadline,
                "reading the next batch"
            );
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => panic!("reading {dlq}: {e}"),
                Some(Ok(m)) => {
                    let record = BaseRecord::to(&source)
                        .key(m.key().unwrap_or_default())
                        .payload(m.payload().unwrap_or_default());
                    producer
                        .send(record)
                        .map_err(|(e, _)| e)
                        .expect("replaying");
                    positions.insert(m.partition(), m.offset() + 1);
                    read += 1;
                }
            }
        }
        producer
            .flush(wait)
            .expect("the replayed records are written");
        let mut offsets = TopicPartitionList::new();
        for (p, position) in &positions {
            offsets
                .add_partition_offset(&dlq, *p, Offset::Offset(*position))
                .expect("an offset");
        }
        let group = consumer.group_metadata().expect("group metadata");
        producer
            .send_offsets_to_transaction(&offsets, &group, wait)
            .expect("the position joins the transaction");
        drop(producer);
        read
    })
    .await
    .expect("the dead instance's thread does not panic")
}

/// A redrive resumed after its operator died mid-transaction (the position already added to
/// the open transaction) resumes without waiting for that transaction to time out: the new
/// instance fences it through the same `transactional.id` before it reads its committed
/// position under `read_committed`. Before, that read waited for the broker's transaction
/// timeout (60 s), failed with `OperationTimedOut`, and the redrive showed Blocked
/// `KafkaUnavailable` with a Warning Event while Kafka was up. Each dead letter is still
/// replayed exactly once: the open transaction's records and position are aborted together.
#[tokio::test]
async fn a_redrive_resumed_after_a_crash_mid_transaction_fences_it_and_never_blames_kafka() {
    const RECORDS: usize = 3_000;
    let setup = Setup::new("dlr-fence", true).await;
    setup.env.apply(&setup.consumer_manifest()).await;
    setup.backlog(RECORDS).await;
    let operator = setup.env.start_operator();
    let name = unique_name("fenced");
    let created = setup.create_redrive(&name, json!({})).await;
    let uid = created.metadata.uid.clone().expect("a uid");
    let at_crash = setup.first_progress(&name).await;
    operator.crash().await;
    assert_eq!(
        at_crash.phase,
        Some(Phase::Running),
        "the crash comes mid-redrive"
    );
    let open = leave_a_transaction_open(&setup, &uid, 200).await;
    assert!(open > 0, "the open transaction holds replayed records");

    // Every Blocked reason the resumed redrive shows, from a watch.
    let blocked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = blocked.clone();
    let watch = tokio::spawn(
        watcher(
            setup.redrives(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .applied_objects()
        .for_each(move |r| {
            if let Some(status) = r.ok().and_then(|d| d.status)
                && let Some(reason) = blocked_reason(&status)
            {
                seen.lock().expect("the reasons").push(reason.to_owned());
            }
            futures::future::ready(())
        }),
    );
    let resumed = std::time::Instant::now();
    let _operator = setup.env.start_operator();
    let status = setup
        .redrive_where(&name, "the resumed redrive to finish", finished)
        .await;
    eprintln!(
        "resumed redrive finished {:?} after the new operator started ({} records left open)",
        resumed.elapsed(),
        open
    );
    watch.abort();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:?}");
    assert_eq!(
        status.replayed,
        i64::try_from(RECORDS).unwrap_or_default(),
        "{status:?}"
    );
    let reasons = blocked.lock().expect("the reasons").clone();
    assert!(
        reasons.is_empty(),
        "the resume waited as if blocked: {reasons:?}"
    );
    let events: Api<Event> = Api::namespaced(setup.env.client.clone(), &setup.env.ns);
    let warnings: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("listing Events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&name))
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| format!("{:?}: {:?}", e.reason, e.note))
        .collect();
    assert!(warnings.is_empty(), "Warning Events: {warnings:?}");

    let ids = ids(&setup.source_records().await);
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), RECORDS, "every dead letter was replayed");
    assert_eq!(ids.len(), RECORDS, "no dead letter was replayed twice");
}

#[tokio::test]
async fn a_redrive_moves_with_the_leadership_and_finishes_exactly_once() {
    const RECORDS: usize = 5_000;
    let setup = Setup::new("dlr-leader", true).await;
    setup.env.apply(&setup.consumer_manifest()).await;
    setup.backlog(RECORDS).await;
    // Short timings keep the test fast; the ratios are client-go's.
    let timings = Timings {
        lease_duration: Duration::from_secs(6),
        renew_deadline: Duration::from_secs(4),
        retry_period: Duration::from_millis(500),
    };
    let lease = "eventconsumer-operator";
    let a = setup.env.start_replica("replica-a", lease, timings);
    eventually("replica-a to lead", TIMEOUT, || async {
        a.is_leader().then_some(())
    })
    .await;
    let b = setup.env.start_replica("replica-b", lease, timings);

    let name = unique_name("moving");
    setup.create_redrive(&name, json!({})).await;
    let at_handover = setup.first_progress(&name).await;
    assert!(!b.is_leader(), "the standby waits");
    a.stop().await;
    assert_eq!(at_handover.phase, Some(Phase::Running));

    let status = setup
        .redrive_where(&name, "the new leader to finish the redrive", finished)
        .await;
    assert!(b.is_leader());
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:?}");
    assert_eq!(
        status.replayed,
        i64::try_from(RECORDS).unwrap_or_default(),
        "{status:?}"
    );
    let ids = ids(&setup.source_records().await);
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!((distinct.len(), ids.len()), (RECORDS, RECORDS));
}

#[tokio::test]
async fn a_dead_letter_topic_written_in_transactions_is_redriven_to_its_end() {
    // Transaction markers take offsets that no record is delivered at, and aborted records
    // are never delivered: the redrive must still see that it reached the end offsets.
    let setup = Setup::new("dlr-txn", true).await;
    setup.env.apply(&setup.consumer_manifest()).await;
    let group = setup.group.as_str();
    let batch = |prefix: &str, count: usize| -> Vec<DeadLetter> {
        (0..count)
            .map(|n| DeadLetter::new(format!("{prefix}-{n}"), group, "timeout"))
            .collect()
    };
    setup
        .dead_letter_as(batch("committed", 4), Writing::Committed)
        .await;
    setup
        .dead_letter_as(batch("aborted", 2), Writing::Aborted)
        .await;
    setup
        .dead_letter_as(batch("last", 2), Writing::Committed)
        .await;
    let _operator = setup.env.start_operator();

    let name = unique_name("txn");
    setup.create_redrive(&name, json!({})).await;
    let status = setup
        .redrive_where(&name, "the redrive to finish", finished)
        .await;
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:?}");
    assert_eq!((status.scanned, status.replayed), (6, 6), "{status:?}");
    assert_eq!(
        ids(&setup.source_records().await),
        [
            "committed-0",
            "committed-1",
            "committed-2",
            "committed-3",
            "last-0",
            "last-1"
        ]
    );
}

#[tokio::test]
async fn an_unreachable_kafka_keeps_the_redrive_pending_with_the_reason() {
    let setup = Setup::new("dlr-down", false).await;
    let mut manifest = setup.consumer_manifest();
    // Nothing listens on port 1 of the loopback address.
    manifest["spec"]["kafka"]["bootstrapServers"] = json!("127.0.0.1:1");
    setup.env.apply(&manifest).await;
    let _operator = setup.env.start_operator();

    let name = unique_name("down");
    setup.create_redrive(&name, json!({})).await;
    let status = setup
        .redrive_where(&name, "the redrive to report Kafka unavailable", |s| {
            blocked_reason(s) == Some("KafkaUnavailable")
        })
        .await;
    assert_eq!(status.phase, Some(Phase::Pending), "{status:?}");
    assert!(status.partitions.is_empty(), "no snapshot without Kafka");
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&setup.dlq),
        "the message names what could not be read: {status:?}"
    );
}

#[tokio::test]
async fn deleting_a_running_redrive_stops_its_replay() {
    const RECORDS: usize = 20_000;
    let setup = Setup::new("dlr-delete", true).await;
    setup.env.apply(&setup.consumer_manifest()).await;
    setup.backlog(RECORDS).await;
    let _operator = setup.env.start_operator();
    let name = unique_name("deleted");
    setup.create_redrive(&name, json!({})).await;
    setup.first_progress(&name).await;

    setup
        .redrives()
        .delete(&name, &DeleteParams::default())
        .await
        .expect("deleting the redrive");
    // The task notices within one poll; give the last transaction time to settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped_at = setup.source_records().await.len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = setup.source_records().await.len();
    assert_eq!(later, stopped_at, "nothing is replayed after the deletion");
    assert!(
        stopped_at < RECORDS,
        "the redrive was stopped before its end"
    );
}

#[tokio::test]
async fn the_api_server_refuses_a_spec_change_and_an_empty_window() {
    let setup = Setup::new("dlr-cel", true).await;
    let redrives = setup.redrives();

    let bad = redrive_manifest(
        "backwards",
        json!({
            "consumer": "payment",
            "since": "2026-11-26T10:00:00Z",
            "until": "2026-11-26T10:00:00Z",
        }),
    );
    let error = redrives
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("since == until is refused");
    let text = error.to_string();
    assert!(
        text.contains("spec.until") && text.contains("must be later than since"),
        "{text}"
    );

    let name = unique_name("fixed");
    setup
        .create_redrive(&name, json!({ "errorClass": "timeout" }))
        .await;
    let error = redrives
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "maxRedrives": 5 } })),
        )
        .await
        .expect_err("a spec change is refused");
    let text = error.to_string();
    assert!(text.contains("spec is immutable"), "{text}");

    let example: DeadLetterRedrive =
        serde_yaml::from_str(include_str!("../../examples/redrive.yaml"))
            .expect("examples/redrive.yaml is a DeadLetterRedrive");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    redrives
        .create(&dry_run, &example)
        .await
        .expect("the API server accepts examples/redrive.yaml");

    let error = redrives
        .create(
            &PostParams::default(),
            &redrive_manifest(
                "unknown-class",
                json!({ "consumer": "payment", "errorClass": "oops" }),
            ),
        )
        .await
        .expect_err("an unknown error class is refused");
    assert!(error.to_string().contains("spec.errorClass"), "{error}");
}
