//! The small chaos run on the three-broker cluster (`make cluster-test`): 20,000
//! sequence-numbered orders through real worker processes while a partition's leader is
//! killed, broker 3 is cut off, workers are killed and the group is rescaled; the DLQ's leader
//! killed while dead letters are written; and the output's ISR too small for a while. Every
//! sequence number must be found in the output or the DLQ, and no offset may be committed
//! past a record whose outcome was not acknowledged.
//!
//! Ignored in `make test` (one broker there).

use std::path::PathBuf;
use std::time::Duration;

use eventconsumer_bench::faults::BrokerFaults;
use eventconsumer_bench::{chaos, chaos_isr};

fn worker_bin() -> PathBuf {
    if let Ok(p) = std::env::var("EC_WORKER_BIN") {
        return PathBuf::from(p);
    }
    eventconsumer_bench::sibling_binary("eventconsumer-worker").unwrap_or_else(|| {
        panic!(
            "no eventconsumer-worker beside this test binary: run `cargo build -p \
             eventconsumer-worker` first, or set EC_WORKER_BIN"
        )
    })
}

fn config(messages: u64, tag: &str, broker_faults: BrokerFaults) -> chaos::Config {
    chaos::Config {
        bootstrap: testkit::faults::require_cluster(),
        worker_bin: worker_bin(),
        messages,
        partitions: 12,
        kills: 0,
        broker_restart: false,
        rescale: false,
        poison_every: 500,
        timeout: Duration::from_secs(600),
        log_dir: std::env::temp_dir().join(testkit::unique_name(tag)),
        seed: 14,
        broker_faults,
    }
}

fn check(report: &chaos::Report) -> String {
    let text = report.lines().join("\n");
    println!("{text}");
    assert_eq!(report.lost, 0, "{text}");
    assert_eq!(report.poison_in_output, 0, "{text}");
    text
}

#[test]
#[ignore = "needs the three-broker cluster: make cluster-test"]
fn twenty_thousand_orders_survive_a_leader_kill_a_cut_worker_kills_and_a_rescale() {
    let mut cfg = config(
        20_000,
        "cluster-chaos",
        BrokerFaults {
            leader_kills: 1,
            cuts: 1,
            ..BrokerFaults::default()
        },
    );
    cfg.kills = 3;
    cfg.rescale = true;
    let report = chaos::run(&cfg).expect("the chaos run completes");
    let text = check(&report);
    assert_eq!(report.kills, 3, "{text}");
    assert_eq!(report.faults.leader_kills, 1, "{text}");
    assert_eq!(report.faults.cuts, 1, "{text}");
}

#[test]
#[ignore = "needs the three-broker cluster: make cluster-test"]
fn the_dead_letter_topics_leader_killed_while_dead_letters_are_written_loses_nothing() {
    let mut cfg = config(
        5_000,
        "cluster-dlq",
        BrokerFaults {
            dlq_leader_kills: 1,
            ..BrokerFaults::default()
        },
    );
    cfg.poison_every = 50;
    let report = chaos::run(&cfg).expect("the run completes");
    let text = check(&report);
    assert_eq!(report.faults.leader_kills, 1, "{text}");
    assert!(report.in_dlq >= 5_000 / 50, "{text}");
}

#[test]
#[ignore = "needs the three-broker cluster: make cluster-test"]
fn with_the_outputs_isr_too_small_no_offset_passes_an_unacknowledged_outcome() {
    let cfg = config(5_000, "cluster-isr", BrokerFaults::default());
    let report =
        chaos_isr::isr_too_small(&cfg, Duration::from_secs(40)).expect("the run completes");
    let text = check(&report);
    assert!(report.outage_samples > 0, "{text}");
    assert_eq!(report.committed_past_failure, 0, "{text}");
}
