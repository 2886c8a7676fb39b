use std::collections::BTreeSet;

use super::*;
use crate::config::{SecretFacts, validate};
use crate::crd::{
    CaSecretRef, EventConsumer, Handler, SaslMechanism, SaslSecretRef, SaslSpec, TlsSpec,
    VideoOptions, VideoStage,
};
use crate::test_fixtures::{order_consumer, settings};

fn build_for(ec: &EventConsumer, facts: &SecretFacts) -> Deployment {
    let valid = validate(ec, facts).expect("fixture is valid");
    build(&valid, &settings())
}

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment.spec.template.spec.as_ref().expect("pod spec")
}

fn container(deployment: &Deployment) -> &Container {
    &pod_spec(deployment).containers[0]
}

fn env_map(deployment: &Deployment) -> BTreeMap<String, EnvVar> {
    container(deployment)
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.clone()))
        .collect()
}

fn plain(env: &BTreeMap<String, EnvVar>, name: &str) -> String {
    env.get(name)
        .and_then(|e| e.value.clone())
        .unwrap_or_else(|| panic!("{name} should have a plain value"))
}

/// One EventConsumer per handler, with SASL and TLS on the order one so every optional
/// variable appears somewhere.
fn one_per_handler() -> Vec<(EventConsumer, SecretFacts)> {
    let mut order = order_consumer();
    if let Some(o) = order.spec.order.as_mut() {
        o.sink_url = Some("http://sink.shop:8080/orders".into());
    }
    order.spec.kafka.sasl = Some(SaslSpec {
        mechanism: SaslMechanism::ScramSha512,
        secret_ref: SaslSecretRef {
            name: "kafka-creds".into(),
            username_key: "user".into(),
            password_key: "pass".into(),
        },
    });
    order.spec.kafka.tls = Some(TlsSpec {
        ca_secret_ref: CaSecretRef {
            name: "kafka-ca".into(),
            key: "bundle.pem".into(),
        },
        client_cert_secret_ref: None,
    });
    let order_facts = SecretFacts::default()
        .with_secret("kafka-creds", ["user", "pass"])
        .with_secret("kafka-ca", ["bundle.pem"]);

    // Mutual TLS on the analytics one, with a Strimzi KafkaUser Secret's keys.
    let mut analytics = order_consumer();
    analytics.spec.handler = Handler::Analytics;
    analytics.spec.order = None;
    analytics.spec.kafka.topics = vec!["user.events".into()];
    analytics.spec.kafka.tls = Some(mtls_spec());
    let analytics_facts = SecretFacts::default()
        .with_secret("kafka-ca", ["ca.crt"])
        .with_secret("analytics-user", ["user.crt", "user.key"]);

    let mut video = order_consumer();
    video.spec.handler = Handler::Video;
    video.spec.order = None;
    video.spec.kafka.topics = vec!["video.uploaded".into()];
    video.spec.video = Some(VideoOptions {
        stage: VideoStage::Publish,
        output_topic: None,
    });
    vec![
        (order, order_facts),
        (analytics, analytics_facts),
        (video, SecretFacts::default()),
    ]
}

fn mtls_spec() -> TlsSpec {
    TlsSpec {
        ca_secret_ref: CaSecretRef {
            name: "kafka-ca".into(),
            key: "ca.crt".into(),
        },
        client_cert_secret_ref: Some(crate::crd::ClientCertSecretRef {
            name: "analytics-user".into(),
            cert_key: "user.crt".into(),
            key_key: "user.key".into(),
        }),
    }
}

#[test]
fn a_client_certificate_is_a_read_only_volume_its_key_readable_by_the_pods_group_only() {
    let mut ec = order_consumer();
    ec.spec.kafka.tls = Some(mtls_spec());
    let facts = SecretFacts::default()
        .with_secret("kafka-ca", ["ca.crt"])
        .with_secret("analytics-user", ["user.crt", "user.key"]);
    let deployment = build_for(&ec, &facts);
    let pod = pod_spec(&deployment);
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == TLS_CLIENT_VOLUME)
        .and_then(|v| v.secret.clone())
        .expect("a client certificate volume");
    assert_eq!(volume.secret_name.as_deref(), Some("analytics-user"));
    let items: Vec<(String, String)> = volume
        .items
        .iter()
        .flatten()
        .map(|i| (i.key.clone(), i.path.clone()))
        .collect();
    assert_eq!(
        items,
        [
            ("user.crt".to_owned(), "tls.crt".to_owned()),
            ("user.key".to_owned(), "tls.key".to_owned())
        ]
    );
    assert_eq!(volume.default_mode, Some(0o440));
    assert_eq!(
        pod.security_context.as_ref().and_then(|s| s.fs_group),
        Some(NON_ROOT_ID)
    );
    let env = env_map(&deployment);
    assert_eq!(
        plain(&env, env::TLS_KEY_FILE),
        "/etc/eventconsumer/kafka-tls-client/tls.key"
    );
    let mount = container(&deployment)
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == TLS_CLIENT_VOLUME)
        .expect("mounted");
    assert_eq!(mount.read_only, Some(true));
}

/// Both directions of the contract: across the handlers and options, the operator sets
/// every name in `contract::env::ALL` and nothing else (the worker-only testing aids in
/// `contract::env::TESTING` are never set).
#[test]
fn the_deployments_set_exactly_the_contract_variables() {
    let contract_names: BTreeSet<&str> = env::ALL.iter().copied().collect();
    let mut set_somewhere = BTreeSet::new();
    for (ec, facts) in one_per_handler() {
        let deployment = build_for(&ec, &facts);
        let names: Vec<String> = container(&deployment)
            .env
            .iter()
            .flatten()
            .map(|e| e.name.clone())
            .collect();
        let unique: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(unique.len(), names.len(), "an env var is set twice");
        for name in &unique {
            assert!(
                contract_names.contains(name),
                "{name} is not in contract::env::ALL"
            );
        }
        set_somewhere.extend(unique.into_iter().map(str::to_owned));
    }
    let never_set: Vec<&str> = contract_names
        .iter()
        .filter(|n| !set_somewhere.contains(**n))
        .copied()
        .collect();
    assert!(never_set.is_empty(), "no Deployment sets {never_set:?}");
}

#[test]
fn the_required_env_vars_carry_the_resolved_values() {
    for (ec, facts) in one_per_handler() {
        let deployment = build_for(&ec, &facts);
        let env = env_map(&deployment);
        let handler = ec.spec.handler.as_str();
        assert_eq!(plain(&env, env::HANDLER), handler);
        assert_eq!(plain(&env, env::BOOTSTRAP_SERVERS), "kafka:9092");
        assert_eq!(plain(&env, env::TOPICS), ec.spec.kafka.topics[0].as_str());
        assert_eq!(plain(&env, env::GROUP_ID), "shop.inventory");
        assert_eq!(plain(&env, env::INITIAL_OFFSET), "earliest");
        assert_eq!(plain(&env, env::MAX_ATTEMPTS), "5");
        assert_eq!(plain(&env, env::DELIVERY_MODE), "blocking");
        assert_eq!(plain(&env, env::BACKOFF_INITIAL), "200ms");
        assert_eq!(plain(&env, env::BACKOFF_MAX), "30s");
        assert_eq!(plain(&env, env::BACKOFF_MULTIPLIER), "2");
        assert_eq!(plain(&env, env::ATTEMPT_TIMEOUT), "30s");
        assert_eq!(
            plain(&env, env::DLQ_TOPIC),
            format!("{}.dlq", ec.spec.kafka.topics[0].as_str())
        );
        assert_eq!(
            plain(&env, env::SHUTDOWN_GRACE),
            contract::DEFAULT_SHUTDOWN_GRACE_SECS.to_string()
        );
        assert_eq!(plain(&env, env::HTTP_ADDR), "0.0.0.0:8080");
        assert_eq!(plain(&env, env::LOG_LEVEL), "info");
        assert_eq!(plain(&env, env::CONSUMER_NAME), "inventory");
        match ec.spec.handler {
            Handler::Order => {
                assert!(env.contains_key(env::SASL_USERNAME));
                assert!(env.contains_key(env::SASL_PASSWORD));
                assert_eq!(plain(&env, env::ORDER_ACTION), "inventory");
                assert_eq!(plain(&env, env::OUTPUT_TOPIC), "order.inventory");
                assert_eq!(plain(&env, env::SINK_URL), "http://sink.shop:8080/orders");
                assert_eq!(plain(&env, env::SASL_MECHANISM), "SCRAM-SHA-512");
                assert_eq!(
                    plain(&env, env::TLS_CA_FILE),
                    "/etc/eventconsumer/kafka-tls/ca.crt"
                );
            }
            Handler::Analytics => {
                assert_eq!(plain(&env, env::ANALYTICS_WINDOW), "5s");
                assert_eq!(plain(&env, env::OUTPUT_TOPIC), "analytics.counts");
                assert!(!env.contains_key(env::ORDER_ACTION));
            }
            Handler::Video => {
                assert_eq!(plain(&env, env::VIDEO_STAGE), "publish");
                assert_eq!(plain(&env, env::OUTPUT_TOPIC), "video.ready");
                assert!(!env.contains_key(env::SASL_MECHANISM));
            }
        }
    }
}

#[test]
fn credentials_come_only_from_secret_key_refs() {
    let (ec, facts) = one_per_handler().remove(0);
    let deployment = build_for(&ec, &facts);
    let env = env_map(&deployment);
    for (name, key) in [(env::SASL_USERNAME, "user"), (env::SASL_PASSWORD, "pass")] {
        let var = &env[name];
        assert_eq!(var.value, None, "{name} must not carry a value");
        let selector = var
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("secretKeyRef");
        assert_eq!(selector.name, "kafka-creds");
        assert_eq!(selector.key, key);
    }
    let yaml = serde_yaml::to_string(&deployment).unwrap();
    assert!(!yaml.contains("stringData"));
}

#[test]
fn the_ca_bundle_is_mounted_read_only_from_its_secret() {
    let (ec, facts) = one_per_handler().remove(0);
    let deployment = build_for(&ec, &facts);
    let pod = pod_spec(&deployment);
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == TLS_VOLUME)
        .expect("CA volume");
    let secret = volume.secret.as_ref().expect("secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("kafka-ca"));
    let items = secret.items.as_ref().expect("items");
    assert_eq!(items[0].key, "bundle.pem");
    assert_eq!(items[0].path, "ca.crt");
    let mount = container(&deployment)
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == TLS_VOLUME)
        .expect("CA mount");
    assert_eq!(mount.read_only, Some(true));
    assert_eq!(
        plain(&env_map(&deployment), env::TLS_CA_FILE),
        format!("{}/{}", mount.mount_path, items[0].path)
    );
}

#[test]
fn pods_run_restricted() {
    let deployment = build_for(&order_consumer(), &SecretFacts::default());
    let pod = pod_spec(&deployment);
    let pod_sc = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    assert_eq!(
        pod_sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    let sc = container(&deployment)
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
}

#[test]
fn the_pod_outlives_the_worker_drain_on_termination() {
    let deployment = build_for(&order_consumer(), &SecretFacts::default());
    let grace = pod_spec(&deployment)
        .termination_grace_period_seconds
        .expect("grace");
    assert!(grace > i64::try_from(contract::DEFAULT_SHUTDOWN_GRACE_SECS).unwrap());
}

#[test]
fn probes_port_and_scrape_annotations_follow_the_contract() {
    let deployment = build_for(&order_consumer(), &SecretFacts::default());
    let c = container(&deployment);
    assert_eq!(c.args, Some(vec![contract::RUN_SUBCOMMAND.to_owned()]));
    let port = &c.ports.as_ref().expect("ports")[0];
    assert_eq!(port.container_port, i32::from(contract::HTTP_PORT));
    assert_eq!(port.name.as_deref(), Some(contract::HTTP_PORT_NAME));
    let path = |p: &Option<Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(
        path(&c.liveness_probe).as_deref(),
        Some(contract::HEALTHZ_PATH)
    );
    assert_eq!(
        path(&c.readiness_probe).as_deref(),
        Some(contract::READYZ_PATH)
    );
    let annotations = deployment
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .expect("annotations");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "8080");
    assert_eq!(annotations["prometheus.io/path"], contract::METRICS_PATH);
}

#[test]
fn the_deployment_is_owned_labelled_and_selects_only_its_pods() {
    let deployment = build_for(&order_consumer(), &SecretFacts::default());
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "EventConsumer");
    assert_eq!(owner.name, "inventory");
    assert_eq!(owner.controller, Some(true));
    let labels = deployment.metadata.labels.as_ref().unwrap();
    for key in ["name", "instance", "component", "managed-by", "part-of"] {
        assert!(
            labels.contains_key(&format!("app.kubernetes.io/{key}")),
            "{key}"
        );
    }
    let spec = &deployment.spec;
    assert_eq!(
        spec.selector.match_labels,
        Some(selector_labels("inventory"))
    );
    assert_eq!(
        selector_string("inventory"),
        "app.kubernetes.io/instance=inventory,app.kubernetes.io/name=eventconsumer-worker"
    );
}

#[test]
fn paused_consumers_get_zero_replicas_and_placement_passes_through() {
    let mut ec = order_consumer();
    ec.spec.paused = true;
    ec.spec.replicas = 4;
    ec.spec.node_selector = Some(BTreeMap::from([("pool".into(), "kafka".into())]));
    let deployment = build_for(&ec, &SecretFacts::default());
    assert_eq!(deployment.spec.replicas, Some(0));
    assert_eq!(pod_spec(&deployment).node_selector, ec.spec.node_selector);
}

#[test]
fn the_image_override_wins_over_the_operator_default() {
    let deployment = build_for(&order_consumer(), &SecretFacts::default());
    assert_eq!(container(&deployment).image, Some(settings().worker_image));
    let mut ec = order_consumer();
    ec.spec.image = Some("registry.example/worker:dev".into());
    let deployment = build_for(&ec, &SecretFacts::default());
    assert_eq!(
        container(&deployment).image.as_deref(),
        Some("registry.example/worker:dev")
    );
}

#[test]
fn building_is_deterministic() {
    let a = build_for(&order_consumer(), &SecretFacts::default());
    let b = build_for(&order_consumer(), &SecretFacts::default());
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}
