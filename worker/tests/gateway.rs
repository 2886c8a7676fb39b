//! The HTTP gateway against the real Kafka of the local stack (`make dev-up`, then
//! `. .dev/env`): each test starts a gateway in-process on `127.0.0.1:0`, talks HTTP to
//! it, and reads back what reached the broker. Without the stack the tests fail saying
//! how to start it; none skips.

mod support;

use std::time::{Duration, Instant};

use eventconsumer_worker::events::{OrderPlaced, UserEvent};
use eventconsumer_worker::gateway::{
    CHECKOUT_PATH, CheckoutAccepted, EVENTS_PATH, ErrorBody, GatewaySettings,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::Running;

/// Partitions of each test topic: more than one, so keying actually decides something.
const PARTITIONS: i32 = 3;
/// How long a test waits for a record to come back or the gateway to become ready: far
/// above what a local broker needs, so only a real failure trips it.
const DEADLINE: Duration = Duration::from_secs(30);

/// Fresh topics for one test, created on the real broker.
async fn settings_with_fresh_topics(bootstrap: &str) -> GatewaySettings {
    let orders = testkit::unique_name("gw-orders");
    let events = testkit::unique_name("gw-events");
    testkit::create_topic(bootstrap, &orders, PARTITIONS).await;
    testkit::create_topic(bootstrap, &events, PARTITIONS).await;
    GatewaySettings {
        orders_topic: orders,
        events_topic: events,
        // Short, so readiness tests see several checks quickly.
        readiness_interval: Duration::from_millis(200),
        ..GatewaySettings::default()
    }
}

/// Reads `count` records of `topic` from the beginning of every partition, failing after
/// [`DEADLINE`].
async fn read_back(bootstrap: &str, topic: &str, count: usize) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", testkit::unique_name("gw-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&assignment).expect("an assignment");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut records = Vec::new();
    while records.len() < count {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => records.push(message.detach()),
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => panic!(
                "only {} of {count} records reached {topic} within {DEADLINE:?}",
                records.len()
            ),
        }
    }
    records
}

fn key_of(message: &OwnedMessage) -> &str {
    std::str::from_utf8(message.key().expect("a key")).expect("a UTF-8 key")
}

fn payload_of<T: serde::de::DeserializeOwned>(message: &OwnedMessage) -> T {
    serde_json::from_slice(message.payload().expect("a payload")).expect("a JSON payload")
}

/// A loopback port nothing listens on: a broker that is down.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    addr.to_string()
}

#[tokio::test]
async fn a_checkout_is_answered_202_and_published_keyed_by_customer_id_with_an_assigned_id_and_time()
 {
    let bootstrap = testkit::kafka_bootstrap();
    let settings = settings_with_fresh_topics(&bootstrap).await;
    let topic = settings.orders_topic.clone();
    let gateway = Running::start(&bootstrap, settings).await;

    let customer = testkit::unique_name("customer");
    let body = format!(
        r#"{{"customer_id":"{customer}","items":[{{"product_id":"SKU-001","quantity":2,"price":29.99}},{{"product_id":"SKU-002","quantity":1,"price":0.1}}],"total":60.08}}"#
    );
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let response = gateway.post_json(CHECKOUT_PATH, &body).await;
    assert_eq!(response.status().as_u16(), 202);
    let accepted: CheckoutAccepted = response.json().await.unwrap();

    let records = read_back(&bootstrap, &topic, 1).await;
    assert_eq!(key_of(&records[0]), customer);
    let order: OrderPlaced = payload_of(&records[0]);
    assert_eq!(order.order_id, accepted.order_id);
    assert!(uuid::Uuid::parse_str(&order.order_id).is_ok(), "{order:?}");
    assert_eq!(order.customer_id, customer);
    assert_eq!(order.items.len(), 2);
    assert_eq!(order.validate(), Ok(6008));
    let created = chrono::DateTime::parse_from_rfc3339(&order.created_at).unwrap();
    assert!(created >= before, "{created} is before the request");

    let (_, metrics) = gateway.get("/metrics").await;
    assert!(
        metrics.contains(r#"gateway_http_requests_total{route="/checkout",status="202"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn orders_of_one_customer_all_land_on_one_partition() {
    let bootstrap = testkit::kafka_bootstrap();
    let settings = settings_with_fresh_topics(&bootstrap).await;
    let topic = settings.orders_topic.clone();
    let gateway = Running::start(&bootstrap, settings).await;

    let body = r#"{"customer_id":"same-customer","items":[{"product_id":"p","quantity":1,"price":1}],"total":1}"#;
    for _ in 0..6 {
        assert_eq!(gateway.post_json(CHECKOUT_PATH, body).await.status(), 202);
    }
    let records = read_back(&bootstrap, &topic, 6).await;
    let partitions: std::collections::BTreeSet<i32> =
        records.iter().map(Message::partition).collect();
    assert_eq!(partitions.len(), 1, "{partitions:?}");
}

#[tokio::test]
async fn an_event_is_answered_204_and_published_keyed_by_session_id_with_the_gateways_timestamp() {
    let bootstrap = testkit::kafka_bootstrap();
    let settings = settings_with_fresh_topics(&bootstrap).await;
    let topic = settings.events_topic.clone();
    let gateway = Running::start(&bootstrap, settings).await;

    let session = testkit::unique_name("session");
    let body = format!(
        r#"{{"type":"page_view","user_id":"u-1","session_id":"{session}","payload":{{"path":"/home"}},"timestamp":"1999-01-01T00:00:00Z"}}"#
    );
    let response = gateway.post_json(EVENTS_PATH, &body).await;
    assert_eq!(response.status().as_u16(), 204);
    assert!(response.bytes().await.unwrap().is_empty());

    let records = read_back(&bootstrap, &topic, 1).await;
    assert_eq!(key_of(&records[0]), session);
    let event: UserEvent = payload_of(&records[0]);
    assert_eq!(event.page_path(), Some("/home"));
    assert_eq!(event.user_id, "u-1");
    let stamped = chrono::DateTime::parse_from_rfc3339(&event.timestamp).unwrap();
    assert!(
        stamped.timestamp() > 946_684_800,
        "the client's timestamp was kept: {}",
        event.timestamp
    );
}

#[tokio::test]
async fn bad_json_missing_fields_and_a_wrong_total_are_400s_naming_the_field_and_publish_nothing() {
    let bootstrap = testkit::kafka_bootstrap();
    let settings = settings_with_fresh_topics(&bootstrap).await;
    let topic = settings.orders_topic.clone();
    let gateway = Running::start(&bootstrap, settings).await;

    let cases = [
        (r#"{"customer_id": "c", "items": ["#, "invalid_json", None),
        (
            r#"{"items":[{"product_id":"p","quantity":1,"price":1}],"total":1}"#,
            "invalid_field",
            Some("customer_id"),
        ),
        (
            r#"{"customer_id":"c","items":[{"product_id":"p","price":1}],"total":1}"#,
            "invalid_field",
            Some("items[0].quantity"),
        ),
        (
            r#"{"customer_id":"c","items":[{"product_id":"p","quantity":2,"price":29.99}],"total":59.99}"#,
            "invalid_field",
            Some("total"),
        ),
    ];
    for (body, code, field) in cases {
        let response = gateway.post_json(CHECKOUT_PATH, body).await;
        assert_eq!(response.status().as_u16(), 400, "{body}");
        let error: ErrorBody = response.json().await.unwrap();
        assert_eq!(error.error, code, "{body}: {error:?}");
        assert_eq!(error.field.as_deref(), field, "{body}: {error:?}");
    }
    let response = gateway
        .post(CHECKOUT_PATH, "text/plain", "{}".to_owned())
        .await;
    assert_eq!(response.status().as_u16(), 400);
    let error: ErrorBody = response.json().await.unwrap();
    assert_eq!(error.error, "unsupported_content_type");

    // Only the valid order sent last reaches the topic.
    let good =
        r#"{"customer_id":"good","items":[{"product_id":"p","quantity":1,"price":1}],"total":1}"#;
    assert_eq!(gateway.post_json(CHECKOUT_PATH, good).await.status(), 202);
    let records = read_back(&bootstrap, &topic, 1).await;
    assert_eq!(key_of(&records[0]), "good");
}

#[tokio::test]
async fn a_body_above_the_limit_is_a_413() {
    let bootstrap = testkit::kafka_bootstrap();
    let settings = GatewaySettings {
        body_limit: 4096,
        ..settings_with_fresh_topics(&bootstrap).await
    };
    let gateway = Running::start(&bootstrap, settings).await;
    let padding = "x".repeat(8192);
    let body = format!(
        r#"{{"type":"click","user_id":"u","session_id":"s","payload":{{"pad":"{padding}"}}}}"#
    );
    let response = gateway.post_json(EVENTS_PATH, &body).await;
    assert_eq!(response.status().as_u16(), 413);
    let error: ErrorBody = response.json().await.unwrap();
    assert_eq!(error.error, "body_too_large");
    assert!(error.message.contains("4096"), "{error:?}");
}

#[tokio::test]
async fn a_gateway_whose_broker_is_down_answers_503_with_retry_after_within_about_the_publish_timeout()
 {
    let publish_timeout = Duration::from_secs(1);
    let settings = GatewaySettings {
        publish_timeout,
        ..GatewaySettings::default()
    };
    let gateway = Running::start(&closed_port(), settings).await;

    let started = Instant::now();
    let response = gateway
        .post_json(
            CHECKOUT_PATH,
            r#"{"customer_id":"c","items":[{"product_id":"p","quantity":1,"price":1}],"total":1}"#,
        )
        .await;
    let took = started.elapsed();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .unwrap(),
        "5"
    );
    let error: ErrorBody = response.json().await.unwrap();
    assert_eq!(error.error, "kafka_unavailable");
    assert!(
        took >= publish_timeout / 2 && took < publish_timeout * 3,
        "answered after {took:?} with a publish timeout of {publish_timeout:?}"
    );

    let response = gateway
        .post_json(
            EVENTS_PATH,
            r#"{"type":"click","user_id":"u","session_id":"s"}"#,
        )
        .await;
    assert_eq!(response.status().as_u16(), 503);
}

/// The value of the counter line starting with `series` in a Prometheus text body.
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn readyz_stays_not_ready_while_the_broker_is_unreachable_and_turns_ready_once_it_is_reached()
{
    let bootstrap = testkit::kafka_bootstrap();
    let settings = GatewaySettings {
        readiness_timeout: Duration::from_millis(300),
        ..settings_with_fresh_topics(&bootstrap).await
    };
    let unreachable = Running::start(&closed_port(), settings.clone()).await;
    let reachable = Running::start(&bootstrap, settings).await;

    testkit::eventually(
        "the gateway with a broker to become ready",
        DEADLINE,
        || async { (reachable.get("/readyz").await.0 == 200).then_some(()) },
    )
    .await;

    // Not ready at every look, until the gateway has seen the broker fail three times.
    testkit::eventually("three failed broker checks", DEADLINE, || async {
        assert_eq!(unreachable.get("/readyz").await.0, 503);
        assert_eq!(unreachable.get("/healthz").await.0, 200);
        let (_, metrics) = unreachable.get("/metrics").await;
        assert_eq!(
            counter(
                &metrics,
                r#"gateway_readiness_checks_total{result="reachable"}"#
            ),
            0
        );
        (counter(
            &metrics,
            r#"gateway_readiness_checks_total{result="unreachable"}"#,
        ) >= 3)
            .then_some(())
    })
    .await;
    assert_eq!(unreachable.get("/readyz").await.0, 503);
}

/// The worker binary, whose `gateway` subcommand these last tests run as a process.
const BIN: &str = env!("CARGO_BIN_EXE_eventconsumer-worker");

/// A child process killed if a test fails before it exits by itself.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_gateway_process_serves_until_sigterm_then_flushes_and_exits_zero() {
    let bootstrap = testkit::kafka_bootstrap();
    let settings = settings_with_fresh_topics(&bootstrap).await;
    let addr = closed_port();
    let mut child = Child(
        std::process::Command::new(BIN)
            .arg("gateway")
            .args(["--bootstrap-servers", &bootstrap])
            .args(["--listen-addr", &addr])
            .args(["--orders-topic", &settings.orders_topic])
            .args(["--events-topic", &settings.events_topic])
            .args(["--log-level", "info"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the worker binary starts"),
    );
    let http = reqwest::Client::new();
    testkit::eventually("the gateway process to be ready", DEADLINE, || async {
        let ready = http.get(format!("http://{addr}/readyz")).send().await;
        matches!(ready, Ok(r) if r.status() == 200).then_some(())
    })
    .await;
    let response = http
        .post(format!("http://{addr}{CHECKOUT_PATH}"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(r#"{"customer_id":"proc","items":[{"product_id":"p","quantity":1,"price":1}],"total":1}"#)
        .send()
        .await
        .expect("the gateway process answers");
    assert_eq!(response.status().as_u16(), 202);

    let pid = child.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let status = testkit::eventually("the gateway process to exit", DEADLINE, || {
        let exited = child.0.try_wait().expect("the child's status");
        async move { exited }
    })
    .await;
    let mut logs = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().expect("piped stdout"), &mut logs)
        .expect("the logs");
    assert!(status.success(), "{status}: {logs}");
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert!(logs.contains("producer flushed"), "{logs}");

    let records = read_back(&bootstrap, &settings.orders_topic, 1).await;
    assert_eq!(key_of(&records[0]), "proc");
}

#[test]
fn a_setting_that_cannot_work_makes_the_gateway_process_exit_2_naming_the_flag() {
    let output = std::process::Command::new(BIN)
        .args(["gateway", "--sasl-mechanism", "PLAIN"])
        .args(["--listen-addr", "127.0.0.1:0"])
        .env_remove("EC_SASL_USERNAME")
        .env_remove("EC_SASL_PASSWORD")
        .output()
        .expect("the worker binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--sasl-username"), "{stderr}");

    let output = std::process::Command::new(BIN)
        .args(["gateway", "--publish-timeout", "0s"])
        .output()
        .expect("the worker binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--publish-timeout"), "{stderr}");
}
