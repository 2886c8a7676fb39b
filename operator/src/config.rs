//! Validation: an `EventConsumer`, plus the facts the reconciler looked up about the objects it
//! references, becomes a [`ValidConsumer`] — or a [`ConfigError`] that names the offending field.
//!
//! The API server already refuses most bad specs at admission (see [`crate::crd`]); this module
//! checks the same rules again because the CRD installed in a cluster may be older than the
//! operator, and adds the checks admission cannot make (referenced Secrets and their keys,
//! defaults that collide). Every default is resolved here, so the Deployment builder receives
//! explicit values and the worker's own defaults never decide behaviour silently.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eventconsumer_contract::limits::{
    MAX_ATTEMPTS, MAX_BACKOFF_MULTIPLIER, MAX_RETRY_TOPIC_ATTEMPTS, MIN_BACKOFF_MULTIPLIER,
};
use eventconsumer_contract::{default_dlq_topic, default_output_topic, retry_topics, topic};
use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Secret, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::crd::{
    DeliveryMode, EventConsumer, Handler, HumanDuration, InitialOffset, OrderAction, SaslMechanism,
    VideoStage,
};

/// Operator-wide settings that shape every Deployment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image used when an EventConsumer does not set `spec.image`.
    pub worker_image: String,
    /// How often the operator measures each consumer's lag and dead letters (15 s in
    /// production, as the CRD documents; tests shorten it).
    pub measure_interval: Duration,
}

/// What the reconciler found about the Secrets an EventConsumer references: for each Secret that
/// exists, the names of its keys. Values are never read into this struct.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretFacts {
    keys_by_secret: BTreeMap<String, BTreeSet<String>>,
}

impl SecretFacts {
    /// Records a Secret that exists.
    pub fn insert(&mut self, secret: &Secret) {
        let keys = secret
            .data
            .iter()
            .flat_map(|data| data.keys().cloned())
            .collect();
        self.keys_by_secret.insert(secret.name_any(), keys);
    }

    /// Records a Secret that exists with the given keys (for tests and callers that only know
    /// key names).
    pub fn with_secret<'a>(mut self, name: &str, keys: impl IntoIterator<Item = &'a str>) -> Self {
        self.keys_by_secret.insert(
            name.to_owned(),
            keys.into_iter().map(str::to_owned).collect(),
        );
        self
    }

    fn keys(&self, secret: &str) -> Option<&BTreeSet<String>> {
        self.keys_by_secret.get(secret)
    }
}

/// Names of the Secrets an EventConsumer references, which the reconciler must look up.
pub fn referenced_secrets(ec: &EventConsumer) -> BTreeSet<String> {
    let kafka = &ec.spec.kafka;
    kafka
        .sasl
        .iter()
        .map(|sasl| sasl.secret_ref.name.clone())
        .chain(kafka.tls.iter().map(|tls| tls.ca_secret_ref.name.clone()))
        .collect()
}

/// Why an EventConsumer cannot be turned into a Deployment. Each variant names the field (as a
/// path from the object root) so the user knows what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error(
        "{field}: Secret {name:?} not found in namespace {namespace:?}; create it or fix the reference"
    )]
    SecretNotFound {
        field: String,
        name: String,
        namespace: String,
    },
    #[error("{field}: Secret {name:?} has no key {key:?}")]
    SecretKeyMissing {
        field: String,
        name: String,
        key: String,
    },
}

impl ConfigError {
    fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The field the error is about, such as `spec.kafka.topics`.
    pub fn field(&self) -> &str {
        match self {
            Self::Invalid { field, .. }
            | Self::SecretNotFound { field, .. }
            | Self::SecretKeyMissing { field, .. } => field,
        }
    }

    /// CamelCase reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "InvalidSpec",
            Self::SecretNotFound { .. } => "SecretNotFound",
            Self::SecretKeyMissing { .. } => "SecretKeyMissing",
        }
    }

    /// True when the problem lies in another object, which the operator does not watch: the
    /// reconciler then checks again after a delay instead of waiting for a spec change.
    pub fn depends_on_other_objects(&self) -> bool {
        !matches!(self, Self::Invalid { .. })
    }
}

/// An EventConsumer whose every setting is checked and resolved to an explicit value.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidConsumer {
    pub name: String,
    pub namespace: String,
    /// Controller owner reference to the EventConsumer, so its Deployment is garbage-collected.
    pub owner: OwnerReference,
    pub handler: HandlerConfig,
    pub output_topic: String,
    pub kafka: KafkaConfig,
    pub delivery: DeliveryConfig,
    /// Replicas the Deployment should have: 0 when paused. With `autoscaling` set this is
    /// `spec.replicas` until the reconciler replaces it with the autoscaler's decision.
    pub replicas: i32,
    pub paused: bool,
    /// `spec.autoscaling`, checked.
    pub autoscaling: Option<AutoscalingConfig>,
    /// `spec.image`; `None` means the operator's default ([`Settings::worker_image`]).
    pub image: Option<String>,
    pub resources: Option<ResourceRequirements>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub tolerations: Option<Vec<Toleration>>,
    pub affinity: Option<Affinity>,
    pub log_level: String,
}

/// The handler and its own options.
#[derive(Clone, Debug, PartialEq)]
pub enum HandlerConfig {
    Order {
        action: OrderAction,
        sink_url: Option<String>,
    },
    Analytics {
        window: HumanDuration,
    },
    Video {
        stage: VideoStage,
    },
}

impl HandlerConfig {
    pub fn handler(&self) -> Handler {
        match self {
            Self::Order { .. } => Handler::Order,
            Self::Analytics { .. } => Handler::Analytics,
            Self::Video { .. } => Handler::Video,
        }
    }
}

/// Lag-driven autoscaling, checked: `min_replicas <= max_replicas`, positive threshold,
/// activation lag and cooldown.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoscalingConfig {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub lag_threshold: i64,
    pub activation_lag: i64,
    pub cooldown: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    pub initial_offset: InitialOffset,
    pub sasl: Option<SaslConfig>,
    pub tls: Option<TlsConfig>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SaslConfig {
    pub mechanism: SaslMechanism,
    pub secret_name: String,
    pub username_key: String,
    pub password_key: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TlsConfig {
    pub secret_name: String,
    pub key: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryConfig {
    pub mode: DeliveryMode,
    /// In `retryTopics` mode, the retry topic of each retry in order (attempt 2 first);
    /// empty in `blocking` mode.
    pub retry_topics: Vec<String>,
    pub max_attempts: i32,
    pub backoff_initial: HumanDuration,
    pub backoff_max: HumanDuration,
    pub backoff_multiplier: f64,
    pub attempt_timeout: HumanDuration,
    pub dead_letter_topic: String,
}

/// Checks `ec` and resolves every default.
pub fn validate(ec: &EventConsumer, secrets: &SecretFacts) -> Result<ValidConsumer, ConfigError> {
    let name = ec.name_any();
    let namespace = ec
        .namespace()
        .ok_or_else(|| ConfigError::invalid("metadata.namespace", "must be set"))?;
    let owner = ec
        .controller_owner_ref(&())
        .ok_or_else(|| ConfigError::invalid("metadata.uid", "must be set"))?;
    let spec = &ec.spec;

    let handler = handler_config(ec)?;
    let topics = source_topics(ec)?;

    let (output_topic, output_field) = match (&handler, spec_output_topic(ec)) {
        (_, Some((topic, field))) => (topic, field),
        (handler_config, None) => {
            let option = match handler_config {
                HandlerConfig::Order { action, .. } => Some(action.as_str()),
                HandlerConfig::Video { stage } => Some(stage.as_str()),
                HandlerConfig::Analytics { .. } => None,
            };
            let handler_name = handler_config.handler().as_str();
            let topic = default_output_topic(handler_name, option).ok_or_else(|| {
                ConfigError::invalid(
                    format!("spec.{handler_name}.outputTopic"),
                    "has no default for these options; set it",
                )
            })?;
            (topic, format!("spec.{handler_name}.outputTopic"))
        }
    };
    check_topic_name(&output_field, &output_topic)?;
    if topics.contains(&output_topic) {
        return Err(ConfigError::invalid(
            output_field,
            format!(
                "{output_topic:?} is also a source topic in spec.kafka.topics; the handler would consume its own output"
            ),
        ));
    }

    let kafka = kafka_config(ec, &namespace, topics, secrets)?;
    let delivery = delivery_config(ec, &kafka.topics, &kafka.group_id)?;

    if spec.replicas < 0 {
        return Err(ConfigError::invalid("spec.replicas", "must be 0 or more"));
    }
    let autoscaling = spec
        .autoscaling
        .as_ref()
        .map(autoscaling_config)
        .transpose()?;
    if let Some(image) = &spec.image
        && (image.trim().is_empty() || image.chars().any(char::is_whitespace))
    {
        return Err(ConfigError::invalid(
            "spec.image",
            "must be an image reference without spaces",
        ));
    }
    if spec.log_level.trim().is_empty() {
        return Err(ConfigError::invalid("spec.logLevel", "must not be empty"));
    }

    Ok(ValidConsumer {
        name,
        namespace,
        owner,
        handler,
        output_topic,
        kafka,
        delivery,
        replicas: if spec.paused { 0 } else { spec.replicas },
        paused: spec.paused,
        autoscaling,
        image: spec.image.clone(),
        resources: spec.resources.clone(),
        node_selector: spec.node_selector.clone(),
        tolerations: spec.tolerations.clone(),
        affinity: spec.affinity.clone(),
        log_level: spec.log_level.clone(),
    })
}

fn handler_config(ec: &EventConsumer) -> Result<HandlerConfig, ConfigError> {
    let spec = &ec.spec;
    let forbid = |present: bool, field: &str| {
        if present {
            Err(ConfigError::invalid(
                format!("spec.{field}"),
                format!("only allowed when handler is {field}"),
            ))
        } else {
            Ok(())
        }
    };
    match spec.handler {
        Handler::Order => {
            forbid(spec.analytics.is_some(), "analytics")?;
            forbid(spec.video.is_some(), "video")?;
            let order = spec.order.as_ref().ok_or_else(|| {
                ConfigError::invalid("spec.order", "required when handler is order")
            })?;
            if let Some(url) = &order.sink_url {
                let scheme_ok = ["http://", "https://"]
                    .iter()
                    .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len());
                if !scheme_ok || url.chars().any(char::is_whitespace) {
                    return Err(ConfigError::invalid(
                        "spec.order.sinkUrl",
                        "must be an absolute http:// or https:// URL",
                    ));
                }
            }
            Ok(HandlerConfig::Order {
                action: order.action,
                sink_url: order.sink_url.clone(),
            })
        }
        Handler::Analytics => {
            forbid(spec.order.is_some(), "order")?;
            forbid(spec.video.is_some(), "video")?;
            let window = spec
                .analytics
                .as_ref()
                .map(|a| a.window.clone())
                .unwrap_or_else(|| crate::crd::AnalyticsOptions::default().window);
            positive_duration("spec.analytics.window", &window)?;
            Ok(HandlerConfig::Analytics { window })
        }
        Handler::Video => {
            forbid(spec.order.is_some(), "order")?;
            forbid(spec.analytics.is_some(), "analytics")?;
            let video = spec.video.as_ref().ok_or_else(|| {
                ConfigError::invalid("spec.video", "required when handler is video")
            })?;
            Ok(HandlerConfig::Video { stage: video.stage })
        }
    }
}

/// The output topic the spec sets explicitly, with the field it came from.
fn spec_output_topic(ec: &EventConsumer) -> Option<(String, String)> {
    let spec = &ec.spec;
    let (topic, handler) = match spec.handler {
        Handler::Order => (spec.order.as_ref()?.output_topic.as_ref()?, "order"),
        Handler::Analytics => (spec.analytics.as_ref()?.output_topic.as_ref()?, "analytics"),
        Handler::Video => (spec.video.as_ref()?.output_topic.as_ref()?, "video"),
    };
    Some((topic.0.clone(), format!("spec.{handler}.outputTopic")))
}

fn source_topics(ec: &EventConsumer) -> Result<Vec<String>, ConfigError> {
    let topics = &ec.spec.kafka.topics;
    if topics.is_empty() {
        return Err(ConfigError::invalid(
            "spec.kafka.topics",
            "must list at least one topic",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, topic) in topics.iter().enumerate() {
        check_topic_name(&format!("spec.kafka.topics[{i}]"), topic.as_str())?;
        if !seen.insert(topic.as_str()) {
            return Err(ConfigError::invalid(
                format!("spec.kafka.topics[{i}]"),
                format!("{:?} is listed twice", topic.as_str()),
            ));
        }
    }
    Ok(topics.iter().map(|t| t.0.clone()).collect())
}

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`, and neither `.` nor `..`.
fn check_topic_name(field: &str, topic: &str) -> Result<(), ConfigError> {
    if !topic::is_valid(topic) {
        return Err(ConfigError::invalid(
            field,
            format!(
                "{topic:?} is not a valid Kafka topic name (1 to 249 letters, digits, '.', '_' or '-'; not '.' or '..')"
            ),
        ));
    }
    Ok(())
}

fn kafka_config(
    ec: &EventConsumer,
    namespace: &str,
    topics: Vec<String>,
    secrets: &SecretFacts,
) -> Result<KafkaConfig, ConfigError> {
    let kafka = &ec.spec.kafka;
    let servers_ok = !kafka.bootstrap_servers.is_empty()
        && kafka.bootstrap_servers.split(',').all(|server| {
            server.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && !host.chars().any(char::is_whitespace)
                    && port.parse::<u16>().is_ok()
            })
        });
    if !servers_ok {
        return Err(ConfigError::invalid(
            "spec.kafka.bootstrapServers",
            format!(
                "{:?} is not a comma-separated host:port list",
                kafka.bootstrap_servers
            ),
        ));
    }

    let group_id = match &kafka.consumer_group {
        Some(group) if group.trim().is_empty() => {
            return Err(ConfigError::invalid(
                "spec.kafka.consumerGroup",
                "must not be empty",
            ));
        }
        Some(group) => group.clone(),
        None => format!("{namespace}.{}", ec.name_any()),
    };

    let missing_secret = |field: &str, name: &str| ConfigError::SecretNotFound {
        field: field.to_owned(),
        name: name.to_owned(),
        namespace: namespace.to_owned(),
    };
    let require_key = |field: &str, name: &str, keys: &BTreeSet<String>, key: &str| {
        if keys.contains(key) {
            Ok(())
        } else {
            Err(ConfigError::SecretKeyMissing {
                field: field.to_owned(),
                name: name.to_owned(),
                key: key.to_owned(),
            })
        }
    };

    let sasl = match &kafka.sasl {
        None => None,
        Some(sasl) => {
            let secret = &sasl.secret_ref;
            let keys = secrets
                .keys(&secret.name)
                .ok_or_else(|| missing_secret("spec.kafka.sasl.secretRef.name", &secret.name))?;
            require_key(
                "spec.kafka.sasl.secretRef.usernameKey",
                &secret.name,
                keys,
                &secret.username_key,
            )?;
            require_key(
                "spec.kafka.sasl.secretRef.passwordKey",
                &secret.name,
                keys,
                &secret.password_key,
            )?;
            Some(SaslConfig {
                mechanism: sasl.mechanism,
                secret_name: secret.name.clone(),
                username_key: secret.username_key.clone(),
                password_key: secret.password_key.clone(),
            })
        }
    };

    let tls = match &kafka.tls {
        None => None,
        Some(tls) => {
            let secret = &tls.ca_secret_ref;
            let keys = secrets
                .keys(&secret.name)
                .ok_or_else(|| missing_secret("spec.kafka.tls.caSecretRef.name", &secret.name))?;
            require_key(
                "spec.kafka.tls.caSecretRef.key",
                &secret.name,
                keys,
                &secret.key,
            )?;
            Some(TlsConfig {
                secret_name: secret.name.clone(),
                key: secret.key.clone(),
            })
        }
    };

    Ok(KafkaConfig {
        bootstrap_servers: kafka.bootstrap_servers.clone(),
        topics,
        group_id,
        initial_offset: kafka.initial_offset,
        sasl,
        tls,
    })
}

fn delivery_config(
    ec: &EventConsumer,
    topics: &[String],
    group_id: &str,
) -> Result<DeliveryConfig, ConfigError> {
    let delivery = &ec.spec.delivery;
    let max_attempts = u32::try_from(delivery.max_attempts).unwrap_or(0);
    if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
        return Err(ConfigError::invalid(
            "spec.delivery.maxAttempts",
            format!("must be between 1 and {MAX_ATTEMPTS}"),
        ));
    }
    let backoff = &delivery.backoff;
    let initial = positive_duration("spec.delivery.backoff.initial", &backoff.initial)?;
    let max = positive_duration("spec.delivery.backoff.max", &backoff.max)?;
    if max < initial {
        return Err(ConfigError::invalid(
            "spec.delivery.backoff.max",
            format!(
                "{:?} is shorter than backoff.initial {:?}",
                backoff.max.as_str(),
                backoff.initial.as_str()
            ),
        ));
    }
    if !backoff.multiplier.is_finite()
        || !(MIN_BACKOFF_MULTIPLIER..=MAX_BACKOFF_MULTIPLIER).contains(&backoff.multiplier)
    {
        return Err(ConfigError::invalid(
            "spec.delivery.backoff.multiplier",
            format!("must be between {MIN_BACKOFF_MULTIPLIER} and {MAX_BACKOFF_MULTIPLIER}"),
        ));
    }
    positive_duration("spec.delivery.attemptTimeout", &delivery.attempt_timeout)?;

    let dead_letter_topic = match &delivery.dead_letter_topic {
        Some(topic) => {
            check_topic_name("spec.delivery.deadLetterTopic", topic.as_str())?;
            if topics.iter().any(|t| t == topic.as_str()) {
                return Err(ConfigError::invalid(
                    "spec.delivery.deadLetterTopic",
                    format!(
                        "{:?} is also a source topic in spec.kafka.topics; the consumer would read its own dead letters",
                        topic.as_str()
                    ),
                ));
            }
            topic.0.clone()
        }
        None => {
            // `source_topics` guarantees at least one topic.
            let first = topics.first().map(String::as_str).unwrap_or_default();
            let topic = default_dlq_topic(first);
            if topics.contains(&topic) {
                return Err(ConfigError::invalid(
                    "spec.delivery.deadLetterTopic",
                    format!(
                        "the default {topic:?} is also a source topic in spec.kafka.topics; set another one"
                    ),
                ));
            }
            check_topic_name("spec.delivery.deadLetterTopic", &topic)?;
            topic
        }
    };

    let retry_topics = match delivery.mode {
        DeliveryMode::Blocking => Vec::new(),
        DeliveryMode::RetryTopics => {
            if max_attempts > MAX_RETRY_TOPIC_ATTEMPTS {
                return Err(ConfigError::invalid(
                    "spec.delivery.maxAttempts",
                    format!(
                        "at most {MAX_RETRY_TOPIC_ATTEMPTS} in retryTopics mode (each retry has its own topic)"
                    ),
                ));
            }
            let names = retry_topics(group_id, max_attempts);
            for topic in &names {
                check_topic_name("spec.kafka.consumerGroup", topic).map_err(|_| {
                    ConfigError::invalid(
                        "spec.kafka.consumerGroup",
                        format!(
                            "the retry topic {topic:?} derived from it is not a valid Kafka topic name (at most 249 characters); choose a shorter group"
                        ),
                    )
                })?;
                if topics.contains(topic) || *topic == dead_letter_topic {
                    return Err(ConfigError::invalid(
                        "spec.kafka.consumerGroup",
                        format!(
                            "the retry topic {topic:?} derived from it is also a source or dead-letter topic"
                        ),
                    ));
                }
            }
            names
        }
    };

    Ok(DeliveryConfig {
        mode: delivery.mode,
        retry_topics,
        max_attempts: delivery.max_attempts,
        backoff_initial: backoff.initial.clone(),
        backoff_max: backoff.max.clone(),
        backoff_multiplier: backoff.multiplier,
        attempt_timeout: delivery.attempt_timeout.clone(),
        dead_letter_topic,
    })
}

fn autoscaling_config(
    spec: &crate::crd::AutoscalingSpec,
) -> Result<AutoscalingConfig, ConfigError> {
    if !(0..=1000).contains(&spec.min_replicas) {
        return Err(ConfigError::invalid(
            "spec.autoscaling.minReplicas",
            format!("{} is not between 0 and 1000", spec.min_replicas),
        ));
    }
    if !(1..=1000).contains(&spec.max_replicas) {
        return Err(ConfigError::invalid(
            "spec.autoscaling.maxReplicas",
            format!("{} is not between 1 and 1000", spec.max_replicas),
        ));
    }
    if spec.max_replicas < spec.min_replicas {
        return Err(ConfigError::invalid(
            "spec.autoscaling.maxReplicas",
            format!(
                "{} is less than minReplicas {}",
                spec.max_replicas, spec.min_replicas
            ),
        ));
    }
    if spec.lag_threshold < 1 {
        return Err(ConfigError::invalid(
            "spec.autoscaling.lagThreshold",
            format!("{} is not 1 or more", spec.lag_threshold),
        ));
    }
    if spec.activation_lag < 1 {
        return Err(ConfigError::invalid(
            "spec.autoscaling.activationLag",
            format!("{} is not 1 or more", spec.activation_lag),
        ));
    }
    let cooldown = positive_duration("spec.autoscaling.cooldown", &spec.cooldown)?;
    Ok(AutoscalingConfig {
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        lag_threshold: spec.lag_threshold,
        activation_lag: spec.activation_lag,
        cooldown,
    })
}

/// Parses a duration exactly as the worker will (`humantime`), after checking the restricted
/// syntax the CRD documents.
fn positive_duration(field: &str, value: &HumanDuration) -> Result<Duration, ConfigError> {
    let text = value.as_str();
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let syntax_ok = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && matches!(unit, "ms" | "s" | "m" | "h");
    let parsed = if syntax_ok {
        humantime::parse_duration(text).ok()
    } else {
        None
    };
    match parsed {
        Some(duration) if !duration.is_zero() => Ok(duration),
        Some(_) => Err(ConfigError::invalid(field, "must be greater than zero")),
        None => Err(ConfigError::invalid(
            field,
            format!("{text:?} is not a duration such as 200ms, 5s, 1m or 1h"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        AnalyticsOptions, CaSecretRef, SaslSecretRef, SaslSpec, TlsSpec, TopicName, VideoOptions,
    };
    use crate::test_fixtures::order_consumer;

    fn field_of(result: Result<ValidConsumer, ConfigError>) -> String {
        result
            .expect_err("the spec should be refused")
            .field()
            .to_owned()
    }

    #[test]
    fn a_minimal_order_consumer_resolves_every_default() {
        let valid = validate(&order_consumer(), &SecretFacts::default()).unwrap();
        assert_eq!(valid.output_topic, "order.inventory");
        assert_eq!(valid.kafka.group_id, "shop.inventory");
        assert_eq!(valid.delivery.dead_letter_topic, "order.placed.dlq");
        assert_eq!(valid.delivery.max_attempts, 5);
        assert_eq!(valid.delivery.backoff_initial.as_str(), "200ms");
        assert_eq!(valid.image, None);
        assert_eq!(valid.replicas, 1);
        assert_eq!(valid.owner.kind, "EventConsumer");
        assert_eq!(valid.owner.controller, Some(true));
    }

    #[test]
    fn paused_consumers_want_zero_replicas() {
        let mut ec = order_consumer();
        ec.spec.replicas = 3;
        ec.spec.paused = true;
        let valid = validate(&ec, &SecretFacts::default()).unwrap();
        assert_eq!(valid.replicas, 0);
        assert!(valid.paused);
    }

    #[test]
    fn each_handler_gets_its_contract_default_output_topic() {
        let mut analytics = order_consumer();
        analytics.spec.handler = Handler::Analytics;
        analytics.spec.order = None;
        let valid = validate(&analytics, &SecretFacts::default()).unwrap();
        assert_eq!(valid.output_topic, "analytics.counts");
        assert_eq!(
            valid.handler,
            HandlerConfig::Analytics {
                window: "5s".into()
            }
        );

        let mut video = order_consumer();
        video.spec.handler = Handler::Video;
        video.spec.order = None;
        video.spec.kafka.topics = vec!["video.uploaded".into()];
        video.spec.video = Some(VideoOptions {
            stage: VideoStage::Transcode,
            output_topic: None,
        });
        let valid = validate(&video, &SecretFacts::default()).unwrap();
        assert_eq!(valid.output_topic, "video.transcoded");
    }

    #[test]
    fn options_that_do_not_match_the_handler_are_refused_by_field() {
        let mut ec = order_consumer();
        ec.spec.order = None;
        assert_eq!(
            field_of(validate(&ec, &SecretFacts::default())),
            "spec.order"
        );

        let mut ec = order_consumer();
        ec.spec.analytics = Some(AnalyticsOptions::default());
        assert_eq!(
            field_of(validate(&ec, &SecretFacts::default())),
            "spec.analytics"
        );

        let mut ec = order_consumer();
        ec.spec.handler = Handler::Video;
        assert_eq!(
            field_of(validate(&ec, &SecretFacts::default())),
            "spec.order"
        );
    }

    fn autoscaling(min: i32, max: i32, cooldown: &str) -> crate::crd::AutoscalingSpec {
        crate::crd::AutoscalingSpec {
            min_replicas: min,
            max_replicas: max,
            lag_threshold: 1000,
            activation_lag: 1,
            cooldown: cooldown.into(),
        }
    }

    #[test]
    fn autoscaling_resolves_to_checked_numbers_and_a_cooldown_duration() {
        let mut ec = order_consumer();
        ec.spec.autoscaling = Some(autoscaling(0, 4, "2m"));
        let valid = validate(&ec, &SecretFacts::default()).unwrap();
        let config = valid.autoscaling.unwrap();
        assert_eq!((config.min_replicas, config.max_replicas), (0, 4));
        assert_eq!(config.cooldown, Duration::from_secs(120));
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        type Mutation = fn(&mut EventConsumer);
        let cases: &[(&str, Mutation)] = &[
            ("spec.kafka.topics", |ec| ec.spec.kafka.topics.clear()),
            ("spec.kafka.topics[0]", |ec| {
                ec.spec.kafka.topics = vec!["bad topic".into()]
            }),
            ("spec.kafka.topics[1]", |ec| {
                ec.spec.kafka.topics = vec!["a".into(), "a".into()]
            }),
            ("spec.kafka.topics[0]", |ec| {
                ec.spec.kafka.topics = vec!["..".into()]
            }),
            ("spec.kafka.bootstrapServers", |ec| {
                ec.spec.kafka.bootstrap_servers = "kafka".into()
            }),
            ("spec.kafka.bootstrapServers", |ec| {
                ec.spec.kafka.bootstrap_servers = "kafka:9092,".into()
            }),
            ("spec.kafka.consumerGroup", |ec| {
                ec.spec.kafka.consumer_group = Some(" ".into())
            }),
            ("spec.delivery.maxAttempts", |ec| {
                ec.spec.delivery.max_attempts = 0
            }),
            ("spec.autoscaling.maxReplicas", |ec| {
                ec.spec.autoscaling = Some(autoscaling(3, 2, "5m"))
            }),
            ("spec.autoscaling.cooldown", |ec| {
                ec.spec.autoscaling = Some(autoscaling(0, 2, "0s"))
            }),
            ("spec.autoscaling.lagThreshold", |ec| {
                let mut spec = autoscaling(0, 2, "5m");
                spec.lag_threshold = 0;
                ec.spec.autoscaling = Some(spec)
            }),
            ("spec.delivery.backoff.initial", |ec| {
                ec.spec.delivery.backoff.initial = "0s".into()
            }),
            ("spec.delivery.backoff.initial", |ec| {
                ec.spec.delivery.backoff.initial = "2 seconds".into()
            }),
            ("spec.delivery.backoff.max", |ec| {
                ec.spec.delivery.backoff.max = "100ms".into()
            }),
            ("spec.delivery.backoff.multiplier", |ec| {
                ec.spec.delivery.backoff.multiplier = 0.5
            }),
            ("spec.delivery.attemptTimeout", |ec| {
                ec.spec.delivery.attempt_timeout = "1d".into()
            }),
            ("spec.delivery.deadLetterTopic", |ec| {
                ec.spec.delivery.dead_letter_topic = Some("order.placed".into())
            }),
            ("spec.delivery.deadLetterTopic", |ec| {
                ec.spec.kafka.topics = vec!["a".into(), "a.dlq".into()]
            }),
            ("spec.order.outputTopic", |ec| {
                if let Some(order) = ec.spec.order.as_mut() {
                    order.output_topic = Some("order.placed".into());
                }
            }),
            ("spec.order.outputTopic", |ec| {
                ec.spec.kafka.topics = vec!["order.inventory".into()]
            }),
            ("spec.order.sinkUrl", |ec| {
                if let Some(order) = ec.spec.order.as_mut() {
                    order.sink_url = Some("ftp://example".into());
                }
            }),
            ("spec.replicas", |ec| ec.spec.replicas = -1),
            ("spec.image", |ec| ec.spec.image = Some("has space".into())),
            ("spec.logLevel", |ec| ec.spec.log_level = String::new()),
        ];
        for (field, mutate) in cases {
            let mut ec = order_consumer();
            mutate(&mut ec);
            let err = validate(&ec, &SecretFacts::default())
                .expect_err(&format!("a bad {field} should be refused"));
            assert_eq!(err.field(), *field, "{err}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }

    #[test]
    fn a_missing_sasl_secret_is_reported_with_its_name_and_namespace() {
        let mut ec = order_consumer();
        ec.spec.kafka.sasl = Some(SaslSpec {
            mechanism: SaslMechanism::ScramSha512,
            secret_ref: SaslSecretRef {
                name: "kafka-creds".into(),
                username_key: "username".into(),
                password_key: "password".into(),
            },
        });
        let err = validate(&ec, &SecretFacts::default()).unwrap_err();
        assert_eq!(err.reason(), "SecretNotFound");
        assert_eq!(
            err.to_string(),
            "spec.kafka.sasl.secretRef.name: Secret \"kafka-creds\" not found in namespace \"shop\"; create it or fix the reference"
        );
        assert!(err.depends_on_other_objects());

        let facts = SecretFacts::default().with_secret("kafka-creds", ["username"]);
        let err = validate(&ec, &facts).unwrap_err();
        assert_eq!(err.reason(), "SecretKeyMissing");
        assert_eq!(err.field(), "spec.kafka.sasl.secretRef.passwordKey");

        let facts = SecretFacts::default().with_secret("kafka-creds", ["username", "password"]);
        let valid = validate(&ec, &facts).unwrap();
        assert_eq!(
            valid.kafka.sasl.map(|s| s.secret_name),
            Some("kafka-creds".to_owned())
        );
    }

    #[test]
    fn a_tls_ca_key_missing_from_its_secret_names_the_key_field() {
        let mut ec = order_consumer();
        ec.spec.kafka.tls = Some(TlsSpec {
            ca_secret_ref: CaSecretRef {
                name: "kafka-ca".into(),
                key: "ca.crt".into(),
            },
        });
        let facts = SecretFacts::default().with_secret("kafka-ca", ["tls.crt"]);
        let err = validate(&ec, &facts).unwrap_err();
        assert_eq!(err.field(), "spec.kafka.tls.caSecretRef.key");
        assert_eq!(
            referenced_secrets(&ec),
            BTreeSet::from(["kafka-ca".to_owned()])
        );
    }

    #[test]
    fn explicit_topics_and_group_win_over_defaults() {
        let mut ec = order_consumer();
        ec.spec.kafka.consumer_group = Some("legacy-group".into());
        ec.spec.delivery.dead_letter_topic = Some(TopicName::from("orders.failed"));
        if let Some(order) = ec.spec.order.as_mut() {
            order.output_topic = Some("inventory.reserved".into());
        }
        let valid = validate(&ec, &SecretFacts::default()).unwrap();
        assert_eq!(valid.kafka.group_id, "legacy-group");
        assert_eq!(valid.delivery.dead_letter_topic, "orders.failed");
        assert_eq!(valid.output_topic, "inventory.reserved");
    }
}
