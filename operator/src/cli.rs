//! Command line and environment of the operator binary.

use std::net::SocketAddr;

use clap::Parser;

/// Default worker image: the worker release matching this operator. No registry host, so the
/// cluster's configured registry (or a mirror) decides where it comes from.
pub const DEFAULT_WORKER_IMAGE: &str = concat!("eventconsumer/worker:", env!("CARGO_PKG_VERSION"));

/// Runs the EventConsumer operator: reconciles EventConsumer resources into Deployments of
/// eventconsumer-worker pods.
#[derive(Debug, Clone, Parser)]
#[command(name = "eventconsumer-operator", version, about)]
pub struct Cli {
    /// Watch only this namespace. Unset: watch all namespaces (needs cluster-wide RBAC).
    #[arg(long, env = "OPERATOR_WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Worker image for EventConsumers that do not set spec.image.
    #[arg(long, env = "OPERATOR_WORKER_IMAGE", default_value = DEFAULT_WORKER_IMAGE)]
    pub worker_image: String,

    /// How often each EventConsumer's lag and dead letters are measured, such as `15s`. The
    /// CRD documents 15 s; shorter loads the brokers more.
    #[arg(
        long,
        env = "OPERATOR_MEASURE_INTERVAL",
        default_value = "15s",
        value_parser = humantime::parse_duration
    )]
    pub measure_interval: std::time::Duration,

    /// Address of the /healthz, /readyz and /metrics server.
    #[arg(long, env = "OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Log filter in tracing's syntax, such as `info` or `info,eventconsumer_operator=debug`.
    #[arg(long, env = "OPERATOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Run for the leadership on a Lease so that only one replica reconciles. Turn off only
    /// when exactly one replica can ever run.
    #[arg(
        long,
        env = "OPERATOR_LEADER_ELECT",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub leader_elect: bool,

    /// Watch the metadata of Secrets (needs list and watch on Secrets), so a Secret an
    /// EventConsumer names reconciles it when it changes and a rotation rolls its pods at once.
    /// `false`: only get Secrets; a rotation then reaches the pods at the next reconcile.
    #[arg(
        long,
        env = "OPERATOR_WATCH_SECRETS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub watch_secrets: bool,

    /// Name of the leader election Lease.
    #[arg(
        long,
        env = "OPERATOR_LEASE_NAME",
        default_value = "eventconsumer-operator"
    )]
    pub lease_name: String,

    /// Namespace of the leader election Lease. Unset: the operator's own namespace (in a pod),
    /// else the kubeconfig's default namespace.
    #[arg(long, env = "OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// This replica's identity in the Lease and in Events. Set it to the pod name through the
    /// downward API; unset: the hostname plus a random suffix.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_watch_everything_with_the_matching_worker_image() {
        let cli = Cli::try_parse_from(["eventconsumer-operator"]).unwrap();
        assert_eq!(cli.namespace, None);
        assert_eq!(
            cli.worker_image,
            format!("eventconsumer/worker:{}", env!("CARGO_PKG_VERSION"))
        );
        assert!(cli.leader_elect);
        assert_eq!(cli.measure_interval, std::time::Duration::from_secs(15));
        let cli = Cli::try_parse_from([
            "eventconsumer-operator",
            "--leader-elect",
            "false",
            "--namespace",
            "shop",
        ])
        .unwrap();
        assert!(!cli.leader_elect);
        assert_eq!(cli.namespace.as_deref(), Some("shop"));
    }
}
