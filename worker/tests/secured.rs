//! The worker and the gateway against the local broker's secured listeners: SASL_SSL with
//! SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN, and mutual TLS, as the principal `consumer` with
//! exactly the ACLs `contract::acl` lists (which the README's table is rendered from), the CA
//! verified with host names on. Then what a user gets wrong: a wrong password, an expired or
//! untrusted client certificate, a wrong CA, a host name the certificate does not name, a
//! missing ACL. Each gives an error line naming the cause, `/readyz` 503, nothing consumed or
//! committed, and no password in the log; and the same worker setup with the fault fixed
//! works.
//!
//! Credentials reach the binary as the Deployment gives them: `EC_*` environment variables
//! (the SASL password among them) and file paths for the CA and the client certificate.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventconsumer_contract::{acl, env};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::json;
use testkit::secure::{Listener, User, pki_file};

const BIN: &str = env!("CARGO_BIN_EXE_eventconsumer-worker");
/// Generous: TLS handshakes and a group join on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);
/// How long a refused worker is watched to make sure it stays refused and commits nothing.
const REFUSED_FOR: Duration = Duration::from_secs(6);

/// How a worker authenticates: the listener, the user, and what a test breaks.
#[derive(Clone)]
struct Credentials {
    listener: Listener,
    bootstrap: String,
    user: User,
    password: Option<String>,
    ca: PathBuf,
    cert: Option<(PathBuf, PathBuf)>,
}

impl Credentials {
    fn good(listener: Listener) -> Credentials {
        let user = User::Consumer;
        Credentials {
            listener,
            bootstrap: listener.bootstrap(),
            user,
            password: listener.mechanism().map(|_| user.password()),
            ca: pki_file("ca.crt"),
            cert: listener.mechanism().is_none().then(|| {
                (
                    pki_file(&format!("{}.crt", user.name())),
                    pki_file(&format!("{}.key", user.name())),
                )
            }),
        }
    }

    /// The variables the operator's Deployment would set for these credentials.
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            (env::BOOTSTRAP_SERVERS, self.bootstrap.clone()),
            (env::TLS_CA_FILE, self.ca.display().to_string()),
        ];
        if let Some(mechanism) = self.listener.mechanism() {
            vars.push((env::SASL_MECHANISM, mechanism.to_owned()));
            vars.push((env::SASL_USERNAME, self.user.name().to_owned()));
            vars.push((
                env::SASL_PASSWORD,
                self.password.clone().unwrap_or_default(),
            ));
        }
        if let Some((cert, key)) = &self.cert {
            vars.push((env::TLS_CERT_FILE, cert.display().to_string()));
            vars.push((env::TLS_KEY_FILE, key.display().to_string()));
        }
        vars
    }
}

/// One consumer's topics and group, created on the broker (through PLAINTEXT).
struct Names {
    input: String,
    output: String,
    dlq: String,
    group: String,
    /// `retryTopics` mode with its one retry topic (`--max-attempts 2`), and every order
    /// failing its first attempt, so each one goes through the retry topic.
    retry_topic: Option<String>,
    /// `exactlyOnce`, with the transactional id `<group>.tx.w0`.
    exactly_once: bool,
}

impl Names {
    async fn create(prefix: &str) -> Names {
        Names::create_in(prefix, false).await
    }

    /// [`Names::create`] in `retryTopics` mode, its retry topic created as the operator would.
    async fn create_with_retry_topic(prefix: &str) -> Names {
        Names::create_in(prefix, true).await
    }

    async fn create_in(prefix: &str, retry_topics: bool) -> Names {
        let plaintext = testkit::kafka_bootstrap();
        let group = testkit::unique_name(&format!("{prefix}-g"));
        let names = Names {
            input: testkit::unique_name(&format!("{prefix}-in")),
            output: testkit::unique_name(&format!("{prefix}-out")),
            dlq: testkit::unique_name(&format!("{prefix}-dlq")),
            retry_topic: retry_topics.then(|| eventconsumer_contract::retry_topic(&group, 2)),
            group,
            exactly_once: false,
        };
        let topics = [&names.input, &names.output, &names.dlq];
        for topic in topics.into_iter().chain(&names.retry_topic) {
            testkit::create_topic(&plaintext, topic, 1).await;
        }
        names
    }

    fn worker_acls(&self) -> Vec<acl::Acl> {
        let topics = [self.input.clone()];
        acl::worker(&acl::Names {
            topics: &topics,
            group: &self.group,
            output: Some(&self.output),
            dead_letter: &self.dlq,
            retry_topics: self.retry_topic.is_some(),
            exactly_once: self.exactly_once,
        })
    }

    fn args(&self) -> Vec<String> {
        let mut args = [
            "run",
            "--handler",
            "order",
            "--action",
            "payment",
            "--topics",
            &self.input,
            "--group-id",
            &self.group,
            "--output-topic",
            &self.output,
            "--dlq-topic",
            &self.dlq,
            "--max-attempts",
            "2",
            "--backoff-initial",
            "50ms",
            "--backoff-max",
            "100ms",
            "--http-addr",
            "127.0.0.1:0",
            "--shutdown-grace",
            "5",
            "--log-level",
            "info,librdkafka=warn",
        ]
        .map(str::to_owned)
        .to_vec();
        if self.exactly_once {
            let id = eventconsumer_contract::semantics::transactional_id(&self.group, "w0");
            args.extend(["--semantics".to_owned(), "exactlyOnce".to_owned()]);
            args.extend(["--transactional-id".to_owned(), id]);
        }
        if self.retry_topic.is_some() {
            args.extend(
                [
                    "--delivery-mode",
                    "retryTopics",
                    "--fault-fail-percent",
                    "100",
                    "--fault-fail-times",
                    "1",
                ]
                .map(str::to_owned),
            );
        }
        args
    }

    /// Produces `orders` valid orders and one poison message through PLAINTEXT.
    async fn produce(&self, orders: usize) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", testkit::kafka_bootstrap())
            .create()
            .expect("a producer");
        let poison = b"{not json".to_vec();
        let values = (0..orders).map(order).chain([poison]);
        for (i, value) in values.enumerate() {
            producer
                .send(
                    FutureRecord::to(&self.input)
                        .key(&format!("c-{i}"))
                        .payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("producing to {}: {e}", self.input));
        }
    }

    /// The group's committed offset on the input topic (-1: none).
    async fn committed(&self) -> i64 {
        self.committed_on(&self.input).await
    }

    /// The group's committed offset on partition 0 of `topic` (-1: none).
    async fn committed_on(&self, topic: &str) -> i64 {
        let group = self.group.clone();
        let input = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", testkit::kafka_bootstrap())
                .set("group.id", &group)
                .create()
                .expect("an offset reader");
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&input, 0);
            let got = consumer
                .committed_offsets(tpl, Duration::from_secs(10))
                .expect("committed offsets");
            match got.find_partition(&input, 0).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            }
        })
        .await
        .expect("offset thread")
    }
}

fn order(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "order_id": format!("o-{i}"),
        "customer_id": format!("c-{i}"),
        "items": [{"product_id": "SKU-001", "quantity": 1, "price": 10.0}],
        "total": 10.0,
        "created_at": "2026-12-01T10:00:00Z",
    }))
    .expect("order JSON")
}

/// How many records `topic` holds (its high watermark on partition 0).
async fn records_in(topic: &str) -> i64 {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", testkit::kafka_bootstrap())
            .create()
            .expect("a watermark reader");
        consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .map(|(_, high)| high)
            .unwrap_or_else(|e| panic!("watermarks of {topic}: {e}"))
    })
    .await
    .expect("watermark thread")
}

/// A worker process whose log goes to a file.
struct Worker {
    child: Child,
    log: PathBuf,
    name: String,
}

impl Worker {
    fn start(name: &str, args: &[String], credentials: &Credentials) -> Worker {
        let log = std::env::temp_dir().join(format!("{}.log", testkit::unique_name(name)));
        let file = std::fs::File::create(&log).expect("a log file");
        let child = Command::new(BIN)
            .args(args)
            .env_clear()
            .envs(credentials.env())
            .stdout(Stdio::from(file.try_clone().expect("log file")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawning the worker");
        Worker {
            child,
            log,
            name: name.to_owned(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn http_addr(&self) -> Option<String> {
        self.log_text().lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["message"] == "health and metrics server listening")
                .then(|| v["addr"].as_str().map(str::to_owned))
                .flatten()
        })
    }

    async fn readyz(&self) -> Option<u16> {
        let addr = self.http_addr()?;
        let response = reqwest::get(format!("http://{addr}/readyz")).await.ok()?;
        Some(response.status().as_u16())
    }

    async fn wait_ready(&self) {
        testkit::eventually(
            &format!("worker {} to be ready", self.name),
            DEADLINE,
            || async { (self.readyz().await == Some(200)).then_some(()) },
        )
        .await;
    }

    /// Waits for an error line containing every one of `words`, and returns it.
    async fn wait_error(&self, words: &[&str]) -> String {
        testkit::eventually(
            &format!("worker {} to log an error with {words:?}", self.name),
            DEADLINE,
            || async {
                self.log_text()
                    .lines()
                    .find(|l| l.contains("\"ERROR\"") && words.iter().all(|w| l.contains(w)))
                    .map(str::to_owned)
            },
        )
        .await
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of worker {} ---\n{}", self.name, self.log_text());
        }
    }
}

/// Runs a worker with `credentials` on fresh topics and checks that it processes 3 orders and
/// dead-letters the poison one, commits all 4, and logs no password.
async fn consumes_with(name: &str, credentials: &Credentials) {
    let names = Names::create(name).await;
    let plaintext = testkit::kafka_bootstrap();
    let acls = names.worker_acls();
    testkit::acl::grant(&plaintext, &credentials.user.principal(), &acls).await;
    names.produce(3).await;
    let worker = Worker::start(name, &names.args(), credentials);
    worker.wait_ready().await;
    testkit::eventually(
        &format!("{name}: 3 outcomes, 1 dead letter and 4 offsets committed"),
        DEADLINE,
        || async {
            (records_in(&names.output).await == 3
                && records_in(&names.dlq).await == 1
                && names.committed().await == 4)
                .then_some(())
        },
    )
    .await;
    assert_no_password(&worker.log_text(), name);
    testkit::acl::revoke(&plaintext, &credentials.user.principal(), &acls).await;
}

fn assert_no_password(log: &str, what: &str) {
    for user in [User::Admin, User::Consumer] {
        assert!(
            !log.contains(&user.password()),
            "{what}: a password appears in the worker's log"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_consumes_over_each_secured_listener_with_exactly_the_documented_acls() {
    let runs = Listener::ALL.map(|listener| async move {
        consumes_with(
            &format!("sec-{}", listener.slug()),
            &Credentials::good(listener),
        )
        .await;
    });
    futures::future::join_all(runs).await;
}

/// Starts a worker with `credentials` broken as a test wants, on fresh topics with all the
/// worker's ACLs but `without`; checks that it logs an error line with `words`, stays not ready
/// and commits and publishes nothing for a while; returns the names for the recovery.
async fn refused(name: &str, credentials: &Credentials, without: Option<usize>, words: &[&str]) {
    let names = Names::create(name).await;
    let plaintext = testkit::kafka_bootstrap();
    let mut acls = names.worker_acls();
    let removed = without.map(|i| acls.remove(i));
    testkit::acl::grant(&plaintext, &User::Consumer.principal(), &acls).await;
    names.produce(3).await;
    let mut worker = Worker::start(name, &names.args(), credentials);
    let line = worker.wait_error(words).await;
    tokio::time::sleep(REFUSED_FOR).await;
    assert!(
        worker.alive(),
        "{name}: the worker exited instead of waiting: {line}"
    );
    assert_eq!(
        worker.readyz().await,
        Some(503),
        "{name}: ready though refused"
    );
    assert_eq!(
        names.committed().await,
        -1,
        "{name}: committed though refused"
    );
    assert_eq!(records_in(&names.output).await, 0, "{name}: published");
    assert_no_password(&worker.log_text(), name);
    drop(worker);

    // Fixed (the right credentials, the missing ACL granted), the same setup works.
    if let Some(acl) = removed {
        acls.push(acl);
        testkit::acl::grant(&plaintext, &User::Consumer.principal(), &acls).await;
    }
    let fixed = Credentials::good(credentials.listener);
    let worker = Worker::start(&format!("{name}-fixed"), &names.args(), &fixed);
    testkit::eventually(
        &format!("{name}: recovery once fixed"),
        DEADLINE,
        || async { (names.committed().await == 4).then_some(()) },
    )
    .await;
    drop(worker);
    testkit::acl::revoke(&plaintext, &User::Consumer.principal(), &acls).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_are_logged_with_their_cause_and_nothing_is_consumed_until_fixed() {
    let wrong_password = |listener| {
        let mut c = Credentials::good(listener);
        c.password = Some(testkit::unique_name("wrong-password"));
        c
    };
    let with_cert = |cert: &str| {
        let mut c = Credentials::good(Listener::Mtls);
        c.cert = Some((
            pki_file(&format!("{cert}.crt")),
            pki_file(&format!("{cert}.key")),
        ));
        c
    };
    let mut wrong_ca = Credentials::good(Listener::Scram512);
    wrong_ca.ca = pki_file("rogue-ca.crt");
    let mut wrong_host = Credentials::good(Listener::Scram256);
    // The certificate names `localhost` only.
    wrong_host.bootstrap = wrong_host.bootstrap.replace("localhost", "127.0.0.1");
    let cases = [
        (
            "bad-scram512",
            wrong_password(Listener::Scram512),
            &["credentials"][..],
        ),
        (
            "bad-scram256",
            wrong_password(Listener::Scram256),
            &["credentials"],
        ),
        (
            "bad-plain",
            wrong_password(Listener::SaslPlain),
            &["credentials"],
        ),
        ("bad-expired", with_cert("consumer-expired"), &["TLS"]),
        ("bad-untrusted", with_cert("rogue-consumer"), &["TLS"]),
        ("bad-ca", wrong_ca, &["TLS", "certificate verify failed"]),
        ("bad-host", wrong_host, &["TLS"]),
    ];
    let runs = cases
        .into_iter()
        .map(|(name, credentials, words)| async move {
            refused(name, &credentials, None, words).await;
        });
    futures::future::join_all(runs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_missing_worker_acl_is_named_and_nothing_is_committed_until_it_is_granted() {
    // The worker's ACLs in the order acl::worker lists them: Read on the group, Read on the
    // source topic; a missing Write on the output or dead-letter topic shows up per message.
    let cases = [
        (0, &["Read on its consumer group"][..]),
        (1, &["may not use a topic"]),
    ];
    let runs = cases.into_iter().map(|(i, words)| async move {
        refused(
            &format!("acl-{i}"),
            &Credentials::good(Listener::Scram512),
            Some(i),
            words,
        )
        .await;
    });
    futures::future::join_all(runs).await;
}

/// One ACL taken away from a worker and granted back: `lost` is its index in
/// `acl::worker`'s list and `is_lost` says what it must be (a guard against a reordered
/// list); the refusal is named in an error line with `words` and the removed ACL's name;
/// `held` holds while refused (and stays for a while), with `/readyz` answering `ready`
/// when given; once granted, `settled` holds (and `/readyz` answers 200 when `ready` was
/// given).
struct Refusal<'a, C> {
    name: &'a str,
    names: Names,
    lost: usize,
    is_lost: fn(&acl::Acl) -> bool,
    words: &'a [&'a str],
    held: C,
    settled: C,
    ready: Option<u16>,
}

impl<C: PartialEq + std::fmt::Debug + Copy> Refusal<'_, C> {
    async fn run(self, counts: impl AsyncFn(&Names) -> C) {
        let Refusal {
            name,
            names,
            lost,
            is_lost,
            words,
            held,
            settled,
            ready,
        } = self;
        let plaintext = testkit::kafka_bootstrap();
        let principal = User::Consumer.principal();
        let mut acls = names.worker_acls();
        let removed = acls.remove(lost);
        assert!(is_lost(&removed), "{name}: removed {removed}");
        testkit::acl::grant(&plaintext, &principal, &acls).await;
        names.produce(3).await;
        let worker = Worker::start(name, &names.args(), &Credentials::good(Listener::Scram512));
        let mut all = words.to_vec();
        all.push(&removed.name);
        let line = worker.wait_error(&all).await;
        assert!(line.contains("an ACL is missing"), "{name}: {line}");
        testkit::eventually(
            &format!("{name}: {held:?} while refused"),
            DEADLINE,
            || async { (counts(&names).await == held).then_some(()) },
        )
        .await;
        tokio::time::sleep(REFUSED_FOR).await;
        assert_eq!(
            counts(&names).await,
            held,
            "{name}: still refused, nothing more moves"
        );
        if let Some(ready) = ready {
            assert_eq!(
                worker.readyz().await,
                Some(ready),
                "{name}: readiness while refused"
            );
        }

        testkit::acl::grant(&plaintext, &principal, std::slice::from_ref(&removed)).await;
        testkit::eventually(
            &format!("{name}: {settled:?} once {removed} is granted"),
            DEADLINE,
            || async {
                let is_ready = ready.is_none() || worker.readyz().await == Some(200);
                (counts(&names).await == settled && is_ready).then_some(())
            },
        )
        .await;
        assert_no_password(&worker.log_text(), name);
        drop(worker);
        acls.push(removed);
        testkit::acl::revoke(&plaintext, &principal, &acls).await;
    }
}

/// (output records, dead letters, committed offsets) of `names`.
async fn counts(names: &Names) -> (i64, i64, i64) {
    (
        records_in(&names.output).await,
        records_in(&names.dlq).await,
        names.committed().await,
    )
}

/// Runs a worker with all its ACLs but the Write at `lost`: see [`Refusal`].
async fn write_refused(name: &str, lost: usize, held: (i64, i64, i64), settled: (i64, i64, i64)) {
    Refusal {
        name,
        names: Names::create(name).await,
        lost,
        is_lost: |a| a.operation == acl::Operation::Write,
        words: &["Kafka refused this worker's write"],
        held,
        settled,
        ready: None,
    }
    .run(counts)
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_write_on_the_output_or_dead_letter_topic_is_named_and_loses_nothing() {
    // acl::worker lists Write on the output topic third and on the dead-letter topic fourth.
    // Without the output: each order fails to publish, is retried, then dead-lettered (class
    // `publish`) beside the poison one: all 4 in the dead-letter topic, all committed.
    let output = write_refused("acl-out", 2, (0, 4, 4), (0, 4, 4));
    // Without the dead-letter topic: the 3 orders go out and are committed; the poison one
    // cannot be dead-lettered, so its partition waits with its offset uncommitted, until the
    // ACL is back.
    let dead_letter = write_refused("acl-dlq", 3, (3, 0, 3), (3, 1, 4));
    futures::future::join(output, dead_letter).await;
}

/// In `retryTopics` mode every order here fails its first attempt, so the 3 orders and the
/// poison message all pass through the retry topic: (output, dead letters, retry-topic
/// records, committed on the source, committed on the retry topic).
async fn retry_counts(names: &Names) -> (i64, i64, i64, i64, i64) {
    let retry = names.retry_topic.as_deref().expect("retryTopics mode");
    (
        records_in(&names.output).await,
        records_in(&names.dlq).await,
        records_in(retry).await,
        names.committed().await,
        names.committed_on(retry).await,
    )
}

/// Everything handled: 3 outcomes, the poison one dead-lettered from the retry topic, all
/// offsets committed in both topics.
const RETRIED_ALL: (i64, i64, i64, i64, i64) = (3, 1, 4, 4, 4);

/// Runs a retryTopics-mode worker with all its ACLs but the retry-topic one at `lost`:
/// see [`Refusal`]; once granted, everything is handled and the worker is ready.
async fn retry_acl_refused(
    name: &str,
    lost: usize,
    words: &[&str],
    held: (i64, i64, i64, i64, i64),
    ready: u16,
) {
    Refusal {
        name,
        names: Names::create_with_retry_topic(name).await,
        lost,
        is_lost: |a| a.pattern == acl::Pattern::Prefixed,
        words,
        held,
        settled: RETRIED_ALL,
        ready: Some(ready),
    }
    .run(retry_counts)
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn in_retry_topics_mode_each_missing_retry_topic_acl_is_named_and_loses_nothing() {
    // With every ACL the retry flow runs through.
    let healthy = async {
        let names = Names::create_with_retry_topic("acl-retry-ok").await;
        let plaintext = testkit::kafka_bootstrap();
        let principal = User::Consumer.principal();
        let acls = names.worker_acls();
        testkit::acl::grant(&plaintext, &principal, &acls).await;
        names.produce(3).await;
        let args = names.args();
        let worker = Worker::start(
            "acl-retry-ok",
            &args,
            &Credentials::good(Listener::Scram512),
        );
        testkit::eventually("acl-retry-ok: all handled", DEADLINE, || async {
            (retry_counts(&names).await == RETRIED_ALL).then_some(())
        })
        .await;
        drop(worker);
        testkit::acl::revoke(&plaintext, &principal, &acls).await;
    };
    // acl::worker lists Read on the retry topics fifth and Write sixth.
    // Without Read: the source is handled (each record moved to the retry topic and
    // committed), the retry records wait, and the worker is not ready.
    let read = retry_acl_refused(
        "acl-retry-r",
        4,
        &["this principal needs Read on topic"],
        (0, 0, 4, 4, -1),
        503,
    );
    // Without Write: the first record cannot be moved, so its partition waits with nothing
    // committed (the worker is ready: it reads, and says at each try what it cannot write).
    let write = retry_acl_refused(
        "acl-retry-w",
        5,
        &["Kafka refused this worker's write"],
        (0, 0, 0, -1, -1),
        200,
    );
    futures::future::join3(healthy, read, write).await;
}

#[test]
fn the_local_broker_rejects_a_consumer_without_acls() {
    // A guard for every test above: if the broker allowed everything, "exactly the documented
    // ACLs" would prove nothing.
    let consumer: BaseConsumer = Listener::Scram512
        .client_config(User::Consumer)
        .create()
        .expect("a client");
    let topic = testkit::unique_name("no-acl");
    let md = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(20))
        .expect("metadata from the SCRAM-SHA-512 listener");
    let error = md
        .topics()
        .first()
        .and_then(|t| t.error())
        .map(RDKafkaErrorCode::from);
    assert_eq!(
        error,
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "an unauthorized topic must be refused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_exactly_once_mode_a_missing_transactional_id_acl_is_named_and_nothing_is_committed_until_it_is_granted()
 {
    let mut names = Names::create("eos-acl").await;
    names.exactly_once = true;
    let plaintext = testkit::kafka_bootstrap();
    let principal = User::Consumer.principal();
    let mut acls = names.worker_acls();
    let lost = acls.pop().expect("the worker's ACLs");
    assert_eq!(
        lost.to_string(),
        format!("Write on transactional id {}.tx. (prefixed)", names.group),
        "the transactional id's ACL comes last"
    );
    testkit::acl::grant(&plaintext, &principal, &acls).await;
    names.produce(3).await;
    let name = "eos-acl";
    let mut worker = Worker::start(name, &names.args(), &Credentials::good(Listener::Scram512));
    let line = worker
        .wait_error(&["Write on the transactional ids", "tx.*"])
        .await;
    tokio::time::sleep(REFUSED_FOR).await;
    assert!(
        worker.alive(),
        "the worker exited instead of waiting: {line}"
    );
    assert_eq!(worker.readyz().await, Some(503), "ready though refused");
    assert_eq!(names.committed().await, -1, "committed though refused");
    assert_eq!(records_in(&names.output).await, 0, "published");

    // Granted, the same worker starts its transactions and consumes everything once.
    testkit::acl::grant(&plaintext, &principal, std::slice::from_ref(&lost)).await;
    testkit::eventually(
        "the group to commit all four offsets once the ACL is granted",
        DEADLINE,
        || async { (names.committed().await == 4).then_some(()) },
    )
    .await;
    // Read as the README tells readers of exactlyOnce to: the markers the transactions
    // wrote move the watermarks, so records are counted, not offsets.
    assert_eq!(
        committed_records(&names.output, 3).await,
        3,
        "each outcome once"
    );
    assert_eq!(
        committed_records(&names.dlq, 1).await,
        1,
        "the dead letter once"
    );
    assert_no_password(&worker.log_text(), name);
    drop(worker);
    acls.push(lost);
    testkit::acl::revoke(&plaintext, &principal, &acls).await;
}

/// The records of partition 0 of `topic` a `read_committed` reader sees: read until `want`
/// arrived, then 1 s longer for extras.
async fn committed_records(topic: &str, want: usize) -> usize {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", testkit::kafka_bootstrap())
            .set("group.id", testkit::unique_name("eos-reader"))
            .set("isolation.level", "read_committed")
            .create()
            .expect("a reader");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .expect("a partition");
        consumer.assign(&tpl).expect("assign");
        let deadline = std::time::Instant::now() + DEADLINE;
        let mut seen = 0;
        let mut settle = None;
        while std::time::Instant::now() < deadline
            && settle.is_none_or(|t: std::time::Instant| t.elapsed() < Duration::from_secs(1))
        {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                seen += 1;
            }
            if seen >= want && settle.is_none() {
                settle = Some(std::time::Instant::now());
            }
        }
        seen
    })
    .await
    .expect("reader thread")
}
