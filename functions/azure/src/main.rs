//! `handler`: the Azure Functions custom handler executable. Listens before building anything slow:
//! the host waits for `GET /` to answer; the services are built on the first invocation (`lazy.rs`).

use azs_app::config::{AppConfig, custom_handler_port, easy_auth_enabled};
use azs_app::telemetry::{self, Target};
use azs_azure_functions::{app, lazy::LazyServices};
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    azs_process::runtime()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let port = custom_handler_port(|name| std::env::var(name).ok())?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;

    let config = AppConfig::from_env();
    // A bad setting is reported on every invocation (see LazyServices::new); logging uses the defaults.
    let log_config = config.clone().or_else(|_| AppConfig::from_lookup(|_| None))?;
    telemetry::init(&log_config, Target::Function);
    tracing::info!(port, "custom handler listening");

    let easy_auth = easy_auth_enabled(|name| std::env::var(name).ok());
    axum::serve(listener, app(Arc::new(LazyServices::new(config, easy_auth)))).await?;
    Ok(())
}
