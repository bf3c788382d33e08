//! The Azure Functions custom handler: one HTTP server on 127.0.0.1:`FUNCTIONS_CUSTOMHANDLER_PORT`
//! serving both functions of the Function App (`../app/`).
//!
//! | request from the host                  | what it is                                   |
//! |----------------------------------------|----------------------------------------------|
//! | `GET /`                                | readiness probe: answered at once            |
//! | `POST /collect-usage` `{Data,Metadata}`| the timer (`timer.rs`)                       |
//! | `POST /stamp-work` `{Data,Metadata}`   | one stamp's queue message (`queue.rs`)       |
//! | `/api/...` (any method)                | a forwarded webhook request, served as is    |
//! | `POST /register-stamp` `{Data,...}`    | a webhook request the host did not forward (`http_binding.rs`) |

pub mod http_binding;
pub mod invocation;
pub mod lazy;
pub mod queue;
pub mod timer;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lazy::LazyServices;
use std::sync::Arc;
use tower::ServiceExt as _;
use tracing::error;

pub fn app(services: Arc<LazyServices>) -> Router {
    Router::new()
        .route("/", get(|| async { StatusCode::OK }))
        .route("/collect-usage", post(timer::collect_usage))
        .route("/stamp-work", post(queue::stamp_work))
        .route("/register-stamp", post(http_binding::register_stamp))
        .fallback(forwarded)
        .layer(axum::middleware::from_fn(invocation::in_invocation_span))
        .with_state(services)
}

/// A request the host forwarded unchanged (path under `/api`); the webhook app answers it, including
/// its 404 for paths it does not serve.
async fn forwarded(State(services): State<Arc<LazyServices>>, request: Request) -> Response {
    match services.get().await {
        Ok(ready) => {
            let Ok(response) = ready.webhook.clone().oneshot(request).await;
            response
        }
        Err(e) => {
            error!(reason = %format!("cannot start: {e:#}"), "invocation failed");
            let body = serde_json::json!({ "error": "the service is unavailable; see the function's log" });
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}
