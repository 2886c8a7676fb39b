//! The ceilings: raw librdkafka with no processing (`ceiling`), raw librdkafka plus the
//! worker's own decode and validation (`samework`), and Kafka's `ConsumerPerformance` (the
//! Java client, no processing). They exit by themselves after the messages and commit
//! nothing (ConsumerPerformance auto-commits, which costs it little).

use std::process::Command;

use super::{Contender, Done, Launch, Ready, Setup};

/// The JVM of ConsumerPerformance: Kafka's `kafka-run-class.sh` defaults (G1, 256 MiB heap
/// for tools), so it runs as `bin/kafka-consumer-perf-test.sh` would.
const PERF_JVM: &[&str] = &["-Xmx256M", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"];

pub fn launch(c: Contender, n: u64, group: &str, setup: Setup<'_>) -> anyhow::Result<Launch> {
    let n = n.to_string();
    let cmd = match c {
        Contender::Ceiling | Contender::SameWork => {
            let bin = if c == Contender::Ceiling {
                &setup.bins.ceiling
            } else {
                &setup.bins.samework
            };
            let mut cmd = Command::new(bin);
            cmd.args(["--topic", setup.topic, "--group", group, "--messages", &n])
                .env("KAFKA_BOOTSTRAP", setup.bootstrap);
            cmd
        }
        _ => {
            let libs = setup.bins.kafka_libs.join("*");
            let log4j = crate::repo_root().join("hack/kafka/log4j2-tools.properties");
            let mut cmd = Command::new("java");
            cmd.args(PERF_JVM)
                .arg(format!(
                    "-Dlog4j2.configurationFile=file:{}",
                    log4j.display()
                ))
                .arg("-cp")
                .arg(libs)
                .arg("org.apache.kafka.tools.ConsumerPerformance")
                .args([
                    "--bootstrap-server",
                    setup.bootstrap,
                    "--topic",
                    setup.topic,
                ])
                .args(["--group", group, "--num-records", &n, "--timeout", "60000"]);
            cmd
        }
    };
    Ok(Launch {
        cmd,
        // ConsumerPerformance prints its header once its consumer is made, before it joins
        // the group: the JVM start-up.
        ready: if c == Contender::KafkaPerf {
            Ready::LogLine("start.time")
        } else {
            Ready::Never
        },
        done: Done::Exits,
        topics: Vec::new(),
    })
}
