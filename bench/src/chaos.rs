//! The chaos scenarios: sequence-numbered orders through a group of real worker processes
//! while they are killed, the broker restarts and the group is rescaled; then every
//! sequence number must be found in the output topic or the dead-letter topic.
//!
//! * [`run`] — the main scenario (`make chaos`, and the small version in `make test`).
//!   Every `poison_every`-th order has a wrong total, so the dead-letter path is exercised
//!   too. Events fire at fractions of the committed progress, so the same schedule fits any
//!   message count: rescale 1 → 3 at 10 %, `kills` × `kill -9` of a random worker spread
//!   over 15–85 % (each replaced at once), the broker restart at 50 %, back to one worker
//!   (SIGTERM) at 90 %.
//! * [`dlq_outage`] — the dead-letter topic is missing for a while: no committed offset may
//!   pass a poison message that is not dead-lettered yet, and nothing is lost once it
//!   exists.
//! * On the three-broker cluster, `broker_faults` adds real broker faults to [`run`]
//!   ([`crate::faults`]: partition leaders killed, a broker hung, broker 3 cut off, the DLQ's
//!   leader killed), and [`crate::chaos_isr::isr_too_small`] makes every output write fail.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::faults::{BrokerFaults, FaultDriver, FaultLog, FaultTopics};
use crate::{kafka, orders, proc};

/// Settings of one chaos run.
#[derive(Debug, Clone)]
pub struct Config {
    pub bootstrap: String,
    pub worker_bin: PathBuf,
    pub messages: u64,
    pub partitions: i32,
    pub kills: u32,
    pub broker_restart: bool,
    pub rescale: bool,
    /// Every n-th order is invalid and must end in the DLQ (0: none).
    pub poison_every: u64,
    /// The whole run fails past this.
    pub timeout: Duration,
    pub log_dir: PathBuf,
    pub seed: u64,
    /// Broker faults of the three-broker cluster (none by default).
    pub broker_faults: BrokerFaults,
}

/// What a chaos run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub messages: u64,
    pub lost: u64,
    pub lost_examples: Vec<u64>,
    pub duplicates: u64,
    pub in_output: u64,
    pub in_dlq: u64,
    /// Valid orders that ended in the DLQ (e.g. retries exhausted while the broker was down).
    pub valid_in_dlq: u64,
    /// Poison orders that reached the output topic: a bug.
    pub poison_in_output: u64,
    pub kills: u32,
    pub broker_restarts: u32,
    pub max_workers: usize,
    pub elapsed: Duration,
    /// DLQ outage only: committed offsets seen past an undelivered poison message.
    pub committed_past_failure: u64,
    /// DLQ outage only: samples of committed offsets taken while the DLQ was missing.
    pub outage_samples: u64,
    /// Broker faults that fired, one line each.
    pub faults: FaultLog,
    /// Planned broker faults that did not fire before the run ended.
    pub faults_unfired: usize,
}

impl Report {
    /// Human-readable lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![
            format!(
                "messages {}  lost {}  duplicates {}  time {:.1}s",
                self.messages,
                self.lost,
                self.duplicates,
                self.elapsed.as_secs_f64()
            ),
            format!(
                "found in output {}, in DLQ {} (valid orders there: {}), poison in output {}",
                self.in_output, self.in_dlq, self.valid_in_dlq, self.poison_in_output
            ),
            format!(
                "kill -9: {}, broker restarts: {}, most workers at once: {}",
                self.kills, self.broker_restarts, self.max_workers
            ),
        ];
        if self.outage_samples > 0 {
            out.push(format!(
                "outage: {} committed-offset samples, {} past a record without an acknowledged outcome",
                self.outage_samples, self.committed_past_failure
            ));
        }
        if !self.faults.lines.is_empty() {
            out.push(format!(
                "broker faults: {} leader kill -9, {} hung, {} cut off ({} planned not fired)",
                self.faults.leader_kills, self.faults.hangs, self.faults.cuts, self.faults_unfired
            ));
            out.extend(self.faults.lines.iter().map(|l| format!("  {l}")));
        }
        if !self.lost_examples.is_empty() {
            out.push(format!("first lost: {:?}", self.lost_examples));
        }
        out
    }
}

pub(crate) struct Topics {
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) dlq: String,
    pub(crate) group: String,
}

impl Topics {
    pub(crate) fn new(tag: &str) -> Topics {
        let t = crate::now_millis();
        Topics {
            input: format!("chaos.{tag}.{t}"),
            output: format!("chaos.{tag}.{t}.out"),
            dlq: format!("chaos.{tag}.{t}.dlq"),
            group: format!("chaos-{tag}-{t}"),
        }
    }
}

/// The worker processes of the group.
pub(crate) struct Workers<'a> {
    cfg: &'a Config,
    topics: &'a Topics,
    running: Vec<Child>,
    started: u32,
    max: usize,
}

impl<'a> Workers<'a> {
    /// No worker running yet.
    pub(crate) fn new(cfg: &'a Config, topics: &'a Topics) -> Workers<'a> {
        Workers {
            cfg,
            topics,
            running: Vec::new(),
            started: 0,
            max: 0,
        }
    }

    pub(crate) fn start(&mut self) -> anyhow::Result<()> {
        self.started += 1;
        let log = self
            .cfg
            .log_dir
            .join(format!("worker-{}.log", self.started));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = Command::new(&self.cfg.worker_bin)
            .args(["run", "--handler", "order", "--action", "inventory"])
            .args(["--topics", &self.topics.input])
            .args(["--group-id", &self.topics.group])
            .args(["--output-topic", &self.topics.output])
            .args(["--dlq-topic", &self.topics.dlq])
            .args(["--bootstrap-servers", &self.cfg.bootstrap])
            // Port 0: any free port; several workers run side by side.
            .args(["--http-addr", "127.0.0.1:0"])
            .args(["--shutdown-grace", "10"])
            // The worker's defaults these chaos runs were measured with (they became the
            // CRD's 30s); pinned so the results stay comparable.
            .args(["--attempt-timeout", "10s", "--backoff-max", "10s"])
            .args(["--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", self.cfg.worker_bin.display()))?;
        self.running.push(child);
        self.max = self.max.max(self.running.len());
        Ok(())
    }

    /// Reaps workers that exited on their own and fails if one failed.
    pub(crate) fn check(&mut self) -> anyhow::Result<()> {
        for c in &mut self.running {
            if let Some(status) = c.try_wait()? {
                anyhow::bail!(
                    "worker {} exited by itself with {status} (logs: {})",
                    c.id(),
                    self.cfg.log_dir.display()
                );
            }
        }
        Ok(())
    }

    fn kill_random(&mut self, rng: &mut StdRng) -> anyhow::Result<()> {
        if self.running.is_empty() {
            return Ok(());
        }
        let i = rng.random_range(0..self.running.len());
        let mut c = self.running.swap_remove(i);
        let killed = c.kill();
        let waited = c.wait();
        killed?;
        waited?;
        Ok(())
    }

    fn stop_one(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.running.pop() {
            proc::terminate(&c)?;
            proc::wait_or_kill(&mut c, Duration::from_secs(30))?;
        }
        Ok(())
    }

    fn stop_all(&mut self) {
        for c in &self.running {
            let _ = proc::terminate(c);
        }
        for mut c in self.running.drain(..) {
            let _ = proc::wait_or_kill(&mut c, Duration::from_secs(30));
        }
    }
}

impl Drop for Workers<'_> {
    fn drop(&mut self) {
        for c in &mut self.running {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Committed progress of the group: (committed messages, total), summed over partitions.
pub(crate) fn progress(
    cfg: &Config,
    t: &Topics,
    ends: &[(i64, i64)],
) -> anyhow::Result<(i64, i64)> {
    let committed = kafka::committed(&cfg.bootstrap, &t.group, &t.input, cfg.partitions)?;
    let mut done = 0;
    let mut total = 0;
    for (p, (lo, hi)) in ends.iter().enumerate() {
        total += hi - lo;
        if let Some(Some(c)) = committed.get(p) {
            done += (c - lo).clamp(0, hi - lo);
        }
    }
    Ok((done, total))
}

/// Creates the topics (the output one unless `create_output` is false: the caller made it)
/// and writes the orders.
pub(crate) fn preload(
    cfg: &Config,
    t: &Topics,
    create_dlq: bool,
    create_output: bool,
) -> anyhow::Result<Vec<(i64, i64)>> {
    kafka::create_topic(&cfg.bootstrap, &t.input, cfg.partitions, false)?;
    if create_output {
        kafka::create_topic(&cfg.bootstrap, &t.output, cfg.partitions, false)?;
    }
    if create_dlq {
        kafka::create_topic(&cfg.bootstrap, &t.dlq, 1, false)?;
    }
    let poison_every = cfg.poison_every;
    kafka::produce(&cfg.bootstrap, &t.input, cfg.messages, |i| {
        let poison = poison_every > 0 && i % poison_every == poison_every - 1;
        orders::order(i, &orders::seq_order_id(i), poison)
    })?;
    kafka::watermarks(&cfg.bootstrap, &t.input)
}

pub(crate) fn is_poison(cfg: &Config, seq: u64) -> bool {
    cfg.poison_every > 0 && seq % cfg.poison_every == cfg.poison_every - 1
}

/// The order sequence number of a record read back from the output (in its key) or the DLQ
/// (in the original value).
pub(crate) fn outcome_seq(r: &kafka::Record<'_>, t: &Topics) -> Option<u64> {
    if r.topic == t.output {
        r.key
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(orders::parse_seq_id)
    } else {
        r.value.and_then(orders::seq_of_value)
    }
}

/// Reads output and DLQ back and counts every sequence number.
fn verify(cfg: &Config, t: &Topics, report: &mut Report) -> anyhow::Result<()> {
    let n = usize::try_from(cfg.messages)?;
    let mut seen = vec![0u32; n];
    let mut unknown = 0u64;
    kafka::read_all(&cfg.bootstrap, &[&t.output, &t.dlq], |r| {
        let seq = outcome_seq(&r, t);
        match seq.and_then(|s| usize::try_from(s).ok()).filter(|s| *s < n) {
            Some(s) => {
                seen[s] += 1;
                if r.topic == t.output {
                    report.in_output += 1;
                    if is_poison(cfg, s as u64) {
                        report.poison_in_output += 1;
                    }
                } else {
                    report.in_dlq += 1;
                    if !is_poison(cfg, s as u64) {
                        report.valid_in_dlq += 1;
                    }
                }
            }
            None => unknown += 1,
        }
    })?;
    anyhow::ensure!(
        unknown == 0,
        "{unknown} records in the output/DLQ carry no known sequence number"
    );
    report.messages = cfg.messages;
    for (seq, count) in seen.iter().enumerate() {
        match count {
            0 => {
                report.lost += 1;
                if report.lost_examples.len() < 10 {
                    report.lost_examples.push(seq as u64);
                }
            }
            c => report.duplicates += u64::from(c - 1),
        }
    }
    Ok(())
}

/// Restarts the local stack's broker through hack/ (the scripts that started it).
/// Ends a scenario: stops the workers, checks every sequence number, drops the topics.
pub(crate) fn finish(
    cfg: &Config,
    topics: &Topics,
    mut workers: Workers<'_>,
    mut report: Report,
) -> anyhow::Result<Report> {
    workers.stop_all();
    report.max_workers = workers.max;
    verify(cfg, topics, &mut report)?;
    let _ = kafka::delete_topics(
        &cfg.bootstrap,
        &[&topics.input, &topics.output, &topics.dlq],
    );
    Ok(report)
}

pub fn restart_broker() -> anyhow::Result<()> {
    let hack = crate::repo_root().join("hack");
    for (script, args) in [("dev-down.sh", ["kafka"]), ("dev-up.sh", ["kafka"])] {
        let status = Command::new(hack.join(script))
            .args(args)
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("running hack/{script}"))?;
        anyhow::ensure!(status.success(), "hack/{script} kafka failed: {status}");
    }
    Ok(())
}

/// How often progress is polled: a broker round trip each time.
const POLL: Duration = Duration::from_millis(500);

/// The main scenario.
pub fn run(cfg: &Config) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&cfg.log_dir)?;
    let topics = Topics::new("run");
    let ends = preload(cfg, &topics, true, true)?;
    let mut faults = FaultDriver::new(&cfg.broker_faults);
    let fault_topics = FaultTopics {
        input: &topics.input,
        output: &topics.output,
        dlq: &topics.dlq,
        partitions: cfg.partitions,
    };
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut report = Report::default();
    let started = Instant::now();
    let mut workers = Workers::new(cfg, &topics);
    workers.start()?;
    let kill_at: Vec<f64> = (0..cfg.kills)
        .map(|k| 0.15 + 0.70 * f64::from(k) / f64::from(cfg.kills.max(1)))
        .collect();
    let mut next_kill = 0;
    let mut scaled_up = !cfg.rescale;
    let mut scaled_down = !cfg.rescale;
    let mut restarted = !cfg.broker_restart;
    loop {
        anyhow::ensure!(
            started.elapsed() < cfg.timeout,
            "not done after {:?}",
            cfg.timeout
        );
        workers.check()?;
        // Progress reads fail while the broker restarts; try again next round.
        let Ok((done, total)) = progress(cfg, &topics, &ends) else {
            std::thread::sleep(POLL);
            continue;
        };
        if done >= total {
            break;
        }
        let f = done as f64 / total.max(1) as f64;
        if !scaled_up && f >= 0.10 {
            workers.start()?;
            workers.start()?;
            scaled_up = true;
            eprintln!("chaos: {:.0}% — scaled 1 → 3 workers", f * 100.0);
        }
        if next_kill < kill_at.len() && f >= kill_at[next_kill] {
            workers.kill_random(&mut rng)?;
            report.kills += 1;
            next_kill += 1;
            eprintln!("chaos: {:.0}% — kill -9 #{}", f * 100.0, report.kills);
            workers.start()?;
        }
        if !restarted && f >= 0.5 {
            eprintln!("chaos: {:.0}% — restarting the broker", f * 100.0);
            restart_broker()?;
            report.broker_restarts += 1;
            restarted = true;
        }
        faults.tick(f, &cfg.bootstrap, &fault_topics, &mut rng)?;
        if !scaled_down && f >= 0.9 {
            while workers.running.len() > 1 {
                workers.stop_one()?;
            }
            scaled_down = true;
            eprintln!("chaos: {:.0}% — scaled 3 → 1 worker", f * 100.0);
        }
        std::thread::sleep(POLL);
    }
    report.elapsed = started.elapsed();
    faults.finish()?;
    report.faults_unfired = faults.unfired();
    report.faults = std::mem::take(&mut faults.log);
    finish(cfg, &topics, workers, report)
}

/// The DLQ-outage scenario: `outage` long the DLQ topic does not exist.
pub fn dlq_outage(cfg: &Config, outage: Duration) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&cfg.log_dir)?;
    anyhow::ensure!(cfg.poison_every > 0, "the DLQ outage needs poison messages");
    let topics = Topics::new("dlqout");
    let ends = preload(cfg, &topics, false, true)?;
    // The first poison offset of each partition: no commit may pass it during the outage.
    let mut first_poison: HashMap<i32, i64> = HashMap::new();
    kafka::read_all(&cfg.bootstrap, &[&topics.input], |r| {
        if let Some(seq) = r.value.and_then(orders::seq_of_value)
            && is_poison(cfg, seq)
        {
            let e = first_poison.entry(r.partition).or_insert(r.offset);
            *e = (*e).min(r.offset);
        }
    })?;
    let mut report = Report::default();
    let started = Instant::now();
    let mut workers = Workers::new(cfg, &topics);
    workers.start()?;
    workers.start()?;
    while started.elapsed() < outage {
        workers.check()?;
        let committed =
            kafka::committed(&cfg.bootstrap, &topics.group, &topics.input, cfg.partitions)?;
        for (p, c) in committed.iter().enumerate() {
            let p = i32::try_from(p)?;
            if let (Some(c), Some(limit)) = (c, first_poison.get(&p))
                && c > limit
            {
                report.committed_past_failure += 1;
                eprintln!("chaos: partition {p} committed {c}, past undelivered poison at {limit}");
            }
        }
        report.outage_samples += 1;
        std::thread::sleep(POLL);
    }
    eprintln!("chaos: creating the DLQ topic after {outage:?}");
    kafka::create_topic(&cfg.bootstrap, &topics.dlq, 1, false)?;
    loop {
        anyhow::ensure!(
            started.elapsed() < cfg.timeout,
            "not done after {:?}",
            cfg.timeout
        );
        workers.check()?;
        if let Ok((done, total)) = progress(cfg, &topics, &ends)
            && done >= total
        {
            break;
        }
        std::thread::sleep(POLL);
    }
    report.elapsed = started.elapsed();
    finish(cfg, &topics, workers, report)
}
