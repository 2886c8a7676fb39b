//! End-to-end tests of the whole system on the local stack (`make dev-up`): the Helm chart,
//! the operator, the workers and the gateway, with real Kafka and a real API server.
//!
//! What they prove:
//! - The chart installs, and its ServiceAccount and RBAC are enough for the operator: the
//!   operator runs as a local process authenticated with a token minted for that
//!   ServiceAccount (TokenRequest API), with the args of the chart's operator Deployment.
//! - The examples in `examples/` are what the operator turns into worker Deployments, and
//!   those Deployments carry everything a worker needs: for every pod (Running on the kwok
//!   node), the worker binary is started with exactly that pod's container args and
//!   environment (Secret references resolved through the API, never copied as values), and
//!   the three use cases then work end to end against the real Kafka: every order reaches
//!   all four order services, the page-view counts are exact, every uploaded video reaches
//!   `video.ready`, and the poison order sits in the dead-letter topic with its headers.
//! - Every EventConsumer reports Ready, and scaling one moves the Deployment's pods; the
//!   worker started for the new pod joins the group and processes.
//! - `helm template` renders objects the API server accepts (`kubectl apply
//!   --dry-run=server`), and with the default values (watch every namespace) the chart's
//!   ClusterRole gives the ServiceAccount what the operator does and nothing beyond.
//!
//! A missing stack or binary is a failure saying how to fix it, never a skip. Each run uses
//! its own namespaces, topics and groups, and removes them at the end (logs stay in
//! `<target>/e2e-runs/<run>/`).
#![forbid(unsafe_code)]

mod system_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use eventconsumer_contract::env;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use system_support::cluster::{self, run_ok, run_quiet};
use system_support::kafka::{self, Record, TopicReader};
use system_support::procs::{self, Processes, free_port, workspace_root};
use system_support::{Cleanup, example_topics, load_examples, rewrite};
use testkit::{eventually, unique_name};

/// Generous for a busy two-core machine.
const TIMEOUT: Duration = Duration::from_secs(120);
const RELEASE: &str = "ec";
/// The order services of `examples/consumers/orders.yaml`: EventConsumer and action.
const ORDER_SERVICES: [(&str, &str); 4] = [
    ("order-inventory", "inventory"),
    ("order-payment", "payment"),
    ("order-email", "email"),
    ("order-analytics", "analytics"),
];
/// The reference example with SASL credentials and a CA from Secrets.
const SECURE: &str = "order-payment-secure";
/// The EventConsumer the test scales.
const SCALED: &str = "order-email";
/// One `helm install` at a time in this process: on a fresh stack two installs would both
/// try to create the CRD from the chart's `crds/`, and the slower one could fail on it.
static HELM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A worker started for one pod.
struct Worker {
    consumer: String,
    port: u16,
}

/// What the test started and where.
struct System {
    client: Client,
    bootstrap: String,
    apps_ns: String,
    /// Prefix of every topic and consumer group of this run.
    prefix: String,
    partitions: HashMap<String, i32>,
    procs: Processes,
    http: reqwest::Client,
    /// By pod name.
    workers: BTreeMap<String, Worker>,
}

impl System {
    fn topic(&self, example_topic: &str) -> String {
        format!("{}{example_topic}", self.prefix)
    }

    fn reader(&self, example_topic: &str) -> TopicReader {
        let partitions = *self
            .partitions
            .get(example_topic)
            .unwrap_or_else(|| panic!("examples/topics.sh does not list {example_topic}"));
        TopicReader::new(&self.bootstrap, &self.topic(example_topic), partitions)
    }

    async fn get(&self, url: &str) -> Option<(StatusCode, String)> {
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = resp.status();
        Some((status, resp.text().await.unwrap_or_default()))
    }

    /// Waits until `GET url` answers 200, failing early if a child process died.
    async fn wait_ok(&self, what: &str, url: &str) {
        eventually(what, TIMEOUT, || async {
            self.procs.assert_all_running();
            match self.get(url).await {
                Some((StatusCode::OK, _)) => Some(()),
                _ => None,
            }
        })
        .await;
    }

    /// Starts the worker binary for every Running pod of `consumer` that has none yet, with
    /// exactly the pod's container args and environment, and returns the new pods' names.
    async fn start_workers_for_pods(&mut self, consumer: &str, pods: &[Pod]) -> Vec<String> {
        let mut started = Vec::new();
        for pod in pods {
            let name = pod.name_any();
            if self.workers.contains_key(&name) {
                continue;
            }
            let port = self.start_pod(pod, env::HTTP_ADDR).await;
            self.workers.insert(
                name.clone(),
                Worker {
                    consumer: consumer.to_owned(),
                    port,
                },
            );
            started.push(name);
        }
        started
    }

    /// Starts the worker binary as `pod` would run it: the container's args and its
    /// environment as the kubelet resolves it, with one change, the listen address in
    /// `addr_var`. On a cluster every pod has its own network namespace and all bind
    /// 0.0.0.0:8080; here they share the host's, so each gets its own loopback port.
    /// Returns that port.
    async fn start_pod(&self, pod: &Pod, addr_var: &str) -> u16 {
        let name = pod.name_any();
        let container = cluster::worker_container(pod);
        // The image's entrypoint is the worker binary; the pod gives only its args.
        assert_eq!(container.command, None, "{name}: no command, only args");
        let args = container.args.clone().unwrap_or_default();
        let (mut vars, from_secrets) = cluster::resolve_env(&self.client, pod, container).await;
        assert!(
            from_secrets.is_empty(),
            "{name}: no Secret-backed variable expected against the plaintext broker: {from_secrets:?}"
        );
        let port = free_port();
        let addr = vars
            .iter_mut()
            .find(|(k, _)| k == addr_var)
            .unwrap_or_else(|| panic!("{name}: the pod does not set {addr_var}"));
        addr.1 = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&procs::binaries().worker);
        cmd.args(&args).env_clear().envs(vars);
        self.procs.spawn(&name, cmd);
        port
    }

    async fn wait_workers_ready(&self, pods: &[String]) {
        for pod in pods {
            let port = self.workers[pod].port;
            self.wait_ok(
                &format!("worker {pod} to be ready (connected and assigned)"),
                &format!("http://127.0.0.1:{port}/readyz"),
            )
            .await;
        }
    }

    /// The Deployment of `consumer` once it wants `replicas` pods and that many run Ready on
    /// the kwok node; returns those pods.
    async fn pods_of(&self, consumer: &str, replicas: i32) -> Vec<Pod> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.apps_ns);
        let want = usize::try_from(replicas).expect("replicas >= 0");
        eventually(
            &format!("Deployment {consumer} with {replicas} Running and Ready pods on kwok"),
            TIMEOUT,
            || async {
                self.procs.assert_all_running();
                let d = deployments.get_opt(consumer).await.ok()??;
                if d.spec.replicas != Some(replicas) {
                    return None;
                }
                let pods = cluster::ready_pods(&self.client, &self.apps_ns, &d).await;
                (pods.len() == want).then_some(pods)
            },
        )
        .await
    }

    /// The sum of `eventconsumer_messages_processed_total` a worker reports.
    async fn processed(&self, pod: &str) -> f64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.workers[pod].port);
        let Some((StatusCode::OK, text)) = self.get(&url).await else {
            return 0.0;
        };
        text.lines()
            .filter(|l| l.starts_with("eventconsumer_messages_processed_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// An order body for `POST /checkout` whose total matches its items.
fn checkout_body(i: usize) -> Value {
    let quantity = i64::try_from(i % 3 + 1).expect("small");
    let cents = 1999 * quantity + 500;
    json!({
        "customer_id": format!("c-{i}"),
        "items": [
            {"product_id": format!("SKU-{i}"), "quantity": quantity, "price": 19.99},
            {"product_id": "SKU-GIFTWRAP", "quantity": 1, "price": 5.0},
        ],
        // Cents to a decimal amount, exactly as a client would write it.
        "total": format!("{}.{:02}", cents / 100, cents % 100).parse::<f64>().expect("a number"),
    })
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> (StatusCode, String) {
    let resp = http
        .post(url)
        .json(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status();
    (status, resp.text().await.unwrap_or_default())
}

/// Places order `i` through the gateway and returns its id.
async fn place_order(sys: &System, gateway: &str, i: usize) -> String {
    let (status, body) = post(&sys.http, &format!("{gateway}/checkout"), &checkout_body(i)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "POST /checkout: {body}");
    let answer: Value = serde_json::from_str(&body).expect("a JSON answer");
    answer["order_id"]
        .as_str()
        .expect("the answer carries the order id")
        .to_owned()
}

/// The order ids in the records of an order service's output topic.
fn outcome_ids(records: &[Record], action: &str) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| {
            let v = r.json();
            assert_eq!(v["action"], action, "an outcome of the wrong service: {v}");
            let id = v["order_id"].as_str().expect("order_id").to_owned();
            assert_eq!(r.key.as_deref(), Some(id.as_str()), "keyed by order id");
            id
        })
        .collect()
}

async fn wait_orders_in_outputs(
    sys: &System,
    readers: &mut [(TopicReader, &str)],
    everywhere: &BTreeSet<String>,
) {
    for (reader, action) in readers.iter_mut() {
        let action = *action;
        reader
            .read_until(
                &format!(
                    "all {} orders in the {action} service's output",
                    everywhere.len()
                ),
                TIMEOUT,
                |records| {
                    sys.procs.assert_all_running();
                    everywhere.is_subset(&outcome_ids(records, action))
                },
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_chart_operator_and_workers_run_the_three_use_cases_against_real_kafka() {
    let started = Instant::now();
    let bootstrap = testkit::kafka_bootstrap();
    let client = testkit::kube_client().await;
    let bins = tokio::task::spawn_blocking(procs::binaries)
        .await
        .expect("locating the binaries");
    let run = unique_name("e2e-system");
    let op_ns = unique_name("e2e-sys-op");
    let apps_ns = unique_name("e2e-sys-apps");
    let prefix = format!("{}.", unique_name("sys"));
    let dir = cluster::run_dir(&run);
    eprintln!(
        "run {run}: namespaces {op_ns} (chart) and {apps_ns} (EventConsumers), topics {prefix}*, files in {}",
        dir.display()
    );

    // Dropped last: the children below die first, then the cluster objects and topics go.
    let mut cleanup = Cleanup {
        release: None,
        namespaces: Vec::new(),
        topics: Vec::new(),
        bootstrap: bootstrap.clone(),
    };
    let mut sys = System {
        client: client.clone(),
        bootstrap: bootstrap.clone(),
        apps_ns: apps_ns.clone(),
        prefix: prefix.clone(),
        partitions: example_topics().into_iter().collect(),
        procs: Processes::new(dir.join("logs")),
        http: reqwest::Client::new(),
        workers: BTreeMap::new(),
    };

    // 1. The chart, into its own namespace, watching the EventConsumers' namespace (so its
    //    RBAC is the namespaced Role, and this operator never touches other tests' objects).
    for ns in [&op_ns, &apps_ns] {
        cluster::create_namespace(&client, ns, true).await;
        cleanup.namespaces.push(ns.clone());
    }
    let chart = workspace_root().join("charts/eventconsumer");
    let helm = HELM.lock().await;
    cluster::apply_chart_crds(&chart);
    run_ok(
        "helm",
        &[
            "install",
            RELEASE,
            chart.to_str().expect("a UTF-8 path"),
            "--namespace",
            &op_ns,
            // The operator runs below as a local process; its pods on the kwok node would
            // only be fakes, so the chart's Deployment asks for none.
            "--set",
            "operator.replicas=0",
            "--set",
            &format!("operator.watchNamespace={apps_ns}"),
            // Workers and the gateway use the local stack's Kafka (for workers it is set
            // per EventConsumer below), with this run's topics.
            "--set",
            "kafka.enabled=false",
            "--set",
            "gateway.enabled=true",
            "--set-string",
            &format!("gateway.bootstrapServers={bootstrap}"),
            "--set-string",
            &format!("gateway.ordersTopic={}", sys.topic("order.placed")),
            "--set-string",
            &format!("gateway.eventsTopic={}", sys.topic("user.events")),
        ],
        None,
    );
    drop(helm);
    cleanup.release = Some((RELEASE.to_owned(), op_ns.clone()));
    let operator_deployment = chart_operator_deployment(&client, &op_ns, RELEASE).await;
    let pod_spec = operator_deployment
        .spec
        .template
        .spec
        .clone()
        .expect("a pod template");
    let service_account = pod_spec
        .service_account_name
        .clone()
        .expect("the operator pod names its ServiceAccount");
    let operator_args = pod_spec.containers[0].args.clone().unwrap_or_default();
    let arg = |flag: &str| {
        operator_args
            .iter()
            .find_map(|a| a.strip_prefix(&format!("{flag}=")))
            .unwrap_or_else(|| {
                panic!("the chart's operator args have no {flag}: {operator_args:?}")
            })
            .to_owned()
    };
    assert_eq!(arg("--namespace"), apps_ns);
    assert_eq!(arg("--lease-namespace"), op_ns);
    let lease_name = arg("--lease-name");

    // 2. The operator as a local process, authenticated as the chart's ServiceAccount.
    let kubeconfig = dir.join("operator.kubeconfig");
    cluster::service_account_kubeconfig(&client, &op_ns, &service_account, &kubeconfig).await;
    let kc = kubeconfig.to_str().expect("a UTF-8 path");
    let whoami = run_ok(
        "kubectl",
        &[
            "--kubeconfig",
            kc,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    assert_eq!(
        whoami,
        format!("system:serviceaccount:{op_ns}:{service_account}")
    );
    // Not an admin in disguise: outside the watched namespace it may do nothing.
    let can = run_quiet(
        "kubectl",
        &[
            "--kubeconfig",
            kc,
            "auth",
            "can-i",
            "create",
            "deployments",
            "-n",
            "default",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");

    let identity = format!("{run}-operator");
    let operator_port = free_port();
    let mut cmd = Command::new(&bins.operator);
    cmd.args(&operator_args)
        .arg(format!("--http-addr=127.0.0.1:{operator_port}"))
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        // The chart sets POD_NAME from the downward API; this process's stand-in.
        .env("POD_NAME", &identity);
    sys.procs.spawn("operator", cmd);
    sys.wait_ok(
        "the operator's /readyz",
        &format!("http://127.0.0.1:{operator_port}/readyz"),
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &op_ns);
    eventually(
        "the operator to hold the leader Lease in the release namespace",
        TIMEOUT,
        || async {
            sys.procs.assert_all_running();
            let lease = leases.get_opt(&lease_name).await.ok()??;
            (lease.spec?.holder_identity? == identity).then_some(())
        },
    )
    .await;
    eprintln!(
        "[{:?}] operator leads as {service_account}",
        started.elapsed()
    );

    // 3. The examples' topics, and the examples rewritten for this run.
    for (topic, partitions) in &sys.partitions {
        let name = sys.topic(topic);
        testkit::create_topic(&bootstrap, &name, *partitions).await;
        cleanup.topics.push(name);
    }
    let mut examples: Vec<Value> = [
        "consumers/orders.yaml",
        "consumers/analytics.yaml",
        "consumers/video.yaml",
        "secure/sasl-tls.yaml",
    ]
    .iter()
    .flat_map(|f| load_examples(f))
    .collect();
    let names: Vec<String> = examples
        .iter()
        .map(|e| e["metadata"]["name"].as_str().expect("a name").to_owned())
        .collect();
    for (service, _) in ORDER_SERVICES {
        assert!(
            names.iter().any(|n| n == service),
            "examples lack {service}"
        );
    }
    for ec in &mut examples {
        rewrite(ec, &apps_ns, &prefix, &bootstrap);
        if ec["metadata"]["name"] == SECURE {
            // One pod is enough to check how its Secrets reach it.
            ec["spec"]["replicas"] = json!(1);
        }
    }
    // The Secrets the secure example names (its comment shows the kubectl commands).
    let sasl_password = unique_name("pw");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &apps_ns);
    for (name, data) in [
        (
            "orders-kafka-credentials",
            json!({"username": "orders", "password": sasl_password}),
        ),
        (
            "kafka-ca",
            json!({"ca.crt": "-----BEGIN CERTIFICATE-----\nnot checked by anyone here\n-----END CERTIFICATE-----\n"}),
        ),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": data,
        }))
        .expect("a Secret");
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
    }
    let consumers = cluster::consumers(&client, &apps_ns);
    for ec in &examples {
        cluster::apply(&consumers, ec).await;
    }

    // 4. A worker for every pod of every Deployment the operator made.
    let mut started_pods = Vec::new();
    let mut expected_workers = 0;
    for ec in &examples {
        let name = ec["metadata"]["name"].as_str().expect("a name");
        let replicas = ec["spec"]["replicas"]
            .as_i64()
            .map_or(1, |r| i32::try_from(r).expect("small"));
        let pods = sys.pods_of(name, replicas).await;
        assert_eq!(
            pods.len(),
            usize::try_from(replicas).expect("replicas >= 0")
        );
        if name == SECURE {
            check_secret_references(&sys, &pods, &sasl_password).await;
            // No worker for it: the local broker has only a PLAINTEXT listener, so SASL and
            // TLS cannot connect (the CA is a placeholder too).
            continue;
        }
        expected_workers += pods.len();
        started_pods.extend(sys.start_workers_for_pods(name, &pods).await);
    }
    assert_eq!(
        started_pods.len(),
        expected_workers,
        "pods: {started_pods:?}"
    );
    sys.wait_workers_ready(&started_pods).await;
    eprintln!(
        "[{:?}] {} workers ready: {started_pods:?}",
        started.elapsed(),
        started_pods.len()
    );

    // 5. The gateway, started like the workers from the chart's gateway pod.
    let gateway_deployment = Api::<Deployment>::namespaced(client.clone(), &op_ns)
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=gateway"
        )))
        .await
        .expect("listing the chart's Deployments")
        .items
        .into_iter()
        .next()
        .expect("the chart installed the gateway Deployment");
    let gateway_pod = eventually(
        "the chart's gateway pod Running and Ready on kwok",
        TIMEOUT,
        || async {
            let pods = cluster::ready_pods(&client, &op_ns, &gateway_deployment).await;
            pods.into_iter().next()
        },
    )
    .await;
    let gateway_port = sys.start_pod(&gateway_pod, "EC_GATEWAY_LISTEN_ADDR").await;
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    sys.wait_ok("the gateway's /readyz", &format!("{gateway}/readyz"))
        .await;

    let mut order_readers: Vec<(TopicReader, &str)> = ORDER_SERVICES
        .iter()
        .map(|(_, action)| (sys.reader(&format!("order.{action}")), *action))
        .collect();

    // order-analytics starts at the latest offset (its example says why), so orders placed
    // before it has a position are not its business. Probe until it sees one; the probes
    // must still reach the three services that start at the earliest offset.
    let mut probes = BTreeSet::new();
    let analytics_reader = &mut order_readers[3].0;
    let probe_deadline = Instant::now() + TIMEOUT;
    loop {
        sys.procs.assert_all_running();
        let id = place_order(&sys, &gateway, probes.len()).await;
        probes.insert(id.clone());
        let seen = tokio::time::timeout(
            Duration::from_secs(5),
            analytics_reader.read_until("a probe order", TIMEOUT, |records| {
                records
                    .iter()
                    .any(|r| r.key.as_deref() == Some(id.as_str()))
            }),
        )
        .await
        .is_ok();
        if seen {
            break;
        }
        assert!(
            Instant::now() < probe_deadline,
            "order-analytics never processed a probe order: {probes:?}"
        );
    }

    // 6. Orders, one poison order, user events and video uploads.
    let mut orders = BTreeSet::new();
    for i in 100..112 {
        orders.insert(place_order(&sys, &gateway, i).await);
    }
    let poison = json!({"customer_id": "c-poison", "items": [], "total": 0});
    let (status, body) = post(&sys.http, &format!("{gateway}/checkout"), &poison).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the gateway refuses an order without items: {body}"
    );
    assert!(body.contains("items"), "the 400 names the field: {body}");
    // Written straight to the topic, as a buggy producer elsewhere could.
    let poison_id = format!("o-poison-{run}");
    let poison_value = serde_json::to_vec(&json!({
        "order_id": poison_id,
        "customer_id": "c-poison",
        "items": [],
        "total": 0,
        "created_at": "2026-01-01T00:00:00Z",
    }))
    .expect("JSON");
    let producer = kafka::producer(&bootstrap);
    kafka::produce(
        &producer,
        &sys.topic("order.placed"),
        "c-poison",
        &poison_value,
    )
    .await;

    let views: [(&str, u64); 3] = [("/home", 5), ("/products/42", 3), ("/cart", 2)];
    let clicks = 4u64;
    let mut n = 0;
    for (path, count) in views {
        for _ in 0..count {
            let event = json!({"type": "page_view", "user_id": format!("u-{}", n % 3), "session_id": format!("s-{}", n % 4), "payload": {"path": path}});
            let (status, body) = post(&sys.http, &format!("{gateway}/events"), &event).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "POST /events: {body}");
            n += 1;
        }
    }
    for i in 0..clicks {
        let event = json!({"type": "click", "user_id": "u-1", "session_id": format!("s-{i}"), "payload": {"element": "buy-button"}});
        let (status, body) = post(&sys.http, &format!("{gateway}/events"), &event).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "POST /events: {body}");
    }

    let videos: Vec<String> = (0..5).map(|i| format!("v-{i}")).collect();
    for (i, video) in videos.iter().enumerate() {
        let upload = json!({
            "video_id": video,
            "s3_key": format!("uploads/{video}.mp4"),
            "user_id": format!("u-{i}"),
            "size_bytes": 1_048_576 * (i + 1),
        });
        let value = serde_json::to_vec(&upload).expect("JSON");
        kafka::produce(&producer, &sys.topic("video.uploaded"), video, &value).await;
    }
    eprintln!("[{:?}] traffic sent", started.elapsed());

    // 7. Every order reached all four services; probes the three earliest ones.
    let mut everywhere = orders.clone();
    wait_orders_in_outputs(&sys, &mut order_readers, &everywhere).await;
    everywhere.extend(probes.iter().cloned());
    wait_orders_in_outputs(&sys, &mut order_readers[..3], &everywhere).await;
    for (reader, action) in &order_readers {
        let ids = outcome_ids(&reader.records, action);
        assert!(
            !ids.contains(&poison_id),
            "the poison order has no {action} outcome"
        );
        let unknown: Vec<_> = ids.difference(&everywhere).collect();
        assert!(
            unknown.is_empty(),
            "{action} output holds unknown orders: {unknown:?}"
        );
    }

    // Page views per path, summed over the windows, are exact; clicks are counted by type.
    let expected: BTreeMap<String, u64> =
        views.iter().map(|(p, c)| ((*p).to_owned(), *c)).collect();
    let sum = |records: &[Record]| {
        let mut views: BTreeMap<String, u64> = BTreeMap::new();
        let mut clicks = 0u64;
        for r in records {
            let v = r.json();
            for (path, count) in v["page_views"].as_object().into_iter().flatten() {
                *views.entry(path.clone()).or_default() += count.as_u64().expect("a count");
            }
            clicks += v["events_by_type"]["click"].as_u64().unwrap_or(0);
        }
        (views, clicks)
    };
    let mut counts = sys.reader("analytics.counts");
    counts
        .read_until("the page-view windows to add up", TIMEOUT, |records| {
            sys.procs.assert_all_running();
            let (views, seen_clicks) = sum(records);
            views.values().sum::<u64>() >= expected.values().sum::<u64>() && seen_clicks >= clicks
        })
        .await;
    assert_eq!(
        sum(&counts.records),
        (expected, clicks),
        "page views per path, then clicks"
    );

    // Every upload reached video.ready, with a thumbnail.
    let mut ready = sys.reader("video.ready");
    ready
        .read_until("every uploaded video in video.ready", TIMEOUT, |records| {
            sys.procs.assert_all_running();
            let seen: BTreeSet<String> = records
                .iter()
                .map(|r| r.json()["video_id"].as_str().unwrap_or_default().to_owned())
                .collect();
            videos.iter().all(|v| seen.contains(v))
        })
        .await;
    for r in &ready.records {
        let v = r.json();
        assert!(
            v["thumbnail_url"].as_str().is_some_and(|u| !u.is_empty()),
            "a ready video has a thumbnail URL: {v}"
        );
    }

    // The poison order sits in the DLQ once per order service, with its headers.
    let mut dlq = sys.reader("order.placed.dlq");
    dlq.read_until(
        "the poison order from all four order services",
        TIMEOUT,
        |records| {
            sys.procs.assert_all_running();
            records.len() >= ORDER_SERVICES.len()
        },
    )
    .await;
    check_dead_letters(&sys, &dlq.records, &poison_value);
    eprintln!("[{:?}] all three use cases verified", started.elapsed());

    // 8. Every EventConsumer reports Ready, with the counts, for its current generation.
    for ec in &examples {
        let name = ec["metadata"]["name"].as_str().expect("a name");
        wait_consumer_ready(&sys.procs, &consumers, name, None).await;
    }

    // 9. Scale one EventConsumer: the Deployment's pods follow, and the worker started for
    //    the new pod joins the group and takes part of the work.
    let kubectl_scale = run_ok(
        "kubectl",
        &[
            "scale",
            "-n",
            &apps_ns,
            &format!("ec/{SCALED}"),
            "--replicas=2",
        ],
        None,
    );
    assert!(kubectl_scale.contains("scaled"), "{kubectl_scale}");
    let pods = sys.pods_of(SCALED, 2).await;
    let new_pods = sys.start_workers_for_pods(SCALED, &pods).await;
    assert_eq!(
        new_pods.len(),
        1,
        "one new pod after scaling to 2: {new_pods:?}"
    );
    sys.wait_workers_ready(&new_pods).await;
    let group = examples
        .iter()
        .find(|e| e["metadata"]["name"] == SCALED)
        .and_then(|e| e["spec"]["kafka"]["consumerGroup"].as_str())
        .expect("the scaled example names its consumer group")
        .to_owned();
    eventually(
        &format!("group {group} to have two members"),
        TIMEOUT,
        || async { (kafka::group_members(&bootstrap, &group).await == 2).then_some(()) },
    )
    .await;
    let new_pod = &new_pods[0];
    let mut after = BTreeSet::new();
    let deadline = Instant::now() + TIMEOUT;
    while sys.processed(new_pod).await < 1.0 {
        sys.procs.assert_all_running();
        assert!(
            Instant::now() < deadline,
            "the worker of the new pod {new_pod} processed nothing of {} orders",
            after.len()
        );
        after.insert(place_order(&sys, &gateway, 200 + after.len()).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_orders_in_outputs(&sys, &mut order_readers, &after).await;
    wait_consumer_ready(&sys.procs, &consumers, SCALED, Some(2)).await;
    let scaled_workers = sys
        .workers
        .values()
        .filter(|w| w.consumer == SCALED)
        .count();
    assert_eq!(scaled_workers, 2);

    // 10. A hand-added env var (a worker testing switch) is removed by the operator, which
    //     needs the chart's `update` on Deployments for it.
    run_ok(
        "kubectl",
        &[
            "set",
            "env",
            "-n",
            &apps_ns,
            &format!("deployment/{SCALED}"),
            "-c",
            "worker",
            &format!("{}=true", env::NO_OUTPUT),
        ],
        None,
    );
    let deployments: Api<Deployment> = Api::namespaced(sys.client.clone(), &apps_ns);
    eventually(
        "the operator to remove the hand-added env var",
        TIMEOUT,
        || async {
            let d = deployments.get(SCALED).await.ok()?;
            let pod = d.spec.template.spec?;
            let added = pod.containers[0]
                .env
                .iter()
                .flatten()
                .any(|e| e.name == env::NO_OUTPUT);
            (!added).then_some(())
        },
    )
    .await;
    sys.procs.assert_all_running();
    eprintln!(
        "[{:?}] done: {} processes, {} orders, {} probes",
        started.elapsed(),
        sys.procs.count(),
        orders.len() + after.len(),
        probes.len()
    );
}

/// The secure example's pod gets its SASL credentials only as `secretKeyRef`s, which
/// resolve through the API to the Secret's values; the values appear nowhere in the
/// Deployment or the pod.
async fn check_secret_references(sys: &System, pods: &[Pod], password: &str) {
    let deployment = Api::<Deployment>::namespaced(sys.client.clone(), &sys.apps_ns)
        .get(SECURE)
        .await
        .expect("the secure example's Deployment");
    let written = serde_json::to_string(&deployment).expect("JSON");
    assert!(
        !written.contains(password),
        "the Deployment holds the SASL password"
    );
    for pod in pods {
        let container = cluster::worker_container(pod);
        let pod_json = serde_json::to_string(pod).expect("JSON");
        assert!(
            !pod_json.contains(password),
            "the pod spec holds the SASL password"
        );
        for var in container.env.iter().flatten() {
            if [env::SASL_USERNAME, env::SASL_PASSWORD].contains(&var.name.as_str()) {
                assert_eq!(var.value, None, "{} copied as a plain value", var.name);
            }
        }
        let (vars, from_secrets) = cluster::resolve_env(&sys.client, pod, container).await;
        assert_eq!(
            from_secrets,
            vec![env::SASL_USERNAME.to_owned(), env::SASL_PASSWORD.to_owned()]
        );
        let vars: BTreeMap<_, _> = vars.into_iter().collect();
        assert_eq!(vars[env::SASL_USERNAME], "orders");
        assert_eq!(vars[env::SASL_PASSWORD], password);
        assert_eq!(vars[env::SASL_MECHANISM], "SCRAM-SHA-512");
        assert!(vars.contains_key(env::TLS_CA_FILE), "TLS CA path set");
    }
}

/// Four dead letters of the poison order, one per order service, each carrying the
/// original record and the documented headers (worker/src/delivery/dlq.rs).
fn check_dead_letters(sys: &System, records: &[Record], poison_value: &[u8]) {
    assert_eq!(
        records.len(),
        ORDER_SERVICES.len(),
        "only the poison order is dead-lettered, once per service: {records:?}"
    );
    let mut services = BTreeSet::new();
    for r in records {
        let h = |name: &str| {
            r.headers
                .get(name)
                .unwrap_or_else(|| panic!("dead letter without {name}: {:?}", r.headers))
                .as_str()
        };
        assert_eq!(r.key.as_deref(), Some("c-poison"), "the original key");
        assert_eq!(r.value, poison_value, "the original value");
        assert_eq!(h("ec-dlt-original-topic"), sys.topic("order.placed"));
        h("ec-dlt-original-partition")
            .parse::<i32>()
            .expect("a partition");
        h("ec-dlt-original-offset")
            .parse::<i64>()
            .expect("an offset");
        h("ec-dlt-original-timestamp")
            .parse::<i64>()
            .expect("a timestamp");
        assert_eq!(h("ec-dlt-error-class"), "validation");
        assert_eq!(h("ec-dlt-error-retryable"), "false");
        assert_eq!(h("ec-dlt-attempts"), "1", "no retry for a validation error");
        assert!(
            h("ec-dlt-error-message").contains("items"),
            "{:?}",
            r.headers
        );
        assert!(!h("ec-dlt-first-failure").is_empty());
        assert!(!h("ec-dlt-last-failure").is_empty());
        let consumer = h("ec-dlt-consumer-name");
        let (_, action) = ORDER_SERVICES
            .iter()
            .find(|(name, _)| *name == consumer)
            .unwrap_or_else(|| panic!("a dead letter from an unknown consumer {consumer}"));
        assert_eq!(h("ec-dlt-handler"), format!("order/{action}"));
        let group = match *action {
            "inventory" => "inventory-service",
            "payment" => "payment-service",
            "email" => "email-service",
            _ => "analytics-service",
        };
        assert_eq!(h("ec-dlt-consumer-group"), format!("{}{group}", sys.prefix));
        services.insert(consumer.to_owned());
    }
    assert_eq!(
        services.len(),
        ORDER_SERVICES.len(),
        "one per service: {services:?}"
    );
}

/// Waits until `name` reports Ready=True for its current generation, with as many ready
/// replicas as it wants (`replicas`, or its spec's).
async fn wait_consumer_ready(
    procs: &Processes,
    api: &Api<kube::api::DynamicObject>,
    name: &str,
    replicas: Option<i64>,
) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        procs.assert_all_running();
        let ec = api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("EventConsumer {name}: {e}"));
        let want = replicas.unwrap_or_else(|| ec.data["spec"]["replicas"].as_i64().unwrap_or(1));
        let status = &ec.data["status"];
        let ready = cluster::condition(&ec, "Ready");
        if ready.as_ref().is_some_and(|(s, _, _)| s == "True")
            && status["observedGeneration"].as_i64() == ec.metadata.generation
            && status["replicas"].as_i64() == Some(want)
            && status["readyReplicas"].as_i64() == Some(want)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "EventConsumer {name} is not Ready with {want} replicas after {TIMEOUT:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn helm_template_output_passes_server_side_dry_run_apply() {
    let client = testkit::kube_client().await;
    let ns = unique_name("e2e-sys-template");
    let mut cleanup = Cleanup {
        release: None,
        namespaces: Vec::new(),
        topics: Vec::new(),
        bootstrap: String::new(),
    };
    cluster::create_namespace(&client, &ns, false).await;
    cleanup.namespaces.push(ns.clone());
    let chart = workspace_root().join("charts/eventconsumer");
    let chart = chart.to_str().expect("a UTF-8 path");
    let ci = |file: &str| format!("{chart}/ci/{file}");
    let watch = format!("operator.watchNamespace={ns}");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("defaults", vec![]),
        ("kind values", vec!["-f".into(), ci("kind-values.yaml")]),
        (
            "watching one namespace",
            vec![
                "-f".into(),
                ci("watch-namespace-values.yaml"),
                "--set".into(),
                watch,
            ],
        ),
        (
            "monitoring values",
            vec!["-f".into(), ci("monitoring-values.yaml")],
        ),
        (
            "Secrets not watched",
            vec!["--set".into(), "operator.watchSecrets=false".into()],
        ),
        (
            "kind values with the SASL_SSL listener",
            vec![
                "-f".into(),
                ci("kind-values.yaml"),
                "--set".into(),
                "kafka.secured.enabled=true".into(),
                "--set".into(),
                "kafka.secured.secretName=kafka-secured".into(),
            ],
        ),
    ];
    for (case, values) in cases {
        let mut args = vec![
            "template",
            RELEASE,
            chart,
            "--namespace",
            &ns,
            "--include-crds",
        ];
        args.extend(values.iter().map(String::as_str));
        let rendered = run_ok("helm", &args, None);
        // The local stack has no Prometheus Operator CRDs: the ServiceMonitor is checked to
        // render, and left out of the dry run.
        let mut service_monitors = 0;
        let docs: Vec<&str> = rendered
            .split("\n---")
            .filter(|d| {
                let is_sm = d.lines().any(|l| l.trim() == "kind: ServiceMonitor");
                service_monitors += usize::from(is_sm);
                !is_sm
            })
            .collect();
        // Secrets: get only, unless watched (and then the operator is told to watch them).
        let watched = case != "Secrets not watched";
        let verbs = if watched {
            r#"verbs: ["get","list","watch"]"#
        } else {
            r#"verbs: ["get"]"#
        };
        let secrets_rule = rendered
            .split("resources: [\"secrets\"]")
            .nth(1)
            .and_then(|rest| rest.lines().nth(1))
            .map(str::trim);
        assert_eq!(secrets_rule, Some(verbs), "{case}: the Secrets rule");
        assert!(
            rendered.contains(&format!("- --watch-secrets={watched}")),
            "{case}: the operator's --watch-secrets matches its RBAC"
        );
        if case == "monitoring values" {
            assert_eq!(
                service_monitors, 1,
                "the monitoring values render a ServiceMonitor"
            );
        }
        let manifest = docs.join("\n---");
        let out = run_ok(
            "kubectl",
            &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
            Some(&manifest),
        );
        let applied = out
            .lines()
            .filter(|l| l.ends_with("(server dry run)"))
            .count();
        let objects = docs
            .iter()
            .filter(|d| d.lines().any(|l| l.starts_with("kind: ")))
            .count();
        assert_eq!(
            applied, objects,
            "{case}: every rendered object passes the dry run:\n{out}"
        );
    }
}

/// With the default values the operator watches every namespace: the chart's ClusterRole
/// and its binding must give the ServiceAccount exactly what that takes, cluster-wide. (The
/// main test runs the operator with the namespaced Role; running one that watches every
/// namespace would reconcile other tests' EventConsumers, so here the API server's own
/// authorizer answers for the same token instead.)
#[tokio::test]
async fn by_default_the_charts_service_account_may_do_cluster_wide_what_the_operator_does() {
    let client = testkit::kube_client().await;
    let ns = unique_name("e2e-sys-rbac");
    // A release name of its own: the ClusterRole is cluster-scoped and named after it.
    let release = unique_name("ec-rbac");
    let mut cleanup = Cleanup {
        release: None,
        namespaces: Vec::new(),
        topics: Vec::new(),
        bootstrap: String::new(),
    };
    cluster::create_namespace(&client, &ns, true).await;
    cleanup.namespaces.push(ns.clone());
    let chart = workspace_root().join("charts/eventconsumer");
    let helm = HELM.lock().await;
    cluster::apply_chart_crds(&chart);
    run_ok(
        "helm",
        &[
            "install",
            &release,
            chart.to_str().expect("a UTF-8 path"),
            "--namespace",
            &ns,
            "--set",
            "operator.replicas=0",
        ],
        None,
    );
    drop(helm);
    cleanup.release = Some((release.clone(), ns.clone()));
    let deployment = chart_operator_deployment(&client, &ns, &release).await;
    let pod = deployment.spec.template.spec.expect("a pod template");
    let args = pod.containers[0].args.clone().unwrap_or_default();
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "the default watches every namespace: {args:?}"
    );
    let lease = args
        .iter()
        .find_map(|a| a.strip_prefix("--lease-name="))
        .expect("a --lease-name arg")
        .to_owned();
    let sa = pod.service_account_name.expect("a ServiceAccount");
    let dir = cluster::run_dir(&release);
    std::fs::create_dir_all(&dir).expect("the run directory");
    let kubeconfig = dir.join("operator.kubeconfig");
    cluster::service_account_kubeconfig(&client, &ns, &sa, &kubeconfig).await;
    let kc = kubeconfig.to_str().expect("a UTF-8 path");

    let lease_resource = format!("leases.coordination.k8s.io/{lease}");
    // (verb, resource, where, allowed?)
    let checks: Vec<(&str, &str, &str, bool)> = vec![
        ("list", "eventconsumers.eventconsumer.dev", "-A", true),
        ("watch", "eventconsumers.eventconsumer.dev", "-A", true),
        ("get", "eventconsumers.eventconsumer.dev", "-A", true),
        (
            "patch",
            "eventconsumers.eventconsumer.dev/status",
            "-A",
            true,
        ),
        ("list", "deployments.apps", "-A", true),
        ("watch", "deployments.apps", "-A", true),
        ("create", "deployments.apps", "-A", true),
        ("patch", "deployments.apps", "-A", true),
        ("update", "deployments.apps", "-A", true),
        ("get", "secrets", "-A", true),
        // The watch of Secrets' metadata (operator.watchSecrets, on by default).
        ("list", "secrets", "-A", true),
        ("watch", "secrets", "-A", true),
        ("create", "events.events.k8s.io", "-A", true),
        ("get", &lease_resource, &ns, true),
        ("update", &lease_resource, &ns, true),
        ("create", "leases.coordination.k8s.io", &ns, true),
        // Least privilege: nothing beyond.
        ("update", "eventconsumers.eventconsumer.dev", "-A", false),
        ("delete", "deployments.apps", "-A", false),
        ("update", "secrets", "-A", false),
        ("delete", "secrets", "-A", false),
        ("create", "pods", "-A", false),
        (
            "update",
            "leases.coordination.k8s.io/another-lease",
            &ns,
            false,
        ),
        ("create", "leases.coordination.k8s.io", "default", false),
    ];
    let mut wrong = Vec::new();
    for (verb, resource, place, allowed) in checks {
        let mut args = vec!["--kubeconfig", kc, "auth", "can-i", verb];
        // `resource/subresource` for status; `resource/name` for the Lease.
        let subresource;
        match resource.split_once('/') {
            Some((r, "status")) => {
                subresource = "--subresource=status".to_owned();
                args.extend([r, subresource.as_str()]);
            }
            _ => args.push(resource),
        }
        if place == "-A" {
            args.push("-A");
        } else {
            args.extend(["-n", place]);
        }
        let out = run_quiet("kubectl", &args);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if answer != if allowed { "yes" } else { "no" } {
            wrong.push(format!(
                "can-i {verb} {resource} {place}: {answer} {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "RBAC differs from what the operator needs:\n{}",
        wrong.join("\n")
    );
}

/// The operator Deployment the chart's `release` installed in `ns`.
async fn chart_operator_deployment(client: &Client, ns: &str, release: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"
        )))
        .await
        .expect("listing the chart's Deployments")
        .items
        .into_iter()
        .next()
        .expect("the chart installed the operator Deployment")
}
