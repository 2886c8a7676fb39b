//! Kafka helpers: topics, preloading, watermarks and a group's committed offsets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, Message};

/// Timeout of one admin or metadata round trip; generous for a busy 2-core machine.
const ROUND_TRIP: Duration = Duration::from_secs(10);

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

/// Creates `topic` with `partitions` and the broker's default replication factor (1 on the
/// single local broker, 3 on the three-broker cluster); an existing topic is an error unless
/// `exist_ok`.
pub fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    exist_ok: bool,
) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let opts = AdminOptions::new().operation_timeout(Some(ROUND_TRIP));
    let results = futures::executor::block_on(admin.create_topics(
        &[NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(-1),
        )],
        &opts,
    ))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if exist_ok => {}
            Err((t, e)) => anyhow::bail!("creating topic {t}: {e}"),
        }
    }
    // Wait until the broker's metadata shows every partition with a leader.
    let consumer = metadata_client(bootstrap)?;
    let deadline = Instant::now() + ROUND_TRIP * 3;
    loop {
        let ready = consumer
            .fetch_metadata(Some(topic), ROUND_TRIP)
            .ok()
            .and_then(|md| {
                md.topics().first().map(|t| {
                    t.error().is_none()
                        && t.partitions().len() == usize::try_from(partitions).unwrap_or(0)
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            })
            .unwrap_or(false);
        if ready {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "topic {topic} has no leaders yet"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deletes `topics`, ignoring ones that do not exist.
pub fn delete_topics(bootstrap: &str, topics: &[&str]) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let opts = AdminOptions::new().operation_timeout(Some(ROUND_TRIP));
    let results = futures::executor::block_on(admin.delete_topics(topics, &opts))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((t, e)) => anyhow::bail!("deleting topic {t}: {e}"),
        }
    }
    Ok(())
}

fn metadata_client(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

/// Low and high watermarks of every partition of `topic` (index = partition).
pub fn watermarks(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<(i64, i64)>> {
    let c = metadata_client(bootstrap)?;
    let md = c.fetch_metadata(Some(topic), ROUND_TRIP)?;
    let t = md.topics().first().context("no metadata for the topic")?;
    if let Some(e) = t.error() {
        anyhow::bail!("topic {topic}: {e:?}");
    }
    let mut out = Vec::with_capacity(t.partitions().len());
    for p in 0..i32::try_from(t.partitions().len())? {
        out.push(c.fetch_watermarks(topic, p, ROUND_TRIP)?);
    }
    Ok(out)
}

/// The consumer of the raw ceilings (`ceiling`, `samework`), subscribed to `topic`: one
/// definition, so the two differ only in what they do per message.
pub fn raw_consumer(bootstrap: &str, group: &str, topic: &str) -> anyhow::Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    // The worker's fetching. With librdkafka's defaults a consumer slower than the fetcher
    // (the same-work ceiling) drains a full 64 MiB queue, then waits out the rest of the
    // 1 s `fetch.queue.backoff.ms`: it measured 170,110 msg/s on 1.26 µs of CPU each.
    eventconsumer_worker::delivery::fetch_tuning(&mut config);
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// The offsets `group` committed for each partition of `topic` (`None`: nothing committed).
pub fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<Option<i64>>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    committed_by(&c, topic, partitions)
}

/// [`committed`] through an existing consumer of the group (one connection for many asks).
pub fn committed_by(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<Option<i64>>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, ROUND_TRIP)?;
    Ok((0..partitions)
        .map(|p| {
            got.find_partition(topic, p).and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
        })
        .collect())
}

/// Counts failed deliveries of the preload producer.
#[derive(Default)]
pub struct Failures(AtomicU64, std::sync::Mutex<Option<String>>);

impl ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.0.fetch_add(1, Ordering::Relaxed);
            let mut first = self.1.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Produces `n` messages made by `make(i) -> (key, value)` to `topic` through an
/// idempotent producer, as fast as the broker takes them. Returns the elapsed time.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    n: u64,
    make: impl Fn(u64) -> (String, String),
) -> anyhow::Result<Duration> {
    let producer: BaseProducer<Failures> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Big batches: a preload is about throughput, not latency.
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "262144")
        .create_with_context(Failures::default())?;
    let started = Instant::now();
    for i in 0..n {
        let (key, value) = make(i);
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e).context("producing"),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let failures = producer.context().0.load(Ordering::Relaxed);
    if failures > 0 {
        let first = producer
            .context()
            .1
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        anyhow::bail!("{failures} messages were not delivered (first: {first:?})");
    }
    Ok(started.elapsed())
}

/// One record read back by [`read_all`].
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Reads every record of `topics` from the beginning to the high watermarks seen at the
/// start, calling `each` for each. No group, no commits.
pub fn read_all(
    bootstrap: &str,
    topics: &[&str],
    mut each: impl FnMut(Record<'_>),
) -> anyhow::Result<u64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused-assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for topic in topics {
        for (p, (lo, hi)) in watermarks(bootstrap, topic)?.into_iter().enumerate() {
            let p = i32::try_from(p)?;
            if hi > lo {
                tpl.add_partition_offset(topic, p, Offset::Offset(lo))?;
                ends.insert(((*topic).to_owned(), p), hi);
            }
        }
    }
    if ends.is_empty() {
        return Ok(0);
    }
    c.assign(&tpl)?;
    let mut read = 0u64;
    let mut idle = Instant::now();
    while !ends.is_empty() {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = Instant::now();
                let key = (m.topic().to_owned(), m.partition());
                let Some(end) = ends.get(&key).copied() else {
                    continue;
                };
                if m.offset() < end {
                    each(Record {
                        topic: m.topic(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key(),
                        value: m.payload(),
                    });
                    read += 1;
                }
                if m.offset() + 1 >= end {
                    ends.remove(&key);
                }
            }
            Some(Err(e)) => anyhow::bail!("reading back: {e}"),
            None => anyhow::ensure!(
                idle.elapsed() < Duration::from_secs(60),
                "reading back stalled with {} partitions unfinished",
                ends.len()
            ),
        }
    }
    Ok(read)
}
