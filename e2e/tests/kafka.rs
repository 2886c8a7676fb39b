//! Smoke tests proving the local Kafka broker is real: its metadata, a topic, produce and
//! consume through rdkafka, and a consumer group's committed offset read back.
#![forbid(unsafe_code)]

use std::time::Duration;

use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use testkit::{create_topic, kafka_bootstrap, unique_name};

/// Generous for a busy two-core machine; a healthy local broker answers in milliseconds.
const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_broker_is_listed_at_kafka_bootstrap() {
    let bootstrap = kafka_bootstrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("client");
    let metadata = tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, TIMEOUT))
        .await
        .expect("join")
        .expect("metadata from the broker");
    let brokers: Vec<String> = metadata
        .brokers()
        .iter()
        .map(|b| format!("{}:{}", b.host(), b.port()))
        .collect();
    assert_eq!(brokers, vec![bootstrap]);
}

#[tokio::test]
async fn a_group_consumes_what_was_produced_and_its_committed_offset_reads_back() {
    let bootstrap = kafka_bootstrap();
    let topic = unique_name("e2e-roundtrip");
    let group = unique_name("e2e-group");
    create_topic(&bootstrap, &topic, 2).await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    for i in 0..3 {
        let payload = format!("message-{i}");
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition(0)
                    .key("k")
                    .payload(&payload),
                TIMEOUT,
            )
            .await
            .expect("delivery");
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut got = Vec::new();
    let mut stream = consumer.stream();
    while got.len() < 3 {
        let msg = tokio::time::timeout(TIMEOUT, stream.next())
            .await
            .expect("a message within the timeout")
            .expect("stream open")
            .expect("message");
        got.push(String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned());
        consumer
            .commit_message(&msg, CommitMode::Sync)
            .expect("commit");
    }
    drop(stream);
    assert_eq!(got, ["message-0", "message-1", "message-2"]);

    // A fresh client of the same group reads the committed offset back from the broker.
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    tpl.add_partition(&topic, 1);
    let committed = tokio::task::spawn_blocking(move || reader.committed_offsets(tpl, TIMEOUT))
        .await
        .expect("join")
        .expect("committed offsets");
    let p0 = committed
        .find_partition(&topic, 0)
        .expect("partition 0")
        .offset();
    let p1 = committed
        .find_partition(&topic, 1)
        .expect("partition 1")
        .offset();
    assert_eq!(
        p0,
        Offset::Offset(3),
        "next offset to read after 3 messages"
    );
    assert_eq!(p1, Offset::Invalid, "nothing was committed on partition 1");
}
