//! `POST /register-stamp`: an HTTP request the host did not forward but wrapped in its `{Data,
//! Metadata}` envelope (a host without `enableForwardingHttpRequest`, or bindings other than exactly
//! `httpTrigger` + `http`). It is unwrapped into an ordinary request, dispatched into the same webhook
//! app as forwarded requests, and the app's response is wrapped the way the host expects:
//! `{"Outputs": {"res": {statusCode, status, body, headers}}, "Logs": [...], "ReturnValue": null}`.
//!
//! Lenient where hosts differ: `Query` is an object (new hosts) or JSON text (old ones), header values
//! are arrays (or plain strings), `Body` is text, absent when empty, or already-parsed JSON.

use crate::invocation::InvocationResponse;
use crate::lazy::{LazyServices, ROUTE_PREFIX};
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tower::ServiceExt as _;
use tracing::{error, warn};

/// The name of the function's `http` out binding in `register-stamp/function.json`.
pub const OUTPUT_BINDING: &str = "res";
/// The name of its `httpTrigger` binding.
pub const TRIGGER_BINDING: &str = "req";
/// Webhook responses are small JSON documents; anything larger is cut off as an error.
const RESPONSE_LIMIT: usize = 4 * 1024 * 1024;

pub async fn register_stamp(State(services): State<Arc<LazyServices>>, body: Bytes) -> Response {
    let request = match unwrap_request(&body) {
        Ok(request) => request,
        Err(reason) => {
            warn!(%reason, "HTTP invocation payload not understood");
            return answer(error_output(StatusCode::BAD_REQUEST, &reason), vec![format!("-> 400: {reason}")]);
        }
    };
    let line = format!("{} {}", request.method(), request.uri().path());
    let ready = match services.get().await {
        Ok(ready) => ready,
        Err(e) => {
            let reason = format!("cannot start: {e:#}");
            error!(%reason, "invocation failed");
            // The caller sees a generic answer; the reason goes to the invocation's log only.
            let output = error_output(
                StatusCode::SERVICE_UNAVAILABLE,
                "the service is unavailable; see the function's log",
            );
            return answer(output, vec![format!("{line} -> 503: {reason}")]);
        }
    };
    let Ok(response) = ready.webhook.clone().oneshot(request).await;
    let status = response.status();
    match output_of(response).await {
        Ok(output) => answer(output, vec![format!("{line} -> {}", status.as_u16())]),
        Err(e) => {
            error!(error = %e, "the webhook's response could not be read");
            let output = error_output(StatusCode::INTERNAL_SERVER_ERROR, "the response could not be read");
            answer(output, vec![format!("{line} -> 500: response unreadable")])
        }
    }
}

/// Turns the host's `Data.req` into a request for the webhook app.
pub fn unwrap_request(body: &[u8]) -> Result<Request, String> {
    let payload: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let req = payload
        .pointer(&format!("/Data/{TRIGGER_BINDING}"))
        .ok_or_else(|| format!("no Data.{TRIGGER_BINDING} in the payload"))?;
    let text = |key: &str| req.get(key).and_then(Value::as_str);
    let method: Method =
        text("Method").unwrap_or("GET").parse().map_err(|_| "Method is not an HTTP method")?;
    let mut builder = Request::builder().method(method).uri(path_and_query(text("Url"), req.get("Query"))?);
    for (name, values) in req.get("Headers").and_then(Value::as_object).into_iter().flatten() {
        let Ok(name) = HeaderName::try_from(name.as_str()) else { continue };
        for value in string_or_strings(values) {
            if let Ok(value) = HeaderValue::try_from(value) {
                builder = builder.header(name.clone(), value);
            }
        }
    }
    let body = match req.get("Body") {
        None | Some(Value::Null) => Body::empty(),
        Some(Value::String(text)) => Body::from(text.clone()),
        Some(parsed) => Body::from(parsed.to_string()),
    };
    builder.body(body).map_err(|e| format!("the request cannot be rebuilt: {e}"))
}

/// The original path (always under the route prefix) and query. The query comes from `Url`, or from
/// `Query` when the URL has none.
fn path_and_query(url: Option<&str>, query: Option<&Value>) -> Result<String, String> {
    let url = url.ok_or("no Url in the request")?;
    let (path, url_query) = match url::Url::parse(url) {
        Ok(parsed) => (parsed.path().to_owned(), parsed.query().map(str::to_owned)),
        // A bare path.
        Err(_) => match url.split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (url.to_owned(), None),
        },
    };
    if !path.starts_with(ROUTE_PREFIX) {
        return Err(format!("the Url's path is not under {ROUTE_PREFIX}"));
    }
    let query = url_query.filter(|q| !q.is_empty()).or_else(|| query_from(query?));
    Ok(match query {
        Some(query) => format!("{path}?{query}"),
        None => path,
    })
}

fn query_from(query: &Value) -> Option<String> {
    let parsed;
    let map = match query {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text).ok()?;
            parsed.as_object()?
        }
        other => other.as_object()?,
    };
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in map {
        for value in string_or_strings(value) {
            out.append_pair(key, value);
        }
    }
    Some(out.finish()).filter(|q| !q.is_empty())
}

fn string_or_strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The webhook's response as the `res` output binding: all four of statusCode, status, body and
/// headers, the status as text.
async fn output_of(response: Response) -> Result<Value, axum::Error> {
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, RESPONSE_LIMIT).await?;
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<&str> = parts.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        headers.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    Ok(output(parts.status, headers, String::from_utf8_lossy(&body).into_owned()))
}

fn output(status: StatusCode, headers: Map<String, Value>, body: String) -> Value {
    let status = status.as_u16().to_string();
    json!({ "statusCode": status, "status": status, "body": body, "headers": headers })
}

/// An answer made here rather than by the webhook app.
fn error_output(status: StatusCode, message: &str) -> Value {
    let headers = Map::from_iter([("content-type".to_owned(), Value::from("application/json"))]);
    output(status, headers, json!({ "error": message }).to_string())
}

/// The invocation itself succeeded whatever the HTTP status: the host delivers `res` to the caller.
fn answer(res: Value, logs: Vec<String>) -> Response {
    let outputs = Map::from_iter([(OUTPUT_BINDING.to_owned(), res)]);
    InvocationResponse { outputs, logs, return_value: Value::Null }.into_response_with(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    use azs_testkit::fixtures::bytes as fixture;

    async fn body_text(request: Request) -> String {
        String::from_utf8(to_bytes(request.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_new_hosts_request_becomes_the_original_request() {
        let request = unwrap_request(&fixture("azure-functions-http-request.json")).unwrap();

        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "/api/stamps?verify=true");
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(body_text(request).await, r#"{"name":"stamp-eu-1"}"#);
    }

    #[tokio::test]
    async fn the_old_hosts_request_with_query_as_text_and_no_body_is_read() {
        let request = unwrap_request(&fixture("azure-functions-http-request-old-host.json")).unwrap();

        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/api/stamps");
        assert_eq!(request.headers()["accept"], "application/json");
        assert_eq!(body_text(request).await, "");
    }

    #[test]
    fn the_query_comes_from_the_query_field_when_the_url_has_none() {
        let body = br#"{"Data":{"req":{"Url":"http://localhost/api/stamps","Method":"POST",
            "Query":"{\"verify\":\"false\"}","Headers":{"X-One":"plain"},"Body":{"name":"x"}}}}"#;
        let request = unwrap_request(body).unwrap();

        assert_eq!(request.uri(), "/api/stamps?verify=false");
        assert_eq!(request.headers()["x-one"], "plain");
    }

    #[test]
    fn a_payload_without_a_request_or_outside_the_route_prefix_is_refused() {
        assert!(unwrap_request(br#"{"Data":{}}"#).is_err());
        assert!(
            unwrap_request(br#"{"Data":{"req":{"Url":"http://h/admin/host/status","Method":"GET"}}}"#)
                .is_err()
        );
    }
}
