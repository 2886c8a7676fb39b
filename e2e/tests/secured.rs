//! The whole product against the local broker's secured listeners, one EventConsumer per
//! mechanism (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN over SASL_SSL, and mutual TLS), all at once
//! under one operator process: credentials only from Secrets (a SASL Secret, a CA Secret, a
//! `kubernetes.io/tls` client certificate Secret), and the principal `consumer` granted
//! exactly the ACLs `contract::acl` lists (the README's table) for the workers, the operator's
//! measurements and retry topics, the redrive and the gateway.
//!
//! Per mechanism: the operator creates the retry topics, the worker (started with the pod's
//! env as the kubelet resolves it and its Secret volumes written out as the kubelet would)
//! consumes orders the gateway published and dead-letters a poison one, the operator measures
//! lag and counts the dead letter, and a DeadLetterRedrive replays it. No password appears in a
//! log, a status, an Event or a Deployment.

mod system_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use eventconsumer_contract::{acl, env};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use system_support::cluster;
use system_support::kafka::{self, TopicReader};
use system_support::procs::{self, Processes, free_port};
use testkit::secure::{Listener, User, pki_text};
use testkit::{eventually, unique_name};

/// A cold TLS handshake, a group join and a measuring round on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Orders each gateway publishes.
const ORDERS: usize = 3;

const CA_SECRET: &str = "kafka-ca";
const SASL_SECRET: &str = "kafka-user";
const CERT_SECRET: &str = "kafka-user-cert";

/// The ACLs on names every test here shares (the redrive's prefixed group and transactional
/// id, the dead-letter scanner's group) are granted to the one principal all tests use. Every
/// test holds this for reading; the one that revokes shared ACLs holds it for writing, so it
/// runs alone.
static SHARED_ACLS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// One EventConsumer and its topics, for one listener.
struct Consumer {
    listener: Listener,
    name: String,
    input: String,
    events: String,
    output: String,
    dlq: String,
    group: String,
}

impl Consumer {
    fn new(listener: Listener, prefix: &str) -> Consumer {
        let name = format!("sec-{}", listener.slug());
        let t = |what: &str| format!("{prefix}{}.{what}", listener.slug());
        Consumer {
            listener,
            input: t("orders"),
            events: t("events"),
            output: t("payments"),
            dlq: t("orders.dlq"),
            group: t("payment"),
            name,
        }
    }

    fn names(&self) -> (Vec<String>, String) {
        (vec![self.input.clone()], self.group.clone())
    }

    /// Exactly what the README lists for this consumer, its operator, redrive and gateway.
    fn acls(&self) -> Vec<acl::Acl> {
        let (topics, group) = self.names();
        let names = acl::Names {
            topics: &topics,
            group: &group,
            output: Some(&self.output),
            dead_letter: &self.dlq,
            retry_topics: true,
            exactly_once: false,
        };
        let mut acls = acl::worker(&names);
        acls.extend(acl::operator(&names));
        acls.extend(acl::redrive(&names));
        acls.extend(acl::gateway(&self.input, &self.events));
        acls.sort();
        acls.dedup();
        acls
    }

    fn manifest(&self, ns: &str) -> Value {
        let mut kafka = json!({
            "bootstrapServers": self.listener.bootstrap(),
            "topics": [self.input],
            "consumerGroup": self.group,
            "tls": {"caSecretRef": {"name": CA_SECRET}},
        });
        match self.listener.mechanism() {
            Some(mechanism) => {
                kafka["sasl"] = json!({"mechanism": mechanism, "secretRef": {"name": SASL_SECRET}});
            }
            None => kafka["tls"]["clientCertSecretRef"] = json!({"name": CERT_SECRET}),
        }
        json!({
            "apiVersion": "eventconsumer.dev/v1alpha1",
            "kind": "EventConsumer",
            "metadata": {"name": self.name, "namespace": ns},
            "spec": {
                "handler": "order",
                "order": {"action": "payment", "outputTopic": self.output},
                "kafka": kafka,
                "delivery": {
                    "mode": "retryTopics",
                    "maxAttempts": 2,
                    "deadLetterTopic": self.dlq,
                    "backoff": {"initial": "100ms", "max": "200ms"},
                },
                "replicas": 1,
            },
        })
    }
}

fn api(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("eventconsumer.dev", "v1alpha1", kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

async fn create_secrets(client: &Client, ns: &str) {
    let user = User::Consumer;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for (name, type_, data) in [
        (CA_SECRET, "Opaque", json!({"ca.crt": pki_text("ca.crt")})),
        (
            SASL_SECRET,
            "Opaque",
            json!({"username": user.name(), "password": user.password()}),
        ),
        (
            CERT_SECRET,
            "kubernetes.io/tls",
            json!({"tls.crt": pki_text("consumer.crt"), "tls.key": pki_text("consumer.key")}),
        ),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "type": type_,
            "stringData": data,
        }))
        .expect("a Secret");
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
    }
}

/// Writes the Secret volumes `pod`'s container mounts under `root`, as the kubelet would
/// (only the listed items, at their paths), and returns (mount path → local directory).
async fn write_secret_volumes(client: &Client, pod: &Pod, root: &Path) -> Vec<(String, PathBuf)> {
    let ns = pod.namespace().expect("a namespace");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let spec = pod.spec.as_ref().expect("a pod spec");
    let container = cluster::worker_container(pod);
    let mut mounted = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap_or_else(|| panic!("mount {} has no volume", mount.name));
        let Some(source) = &volume.secret else {
            continue;
        };
        let name = source.secret_name.as_deref().expect("a Secret name");
        let secret = secrets
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("Secret {ns}/{name}: {e}"));
        let data = secret.data.unwrap_or_default();
        let dir = root.join(&mount.name);
        std::fs::create_dir_all(&dir).expect("a volume directory");
        for item in source.items.iter().flatten() {
            let value = data
                .get(&item.key)
                .unwrap_or_else(|| panic!("Secret {name} has no key {}", item.key));
            std::fs::write(dir.join(&item.path), &value.0).expect("a volume file");
        }
        mounted.push((mount.mount_path.clone(), dir));
    }
    mounted
}

/// Starts the worker as `pod` would run it: its args, its env resolved from the API (Secret
/// values only through `secretKeyRef`), its Secret volumes written locally and the paths into
/// them rewritten, and its own loopback port. Returns that port.
async fn start_worker(client: &Client, procs: &Processes, pod: &Pod, root: &Path) -> u16 {
    let container = cluster::worker_container(pod);
    let (mut vars, from_secrets) = cluster::resolve_env(client, pod, container).await;
    let mounts = write_secret_volumes(client, pod, &root.join(pod.name_any())).await;
    let port = free_port();
    for (name, value) in &mut vars {
        if name == env::HTTP_ADDR {
            *value = format!("127.0.0.1:{port}");
        }
        // A path is inside a mount only at a `/` boundary: `/x/kafka-tls` must not match
        // `/x/kafka-tls-client/tls.crt` (that rewrite once sent the worker to a missing file).
        let inside = mounts.iter().find_map(|(mount_path, dir)| {
            let rest = value.strip_prefix(mount_path.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", dir.display()))
        });
        if let Some(local) = inside {
            *value = local;
        }
        assert!(
            !name.starts_with("EC_SASL_PASSWORD") || from_secrets.contains(name),
            "{name} is not from a Secret"
        );
    }
    let mut cmd = Command::new(&procs::binaries().worker);
    cmd.args(container.args.clone().unwrap_or_default())
        .env_clear()
        .envs(vars);
    procs.spawn(&pod.name_any(), cmd);
    port
}

/// A gateway publishing to `c`'s topics with the same credentials the EventConsumer names,
/// given as the chart would give them (env from the same Secrets). Returns its port.
fn start_gateway(procs: &Processes, c: &Consumer, files: &Path) -> u16 {
    let port = free_port();
    // Files of its own: rewriting a shared one (truncate, then write) while another gateway's
    // client loads it once made that gateway read an empty CA and exit.
    let slug = c.listener.slug();
    let ca = files.join(format!("gateway-{slug}-ca.crt"));
    std::fs::write(&ca, pki_text("ca.crt")).expect("the CA file");
    let mut cmd = Command::new(&procs::binaries().worker);
    cmd.arg("gateway")
        .env_clear()
        .env(env::BOOTSTRAP_SERVERS, c.listener.bootstrap())
        .env(env::TLS_CA_FILE, &ca)
        .env("EC_GATEWAY_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("EC_GATEWAY_ORDERS_TOPIC", &c.input)
        .env("EC_GATEWAY_EVENTS_TOPIC", &c.events);
    let user = User::Consumer;
    match c.listener.mechanism() {
        Some(mechanism) => {
            cmd.env(env::SASL_MECHANISM, mechanism)
                .env(env::SASL_USERNAME, user.name())
                .env(env::SASL_PASSWORD, user.password());
        }
        None => {
            let (cert, key) = (
                files.join(format!("gateway-{slug}.crt")),
                files.join(format!("gateway-{slug}.key")),
            );
            std::fs::write(&cert, pki_text("consumer.crt")).expect("the certificate file");
            std::fs::write(&key, pki_text("consumer.key")).expect("the key file");
            cmd.env(env::TLS_CERT_FILE, &cert)
                .env(env::TLS_KEY_FILE, &key);
        }
    }
    procs.spawn(&format!("gateway-{}", c.listener.slug()), cmd);
    port
}

/// Revokes the ACLs on this run's own resources; the shared ones (the dead-letter scanner's
/// group, the redrive prefix) stay, as other tests running at the same time need them too.
async fn revoke_own(plaintext: &str, principal: &str, c: &Consumer, prefix: &str) {
    let own: Vec<acl::Acl> = c
        .acls()
        .into_iter()
        .filter(|a| a.name.starts_with(prefix))
        .collect();
    testkit::acl::revoke(plaintext, principal, &own).await;
}

async fn http_ok(http: &reqwest::Client, url: &str) -> bool {
    http.get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// What both tests start with: a namespace holding the credential Secrets (the chart's CRDs
/// applied first), a run directory, and the cleanup of what the test creates.
struct Run {
    plaintext: String,
    client: Client,
    ns: String,
    prefix: String,
    dir: PathBuf,
    cleanup: system_support::Cleanup,
    procs: Processes,
}

impl Run {
    async fn start(ns_name: &str, prefix_name: &str) -> Run {
        let plaintext = testkit::kafka_bootstrap();
        let client = testkit::kube_client().await;
        let ns = unique_name(ns_name);
        let prefix = format!("{}.", unique_name(prefix_name));
        let dir = cluster::run_dir(&ns);
        std::fs::create_dir_all(&dir).expect("the run directory");
        let cleanup = system_support::Cleanup {
            release: None,
            namespaces: vec![ns.clone()],
            topics: Vec::new(),
            bootstrap: plaintext.clone(),
        };
        let procs = Processes::new(dir.join("logs"));
        cluster::apply_chart_crds(&procs::workspace_root().join("charts/eventconsumer"));
        cluster::create_namespace(&client, &ns, true).await;
        create_secrets(&client, &ns).await;
        Run {
            plaintext,
            client,
            ns,
            prefix,
            dir,
            cleanup,
            procs,
        }
    }
}

/// The operator, watching `ns` only, measuring every 2 s.
/// `watch_secrets: false` runs the operator with `get` on Secrets only.
fn start_operator(procs: &Processes, ns: &str, watch_secrets: bool) {
    let mut cmd = Command::new(&procs::binaries().operator);
    cmd.args([
        format!("--namespace={ns}"),
        format!("--watch-secrets={watch_secrets}"),
        "--leader-elect=false".to_owned(),
        format!("--http-addr=127.0.0.1:{}", free_port()),
        "--measure-interval=2s".to_owned(),
    ])
    .env_clear()
    .env(
        "KUBECONFIG",
        std::env::var("KUBECONFIG").expect("KUBECONFIG of the local stack"),
    );
    procs.spawn("operator", cmd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_secured_listener_runs_worker_gateway_operator_and_redrive_with_exactly_the_documented_acls()
 {
    let _shared = SHARED_ACLS.read().await;
    let Run {
        plaintext,
        client,
        ns,
        prefix,
        dir,
        mut cleanup,
        procs,
    } = Run::start("e2e-secured", "sec").await;
    let http = reqwest::Client::new();

    let consumers: Vec<Consumer> = Listener::ALL
        .iter()
        .map(|l| Consumer::new(*l, &prefix))
        .collect();
    let principal = User::Consumer.principal();
    for c in &consumers {
        for topic in [&c.input, &c.events, &c.output, &c.dlq] {
            testkit::create_topic(&plaintext, topic, 1).await;
            cleanup.topics.push(topic.clone());
        }
        cleanup.topics.push(format!("{}.retry.1", c.group));
        testkit::acl::grant(&plaintext, &principal, &c.acls()).await;
    }

    // The operator, watching this namespace only, measuring every 2 s.
    start_operator(&procs, &ns, true);
    let ecs = api(&client, &ns, "EventConsumer", "eventconsumers");
    for c in &consumers {
        cluster::apply(&ecs, &c.manifest(&ns)).await;
    }

    // A worker for each pod, a gateway per listener; 3 orders through each gateway, and a
    // poison record straight into each source topic.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mut ports = BTreeMap::new();
    for c in &consumers {
        let pods = eventually(&format!("{}: a Ready pod", c.name), TIMEOUT, || async {
            procs.assert_all_running();
            let d = deployments.get_opt(&c.name).await.ok()??;
            let pods = cluster::ready_pods(&client, &ns, &d).await;
            (pods.len() == 1).then_some(pods)
        })
        .await;
        let port = start_worker(&client, &procs, &pods[0], &dir.join("volumes")).await;
        ports.insert(c.name.clone(), (port, start_gateway(&procs, c, &dir)));
    }
    let producer = kafka::producer(&plaintext);
    for c in &consumers {
        let (worker, gateway) = ports[&c.name];
        for (what, port) in [("worker", worker), ("gateway", gateway)] {
            eventually(
                &format!("{}: the {what} to be ready over {:?}", c.name, c.listener),
                TIMEOUT,
                || async {
                    procs.assert_all_running();
                    http_ok(&http, &format!("http://127.0.0.1:{port}/readyz"))
                        .await
                        .then_some(())
                },
            )
            .await;
        }
        for i in 0..ORDERS {
            let body = json!({
                "customer_id": format!("c-{i}"),
                "items": [{"product_id": "SKU-1", "quantity": 1, "price": 5.0}],
                "total": 5.0,
            });
            let response = http
                .post(format!("http://127.0.0.1:{gateway}/checkout"))
                .json(&body)
                .send()
                .await
                .expect("POST /checkout");
            assert_eq!(response.status().as_u16(), 202, "{}: checkout", c.name);
        }
        kafka::produce(&producer, &c.input, "poison", b"{not an order").await;
    }

    let redrives = api(&client, &ns, "DeadLetterRedrive", "deadletterredrives");
    for c in &consumers {
        let mut out = TopicReader::new(&plaintext, &c.output, 1);
        out.read_until(&format!("{} payments", ORDERS), TIMEOUT, |r| {
            r.len() >= ORDERS
        })
        .await;
        let mut dlq = TopicReader::new(&plaintext, &c.dlq, 1);
        dlq.read_until("the poison order's dead letter", TIMEOUT, |r| !r.is_empty())
            .await;
        // The operator measured lag (0, no error), counted the dead letter and made the
        // retry topic, all over this listener with the consumer's credentials.
        eventually(
            &format!(
                "{}: the operator's lag, dead letters and retry topics",
                c.name
            ),
            TIMEOUT,
            || async {
                procs.assert_all_running();
                let ec = ecs.get(&c.name).await.ok()?;
                let status = &ec.data["status"];
                let retry = cluster::condition(&ec, "RetryTopicsReady")?;
                (status["lag"]["total"] == 0
                    && status["lag"]["error"].is_null()
                    && status["deadLetters"] == 1
                    && retry.0 == "True")
                    .then_some(())
            },
        )
        .await;
        let redrive = json!({
            "apiVersion": "eventconsumer.dev/v1alpha1",
            "kind": "DeadLetterRedrive",
            "metadata": {"name": format!("{}-redrive", c.name)},
            "spec": {"consumer": c.name, "maxRedrives": 3},
        });
        redrives
            .create(
                &PostParams::default(),
                &serde_json::from_value(redrive).expect("a redrive"),
            )
            .await
            .expect("creating the redrive");
    }
    for c in &consumers {
        eventually(
            &format!("{}: the redrive to replay the dead letter", c.name),
            TIMEOUT,
            || async {
                procs.assert_all_running();
                let r = redrives.get(&format!("{}-redrive", c.name)).await.ok()?;
                let status = &r.data["status"];
                (status["phase"] == "Succeeded" && status["replayed"] == 1).then_some(())
            },
        )
        .await;
    }

    // No password anywhere: logs, statuses, Events, Deployments.
    let password = User::Consumer.password();
    let mut seen = String::new();
    for entry in std::fs::read_dir(procs.log_dir()).expect("the log directory") {
        let path = entry.expect("a log file").path();
        seen.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
    }
    let list = ListParams::default();
    seen.push_str(&format!(
        "{:?}",
        ecs.list(&list).await.expect("EventConsumers")
    ));
    seen.push_str(&format!(
        "{:?}",
        redrives.list(&list).await.expect("redrives")
    ));
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    seen.push_str(&format!("{:?}", events.list(&list).await.expect("Events")));
    seen.push_str(&format!(
        "{:?}",
        deployments.list(&list).await.expect("Deployments")
    ));
    assert!(
        !seen.contains(&password),
        "the consumer's password appears in a log, status, Event or Deployment"
    );
    for c in &consumers {
        revoke_own(&plaintext, &principal, c, &prefix).await;
    }
    drop(procs);
    drop(cleanup);
}

/// Creates `c`'s topics (deleted by `cleanup`) and grants the consumer's principal exactly
/// the documented ACLs; returns that principal.
async fn own_topics_and_acls(
    plaintext: &str,
    cleanup: &mut system_support::Cleanup,
    c: &Consumer,
) -> String {
    for topic in [&c.input, &c.output, &c.dlq] {
        testkit::create_topic(plaintext, topic, 1).await;
        cleanup.topics.push(topic.clone());
    }
    cleanup.topics.push(format!("{}.retry.1", c.group));
    let principal = User::Consumer.principal();
    testkit::acl::grant(plaintext, &principal, &c.acls()).await;
    principal
}

/// The reason and message of condition `type_` when it is True.
fn true_condition(object: &DynamicObject, type_: &str) -> Option<(String, String)> {
    let (status, reason, message) = cluster::condition(object, type_)?;
    (status == "True").then_some((reason, message))
}

/// `Degraded`'s reason and message when it is True.
fn degraded(ec: &DynamicObject) -> Option<(String, String)> {
    true_condition(ec, "Degraded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_missing_acl_the_operator_needs_is_named_in_status_and_granting_it_recovers() {
    // Revokes the dead-letter scanner's group, which other tests here rely on: runs alone.
    let _shared = SHARED_ACLS.write().await;
    let Run {
        plaintext,
        client,
        ns,
        prefix,
        mut cleanup,
        procs,
        ..
    } = Run::start("e2e-acls", "acl").await;
    let c = Consumer::new(Listener::Scram512, &prefix);
    let principal = own_topics_and_acls(&plaintext, &mut cleanup, &c).await;
    let acls = c.acls();
    start_operator(&procs, &ns, true);
    let ecs = api(&client, &ns, "EventConsumer", "eventconsumers");
    cluster::apply(&ecs, &c.manifest(&ns)).await;
    let measured = |ec: &DynamicObject| {
        let status = &ec.data["status"];
        status["lag"]["error"].is_null()
            && status["lag"]["total"].is_i64()
            && status["deadLettersError"].is_null()
            && degraded(ec).is_none()
    };
    eventually("a clean measurement with every ACL", TIMEOUT, || async {
        measured(&ecs.get(&c.name).await.ok()?).then_some(())
    })
    .await;

    // The operator's reads, the documented ACLs that allow each, and where their loss shows.
    // Kafka implies Describe (all metadata and offsets need) from Read and Write alike, so
    // the source topic's metadata goes only with both the workers' Read and the redrive's
    // Write.
    let literal = |resource, name: &str, operation| acl::Acl {
        resource,
        name: name.to_owned(),
        pattern: acl::Pattern::Literal,
        operation,
    };
    use acl::{Operation::*, ResourceType::*};
    let producer = kafka::producer(&plaintext);
    // Each row ends with the topic a record then goes to: a caught-up group's commits and a
    // fully scanned dead-letter topic are not read again until something arrives.
    let rows = [
        (
            vec![
                literal(Topic, &c.input, Read),
                literal(Topic, &c.input, Write),
            ],
            "lag",
            &c.input,
        ),
        (vec![literal(Group, &c.group, Read)], "lag", &c.input),
        (vec![literal(Topic, &c.dlq, Read)], "dead letters", &c.dlq),
        (
            vec![literal(Group, acl::DLQ_SCAN_GROUP, Read)],
            "dead letters",
            &c.dlq,
        ),
    ];
    for (lost, shows_in, feed) in rows {
        let acl = &lost[0];
        for one in &lost {
            assert!(acls.contains(one), "{one} is one of the documented ACLs");
        }
        testkit::acl::revoke(&plaintext, &principal, &lost).await;
        kafka::produce(&producer, feed, "acl", b"{}").await;
        let named = eventually(
            &format!("the loss of {acl} to show in {shows_in}"),
            TIMEOUT,
            || async {
                procs.assert_all_running();
                let ec = ecs.get(&c.name).await.ok()?;
                match shows_in {
                    "lag" => {
                        let (reason, message) = degraded(&ec)?;
                        (reason == "KafkaAuthorizationFailed").then_some(message)
                    }
                    _ => ec.data["status"]["deadLettersError"]
                        .as_str()
                        .map(str::to_owned),
                }
            },
        )
        .await;
        eprintln!("without {acl}: {named}");
        assert!(
            named.contains(&acl.name),
            "the error names {}: {named}",
            acl.name
        );
        testkit::acl::grant(&plaintext, &principal, &lost).await;
        eventually(
            &format!("recovery once {acl} is granted"),
            TIMEOUT,
            || async { measured(&ecs.get(&c.name).await.ok()?).then_some(()) },
        )
        .await;
    }

    // Create on the retry topics' prefix matters only when one is missing: delete it.
    let create = acl::Acl {
        resource: Topic,
        name: eventconsumer_contract::retry_topic_prefix(&c.group),
        pattern: acl::Pattern::Prefixed,
        operation: Create,
    };
    assert!(
        acls.contains(&create),
        "{create} is one of the documented ACLs"
    );
    testkit::acl::revoke(&plaintext, &principal, std::slice::from_ref(&create)).await;
    let retry_topic = format!("{}.retry.1", c.group);
    kafka::delete_topics(&plaintext, std::slice::from_ref(&retry_topic)).await;
    let failed = eventually(
        &format!("the loss of {create} to show in RetryTopicsReady"),
        TIMEOUT,
        || async {
            procs.assert_all_running();
            let ec = ecs.get(&c.name).await.ok()?;
            let (status, reason, message) = cluster::condition(&ec, "RetryTopicsReady")?;
            (status == "False" && reason == "RetryTopicCreateFailed").then_some(message)
        },
    )
    .await;
    eprintln!("without {create}: {failed}");
    assert!(
        failed.contains(&retry_topic) && failed.to_lowercase().contains("authoriz"),
        "the condition names the topic and the refusal: {failed}"
    );
    testkit::acl::grant(&plaintext, &principal, std::slice::from_ref(&create)).await;
    eventually(
        &format!("the retry topic created again once {create} is granted"),
        TIMEOUT,
        || async {
            let ec = ecs.get(&c.name).await.ok()?;
            (cluster::condition(&ec, "RetryTopicsReady")?.0 == "True").then_some(())
        },
    )
    .await;
    revoke_own(&plaintext, &principal, &c, &prefix).await;
    drop(procs);
    drop(cleanup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_ca_or_an_expired_or_untrusted_client_certificate_degrades_until_the_secret_is_fixed()
 {
    let _shared = SHARED_ACLS.read().await;
    let Run {
        plaintext,
        client,
        ns,
        prefix,
        mut cleanup,
        procs,
        ..
    } = Run::start("e2e-badtls", "tls").await;
    let c = Consumer::new(Listener::Mtls, &prefix);
    let principal = own_topics_and_acls(&plaintext, &mut cleanup, &c).await;
    start_operator(&procs, &ns, true);
    let ecs = api(&client, &ns, "EventConsumer", "eventconsumers");
    cluster::apply(&ecs, &c.manifest(&ns)).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let set = |name: &'static str, data: Value| {
        let secrets = secrets.clone();
        async move {
            secrets
                .patch(
                    name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&json!({ "stringData": data })),
                )
                .await
                .unwrap_or_else(|e| panic!("patching Secret {name}: {e}"));
        }
    };
    let cert = |name: &str| {
        json!({
            "tls.crt": pki_text(&format!("{name}.crt")),
            "tls.key": pki_text(&format!("{name}.key")),
        })
    };
    let clean = || async {
        let ec = ecs.get(&c.name).await.ok()?;
        let lag = &ec.data["status"]["lag"];
        (lag["error"].is_null() && lag["total"].is_i64() && degraded(&ec).is_none()).then_some(())
    };
    eventually("a clean measurement over mutual TLS", TIMEOUT, clean).await;

    let cases = [
        (
            "a CA that did not sign the brokers' certificates",
            CA_SECRET,
            json!({ "ca.crt": pki_text("rogue-ca.crt") }),
            json!({ "ca.crt": pki_text("ca.crt") }),
        ),
        (
            "an expired client certificate",
            CERT_SECRET,
            cert("consumer-expired"),
            cert("consumer"),
        ),
        (
            "a client certificate from another CA",
            CERT_SECRET,
            cert("rogue-consumer"),
            cert("consumer"),
        ),
    ];
    for (i, (what, secret, bad, good)) in cases.into_iter().enumerate() {
        let started = std::time::Instant::now();
        set(secret, bad).await;
        // The operator reads the Secrets again at its next reconcile (which the observer's
        // status refresh brings within about a minute): a label change brings it now.
        let mut touched = c.manifest(&ns);
        touched["metadata"]["labels"] = json!({ "case": i.to_string() });
        cluster::apply(&ecs, &touched).await;
        let named = eventually(&format!("Degraded for {what}"), TIMEOUT, || async {
            procs.assert_all_running();
            let ec = ecs.get(&c.name).await.ok()?;
            let (reason, message) = degraded(&ec)?;
            (reason == "KafkaAuthenticationFailed").then_some(message)
        })
        .await;
        eprintln!(
            "with {what} (Degraded after {:?}): {named}",
            started.elapsed()
        );
        assert!(
            named.contains("SSL") || named.contains("TLS") || named.contains("certificate"),
            "Degraded names the TLS failure for {what}: {named}"
        );
        set(secret, good).await;
        eventually(&format!("recovery after {what}"), TIMEOUT, clean).await;
        eprintln!("recovered from {what} after {:?}", started.elapsed());
    }
    revoke_own(&plaintext, &principal, &c, &prefix).await;
    drop(procs);
    drop(cleanup);
}

/// The pod template annotation carrying the versions of the Secrets the pods read.
const SECRETS_ANNOTATION: &str = "eventconsumer.dev/kafka-secrets";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_shows_in_status_without_the_password_and_a_rotated_secret_recovers_and_rolls_the_pods()
 {
    let _shared = SHARED_ACLS.read().await;
    let Run {
        plaintext,
        client,
        ns,
        prefix,
        mut cleanup,
        procs,
        ..
    } = Run::start("e2e-badcreds", "bad").await;
    let c = Consumer::new(Listener::Scram512, &prefix);
    let principal = own_topics_and_acls(&plaintext, &mut cleanup, &c).await;

    // The SASL Secret holds a wrong password.
    let wrong = unique_name("wrong-password");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let set_password = |password: String| {
        let secrets = secrets.clone();
        async move {
            let patch = json!({"stringData": {"password": password}});
            secrets
                .patch(
                    SASL_SECRET,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .expect("patching the SASL Secret");
        }
    };
    set_password(wrong.clone()).await;

    // Secrets not watched: the rotation must reach the pods through the observer (below).
    start_operator(&procs, &ns, false);
    let ecs = api(&client, &ns, "EventConsumer", "eventconsumers");
    cluster::apply(&ecs, &c.manifest(&ns)).await;

    let refused = eventually(
        "the operator to report the refused credentials in status.lag.error",
        TIMEOUT,
        || async {
            procs.assert_all_running();
            let ec = ecs.get(&c.name).await.ok()?;
            let error = ec.data["status"]["lag"]["error"].as_str()?.to_owned();
            Some(error)
        },
    )
    .await;
    eprintln!("status.lag.error with the wrong password: {refused}");
    assert!(
        refused.to_lowercase().contains("authentication"),
        "the lag error names the cause: {refused}"
    );
    let named = eventually("Degraded to name the refusal", TIMEOUT, || async {
        let ec = ecs.get(&c.name).await.ok()?;
        let (reason, message) = degraded(&ec)?;
        (reason == "KafkaAuthenticationFailed").then_some(message)
    })
    .await;
    assert!(
        named.to_lowercase().contains("authentication"),
        "Degraded names the cause: {named}"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let annotation = |d: &Deployment| {
        d.spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(SECRETS_ANNOTATION).cloned())
    };
    let before = eventually("the Deployment", TIMEOUT, || async {
        annotation(&deployments.get_opt(&c.name).await.ok()??)
    })
    .await;

    // Rotated to the right password: the operator's clients recover, and the pods roll.
    set_password(User::Consumer.password()).await;
    eventually(
        "the lag measured without error after the Secret was fixed",
        TIMEOUT,
        || async {
            procs.assert_all_running();
            let ec = ecs.get(&c.name).await.ok()?;
            let lag = &ec.data["status"]["lag"];
            let clear = degraded(&ec).is_none();
            (lag["error"].is_null() && lag["total"].is_i64() && clear).then_some(())
        },
    )
    .await;
    // No spec change: the observer's status write that clears the error makes the reconciler
    // look again, and it reads the Secret's new version.
    let after = eventually(
        "the pod template to change with the Secret's version",
        TIMEOUT,
        || async {
            let now = annotation(&deployments.get_opt(&c.name).await.ok()??)?;
            (now != before).then_some(now)
        },
    )
    .await;
    assert!(after.contains(SASL_SECRET), "{after}");

    let mut seen = String::new();
    for entry in std::fs::read_dir(procs.log_dir()).expect("the log directory") {
        seen.push_str(&std::fs::read_to_string(entry.expect("a log").path()).unwrap_or_default());
    }
    let list = ListParams::default();
    seen.push_str(&format!(
        "{:?}",
        ecs.list(&list).await.expect("EventConsumers")
    ));
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    seen.push_str(&format!("{:?}", events.list(&list).await.expect("Events")));
    seen.push_str(&format!(
        "{:?}",
        deployments.list(&list).await.expect("Deployments")
    ));
    for password in [wrong, User::Consumer.password()] {
        assert!(
            !seen.contains(&password),
            "a password appears in a log, status, Event or Deployment"
        );
    }
    revoke_own(&plaintext, &principal, &c, &prefix).await;
    drop(procs);
    drop(cleanup);
}

/// A dead letter of `c`'s group, as a worker writes it (the headers a redrive selects by).
async fn dead_letter(plaintext: &str, c: &Consumer) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: eventconsumer_contract::headers::DLT_CONSUMER_GROUP,
            value: Some(c.group.as_str()),
        })
        .insert(Header {
            key: eventconsumer_contract::headers::DLT_ORIGINAL_TOPIC,
            value: Some(c.input.as_str()),
        });
    kafka::producer(plaintext)
        .send(
            FutureRecord::to(&c.dlq)
                .key("dead")
                .payload(b"{}".as_slice())
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("producing a dead letter: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_missing_acl_a_redrive_needs_blocks_it_by_name_and_granting_it_lets_it_finish() {
    // Revokes ACLs other tests here rely on: runs alone.
    let _shared = SHARED_ACLS.write().await;
    let Run {
        plaintext,
        client,
        ns,
        prefix,
        mut cleanup,
        procs,
        ..
    } = Run::start("e2e-redrive-acls", "racl").await;
    let c = Consumer::new(Listener::Scram512, &prefix);
    let principal = own_topics_and_acls(&plaintext, &mut cleanup, &c).await;
    start_operator(&procs, &ns, true);
    let ecs = api(&client, &ns, "EventConsumer", "eventconsumers");
    let mut manifest = c.manifest(&ns);
    // No workers: the dead letters are written here, and only the redrive reads them.
    manifest["spec"]["paused"] = json!(true);
    cluster::apply(&ecs, &manifest).await;
    let redrives = api(&client, &ns, "DeadLetterRedrive", "deadletterredrives");
    let (topics, group) = c.names();
    let names = acl::Names {
        topics: &topics,
        group: &group,
        output: Some(&c.output),
        dead_letter: &c.dlq,
        retry_topics: true,
        exactly_once: false,
    };
    let documented = acl::redrive(&names);
    for (i, lost) in documented.iter().enumerate() {
        // One more dead letter each time; each redrive replays all of them.
        dead_letter(&plaintext, &c).await;
        let replayed = i + 1;
        assert_eq!(
            testkit::acl::revoke(&plaintext, &principal, std::slice::from_ref(lost)).await,
            1,
            "{lost} was granted"
        );
        let name = format!("{}-{i}", c.name);
        let redrive = json!({
            "apiVersion": "eventconsumer.dev/v1alpha1",
            "kind": "DeadLetterRedrive",
            "metadata": {"name": name},
            "spec": {"consumer": c.name, "maxRedrives": 100},
        });
        redrives
            .create(
                &PostParams::default(),
                &serde_json::from_value(redrive).expect("a redrive"),
            )
            .await
            .expect("creating the redrive");
        let (reason, message) = eventually(
            &format!("the redrive without {lost} to be Blocked"),
            TIMEOUT,
            || async {
                procs.assert_all_running();
                true_condition(&redrives.get(&name).await.ok()?, "Blocked")
            },
        )
        .await;
        eprintln!("without {lost}: {reason}: {message}");
        assert_eq!(
            reason, "KafkaAuthorizationFailed",
            "without {lost}: {message}"
        );
        assert!(
            message.contains(&lost.to_string()),
            "the condition names the missing {lost}: {message}"
        );
        testkit::acl::grant(&plaintext, &principal, std::slice::from_ref(lost)).await;
        eventually(
            &format!("the redrive to finish once {lost} is granted"),
            TIMEOUT,
            || async {
                procs.assert_all_running();
                let r = redrives.get(&name).await.ok()?;
                let status = &r.data["status"];
                (status["phase"] == "Succeeded" && status["replayed"] == replayed).then_some(())
            },
        )
        .await;
    }
    revoke_own(&plaintext, &principal, &c, &prefix).await;
    drop(procs);
    drop(cleanup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_missing_acl_the_gateway_needs_is_named_in_its_answer_and_granting_it_recovers() {
    let _shared = SHARED_ACLS.read().await;
    let Run {
        plaintext,
        prefix,
        dir,
        mut cleanup,
        procs,
        ..
    } = Run::start("e2e-gateway-acls", "gacl").await;
    let c = Consumer::new(Listener::Scram256, &prefix);
    testkit::create_topic(&plaintext, &c.events, 1).await;
    cleanup.topics.push(c.events.clone());
    let principal = own_topics_and_acls(&plaintext, &mut cleanup, &c).await;
    let port = start_gateway(&procs, &c, &dir);
    let http = reqwest::Client::new();
    eventually("the gateway to be ready", TIMEOUT, || async {
        procs.assert_all_running();
        http_ok(&http, &format!("http://127.0.0.1:{port}/readyz"))
            .await
            .then_some(())
    })
    .await;
    let checkout = json!({
        "customer_id": "c-1",
        "items": [{"product_id": "SKU-1", "quantity": 1, "price": 5.0}],
        "total": 5.0,
    });
    let event = json!({
        "type": "page_view",
        "user_id": "u-1",
        "session_id": "s-1",
        "payload": {"path": "/"},
    });
    let post = |path: &'static str, body: Value| {
        let http = http.clone();
        async move {
            let response = http
                .post(format!("http://127.0.0.1:{port}{path}"))
                .json(&body)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .expect("an answer");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };
    for (lost, path, body, topic) in [
        (
            acl::gateway(&c.input, &c.events)[0].clone(),
            "/checkout",
            checkout,
            &c.input,
        ),
        (
            acl::gateway(&c.input, &c.events)[1].clone(),
            "/events",
            event,
            &c.events,
        ),
    ] {
        let accepted = |status: u16| (200..300).contains(&status);
        let (status, answer) = post(path, body.clone()).await;
        assert!(accepted(status), "{path} with every ACL: {status} {answer}");
        let before = kafka::end_offset(&plaintext, topic).await;
        assert_eq!(
            testkit::acl::revoke(&plaintext, &principal, std::slice::from_ref(&lost)).await,
            1,
            "{lost} was granted"
        );
        let (status, answer) = eventually(
            &format!("{path} to be refused without {lost}"),
            TIMEOUT,
            || async {
                procs.assert_all_running();
                let (status, answer) = post(path, body.clone()).await;
                (!accepted(status)).then_some((status, answer))
            },
        )
        .await;
        eprintln!("{path} without {lost}: {status} {answer}");
        assert_eq!(status, 503, "{answer}");
        let answer: Value = serde_json::from_str(&answer).expect("a JSON error body");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(topic.as_str()) && message.to_lowercase().contains("authorization"),
            "the answer names the topic and the refusal: {answer}"
        );
        testkit::acl::grant(&plaintext, &principal, std::slice::from_ref(&lost)).await;
        eventually(
            &format!("{path} to be accepted again once {lost} is granted"),
            TIMEOUT,
            || async {
                procs.assert_all_running();
                accepted(post(path, body.clone()).await.0).then_some(())
            },
        )
        .await;
        // Only the one accepted request reached the topic: the refused ones wrote nothing,
        // then or later.
        assert_eq!(
            kafka::end_offset(&plaintext, topic).await - before,
            1,
            "{path}: records written since the ACL was revoked"
        );
    }
    revoke_own(&plaintext, &principal, &c, &prefix).await;
    drop(procs);
    drop(cleanup);
}
