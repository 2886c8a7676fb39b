//! Helpers of `tests/system.rs`: the processes it runs, the cluster and Kafka sides, and the
//! examples rewritten for one run.
#![allow(dead_code)] // each test uses a different part

pub mod cluster;
pub mod kafka;
pub mod procs;

use serde_json::{Value, json};

use procs::workspace_root;

/// The EventConsumers of one `examples/` YAML file (several documents).
pub fn load_examples(relative: &str) -> Vec<Value> {
    let path = workspace_root().join("examples").join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    // Documents are separated by `---` lines (the examples use no other YAML stream syntax).
    text.split("\n---")
        .map(|doc| {
            serde_yaml::from_str::<Value>(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The topics the examples use with their partition counts, as `examples/topics.sh
/// --print` lists them (so the test creates exactly what a user would).
pub fn example_topics() -> Vec<(String, i32)> {
    let script = workspace_root().join("examples/topics.sh");
    let out = cluster::run_ok(
        "bash",
        &[script.to_str().expect("a UTF-8 path"), "--print"],
        None,
    );
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next().expect("a topic name").to_owned();
            let partitions = parts
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("topics.sh --print line without partitions: {l}"));
            (name, partitions)
        })
        .collect()
}

/// Rewrites an example EventConsumer for one run: into namespace `ns`, against the local
/// Kafka at `bootstrap`, and with every topic and consumer group prefixed by `prefix`, so
/// reruns (the broker keeps its topics) never see each other's records or offsets.
/// Nothing else changes.
pub fn rewrite(ec: &mut Value, ns: &str, prefix: &str, bootstrap: &str) {
    let p = |v: &Value| json!(format!("{prefix}{}", v.as_str().expect("a string")));
    ec["metadata"]["namespace"] = json!(ns);
    let spec = &mut ec["spec"];
    spec["kafka"]["bootstrapServers"] = json!(bootstrap);
    let topics: Vec<Value> = spec["kafka"]["topics"]
        .as_array()
        .expect("spec.kafka.topics")
        .iter()
        .map(p)
        .collect();
    spec["kafka"]["topics"] = Value::Array(topics);
    if spec["kafka"]["consumerGroup"].is_string() {
        spec["kafka"]["consumerGroup"] = p(&spec["kafka"]["consumerGroup"]);
    }
    for handler in ["order", "analytics", "video"] {
        if spec[handler]["outputTopic"].is_string() {
            spec[handler]["outputTopic"] = p(&spec[handler]["outputTopic"]);
        }
    }
    if spec["delivery"]["deadLetterTopic"].is_string() {
        spec["delivery"]["deadLetterTopic"] = p(&spec["delivery"]["deadLetterTopic"]);
    }
}

/// The namespaces, Helm release and topics of a run, deleted on drop (also when the test
/// panics). Declare it before the [`procs::Processes`] so the children die first.
pub struct Cleanup {
    pub release: Option<(String, String)>,
    pub namespaces: Vec<String>,
    pub topics: Vec<String>,
    pub bootstrap: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((release, ns)) = &self.release {
            let _ = cluster::run_quiet("helm", &["uninstall", release, "-n", ns, "--wait=false"]);
        }
        if !self.namespaces.is_empty() {
            let mut args = vec!["delete", "namespace", "--wait=false", "--ignore-not-found"];
            args.extend(self.namespaces.iter().map(String::as_str));
            let _ = cluster::run_quiet("kubectl", &args);
        }
        if !self.topics.is_empty() {
            let topics = std::mem::take(&mut self.topics);
            let bootstrap = self.bootstrap.clone();
            // Drop may run on the test's runtime thread, which must not block on a future:
            // a thread of its own with its own runtime deletes the topics.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(kafka::delete_topics(&bootstrap, &topics));
                }
            })
            .join();
        }
    }
}
