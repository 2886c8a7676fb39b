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

mod args;
mod errors;
mod metrics;
mod routes;
#[cfg(test)]
mod tests;

pub use args::*;
pub use errors::*;
pub use routes::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::post;
use prometheus_client::registry::Registry;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use crate::events::{CheckoutRequest, OrderPlaced, UserEvent};
use crate::http::{self, Readiness};
use crate::telemetry;
use metrics::{CheckLabels, FailureLabels, Metrics, TopicLabels};
use routes::{checkout, count_requests, events};

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
            .fallback(routes::not_found)
            .method_not_allowed_fallback(routes::method_not_allowed)
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
