//! Kafka helpers, behind the `kafka` feature.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

/// How long [`create_topic`] waits for the topic to have a leader for every partition.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates topic `name` with `partitions` partitions and the broker's default replication
/// factor (1 on the single local broker, 3 on the three-broker cluster) and returns once every partition has a leader, so the topic is
/// usable at once. A topic that already exists with that name is accepted as it is.
///
/// # Panics
/// When the broker cannot be reached, refuses the topic, or the topic has no leaders
/// after 30 s.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    create_topic_with(bootstrap, name, partitions, &[]).await;
}

/// [`create_topic`] with topic configs, such as `("min.insync.replicas", "3")`.
///
/// # Panics
/// As [`create_topic`].
pub async fn create_topic_with(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap_or_else(|e| panic!("cannot create a Kafka admin client for {bootstrap}: {e}"));
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&topic], &opts)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot create topic {name} at {bootstrap}: {e}. Is the local stack running? {}",
                crate::START_THE_STACK
            )
        });
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => panic!("the broker refused to create topic {t}: {code}"),
        }
    }

    let consumer: Arc<BaseConsumer> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map(Arc::new)
        .unwrap_or_else(|e| panic!("cannot create a Kafka client for {bootstrap}: {e}"));
    let want = usize::try_from(partitions).unwrap_or_default();
    crate::eventually(
        &format!("topic {name} to have a leader for each of its {partitions} partitions"),
        TOPIC_READY_TIMEOUT,
        || {
            let consumer = Arc::clone(&consumer);
            let name = name.to_owned();
            async move {
                // fetch_metadata blocks; keep it off the runtime's threads.
                let ready = tokio::task::spawn_blocking(move || {
                    consumer
                        .fetch_metadata(Some(&name), Duration::from_secs(2))
                        .ok()
                        .and_then(|md| {
                            md.topics().first().map(|t| {
                                t.error().is_none()
                                    && t.partitions().len() == want
                                    && t.partitions().iter().all(|p| p.leader() >= 0)
                            })
                        })
                        .unwrap_or(false)
                })
                .await
                .unwrap_or(false);
                ready.then_some(())
            }
        },
    )
    .await;
}
