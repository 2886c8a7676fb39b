//! The ISR-too-small scenario on the three-broker cluster: the output topic requires all
//! three replicas in sync (`min.insync.replicas=3`), and one broker, a follower of every
//! output partition, is killed while the workers run, so no output write can be
//! acknowledged. (A follower: a partition whose leader moves while its ISR is too small
//! cannot advance its high watermark in Kafka 4 — KIP-966 — so it could not even be read.) Meanwhile every committed offset is
//! sampled; at the end of the window an independent reader snapshots what the output and
//! dead-letter topics hold. No sampled commit may pass an input record whose outcome is not in
//! that snapshot (its write was not acknowledged). Once the broker is back, every sequence
//! number must be found, as in [`crate::chaos::run`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use testkit::faults::{self, Fault};

use crate::chaos::{self, Config, Report, Topics, Workers};
use crate::{kafka, orders};

/// How often committed offsets are sampled in the window.
const SAMPLE: Duration = Duration::from_millis(500);
/// Time left at the end of the window for the snapshot read, before the broker returns.
const SNAPSHOT_MARGIN: Duration = Duration::from_secs(15);
/// How long the snapshot read is retried: well inside the margin.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(8);

/// The broker every output partition is led by, and the one killed (a follower of all).
const LEADER: i32 = 1;
const VICTIM: i32 = 3;

/// The output topic: every partition on brokers 1, 2, 3 in that order (1 leads), all three
/// required in sync.
fn create_output(cfg: &Config, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.bootstrap)
        .create()?;
    let replicas: &[i32] = &[LEADER, 2, VICTIM];
    let assignment: Vec<&[i32]> = (0..cfg.partitions).map(|_| replicas).collect();
    let new = NewTopic::new(
        topic,
        cfg.partitions,
        TopicReplication::Variable(&assignment),
    )
    .set("min.insync.replicas", "3");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in futures::executor::block_on(admin.create_topics(&[new], &opts))? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in 0..cfg.partitions {
        while faults::leader(&cfg.bootstrap, topic, p) != Ok(LEADER) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{topic}/{p} is not led by broker {LEADER}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// The sequence numbers in the output and dead-letter topics now. A partition whose leader
/// just moved answers `OffsetNotAvailable` until its high watermark caught up: retried for up
/// to `SNAPSHOT_RETRY`.
fn outcomes(cfg: &Config, t: &Topics) -> anyhow::Result<HashSet<u64>> {
    let deadline = Instant::now() + SNAPSHOT_RETRY;
    loop {
        match read_outcomes(cfg, t) {
            Ok(seen) => return Ok(seen),
            Err(e) if Instant::now() < deadline => {
                eprintln!("chaos: snapshot read failed ({e}); again");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

fn read_outcomes(cfg: &Config, t: &Topics) -> anyhow::Result<HashSet<u64>> {
    let mut seen = HashSet::new();
    kafka::read_all(&cfg.bootstrap, &[&t.output, &t.dlq], |r| {
        let seq = crate::chaos::outcome_seq(&r, t);
        if let Some(s) = seq {
            seen.insert(s);
        }
    })?;
    Ok(seen)
}

/// Runs the scenario with one broker down for `window` (at least 30 s: the sampling ends
/// [`SNAPSHOT_MARGIN`] before it).
pub fn isr_too_small(cfg: &Config, window: Duration) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&cfg.log_dir)?;
    anyhow::ensure!(
        window >= Duration::from_secs(30),
        "the window must be at least 30 s"
    );
    let topics = Topics::new("isr");
    create_output(cfg, &topics.output)?;
    let ends = chaos::preload(cfg, &topics, true, false)?;
    // Where each input record is, to tell which records a commit passed.
    let mut seq_at: HashMap<(i32, i64), u64> = HashMap::new();
    kafka::read_all(&cfg.bootstrap, &[&topics.input], |r| {
        if let Some(seq) = r.value.and_then(orders::seq_of_value) {
            seq_at.insert((r.partition, r.offset), seq);
        }
    })?;
    let mut report = Report::default();
    let started = Instant::now();
    let mut workers = Workers::new(cfg, &topics);
    workers.start()?;
    workers.start()?;
    // Into the run first, so some outcomes are acknowledged before the fault.
    loop {
        anyhow::ensure!(
            started.elapsed() < cfg.timeout,
            "not done after {:?}",
            cfg.timeout
        );
        workers.check()?;
        if let Ok((done, total)) = chaos::progress(cfg, &topics, &ends)
            && done * 10 >= total
        {
            break;
        }
        std::thread::sleep(SAMPLE);
    }
    let victim = VICTIM;
    eprintln!("chaos: killing broker {victim} for {window:?}: the output's ISR drops below 3");
    let mut fault = faults::start(Fault::Kill(victim), window).map_err(anyhow::Error::msg)?;
    let window_started = Instant::now();
    let mut samples: Vec<Vec<Option<i64>>> = Vec::new();
    while window_started.elapsed() + SNAPSHOT_MARGIN < window {
        workers.check()?;
        if let Ok(c) =
            kafka::committed(&cfg.bootstrap, &topics.group, &topics.input, cfg.partitions)
        {
            samples.push(c);
        }
        std::thread::sleep(SAMPLE);
    }
    let snapshot = outcomes(cfg, &topics)?;
    report.outage_samples = samples.len() as u64;
    for committed in &samples {
        for (p, c) in committed.iter().enumerate() {
            let (Some(c), Ok(p)) = (c, i32::try_from(p)) else {
                continue;
            };
            let lo = ends.get(usize::try_from(p)?).map_or(0, |e| e.0);
            let passed = (lo..*c).filter(|o| {
                seq_at
                    .get(&(p, *o))
                    .is_some_and(|seq| !snapshot.contains(seq))
            });
            let n = passed.count() as u64;
            if n > 0 {
                eprintln!(
                    "chaos: partition {p} committed {c}, past {n} records without an acknowledged outcome"
                );
                report.committed_past_failure += n;
            }
        }
    }
    let status = fault.wait()?;
    anyhow::ensure!(
        status.success(),
        "hack/kafka-fault.sh kill {victim} failed: {status}"
    );
    report.faults.lines.push(format!(
        "kill -9 of broker {victim} (a follower of every output partition) for {}s: \
         {} commit samples, {} outcomes acknowledged at the end of the window",
        window.as_secs(),
        samples.len(),
        snapshot.len()
    ));
    loop {
        anyhow::ensure!(
            started.elapsed() < cfg.timeout,
            "not done after {:?}",
            cfg.timeout
        );
        workers.check()?;
        if let Ok((done, total)) = chaos::progress(cfg, &topics, &ends)
            && done >= total
        {
            break;
        }
        std::thread::sleep(SAMPLE);
    }
    report.elapsed = started.elapsed();
    chaos::finish(cfg, &topics, workers, report)
}
