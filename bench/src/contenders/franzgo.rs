//! The franz-go contender (`bench/franzgo`): goroutine per partition, AutoCommitMarks,
//! in-place retries and a DLQ.

use std::process::Command;

use super::{
    BACKOFF_MS, Contender, Done, FAULT_PER_MILLION, FAULT_TIMES, Launch, MAX_ATTEMPTS, Ready, Setup,
};

pub fn launch(c: Contender, group: &str, setup: Setup<'_>) -> Launch {
    let mut cmd = Command::new(&setup.bins.franzgo);
    cmd.args([
        "-brokers",
        setup.bootstrap,
        "-topic",
        setup.topic,
        "-group",
        group,
    ])
    .args(["-dlq-topic", &format!("{}.dlq", setup.topic)])
    .args(["-max-attempts", &MAX_ATTEMPTS.to_string()])
    .args(["-backoff", &format!("{BACKOFF_MS}ms")]);
    if c == Contender::FranzFailure {
        cmd.args(["-fault-per-million", &FAULT_PER_MILLION.to_string()])
            .args(["-fault-times", &FAULT_TIMES.to_string()]);
    }
    Launch {
        cmd,
        ready: Ready::LogLine(super::READY_LINE),
        done: Done::Committed {
            retry_topics: Vec::new(),
        },
        topics: Vec::new(),
    }
}
