//! Benchmarks and chaos tests of eventconsumer against the local stack (`make dev-up`).
//!
//! * `preload` fills a topic with valid `OrderPlaced` JSON fast (idempotent producer).
//! * `ceiling` is a raw librdkafka consumer: reads everything, processes and commits nothing;
//!   `samework` is the same plus the worker's own decode and validation (the same-work
//!   ceiling).
//! * `bench` runs the contenders ([`contenders`]: the ceilings, Kafka's ConsumerPerformance,
//!   our worker, Spring Kafka, franz-go, the seed's kafka-go loop, each healthy and with a
//!   failure mix where it applies) as child processes, measures each, runs the operator
//!   scale test, the idle-worker measurement and what `exactlyOnce` adds to latency
//!   ([`latency`]), and writes a markdown table with the targets ([`report`]) to
//!   `bench/results/`.
//! * `chaos` pushes sequence-numbered orders through a group of workers while killing them,
//!   restarting the broker and rescaling, then checks that every sequence number reached
//!   the output topic or the dead-letter topic.
//!
//! Speed is reported as ratios measured side by side in one run; nothing here asserts a
//! timing.
#![forbid(unsafe_code)]

pub mod chaos;
pub mod chaos_isr;
pub mod contenders;
pub mod faults;
pub mod kafka;
pub mod latency;
pub mod machine;
pub mod metrics;
pub mod operator_scale;
pub mod orders;
pub mod proc;
pub mod progress;
pub mod report;
pub mod slow_sink;
pub mod stats;

use std::path::PathBuf;

/// The Kafka bootstrap address of the local stack, or an error saying how to start it.
pub fn bootstrap() -> anyhow::Result<String> {
    match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => anyhow::bail!(
            "KAFKA_BOOTSTRAP is not set: run `make dev-up && . .dev/env` first (the bench and \
             chaos targets use the local stack's Kafka and control plane)"
        ),
    }
}

/// The repository root: `$EC_ROOT`, else the parent of this crate's manifest directory.
pub fn repo_root() -> PathBuf {
    if let Ok(root) = std::env::var("EC_ROOT") {
        return PathBuf::from(root);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// A binary beside the running one (same cargo profile directory), e.g. the worker next to
/// `bench` in `target/release/`; test executables live one level deeper, in `deps/`.
pub fn sibling_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_path_buf();
    if dir.ends_with("deps") {
        dir = dir.parent()?.to_path_buf();
    }
    let candidate = dir.join(name);
    candidate.is_file().then_some(candidate)
}

/// Milliseconds since the epoch, for unique topic and group names.
pub fn now_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
