//! The HTTP sink client of the `order` handler: one `POST` per message with
//! `Idempotency-Key: <order id>`, over a pool of kept-alive HTTP/1.1 connections (http or
//! https, Mozilla's roots).
//!
//! A redirect is never followed: it is the sink's misconfiguration, answered with its status
//! (non-retryable, so dead-lettered with it); following one would turn the POST into a GET
//! on 301/302. The proxy variables (`HTTP_PROXY`, `HTTPS_PROXY`) are not used: the sink is
//! called directly.
//!
//! Built on hyper-util's pooled client rather than reqwest (which wraps it): reqwest parses
//! the URL again on every call for its redirect layer even when redirects are off, and
//! wraps each call in its retry and redirect futures; in the ordering benchmark (512 calls
//! open to a 20 ms sink) the worker's CPU per message went from 65 to 31 µs without them.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{HandlerError, sink_status_retryable};

/// Longest sink answer body kept for the error message (and so the DLQ header).
const SINK_BODY_LIMIT: usize = 512;
/// Most of a successful answer's body read (and dropped) so its connection goes back to the
/// pool; a longer one closes the connection instead of holding the call up.
const SUCCESS_BODY_DRAIN: usize = 64 * 1024;

/// The sink client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SinkSetupError {
    #[error("cannot set up TLS for the sink: {0}")]
    Tls(#[from] rustls::Error),
    /// Config accepted it as a URL; http's request-target parser is stricter on oddities.
    #[error("the sink URL {url} is not a valid request target: {reason}")]
    Url { url: String, reason: String },
}

pub struct Sink {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: http::Uri,
    /// The whole call, answer body included.
    timeout: Duration,
}

impl Sink {
    pub fn new(url: &url::Url, attempt_timeout: Duration) -> Result<Sink, SinkSetupError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        let uri = url
            .as_str()
            .parse::<http::Uri>()
            .map_err(|e| SinkSetupError::Url {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Sink {
            client: Client::builder(TokioExecutor::new()).build(https),
            uri,
            timeout: attempt_timeout,
        })
    }

    pub async fn post(&self, order_id: &str, body: Vec<u8>) -> Result<(), HandlerError> {
        let request = http::Request::post(self.uri.clone())
            .header("Idempotency-Key", order_id)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HandlerError::SinkTransport(format!("cannot build the request: {e}")))?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HandlerError::SinkTransport(causes(&e)))?;
            let status = response.status().as_u16();
            if sink_status_retryable(status).is_none() {
                read_up_to(response.into_body(), SUCCESS_BODY_DRAIN).await;
                return Ok(());
            }
            let kept = read_up_to(response.into_body(), SINK_BODY_LIMIT).await;
            let mut text = String::from_utf8_lossy(&kept).into_owned();
            if text.len() > SINK_BODY_LIMIT {
                let mut cut = SINK_BODY_LIMIT;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            Err(HandlerError::SinkStatus { status, body: text })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(HandlerError::SinkTransport(format!(
                "timed out after {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// Reads `body` until its end or until `limit` bytes were read; a broken body ends it.
async fn read_up_to(mut body: hyper::body::Incoming, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    while kept.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    kept.extend_from_slice(&data);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    kept
}

/// An error with its causes, outermost first: hyper-util's own text ("client error
/// (Connect)") says little without the io error under it.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn serve(app: axum::Router) -> url::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        url::Url::parse(&format!("http://{addr}/hook")).unwrap()
    }

    #[tokio::test]
    async fn a_sink_that_redirects_is_answered_with_its_status_and_not_followed() {
        let followed = Arc::new(AtomicUsize::new(0));
        let hits = followed.clone();
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(|| async {
                    (
                        axum::http::StatusCode::FOUND,
                        [(axum::http::header::LOCATION, "/elsewhere")],
                    )
                }),
            )
            .route(
                "/elsewhere",
                axum::routing::any(move || {
                    hits.fetch_add(1, Ordering::SeqCst);
                    async { axum::http::StatusCode::OK }
                }),
            );
        let sink = Sink::new(&serve(app).await, Duration::from_secs(5)).unwrap();
        let err = sink.post("o-1", b"{}".to_vec()).await.unwrap_err();
        assert!(
            matches!(err, HandlerError::SinkStatus { status: 302, .. }),
            "{err}"
        );
        assert_eq!(err.class(), "sink-rejected");
        assert_eq!(
            followed.load(Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
    }

    #[tokio::test]
    async fn each_call_posts_the_body_with_its_idempotency_key_over_kept_alive_connections() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let log = log.clone();
                    async move {
                        let key = headers
                            .get("idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let kind = headers
                            .get(axum::http::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        log.lock().unwrap().push((key, kind, body.to_vec()));
                        // A body on success: the client reads it so the connection is reused.
                        "accepted"
                    }
                },
            ),
        );
        let sink = Sink::new(&serve(app).await, Duration::from_secs(5)).unwrap();
        for i in 0..3 {
            sink.post(&format!("o-{i}"), format!("{{\"n\":{i}}}").into_bytes())
                .await
                .unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            (0..3)
                .map(|i| (
                    format!("o-{i}"),
                    "application/json".to_owned(),
                    format!("{{\"n\":{i}}}").into_bytes()
                ))
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_failing_sink_is_answered_with_its_status_and_the_start_of_its_body() {
        let long = format!("{}é{}", "x".repeat(SINK_BODY_LIMIT - 1), "y".repeat(4096));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let long = long.clone();
                async move { (axum::http::StatusCode::SERVICE_UNAVAILABLE, long) }
            }),
        );
        let sink = Sink::new(&serve(app).await, Duration::from_secs(5)).unwrap();
        let err = sink.post("o-1", b"{}".to_vec()).await.unwrap_err();
        let HandlerError::SinkStatus { status, body } = &err else {
            panic!("{err}")
        };
        assert_eq!(*status, 503);
        // Cut at a character boundary at most SINK_BODY_LIMIT bytes in.
        assert_eq!(body, &"x".repeat(SINK_BODY_LIMIT - 1));
        assert_eq!(err.class(), "sink-unavailable");
    }

    #[tokio::test]
    async fn an_unreachable_or_slow_sink_says_why() {
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
        let err = Sink::new(&url, Duration::from_secs(5))
            .unwrap()
            .post("o-1", b"{}".to_vec())
            .await
            .unwrap_err();
        assert_eq!(err.class(), "sink-unreachable");
        assert!(err.to_string().contains("refused"), "{err}");

        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
        let sink = Sink::new(&serve(app).await, Duration::from_millis(200)).unwrap();
        let err = sink.post("o-1", b"{}".to_vec()).await.unwrap_err();
        assert_eq!(err.class(), "sink-unreachable");
        assert!(err.to_string().contains("timed out after 200 ms"), "{err}");
    }

    #[test]
    fn an_https_sink_gets_a_tls_client() {
        let url = url::Url::parse("https://sink.example.com/hook").unwrap();
        assert!(Sink::new(&url, Duration::from_secs(1)).is_ok());
    }
}
