//! The seed tutorial's kafka-go loop (`bench/seedloop`): commit per message, or every second.

use std::process::Command;

use super::{Contender, Done, Launch, Ready, Setup};

pub fn launch(c: Contender, n: u64, group: &str, setup: Setup<'_>) -> Launch {
    let interval = if c == Contender::Seed { "0" } else { "1s" };
    let mut cmd = Command::new(&setup.bins.seedloop);
    cmd.args([
        "-brokers",
        setup.bootstrap,
        "-topic",
        setup.topic,
        "-group",
        group,
    ])
    .args(["-n", &n.to_string(), "-commit-interval", interval]);
    Launch {
        cmd,
        ready: Ready::Never,
        done: Done::Exits,
        topics: Vec::new(),
    }
}
