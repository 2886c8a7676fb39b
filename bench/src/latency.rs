//! What `exactlyOnce` adds to latency: how long after an order is produced a
//! `read_committed` reader sees its outcome event, at a steady rate well below what either
//! mode handles, for the worker at least once and exactly once.
//!
//! At least once an outcome event is visible once the broker acknowledged it; exactly once
//! only when its transaction commits (every 100 ms), so the difference of the two is the
//! price of the transaction.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::{kafka, metrics, orders, proc};

/// Orders per second: far below the ~1,000/s the worker publishes at least once with six
/// partitions, so neither mode queues and the figure is the path of one order.
pub const RATE: u64 = 200;
/// Orders per measurement: 10 s at [`RATE`], enough for a stable p99 (20 samples above it).
pub const ORDERS: u64 = 2_000;
/// Orders sent first and not measured: the reader's first fetches, the worker's first
/// transaction and the producer's first connection would otherwise make the p99.
const WARM_UP: u64 = 400;
/// Partitions of the input and output topics, as in the throughput runs.
const PARTITIONS: i32 = 6;

/// Produce → visible to a `read_committed` reader, over [`ORDERS`] orders.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
}

/// The `q` quantile (0–1) of `sorted` (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// Runs the worker binary `worker` with `semantics` on fresh topics and measures.
pub fn measure(
    worker: &Path,
    bootstrap: &str,
    semantics: &str,
    logs: &Path,
) -> anyhow::Result<Latency> {
    let stamp = crate::now_millis();
    let (input, output) = (
        format!("bench.latency.{stamp}"),
        format!("bench.latency.{stamp}.out"),
    );
    let group = format!("bench-latency-{semantics}-{stamp}");
    kafka::create_topic(bootstrap, &input, PARTITIONS, false)?;
    kafka::create_topic(bootstrap, &output, PARTITIONS, false)?;
    let port = crate::free_port()?;
    let log = std::fs::File::create(logs.join(format!("latency-{semantics}.log")))?;
    let mut cmd = Command::new(worker);
    cmd.args(["run", "--handler", "order", "--action", "inventory"])
        .args(["--topics", &input, "--group-id", &group])
        .args(["--output-topic", &output, "--semantics", semantics])
        .args(["--bootstrap-servers", bootstrap])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .stdout(log.try_clone()?)
        .stderr(log);
    if semantics == "exactlyOnce" {
        cmd.args(["--transactional-id", &format!("{group}.tx.0")]);
    }
    let mut child = cmd.spawn().context("starting the worker")?;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(metrics::get(port, "/readyz"), Ok((200, _))) {
            anyhow::ensure!(
                Instant::now() < deadline && child.try_wait()?.is_none(),
                "the {semantics} worker never became ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        paced_orders(bootstrap, &input, &output)
    })();
    proc::terminate(&child)?;
    proc::wait_or_kill(&mut child, Duration::from_secs(30))?;
    let _ = kafka::delete_topics(bootstrap, &[&input, &output]);
    result
}

/// Produces [`ORDERS`] orders at [`RATE`] to `input` while a `read_committed` reader of
/// `output` notes when each outcome event arrives.
fn paced_orders(bootstrap: &str, input: &str, output: &str) -> anyhow::Result<Latency> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{output}-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(output, p, Offset::Beginning)?;
    }
    reader.assign(&tpl)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()?;
    let tag = crate::now_millis().to_string();
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let start = Instant::now();
    let interval = Duration::from_secs(1) / u32::try_from(RATE)?;
    let read = |seen: &mut HashMap<String, Instant>, wait: Duration| {
        if let Some(Ok(m)) = reader.poll(wait)
            && let Some(id) = m
                .payload()
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                .and_then(|v| v["order_id"].as_str().map(str::to_owned))
        {
            seen.entry(id).or_insert_with(Instant::now);
        }
    };
    for i in 0..WARM_UP + ORDERS {
        let due = start + interval * u32::try_from(i)?;
        while Instant::now() < due {
            read(&mut seen, due.saturating_duration_since(Instant::now()));
        }
        let id = orders::bench_order_id(&tag, i);
        let (key, value) = orders::order(i, &id, false);
        if i >= WARM_UP {
            sent.insert(id, Instant::now());
        }
        producer
            .send(BaseRecord::to(input).key(&key).payload(&value))
            .map_err(|(e, _)| anyhow::anyhow!("producing to {input}: {e}"))?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10))?;
    let arrived =
        |seen: &HashMap<String, Instant>| sent.keys().filter(|id| seen.contains_key(*id)).count();
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrived(&seen) < sent.len() && Instant::now() < deadline {
        read(&mut seen, Duration::from_millis(100));
    }
    anyhow::ensure!(
        arrived(&seen) == sent.len(),
        "{} of {} outcome events arrived",
        arrived(&seen),
        sent.len()
    );
    let mut took: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, at)| Some(seen.get(id)?.saturating_duration_since(*at)))
        .collect();
    took.sort();
    Ok(Latency {
        p50: quantile(&took, 0.5),
        p99: quantile(&took, 0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&ms, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&ms, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&ms[..1], 0.99), Duration::from_millis(1));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
