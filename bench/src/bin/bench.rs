//! `bench`: the side-by-side benchmark of `make bench`.
//!
//! Preloads one topic, then runs every contender `--runs` times (interleaved, each with a
//! fresh consumer group, one process at a time) and measures messages/s, CPU seconds and
//! peak RSS; then the operator scale test and the idle RSS of one worker. Prints a
//! markdown table and writes it to `bench/results/<date>-<host>.md`.
//!
//! How each contender is "done": the ceiling and the seed loop exit after the message
//! count; our worker never exits by itself, so its `/metrics` processed + dead-lettered
//! counters are polled and it gets SIGTERM once they reach the count (its time stops
//! there; its CPU includes the clean shutdown).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use eventconsumer_bench::stats::Spread;
use eventconsumer_bench::{
    bootstrap, kafka, machine, metrics, operator_scale, orders, proc, repo_root, sibling_binary,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Contender {
    /// Raw librdkafka consumer, no processing, no commits.
    Ceiling,
    /// Our worker: order handler, validation, commit-after-success, no output topic.
    Ours,
    /// The seed's kafka-go loop, synchronous commit per message.
    Seed,
    /// The seed's loop with CommitInterval 1s.
    Seed1s,
    /// Our worker with 1 % of messages failing twice, 100 ms backoff.
    Failure,
    /// The same failure mix in `retryTopics` delivery mode (retries wait in
    /// `<group>.retry.1`/`.retry.2` instead of holding their partition).
    FailureRetryTopics,
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Contender::Ceiling => "ceiling (raw librdkafka)",
            Contender::Ours => "ours (worker, order/inventory, no output)",
            Contender::Seed => "seed loop (kafka-go, CommitInterval 0)",
            Contender::Seed1s => "seed loop (kafka-go, CommitInterval 1s)",
            Contender::Failure => "ours under failure (1% fail ×2, 100 ms backoff)",
            Contender::FailureRetryTopics => {
                "ours under failure, retryTopics mode (1% fail ×2, 100 ms backoff)"
            }
        }
    }
    fn slug(self) -> &'static str {
        match self {
            Contender::Ceiling => "ceiling",
            Contender::Ours => "ours",
            Contender::Seed => "seed",
            Contender::Seed1s => "seed1s",
            Contender::Failure => "failure",
            Contender::FailureRetryTopics => "failure-retry-topics",
        }
    }
}

#[derive(Debug, Parser)]
#[command(about = "Benchmark the worker against raw librdkafka and the seed's kafka-go loop")]
struct Args {
    /// Messages preloaded and read by each contender.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Runs of each contender (medians, min and max are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Messages the seed loop with CommitInterval 0 reads [default: --messages]. One
    /// commit round trip per message makes it slow and its rate steady, so a prefix
    /// measures it in less time; the table says how many were read.
    #[arg(long)]
    seed_messages: Option<u64>,
    /// Messages the blocking failure contender reads [default: --messages]. Its failing
    /// messages hold their partitions through their backoffs, so it is slow and steady and a
    /// prefix measures it; the retryTopics contender always reads all, as `ours` does, so the
    /// two compare over the same work.
    #[arg(long)]
    failure_messages: Option<u64>,
    /// Contenders to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ceiling,ours,seed,seed1s,failure,failure-retry-topics"
    )]
    contenders: Vec<Contender>,
    /// EventConsumers of the operator scale test (0: skip it).
    #[arg(long, default_value_t = 1000)]
    scale_consumers: usize,
    /// Skip the idle worker measurement.
    #[arg(long)]
    no_idle: bool,
    /// Directory of the results file (none: do not write one).
    #[arg(long, default_value = "bench/results")]
    results_dir: Option<PathBuf>,
    /// Keep the preloaded topic afterwards.
    #[arg(long)]
    keep_topic: bool,
    /// Binaries [default: beside this one; the seed loop at target/bench/seedloop].
    #[arg(long)]
    worker_bin: Option<PathBuf>,
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    #[arg(long)]
    ceiling_bin: Option<PathBuf>,
    #[arg(long)]
    seedloop_bin: Option<PathBuf>,
    /// Per-run time limit in seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
}

fn find(given: &Option<PathBuf>, name: &str, hint: &str) -> anyhow::Result<PathBuf> {
    match given {
        Some(p) => Ok(p.clone()),
        None => sibling_binary(name).ok_or_else(|| anyhow::anyhow!("no {name} found: {hint}")),
    }
}

struct Sample {
    rate: f64,
    cpu_s: f64,
    rss_mib: f64,
}

struct Row {
    contender: Contender,
    messages: u64,
    samples: Vec<Sample>,
}

impl Row {
    fn rate(&self) -> Option<Spread> {
        Spread::of(&self.samples.iter().map(|s| s.rate).collect::<Vec<_>>())
    }
    fn cpu(&self) -> Option<Spread> {
        Spread::of(&self.samples.iter().map(|s| s.cpu_s).collect::<Vec<_>>())
    }
    fn cpu_us_per_msg(&self) -> Option<Spread> {
        Spread::of(
            &self
                .samples
                .iter()
                .map(|s| s.cpu_s * 1e6 / self.messages as f64)
                .collect::<Vec<_>>(),
        )
    }
    fn rss(&self) -> Option<Spread> {
        Spread::of(&self.samples.iter().map(|s| s.rss_mib).collect::<Vec<_>>())
    }
}

struct Bins {
    worker: PathBuf,
    ceiling: PathBuf,
    seedloop: PathBuf,
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<(Stdio, Stdio)> {
    let f = std::fs::File::create(dir.join(name))?;
    Ok((Stdio::from(f.try_clone()?), Stdio::from(f)))
}

fn worker_command(bins: &Bins, bootstrap: &str, topic: &str, group: &str, port: u16) -> Command {
    let mut cmd = Command::new(&bins.worker);
    cmd.args([
        "run",
        "--handler",
        "order",
        "--action",
        "inventory",
        "--no-output",
    ])
    .args(["--topics", topic, "--group-id", group])
    .args(["--bootstrap-servers", bootstrap])
    .args(["--http-addr", &format!("127.0.0.1:{port}")])
    .args(["--dlq-topic", &format!("{topic}.dlq")])
    .args(["--log-level", "info"]);
    cmd
}

/// What every run of every contender shares: binaries, broker, the preloaded topic, where
/// logs go and how long a run may take.
#[derive(Clone, Copy)]
struct Setup<'a> {
    bins: &'a Bins,
    bootstrap: &'a str,
    topic: &'a str,
    partitions: i32,
    logs: &'a Path,
    timeout: Duration,
}

/// Run `run` of contender `c` over `n` messages.
fn run_once(c: Contender, n: u64, run: usize, setup: Setup<'_>) -> anyhow::Result<proc::Measured> {
    let Setup {
        bins,
        bootstrap,
        topic,
        partitions,
        logs,
        timeout,
    } = setup;
    let group = format!(
        "bench-{}-{}-{run}",
        c.slug(),
        eventconsumer_bench::now_millis()
    );
    let (out, err) = log_file(logs, &format!("{}-{run}.log", c.slug()))?;
    let n_text = n.to_string();
    let measured = match c {
        Contender::Ceiling => {
            let mut cmd = Command::new(&bins.ceiling);
            cmd.args(["--topic", topic, "--group", &group, "--messages", &n_text])
                .env("KAFKA_BOOTSTRAP", bootstrap)
                .stdout(out)
                .stderr(err);
            proc::run_measured(&mut cmd, timeout, |_| Ok(false))?
        }
        Contender::Seed | Contender::Seed1s => {
            let interval = if c == Contender::Seed { "0" } else { "1s" };
            let mut cmd = Command::new(&bins.seedloop);
            cmd.args(["-brokers", bootstrap, "-topic", topic, "-group", &group])
                .args(["-n", &n_text, "-commit-interval", interval])
                .stdout(out)
                .stderr(err);
            proc::run_measured(&mut cmd, timeout, |_| Ok(false))?
        }
        Contender::Ours | Contender::Failure | Contender::FailureRetryTopics => {
            let port = eventconsumer_bench::free_port()?;
            let mut cmd = worker_command(bins, bootstrap, topic, &group, port);
            if c != Contender::Ours {
                // "100 ms backoff": at most 100 ms before each retry (jitter takes up to half off).
                cmd.args(["--fault-fail-percent", "1", "--fault-fail-times", "2"])
                    .args(["--backoff-initial", "100ms", "--backoff-max", "100ms"])
                    .args(["--backoff-multiplier", "1"]);
            }
            let mut retry_topics = Vec::new();
            if c == Contender::FailureRetryTopics {
                // Three attempts are all a message failing twice needs, so the group
                // needs (and subscribes to) exactly retry.1 and retry.2, created as the
                // operator does: with the source's partition count.
                cmd.args(["--delivery-mode", "retryTopics", "--max-attempts", "3"]);
                for attempt in 2..=3 {
                    let t = eventconsumer_contract::retry_topic(&group, attempt);
                    kafka::create_topic(bootstrap, &t, partitions, false)?;
                    retry_topics.push(t);
                }
            }
            cmd.stdout(out).stderr(err);
            let measured = proc::run_measured(&mut cmd, timeout, |_| {
                let Ok((200, text)) = metrics::get(port, "/metrics") else {
                    return Ok(false);
                };
                let done = metrics::sum(&text, "eventconsumer_messages_processed_total")
                    + metrics::sum(&text, "eventconsumer_messages_dead_lettered_total");
                Ok(done >= n as f64)
            });
            if !retry_topics.is_empty() {
                let names: Vec<&str> = retry_topics.iter().map(String::as_str).collect();
                let _ = kafka::delete_topics(bootstrap, &names);
            }
            measured?
        }
    };
    if let Some(status) = measured.status
        && !status.success()
        && matches!(c, Contender::Ceiling | Contender::Seed | Contender::Seed1s)
    {
        anyhow::bail!(
            "{} exited with {status} (logs in {})",
            c.slug(),
            logs.display()
        );
    }
    Ok(measured)
}

struct Idle {
    rss_kib: u64,
    hwm_kib: u64,
}

/// A worker connected to Kafka with an empty topic, after it settled.
fn idle_worker(bins: &Bins, bootstrap: &str, logs: &Path) -> anyhow::Result<Idle> {
    let topic = format!("bench.idle.{}", eventconsumer_bench::now_millis());
    kafka::create_topic(bootstrap, &topic, 1, false)?;
    let port = eventconsumer_bench::free_port()?;
    let (out, err) = log_file(logs, "idle.log")?;
    let mut cmd = Command::new(&bins.worker);
    cmd.args(["run", "--handler", "order", "--action", "inventory"])
        .args(["--topics", &topic, "--group-id", &format!("{topic}-g")])
        .args(["--output-topic", &format!("{topic}.out")])
        .args(["--bootstrap-servers", bootstrap])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .stdout(out)
        .stderr(err);
    let mut child = cmd.spawn().context("starting the idle worker")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        if matches!(metrics::get(port, "/readyz"), Ok((200, _))) {
            // Settled: connected, assigned, past its first lag measurements.
            std::thread::sleep(Duration::from_secs(10));
            let pid = child.id();
            break match (proc::vm_rss_kib(pid), proc::vm_hwm_kib(pid)) {
                (Some(rss_kib), Some(hwm_kib)) => Ok(Idle { rss_kib, hwm_kib }),
                _ => Err(anyhow::anyhow!("the idle worker exited")),
            };
        }
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            break Err(anyhow::anyhow!("the idle worker never became ready"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    proc::terminate(&child)?;
    proc::wait_or_kill(&mut child, Duration::from_secs(30))?;
    let _ = kafka::delete_topics(bootstrap, &[&topic]);
    result
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bootstrap = bootstrap()?;
    let hint =
        "`cargo build --release -p eventconsumer-worker -p eventconsumer-bench` (make bench does)";
    let bins = Bins {
        worker: find(&args.worker_bin, "eventconsumer-worker", hint)?,
        ceiling: find(&args.ceiling_bin, "ceiling", hint)?,
        seedloop: match &args.seedloop_bin {
            Some(p) => p.clone(),
            None => repo_root().join("target/bench/seedloop"),
        },
    };
    let timeout = Duration::from_secs(args.timeout_secs);
    let stamp = eventconsumer_bench::now_millis();
    let logs = repo_root().join(format!("target/bench-logs/{stamp}"));
    std::fs::create_dir_all(&logs)?;
    let machine = machine::describe();

    let topic = format!("bench.orders.{stamp}");
    kafka::create_topic(&bootstrap, &topic, args.partitions, false)?;
    let tag = stamp.to_string();
    eprintln!("bench: preloading {} messages into {topic}", args.messages);
    let preload = kafka::produce(&bootstrap, &topic, args.messages, |i| {
        orders::order(i, &orders::bench_order_id(&tag, i), false)
    })?;
    eprintln!("bench: preloaded in {:.1}s", preload.as_secs_f64());

    let mut rows: Vec<Row> = args
        .contenders
        .iter()
        .map(|c| Row {
            contender: *c,
            messages: match c {
                Contender::Seed => args.seed_messages,
                Contender::Failure => args.failure_messages,
                _ => None,
            }
            .unwrap_or(args.messages)
            .min(args.messages),
            samples: Vec::new(),
        })
        .collect();
    let setup = Setup {
        bins: &bins,
        bootstrap: &bootstrap,
        topic: &topic,
        partitions: args.partitions,
        logs: &logs,
        timeout,
    };
    for run in 1..=args.runs {
        for row in &mut rows {
            let c = row.contender;
            let m = run_once(c, row.messages, run, setup)
                .with_context(|| format!("{} run {run}", c.slug()))?;
            let rate = row.messages as f64 / m.wall.as_secs_f64();
            eprintln!(
                "bench: {} run {run}: {:.0} msg/s, {:.1}s, CPU {:.1}s, peak RSS {:.0} MiB",
                c.slug(),
                rate,
                m.wall.as_secs_f64(),
                m.cpu.as_secs_f64(),
                mib(m.peak_rss_kib)
            );
            row.samples.push(Sample {
                rate,
                cpu_s: m.cpu.as_secs_f64(),
                rss_mib: mib(m.peak_rss_kib),
            });
        }
    }

    let scale = if args.scale_consumers > 0 {
        let operator = find(&args.operator_bin, "eventconsumer-operator", hint)?;
        eprintln!(
            "bench: operator scale test with {} EventConsumers",
            args.scale_consumers
        );
        Some(operator_scale::run(
            &operator,
            args.scale_consumers,
            &bootstrap,
            Duration::from_secs(600),
            &logs.join("operator.log"),
        ))
    } else {
        None
    };
    let idle = (!args.no_idle).then(|| idle_worker(&bins, &bootstrap, &logs));
    if !args.keep_topic {
        let _ = kafka::delete_topics(&bootstrap, &[&topic]);
    }

    let md = render(
        &args,
        &rows,
        preload,
        scale.as_ref(),
        idle.as_ref(),
        &machine,
    );
    println!("{md}");
    if let Some(dir) = &args.results_dir {
        let dir = if dir.is_absolute() {
            dir.clone()
        } else {
            repo_root().join(dir)
        };
        std::fs::create_dir_all(&dir)?;
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|_| "undated".to_owned());
        let path = dir.join(format!("{date}-{}.md", machine::hostname()));
        std::fs::write(&path, &md)?;
        eprintln!("bench: results written to {}", path.display());
    }
    Ok(())
}

fn render(
    args: &Args,
    rows: &[Row],
    preload: Duration,
    scale: Option<&anyhow::Result<operator_scale::ScaleReport>>,
    idle: Option<&anyhow::Result<Idle>>,
    machine: &[String],
) -> String {
    let mut md = Vec::new();
    md.push("# eventconsumer benchmark".to_owned());
    md.push(String::new());
    md.extend(machine.iter().cloned());
    md.push(format!(
        "- Workload: {} valid `OrderPlaced` JSON messages (~300 B) on {} partitions, preloaded in {:.1}s; {} runs per contender, fresh consumer group each run, one process at a time",
        args.messages,
        args.partitions,
        preload.as_secs_f64(),
        args.runs
    ));
    md.push("- Command: `make bench` (`target/release/bench`)".to_owned());
    md.push(String::new());
    md.push("Medians with (min–max) over the runs.".to_owned());
    md.push(String::new());
    md.push(
        "| contender | messages | msg/s | × ceiling | CPU s | CPU µs/msg | peak RSS MiB |"
            .to_owned(),
    );
    md.push("|---|---:|---:|---:|---:|---:|---:|".to_owned());
    let median = |c: Contender| {
        rows.iter()
            .find(|r| r.contender == c)
            .and_then(|r| r.rate())
            .map(|s| s.median)
    };
    let ceiling = median(Contender::Ceiling);
    for r in rows {
        let (Some(rate), Some(cpu), Some(per), Some(rss)) =
            (r.rate(), r.cpu(), r.cpu_us_per_msg(), r.rss())
        else {
            continue;
        };
        let ratio = ceiling.map_or("–".to_owned(), |c| format!("{:.2}", rate.median / c));
        md.push(format!(
            "| {} | {} | {} | {ratio} | {} | {} | {} |",
            r.contender.label(),
            r.messages,
            rate.show(0),
            cpu.show(1),
            per.show(2),
            rss.show(0)
        ));
    }
    md.push(String::new());
    md.push("## Targets".to_owned());
    md.push(String::new());
    let ours = median(Contender::Ours);
    let target = |md: &mut Vec<String>, text: String, ok: Option<bool>| {
        md.push(match ok {
            Some(ok) => format!("- {text}: {}", verdict(ok)),
            None => format!("- {text}"),
        });
    };
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let r = ratio(ours, ceiling);
    target(
        &mut md,
        format!("ours ≥ 0.85× ceiling — {}", fmt_ratio(r)),
        r.map(|r| r >= 0.85),
    );
    let r = ratio(ours, median(Contender::Seed));
    target(
        &mut md,
        format!("ours ≥ 20× seed loop (CommitInterval 0) — {}", fmt_ratio(r)),
        r.map(|r| r >= 20.0),
    );
    let r = ratio(ours, median(Contender::Seed1s));
    md.push(format!(
        "- (for reference) ours vs seed loop with CommitInterval 1s — {}",
        fmt_ratio(r)
    ));
    let r = ratio(median(Contender::Failure), ours);
    target(
        &mut md,
        format!(
            "failure mix ≥ 0.5× healthy, blocking mode (per-key order kept) — {}",
            fmt_ratio(r)
        ),
        r.map(|r| r >= 0.5),
    );
    let r = ratio(median(Contender::FailureRetryTopics), ours);
    target(
        &mut md,
        format!(
            "failure mix ≥ 0.5× healthy, retryTopics mode — {}",
            fmt_ratio(r)
        ),
        r.map(|r| r >= 0.5),
    );
    let r = ratio(
        median(Contender::FailureRetryTopics),
        median(Contender::Failure),
    );
    md.push(format!(
        "- (for reference) failure mix in retryTopics mode vs blocking mode — {}",
        fmt_ratio(r)
    ));
    match scale {
        Some(Ok(s)) => {
            target(
                &mut md,
                format!(
                    "{} EventConsumers reconciled ≤ 30 s — {:.1}s (kubectl create: {:.1}s)",
                    s.consumers,
                    s.converged.as_secs_f64(),
                    s.create.as_secs_f64()
                ),
                Some(s.converged <= Duration::from_secs(30)),
            );
            target(
                &mut md,
                format!(
                    "operator peak RSS ≤ 64 MiB — {:.1} MiB",
                    mib(s.operator_peak_rss_kib)
                ),
                Some(s.operator_peak_rss_kib <= 64 * 1024),
            );
        }
        Some(Err(e)) => md.push(format!("- operator scale test failed: {e:#}")),
        None => {}
    }
    match idle {
        Some(Ok(i)) => target(
            &mut md,
            format!(
                "idle worker RSS ≤ 32 MiB — {:.1} MiB (peak {:.1} MiB)",
                mib(i.rss_kib),
                mib(i.hwm_kib)
            ),
            Some(i.rss_kib <= 32 * 1024),
        ),
        Some(Err(e)) => md.push(format!("- idle worker measurement failed: {e:#}")),
        None => {}
    }
    if let Some(Ok(s)) = scale {
        md.push(String::new());
        md.push("## Operator".to_owned());
        md.push(String::new());
        md.push(format!(
            "{} EventConsumers (`replicas: 0`) created by 4 kubectl processes while the operator runs (`--namespace`, no leader election): every Deployment present and every `status.observedGeneration` current after {:.1}s (creating took {:.1}s). Operator: peak RSS {:.1} MiB, CPU {:.1}s, {} reconciles, reconcile p50 {} and p99 {} (from its histogram, interpolated within buckets).",
            s.consumers,
            s.converged.as_secs_f64(),
            s.create.as_secs_f64(),
            mib(s.operator_peak_rss_kib),
            s.operator_cpu_s,
            s.reconciles,
            fmt_ms(s.reconcile_p50_s),
            fmt_ms(s.reconcile_p99_s)
        ));
    }
    md.push(String::new());
    md.join("\n")
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("not measured".to_owned(), |r| format!("{r:.2}×"))
}

fn fmt_ms(s: Option<f64>) -> String {
    s.map_or("–".to_owned(), |s| format!("{:.1} ms", s * 1000.0))
}
