//! The contract between the operator and the worker.
//!
//! The operator renders an `EventConsumer` into a Deployment whose container runs
//! `eventconsumer-worker run` with environment variables; the worker reads exactly
//! those variables through clap. Each name is defined once, here, so the two sides
//! cannot drift apart silently: both crates test themselves against [`env::ALL`].
#![forbid(unsafe_code)]

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

    pub const MAX_ATTEMPTS: &str = "EC_MAX_ATTEMPTS";
    pub const BACKOFF_INITIAL: &str = "EC_BACKOFF_INITIAL";
    pub const BACKOFF_MAX: &str = "EC_BACKOFF_MAX";
    pub const BACKOFF_MULTIPLIER: &str = "EC_BACKOFF_MULTIPLIER";
    pub const ATTEMPT_TIMEOUT: &str = "EC_ATTEMPT_TIMEOUT";
    pub const DLQ_TOPIC: &str = "EC_DLQ_TOPIC";

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
        MAX_ATTEMPTS,
        BACKOFF_INITIAL,
        BACKOFF_MAX,
        BACKOFF_MULTIPLIER,
        ATTEMPT_TIMEOUT,
        DLQ_TOPIC,
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
/// accept them. Both sides test their own enums against these lists.
pub mod values {
    /// `spec.handler` / `EC_HANDLER`.
    pub const HANDLERS: &[&str] = &["order", "analytics", "video"];
    /// `spec.order.action` / `EC_ORDER_ACTION`.
    pub const ORDER_ACTIONS: &[&str] = &["inventory", "payment", "email", "analytics"];
    /// `spec.video.stage` / `EC_VIDEO_STAGE`.
    pub const VIDEO_STAGES: &[&str] = &["transcode", "publish"];
    /// `spec.kafka.initialOffset` / `EC_INITIAL_OFFSET`.
    pub const INITIAL_OFFSETS: &[&str] = &["earliest", "latest"];
    /// `spec.kafka.sasl.mechanism` / `EC_SASL_MECHANISM`.
    pub const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
}

/// Default shutdown grace of the worker, in seconds. The operator sets the pod's
/// `terminationGracePeriodSeconds` above this so the kubelet never kills a draining worker.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 25;

/// The output topic a handler publishes to when none is configured.
///
/// `option` is the order action or the video stage; the analytics handler has none.
/// Returns `None` for an unknown handler or option, so callers report the bad value.
pub fn default_output_topic(handler: &str, option: Option<&str>) -> Option<String> {
    match (handler, option) {
        ("order", Some(action)) if values::ORDER_ACTIONS.contains(&action) => {
            Some(format!("order.{action}"))
        }
        ("analytics", _) => Some("analytics.counts".to_owned()),
        ("video", Some("transcode")) => Some("video.transcoded".to_owned()),
        ("video", Some("publish")) => Some("video.ready".to_owned()),
        _ => None,
    }
}

/// The dead-letter topic of a source topic when none is configured.
pub fn default_dlq_topic(source_topic: &str) -> String {
    format!("{source_topic}.dlq")
}

#[cfg(test)]
mod tests {
    use super::{default_dlq_topic, default_output_topic};

    #[test]
    fn default_topics_follow_the_seed_names() {
        assert_eq!(
            default_output_topic("order", Some("payment")).as_deref(),
            Some("order.payment")
        );
        assert_eq!(
            default_output_topic("video", Some("publish")).as_deref(),
            Some("video.ready")
        );
        assert_eq!(default_output_topic("video", Some("nope")), None);
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
}
