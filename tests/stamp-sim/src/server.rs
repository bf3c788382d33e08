//! The HTTPS side of a stamp: its shared state, its routes, the fault pipeline in front of them,
//! and the accept loop (TLS via rustls/ring, HTTP/1.1 via hyper).
//!
//! Each stamp listens on its own `127.0.0.1` port with its own leaf certificate signed by the
//! simulator's CA. A [`Fault::ConnectionReset`](crate::Fault) makes the request's service call
//! fail, on which hyper closes the connection without writing a response.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::auth::{TokenStore, aad_token, adfs_token};
use crate::certs::RegisteredCertificate;
use crate::config::StampSpec;
use crate::data::StampData;
use crate::discovery::{aad_openid_configuration, adfs_openid_configuration, metadata_endpoints};
use crate::errors::{SERVICE_UNAVAILABLE_MESSAGE, arm_error};
use crate::faults::{FaultAction, FaultQueue, RequestKind, StatCounters, bump};
use crate::paging::TokenSealer;
use crate::usage::admin_collection;

/// Everything one stamp's handlers share.
pub(crate) struct StampState {
    pub index: usize,
    pub spec: StampSpec,
    /// `https://127.0.0.1:PORT`
    pub base_url: String,
    pub audience: String,
    pub page_size: usize,
    pub data: Arc<StampData>,
    pub certificate: Option<RegisteredCertificate>,
    pub sealer: TokenSealer,
    pub tokens: Mutex<TokenStore>,
    pub faults: Mutex<FaultQueue>,
    /// Tenant subscriptions deleted from the stamp's list (lower case); their usage is still served
    /// when asked for by `subscriberId`, as the usage of a deleted subscription stays reportable.
    pub deleted_subscriptions: Mutex<std::collections::HashSet<String>>,
    pub stats: StatCounters,
}

impl StampState {
    /// `https://127.0.0.1:PORT/aad/` or `https://127.0.0.1:PORT/adfs/` (with the trailing slash).
    pub fn login_endpoint(&self) -> String {
        let segment = if self.spec.auth.is_adfs() { "adfs" } else { "aad" };
        format!("{}/{segment}/", self.base_url)
    }

    /// The token authority: `{login}{tenantId}` for Azure AD, `{login}` without `/` for AD FS.
    pub fn authority(&self) -> String {
        if self.spec.auth.is_adfs() {
            format!("{}/adfs", self.base_url)
        } else {
            format!("{}/aad/{}", self.base_url, self.spec.tenant_id)
        }
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.authority())
    }

    pub fn issuer(&self) -> String {
        if self.spec.auth.is_adfs() { self.authority() } else { format!("{}/", self.authority()) }
    }
}

/// The routes of one stamp: the identity provider of its flavour and the admin ARM endpoints.
fn routes(state: Arc<StampState>) -> Router {
    let router = Router::new()
        .route("/metadata/endpoints", get(metadata_endpoints))
        .route("/subscriptions/{subscription}/providers/{namespace}/{resource_type}", get(admin_collection));
    let router = if state.spec.auth.is_adfs() {
        router
            .route("/adfs/.well-known/openid-configuration", get(adfs_openid_configuration))
            .route("/adfs/oauth2/token", post(adfs_token))
    } else {
        router
            .route("/aad/{tenant}/.well-known/openid-configuration", get(aad_openid_configuration))
            .route("/aad/{tenant}/oauth2/token", post(aad_token))
    };
    router.fallback(not_found).with_state(state)
}

async fn not_found(request: Request) -> Response {
    arm_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("No endpoint '{}' on this stamp.", request.uri().path()),
    )
}

/// The service error that makes hyper drop the connection without a response.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected ConnectionReset fault")
    }
}

impl std::error::Error for DropConnection {}

/// Counts the request, serves a queued fault if one matches, else routes it.
async fn pipeline(
    state: Arc<StampState>,
    router: Router,
    request: Request<Incoming>,
) -> Result<Response, DropConnection> {
    let kind = RequestKind::of_path(request.uri().path());
    state.stats.count_request(kind);
    let _in_flight = (kind == RequestKind::Usage).then(|| state.stats.usage_in_flight());
    let action = state.faults.lock().unwrap_or_else(|e| e.into_inner()).take_for_request(kind);
    if let Some(action) = action {
        bump(&state.stats.faults_served);
        match action {
            FaultAction::ConnectionReset => return Err(DropConnection),
            FaultAction::Status503 => {
                return Ok(arm_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    SERVICE_UNAVAILABLE_MESSAGE,
                ));
            }
            FaultAction::Throttle429 { retry_after_secs } => {
                let mut response = arm_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "The request is being throttled. Retry after the number of seconds in Retry-After.",
                );
                response.headers_mut().insert("retry-after", HeaderValue::from(retry_after_secs));
                return Ok(response);
            }
            FaultAction::GatewayTimeout => {
                return Ok(arm_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "GatewayTimeout",
                    "The gateway did not receive a response from 'Microsoft.Commerce.Admin' within the specified time period.",
                ));
            }
            FaultAction::Status(status) => {
                let status = StatusCode::from_u16(status).expect("a fault's status is a valid HTTP status");
                let code = status.canonical_reason().unwrap_or("Error").replace(' ', "");
                return Ok(arm_error(status, &code, "The injected fault's status."));
            }
            FaultAction::Slow(delay) => tokio::time::sleep(delay).await,
        }
    }
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if response.status().is_client_error() {
        bump(&state.stats.rejected);
    }
    Ok(response)
}

/// Accepts connections until the task is aborted; aborting it also aborts every connection
/// (they live in its `JoinSet`).
pub(crate) async fn serve(listener: TcpListener, tls: TlsAcceptor, state: Arc<StampState>) {
    let router = routes(state.clone());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (tls, state, router) = (tls.clone(), state.clone(), router.clone());
                connections.spawn(async move {
                    let Ok(stream) = tls.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |request| {
                        pipeline(state.clone(), router.clone(), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
