//! The command line: `run` (the consumer a pod runs), `gateway` and `demo`.
//!
//! Every consumer setting is a flag that can also come from the environment variable the
//! operator sets (names from [`eventconsumer_contract::env`], never spelled out here), and
//! `--help` lists both. This module only parses; [`crate::config`] checks that the values
//! make sense together and turns them into [`crate::config::Settings`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use eventconsumer_contract::{
    DeliveryMode, Handler, InitialOffset, OrderAction, Ordering, Semantics, VideoStage, defaults,
    env,
};

use crate::duration::parse_duration;
use crate::kafka::KafkaArgs;

/// The generic EventConsumer worker.
#[derive(Debug, Parser)]
#[command(name = "eventconsumer-worker", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume topics in a consumer group and run one handler over every message.
    Run(Box<RunArgs>),
    /// Serve the checkout and user-event HTTP API that publishes to Kafka.
    Gateway(Box<crate::gateway::GatewayArgs>),
    /// Run all three use cases against an embedded mock Kafka cluster and print a summary.
    Demo(DemoArgs),
}

/// [`eventconsumer_contract::DEFAULT_SHUTDOWN_GRACE_SECS`] as text, for `--help`; a test
/// keeps the two equal.
const DEFAULT_SHUTDOWN_GRACE: &str = "25";

fn default_http_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], eventconsumer_contract::HTTP_PORT))
}

/// Settings of `eventconsumer-worker run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Handler to run over every message.
    #[arg(long, env = env::HANDLER, value_enum)]
    pub handler: Handler,

    /// Order handler only: what to do with each order.
    #[arg(long, env = env::ORDER_ACTION, value_enum)]
    pub action: Option<OrderAction>,

    /// Video handler only: which stage of the chain to run.
    #[arg(long, env = env::VIDEO_STAGE, value_enum)]
    pub stage: Option<VideoStage>,

    /// Analytics handler only: tumbling window length [default: 5s].
    #[arg(long, env = env::ANALYTICS_WINDOW, value_parser = parse_duration)]
    pub window: Option<Duration>,

    /// Topic outcome events are published to [default: order.<action>, analytics.counts,
    /// video.transcoded or video.ready].
    #[arg(long, env = env::OUTPUT_TOPIC)]
    pub output_topic: Option<String>,

    /// Order handler only: HTTP endpoint each order's outcome event is also POSTed to
    /// (before it is published), with an Idempotency-Key header carrying the order id.
    #[arg(long, env = env::SINK_URL)]
    pub sink_url: Option<String>,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Comma-separated source topics.
    #[arg(long, env = env::TOPICS, value_delimiter = ',', required = true)]
    pub topics: Vec<String>,

    /// Consumer group id.
    #[arg(long = "group-id", env = env::GROUP_ID)]
    pub group_id: String,

    /// Where a group without committed offsets starts.
    #[arg(long, env = env::INITIAL_OFFSET, value_enum, default_value_t)]
    pub initial_offset: InitialOffset,

    /// Attempts per message (the first try included) before it is dead-lettered.
    #[arg(long, env = env::MAX_ATTEMPTS, default_value_t = defaults::MAX_ATTEMPTS)]
    pub max_attempts: u32,

    /// Delay before the first retry (jitter takes up to half of it off).
    #[arg(long, env = env::BACKOFF_INITIAL, value_parser = parse_duration, default_value = defaults::BACKOFF_INITIAL)]
    pub backoff_initial: Duration,

    /// Longest delay between two attempts, jitter included.
    #[arg(long, env = env::BACKOFF_MAX, value_parser = parse_duration, default_value = defaults::BACKOFF_MAX)]
    pub backoff_max: Duration,

    /// Factor the delay grows by after each failed attempt.
    #[arg(long, env = env::BACKOFF_MULTIPLIER, default_value_t = defaults::BACKOFF_MULTIPLIER as f32)]
    pub backoff_multiplier: f32,

    /// Time one attempt may take (handler, sink call and output publish) before it counts
    /// as a retryable failure.
    #[arg(long, env = env::ATTEMPT_TIMEOUT, value_parser = parse_duration, default_value = defaults::ATTEMPT_TIMEOUT)]
    pub attempt_timeout: Duration,

    /// Dead-letter topic [default: <first topic>.dlq].
    #[arg(long, env = env::DLQ_TOPIC)]
    pub dlq_topic: Option<String>,

    /// How a failed message waits for its next attempt: `blocking` retries in-process and
    /// holds its partition; `retryTopics` moves it to `<group-id>.retry.<n>` topics so the
    /// partition keeps going (per-key order is then not kept).
    #[arg(long, env = env::DELIVERY_MODE, value_enum, default_value_t)]
    pub delivery_mode: DeliveryMode,

    /// Which messages may be processed at the same time: `partition` one at a time per
    /// partition; `key` the same key in offset order, different keys concurrently; `none`
    /// any, concurrently. Offsets are committed only below the lowest unfinished message.
    #[arg(long, env = env::ORDERING, value_enum, default_value_t)]
    pub ordering: Ordering,

    /// Messages this worker processes at the same time with `--ordering key` or `none`
    /// (a slow key's backlog counts against it, then pauses fetching).
    #[arg(long, env = env::MAX_IN_FLIGHT, default_value_t = defaults::MAX_IN_FLIGHT)]
    pub max_in_flight: u32,

    /// `atLeastOnce` commits offsets after the work; `exactlyOnce` writes outputs, dead
    /// letters, retry records and the offsets in Kafka transactions (not with --sink-url).
    #[arg(long, env = env::SEMANTICS, value_enum, default_value_t)]
    pub semantics: Semantics,

    /// `exactlyOnce`: the transactional id, stable across restarts of this instance
    /// [default: <group-id>.tx.<host name> (the pod's name)].
    #[arg(long)]
    pub transactional_id: Option<String>,

    /// Time in-flight work may take to finish after SIGTERM (seconds, or e.g. 10s).
    #[arg(
        long,
        env = env::SHUTDOWN_GRACE,
        value_parser = parse_duration,
        default_value = DEFAULT_SHUTDOWN_GRACE
    )]
    pub shutdown_grace: Duration,

    /// Address of the /healthz, /readyz and /metrics server.
    #[arg(long, env = env::HTTP_ADDR, default_value_t = default_http_addr())]
    pub http_addr: SocketAddr,

    /// Log filter, e.g. `info` or `eventconsumer_worker=debug,librdkafka=warn`.
    #[arg(long, env = env::LOG_LEVEL, default_value = defaults::LOG_LEVEL)]
    pub log_level: String,

    /// Name of the EventConsumer this worker serves, for logs and DLQ headers
    /// [default: the group id].
    #[arg(long, env = env::CONSUMER_NAME)]
    pub consumer_name: Option<String>,

    /// Video transcode only: simulated transcoding speed in bytes per second (fast by
    /// default so demos and tests do not wait; not an operator setting).
    #[arg(long, default_value_t = 2_000_000_000)]
    pub transcode_bytes_per_sec: u64,

    /// `--no-output` and fault injection, for benchmarks and chaos tests.
    #[command(flatten)]
    pub testing: crate::testing::TestingArgs,
}

/// Settings of `eventconsumer-worker demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Log filter for the demo's own JSON logs (the summary is printed regardless).
    #[arg(long, default_value = "error")]
    pub log_level: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, ValueEnum};
    use std::collections::BTreeSet;

    fn names<E: ValueEnum>() -> Vec<String> {
        E::value_variants()
            .iter()
            .filter_map(ValueEnum::to_possible_value)
            .map(|p| p.get_name().to_owned())
            .collect()
    }

    #[test]
    fn the_enumerated_flags_accept_exactly_the_contract_values() {
        use eventconsumer_contract::{SaslMechanism, values};
        assert_eq!(names::<Handler>(), values::HANDLERS);
        assert_eq!(names::<OrderAction>(), values::ORDER_ACTIONS);
        assert_eq!(names::<VideoStage>(), values::VIDEO_STAGES);
        assert_eq!(names::<InitialOffset>(), values::INITIAL_OFFSETS);
        assert_eq!(names::<DeliveryMode>(), values::DELIVERY_MODES);
        assert_eq!(names::<Ordering>(), values::ORDERINGS);
        assert_eq!(names::<Semantics>(), values::SEMANTICS);
        for mode in DeliveryMode::value_variants() {
            assert_eq!(
                mode.to_possible_value().map(|p| p.get_name().to_owned()),
                Some(mode.as_str().to_owned())
            );
        }
        assert_eq!(names::<SaslMechanism>(), values::SASL_MECHANISMS);
    }

    fn run_command() -> clap::Command {
        let mut cli = Cli::command();
        cli.build();
        cli.find_subcommand(eventconsumer_contract::RUN_SUBCOMMAND)
            .expect("the run subcommand exists")
            .clone()
    }

    #[test]
    fn the_run_subcommand_reads_every_contract_variable_and_no_other() {
        let read: BTreeSet<String> = run_command()
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        let contract: BTreeSet<String> = env::ALL
            .iter()
            .chain(env::TESTING)
            .map(|s| (*s).to_owned())
            .collect();
        let missing: Vec<_> = contract.difference(&read).collect();
        assert!(missing.is_empty(), "run does not read {missing:?}");
        let unknown: Vec<_> = read
            .iter()
            .filter(|e| e.starts_with("EC_") && !contract.contains(*e))
            .collect();
        assert!(
            unknown.is_empty(),
            "run reads EC_ names outside the contract: {unknown:?}"
        );
    }

    #[test]
    fn help_shows_every_variable_name() {
        let help = run_command().render_long_help().to_string();
        for name in env::ALL.iter().chain(env::TESTING) {
            assert!(help.contains(name), "--help does not mention {name}");
        }
    }

    #[test]
    fn the_default_shutdown_grace_is_the_contract_one() {
        assert_eq!(
            parse_duration(DEFAULT_SHUTDOWN_GRACE),
            Ok(Duration::from_secs(
                eventconsumer_contract::DEFAULT_SHUTDOWN_GRACE_SECS
            ))
        );
    }

    #[test]
    fn the_default_http_address_uses_the_contract_port() {
        assert_eq!(
            default_http_addr().port(),
            eventconsumer_contract::HTTP_PORT
        );
    }

    #[test]
    fn a_minimal_command_line_parses() {
        let cli = Cli::try_parse_from([
            "eventconsumer-worker",
            "run",
            "--handler",
            "order",
            "--action",
            "payment",
            "--topics",
            "order.placed,other",
            "--group-id",
            "payment-service",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(args.topics, vec!["order.placed", "other"]);
        assert_eq!(
            args.shutdown_grace,
            Duration::from_secs(eventconsumer_contract::DEFAULT_SHUTDOWN_GRACE_SECS)
        );
    }
}
