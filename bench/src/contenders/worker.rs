//! Our worker: `eventconsumer-worker run --handler order --action inventory --no-output`,
//! healthy or with the failure mix in either delivery mode; or publishing each outcome
//! event to an output topic of its own, at least once or exactly once.

use std::process::Command;

use super::{BACKOFF_MS, Contender, Done, FAULT_TIMES, Launch, MAX_ATTEMPTS, Ready, Setup};

pub fn launch(c: Contender, group: &str, setup: Setup<'_>) -> anyhow::Result<Launch> {
    let port = crate::free_port()?;
    let mut cmd = Command::new(&setup.bins.worker);
    cmd.args(["run", "--handler", "order", "--action", "inventory"])
        .args(["--topics", setup.topic, "--group-id", group])
        .args(["--bootstrap-servers", setup.bootstrap])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--dlq-topic", &format!("{}.dlq", setup.topic)])
        .args(["--log-level", "info"]);
    // Topics the bench creates for the run: the output topic, the retry topics.
    let mut topics = Vec::new();
    if c.publishes() {
        let output = format!("{group}.out");
        cmd.args(["--output-topic", &output]);
        topics.push(output);
    } else {
        cmd.arg("--no-output");
    }
    if c == Contender::OursExactlyOnce {
        cmd.args(["--semantics", "exactlyOnce"])
            .args(["--transactional-id", &format!("{group}.tx.0")]);
    }
    if matches!(c, Contender::Failure | Contender::FailureRetryTopics) {
        // "100 ms backoff": at most 100 ms before each retry (jitter takes up to half off).
        let backoff = format!("{BACKOFF_MS}ms");
        cmd.args(["--fault-fail-percent", "1"])
            .args(["--fault-fail-times", &FAULT_TIMES.to_string()])
            .args(["--backoff-initial", &backoff, "--backoff-max", &backoff])
            .args(["--backoff-multiplier", "1"]);
    }
    let mut retry_topics = Vec::new();
    if c == Contender::FailureRetryTopics {
        // Three attempts are all a message failing twice needs, so the group needs (and
        // subscribes to) exactly retry.1 and retry.2, created as the operator does: with the
        // source's partition count.
        cmd.args(["--delivery-mode", "retryTopics"])
            .args(["--max-attempts", &MAX_ATTEMPTS.to_string()]);
        retry_topics = (2..=MAX_ATTEMPTS)
            .map(|attempt| eventconsumer_contract::retry_topic(group, attempt))
            .collect();
    }
    topics.extend(retry_topics.iter().cloned());
    Ok(Launch {
        cmd,
        ready: Ready::Readyz(port),
        done: Done::Committed {
            retry_topics: retry_topics
                .into_iter()
                .map(|t| (t, group.to_owned()))
                .collect(),
        },
        topics,
    })
}
