//! The local broker's secured listeners (`hack/kafka-security.sh`), as `.dev/env` exports them:
//! where each listens, the users and certificates, and client settings for a test's own
//! clients. Behind the `kafka` feature.

use std::path::PathBuf;

use rdkafka::ClientConfig;

/// One of the broker's secured listeners; each speaks exactly one mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Listener {
    /// SASL_SSL with SCRAM-SHA-512.
    Scram512,
    /// SASL_SSL with SCRAM-SHA-256.
    Scram256,
    /// SASL_SSL with PLAIN.
    SaslPlain,
    /// SSL with a client certificate required (mutual TLS).
    Mtls,
}

/// A principal of the secured listeners: its SASL user and its certificate's CN are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    /// A super user.
    Admin,
    /// No ACL until a test grants it some.
    Consumer,
}

impl Listener {
    pub const ALL: [Listener; 4] = [
        Listener::Scram512,
        Listener::Scram256,
        Listener::SaslPlain,
        Listener::Mtls,
    ];

    /// A short lowercase name, for resource names and messages.
    pub fn slug(self) -> &'static str {
        match self {
            Listener::Scram512 => "scram512",
            Listener::Scram256 => "scram256",
            Listener::SaslPlain => "plain",
            Listener::Mtls => "mtls",
        }
    }

    /// `host:port` of the listener (its host is the name in the broker's certificate).
    pub fn bootstrap(self) -> String {
        stack_var(match self {
            Listener::Scram512 => "EC_KAFKA_SCRAM512_BOOTSTRAP",
            Listener::Scram256 => "EC_KAFKA_SCRAM256_BOOTSTRAP",
            Listener::SaslPlain => "EC_KAFKA_SASL_PLAIN_BOOTSTRAP",
            Listener::Mtls => "EC_KAFKA_MTLS_BOOTSTRAP",
        })
    }

    /// The SASL mechanism, as `spec.kafka.sasl.mechanism` spells it; `None` for mTLS.
    pub fn mechanism(self) -> Option<&'static str> {
        match self {
            Listener::Scram512 => Some("SCRAM-SHA-512"),
            Listener::Scram256 => Some("SCRAM-SHA-256"),
            Listener::SaslPlain => Some("PLAIN"),
            Listener::Mtls => None,
        }
    }

    /// Settings for a test's own client connecting here as `user`.
    pub fn client_config(self, user: User) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("ssl.ca.location", pki_file("ca.crt").display().to_string());
        match self.mechanism() {
            Some(mechanism) => {
                config
                    .set("security.protocol", "sasl_ssl")
                    .set("sasl.mechanism", mechanism)
                    .set("sasl.username", user.name())
                    .set("sasl.password", user.password());
            }
            None => {
                config
                    .set("security.protocol", "ssl")
                    .set(
                        "ssl.certificate.location",
                        pki_file(&format!("{}.crt", user.name()))
                            .display()
                            .to_string(),
                    )
                    .set(
                        "ssl.key.location",
                        pki_file(&format!("{}.key", user.name()))
                            .display()
                            .to_string(),
                    );
            }
        }
        config
    }
}

impl User {
    /// The SASL username and certificate CN.
    pub fn name(self) -> &'static str {
        match self {
            User::Admin => "admin",
            User::Consumer => "consumer",
        }
    }

    /// `User:<name>`, the principal ACLs name.
    pub fn principal(self) -> String {
        format!("User:{}", self.name())
    }

    /// The SASL password of this user (SCRAM and PLAIN alike).
    pub fn password(self) -> String {
        stack_var(match self {
            User::Admin => "EC_KAFKA_ADMIN_PASSWORD",
            User::Consumer => "EC_KAFKA_CONSUMER_PASSWORD",
        })
    }
}

/// A file of the stack's Kafka PKI: `ca.crt`, `consumer.crt`/`.key`, `admin.crt`/`.key`,
/// `consumer-expired.crt`/`.key` (expired in 2021), `rogue-ca.crt` and
/// `rogue-consumer.crt`/`.key` (a CA the broker does not trust, and its client certificate).
///
/// # Panics
/// When the stack's environment is not loaded, or the file does not exist.
pub fn pki_file(name: &str) -> PathBuf {
    let path = PathBuf::from(stack_var("EC_KAFKA_PKI_DIR")).join(name);
    assert!(
        path.is_file(),
        "{} does not exist: the local stack's Kafka PKI is incomplete; `make dev-down ARGS=--purge` \
         then `make dev-up` makes it anew",
        path.display()
    );
    path
}

/// The contents of [`pki_file`] `name`.
pub fn pki_text(name: &str) -> String {
    let path = pki_file(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn stack_var(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{name} is not set: the local stack's secured Kafka listeners are not known. {}",
            crate::START_THE_STACK
        ),
    }
}
