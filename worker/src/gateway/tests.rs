use super::*;
use crate::kafka::KafkaArgs;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use clap::Parser;
use rdkafka::mocking::MockCluster;
use tower::ServiceExt;

/// A loopback port nothing listens on: the "broker down" of these tests.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}

fn gateway_at(bootstrap: &str, publish_timeout: Duration) -> (Gateway, Arc<Registry>) {
    let settings = GatewaySettings {
        publish_timeout,
        body_limit: 1024,
        ..GatewaySettings::default()
    };
    let producer = producer_config(
        KafkaArgs::plaintext(bootstrap).client_config().unwrap(),
        publish_timeout,
    )
    .create()
    .unwrap();
    let mut registry = Registry::default();
    let gateway = Gateway::new(producer, settings, &mut registry);
    (gateway, Arc::new(registry))
}

fn app_of(gateway: &Gateway, registry: Arc<Registry>) -> Router {
    gateway.app(registry, Arc::new(Readiness::default()))
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        request = request.header(header::CONTENT_TYPE, ct);
    }
    let response = app
        .clone()
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, bytes)
}

async fn post_json(app: &Router, path: &str, body: &str) -> (StatusCode, HeaderMap, Bytes) {
    call(app, "POST", path, Some("application/json"), body.to_owned()).await
}

fn error_body(bytes: &Bytes) -> ErrorBody {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "not an error body ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

const GOOD_ORDER: &str = r#"{"customer_id":"c-1","items":[{"product_id":"SKU-001","quantity":2,"price":29.99}],"total":59.98}"#;
const GOOD_EVENT: &str =
    r#"{"type":"page_view","user_id":"u-1","session_id":"s-1","payload":{"path":"/home"}}"#;

#[tokio::test]
async fn a_valid_checkout_is_published_and_answered_202_with_its_order_id() {
    let mock = MockCluster::new(1).unwrap();
    let (gateway, registry) = gateway_at(&mock.bootstrap_servers(), Duration::from_secs(5));
    let app = app_of(&gateway, registry.clone());

    let (status, _, body) = post_json(&app, CHECKOUT_PATH, GOOD_ORDER).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let accepted: CheckoutAccepted = serde_json::from_slice(&body).unwrap();
    assert!(
        uuid::Uuid::parse_str(&accepted.order_id).is_ok(),
        "{accepted:?}"
    );

    let (_, _, metrics) = call(&app, "GET", "/metrics", None, Body::empty()).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(r#"gateway_http_requests_total{route="/checkout",status="202"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gateway_publish_duration_seconds_count{topic="order.placed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_valid_event_is_published_and_answered_204() {
    let mock = MockCluster::new(1).unwrap();
    let (gateway, registry) = gateway_at(&mock.bootstrap_servers(), Duration::from_secs(5));
    let app = app_of(&gateway, registry);
    let (status, _, body) = post_json(&app, EVENTS_PATH, GOOD_EVENT).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(body.is_empty());
}

#[tokio::test]
async fn the_gateway_assigns_the_order_id_and_time_and_stamps_events() {
    let mock = MockCluster::new(1).unwrap();
    let (gateway, _) = gateway_at(&mock.bootstrap_servers(), Duration::from_secs(5));
    let request: CheckoutRequest = serde_json::from_str(GOOD_ORDER).unwrap();
    let order = gateway.checkout(request).await.unwrap();
    assert_eq!(order.validate(), Ok(5998));
    assert!(chrono::DateTime::parse_from_rfc3339(&order.created_at).is_ok());
    let mut event: UserEvent = serde_json::from_str(GOOD_EVENT).unwrap();
    event.timestamp = "1999-01-01T00:00:00Z".into();
    let event = gateway.event(event).await.unwrap();
    assert!(event.timestamp.starts_with("20"), "{}", event.timestamp);
    assert!(event.timestamp.ends_with('Z'), "{}", event.timestamp);
}

#[tokio::test]
async fn each_client_mistake_is_a_400_whose_body_names_the_field() {
    // Validation happens before publishing, so no broker is needed.
    let (gateway, registry) = gateway_at(&closed_port(), Duration::from_millis(200));
    let app = app_of(&gateway, registry);
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        (CHECKOUT_PATH, "{not json", "invalid_json", None),
        (CHECKOUT_PATH, "", "invalid_json", None),
        (
            CHECKOUT_PATH,
            &format!("{GOOD_ORDER} trailing"),
            "invalid_json",
            None,
        ),
        (CHECKOUT_PATH, "[1,2]", "invalid_json", None),
        (
            CHECKOUT_PATH,
            r#"{"items":[{"product_id":"p","quantity":1,"price":1}],"total":1}"#,
            "invalid_field",
            Some("customer_id"),
        ),
        (
            CHECKOUT_PATH,
            r#"{"customer_id":"c","items":[{"quantity":1,"price":1}],"total":1}"#,
            "invalid_field",
            Some("items[0].product_id"),
        ),
        (
            CHECKOUT_PATH,
            r#"{"customer_id":"c","items":[{"product_id":"p","quantity":"two","price":1}],"total":2}"#,
            "invalid_field",
            Some("items[0].quantity"),
        ),
        (
            CHECKOUT_PATH,
            r#"{"customer_id":"c","items":[],"total":0,"coupon":"x"}"#,
            "invalid_field",
            Some("coupon"),
        ),
        (
            CHECKOUT_PATH,
            r#"{"customer_id":"c","items":[{"product_id":"p","quantity":2,"price":29.99}],"total":59.97}"#,
            "invalid_field",
            Some("total"),
        ),
        (
            CHECKOUT_PATH,
            r#"{"customer_id":" ","items":[{"product_id":"p","quantity":1,"price":1}],"total":1}"#,
            "invalid_field",
            Some("customer_id"),
        ),
        (
            CHECKOUT_PATH,
            r#"{"customer_id":"c","items":[],"total":0}"#,
            "invalid_field",
            Some("items"),
        ),
        (
            EVENTS_PATH,
            r#"{"type":"page_view","user_id":"u","session_id":"s"}"#,
            "invalid_field",
            Some("payload.path"),
        ),
        (
            EVENTS_PATH,
            r#"{"type":"click","user_id":"u"}"#,
            "invalid_field",
            Some("session_id"),
        ),
        (
            EVENTS_PATH,
            r#"{"type":"click","user_id":"u","session_id":"s","payload":{"n":1}}"#,
            "invalid_field",
            Some("payload.n"),
        ),
    ];
    for (path, body, code, field) in cases {
        let (status, _, bytes) = post_json(&app, path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}");
        let error = error_body(&bytes);
        assert_eq!(error.error, *code, "{path} {body}: {error:?}");
        assert_eq!(error.field.as_deref(), *field, "{path} {body}: {error:?}");
        if let Some(field) = field {
            assert!(error.message.contains(field), "{path} {body}: {error:?}");
        }
    }
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_a_400() {
    let (gateway, registry) = gateway_at(&closed_port(), Duration::from_millis(200));
    let app = app_of(&gateway, registry);
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let (status, _, bytes) = call(
            &app,
            "POST",
            CHECKOUT_PATH,
            content_type,
            GOOD_ORDER.to_owned(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{content_type:?}");
        let error = error_body(&bytes);
        assert_eq!(error.error, "unsupported_content_type");
        assert!(error.message.contains("application/json"), "{error:?}");
    }
    // A charset parameter or a +json type is still JSON.
    for content_type in [
        "application/json; charset=utf-8",
        "application/vnd.order+json",
    ] {
        let (status, _, bytes) = call(
            &app,
            "POST",
            CHECKOUT_PATH,
            Some(content_type),
            "{".to_owned(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error_body(&bytes).error, "invalid_json", "{content_type}");
    }
}

#[tokio::test]
async fn a_body_above_the_limit_is_a_413() {
    let (gateway, registry) = gateway_at(&closed_port(), Duration::from_millis(200));
    let app = app_of(&gateway, registry);
    let padding = "x".repeat(2000);
    let body = format!(
        r#"{{"type":"click","user_id":"u","session_id":"s","payload":{{"pad":"{padding}"}}}}"#
    );
    let (status, _, bytes) = post_json(&app, EVENTS_PATH, &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let error = error_body(&bytes);
    assert_eq!(error.error, "body_too_large");
    assert!(error.message.contains("1024 bytes"), "{error:?}");

    // Without a Content-Length the limit still holds while streaming.
    let stream = futures::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 512]))),
    );
    let (status, _, _) = call(
        &app,
        "POST",
        EVENTS_PATH,
        Some("application/json"),
        Body::from_stream(stream),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_record_larger_than_kafka_accepts_is_a_413_not_a_503() {
    let settings = GatewaySettings {
        publish_timeout: Duration::from_millis(500),
        body_limit: 1024,
        ..GatewaySettings::default()
    };
    let mut config = producer_config(
        KafkaArgs::plaintext(closed_port()).client_config().unwrap(),
        settings.publish_timeout,
    );
    // librdkafka's smallest allowed record size, below the gateway's body limit.
    config.set("message.max.bytes", "1000");
    let mut registry = Registry::default();
    let gateway = Gateway::new(config.create().unwrap(), settings, &mut registry);
    let app = app_of(&gateway, Arc::new(registry));
    let padding = "x".repeat(900);
    let body = format!(
        r#"{{"type":"click","user_id":"u","session_id":"s","payload":{{"pad":"{padding}"}}}}"#
    );
    assert!(body.len() < 1024, "within the body limit");
    let (status, headers, bytes) = post_json(&app, EVENTS_PATH, &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        headers.get(header::RETRY_AFTER).is_none(),
        "no point retrying"
    );
    assert_eq!(error_body(&bytes).error, "record_too_large");
}

#[tokio::test]
async fn kafka_that_cannot_take_the_record_is_a_503_with_retry_after() {
    let timeout = Duration::from_millis(300);
    let (gateway, registry) = gateway_at(&closed_port(), timeout);
    let app = app_of(&gateway, registry);
    let started = Instant::now();
    let (status, headers, bytes) = post_json(&app, CHECKOUT_PATH, GOOD_ORDER).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "5");
    assert_eq!(error_body(&bytes).error, "kafka_unavailable");
    assert!(took >= timeout / 2 && took < timeout * 4, "took {took:?}");

    let (_, _, metrics) = call(&app, "GET", "/metrics", None, Body::empty()).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics
            .contains(r#"gateway_publish_failures_total{topic="order.placed",reason="timeout"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_get_a_404_and_405_with_a_json_reason() {
    let (gateway, registry) = gateway_at(&closed_port(), Duration::from_millis(200));
    let app = app_of(&gateway, registry);
    let (status, headers, bytes) = call(&app, "POST", "/nope", None, Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    let body = error_body(&bytes);
    assert_eq!(body.error, "not_found");
    assert!(body.message.contains("/nope"), "{}", body.message);
    let (status, headers, bytes) = call(&app, "GET", CHECKOUT_PATH, None, Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers.get(header::ALLOW).unwrap(), "POST");
    let body = error_body(&bytes);
    assert_eq!(body.error, "method_not_allowed");
    assert_eq!(body.message, "GET is not allowed on /checkout");
    let (status, _, _) = call(&app, "GET", "/healthz", None, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, metrics) = call(&app, "GET", "/metrics", None, Body::empty()).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(r#"gateway_http_requests_total{route="unmatched",status="404"} 1"#),
        "{metrics}"
    );
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    gateway: GatewayArgs,
}

#[test]
fn the_flags_default_to_the_seed_topics_and_refuse_nonsense() {
    let cli = Cli::try_parse_from(["gw"]).unwrap();
    let settings = cli.gateway.settings();
    assert_eq!(settings.orders_topic, "order.placed");
    assert_eq!(settings.events_topic, "user.events");
    assert_eq!(settings.body_limit, 64 * 1024);
    assert_eq!(settings.publish_timeout, Duration::from_secs(5));
    assert_eq!(cli.gateway.listen_addr.port(), 8080);

    let cli = Cli::try_parse_from(["gw", "--publish-timeout", "750ms"]).unwrap();
    assert_eq!(cli.gateway.publish_timeout, Duration::from_millis(750));
    let cli = Cli::try_parse_from(["gw", "--publish-timeout", "2"]).unwrap();
    assert_eq!(cli.gateway.publish_timeout, Duration::from_secs(2));
    for bad in [
        &["gw", "--publish-timeout", "0s"][..],
        &["gw", "--publish-timeout", "5ms"],
        &["gw", "--publish-timeout", "1h"],
        &["gw", "--body-limit-bytes", "0"],
        &["gw", "--orders-topic", ""],
    ] {
        let err = Cli::try_parse_from(bad).err().unwrap();
        assert_eq!(err.exit_code(), 2, "{bad:?}");
    }
}

#[test]
fn the_producer_waits_for_all_replicas_and_is_idempotent() {
    let config = producer_config(
        KafkaArgs::plaintext("b:9092").client_config().unwrap(),
        Duration::from_millis(1500),
    );
    assert_eq!(config.get("acks"), Some("all"));
    assert_eq!(config.get("enable.idempotence"), Some("true"));
    assert_eq!(config.get("message.timeout.ms"), Some("1500"));
}
