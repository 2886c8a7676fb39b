//! The HTTP routes and the JSON extractor whose rejections are [`ApiError`]s.

use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::events::{CheckoutRequest, UserEvent};

use super::metrics::RequestLabels;
use super::{ApiError, Gateway};

pub const CHECKOUT_PATH: &str = "/checkout";
pub const EVENTS_PATH: &str = "/events";

/// Counts every answer by matched route (not raw path, to bound label cardinality).
pub(super) async fn count_requests(
    State(gateway): State<Gateway>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    gateway
        .inner
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CheckoutAccepted {
    pub order_id: String,
}

pub(super) async fn checkout(
    State(gateway): State<Gateway>,
    JsonBody(request): JsonBody<CheckoutRequest>,
) -> Result<(StatusCode, axum::Json<CheckoutAccepted>), ApiError> {
    let order = gateway.checkout(request).await?;
    tracing::info!(order_id = %order.order_id, customer_id = %order.customer_id, "order placed");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(CheckoutAccepted {
            order_id: order.order_id,
        }),
    ))
}

pub(super) async fn events(
    State(gateway): State<Gateway>,
    JsonBody(event): JsonBody<UserEvent>,
) -> Result<StatusCode, ApiError> {
    gateway.event(event).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every path without a route: `404` with a JSON reason, like every other error.
pub(super) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound {
        path: uri.path().to_owned(),
    }
}

/// A route asked with a method it does not serve: `405` with a JSON reason (axum adds the
/// `Allow` header).
pub(super) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// A JSON body extractor whose rejections are [`ApiError`]s: `400` naming the field for
/// anything the client got wrong, `413` above the body limit.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Gateway> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, gateway: &Gateway) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::ContentType);
        }
        let bytes = Bytes::from_request(request, gateway)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge {
                        limit: gateway.inner.settings.body_limit,
                    }
                } else {
                    ApiError::Body(rejection.body_text())
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// `application/json` or any `application/*+json`, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(mime) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
    else {
        return false;
    };
    mime.type_() == mime::APPLICATION
        && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
}

/// Decodes `bytes` as `T`, turning serde's errors into ones that name the field.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also read a struct from an array (`[…]`) and blame `[0]`; our bodies
    // are objects, so say that instead.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => {}
        Some(_) => return Err(ApiError::Shape("the body must be a JSON object".to_owned())),
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(json_error)?;
    deserializer
        .end()
        .map_err(|e| ApiError::Syntax(e.to_string()))?;
    Ok(value)
}

fn json_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let message = inner.to_string();
    if !inner.is_data() {
        return ApiError::Syntax(message);
    }
    // serde reports a missing field at its parent's path and puts the field's name in
    // the message: join them into the field's full path. (An unknown field's path
    // already ends with its name.)
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned);
    let (field, message) = match (path.as_str(), missing) {
        // The same wording as the validation errors of `events`.
        (".", Some(name)) => (name, "is required".to_owned()),
        (parent, Some(name)) => (format!("{parent}.{name}"), "is required".to_owned()),
        (".", None) => return ApiError::Shape(message),
        (path, None) => (path.to_owned(), message),
    };
    ApiError::Field { field, message }
}
