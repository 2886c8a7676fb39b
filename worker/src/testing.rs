//! Testing aids of `eventconsumer-worker run`, for benchmarks and chaos tests (`make bench`,
//! `make chaos`); not meant for production consumers.
//!
//! * `--no-output` (`EC_NO_OUTPUT`): the order handler decodes and validates each order
//!   and stores its offset, but publishes no outcome event. The benchmark uses it to
//!   measure the delivery loop itself rather than the output producer's round trips.
//! * `--fault-fail-percent P --fault-fail-times N` (`EC_FAULT_FAIL_PERCENT`,
//!   `EC_FAULT_FAIL_TIMES`): P % of the messages, chosen by a hash of topic, partition and
//!   offset (so the same messages on every run and in every process), fail their first N
//!   attempts with a *retryable* error before the handler runs, so they go through the real
//!   retry path (backoff, metrics, and the dead-letter topic when N ≥ `--max-attempts`).
//!   In `blocking` mode the failure count lives in memory: a restarted worker fails a
//!   chosen message N times again. In `retryTopics` mode the choice is made on the source
//!   record and the count is the record's attempt number (from its retry headers), so a
//!   chosen message fails attempts 1..=N in whichever topic and process they happen.

use clap::Args;
use clap::builder::BoolishValueParser;
use eventconsumer_contract::env;

/// The flags of the testing aids, shown under their own heading in `run --help`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Testing aids (benchmarks and chaos tests, not for production)")]
pub struct TestingArgs {
    /// Order handler only: validate each order but publish no outcome event (no output
    /// topic). For throughput benchmarks of the delivery loop.
    #[arg(long, env = env::NO_OUTPUT, value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub no_output: bool,

    /// Fail this percentage (0–100) of messages, chosen by a hash of topic, partition and
    /// offset, with a retryable error before the handler runs.
    #[arg(long, env = env::FAULT_FAIL_PERCENT, default_value_t = 0.0)]
    pub fault_fail_percent: f64,

    /// With --fault-fail-percent: attempts of each chosen message that fail before it is
    /// let through (at or above --max-attempts, chosen messages are dead-lettered).
    #[arg(long, env = env::FAULT_FAIL_TIMES, default_value_t = 1)]
    pub fault_fail_times: u32,
}

/// Which messages fail, and how often.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultSpec {
    /// Chosen messages per million.
    pub per_million: u32,
    /// Failed attempts before a chosen message passes.
    pub times: u32,
}

impl FaultSpec {
    /// Whether the message at `topic`/`partition`/`offset` is one that fails.
    pub fn chosen(&self, topic: &str, partition: i32, offset: i64) -> bool {
        fault_hash(topic, partition, offset) % 1_000_000 < u64::from(self.per_million)
    }
}

/// FNV-1a over `topic`, then `partition` and `offset` as little-endian bytes: stable
/// across processes and releases (std's hasher promises neither), so a benchmark can
/// predict which messages fail.
pub fn fault_hash(topic: &str, partition: i32, offset: i64) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET_BASIS;
    let bytes = topic
        .bytes()
        .chain(partition.to_le_bytes())
        .chain(offset.to_le_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// The checked testing settings ([`crate::config`] checks the flags against each other and
/// the handler).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Testing {
    pub no_output: bool,
    pub fault: Option<FaultSpec>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chosen_share_is_close_to_the_percentage_and_stable() {
        let spec = FaultSpec {
            per_million: 10_000,
            times: 2,
        };
        let chosen = (0..100_000)
            .filter(|o| spec.chosen("order.placed", 3, *o))
            .count();
        assert!((800..1200).contains(&chosen), "{chosen} of 100000");
        // Pinned: the bench's Go and Java contenders (bench/franzgo, bench/spring) compute
        // the same hash and pin the same value.
        assert_eq!(fault_hash("order.placed", 3, 12345), 0x05cb_2d16_34d2_7258);
        assert_ne!(fault_hash("t", 0, 1), fault_hash("t", 1, 0));
    }
}
