//! `samework`: the same-work ceiling. One thread, a raw librdkafka `BaseConsumer`, and per
//! message exactly what the worker's order handler does with `--no-output` — its own
//! decode (into the same borrowed `OrderPlaced<Text>`) and validation functions
//! (`eventconsumer_worker::events`) — and nothing else: no
//! tasks, no channels, no offset stores, no commits, no metrics. The worker's delivery
//! machinery is judged against this line. It joins a fresh group, reads from the beginning
//! and exits after `--messages`, printing its counts.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use clap::Parser;
use eventconsumer_worker::events::{self, OrderPlaced, Text};
use rdkafka::Message;

#[derive(Debug, Parser)]
#[command(about = "Raw librdkafka plus the worker's decode and validation: the same-work ceiling")]
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
    let (mut valid, mut invalid) = (0u64, 0u64);
    while valid + invalid < args.messages {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} messages after {}s",
            valid + invalid,
            args.timeout_secs
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let ok = m
                    .payload()
                    .ok_or_else(|| events::EventError::Decode("no value".to_owned()))
                    .and_then(events::decode::<OrderPlaced<Text<'_>>>)
                    .and_then(|o| o.validate());
                match ok {
                    Ok(_) => valid += 1,
                    Err(_) => invalid += 1,
                }
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            None => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{{\"valid\":{valid},\"invalid\":{invalid},\"seconds\":{secs:.3}}}");
    anyhow::ensure!(invalid == 0, "{invalid} orders were refused");
    Ok(())
}
