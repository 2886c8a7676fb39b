//! `preload`: fills a topic with valid ~300-byte `OrderPlaced` JSON orders, keyed by
//! customer id, through an idempotent producer, as fast as the broker takes them.
//!
//! `--seq` gives the orders ids `seq-<n>` (chaos runs find them again in the output);
//! `--poison-every K` makes every K-th order invalid (its total is one cent off).
#![forbid(unsafe_code)]

use clap::Parser;
use eventconsumer_bench::{bootstrap, kafka, orders};

#[derive(Debug, Parser)]
#[command(about = "Preload a topic with order messages")]
struct Args {
    /// Topic to fill (created when missing).
    #[arg(long)]
    topic: String,
    /// Messages to produce.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Partitions of a topic this creates.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Order ids `seq-<n>` instead of unique benchmark ids.
    #[arg(long)]
    seq: bool,
    /// Every K-th order is invalid (0: none).
    #[arg(long, default_value_t = 0)]
    poison_every: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bootstrap = bootstrap()?;
    kafka::create_topic(&bootstrap, &args.topic, args.partitions, true)?;
    let tag = format!("{}", eventconsumer_bench::now_millis());
    let elapsed = kafka::produce(&bootstrap, &args.topic, args.messages, |i| {
        let id = if args.seq {
            orders::seq_order_id(i)
        } else {
            orders::bench_order_id(&tag, i)
        };
        let poison = args.poison_every > 0 && i % args.poison_every == args.poison_every - 1;
        orders::order(i, &id, poison)
    })?;
    let rate = args.messages as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "{{\"topic\":\"{}\",\"messages\":{},\"seconds\":{:.3},\"per_second\":{rate:.0}}}",
        args.topic,
        args.messages,
        elapsed.as_secs_f64()
    );
    Ok(())
}
