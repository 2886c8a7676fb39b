//! Never silent, never drifting, against the real API server of the local stack:
//! - a spec admission accepts but the API server refuses as a Deployment (quota, an admission
//!   policy, Deployment validation) ends as `Degraded=True` with the API server's reason and a
//!   Warning Event, and recovers by itself once the obstacle is gone;
//! - every field another manager adds to a managed Deployment's spec is removed, with a Warning
//!   Event naming it, while `kubectl rollout restart`'s annotation stays;
//! - a property test: random EventConsumers, valid and not, are each either refused at
//!   admission naming a field, or reconciled to a Deployment or to a Degraded condition within
//!   a bounded time.
#![forbid(unsafe_code)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use eventconsumer_operator::crd::EventConsumer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};
use support::{TIMEOUT, TestEnv, condition, env_value, order_manifest};
use testkit::{eventually, unique_name};

/// The Warning Events about `name` with `reason`.
async fn warnings(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .map(|list| list.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

/// Waits for `Degraded=True` with `reason` on `name` and returns its message.
async fn degraded_with(env: &TestEnv, name: &str, reason: &str) -> String {
    let ec = env
        .status_where(name, &format!("Degraded=True reason {reason}"), |_, s| {
            condition(s, "Degraded").is_some_and(|(st, r, _)| st == "True" && r == reason)
        })
        .await;
    let (_, _, message) = condition(ec.status.as_ref().expect("status"), "Degraded").expect("set");
    message
}

#[tokio::test]
async fn a_deployment_over_quota_degrades_the_consumer_until_the_quota_allows_it() {
    let env = TestEnv::new("ec-quota").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(env.client.clone(), &env.ns);
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": { "name": "no-deployments" },
        "spec": { "hard": { "count/deployments.apps": "0" } }
    }))
    .expect("quota");
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("create the quota");
    // The quota controller must have computed usage before it refuses anything.
    eventually("the quota to have its usage", TIMEOUT, || async {
        let q = quotas.get("no-deployments").await.ok()?;
        q.status?.used.filter(|u| !u.is_empty()).map(|_| ())
    })
    .await;
    let _operator = env.start_operator();
    let name = unique_name("quota");
    env.apply(&order_manifest(&name)).await;

    let message = degraded_with(&env, &name, "QuotaExceeded").await;
    assert!(
        message.contains("exceeded quota") && message.contains("ResourceQuota"),
        "{message}"
    );
    let warning = eventually("a QuotaExceeded Warning Event", TIMEOUT, || async {
        warnings(&env.client, &env.ns, &name, "QuotaExceeded")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(warning.note.unwrap_or_default().contains("exceeded quota"));

    quotas
        .delete("no-deployments", &DeleteParams::default())
        .await
        .expect("delete the quota");
    env.deployment_where(&name, "the Deployment once the quota is gone", |_| true)
        .await;
    env.status_where(&name, "Degraded=False", |_, s| {
        condition(s, "Degraded").is_some_and(|(st, _, _)| st == "False")
    })
    .await;
}

#[tokio::test]
async fn a_deployment_an_admission_policy_or_validation_refuses_degrades_the_consumer() {
    let env = TestEnv::new("ec-refused").await;
    let policy = format!("deny-gpu-{}", env.ns);
    let policies = ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: "ValidatingAdmissionPolicy".into(),
        plural: "validatingadmissionpolicies".into(),
    };
    let bindings = ApiResource {
        kind: "ValidatingAdmissionPolicyBinding".into(),
        plural: "validatingadmissionpolicybindings".into(),
        ..policies.clone()
    };
    let apply = |resource: &ApiResource, body: Value| {
        let api: Api<DynamicObject> = Api::all_with(env.client.clone(), resource);
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        async move {
            let object: DynamicObject = serde_json::from_value(body).expect("object");
            api.patch(
                &name,
                &PatchParams::apply("eventconsumer-tests").force(),
                &Patch::Apply(&object),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {name}: {e}"));
        }
    };
    apply(
        &policies,
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": { "name": policy },
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": { "resourceRules": [{
                    "apiGroups": ["apps"], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]
                }] },
                "validations": [{
                    "expression": "!has(object.spec.template.spec.nodeSelector) || !('gpu' in object.spec.template.spec.nodeSelector)",
                    "message": "GPU nodes are reserved",
                    "reason": "Forbidden"
                }]
            }
        }),
    )
    .await;
    apply(
        &bindings,
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": { "name": policy },
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": { "namespaceSelector": { "matchLabels": {
                    "kubernetes.io/metadata.name": env.ns
                } } }
            }
        }),
    )
    .await;

    // The policy takes effect a moment after it is created: wait until it refuses a dry run.
    let probe: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "probe" },
        "spec": {
            "selector": { "matchLabels": { "app": "probe" } },
            "template": {
                "metadata": { "labels": { "app": "probe" } },
                "spec": { "nodeSelector": { "gpu": "true" },
                          "containers": [{ "name": "c", "image": "probe" }] }
            }
        }
    }))
    .expect("probe");
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually("the admission policy to be in force", TIMEOUT, || async {
        match env.deployments().create(&dry_run, &probe).await {
            Err(kube::Error::Api(status)) if status.code == 403 => Some(()),
            _ => None,
        }
    })
    .await;

    let _operator = env.start_operator();
    let gpu = unique_name("gpu");
    let mut manifest = order_manifest(&gpu);
    manifest["spec"]["nodeSelector"] = json!({ "gpu": "true" });
    env.apply(&manifest).await;
    let message = degraded_with(&env, &gpu, "DeploymentForbidden").await;
    assert!(message.contains("GPU nodes are reserved"), "{message}");

    // Deployment validation: requests above limits (the operator leaves that rule to the
    // API server, which names the Deployment's field).
    let greedy = unique_name("greedy");
    let mut manifest = order_manifest(&greedy);
    manifest["spec"]["resources"] = json!({ "requests": { "cpu": "2" }, "limits": { "cpu": "1" } });
    env.apply(&manifest).await;
    let message = degraded_with(&env, &greedy, "DeploymentInvalid").await;
    assert!(
        message.contains("422 Invalid") && message.contains("limit"),
        "{message}"
    );
    eventually("a DeploymentInvalid Warning Event", TIMEOUT, || async {
        warnings(&env.client, &env.ns, &greedy, "DeploymentInvalid")
            .await
            .into_iter()
            .next()
    })
    .await;

    // A node selector key Kubernetes never accepts: the operator names the EventConsumer's
    // field before the API server could name the Deployment's.
    let bad_key = unique_name("badkey");
    let mut manifest = order_manifest(&bad_key);
    manifest["spec"]["nodeSelector"] = json!({ "not a label!": "x" });
    env.apply(&manifest).await;
    let message = degraded_with(&env, &bad_key, "InvalidSpec").await;
    assert!(
        message.starts_with("spec.nodeSelector[\"not a label!\"]:"),
        "{message}"
    );

    // Without the policy, the GPU consumer gets its Deployment by itself (bounded recheck).
    for resource in [&bindings, &policies] {
        let api: Api<DynamicObject> = Api::all_with(env.client.clone(), resource);
        api.delete(&policy, &DeleteParams::default())
            .await
            .expect("delete the policy");
    }
    env.deployment_where(&gpu, "the Deployment once the policy is gone", |_| true)
        .await;
}

/// The worker container as JSON, for edits the typed API does not make easy to read.
fn worker_container(d: &Deployment) -> Value {
    serde_json::to_value(&d.spec.template.spec.as_ref().expect("pod").containers[0])
        .expect("container")
}

#[tokio::test]
async fn every_kind_of_field_another_manager_adds_is_removed_with_a_warning() {
    let env = TestEnv::new("ec-drift-whole").await;
    let _operator = env.start_operator();
    let name = unique_name("drift");
    env.apply(&order_manifest(&name)).await;
    let original = env
        .deployment_where(&name, "the Deployment", |_| true)
        .await;
    let original_container = worker_container(&original);
    let original_pod =
        serde_json::to_value(original.spec.template.spec.as_ref().expect("pod")).expect("pod");

    // `kubectl set env`: a testing switch that would make the consumer publish nothing.
    let out = env.kubectl(&[
        "set",
        "env",
        &format!("deployment/{name}"),
        "-c",
        "worker",
        "EC_NO_OUTPUT=true",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.deployment_where(&name, "the added env var to be removed", |d| {
        env_value(d, "EC_NO_OUTPUT").is_none()
    })
    .await;
    let warning = eventually("a ManualEditReverted Warning Event", TIMEOUT, || async {
        warnings(&env.client, &env.ns, &name, "ManualEditReverted")
            .await
            .into_iter()
            .find(|e| {
                e.note
                    .as_deref()
                    .unwrap_or_default()
                    .contains("EC_NO_OUTPUT")
            })
    })
    .await;
    let note = warning.note.unwrap_or_default();
    assert!(
        note.contains("spec.template.spec.containers[name=worker].env[name=EC_NO_OUTPUT]")
            && note.contains("kubectl-set"),
        "{note}"
    );

    // JSON patches, each adding one kind of field.
    let patches: Vec<(&str, Value)> = vec![
        (
            "an added capability",
            json!([{ "op": "add",
                "path": "/spec/template/spec/containers/0/securityContext/capabilities/add",
                "value": ["NET_ADMIN"] }]),
        ),
        (
            "a pod securityContext field",
            json!([{ "op": "add", "path": "/spec/template/spec/securityContext/runAsUser",
                "value": 0 }]),
        ),
        (
            "a volume and its mount",
            json!([
                { "op": "add", "path": "/spec/template/spec/volumes/-",
                  "value": { "name": "extra", "emptyDir": {} } },
                { "op": "add", "path": "/spec/template/spec/containers/0/volumeMounts/-",
                  "value": { "name": "extra", "mountPath": "/extra" } }
            ]),
        ),
        (
            "a sidecar container",
            json!([{ "op": "add", "path": "/spec/template/spec/containers/-",
                "value": { "name": "sidecar", "image": "busybox" } }]),
        ),
        (
            "a template annotation",
            json!([{ "op": "add",
                "path": "/spec/template/metadata/annotations/sidecar.example~1inject",
                "value": "true" }]),
        ),
        (
            "a Deployment spec field",
            json!([{ "op": "add", "path": "/spec/minReadySeconds", "value": 30 }]),
        ),
    ];
    for (what, patch) in patches {
        env.deployments()
            .patch(
                &name,
                &PatchParams {
                    field_manager: Some("kubectl-patch".to_owned()),
                    ..Default::default()
                },
                &Patch::Json::<()>(serde_json::from_value(patch).expect("JSON patch")),
            )
            .await
            .unwrap_or_else(|e| panic!("adding {what}: {e}"));
        let reverted = env
            .deployment_where(&name, &format!("{what} to be removed"), |d| {
                let pod =
                    serde_json::to_value(d.spec.template.spec.as_ref().expect("pod")).expect("pod");
                pod == original_pod
                    && d.spec.min_ready_seconds == original.spec.min_ready_seconds
                    && d.spec.template.metadata == original.spec.template.metadata
            })
            .await;
        assert_eq!(worker_container(&reverted), original_container, "{what}");
    }

    // `kubectl rollout restart` is allowed: its annotation stays.
    let out = env.kubectl(&["rollout", "restart", &format!("deployment/{name}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restarted = env
        .deployment_where(&name, "the restart annotation", |d| {
            restarted_at(d).is_some()
        })
        .await;
    let generation = restarted.metadata.generation;
    // A later reconcile (triggered by a spec change) keeps it too.
    let mut manifest = order_manifest(&name);
    manifest["spec"]["logLevel"] = json!("debug");
    env.apply(&manifest).await;
    let updated = env
        .deployment_where(&name, "the spec change applied", |d| {
            env_value(d, "EC_LOG_LEVEL").as_deref() == Some("debug")
        })
        .await;
    assert_eq!(restarted_at(&updated), restarted_at(&restarted));
    assert!(updated.metadata.generation > generation);
}

fn restarted_at(d: &Deployment) -> Option<String> {
    d.spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("kubectl.kubernetes.io/restartedAt")
        .cloned()
}

// ---------------------------------------------------------------------------------------------
// The property test.

/// How many random EventConsumers one run creates (`EC_PROPERTY_CASES` overrides): enough to
/// mix every kind of value below several times, few enough for the warm `make test` budget.
const DEFAULT_CASES: u32 = 60;
/// How long an admitted consumer may take to get its Deployment or its Degraded condition.
const BOUND: Duration = Duration::from_secs(60);

fn one_of(values: &[&'static str]) -> impl Strategy<Value = Value> + use<> {
    proptest::sample::select(values.to_vec()).prop_map(|v| json!(v))
}

/// Names: mostly valid, some around the 63-character limit.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z][a-z0-9-]{0,20}[a-z0-9]",
        1 => (58usize..66).prop_map(|n| format!("n{}", "x".repeat(n - 1))),
    ]
}

/// A valid spec: every handler, both delivery modes, optional fields set or not.
fn valid_spec() -> impl Strategy<Value = Value> {
    let handler = prop_oneof![
        Just(json!({ "handler": "order", "order": { "action": "inventory" } })),
        Just(json!({ "handler": "order", "order": { "action": "payment",
            "sinkUrl": "http://sink:8080/pay" } })),
        Just(json!({ "handler": "analytics", "analytics": { "window": "10s" } })),
        Just(json!({ "handler": "video", "video": { "stage": "transcode" } })),
    ];
    (
        handler,
        1u32..65536,
        proptest::collection::btree_set("[a-z]{1,12}(\\.[a-z]{1,8})?", 1..3),
        proptest::option::of("[a-z][a-z0-9.-]{0,30}"),
        one_of(&["blocking", "retryTopics"]),
        1i64..=10,
        (1u32..500, proptest::sample::select(vec!["ms", "s"])),
        0i64..3,
    )
        .prop_map(
            |(handler, port, topics, group, mode, attempts, (n, unit), replicas)| {
                let mut spec = handler;
                spec["kafka"] = json!({ "bootstrapServers": format!("kafka:{port}"),
                    "topics": topics });
                if let Some(group) = group {
                    spec["kafka"]["consumerGroup"] = json!(group);
                }
                spec["delivery"] = json!({ "mode": mode, "maxAttempts": attempts,
                    "backoff": { "initial": format!("{n}{unit}") } });
                spec["replicas"] = json!(replicas);
                spec
            },
        )
}

/// One edit of a valid spec (a JSON pointer into the spec and a value): a value admission must refuse, or one it admits that may still
/// not become a Deployment (it reaches a Kubernetes name, label, quantity or Kafka setting).
fn edit() -> impl Strategy<Value = (&'static str, Value)> {
    let at = |pointer: &'static str, values: Vec<Value>| {
        proptest::sample::select(values).prop_map(move |v| (pointer, v))
    };
    prop_oneof![
        at("/handler", vec![json!("email"), json!("video")]),
        at(
            "/kafka/bootstrapServers",
            vec![
                json!("kafka"),
                json!("kafka:0"),
                json!("kafka:65536"),
                json!("kafka:99999"),
                json!("kafka:9092,"),
                json!("with space:9092"),
                json!("a:1,b:65535"),
            ]
        ),
        at(
            "/kafka/topics",
            vec![
                json!([]),
                json!(["bad topic"]),
                json!([".."]),
                json!(["a", "a"]),
                json!(["a", "a.dlq"]),
                json!(["t".repeat(245)]),
                json!(["t".repeat(246)]),
                json!(["t".repeat(250)]),
            ]
        ),
        at(
            "/kafka/consumerGroup",
            vec![
                json!("g".repeat(241)),
                json!("g".repeat(242)),
                json!(""),
                json!("bad group"),
            ]
        ),
        at(
            "/delivery/maxAttempts",
            vec![json!(0), json!(11), json!(100), json!(101)]
        ),
        at(
            "/delivery/attemptTimeout",
            vec![
                json!("0s"),
                json!("1d"),
                json!("5 s"),
                json!("99999999999999h"),
                json!("9999999h"),
                json!("999999h"),
            ]
        ),
        at(
            "/delivery/backoff/max",
            vec![json!("1ms"), json!("9999999h"), json!("1h")]
        ),
        at(
            "/delivery/deadLetterTopic",
            vec![json!("order.placed"), json!("x.dlq")]
        ),
        at("/replicas", vec![json!(-1), json!(5)]),
        at(
            "/nodeSelector",
            vec![
                json!({ "pool": "a" }),
                json!({ "not a label!": "x" }),
                json!({ "pool": "x".repeat(70) }),
            ]
        ),
        at(
            "/resources",
            vec![
                json!({ "requests": { "cpu": "50m", "memory": "32Mi" } }),
                json!({ "requests": { "cpu": "2" }, "limits": { "cpu": "1" } }),
                json!({ "requests": { "cpu": "lots" } }),
            ]
        ),
        at(
            "/logLevel",
            vec![json!("debug"), json!("no spaces!"), json!("")]
        ),
        at(
            "/image",
            vec![json!("registry.example/worker:1"), json!("has space")]
        ),
        at(
            "/tolerations",
            vec![
                json!([{ "key": "gpu", "operator": "Exists", "effect": "NoSchedule" }]),
                json!([{ "key": "gpu", "operator": "Sometimes" }]),
            ]
        ),
    ]
}

/// A valid spec with zero to two edits: a third pristine, the rest each broken in one or two
/// places.
fn spec() -> impl Strategy<Value = Value> {
    (valid_spec(), proptest::collection::vec(edit(), 0..=2)).prop_map(|(mut spec, edits)| {
        for (pointer, value) in edits {
            let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
            if let Some(Value::Object(map)) = spec.pointer_mut(parent) {
                map.insert(key.to_owned(), value);
            }
        }
        spec
    })
}

/// A field path such as `spec.kafka.topics[0]` or `metadata.name` in an API server message.
fn names_a_field(message: &str) -> bool {
    message.contains("spec.") || message.contains("metadata.name")
}

#[tokio::test]
async fn random_consumers_are_refused_naming_a_field_or_reconciled_to_a_deployment_or_degraded() {
    let cases: u32 = std::env::var("EC_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let seed: u64 = std::env::var("EC_PROPERTY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand_seed);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = (name(), spec());

    let env = TestEnv::new("ec-property").await;
    let _operator = env.start_operator();
    let resource = ApiResource::erase::<EventConsumer>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.ns, &resource);

    let mut failures = Vec::new();
    let mut admitted = Vec::new();
    let (mut refused, mut names) = (0, BTreeMap::new());
    for i in 0..cases {
        let (name, spec) = strategy
            .new_tree(&mut runner)
            .expect("a generated case")
            .current();
        // Names must differ between cases; the suffix keeps the generated length class.
        let name = if name.len() > 40 {
            format!("{name}{i}")
        } else {
            format!("{name}-{i}")
        };
        let manifest = json!({
            "apiVersion": "eventconsumer.dev/v1alpha1",
            "kind": "EventConsumer",
            "metadata": { "name": name },
            "spec": spec,
        });
        let object: DynamicObject = serde_json::from_value(manifest.clone()).expect("manifest");
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {
                names.insert(name.clone(), manifest);
                admitted.push(name);
            }
            Err(kube::Error::Api(status)) if status.code == 422 => {
                refused += 1;
                if !names_a_field(&status.message)
                    || status.message.contains("no such overload")
                    || status.message.contains("type conversion")
                {
                    failures.push(format!(
                        "refused without naming a field in a sentence: {}\n  {manifest}",
                        status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("create failed: {e}\n  {manifest}")),
        }
    }

    // Every admitted one: its Deployment, or Degraded=True naming what to change.
    let consumers = env.consumers();
    let deployments = env.deployments();
    let started = tokio::time::Instant::now();
    let mut pending: Vec<String> = admitted.clone();
    let mut degraded = Vec::new();
    while !pending.is_empty() && started.elapsed() < BOUND {
        let mut still = Vec::new();
        for name in pending {
            let ec = consumers.get_opt(&name).await.ok().flatten();
            let status = ec.as_ref().and_then(|ec| ec.status.clone());
            let degraded_message = status
                .as_ref()
                .and_then(|s| condition(s, "Degraded"))
                .filter(|(st, _, _)| st == "True")
                .map(|(_, reason, message)| (reason, message));
            let deployed = deployments
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .is_some_and(|d| d.owner_references().iter().any(|o| o.name == name))
                && status
                    .as_ref()
                    .and_then(|s| condition(s, "Degraded"))
                    .is_some_and(|(st, _, _)| st == "False");
            match degraded_message {
                Some((reason, message)) => degraded.push((name, reason, message)),
                None if deployed => {}
                None => still.push(name),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for name in &pending {
        failures.push(format!(
            "admitted but silent after {BOUND:?}: no Deployment and no Degraded condition\n  {}",
            names[name]
        ));
    }
    for (name, reason, message) in &degraded {
        if !(names_a_field(message) || message.contains("Deployment")) {
            failures.push(format!(
                "Degraded ({reason}) without naming what to change: {message}\n  {}",
                names[name]
            ));
        }
    }
    // Each Degraded one also has its Warning Event.
    for (name, reason, _) in &degraded {
        eventually(
            &format!("a {reason} Warning Event for {name}"),
            TIMEOUT,
            || async {
                let events = warnings(&env.client, &env.ns, name, reason).await;
                (!events.is_empty()).then_some(())
            },
        )
        .await;
    }
    println!(
        "seed {seed}: {cases} cases, {refused} refused at admission, {} admitted ({} degraded)",
        admitted.len(),
        degraded.len()
    );
    assert!(
        failures.is_empty(),
        "seed {seed} (rerun with EC_PROPERTY_SEED={seed}):\n{}",
        failures.join("\n")
    );
    // The generator must exercise both sides, or the test proves nothing.
    assert!(
        refused > 0 && !admitted.is_empty(),
        "seed {seed}: {refused} refused, {} admitted",
        admitted.len()
    );
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}
