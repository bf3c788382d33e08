//! The process's services, built on first use rather than at start: the Functions host polls `GET /`
//! and gives up after 60 s (30 s on some hosts), while opening the database and the secret store can
//! take longer than that on a cold instance. A failed build is not remembered: the invocation that hit
//! it fails with the reason, and the next one tries again.

use axum::Router;
use azs_app::config::{AppConfig, ConfigError};
use azs_app::webhook::{behind_platform, router_with_prefix};
use azs_app::wiring::Services;
use tokio::sync::OnceCell;

/// The host forwards HTTP requests under its route prefix (`extensions.http.routePrefix`).
pub const ROUTE_PREFIX: &str = "/api";

/// What an invocation needs, once built.
pub struct Ready {
    pub services: Services,
    /// The webhook app under [`ROUTE_PREFIX`]; the Function key is checked by the host before us, and
    /// the API token (when `AZS_USAGE_API_TOKEN_SECRET` is set) by the app.
    pub webhook: Router,
}

pub struct LazyServices {
    config: Result<AppConfig, ConfigError>,
    /// Whether App Service Authentication is on: only then is the principal it forwards the caller's
    /// identity (see `azs_app::webhook::caller`).
    easy_auth: bool,
    ready: OnceCell<Ready>,
}

impl LazyServices {
    /// `config` may be an error: it is reported on every invocation instead of stopping the process,
    /// so that the reason shows in the invocation's log rather than as a host that cannot start us.
    pub fn new(config: Result<AppConfig, ConfigError>, easy_auth: bool) -> Self {
        Self { config, easy_auth, ready: OnceCell::new() }
    }

    /// The built services, building them now if no earlier invocation did. Concurrent first calls
    /// wait for one build.
    pub async fn get(&self) -> anyhow::Result<&Ready> {
        self.ready
            .get_or_try_init(|| async {
                let config = self.config.as_ref().map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
                let services = Services::build(config).await?;
                // A configured token that cannot be read fails the invocation (and the next one tries
                // again): never fall back to serving without it.
                let auth = behind_platform(&services.config, services.secrets.as_ref()).await?;
                let mut webhook = router_with_prefix(ROUTE_PREFIX, services.administration(), auth);
                if self.easy_auth {
                    webhook = webhook.layer(axum::middleware::from_fn(easy_auth_caller));
                }
                Ok(Ready { services, webhook })
            })
            .await
    }
}

/// The principal App Service Authentication forwarded, as the request's caller. Installed only when
/// Easy Auth is on: it strips these headers from what clients send, so they are the platform's.
async fn easy_auth_caller(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(caller) = azs_app::webhook::caller::easy_auth(request.headers()) {
        request.extensions_mut().insert(caller);
    }
    next.run(request).await
}
