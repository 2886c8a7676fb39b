//! Lag, autoscaling, dead-letter counts and retry topics against the local stack's real Kafka
//! and control plane. The kwok node marks worker pods Ready but runs nothing, so the only
//! commits are the ones these tests make (with a plain consumer that commits chosen offsets and
//! never joins the group): exactly the control a test of lag needs. The operator measures every
//! second here ([`support::MEASURE_INTERVAL`]).
#![forbid(unsafe_code)]

mod support;

use std::time::{Duration, Instant};

use eventconsumer_contract::headers::DLT_CONSUMER_GROUP;
use eventconsumer_operator::crd::EventConsumer;
use eventconsumer_operator::observer::{RETRY_TOPIC_CREATE_FAILED, RETRY_TOPICS_READY};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};
use support::{TIMEOUT, TestEnv, condition};
use testkit::{create_topic, eventually, kafka_bootstrap, unique_name};

/// A consumer of `topics` on the local broker with `spec` merged into its spec.
fn manifest(name: &str, topics: &[&str], spec: Value) -> Value {
    let mut manifest = json!({
        "apiVersion": "eventconsumer.dev/v1alpha1",
        "kind": "EventConsumer",
        "metadata": { "name": name },
        "spec": {
            "handler": "order",
            "order": { "action": "inventory" },
            "kafka": { "bootstrapServers": kafka_bootstrap(), "topics": topics }
        }
    });
    if let (Some(base), Value::Object(extra)) = (manifest["spec"].as_object_mut(), spec) {
        for (key, value) in extra {
            match (base.get_mut(&key), value) {
                (Some(Value::Object(inner)), Value::Object(more)) => inner.extend(more),
                (_, value) => {
                    base.insert(key, value);
                }
            }
        }
    }
    manifest
}

/// Writes `count` records to `partition` of `topic`, each with `headers`.
async fn produce(topic: &str, partition: i32, count: usize, headers: &[(&str, &str)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()
        .expect("a producer");
    for i in 0..count {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(*value),
            });
        }
        let payload = format!("record {i}");
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload(&payload)
                    .headers(owned),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("producing to {topic}/{partition}: {e}"));
    }
}

/// Commits `offsets` (partition, offset) of `topic` for `group`, as a worker would.
async fn commit(group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .expect("a valid offset");
    }
    tokio::task::spawn_blocking(move || {
        consumer.assign(&list).expect("assign");
        consumer
            .commit(&list, CommitMode::Sync)
            .expect("committing offsets");
    })
    .await
    .expect("the commit task");
}

fn lag_total(ec: &EventConsumer) -> Option<i64> {
    ec.status.as_ref()?.lag.as_ref()?.total
}

fn desired(ec: &EventConsumer) -> Option<i32> {
    Some(ec.status.as_ref()?.autoscaling.as_ref()?.desired_replicas)
}

async fn deployment_replicas(env: &TestEnv, name: &str, want: i32) {
    env.deployment_where(name, &format!("{name} scaled to {want}"), |d| {
        d.spec.replicas == Some(want)
    })
    .await;
}

#[tokio::test]
async fn lag_appears_in_status_metrics_and_kubectl_get() {
    let env = TestEnv::new("lag-status").await;
    let topic = unique_name("lag-status");
    create_topic(&kafka_bootstrap(), &topic, 2).await;
    produce(&topic, 0, 20, &[]).await;
    produce(&topic, 1, 10, &[]).await;
    let name = unique_name("inventory");
    let group = format!("{}.{name}", env.ns);
    commit(&group, &topic, &[(0, 5)]).await;
    let operator = env.start_operator();
    // One (kwok) worker pod: with none, commits could not move and would be read only every
    // 5 minutes.
    env.apply(&manifest(&name, &[&topic], json!({ "replicas": 1 })))
        .await;

    // Partition 0: 20 - 5; partition 1 has no commit and counts from the earliest record.
    let ec = env
        .status_where(&name, "lag 25 in status", |ec, _| lag_total(ec) == Some(25))
        .await;
    let lag = ec.status.and_then(|s| s.lag).expect("lag");
    let max = lag.max_partition.clone().expect("a max partition");
    assert_eq!(
        (max.topic.as_str(), max.partition, max.lag),
        (topic.as_str(), 0, 15)
    );
    assert!(lag.measured_at.is_some() && lag.error.is_none(), "{lag:?}");

    let out = env.kubectl(&["get", "ec", &name]);
    let text = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let column = header
        .iter()
        .position(|h| *h == "LAG")
        .expect("a LAG column");
    assert_eq!(row.get(column), Some(&"25"), "{text}");

    let labels = eventconsumer_operator::metrics::ConsumerLabels {
        namespace: env.ns.clone(),
        name: name.clone(),
    };
    assert_eq!(operator.metrics.lag.get_or_create(&labels).get(), 25);
    assert_eq!(
        operator
            .metrics
            .max_partition_lag
            .get_or_create(&labels)
            .get(),
        15
    );

    // The group moves on: the lag follows.
    commit(&group, &topic, &[(0, 20), (1, 4)]).await;
    env.status_where(&name, "lag 6 after the commit", |ec, _| {
        lag_total(ec) == Some(6)
    })
    .await;

    // The consumer goes away: so do its series.
    env.consumers()
        .delete(&name, &Default::default())
        .await
        .expect("deleting the consumer");
    eventually("the lag series to be removed", TIMEOUT, || async {
        operator.metrics.lag.get(&labels).is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_cluster_shows_in_lag_error_without_holding_back_other_consumers() {
    let env = TestEnv::new("lag-unreachable").await;
    let topic = unique_name("lag-reachable");
    create_topic(&kafka_bootstrap(), &topic, 1).await;
    produce(&topic, 0, 3, &[]).await;
    let _operator = env.start_operator();
    let dead = unique_name("dead");
    let mut unreachable = manifest(&dead, &[&topic], json!({ "replicas": 0 }));
    // Port 1 refuses connections: the cluster is down.
    unreachable["spec"]["kafka"]["bootstrapServers"] = json!("127.0.0.1:1");
    env.apply(&unreachable).await;
    let alive = unique_name("alive");
    env.apply(&manifest(&alive, &[&topic], json!({ "replicas": 0 })))
        .await;

    env.status_where(&alive, "the reachable consumer's lag", |ec, _| {
        lag_total(ec) == Some(3)
    })
    .await;
    let ec = env
        .status_where(&dead, "lag.error for the unreachable cluster", |ec, _| {
            ec.status
                .as_ref()
                .and_then(|s| s.lag.as_ref())
                .is_some_and(|l| l.error.is_some())
        })
        .await;
    let lag = ec.status.and_then(|s| s.lag).expect("lag");
    assert_eq!(lag.total, None, "no lag was ever measured: {lag:?}");
    assert!(
        lag.error.as_deref().unwrap_or("").contains("127.0.0.1:1"),
        "{lag:?}"
    );
    // The unreachable cluster does not block the Deployment either.
    env.deployment_where(&dead, "the Deployment", |_| true)
        .await;
}

#[tokio::test]
async fn a_consumer_at_zero_wakes_at_activation_lag_and_scales_to_lag_over_threshold_clamped() {
    let env = TestEnv::new("lag-wake").await;
    let topic = unique_name("lag-wake");
    create_topic(&kafka_bootstrap(), &topic, 4).await;
    let _operator = env.start_operator();
    let autoscaling = |max: i32| {
        json!({ "autoscaling": {
            "minReplicas": 0, "maxReplicas": max, "lagThreshold": 10,
            "activationLag": 5, "cooldown": "10m"
        }})
    };
    let wide = unique_name("wide");
    let narrow = unique_name("narrow");
    env.apply(&manifest(&wide, &[&topic], autoscaling(10)))
        .await;
    env.apply(&manifest(&narrow, &[&topic], autoscaling(2)))
        .await;
    deployment_replicas(&env, &wide, 0).await;
    deployment_replicas(&env, &narrow, 0).await;

    // Below activationLag: still asleep.
    produce(&topic, 0, 3, &[]).await;
    let ec = env
        .status_where(&wide, "lag 3 measured", |ec, _| lag_total(ec) == Some(3))
        .await;
    assert_eq!(desired(&ec), Some(0), "{:?}", ec.status);
    assert_eq!(
        env.deployments()
            .get(&wide)
            .await
            .expect("Deployment")
            .spec
            .replicas,
        Some(0)
    );

    // 53 >= activationLag: ceil(53 / 10) = 6, clamped to the 4 partitions, and to
    // maxReplicas 2 for the narrow one.
    for partition in 0..4 {
        produce(&topic, partition, if partition == 0 { 11 } else { 13 }, &[]).await;
    }
    let started = Instant::now();
    deployment_replicas(&env, &wide, 4).await;
    deployment_replicas(&env, &narrow, 2).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "scaling up is immediate"
    );
    let ec = env
        .status_where(&wide, "the whole lag measured", |_, s| {
            s.autoscaling.as_ref().is_some_and(|a| a.scaling_lag == 53)
        })
        .await;
    let autoscaling = ec
        .status
        .and_then(|s| s.autoscaling)
        .expect("status.autoscaling");
    assert_eq!(autoscaling.desired_replicas, 4, "{autoscaling:?}");
    assert!(autoscaling.last_scale_time.is_some(), "{autoscaling:?}");
}

/// Holds a pod in Terminating with a finalizer of the test's own, as a worker that is still
/// draining (committing what it finished on SIGTERM) holds its pod; releases it when dropped.
struct Terminating {
    ns: String,
    pod: String,
}

const HOLD: &str = "eventconsumer.dev/test-draining";

impl Terminating {
    async fn hold(pods: &Api<Pod>, ns: &str, pod: &str) -> Terminating {
        pods.patch(
            pod,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": [HOLD] } })),
        )
        .await
        .unwrap_or_else(|e| panic!("adding a finalizer to pod {pod}: {e}"));
        Terminating {
            ns: ns.to_owned(),
            pod: pod.to_owned(),
        }
    }

    async fn release(self, pods: &Api<Pod>) {
        pods.patch(
            &self.pod,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await
        .unwrap_or_else(|e| panic!("removing the finalizer of pod {}: {e}", self.pod));
    }
}

impl Drop for Terminating {
    fn drop(&mut self) {
        // Best effort after a failed assertion, so the namespace can go.
        let _ = std::process::Command::new("kubectl")
            .args(["-n", &self.ns, "patch", "pod", &self.pod, "--type=merge"])
            .args(["-p", r#"{"metadata":{"finalizers":null}}"#])
            .output();
    }
}

/// A pod woken from zero that commits and is gone between two measurements must move the
/// measured lag: here its last commit lands while it terminates after a pause (its
/// Deployment then counts no running pod, as it did at the reads before), and the pod is gone
/// before the next reads. The observer trusts cached commits only while the Deployment proves
/// that no pod, terminating ones included, existed since it read them; before, "no pod at the
/// last read nor now" kept the stale lag for 5 minutes.
#[tokio::test]
async fn a_short_lived_pod_woken_from_zero_that_commits_while_terminating_moves_the_lag() {
    let env = TestEnv::new("lag-short").await;
    let topic = unique_name("lag-short");
    create_topic(&kafka_bootstrap(), &topic, 1).await;
    produce(&topic, 0, 10, &[]).await;
    let name = unique_name("short");
    let group = format!("{}.{name}", env.ns);
    let _operator = env.start_operator();
    let autoscaling = json!({ "autoscaling": {
        "minReplicas": 0, "maxReplicas": 1, "lagThreshold": 100,
        "activationLag": 1, "cooldown": "10m"
    }});
    env.apply(&manifest(&name, &[&topic], autoscaling.clone()))
        .await;
    // Woken from zero by its lag.
    deployment_replicas(&env, &name, 1).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    let pod = eventually("the woken worker pod", TIMEOUT, || async {
        pods.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let held = Terminating::hold(&pods, &env.ns, &pod.name_any()).await;

    // Paused while it runs: the Deployment wants and counts no pod; the pod terminates.
    let mut paused = manifest(&name, &[&topic], autoscaling);
    paused["spec"]["paused"] = json!(true);
    env.apply(&paused).await;
    deployment_replicas(&env, &name, 0).await;
    env.status_where(
        &name,
        "no pod counted, lag 10 measured while paused",
        |ec, s| {
            s.replicas == 0
                && lag_total(ec) == Some(10)
                && s.autoscaling
                    .as_ref()
                    .and_then(|a| a.reason.as_deref())
                    .is_some_and(|r| r.contains("paused"))
        },
    )
    .await;
    // A few measurement rounds with no pod counted (what made the old rule cache the commits).
    tokio::time::sleep(support::MEASURE_INTERVAL * 3).await;

    // Its last commit, as a draining worker makes it; then the pod is gone.
    commit(&group, &topic, &[(0, 10)]).await;
    held.release(&pods).await;
    eventually("the pod to be gone", TIMEOUT, || async {
        pods.list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    env.status_where(&name, "the lag to follow the pod's commit to 0", |ec, _| {
        lag_total(ec) == Some(0)
    })
    .await;
}

#[tokio::test]
async fn scaling_down_waits_for_the_cooldown() {
    let env = TestEnv::new("lag-cooldown").await;
    let topic = unique_name("lag-cooldown");
    create_topic(&kafka_bootstrap(), &topic, 2).await;
    produce(&topic, 0, 20, &[]).await;
    produce(&topic, 1, 20, &[]).await;
    let _operator = env.start_operator();
    let name = unique_name("cool");
    let group = format!("{}.{name}", env.ns);
    let cooldown = Duration::from_secs(8);
    env.apply(&manifest(
        &name,
        &[&topic],
        json!({ "autoscaling": {
            "minReplicas": 1, "maxReplicas": 2, "lagThreshold": 10, "cooldown": "8s"
        }}),
    ))
    .await;
    deployment_replicas(&env, &name, 2).await;
    let scaled_up = last_scale_time(&env, &name).await;

    // The workers catch up: one pod would do, but only after the cooldown. (The kwok workers
    // never commit, so before this commit the lag counted as stuck and wanted one pod too:
    // the cooldown runs from the scale-up either way.)
    commit(&group, &topic, &[(0, 20), (1, 20)]).await;
    let ec = env
        .status_where(&name, "lag 0 measured", |ec, _| lag_total(ec) == Some(0))
        .await;
    assert_eq!(desired(&ec), Some(2), "{:?}", ec.status);
    let reason = ec
        .status
        .and_then(|s| s.autoscaling)
        .and_then(|a| a.reason)
        .unwrap_or_default();
    assert!(reason.contains("cooldown"), "{reason}");
    deployment_replicas(&env, &name, 1).await;
    let scaled_down = last_scale_time(&env, &name).await;
    let waited = scaled_down.duration_since(scaled_up);
    assert!(
        waited.as_secs() >= i64::try_from(cooldown.as_secs()).unwrap_or(i64::MAX),
        "scaled down {waited:?} after scaling up"
    );
}

async fn last_scale_time(env: &TestEnv, name: &str) -> Timestamp {
    let ec = env.consumers().get(name).await.expect("the consumer");
    ec.status
        .and_then(|s| s.autoscaling)
        .and_then(|a| a.last_scale_time)
        .expect("status.autoscaling.lastScaleTime")
        .parse()
        .expect("an RFC 3339 time")
}

#[tokio::test]
async fn a_stuck_partition_does_not_drive_a_scale_up() {
    let env = TestEnv::new("lag-stuck").await;
    let topic = unique_name("lag-stuck");
    create_topic(&kafka_bootstrap(), &topic, 2).await;
    let _operator = env.start_operator();
    let name = unique_name("stuck");
    let group = format!("{}.{name}", env.ns);
    // The group has committed partition 0 at 0, as a worker that started on it would.
    commit(&group, &topic, &[(0, 0)]).await;
    env.apply(&manifest(
        &name,
        &[&topic],
        json!({ "autoscaling": {
            "minReplicas": 1, "maxReplicas": 2, "lagThreshold": 10, "cooldown": "10m"
        }}),
    ))
    .await;
    env.status_where(&name, "a ready worker and a measurement", |ec, s| {
        s.ready_replicas == 1 && lag_total(ec) == Some(0)
    })
    .await;
    // Give the observer one more measurement with the worker ready.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 100 records arrive on partition 0, whose committed offset does not move although a
    // worker runs: a stuck partition, not a reason for more pods.
    produce(&topic, 0, 100, &[]).await;
    let ec = env
        .status_where(&name, "the stuck lag measured", |ec, _| {
            lag_total(ec) == Some(100)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ec = env.consumers().get(&name).await.unwrap_or(ec);
    let autoscaling = ec
        .status
        .and_then(|s| s.autoscaling)
        .expect("status.autoscaling");
    assert_eq!(autoscaling.desired_replicas, 1, "{autoscaling:?}");
    assert_eq!(autoscaling.stuck_partitions, [format!("{topic}/0")]);
    assert_eq!(autoscaling.scaling_lag, 0, "{autoscaling:?}");
    assert_eq!(
        env.deployments()
            .get(&name)
            .await
            .expect("Deployment")
            .spec
            .replicas,
        Some(1)
    );

    // The partition moves again: its lag counts, and 90 records need two pods.
    commit(&group, &topic, &[(0, 10)]).await;
    deployment_replicas(&env, &name, 2).await;
}

#[tokio::test]
async fn a_group_whose_commits_all_stand_still_keeps_its_pods_until_one_moves() {
    let env = TestEnv::new("lag-stall").await;
    let topic = unique_name("lag-stall");
    create_topic(&kafka_bootstrap(), &topic, 3).await;
    let name = unique_name("stall");
    let group = format!("{}.{name}", env.ns);
    commit(&group, &topic, &[(0, 0), (1, 0), (2, 0)]).await;
    for partition in 0..3 {
        produce(&topic, partition, 50, &[]).await;
    }
    let _operator = env.start_operator();
    env.apply(&manifest(
        &name,
        &[&topic],
        json!({ "autoscaling": {
            "minReplicas": 1, "maxReplicas": 3, "lagThreshold": 50, "cooldown": "2s"
        }}),
    ))
    .await;
    deployment_replicas(&env, &name, 3).await;
    // Ready pods, and no commit moves: as when a broker holding a replica of the group's
    // offsets is cut off and every commit times out.
    env.status_where(&name, "all three partitions unmoved", |_, s| {
        s.autoscaling
            .as_ref()
            .is_some_and(|a| a.stuck_partitions.len() == 3)
    })
    .await;
    let watch_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < watch_until {
        let ec = env.consumers().get(&name).await.expect("the consumer");
        let autoscaling = ec
            .status
            .and_then(|s| s.autoscaling)
            .expect("status.autoscaling");
        assert_eq!(
            autoscaling.desired_replicas, 3,
            "scaled down on a stall: {autoscaling:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ec = env.consumers().get(&name).await.expect("the consumer");
    let reason = ec
        .status
        .and_then(|s| s.autoscaling)
        .and_then(|a| a.reason)
        .unwrap_or_default();
    assert!(
        reason.contains("no committed offset of the group moved"),
        "{reason}"
    );

    // One partition moves (10 of its 50): the group is not stalled, the other two count as
    // stuck, and 40 records want one pod once the cooldown has passed.
    commit(&group, &topic, &[(0, 10), (1, 0), (2, 0)]).await;
    deployment_replicas(&env, &name, 1).await;
}

#[tokio::test]
async fn the_dead_letter_count_counts_only_this_groups_records() {
    let env = TestEnv::new("lag-dlq").await;
    let topic = unique_name("lag-dlq");
    let dlq = format!("{topic}.dlq");
    create_topic(&kafka_bootstrap(), &topic, 1).await;
    create_topic(&kafka_bootstrap(), &dlq, 2).await;
    let ours = unique_name("ours");
    let theirs = unique_name("theirs");
    produce(&dlq, 0, 3, &[(DLT_CONSUMER_GROUP, &ours)]).await;
    produce(&dlq, 1, 2, &[(DLT_CONSUMER_GROUP, &theirs)]).await;
    produce(&dlq, 1, 1, &[]).await;
    let _operator = env.start_operator();
    for (name, group) in [("a", &ours), ("b", &theirs)] {
        env.apply(&manifest(
            &format!("{name}-{group}"),
            &[&topic],
            json!({ "replicas": 0, "kafka": { "consumerGroup": group } }),
        ))
        .await;
    }
    let dead_letters = |want: i64| {
        move |_: &EventConsumer, s: &eventconsumer_operator::crd::EventConsumerStatus| {
            s.dead_letters == Some(want)
        }
    };
    env.status_where(&format!("a-{ours}"), "3 dead letters", dead_letters(3))
        .await;
    env.status_where(&format!("b-{theirs}"), "2 dead letters", dead_letters(2))
        .await;

    // Counted incrementally as more arrive.
    produce(&dlq, 1, 2, &[(DLT_CONSUMER_GROUP, &ours)]).await;
    env.status_where(&format!("a-{ours}"), "5 dead letters", dead_letters(5))
        .await;
    let out = env.kubectl(&["get", "ec", &format!("a-{ours}")]);
    let text = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let column = header
        .iter()
        .position(|h| *h == "DLQ")
        .expect("a DLQ column");
    assert_eq!(row.get(column), Some(&"5"), "{text}");
}

#[tokio::test]
async fn retry_topics_are_created_with_the_source_partition_count() {
    let env = TestEnv::new("lag-retry").await;
    let topic = unique_name("lag-retry");
    create_topic(&kafka_bootstrap(), &topic, 3).await;
    let _operator = env.start_operator();
    let name = unique_name("retrying");
    let group = unique_name("retry-group");
    env.apply(&manifest(
        &name,
        &[&topic],
        json!({
            "replicas": 0,
            "kafka": { "consumerGroup": group },
            "delivery": { "mode": "retryTopics", "maxAttempts": 3 }
        }),
    ))
    .await;
    let ec = env
        .status_where(&name, "RetryTopicsReady", |_, s| {
            condition(s, RETRY_TOPICS_READY).is_some_and(|(status, _, _)| status == "True")
        })
        .await;
    assert!(ec.status.is_some());
    for retry in [format!("{group}.retry.1"), format!("{group}.retry.2")] {
        let partitions = partition_count(&retry).await;
        assert_eq!(partitions, 3, "{retry}");
    }

    // A source topic that does not exist gives no partition count: reported, naming the retry
    // topic, while the Deployment is created all the same.
    let orphan = unique_name("orphan");
    let orphan_group = unique_name("orphan-group");
    let missing = unique_name("missing-topic");
    env.apply(&manifest(
        &orphan,
        &[&missing],
        json!({
            "replicas": 0,
            "kafka": { "consumerGroup": orphan_group },
            "delivery": { "mode": "retryTopics", "maxAttempts": 2 }
        }),
    ))
    .await;
    let ec = env
        .status_where(&orphan, "RetryTopicsReady False", |_, s| {
            condition(s, RETRY_TOPICS_READY).is_some_and(|(status, _, _)| status == "False")
        })
        .await;
    let (_, reason, message) =
        condition(ec.status.as_ref().expect("status"), RETRY_TOPICS_READY).expect("condition");
    assert_eq!(reason, RETRY_TOPIC_CREATE_FAILED);
    assert!(
        message.contains(&format!("{orphan_group}.retry.1")),
        "{message}"
    );
    env.deployment_where(&orphan, "the Deployment", |_| true)
        .await;
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    let warning = eventually("a RetryTopicCreateFailed Event", TIMEOUT, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(RETRY_TOPIC_CREATE_FAILED))
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(
        warning
            .note
            .as_deref()
            .unwrap_or_default()
            .contains(&format!("{orphan_group}.retry.1")),
        "{warning:?}"
    );
    // Not a reason to call the consumer Degraded: the Deployment runs.
    let (degraded, _, _) =
        condition(ec.status.as_ref().expect("status"), "Degraded").expect("a Degraded condition");
    assert_eq!(degraded, "False");
}

async fn partition_count(topic: &str) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()
        .expect("a client");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len())
    })
    .await
    .expect("the metadata task")
}
