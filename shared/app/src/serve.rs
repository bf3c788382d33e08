//! `azs-usage serve`: the webhook app on a local listener. Off the platforms there is no platform auth
//! in front of the app, so it requires a bearer token read from the secret store
//! (`AZS_USAGE_API_TOKEN_SECRET`) and refuses to start without one, unless the operator explicitly
//! asks for a development server bound to loopback.
//!
//! Transport rules, decided before anything binds:
//! - a non-loopback address needs TLS (`--tls-cert` and `--tls-key`): the bearer token and stamp
//!   credentials travel in every request, and a plain-HTTP listener on a network gives both away;
//! - `--insecure-loopback` (no token) also checks the `Host` header of every request: a web page the
//!   operator visits could otherwise point a DNS name of its own at 127.0.0.1 (DNS rebinding) and
//!   drive the unauthenticated API from the operator's browser.
//!
//! Work is bounded ([`ServeLimits`]): a request's header must arrive in time (the TLS handshake
//! included), an idle keep-alive connection is closed after the same time, a body must arrive in
//! time (408 otherwise), and only so many connections are served at once.

mod connections;

use crate::webhook::{ApiAuth, Problem, router};
use crate::wiring::Services;
use anyhow::{Context, Result, bail};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::HOST;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::future::Future;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How `serve` listens, as the operator asked.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Development only: no token, loopback only, `Host` checked.
    pub insecure_loopback: bool,
    pub tls: Option<TlsFiles>,
    pub limits: ServeLimits,
}

/// What one client may cost the server: bounds on waiting and on connections held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// A request's line and headers must arrive within this (after the TLS handshake, which gets the
    /// same time). hyper also starts it when an answer is finished, so it is the idle keep-alive
    /// timeout as well: a connection that sends no next request within it is closed.
    pub header_read: Duration,
    /// A request's body must arrive within this, counted from the end of its header; 408 otherwise.
    pub body_read: Duration,
    /// Connections served at once. Beyond it new connections are not accepted: they wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// PEM files of the server's certificate chain (leaf first) and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub certificate_chain: PathBuf,
    pub private_key: PathBuf,
}

/// The caller a change made through `serve --insecure-loopback` (no token) is recorded under.
pub const LOOPBACK_CALLER: &str = "unauthenticated-loopback";

/// How the local server authenticates callers, decided before it binds.
pub async fn local_auth(services: &Services, listen: SocketAddr, insecure_loopback: bool) -> Result<ApiAuth> {
    if let Some(token) =
        crate::webhook::configured_api_token(&services.config, services.secrets.as_ref()).await?
    {
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
        "no API token: store one in the secret store and set {} to its name \
         (or pass --insecure-loopback with a 127.0.0.1 address for development)",
        crate::config::API_TOKEN_SECRET
    )
}

/// Serves until Ctrl-C.
pub async fn serve(services: &Services, options: ServeOptions) -> Result<()> {
    serve_until(services, options, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

/// Serves until `shutdown` completes (tests stop the server this way).
pub async fn serve_until(
    services: &Services,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listen = options.listen;
    if options.tls.is_none() && !listen.ip().is_loopback() {
        bail!(
            "refusing to serve on {listen} without TLS: pass --tls-cert and --tls-key (PEM files), or \
             listen on a loopback address such as 127.0.0.1"
        );
    }
    let tls = options.tls.as_ref().map(server_tls).transpose()?;
    let auth = local_auth(services, listen, options.insecure_loopback).await?;
    let anonymous = matches!(auth, ApiAuth::PlatformOnly);
    let mut app = router(services.administration(), auth);
    if anonymous {
        // No platform in front and no token: the audit trail says so rather than name a platform.
        let caller = crate::webhook::caller::PlatformCaller(azs_core::audit::Actor::new(LOOPBACK_CALLER));
        app = app.layer(axum::Extension(caller));
    }
    if options.insecure_loopback {
        app = app.layer(from_fn_with_state(Arc::new(listen), loopback_host));
    }
    let app = app.layer(from_fn_with_state(options.limits.body_read, body_deadline));
    let listener = std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    listener.set_nonblocking(true).context("setting the listener non-blocking")?;
    let listener = tokio::net::TcpListener::from_std(listener).context("listening")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("serving the registration webhook on {scheme}://{listen}/stamps");
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    connections::serve(listener, app, tls, options.limits, shutdown).await;
    Ok(())
}

/// Ends a request body that has not fully arrived `limit` after its header with an error of kind
/// `TimedOut` (the webhook answers 408 to it). A total, not a per-chunk, limit: a client trickling a
/// byte at a time would otherwise hold its connection for as long as it likes.
async fn body_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let deadline = tokio::time::Instant::now() + limit;
    let (parts, body) = req.into_parts();
    let timed = futures::stream::unfold(Some(body.into_data_stream()), move |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(chunks))),
            Ok(None) => None,
            Err(_) => {
                let late =
                    std::io::Error::new(ErrorKind::TimedOut, "the request body did not arrive in time");
                Some((Err(axum::Error::new(late)), None))
            }
        }
    });
    next.run(Request::from_parts(parts, Body::from_stream(timed))).await
}

/// The rustls configuration of `files`; a bad file is named in the error, its content never.
fn server_tls(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain_path = &files.certificate_chain;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(chain_path)
        .with_context(|| format!("--tls-cert {}: cannot be read", chain_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--tls-cert {}: not PEM certificates", chain_path.display()))?;
    if chain.is_empty() {
        bail!("--tls-cert {}: holds no certificate", chain_path.display());
    }
    let key_path = &files.private_key;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("--tls-key {}: no PEM private key could be read", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("--tls-cert and --tls-key do not make a usable server certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Admits a request only when its `Host` names a loopback address or `localhost` (DNS-rebinding
/// defence for the unauthenticated development server).
async fn loopback_host(State(listen): State<Arc<SocketAddr>>, req: Request, next: Next) -> Response {
    let host = req.headers().get(HOST).and_then(|h| h.to_str().ok()).map(str::to_owned);
    if host.as_deref().is_some_and(|h| is_loopback_host(h, listen.port())) {
        return next.run(req).await;
    }
    Problem::plain(
        StatusCode::FORBIDDEN,
        "The Host header must be localhost or a loopback address with this server's port \
         (the development server does not answer other names).",
    )
    .into_response()
}

/// `localhost`, `127.0.0.1`, `[::1]` and other loopback addresses, with or without this port.
pub(crate) fn is_loopback_host(host: &str, port: u16) -> bool {
    let (name, given_port) = match host.rsplit_once(':') {
        Some((name, p)) if !name.ends_with(':') && (name.starts_with('[') || !name.contains(':')) => {
            (name, Some(p))
        }
        _ => (host, None),
    };
    if given_port.is_some_and(|p| p.parse::<u16>().ok() != Some(port)) {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn only_loopback_names_with_this_port_pass_the_host_check() {
        for ok in ["localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:8080", "[::1]", "LOCALHOST:8080"] {
            assert!(is_loopback_host(ok, 8080), "{ok}");
        }
        for refused in [
            "evil.example:8080",
            "127.0.0.1.evil.example:8080",
            "localhost:9090",
            "10.0.0.1:8080",
            "localhost.evil.example",
            "",
        ] {
            assert!(!is_loopback_host(refused, 8080), "{refused}");
        }
    }
}
