//! Validation: an `EventConsumer`, plus the facts the reconciler looked up about the objects it
//! references, becomes a [`ValidConsumer`] — or a [`ConfigError`] that names the offending field.
//!
//! The API server already refuses most bad specs at admission (see [`crate::crd`]); this module
//! checks the same rules again because the CRD installed in a cluster may be older than the
//! operator, and adds the checks admission cannot make (referenced Secrets and their keys,
//! defaults that collide). Every default is resolved here, so the Deployment builder receives
//! explicit values and the worker's own defaults never decide behaviour silently.

mod autoscaling;
mod delivery;
mod handler;
mod kafka;
mod pod;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eventconsumer_contract::{OutputOf, default_output_topic, topic};
use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Secret, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::crd::{
    DeliveryMode, EventConsumer, Handler, HumanDuration, InitialOffset, MAX_DURATION_DIGITS,
    MAX_NAME_LENGTH, MAX_PORT, OrderAction, SaslMechanism, VideoStage,
};
use autoscaling::autoscaling_config;
use delivery::delivery_config;
use handler::{handler_config, spec_output_topic};
use kafka::{kafka_config, source_topics};

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
/// exists, the names of its keys and its `resourceVersion`. Values are never read into this
/// struct.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretFacts {
    keys_by_secret: BTreeMap<String, BTreeSet<String>>,
    version_by_secret: BTreeMap<String, String>,
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
        if let Some(version) = &secret.metadata.resource_version {
            self.version_by_secret
                .insert(secret.name_any(), version.clone());
        }
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

    /// `name@resourceVersion` of each of `names` that exists, comma-separated and sorted: it
    /// changes when a Secret is rotated, and says nothing about the values.
    fn versions<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> String {
        let names: BTreeSet<&str> = names.into_iter().collect();
        names
            .into_iter()
            .filter_map(|n| Some(format!("{n}@{}", self.version_by_secret.get(n)?)))
            .collect::<Vec<_>>()
            .join(",")
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
        .chain(
            kafka
                .tls
                .iter()
                .filter_map(|tls| tls.client_cert_secret_ref.as_ref())
                .map(|cert| cert.name.clone()),
        )
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
    /// `name@resourceVersion` of the Secrets above; the pods carry it, so that rotating a
    /// Secret rolls them (environment variables from Secrets never change in a running pod).
    pub secrets_version: String,
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
    pub client_cert: Option<ClientCertConfig>,
}

/// A client certificate for mutual TLS: the Secret and its two keys.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientCertConfig {
    pub secret_name: String,
    pub cert_key: String,
    pub key_key: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryConfig {
    pub mode: DeliveryMode,
    pub ordering: eventconsumer_contract::Ordering,
    pub max_in_flight: u32,
    pub semantics: eventconsumer_contract::Semantics,
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
    if name.len() > MAX_NAME_LENGTH {
        return Err(ConfigError::invalid(
            "metadata.name",
            format!(
                "must be at most {MAX_NAME_LENGTH} characters, because it becomes the app.kubernetes.io/instance label of the worker pods; choose a shorter name"
            ),
        ));
    }
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
            let of = match handler_config {
                HandlerConfig::Order { action, .. } => OutputOf::Order(*action),
                HandlerConfig::Video { stage } => OutputOf::Video(*stage),
                HandlerConfig::Analytics { .. } => OutputOf::Analytics,
            };
            let handler_name = handler_config.handler().as_str();
            (
                default_output_topic(of),
                format!("spec.{handler_name}.outputTopic"),
            )
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
    let delivery = delivery_config(ec, &kafka.topics, &kafka.group_id, &output_topic)?;

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
    if let Some(resources) = &spec.resources {
        check_quantities("limits", resources.limits.as_ref())?;
        check_quantities("requests", resources.requests.as_ref())?;
    }
    pod::check_node_selector(spec.node_selector.as_ref())?;
    pod::check_tolerations(spec.tolerations.as_deref())?;
    pod::check_log_level(&spec.log_level)?;

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

/// Every quantity of `spec.resources.<kind>` parses. The API server would refuse the
/// Deployment otherwise, with an internal error (500) that names no EventConsumer field; the
/// CRD cannot check quantities itself within CEL's cost budget.
fn check_quantities(
    kind: &str,
    quantities: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Result<(), ConfigError> {
    for (name, quantity) in quantities.into_iter().flatten() {
        if kube_quantity::ParsedQuantity::try_from(quantity.0.as_str()).is_err() {
            return Err(ConfigError::invalid(
                format!("spec.resources.{kind}.{name}"),
                format!(
                    "{:?} is not a quantity such as 250m, 1 or 128Mi",
                    quantity.0
                ),
            ));
        }
    }
    Ok(())
}

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`, and neither `.` nor `..`.
pub(super) fn check_topic_name(field: &str, topic: &str) -> Result<(), ConfigError> {
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

/// Parses a duration exactly as the worker will (`humantime`), after checking the restricted
/// syntax the CRD documents.
pub(super) fn positive_duration(
    field: &str,
    value: &HumanDuration,
) -> Result<Duration, ConfigError> {
    let text = value.as_str();
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let syntax_ok = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && matches!(unit, "ms" | "s" | "m" | "h");
    if syntax_ok && digits.len() > MAX_DURATION_DIGITS {
        return Err(ConfigError::invalid(
            field,
            format!(
                "{text:?} has more than {MAX_DURATION_DIGITS} digits before the unit (999999h is the longest duration)"
            ),
        ));
    }
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
