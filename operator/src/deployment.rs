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
    vars.push(value(env::ORDERING, delivery.ordering.as_str()));
    vars.push(value(env::SEMANTICS, delivery.semantics.as_str()));
    vars.push(value(
        env::MAX_IN_FLIGHT,
        &delivery.max_in_flight.to_string(),
    ));

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
mod tests;
