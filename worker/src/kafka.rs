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

    /// PEM file with the CA that signed the brokers' certificates; set means TLS.
    #[arg(long, env = env::TLS_CA_FILE)]
    pub tls_ca_file: Option<PathBuf>,
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

        let tls = match &self.tls_ca_file {
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
    fn empty_bootstrap_servers_are_refused() {
        assert_eq!(
            KafkaArgs::plaintext(" , ").client_config().unwrap_err(),
            KafkaConfigError::NoBootstrapServers
        );
    }
}
