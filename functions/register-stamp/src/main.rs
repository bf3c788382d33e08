//! `register-stamp` (Lambda `bootstrap`): the webhook app behind a Function URL. The URL's `AWS_IAM`
//! auth runs before the app; when `AZS_USAGE_API_TOKEN_SECRET` is set the app also requires that bearer
//! token (defence in depth), and a configured token that cannot be read stops the cold start.

use axum::extract::Request;
use axum::middleware::{self, Next};
use azs_app::config::AppConfig;
use azs_app::telemetry::{self, Target};
use azs_app::webhook::{behind_platform, router};
use azs_app::wiring::Services;
use lambda_http::{Error, RequestExt};
use tracing::{Instrument, info_span};

fn main() -> Result<(), Error> {
    azs_process::runtime()?.block_on(serve())
}

async fn serve() -> Result<(), Error> {
    let config = AppConfig::from_env()?;
    telemetry::init(&config, Target::Function);
    // Built once per sandbox (the cold start) and reused by every request it serves.
    let services = Services::build(&config).await?;
    let auth = behind_platform(&services.config, services.secrets.as_ref()).await?;
    let app = router(services.administration(), auth).layer(middleware::from_fn(in_request_span));
    lambda_http::run(app).await
}

/// Every log line of a request carries the Lambda request id.
async fn in_request_span(request: Request, next: Next) -> axum::response::Response {
    let request_id = request.lambda_context_ref().map(|c| c.request_id.clone()).unwrap_or_default();
    next.run(request).instrument(info_span!("invocation", request_id = %request_id)).await
}
