//! Where to consume: the source topics, the group, and the Secrets SASL and TLS read from.

use super::*;

pub(super) fn source_topics(ec: &EventConsumer) -> Result<Vec<String>, ConfigError> {
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

pub(super) fn kafka_config(
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
                    && port
                        .parse::<u32>()
                        .is_ok_and(|p| (1..=MAX_PORT).contains(&p))
            })
        });
    if !servers_ok {
        return Err(ConfigError::invalid(
            "spec.kafka.bootstrapServers",
            format!(
                "{:?} is not a comma-separated host:port list with ports from 1 to {MAX_PORT}",
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
            let client_cert = match &tls.client_cert_secret_ref {
                None => None,
                Some(cert) => {
                    let keys = secrets.keys(&cert.name).ok_or_else(|| {
                        missing_secret("spec.kafka.tls.clientCertSecretRef.name", &cert.name)
                    })?;
                    require_key(
                        "spec.kafka.tls.clientCertSecretRef.certKey",
                        &cert.name,
                        keys,
                        &cert.cert_key,
                    )?;
                    require_key(
                        "spec.kafka.tls.clientCertSecretRef.keyKey",
                        &cert.name,
                        keys,
                        &cert.key_key,
                    )?;
                    Some(ClientCertConfig {
                        secret_name: cert.name.clone(),
                        cert_key: cert.cert_key.clone(),
                        key_key: cert.key_key.clone(),
                    })
                }
            };
            Some(TlsConfig {
                secret_name: secret.name.clone(),
                key: secret.key.clone(),
                client_cert,
            })
        }
    };

    let secrets_version = secrets.versions(
        sasl.iter()
            .map(|s| s.secret_name.as_str())
            .chain(tls.iter().map(|t| t.secret_name.as_str()))
            .chain(
                tls.iter()
                    .filter_map(|t| t.client_cert.as_ref())
                    .map(|c| c.secret_name.as_str()),
            ),
    );
    Ok(KafkaConfig {
        bootstrap_servers: kafka.bootstrap_servers.clone(),
        topics,
        group_id,
        initial_offset: kafka.initial_offset,
        sasl,
        tls,
        secrets_version,
    })
}
