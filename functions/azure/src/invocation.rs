//! The custom handler protocol's answer to a non-forwarded invocation (`{Outputs, Logs, ReturnValue}`),
//! and the span every request is handled in, named by the host's invocation id.

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::Instant;
use tracing::{Instrument, info, info_span};

/// The header the host names each invocation with.
pub const INVOCATION_ID: &str = "x-azure-functions-invocationid";

/// What the host expects back from a function invoked with `{Data, Metadata}`. `Logs` go to the
/// invocation's log in Application Insights; a non-2xx status fails the invocation.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationResponse {
    pub outputs: Map<String, Value>,
    pub logs: Vec<String>,
    pub return_value: Value,
}

impl InvocationResponse {
    pub fn into_response_with(self, status: StatusCode) -> Response {
        (status, Json(self)).into_response()
    }
}

/// Runs the request inside an `invocation` span so that every log line names the invocation, and
/// logs its arrival and answer. Bodies, queries and headers are never logged (they carry credentials).
pub async fn in_invocation_span(request: Request, next: Next) -> Response {
    let invocation_id =
        request.headers().get(INVOCATION_ID).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    let span = info_span!("invocation", invocation_id = %invocation_id);
    async move {
        let started = Instant::now();
        let (method, path) = (request.method().clone(), request.uri().path().to_owned());
        info!(%method, %path, "invocation received");
        let response = next.run(request).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        info!(%method, %path, status = response.status().as_u16(), elapsed_ms, "invocation answered");
        response
    }
    .instrument(span)
    .await
}
