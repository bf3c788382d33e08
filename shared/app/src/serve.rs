//! `azs-usage serve`: the webhook app on a local listener. Off the platforms there is no platform auth
//! in front of the app, so it requires a bearer token read from the secret store
//! (`AZS_USAGE_API_TOKEN_SECRET`) and refuses to start without one, unless the operator explicitly
//! asks for a development server bound to loopback.

use crate::config::API_TOKEN_SECRET;
use crate::webhook::{ApiAuth, router};
use crate::wiring::Services;
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;

/// How the local server authenticates callers, decided before it binds.
pub async fn local_auth(services: &Services, listen: SocketAddr, insecure_loopback: bool) -> Result<ApiAuth> {
    if let Some(name) = &services.config.api_token_secret {
        let token = services
            .secrets
            .get_secret(name)
            .await
            .with_context(|| format!("reading the API token secret {name:?}"))?
            .with_context(|| {
                format!("{API_TOKEN_SECRET} names secret {name:?}, which is not in the secret store")
            })?;
        if token.expose().len() < 16 {
            bail!("the API token in secret {name:?} must be at least 16 characters");
        }
        return Ok(ApiAuth::Bearer(token));
    }
    if insecure_loopback && listen.ip().is_loopback() {
        tracing::warn!(%listen, "serving WITHOUT authentication (development, loopback only)");
        return Ok(ApiAuth::PlatformOnly);
    }
    if insecure_loopback {
        bail!("--insecure-loopback is refused for {listen}: it is only allowed on a loopback address");
    }
    bail!(
        "no API token: store one in the secret store and set {API_TOKEN_SECRET} to its name \
         (or pass --insecure-loopback with a 127.0.0.1 address for development)"
    )
}

pub async fn serve(services: &Services, listen: SocketAddr, insecure_loopback: bool) -> Result<()> {
    let auth = local_auth(services, listen, insecure_loopback).await?;
    let app = router(services.registrar.clone(), auth);
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    eprintln!("serving the registration webhook on http://{listen}/stamps");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    Ok(())
}
