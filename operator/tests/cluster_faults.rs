//! The operator's measurements against the three-broker cluster (`make cluster-test`) while
//! a broker is cut off and a partition's leader is killed: every status read in the faults
//! either carries a fresh measurement or names the error in `status.lag.error`, and the
//! autoscaler never wants fewer pods than the lag needs because a measurement failed.
//!
//! The kwok worker pods run nothing: a committer thread in this test plays the workers,
//! moving the group's offsets slowly, so the lag stays far above what the pods can take. A
//! fault can stall its commits too (the cut broker holds a replica of the group's offsets
//! partition until the ISR shrinks): the autoscaler must then hold the count, not take the
//! unmoved partitions for stuck ones and scale down. Ignored in `make test` (one broker there).
#![forbid(unsafe_code)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eventconsumer_contract::headers::DLT_CONSUMER_GROUP;
use eventconsumer_operator::crd::EventConsumer;
use k8s_openapi::jiff::Timestamp;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use support::TestEnv;
use testkit::faults::{self, CUT_BROKER, Fault};
use testkit::unique_name;

const PARTITIONS: i32 = 3;
const RECORDS_PER_PARTITION: i64 = 3_000;
/// The committer's step per partition and round: the lag shrinks by 3 × 5 every 500 ms, so it
/// stays above 3 × lagThreshold for the whole test.
const COMMIT_STEP: i64 = 5;
const LAG_THRESHOLD: i64 = 100;
const MAX_REPLICAS: i32 = 3;
/// Records of the group in its dead-letter topic.
const DEAD_LETTERS: i64 = 7;

/// Kafka's group coordinator partition: `abs(groupId.hashCode()) % partitions` of
/// `__consumer_offsets` (Java's String hash over UTF-16 units).
fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    (hash & 0x7fff_ffff) % partitions
}

fn produce(bootstrap: &str, topic: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .create()
        .expect("a producer");
    for partition in 0..PARTITIONS {
        for i in 0..RECORDS_PER_PARTITION {
            let payload = format!("record {i}");
            loop {
                match producer.send(
                    BaseRecord::<(), _>::to(topic)
                        .partition(partition)
                        .payload(&payload),
                ) {
                    Ok(()) => break,
                    Err(_) => {
                        producer.poll(Duration::from_millis(50));
                    }
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("every record delivered");
}

/// `DEAD_LETTERS` records of `group` in `dlq`, as the workers would write them.
fn dead_letter(bootstrap: &str, dlq: &str, group: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .create()
        .expect("a producer");
    for i in 0..DEAD_LETTERS {
        let headers = OwnedHeaders::new().insert(Header {
            key: DLT_CONSUMER_GROUP,
            value: Some(group),
        });
        let payload = format!("dead {i}");
        producer
            .send(
                BaseRecord::<(), _>::to(dlq)
                    .payload(&payload)
                    .headers(headers),
            )
            .expect("queued");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("every dead letter delivered");
}

fn commit(consumer: &BaseConsumer, topic: &str, offset: i64) -> bool {
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        if list
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .is_err()
        {
            return false;
        }
    }
    consumer.commit(&list, CommitMode::Sync).is_ok()
}

/// Commits `COMMIT_STEP` more on every partition every 500 ms until `stop`; failed commits
/// (the coordinator moving) are retried the next round.
fn committer(
    bootstrap: String,
    group: String,
    topic: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        let mut offset = 0;
        while !stop.load(Ordering::Relaxed) {
            if commit(&consumer, &topic, offset + COMMIT_STEP) {
                offset += COMMIT_STEP;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}

/// A group whose coordinator is not on `avoid` now, so the fault leaves the commits alone.
fn group_away_from(bootstrap: &str, prefix: &str, avoid: &[i32]) -> String {
    // The offsets topic exists once any group has been looked up.
    let probe = unique_name("cluster-probe");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &probe)
        .create()
        .expect("a consumer");
    let _ = consumer.committed(Duration::from_secs(20));
    let leaders: Vec<i32> = (0..3)
        .map(|p| faults::leader(bootstrap, "__consumer_offsets", p).unwrap_or(-1))
        .collect();
    (0..1000)
        .map(|i| format!("{prefix}.g{i}"))
        .find(|g| {
            let leader = leaders[usize::try_from(offsets_partition(g, 3)).unwrap_or(0)];
            leader > 0 && !avoid.contains(&leader)
        })
        .expect("a group away from the faulty broker")
}

/// What the status showed during a fault.
#[derive(Default, Debug)]
struct Seen {
    reads: u32,
    errors: u32,
    dead_letter_errors: u32,
    fresh: u32,
    stale: Vec<String>,
    lowest_desired: Option<i32>,
    /// Reads whose decision held the count because no commit of the group moved.
    held_in_stall: u32,
}

async fn watch_while(env: &TestEnv, name: &str, fault: &mut std::process::Child, seen: &mut Seen) {
    while fault.try_wait().ok().flatten().is_none() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(ec) = env.consumers().get(name).await else {
            continue;
        };
        record(&ec, seen);
    }
}

fn record(ec: &EventConsumer, seen: &mut Seen) {
    let Some(status) = ec.status.as_ref() else {
        return;
    };
    seen.reads += 1;
    if let Some(autoscaling) = status.autoscaling.as_ref() {
        let desired = autoscaling.desired_replicas;
        seen.lowest_desired = Some(seen.lowest_desired.map_or(desired, |l| l.min(desired)));
        if autoscaling
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("no committed offset of the group moved"))
        {
            seen.held_in_stall += 1;
        }
    }
    if status.dead_letters_error.is_some() {
        seen.dead_letter_errors += 1;
    }
    let lag = status.lag.clone().unwrap_or_default();
    let age = lag
        .measured_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| Timestamp::now().duration_since(t).as_secs());
    if lag.error.is_some() {
        seen.errors += 1;
    } else if age.is_some_and(|a| a <= 30) {
        seen.fresh += 1;
    } else {
        seen.stale.push(format!("measured {age:?} s ago, no error"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the three-broker cluster: make cluster-test"]
async fn through_a_cut_and_a_leader_kill_lag_is_measured_or_its_error_shown_and_nothing_scales_down()
 {
    let bootstrap = faults::require_cluster();
    let env = TestEnv::new("cluster-faults").await;
    let topic = unique_name("cluster-lag");
    testkit::create_topic(&bootstrap, &topic, PARTITIONS).await;
    tokio::task::spawn_blocking({
        let (b, t) = (bootstrap.clone(), topic.clone());
        move || produce(&b, &t)
    })
    .await
    .expect("the producer task");
    let name = unique_name("inventory");
    let group = tokio::task::spawn_blocking({
        let (b, n) = (bootstrap.clone(), name.clone());
        move || group_away_from(&b, &n, &[CUT_BROKER])
    })
    .await
    .expect("the group lookup");
    let dlq = format!("{topic}.dlq");
    testkit::create_topic(&bootstrap, &dlq, 1).await;
    tokio::task::spawn_blocking({
        let (b, d, g) = (bootstrap.clone(), dlq.clone(), group.clone());
        move || dead_letter(&b, &d, &g)
    })
    .await
    .expect("the dead-letter task");
    let stop = Arc::new(AtomicBool::new(false));
    let commits = committer(
        bootstrap.clone(),
        group.clone(),
        topic.clone(),
        stop.clone(),
    );
    let _operator = env.start_operator();
    env.apply(&json!({
        "apiVersion": "eventconsumer.dev/v1alpha1",
        "kind": "EventConsumer",
        "metadata": { "name": name },
        "spec": {
            "handler": "order",
            "order": { "action": "inventory" },
            "kafka": { "bootstrapServers": bootstrap, "topics": [topic], "consumerGroup": group },
            // A short cooldown: a measurement failure taken for "no lag" would show at once.
            "autoscaling": {
                "minReplicas": 1, "maxReplicas": MAX_REPLICAS,
                "lagThreshold": LAG_THRESHOLD, "cooldown": "2s"
            }
        }
    }))
    .await;
    env.status_where(
        &name,
        "three pods wanted for the lag, the dead letters counted",
        |_, s| {
            s.autoscaling
                .as_ref()
                .is_some_and(|a| a.desired_replicas == MAX_REPLICAS)
                && s.dead_letters == Some(DEAD_LETTERS)
        },
    )
    .await;

    let mut cut = Seen::default();
    let mut fault = faults::start(Fault::Cut, Duration::from_secs(20)).expect("the cut starts");
    watch_while(&env, &name, &mut fault, &mut cut).await;
    assert!(
        fault.wait().expect("the cut").success(),
        "the cluster came back after the cut"
    );

    // The leader of a partition, not the coordinator's broker (the committer must go on).
    let coordinator = faults::leader(
        &bootstrap,
        "__consumer_offsets",
        offsets_partition(&group, 3),
    )
    .expect("the coordinator's broker");
    let victim = (0..PARTITIONS)
        .filter_map(|p| faults::leader(&bootstrap, &topic, p).ok())
        .find(|l| *l != coordinator)
        .unwrap_or(coordinator);
    let mut kill = Seen::default();
    let started = Instant::now();
    let mut fault =
        faults::start(Fault::Kill(victim), Duration::from_secs(10)).expect("the kill starts");
    watch_while(&env, &name, &mut fault, &mut kill).await;
    assert!(
        fault.wait().expect("the kill").success(),
        "the cluster came back after the kill"
    );

    // Measured again, without an error, after both.
    let after = Timestamp::now();
    env.status_where(&name, "a clean measurement after the faults", |_, s| {
        s.dead_letters == Some(DEAD_LETTERS)
            && s.dead_letters_error.is_none()
            && s.lag.as_ref().is_some_and(|l| {
                l.error.is_none()
                    && l.measured_at
                        .as_deref()
                        .and_then(|t| t.parse::<Timestamp>().ok())
                        .is_some_and(|t| t >= after)
            })
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    commits.join().expect("the committer");
    println!("cut of broker {CUT_BROKER}: {cut:?}");
    println!(
        "kill -9 of broker {victim} ({:?}): {kill:?}",
        started.elapsed()
    );
    for (what, seen) in [("cut", &cut), ("kill", &kill)] {
        assert!(seen.reads > 0, "{what}: no status read");
        assert!(
            seen.stale.is_empty(),
            "{what}: stale status without an error: {:?}",
            seen.stale
        );
        assert_eq!(
            seen.lowest_desired,
            Some(MAX_REPLICAS),
            "{what}: scaled down: {seen:?}"
        );
    }
}

#[test]
fn the_coordinator_partition_follows_javas_string_hash() {
    // "abc".hashCode() is 96354 in Java; a hash that overflows stays non-negative.
    assert_eq!(offsets_partition("abc", 50), 96_354 % 50);
    let long = "eventconsumer-cluster-faults-group-with-a-long-name";
    assert!((0..3).contains(&offsets_partition(long, 3)));
}
