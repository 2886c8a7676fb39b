//! Reading and writing the real Kafka the workers use, the way a user of the system would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::time::Instant;

/// One record as read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).unwrap_or_else(|e| {
            panic!(
                "record {}@{} is not JSON ({e}): {}",
                self.partition,
                self.offset,
                String::from_utf8_lossy(&self.value)
            )
        })
    }
}

/// Every record of one topic, from the beginning, accumulated across calls. Reads with an
/// assignment of all partitions (no consumer group), so it neither waits for a group join
/// nor disturbs the groups under test.
pub struct TopicReader {
    pub topic: String,
    consumer: StreamConsumer,
    pub records: Vec<Record>,
}

impl TopicReader {
    pub fn new(bootstrap: &str, topic: &str, partitions: i32) -> Self {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "eventconsumer-e2e-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .expect("a Kafka consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("a partition offset");
        }
        consumer.assign(&tpl).expect("assigning the partitions");
        TopicReader {
            topic: topic.to_owned(),
            consumer,
            records: Vec::new(),
        }
    }

    /// Reads until `done(&records)` holds, and panics naming `what` (and showing what was
    /// read) when `timeout` passes first.
    pub async fn read_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Record]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.records) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                let shown: Vec<String> = self
                    .records
                    .iter()
                    .take(40)
                    .map(|r| {
                        format!(
                            "  {}@{} key={:?} {}",
                            r.partition,
                            r.offset,
                            r.key,
                            String::from_utf8_lossy(&r.value)
                        )
                    })
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what} on topic {}; read {} records:\n{}",
                    self.topic,
                    self.records.len(),
                    shown.join("\n")
                );
            }
            let wait = (deadline - now).min(Duration::from_millis(500));
            match tokio::time::timeout(wait, self.consumer.recv()).await {
                Err(_) => {}
                Ok(Err(e)) => panic!("reading {}: {e}", self.topic),
                Ok(Ok(m)) => {
                    let mut headers = BTreeMap::new();
                    if let Some(hs) = m.headers() {
                        for h in hs.iter() {
                            let v = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                            headers.insert(h.key.to_owned(), v.unwrap_or_default());
                        }
                    }
                    self.records.push(Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: m.payload().unwrap_or_default().to_vec(),
                        headers,
                    });
                }
            }
        }
    }
}

/// An acks=all producer, for what the gateway does not publish (video uploads, the poison
/// order it would refuse).
pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .expect("a Kafka producer")
}

pub async fn produce(producer: &FutureProducer, topic: &str, key: &str, value: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
}

/// The members of consumer group `group` as the broker sees them.
pub async fn group_members(bootstrap: &str, group: &str) -> usize {
    let consumer: Arc<BaseConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("a Kafka client"),
    );
    let group = group.to_owned();
    tokio::task::spawn_blocking(move || {
        consumer
            .fetch_group_list(Some(&group), Duration::from_secs(5))
            .ok()
            .and_then(|list| list.groups().first().map(|g| g.members().len()))
            .unwrap_or(0)
    })
    .await
    .unwrap_or(0)
}

/// Deletes `topics` (best effort: cleanup).
pub async fn delete_topics(bootstrap: &str, topics: &[String]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let Ok(admin) = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create::<AdminClient<DefaultClientContext>>()
    else {
        return;
    };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let _ = tokio::time::timeout(Duration::from_secs(20), admin.delete_topics(&names, &opts)).await;
}

/// The end offset (high watermark) of partition 0 of `topic`.
pub async fn end_offset(bootstrap: &str, topic: &str) -> i64 {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("a Kafka consumer");
        consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("the end offset of {topic}: {e}"))
            .1
    })
    .await
    .expect("the watermark read")
}
