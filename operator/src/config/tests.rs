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
        ("spec.delivery.semantics", |ec| {
            if let Some(order) = ec.spec.order.as_mut() {
                order.sink_url = Some("http://sink:8080/orders".into());
            }
            ec.spec.delivery.semantics = eventconsumer_contract::Semantics::ExactlyOnce;
        }),
        ("spec.delivery.semantics", |ec| {
            ec.spec.delivery.ordering = eventconsumer_contract::Ordering::Key;
            ec.spec.delivery.semantics = eventconsumer_contract::Semantics::ExactlyOnce;
        }),
        ("spec.replicas", |ec| ec.spec.replicas = -1),
        ("spec.image", |ec| ec.spec.image = Some("has space".into())),
        ("spec.logLevel", |ec| ec.spec.log_level = String::new()),
        ("metadata.name", |ec| {
            ec.metadata.name = Some("n".repeat(64))
        }),
        ("spec.kafka.bootstrapServers", |ec| {
            ec.spec.kafka.bootstrap_servers = "kafka:99999".into()
        }),
        ("spec.kafka.bootstrapServers", |ec| {
            ec.spec.kafka.bootstrap_servers = "kafka:9092,b:0".into()
        }),
        ("spec.delivery.attemptTimeout", |ec| {
            ec.spec.delivery.attempt_timeout = "9999999h".into()
        }),
        ("spec.delivery.deadLetterTopic", |ec| {
            ec.spec.kafka.topics = vec!["t".repeat(246).as_str().into()]
        }),
        ("spec.kafka.consumerGroup", |ec| {
            ec.spec.delivery.mode = DeliveryMode::RetryTopics;
            ec.spec.kafka.consumer_group = Some("g".repeat(242));
        }),
        ("spec.kafka.consumerGroup", |ec| {
            // The worker refuses a retry topic that is its output topic; so must the operator.
            ec.spec.delivery.mode = DeliveryMode::RetryTopics;
            ec.spec.kafka.consumer_group = Some("g".into());
            if let Some(order) = ec.spec.order.as_mut() {
                order.output_topic = Some("g.retry.1".into());
            }
        }),
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
        client_cert_secret_ref: None,
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
fn a_client_certificate_secret_or_key_that_is_missing_names_its_field() {
    let mut ec = order_consumer();
    ec.spec.kafka.tls = Some(TlsSpec {
        ca_secret_ref: CaSecretRef {
            name: "kafka-ca".into(),
            key: "ca.crt".into(),
        },
        client_cert_secret_ref: Some(crate::crd::ClientCertSecretRef {
            name: "orders-cert".into(),
            cert_key: "tls.crt".into(),
            key_key: "tls.key".into(),
        }),
    });
    let ca = SecretFacts::default().with_secret("kafka-ca", ["ca.crt"]);
    let err = validate(&ec, &ca).unwrap_err();
    assert_eq!(err.field(), "spec.kafka.tls.clientCertSecretRef.name");
    let err = validate(&ec, &ca.clone().with_secret("orders-cert", ["tls.crt"])).unwrap_err();
    assert_eq!(err.field(), "spec.kafka.tls.clientCertSecretRef.keyKey");
    let both = ca.with_secret("orders-cert", ["tls.crt", "tls.key"]);
    let valid = validate(&ec, &both).unwrap();
    let cert = valid.kafka.tls.and_then(|t| t.client_cert).unwrap();
    assert_eq!(cert.key_key, "tls.key");
    assert_eq!(
        referenced_secrets(&ec),
        BTreeSet::from(["kafka-ca".to_owned(), "orders-cert".to_owned()])
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
