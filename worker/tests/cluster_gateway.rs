//! The gateway against the three-broker cluster (`make cluster-test`), while its brokers
//! fail for real: a 2xx is answered only for an order the cluster acknowledged with
//! acks=all, and an independent reader finds every one of them afterwards; with too few
//! in-sync replicas every answer is a 503 with `Retry-After`.
//!
//! Ignored in `make test` (one broker there): `make cluster-test` runs it on the cluster.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use eventconsumer_worker::gateway::{CHECKOUT_PATH, GatewaySettings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use support::Running;
use testkit::faults::{self, Fault};

/// Requests in flight at once: enough that some land in every moment of a fault.
const CONCURRENCY: usize = 8;
/// The gateway's publish timeout here: longer than a leader election (a few seconds), so a
/// leader kill costs few 503s, and short enough that a request blocked on a dead follower
/// answers well within the fault.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// What each request got.
#[derive(Default)]
struct Answers {
    /// Customer ids answered 2xx.
    accepted: BTreeSet<String>,
    /// Customer ids answered 503 with a `Retry-After` header.
    unavailable: BTreeSet<String>,
    /// Anything else, as `customer status`.
    other: Vec<String>,
}

fn order(customer: &str) -> String {
    format!(
        r#"{{"customer_id":"{customer}","items":[{{"product_id":"SKU-1","quantity":1,"price":5.0}}],"total":5.0}}"#
    )
}

/// Sends checkouts, `CONCURRENCY` at a time, until `until` returns true; customer ids are
/// `<tag>-<n>`.
async fn send_until(
    gateway: &Running,
    tag: &str,
    answers: &mut Answers,
    mut until: impl FnMut(&Answers) -> bool,
) {
    let mut n = 0u64;
    while !until(answers) {
        let batch: Vec<String> = (0..CONCURRENCY)
            .map(|i| format!("{tag}-{}", n + i as u64))
            .collect();
        n += CONCURRENCY as u64;
        let bodies: Vec<String> = batch.iter().map(|c| order(c)).collect();
        let replies = futures::future::join_all(
            bodies
                .iter()
                .map(|body| gateway.post_json(CHECKOUT_PATH, body)),
        )
        .await;
        for (customer, reply) in batch.into_iter().zip(replies) {
            let status = reply.status();
            if status.is_success() {
                answers.accepted.insert(customer);
            } else if status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                && reply.headers().contains_key(reqwest::header::RETRY_AFTER)
            {
                answers.unavailable.insert(customer);
            } else {
                answers.other.push(format!("{customer} {status}"));
            }
        }
    }
}

/// Every key in `topic` (one partition), read from the beginning to its end by a reader of
/// its own.
fn keys_in(bootstrap: &str, topic: &str) -> BTreeSet<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", testkit::unique_name("gw-cluster-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("the end offset");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("a partition");
    consumer.assign(&list).expect("an assignment");
    let mut keys = BTreeSet::new();
    let mut next = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < high {
        assert!(Instant::now() < deadline, "{topic}: read {next} of {high}");
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.expect("a record");
            next = m.offset() + 1;
            if let Some(k) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                keys.insert(k.to_owned());
            }
        }
    }
    keys
}

async fn gateway_on(bootstrap: &str, topic: &str) -> Running {
    Running::start(
        bootstrap,
        GatewaySettings {
            orders_topic: topic.to_owned(),
            publish_timeout: PUBLISH_TIMEOUT,
            readiness_interval: Duration::from_millis(200),
            ..GatewaySettings::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the three-broker cluster: make cluster-test"]
async fn while_the_partitions_leader_is_killed_every_order_answered_2xx_is_in_the_topic() {
    let bootstrap = faults::require_cluster();
    let topic = testkit::unique_name("gw-leader-kill");
    testkit::create_topic(&bootstrap, &topic, 1).await;
    let gateway = gateway_on(&bootstrap, &topic).await;
    let mut answers = Answers::default();
    // Healthy first, then through the kill and the restart.
    let warm = Instant::now();
    send_until(&gateway, "before", &mut answers, |_| {
        warm.elapsed() > Duration::from_secs(2)
    })
    .await;
    let leader = faults::leader(&bootstrap, &topic, 0).expect("a leader");
    let mut fault =
        faults::start(Fault::Kill(leader), Duration::from_secs(10)).expect("the fault starts");
    send_until(&gateway, "during", &mut answers, |_| {
        fault.try_wait().ok().flatten().is_some()
    })
    .await;
    assert!(
        fault.wait().expect("the fault").success(),
        "the cluster came back"
    );
    let after = Instant::now();
    send_until(&gateway, "after", &mut answers, |_| {
        after.elapsed() > Duration::from_secs(2)
    })
    .await;

    let found = keys_in(&bootstrap, &topic);
    let lost: Vec<&String> = answers.accepted.difference(&found).collect();
    let written_anyway = answers.unavailable.intersection(&found).count();
    println!(
        "leader {leader} killed: {} answered 2xx, {} answered 503 ({written_anyway} of them written \
         anyway), {} other; {} records in the topic",
        answers.accepted.len(),
        answers.unavailable.len(),
        answers.other.len(),
        found.len()
    );
    assert!(answers.other.is_empty(), "{:?}", answers.other);
    assert!(
        lost.is_empty(),
        "answered 2xx but not in the topic: {lost:?}"
    );
    assert!(
        answers.accepted.iter().any(|c| c.starts_with("during")),
        "no order was accepted while the leader moved"
    );
    assert!(answers.accepted.iter().any(|c| c.starts_with("after")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the three-broker cluster: make cluster-test"]
async fn with_fewer_in_sync_replicas_than_required_every_answer_is_a_503_with_retry_after() {
    let bootstrap = faults::require_cluster();
    // Three replicas, all three required: one broker down leaves the ISR too small, as two
    // down would with the cluster's min.insync.replicas=2 (which would also take the
    // controller quorum away).
    let topic = testkit::unique_name("gw-isr");
    testkit::create_topic_with(&bootstrap, &topic, 1, &[("min.insync.replicas", "3")]).await;
    let gateway = gateway_on(&bootstrap, &topic).await;
    let mut answers = Answers::default();
    let warm = Instant::now();
    send_until(&gateway, "before", &mut answers, |_| {
        warm.elapsed() > Duration::from_secs(2)
    })
    .await;
    assert!(
        !answers.accepted.is_empty(),
        "nothing accepted on the healthy cluster"
    );
    let accepted_before = answers.accepted.len();

    // A follower, so the partition keeps its leader and only its ISR shrinks.
    let leader = faults::leader(&bootstrap, &topic, 0).expect("a leader");
    let follower = (1..=3).find(|b| *b != leader).expect("a follower");
    let mut fault =
        faults::start(Fault::Kill(follower), Duration::from_secs(30)).expect("the fault starts");
    // The kill is immediate; the fault lasts 30 s, of which 20 s are sampled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let window = Instant::now();
    let mut during = Answers::default();
    send_until(&gateway, "during", &mut during, |_| {
        window.elapsed() > Duration::from_secs(20)
    })
    .await;
    assert!(
        fault.wait().expect("the fault").success(),
        "the cluster came back"
    );

    // Writes are accepted again once the restarted follower is back in the ISR.
    let back = Instant::now();
    let mut after = Answers::default();
    send_until(&gateway, "after", &mut after, |a| {
        !a.accepted.is_empty() || back.elapsed() > Duration::from_secs(120)
    })
    .await;

    let found = keys_in(&bootstrap, &topic);
    let accepted: BTreeSet<String> = answers.accepted.union(&after.accepted).cloned().collect();
    let lost: Vec<&String> = accepted.difference(&found).collect();
    println!(
        "broker {follower} down, ISR too small: {} answered 503 with Retry-After, {} 2xx, {} other; \
         {} of the 503s written anyway (appended before the ISR shrank); {} accepted before, {} after",
        during.unavailable.len(),
        during.accepted.len(),
        during.other.len(),
        during.unavailable.intersection(&found).count(),
        accepted_before,
        after.accepted.len()
    );
    assert!(
        during.accepted.is_empty(),
        "accepted with the ISR too small: {:?}",
        during.accepted
    );
    assert!(during.other.is_empty(), "{:?}", during.other);
    assert!(
        !during.unavailable.is_empty(),
        "no request was answered during the fault"
    );
    assert!(
        !after.accepted.is_empty(),
        "nothing accepted after the broker came back"
    );
    assert!(
        lost.is_empty(),
        "answered 2xx but not in the topic: {lost:?}"
    );
}
