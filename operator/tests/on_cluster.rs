//! The operator against the real control plane of the local stack (`make dev-up`): a real
//! kube-apiserver (admission, CEL, server-side apply, the scale subresource), the
//! controller-manager (Deployments, ReplicaSets, garbage collection), the scheduler and a kwok
//! node that marks pods Ready. Each test has its own namespace and its own operator running
//! in-process.
#![forbid(unsafe_code)]

mod support;

use std::time::Duration;

use eventconsumer_contract::{self as contract, env};
use eventconsumer_operator::crd::EventConsumer;
use eventconsumer_operator::deployment::SECRETS_ANNOTATION;
use eventconsumer_operator::leader::Timings;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use serde_json::{Value, json};
use support::{
    TIMEOUT, TestEnv, WORKER_IMAGE, condition, env_value, order_manifest, replicas,
    resource_version,
};
use testkit::{eventually, unique_name};

#[tokio::test]
async fn applying_a_consumer_creates_the_deployment_the_spec_describes() {
    let env = TestEnv::new("ec-apply").await;
    let _operator = env.start_operator();
    let name = unique_name("inventory");
    env.apply(&order_manifest(&name)).await;

    let d = env
        .deployment_where(&name, "the Deployment", |_| true)
        .await;
    assert_eq!(env_value(&d, env::HANDLER).as_deref(), Some("order"));
    assert_eq!(
        env_value(&d, env::ORDER_ACTION).as_deref(),
        Some("inventory")
    );
    assert_eq!(
        env_value(&d, env::OUTPUT_TOPIC).as_deref(),
        Some("order.inventory")
    );
    assert_eq!(env_value(&d, env::TOPICS).as_deref(), Some("order.placed"));
    assert_eq!(
        env_value(&d, env::GROUP_ID),
        Some(format!("{}.{name}", env.ns))
    );
    assert_eq!(
        env_value(&d, env::DLQ_TOPIC).as_deref(),
        Some("order.placed.dlq")
    );
    assert_eq!(
        env_value(&d, env::CONSUMER_NAME).as_deref(),
        Some(name.as_str())
    );
    let owner = &d.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("EventConsumer", name.as_str())
    );
    assert_eq!(owner.controller, Some(true));
    let pod = d.spec.template.spec.as_ref().expect("pod spec");
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some(WORKER_IMAGE));
    assert_eq!(
        container.args,
        Some(vec![contract::RUN_SUBCOMMAND.to_owned()])
    );
    assert!(pod.termination_grace_period_seconds.unwrap_or(0) > 25);
    let managers: Vec<_> = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "eventconsumer-operator"),
        "{managers:?}"
    );
}

#[tokio::test]
async fn pods_ready_on_kwok_make_the_consumer_ready_with_the_counts() {
    let env = TestEnv::new("ec-ready").await;
    let _operator = env.start_operator();
    let name = unique_name("ready");
    let mut manifest = order_manifest(&name);
    manifest["spec"]["replicas"] = json!(2);
    env.apply(&manifest).await;

    let ec = env
        .status_where(&name, "Ready=True with 2/2 replicas", |_, s| {
            condition(s, "Ready").is_some_and(|(status, _, _)| status == "True")
                && s.ready_replicas == 2
        })
        .await;
    let status = ec.status.expect("status");
    assert_eq!(status.replicas, 2);
    assert_eq!(
        condition(&status, "Ready"),
        Some((
            "True".into(),
            "AllReplicasReady".into(),
            "2/2 replicas ready".into()
        ))
    );
    assert_eq!(
        condition(&status, "Degraded").map(|c| c.0),
        Some("False".into())
    );
    assert_eq!(status.observed_generation, ec.metadata.generation);
    // The namespace enforces the restricted Pod Security Standard: the pods exist, so they
    // comply.
    assert!(status.selector.unwrap_or_default().contains(&name));
}

#[tokio::test]
async fn editing_the_spec_updates_the_deployment_and_advances_observed_generation() {
    let env = TestEnv::new("ec-edit").await;
    let _operator = env.start_operator();
    let name = unique_name("edit");
    let first = env.apply(&order_manifest(&name)).await;
    env.status_where(&name, "observedGeneration of the first spec", |_, s| {
        s.observed_generation == first.metadata.generation
    })
    .await;

    let mut manifest = order_manifest(&name);
    manifest["spec"]["logLevel"] = json!("debug");
    manifest["spec"]["delivery"] = json!({ "maxAttempts": 9 });
    let second = env.apply(&manifest).await;
    assert!(second.metadata.generation > first.metadata.generation);

    env.deployment_where(&name, "the Deployment with the new settings", |d| {
        env_value(d, env::LOG_LEVEL).as_deref() == Some("debug")
            && env_value(d, env::MAX_ATTEMPTS).as_deref() == Some("9")
    })
    .await;
    env.status_where(&name, "observedGeneration of the edited spec", |_, s| {
        s.observed_generation == second.metadata.generation
            && s.conditions
                .iter()
                .all(|c| c.observed_generation == second.metadata.generation)
    })
    .await;
}

#[tokio::test]
async fn kubectl_scale_changes_the_replicas_through_the_scale_subresource() {
    let env = TestEnv::new("ec-scale").await;
    let _operator = env.start_operator();
    let name = unique_name("scale");
    env.apply(&order_manifest(&name)).await;
    env.status_where(&name, "the first status", |_, s| s.replicas == 1)
        .await;

    let out = env.kubectl(&["scale", &format!("eventconsumer/{name}"), "--replicas=3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    env.deployment_where(&name, "3 replicas in the Deployment", |d| {
        replicas(d) == Some(3)
    })
    .await;
    env.status_where(&name, "3 ready replicas in status", |_, s| {
        s.replicas == 3 && s.ready_replicas == 3
    })
    .await;
    let out = env.kubectl(&[
        "get",
        &format!("ec/{name}"),
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3");
    let out = env.kubectl(&["get", "ec"]);
    let table = String::from_utf8_lossy(&out.stdout);
    for column in ["HANDLER", "TOPICS", "REPLICAS", "READY", "AGE"] {
        assert!(table.contains(column), "{column} missing from:\n{table}");
    }
}

#[tokio::test]
async fn pausing_scales_the_workers_to_zero_and_reports_paused() {
    let env = TestEnv::new("ec-pause").await;
    let _operator = env.start_operator();
    let name = unique_name("pause");
    let mut manifest = order_manifest(&name);
    manifest["spec"]["replicas"] = json!(2);
    env.apply(&manifest).await;
    env.deployment_where(&name, "2 replicas", |d| replicas(d) == Some(2))
        .await;

    manifest["spec"]["paused"] = json!(true);
    env.apply(&manifest).await;
    env.deployment_where(&name, "0 replicas while paused", |d| replicas(d) == Some(0))
        .await;
    let ec = env
        .status_where(&name, "Ready=False reason Paused", |_, s| {
            condition(s, "Ready").is_some_and(|(st, reason, _)| st == "False" && reason == "Paused")
        })
        .await;
    assert_eq!(ec.spec.replicas, 2, "the wanted count survives the pause");

    manifest["spec"]["paused"] = json!(false);
    env.apply(&manifest).await;
    env.deployment_where(&name, "2 replicas after resuming", |d| {
        replicas(d) == Some(2)
    })
    .await;
}

#[tokio::test]
async fn bad_consumers_are_refused_at_admission_with_the_field_named() {
    let env = TestEnv::new("ec-admission").await;
    let resource = ApiResource::erase::<EventConsumer>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.ns, &resource);

    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit)> = vec![
        ("spec.handler", |m| m["spec"]["handler"] = json!("email")),
        ("spec.order", |m| {
            m["spec"].as_object_mut().map(|s| s.remove("order"));
        }),
        ("spec.order", |m| m["spec"]["handler"] = json!("analytics")),
        ("spec.video", |m| {
            m["spec"]["handler"] = json!("video");
            m["spec"].as_object_mut().map(|s| s.remove("order"));
        }),
        ("spec.video", |m| {
            m["spec"]["video"] = json!({ "stage": "publish" })
        }),
        ("spec.analytics", |m| m["spec"]["analytics"] = json!({})),
        ("spec.order.action", |m| {
            m["spec"]["order"]["action"] = json!("refund")
        }),
        ("spec.kafka.topics", |m| {
            m["spec"]["kafka"]["topics"] = json!([])
        }),
        ("spec.kafka.topics[0]", |m| {
            m["spec"]["kafka"]["topics"] = json!(["bad topic"])
        }),
        ("spec.kafka.topics[0]", |m| {
            m["spec"]["kafka"]["topics"] = json!([".."])
        }),
        ("spec.kafka.topics[1]", |m| {
            m["spec"]["kafka"]["topics"] = json!(["a", "a"])
        }),
        ("spec.kafka.topics", |m| {
            m["spec"]["kafka"]["topics"] = json!(["a", "a.dlq"])
        }),
        ("spec.kafka.bootstrapServers", |m| {
            m["spec"]["kafka"]["bootstrapServers"] = json!("kafka")
        }),
        ("spec.kafka.initialOffset", |m| {
            m["spec"]["kafka"]["initialOffset"] = json!("oldest")
        }),
        (
            "spec.kafka.sasl.mechanism",
            |m| {
                m["spec"]["kafka"]["sasl"] =
                    json!({ "mechanism": "GSSAPI", "secretRef": { "name": "creds" } })
            },
        ),
        ("spec.delivery.deadLetterTopic", |m| {
            m["spec"]["delivery"] = json!({ "deadLetterTopic": "order.placed" })
        }),
        ("spec.delivery.backoff.max", |m| {
            m["spec"]["delivery"] = json!({ "backoff": { "initial": "10s", "max": "1s" } })
        }),
        ("spec.delivery.backoff.initial", |m| {
            m["spec"]["delivery"] = json!({ "backoff": { "initial": "2 seconds" } })
        }),
        ("spec.delivery.backoff.initial", |m| {
            m["spec"]["delivery"] = json!({ "backoff": { "initial": "0s" } })
        }),
        ("spec.delivery.backoff.multiplier", |m| {
            m["spec"]["delivery"] = json!({ "backoff": { "multiplier": 0.5 } })
        }),
        ("spec.delivery.maxAttempts", |m| {
            m["spec"]["delivery"] = json!({ "maxAttempts": 0 })
        }),
        ("spec.delivery.attemptTimeout", |m| {
            m["spec"]["delivery"] = json!({ "attemptTimeout": "1d" })
        }),
        ("spec.order.outputTopic", |m| {
            m["spec"]["order"]["outputTopic"] = json!("order.placed")
        }),
        ("spec.order.sinkUrl", |m| {
            m["spec"]["order"]["sinkUrl"] = json!("ftp://sink")
        }),
        ("spec.delivery.semantics", |m| {
            m["spec"]["order"]["sinkUrl"] = json!("http://sink:8080/orders");
            m["spec"]["delivery"] = json!({ "semantics": "exactlyOnce" });
        }),
        ("spec.delivery.semantics", |m| {
            m["spec"]["delivery"] = json!({ "semantics": "exactly-once" });
        }),
        ("spec.delivery.semantics", |m| {
            m["spec"]["delivery"] = json!({ "semantics": "exactlyOnce", "ordering": "none" });
        }),
        ("spec.replicas", |m| m["spec"]["replicas"] = json!(-1)),
        ("spec.kafka", |m| {
            m["spec"].as_object_mut().map(|s| s.remove("kafka"));
        }),
        ("spec.delivery.maxAttempts", |m| {
            m["spec"]["delivery"] = json!({ "mode": "retryTopics", "maxAttempts": 11 });
        }),
        ("spec.delivery.mode", |m| {
            m["spec"]["delivery"] = json!({ "mode": "topics" });
        }),
        ("spec.delivery.ordering", |m| {
            m["spec"]["delivery"] = json!({ "ordering": "offset" });
        }),
        ("spec.delivery.ordering", |m| {
            m["spec"]["handler"] = json!("analytics");
            m["spec"].as_object_mut().map(|s| s.remove("order"));
            m["spec"]["delivery"] = json!({ "ordering": "key" });
        }),
        ("spec.delivery.maxInFlight", |m| {
            m["spec"]["delivery"] = json!({ "ordering": "key", "maxInFlight": 0 });
        }),
        ("spec.delivery.maxInFlight", |m| {
            m["spec"]["delivery"] = json!({ "ordering": "none", "maxInFlight": 10_001 });
        }),
        ("spec.autoscaling.maxReplicas", |m| {
            m["spec"]["autoscaling"] = json!({ "minReplicas": 4, "maxReplicas": 2 });
        }),
        ("spec.autoscaling.maxReplicas", |m| {
            m["spec"]["autoscaling"] = json!({ "minReplicas": 0 });
        }),
        ("spec.autoscaling.lagThreshold", |m| {
            m["spec"]["autoscaling"] = json!({ "maxReplicas": 2, "lagThreshold": 0 });
        }),
        ("spec.autoscaling.cooldown", |m| {
            m["spec"]["autoscaling"] = json!({ "maxReplicas": 2, "cooldown": "soon" });
        }),
        ("metadata.name", |m| {
            m["metadata"]["name"] = json!("n".repeat(64))
        }),
        ("spec.kafka.bootstrapServers", |m| {
            m["spec"]["kafka"]["bootstrapServers"] = json!("kafka:99999")
        }),
        ("spec.kafka.bootstrapServers", |m| {
            m["spec"]["kafka"]["bootstrapServers"] = json!("kafka:9092,b:0")
        }),
        ("spec.delivery.attemptTimeout", |m| {
            m["spec"]["delivery"] = json!({ "attemptTimeout": "99999999999999h" })
        }),
        ("spec.delivery.backoff.max", |m| {
            m["spec"]["delivery"] = json!({ "backoff": { "max": "9999999h" } })
        }),
        ("spec.kafka.topics", |m| {
            m["spec"]["kafka"]["topics"] = json!(["t".repeat(246)])
        }),
        ("spec.kafka.consumerGroup", |m| {
            m["spec"]["delivery"] = json!({ "mode": "retryTopics" });
            m["spec"]["kafka"]["consumerGroup"] = json!("g".repeat(242));
        }),
    ];
    assert!(cases.len() >= 15);

    let mut failures = Vec::new();
    for (i, (field, edit)) in cases.iter().enumerate() {
        let mut manifest = order_manifest(&format!("bad-{i}"));
        edit(&mut manifest);
        let object: DynamicObject = serde_json::from_value(manifest).expect("manifest");
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => failures.push(format!("case {i} ({field}) was accepted")),
            Err(kube::Error::Api(status)) => {
                // A CEL runtime error ("type conversion", "no such overload") is no sentence.
                if status.code != 422
                    || !status.message.contains(&format!("{field}:"))
                    || status.message.contains("type conversion")
                    || status.message.contains("no such overload")
                {
                    failures.push(format!(
                        "case {i}: expected 422 naming {field}, got {}: {}",
                        status.code, status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("case {i}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The same through kubectl, as a user sees it.
    let mut manifest = order_manifest("bad-kubectl");
    manifest["spec"]["delivery"] = json!({ "deadLetterTopic": "order.placed" });
    let path = std::env::temp_dir().join(format!("{}.json", unique_name("bad-ec")));
    std::fs::write(&path, manifest.to_string()).expect("write manifest");
    let out = env.kubectl(&["apply", "-f", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("spec.delivery.deadLetterTopic") && stderr.contains("dead letters"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_missing_secret_degrades_the_consumer_until_the_secret_appears() {
    let env = TestEnv::new("ec-secret").await;
    let _operator = env.start_operator();
    let name = unique_name("sasl");
    let mut manifest = order_manifest(&name);
    manifest["spec"]["kafka"]["sasl"] = json!({
        "mechanism": "SCRAM-SHA-512",
        "secretRef": { "name": "kafka-creds" }
    });
    env.apply(&manifest).await;

    let ec = env
        .status_where(&name, "Degraded=True reason SecretNotFound", |_, s| {
            condition(s, "Degraded")
                .is_some_and(|(st, reason, _)| st == "True" && reason == "SecretNotFound")
        })
        .await;
    let (_, _, message) =
        condition(ec.status.as_ref().expect("status"), "Degraded").expect("Degraded");
    assert_eq!(
        message,
        format!(
            "spec.kafka.sasl.secretRef.name: Secret \"kafka-creds\" not found in namespace \"{}\"; create it or fix the reference",
            env.ns
        )
    );
    assert!(
        env.deployments()
            .get_opt(&name)
            .await
            .expect("get")
            .is_none()
    );
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    let warning = eventually("a Warning Event", TIMEOUT, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SecretNotFound"))
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert_eq!(
        warning.regarding.and_then(|r| r.name).as_deref(),
        Some(name.as_str())
    );

    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "kafka-creds" },
        "stringData": { "username": "consumer", "password": "s3cret" }
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let d = env
        .deployment_where(&name, "the Deployment once the Secret exists", |_| true)
        .await;
    let password = d.spec.template.spec.as_ref().expect("pod").containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == env::SASL_PASSWORD)
        .cloned()
        .expect("password env");
    assert_eq!(password.value, None, "the value is never copied");
    assert_eq!(
        password
            .value_from
            .and_then(|v| v.secret_key_ref)
            .map(|r| (r.name, r.key)),
        Some(("kafka-creds".to_owned(), "password".to_owned()))
    );
    env.status_where(&name, "Degraded=False", |_, s| {
        condition(s, "Degraded").is_some_and(|(st, _, _)| st == "False")
    })
    .await;
}

#[tokio::test]
async fn rotating_or_deleting_a_secret_reaches_the_consumer_without_a_spec_change() {
    let env = TestEnv::new("ec-rotate").await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "kafka-creds" },
        "stringData": { "username": "consumer", "password": "first" }
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    // No measurements, so no status write of the observer's triggers a reconcile: only the
    // watch on Secrets can (the periodic resync is 10 minutes away).
    let _operator = env.start_operator_without_measurements();
    let name = unique_name("rotate");
    let mut manifest = order_manifest(&name);
    manifest["spec"]["kafka"]["sasl"] = json!({
        "mechanism": "SCRAM-SHA-512",
        "secretRef": { "name": "kafka-creds" }
    });
    env.apply(&manifest).await;
    let versions = |d: &Deployment| {
        d.spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(SECRETS_ANNOTATION).cloned())
    };
    let first = env
        .deployment_where(&name, "the Deployment naming the Secret's version", |d| {
            versions(d).is_some()
        })
        .await;
    let first = versions(&first).expect("the annotation");
    // Settled: the pods are Ready and the Deployment's status no longer changes, so no event
    // of the Deployment can trigger the reconcile this test waits for.
    eventually("the Deployment to settle", TIMEOUT, || async {
        let before = resource_version(&env.deployments().get(&name).await.ok()?);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = resource_version(&env.deployments().get(&name).await.ok()?);
        (before == after).then_some(())
    })
    .await;

    let patch = json!({ "stringData": { "password": "second" } });
    let rotated = secrets
        .patch(
            "kafka-creds",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("rotate the Secret");
    let rolled = env
        .deployment_where(&name, "the pod template to name the rotated version", |d| {
            versions(d).is_some_and(|v| v != first)
        })
        .await;
    assert_eq!(
        versions(&rolled),
        Some(format!("kafka-creds@{}", resource_version(&rotated)))
    );

    secrets
        .delete("kafka-creds", &DeleteParams::default())
        .await
        .expect("delete the Secret");
    env.status_where(&name, "Degraded=True reason SecretNotFound", |_, s| {
        condition(s, "Degraded")
            .is_some_and(|(st, reason, _)| st == "True" && reason == "SecretNotFound")
    })
    .await;
}

#[tokio::test]
async fn deleting_the_consumer_garbage_collects_its_deployment() {
    let env = TestEnv::new("ec-gc").await;
    let _operator = env.start_operator();
    let name = unique_name("gc");
    env.apply(&order_manifest(&name)).await;
    env.deployment_where(&name, "the Deployment", |_| true)
        .await;

    env.consumers()
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    let deployments = env.deployments();
    eventually(
        "the garbage collector to delete the Deployment",
        TIMEOUT,
        || async {
            deployments
                .get_opt(&name)
                .await
                .ok()
                .and_then(|d| d.is_none().then_some(()))
        },
    )
    .await;

    // Foreground deletion: the consumer waits for its Deployment, which the operator must not
    // re-create meanwhile.
    let name = unique_name("gc-fg");
    env.apply(&order_manifest(&name)).await;
    env.deployment_where(&name, "the second Deployment", |_| true)
        .await;
    env.consumers()
        .delete(&name, &DeleteParams::foreground())
        .await
        .expect("delete in the foreground");
    let consumers = env.consumers();
    eventually(
        "the consumer and its Deployment to be gone",
        TIMEOUT,
        || async {
            let consumer_gone = consumers.get_opt(&name).await.ok()?.is_none();
            let deployment_gone = deployments.get_opt(&name).await.ok()?.is_none();
            (consumer_gone && deployment_gone).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn manual_edits_to_the_deployment_are_reverted() {
    let env = TestEnv::new("ec-drift").await;
    let _operator = env.start_operator();
    let name = unique_name("drift");
    env.apply(&order_manifest(&name)).await;
    env.deployment_where(&name, "the Deployment", |_| true)
        .await;

    let edit = json!({
        "spec": {
            "replicas": 4,
            "template": { "spec": { "containers": [
                { "name": "worker", "env": [{ "name": env::LOG_LEVEL, "value": "trace" }] }
            ] } }
        }
    });
    env.deployments()
        .patch(
            &name,
            &PatchParams {
                field_manager: Some("kubectl-edit".to_owned()),
                ..Default::default()
            },
            &Patch::Strategic(&edit),
        )
        .await
        .expect("edit the Deployment by hand");

    env.deployment_where(&name, "the edit to be reverted", |d| {
        replicas(d) == Some(1) && env_value(d, env::LOG_LEVEL).as_deref() == Some("info")
    })
    .await;
}

#[tokio::test]
async fn a_restarted_operator_converges_without_touching_unchanged_objects() {
    let env = TestEnv::new("ec-restart").await;
    let name = unique_name("restart");
    let first = env.start_operator();
    env.apply(&order_manifest(&name)).await;
    env.status_where(&name, "Ready=True", |_, s| {
        condition(s, "Ready").is_some_and(|(st, _, _)| st == "True")
    })
    .await;
    // Wait for quiet: nothing changes for two seconds.
    let (ec_version, deployment_version) = eventually("the objects to settle", TIMEOUT, || async {
        let before = (
            resource_version(&env.consumers().get(&name).await.ok()?),
            resource_version(&env.deployments().get(&name).await.ok()?),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = (
            resource_version(&env.consumers().get(&name).await.ok()?),
            resource_version(&env.deployments().get(&name).await.ok()?),
        );
        (before == after).then_some(after)
    })
    .await;
    first.stop().await;

    let second = env.start_operator();
    eventually("the new operator to reconcile", TIMEOUT, || async {
        (second.reconciles() >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        resource_version(&env.consumers().get(&name).await.expect("get")),
        ec_version
    );
    assert_eq!(
        resource_version(&env.deployments().get(&name).await.expect("get")),
        deployment_version
    );
    assert_eq!(second.metrics.errors_with_reason("ApplyDeployment"), 0);
}

#[tokio::test]
async fn of_two_operator_replicas_only_the_leader_writes() {
    let env = TestEnv::new("ec-leader").await;
    // Short timings keep the test fast; the ratios are client-go's.
    let timings = Timings {
        lease_duration: Duration::from_secs(6),
        renew_deadline: Duration::from_secs(4),
        retry_period: Duration::from_millis(500),
    };
    let lease = "eventconsumer-operator";
    let a = env.start_replica("replica-a", lease, timings);
    eventually("replica-a to lead", TIMEOUT, || async {
        a.is_leader().then_some(())
    })
    .await;
    let b = env.start_replica("replica-b", lease, timings);

    let name = unique_name("leader");
    env.apply(&order_manifest(&name)).await;
    env.deployment_where(&name, "the Deployment", |_| true)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(a.reconciles() > 0);
    assert_eq!(b.reconciles(), 0, "the standby reconciled");
    assert!(!b.is_leader());
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    let holder = leases
        .get(lease)
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("replica-a"));

    // The leader leaves; the standby takes over at once (the Lease is released) and works.
    a.stop().await;
    eventually("replica-b to lead", TIMEOUT, || async {
        b.is_leader().then_some(())
    })
    .await;
    let mut manifest = order_manifest(&name);
    manifest["spec"]["logLevel"] = json!("debug");
    env.apply(&manifest).await;
    env.deployment_where(&name, "replica-b to apply the edit", |d| {
        env_value(d, env::LOG_LEVEL).as_deref() == Some("debug")
    })
    .await;
    assert!(b.reconciles() > 0);

    // A leader that crashes keeps the Lease until it expires; then a standby takes over.
    let c = env.start_replica("replica-c", lease, timings);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!c.is_leader());
    b.crash().await;
    eventually("replica-c to lead after the crash", TIMEOUT, || async {
        c.is_leader().then_some(())
    })
    .await;
    manifest["spec"]["logLevel"] = json!("warn");
    env.apply(&manifest).await;
    env.deployment_where(&name, "replica-c to apply the edit", |d| {
        env_value(d, env::LOG_LEVEL).as_deref() == Some("warn")
    })
    .await;
    let holder = leases
        .get(lease)
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("replica-c"));
}

#[tokio::test]
async fn kubectl_explain_prints_the_documentation_of_delivery() {
    let env = TestEnv::new("ec-explain").await;
    let text = eventually("kubectl explain to know the CRD", TIMEOUT, || async {
        let out = env.kubectl(&["explain", "eventconsumer.spec.delivery"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            .filter(|t| t.contains("maxAttempts"))
    })
    .await;
    // kubectl wraps lines to the terminal; compare words.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "How failed messages are retried and where they go when retries run out.",
        "only then is its offset committed",
        "deadLetterTopic",
        "Defaults to the first source topic followed by `.dlq`",
        "backoff",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}
