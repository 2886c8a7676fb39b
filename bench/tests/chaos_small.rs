//! The small chaos run inside `make test`: 20,000 sequence-numbered orders through real
//! worker processes with 3 `kill -9`s and a 1 → 3 → 1 rescale (no broker restart: the
//! broker is shared with the other tests), then a short DLQ outage. Every sequence number
//! must be found in the output topic or the DLQ, and no offset may be committed past a
//! failure that is not dead-lettered yet.
//!
//! It runs the worker binary cargo built for this profile (`target/<profile>/
//! eventconsumer-worker`, which `cargo test --workspace` builds for the worker's own
//! tests), or `$EC_WORKER_BIN`.

use std::path::PathBuf;
use std::time::Duration;

use eventconsumer_bench::chaos;

fn worker_bin() -> PathBuf {
    if let Ok(p) = std::env::var("EC_WORKER_BIN") {
        return PathBuf::from(p);
    }
    eventconsumer_bench::sibling_binary("eventconsumer-worker").unwrap_or_else(|| {
        panic!(
            "no eventconsumer-worker beside this test binary: run `cargo build -p \
             eventconsumer-worker` first (`cargo test --workspace` builds it), or set \
             EC_WORKER_BIN"
        )
    })
}

fn config(messages: u64, kills: u32, tag: &str) -> chaos::Config {
    chaos::Config {
        bootstrap: testkit::kafka_bootstrap(),
        worker_bin: worker_bin(),
        messages,
        // Each partition is processed in order, one message (and its output ack) at a
        // time: 12 partitions keep the run near a minute on a busy 2-core machine.
        partitions: 12,
        kills,
        broker_restart: false,
        rescale: true,
        poison_every: 500,
        timeout: Duration::from_secs(240),
        log_dir: std::env::temp_dir().join(testkit::unique_name(tag)),
        seed: 3,
        broker_faults: eventconsumer_bench::faults::BrokerFaults::default(),
    }
}

#[test]
fn twenty_thousand_orders_survive_three_kills_and_a_rescale() {
    let cfg = config(20_000, 3, "chaos-small");
    let report = chaos::run(&cfg).expect("the chaos run completes");
    let text = report.lines().join("\n");
    println!("{text}");
    assert_eq!(report.lost, 0, "{text}");
    assert_eq!(report.poison_in_output, 0, "{text}");
    assert_eq!(report.kills, 3, "{text}");
    assert!(report.max_workers >= 3, "{text}");
    assert!(report.in_dlq >= 20_000 / 500, "{text}");
}

#[test]
fn a_missing_dead_letter_topic_holds_offsets_and_loses_nothing() {
    let mut cfg = config(3_000, 0, "chaos-dlq");
    cfg.rescale = false;
    let report = chaos::dlq_outage(&cfg, Duration::from_secs(8)).expect("the outage run completes");
    let text = report.lines().join("\n");
    println!("{text}");
    assert!(report.outage_samples > 0, "{text}");
    assert_eq!(report.committed_past_failure, 0, "{text}");
    assert_eq!(report.lost, 0, "{text}");
}
