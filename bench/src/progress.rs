//! "Done" as the benchmark defines it for a consumer that commits: every message processed
//! *and* the group's committed offsets at the log end, read from the broker while the
//! contender runs.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// One broker round trip; generous for a busy 2-core machine.
const ROUND_TRIP: Duration = Duration::from_secs(10);
/// How often the committed offsets are asked for: each ask is a broker round trip that
/// competes with the contender for the two cores, and the contenders commit about once a
/// second (worker, franz-go) or per poll (Spring), so 200 ms adds little to a run.
const ASK_EVERY: Duration = Duration::from_millis(200);

/// Watches the committed offsets of one group.
pub struct GroupProgress {
    consumer: BaseConsumer,
    /// The source topic, its partition count and the messages to be committed past its low
    /// watermarks.
    source: String,
    partitions: i32,
    low: Vec<i64>,
    messages: i64,
    /// Topics the contender also reads (retry topics), in the order messages move through
    /// them, each with a client of the group that reads it (Spring's retry containers use
    /// `<group><suffix>`): each must be committed to its end once the ones before it are.
    then_drained: Vec<(String, BaseConsumer)>,
    last_ask: Option<Instant>,
}

impl GroupProgress {
    /// `low` are the source's low watermarks (index = partition); `then_drained` the retry
    /// topics with the group that reads each.
    pub fn new(
        bootstrap: &str,
        group: &str,
        source: &str,
        low: Vec<i64>,
        messages: u64,
        then_drained: Vec<(String, String)>,
    ) -> anyhow::Result<GroupProgress> {
        let client = |group: &str| -> anyhow::Result<BaseConsumer> {
            Ok(ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .create()?)
        };
        Ok(GroupProgress {
            consumer: client(group)?,
            source: source.to_owned(),
            partitions: i32::try_from(low.len())?,
            low,
            messages: i64::try_from(messages)?,
            then_drained: then_drained
                .into_iter()
                .map(|(topic, group)| Ok((topic, client(&group)?)))
                .collect::<anyhow::Result<_>>()?,
            last_ask: None,
        })
    }

    /// Messages of the source committed so far (past the low watermarks).
    pub fn source_committed(&self) -> anyhow::Result<i64> {
        Ok(
            crate::kafka::committed_by(&self.consumer, &self.source, self.partitions)?
                .iter()
                .zip(&self.low)
                .map(|(c, low)| c.map_or(0, |c| (c - low).max(0)))
                .sum(),
        )
    }

    /// Whether `topic` is committed to its high watermark on every partition by the group
    /// of `consumer`.
    fn drained(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<bool> {
        let md = consumer.fetch_metadata(Some(topic), ROUND_TRIP)?;
        let Some(t) = md.topics().first() else {
            return Ok(false);
        };
        let partitions = i32::try_from(t.partitions().len())?;
        let committed = crate::kafka::committed_by(consumer, topic, partitions)?;
        for (p, c) in (0..partitions).zip(committed) {
            let (low, high) = consumer.fetch_watermarks(topic, p, ROUND_TRIP)?;
            if high > low && c.unwrap_or(low) < high {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// True once the source's committed offsets cover the messages and every retry topic is
    /// committed to its end (asked at most every [`ASK_EVERY`]).
    pub fn done(&mut self) -> anyhow::Result<bool> {
        if self.last_ask.is_some_and(|t| t.elapsed() < ASK_EVERY) {
            return Ok(false);
        }
        self.last_ask = Some(Instant::now());
        if self.source_committed()? < self.messages {
            return Ok(false);
        }
        // In order: a message moves to retry topic 1 before its source offset is committed,
        // so once the source is done every copy in retry.1 is already there, and so on.
        for (topic, consumer) in &self.then_drained {
            if !Self::drained(consumer, topic)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
