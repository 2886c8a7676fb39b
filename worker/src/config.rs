//! Validated consumer settings, built from the parsed `run` arguments.
//!
//! Clap checks each value alone; this module checks the combinations (an `--action` only
//! with the order handler, a window only with analytics, backoff bounds in order, …) and
//! fills the defaults that depend on other settings (output and dead-letter topics). Every
//! error names the flag and its environment variable, because that one line is all an
//! operator sees in a crash-looping pod (the process exits with code 2).

use std::net::SocketAddr;
use std::time::Duration;

use eventconsumer_contract::env;
use rdkafka::ClientConfig;

use eventconsumer_contract::{
    DeliveryMode, Handler, InitialOffset, OrderAction, Ordering, OutputOf, Semantics, VideoStage,
};

use crate::cli::RunArgs;
use crate::kafka::KafkaConfigError;
use crate::testing::{FaultSpec, Testing, TestingArgs};

/// What [`Settings::output_topic`] says with `--no-output` (never a valid topic name).
pub const NO_OUTPUT_TOPIC: &str = "(none)";

/// The analytics window when none is configured, as in the seed.
pub const DEFAULT_ANALYTICS_WINDOW: Duration = eventconsumer_contract::defaults::ANALYTICS_WINDOW;

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{flag} ({env}) is only valid with --handler {handler}")]
    OptionForOtherHandler {
        flag: &'static str,
        env: &'static str,
        handler: &'static str,
    },
    #[error("--handler {handler} needs {flag} ({env})")]
    MissingOption {
        handler: &'static str,
        flag: &'static str,
        env: &'static str,
    },
    #[error("{flag} ({env}) {reason}")]
    Invalid {
        flag: &'static str,
        env: &'static str,
        reason: String,
    },
    /// A flag without an environment variable (the operator never sets it).
    #[error("{flag} {reason}")]
    InvalidFlag { flag: &'static str, reason: String },
    #[error(transparent)]
    Kafka(#[from] KafkaConfigError),
}

fn invalid(flag: &'static str, env: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        env,
        reason: reason.into(),
    }
}

/// The handler with its handler-specific settings.
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerSettings {
    Order {
        action: OrderAction,
        sink_url: Option<url::Url>,
        /// `false` with `--no-output` (a testing aid): publish no outcome event.
        publish: bool,
    },
    Analytics {
        window: Duration,
    },
    Video {
        stage: VideoStage,
        transcode_bytes_per_sec: u64,
    },
    /// `inner` behind the fault injector of `--fault-fail-percent` (a testing aid).
    Faulty {
        inner: Box<HandlerSettings>,
        fault: FaultSpec,
    },
}

impl HandlerSettings {
    /// The handler without its fault injector, and the injector's settings if any.
    pub fn split_fault(&self) -> (&HandlerSettings, Option<FaultSpec>) {
        let mut settings = self;
        let mut fault = None;
        while let HandlerSettings::Faulty { inner, fault: f } = settings {
            fault = fault.or(Some(*f));
            settings = inner;
        }
        (settings, fault)
    }

    /// `order/payment`, `analytics`, `video/transcode`: the label in metrics, logs and the
    /// DLQ handler header.
    pub fn label(&self) -> String {
        match self {
            HandlerSettings::Order { action, .. } => format!("order/{}", action.as_str()),
            HandlerSettings::Analytics { .. } => "analytics".to_owned(),
            HandlerSettings::Video { stage, .. } => format!("video/{}", stage.as_str()),
            HandlerSettings::Faulty { inner, .. } => inner.label(),
        }
    }

    /// What decides the default output topic (a faulty handler's is its inner one's).
    pub fn output_of(&self) -> OutputOf {
        match self {
            HandlerSettings::Order { action, .. } => OutputOf::Order(*action),
            HandlerSettings::Analytics { .. } => OutputOf::Analytics,
            HandlerSettings::Video { stage, .. } => OutputOf::Video(*stage),
            HandlerSettings::Faulty { inner, .. } => inner.output_of(),
        }
    }
}

/// How failed attempts are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub backoff_multiplier: f32,
    pub attempt_timeout: Duration,
}

/// Everything the consumer needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub handler: HandlerSettings,
    pub output_topic: String,
    pub kafka: ClientConfig,
    pub topics: Vec<String>,
    pub group_id: String,
    pub initial_offset: InitialOffset,
    pub retry: RetrySettings,
    pub delivery_mode: DeliveryMode,
    /// `retryTopics` mode: the topic each retry waits in, for attempts 2..=max_attempts in
    /// order (`<group-id>.retry.<n>`, see [`eventconsumer_contract::retry_topics`]); empty in
    /// `blocking` mode.
    pub retry_topics: Vec<String>,
    pub ordering: Ordering,
    /// Messages processed at the same time in `key` and `none` ordering.
    pub max_in_flight: usize,
    /// `exactlyOnce`: the transactional id; `None` at least once.
    pub transactional_id: Option<String>,
    pub dlq_topic: String,
    pub shutdown_grace: Duration,
    pub http_addr: SocketAddr,
    pub log_level: String,
    pub consumer_name: String,
}

/// `--semantics` against the sink, and the transactional id of `exactlyOnce`: the flag's, or
/// `<group-id>.tx.<host name>` (a pod's host name is its name, kept across container restarts).
fn transactional_id(args: &RunArgs, group_id: &str) -> Result<Option<String>, ConfigError> {
    use eventconsumer_contract::semantics;
    if !semantics::fits_sink(args.semantics, args.sink_url.is_some()) {
        return Err(invalid(
            "--semantics",
            env::SEMANTICS,
            format!(
                "{} is not allowed with --sink-url: {}",
                args.semantics.as_str(),
                semantics::SINK_REASON
            ),
        ));
    }
    if !semantics::fits_ordering(args.semantics, args.ordering) {
        return Err(invalid(
            "--semantics",
            env::SEMANTICS,
            format!(
                "{} is not allowed with --ordering {}: {}",
                args.semantics.as_str(),
                args.ordering.as_str(),
                semantics::ORDERING_REASON
            ),
        ));
    }
    if args.semantics != Semantics::ExactlyOnce {
        if args.transactional_id.is_some() {
            return Err(ConfigError::InvalidFlag {
                flag: "--transactional-id",
                reason: format!(
                    "is only for --semantics {}",
                    Semantics::ExactlyOnce.as_str()
                ),
            });
        }
        return Ok(None);
    }
    let instance = match args.transactional_id.as_deref().map(str::trim) {
        Some("") => {
            return Err(ConfigError::InvalidFlag {
                flag: "--transactional-id",
                reason: "must not be empty".to_owned(),
            });
        }
        Some(id) => return Ok(Some(id.to_owned())),
        None => std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty()),
    };
    match instance {
        Some(instance) => Ok(Some(eventconsumer_contract::semantics::transactional_id(
            group_id, &instance,
        ))),
        None => Err(invalid(
            "--semantics",
            env::SEMANTICS,
            "exactlyOnce needs a stable transactional id and the host name is unknown: set --transactional-id",
        )),
    }
}

/// `--ordering` against the handler, and `--max-in-flight` within the contract's bounds.
fn ordering_settings(args: &RunArgs) -> Result<usize, ConfigError> {
    if !eventconsumer_contract::ordering::fits(args.handler, args.ordering) {
        return Err(invalid(
            "--ordering",
            env::ORDERING,
            format!(
                "{} is not allowed: {}",
                args.ordering.as_str(),
                eventconsumer_contract::ordering::ANALYTICS_REASON
            ),
        ));
    }
    let max = eventconsumer_contract::limits::MAX_IN_FLIGHT;
    if !(1..=max).contains(&args.max_in_flight) {
        return Err(invalid(
            "--max-in-flight",
            env::MAX_IN_FLIGHT,
            format!("must be between 1 and {max}"),
        ));
    }
    Ok(usize::try_from(args.max_in_flight).unwrap_or(usize::MAX))
}

fn check_topic(flag: &'static str, env: &'static str, topic: &str) -> Result<(), ConfigError> {
    if eventconsumer_contract::topic::is_valid(topic) {
        Ok(())
    } else {
        Err(invalid(
            flag,
            env,
            format!("{topic:?} is not a valid topic name (1–249 of a-z A-Z 0-9 . _ -)"),
        ))
    }
}

impl Settings {
    pub fn from_args(args: &RunArgs) -> Result<Settings, ConfigError> {
        let testing = args.testing.settings(args.handler)?;
        let mut handler = handler_settings(args)?;

        let topics: Vec<String> = args
            .topics
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        let Some(first_topic) = topics.first() else {
            return Err(invalid("--topics", env::TOPICS, "names no topic"));
        };
        for topic in &topics {
            check_topic("--topics", env::TOPICS, topic)?;
        }

        let group_id = args.group_id.trim().to_owned();
        if group_id.is_empty() {
            return Err(invalid("--group-id", env::GROUP_ID, "must not be empty"));
        }

        let output_topic = match &args.output_topic {
            Some(_) if testing.no_output => {
                return Err(invalid(
                    "--output-topic",
                    env::OUTPUT_TOPIC,
                    format!("contradicts --no-output ({})", env::NO_OUTPUT),
                ));
            }
            // Shown in logs only; the handler publishes nothing.
            None if testing.no_output => NO_OUTPUT_TOPIC.to_owned(),
            Some(t) => t.trim().to_owned(),
            None => eventconsumer_contract::default_output_topic(handler.output_of()),
        };
        if !testing.no_output {
            check_topic("--output-topic", env::OUTPUT_TOPIC, &output_topic)?;
        }
        if let HandlerSettings::Order { publish, .. } = &mut handler {
            *publish = !testing.no_output;
        }
        if let Some(fault) = testing.fault {
            handler = HandlerSettings::Faulty {
                inner: Box::new(handler),
                fault,
            };
        }

        let dlq_topic = match &args.dlq_topic {
            Some(t) => t.trim().to_owned(),
            None => eventconsumer_contract::default_dlq_topic(first_topic),
        };
        check_topic("--dlq-topic", env::DLQ_TOPIC, &dlq_topic)?;
        if topics.contains(&dlq_topic) {
            return Err(invalid(
                "--dlq-topic",
                env::DLQ_TOPIC,
                format!("{dlq_topic:?} is also a source topic: failures would loop"),
            ));
        }
        if topics.contains(&output_topic) {
            return Err(invalid(
                "--output-topic",
                env::OUTPUT_TOPIC,
                format!("{output_topic:?} is also a source topic: events would loop"),
            ));
        }

        let retry = retry_settings(args)?;
        let retry_topics = match args.delivery_mode {
            DeliveryMode::Blocking => Vec::new(),
            DeliveryMode::RetryTopics => {
                eventconsumer_contract::retry_topics(&group_id, retry.max_attempts)
            }
        };
        for topic in &retry_topics {
            check_topic("--group-id", env::GROUP_ID, topic).map_err(|_| {
                invalid(
                    "--group-id",
                    env::GROUP_ID,
                    format!(
                        "{group_id:?} makes {topic:?}, not a valid retry topic name (1–249 of a-z A-Z 0-9 . _ -) for --delivery-mode retryTopics ({})",
                        env::DELIVERY_MODE
                    ),
                )
            })?;
        }
        if let Some(topic) = eventconsumer_contract::retry_topic_collision(
            &retry_topics,
            &topics,
            &dlq_topic,
            &output_topic,
        ) {
            return Err(invalid(
                "--group-id",
                env::GROUP_ID,
                format!(
                    "{group_id:?} makes the retry topic {topic:?}, which is also a source, output or dead-letter topic"
                ),
            ));
        }

        let max_in_flight = ordering_settings(args)?;
        let transactional_id = transactional_id(args, &group_id)?;

        if args.shutdown_grace.is_zero() {
            return Err(invalid(
                "--shutdown-grace",
                env::SHUTDOWN_GRACE,
                "must be above zero",
            ));
        }

        let kafka = args.kafka.client_config()?;
        let consumer_name = args
            .consumer_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(&group_id)
            .to_owned();

        Ok(Settings {
            handler,
            output_topic,
            kafka,
            topics,
            group_id,
            initial_offset: args.initial_offset,
            retry,
            delivery_mode: args.delivery_mode,
            retry_topics,
            ordering: args.ordering,
            max_in_flight,
            transactional_id,
            dlq_topic,
            shutdown_grace: args.shutdown_grace,
            http_addr: args.http_addr,
            log_level: args.log_level.clone(),
            consumer_name,
        })
    }
}

// Here rather than in `testing`, so that the testing aids only parse and do not import the
// config (which imports them).
impl TestingArgs {
    /// Checks the flags against each other and the handler.
    pub fn settings(&self, handler: Handler) -> Result<Testing, ConfigError> {
        if self.no_output && handler != Handler::Order {
            return Err(ConfigError::OptionForOtherHandler {
                flag: "--no-output",
                env: env::NO_OUTPUT,
                handler: Handler::Order.as_str(),
            });
        }
        let p = self.fault_fail_percent;
        if !p.is_finite() || !(0.0..=100.0).contains(&p) {
            return Err(ConfigError::Invalid {
                flag: "--fault-fail-percent",
                env: env::FAULT_FAIL_PERCENT,
                reason: format!("must be a number from 0 to 100, not {p}"),
            });
        }
        // Bounded to 0..=1_000_000 by the range check above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let per_million = (p * 10_000.0).round() as u32;
        let fault = if per_million == 0 {
            None
        } else if self.fault_fail_times == 0 {
            return Err(ConfigError::Invalid {
                flag: "--fault-fail-times",
                env: env::FAULT_FAIL_TIMES,
                reason: "must be at least 1 with --fault-fail-percent".to_owned(),
            });
        } else {
            Some(FaultSpec {
                per_million,
                times: self.fault_fail_times,
            })
        };
        Ok(Testing {
            no_output: self.no_output,
            fault,
        })
    }
}

fn handler_settings(args: &RunArgs) -> Result<HandlerSettings, ConfigError> {
    let not_for = |flag, env, handler: Handler| ConfigError::OptionForOtherHandler {
        flag,
        env,
        handler: handler.as_str(),
    };
    // Options of other handlers are refused rather than ignored: a typo in a manifest
    // should fail loudly, not run a different pipeline.
    if args.handler != Handler::Order {
        if args.action.is_some() {
            return Err(not_for("--action", env::ORDER_ACTION, Handler::Order));
        }
        if args.sink_url.is_some() {
            return Err(not_for("--sink-url", env::SINK_URL, Handler::Order));
        }
    }
    if args.handler != Handler::Video && args.stage.is_some() {
        return Err(not_for("--stage", env::VIDEO_STAGE, Handler::Video));
    }
    if args.handler != Handler::Analytics && args.window.is_some() {
        return Err(not_for(
            "--window",
            env::ANALYTICS_WINDOW,
            Handler::Analytics,
        ));
    }
    Ok(match args.handler {
        Handler::Order => {
            let action = args.action.ok_or(ConfigError::MissingOption {
                handler: "order",
                flag: "--action",
                env: env::ORDER_ACTION,
            })?;
            let sink_url = match args.sink_url.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(text) => {
                    let url = url::Url::parse(text).map_err(|e| {
                        invalid("--sink-url", env::SINK_URL, format!("{text:?}: {e}"))
                    })?;
                    if !matches!(url.scheme(), "http" | "https") {
                        return Err(invalid(
                            "--sink-url",
                            env::SINK_URL,
                            format!("{text:?} is not an http(s) URL"),
                        ));
                    }
                    Some(url)
                }
            };
            HandlerSettings::Order {
                action,
                sink_url,
                publish: true,
            }
        }
        Handler::Analytics => {
            let window = args.window.unwrap_or(DEFAULT_ANALYTICS_WINDOW);
            if window < Duration::from_millis(100) {
                return Err(invalid(
                    "--window",
                    env::ANALYTICS_WINDOW,
                    "must be at least 100ms",
                ));
            }
            HandlerSettings::Analytics { window }
        }
        Handler::Video => {
            let stage = args.stage.ok_or(ConfigError::MissingOption {
                handler: "video",
                flag: "--stage",
                env: env::VIDEO_STAGE,
            })?;
            if args.transcode_bytes_per_sec == 0 {
                return Err(invalid(
                    "--transcode-bytes-per-sec",
                    "(no variable)",
                    "must be above zero",
                ));
            }
            HandlerSettings::Video {
                stage,
                transcode_bytes_per_sec: args.transcode_bytes_per_sec,
            }
        }
    })
}

fn retry_settings(args: &RunArgs) -> Result<RetrySettings, ConfigError> {
    use eventconsumer_contract::limits::{MAX_ATTEMPTS, MAX_RETRY_TOPIC_ATTEMPTS};
    if !(1..=MAX_ATTEMPTS).contains(&args.max_attempts) {
        return Err(invalid(
            "--max-attempts",
            env::MAX_ATTEMPTS,
            format!("must be between 1 and {MAX_ATTEMPTS}"),
        ));
    }
    if args.delivery_mode == DeliveryMode::RetryTopics
        && args.max_attempts > MAX_RETRY_TOPIC_ATTEMPTS
    {
        return Err(invalid(
            "--max-attempts",
            env::MAX_ATTEMPTS,
            format!(
                "must be at most {MAX_RETRY_TOPIC_ATTEMPTS} with --delivery-mode retryTopics ({}), where each retry has its own topic",
                env::DELIVERY_MODE
            ),
        ));
    }
    if args.backoff_initial.is_zero() {
        return Err(invalid(
            "--backoff-initial",
            env::BACKOFF_INITIAL,
            "must be above zero",
        ));
    }
    if args.backoff_max < args.backoff_initial {
        return Err(invalid(
            "--backoff-max",
            env::BACKOFF_MAX,
            format!(
                "({}) is below --backoff-initial ({})",
                humantime::format_duration(args.backoff_max),
                humantime::format_duration(args.backoff_initial)
            ),
        ));
    }
    if !args.backoff_multiplier.is_finite() || args.backoff_multiplier < 1.0 {
        return Err(invalid(
            "--backoff-multiplier",
            env::BACKOFF_MULTIPLIER,
            "must be a number ≥ 1",
        ));
    }
    if args.attempt_timeout.is_zero() {
        return Err(invalid(
            "--attempt-timeout",
            env::ATTEMPT_TIMEOUT,
            "must be above zero",
        ));
    }
    Ok(RetrySettings {
        max_attempts: args.max_attempts,
        backoff_initial: args.backoff_initial,
        backoff_max: args.backoff_max,
        backoff_multiplier: args.backoff_multiplier,
        attempt_timeout: args.attempt_timeout,
    })
}

#[cfg(test)]
mod tests;
