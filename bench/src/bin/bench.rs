//! `bench`: the side-by-side benchmark of `make bench`.
//!
//! Preloads one topic, then runs every contender (`eventconsumer_bench::contenders`)
//! `--runs` times — interleaved, each with a fresh consumer group, one process at a time —
//! and measures messages/s, start-up, CPU seconds and peak RSS; then the operator scale
//! test and the idle RSS of one worker. Prints a markdown table with the targets
//! (`eventconsumer_bench::report`) and writes it to `bench/results/<date>-<host>.md`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use eventconsumer_bench::contenders::{self, Bins, Contender, Setup, SinkSetup};
use eventconsumer_bench::report::{self, Idle, Row, Sample, mib};
use eventconsumer_bench::slow_sink::SlowSink;
use eventconsumer_bench::{
    bootstrap, kafka, latency, machine, metrics, operator_scale, orders, proc, repo_root,
    sibling_binary,
};

#[derive(Debug, Parser)]
#[command(
    about = "Benchmark the worker against the ceilings, Spring Kafka, franz-go and the seed's loop"
)]
struct Args {
    /// Messages preloaded and read by each contender (`make bench-long`: 5,000,000).
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
    /// Messages the blocking failure contenders read [default: --messages]: the worker in
    /// blocking mode, Spring with FixedBackOff and franz-go's in-place retries. Their
    /// failing messages hold their partitions through their backoffs, so they are slow and
    /// steady and a prefix measures them; the retry-topic contenders always read all, as
    /// `ours` does, so they compare over the same work.
    #[arg(long)]
    failure_messages: Option<u64>,
    /// Messages the contenders that publish an outcome event per message read: at least
    /// once each waits for its acknowledgement, so they are slow and steady and a prefix
    /// measures them; both read the same prefix, so their ratio compares the same work.
    #[arg(long, default_value_t = 200_000)]
    output_messages: u64,
    /// Contenders to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ceiling,kafka-perf,same-work,ours,ours-output,ours-exactly-once,spring1,spring6,franz,seed,seed1s,failure,failure-retry-topics,spring-failure6,spring-retry-topics1,spring-retry-topics6,franz-failure,sink-partition,sink-key,sink-parallel-key"
    )]
    contenders: Vec<Contender>,
    /// Ordering benchmark: messages on its keyed topic, read by the concurrent contenders
    /// (`sink-key`, `sink-parallel-key`).
    #[arg(long, default_value_t = 100_000)]
    sink_messages: u64,
    /// Messages `sink-partition` reads: one call at a time per partition is slow and steady,
    /// so a prefix measures it (the table says how many).
    #[arg(long, default_value_t = 6_000)]
    sink_partition_messages: u64,
    /// Distinct keys of the ordering benchmark's topic.
    #[arg(long, default_value_t = 1_000)]
    sink_keys: u64,
    /// How long the slow sink takes to answer each call.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    sink_latency: Duration,
    /// Calls in flight per contender (`maxInFlight` of the worker, `maxConcurrency` of the
    /// Parallel Consumer).
    #[arg(long, default_value_t = 512)]
    sink_max_in_flight: usize,
    /// EventConsumers of the operator scale test (0: skip it; it needs the control plane).
    #[arg(long, default_value_t = 1000)]
    scale_consumers: usize,
    /// Skip the idle worker measurement.
    #[arg(long)]
    no_idle: bool,
    /// Directory of the results file (none: do not write one).
    #[arg(long, default_value = "bench/results")]
    results_dir: Option<PathBuf>,
    /// Suffix of the results file name (`<date>-<host><suffix>.md`).
    #[arg(long, default_value = "")]
    results_suffix: String,
    /// Keep the preloaded topic afterwards.
    #[arg(long)]
    keep_topic: bool,
    /// Programs [default: beside this one; the Go, Java and Kafka ones under target/bench
    /// and the cache, as `make bench` builds them].
    #[arg(long)]
    worker_bin: Option<PathBuf>,
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    #[arg(long)]
    ceiling_bin: Option<PathBuf>,
    #[arg(long)]
    samework_bin: Option<PathBuf>,
    #[arg(long)]
    seedloop_bin: Option<PathBuf>,
    #[arg(long)]
    franzgo_bin: Option<PathBuf>,
    #[arg(long)]
    spring_jar: Option<PathBuf>,
    #[arg(long)]
    parallel_jar: Option<PathBuf>,
    /// Kafka's jars, for ConsumerPerformance [default: `$KAFKA_HOME/libs`].
    #[arg(long, env = "KAFKA_HOME_LIBS")]
    kafka_libs: Option<PathBuf>,
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

/// A program `make bench` builds under `target/bench`, or the one given.
fn built(given: &Option<PathBuf>, rel: &str) -> anyhow::Result<PathBuf> {
    let p = given
        .clone()
        .unwrap_or_else(|| repo_root().join("target/bench").join(rel));
    anyhow::ensure!(
        p.is_file(),
        "{} is missing: `make bench-build` builds it",
        p.display()
    );
    Ok(p)
}

/// A worker connected to Kafka with an empty topic, after it settled.
fn idle_worker(bins: &Bins, bootstrap: &str, logs: &std::path::Path) -> anyhow::Result<Idle> {
    let topic = format!("bench.idle.{}", eventconsumer_bench::now_millis());
    kafka::create_topic(bootstrap, &topic, 1, false)?;
    let port = eventconsumer_bench::free_port()?;
    let log = std::fs::File::create(logs.join("idle.log"))?;
    let mut cmd = Command::new(&bins.worker);
    cmd.args(["run", "--handler", "order", "--action", "inventory"])
        .args(["--topics", &topic, "--group-id", &format!("{topic}-g")])
        .args(["--output-topic", &format!("{topic}.out")])
        .args(["--bootstrap-servers", bootstrap])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .stdout(log.try_clone()?)
        .stderr(log);
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

/// Creates `topic` and fills it with `n` messages made by `make`: the time it took and the
/// low watermarks (index = partition).
fn preload_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: u64,
    make: impl Fn(u64) -> (String, String),
) -> anyhow::Result<(Duration, Vec<i64>)> {
    kafka::create_topic(bootstrap, topic, partitions, false)?;
    eprintln!("bench: preloading {n} messages into {topic}");
    let took = kafka::produce(bootstrap, topic, n, make)?;
    eprintln!("bench: preloaded in {:.1}s", took.as_secs_f64());
    let low = kafka::watermarks(bootstrap, topic)?
        .iter()
        .map(|(lo, _)| *lo)
        .collect();
    Ok((took, low))
}

/// The ordering benchmark's slow sink and keyed topic.
struct SinkRun {
    sink: SlowSink,
    topic: String,
    low: Vec<i64>,
    max_in_flight: usize,
}

impl SinkRun {
    /// `base` pointed at the keyed topic and the sink.
    fn setup<'a>(&'a self, base: Setup<'a>) -> Setup<'a> {
        Setup {
            topic: &self.topic,
            low: &self.low,
            sink: Some(SinkSetup {
                url: &self.sink.url,
                max_in_flight: self.max_in_flight,
            }),
            ..base
        }
    }
}

fn bins(args: &Args) -> anyhow::Result<Bins> {
    let hint =
        "`cargo build --release -p eventconsumer-worker -p eventconsumer-bench` (make bench does)";
    let uses = |c: &[Contender]| args.contenders.iter().any(|x| c.contains(x));
    use Contender as C;
    let jvm = uses(&[
        C::Spring1,
        C::Spring6,
        C::SpringFailure6,
        C::SpringRetryTopics1,
        C::SpringRetryTopics6,
    ]);
    let kafka_libs = match &args.kafka_libs {
        Some(p) => p.clone(),
        None => PathBuf::from(std::env::var("KAFKA_HOME").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            format!(
                "{home}/.cache/eventconsumer/kafka-{}",
                machine::pinned_version("KAFKA_VERSION")
            )
        }))
        .join("libs"),
    };
    Ok(Bins {
        worker: find(&args.worker_bin, "eventconsumer-worker", hint)?,
        ceiling: if uses(&[C::Ceiling]) {
            find(&args.ceiling_bin, "ceiling", hint)?
        } else {
            PathBuf::new()
        },
        samework: if uses(&[C::SameWork]) {
            find(&args.samework_bin, "samework", hint)?
        } else {
            PathBuf::new()
        },
        seedloop: if uses(&[C::Seed, C::Seed1s]) {
            built(&args.seedloop_bin, "seedloop")?
        } else {
            PathBuf::new()
        },
        franzgo: if uses(&[C::Franz, C::FranzFailure]) {
            built(&args.franzgo_bin, "franzgo")?
        } else {
            PathBuf::new()
        },
        spring_jar: if jvm {
            built(&args.spring_jar, "spring-orders.jar")?
        } else {
            PathBuf::new()
        },
        parallel_jar: if uses(&[C::SinkParallelKey]) {
            built(&args.parallel_jar, "parallel-orders.jar")?
        } else {
            PathBuf::new()
        },
        kafka_libs,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bootstrap = bootstrap()?;
    let bins = bins(&args)?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let stamp = eventconsumer_bench::now_millis();
    let logs = repo_root().join(format!("target/bench-logs/{stamp}"));
    std::fs::create_dir_all(&logs)?;
    let machine = machine::describe();

    let topic = format!("bench.orders.{stamp}");
    let tag = stamp.to_string();
    // The ordering benchmark alone reads its own topic: nothing to preload here.
    let messages = if args.contenders.iter().all(|c| c.calls_sink()) {
        0
    } else {
        args.messages
    };
    let (preload, low) = preload_topic(&bootstrap, &topic, args.partitions, messages, |i| {
        orders::order(i, &orders::bench_order_id(&tag, i), false)
    })?;

    // The ordering benchmark's keyed topic and slow sink, when one of its contenders runs.
    let sink_run = if args.contenders.iter().any(|c| c.calls_sink()) {
        let topic = format!("bench.sink.{stamp}");
        let (_, low) = preload_topic(
            &bootstrap,
            &topic,
            args.partitions,
            args.sink_messages,
            |i| {
                let (_, value) = orders::order(i, &orders::bench_order_id(&tag, i), false);
                (orders::spread_key(i, args.sink_keys), value)
            },
        )?;
        Some(SinkRun {
            sink: SlowSink::start(args.sink_latency)?,
            topic,
            low,
            max_in_flight: args.sink_max_in_flight,
        })
    } else {
        None
    };

    let mut rows: Vec<Row> = args
        .contenders
        .iter()
        .map(|c| Row {
            contender: *c,
            messages: match c {
                Contender::SinkPartition => args.sink_partition_messages.min(args.sink_messages),
                c if c.calls_sink() => args.sink_messages,
                Contender::Seed => args
                    .seed_messages
                    .unwrap_or(args.messages)
                    .min(args.messages),
                c if c.publishes() => args.output_messages.min(args.messages),
                c if c.blocking_failure() => args
                    .failure_messages
                    .unwrap_or(args.messages)
                    .min(args.messages),
                _ => args.messages,
            },
            samples: Vec::new(),
        })
        .collect();
    let setup = Setup {
        bins: &bins,
        bootstrap: &bootstrap,
        topic: &topic,
        low: &low,
        logs: &logs,
        timeout,
        sink: None,
    };
    for run in 1..=args.runs {
        for row in &mut rows {
            let c = row.contender;
            let (setup, sink) = match &sink_run {
                Some(r) if c.calls_sink() => {
                    r.sink.reset();
                    (r.setup(setup), Some(&r.sink))
                }
                _ => (setup, None),
            };
            let m = contenders::run_once(c, row.messages, run, setup)
                .with_context(|| format!("{} run {run}", c.slug()))?;
            let sink = sink.map(SlowSink::stats);
            let wall = m.wall.as_secs_f64();
            let rate = row.messages as f64 / wall;
            let startup_s = m.ready.map(|r| r.as_secs_f64()).filter(|r| *r < wall);
            let rate_after_startup = startup_s.map(|s| row.messages as f64 / (wall - s));
            eprintln!(
                "bench: {} run {run}: {rate:.0} msg/s, {wall:.1}s (start-up {}), CPU {:.1}s, peak RSS {:.0} MiB",
                c.slug(),
                startup_s.map_or("–".to_owned(), |s| format!("{s:.1}s")),
                m.cpu.as_secs_f64(),
                mib(m.peak_rss_kib)
            );
            row.samples.push(Sample {
                rate,
                cpu_s: m.cpu.as_secs_f64(),
                rss_mib: mib(m.peak_rss_kib),
                startup_s,
                rate_after_startup,
                sink,
            });
            if let Some(sink) = sink {
                eprintln!(
                    "bench: {} run {run}: the sink answered {} calls, at most {} at once, {} calls/s sustained",
                    c.slug(),
                    sink.requests,
                    sink.peak_open,
                    sink.steady_rate()
                        .map_or("–".to_owned(), |r| format!("{r:.0}"))
                );
            }
        }
    }

    let hint = "`cargo build --release -p eventconsumer-operator` (make bench does)";
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
    // What the transaction adds to the time an outcome event takes to be readable.
    let latency = args
        .contenders
        .contains(&Contender::OursExactlyOnce)
        .then(|| {
            ["atLeastOnce", "exactlyOnce"].map(|semantics| {
                eprintln!("bench: latency of the worker, {semantics}");
                latency::measure(&bins.worker, &bootstrap, semantics, &logs)
            })
        });
    if !args.keep_topic {
        let _ = kafka::delete_topics(&bootstrap, &[&topic]);
        if let Some(r) = &sink_run {
            let _ = kafka::delete_topics(&bootstrap, &[&r.topic]);
        }
    }

    let md = report::render(
        &report::Context {
            machine: &machine,
            messages: args.messages,
            partitions: args.partitions,
            runs: args.runs,
            preload,
            sink: sink_run.as_ref().map(|_| report::SinkContext {
                messages: args.sink_messages,
                keys: args.sink_keys,
                latency: args.sink_latency,
                max_in_flight: args.sink_max_in_flight,
            }),
            scale: scale.as_ref(),
            idle: idle.as_ref(),
            latency: latency.as_ref(),
        },
        &rows,
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
        let path = dir.join(format!(
            "{date}-{}{}.md",
            machine::hostname(),
            args.results_suffix
        ));
        std::fs::write(&path, &md)?;
        eprintln!("bench: results written to {}", path.display());
    }
    Ok(())
}
