//! The contenders of `make bench`, a module per kind, and running one of them once.
//!
//! Each module builds the command of its contenders and says how the bench knows it is
//! ready and done ([`Launch`]); [`run_once`] runs it in a fresh consumer group and
//! measures it ([`crate::proc`]).

pub mod ceilings;
pub mod franzgo;
pub mod seed;
pub mod sink;
pub mod spring;
pub mod worker;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::ValueEnum;

use crate::progress::GroupProgress;
use crate::{kafka, metrics, proc};

/// Every contender, in the order of the default run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Contender {
    /// Raw librdkafka consumer, no processing, no commits.
    Ceiling,
    /// Kafka's own `ConsumerPerformance` tool (Java client): no processing.
    KafkaPerf,
    /// Raw librdkafka, one thread, the worker's own decode + validate, nothing else.
    SameWork,
    /// Our worker: order handler, validation, commit-after-success, no output topic.
    Ours,
    /// Spring Kafka `@KafkaListener`, container concurrency 1.
    Spring1,
    /// Spring Kafka `@KafkaListener`, container concurrency 6.
    Spring6,
    /// franz-go, goroutine per partition, AutoCommitMarks.
    Franz,
    /// The seed's kafka-go loop, synchronous commit per message.
    Seed,
    /// The seed's loop with CommitInterval 1s.
    Seed1s,
    /// Our worker publishing each order's outcome event to an output topic, at least once.
    OursOutput,
    /// The same with `exactlyOnce`: outcome events and offsets in Kafka transactions.
    OursExactlyOnce,
    /// Our worker with 1 % of messages failing twice, 100 ms backoff (blocking mode).
    Failure,
    /// The same failure mix in `retryTopics` delivery mode.
    FailureRetryTopics,
    /// Spring, concurrency 6: the failure mix through `DefaultErrorHandler` with
    /// `FixedBackOff(100 ms, 2)` (blocking retries).
    SpringFailure6,
    /// Spring, concurrency 1: the failure mix through `@RetryableTopic`.
    SpringRetryTopics1,
    /// Spring, concurrency 6: the failure mix through `@RetryableTopic`.
    SpringRetryTopics6,
    /// franz-go with the failure mix: in-place retries 100 ms apart, then the DLQ.
    FranzFailure,
    /// Our worker calling the slow sink, `ordering: partition` (one call per partition).
    SinkPartition,
    /// Our worker calling the slow sink, `ordering: key`, `maxInFlight` calls at once.
    SinkKey,
    /// The Confluent Parallel Consumer calling the slow sink, `KEY` order, the same
    /// concurrency.
    SinkParallelKey,
}

impl Contender {
    pub fn label(self) -> &'static str {
        match self {
            Contender::Ceiling => "raw librdkafka, no processing (ceiling)",
            Contender::KafkaPerf => "Kafka ConsumerPerformance, no processing (Java ceiling)",
            Contender::SameWork => {
                "raw librdkafka + the worker's decode/validate (same-work ceiling)"
            }
            Contender::Ours => "**the worker** (order handler, validation, commit after success)",
            Contender::Spring1 => "Spring Kafka @KafkaListener, concurrency 1",
            Contender::Spring6 => "Spring Kafka @KafkaListener, concurrency 6",
            Contender::Franz => "franz-go, goroutine per partition, AutoCommitMarks",
            Contender::Seed => "seed loop (kafka-go, CommitInterval 0)",
            Contender::Seed1s => "seed loop (kafka-go, CommitInterval 1s)",
            Contender::OursOutput => "the worker, outcome event to an output topic, atLeastOnce",
            Contender::OursExactlyOnce => {
                "**the worker, outcome event to an output topic, exactlyOnce**"
            }
            Contender::Failure => "the worker, failure mix, blocking mode",
            Contender::FailureRetryTopics => "the worker, failure mix, retryTopics mode",
            Contender::SpringFailure6 => {
                "Spring, failure mix, DefaultErrorHandler FixedBackOff(100 ms, 2), concurrency 6"
            }
            Contender::SpringRetryTopics1 => "Spring, failure mix, @RetryableTopic, concurrency 1",
            Contender::SpringRetryTopics6 => "Spring, failure mix, @RetryableTopic, concurrency 6",
            Contender::FranzFailure => "franz-go, failure mix, in-place retries",
            Contender::SinkPartition => "the worker, `ordering: partition`",
            Contender::SinkKey => "**the worker, `ordering: key`**",
            Contender::SinkParallelKey => "Confluent Parallel Consumer, `KEY` order",
        }
    }

    /// The name `--contenders` takes, also used in group and log file names.
    pub fn slug(self) -> String {
        self.to_possible_value()
            .map_or_else(|| format!("{self:?}"), |v| v.get_name().to_owned())
    }

    /// Contenders of the failure mix that retry in place (their partition waits): slow and
    /// steady, so `--failure-messages` may give them a prefix of the topic.
    pub fn blocking_failure(self) -> bool {
        matches!(
            self,
            Contender::Failure | Contender::SpringFailure6 | Contender::FranzFailure
        )
    }

    /// Contenders that publish an outcome event per message: at least once each waits for
    /// its acknowledgement, so they are slow and steady and `--output-messages` may give
    /// them a prefix of the topic.
    pub fn publishes(self) -> bool {
        matches!(self, Contender::OursOutput | Contender::OursExactlyOnce)
    }

    /// Contenders of the ordering benchmark: they read the keyed topic and call the slow
    /// sink.
    pub fn calls_sink(self) -> bool {
        matches!(
            self,
            Contender::SinkPartition | Contender::SinkKey | Contender::SinkParallelKey
        )
    }
}

/// 1 % of the messages fail twice (the worker's `--fault-fail-percent 1 --fault-fail-times 2`).
pub const FAULT_PER_MILLION: u32 = 10_000;
pub const FAULT_TIMES: u32 = 2;
/// Three attempts: all a message failing twice needs, 100 ms apart.
pub const MAX_ATTEMPTS: u32 = 3;
pub const BACKOFF_MS: u64 = 100;

/// The line the Spring and franz-go contenders print when they first own partitions.
pub const READY_LINE: &str = "bench-ready";

/// Where the contenders' programs are.
pub struct Bins {
    pub worker: PathBuf,
    pub ceiling: PathBuf,
    pub samework: PathBuf,
    pub seedloop: PathBuf,
    pub franzgo: PathBuf,
    pub spring_jar: PathBuf,
    /// The Parallel Consumer contender (`bench/parallel`).
    pub parallel_jar: PathBuf,
    /// Kafka's jars (`$KAFKA_HOME/libs`), for ConsumerPerformance.
    pub kafka_libs: PathBuf,
}

/// What every run of every contender shares: binaries, broker, the preloaded topic, where
/// logs go and how long a run may take.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    pub bins: &'a Bins,
    pub bootstrap: &'a str,
    pub topic: &'a str,
    /// Low watermarks of the topic (index = partition).
    pub low: &'a [i64],
    pub logs: &'a Path,
    pub timeout: Duration,
    /// The slow sink, for the contenders that call it.
    pub sink: Option<SinkSetup<'a>>,
}

/// The slow sink of the ordering benchmark and the concurrency every contender gets.
#[derive(Clone, Copy)]
pub struct SinkSetup<'a> {
    pub url: &'a str,
    pub max_in_flight: usize,
}

impl Setup<'_> {
    pub fn partitions(&self) -> i32 {
        i32::try_from(self.low.len()).unwrap_or(i32::MAX)
    }
}

/// How the bench knows a contender finished starting.
pub enum Ready {
    /// It does not say.
    Never,
    /// A line of its stdout log starts with this marker.
    LogLine(&'static str),
    /// `GET /readyz` on this port answers 200.
    Readyz(u16),
}

/// How the bench knows a contender is done.
pub enum Done {
    /// It exits by itself after the messages (the ceilings, the seed loop).
    Exits,
    /// The group's committed offsets cover the messages and these retry topics are
    /// committed to their ends by the group given beside each; then it gets SIGTERM.
    Committed { retry_topics: Vec<(String, String)> },
}

/// One contender's command and how it is watched.
pub struct Launch {
    pub cmd: Command,
    pub ready: Ready,
    pub done: Done,
    /// Topics the bench creates for the run (with the source's partition count) and deletes
    /// after it.
    pub topics: Vec<String>,
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<(Stdio, Stdio, PathBuf)> {
    let path = dir.join(name);
    let f = std::fs::File::create(&path)?;
    Ok((Stdio::from(f.try_clone()?), Stdio::from(f), path))
}

fn says_ready(log: &Path, marker: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.lines().any(|l| l.starts_with(marker)))
}

/// Run `run` of contender `c` over `n` messages, in a fresh consumer group.
pub fn run_once(
    c: Contender,
    n: u64,
    run: usize,
    setup: Setup<'_>,
) -> anyhow::Result<proc::Measured> {
    let group = format!("bench-{}-{}-{run}", c.slug(), crate::now_millis());
    let launch = match c {
        Contender::Ceiling | Contender::SameWork | Contender::KafkaPerf => {
            ceilings::launch(c, n, &group, setup)?
        }
        Contender::Seed | Contender::Seed1s => seed::launch(c, n, &group, setup),
        Contender::Ours
        | Contender::OursOutput
        | Contender::OursExactlyOnce
        | Contender::Failure
        | Contender::FailureRetryTopics => worker::launch(c, &group, setup)?,
        Contender::Spring1
        | Contender::Spring6
        | Contender::SpringFailure6
        | Contender::SpringRetryTopics1
        | Contender::SpringRetryTopics6 => spring::launch(c, &group, setup),
        Contender::Franz | Contender::FranzFailure => franzgo::launch(c, &group, setup),
        Contender::SinkPartition | Contender::SinkKey | Contender::SinkParallelKey => {
            sink::launch(c, &group, setup)?
        }
    };
    let Launch {
        mut cmd,
        ready,
        done,
        topics,
    } = launch;
    for t in &topics {
        kafka::create_topic(setup.bootstrap, t, setup.partitions(), false)?;
    }
    let (out, err, log) = log_file(setup.logs, &format!("{}-{run}.log", c.slug()))?;
    cmd.stdout(out).stderr(err);
    let exits = matches!(done, Done::Exits);
    let mut progress = match done {
        Done::Exits => None,
        Done::Committed { retry_topics } => Some(GroupProgress::new(
            setup.bootstrap,
            &group,
            setup.topic,
            setup.low.to_vec(),
            n,
            retry_topics,
        )?),
    };
    let measured = proc::run_watched(
        &mut cmd,
        setup.timeout,
        |_| match ready {
            Ready::Never => false,
            Ready::LogLine(marker) => says_ready(&log, marker),
            Ready::Readyz(port) => matches!(metrics::get(port, "/readyz"), Ok((200, _))),
        },
        |_| match &mut progress {
            Some(p) => p.done(),
            None => Ok(false),
        },
    );
    if !topics.is_empty() {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let _ = kafka::delete_topics(setup.bootstrap, &names);
    }
    let measured = measured?;
    if let Some(p) = &progress {
        // A consumer that stops by itself before its group committed everything has no
        // rate to report: the run fails rather than leaving its row out.
        let committed = p.source_committed()?;
        anyhow::ensure!(
            committed >= i64::try_from(n)?,
            "{} stopped before its group committed the messages ({committed} of {n}; log: {})",
            c.slug(),
            log.display()
        );
    }
    if let Some(status) = measured.status
        && !status.success()
        && exits
    {
        anyhow::bail!("{} exited with {status} (log: {})", c.slug(), log.display());
    }
    Ok(measured)
}
