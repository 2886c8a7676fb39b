//! The Deployment an EventConsumer runs as: a pure function of a [`ValidConsumer`] and the
//! operator's [`Settings`], so every detail of the pods is unit-tested without a cluster.
//!
//! The worker is configured only through the environment variables named in
//! [`eventconsumer_contract::env`], each with an explicit value, so the worker's own defaults never
//! decide behaviour. Secret values never pass through the operator: credentials reach the pod as
//! `secretKeyRef`s and the CA bundle as a Secret volume.

use std::collections::BTreeMap;

use eventconsumer_contract::{self as contract, env};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::config::{HandlerConfig, Settings, ValidConsumer};

/// Name of the worker container.
pub const CONTAINER_NAME: &str = "worker";
/// `app.kubernetes.io/name` of every worker pod.
pub const APP_NAME: &str = "eventconsumer-worker";
/// `app.kubernetes.io/managed-by` of everything the operator creates; the operator watches
/// only Deployments carrying it.
pub const MANAGED_BY: &str = "eventconsumer-operator";
/// `app.kubernetes.io/part-of` of everything the operator creates.
pub const PART_OF: &str = "eventconsumer";
/// `app.kubernetes.io/component` of the worker pods.
pub const COMPONENT: &str = "consumer";
/// Label carrying the handler, for `kubectl get pods -l eventconsumer.dev/handler=order`.
pub const HANDLER_LABEL: &str = "eventconsumer.dev/handler";
/// Annotation holding a hash of the Deployment the operator last applied; see
/// [`crate::reconcile`] for how it avoids needless writes.
pub const SPEC_HASH_ANNOTATION: &str = "eventconsumer.dev/spec-hash";

/// Where the CA bundle is mounted; `EC_TLS_CA_FILE` points inside it.
const TLS_MOUNT_PATH: &str = "/etc/eventconsumer/kafka-tls";
const TLS_VOLUME: &str = "kafka-tls-ca";
const TLS_CA_FILE_NAME: &str = "ca.crt";
/// Where the client certificate and key are mounted (mutual TLS); `EC_TLS_CERT_FILE` and
/// `EC_TLS_KEY_FILE` point inside it.
const TLS_CLIENT_MOUNT_PATH: &str = "/etc/eventconsumer/kafka-tls-client";
const TLS_CLIENT_VOLUME: &str = "kafka-tls-client";
const TLS_CLIENT_CERT_FILE_NAME: &str = "tls.crt";
const TLS_CLIENT_KEY_FILE_NAME: &str = "tls.key";
/// The client key is readable by the pod's group only (the volume's files belong to the
/// pod's `fsGroup`), never by others.
const CLIENT_KEY_FILE_MODE: i32 = 0o440;
/// Pod template annotation with `name@resourceVersion` of the Kafka Secrets: rotating one
/// changes it, which rolls the pods (their environment and files then come from the new
/// Secret). Versions only, never values.
pub const SECRETS_ANNOTATION: &str = "eventconsumer.dev/kafka-secrets";
/// The root filesystem is read-only; librdkafka and the TLS stack may still want a scratch dir.
const TMP_VOLUME: &str = "tmp";
/// Bounds the scratch dir so a misbehaving worker cannot fill the node's disk.
const TMP_SIZE_LIMIT: &str = "16Mi";
/// Files of the CA volume are world-readable: they hold a public certificate, and the pod's
/// user id is not known in advance when an image overrides it.
const CA_FILE_MODE: i32 = 0o444;
/// UID/GID of the conventional distroless `nonroot` user; any non-zero id satisfies
/// `runAsNonRoot` and the restricted Pod Security Standard.
const NON_ROOT_ID: i64 = 65532;
/// The worker drains for `EC_SHUTDOWN_GRACE` seconds after SIGTERM; after that it still
/// flushes deferred work (≥ 2 s), flushes its producers (up to 2 × 5 s), commits offsets and
/// leaves the group. These extra seconds keep the kubelet's SIGKILL after all of that.
const TERMINATION_MARGIN_SECS: u64 = 20;
/// Old ReplicaSets kept for `kubectl rollout undo`; each is an empty object once scaled down.
const REVISION_HISTORY_LIMIT: i32 = 3;
/// Requests used when `spec.resources` is unset: enough for the scheduler to place pods sanely.
/// No limits, because librdkafka's fetch buffers grow with the partition count.
const DEFAULT_CPU_REQUEST: &str = "100m";
const DEFAULT_MEMORY_REQUEST: &str = "128Mi";

/// Readiness is checked often so a rebalance-completing worker joins the Ready count quickly.
const READINESS_PERIOD_SECS: i32 = 5;
/// Liveness is lenient (10 s apart) because a restart forces a consumer-group rebalance.
const LIVENESS_PERIOD_SECS: i32 = 10;
/// Three misses in a row before a probe fails, so one slow answer does not flap the pod.
const PROBE_FAILURE_THRESHOLD: i32 = 3;
/// The health endpoints answer from memory; a slow answer means a stuck process.
const PROBE_TIMEOUT_SECS: i32 = 2;

/// The labels on the Deployment and its pods.
pub fn labels(consumer: &ValidConsumer) -> BTreeMap<String, String> {
    let mut labels = selector_labels(&consumer.name);
    labels.extend([
        (
            "app.kubernetes.io/component".to_owned(),
            COMPONENT.to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        ),
        ("app.kubernetes.io/part-of".to_owned(), PART_OF.to_owned()),
        (
            HANDLER_LABEL.to_owned(),
            consumer.handler.handler().as_str().to_owned(),
        ),
    ]);
    labels
}

/// The labels that select an EventConsumer's pods. They never change for a given name, because a
/// Deployment's selector is immutable.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
    ])
}

/// [`selector_labels`] as a label selector string, for `status.selector`.
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The Deployment for `consumer`, named like the EventConsumer and owned by it.
pub fn build(consumer: &ValidConsumer, settings: &Settings) -> Deployment {
    let labels = labels(consumer);
    let pod_annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        (
            "prometheus.io/port".to_owned(),
            contract::HTTP_PORT.to_string(),
        ),
        (
            "prometheus.io/path".to_owned(),
            contract::METRICS_PATH.to_owned(),
        ),
    ]);

    let mut pod_annotations = pod_annotations;
    if !consumer.kafka.secrets_version.is_empty() {
        pod_annotations.insert(
            SECRETS_ANNOTATION.to_owned(),
            consumer.kafka.secrets_version.clone(),
        );
    }
    let client_cert = consumer
        .kafka
        .tls
        .as_ref()
        .and_then(|tls| tls.client_cert.as_ref());

    let mut volumes = vec![Volume {
        name: TMP_VOLUME.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(TMP_SIZE_LIMIT.to_owned())),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: TMP_VOLUME.to_owned(),
        mount_path: "/tmp".to_owned(),
        ..Default::default()
    }];
    if let Some(tls) = &consumer.kafka.tls {
        let (volume, mount) = secret_volume(
            TLS_VOLUME,
            &tls.secret_name,
            &[(&tls.key, TLS_CA_FILE_NAME)],
            CA_FILE_MODE,
            TLS_MOUNT_PATH,
        );
        volumes.push(volume);
        mounts.push(mount);
    }
    if let Some(cert) = client_cert {
        let (volume, mount) = secret_volume(
            TLS_CLIENT_VOLUME,
            &cert.secret_name,
            &[
                (&cert.cert_key, TLS_CLIENT_CERT_FILE_NAME),
                (&cert.key_key, TLS_CLIENT_KEY_FILE_NAME),
            ],
            CLIENT_KEY_FILE_MODE,
            TLS_CLIENT_MOUNT_PATH,
        );
        volumes.push(volume);
        mounts.push(mount);
    }

    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(
            consumer
                .image
                .clone()
                .unwrap_or_else(|| settings.worker_image.clone()),
        ),
        args: Some(vec![contract::RUN_SUBCOMMAND.to_owned()]),
        env: Some(env_vars(consumer)),
        ports: Some(vec![ContainerPort {
            name: Some(contract::HTTP_PORT_NAME.to_owned()),
            container_port: i32::from(contract::HTTP_PORT),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        readiness_probe: Some(http_probe(
            contract::READYZ_PATH,
            READINESS_PERIOD_SECS,
            PROBE_FAILURE_THRESHOLD,
        )),
        liveness_probe: Some(http_probe(
            contract::HEALTHZ_PATH,
            LIVENESS_PERIOD_SECS,
            PROBE_FAILURE_THRESHOLD,
        )),
        resources: Some(consumer.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Default::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };

    Deployment {
        metadata: ObjectMeta {
            name: Some(consumer.name.clone()),
            namespace: Some(consumer.namespace.clone()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![consumer.owner.clone()]),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(consumer.replicas),
            revision_history_limit: Some(REVISION_HISTORY_LIMIT),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&consumer.name)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    termination_grace_period_seconds: Some(termination_grace_period_secs()),
                    // The worker never calls the Kubernetes API.
                    automount_service_account_token: Some(false),
                    // Service environment variables would only clutter the worker's env.
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(NON_ROOT_ID),
                        run_as_group: Some(NON_ROOT_ID),
                        // The client key's files belong to this group (see CLIENT_KEY_FILE_MODE).
                        fs_group: client_cert.map(|_| NON_ROOT_ID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    node_selector: consumer.node_selector.clone(),
                    tolerations: consumer.tolerations.clone(),
                    affinity: consumer.affinity.clone(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        status: None,
    }
}

/// `terminationGracePeriodSeconds` of the pods: the worker's drain time plus a margin.
pub fn termination_grace_period_secs() -> i64 {
    i64::try_from(contract::DEFAULT_SHUTDOWN_GRACE_SECS + TERMINATION_MARGIN_SECS)
        .unwrap_or(i64::MAX)
}

/// The worker's environment, in a stable order. Optional settings (SASL, TLS, sink) appear only
/// when configured; every other name has an explicit value.
pub fn env_vars(consumer: &ValidConsumer) -> Vec<EnvVar> {
    let mut vars = vec![value(env::HANDLER, consumer.handler.handler().as_str())];
    match &consumer.handler {
        HandlerConfig::Order { action, sink_url } => {
            vars.push(value(env::ORDER_ACTION, action.as_str()));
            if let Some(url) = sink_url {
                vars.push(value(env::SINK_URL, url));
            }
        }
        HandlerConfig::Analytics { window } => {
            vars.push(value(env::ANALYTICS_WINDOW, window.as_str()));
        }
        HandlerConfig::Video { stage } => {
            vars.push(value(env::VIDEO_STAGE, stage.as_str()));
        }
    }
    vars.push(value(env::OUTPUT_TOPIC, &consumer.output_topic));

    let kafka = &consumer.kafka;
    vars.push(value(env::BOOTSTRAP_SERVERS, &kafka.bootstrap_servers));
    vars.push(value(env::TOPICS, &kafka.topics.join(",")));
    vars.push(value(env::GROUP_ID, &kafka.group_id));
    vars.push(value(env::INITIAL_OFFSET, kafka.initial_offset.as_str()));
    if let Some(sasl) = &kafka.sasl {
        vars.push(value(env::SASL_MECHANISM, sasl.mechanism.as_str()));
        vars.push(secret_ref(
            env::SASL_USERNAME,
            &sasl.secret_name,
            &sasl.username_key,
        ));
        vars.push(secret_ref(
            env::SASL_PASSWORD,
            &sasl.secret_name,
            &sasl.password_key,
        ));
    }
    if let Some(tls) = &kafka.tls {
        vars.push(value(
            env::TLS_CA_FILE,
            &format!("{TLS_MOUNT_PATH}/{TLS_CA_FILE_NAME}"),
        ));
        if tls.client_cert.is_some() {
            vars.push(value(
                env::TLS_CERT_FILE,
                &format!("{TLS_CLIENT_MOUNT_PATH}/{TLS_CLIENT_CERT_FILE_NAME}"),
            ));
            vars.push(value(
                env::TLS_KEY_FILE,
                &format!("{TLS_CLIENT_MOUNT_PATH}/{TLS_CLIENT_KEY_FILE_NAME}"),
            ));
        }
    }

    let delivery = &consumer.delivery;
    vars.push(value(env::MAX_ATTEMPTS, &delivery.max_attempts.to_string()));
    vars.push(value(
        env::BACKOFF_INITIAL,
        delivery.backoff_initial.as_str(),
    ));
    vars.push(value(env::BACKOFF_MAX, delivery.backoff_max.as_str()));
    vars.push(value(
        env::BACKOFF_MULTIPLIER,
        &delivery.backoff_multiplier.to_string(),
    ));
    vars.push(value(
        env::ATTEMPT_TIMEOUT,
        delivery.attempt_timeout.as_str(),
    ));
    vars.push(value(env::DLQ_TOPIC, &delivery.dead_letter_topic));
    vars.push(value(env::DELIVERY_MODE, delivery.mode.as_str()));

    vars.push(value(
        env::SHUTDOWN_GRACE,
        &contract::DEFAULT_SHUTDOWN_GRACE_SECS.to_string(),
    ));
    vars.push(value(
        env::HTTP_ADDR,
        &format!("0.0.0.0:{}", contract::HTTP_PORT),
    ));
    vars.push(value(env::LOG_LEVEL, &consumer.log_level));
    vars.push(value(env::CONSUMER_NAME, &consumer.name));
    vars
}

fn value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

fn secret_ref(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }
}

fn http_probe(path: &str, period_secs: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(contract::HTTP_PORT_NAME.to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(period_secs),
        timeout_seconds: Some(PROBE_TIMEOUT_SECS),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(DEFAULT_CPU_REQUEST.to_owned())),
            (
                "memory".to_owned(),
                Quantity(DEFAULT_MEMORY_REQUEST.to_owned()),
            ),
        ])),
        ..Default::default()
    }
}

/// A read-only volume of `secret`'s `items` (key, file name) with file mode `mode`, and its
/// mount at `path`: how the pods get the CA and the client certificate without the operator
/// ever copying them.
fn secret_volume(
    name: &str,
    secret: &str,
    items: &[(&str, &str)],
    mode: i32,
    path: &str,
) -> (Volume, VolumeMount) {
    let items = items
        .iter()
        .map(|(key, file)| KeyToPath {
            key: (*key).to_owned(),
            path: (*file).to_owned(),
            ..Default::default()
        })
        .collect();
    let volume = Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(items),
            default_mode: Some(mode),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mount = VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..Default::default()
    };
    (volume, mount)
}

#[cfg(test)]
mod tests {
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
}
