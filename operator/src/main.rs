//! The operator binary: parse flags, check the CRD, serve health and metrics, run.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use eventconsumer_operator::cli::Cli;
use eventconsumer_operator::config::Settings;
use eventconsumer_operator::context::Scope;
use eventconsumer_operator::http::{self, HttpState};
use eventconsumer_operator::leader::Timings;
use eventconsumer_operator::manager::{self, LeaderElection, Options};
use eventconsumer_operator::metrics::Metrics;
use eventconsumer_operator::reconcile::{CrdCheckError, check_crd_installed};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = init_logging(&cli.log_level) {
        eprintln!("invalid --log-level {:?}: {error}", cli.log_level);
        return ExitCode::from(2);
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) -> Result<(), tracing_subscriber::filter::ParseError> {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_env_filter(EnvFilter::try_new(filter)?)
        .init();
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let scope = match cli.namespace.clone() {
        Some(ns) => Scope::Namespace(ns),
        None => Scope::AllNamespaces,
    };
    match check_crd_installed(&client, &scope).await {
        Ok(()) => {}
        Err(error @ CrdCheckError::NotInstalled) => anyhow::bail!("{error}"),
        Err(error) => return Err(error.into()),
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let (metrics, registry) = Metrics::registered();
    let ready = Arc::new(AtomicBool::new(false));
    let http_state = HttpState {
        registry: Arc::new(registry),
        ready: ready.clone(),
    };
    let server = tokio::spawn(http::serve(cli.http_addr, http_state, shutdown.clone()));

    let identity = cli.identity.clone().unwrap_or_else(default_identity);
    let leader_election = cli.leader_elect.then(|| LeaderElection {
        lease_name: cli.lease_name.clone(),
        lease_namespace: cli
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned()),
        timings: Timings::default(),
    });
    let options = Options {
        scope,
        settings: Settings {
            worker_image: cli.worker_image.clone(),
            measure_interval: cli.measure_interval,
        },
        identity,
        leader_election,
        watch_secrets: cli.watch_secrets,
    };
    tracing::info!(?options, "starting");
    ready.store(true, Ordering::Relaxed);
    manager::run(client, options, metrics, shutdown.clone()).await;
    shutdown.cancel();
    server.await??;
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "eventconsumer-operator".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}
