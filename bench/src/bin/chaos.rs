//! `chaos`: the chaos scenarios of [`eventconsumer_bench::chaos`] from the command line
//! (`make chaos`). Exits non-zero when a message was lost or an offset was committed past
//! an undelivered failure.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use eventconsumer_bench::faults::BrokerFaults;
use eventconsumer_bench::{bootstrap, chaos, chaos_isr, repo_root, sibling_binary};

#[derive(Debug, Parser)]
#[command(about = "Kill workers, restart the broker, rescale; then count every message")]
struct Args {
    /// Sequence-numbered orders to push through.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// kill -9 of a random worker, spread over the run.
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// Skip the broker restart (it restarts the shared local broker through hack/).
    #[arg(long)]
    no_broker_restart: bool,
    /// Every K-th order is invalid and must end in the DLQ.
    #[arg(long, default_value_t = 1000)]
    poison_every: u64,
    /// Messages of the DLQ-outage scenario (0: skip it).
    #[arg(long, default_value_t = 20_000)]
    outage_messages: u64,
    /// How long the DLQ topic is missing in that scenario.
    #[arg(long, default_value_t = 20)]
    outage_secs: u64,
    /// Skip the main scenario (run only the DLQ outage).
    #[arg(long)]
    only_outage: bool,
    /// The worker binary [default: eventconsumer-worker beside this binary].
    #[arg(long)]
    worker_bin: Option<PathBuf>,
    /// Give up after this many seconds (per scenario).
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
    #[arg(long, default_value_t = 6)]
    seed: u64,
    /// kill -9 of a partition leader (on the three-broker cluster).
    #[arg(long, default_value_t = 5)]
    leader_kills: u32,
    /// SIGSTOPs of a broker, longer than the session timeout (on the three-broker cluster).
    #[arg(long, default_value_t = 1)]
    hangs: u32,
    /// Network cuts of broker 3 (on the three-broker cluster).
    #[arg(long, default_value_t = 1)]
    cuts: u32,
    /// How long the output's ISR is too small in the ISR scenario (on the three-broker cluster; 0: skip).
    #[arg(long, default_value_t = 45)]
    isr_secs: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let worker_bin = match args.worker_bin.clone() {
        Some(p) => p,
        None => sibling_binary("eventconsumer-worker").ok_or_else(|| {
            anyhow::anyhow!(
                "no eventconsumer-worker beside this binary: `cargo build --release -p eventconsumer-worker` (or --worker-bin)"
            )
        })?,
    };
    let log_dir = repo_root()
        .join("target/chaos-logs")
        .join(eventconsumer_bench::now_millis().to_string());
    let bootstrap = bootstrap()?;
    // On the three-broker cluster (`make dev-up ARGS="--brokers 3"`): broker faults instead
    // of the broker restart, and the DLQ-leader and ISR-too-small scenarios.
    let cluster =
        testkit::faults::bootstrap_brokers(&bootstrap) == testkit::faults::CLUSTER_BROKERS;
    let base = chaos::Config {
        bootstrap,
        worker_bin,
        messages: args.messages,
        partitions: args.partitions,
        kills: args.kills,
        broker_restart: !args.no_broker_restart && !cluster,
        rescale: true,
        poison_every: args.poison_every,
        timeout: Duration::from_secs(args.timeout_secs),
        log_dir: log_dir.clone(),
        seed: args.seed,
        broker_faults: if cluster {
            BrokerFaults {
                leader_kills: args.leader_kills,
                hangs: args.hangs,
                cuts: args.cuts,
                ..BrokerFaults::default()
            }
        } else {
            BrokerFaults::default()
        },
    };

    println!("worker logs: {}", log_dir.display());
    let mut failed = false;
    if !args.only_outage {
        println!(
            "## chaos: {} messages, {} kills, broker restart: {}, rescale 1 → 3 → 1{}",
            base.messages,
            base.kills,
            base.broker_restart,
            if cluster {
                format!(
                    ", three brokers: {} leader kills, {} hung, {} cut",
                    args.leader_kills, args.hangs, args.cuts
                )
            } else {
                String::new()
            }
        );
        let r = chaos::run(&base)?;
        for l in r.lines() {
            println!("{l}");
        }
        failed |= r.lost > 0 || r.poison_in_output > 0;
    }
    if args.outage_messages > 0 {
        let cfg = chaos::Config {
            messages: args.outage_messages,
            log_dir: log_dir.join("dlq-outage"),
            ..base.clone()
        };
        println!(
            "## DLQ outage: {} messages, DLQ topic missing for {}s",
            cfg.messages, args.outage_secs
        );
        let r = chaos::dlq_outage(&cfg, Duration::from_secs(args.outage_secs))?;
        for l in r.lines() {
            println!("{l}");
        }
        failed |= r.lost > 0 || r.committed_past_failure > 0;
    }
    if cluster && args.outage_messages > 0 {
        let cfg = chaos::Config {
            messages: args.outage_messages,
            log_dir: log_dir.join("dlq-leader-kill"),
            kills: 0,
            rescale: false,
            // Dense poison, so dead-letter writes are in flight when the leader dies.
            poison_every: 50,
            broker_faults: BrokerFaults {
                dlq_leader_kills: 1,
                ..BrokerFaults::default()
            },
            ..base.clone()
        };
        println!(
            "## DLQ leader killed: {} messages, every 50th poison",
            cfg.messages
        );
        let r = chaos::run(&cfg)?;
        for l in r.lines() {
            println!("{l}");
        }
        failed |= r.lost > 0 || r.poison_in_output > 0 || r.faults.leader_kills == 0;
    }
    if cluster && args.isr_secs > 0 {
        let cfg = chaos::Config {
            messages: args.outage_messages.max(1),
            log_dir: log_dir.join("isr-too-small"),
            broker_faults: BrokerFaults::default(),
            ..base.clone()
        };
        println!(
            "## ISR too small: {} messages, output min.insync.replicas=3, one broker down {}s",
            cfg.messages, args.isr_secs
        );
        let r = chaos_isr::isr_too_small(&cfg, Duration::from_secs(args.isr_secs))?;
        for l in r.lines() {
            println!("{l}");
        }
        failed |= r.lost > 0 || r.committed_past_failure > 0 || r.outage_samples == 0;
    }
    if failed {
        anyhow::bail!("chaos found lost messages or an offset committed past a failure");
    }
    println!("chaos: ok");
    Ok(())
}
