//! `register-stamp` (Lambda `bootstrap`): the webhook app behind a Function URL. The URL's `AWS_IAM`
//! auth runs before the app and takes the caller's SigV4 signature in `Authorization`; when
//! `AZS_USAGE_API_TOKEN_SECRET` is set the app also requires its token (defence in depth), sent in
//! `X-Azs-Api-Token` next to the signature. A configured token that cannot be read stops the cold start.
//! The IAM caller Lambda verified is the identity the audit trail records for a change.

use axum::extract::Request;
use axum::middleware::{self, Next};
use azs_app::config::AppConfig;
use azs_app::telemetry::{self, Target};
use azs_app::webhook::caller::aws_iam;
use azs_app::webhook::{behind_platform, router};
use azs_app::wiring::Services;
use lambda_http::request::RequestContext;
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
    let app = router(services.administration(), auth)
        .layer(middleware::from_fn(iam_caller))
        .layer(middleware::from_fn(in_request_span));
    lambda_http::run(app).await
}

/// Every log line of a request carries the Lambda request id.
async fn in_request_span(request: Request, next: Next) -> axum::response::Response {
    let request_id = request.lambda_context_ref().map(|c| c.request_id.clone()).unwrap_or_default();
    next.run(request).instrument(info_span!("invocation", request_id = %request_id)).await
}

/// The IAM principal the Function URL authenticated (`requestContext.authorizer.iam`), written by the
/// Lambda service after it checked the SigV4 signature: no part of the request context comes from the
/// client. Absent with `NONE` auth; the app's token then names the caller.
async fn iam_caller(mut request: Request, next: Next) -> axum::response::Response {
    let caller = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| aws_iam(iam.user_arn.as_deref(), iam.caller_id.as_deref())),
        _ => None,
    };
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    next.run(request).await
}
