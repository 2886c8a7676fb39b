//! Broker faults of the three-broker cluster (`make dev-up ARGS="--brokers 3"`), through
//! `hack/kafka-fault.sh`, which undoes each fault by itself after a bounded time. Behind the
//! `kafka` feature.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Brokers of the cluster `hack/dev-up.sh --brokers 3` starts.
pub const CLUSTER_BROKERS: usize = 3;
/// The broker that runs in its own network namespace: the one `cut` cuts off.
pub const CUT_BROKER: i32 = 3;

/// What a cluster test prints when the local Kafka is a single broker.
pub const START_THE_CLUSTER: &str = "Run `make cluster-test`, or `hack/dev-down.sh kafka && \
     make dev-up ARGS=\"--brokers 3\" && . .dev/env` and the test again.";

/// How many brokers `$KAFKA_BOOTSTRAP` lists.
pub fn bootstrap_brokers(bootstrap: &str) -> usize {
    bootstrap
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .count()
}

/// Panics, saying how to start it, unless `$KAFKA_BOOTSTRAP` is the three-broker cluster.
pub fn require_cluster() -> String {
    let bootstrap = crate::kafka_bootstrap();
    assert!(
        bootstrap_brokers(&bootstrap) == CLUSTER_BROKERS,
        "this test needs the three-broker cluster, and KAFKA_BOOTSTRAP={bootstrap} is not it. \
         {START_THE_CLUSTER}"
    );
    bootstrap
}

/// The script, from the repository root (`$EC_ROOT`, else this crate's parent directory).
fn script() -> PathBuf {
    let root = std::env::var("EC_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            manifest.parent().map(PathBuf::from).unwrap_or(manifest)
        });
    root.join("hack/kafka-fault.sh")
}

/// One fault, as `hack/kafka-fault.sh` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of the broker; restarted after the duration.
    Kill(i32),
    /// `SIGSTOP` of the broker; `SIGCONT` after the duration.
    Hang(i32),
    /// Broker 3's link down; up after the duration.
    Cut,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Kill(b) => write!(f, "kill -9 of broker {b}"),
            Fault::Hang(b) => write!(f, "SIGSTOP of broker {b}"),
            Fault::Cut => write!(f, "network cut of broker {CUT_BROKER}"),
        }
    }
}

/// Starts `fault` for `length` (whole seconds, at least 1). The child exits once the fault is
/// over and the cluster whole again (status 0), or not back in time (non-zero). Its output
/// goes to this process's stderr.
pub fn start(fault: Fault, length: Duration) -> Result<Child, String> {
    let secs = length.as_secs().max(1).to_string();
    let mut cmd = Command::new(script());
    match fault {
        Fault::Kill(b) => cmd.args(["kill", &b.to_string()]),
        Fault::Hang(b) => cmd.args(["hang", &b.to_string()]),
        Fault::Cut => cmd.arg("cut"),
    };
    cmd.args(["--for", &secs])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", script().display()))
}

/// Runs `fault` for `length` and waits until it is over and the cluster whole again.
pub fn run(fault: Fault, length: Duration) -> Result<(), String> {
    let status = start(fault, length)?
        .wait()
        .map_err(|e| format!("waiting for hack/kafka-fault.sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("hack/kafka-fault.sh ({fault}) failed: {status}"))
    }
}

/// The id of the current leader of `topic`/`partition`, from the cluster's metadata.
pub fn leader(bootstrap: &str, topic: &str, partition: i32) -> Result<i32, String> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("a Kafka client for {bootstrap}: {e}"))?;
    let md = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    md.topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
        .map(|p| p.leader())
        .filter(|l| *l >= 1)
        .ok_or_else(|| format!("{topic}/{partition} has no leader now"))
}
