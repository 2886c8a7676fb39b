//! `ceiling`: the raw librdkafka consumer the benchmark compares against. It joins a fresh
//! group, reads every message from the beginning and stops after `--messages`; it decodes,
//! validates and commits nothing. Its fetch settings are the worker's (`fetch_tuning`).
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Raw librdkafka consumer: the throughput ceiling")]
struct Args {
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    #[arg(long)]
    messages: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bootstrap = eventconsumer_bench::bootstrap()?;
    let consumer = eventconsumer_bench::kafka::raw_consumer(&bootstrap, &args.group, &args.topic)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut count = 0u64;
    let mut bytes = 0u64;
    while count < args.messages {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {count} messages after {}s",
            args.timeout_secs
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                count += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            None => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{{\"messages\":{count},\"bytes\":{bytes},\"seconds\":{secs:.3}}}");
    Ok(())
}
