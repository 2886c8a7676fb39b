//! The consumer (`eventconsumer-worker run`) against the real Kafka of the local stack.
//!
//! Every test runs the real binary as a child process with its own topics and group, so
//! tests can run side by side, and checks what a user would: records in the output and
//! dead-letter topics, committed offsets, exit codes. A missing stack makes every test
//! fail saying how to start it (`make dev-up && . .dev/env`). Waits poll with deadlines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_eventconsumer-worker");
/// Generous: a cold broker on a busy 2-core machine can take a while to form a group.
const DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- helpers

struct Stack {
    bootstrap: String,
}

/// A reader of every partition of `topic` from the beginning, in no group. It reads with
/// `isolation.level=read_committed` (librdkafka's default, said here): records of aborted
/// transactions (exactlyOnce workers) are never read.
fn reader_of(bootstrap: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", testkit::unique_name("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("reader");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

impl Stack {
    fn new() -> Stack {
        Stack {
            bootstrap: testkit::kafka_bootstrap(),
        }
    }

    async fn topic(&self, prefix: &str, partitions: i32) -> String {
        let name = testkit::unique_name(prefix);
        testkit::create_topic(&self.bootstrap, &name, partitions).await;
        name
    }

    fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .expect("test producer")
    }

    async fn produce(&self, p: &FutureProducer, topic: &str, key: &str, value: &[u8]) {
        self.produce_with_headers(p, topic, key, value, None).await;
    }

    async fn produce_with_headers(
        &self,
        p: &FutureProducer,
        topic: &str,
        key: &str,
        value: &[u8],
        headers: Option<OwnedHeaders>,
    ) {
        let mut record = FutureRecord::to(topic).key(key).payload(value);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        p.send(record, Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("cannot produce to {topic}: {e}"));
    }

    /// Reads `topic` from the beginning (no group) until at least `want` records arrived,
    /// then a little longer to catch extras; panics at the deadline.
    async fn read(&self, topic: &str, want: usize) -> Vec<OwnedMessage> {
        self.read_for(topic, want, DEADLINE).await
    }

    async fn read_for(&self, topic: &str, want: usize, deadline: Duration) -> Vec<OwnedMessage> {
        self.read_until(topic, &format!("{want} records"), deadline, move |out| {
            out.len() >= want
        })
        .await
    }

    /// Reads `topic` from the beginning (no group) until `done` says the records suffice,
    /// then 1 s longer to catch duplicates or extras; panics after `deadline`.
    async fn read_until(
        &self,
        topic: &str,
        what: &str,
        deadline: Duration,
        done: impl Fn(&[OwnedMessage]) -> bool + Send + 'static,
    ) -> Vec<OwnedMessage> {
        let what = what.to_owned();
        let bootstrap = self.bootstrap.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer = reader_of(&bootstrap, &topic);
            let start = std::time::Instant::now();
            let mut out = Vec::new();
            let mut settle = None;
            loop {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    out.push(m.detach());
                }
                if settle.is_none() && done(&out) {
                    settle = Some(std::time::Instant::now());
                }
                // After the wanted count, keep reading 1 s for duplicates or extras.
                if settle.is_some_and(|s| s.elapsed() > Duration::from_secs(1)) {
                    return out;
                }
                if start.elapsed() > deadline {
                    panic!(
                        "timed out after {deadline:?} reading {topic} for {what}: {} records",
                        out.len()
                    );
                }
            }
        })
        .await
        .expect("reader thread")
    }

    /// The committed offsets of `group` on every partition of `topic`.
    async fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let bootstrap = self.bootstrap.clone();
        let group = group.to_owned();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", &group)
                .create()
                .expect("offset reader");
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition(&topic, p);
            }
            // A coordinator that is moving or still loading (a fresh broker, a busy one)
            // answers with a retriable error: ask again for a while.
            let start = std::time::Instant::now();
            let got = loop {
                match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                    Ok(got) => break got,
                    Err(e) if start.elapsed() < Duration::from_secs(30) => {
                        eprintln!("committed offsets of {group}: {e}; asking again");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) => panic!("committed offsets of {group}: {e}"),
                }
            };
            (0..partitions)
                .map(
                    |p| match got.find_partition(&topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => -1,
                    },
                )
                .collect()
        })
        .await
        .expect("offset thread")
    }
}

fn text_headers(m: &OwnedMessage) -> BTreeMap<String, String> {
    m.headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn json_of(m: &OwnedMessage) -> serde_json::Value {
    serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON record")
}

/// Serves `app` (a test sink) on a free port of 127.0.0.1 for the rest of the test.
async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("sink listener");
    let addr = listener.local_addr().expect("sink address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("sink server") });
    addr
}

fn order(order_id: &str, customer: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "order_id": order_id,
        "customer_id": customer,
        "items": [{"product_id": "SKU-001", "quantity": 2, "price": 29.99}],
        "total": 59.98,
        "created_at": "2026-11-26T10:00:00Z",
    }))
    .expect("order JSON")
}

/// A running worker process whose JSON log goes to a file.
struct Worker {
    child: Child,
    log: PathBuf,
    name: String,
}

impl Worker {
    fn start(bootstrap: &str, name: &str, args: &[&str]) -> Worker {
        let log = std::env::temp_dir().join(format!("{}.log", testkit::unique_name(name)));
        let file = std::fs::File::create(&log).expect("log file");
        // Test defaults, each unless `args` sets that flag itself.
        let defaults = [
            ("--http-addr", "127.0.0.1:0"),
            ("--backoff-initial", "50ms"),
            ("--backoff-max", "200ms"),
            ("--attempt-timeout", "5s"),
            ("--shutdown-grace", "10"),
            ("--log-level", "info,librdkafka=warn"),
        ];
        let child = Command::new(BIN)
            .arg("run")
            .args(["--bootstrap-servers", bootstrap])
            .args(
                defaults
                    .iter()
                    .filter(|(flag, _)| !args.contains(flag))
                    .flat_map(|(flag, value)| [*flag, *value]),
            )
            .args(args)
            .env_clear()
            .stdout(Stdio::from(file.try_clone().expect("log file")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn the worker binary");
        Worker {
            child,
            log,
            name: name.to_owned(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn count_logged(&self, message: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|l| l["message"].as_str() == Some(message))
            .count()
    }

    /// Waits until the worker owns at least one partition (its log says so).
    async fn assigned(&self) {
        testkit::eventually(
            &format!("worker {} to be assigned partitions", self.name),
            DEADLINE,
            || {
                let lines = self.log_lines();
                let ok = lines.iter().any(|l| {
                    l["message"].as_str() == Some("partitions assigned")
                        && l["partitions"].as_str().is_some_and(|p| !p.is_empty())
                });
                async move { ok.then_some(()) }
            },
        )
        .await;
    }

    fn http_addr(&self) -> Option<SocketAddr> {
        self.log_lines().iter().find_map(|l| {
            (l["message"].as_str() == Some("health and metrics server listening"))
                .then(|| l["addr"].as_str()?.parse().ok())
                .flatten()
        })
    }

    fn sigterm(&self) {
        self.signal("TERM");
    }

    /// The line the worker logs when it stops (`worker stopped …`).
    fn summary(&self) -> serde_json::Value {
        self.log_lines()
            .into_iter()
            .find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("worker stopped"))
            })
            .expect("a summary line")
    }

    /// The worker's `eventconsumer_messages_processed_total`, if it answers.
    async fn processed(&self) -> Option<u64> {
        let body = metrics_text(self.http_addr()?).await?;
        let total: f64 = body
            .lines()
            .filter(|l| l.starts_with("eventconsumer_messages_processed_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Some(total as u64)
    }

    /// Waits until the worker is handling messages right now: its processed count rises
    /// within 50 ms.
    async fn busy(&self, what: &str) {
        testkit::eventually(what, Duration::from_secs(90), || async {
            let before = self.processed().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            (self.processed().await? > before).then_some(())
        })
        .await;
    }

    /// The partitions of the worker's latest assignment.
    fn last_assignment(&self) -> usize {
        self.log_lines()
            .iter()
            .rev()
            .find(|l| l["message"].as_str() == Some("partitions assigned"))
            .and_then(|l| {
                l["partitions"]
                    .as_str()
                    .map(|p| p.split(',').filter(|x| !x.is_empty()).count())
            })
            .unwrap_or(0)
    }

    /// Sends `SIG<name>` (`TERM`, `STOP`, `CONT`).
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Waits for the process to exit; returns its code.
    async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "worker {} did not exit within {within:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- log of worker {} ---\n{}", self.name, self.log_text());
        }
    }
}

/// A local HTTP sink that answers with `script[n]` for its n-th request (then 200), and
/// records the Idempotency-Key of each request and when it arrived (ms since the epoch).
struct Sink {
    addr: SocketAddr,
    keys: Arc<Mutex<Vec<String>>>,
    arrivals: Arc<Mutex<Vec<(String, i64)>>>,
    calls: Arc<AtomicU32>,
}

impl Sink {
    /// Arrival times of the requests for `key`, in order.
    fn arrivals_of(&self, key: &str) -> Vec<i64> {
        let mut times: Vec<i64> = self
            .arrivals
            .lock()
            .expect("sink arrivals")
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, t)| *t)
            .collect();
        times.sort_unstable();
        times
    }
}

fn epoch_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since.as_millis()).expect("ms fit in i64")
}

async fn start_sink(script: Vec<u16>) -> Sink {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicU32::new(0));
    let (k, a, c) = (keys.clone(), arrivals.clone(), calls.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let (k, a, c) = (k.clone(), a.clone(), c.clone());
            let script = script.clone();
            async move {
                let at = epoch_ms();
                let n = c.fetch_add(1, Ordering::SeqCst) as usize;
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                a.lock().expect("sink arrivals").push((key.clone(), at));
                k.lock().expect("sink keys").push(key);
                let status = script.get(n).copied().unwrap_or(200);
                StatusCode::from_u16(status).expect("scripted status")
            }
        }),
    );
    let addr = serve(app).await;
    Sink {
        addr,
        keys,
        arrivals,
        calls,
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread")]
async fn an_order_is_published_to_the_output_topic_and_its_offset_is_committed() {
    let s = Stack::new();
    let input = s.topic("orders", 2).await;
    let output = s.topic("order-payment", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("payment");
    let p = s.producer();
    for i in 0..5 {
        s.produce(
            &p,
            &input,
            &format!("c-{i}"),
            &order(&format!("o-{i}"), &format!("c-{i}")),
        )
        .await;
    }
    let w = Worker::start(
        &s.bootstrap,
        "payment",
        &[
            "--handler",
            "order",
            "--action",
            "payment",
            "--topics",
            &input,
            "--group-id",
            &group,
            "--output-topic",
            &output,
            "--dlq-topic",
            &dlq,
        ],
    );
    let out = s.read(&output, 5).await;
    assert_eq!(out.len(), 5, "one payment per order");
    let mut ids: Vec<String> = out
        .iter()
        .map(|m| {
            let v = json_of(m);
            assert_eq!(v["status"], "initiated");
            assert_eq!(v["amount_cents"], 5998);
            assert_eq!(
                m.key(),
                v["order_id"].as_str().map(str::as_bytes),
                "keyed by order id"
            );
            v["order_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (0..5).map(|i| format!("o-{i}")).collect::<Vec<_>>());
    testkit::eventually("offsets committed for all 5 orders", DEADLINE, || async {
        let c = s.committed(&group, &input, 2).await;
        (c.iter().map(|o| (*o).max(0)).sum::<i64>() == 5).then_some(())
    })
    .await;
    let addr = w.http_addr().expect("the worker logs its HTTP address");
    let get = |path: &'static str| async move {
        let r = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect(path);
        (r.status().as_u16(), r.text().await.expect("body"))
    };
    assert_eq!(get("/readyz").await.0, 200, "ready once assigned");
    let (_, metrics) = get("/metrics").await;
    assert!(
        metrics.contains(r#"eventconsumer_messages_processed_total{handler="order/payment"} 5"#),
        "{metrics}"
    );
    testkit::eventually("consumer lag to be measured as 0", DEADLINE, || async {
        let (_, m) = get("/metrics").await;
        m.lines()
            .any(|l| l.starts_with("eventconsumer_consumer_lag{") && l.ends_with(" 0"))
            .then_some(())
    })
    .await;
}

fn order_args<'a>(input: &'a str, group: &'a str, output: &'a str, dlq: &'a str) -> Vec<&'a str> {
    vec![
        "--handler",
        "order",
        "--action",
        "email",
        "--topics",
        input,
        "--group-id",
        group,
        "--output-topic",
        output,
        "--dlq-topic",
        dlq,
        "--max-attempts",
        "3",
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_failing_twice_is_retried_and_the_order_then_succeeds() {
    let s = Stack::new();
    let input = s.topic("orders", 1).await;
    let output = s.topic("order-email", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("email");
    let sink = start_sink(vec![500, 500]).await;
    let url = format!("http://{}/hook", sink.addr);
    s.produce(&s.producer(), &input, "c-1", &order("o-retry", "c-1"))
        .await;
    let mut args = order_args(&input, &group, &output, &dlq);
    args.extend(["--sink-url", &url]);
    let w = Worker::start(&s.bootstrap, "email", &args);

    let out = s.read(&output, 1).await;
    assert_eq!(out.len(), 1, "published once, after the sink accepted");
    assert_eq!(json_of(&out[0])["status"], "queued");
    assert_eq!(sink.calls.load(Ordering::SeqCst), 3, "500, 500, then 200");
    assert!(
        sink.keys.lock().unwrap().iter().all(|k| k == "o-retry"),
        "every call carries the order id as Idempotency-Key"
    );
    assert_eq!(w.count_logged("attempt failed; retrying"), 2);
    testkit::eventually("the offset to be committed", DEADLINE, || async {
        (s.committed(&group, &input, 1).await == vec![1]).then_some(())
    })
    .await;
    assert!(
        s.read_for(&dlq, 0, DEADLINE).await.is_empty(),
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_whose_sink_keeps_failing_is_dead_lettered_with_every_documented_header() {
    let s = Stack::new();
    let input = s.topic("orders", 1).await;
    let output = s.topic("order-email", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("email");
    let sink = start_sink(vec![503; 100]).await;
    let url = format!("http://{}/hook", sink.addr);
    let original = OwnedHeaders::new().insert(Header {
        key: "trace-id",
        value: Some("t-42"),
    });
    s.produce_with_headers(
        &s.producer(),
        &input,
        "c-9",
        &order("o-doomed", "c-9"),
        Some(original),
    )
    .await;
    let mut args = order_args(&input, &group, &output, &dlq);
    args.extend(["--sink-url", &url]);
    let _w = Worker::start(&s.bootstrap, "email", &args);

    let dead = s.read(&dlq, 1).await;
    assert_eq!(dead.len(), 1);
    let m = &dead[0];
    assert_eq!(m.key(), Some(&b"c-9"[..]), "original key kept");
    assert_eq!(
        m.payload(),
        Some(&order("o-doomed", "c-9")[..]),
        "original value kept"
    );
    let h = text_headers(m);
    for name in eventconsumer_worker::delivery::dlq::header::ALL {
        assert!(h.contains_key(*name), "missing {name} in {h:?}");
    }
    assert_eq!(h["trace-id"], "t-42", "original headers kept");
    assert_eq!(h["ec-dlt-original-topic"], input);
    assert_eq!(h["ec-dlt-original-partition"], "0");
    assert_eq!(h["ec-dlt-original-offset"], "0");
    assert_eq!(h["ec-dlt-consumer-group"], group);
    assert_eq!(h["ec-dlt-handler"], "order/email");
    assert_eq!(h["ec-dlt-attempts"], "3");
    assert_eq!(h["ec-dlt-error-class"], "sink-unavailable");
    assert_eq!(h["ec-dlt-error-retryable"], "true");
    assert!(h["ec-dlt-error-message"].contains("503"), "{h:?}");
    assert!(
        h["ec-dlt-first-failure"] < h["ec-dlt-last-failure"],
        "{h:?}"
    );
    assert_eq!(sink.calls.load(Ordering::SeqCst), 3);
    testkit::eventually(
        "the offset to be committed past the dead letter",
        DEADLINE,
        || async { (s.committed(&group, &input, 1).await == vec![1]).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_is_dead_lettered_at_once_without_retries_and_the_next_one_succeeds() {
    let s = Stack::new();
    let input = s.topic("orders", 1).await;
    let output = s.topic("order-email", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("email");
    let p = s.producer();
    s.produce(&p, &input, "c-1", b"{not json").await;
    let mut bad_total: serde_json::Value = serde_json::from_slice(&order("o-bad", "c-1")).unwrap();
    bad_total["total"] = json!(1.0);
    s.produce(&p, &input, "c-1", &serde_json::to_vec(&bad_total).unwrap())
        .await;
    s.produce(&p, &input, "c-1", &order("o-good", "c-1")).await;
    let w = Worker::start(
        &s.bootstrap,
        "email",
        &order_args(&input, &group, &output, &dlq),
    );

    let dead = s.read(&dlq, 2).await;
    assert_eq!(dead.len(), 2);
    let classes: Vec<_> = dead
        .iter()
        .map(|m| text_headers(m)["ec-dlt-error-class"].clone())
        .collect();
    assert_eq!(classes, vec!["decode", "validation"]);
    for m in &dead {
        let h = text_headers(m);
        assert_eq!(h["ec-dlt-attempts"], "1", "no retry for a poison message");
        assert_eq!(h["ec-dlt-error-retryable"], "false");
    }
    assert!(text_headers(&dead[1])["ec-dlt-error-message"].contains("total"));
    let out = s.read(&output, 1).await;
    assert_eq!(json_of(&out[0])["order_id"], "o-good");
    assert_eq!(w.count_logged("attempt failed; retrying"), 0);
    testkit::eventually("all three offsets committed", DEADLINE, || async {
        (s.committed(&group, &input, 1).await == vec![3]).then_some(())
    })
    .await;
}

/// With a write of partition 0's first record failing (its DLQ or retry topic is missing):
/// partition 1's order `o-p1` goes through and commits, the worker logs `failed_write` and
/// pauses partition 0, and partition 0 commits nothing while the record waits.
async fn expect_partition_0_held(
    s: &Stack,
    w: &Worker,
    output: &str,
    group: &str,
    input: &str,
    failed_write: &str,
) {
    let out = s.read(output, 1).await;
    assert_eq!(
        json_of(&out[0])["order_id"],
        "o-p1",
        "the other partition kept going"
    );
    testkit::eventually(&format!("the log line {failed_write:?}"), DEADLINE, || {
        let n = w.count_logged(failed_write);
        async move { (n >= 2).then_some(()) }
    })
    .await;
    testkit::eventually("partition 1 committed", DEADLINE, || async {
        (s.committed(group, input, 2).await[1] == 1).then_some(())
    })
    .await;
    // Past two auto-commit periods: partition 0 must still have no commit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        s.committed(group, input, 2).await[0],
        -1,
        "nothing committed past the record whose write failed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_dead_letter_topic_holds_the_offset_until_the_topic_exists() {
    let s = Stack::new();
    let input = s.topic("orders", 2).await;
    let output = s.topic("order-email", 1).await;
    // Not created yet: auto topic creation is off on the stack's broker.
    let dlq = testkit::unique_name("orders-dlq-later");
    let group = testkit::unique_name("email");
    let p = s.producer();
    // Partition 0 gets the poison message; partition 1 keeps working meanwhile.
    let poison = FutureRecord::to(&input)
        .key("c-0")
        .payload(&b"{not json"[..])
        .partition(0);
    p.send(poison, Duration::from_secs(10))
        .await
        .expect("produce");
    let good_bytes = order("o-p1", "c-1");
    let good = FutureRecord::to(&input)
        .key("c-1")
        .payload(&good_bytes[..])
        .partition(1);
    p.send(good, Duration::from_secs(10))
        .await
        .expect("produce");
    let w = Worker::start(
        &s.bootstrap,
        "email",
        &order_args(&input, &group, &output, &dlq),
    );

    expect_partition_0_held(
        &s,
        &w,
        &output,
        &group,
        &input,
        "dead-letter write failed; partition paused, offset not stored",
    )
    .await;

    testkit::create_topic(&s.bootstrap, &dlq, 1).await;
    let dead = s.read(&dlq, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(text_headers(&dead[0])["ec-dlt-original-partition"], "0");
    testkit::eventually("partition 0 committed after recovery", DEADLINE, || async {
        (s.committed(&group, &input, 2).await == vec![1, 1]).then_some(())
    })
    .await;
    assert!(w.count_logged("dead-letter topic available again; partition resumes") >= 1);
    assert_eq!(
        w.count_logged(
            "the dead-letter topic does not exist; sends to it fail and are retried until it is created"
        ),
        1,
        "warned at startup"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_commits_offsets_and_exits_with_code_zero() {
    let s = Stack::new();
    let input = s.topic("orders", 2).await;
    let output = s.topic("order-email", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("email");
    let p = s.producer();
    for i in 0..20 {
        s.produce(
            &p,
            &input,
            &format!("c-{i}"),
            &order(&format!("o-{i}"), &format!("c-{i}")),
        )
        .await;
    }
    let mut w = Worker::start(
        &s.bootstrap,
        "email",
        &order_args(&input, &group, &output, &dlq),
    );
    s.read(&output, 20).await;
    w.sigterm();
    assert_eq!(w.exit_code(Duration::from_secs(30)).await, Some(0));
    let summary = w.summary();
    assert_eq!(summary["processed"], 20, "{summary}");
    assert_eq!(summary["committed"], true, "{summary}");
    // Committed synchronously before exit: visible at once, no waiting.
    let committed = s.committed(&group, &input, 2).await;
    assert_eq!(committed.iter().sum::<i64>(), 20, "{committed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_of_one_customer_are_handled_in_the_order_they_were_placed() {
    let s = Stack::new();
    let input = s.topic("orders", 4).await;
    let output = s.topic("order-email", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("email");
    let p = s.producer();
    let customers = 6;
    let per_customer = 25;
    for n in 0..per_customer {
        for c in 0..customers {
            s.produce(
                &p,
                &input,
                &format!("c-{c}"),
                &order(&format!("c-{c}/{n:03}"), &format!("c-{c}")),
            )
            .await;
        }
    }
    let _w = Worker::start(
        &s.bootstrap,
        "email",
        &order_args(&input, &group, &output, &dlq),
    );
    // One output partition: its order is the order the worker finished the orders in.
    let out = s.read(&output, customers * per_customer).await;
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for m in &out {
        let v = json_of(m);
        seen.entry(v["customer_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(v["order_id"].as_str().unwrap().to_owned());
    }
    for (customer, ids) in seen {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "orders of {customer} out of order");
        assert_eq!(ids.len(), per_customer);
    }
}

fn upload(video_id: &str, size_bytes: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "video_id": video_id,
        "s3_key": format!("uploads/{video_id}.mp4"),
        "user_id": "u-1",
        "size_bytes": size_bytes,
    }))
    .expect("upload JSON")
}

/// Transcode at 50 MB/s: a 1 MB upload takes 20 ms, slow enough to kill or rebalance a
/// worker in the middle of a stream.
const SLOW_TRANSCODE: &str = "50000000";

fn transcode_args<'a>(
    input: &'a str,
    group: &'a str,
    output: &'a str,
    dlq: &'a str,
) -> Vec<&'a str> {
    vec![
        "--handler",
        "video",
        "--stage",
        "transcode",
        "--topics",
        input,
        "--group-id",
        group,
        "--output-topic",
        output,
        "--dlq-topic",
        dlq,
        "--transcode-bytes-per-sec",
        SLOW_TRANSCODE,
    ]
}

/// Produces `n` uploads `v-0000…` (every 50th a poison message) round-robin over
/// `partitions`; returns the ids expected in the output and the poison count.
async fn produce_uploads(
    s: &Stack,
    topic: &str,
    partitions: i32,
    from: usize,
    n: usize,
) -> (Vec<String>, usize) {
    let p = s.producer();
    let mut ids = Vec::new();
    let mut poison = 0;
    for i in from..from + n {
        let id = format!("v-{i:04}");
        let value = if i % 50 == 49 {
            poison += 1;
            b"{\"video_id\": 1}".to_vec()
        } else {
            ids.push(id.clone());
            upload(&id, 1_000_000)
        };
        let partition = i32::try_from(i).expect("small index") % partitions;
        let record = FutureRecord::to(topic)
            .key(&id)
            .payload(&value[..])
            .partition(partition);
        p.send(record, Duration::from_secs(10))
            .await
            .expect("produce");
    }
    (ids, poison)
}

/// The source partition and offset a dead-letter record names.
fn original_position(m: &OwnedMessage) -> (String, String) {
    let h = text_headers(m);
    (
        h["ec-dlt-original-partition"].clone(),
        h["ec-dlt-original-offset"].clone(),
    )
}

/// Checks that every expected id reached the output and every poison message the DLQ;
/// returns (output records, duplicates).
async fn assert_nothing_lost(
    s: &Stack,
    output: &str,
    dlq: &str,
    ids: &[String],
    poison: usize,
) -> (usize, usize) {
    // Until every id arrived: with duplicates, a record count would stop too early.
    let wanted: std::collections::HashSet<String> = ids.iter().cloned().collect();
    let out = s
        .read_until(output, "every expected video id", DEADLINE, move |out| {
            let seen: std::collections::HashSet<String> = out
                .iter()
                .filter_map(|m| json_of(m)["video_id"].as_str().map(str::to_owned))
                .collect();
            wanted.is_subset(&seen)
        })
        .await;
    let dead = s
        .read_until(dlq, "every poison message", DEADLINE, move |dead| {
            dead.iter()
                .map(original_position)
                .collect::<std::collections::HashSet<_>>()
                .len()
                >= poison
        })
        .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in &out {
        *counts
            .entry(
                json_of(m)["video_id"]
                    .as_str()
                    .expect("video_id")
                    .to_owned(),
            )
            .or_default() += 1;
    }
    let missing: Vec<_> = ids.iter().filter(|id| !counts.contains_key(*id)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let dead_offsets: std::collections::BTreeSet<_> = dead.iter().map(original_position).collect();
    assert_eq!(
        dead_offsets.len(),
        poison,
        "every poison message dead-lettered"
    );
    let duplicates = out.len() - counts.len() + (dead.len() - dead_offsets.len());
    (out.len(), duplicates)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_stream_loses_nothing_after_a_restart() {
    let s = Stack::new();
    let input = s.topic("uploads", 3).await;
    let output = s.topic("transcoded", 1).await;
    let dlq = s.topic("uploads-dlq", 1).await;
    let group = testkit::unique_name("transcode");
    let (ids, poison) = produce_uploads(&s, &input, 3, 0, 300).await;
    let args = transcode_args(&input, &group, &output, &dlq);

    let mut first = Worker::start(&s.bootstrap, "transcode-1", &args);
    let before = s.read(&output, 60).await.len();
    first.kill9();
    let committed = s.committed(&group, &input, 3).await;
    assert!(
        committed.iter().map(|o| (*o).max(0)).sum::<i64>() < 300,
        "killed mid-stream, not after the end: {committed:?}"
    );

    let _second = Worker::start(&s.bootstrap, "transcode-2", &args);
    let (records, duplicates) = assert_nothing_lost(&s, &output, &dlq, &ids, poison).await;
    println!(
        "kill -9 after ≥{before} outputs: {} expected, {records} output records, {duplicates} duplicates (redelivered after the crash), {poison} dead-lettered",
        ids.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_in_one_group_lose_nothing_through_rebalances() {
    let s = Stack::new();
    let input = s.topic("uploads", 4).await;
    let output = s.topic("transcoded", 1).await;
    let dlq = s.topic("uploads-dlq", 1).await;
    let group = testkit::unique_name("transcode");
    let (mut ids, mut poison) = produce_uploads(&s, &input, 4, 0, 400).await;
    let args = transcode_args(&input, &group, &output, &dlq);

    let mut a = Worker::start(&s.bootstrap, "transcode-a", &args);
    s.read(&output, 40).await;
    // B joins: partitions are revoked from A and shared.
    let b = Worker::start(&s.bootstrap, "transcode-b", &args);
    b.assigned().await;
    let (more, more_poison) = produce_uploads(&s, &input, 4, 400, 200).await;
    ids.extend(more);
    poison += more_poison;
    // A leaves: B takes everything over.
    a.sigterm();
    assert_eq!(a.exit_code(Duration::from_secs(30)).await, Some(0));
    let (records, duplicates) = assert_nothing_lost(&s, &output, &dlq, &ids, poison).await;
    assert!(
        b.count_logged("partitions revoked; draining") >= 1,
        "B saw a rebalance"
    );
    println!(
        "rebalance: {} expected, {records} output records, {duplicates} duplicates, {poison} dead-lettered",
        ids.len()
    );
}

fn user_event(kind: &str, path: &str, session: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": kind,
        "user_id": "u",
        "session_id": session,
        "payload": {"path": path},
        "timestamp": "2026-11-26T10:00:00Z",
    }))
    .expect("event JSON")
}

/// Events `from..from + n`: three paths, every fourth a click; adds the page views to
/// `expected`.
fn events_batch(
    n: usize,
    from: usize,
    expected: &mut BTreeMap<String, u64>,
) -> Vec<(String, Vec<u8>)> {
    let paths = ["/", "/cart", "/checkout"];
    (from..from + n)
        .map(|i| {
            let path = paths[i % 3];
            let kind = if i % 4 == 3 { "click" } else { "page_view" };
            if kind == "page_view" {
                *expected.entry(path.to_owned()).or_default() += 1;
            }
            let session = format!("s-{}", i % 7);
            (session.clone(), user_event(kind, path, &session))
        })
        .collect()
}

/// Sums the published window reports: (events, page views per path).
async fn counted(s: &Stack, output: &str, at_least: u64) -> (u64, BTreeMap<String, u64>) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let reports = s.read_for(output, 0, DEADLINE).await;
        let mut events = 0;
        let mut paths: BTreeMap<String, u64> = BTreeMap::new();
        for r in &reports {
            let v = json_of(r);
            events += v["events"].as_u64().expect("events count");
            for (path, n) in v["page_views"].as_object().expect("page_views") {
                *paths.entry(path.clone()).or_default() += n.as_u64().expect("a count");
            }
        }
        if events >= at_least {
            return (events, paths);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {events} of {at_least} counted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn analytics_counts_stay_exact_across_a_clean_restart_and_lose_nothing_after_a_crash() {
    let s = Stack::new();
    let input = s.topic("user-events", 2).await;
    let output = s.topic("analytics-counts", 1).await;
    let dlq = s.topic("user-events-dlq", 1).await;
    let group = testkit::unique_name("analytics");
    let args = vec![
        "--handler",
        "analytics",
        "--window",
        "1s",
        "--topics",
        &input,
        "--group-id",
        &group,
        "--output-topic",
        &output,
        "--dlq-topic",
        &dlq,
    ];
    let p = s.producer();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut produce = |n, from| events_batch(n, from, &mut expected);
    for (key, value) in produce(100, 0) {
        s.produce(&p, &input, &key, &value).await;
    }
    s.produce(&p, &input, "s-x", b"not json").await; // dead-lettered, never counted

    let mut first = Worker::start(&s.bootstrap, "analytics-1", &args);
    counted(&s, &output, 100).await;
    first.sigterm();
    assert_eq!(first.exit_code(Duration::from_secs(30)).await, Some(0));

    for (key, value) in produce(100, 100) {
        s.produce(&p, &input, &key, &value).await;
    }
    let mut second = Worker::start(&s.bootstrap, "analytics-2", &args);
    let (events, page_views) = counted(&s, &output, 200).await;
    assert_eq!(
        events, 200,
        "a clean restart counts every event exactly once"
    );
    let mut exact: BTreeMap<String, u64> = BTreeMap::new();
    events_batch(200, 0, &mut exact);
    assert_eq!(page_views, exact);
    assert_eq!(s.read(&dlq, 1).await.len(), 1);

    // A crash: counts already published may be counted again, but none is lost.
    for (key, value) in produce(100, 200) {
        s.produce(&p, &input, &key, &value).await;
    }
    counted(&s, &output, 250).await;
    second.kill9();
    let _third = Worker::start(&s.bootstrap, "analytics-3", &args);
    let (events, page_views) = counted(&s, &output, 300).await;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    events_batch(300, 0, &mut expected);
    for (path, n) in &expected {
        assert!(page_views[path] >= *n, "{path}: {} < {n}", page_views[path]);
    }
    println!(
        "analytics after kill -9: 300 events, {events} counted ({} counted twice)",
        events - 300
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_the_dead_letter_topic_is_missing_exits_at_once_without_committing_that_message()
 {
    let s = Stack::new();
    let input = s.topic("orders", 1).await;
    let output = s.topic("order-email", 1).await;
    let dlq = testkit::unique_name("orders-dlq-never");
    let group = testkit::unique_name("email");
    let p = s.producer();
    s.produce(&p, &input, "c-1", &order("o-1", "c-1")).await;
    s.produce(&p, &input, "c-1", b"{poison").await;
    let mut w = Worker::start(
        &s.bootstrap,
        "email",
        &order_args(&input, &group, &output, &dlq),
    );
    testkit::eventually("the DLQ write to fail", DEADLINE, || {
        let n = w.count_logged("dead-letter write failed; partition paused, offset not stored");
        async move { (n >= 1).then_some(()) }
    })
    .await;
    testkit::eventually("the good order's offset committed", DEADLINE, || async {
        (s.committed(&group, &input, 1).await == vec![1]).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    w.sigterm();
    // The grace is 10 s; a message only waiting for the DLQ does not hold the exit up.
    assert_eq!(w.exit_code(Duration::from_secs(30)).await, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        s.committed(&group, &input, 1).await,
        vec![1],
        "the poison message stays uncommitted for the next worker"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_beyond_the_partition_count_is_a_ready_standby() {
    let s = Stack::new();
    let input = s.topic("standby", 1).await;
    let output = s.topic("standby-out", 1).await;
    let dlq = s.topic("standby-dlq", 1).await;
    let group = testkit::unique_name("standby");
    let args = order_args(&input, &group, &output, &dlq);
    let first = Worker::start(&s.bootstrap, "standby-a", &args);
    first.assigned().await;
    let second = Worker::start(&s.bootstrap, "standby-b", &args);
    for w in [&first, &second] {
        testkit::eventually(
            &format!("worker {} to answer /readyz with 200", w.name),
            DEADLINE,
            || async {
                let addr = w.http_addr()?;
                let r = reqwest::get(format!("http://{addr}/readyz")).await.ok()?;
                (r.status().as_u16() == 200).then_some(())
            },
        )
        .await;
    }
    let owners = [&first, &second]
        .iter()
        .filter(|w| {
            w.log_lines().iter().rev().find_map(|l| {
                (l["message"].as_str() == Some("partitions assigned"))
                    .then(|| l["partitions"].as_str().is_some_and(|p| !p.is_empty()))
            }) == Some(true)
        })
        .count();
    assert_eq!(
        owners, 1,
        "one partition, so exactly one owner and one standby"
    );
}

// ---------------------------------------------------------------- retryTopics mode

/// The fault injector's choice with `--fault-fail-percent 50`, computed the way the worker
/// does, so a test can pick a topic name whose records fail in the pattern it needs.
fn fails_at_half(topic: &str, partition: i32, offset: i64) -> bool {
    eventconsumer_worker::testing::FaultSpec {
        per_million: 500_000,
        times: 1,
    }
    .chosen(topic, partition, offset)
}

/// Creates a fresh topic whose name makes `pattern` true (which records fail).
async fn topic_where(
    s: &Stack,
    prefix: &str,
    partitions: i32,
    pattern: impl Fn(&str) -> bool,
) -> String {
    loop {
        let name = testkit::unique_name(prefix);
        if pattern(&name) {
            testkit::create_topic(&s.bootstrap, &name, partitions).await;
            return name;
        }
    }
}

/// Creates the retry topics of `group` for attempts 2..=`max_attempts`, as the operator
/// does: with the source's partition count.
async fn create_retry_topics(
    s: &Stack,
    group: &str,
    partitions: i32,
    max_attempts: u32,
) -> Vec<String> {
    let mut topics = Vec::new();
    for attempt in 2..=max_attempts {
        let t = eventconsumer_contract::retry_topic(group, attempt);
        testkit::create_topic(&s.bootstrap, &t, partitions).await;
        topics.push(t);
    }
    topics
}

/// [`order_args`] in `retryTopics` mode with `max_attempts`.
fn retry_mode_args<'a>(
    input: &'a str,
    group: &'a str,
    output: &'a str,
    dlq: &'a str,
    max_attempts: &'a str,
) -> Vec<&'a str> {
    let mut args = order_args(input, group, output, dlq);
    let at = args
        .iter()
        .position(|a| *a == "--max-attempts")
        .expect("order_args sets --max-attempts");
    args[at + 1] = max_attempts;
    args.extend(["--delivery-mode", "retryTopics"]);
    args
}

fn has_retry_headers(h: &BTreeMap<String, String>) -> bool {
    h.keys()
        .any(|k| k.starts_with(eventconsumer_contract::headers::RETRY_PREFIX))
}

#[tokio::test(flavor = "multi_thread")]
async fn in_retry_topics_mode_a_message_failing_twice_succeeds_through_both_retry_topics_after_a_later_message_of_its_partition()
 {
    use eventconsumer_contract::headers as hn;
    let s = Stack::new();
    // Offset 0 fails (twice), offset 1 does not.
    let input = topic_where(&s, "orders", 1, |t| {
        fails_at_half(t, 0, 0) && !fails_at_half(t, 0, 1)
    })
    .await;
    let output = s.topic("order-email", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("email");
    let retry = create_retry_topics(&s, &group, 1, 3).await;
    let p = s.producer();
    // The same key: per-key order is not kept in this mode, and this shows it.
    s.produce(&p, &input, "c-1", &order("o-slow", "c-1")).await;
    s.produce(&p, &input, "c-1", &order("o-fast", "c-1")).await;
    let mut args = retry_mode_args(&input, &group, &output, &dlq, "3");
    args.extend(["--fault-fail-percent", "50", "--fault-fail-times", "2"]);
    let w = Worker::start(&s.bootstrap, "email", &args);

    let out = s.read(&output, 2).await;
    let ids: Vec<_> = out.iter().map(|m| json_of(m)["order_id"].clone()).collect();
    assert_eq!(
        ids,
        vec!["o-fast", "o-slow"],
        "the later message did not wait for the retried one"
    );
    for (n, topic) in retry.iter().enumerate() {
        let copies = s.read(topic, 1).await;
        assert_eq!(copies.len(), 1, "one copy in {topic}");
        let m = &copies[0];
        assert_eq!(m.key(), Some(&b"c-1"[..]));
        assert_eq!(m.payload(), Some(&order("o-slow", "c-1")[..]));
        let h = text_headers(m);
        assert_eq!(h[hn::RETRY_ATTEMPT], (n + 2).to_string(), "{h:?}");
        assert_eq!(h[hn::RETRY_ORIGINAL_TOPIC], input);
        assert_eq!(h[hn::RETRY_ORIGINAL_PARTITION], "0");
        assert_eq!(h[hn::RETRY_ORIGINAL_OFFSET], "0");
        assert!(
            h[hn::RETRY_ORIGINAL_TIMESTAMP].parse::<i64>().is_ok(),
            "{h:?}"
        );
        assert!(h[hn::RETRY_DUE].parse::<i64>().is_ok(), "{h:?}");
        assert!(h[hn::RETRY_FIRST_FAILURE].ends_with('Z'), "{h:?}");
    }
    testkit::eventually("source and retry offsets committed", DEADLINE, || async {
        let source = s.committed(&group, &input, 1).await;
        let r1 = s.committed(&group, &retry[0], 1).await;
        let r2 = s.committed(&group, &retry[1], 1).await;
        (source == vec![2] && r1 == vec![1] && r2 == vec![1]).then_some(())
    })
    .await;
    assert!(
        s.read_for(&dlq, 0, DEADLINE).await.is_empty(),
        "nothing dead-lettered"
    );
    assert_eq!(
        w.count_logged("attempt failed; retrying through the retry topic"),
        2
    );
    let addr = w.http_addr().expect("the worker logs its HTTP address");
    let metrics = metrics_text(addr).await.expect("the worker's /metrics");
    assert!(
        metrics.contains(r#"eventconsumer_retry_topic_writes_total{handler="order/email"} 2"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_retry_topics_mode_an_always_failing_message_is_dead_lettered_after_max_attempts_naming_its_source_and_keeping_its_redrive_count()
 {
    use eventconsumer_contract::headers as hn;
    let s = Stack::new();
    let input = s.topic("orders", 1).await;
    let output = s.topic("order-email", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("email");
    let retry = create_retry_topics(&s, &group, 1, 3).await;
    let original = OwnedHeaders::new()
        .insert(Header {
            key: "trace-id",
            value: Some("t-7"),
        })
        .insert(Header {
            key: hn::REDRIVE_COUNT,
            value: Some("1"),
        });
    s.produce_with_headers(
        &s.producer(),
        &input,
        "c-9",
        &order("o-doomed", "c-9"),
        Some(original),
    )
    .await;
    let mut args = retry_mode_args(&input, &group, &output, &dlq, "3");
    args.extend(["--fault-fail-percent", "100", "--fault-fail-times", "100"]);
    let _w = Worker::start(&s.bootstrap, "email", &args);

    let dead = s.read(&dlq, 1).await;
    assert_eq!(dead.len(), 1);
    let m = &dead[0];
    assert_eq!(m.key(), Some(&b"c-9"[..]));
    assert_eq!(m.payload(), Some(&order("o-doomed", "c-9")[..]));
    let h = text_headers(m);
    assert_eq!(
        h[hn::DLT_ORIGINAL_TOPIC],
        input,
        "names the source, not a retry topic"
    );
    assert_eq!(h[hn::DLT_ORIGINAL_PARTITION], "0");
    assert_eq!(h[hn::DLT_ORIGINAL_OFFSET], "0");
    assert!(h.contains_key(hn::DLT_ORIGINAL_TIMESTAMP), "{h:?}");
    assert_eq!(h[hn::DLT_ATTEMPTS], "3");
    assert_eq!(h[hn::DLT_ERROR_CLASS], "injected");
    assert_eq!(h[hn::DLT_ERROR_RETRYABLE], "true");
    assert_eq!(h[hn::DLT_CONSUMER_GROUP], group);
    assert!(
        h[hn::DLT_FIRST_FAILURE] < h[hn::DLT_LAST_FAILURE],
        "first failure carried through the retry topics: {h:?}"
    );
    assert!(
        !has_retry_headers(&h),
        "no ec-retry-* on a dead letter: {h:?}"
    );
    assert_eq!(h[hn::REDRIVE_COUNT], "1", "redrive count kept");
    assert_eq!(h["trace-id"], "t-7", "original headers kept");
    for topic in &retry {
        let copies = s.read(topic, 1).await;
        assert_eq!(copies.len(), 1, "one hop through {topic}");
        assert_eq!(text_headers(&copies[0])[hn::REDRIVE_COUNT], "1");
    }
    testkit::eventually("every offset committed", DEADLINE, || async {
        let source = s.committed(&group, &input, 1).await;
        let r2 = s.committed(&group, &retry[1], 1).await;
        (source == vec![1] && r2 == vec![1]).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn in_retry_topics_mode_a_restarted_worker_continues_the_attempt_count_of_a_waiting_retry() {
    use eventconsumer_contract::headers as hn;
    let s = Stack::new();
    let input = s.topic("orders", 1).await;
    let output = s.topic("order-email", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("email");
    let retry = create_retry_topics(&s, &group, 1, 3).await;
    s.produce(&s.producer(), &input, "c-3", &order("o-3", "c-3"))
        .await;
    let mut args = retry_mode_args(&input, &group, &output, &dlq, "3");
    // Long enough to stop the worker while the record waits in retry.1 (4–8 s).
    args.extend([
        "--backoff-initial",
        "4s",
        "--backoff-max",
        "4s",
        "--fault-fail-percent",
        "100",
        "--fault-fail-times",
        "100",
    ]);
    let mut first = Worker::start(&s.bootstrap, "email-1", &args);
    let waiting = s.read(&retry[0], 1).await;
    assert_eq!(text_headers(&waiting[0])[hn::RETRY_ATTEMPT], "2");
    let stopped = std::time::Instant::now();
    first.sigterm();
    assert_eq!(first.exit_code(Duration::from_secs(30)).await, Some(0));
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "a waiting retry does not hold up the exit: {:?}",
        stopped.elapsed()
    );
    assert!(
        s.read_for(&dlq, 0, DEADLINE).await.is_empty(),
        "not dead-lettered before the restart"
    );

    let _second = Worker::start(&s.bootstrap, "email-2", &args);
    let dead = s.read(&dlq, 1).await;
    assert_eq!(dead.len(), 1);
    let h = text_headers(&dead[0]);
    assert_eq!(
        h[hn::DLT_ATTEMPTS],
        "3",
        "counted on from the header: {h:?}"
    );
    assert_eq!(h[hn::DLT_ORIGINAL_TOPIC], input);
    assert_eq!(s.read(&retry[0], 1).await.len(), 1, "retry.1 written once");
    assert_eq!(s.read(&retry[1], 1).await.len(), 1, "retry.2 written once");
    assert_eq!(
        s.committed(&group, &input, 1).await,
        vec![1],
        "the source offset was committed by the first worker"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_retry_topics_mode_a_missing_retry_topic_pauses_only_that_partition_and_commits_nothing_past_the_record()
 {
    let s = Stack::new();
    // Partition 0's record fails once; partition 1's does not.
    let input = topic_where(&s, "orders", 2, |t| {
        fails_at_half(t, 0, 0) && !fails_at_half(t, 1, 0)
    })
    .await;
    let output = s.topic("order-email", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("email");
    // Not created yet: auto topic creation is off on the stack's broker.
    let retry1 = eventconsumer_contract::retry_topic(&group, 2);
    let p = s.producer();
    for (partition, id) in [(0, "o-p0"), (1, "o-p1")] {
        let value = order(id, "c");
        let record = FutureRecord::to(&input)
            .key(id)
            .payload(&value[..])
            .partition(partition);
        p.send(record, Duration::from_secs(10))
            .await
            .expect("produce");
    }
    let mut args = retry_mode_args(&input, &group, &output, &dlq, "2");
    args.extend(["--fault-fail-percent", "50", "--fault-fail-times", "1"]);
    let w = Worker::start(&s.bootstrap, "email", &args);

    expect_partition_0_held(
        &s,
        &w,
        &output,
        &group,
        &input,
        "retry-topic write failed; partition paused, offset not stored",
    )
    .await;

    testkit::create_topic(&s.bootstrap, &retry1, 2).await;
    let out = s
        .read_until(&output, "o-p0 after its retry", DEADLINE, |out| {
            out.iter().any(|m| json_of(m)["order_id"] == "o-p0")
        })
        .await;
    assert!(out.iter().any(|m| json_of(m)["order_id"] == "o-p1"));
    testkit::eventually("partition 0 committed after recovery", DEADLINE, || async {
        (s.committed(&group, &input, 2).await == vec![1, 1]).then_some(())
    })
    .await;
    assert!(w.count_logged("retry topic available again; partition resumes") >= 1);
    assert_eq!(
        w.count_logged(
            "the retry topic does not exist; sends to it fail and are retried until it is created"
        ),
        1,
        "warned at startup"
    );
    assert!(
        s.read_for(&dlq, 0, DEADLINE).await.is_empty(),
        "nothing lost to the DLQ"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_retry_topics_mode_a_retry_record_with_garbled_headers_is_tried_with_a_warning_not_dropped()
 {
    let s = Stack::new();
    let input = s.topic("orders", 1).await;
    let output = s.topic("order-email", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("email");
    let retry = create_retry_topics(&s, &group, 1, 3).await;
    let garbled = OwnedHeaders::new().insert(Header {
        key: eventconsumer_contract::headers::RETRY_ATTEMPT,
        value: Some("banana"),
    });
    s.produce_with_headers(
        &s.producer(),
        &retry[1],
        "c-5",
        &order("o-garbled", "c-5"),
        Some(garbled),
    )
    .await;
    let w = Worker::start(
        &s.bootstrap,
        "email",
        &retry_mode_args(&input, &group, &output, &dlq, "3"),
    );

    let out = s.read(&output, 1).await;
    assert_eq!(json_of(&out[0])["order_id"], "o-garbled");
    testkit::eventually("the retry record's offset committed", DEADLINE, || async {
        (s.committed(&group, &retry[1], 1).await == vec![1]).then_some(())
    })
    .await;
    let warning = w
        .log_lines()
        .into_iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("retry record with missing or garbled headers"))
        })
        .expect("a warning about the garbled headers");
    assert_eq!(
        warning["attempt"], 3,
        "attempt from the topic name: {warning}"
    );
    assert!(
        warning["bad_headers"]
            .as_str()
            .is_some_and(|b| b.contains(eventconsumer_contract::headers::RETRY_ATTEMPT)),
        "{warning}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn analytics_holds_its_partitions_while_reports_fail_instead_of_growing_without_limit() {
    // MAX_HELD_WHILE_FAILING in handlers/analytics.rs.
    const LIMIT: u64 = 50_000;
    const FIRST: usize = 1_000;
    const EVENTS: usize = 70_000;
    let s = Stack::new();
    let input = s.topic("user-events", 1).await;
    // The output topic does not exist yet: every report fails until it is created.
    let output = testkit::unique_name("analytics-counts-late");
    let dlq = s.topic("user-events-dlq", 1).await;
    let group = testkit::unique_name("analytics-held");
    let p = s.producer();
    let mut expected = BTreeMap::new();
    let batch = events_batch(EVENTS, 0, &mut expected);
    let produce = |range: std::ops::Range<usize>| {
        let pending: Vec<_> = batch[range]
            .iter()
            .map(|(key, value)| {
                let record = FutureRecord::to(&input).key(key).payload(value);
                p.send_result(record).map_err(|(e, _)| e).expect("queued")
            })
            .collect();
        async move {
            for delivery in pending {
                delivery.await.expect("not cancelled").expect("delivered");
            }
        }
    };
    produce(0..FIRST).await;
    let args = vec![
        "--handler",
        "analytics",
        "--window",
        "1s",
        "--attempt-timeout",
        "1s",
        "--topics",
        &input,
        "--group-id",
        &group,
        "--output-topic",
        &output,
        "--dlq-topic",
        &dlq,
    ];
    let w = Worker::start(&s.bootstrap, "analytics-held", &args);
    testkit::eventually("a failed report", DEADLINE, || async {
        (w.count_logged("analytics report not published") > 0).then_some(())
    })
    .await;
    produce(FIRST..EVENTS).await;
    let addr = w.http_addr().expect("the worker logs its HTTP address");
    let processed = || async move {
        let body = metrics_text(addr).await.expect("the worker's /metrics");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(r#"eventconsumer_messages_processed_total{handler="analytics"} "#)
            })
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    testkit::eventually(
        "the open window to fill up to the limit",
        DEADLINE,
        || async { (processed().await >= LIMIT).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = processed().await;
    assert!(
        held < EVENTS as u64,
        "all {held} events counted while no report could be published: nothing held them"
    );
    assert!(
        w.count_logged("analytics reports are failing and the open window is full; holding partitions until a report is published") > 0,
        "the hold is logged"
    );
    assert_eq!(
        s.committed(&group, &input, 1).await,
        vec![-1],
        "nothing committed"
    );

    testkit::create_topic(&s.bootstrap, &output, 1).await;
    let (events, page_views) = counted(&s, &output, EVENTS as u64).await;
    assert_eq!(
        events, EVENTS as u64,
        "every event counted once after the hold"
    );
    assert_eq!(page_views, expected);
}

/// The value of header `key` of `m` as an integer.
fn header_i64(m: &OwnedMessage, key: &str) -> i64 {
    let h = text_headers(m);
    h.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no integer {key} in {h:?}"))
}

/// The record's CreateTime, ms since the epoch.
fn create_time(m: &OwnedMessage) -> i64 {
    m.timestamp()
        .to_millis()
        .unwrap_or_else(|| panic!("a record without a timestamp: {m:?}"))
}

/// p50 and max of `values` (which must not be empty).
fn p50_max(values: &mut [i64]) -> (i64, i64) {
    values.sort_unstable();
    (values[values.len() / 2], values[values.len() - 1])
}

/// `backoff.max` is the longest delay between two attempts, jitter included, in both modes:
/// with initial 1 s, multiplier 2, max 2 s, the waits before attempts 3 and 4 are capped at
/// 2 s (before, jitter was added on top of the cap: 2–4 s). In `retryTopics` mode the due
/// time a copy carries is at most `max` after the copy was written, and no attempt comes
/// before its due time; how late after it an attempt comes is measured and printed.
#[tokio::test(flavor = "multi_thread")]
async fn in_retry_topics_mode_no_retry_is_due_later_than_backoff_max_after_its_failure() {
    use eventconsumer_contract::headers as hn;
    const ORDERS: usize = 20;
    const MAX_MS: i64 = 2_000;
    let s = Stack::new();
    let input = s.topic("orders", 4).await;
    let output = s.topic("order-email", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("email");
    let retry = create_retry_topics(&s, &group, 4, 4).await;
    let sink = start_sink(vec![503; 10_000]).await;
    let url = format!("http://{}/hook", sink.addr);
    let p = s.producer();
    for i in 0..ORDERS {
        let id = format!("o-{i}");
        s.produce(
            &p,
            &input,
            &format!("c-{i}"),
            &order(&id, &format!("c-{i}")),
        )
        .await;
    }
    let mut args = retry_mode_args(&input, &group, &output, &dlq, "4");
    args.extend([
        "--sink-url",
        &url,
        "--backoff-initial",
        "1s",
        "--backoff-max",
        "2s",
        "--backoff-multiplier",
        "2",
    ]);
    let _w = Worker::start(&s.bootstrap, "email", &args);

    let dead = s.read(&dlq, ORDERS).await;
    assert_eq!(dead.len(), ORDERS, "every order dead-lettered once");
    let mut delays = Vec::new();
    let mut late = Vec::new();
    for (n, topic) in retry.iter().enumerate() {
        let attempt = n + 2;
        let copies = s.read(topic, ORDERS).await;
        assert_eq!(copies.len(), ORDERS, "one copy per order in {topic}");
        for copy in &copies {
            let due = header_i64(copy, hn::RETRY_DUE);
            let delay = due - create_time(copy);
            assert!(
                delay <= MAX_MS,
                "the copy in {topic} is due {delay} ms after it was written, above backoff.max {MAX_MS} ms"
            );
            delays.push(delay);
            let order_id = json_of(copy)["order_id"]
                .as_str()
                .expect("an order id")
                .to_owned();
            let arrivals = sink.arrivals_of(&order_id);
            assert_eq!(arrivals.len(), 4, "{order_id}: four attempts");
            let tried = arrivals[attempt - 1];
            assert!(
                tried >= due,
                "{order_id}: attempt {attempt} came {} ms before it was due",
                due - tried
            );
            late.push(tried - due);
        }
    }
    let (delay_p50, delay_max) = p50_max(&mut delays);
    let (late_p50, late_max) = p50_max(&mut late);
    eprintln!(
        "retryTopics, initial 1s max 2s multiplier 2: due after the failure p50 {delay_p50} ms, max {delay_max} ms; \
         tried after due p50 {late_p50} ms, max {late_max} ms ({} retries)",
        late.len()
    );
}

/// The same bound in `blocking` mode, read from the delay the worker logs before each retry
/// and from the sink's view of the waits.
#[tokio::test(flavor = "multi_thread")]
async fn in_blocking_mode_no_retry_waits_longer_than_backoff_max() {
    const ORDERS: usize = 4;
    const MAX_MS: u64 = 2_000;
    let s = Stack::new();
    let input = s.topic("orders", 4).await;
    let output = s.topic("order-email", 1).await;
    let dlq = s.topic("orders-dlq", 1).await;
    let group = testkit::unique_name("email");
    let sink = start_sink(vec![503; 10_000]).await;
    let url = format!("http://{}/hook", sink.addr);
    let p = s.producer();
    for i in 0..ORDERS {
        let id = format!("o-{i}");
        s.produce(
            &p,
            &input,
            &format!("c-{i}"),
            &order(&id, &format!("c-{i}")),
        )
        .await;
    }
    let mut args = order_args(&input, &group, &output, &dlq);
    let at = args
        .iter()
        .position(|a| *a == "--max-attempts")
        .expect("order_args sets --max-attempts");
    args[at + 1] = "4";
    args.extend([
        "--sink-url",
        &url,
        "--backoff-initial",
        "1s",
        "--backoff-max",
        "2s",
        "--backoff-multiplier",
        "2",
    ]);
    let w = Worker::start(&s.bootstrap, "email", &args);

    let dead = s.read(&dlq, ORDERS).await;
    assert_eq!(dead.len(), ORDERS);
    let waits: Vec<u64> = w
        .log_lines()
        .iter()
        .filter(|l| l["message"].as_str() == Some("attempt failed; retrying"))
        .map(|l| l["retry_in_ms"].as_u64().expect("retry_in_ms"))
        .collect();
    assert_eq!(
        waits.len(),
        ORDERS * 3,
        "three retries per order: {waits:?}"
    );
    assert!(
        waits.iter().all(|ms| *ms <= MAX_MS),
        "a retry waited longer than backoff.max {MAX_MS} ms: {waits:?}"
    );
    let mut gaps = Vec::new();
    for i in 0..ORDERS {
        let arrivals = sink.arrivals_of(&format!("o-{i}"));
        assert_eq!(arrivals.len(), 4, "o-{i}: four attempts");
        gaps.extend(arrivals.windows(2).map(|w| w[1] - w[0]));
    }
    let (p50, max) = p50_max(&mut gaps);
    eprintln!(
        "blocking, initial 1s max 2s multiplier 2: sink saw attempts p50 {p50} ms, max {max} ms apart"
    );
}

/// The CRD text `kubectl explain eventconsumer.spec.delivery.maxAttempts` shows.
const CRD: &str = include_str!("../../crds/eventconsumer.yaml");

/// What a crash does to attempt counts in `retryTopics` mode, as the CRD and the README say:
/// a `kill -9` after a failed attempt was copied to the retry topic but before its offset was
/// committed makes the restarted worker attempt the record again and copy it a second time.
/// Each copy counts its own attempts: with `maxAttempts: 3` the order is attempted 6 times and
/// dead-lettered twice, each dead letter saying `ec-dlt-attempts: 3`.
#[tokio::test(flavor = "multi_thread")]
async fn in_retry_topics_mode_a_crash_before_the_commit_repeats_the_attempt_and_splits_the_record_in_two()
 {
    use eventconsumer_contract::headers as hn;
    // The explanation the test shows, where users read it.
    for phrase in [
        "a crash",
        "more than `maxAttempts` times",
        "each saying `ec-dlt-attempts` = `maxAttempts`",
    ] {
        assert!(
            CRD.contains(phrase),
            "crds/eventconsumer.yaml does not say {phrase:?}"
        );
    }
    let s = Stack::new();
    // The kill must come after the copy is acknowledged and before the source offset is
    // committed (within 1 s of it); each try checks that it did, and a kill that came too
    // late is tried again with fresh topics rather than passing without showing anything.
    for round in 1..=3 {
        let input = s.topic("orders", 1).await;
        let output = s.topic("order-email", 1).await;
        let dlq = s.topic("orders-dlq", 1).await;
        let group = testkit::unique_name("email");
        let retry = create_retry_topics(&s, &group, 1, 3).await;
        let sink = start_sink(vec![503; 100]).await;
        let url = format!("http://{}/hook", sink.addr);
        s.produce(&s.producer(), &input, "c-7", &order("o-split", "c-7"))
            .await;
        let mut args = retry_mode_args(&input, &group, &output, &dlq, "3");
        // Waits long enough that nothing of retry.1 is tried before the kill.
        args.extend([
            "--sink-url",
            &url,
            "--backoff-initial",
            "3s",
            "--backoff-max",
            "3s",
        ]);
        let mut first = Worker::start(&s.bootstrap, "email-1", &args);
        let addr = testkit::eventually("the worker's HTTP address", DEADLINE, || async {
            first.http_addr()
        })
        .await;
        let copied = r#"eventconsumer_retry_topic_writes_total{handler="order/email"} 1"#;
        testkit::eventually("the first copy to be acknowledged", DEADLINE, || async {
            let body = metrics_text(addr).await?;
            body.contains(copied).then_some(())
        })
        .await;
        first.kill9();
        if s.committed(&group, &input, 1).await != vec![-1] {
            eprintln!("round {round}: the source offset was committed before the kill; again");
            continue;
        }

        let _second = Worker::start(&s.bootstrap, "email-2", &args);
        let dead = s.read(&dlq, 2).await;
        assert_eq!(dead.len(), 2, "two dead letters of one order");
        for m in &dead {
            let h = text_headers(m);
            assert_eq!(h[hn::DLT_ORIGINAL_TOPIC], input);
            assert_eq!(h[hn::DLT_ORIGINAL_OFFSET], "0", "both are the same record");
            assert_eq!(h[hn::DLT_ATTEMPTS], "3", "each copy counted its own: {h:?}");
        }
        let copies = s.read(&retry[0], 2).await;
        assert_eq!(copies.len(), 2, "copied to retry.1 twice");
        assert_eq!(
            sink.arrivals_of("o-split").len(),
            6,
            "twice maxAttempts attempts"
        );
        return;
    }
    panic!("in 3 rounds the kill never came before the commit of the source offset");
}

// ---------------------------------------------------------------- ordering: key and none

/// Where order `n` of a keyed run goes: key `c<k>` (`k = n % keys`), its `seq`-th message
/// of that key, on partition `k % partitions` at `offset` (the topic is fresh, so offsets
/// count from 0). The order id spells all four, so the sink knows each call's place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Place {
    key: u32,
    seq: u32,
    partition: i32,
    offset: i64,
}

impl Place {
    fn order_id(&self) -> String {
        format!(
            "c{}-s{}-p{}-o{}",
            self.key, self.seq, self.partition, self.offset
        )
    }

    fn parse(id: &str) -> Option<Place> {
        let mut parts = id.split('-');
        let mut field = |prefix: char| parts.next()?.strip_prefix(prefix)?.parse::<i64>().ok();
        Some(Place {
            key: u32::try_from(field('c')?).ok()?,
            seq: u32::try_from(field('s')?).ok()?,
            partition: i32::try_from(field('p')?).ok()?,
            offset: field('o')?,
        })
    }
}

/// Produces `count` orders over `keys` keys to `partitions` partitions of `topic`, in order
/// (an idempotent producer enqueuing one by one keeps each partition's order), and returns
/// how many went to each partition.
async fn produce_keyed(s: &Stack, topic: &str, partitions: i32, keys: u32, count: u32) -> Vec<i64> {
    let (bootstrap, topic) = (s.bootstrap.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .expect("bulk producer");
        let mut next_offset = vec![0i64; usize::try_from(partitions).expect("partitions")];
        let mut next_seq = vec![0u32; keys as usize];
        for n in 0..count {
            let key = n % keys;
            let partition = i32::try_from(key).expect("key") % partitions;
            let slot = usize::try_from(partition).expect("partition");
            let place = Place {
                key,
                seq: next_seq[key as usize],
                partition,
                offset: next_offset[slot],
            };
            next_seq[key as usize] += 1;
            next_offset[slot] += 1;
            let (id, customer) = (place.order_id(), format!("c{key}"));
            let value = order(&id, &customer);
            let mut record = BaseRecord::to(&topic)
                .key(&customer)
                .payload(&value)
                .partition(partition);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        assert!(
                            matches!(
                                e,
                                rdkafka::error::KafkaError::MessageProduction(
                                    rdkafka::types::RDKafkaErrorCode::QueueFull
                                )
                            ),
                            "producing to {topic}: {e}"
                        );
                        record = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        producer
            .flush(Duration::from_secs(60))
            .expect("all orders produced");
        next_offset
    })
    .await
    .expect("producer thread")
}

/// A sink that waits `latency(place)` and answers 503 to the first call of the orders
/// `fails(place)` picks, then 200; it records every call in arrival order, the places it
/// answered 200 to, and the most calls it had open at once.
struct OrderingSink {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<(Place, u16)>>>,
    done: Arc<Mutex<std::collections::HashSet<Place>>>,
    open: Arc<AtomicU32>,
    most_open: Arc<AtomicU32>,
}

impl OrderingSink {
    async fn start(latency: fn(&Place) -> Duration, fails: fn(&Place) -> bool) -> OrderingSink {
        let calls: Arc<Mutex<Vec<(Place, u16)>>> = Arc::default();
        let done: Arc<Mutex<std::collections::HashSet<Place>>> = Arc::default();
        let (open, most_open) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let failed_once: Arc<Mutex<std::collections::HashSet<Place>>> = Arc::default();
        let state = (
            calls.clone(),
            done.clone(),
            open.clone(),
            most_open.clone(),
            failed_once,
        );
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let (calls, done, open, most_open, failed_once) = state.clone();
                async move {
                    let id = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let Some(place) = Place::parse(id) else {
                        return StatusCode::BAD_REQUEST;
                    };
                    let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                    most_open.fetch_max(now_open, Ordering::SeqCst);
                    tokio::time::sleep(latency(&place)).await;
                    let fail = fails(&place) && failed_once.lock().expect("failed").insert(place);
                    let status = if fail { 503 } else { 200 };
                    // Recorded before the answer leaves, so before the worker can act on it.
                    calls.lock().expect("calls").push((place, status));
                    if !fail {
                        done.lock().expect("done").insert(place);
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                    StatusCode::from_u16(status).expect("status")
                }
            }),
        );
        let addr = serve(app).await;
        OrderingSink {
            addr,
            calls,
            done,
            open,
            most_open,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn done_count(&self) -> usize {
        self.done.lock().expect("done").len()
    }

    /// Successful calls beyond the first for the same order (redeliveries).
    fn duplicates(&self) -> usize {
        let calls = self.calls.lock().expect("calls");
        calls.iter().filter(|(_, s)| *s == 200).count() - self.done_count()
    }
}

/// A stable pseudo-random number per order (FNV-1a of its id).
fn spread(place: &Place) -> u64 {
    place
        .order_id()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

fn args_with_ordering<'a>(
    input: &'a str,
    group: &'a str,
    dlq: &'a str,
    ordering: &'a str,
    sink: &'a str,
) -> Vec<&'a str> {
    vec![
        "--handler",
        "order",
        "--action",
        "payment",
        "--topics",
        input,
        "--group-id",
        group,
        "--dlq-topic",
        dlq,
        "--no-output",
        "--sink-url",
        sink,
        "--ordering",
        ordering,
        "--max-attempts",
        "5",
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn in_key_ordering_100000_orders_with_slow_and_failing_sink_calls_keep_each_keys_order_and_run_keys_concurrently()
 {
    const ORDERS: u32 = 100_000;
    const KEYS: u32 = 1_000;
    const PARTITIONS: i32 = 6;
    let s = Stack::new();
    let input = s.topic("keyed", PARTITIONS).await;
    let dlq = s.topic("keyed-dlq", 1).await;
    let group = testkit::unique_name("keyed");
    // 0–3 ms per call; 1 % of the orders fail their first call (a retryable 503) and are
    // retried in place, holding their key only.
    let sink = OrderingSink::start(
        |p| Duration::from_micros(spread(p) % 3_000),
        |p| spread(p).is_multiple_of(100),
    )
    .await;
    let per_partition = produce_keyed(&s, &input, PARTITIONS, KEYS, ORDERS).await;
    let url = sink.url();
    let mut args = args_with_ordering(&input, &group, &dlq, "key", &url);
    args.extend(["--max-in-flight", "256", "--log-level", "warn"]);
    let _w = Worker::start(&s.bootstrap, "keyed", &args);
    testkit::eventually(
        "every order handled and committed",
        Duration::from_secs(600),
        || async {
            (sink.done_count() == ORDERS as usize
                && s.committed(&group, &input, PARTITIONS).await == per_partition)
                .then_some(())
        },
    )
    .await;

    // Each key's calls, in the order they were answered: the message at seq n + 1 is
    // called only after seq n was answered 200 (its retries included).
    let calls = sink.calls.lock().expect("calls").clone();
    let mut next = vec![0u32; KEYS as usize];
    for (place, status) in &calls {
        let expected = &mut next[place.key as usize];
        assert_eq!(
            place.seq, *expected,
            "key c{} was called for seq {} while seq {} was not done",
            place.key, place.seq, expected
        );
        if *status == 200 {
            *expected += 1;
        }
    }
    assert!(
        next.iter().all(|n| *n == ORDERS / KEYS),
        "every key ran to its end"
    );
    let retried = calls.iter().filter(|(_, s)| *s == 503).count();
    assert!(
        retried > 500,
        "about 1 % of the orders failed once: {retried}"
    );
    let most = sink.most_open.load(Ordering::SeqCst);
    assert!(
        most > 4 * PARTITIONS as u32,
        "keys ran concurrently, beyond one call per partition: at most {most} calls were open"
    );
    eprintln!(
        "key ordering: {ORDERS} orders, {retried} retried calls, up to {most} calls open at once"
    );
}

/// The Prometheus text the worker at `addr` serves, if it answers.
async fn metrics_text(addr: SocketAddr) -> Option<String> {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// `eventconsumer_messages_in_flight` of the worker at `addr`.
async fn messages_in_flight(addr: SocketAddr) -> Option<u64> {
    let body = metrics_text(addr).await?;
    body.lines()
        .find_map(|l| l.strip_prefix("eventconsumer_messages_in_flight "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn in_key_ordering_max_in_flight_bounds_the_calls_and_a_worker_holds_as_many_again_waiting() {
    // Every call takes 100 ms and 20 keys repeat over 600 orders, so messages wait for
    // their key's turn all the time: the sink must see at most (and reach) 8 calls at once,
    // and the worker must hold more than 8 messages (the waiting ones do not take call
    // slots) but never more than 16 (what waits is bounded too: fetching pauses).
    const ORDERS: u32 = 600;
    const MAX: u64 = 8;
    const PARTITIONS: i32 = 3;
    let s = Stack::new();
    let input = s.topic("held", PARTITIONS).await;
    let dlq = s.topic("held-dlq", 1).await;
    let group = testkit::unique_name("held");
    let sink = OrderingSink::start(|_| Duration::from_millis(100), |_| false).await;
    let per_partition = produce_keyed(&s, &input, PARTITIONS, 20, ORDERS).await;
    let url = sink.url();
    let mut args = args_with_ordering(&input, &group, &dlq, "key", &url);
    let max = MAX.to_string();
    args.extend(["--max-in-flight", &max]);
    let w = Worker::start(&s.bootstrap, "held", &args);
    let addr = testkit::eventually("the worker's HTTP address", DEADLINE, || async {
        w.http_addr()
    })
    .await;
    let mut most_held = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(held) = messages_in_flight(addr).await {
            most_held = most_held.max(held);
        }
        if sink.done_count() == ORDERS as usize
            && s.committed(&group, &input, PARTITIONS).await == per_partition
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "every order answered and committed within 120 s ({} answered)",
            sink.done_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let most_open = u64::from(sink.most_open.load(Ordering::SeqCst));
    assert_eq!(most_open, MAX, "calls open at once, at most");
    assert!(
        most_held > MAX && most_held <= 2 * MAX,
        "messages held at most: {most_held} (calls: {MAX})"
    );
    // Each key's calls in offset order, as in every key-ordering test.
    let calls = sink.calls.lock().expect("calls").clone();
    let mut next = [0u32; 20];
    for (place, _) in &calls {
        assert_eq!(place.seq, next[place.key as usize], "key c{}", place.key);
        next[place.key as usize] += 1;
    }
    eprintln!("maxInFlight {MAX}: {most_open} calls open at most, {most_held} messages held");
}

/// One run of `kill -9` mid-stream with `ordering`: 6,000 orders over 300 keys through a
/// 2 ms sink, the worker killed after 2,000 were answered, a new one started; every order
/// is answered 200 at least once and every offset is committed.
async fn kill9_loses_nothing(ordering: &str) -> (usize, usize) {
    const ORDERS: u32 = 6_000;
    const PARTITIONS: i32 = 3;
    let s = Stack::new();
    let input = s.topic(&format!("kill-{ordering}"), PARTITIONS).await;
    let dlq = s.topic("kill-dlq", 1).await;
    let group = testkit::unique_name(&format!("kill-{ordering}"));
    let sink = OrderingSink::start(|_| Duration::from_millis(2), |_| false).await;
    let per_partition = produce_keyed(&s, &input, PARTITIONS, 300, ORDERS).await;
    let url = sink.url();
    let mut args = args_with_ordering(&input, &group, &dlq, ordering, &url);
    args.extend(["--max-in-flight", "64"]);
    let mut first = Worker::start(&s.bootstrap, &format!("kill-{ordering}"), &args);
    testkit::eventually("2,000 orders answered", DEADLINE, || async {
        (sink.done_count() >= 2_000).then_some(())
    })
    .await;
    first.kill9();
    let open_at_kill = sink.open.load(Ordering::SeqCst) as usize;
    let _second = Worker::start(&s.bootstrap, &format!("kill-{ordering}-2"), &args);
    testkit::eventually(
        &format!("{ordering}: every order answered and committed after the kill"),
        Duration::from_secs(180),
        || async {
            (sink.done_count() == ORDERS as usize
                && s.committed(&group, &input, PARTITIONS).await == per_partition)
                .then_some(())
        },
    )
    .await;
    (sink.duplicates(), open_at_kill)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_stream_loses_nothing_in_each_ordering() {
    let (partition, key, none) = futures::future::join3(
        kill9_loses_nothing("partition"),
        kill9_loses_nothing("key"),
        kill9_loses_nothing("none"),
    )
    .await;
    eprintln!(
        "kill -9, duplicates (calls open at the kill): partition {partition:?}, key {key:?}, none {none:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_with_hundreds_of_messages_in_flight_commits_nothing_past_an_unfinished_one() {
    const ORDERS: u32 = 3_000;
    const PARTITIONS: i32 = 4;
    let s = Stack::new();
    let input = s.topic("inflight", PARTITIONS).await;
    let dlq = s.topic("inflight-dlq", 1).await;
    let group = testkit::unique_name("inflight");
    // Slow and uneven (100–900 ms), so hundreds are open, finishing out of offset order.
    let sink =
        OrderingSink::start(|p| Duration::from_millis(100 + spread(p) % 800), |_| false).await;
    let per_partition = produce_keyed(&s, &input, PARTITIONS, 3_000, ORDERS).await;
    let url = sink.url();
    let mut args = args_with_ordering(&input, &group, &dlq, "none", &url);
    args.extend(["--max-in-flight", "400"]);
    let _a = Worker::start(&s.bootstrap, "inflight-a", &args);
    testkit::eventually("hundreds of calls open", DEADLINE, || async {
        (sink.open.load(Ordering::SeqCst) >= 200).then_some(())
    })
    .await;
    let b = Worker::start(&s.bootstrap, "inflight-b", &args);

    // Until everything is committed: every committed position has all offsets below it
    // answered 200 (the sink records an answer before it leaves, so before any commit).
    let mut samples = 0;
    let mut violations = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let committed = s.committed(&group, &input, PARTITIONS).await;
        let done = sink.done.lock().expect("done").clone();
        let finished = |partition: i32, offset: i64| {
            done.iter()
                .any(|p| p.partition == partition && p.offset == offset)
        };
        for (partition, position) in (0..PARTITIONS).zip(&committed) {
            if let Some(missing) = (0..*position).find(|o| !finished(partition, *o)) {
                violations.push(format!(
                    "partition {partition} committed at {position}, offset {missing} unfinished"
                ));
            }
        }
        samples += 1;
        if committed == per_partition || std::time::Instant::now() > deadline {
            assert_eq!(committed, per_partition, "everything committed in the end");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        b.log_lines()
            .iter()
            .any(|l| l["message"].as_str() == Some("partitions assigned")
                && l["partitions"].as_str().is_some_and(|p| !p.is_empty())),
        "the second worker took partitions (a rebalance happened)"
    );
    eprintln!(
        "rebalance with {} calls open at most: {samples} commit samples, none past an unfinished offset, {} duplicates",
        sink.most_open.load(Ordering::SeqCst),
        sink.duplicates()
    );
}

// ---------------------------------------------------------------- exactly once

/// Produces through `p` `n` orders `o-<from + i>` spread over the partitions (every 1,000th a poison
/// message, dead-lettered); enqueues a chunk at a time and waits for its acknowledgements.
/// Returns the ids expected in the output and the poison count.
async fn produce_orders_with(
    p: &FutureProducer,
    topic: &str,
    from: usize,
    n: usize,
) -> (Vec<String>, usize) {
    let mut ids = Vec::with_capacity(n);
    let mut poison = 0;
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(20_000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let id = format!("o-{i:07}");
            let value = if i % 1000 == 999 {
                poison += 1;
                b"{\"order_id\": 7}".to_vec()
            } else {
                ids.push(id.clone());
                order(&id, &format!("c-{}", i % 97))
            };
            let record = FutureRecord::to(topic).key(&id).payload(&value);
            acks.push(p.send_result(record).expect("producer queue has room"));
        }
        for ack in acks {
            ack.await
                .expect("delivery future")
                .unwrap_or_else(|(e, _)| panic!("cannot produce to {topic}: {e}"));
        }
    }
    (ids, poison)
}

/// Orders produced in the background, [`STREAM_BATCH`] every 100 ms, until `stop` is
/// cancelled and at least `at_least` were produced: (expected ids, poison count).
fn stream_orders(
    topic: &str,
    at_least: usize,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<(Vec<String>, usize)> {
    let topic = topic.to_owned();
    tokio::spawn(async move {
        let p = Stack::new().producer();
        let (mut ids, mut poison) = (Vec::with_capacity(at_least), 0);
        let mut produced = 0;
        while produced < at_least || !stop.is_cancelled() {
            let (more, more_poison) = produce_orders_with(&p, &topic, produced, STREAM_BATCH).await;
            ids.extend(more);
            poison += more_poison;
            produced += STREAM_BATCH;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (ids, poison)
    })
}

/// Orders per batch of [`stream_orders`]: 5,000 a second at most, well below what two
/// workers handle (at least once with an output topic ~10,000 each), so nothing piles up.
const STREAM_BATCH: usize = 500;

/// Reads `topic` from the beginning with `isolation.level=read_committed` (what the README
/// tells readers of an exactlyOnce consumer to set), counting the records per value of the
/// JSON string `field` (the DLQ's records by their source partition/offset headers when
/// `field` is empty), until `want` distinct values arrived, then 2 s longer for duplicates.
async fn count_committed(
    s: &Stack,
    topic: &str,
    field: &'static str,
    want: usize,
) -> HashMap<String, usize> {
    let bootstrap = s.bootstrap.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer = reader_of(&bootstrap, &topic);
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut settle = None;
        loop {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let key = if field.is_empty() {
                    let (p, o) = original_position(&m.detach());
                    format!("{p}/{o}")
                } else {
                    let v: serde_json::Value =
                        serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON");
                    v[field].as_str().expect("the id field").to_owned()
                };
                *counts.entry(key).or_default() += 1;
            }
            if settle.is_none() && counts.len() >= want {
                settle = Some(std::time::Instant::now());
            }
            if settle.is_some_and(|s| s.elapsed() > Duration::from_secs(2)) {
                return counts;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out reading {topic}: {} of {want} distinct values",
                counts.len()
            );
        }
    })
    .await
    .expect("reader thread")
}

/// What a reader saw against what was expected: (missing, duplicated records).
fn missing_and_duplicates(counts: &HashMap<String, usize>, expected: &[String]) -> (usize, usize) {
    let missing = expected
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .count();
    let expected: HashSet<&String> = expected.iter().collect();
    let extra = counts.keys().filter(|k| !expected.contains(k)).count();
    assert_eq!(extra, 0, "records nobody produced");
    let duplicates = counts.values().map(|n| n - 1).sum();
    (missing, duplicates)
}

/// Sum of the committed offsets of `group` on `topic`.
async fn committed_total(s: &Stack, group: &str, topic: &str, partitions: i32) -> i64 {
    s.committed(group, topic, partitions)
        .await
        .iter()
        .map(|o| (*o).max(0))
        .sum()
}

/// Two order workers in one group, `semantics` and `extra` flags (`retryTopics` mode gets
/// its retry topics, for `--max-attempts 3`), over at least `orders` orders on 6 partitions
/// streamed while they run. `kills` times, alternating, a worker is killed with SIGKILL
/// while it is handling orders, and restarted like a container (same transactional id).
/// Returns (expected ids, poison count, output counts, dead-letter counts).
async fn orders_through_kills(
    semantics: &str,
    orders: usize,
    kills: usize,
    extra: &[&str],
) -> (
    Vec<String>,
    usize,
    HashMap<String, usize>,
    HashMap<String, usize>,
) {
    let s = Stack::new();
    let t = OrderTopics::new(&s, "eos-orders").await;
    let (input, output, dlq, group) = (&t.input, &t.output, &t.dlq, &t.group);
    if extra.contains(&"retryTopics") {
        create_retry_topics(&s, group, 6, 3).await;
    }
    let ids_of = |w: usize| format!("{group}.w{w}");
    let (tx0, tx1) = (ids_of(0), ids_of(1));
    let worker = |w: usize, tx: &str| {
        let mut args = order_args(input, group, output, dlq);
        args.extend(extra);
        args.extend(["--semantics", semantics]);
        if semantics == "exactlyOnce" {
            args.extend(["--transactional-id", tx]);
        }
        Worker::start(&s.bootstrap, &format!("eos-{semantics}-{w}"), &args)
    };
    let mut workers = [worker(0, &tx0), worker(1, &tx1)];
    let stop = tokio_util::sync::CancellationToken::new();
    let stream = stream_orders(input, orders, stop.clone());
    // Each kill hits a worker in the middle of its work: its processed count was rising.
    for kill in 0..kills {
        let w = kill % 2;
        workers[w]
            .busy(&format!(
                "worker {w} to be handling orders before kill {kill}"
            ))
            .await;
        workers[w].kill9();
        let committed = committed_total(&s, group, input, 6).await;
        println!(
            "kill -9 #{} of worker {w} while busy, at {committed} committed",
            kill + 1
        );
        workers[w] = worker(w, if w == 0 { &tx0 } else { &tx1 });
    }
    stop.cancel();
    let (ids, poison) = stream.await.expect("the order stream");
    let produced = ids.len() + poison;
    let out = count_committed(&s, output, "order_id", ids.len()).await;
    let dead = count_committed(&s, dlq, "", poison).await;
    testkit::eventually(
        "every input offset committed",
        Duration::from_secs(60),
        || async {
            let done = committed_total(&s, group, input, 6).await;
            (done == i64::try_from(produced).expect("small")).then_some(())
        },
    )
    .await;
    drop(workers);
    (ids, poison, out, dead)
}

/// Prints what a read_committed reader saw and asserts that every order reached the output
/// and every poison message the DLQ, each exactly once.
fn assert_each_once(
    label: &str,
    ids: &[String],
    poison: usize,
    out: &HashMap<String, usize>,
    dead: &HashMap<String, usize>,
) {
    let (missing, duplicates) = missing_and_duplicates(out, ids);
    let dead_duplicates: usize = dead.values().map(|n| n - 1).sum();
    println!(
        "{label}: {} orders expected, {missing} lost, {duplicates} duplicates; {} of {poison} dead-lettered, {dead_duplicates} dead-letter duplicates",
        ids.len(),
        dead.len()
    );
    assert_eq!((missing, duplicates), (0, 0), "every order exactly once");
    assert_eq!(
        (dead.len(), dead_duplicates),
        (poison, 0),
        "every dead letter once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_exactly_once_mode_ten_kill_9s_over_200_000_orders_leave_every_order_once_for_a_read_committed_reader()
 {
    let (ids, poison, out, dead) = orders_through_kills("exactlyOnce", 200_000, 10, &[]).await;
    assert_each_once("exactlyOnce, 10 kills", &ids, poison, &out, &dead);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_at_least_once_mode_the_same_kills_duplicate_orders_so_the_test_tells_the_modes_apart() {
    let (ids, _, out, _) = orders_through_kills("atLeastOnce", 60_000, 3, &[]).await;
    let (missing, duplicates) = missing_and_duplicates(&out, &ids);
    println!(
        "atLeastOnce, 3 kills: {} orders expected, {missing} lost, {duplicates} duplicates",
        ids.len()
    );
    assert_eq!(missing, 0, "nothing lost at least once either");
    assert!(
        duplicates > 0,
        "kill -9 mid-stream redelivers what was not committed"
    );
}

/// The topics and group of an order test: a 6-partition source, a 3-partition output, a
/// dead-letter topic.
struct OrderTopics {
    input: String,
    output: String,
    dlq: String,
    group: String,
}

impl OrderTopics {
    async fn new(s: &Stack, prefix: &str) -> OrderTopics {
        OrderTopics {
            input: s.topic(prefix, 6).await,
            output: s.topic(&format!("{prefix}-out"), 3).await,
            dlq: s.topic(&format!("{prefix}-dlq"), 1).await,
            group: testkit::unique_name(prefix),
        }
    }

    fn topics(&self) -> [&str; 3] {
        [&self.input, &self.output, &self.dlq]
    }
}

/// An order worker in `exactlyOnce` mode with its own transactional id.
fn eos_order_worker(s: &Stack, name: &str, topics: [&str; 3], group: &str, tx: &str) -> Worker {
    let [input, output, dlq] = topics;
    let mut args = order_args(input, group, output, dlq);
    args.extend(["--semantics", "exactlyOnce", "--transactional-id", tx]);
    Worker::start(&s.bootstrap, name, &args)
}

/// What the worker logs when its open transaction cannot commit and it starts over.
const SPOILED: &str = "the open transaction cannot commit: aborting it and starting over from the last committed offsets";

#[tokio::test(flavor = "multi_thread")]
async fn in_exactly_once_mode_a_zombie_stopped_past_its_session_is_fenced_and_nothing_it_wrote_is_read()
 {
    let s = Stack::new();
    let t = OrderTopics::new(&s, "eos-zombie").await;
    let (input, output, dlq, group, topics) = (&t.input, &t.output, &t.dlq, &t.group, t.topics());
    let zombie = eos_order_worker(&s, "eos-zombie", topics, group, &format!("{group}.z"));
    let other = eos_order_worker(&s, "eos-other", topics, group, &format!("{group}.o"));
    let stop = tokio_util::sync::CancellationToken::new();
    let stream = stream_orders(input, 40_000, stop.clone());

    // Stopped while handling orders: its transaction holds work it has not committed.
    zombie.busy("the zombie to be handling orders").await;
    zombie.signal("STOP");
    let reached = committed_total(&s, group, input, 6).await;
    // While it sleeps past its session (10 s) the other worker takes all six partitions
    // over, from the last committed offsets.
    testkit::eventually(
        "the other worker to own all six partitions while the zombie sleeps",
        Duration::from_secs(60),
        || async { (other.last_assignment() == 6).then_some(()) },
    )
    .await;
    other
        .busy("the other worker to handle the zombie's share")
        .await;
    zombie.signal("CONT");
    // It wakes with its transaction open, is fenced, aborts it and starts over.
    testkit::eventually(
        "the zombie to find its transaction fenced and start over",
        Duration::from_secs(60),
        || async { (zombie.count_logged(SPOILED) >= 1).then_some(()) },
    )
    .await;
    zombie.busy("the zombie to handle orders again").await;
    stop.cancel();
    let (ids, poison) = stream.await.expect("the order stream");

    let out = count_committed(&s, output, "order_id", ids.len()).await;
    let dead = count_committed(&s, dlq, "", poison).await;
    let why = zombie
        .log_lines()
        .into_iter()
        .find(|l| l["message"].as_str() == Some(SPOILED))
        .map(|l| l["reason"].to_string())
        .unwrap_or_default();
    let label = format!("zombie stopped at {reached} committed, fenced ({why})");
    assert_each_once(&label, &ids, poison, &out, &dead);
}

/// An analytics worker in `exactlyOnce` mode with 1 s windows.
fn eos_analytics_worker(s: &Stack, name: &str, topics: [&str; 3], group: &str, tx: &str) -> Worker {
    let [input, output, dlq] = topics;
    let args = [
        "--handler",
        "analytics",
        "--window",
        "1s",
        "--topics",
        input,
        "--group-id",
        group,
        "--output-topic",
        output,
        "--dlq-topic",
        dlq,
        "--semantics",
        "exactlyOnce",
        "--transactional-id",
        tx,
    ];
    Worker::start(&s.bootstrap, name, &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn in_exactly_once_mode_analytics_totals_after_kill_9s_equal_the_events_produced() {
    const KILLS: usize = 5;
    const PUBLISHED: &str = "analytics window published";
    let s = Stack::new();
    let input = s.topic("eos-events", 4).await;
    let output = s.topic("eos-counts", 1).await;
    let dlq = s.topic("eos-events-dlq", 1).await;
    let group = testkit::unique_name("eos-analytics");
    let topics = [input.as_str(), &output, &dlq];
    let tx = |w: usize| format!("{group}.w{w}");
    let start =
        |w: usize| eos_analytics_worker(&s, &format!("eos-analytics-{w}"), topics, &group, &tx(w));
    let mut workers = [start(0), start(1)];

    // A steady stream (200 events every 100 ms) for as long as the kills go on.
    let stop = tokio_util::sync::CancellationToken::new();
    let stream = {
        let (p, input, stop) = (s.producer(), input.clone(), stop.clone());
        tokio::spawn(async move {
            let mut expected: BTreeMap<String, u64> = BTreeMap::new();
            let mut sent = 0;
            while !stop.is_cancelled() {
                let mut acks = Vec::with_capacity(200);
                for (key, value) in events_batch(200, sent, &mut expected) {
                    let record = FutureRecord::to(&input).key(&key).payload(&value);
                    acks.push(p.send_result(record).expect("producer queue has room"));
                }
                for ack in acks {
                    ack.await.expect("delivery").expect("produced");
                }
                sent += 200;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (sent, expected)
        })
    };
    // Each kill comes right after the worker published a window: at least once, that
    // window's offsets are committed up to a second later, so it would be counted again.
    for kill in 0..KILLS {
        let w = kill % 2;
        let published = testkit::eventually(
            &format!("analytics worker {w} to publish a window before kill {kill}"),
            Duration::from_secs(90),
            || {
                let n = workers[w].count_logged(PUBLISHED);
                async move { (n > 0).then_some(n) }
            },
        )
        .await;
        workers[w].kill9();
        println!(
            "kill -9 #{} of analytics worker {w}, after its window {published}",
            kill + 1
        );
        workers[w] = start(w);
    }
    stop.cancel();
    let (produced, expected) = stream.await.expect("the event stream");
    // Every report a read_committed reader sees, once they count every event; read again
    // from the start 3 s later (with its own second of settling) to catch late extras.
    let all_counted = move |out: &[OwnedMessage]| {
        out.iter()
            .map(|r| json_of(r)["events"].as_u64().unwrap_or(0))
            .sum::<u64>()
            >= produced as u64
    };
    let what = "reports counting every event";
    s.read_until(&output, what, Duration::from_secs(180), all_counted)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let latest = s.read_until(&output, what, DEADLINE, all_counted).await;
    let (mut events, mut page_views) = (0, BTreeMap::<String, u64>::new());
    for r in &latest {
        let v = json_of(r);
        events += v["events"].as_u64().expect("events count");
        for (path, n) in v["page_views"].as_object().expect("page_views") {
            *page_views.entry(path.clone()).or_default() += n.as_u64().expect("a count");
        }
    }
    println!(
        "analytics exactlyOnce, {KILLS} kills: {produced} events produced, {events} counted in {} reports",
        latest.len()
    );
    assert_eq!(events, produced as u64, "every event counted exactly once");
    assert_eq!(page_views, expected);
    drop(workers);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_exactly_once_mode_the_video_chain_through_kill_9s_of_both_stages_makes_each_video_ready_once()
 {
    const UPLOADS: usize = 1_200;
    let s = Stack::new();
    let uploaded = s.topic("eos-uploaded", 3).await;
    let transcoded = s.topic("eos-transcoded", 3).await;
    let ready = s.topic("eos-ready", 1).await;
    let dlq = s.topic("eos-video-dlq", 1).await;
    let (transcode_group, publish_group) = (
        testkit::unique_name("eos-transcode"),
        testkit::unique_name("eos-publish"),
    );
    let (transcode_tx, publish_tx) = (format!("{transcode_group}.0"), format!("{publish_group}.0"));
    let eos = ["--semantics", "exactlyOnce", "--transactional-id"];
    let mut transcode_args = transcode_args(&uploaded, &transcode_group, &transcoded, &dlq);
    transcode_args.extend(eos.iter().chain([&transcode_tx.as_str()]));
    let mut publish_args = vec![
        "--handler",
        "video",
        "--stage",
        "publish",
        "--topics",
        &transcoded,
        "--group-id",
        &publish_group,
        "--output-topic",
        &ready,
        "--dlq-topic",
        &dlq,
    ];
    publish_args.extend(eos.iter().chain([&publish_tx.as_str()]));
    let (ids, poison) = produce_uploads(&s, &uploaded, 3, 0, UPLOADS).await;
    let mut transcode = Worker::start(&s.bootstrap, "eos-transcode", &transcode_args);
    let mut publish = Worker::start(&s.bootstrap, "eos-publish", &publish_args);

    // Each stage's worker is killed twice, alternating, each time once the stage has
    // committed another sixth of the uploads (while the chain is still moving).
    let step = i64::try_from(UPLOADS / 6).expect("small");
    for kill in 0..4 {
        let (stage, group, topic) = if kill % 2 == 0 {
            ("transcode", &transcode_group, &uploaded)
        } else {
            ("publish", &publish_group, &transcoded)
        };
        let target = step * (kill / 2 + 1) as i64 + step / 2 * (kill % 2) as i64;
        let reached = testkit::eventually(
            &format!("the {stage} stage to commit {target} offsets"),
            Duration::from_secs(120),
            || async {
                let done = committed_total(&s, group, topic, 3).await;
                (done >= target).then_some(done)
            },
        )
        .await;
        if stage == "transcode" {
            transcode.kill9();
            transcode = Worker::start(&s.bootstrap, "eos-transcode", &transcode_args);
        } else {
            publish.kill9();
            publish = Worker::start(&s.bootstrap, "eos-publish", &publish_args);
        }
        assert!(
            reached < UPLOADS as i64,
            "the {stage} kill came after the stage was done ({reached} committed)"
        );
        println!(
            "kill -9 #{} of the {stage} worker at {reached} committed",
            kill + 1
        );
    }

    let transcoded_once = count_committed(&s, &transcoded, "video_id", ids.len()).await;
    let ready_once = count_committed(&s, &ready, "video_id", ids.len()).await;
    let dead = count_committed(&s, &dlq, "", poison).await;
    let (t_missing, t_duplicates) = missing_and_duplicates(&transcoded_once, &ids);
    let (missing, duplicates) = missing_and_duplicates(&ready_once, &ids);
    let dead_duplicates: usize = dead.values().map(|n| n - 1).sum();
    println!(
        "video chain exactlyOnce, 4 kills: {} videos; transcoded {t_missing} lost, {t_duplicates} duplicates; ready {missing} lost, {duplicates} duplicates; {} of {poison} dead-lettered, {dead_duplicates} duplicates",
        ids.len(),
        dead.len()
    );
    assert_eq!(
        (t_missing, t_duplicates),
        (0, 0),
        "video.transcoded exactly once"
    );
    assert_eq!((missing, duplicates), (0, 0), "video.ready exactly once");
    assert_eq!((dead.len(), dead_duplicates), (poison, 0));
    drop((transcode, publish));
}

#[tokio::test(flavor = "multi_thread")]
async fn in_exactly_once_and_retry_topics_mode_kill_9s_never_split_a_retried_order_in_two() {
    // 1 % of the orders fail twice and succeed on their third attempt, from retry.2.
    let extra = [
        "--delivery-mode",
        "retryTopics",
        "--fault-fail-percent",
        "1",
        "--fault-fail-times",
        "2",
    ];
    let (ids, poison, out, dead) = orders_through_kills("exactlyOnce", 60_000, 4, &extra).await;
    assert_each_once(
        "exactlyOnce, retryTopics, 4 kills",
        &ids,
        poison,
        &out,
        &dead,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_exactly_once_mode_sigterm_commits_the_open_transaction_and_the_outputs_match_the_committed_offsets()
 {
    let s = Stack::new();
    let t = OrderTopics::new(&s, "eos-term").await;
    let (input, output, dlq, group, topics) = (&t.input, &t.output, &t.dlq, &t.group, t.topics());
    let mut w = eos_order_worker(&s, "eos-term", topics, group, &format!("{group}.t"));
    let stop = tokio_util::sync::CancellationToken::new();
    let stream = stream_orders(input, 10_000, stop.clone());
    w.busy("the worker to be handling orders").await;
    w.sigterm();
    assert_eq!(w.exit_code(Duration::from_secs(30)).await, Some(0));
    let summary = w.summary();
    assert_eq!(summary["committed"], true, "{summary}");
    stop.cancel();
    let (ids, poison) = stream.await.expect("the order stream");
    let committed = usize::try_from(committed_total(&s, group, input, 6).await).expect("positive");
    assert!(
        committed > 0 && committed < ids.len() + poison,
        "stopped mid-stream: {committed} of {} committed",
        ids.len() + poison
    );
    // What a read_committed reader sees is exactly what the committed offsets cover: the
    // last transaction's outputs and offsets committed together at SIGTERM.
    let dead = count_committed(&s, dlq, "", 0).await;
    let out = count_committed(&s, output, "order_id", committed - dead.len()).await;
    let duplicates: usize = out.values().map(|n| n - 1).sum();
    println!(
        "SIGTERM mid-stream: {committed} offsets committed, {} outputs and {} dead letters readable, {duplicates} duplicates",
        out.len(),
        dead.len()
    );
    assert_eq!(
        out.len() + dead.len(),
        committed,
        "outputs = committed offsets"
    );
    assert_eq!(duplicates, 0);
    let produced: HashSet<&String> = ids.iter().collect();
    assert!(out.keys().all(|id| produced.contains(id)));
}
