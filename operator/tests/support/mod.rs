//! Shared setup of the tests on the local control plane: a namespace per test (labelled to
//! enforce the `restricted` Pod Security Standard, so every worker pod proves it complies),
//! the CRDs installed from `crds/`, and the operator running in-process.
#![allow(dead_code)] // each test binary uses a different part

use std::process::{Command, Output};
use std::time::Duration;

use eventconsumer_operator::config::Settings;
use eventconsumer_operator::context::Scope;
use eventconsumer_operator::crd::{EventConsumer, EventConsumerStatus};
use eventconsumer_operator::leader::Timings;
use eventconsumer_operator::manager::{self, LeaderElection, Options};
use eventconsumer_operator::metrics::Metrics;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous for a busy two-core machine; each step usually takes about a second.
pub const TIMEOUT: Duration = Duration::from_secs(90);
/// Field manager of the writes a test makes as "the user".
pub const USER: &str = "test-user";
pub const WORKER_IMAGE: &str = "eventconsumer/worker:integration-test";
/// Lag measurement interval of the in-process operator: short, so the lag and autoscaling
/// tests finish in seconds instead of the production 15 s steps.
pub const MEASURE_INTERVAL: Duration = Duration::from_secs(1);

/// Every CRD the operator serves, as committed in `crds/`.
const CRD_YAMLS: &[(&str, &str)] = &[
    (
        "crds/eventconsumer.yaml",
        include_str!("../../../crds/eventconsumer.yaml"),
    ),
    (
        "crds/deadletterredrive.yaml",
        include_str!("../../../crds/deadletterredrive.yaml"),
    ),
];

pub struct TestEnv {
    pub client: Client,
    pub ns: String,
}

impl TestEnv {
    /// A fresh namespace on the local stack, with the CRD installed.
    pub async fn new(prefix: &str) -> Self {
        let client = testkit::kube_client().await;
        install_crd(&client).await;
        let ns = testkit::unique_name(prefix);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.clone()),
                labels: Some(
                    [
                        ("pod-security.kubernetes.io/enforce", "restricted"),
                        ("pod-security.kubernetes.io/enforce-version", "latest"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| {
                panic!("creating namespace {ns}: {e}. {}", testkit::START_THE_STACK)
            });
        Self { client, ns }
    }

    pub fn consumers(&self) -> Api<EventConsumer> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Applies `manifest` (an EventConsumer as a user would write it) like `kubectl apply
    /// --server-side`.
    pub async fn apply(&self, manifest: &Value) -> EventConsumer {
        let name = manifest["metadata"]["name"]
            .as_str()
            .expect("metadata.name");
        self.consumers()
            .patch(
                name,
                &PatchParams::apply(USER).force(),
                &Patch::Apply(manifest),
            )
            .await
            .unwrap_or_else(|e| panic!("applying EventConsumer {name}: {e}"))
    }

    /// Runs the operator in-process, watching only this namespace, without leader election.
    pub fn start_operator(&self) -> RunningOperator {
        self.start_operator_with(format!("op-{}", self.ns), None, MEASURE_INTERVAL)
    }

    /// Like [`Self::start_operator`], but the lag observer measures only once, at start: it
    /// then never writes a status, so nothing but the objects' own changes (and the watches on
    /// them) triggers a reconcile within a test.
    pub fn start_operator_without_measurements(&self) -> RunningOperator {
        self.start_operator_with(
            format!("op-{}", self.ns),
            None,
            Duration::from_secs(24 * 60 * 60),
        )
    }

    /// Runs an operator replica named `identity` that campaigns for `lease` in this namespace.
    pub fn start_replica(&self, identity: &str, lease: &str, timings: Timings) -> RunningOperator {
        self.start_operator_with(
            identity.to_owned(),
            Some(LeaderElection {
                lease_name: lease.to_owned(),
                lease_namespace: self.ns.clone(),
                timings,
            }),
            MEASURE_INTERVAL,
        )
    }

    fn start_operator_with(
        &self,
        identity: String,
        leader_election: Option<LeaderElection>,
        measure_interval: Duration,
    ) -> RunningOperator {
        let metrics = Metrics::default();
        let shutdown = CancellationToken::new();
        let options = Options {
            scope: Scope::Namespace(self.ns.clone()),
            settings: Settings {
                worker_image: WORKER_IMAGE.to_owned(),
                measure_interval,
            },
            identity,
            leader_election,
            watch_secrets: true,
        };
        let task = tokio::spawn(manager::run(
            self.client.clone(),
            options,
            metrics.clone(),
            shutdown.clone(),
        ));
        RunningOperator {
            metrics,
            shutdown,
            task: Some(task),
        }
    }

    /// Waits for the Deployment `name` and for `check` to accept it.
    pub async fn deployment_where(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Deployment) -> bool,
    ) -> Deployment {
        let api = self.deployments();
        testkit::eventually(what, TIMEOUT, || async {
            api.get_opt(name).await.ok().flatten().filter(|d| check(d))
        })
        .await
    }

    /// Waits for the EventConsumer `name` to have a status accepted by `check`.
    pub async fn status_where(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&EventConsumer, &EventConsumerStatus) -> bool,
    ) -> EventConsumer {
        let api = self.consumers();
        testkit::eventually(what, TIMEOUT, || async {
            let ec = api.get_opt(name).await.ok().flatten()?;
            let status = ec.status.clone()?;
            check(&ec, &status).then_some(ec)
        })
        .await
    }

    /// Runs `kubectl` against the local stack in this namespace.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl(&[&["--namespace", &self.ns], args].concat())
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Best effort, also after a failed assertion; the namespace controller removes the rest.
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.ns, "--wait=false"])
            .output();
    }
}

/// An operator running in-process; stopped when dropped.
pub struct RunningOperator {
    pub metrics: Metrics,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl RunningOperator {
    /// Stops the operator and waits until it has (releasing its Lease, if it held one).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("the operator stops in time")
                .expect("the operator task does not panic");
        }
    }

    /// Kills the operator as a crash would: no graceful stop, the Lease is not released.
    pub async fn crash(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub fn is_leader(&self) -> bool {
        self.metrics.leader.get() == 1
    }

    pub fn reconciles(&self) -> u64 {
        self.metrics.reconciles.get()
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Runs `kubectl` from `$PATH` (`. .dev/env` puts the stack's kubectl first).
pub fn kubectl(args: &[&str]) -> Output {
    Command::new("kubectl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl: {e}. {}", testkit::START_THE_STACK))
}

/// Installs (or updates) the committed CRDs, as `kubectl apply --server-side` would, and waits
/// until they are served.
pub async fn install_crd(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (file, yaml) in CRD_YAMLS {
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{file} parses: {e}"));
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("eventconsumer-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("installing {file}: {e}. {}", testkit::START_THE_STACK));
        tokio::time::timeout(
            TIMEOUT,
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("the CRD {name} is established in time"))
        .expect("watching the CRD");
    }
}

/// An order consumer as a user would write it: only the required fields.
pub fn order_manifest(name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "eventconsumer.dev/v1alpha1",
        "kind": "EventConsumer",
        "metadata": { "name": name },
        "spec": {
            "handler": "order",
            "order": { "action": "inventory" },
            "kafka": { "bootstrapServers": "kafka:9092", "topics": ["order.placed"] }
        }
    })
}

/// The condition `type_` of `status` as (status, reason, message).
pub fn condition(status: &EventConsumerStatus, type_: &str) -> Option<(String, String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The worker container's env var `name` (plain value) in `deployment`.
pub fn env_value(deployment: &Deployment, name: &str) -> Option<String> {
    deployment
        .spec
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)?
        .value
        .clone()
}

pub fn replicas(deployment: &Deployment) -> Option<i32> {
    deployment.spec.replicas
}

pub fn resource_version<K: ResourceExt>(object: &K) -> String {
    object.resource_version().unwrap_or_default()
}
