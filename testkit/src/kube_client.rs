//! Kubernetes helpers, behind the `kube` feature.

use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client for the local stack's API server, from the kubeconfig at `$KUBECONFIG`.
///
/// # Panics
/// When `$KUBECONFIG` is not set or its file cannot be read, saying how to start the stack.
pub async fn kube_client() -> kube::Client {
    let path = match std::env::var("KUBECONFIG") {
        Ok(p) if !p.trim().is_empty() => p,
        _ => panic!(
            "KUBECONFIG is not set: the local stack is not running. {}",
            crate::START_THE_STACK
        ),
    };
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the kubeconfig at {path} ($KUBECONFIG): {e}. {}",
            crate::START_THE_STACK
        )
    });
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("the kubeconfig at {path} is not usable: {e}"));
    kube::Client::try_from(config)
        .unwrap_or_else(|e| panic!("cannot build a Kubernetes client from {path}: {e}"))
}
