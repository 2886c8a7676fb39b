//! `eventconsumer-worker`: parses the command line and hands over to [`worker::app`].
#![forbid(unsafe_code)]

use clap::Parser;
use eventconsumer_worker as worker;

/// mimalloc instead of glibc malloc: each message costs a dozen small allocations (the copy
/// out of librdkafka, the decoded order's strings), and callgrind put glibc's malloc and free
/// at ~17 % of the worker's instructions at full speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // A panic anywhere ends the process. A partition task that unwound alone would leave its
    // messages unfinished while the loop carried on, and offsets stored later could then pass
    // them; a crashed process instead restarts from its last committed offsets, losing nothing.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
    let cli = worker::cli::Cli::parse();
    worker::app::main(cli)
}
