//! Where and how the workers reach Kafka: brokers, topics, group, and the SASL and TLS Secrets
//! the pods mount. The operator never reads the Secrets' values; admission checks only that
//! each reference is a valid Secret name and key.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::TopicName;
use super::defaults;
use eventconsumer_contract::{InitialOffset, SaslMechanism, topic};

/// Highest TCP port.
pub const MAX_PORT: u32 = 65535;
/// `host:port[,host:port…]`; the port's range is a CEL rule beside it.
pub const BOOTSTRAP_SERVERS_PATTERN: &str = r"^[^,\s]+:[0-9]{1,5}(,[^,\s]+:[0-9]{1,5})*$";
/// A Secret's name is a DNS subdomain (RFC 1123), as the API server requires of every Secret.
const SECRET_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$";
/// Longest DNS subdomain.
const SECRET_NAME_MAX_LENGTH: usize = 253;
/// The characters the API server allows in a Secret's data keys.
const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// Longest Secret data key.
const SECRET_KEY_MAX_LENGTH: usize = 253;

/// Where and how the workers consume.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list of brokers to bootstrap from, such as
    /// `kafka-0.kafka:9092,kafka-1.kafka:9092`. Ports are 1 to 65535.
    #[schemars(length(min = 1, max = 1024), pattern(BOOTSTRAP_SERVERS_PATTERN))]
    // The guard leaves a malformed list to the pattern's error; `int()` then always parses.
    #[x_kube(validation = Rule::new(format!(
            "!self.matches('{pattern}') || self.split(',').all(s, \
             int(s.substring(s.lastIndexOf(':') + 1)) >= 1 \
             && int(s.substring(s.lastIndexOf(':') + 1)) <= {MAX_PORT})",
            pattern = BOOTSTRAP_SERVERS_PATTERN.replace('\\', "\\\\")
        ))
        .message(kube::core::Message::Message(format!(
            "every port must be between 1 and {MAX_PORT}, such as kafka:9092"
        ))))]
    pub bootstrap_servers: String,

    /// Topics to consume, at least one, without duplicates. The default dead-letter topic is
    /// derived from the first one.
    #[schemars(length(min = 1, max = 64), extend("x-kubernetes-list-type" = "set"))]
    pub topics: Vec<TopicName>,

    /// Kafka consumer group id. Defaults to `<namespace>.<name>` of this EventConsumer. Two
    /// EventConsumers that share a group split the partitions between them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = topic::MAX_LENGTH), pattern(topic::PATTERN))]
    pub consumer_group: Option<String>,

    /// Where a consumer group without committed offsets starts: `earliest` (the oldest
    /// retained message) or `latest` (only messages produced from now on).
    #[serde(default)]
    pub initial_offset: InitialOffset,

    /// SASL authentication. Unset means no SASL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslSpec>,

    /// TLS to the brokers, verified with a CA certificate from a Secret. Unset means plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// SASL authentication to the brokers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SaslSpec {
    /// SASL mechanism: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`. Use it with `tls`: PLAIN
    /// sends the password in clear text.
    pub mechanism: SaslMechanism,

    /// Secret in this namespace holding the username and password. The pods read it through
    /// `secretKeyRef`; the operator never copies the values.
    pub secret_ref: SaslSecretRef,
}

/// A Secret with SASL credentials.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SaslSecretRef {
    /// Name of the Secret, in the EventConsumer's namespace.
    #[schemars(length(min = 1, max = SECRET_NAME_MAX_LENGTH), pattern(SECRET_NAME_PATTERN))]
    pub name: String,

    /// Key of the username in the Secret.
    #[serde(default = "defaults::username_key")]
    #[schemars(length(min = 1, max = SECRET_KEY_MAX_LENGTH), pattern(SECRET_KEY_PATTERN))]
    pub username_key: String,

    /// Key of the password in the Secret.
    #[serde(default = "defaults::password_key")]
    #[schemars(length(min = 1, max = SECRET_KEY_MAX_LENGTH), pattern(SECRET_KEY_PATTERN))]
    pub password_key: String,
}

/// TLS to the brokers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Secret holding the PEM CA bundle the brokers' certificates are verified with. It is
    /// mounted read-only into the pods; the operator never copies it. The brokers'
    /// certificates must name the hosts in `bootstrapServers`.
    pub ca_secret_ref: CaSecretRef,

    /// Client certificate for mutual TLS: a Secret holding the PEM certificate (chain) and its
    /// private key, by default a `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`). For a
    /// Strimzi KafkaUser's Secret set `certKey: user.crt` and `keyKey: user.key`. Mounted
    /// read-only into the pods; unset means no client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<ClientCertSecretRef>,
}

/// A Secret holding a client certificate and its private key.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertSecretRef {
    /// Name of the Secret, in the EventConsumer's namespace.
    #[schemars(length(min = 1, max = SECRET_NAME_MAX_LENGTH), pattern(SECRET_NAME_PATTERN))]
    pub name: String,

    /// Key of the PEM certificate (chain) in the Secret.
    #[serde(default = "defaults::client_cert_key")]
    #[schemars(length(min = 1, max = SECRET_KEY_MAX_LENGTH), pattern(SECRET_KEY_PATTERN))]
    pub cert_key: String,

    /// Key of the certificate's PEM private key in the Secret.
    #[serde(default = "defaults::client_key_key")]
    #[schemars(length(min = 1, max = SECRET_KEY_MAX_LENGTH), pattern(SECRET_KEY_PATTERN))]
    pub key_key: String,
}

/// A Secret key holding a PEM CA bundle.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretRef {
    /// Name of the Secret, in the EventConsumer's namespace.
    #[schemars(length(min = 1, max = SECRET_NAME_MAX_LENGTH), pattern(SECRET_NAME_PATTERN))]
    pub name: String,

    /// Key of the CA bundle in the Secret.
    #[serde(default = "defaults::ca_key")]
    #[schemars(length(min = 1, max = SECRET_KEY_MAX_LENGTH), pattern(SECRET_KEY_PATTERN))]
    pub key: String,
}
