//! The gateway's flags, their environment variables and defaults, and the producer settings
//! that make a 2xx mean the broker has the record.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use eventconsumer_contract::env;
use rdkafka::ClientConfig;

use crate::kafka::KafkaArgs;

/// `host:port` the gateway listens on (API, health and metrics on one port).
pub const LISTEN_ADDR_ENV: &str = "EC_GATEWAY_LISTEN_ADDR";
/// Topic `POST /checkout` publishes `order.placed` events to.
pub const ORDERS_TOPIC_ENV: &str = "EC_GATEWAY_ORDERS_TOPIC";
/// Topic `POST /events` publishes user events to.
pub const EVENTS_TOPIC_ENV: &str = "EC_GATEWAY_EVENTS_TOPIC";
/// Largest accepted request body, in bytes.
pub const BODY_LIMIT_ENV: &str = "EC_GATEWAY_BODY_LIMIT_BYTES";
/// How long a request may wait for Kafka's acknowledgement, e.g. `5s`.
pub const PUBLISH_TIMEOUT_ENV: &str = "EC_GATEWAY_PUBLISH_TIMEOUT";

/// Every gateway-only environment variable (the Kafka ones are in the contract).
pub const ENV_NAMES: &[&str] = &[
    LISTEN_ADDR_ENV,
    ORDERS_TOPIC_ENV,
    EVENTS_TOPIC_ENV,
    BODY_LIMIT_ENV,
    PUBLISH_TIMEOUT_ENV,
];

/// Default body limit: an order of a few hundred lines fits in far less; anything larger
/// is a mistake or abuse, and refusing it early bounds the memory a request can take.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// Default publish timeout: long enough to ride out a leader election (typically a
/// second or two), short enough that an HTTP client is not left hanging.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often readiness re-checks the brokers: a pod that lost Kafka leaves the Service
/// within a few seconds, while the metadata requests stay negligible for the brokers.
pub const DEFAULT_READINESS_INTERVAL: Duration = Duration::from_secs(5);
/// How long one readiness metadata fetch may take; bounds how stale `/readyz` can be
/// after the brokers vanish (interval + this), and stays under the interval so checks
/// never pile up.
pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(3);
/// `Retry-After` on a 503: a broker outage or leader election rarely clears in under a
/// few seconds, and an immediate retry storm would only fill the producer queue again.
pub(super) const RETRY_AFTER_SECS: u64 = 5;
/// The smallest publish timeout: librdkafka refuses a `message.timeout.ms` not above
/// `linger.ms` (5 ms), and an acks=all round trip needs a few milliseconds anyway.
const MIN_PUBLISH_TIMEOUT: Duration = Duration::from_millis(100);
/// The largest publish timeout: librdkafka's `message.timeout.ms` is a 32-bit
/// millisecond count, and no HTTP client waits anywhere near this long anyway.
const MAX_PUBLISH_TIMEOUT: Duration = Duration::from_secs(300);

/// Settings of the `gateway` subcommand; every flag also reads an environment variable.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Address to serve the API, /healthz, /readyz and /metrics on.
    #[arg(long, env = LISTEN_ADDR_ENV, default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

    /// Topic POST /checkout publishes orders to.
    #[arg(long, env = ORDERS_TOPIC_ENV, default_value = "order.placed",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub orders_topic: String,

    /// Topic POST /events publishes user events to.
    #[arg(long, env = EVENTS_TOPIC_ENV, default_value = "user.events",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub events_topic: String,

    /// Largest accepted request body in bytes; larger bodies get 413.
    #[arg(long, env = BODY_LIMIT_ENV, default_value_t = DEFAULT_BODY_LIMIT,
          value_parser = parse_body_limit)]
    pub body_limit_bytes: usize,

    /// How long a request waits for Kafka to acknowledge the record before answering
    /// 503 (e.g. `5s`, `500ms`).
    #[arg(long, env = PUBLISH_TIMEOUT_ENV, default_value = "5s",
          value_parser = parse_publish_timeout)]
    pub publish_timeout: Duration,

    /// Log filter, e.g. `info` or `eventconsumer_worker=debug,rdkafka=warn`.
    #[arg(long, env = env::LOG_LEVEL, default_value = "info")]
    pub log_level: String,
}

fn parse_body_limit(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1 byte".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_publish_timeout(value: &str) -> Result<Duration, String> {
    // The same syntax as the consumer's durations (`500ms`, `5s`, or bare seconds).
    let timeout = crate::duration::parse_duration(value)?;
    if timeout < MIN_PUBLISH_TIMEOUT {
        Err(format!(
            "must be at least {}",
            humantime::format_duration(MIN_PUBLISH_TIMEOUT)
        ))
    } else if timeout > MAX_PUBLISH_TIMEOUT {
        Err(format!(
            "must be at most {}",
            humantime::format_duration(MAX_PUBLISH_TIMEOUT)
        ))
    } else {
        Ok(timeout)
    }
}

impl GatewayArgs {
    /// The gateway settings these flags describe.
    pub fn settings(&self) -> GatewaySettings {
        GatewaySettings {
            orders_topic: self.orders_topic.clone(),
            events_topic: self.events_topic.clone(),
            body_limit: self.body_limit_bytes,
            publish_timeout: self.publish_timeout,
            readiness_interval: DEFAULT_READINESS_INTERVAL,
            readiness_timeout: DEFAULT_READINESS_TIMEOUT,
        }
    }
}

/// What the gateway needs besides its producer.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub orders_topic: String,
    pub events_topic: String,
    pub body_limit: usize,
    pub publish_timeout: Duration,
    /// Pause between two readiness checks of the brokers.
    pub readiness_interval: Duration,
    /// How long one readiness check may wait for the brokers.
    pub readiness_timeout: Duration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            orders_topic: "order.placed".to_owned(),
            events_topic: "user.events".to_owned(),
            body_limit: DEFAULT_BODY_LIMIT,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            readiness_interval: DEFAULT_READINESS_INTERVAL,
            readiness_timeout: DEFAULT_READINESS_TIMEOUT,
        }
    }
}

/// The producer configuration the gateway uses, on top of a base client configuration
/// (from [`KafkaArgs::client_config`], or pointing at a mock cluster).
pub fn producer_config(mut base: ClientConfig, publish_timeout: Duration) -> ClientConfig {
    base
        // Shows up in broker logs and quotas as this service.
        .set("client.id", "eventconsumer-gateway")
        // A 2xx promises the record survives a broker loss: wait for every in-sync replica.
        .set("acks", "all")
        // librdkafka retries transient errors; idempotence keeps those retries from
        // writing duplicates or reordering a customer's / session's records.
        .set("enable.idempotence", "true")
        // Each HTTP caller waits for the acknowledgement, so batching delay is latency
        // the user sees; 5 ms still lets concurrent requests share a batch.
        .set("linger.ms", "5")
        // JSON compresses well and lz4 costs little CPU: fewer bytes to replicate
        // before acks=all can answer.
        .set("compression.type", "lz4")
        // librdkafka fails a record it could not deliver within the publish timeout, so
        // its verdict and our 503 agree and no record lingers in the queue for minutes.
        .set(
            "message.timeout.ms",
            publish_timeout
                .as_millis()
                .clamp(1, i32::MAX as u128)
                .to_string(),
        );
    base
}
