//! Our worker: `eventconsumer-worker run --handler order --action inventory --no-output`,
//! healthy or with the failure mix in either delivery mode.

use std::process::Command;

use super::{BACKOFF_MS, Contender, Done, FAULT_TIMES, Launch, MAX_ATTEMPTS, Ready, Setup};

pub fn launch(c: Contender, group: &str, setup: Setup<'_>) -> anyhow::Result<Launch> {
    let port = crate::free_port()?;
    let mut cmd = Command::new(&setup.bins.worker);
    cmd.args(["run", "--handler", "order", "--action", "inventory"])
        .arg("--no-output")
        .args(["--topics", setup.topic, "--group-id", group])
        .args(["--bootstrap-servers", setup.bootstrap])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--dlq-topic", &format!("{}.dlq", setup.topic)])
        .args(["--log-level", "info"]);
    let mut topics = Vec::new();
    if c != Contender::Ours {
        // "100 ms backoff": at most 100 ms before each retry (jitter takes up to half off).
        let backoff = format!("{BACKOFF_MS}ms");
        cmd.args(["--fault-fail-percent", "1"])
            .args(["--fault-fail-times", &FAULT_TIMES.to_string()])
            .args(["--backoff-initial", &backoff, "--backoff-max", &backoff])
            .args(["--backoff-multiplier", "1"]);
    }
    if c == Contender::FailureRetryTopics {
        // Three attempts are all a message failing twice needs, so the group needs (and
        // subscribes to) exactly retry.1 and retry.2, created as the operator does: with the
        // source's partition count.
        cmd.args(["--delivery-mode", "retryTopics"])
            .args(["--max-attempts", &MAX_ATTEMPTS.to_string()]);
        for attempt in 2..=MAX_ATTEMPTS {
            topics.push(eventconsumer_contract::retry_topic(group, attempt));
        }
    }
    Ok(Launch {
        cmd,
        ready: Ready::Readyz(port),
        done: Done::Committed {
            retry_topics: topics
                .iter()
                .map(|t| (t.clone(), group.to_owned()))
                .collect(),
        },
        topics,
    })
}
