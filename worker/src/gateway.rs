//! The HTTP gateway (`eventconsumer-worker gateway`): the seed's checkout and events
//! services as one server that turns HTTP requests into Kafka records.
//!
//! - `POST /checkout` takes a [`CheckoutRequest`], assigns the order id and time, checks
//!   the total, publishes an [`OrderPlaced`] keyed by customer id and answers `202` with
//!   `{"order_id": "…"}`.
//! - `POST /events` takes a [`UserEvent`], stamps it, checks it, publishes it keyed by
//!   session id and answers `204`.
//! - `/healthz`, `/readyz` and `/metrics` come from [`crate::http::router`].
//!
//! Why it is built this way, unlike the seed's two services:
//! - **A 2xx means the broker has the record.** The producer uses `acks=all` and
//!   idempotence, and the handler waits for the delivery report before answering. When
//!   Kafka cannot take the record within the publish timeout (queue full, broker down,
//!   no acknowledgement) the answer is `503` with `Retry-After`, never a silent drop. A
//!   `503` after a timeout does not prove the record was *not* written, so a client that
//!   retries may create a duplicate: delivery is at least once.
//! - **The client's mistakes are `400`, with a JSON body naming the field** (bad JSON,
//!   wrong content type, missing or invalid fields, a total that does not add up), and
//!   `413` above the body limit. Nothing a client sends can produce a `500`.
//! - **Readiness reflects the brokers**: a background task fetches metadata periodically
//!   and flips `/readyz`, so a pod that lost Kafka stops receiving traffic.
//!
//! [`Gateway`] is usable without a process (tests, the demo): build a producer with
//! [`producer_config`], then call [`Gateway::checkout`] / [`Gateway::event`] directly
//! or serve [`Gateway::app`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Args;
use eventconsumer_contract::env;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::events::{CheckoutRequest, EventError, OrderPlaced, UserEvent};
use crate::http::{self, Readiness};
use crate::kafka::{KafkaArgs, KafkaConfigError};
use crate::telemetry;

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

pub const CHECKOUT_PATH: &str = "/checkout";
pub const EVENTS_PATH: &str = "/events";

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
const RETRY_AFTER_SECS: u64 = 5;
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

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A setting that cannot work: the process should exit with the usage exit code.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the Kafka producer: {0}")]
    Producer(#[source] KafkaError),
}

/// A gateway setting that cannot work, named after its flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Kafka(#[from] KafkaConfigError),
    #[error("{0}")]
    LogLevel(String),
}

/// Why Kafka did not take a record. Every case but `TooLarge` answers 503: Kafka's state, not
/// the client's fault, and a retry may succeed. `TooLarge` answers 413: retrying the same body
/// can never succeed (the body limit is above what the producer or broker accepts).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Kafka did not acknowledge the record on {topic} within {}", humantime::format_duration(*.after))]
    Timeout { topic: String, after: Duration },
    #[error("the producer queue for {topic} stayed full for {}", humantime::format_duration(*.after))]
    QueueFull { topic: String, after: Duration },
    #[error("the record for {topic} is larger than Kafka accepts: {source}")]
    TooLarge {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka refused the record on {topic}: {source}")]
    Rejected {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

impl PublishError {
    /// A short, stable name for the failures metric.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::Timeout { .. } => "timeout",
            PublishError::QueueFull { .. } => "queue_full",
            PublishError::TooLarge { .. } => "too_large",
            PublishError::Rejected { .. } => "rejected",
        }
    }
}

/// Why [`Gateway::checkout`] or [`Gateway::event`] did not publish.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request breaks a rule; names the field. The client's mistake.
    #[error(transparent)]
    Invalid(#[from] EventError),
    /// Serialising our own event failed: a bug on our side, never the client's.
    #[error("cannot encode the event: {0}")]
    Encode(#[source] serde_json::Error),
    /// Kafka did not take the record in time.
    #[error(transparent)]
    Unavailable(#[from] PublishError),
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    topic: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    result: &'static str,
}

struct Metrics {
    requests: Family<RequestLabels, Counter>,
    readiness_checks: Family<CheckLabels, Counter>,
    publish_latency: Family<TopicLabels, Histogram>,
    publish_failures: Family<FailureLabels, Counter>,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            requests: Family::default(),
            readiness_checks: Family::default(),
            // 1 ms to ~16 s doubling: a healthy acks=all publish takes a few ms, and
            // the top buckets still resolve the 5 s default timeout.
            publish_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            publish_failures: Family::default(),
        };
        registry.register(
            "gateway_http_requests",
            "HTTP requests answered by the gateway, by route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "gateway_readiness_checks",
            "Broker metadata checks behind /readyz, by result (reachable or unreachable)",
            metrics.readiness_checks.clone(),
        );
        registry.register_with_unit(
            "gateway_publish_duration",
            "Time from handing a record to the producer to the broker's acknowledgement",
            Unit::Seconds,
            metrics.publish_latency.clone(),
        );
        registry.register(
            "gateway_publish_failures",
            "Records Kafka did not take, by topic and reason",
            metrics.publish_failures.clone(),
        );
        metrics
    }
}

struct Inner {
    producer: FutureProducer,
    settings: GatewaySettings,
    metrics: Metrics,
}

/// The gateway: a producer, its settings and its metrics. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Gateway {
    /// A gateway publishing through `producer`; registers its metrics in `registry`.
    pub fn new(
        producer: FutureProducer,
        settings: GatewaySettings,
        registry: &mut Registry,
    ) -> Self {
        Gateway {
            inner: Arc::new(Inner {
                producer,
                settings,
                metrics: Metrics::register(registry),
            }),
        }
    }

    pub fn settings(&self) -> &GatewaySettings {
        &self.inner.settings
    }

    /// Validates a checkout, assigns its order id (a UUIDv7, so ids sort by time) and
    /// time, and publishes it keyed by customer id. Returns the published order once
    /// Kafka acknowledged it.
    pub async fn checkout(&self, request: CheckoutRequest) -> Result<OrderPlaced, SubmitError> {
        request.validate()?;
        let order = request.into_order(uuid::Uuid::now_v7().to_string(), now_rfc3339());
        let payload = serde_json::to_vec(&order).map_err(SubmitError::Encode)?;
        self.publish(
            &self.inner.settings.orders_topic,
            &order.customer_id,
            &payload,
        )
        .await?;
        Ok(order)
    }

    /// Stamps a user event with the current time, validates it and publishes it keyed
    /// by session id. Returns the published event once Kafka acknowledged it.
    pub async fn event(&self, mut event: UserEvent) -> Result<UserEvent, SubmitError> {
        event.validate()?;
        event.timestamp = now_rfc3339();
        let payload = serde_json::to_vec(&event).map_err(SubmitError::Encode)?;
        self.publish(
            &self.inner.settings.events_topic,
            &event.session_id,
            &payload,
        )
        .await?;
        Ok(event)
    }

    /// Sends one record and waits for its delivery report, at most the publish timeout.
    async fn publish(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), PublishError> {
        let timeout = self.inner.settings.publish_timeout;
        let started = Instant::now();
        let record = FutureRecord::to(topic).key(key).payload(payload);
        // The outer timer bounds the answer even if librdkafka's own message timeout
        // (set to the same value) fires a little late.
        let sent = tokio::time::timeout(
            timeout,
            self.inner.producer.send(record, Timeout::After(timeout)),
        )
        .await;
        let result = match sent {
            Err(_elapsed) => Err(PublishError::Timeout {
                topic: topic.to_owned(),
                after: timeout,
            }),
            Ok(Ok(_delivery)) => Ok(()),
            Ok(Err((error, _message))) => Err(match error.rdkafka_error_code() {
                Some(RDKafkaErrorCode::QueueFull) => PublishError::QueueFull {
                    topic: topic.to_owned(),
                    after: timeout,
                },
                Some(RDKafkaErrorCode::MessageTimedOut) => PublishError::Timeout {
                    topic: topic.to_owned(),
                    after: timeout,
                },
                Some(RDKafkaErrorCode::MessageSizeTooLarge) => PublishError::TooLarge {
                    topic: topic.to_owned(),
                    source: error,
                },
                _ => PublishError::Rejected {
                    topic: topic.to_owned(),
                    source: error,
                },
            }),
        };
        let metrics = &self.inner.metrics;
        match &result {
            Ok(()) => {
                metrics
                    .publish_latency
                    .get_or_create(&TopicLabels {
                        topic: topic.to_owned(),
                    })
                    .observe(started.elapsed().as_secs_f64());
            }
            Err(error) => {
                metrics
                    .publish_failures
                    .get_or_create(&FailureLabels {
                        topic: topic.to_owned(),
                        reason: error.reason().to_owned(),
                    })
                    .inc();
                tracing::warn!(topic, key, reason = error.reason(), error = %error, "publish failed");
            }
        }
        result
    }

    /// `POST /checkout` and `POST /events` alone, with the body limit.
    pub fn api_router(&self) -> Router {
        Router::new()
            .route(CHECKOUT_PATH, post(checkout))
            .route(EVENTS_PATH, post(events))
            .layer(DefaultBodyLimit::max(self.inner.settings.body_limit))
            .with_state(self.clone())
    }

    /// The whole HTTP app: the API, `/healthz`, `/readyz`, `/metrics`, and a request
    /// counter over all of them.
    pub fn app(&self, registry: Arc<Registry>, readiness: Arc<Readiness>) -> Router {
        self.api_router()
            .merge(http::router(registry, readiness))
            .layer(middleware::from_fn_with_state(self.clone(), count_requests))
    }

    /// Whether the brokers answer a metadata request now. Returns the problems the
    /// brokers report about our topics (e.g. a topic that does not exist yet): logged,
    /// not fatal, because brokers may create topics on first use.
    pub async fn brokers_reachable(&self) -> Result<Vec<String>, KafkaError> {
        let producer = self.inner.producer.clone();
        let timeout = self.inner.settings.readiness_timeout;
        let topics = [
            self.inner.settings.orders_topic.clone(),
            self.inner.settings.events_topic.clone(),
        ];
        let fetched = tokio::task::spawn_blocking(move || -> Result<Vec<String>, KafkaError> {
            let mut problems = Vec::new();
            for topic in &topics {
                let metadata = producer.client().fetch_metadata(Some(topic), timeout)?;
                for t in metadata.topics() {
                    if let Some(error) = t.error() {
                        problems.push(format!("{}: {error:?}", t.name()));
                    }
                }
            }
            Ok(problems)
        })
        .await;
        match fetched {
            Ok(result) => result,
            // The blocking task panicked or was cancelled at runtime shutdown.
            Err(_join) => Err(KafkaError::MetadataFetch(RDKafkaErrorCode::Fail)),
        }
    }

    /// Keeps `readiness` equal to "the brokers answer", re-checking every
    /// `readiness_interval` until `shutdown`. Logs only changes, not every check.
    pub fn watch_readiness(
        &self,
        readiness: Arc<Readiness>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let gateway = self.clone();
        tokio::spawn(async move {
            let mut known_problems = Vec::new();
            loop {
                let check = tokio::select! {
                    () = shutdown.cancelled() => return,
                    check = gateway.brokers_reachable() => check,
                };
                let ready = check.is_ok();
                if ready != readiness.get() {
                    match &check {
                        Ok(_) => tracing::info!("brokers reachable: ready"),
                        Err(e) => tracing::warn!(error = %e, "brokers unreachable: not ready"),
                    }
                }
                if let Ok(problems) = check
                    && problems != known_problems
                {
                    if !problems.is_empty() {
                        tracing::warn!(?problems, "the brokers report problems with our topics");
                    }
                    known_problems = problems;
                }
                readiness.set(ready);
                gateway
                    .inner
                    .metrics
                    .readiness_checks
                    .get_or_create(&CheckLabels {
                        result: if ready { "reachable" } else { "unreachable" },
                    })
                    .inc();
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(gateway.inner.settings.readiness_interval) => {}
                }
            }
        })
    }

    /// Waits for queued records to be delivered, at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.inner.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .unwrap_or(Err(KafkaError::Flush(RDKafkaErrorCode::Fail)))
    }
}

/// Counts every answer by matched route (not raw path, to bound label cardinality).
async fn count_requests(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    gateway
        .inner
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CheckoutAccepted {
    pub order_id: String,
}

async fn checkout(
    State(gateway): State<Gateway>,
    JsonBody(request): JsonBody<CheckoutRequest>,
) -> Result<(StatusCode, axum::Json<CheckoutAccepted>), ApiError> {
    let order = gateway.checkout(request).await?;
    tracing::info!(order_id = %order.order_id, customer_id = %order.customer_id, "order placed");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(CheckoutAccepted {
            order_id: order.order_id,
        }),
    ))
}

async fn events(
    State(gateway): State<Gateway>,
    JsonBody(event): JsonBody<UserEvent>,
) -> Result<StatusCode, ApiError> {
    gateway.event(event).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Everything a request can be answered with instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Content-Type must be application/json")]
    ContentType,
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("the body does not match the expected shape: {0}")]
    Shape(String),
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// A stable code: `unsupported_content_type`, `body_too_large`, `unreadable_body`,
    /// `invalid_json`, `invalid_field`, `kafka_unavailable` or `internal`.
    pub error: String,
    /// The offending field's path, e.g. `items[0].quantity`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A human-readable explanation.
    pub message: String,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            ApiError::ContentType => (StatusCode::BAD_REQUEST, "unsupported_content_type", None),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None),
            ApiError::Body(_) => (StatusCode::BAD_REQUEST, "unreadable_body", None),
            ApiError::Syntax(_) | ApiError::Shape(_) => {
                (StatusCode::BAD_REQUEST, "invalid_json", None)
            }
            ApiError::Field { field, .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_field",
                Some(field.clone()),
            ),
            ApiError::Submit(SubmitError::Invalid(EventError::Invalid { field, .. })) => (
                StatusCode::BAD_REQUEST,
                "invalid_field",
                Some(field.clone()),
            ),
            ApiError::Submit(SubmitError::Invalid(EventError::Decode(_))) => {
                (StatusCode::BAD_REQUEST, "invalid_json", None)
            }
            ApiError::Submit(SubmitError::Unavailable(PublishError::TooLarge { .. })) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "record_too_large", None)
            }
            ApiError::Submit(SubmitError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable", None)
            }
            ApiError::Submit(SubmitError::Encode(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed on our side");
        }
        let body = ErrorBody {
            error: code.to_owned(),
            field,
            message: self.to_string(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// A JSON body extractor whose rejections are [`ApiError`]s: `400` naming the field for
/// anything the client got wrong, `413` above the body limit.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Gateway> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, gateway: &Gateway) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::ContentType);
        }
        let bytes = Bytes::from_request(request, gateway)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge {
                        limit: gateway.inner.settings.body_limit,
                    }
                } else {
                    ApiError::Body(rejection.body_text())
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// `application/json` or any `application/*+json`, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(mime) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
    else {
        return false;
    };
    mime.type_() == mime::APPLICATION
        && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
}

/// Decodes `bytes` as `T`, turning serde's errors into ones that name the field.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also read a struct from an array (`[…]`) and blame `[0]`; our bodies
    // are objects, so say that instead.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => {}
        Some(_) => return Err(ApiError::Shape("the body must be a JSON object".to_owned())),
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(json_error)?;
    deserializer
        .end()
        .map_err(|e| ApiError::Syntax(e.to_string()))?;
    Ok(value)
}

fn json_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let message = inner.to_string();
    if !inner.is_data() {
        return ApiError::Syntax(message);
    }
    // serde reports a missing field at its parent's path and puts the field's name in
    // the message: join them into the field's full path. (An unknown field's path
    // already ends with its name.)
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned);
    let (field, message) = match (path.as_str(), missing) {
        // The same wording as the validation errors of `events`.
        (".", Some(name)) => (name, "is required".to_owned()),
        (parent, Some(name)) => (format!("{parent}.{name}"), "is required".to_owned()),
        (".", None) => return ApiError::Shape(message),
        (path, None) => (path.to_owned(), message),
    };
    ApiError::Field { field, message }
}

/// Runs the gateway until SIGTERM or SIGINT, then drains requests and flushes.
pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    telemetry::init(&args.log_level)
        .map_err(|e| GatewayError::Config(ConfigError::LogLevel(e.to_string())))?;
    let settings = args.settings();
    let config = producer_config(
        args.kafka
            .client_config()
            .map_err(|e| GatewayError::Config(e.into()))?,
        settings.publish_timeout,
    );
    let producer: FutureProducer = config.create().map_err(GatewayError::Producer)?;
    let publish_timeout = settings.publish_timeout;

    let mut registry = Registry::with_prefix("eventconsumer");
    let gateway = Gateway::new(producer, settings, &mut registry);
    let readiness = Arc::new(Readiness::default());
    let shutdown = CancellationToken::new();
    let watcher = gateway.watch_readiness(readiness.clone(), shutdown.clone());
    let (addr, server) = http::serve(
        args.listen_addr,
        gateway.app(Arc::new(registry), readiness.clone()),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(
        %addr,
        bootstrap = %args.kafka.bootstrap_servers,
        orders_topic = %gateway.settings().orders_topic,
        events_topic = %gateway.settings().events_topic,
        "gateway listening"
    );

    let signal = shutdown_signal().await?;
    tracing::info!(signal, "shutting down: draining requests");
    // Stop accepting connections and checking the brokers; a probe on a connection
    // that is still open during the drain sees "not ready".
    shutdown.cancel();
    let _ = watcher.await;
    readiness.set(false);
    // Requests in flight finish (each waits at most the publish timeout) before the
    // server task ends; nothing is left half-answered.
    if let Err(e) = server.await {
        tracing::error!(error = %e, "HTTP server task failed");
    }
    match gateway.flush(publish_timeout).await {
        Ok(()) => tracing::info!("producer flushed; bye"),
        Err(e) => tracing::warn!(error = %e, "producer flush incomplete"),
    }
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT, naming it.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use clap::Parser;
    use rdkafka::mocking::MockCluster;
    use tower::ServiceExt;

    /// A loopback port nothing listens on: the "broker down" of these tests.
    fn closed_port() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        addr.to_string()
    }

    fn gateway_at(bootstrap: &str, publish_timeout: Duration) -> (Gateway, Arc<Registry>) {
        let settings = GatewaySettings {
            publish_timeout,
            body_limit: 1024,
            ..GatewaySettings::default()
        };
        let producer = producer_config(
            KafkaArgs::plaintext(bootstrap).client_config().unwrap(),
            publish_timeout,
        )
        .create()
        .unwrap();
        let mut registry = Registry::default();
        let gateway = Gateway::new(producer, settings, &mut registry);
        (gateway, Arc::new(registry))
    }

    fn app_of(gateway: &Gateway, registry: Arc<Registry>) -> Router {
        gateway.app(registry, Arc::new(Readiness::default()))
    }

    async fn call(
        app: &Router,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let response = app
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, bytes)
    }

    async fn post_json(app: &Router, path: &str, body: &str) -> (StatusCode, HeaderMap, Bytes) {
        call(app, "POST", path, Some("application/json"), body.to_owned()).await
    }

    fn error_body(bytes: &Bytes) -> ErrorBody {
        serde_json::from_slice(bytes).unwrap_or_else(|e| {
            panic!(
                "not an error body ({e}): {}",
                String::from_utf8_lossy(bytes)
            )
        })
    }

    const GOOD_ORDER: &str = r#"{"customer_id":"c-1","items":[{"product_id":"SKU-001","quantity":2,"price":29.99}],"total":59.98}"#;
    const GOOD_EVENT: &str =
        r#"{"type":"page_view","user_id":"u-1","session_id":"s-1","payload":{"path":"/home"}}"#;

    #[tokio::test]
    async fn a_valid_checkout_is_published_and_answered_202_with_its_order_id() {
        let mock = MockCluster::new(1).unwrap();
        let (gateway, registry) = gateway_at(&mock.bootstrap_servers(), Duration::from_secs(5));
        let app = app_of(&gateway, registry.clone());

        let (status, _, body) = post_json(&app, CHECKOUT_PATH, GOOD_ORDER).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let accepted: CheckoutAccepted = serde_json::from_slice(&body).unwrap();
        assert!(
            uuid::Uuid::parse_str(&accepted.order_id).is_ok(),
            "{accepted:?}"
        );

        let (_, _, metrics) = call(&app, "GET", "/metrics", None, Body::empty()).await;
        let metrics = String::from_utf8_lossy(&metrics);
        assert!(
            metrics.contains(r#"gateway_http_requests_total{route="/checkout",status="202"} 1"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"gateway_publish_duration_seconds_count{topic="order.placed"} 1"#),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn a_valid_event_is_published_and_answered_204() {
        let mock = MockCluster::new(1).unwrap();
        let (gateway, registry) = gateway_at(&mock.bootstrap_servers(), Duration::from_secs(5));
        let app = app_of(&gateway, registry);
        let (status, _, body) = post_json(&app, EVENTS_PATH, GOOD_EVENT).await;
        assert_eq!(
            status,
            StatusCode::NO_CONTENT,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn the_gateway_assigns_the_order_id_and_time_and_stamps_events() {
        let mock = MockCluster::new(1).unwrap();
        let (gateway, _) = gateway_at(&mock.bootstrap_servers(), Duration::from_secs(5));
        let request: CheckoutRequest = serde_json::from_str(GOOD_ORDER).unwrap();
        let order = gateway.checkout(request).await.unwrap();
        assert_eq!(order.validate(), Ok(5998));
        assert!(chrono::DateTime::parse_from_rfc3339(&order.created_at).is_ok());
        let mut event: UserEvent = serde_json::from_str(GOOD_EVENT).unwrap();
        event.timestamp = "1999-01-01T00:00:00Z".into();
        let event = gateway.event(event).await.unwrap();
        assert!(event.timestamp.starts_with("20"), "{}", event.timestamp);
        assert!(event.timestamp.ends_with('Z'), "{}", event.timestamp);
    }

    #[tokio::test]
    async fn each_client_mistake_is_a_400_whose_body_names_the_field() {
        // Validation happens before publishing, so no broker is needed.
        let (gateway, registry) = gateway_at(&closed_port(), Duration::from_millis(200));
        let app = app_of(&gateway, registry);
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            (CHECKOUT_PATH, "{not json", "invalid_json", None),
            (CHECKOUT_PATH, "", "invalid_json", None),
            (
                CHECKOUT_PATH,
                &format!("{GOOD_ORDER} trailing"),
                "invalid_json",
                None,
            ),
            (CHECKOUT_PATH, "[1,2]", "invalid_json", None),
            (
                CHECKOUT_PATH,
                r#"{"items":[{"product_id":"p","quantity":1,"price":1}],"total":1}"#,
                "invalid_field",
                Some("customer_id"),
            ),
            (
                CHECKOUT_PATH,
                r#"{"customer_id":"c","items":[{"quantity":1,"price":1}],"total":1}"#,
                "invalid_field",
                Some("items[0].product_id"),
            ),
            (
                CHECKOUT_PATH,
                r#"{"customer_id":"c","items":[{"product_id":"p","quantity":"two","price":1}],"total":2}"#,
                "invalid_field",
                Some("items[0].quantity"),
            ),
            (
                CHECKOUT_PATH,
                r#"{"customer_id":"c","items":[],"total":0,"coupon":"x"}"#,
                "invalid_field",
                Some("coupon"),
            ),
            (
                CHECKOUT_PATH,
                r#"{"customer_id":"c","items":[{"product_id":"p","quantity":2,"price":29.99}],"total":59.97}"#,
                "invalid_field",
                Some("total"),
            ),
            (
                CHECKOUT_PATH,
                r#"{"customer_id":" ","items":[{"product_id":"p","quantity":1,"price":1}],"total":1}"#,
                "invalid_field",
                Some("customer_id"),
            ),
            (
                CHECKOUT_PATH,
                r#"{"customer_id":"c","items":[],"total":0}"#,
                "invalid_field",
                Some("items"),
            ),
            (
                EVENTS_PATH,
                r#"{"type":"page_view","user_id":"u","session_id":"s"}"#,
                "invalid_field",
                Some("payload.path"),
            ),
            (
                EVENTS_PATH,
                r#"{"type":"click","user_id":"u"}"#,
                "invalid_field",
                Some("session_id"),
            ),
            (
                EVENTS_PATH,
                r#"{"type":"click","user_id":"u","session_id":"s","payload":{"n":1}}"#,
                "invalid_field",
                Some("payload.n"),
            ),
        ];
        for (path, body, code, field) in cases {
            let (status, _, bytes) = post_json(&app, path, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}");
            let error = error_body(&bytes);
            assert_eq!(error.error, *code, "{path} {body}: {error:?}");
            assert_eq!(error.field.as_deref(), *field, "{path} {body}: {error:?}");
            if let Some(field) = field {
                assert!(error.message.contains(field), "{path} {body}: {error:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_body_that_is_not_declared_json_is_a_400() {
        let (gateway, registry) = gateway_at(&closed_port(), Duration::from_millis(200));
        let app = app_of(&gateway, registry);
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let (status, _, bytes) = call(
                &app,
                "POST",
                CHECKOUT_PATH,
                content_type,
                GOOD_ORDER.to_owned(),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{content_type:?}");
            let error = error_body(&bytes);
            assert_eq!(error.error, "unsupported_content_type");
            assert!(error.message.contains("application/json"), "{error:?}");
        }
        // A charset parameter or a +json type is still JSON.
        for content_type in [
            "application/json; charset=utf-8",
            "application/vnd.order+json",
        ] {
            let (status, _, bytes) = call(
                &app,
                "POST",
                CHECKOUT_PATH,
                Some(content_type),
                "{".to_owned(),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(error_body(&bytes).error, "invalid_json", "{content_type}");
        }
    }

    #[tokio::test]
    async fn a_body_above_the_limit_is_a_413() {
        let (gateway, registry) = gateway_at(&closed_port(), Duration::from_millis(200));
        let app = app_of(&gateway, registry);
        let padding = "x".repeat(2000);
        let body = format!(
            r#"{{"type":"click","user_id":"u","session_id":"s","payload":{{"pad":"{padding}"}}}}"#
        );
        let (status, _, bytes) = post_json(&app, EVENTS_PATH, &body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let error = error_body(&bytes);
        assert_eq!(error.error, "body_too_large");
        assert!(error.message.contains("1024 bytes"), "{error:?}");

        // Without a Content-Length the limit still holds while streaming.
        let stream = futures::stream::iter(
            (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 512]))),
        );
        let (status, _, _) = call(
            &app,
            "POST",
            EVENTS_PATH,
            Some("application/json"),
            Body::from_stream(stream),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_record_larger_than_kafka_accepts_is_a_413_not_a_503() {
        let settings = GatewaySettings {
            publish_timeout: Duration::from_millis(500),
            body_limit: 1024,
            ..GatewaySettings::default()
        };
        let mut config = producer_config(
            KafkaArgs::plaintext(closed_port()).client_config().unwrap(),
            settings.publish_timeout,
        );
        // librdkafka's smallest allowed record size, below the gateway's body limit.
        config.set("message.max.bytes", "1000");
        let mut registry = Registry::default();
        let gateway = Gateway::new(config.create().unwrap(), settings, &mut registry);
        let app = app_of(&gateway, Arc::new(registry));
        let padding = "x".repeat(900);
        let body = format!(
            r#"{{"type":"click","user_id":"u","session_id":"s","payload":{{"pad":"{padding}"}}}}"#
        );
        assert!(body.len() < 1024, "within the body limit");
        let (status, headers, bytes) = post_json(&app, EVENTS_PATH, &body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            headers.get(header::RETRY_AFTER).is_none(),
            "no point retrying"
        );
        assert_eq!(error_body(&bytes).error, "record_too_large");
    }

    #[tokio::test]
    async fn kafka_that_cannot_take_the_record_is_a_503_with_retry_after() {
        let timeout = Duration::from_millis(300);
        let (gateway, registry) = gateway_at(&closed_port(), timeout);
        let app = app_of(&gateway, registry);
        let started = Instant::now();
        let (status, headers, bytes) = post_json(&app, CHECKOUT_PATH, GOOD_ORDER).await;
        let took = started.elapsed();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "5");
        assert_eq!(error_body(&bytes).error, "kafka_unavailable");
        assert!(took >= timeout / 2 && took < timeout * 4, "took {took:?}");

        let (_, _, metrics) = call(&app, "GET", "/metrics", None, Body::empty()).await;
        let metrics = String::from_utf8_lossy(&metrics);
        assert!(
            metrics.contains(
                r#"gateway_publish_failures_total{topic="order.placed",reason="timeout"} 1"#
            ),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_get_axums_404_and_405() {
        let (gateway, registry) = gateway_at(&closed_port(), Duration::from_millis(200));
        let app = app_of(&gateway, registry);
        let (status, _, _) = call(&app, "POST", "/nope", None, Body::empty()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = call(&app, "GET", CHECKOUT_PATH, None, Body::empty()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _, _) = call(&app, "GET", "/healthz", None, Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        let (_, _, metrics) = call(&app, "GET", "/metrics", None, Body::empty()).await;
        let metrics = String::from_utf8_lossy(&metrics);
        assert!(
            metrics.contains(r#"gateway_http_requests_total{route="unmatched",status="404"} 1"#),
            "{metrics}"
        );
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        gateway: GatewayArgs,
    }

    #[test]
    fn the_flags_default_to_the_seed_topics_and_refuse_nonsense() {
        let cli = Cli::try_parse_from(["gw"]).unwrap();
        let settings = cli.gateway.settings();
        assert_eq!(settings.orders_topic, "order.placed");
        assert_eq!(settings.events_topic, "user.events");
        assert_eq!(settings.body_limit, 64 * 1024);
        assert_eq!(settings.publish_timeout, Duration::from_secs(5));
        assert_eq!(cli.gateway.listen_addr.port(), 8080);

        let cli = Cli::try_parse_from(["gw", "--publish-timeout", "750ms"]).unwrap();
        assert_eq!(cli.gateway.publish_timeout, Duration::from_millis(750));
        let cli = Cli::try_parse_from(["gw", "--publish-timeout", "2"]).unwrap();
        assert_eq!(cli.gateway.publish_timeout, Duration::from_secs(2));
        for bad in [
            &["gw", "--publish-timeout", "0s"][..],
            &["gw", "--publish-timeout", "5ms"],
            &["gw", "--publish-timeout", "1h"],
            &["gw", "--body-limit-bytes", "0"],
            &["gw", "--orders-topic", ""],
        ] {
            let err = Cli::try_parse_from(bad).err().unwrap();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn the_producer_waits_for_all_replicas_and_is_idempotent() {
        let config = producer_config(
            KafkaArgs::plaintext("b:9092").client_config().unwrap(),
            Duration::from_millis(1500),
        );
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("message.timeout.ms"), Some("1500"));
    }
}
