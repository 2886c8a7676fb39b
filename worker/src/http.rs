//! The small HTTP server every worker process runs beside its real work:
//! `/healthz` (the process is alive), `/readyz` (it can do its job: connected and, for a
//! consumer, assigned partitions) and `/metrics` (Prometheus text format).
//!
//! The consumer and the gateway both mount [`router`]; the gateway merges its own routes
//! into it. Readiness is a flag the owner flips, so the probe never does I/O itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use eventconsumer_contract::{HEALTHZ_PATH, METRICS_PATH, READYZ_PATH};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Whether the process is ready to serve; starts not ready.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct HealthState {
    registry: Arc<Registry>,
    readiness: Arc<Readiness>,
}

/// `/healthz`, `/readyz` and `/metrics` over `registry` and `readiness`.
pub fn router(registry: Arc<Registry>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route(HEALTHZ_PATH, get(|| async { "ok" }))
        .route(READYZ_PATH, get(readyz))
        .route(METRICS_PATH, get(metrics))
        .with_state(HealthState {
            registry,
            readiness,
        })
}

async fn readyz(State(state): State<HealthState>) -> impl IntoResponse {
    if state.readiness.get() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(state): State<HealthState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Binds `addr` (failing fast with the address in the error) and serves `app` until
/// `shutdown` is cancelled. Returns the bound address, useful when `addr` has port 0.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok((bound, handle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
        let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn readyz_follows_the_flag_and_metrics_are_exposed() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("things", "Things seen", counter.clone());
        counter.inc();
        let readiness = Arc::new(Readiness::default());
        let shutdown = CancellationToken::new();
        let (addr, handle) = serve(
            "127.0.0.1:0".parse().unwrap(),
            router(Arc::new(registry), readiness.clone()),
            shutdown.clone(),
        )
        .await
        .unwrap();

        assert_eq!(get_text(addr, HEALTHZ_PATH).await, (200, "ok".into()));
        assert_eq!(get_text(addr, READYZ_PATH).await.0, 503);
        readiness.set(true);
        assert_eq!(get_text(addr, READYZ_PATH).await, (200, "ok".into()));
        let (status, body) = get_text(addr, METRICS_PATH).await;
        assert_eq!(status, 200);
        assert!(body.contains("things_total 1"), "{body}");

        shutdown.cancel();
        handle.await.unwrap();
    }
}
