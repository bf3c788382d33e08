//! A minimal Lambda Runtime API: the three calls a function makes (next invocation, response, error)
//! and the init error, as Lambda serves them to a `bootstrap` in a sandbox. It hands out the
//! invocations it is given, one at a time, and reports what the function answered to each.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, mpsc};

/// What the Runtime API received for an invocation it handed out.
#[derive(Debug)]
pub enum Outcome {
    Response(Value),
    /// An invocation error, or an init error (as `{"init": body}`).
    Error(Value),
}

#[derive(Clone)]
struct RuntimeApi {
    events: Arc<Mutex<mpsc::UnboundedReceiver<Value>>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    /// Each invocation's deadline is this long after it was handed out (the function's timeout).
    timeout: Duration,
    invocations: Arc<AtomicU64>,
}

/// A sandbox's Runtime API on a free local port: `next` hands out the events sent on the returned
/// sender, in order, each with a deadline `timeout` after it was handed out; with none waiting it
/// waits, as a sandbox between invocations does (for ever once the sender is dropped). Returns the
/// `host:port` for `AWS_LAMBDA_RUNTIME_API`, the sender and the outcomes.
pub async fn serve(
    timeout: Duration,
) -> (String, mpsc::UnboundedSender<Value>, mpsc::UnboundedReceiver<Outcome>) {
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        events: Arc::new(Mutex::new(events_rx)),
        outcomes: outcomes_tx,
        timeout,
        invocations: Arc::new(AtomicU64::new(0)),
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, events_tx, outcomes_rx)
}

/// Serves one invocation of `event` with Lambda's longest timeout (15 minutes); later `next` calls
/// wait forever, as a frozen sandbox would.
pub async fn serve_one(event: Value) -> (String, mpsc::UnboundedReceiver<Outcome>) {
    let (address, events, outcomes) = serve(Duration::from_secs(900)).await;
    events.send(event).unwrap();
    (address, outcomes)
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    let Some(event) = api.events.lock().await.recv().await else {
        return std::future::pending().await;
    };
    let number = api.invocations.fetch_add(1, Ordering::Relaxed);
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + api.timeout;
    let mut headers = HeaderMap::new();
    let request_id = format!("8476a536-e9f4-11e8-9739-{number:012x}");
    headers.insert("lambda-runtime-aws-request-id", request_id.parse().unwrap());
    headers.insert("lambda-runtime-deadline-ms", deadline.as_millis().to_string().parse().unwrap());
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:azs-usage".parse().unwrap(),
    );
    headers.insert("lambda-runtime-trace-id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700".parse().unwrap());
    (headers, event.to_string())
}

fn json_or_text(body: String) -> Value {
    serde_json::from_str(&body).unwrap_or(Value::String(body))
}

async fn response(State(api): State<RuntimeApi>, body: String) {
    let _ = api.outcomes.send(Outcome::Response(json_or_text(body)));
}

async fn error(State(api): State<RuntimeApi>, body: String) {
    let _ = api.outcomes.send(Outcome::Error(json_or_text(body)));
}

async fn init_error(State(api): State<RuntimeApi>, body: String) {
    let _ = api.outcomes.send(Outcome::Error(json!({ "init": body })));
}
