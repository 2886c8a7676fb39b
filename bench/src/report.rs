//! The markdown report of `make bench`: the table of every contender and the targets,
//! each printed met or missed from ratios measured in the same run.

use std::time::Duration;

use crate::contenders::Contender;
use crate::latency::{self, Latency};
use crate::operator_scale::ScaleReport;
use crate::stats::Spread;

/// One measured run.
pub struct Sample {
    pub rate: f64,
    pub cpu_s: f64,
    pub rss_mib: f64,
    /// Spawn → ready (the JVM's start-up), when the contender says so.
    pub startup_s: Option<f64>,
    /// Messages/s from ready to done.
    pub rate_after_startup: Option<f64>,
    /// What the slow sink saw, for the contenders that call it.
    pub sink: Option<crate::slow_sink::SinkStats>,
}

/// Every run of one contender.
pub struct Row {
    pub contender: Contender,
    pub messages: u64,
    pub samples: Vec<Sample>,
}

impl Row {
    fn spread(&self, f: impl Fn(&Sample) -> Option<f64>) -> Option<Spread> {
        Spread::of(&self.samples.iter().filter_map(f).collect::<Vec<_>>())
    }
    pub fn rate(&self) -> Option<Spread> {
        self.spread(|s| Some(s.rate))
    }
    fn cpu_us_per_msg(&self) -> Option<Spread> {
        self.spread(|s| Some(s.cpu_s * 1e6 / self.messages as f64))
    }
}

/// The idle worker measurement.
pub struct Idle {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// What the report is made of besides the rows.
pub struct Context<'a> {
    pub machine: &'a [String],
    pub messages: u64,
    pub partitions: i32,
    pub runs: usize,
    pub preload: Duration,
    /// The ordering benchmark's workload, when it ran.
    pub sink: Option<SinkContext>,
    pub scale: Option<&'a anyhow::Result<ScaleReport>>,
    pub idle: Option<&'a anyhow::Result<Idle>>,
    /// Produce → readable, at least once and exactly once, when measured.
    pub latency: Option<&'a [anyhow::Result<Latency>; 2]>,
}

/// The ordering benchmark's workload.
pub struct SinkContext {
    pub messages: u64,
    pub keys: u64,
    pub latency: Duration,
    pub max_in_flight: usize,
}

impl SinkContext {
    /// What `max_in_flight` calls at once can give at best: `maxInFlight / latency`.
    pub fn ideal_rate(&self) -> f64 {
        self.max_in_flight as f64 / self.latency.as_secs_f64()
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("not measured".to_owned(), |r| format!("{r:.2}×"))
}

/// `a / b` when both were measured.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).map(|(a, b)| a / b)
}

/// One line of a targets list: the ratio, and met or missed when it has a threshold.
fn target_line(text: &str, r: Option<f64>, at_least: Option<f64>) -> String {
    match (at_least, r) {
        (Some(t), Some(r)) => format!("- {text} — {}: {}", fmt_ratio(Some(r)), verdict(r >= t)),
        _ => format!("- {text} — {}", fmt_ratio(r)),
    }
}

fn fmt_ms(s: Option<f64>) -> String {
    s.map_or("–".to_owned(), |s| format!("{:.1} ms", s * 1000.0))
}

fn show(s: Option<Spread>, digits: usize) -> String {
    s.map_or("–".to_owned(), |s| s.show(digits))
}

/// The markdown report.
pub fn render(ctx: &Context<'_>, rows: &[Row]) -> String {
    let mut md = vec!["# eventconsumer benchmark".to_owned(), String::new()];
    md.extend(ctx.machine.iter().cloned());
    if rows.iter().all(|r| r.contender.calls_sink()) {
        // Only the ordering benchmark ran.
        md.push(format!(
            "- Command: `make bench` (`target/release/bench`), the ordering contenders only; {} runs each, interleaved, fresh consumer group each run",
            ctx.runs
        ));
    } else {
        throughput(&mut md, ctx, rows);
    }
    scale_and_idle(&mut md, ctx);
    if let Some(measured) = ctx.latency {
        md.push(added_latency(measured));
    }
    if let Some(sink) = &ctx.sink {
        ordering(&mut md, ctx.partitions, sink, rows);
    }
    md.push(String::new());
    md.join("\n")
}

/// The throughput table of every contender but the ordering benchmark's, and its targets.
fn throughput(md: &mut Vec<String>, ctx: &Context<'_>, rows: &[Row]) {
    md.push(format!(
        "- Workload: {} valid `OrderPlaced` JSON messages (~300 B) on {} partitions, preloaded in {:.1}s; {} runs per contender, interleaved, fresh consumer group each run, one process at a time",
        ctx.messages,
        ctx.partitions,
        ctx.preload.as_secs_f64(),
        ctx.runs
    ));
    md.push("- Done: the ceilings and the seed loop exit after the messages; every other contender when its group's committed offsets reach the log end (retry topics included), then SIGTERM. msg/s is messages ÷ (spawn → done); start-up is spawn → ready (JVM: partitions assigned; ConsumerPerformance: its header line); CPU is user + system of the whole process life (getrusage), peak RSS is VmHWM".to_owned());
    md.push("- Command: `make bench` (`target/release/bench`)".to_owned());
    md.push(String::new());
    md.push("Medians with (min–max) over the runs.".to_owned());
    md.push(String::new());
    md.push("| contender | messages | msg/s | × same-work | × raw | start-up s | msg/s after start-up | CPU µs/msg | peak RSS MiB |".to_owned());
    md.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned());
    let median = |c: Contender| {
        rows.iter()
            .find(|r| r.contender == c)
            .and_then(|r| r.rate())
            .map(|s| s.median)
    };
    let raw = median(Contender::Ceiling);
    let same = median(Contender::SameWork);
    for r in rows.iter().filter(|r| !r.contender.calls_sink()) {
        let Some(rate) = r.rate() else { continue };
        let x = |base: Option<f64>| {
            base.map_or("–".to_owned(), |b| format!("{:.2}", rate.median / b))
        };
        md.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.contender.label(),
            r.messages,
            rate.show(0),
            x(same),
            x(raw),
            show(r.spread(|s| s.startup_s), 1),
            show(r.spread(|s| s.rate_after_startup), 0),
            show(r.cpu_us_per_msg(), 2),
            show(r.spread(|s| Some(s.rss_mib)), 0),
        ));
    }
    md.push(String::new());
    md.push("## Targets".to_owned());
    md.push(String::new());
    targets(md, &median);
}

fn best(median: &impl Fn(Contender) -> Option<f64>, of: &[Contender]) -> Option<f64> {
    of.iter().filter_map(|c| median(*c)).reduce(f64::max)
}

fn targets(md: &mut Vec<String>, median: &impl Fn(Contender) -> Option<f64>) {
    use Contender as C;
    let mut target = |text: &str, r: Option<f64>, at_least: Option<f64>| {
        md.push(target_line(text, r, at_least));
    };
    let ours = median(C::Ours);
    let spring = best(median, &[C::Spring1, C::Spring6]);
    let spring_rt = best(median, &[C::SpringRetryTopics1, C::SpringRetryTopics6]);
    target(
        "ours ≥ 0.85× the same-work ceiling",
        ratio(ours, median(C::SameWork)),
        Some(0.85),
    );
    target(
        "ours ≥ 0.5× raw librdkafka",
        ratio(ours, median(C::Ceiling)),
        Some(0.5),
    );
    target(
        "ours ≥ 2× Spring Kafka (best concurrency)",
        ratio(ours, spring),
        Some(2.0),
    );
    target(
        "ours ≥ 1.2× franz-go",
        ratio(ours, median(C::Franz)),
        Some(1.2),
    );
    target(
        "exactlyOnce ≥ 0.7× atLeastOnce, both publishing an outcome event per order",
        ratio(median(C::OursExactlyOnce), median(C::OursOutput)),
        Some(0.7),
    );
    target(
        "failure mix: ours in retryTopics mode ≥ 2× Spring @RetryableTopic (best concurrency)",
        ratio(median(C::FailureRetryTopics), spring_rt),
        Some(2.0),
    );
    target(
        "failure mix: ours in blocking mode ≥ 2× Spring DefaultErrorHandler FixedBackOff (concurrency 6)",
        ratio(median(C::Failure), median(C::SpringFailure6)),
        Some(2.0),
    );
    target(
        "failure mix: ours in blocking mode ≥ 1.2× franz-go (in-place retries, the same blocking semantics)",
        ratio(median(C::Failure), median(C::FranzFailure)),
        Some(1.2),
    );
    target(
        "(for reference) failure mix: ours in retryTopics mode vs franz-go's in-place retries",
        ratio(median(C::FailureRetryTopics), median(C::FranzFailure)),
        None,
    );
    target(
        "ours ≥ 20× seed loop (CommitInterval 0)",
        ratio(ours, median(C::Seed)),
        Some(20.0),
    );
    target(
        "(for reference) ours vs seed loop with CommitInterval 1s",
        ratio(ours, median(C::Seed1s)),
        None,
    );
    target(
        "failure mix ≥ 0.5× healthy, blocking mode (per-key order kept)",
        ratio(median(C::Failure), ours),
        Some(0.5),
    );
    target(
        "failure mix ≥ 0.5× healthy, retryTopics mode",
        ratio(median(C::FailureRetryTopics), ours),
        Some(0.5),
    );
    target(
        "(for reference) raw librdkafka vs Kafka's ConsumerPerformance",
        ratio(median(C::Ceiling), median(C::KafkaPerf)),
        None,
    );
}

fn scale_and_idle(md: &mut Vec<String>, ctx: &Context<'_>) {
    let mut target = |text: String, ok: bool| md.push(format!("- {text}: {}", verdict(ok)));
    match ctx.scale {
        Some(Ok(s)) => {
            target(
                format!(
                    "{} EventConsumers reconciled ≤ 30 s — {:.1}s (kubectl create: {:.1}s)",
                    s.consumers,
                    s.converged.as_secs_f64(),
                    s.create.as_secs_f64()
                ),
                s.converged <= Duration::from_secs(30),
            );
            target(
                format!(
                    "operator peak RSS ≤ 64 MiB — {:.1} MiB",
                    mib(s.operator_peak_rss_kib)
                ),
                s.operator_peak_rss_kib <= 64 * 1024,
            );
        }
        Some(Err(e)) => md.push(format!("- operator scale test failed: {e:#}")),
        None => {}
    }
    match ctx.idle {
        Some(Ok(i)) => md.push(format!(
            "- idle worker RSS ≤ 32 MiB — {:.1} MiB (peak {:.1} MiB): {}",
            mib(i.rss_kib),
            mib(i.hwm_kib),
            verdict(i.rss_kib <= 32 * 1024)
        )),
        Some(Err(e)) => md.push(format!("- idle worker measurement failed: {e:#}")),
        None => {}
    }
    if let Some(Ok(s)) = ctx.scale {
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
}

/// The ordering benchmark: a slow sink, one call per message, three ways of calling it.
fn ordering(md: &mut Vec<String>, partitions: i32, sink: &SinkContext, rows: &[Row]) {
    let ideal = sink.ideal_rate();
    md.push(String::new());
    md.push("## Ordering: a slow sink".to_owned());
    md.push(String::new());
    md.push(format!(
        "Each message is one HTTP POST to a local sink that answers after {} ms ({} partitions, {} keys, {} messages; `maxInFlight` / `maxConcurrency` {}, so at best {:.0} msg/s). The worker validates each order and posts its outcome; the Parallel Consumer posts the record as read. *Sustained* is the rate the sink answered calls between the {:.0}th and the {:.0}th percentile of the run's answers: the steady state `maxInFlight / latency` bounds, without the start (filling the calls) and the tail (draining them); the ratios use it. *Ready → committed* is messages ÷ (ready → the group committed all), so a JVM's start-up is not counted against it, but the first fetch and the last commit (up to a second apart from the last call) are. CPU is the contender's process, the sink's is not counted.",
        sink.latency.as_millis(),
        partitions,
        sink.keys,
        sink.messages,
        sink.max_in_flight,
        ideal,
        crate::slow_sink::STEADY.0 * 100.0,
        crate::slow_sink::STEADY.1 * 100.0,
    ));
    md.push(String::new());
    md.push("Medians with (min–max) over the runs.".to_owned());
    md.push(String::new());
    md.push("| contender | messages | sustained msg/s | × partition | × ideal | msg/s ready → committed | sink calls | calls open at most | sink's answer ms (mean) | CPU µs/msg | peak RSS MiB |".to_owned());
    md.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned());
    let sustained = |r: &Row| r.spread(|s| s.sink.and_then(|k| k.steady_rate()));
    let median = |c: Contender| {
        rows.iter()
            .find(|r| r.contender == c)
            .and_then(sustained)
            .map(|s| s.median)
    };
    let partition = median(Contender::SinkPartition);
    for r in rows.iter().filter(|r| r.contender.calls_sink()) {
        let Some(rate) = sustained(r) else {
            continue;
        };
        let sink_field = |f: fn(&crate::slow_sink::SinkStats) -> u64| {
            r.spread(|s| s.sink.as_ref().map(|k| f(k) as f64))
        };
        md.push(format!(
            "| {} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} |",
            r.contender.label(),
            r.messages,
            rate.show(0),
            partition.map_or("–".to_owned(), |p| format!("{:.1}", rate.median / p)),
            rate.median / ideal,
            show(r.spread(|s| s.rate_after_startup), 0),
            show(sink_field(|k| k.requests), 0),
            show(sink_field(|k| k.peak_open), 0),
            show(
                r.spread(|s| s.sink.and_then(|k| k.mean_served_s()).map(|m| m * 1e3)),
                2
            ),
            show(r.cpu_us_per_msg(), 1),
            show(r.spread(|s| Some(s.rss_mib)), 0),
        ));
    }
    md.push(String::new());
    let key = median(Contender::SinkKey);
    let mut target = |text: &str, r: Option<f64>, at_least: Option<f64>| {
        md.push(target_line(text, r, at_least));
    };
    target(
        "`ordering: key` ≥ 50× `ordering: partition` (sustained rates)",
        ratio(key, partition),
        Some(50.0),
    );
    target(
        "`ordering: key` ≥ 0.8× the ideal maxInFlight / latency (sustained rate)",
        key.map(|k| k / ideal),
        Some(0.8),
    );
    let key_row = rows.iter().find(|r| r.contender == Contender::SinkKey);
    target(
        "(for reference) `ordering: key` ready → committed vs the ideal",
        key_row
            .and_then(|r| r.spread(|s| s.rate_after_startup))
            .map(|s| s.median / ideal),
        None,
    );
    let served = key_row
        .and_then(|r| r.spread(|s| s.sink.and_then(|k| k.mean_served_s())))
        .map(|s| s.median);
    target(
        "(for reference) `ordering: key` vs maxInFlight / the sink's measured mean answer time",
        key.zip(served)
            .map(|(k, m)| k * m / sink.max_in_flight as f64),
        None,
    );
    target(
        "(for reference) `ordering: key` vs the Parallel Consumer in KEY order",
        ratio(key, median(Contender::SinkParallelKey)),
        None,
    );
}

/// The line on what `exactlyOnce` adds to latency.
fn added_latency([alo, eos]: &[anyhow::Result<Latency>; 2]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    match (alo, eos) {
        (Ok(a), Ok(e)) => format!(
            "- exactlyOnce adds {:.1} ms at p50 and {:.1} ms at p99 to the time from producing an order to a read_committed reader reading its outcome event ({} orders at {}/s; atLeastOnce p50 {:.1} ms, p99 {:.1} ms; exactlyOnce p50 {:.1} ms, p99 {:.1} ms)",
            ms(e.p50) - ms(a.p50),
            ms(e.p99) - ms(a.p99),
            latency::ORDERS,
            latency::RATE,
            ms(a.p50),
            ms(a.p99),
            ms(e.p50),
            ms(e.p99)
        ),
        (Err(e), _) | (_, Err(e)) => format!("- the latency measurement failed: {e:#}"),
    }
}
