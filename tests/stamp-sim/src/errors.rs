//! Error responses in the two shapes a stamp uses: ARM's `{"error":{"code","message","details"}}`
//! (admin ARM endpoints) and OAuth's `{"error","error_description"}` (token endpoint).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error response that ends a handler early; boxed because responses are large and travel
/// through `Result`s.
pub(crate) struct Rejection(Box<Response>);

impl From<Response> for Rejection {
    fn from(response: Response) -> Self {
        Self(Box::new(response))
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        *self.0
    }
}

pub(crate) const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Message of the reference 503 fixture (`azs-usage-error-503.json`).
pub(crate) const SERVICE_UNAVAILABLE_MESSAGE: &str =
    "A retryable error occurred because the service is busy or the call is being throttled.";

#[derive(Serialize)]
struct ArmErrorBody<'a> {
    error: ArmError<'a>,
}

#[derive(Serialize)]
struct ArmError<'a> {
    code: &'a str,
    message: &'a str,
    details: &'a [()],
}

#[derive(Serialize)]
struct OAuthError<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// A JSON response with the given serialized body.
pub(crate) fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    response
}

/// A JSON response serializing `value` (field order as declared).
pub(crate) fn json_value(status: StatusCode, value: &impl Serialize) -> Response {
    json_response(status, serde_json::to_vec(value).unwrap_or_default())
}

/// ARM error, e.g. `arm_error(BAD_REQUEST, "NoApiVersion", "...")`.
pub(crate) fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_value(status, &ArmErrorBody { error: ArmError { code, message, details: &[] } })
}

/// ARM's 400 `InvalidProperty` naming the property.
pub(crate) fn invalid_property(property: &str, problem: &str) -> Response {
    arm_error(
        StatusCode::BAD_REQUEST,
        "InvalidProperty",
        &format!("The property '{property}' is invalid: {problem}"),
    )
}

/// OAuth token endpoint error.
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_value(status, &OAuthError { error, error_description: description })
}
