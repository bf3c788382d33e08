//! The Azure Stack Hub client of azs-usage: the adapter behind [`azs_core::ports::UsageSource`].
//!
//! Following one connection through the files:
//! - [`credential`]: what an operator registers (secret, PEM or PFX certificate, CA bundle), checked;
//! - [`discovery`]: admin ARM metadata -> audience, login endpoint, AD FS or Azure AD, token endpoint;
//! - `token`: v1 client-credentials tokens (secret or signed assertion), cached per stamp;
//! - `session`: pulls a reported window page by page (all tenants or per subscriber);
//! - [`usage`]: the usage API's URLs and pages -> [`azs_core::UsageRow`];
//! - `http` and [`retry`]: one TLS client per stamp, timeouts, retries with backoff and jitter.
//!
//! [`AzureStackClient`] keeps one HTTP client and one token cache per stamp for the life of the
//! process (a Lambda container or the CLI run), so consecutive runs reuse both.

pub mod credential;
pub mod discovery;
pub mod hosts;
mod http;
mod pfx_cost;
pub mod retry;
mod session;
mod token;
pub mod usage;

pub use credential::{ClientCertificate, credential_from_registration, parse_ca_bundle, read_certificate};
pub use hosts::StampHosts;
pub use http::HttpSettings;
pub use retry::RetryPolicy;
pub use session::AzureStackSession;

use crate::credential::AssertionKey;
use crate::http::StampHttp;
use crate::session::configuration;
use crate::token::{ClientProof, TokenCache, TokenClient};
use async_trait::async_trait;
use azs_core::error::ValidationErrors;
use azs_core::ports::{DiscoveredEndpoints, PullError, PullLimits, StampSession, UsageSource};
use azs_core::{Credential, Stamp, StampConnection, StampId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{Instrument, info, info_span};

/// How the client talks to stamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    pub http: HttpSettings,
    /// A cached token is renewed this long before it expires (at most half its lifetime).
    pub token_renew_before: Duration,
    /// Bounds on one window's pull. `max_page_bytes` is the body cap every answer is read under
    /// (it replaces `http.max_body_bytes`).
    pub limits: PullLimits,
    /// Most `subscriberId` queries of one window in flight at once (per-subscriber stamps).
    pub subscriber_concurrency: usize,
}

/// `AZS_USAGE_SUBSCRIBER_CONCURRENCY`'s default.
pub const DEFAULT_SUBSCRIBER_CONCURRENCY: usize = 8;

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            token_renew_before: Duration::from_secs(300),
            limits: PullLimits::default(),
            subscriber_concurrency: DEFAULT_SUBSCRIBER_CONCURRENCY,
        }
    }
}

/// How long a connection test (`stamp test`, `POST /stamps/{id}/test`, registration with verify) may
/// take in all, retries included: a blackholed host must not hold the caller longer than this.
pub const TEST_BUDGET: Duration = Duration::from_secs(25);

/// Opens sessions with Azure Stack Hub stamps. Share one per process.
#[derive(Default)]
pub struct AzureStackClient {
    settings: ClientSettings,
    /// The operator's allow-list of stamp hosts; `None` allows any (https) host.
    allowed: Option<Arc<StampHosts>>,
    links: Mutex<HashMap<StampId, Arc<StampLink>>>,
}

/// What is kept per stamp between sessions: its HTTP client, its signing key, its token cache. Valid
/// while the stamp's connection and credential stay what they were when it was made.
struct StampLink {
    connection: StampConnection,
    credential: Credential,
    http: StampHttp,
    proof: Arc<ClientProof>,
    tokens: TokenCache,
}

impl AzureStackClient {
    pub fn new(settings: ClientSettings) -> Self {
        Self { settings, allowed: None, links: Mutex::default() }
    }

    /// Calls only hosts `allowed` admits (see [`hosts`]).
    pub fn with_allowed_hosts(mut self, allowed: Option<StampHosts>) -> Self {
        self.allowed = allowed.map(Arc::new);
        self
    }

    /// Discovery and a first token: a session ready to pull windows.
    pub async fn open(&self, stamp: &Stamp, credential: &Credential) -> Result<AzureStackSession, PullError> {
        let span = info_span!("connect", stamp_id = %stamp.id, stamp_name = %stamp.name);
        async {
            let link = self.link(stamp, credential)?;
            let mut retries = 0;
            let endpoints = discovery::discover(&link.http, &stamp.connection, &mut retries).await?;
            let tokens = TokenClient::new(
                link.http.clone(),
                stamp.connection.application_id.clone(),
                link.proof.clone(),
                link.tokens.clone(),
                self.settings.token_renew_before,
            );
            tokens.token(&endpoints, &mut retries).await?;
            info!(is_adfs = endpoints.is_adfs, proof = tokens.proof_kind(), retries, "connected");
            Ok(AzureStackSession {
                stamp_id: stamp.id.clone(),
                admin_arm_endpoint: stamp.connection.admin_arm_endpoint.trim_end_matches('/').to_owned(),
                admin_subscription_id: stamp.connection.admin_subscription_id.clone(),
                query_mode: stamp.query_mode,
                http: link.http.clone(),
                endpoints,
                tokens,
                limits: self.settings.limits,
                subscriber_concurrency: self.settings.subscriber_concurrency,
            })
        }
        .instrument(span)
        .await
    }

    /// The stamp's link, made anew when its connection or credential changed.
    fn link(&self, stamp: &Stamp, credential: &Credential) -> Result<Arc<StampLink>, PullError> {
        let mut links = self.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(link) = links.get(&stamp.id)
            && link.connection == stamp.connection
            && link.credential == *credential
        {
            return Ok(link.clone());
        }
        let proof = client_proof(&stamp.connection, credential)?;
        // Every answer is read under the page cap: reading stops there, the rest is never buffered.
        let http_settings = HttpSettings {
            max_body_bytes: usize::try_from(self.settings.limits.max_page_bytes).unwrap_or(usize::MAX),
            ..self.settings.http
        };
        let http = StampHttp::new(
            stamp.connection.ca_certificate_pem.as_deref(),
            http_settings,
            self.allowed.clone(),
        )?;
        let link = Arc::new(StampLink {
            connection: stamp.connection.clone(),
            credential: credential.clone(),
            http,
            proof: Arc::new(proof),
            tokens: TokenCache::default(),
        });
        links.insert(stamp.id.clone(), link.clone());
        Ok(link)
    }
}

#[async_trait]
impl UsageSource for AzureStackClient {
    async fn connect(
        &self,
        stamp: &Stamp,
        credential: &Credential,
    ) -> Result<Box<dyn StampSession>, PullError> {
        Ok(Box::new(self.open(stamp, credential).await?))
    }

    async fn discover(&self, stamp: &Stamp) -> Result<DiscoveredEndpoints, PullError> {
        let span = info_span!("discover", stamp_id = %stamp.id, stamp_name = %stamp.name);
        async {
            let http = StampHttp::new(
                stamp.connection.ca_certificate_pem.as_deref(),
                self.settings.http,
                self.allowed.clone(),
            )?;
            discovery::discover(&http, &stamp.connection, &mut 0).await
        }
        .instrument(span)
        .await
    }

    fn check_endpoints(&self, connection: &StampConnection) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let policy = self.allowed.clone().unwrap_or_default();
        let urls = [
            ("adminArmEndpoint", Some(connection.admin_arm_endpoint.as_str())),
            ("authorityEndpointUrl", connection.authority_endpoint_url.as_deref()),
        ];
        for (field, url) in urls {
            if let Some(url) = url.filter(|u| !u.trim().is_empty())
                && let Err(e) = policy.check(url)
            {
                errors.push(field, format!("must name an allowed stamp host: {e}"));
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// What a connection test that ran out of [`TEST_BUDGET`] reports.
pub fn out_of_time() -> PullError {
    PullError {
        stage: azs_core::ports::PullStage::Discovery,
        http_status: None,
        upstream_code: None,
        message: format!(
            "no complete answer within {} s (the host may be unreachable or not answering)",
            TEST_BUDGET.as_secs()
        ),
        transient: true,
    }
}

/// The client proof a credential gives, checked against the registered thumbprint.
fn client_proof(connection: &StampConnection, credential: &Credential) -> Result<ClientProof, PullError> {
    match credential {
        Credential::ApplicationSecret(secret) if secret.expose().trim().is_empty() => {
            Err(configuration("the stored application secret is empty".into()))
        }
        Credential::ApplicationSecret(secret) => Ok(ClientProof::Secret(secret.clone())),
        Credential::Certificate { certificate_pem, private_key_pem } => {
            let key = AssertionKey::from_stored(certificate_pem, private_key_pem).map_err(configuration)?;
            if let Some(registered) = &connection.certificate_thumbprint
                && !registered.eq_ignore_ascii_case(&key.thumbprint)
            {
                return Err(configuration(format!(
                    "the stored certificate's thumbprint {} is not the registered certificateThumbprint {registered}",
                    key.thumbprint
                )));
            }
            Ok(ClientProof::Certificate(Box::new(key)))
        }
    }
}
