//! `handler`: the Azure Functions custom handler executable. Listens before building anything slow:
//! the host waits for `GET /` to answer; the services are built on the first invocation (`lazy.rs`).

use azs_app::config::AppConfig;
use azs_app::telemetry::{self, Target};
use azs_azure_functions::{PORT_VAR, app, lazy::LazyServices};
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    azs_process::runtime()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let port: u16 = std::env::var(PORT_VAR)
        .map_err(|_| anyhow::anyhow!("{PORT_VAR} is not set: the Functions host sets it"))?
        .parse()
        .map_err(|_| anyhow::anyhow!("{PORT_VAR} is not a port number"))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;

    let config = AppConfig::from_env();
    // A bad setting is reported on every invocation (see LazyServices::new); logging uses the defaults.
    let log_config = config.clone().or_else(|_| AppConfig::from_lookup(|_| None))?;
    telemetry::init(&log_config, Target::Function);
    tracing::info!(port, "custom handler listening");

    axum::serve(listener, app(Arc::new(LazyServices::new(config)))).await?;
    Ok(())
}
