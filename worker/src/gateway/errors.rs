//! Why the gateway fails to start, to publish, or to accept a request, and how each error
//! becomes an HTTP answer: the client's mistakes are `400` naming the field, Kafka's are `503`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rdkafka::error::KafkaError;
use serde::Serialize;

use crate::events::EventError;
use crate::kafka::KafkaConfigError;

use super::args::RETRY_AFTER_SECS;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A setting that cannot work: the process should exit with the usage exit code.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the Kafka producer: {0}")]
    Producer(#[source] KafkaError),
}

/// A gateway setting that cannot work, named after its flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Kafka(#[from] KafkaConfigError),
    #[error("{0}")]
    LogLevel(String),
}

/// Why Kafka did not take a record. Every case but `TooLarge` answers 503: Kafka's state, not
/// the client's fault, and a retry may succeed. `TooLarge` answers 413: retrying the same body
/// can never succeed (the body limit is above what the producer or broker accepts).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Kafka did not acknowledge the record on {topic} within {}", humantime::format_duration(*.after))]
    Timeout { topic: String, after: Duration },
    #[error("the producer queue for {topic} stayed full for {}", humantime::format_duration(*.after))]
    QueueFull { topic: String, after: Duration },
    #[error("the record for {topic} is larger than Kafka accepts: {source}")]
    TooLarge {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka refused the record on {topic}: {source}")]
    Rejected {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

impl PublishError {
    /// A short, stable name for the failures metric.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::Timeout { .. } => "timeout",
            PublishError::QueueFull { .. } => "queue_full",
            PublishError::TooLarge { .. } => "too_large",
            PublishError::Rejected { .. } => "rejected",
        }
    }
}

/// Why [`Gateway::checkout`] or [`Gateway::event`] did not publish.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request breaks a rule; names the field. The client's mistake.
    #[error(transparent)]
    Invalid(#[from] EventError),
    /// Serialising our own event failed: a bug on our side, never the client's.
    #[error("cannot encode the event: {0}")]
    Encode(#[source] serde_json::Error),
    /// Kafka did not take the record in time.
    #[error(transparent)]
    Unavailable(#[from] PublishError),
}

/// Everything a request can be answered with instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Content-Type must be application/json")]
    ContentType,
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("the body does not match the expected shape: {0}")]
    Shape(String),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error("no route {path}: the gateway serves POST /checkout and POST /events")]
    NotFound { path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// A stable code: `unsupported_content_type`, `body_too_large`, `unreadable_body`,
    /// `invalid_json`, `invalid_field`, `record_too_large`, `kafka_unavailable`, `not_found`,
    /// `method_not_allowed` or `internal`.
    pub error: String,
    /// The offending field's path, e.g. `items[0].quantity`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A human-readable explanation.
    pub message: String,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            ApiError::ContentType => (StatusCode::BAD_REQUEST, "unsupported_content_type", None),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None),
            ApiError::Body(_) => (StatusCode::BAD_REQUEST, "unreadable_body", None),
            ApiError::Syntax(_) | ApiError::Shape(_) => {
                (StatusCode::BAD_REQUEST, "invalid_json", None)
            }
            ApiError::Field { field, .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_field",
                Some(field.clone()),
            ),
            ApiError::Submit(SubmitError::Invalid(EventError::Invalid { field, .. })) => (
                StatusCode::BAD_REQUEST,
                "invalid_field",
                Some(field.clone()),
            ),
            ApiError::Submit(SubmitError::Invalid(EventError::Decode(_))) => {
                (StatusCode::BAD_REQUEST, "invalid_json", None)
            }
            ApiError::Submit(SubmitError::Unavailable(PublishError::TooLarge { .. })) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "record_too_large", None)
            }
            ApiError::Submit(SubmitError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable", None)
            }
            ApiError::Submit(SubmitError::Encode(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed on our side");
        }
        let body = ErrorBody {
            error: code.to_owned(),
            field,
            message: self.to_string(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}
