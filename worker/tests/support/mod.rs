//! The gateway of the gateway tests: served in-process on an ephemeral loopback port.
// Each test file compiles this module on its own and uses only some of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use eventconsumer_worker::gateway::{Gateway, GatewaySettings, producer_config};
use eventconsumer_worker::http::{self, Readiness};
use eventconsumer_worker::kafka::KafkaArgs;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// A gateway serving on an ephemeral loopback port, stopped when dropped.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    http: reqwest::Client,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Running {
    pub async fn start(bootstrap: &str, settings: GatewaySettings) -> Running {
        let producer = producer_config(
            KafkaArgs::plaintext(bootstrap)
                .client_config()
                .expect("plaintext settings"),
            settings.publish_timeout,
        )
        .create()
        .expect("a producer");
        let mut registry = Registry::default();
        let gateway = Gateway::new(producer, settings, &mut registry);
        let readiness = Arc::new(Readiness::default());
        let shutdown = CancellationToken::new();
        gateway.watch_readiness(readiness.clone(), shutdown.clone());
        let (addr, _server) = http::serve(
            "127.0.0.1:0".parse().expect("an address"),
            gateway.app(Arc::new(registry), readiness),
            shutdown.clone(),
        )
        .await
        .expect("the gateway listens");
        Running {
            addr,
            shutdown,
            http: reqwest::Client::new(),
        }
    }

    pub async fn post(&self, path: &str, content_type: &str, body: String) -> reqwest::Response {
        self.http
            .post(format!("http://{}{path}", self.addr))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("the gateway answers")
    }

    pub async fn post_json(&self, path: &str, body: &str) -> reqwest::Response {
        self.post(path, "application/json", body.to_owned()).await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .expect("the gateway answers");
        (
            response.status().as_u16(),
            response.text().await.expect("a text body"),
        )
    }
}
