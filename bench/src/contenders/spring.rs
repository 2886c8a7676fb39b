//! The Spring Kafka contender (`bench/spring`, a Spring Boot 4 jar): `@KafkaListener` with
//! the worker's validation, `DefaultErrorHandler` + `DeadLetterPublishingRecoverer`, or
//! `@RetryableTopic` for the non-blocking failure mix.

use std::process::Command;

use super::{Contender, Done, FAULT_PER_MILLION, FAULT_TIMES, Launch, Ready, Setup};

pub fn launch(c: Contender, group: &str, setup: Setup<'_>) -> Launch {
    let concurrency = match c {
        Contender::Spring1 | Contender::SpringRetryTopics1 => 1,
        _ => 6,
    };
    let retry_topics = matches!(
        c,
        Contender::SpringRetryTopics1 | Contender::SpringRetryTopics6
    );
    let failing = c != Contender::Spring1 && c != Contender::Spring6;
    // The JVM as a team would start it: defaults (G1, heap sized by the JVM).
    let mut cmd = Command::new("java");
    cmd.arg("-jar")
        .arg(&setup.bins.spring_jar)
        .arg(format!(
            "--spring.kafka.bootstrap-servers={}",
            setup.bootstrap
        ))
        .arg(format!("--bench.topic={}", setup.topic))
        .arg(format!("--bench.group={group}"))
        .arg(format!("--bench.concurrency={concurrency}"))
        .arg(format!("--bench.dlq-topic={}.dlq", setup.topic));
    if failing {
        cmd.arg(format!("--bench.fault-per-million={FAULT_PER_MILLION}"))
            .arg(format!("--bench.fault-times={FAULT_TIMES}"));
    }
    let mut topics = Vec::new();
    let mut drained = Vec::new();
    if retry_topics {
        // One retry topic per run (SameIntervalTopicReuseStrategy.SINGLE_TOPIC), named
        // `<topic><suffix>`, created by the bench like the worker's retry topics.
        let retry_suffix = format!("-{group}-retry");
        let dlt_suffix = format!("-{group}-dlt");
        cmd.arg("--bench.mode=retry-topics")
            .arg(format!("--bench.retry-suffix={retry_suffix}"))
            .arg(format!("--bench.dlt-suffix={dlt_suffix}"));
        topics.push(format!("{}{retry_suffix}", setup.topic));
        topics.push(format!("{}{dlt_suffix}", setup.topic));
        // Its container reads with the group id plus the suffix. The DLT stays empty (every
        // chosen message passes its third attempt).
        drained.push((topics[0].clone(), format!("{group}{retry_suffix}")));
    }
    Launch {
        cmd,
        ready: Ready::LogLine(super::READY_LINE),
        done: Done::Committed {
            retry_topics: drained,
        },
        topics,
    }
}
