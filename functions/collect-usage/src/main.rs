//! `collect-usage` (Lambda `bootstrap`): the timer job. Wiring only; see `lambda.rs` for the invocation.

use azs_app::config::AppConfig;
use azs_app::telemetry::{self, Target};
use azs_app::wiring::Services;
use azs_collect_usage::lambda::handle;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

fn main() -> Result<(), Error> {
    azs_process::runtime()?.block_on(serve())
}

async fn serve() -> Result<(), Error> {
    let config = AppConfig::from_env()?;
    telemetry::init(&config, Target::Function);
    // Built once per sandbox (the cold start) and reused by every invocation it serves.
    let services = Services::build(&config).await?;
    let services = &services;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| handle(services, event))).await
}
