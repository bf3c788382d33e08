//! One `tracing` event per request: method, route template, status, request id, duration. Never a
//! body, a header or the raw path: they carry credentials and whatever a caller chose to send.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::http::header::HeaderName;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id tying a request's log event to its answer (`x-request-id`, and `requestId` in problems).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A caller's `x-request-id` is kept when it is a plain token (so ids can be correlated across
/// gateways); anything else is replaced, so no caller text reaches the logs.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

pub async fn request(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or("(no route)", MatchedPath::as_str).to_owned();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = res.status().as_u16();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if res.status().is_server_error() {
        tracing::warn!(%method, route, status, request_id = id, elapsed_ms, "webhook request");
    } else {
        tracing::info!(%method, route, status, request_id = id, elapsed_ms, "webhook request");
    }
    res
}
