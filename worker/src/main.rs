//! `eventconsumer-worker`: parses the command line and hands over to [`worker::app`].
#![forbid(unsafe_code)]

use clap::Parser;
use eventconsumer_worker as worker;

fn main() -> std::process::ExitCode {
    let cli = worker::cli::Cli::parse();
    worker::app::main(cli)
}
