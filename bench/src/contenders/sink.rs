//! The ordering benchmark's contenders: every message POSTed to the bench's slow sink
//! ([`crate::slow_sink`]). The worker in `ordering: partition` (one call at a time per
//! partition) and `ordering: key` (up to `maxInFlight` calls, one key's in offset order),
//! and the Confluent Parallel Consumer in `KEY` order with the same concurrency.

use std::process::Command;

use super::{Contender, Done, Launch, READY_LINE, Ready, Setup};

pub fn launch(c: Contender, group: &str, setup: Setup<'_>) -> anyhow::Result<Launch> {
    let sink = setup
        .sink
        .ok_or_else(|| anyhow::anyhow!("{} needs the slow sink (the bench starts it)", c.slug()))?;
    let max_in_flight = sink.max_in_flight.to_string();
    let (cmd, ready) = match c {
        Contender::SinkParallelKey => {
            // The JVM as a team would start it: defaults.
            let mut cmd = Command::new("java");
            cmd.arg("-jar")
                .arg(&setup.bins.parallel_jar)
                .args(["--bootstrap", setup.bootstrap, "--topic", setup.topic])
                .args(["--group", group, "--sink-url", sink.url])
                .args(["--ordering", "KEY", "--max-concurrency", &max_in_flight]);
            (cmd, Ready::LogLine(READY_LINE))
        }
        _ => {
            let port = crate::free_port()?;
            let ordering = if c == Contender::SinkKey {
                "key"
            } else {
                "partition"
            };
            let mut cmd = Command::new(&setup.bins.worker);
            cmd.args(["run", "--handler", "order", "--action", "inventory"])
                .args(["--no-output", "--sink-url", sink.url])
                .args(["--ordering", ordering, "--max-in-flight", &max_in_flight])
                .args(["--topics", setup.topic, "--group-id", group])
                .args(["--bootstrap-servers", setup.bootstrap])
                .args(["--http-addr", &format!("127.0.0.1:{port}")])
                .args(["--dlq-topic", &format!("{}.dlq", setup.topic)])
                .args(["--log-level", "info"]);
            (cmd, Ready::Readyz(port))
        }
    };
    Ok(Launch {
        cmd,
        ready,
        done: Done::Committed {
            retry_topics: Vec::new(),
        },
        topics: Vec::new(),
    })
}
