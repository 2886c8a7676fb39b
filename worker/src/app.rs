//! Process-level wiring of the subcommands: configuration errors to exit code 2, the
//! runtime, logging, the health/metrics server and the signals that stop the consumer.

use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, RunArgs};
use crate::config::Settings;

/// Exit code of a configuration the worker refuses (the same as clap's usage errors).
pub const EXIT_CONFIG: u8 = 2;
/// Exit code of a run that failed after starting.
pub const EXIT_FAILURE: u8 = 1;

/// Runs the parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => run_consumer(&args),
        Command::Gateway(args) => run_gateway(*args),
        Command::Demo(args) => run_demo(&args),
    }
}

/// The multi-threaded runtime every subcommand runs on, or the exit code to give up with.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_FAILURE)
        })
}

fn config_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_CONFIG)
}

fn run_consumer(args: &RunArgs) -> ExitCode {
    let settings = match Settings::from_args(args) {
        Ok(s) => s,
        Err(e) => return config_error(e),
    };
    if let Err(e) = crate::telemetry::init(&settings.log_level) {
        return config_error(e);
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(consume(settings)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FAILURE),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "worker failed");
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run_demo(args: &crate::cli::DemoArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(crate::demo::run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FAILURE),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run_gateway(args: crate::gateway::GatewayArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(crate::gateway::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let config = matches!(
                e.downcast_ref::<crate::gateway::GatewayError>(),
                Some(crate::gateway::GatewayError::Config(_))
            );
            eprintln!("error: {e:#}");
            ExitCode::from(if config { EXIT_CONFIG } else { EXIT_FAILURE })
        }
    }
}

/// Cancels `stop` on the first SIGTERM or SIGINT.
fn stop_on_signals(stop: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stop requested");
        stop.cancel();
    });
    Ok(())
}

/// The consumer with its HTTP server; `Ok(true)` when it stopped cleanly.
async fn consume(settings: Settings) -> anyhow::Result<bool> {
    let (registry, metrics) = crate::metrics::registry_with(&settings.handler.label());
    let readiness = Arc::new(crate::http::Readiness::default());
    let stop = CancellationToken::new();
    stop_on_signals(stop.clone())?;
    let http_stop = CancellationToken::new();
    let (addr, server) = crate::http::serve(
        settings.http_addr,
        crate::http::router(registry, readiness.clone()),
        http_stop.clone(),
    )
    .await?;
    tracing::info!(%addr, "health and metrics server listening");
    let mut backoff = REWIND_BACKOFF_MIN;
    let summary = loop {
        let started = std::time::Instant::now();
        let summary =
            crate::delivery::run(&settings, metrics.clone(), readiness.clone(), stop.clone()).await;
        match &summary {
            // exactlyOnce: the transaction was aborted; start over from the committed offsets.
            Ok(s) if s.rewind && !stop.is_cancelled() => {
                if started.elapsed() > REWIND_BACKOFF_RESET {
                    backoff = REWIND_BACKOFF_MIN;
                }
                tracing::warn!(
                    restart_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    "starting over from the last committed offsets"
                );
                tokio::select! {
                    _ = stop.cancelled() => break summary,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(REWIND_BACKOFF_MAX);
            }
            _ => break summary,
        }
    };
    http_stop.cancel();
    let _ = server.await;
    Ok(summary?.clean)
}

/// `exactlyOnce`: the wait before the loop starts over after an aborted transaction, doubling
/// while it keeps happening (a missing topic, a refused ACL) up to the maximum, and back to
/// the minimum after a run that lasted the reset time.
const REWIND_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_secs(1);
const REWIND_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);
const REWIND_BACKOFF_RESET: std::time::Duration = std::time::Duration::from_secs(60);
