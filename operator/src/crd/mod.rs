//! The `EventConsumer` custom resource: its Rust types, the documentation `kubectl explain`
//! shows, and the admission rules (OpenAPI constraints and CEL) the API server enforces.
//!
//! The types are the single source of the CRD: `crdgen` prints [`crd()`] and a test
//! fails when `crds/eventconsumer.yaml` differs. Everything that can be checked without reading
//! other objects is checked here, at admission, so a wrong manifest is refused with a message that
//! names the field instead of turning into a broken Deployment later. The operator validates the
//! same facts again in [`crate::config`] (the API server may run an older copy of the CRD).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod defaults;
mod describe;
mod kafka;
mod status;
#[cfg(test)]
mod tests;
mod values;

pub use describe::unwrap_crd_descriptions;
pub use kafka::{
    BOOTSTRAP_SERVERS_PATTERN, CaSecretRef, ClientCertSecretRef, KafkaSpec, MAX_PORT,
    SaslSecretRef, SaslSpec, TlsSpec,
};
pub use status::{AutoscalingStatus, EventConsumerStatus, LagStatus, PartitionLag};
pub use values::{HumanDuration, TopicName};

/// The enumerated fields, defined once in the contract (with their serde names and schemas).
pub use eventconsumer_contract::{
    DeliveryMode, Handler, InitialOffset, OrderAction, Ordering, SaslMechanism, Semantics,
    VideoStage,
};
use eventconsumer_contract::{default_dlq_topic, limits, retry_topics, topic};

/// API group of the resource.
pub const GROUP: &str = "eventconsumer.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `metadata.name` of the CustomResourceDefinition.
pub const CRD_NAME: &str = "eventconsumers.eventconsumer.dev";

/// Most pods `spec.autoscaling` may ask for (min and max replicas): a bound on what one
/// mistaken manifest can make the cluster schedule.
pub const MAX_AUTOSCALING_REPLICAS: i32 = 1000;
/// Go duration syntax restricted to one unit, which both CEL's `duration()` and the worker's
/// `humantime` parser accept identically.
pub const DURATION_PATTERN: &str = "^[0-9]+(ms|s|m|h)$";
/// Most digits a duration may have: 999999h (114 years) still fits CEL's `duration()`, which
/// fails beyond about 292 years with a type-conversion error instead of a sentence.
pub const MAX_DURATION_DIGITS: usize = 6;
/// Longest name of an EventConsumer: it becomes the value of the worker pods'
/// `app.kubernetes.io/instance` label, and a label value is at most 63 characters.
pub const MAX_NAME_LENGTH: usize = 63;

/// [`DURATION_PATTERN`] with at most [`MAX_DURATION_DIGITS`] digits: a value `duration()` can
/// convert without overflowing. CEL rules that convert durations are guarded by it.
pub fn bounded_duration_pattern() -> String {
    format!("^[0-9]{{1,{MAX_DURATION_DIGITS}}}(ms|s|m|h)$")
}

/// What the longest retry topic adds to its group's name (`.retry.9` with the most attempts).
fn longest_retry_suffix() -> usize {
    retry_topics("", limits::MAX_RETRY_TOPIC_ATTEMPTS)
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
}

/// Spec of an EventConsumer: a group of Kafka consumers running one handler.
///
/// The operator renders it into a Deployment of `eventconsumer-worker` pods.
// clippy reads the repeated `type_ = ...` of separate `printcolumn(...)` entries as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "eventconsumer.dev",
    version = "v1alpha1",
    kind = "EventConsumer",
    plural = "eventconsumers",
    shortname = "ec",
    category = "eventconsumer",
    namespaced,
    status = "EventConsumerStatus",
    derive = "PartialEq",
    doc = "An EventConsumer runs one event handler (order, analytics or video) as a group of Kafka consumers. The operator keeps a Deployment of eventconsumer-worker pods in line with it and reports their health in status.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Handler", type_ = "string", json_path = ".spec.handler"),
    printcolumn(name = "Topics", type_ = "string", json_path = ".spec.kafka.topics"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Worker pods that exist"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Worker pods that are ready"
    ),
    printcolumn(
        name = "Lag",
        type_ = "integer",
        json_path = ".status.lag.total",
        description = "Messages in the source topics not yet committed by the group"
    ),
    printcolumn(
        name = "DLQ",
        type_ = "integer",
        json_path = ".status.deadLetters",
        description = "This consumer's records in its dead-letter topic"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.handler != 'order' || has(self.order)")
        .message("required when handler is order (it names the action)")
        .field_path(".order")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.order) || self.handler == 'order'")
        .message("only allowed when handler is order")
        .field_path(".order")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.handler != 'video' || has(self.video)")
        .message("required when handler is video (it names the stage)")
        .field_path(".video")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.video) || self.handler == 'video'")
        .message("only allowed when handler is video")
        .field_path(".video")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.analytics) || self.handler == 'analytics'")
        .message("only allowed when handler is analytics")
        .field_path(".analytics")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.delivery.deadLetterTopic) || !(self.delivery.deadLetterTopic in self.kafka.topics)")
        .message("must differ from every topic in spec.kafka.topics, or the consumer would read its own dead letters")
        .field_path(".delivery.deadLetterTopic"),
    validation = Rule::new("has(self.delivery.deadLetterTopic) || size(self.kafka.topics) == 0 || !((self.kafka.topics[0] + '.dlq') in self.kafka.topics)")
        .message("the default dead-letter topic (the first topic + '.dlq') is itself a source topic: set spec.delivery.deadLetterTopic")
        .field_path(".kafka.topics"),
    validation = Rule::new(format!(
            "self.handler != '{}' || self.delivery.ordering == '{}'",
            Handler::Analytics.as_str(),
            Ordering::Partition.as_str()
        ))
        .message(kube::core::Message::Message(format!(
            "must be {}: {}",
            Ordering::Partition.as_str(),
            eventconsumer_contract::ordering::ANALYTICS_REASON
        )))
        .field_path(".delivery.ordering"),
    validation = Rule::new(format!(
            "self.delivery.semantics != '{}' || !has(self.order) || !has(self.order.sinkUrl)",
            Semantics::ExactlyOnce.as_str()
        ))
        .message(kube::core::Message::Message(format!(
            "must be {} with spec.order.sinkUrl: {}",
            Semantics::AtLeastOnce.as_str(),
            eventconsumer_contract::semantics::SINK_REASON
        )))
        .field_path(".delivery.semantics"),
    validation = Rule::new(format!(
            "self.delivery.semantics != '{}' || self.delivery.ordering == '{}'",
            Semantics::ExactlyOnce.as_str(),
            Ordering::Partition.as_str()
        ))
        .message(kube::core::Message::Message(format!(
            "must be {} with ordering key or none: {}",
            Semantics::AtLeastOnce.as_str(),
            eventconsumer_contract::semantics::ORDERING_REASON
        )))
        .field_path(".delivery.semantics"),
    validation = Rule::new(format!(
            "self.delivery.mode != '{}' || self.delivery.maxAttempts <= {}",
            DeliveryMode::RetryTopics.as_str(),
            limits::MAX_RETRY_TOPIC_ATTEMPTS
        ))
        .message(kube::core::Message::Message(format!(
            "must be at most {} in retryTopics mode, where each retry has its own topic",
            limits::MAX_RETRY_TOPIC_ATTEMPTS
        )))
        .field_path(".delivery.maxAttempts"),
    validation = Rule::new(format!(
            "has(self.delivery.deadLetterTopic) || size(self.kafka.topics) == 0 || size(self.kafka.topics[0]) <= {}",
            topic::MAX_LENGTH - default_dlq_topic("").len()
        ))
        .message(kube::core::Message::Message(format!(
            "the default dead-letter topic (the first topic + '.dlq') would be longer than {} characters: set spec.delivery.deadLetterTopic or put a shorter topic first",
            topic::MAX_LENGTH
        )))
        .field_path(".kafka.topics"),
    validation = Rule::new(format!(
            "self.delivery.mode != '{}' || !has(self.kafka.consumerGroup) || size(self.kafka.consumerGroup) <= {}",
            DeliveryMode::RetryTopics.as_str(),
            topic::MAX_LENGTH - longest_retry_suffix()
        ))
        .message(kube::core::Message::Message(format!(
            "must be at most {} characters in retryTopics mode, so its retry topics (<group>.retry.<n>) are valid Kafka topic names",
            topic::MAX_LENGTH - longest_retry_suffix()
        )))
        .field_path(".kafka.consumerGroup"),
    validation = Rule::new("!has(self.order) || !has(self.order.outputTopic) || !(self.order.outputTopic in self.kafka.topics)")
        .message("must differ from every topic in spec.kafka.topics, or the handler would consume its own output")
        .field_path(".order.outputTopic"),
    validation = Rule::new("!has(self.analytics) || !has(self.analytics.outputTopic) || !(self.analytics.outputTopic in self.kafka.topics)")
        .message("must differ from every topic in spec.kafka.topics, or the handler would consume its own output")
        .field_path(".analytics.outputTopic"),
    validation = Rule::new("!has(self.video) || !has(self.video.outputTopic) || !(self.video.outputTopic in self.kafka.topics)")
        .message("must differ from every topic in spec.kafka.topics, or the handler would consume its own output")
        .field_path(".video.outputTopic"),
)]
pub struct EventConsumerSpec {
    /// The handler the workers run: `order` (validate an order and run one action on it),
    /// `analytics` (count events in tumbling windows) or `video` (one stage of the video
    /// pipeline). The matching field (`order`, `analytics` or `video`) holds its options.
    pub handler: Handler,

    /// Options of the `order` handler. Required when handler is `order`, forbidden otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderOptions>,

    /// Options of the `analytics` handler. Optional when handler is `analytics` (every option
    /// has a default), forbidden otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics: Option<AnalyticsOptions>,

    /// Options of the `video` handler. Required when handler is `video`, forbidden otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoOptions>,

    /// Where to consume from: brokers, topics, consumer group and security.
    pub kafka: KafkaSpec,

    /// How failed messages are retried and where they go when retries run out. A message
    /// that fails with a retryable error (handler or downstream failure, attempt timeout) is
    /// retried with exponential backoff and jitter; after `maxAttempts` attempts, or at once
    /// for a message that can never succeed (undecodable or invalid), it is written to the
    /// dead-letter topic with headers describing the failure, and only then is its offset
    /// committed. Nothing is skipped silently.
    #[serde(default)]
    pub delivery: DeliverySpec,

    /// Number of worker pods. Kafka gives each partition to one member of the consumer group, so
    /// replicas beyond the number of partitions stay idle. `kubectl scale` changes this field.
    /// Ignored while `autoscaling` is set: the autoscaler then decides the number of pods
    /// (see `status.autoscaling`), and `kubectl scale` has no lasting effect.
    #[serde(default = "defaults::replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,

    /// Scale the workers on the consumer group's lag instead of a fixed `replicas`. The
    /// operator measures the lag every 15 seconds and sets the pod count to
    /// ceil(lag / lagThreshold), clamped to [minReplicas, maxReplicas] and to the number of
    /// source partitions (more pods would idle). It scales up at once and down only after
    /// `cooldown` without a higher need. A partition whose committed offset has not moved
    /// since the last measurement while workers run (a stuck consumer, or a message retrying
    /// for a long time) does not drive a scale-up by itself: more pods would not help it.
    /// While no committed offset of the group moves at all (its commits failing while a
    /// broker is cut off, or its coordinator moving), the pod count is held for up to 60
    /// seconds instead of scaled down.
    /// `paused: true` wins over autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Stop consuming without deleting anything: the Deployment is scaled to 0 and the group's
    /// committed offsets stay in Kafka, so consumption resumes where it stopped once this is
    /// set back to false.
    #[serde(default)]
    pub paused: bool,

    /// Worker container image. When unset the operator uses its own default (its
    /// `--worker-image` flag), which matches the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), pattern(r"^\S+$"))]
    pub image: Option<String>,

    /// Compute resources of the worker container. When unset the container requests 100m CPU
    /// and 128Mi memory and has no limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels a worker pod's node must have (the pod's `nodeSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations of the worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Affinity rules of the worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Log filter of the workers, in tracing's syntax: a level (`error`, `warn`, `info`, `debug`,
    /// `trace`) or per-module directives such as `info,eventconsumer_worker=debug`.
    #[serde(default = "defaults::log_level")]
    #[schemars(length(min = 1, max = 256), pattern(r"^[A-Za-z0-9_:=,.\-]+$"))]
    pub log_level: String,
}

/// Lag-driven autoscaling of the worker pods.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas")
    .message("must be at least minReplicas")
    .field_path(".maxReplicas"))]
pub struct AutoscalingSpec {
    /// Fewest pods. 0 allows scaling to zero: with no pods, the consumer is woken (scaled to
    /// one or more) once its lag reaches `activationLag`.
    #[serde(default = "defaults::min_replicas")]
    #[schemars(range(min = 0, max = MAX_AUTOSCALING_REPLICAS))]
    pub min_replicas: i32,

    /// Most pods. The number of source partitions also caps the count, since Kafka gives each
    /// partition to one member of the group.
    #[schemars(range(min = 1, max = MAX_AUTOSCALING_REPLICAS))]
    pub max_replicas: i32,

    /// Lag one pod is expected to handle: the autoscaler wants ceil(lag / lagThreshold) pods.
    #[serde(default = "defaults::lag_threshold")]
    #[schemars(range(min = 1))]
    pub lag_threshold: i64,

    /// Lag below which the consumer counts as idle: it is not woken from zero pods, and with
    /// `minReplicas: 0` it is scaled to zero once it stayed idle for `cooldown`.
    #[serde(default = "defaults::activation_lag")]
    #[schemars(range(min = 1))]
    pub activation_lag: i64,

    /// How long the need for fewer pods must last before the autoscaler scales down, such as
    /// `5m`. Scaling up is never delayed.
    #[serde(default = "defaults::cooldown")]
    pub cooldown: HumanDuration,
}

/// Options of the `order` handler.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderOptions {
    /// What this consumer group does with each valid order: `inventory` (reserve the items),
    /// `payment` (initiate the payment), `email` (send the confirmation) or `analytics` (record
    /// the sale). Run one EventConsumer per action for the usual fan-out.
    pub action: OrderAction,

    /// Topic the outcome events are published to, keyed by order id. Defaults to
    /// `order.<action>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_topic: Option<TopicName>,

    /// Optional HTTP endpoint every valid order is POSTed to, with the order id as idempotency
    /// key. 2xx succeeds; 408, 429, 5xx and timeouts are retried; any other status goes to
    /// the dead-letter topic, a redirect included (none is followed). HTTPS is checked
    /// against Mozilla's roots; the endpoint is called directly (`HTTP_PROXY` and
    /// `HTTPS_PROXY` are not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https']")
        .message("must be an absolute http:// or https:// URL"))]
    pub sink_url: Option<String>,
}

/// Options of the `analytics` handler.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsOptions {
    /// Length of the tumbling window, such as `5s` or `1m`. At the end of each window the
    /// counts are published and the window's offsets committed.
    #[serde(default = "defaults::window")]
    pub window: HumanDuration,

    /// Topic the window counts are published to. Defaults to `analytics.counts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_topic: Option<TopicName>,
}

impl Default for AnalyticsOptions {
    fn default() -> Self {
        Self {
            window: defaults::window(),
            output_topic: None,
        }
    }
}

/// Options of the `video` handler.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VideoOptions {
    /// Pipeline stage: `transcode` (consumes uploads, publishes transcoded videos) or `publish`
    /// (consumes transcoded videos, publishes ready videos with a thumbnail).
    pub stage: VideoStage,

    /// Topic the stage publishes to. Defaults to `video.transcoded` for `transcode` and
    /// `video.ready` for `publish`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_topic: Option<TopicName>,
}

/// Retries and dead-lettering of failed messages.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    /// Where a failed message waits for its next attempt.
    ///
    /// - `blocking` (default): the worker waits out the backoff itself, and the message's
    ///   partition waits with it. Messages of a partition are handled strictly in order, so
    ///   per-key order is kept, but one slow failure delays everything behind it.
    /// - `retryTopics`: the failed message is written to the retry topic of its next attempt
    ///   (`<consumerGroup>.retry.1`, `.retry.2`, … up to `maxAttempts - 1`, each with the
    ///   backoff delay of that attempt), and the partition moves on at once. The workers also
    ///   consume the retry topics and run each record when it is due, never before; the
    ///   records of one retry-topic partition run in the order they were written, so a record
    ///   can wait behind an earlier one that drew a longer jitter: it runs at most half its
    ///   retry's capped delay (so at most `backoff.max / 2`) after it is due, plus the time the
    ///   attempts ahead of it take. The last attempt exhausts into the dead-letter topic. The attempt count and first-failure time travel
    ///   in headers, so they survive rebalances and restarts. Per-key order is NOT kept: a
    ///   later message with the same key can succeed before an earlier one's retry. The
    ///   operator creates missing retry topics with the partition count of the largest source
    ///   topic. At most 10 attempts in this mode.
    #[serde(default)]
    pub mode: DeliveryMode,

    /// Which messages a worker may process at the same time.
    ///
    /// - `partition` (default): one message at a time per partition, so a partition's
    ///   messages, and so each key's, are handled in offset order; concurrency is the number of
    ///   partitions a worker owns. Pick it when handling is fast or order matters across keys.
    /// - `key`: messages with the same key are handled one after another in offset order,
    ///   messages with different keys at the same time (messages without a key at once), up
    ///   to `maxInFlight`. Pick it for slow handlers or sinks (an HTTP call, a database) when
    ///   only per-key order matters. In `blocking` mode a retrying message holds only its key.
    /// - `none`: any messages at the same time, up to `maxInFlight`; no order is kept.
    ///
    /// In every ordering an offset is committed only once every message below it in its
    /// partition is finished, so nothing is lost; after a crash everything above the last
    /// commit is handled again, which with `key` or `none` can be up to twice `maxInFlight`
    /// messages plus what finished in the last second. Besides the `maxInFlight` messages
    /// being handled a worker holds as many again waiting for their key's turn; when it holds
    /// that many it pauses fetching, so a slow key's backlog never grows memory. Not for the
    /// analytics handler.
    #[serde(default)]
    pub ordering: Ordering,

    /// Messages one worker handles at the same time with ordering `key` or `none` (ignored
    /// with `partition`): the calls a slow sink sees at once. The throughput of a slow sink
    /// is at most `maxInFlight / sink latency` per worker (see the README's benchmark for
    /// what a worker's CPU allows).
    #[serde(default = "defaults::max_in_flight")]
    #[schemars(range(min = 1, max = limits::MAX_IN_FLIGHT))]
    pub max_in_flight: i32,

    /// What a crash (kill -9, OOM kill, node loss) may do to what the consumer writes.
    ///
    /// - `atLeastOnce` (default): offsets are committed after the work, every second. After a
    ///   crash the messages since the last commit are handled again, so outputs and dead
    ///   letters of about the last second can be written twice; readers deduplicate (by
    ///   `order_id`, or the analytics window's `window_start`).
    /// - `exactlyOnce`: each worker writes its outputs, dead letters and retry-topic records
    ///   and commits the offsets of the messages that caused them in one Kafka transaction,
    ///   about every 100 ms (transactional id `<consumerGroup>.tx.<pod name>`). After a crash
    ///   the open transaction is aborted and its messages handled again, so a reader with
    ///   `isolation.level=read_committed` sees each output exactly once; a reader with
    ///   `read_uncommitted` (Kafka's Java default) can still see the aborted copies. An
    ///   analytics window's counts and its offsets commit together, so a crash never counts
    ///   an event twice. A failed write aborts the transaction and the worker starts over from
    ///   the last commit. Needs Write on the transactional ids `<consumerGroup>.tx.*` (README,
    ///   Kafka ACLs). Not with `spec.order.sinkUrl`: an HTTP call cannot be rolled back.
    #[serde(default)]
    pub semantics: Semantics,

    /// Attempts per message, the first one included, before it is dead-lettered; the dead
    /// letter's `ec-dlt-attempts` header says how many were made. 1 means no retry. Exact as
    /// long as workers stop cleanly (a rollout, a scale-down or SIGTERM commits what finished).
    /// Delivery is at-least-once: after a crash (kill -9, OOM kill, node loss) every attempt
    /// whose offset was not committed yet is made again, which is the attempts of about the
    /// last second (offsets are committed every second) and those in progress. In `blocking`
    /// mode such a message starts over at attempt 1, and `ec-dlt-attempts` counts the attempts
    /// since the restart only. In `retryTopics` mode an attempt made again that fails is copied
    /// to the retry topic a second time, and each copy counts its own attempts on, so across a
    /// crash one message can be attempted more than `maxAttempts` times and dead-lettered
    /// twice, each saying `ec-dlt-attempts` = `maxAttempts` (true of its copy).
    #[serde(default = "defaults::max_attempts")]
    #[schemars(range(min = 1, max = limits::MAX_ATTEMPTS))]
    pub max_attempts: i32,

    /// Delay between attempts.
    #[serde(default)]
    pub backoff: BackoffSpec,

    /// Time one attempt may take before it counts as failed (and retryable), such as `30s`.
    #[serde(default = "defaults::attempt_timeout")]
    pub attempt_timeout: HumanDuration,

    /// Topic failed messages are written to. Defaults to the first source topic followed by
    /// `.dlq`, such as `order.placed.dlq`. Must not be one of the source topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<TopicName>,
}

impl Default for DeliverySpec {
    fn default() -> Self {
        Self {
            mode: DeliveryMode::default(),
            ordering: Ordering::default(),
            max_in_flight: defaults::max_in_flight(),
            semantics: Semantics::default(),
            max_attempts: defaults::max_attempts(),
            backoff: BackoffSpec::default(),
            attempt_timeout: defaults::attempt_timeout(),
            dead_letter_topic: None,
        }
    }
}

/// Exponential backoff between attempts, the same in both delivery modes: the n-th retry
/// waits `initial * multiplier^(n-1)`, capped at `max`, less a random jitter of up to half of
/// that. So no wait is longer than `max` or shorter than half the capped delay, and retries of
/// messages that failed together spread out.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
// The guards skip values the pattern already refuses, so those get one clear error, not two.
#[x_kube(validation = Rule::new(format!(
        "!self.initial.matches('{bounded}') || !self.max.matches('{bounded}') \
         || duration(self.max) >= duration(self.initial)",
        bounded = bounded_duration_pattern()
    ))
    .message("must be at least backoff.initial")
    .field_path(".max"))]
pub struct BackoffSpec {
    /// Delay before the first retry, such as `200ms`; jitter takes up to half of it off.
    #[serde(default = "defaults::backoff_initial")]
    pub initial: HumanDuration,

    /// Longest delay between two attempts, jitter included, such as `30s`. At least
    /// `initial`.
    #[serde(default = "defaults::backoff_max")]
    pub max: HumanDuration,

    /// Factor the delay grows by after each failed attempt, from 1 (constant delay) to 10.
    #[serde(default = "defaults::backoff_multiplier")]
    #[schemars(range(min = limits::MIN_BACKOFF_MULTIPLIER, max = limits::MAX_BACKOFF_MULTIPLIER))]
    pub multiplier: f64,
}

impl Default for BackoffSpec {
    fn default() -> Self {
        Self {
            initial: defaults::backoff_initial(),
            max: defaults::backoff_max(),
            multiplier: defaults::backoff_multiplier(),
        }
    }
}

/// The CustomResourceDefinition: the derived one, with the line breaks of doc comments unwrapped
/// so `kubectl explain` can wrap the text to the reader's terminal, and the length of
/// `metadata.name` bounded.
pub fn crd() -> CustomResourceDefinition {
    with_name_rule(unwrap_crd_descriptions(EventConsumer::crd()))
}

/// Adds the [`MAX_NAME_LENGTH`] rule under `metadata.name`, the one metadata field a CRD may
/// constrain. (A rule on the root object could say the same, but its error names no field.)
fn with_name_rule(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaProps, ValidationRule,
    };
    let name = JSONSchemaProps {
        type_: Some("string".to_owned()),
        x_kubernetes_validations: Some(vec![ValidationRule {
            rule: format!("size(self) <= {MAX_NAME_LENGTH}"),
            message: Some(format!(
                "must be at most {MAX_NAME_LENGTH} characters, because it becomes the app.kubernetes.io/instance label of the worker pods; choose a shorter name"
            )),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let metadata = JSONSchemaProps {
        type_: Some("object".to_owned()),
        properties: Some([("name".to_owned(), name)].into()),
        ..Default::default()
    };
    for version in &mut crd.spec.versions {
        if let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            root.properties
                .get_or_insert_with(Default::default)
                .insert("metadata".to_owned(), metadata.clone());
        }
    }
    crd
}

/// The CRD as the YAML committed in `crds/eventconsumer.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crd())
}
