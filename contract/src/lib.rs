//! The contract between the operator and the worker.
//!
//! The operator renders an `EventConsumer` into a Deployment whose container runs
//! `eventconsumer-worker run` with environment variables; the worker reads exactly
//! those variables through clap. Each name is defined once, here, so the two sides
//! cannot drift apart silently: both crates test themselves against [`env::ALL`].
#![forbid(unsafe_code)]

pub mod acl;
pub mod retry;
mod vocabulary;

pub use vocabulary::{
    DeliveryMode, Handler, InitialOffset, OrderAction, Ordering, SaslMechanism, Semantics,
    VideoStage,
};

/// The subcommand a consumer pod runs.
pub const RUN_SUBCOMMAND: &str = "run";

/// The container port the worker serves `/healthz`, `/readyz` and `/metrics` on.
pub const HTTP_PORT: u16 = 8080;
/// Name of the container port, used by probes and the Prometheus scrape annotation.
pub const HTTP_PORT_NAME: &str = "http";
pub const HEALTHZ_PATH: &str = "/healthz";
pub const READYZ_PATH: &str = "/readyz";
pub const METRICS_PATH: &str = "/metrics";

/// Environment variables the worker understands (`eventconsumer-worker run --help` lists them
/// beside their flags).
pub mod env {
    /// `order` | `analytics` | `video`.
    pub const HANDLER: &str = "EC_HANDLER";
    /// Order handler: `inventory` | `payment` | `email` | `analytics`.
    pub const ORDER_ACTION: &str = "EC_ORDER_ACTION";
    /// Video handler: `transcode` | `publish`.
    pub const VIDEO_STAGE: &str = "EC_VIDEO_STAGE";
    /// Analytics handler: tumbling window length, e.g. `5s`.
    pub const ANALYTICS_WINDOW: &str = "EC_ANALYTICS_WINDOW";
    /// Topic the handler publishes its outcome events to.
    pub const OUTPUT_TOPIC: &str = "EC_OUTPUT_TOPIC";
    /// Order handler: optional HTTP sink each event is POSTed to.
    pub const SINK_URL: &str = "EC_SINK_URL";

    /// Comma-separated `host:port` list.
    pub const BOOTSTRAP_SERVERS: &str = "EC_BOOTSTRAP_SERVERS";
    /// Comma-separated source topics.
    pub const TOPICS: &str = "EC_TOPICS";
    pub const GROUP_ID: &str = "EC_GROUP_ID";
    /// `earliest` | `latest`: where a group without committed offsets starts.
    pub const INITIAL_OFFSET: &str = "EC_INITIAL_OFFSET";
    /// `PLAIN` | `SCRAM-SHA-256` | `SCRAM-SHA-512`; unset means no SASL.
    pub const SASL_MECHANISM: &str = "EC_SASL_MECHANISM";
    pub const SASL_USERNAME: &str = "EC_SASL_USERNAME";
    pub const SASL_PASSWORD: &str = "EC_SASL_PASSWORD";
    /// Path of a PEM CA bundle; set means TLS to the brokers.
    pub const TLS_CA_FILE: &str = "EC_TLS_CA_FILE";
    /// Path of the PEM client certificate (chain) for mutual TLS; needs [`TLS_KEY_FILE`].
    pub const TLS_CERT_FILE: &str = "EC_TLS_CERT_FILE";
    /// Path of the PEM private key of [`TLS_CERT_FILE`].
    pub const TLS_KEY_FILE: &str = "EC_TLS_KEY_FILE";

    pub const MAX_ATTEMPTS: &str = "EC_MAX_ATTEMPTS";
    pub const BACKOFF_INITIAL: &str = "EC_BACKOFF_INITIAL";
    pub const BACKOFF_MAX: &str = "EC_BACKOFF_MAX";
    pub const BACKOFF_MULTIPLIER: &str = "EC_BACKOFF_MULTIPLIER";
    pub const ATTEMPT_TIMEOUT: &str = "EC_ATTEMPT_TIMEOUT";
    pub const DLQ_TOPIC: &str = "EC_DLQ_TOPIC";
    /// `blocking` | `retryTopics`: how failed messages wait for their next attempt.
    pub const DELIVERY_MODE: &str = "EC_DELIVERY_MODE";
    /// `partition` | `key` | `none`: which messages may be processed at the same time.
    pub const ORDERING: &str = "EC_ORDERING";
    /// Messages a worker processes at the same time in `key` and `none` ordering.
    pub const MAX_IN_FLIGHT: &str = "EC_MAX_IN_FLIGHT";
    /// `atLeastOnce` | `exactlyOnce`: whether outputs and offsets go in Kafka transactions.
    pub const SEMANTICS: &str = "EC_SEMANTICS";

    /// Seconds the worker waits for in-flight work after SIGTERM.
    pub const SHUTDOWN_GRACE: &str = "EC_SHUTDOWN_GRACE";
    /// `host:port` of the health/metrics server.
    pub const HTTP_ADDR: &str = "EC_HTTP_ADDR";
    /// A tracing filter such as `info` or `eventconsumer_worker=debug`.
    pub const LOG_LEVEL: &str = "EC_LOG_LEVEL";
    /// Name of the EventConsumer this worker serves (labels in logs and metrics).
    pub const CONSUMER_NAME: &str = "EC_CONSUMER_NAME";

    /// Testing aid (benchmarks): the order handler validates but publishes nothing.
    pub const NO_OUTPUT: &str = "EC_NO_OUTPUT";
    /// Testing aid (benchmarks, chaos): percentage of messages whose first attempts fail.
    pub const FAULT_FAIL_PERCENT: &str = "EC_FAULT_FAIL_PERCENT";
    /// Testing aid: how many attempts of each chosen message fail before it passes.
    pub const FAULT_FAIL_TIMES: &str = "EC_FAULT_FAIL_TIMES";

    /// Every name the operator may set. The worker test checks that its CLI reads each of
    /// them; the operator test checks that its Deployments, across the handlers and options,
    /// set exactly these.
    pub const ALL: &[&str] = &[
        HANDLER,
        ORDER_ACTION,
        VIDEO_STAGE,
        ANALYTICS_WINDOW,
        OUTPUT_TOPIC,
        SINK_URL,
        BOOTSTRAP_SERVERS,
        TOPICS,
        GROUP_ID,
        INITIAL_OFFSET,
        SASL_MECHANISM,
        SASL_USERNAME,
        SASL_PASSWORD,
        TLS_CA_FILE,
        TLS_CERT_FILE,
        TLS_KEY_FILE,
        MAX_ATTEMPTS,
        BACKOFF_INITIAL,
        BACKOFF_MAX,
        BACKOFF_MULTIPLIER,
        ATTEMPT_TIMEOUT,
        DLQ_TOPIC,
        DELIVERY_MODE,
        ORDERING,
        MAX_IN_FLIGHT,
        SEMANTICS,
        SHUTDOWN_GRACE,
        HTTP_ADDR,
        LOG_LEVEL,
        CONSUMER_NAME,
    ];

    /// Worker settings for benchmarks and chaos runs only. The worker reads them; the
    /// operator never sets them, and the CRD has no field for them.
    pub const TESTING: &[&str] = &[NO_OUTPUT, FAULT_FAIL_PERCENT, FAULT_FAIL_TIMES];
}

/// The values the enumerated settings take, as the CRD spells them and the worker's flags
/// accept them: the names of the [`vocabulary`](crate::Handler) enums.
pub mod values {
    use crate::{
        DeliveryMode, Handler, InitialOffset, OrderAction, Ordering, SaslMechanism, Semantics,
        VideoStage,
    };

    /// `spec.handler` / `EC_HANDLER`.
    pub const HANDLERS: &[&str] = Handler::NAMES;
    /// `spec.order.action` / `EC_ORDER_ACTION`.
    pub const ORDER_ACTIONS: &[&str] = OrderAction::NAMES;
    /// `spec.video.stage` / `EC_VIDEO_STAGE`.
    pub const VIDEO_STAGES: &[&str] = VideoStage::NAMES;
    /// `spec.kafka.initialOffset` / `EC_INITIAL_OFFSET`.
    pub const INITIAL_OFFSETS: &[&str] = InitialOffset::NAMES;
    /// `spec.kafka.sasl.mechanism` / `EC_SASL_MECHANISM`.
    pub const SASL_MECHANISMS: &[&str] = SaslMechanism::NAMES;
    /// `spec.delivery.mode` / `EC_DELIVERY_MODE`.
    pub const DELIVERY_MODES: &[&str] = DeliveryMode::NAMES;
    /// `spec.delivery.ordering` / `EC_ORDERING`.
    pub const ORDERINGS: &[&str] = Ordering::NAMES;
    /// `spec.delivery.semantics` / `EC_SEMANTICS`.
    pub const SEMANTICS: &[&str] = Semantics::NAMES;
    /// The `ec-dlt-error-class` values the worker writes, which a DeadLetterRedrive can select.
    pub const ERROR_CLASSES: &[&str] = &[
        "decode",
        "validation",
        "timeout",
        "publish",
        "sink-unavailable",
        "sink-rejected",
        "sink-unreachable",
        "injected",
    ];
}

/// Record headers shared by the worker (which writes them) and the operator (which reads them to
/// count dead letters and to redrive them). Values are UTF-8 text: numbers in decimal, times in
/// RFC 3339 UTC with milliseconds.
pub mod headers {
    /// Prefix of every header a dead-letter record carries about its failure. A record that
    /// is dead-lettered again has its old `ec-dlt-*` headers replaced.
    pub const DLT_PREFIX: &str = "ec-dlt-";
    pub const DLT_ORIGINAL_TOPIC: &str = "ec-dlt-original-topic";
    pub const DLT_ORIGINAL_PARTITION: &str = "ec-dlt-original-partition";
    pub const DLT_ORIGINAL_OFFSET: &str = "ec-dlt-original-offset";
    pub const DLT_ORIGINAL_TIMESTAMP: &str = "ec-dlt-original-timestamp";
    pub const DLT_ORIGINAL_TIMESTAMP_TYPE: &str = "ec-dlt-original-timestamp-type";
    pub const DLT_CONSUMER_GROUP: &str = "ec-dlt-consumer-group";
    pub const DLT_CONSUMER_NAME: &str = "ec-dlt-consumer-name";
    pub const DLT_HANDLER: &str = "ec-dlt-handler";
    pub const DLT_ATTEMPTS: &str = "ec-dlt-attempts";
    pub const DLT_ERROR_CLASS: &str = "ec-dlt-error-class";
    pub const DLT_ERROR_RETRYABLE: &str = "ec-dlt-error-retryable";
    pub const DLT_ERROR_MESSAGE: &str = "ec-dlt-error-message";
    pub const DLT_FIRST_FAILURE: &str = "ec-dlt-first-failure";
    pub const DLT_LAST_FAILURE: &str = "ec-dlt-last-failure";

    /// Prefix of the headers a record in a retry topic carries (retryTopics mode). They are
    /// removed again when the record is dead-lettered or redriven.
    pub const RETRY_PREFIX: &str = "ec-retry-";
    /// The attempt the record in a retry topic is waiting for (2 for the first retry).
    pub const RETRY_ATTEMPT: &str = "ec-retry-attempt";
    /// When the record becomes due, ms since the epoch.
    pub const RETRY_DUE: &str = "ec-retry-due";
    /// Time of the first failed attempt (RFC 3339).
    pub const RETRY_FIRST_FAILURE: &str = "ec-retry-first-failure";
    /// Where the record was first consumed from, so a dead-letter record names the source
    /// topic, partition and offset rather than the retry topic's.
    pub const RETRY_ORIGINAL_TOPIC: &str = "ec-retry-original-topic";
    pub const RETRY_ORIGINAL_PARTITION: &str = "ec-retry-original-partition";
    pub const RETRY_ORIGINAL_OFFSET: &str = "ec-retry-original-offset";
    pub const RETRY_ORIGINAL_TIMESTAMP: &str = "ec-retry-original-timestamp";

    /// How many times a record was replayed from the dead-letter topic. The worker keeps it
    /// (like any header that is not `ec-dlt-*`/`ec-retry-*`), so a redriven record that fails
    /// again arrives in the DLQ still carrying it.
    pub const REDRIVE_COUNT: &str = "ec-redrive-count";
    /// `<namespace>/<name>` of the DeadLetterRedrive that replayed the record last.
    pub const REDRIVE_NAME: &str = "ec-redrive-name";
}

/// The limits of the settings, checked by the CRD (schema and CEL rules formatted from these),
/// by the operator's config and, where the worker checks them, by the worker.
pub mod limits {
    /// Most attempts per message (`spec.delivery.maxAttempts`): beyond this a message that
    /// keeps failing holds its partition (blocking mode) for too long to be useful.
    pub const MAX_ATTEMPTS: u32 = 100;
    /// Most attempts in `retryTopics` mode: each retry has its own topic, which the operator
    /// creates, so the count of topics per consumer stays small.
    pub const MAX_RETRY_TOPIC_ATTEMPTS: u32 = 10;
    /// Smallest backoff multiplier: 1 is a constant delay; below it delays would shrink.
    pub const MIN_BACKOFF_MULTIPLIER: f64 = 1.0;
    /// Largest backoff multiplier the CRD accepts.
    pub const MAX_BACKOFF_MULTIPLIER: f64 = 10.0;
    /// Most messages one worker processes at the same time (`spec.delivery.maxInFlight`):
    /// each holds its record (~300 B–1 MiB) and a task, so 10,000 keeps a worker within a
    /// few hundred MiB even with large records; beyond it, add replicas.
    pub const MAX_IN_FLIGHT: u32 = 10_000;
}

/// Defaults of settings that both the CRD and the worker's flags have. The operator always sets
/// every variable, so the worker's defaults only count when it runs without the operator (tests,
/// benchmarks, the demo); they are the CRD's documented ones so both read the same.
pub mod defaults {
    use std::time::Duration;

    /// `spec.delivery.maxAttempts` / `--max-attempts`.
    pub const MAX_ATTEMPTS: u32 = 5;
    /// `spec.delivery.backoff.initial` / `--backoff-initial`.
    pub const BACKOFF_INITIAL: &str = "200ms";
    /// `spec.delivery.backoff.max` / `--backoff-max`.
    pub const BACKOFF_MAX: &str = "30s";
    /// `spec.delivery.backoff.multiplier` / `--backoff-multiplier`.
    pub const BACKOFF_MULTIPLIER: f64 = 2.0;
    /// `spec.delivery.attemptTimeout` / `--attempt-timeout`.
    pub const ATTEMPT_TIMEOUT: &str = "30s";
    /// `spec.analytics.window` / `--window`, as in the seed.
    pub const ANALYTICS_WINDOW: Duration = Duration::from_secs(5);
    /// `spec.logLevel` / `--log-level`.
    pub const LOG_LEVEL: &str = "info";
    /// `spec.delivery.maxInFlight` / `--max-in-flight`: with a 20 ms sink call, 256 at a
    /// time is ~12,800 messages per second per worker, more than one worker's share of a
    /// topic usually needs, at a few MiB of records.
    pub const MAX_IN_FLIGHT: u32 = 256;
}

/// Which orderings a handler can run with: the analytics handler counts into in-memory
/// windows whose offsets are stored when a window is flushed, so it runs with `partition`
/// only (concurrency would gain nothing for a counter and blur what a window holds).
pub mod ordering {
    use crate::{Handler, Ordering};

    /// Whether `handler` runs with `ordering`.
    pub fn fits(handler: Handler, ordering: Ordering) -> bool {
        handler != Handler::Analytics || ordering == Ordering::Partition
    }

    /// Why not, in the words the CRD and the worker both refuse it with.
    pub const ANALYTICS_REASON: &str = "the analytics handler counts into in-memory windows \
        stored per partition; it runs with ordering partition only";
}

/// Exactly-once delivery: which consumers can have it, and the transactional id a worker uses.
///
/// A worker in `exactlyOnce` mode writes its outputs, dead letters and retry records and
/// commits its offsets in Kafka transactions. An HTTP sink is outside Kafka: a call made in a
/// transaction that is then aborted cannot be taken back, so a consumer with a sink is refused.
pub mod semantics {
    use crate::{Ordering, Semantics};

    /// Whether a consumer with (`true`) or without an HTTP sink runs with `semantics`.
    pub fn fits_sink(semantics: Semantics, has_sink: bool) -> bool {
        semantics != Semantics::ExactlyOnce || !has_sink
    }

    /// Why not, in the words the CRD and the worker both refuse it with.
    pub const SINK_REASON: &str = "an HTTP sink is outside Kafka's transactions (a call \
        cannot be taken back when its transaction aborts); use atLeastOnce with a sink that \
        deduplicates by the Idempotency-Key header";

    /// Whether `semantics` runs with `ordering`: a transaction commits a partition's outputs
    /// with one position, below its lowest unfinished message, so messages of a partition
    /// must finish in offset order.
    pub fn fits_ordering(semantics: Semantics, ordering: Ordering) -> bool {
        semantics != Semantics::ExactlyOnce || ordering == Ordering::Partition
    }

    /// Why not, in the words the CRD and the worker both refuse it with.
    pub const ORDERING_REASON: &str = "a transaction commits a partition's outputs with one \
        position, below its lowest unfinished message; with key or none ordering a message \
        can finish above one that is still retrying, and a crash would redo its committed \
        output, so exactlyOnce runs with ordering partition only";

    /// What every transactional id of a group's workers starts with (the ACL's prefix).
    pub fn transactional_id_prefix(group_id: &str) -> String {
        format!("{group_id}.tx.")
    }

    /// The transactional id of the worker `instance` (its pod name) of `group_id`: stable
    /// across restarts of the pod's container, so a restarted worker fences the transaction
    /// its killed predecessor left open at once.
    pub fn transactional_id(group_id: &str, instance: &str) -> String {
        format!("{}{instance}", transactional_id_prefix(group_id))
    }
}

/// Kafka's own rule for topic names (`kafka.common.internals.Topic`).
pub mod topic {
    /// Kafka's topic name length limit.
    pub const MAX_LENGTH: usize = 249;
    /// The characters a topic name may have, as a regular expression (the CRD's `pattern`).
    pub const PATTERN: &str = "^[a-zA-Z0-9._-]+$";

    /// Whether Kafka accepts `name` as a topic name: 1 to 249 of `a-z A-Z 0-9 . _ -`, and not
    /// `.` or `..`.
    pub fn is_valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_LENGTH
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && name != "."
            && name != ".."
    }
}

/// The retry topic of `attempt` (2 for the first retry, up to the consumer's max attempts) in
/// `retryTopics` mode: `<consumer group>.retry.<attempt - 1>`. Named after the group, not the
/// source topic, because several groups read the same source topic (the four `order.placed`
/// consumers) and each must retry only its own failures.
pub fn retry_topic(group_id: &str, attempt: u32) -> String {
    format!(
        "{}{}",
        retry_topic_prefix(group_id),
        attempt.saturating_sub(1)
    )
}

/// What every retry topic of a group starts with (`<consumer group>.retry.`): the name of a
/// prefixed ACL that covers them all.
pub fn retry_topic_prefix(group_id: &str) -> String {
    format!("{group_id}.retry.")
}

/// The retry topics of a group in `retryTopics` mode, for attempts `2..=max_attempts` in order
/// (none with one attempt).
pub fn retry_topics(group_id: &str, max_attempts: u32) -> Vec<String> {
    (2..=max_attempts)
        .map(|attempt| retry_topic(group_id, attempt))
        .collect()
}

/// The first of `retry_topics` that is also a source, the dead-letter or the output topic,
/// which would make a consumer read its own retries, or a retry read as a dead letter or an
/// outcome. Both the operator and the worker refuse such a group in `retryTopics` mode.
pub fn retry_topic_collision<'a>(
    retry_topics: &'a [String],
    sources: &[String],
    dead_letter: &str,
    output: &str,
) -> Option<&'a str> {
    retry_topics
        .iter()
        .find(|t| sources.contains(t) || *t == dead_letter || *t == output)
        .map(String::as_str)
}

/// Default shutdown grace of the worker, in seconds. The operator sets the pod's
/// `terminationGracePeriodSeconds` above this so the kubelet never kills a draining worker.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 25;

/// What decides a handler's default output topic: the handler, with its action or stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputOf {
    Order(OrderAction),
    Analytics,
    Video(VideoStage),
}

/// The output topic a handler publishes to when none is set: `order.<action>`,
/// `analytics.counts`, `video.transcoded` (transcode) or `video.ready` (publish).
pub fn default_output_topic(of: OutputOf) -> String {
    match of {
        OutputOf::Order(action) => format!("order.{}", action.as_str()),
        OutputOf::Analytics => "analytics.counts".to_owned(),
        OutputOf::Video(VideoStage::Transcode) => "video.transcoded".to_owned(),
        OutputOf::Video(VideoStage::Publish) => "video.ready".to_owned(),
    }
}

/// The dead-letter topic of a source topic when none is configured.
pub fn default_dlq_topic(source_topic: &str) -> String {
    format!("{source_topic}.dlq")
}

#[cfg(test)]
mod tests {
    use super::{
        OrderAction, OutputOf, VideoStage, default_dlq_topic, default_output_topic, limits,
        retry_topic, retry_topic_collision, retry_topics, topic,
    };

    #[test]
    fn retry_topics_are_numbered_by_retry_and_named_after_the_group() {
        assert_eq!(retry_topic("shop.payment", 2), "shop.payment.retry.1");
        assert_eq!(retry_topic("shop.payment", 5), "shop.payment.retry.4");
    }

    #[test]
    fn the_retry_topic_list_has_one_topic_per_retry() {
        assert_eq!(retry_topics("g", 3), ["g.retry.1", "g.retry.2"]);
        assert!(retry_topics("g", 1).is_empty());
        let most = retry_topics("g", limits::MAX_RETRY_TOPIC_ATTEMPTS);
        assert_eq!(most.len(), 9);
        assert_eq!(most.last().map(String::as_str), Some("g.retry.9"));
    }

    #[test]
    fn the_limits_are_pinned() {
        assert_eq!(limits::MAX_ATTEMPTS, 100);
        assert_eq!(limits::MAX_RETRY_TOPIC_ATTEMPTS, 10);
        assert_eq!(limits::MIN_BACKOFF_MULTIPLIER, 1.0);
        assert_eq!(limits::MAX_BACKOFF_MULTIPLIER, 10.0);
        const { assert!(super::defaults::MAX_ATTEMPTS <= limits::MAX_RETRY_TOPIC_ATTEMPTS) };
    }

    #[test]
    fn the_topic_name_rule_is_kafkas() {
        assert!(topic::is_valid("order.placed"));
        assert!(topic::is_valid(&"a".repeat(249)));
        assert!(!topic::is_valid(&"a".repeat(250)));
        assert!(!topic::is_valid(""));
        assert!(!topic::is_valid("."));
        assert!(!topic::is_valid(".."));
        assert!(!topic::is_valid("shop/payment"));
        assert_eq!(topic::PATTERN, "^[a-zA-Z0-9._-]+$");
    }

    #[test]
    fn default_topics_follow_the_seed_names() {
        assert_eq!(
            default_output_topic(OutputOf::Order(OrderAction::Payment)),
            "order.payment"
        );
        assert_eq!(
            default_output_topic(OutputOf::Analytics),
            "analytics.counts"
        );
        assert_eq!(
            default_output_topic(OutputOf::Video(VideoStage::Transcode)),
            "video.transcoded"
        );
        assert_eq!(
            default_output_topic(OutputOf::Video(VideoStage::Publish)),
            "video.ready"
        );
        assert_eq!(default_dlq_topic("order.placed"), "order.placed.dlq");
    }

    use super::env;
    use std::collections::HashSet;

    #[test]
    fn every_env_name_is_listed_once_and_prefixed() {
        let names: Vec<_> = env::ALL.iter().chain(env::TESTING).collect();
        let set: HashSet<_> = names.iter().collect();
        assert_eq!(set.len(), names.len(), "a name is listed twice");
        assert!(names.iter().all(|n| n.starts_with("EC_")));
    }

    #[test]
    fn a_retry_topic_collides_with_a_source_the_dead_letter_or_the_output_topic() {
        let retries = retry_topics("g", 3);
        let sources = vec!["orders".to_owned()];
        assert_eq!(
            retry_topic_collision(&retries, &sources, "orders.dlq", "out"),
            None
        );
        assert_eq!(
            retry_topic_collision(&retries, &["g.retry.2".to_owned()], "orders.dlq", "out"),
            Some("g.retry.2")
        );
        assert_eq!(
            retry_topic_collision(&retries, &sources, "g.retry.1", "out"),
            Some("g.retry.1")
        );
        assert_eq!(
            retry_topic_collision(&retries, &sources, "orders.dlq", "g.retry.1"),
            Some("g.retry.1")
        );
    }
}

/// Whether librdkafka's reason beside a broker transport failure names a TLS refusal: a
/// broker rejecting the client certificate (expired, or signed by a CA it does not trust)
/// only shows that way, as the TLS alert in the text. The worker and the operator both
/// count such a failure as a refusal of the client, not an outage.
pub fn transport_failure_names_tls(reason: &str) -> bool {
    reason.contains("SSL") || reason.contains("certificate")
}

#[cfg(test)]
mod transport_tests {
    #[test]
    fn a_tls_alert_names_a_refusal_and_a_plain_disconnect_does_not() {
        assert!(super::transport_failure_names_tls(
            "ssl://b:9097/1: SSL routines::sslv3 alert certificate expired"
        ));
        assert!(!super::transport_failure_names_tls(
            "plaintext://b:9092/1: Disconnected (after 10ms in state UP)"
        ));
    }
}
