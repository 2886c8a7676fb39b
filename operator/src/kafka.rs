//! How the operator itself talks to an EventConsumer's Kafka cluster: the client settings
//! (bootstrap servers, SASL and TLS) resolved from the validated spec and the Secrets it names.
//!
//! The operator reads Kafka for lag, dead-letter counts and redrives, and writes it for
//! redrives and retry topics. It uses the same credentials as the workers: the values are
//! read from the Secrets at the moment a client is built and live only in that client's
//! configuration — never in status, events, logs or metrics.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Why the settings for a Kafka client could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("reading Secret {namespace}/{name}: {source}")]
    ReadSecret {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {namespace}/{name} not found")]
    MissingSecret { namespace: String, name: String },
    #[error("Secret {namespace}/{name} has no key {key:?}")]
    MissingKey {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("Secret {namespace}/{name} key {key:?} is not UTF-8 text")]
    NotText {
        namespace: String,
        name: String,
        key: String,
    },
}

/// Everything needed to connect to one EventConsumer's brokers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KafkaAccess {
    pub bootstrap_servers: String,
    /// (mechanism, username, password).
    sasl: Option<(String, String, String)>,
    /// PEM CA bundle.
    ca_pem: Option<String>,
    /// PEM client certificate (chain) and private key, for mutual TLS.
    client_cert: Option<(String, String)>,
}

impl std::fmt::Debug for KafkaAccess {
    // Never print credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAccess")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("sasl", &self.sasl.as_ref().map(|(m, _, _)| m))
            .field("tls", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

impl KafkaAccess {
    /// Plaintext access without credentials (tests, and specs without SASL/TLS).
    pub fn plaintext(bootstrap_servers: &str) -> KafkaAccess {
        KafkaAccess {
            bootstrap_servers: bootstrap_servers.to_owned(),
            sasl: None,
            ca_pem: None,
            client_cert: None,
        }
    }

    /// Reads the credentials `kafka` refers to from Secrets in `namespace`.
    pub async fn resolve(
        client: &Client,
        namespace: &str,
        kafka: &KafkaConfig,
    ) -> Result<KafkaAccess, AccessError> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let sasl = match &kafka.sasl {
            Some(sasl) => {
                let secret = get(&api, namespace, &sasl.secret_name).await?;
                let username = text(&secret, namespace, &sasl.secret_name, &sasl.username_key)?;
                let password = text(&secret, namespace, &sasl.secret_name, &sasl.password_key)?;
                Some((sasl.mechanism.as_str().to_owned(), username, password))
            }
            None => None,
        };
        let ca_pem = match &kafka.tls {
            Some(tls) => {
                let secret = get(&api, namespace, &tls.secret_name).await?;
                Some(text(&secret, namespace, &tls.secret_name, &tls.key)?)
            }
            None => None,
        };
        let client_cert = match kafka.tls.as_ref().and_then(|t| t.client_cert.as_ref()) {
            Some(cert) => {
                let secret = get(&api, namespace, &cert.secret_name).await?;
                Some((
                    text(&secret, namespace, &cert.secret_name, &cert.cert_key)?,
                    text(&secret, namespace, &cert.secret_name, &cert.key_key)?,
                ))
            }
            None => None,
        };
        Ok(KafkaAccess {
            bootstrap_servers: kafka.bootstrap_servers.clone(),
            sasl,
            ca_pem,
            client_cert,
        })
    }

    /// The base configuration every operator-side client starts from.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        if let Some((mechanism, username, password)) = &self.sasl {
            config
                .set("sasl.mechanism", mechanism)
                .set("sasl.username", username)
                .set("sasl.password", password);
        }
        if let Some(pem) = &self.ca_pem {
            config.set("ssl.ca.pem", pem);
        }
        if let Some((cert, key)) = &self.client_cert {
            config
                .set("ssl.certificate.pem", cert)
                .set("ssl.key.pem", key);
        }
        let tls = self.ca_pem.is_some() || self.client_cert.is_some();
        if tls {
            // librdkafka's default, stated: the brokers' certificates must name their hosts.
            config.set("ssl.endpoint.identification.algorithm", "https");
        }
        let protocol = match (self.sasl.is_some(), tls) {
            (false, false) => "plaintext",
            (false, true) => "ssl",
            (true, false) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        config
    }
}

async fn get(api: &Api<Secret>, namespace: &str, name: &str) -> Result<Secret, AccessError> {
    api.get_opt(name)
        .await
        .map_err(|source| AccessError::ReadSecret {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })?
        .ok_or_else(|| AccessError::MissingSecret {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
}

fn text(secret: &Secret, namespace: &str, name: &str, key: &str) -> Result<String, AccessError> {
    let value: Option<&ByteString> = secret.data.as_ref().and_then(|d| d.get(key));
    let bytes = match value {
        Some(v) => v.0.clone(),
        None => secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|s| s.as_bytes().to_vec())
            .ok_or_else(|| AccessError::MissingKey {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                key: key.to_owned(),
            })?,
    };
    String::from_utf8(bytes).map_err(|_| AccessError::NotText {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        key: key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_access_uses_the_plaintext_protocol() {
        let config = KafkaAccess::plaintext("k:9092").client_config();
        assert_eq!(config.get("security.protocol"), Some("plaintext"));
        assert_eq!(config.get("bootstrap.servers"), Some("k:9092"));
    }

    #[test]
    fn sasl_with_a_ca_uses_sasl_ssl_and_debug_output_hides_the_password() {
        let access = KafkaAccess {
            bootstrap_servers: "k:9093".into(),
            sasl: Some(("SCRAM-SHA-512".into(), "user".into(), "s3cret".into())),
            ca_pem: Some("-----BEGIN CERTIFICATE-----".into()),
            client_cert: None,
        };
        let config = access.client_config();
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert!(config.get("ssl.ca.pem").is_some());
        let shown = format!("{access:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("user"),
            "{shown}"
        );
    }

    #[test]
    fn a_client_certificate_uses_ssl_with_host_names_verified_and_debug_hides_the_key() {
        let access = KafkaAccess {
            bootstrap_servers: "k:9097".into(),
            sasl: None,
            ca_pem: Some("ca".into()),
            client_cert: Some(("cert".into(), "PRIVATE-KEY-TEXT".into())),
        };
        let config = access.client_config();
        assert_eq!(config.get("security.protocol"), Some("ssl"));
        assert_eq!(config.get("ssl.key.pem"), Some("PRIVATE-KEY-TEXT"));
        assert_eq!(
            config.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        assert!(!format!("{access:?}").contains("PRIVATE-KEY-TEXT"));
    }
}
