//! Kafka connection settings shared by every subcommand that talks to brokers.
//!
//! The operator feeds the security settings from Secrets as environment variables, so
//! they are read through clap's `env` support like every other flag. This module turns
//! them into an rdkafka [`ClientConfig`] and refuses contradictory combinations up front
//! (a SASL user without a mechanism, a CA file that cannot be read) instead of letting
//! librdkafka fail later with a less helpful message.

use std::path::PathBuf;

use clap::Args;
use eventconsumer_contract::{SaslMechanism, env};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Where the brokers are and how to authenticate to them.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Comma-separated list of bootstrap brokers (host:port).
    #[arg(long, env = env::BOOTSTRAP_SERVERS, default_value = "127.0.0.1:9092")]
    pub bootstrap_servers: String,

    /// SASL mechanism; unset means no SASL authentication.
    #[arg(long, env = env::SASL_MECHANISM, value_enum)]
    pub sasl_mechanism: Option<SaslMechanism>,

    /// SASL username (required with --sasl-mechanism).
    #[arg(long, env = env::SASL_USERNAME)]
    pub sasl_username: Option<String>,

    /// SASL password (required with --sasl-mechanism).
    #[arg(long, env = env::SASL_PASSWORD, hide_env_values = true)]
    pub sasl_password: Option<String>,

    /// PEM file with the CA that signed the brokers' certificates; set means TLS. The
    /// brokers' host names are verified against their certificates.
    #[arg(long, env = env::TLS_CA_FILE)]
    pub tls_ca_file: Option<PathBuf>,

    /// PEM client certificate for mutual TLS (needs --tls-key-file); set means TLS.
    #[arg(long, env = env::TLS_CERT_FILE)]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of --tls-cert-file.
    #[arg(long, env = env::TLS_KEY_FILE)]
    pub tls_key_file: Option<PathBuf>,
}

/// A Kafka setting that cannot work, named after the flag and variable that carry it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KafkaConfigError {
    #[error(
        "--bootstrap-servers ({}) is empty: give at least one host:port",
        env::BOOTSTRAP_SERVERS
    )]
    NoBootstrapServers,
    #[error(
        "--sasl-mechanism ({}) needs --sasl-username ({}) and --sasl-password ({})",
        env::SASL_MECHANISM,
        env::SASL_USERNAME,
        env::SASL_PASSWORD
    )]
    MissingSaslCredentials,
    #[error(
        "--sasl-username/--sasl-password ({}/{}) are set but --sasl-mechanism ({}) is not",
        env::SASL_USERNAME,
        env::SASL_PASSWORD,
        env::SASL_MECHANISM
    )]
    CredentialsWithoutMechanism,
    #[error("--tls-ca-file ({}) {path}: {reason}", env::TLS_CA_FILE)]
    UnreadableCaFile { path: String, reason: String },
    #[error(
        "--tls-cert-file ({}) and --tls-key-file ({}) go together: give both or neither",
        env::TLS_CERT_FILE,
        env::TLS_KEY_FILE
    )]
    HalfAClientCertificate,
    #[error("{flag} {path}: {reason}")]
    UnreadableClientFile {
        flag: &'static str,
        path: String,
        reason: String,
    },
}

impl KafkaArgs {
    /// Settings for a client at `bootstrap` with no security, as tests and the demo use.
    pub fn plaintext(bootstrap: impl Into<String>) -> Self {
        KafkaArgs {
            bootstrap_servers: bootstrap.into(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }

    /// The base client configuration every consumer and producer starts from.
    pub fn client_config(&self) -> Result<ClientConfig, KafkaConfigError> {
        let bootstrap = self.bootstrap_servers.trim();
        if bootstrap.split(',').all(|s| s.trim().is_empty()) {
            return Err(KafkaConfigError::NoBootstrapServers);
        }
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);

        let ca = match &self.tls_ca_file {
            Some(path) => {
                std::fs::File::open(path).map_err(|e| KafkaConfigError::UnreadableCaFile {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                config.set("ssl.ca.location", path.display().to_string());
                true
            }
            None => false,
        };
        let client_cert = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => {
                for (flag, path, setting) in [
                    ("--tls-cert-file", cert, "ssl.certificate.location"),
                    ("--tls-key-file", key, "ssl.key.location"),
                ] {
                    std::fs::File::open(path).map_err(|e| {
                        KafkaConfigError::UnreadableClientFile {
                            flag,
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        }
                    })?;
                    config.set(setting, path.display().to_string());
                }
                true
            }
            (None, None) => false,
            _ => return Err(KafkaConfigError::HalfAClientCertificate),
        };
        let tls = ca || client_cert;
        // librdkafka's default, stated because it is what makes a CA worth having: the
        // broker's certificate must name the host the client connected to.
        if tls {
            config.set("ssl.endpoint.identification.algorithm", "https");
        }

        let sasl = match (
            self.sasl_mechanism,
            &self.sasl_username,
            &self.sasl_password,
        ) {
            (Some(mechanism), Some(user), Some(password)) => {
                config
                    .set("sasl.mechanism", mechanism.as_str())
                    .set("sasl.username", user)
                    .set("sasl.password", password);
                true
            }
            (Some(_), _, _) => return Err(KafkaConfigError::MissingSaslCredentials),
            (None, None, None) => false,
            (None, _, _) => return Err(KafkaConfigError::CredentialsWithoutMechanism),
        };

        let protocol = match (sasl, tls) {
            (false, false) => "plaintext",
            (false, true) => "ssl",
            (true, false) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        Ok(config)
    }
}

/// What to do about a Kafka error that retrying will not fix: the brokers refused this
/// client's credentials, its TLS, or an operation its principal has no ACL for. `None` for
/// every other error (those pass with time: a broker restarting, a leader moving).
///
/// The worker logs these at error level with this hint beside librdkafka's own reason, and
/// stays not ready: it never joins its group, so it consumes and commits nothing. `reason` is
/// librdkafka's text beside the error, where it has one: a broker rejecting a client
/// certificate only shows as a transport failure whose reason names the TLS alert.
pub fn refusal_hint(error: &KafkaError, reason: &str) -> Option<&'static str> {
    use RDKafkaErrorCode as C;
    let code = error.rdkafka_error_code()?;
    let tls_alert = code == C::BrokerTransportFailure
        && eventconsumer_contract::transport_failure_names_tls(reason);
    Some(match code {
        _ if tls_alert => TLS_HINT,
        C::Authentication | C::SaslAuthenticationFailed => {
            "the brokers refused this client's credentials: check the SASL mechanism, username \
             and password (spec.kafka.sasl and its Secret) or the client certificate"
        }
        C::SSL => TLS_HINT,
        C::TopicAuthorizationFailed => {
            "an ACL is missing: this principal may not use a topic (Read on the source and retry \
             topics, Write on the output, dead-letter and retry topics; README, Kafka ACLs)"
        }
        C::GroupAuthorizationFailed => {
            "an ACL is missing: this principal needs Read on its consumer group \
             (README, Kafka ACLs)"
        }
        C::ClusterAuthorizationFailed => {
            "an ACL is missing: this principal may not perform a cluster operation \
             (README, Kafka ACLs)"
        }
        C::TransactionalIdAuthorizationFailed => {
            "an ACL is missing: exactlyOnce needs Write on the transactional ids \
             <consumer group>.tx.* (prefixed; README, Kafka ACLs)"
        }
        _ => return None,
    })
}

const TLS_HINT: &str = "TLS with the brokers failed: the CA (spec.kafka.tls.caSecretRef) must \
     have signed the brokers' certificates, which must name the host in bootstrapServers, and a \
     client certificate must be valid and signed by a CA the brokers trust";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_settings_use_the_plaintext_protocol() {
        let config = KafkaArgs::plaintext("127.0.0.1:9092")
            .client_config()
            .unwrap();
        assert_eq!(config.get("security.protocol"), Some("plaintext"));
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    }

    #[test]
    fn sasl_with_a_ca_file_uses_sasl_ssl() {
        let ca = std::env::temp_dir().join(format!("ec-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, "not checked here").unwrap();
        let mut args = KafkaArgs::plaintext("b:9093");
        args.sasl_mechanism = Some(SaslMechanism::ScramSha512);
        args.sasl_username = Some("u".into());
        args.sasl_password = Some("p".into());
        args.tls_ca_file = Some(ca.clone());
        let config = args.client_config().unwrap();
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        std::fs::remove_file(ca).unwrap();
    }

    #[test]
    fn a_mechanism_without_credentials_is_refused() {
        let mut args = KafkaArgs::plaintext("b:9092");
        args.sasl_mechanism = Some(SaslMechanism::Plain);
        args.sasl_username = Some("u".into());
        assert_eq!(
            args.client_config().unwrap_err(),
            KafkaConfigError::MissingSaslCredentials
        );
    }

    #[test]
    fn credentials_without_a_mechanism_are_refused() {
        let mut args = KafkaArgs::plaintext("b:9092");
        args.sasl_password = Some("p".into());
        assert_eq!(
            args.client_config().unwrap_err(),
            KafkaConfigError::CredentialsWithoutMechanism
        );
    }

    #[test]
    fn a_missing_ca_file_names_the_flag_and_path() {
        let mut args = KafkaArgs::plaintext("b:9092");
        args.tls_ca_file = Some("/nonexistent/ca.pem".into());
        let message = args.client_config().unwrap_err().to_string();
        assert!(message.contains("--tls-ca-file"), "{message}");
        assert!(message.contains("/nonexistent/ca.pem"), "{message}");
    }

    #[test]
    fn a_client_certificate_uses_ssl_and_needs_its_key() {
        let dir = std::env::temp_dir().join(format!("ec-mtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, "c").unwrap();
        std::fs::write(&key, "k").unwrap();
        let mut args = KafkaArgs::plaintext("b:9097");
        args.tls_cert_file = Some(cert.clone());
        assert_eq!(
            args.client_config().unwrap_err(),
            KafkaConfigError::HalfAClientCertificate
        );
        args.tls_key_file = Some(key.clone());
        let config = args.client_config().unwrap();
        assert_eq!(config.get("security.protocol"), Some("ssl"));
        assert_eq!(
            config.get("ssl.key.location"),
            Some(key.display().to_string().as_str())
        );
        assert_eq!(
            config.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        args.tls_key_file = Some(dir.join("missing.key"));
        let message = args.client_config().unwrap_err().to_string();
        assert!(message.contains("--tls-key-file"), "{message}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refusals_get_a_hint_and_passing_trouble_does_not() {
        let auth = KafkaError::Global(RDKafkaErrorCode::Authentication);
        assert!(refusal_hint(&auth, "").is_some_and(|h| h.contains("credentials")));
        let acl = KafkaError::MessageConsumption(RDKafkaErrorCode::GroupAuthorizationFailed);
        assert!(refusal_hint(&acl, "").is_some_and(|h| h.contains("Read on its consumer group")));
        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(refusal_hint(&down, ""), None);
        let transport = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        assert_eq!(refusal_hint(&transport, "Connection refused"), None);
        assert!(
            refusal_hint(&transport, "SSL routines::sslv3 alert bad certificate")
                .is_some_and(|h| h.contains("TLS"))
        );
    }

    #[test]
    fn empty_bootstrap_servers_are_refused() {
        assert_eq!(
            KafkaArgs::plaintext(" , ").client_config().unwrap_err(),
            KafkaConfigError::NoBootstrapServers
        );
    }
}
