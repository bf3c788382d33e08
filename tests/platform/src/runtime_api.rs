//! A minimal Lambda Runtime API: the three calls a function makes (next invocation, response, error)
//! and the init error, as Lambda serves them to a `bootstrap` in a fresh sandbox. It hands out one
//! invocation and reports what the function answered.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// What the Runtime API received for the invocation it handed out.
#[derive(Debug)]
pub enum Outcome {
    Response(Value),
    /// An invocation error, or an init error (as `{"init": body}`).
    Error(Value),
}

#[derive(Clone)]
struct RuntimeApi {
    event: Arc<Mutex<Option<Value>>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

/// Serves one invocation of `event` on a free local port; later `next` calls wait forever, as a frozen
/// sandbox would. Returns the `host:port` for `AWS_LAMBDA_RUNTIME_API` and the outcomes.
pub async fn serve_one(event: Value) -> (String, mpsc::UnboundedReceiver<Outcome>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let api = RuntimeApi { event: Arc::new(Mutex::new(Some(event))), outcomes: tx };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, rx)
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    let Some(event) = api.event.lock().unwrap().take() else {
        return std::future::pending().await;
    };
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(900);
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", "8476a536-e9f4-11e8-9739-2dfe598c3fcd".parse().unwrap());
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
