//! `stamp-sim`: simulated Azure Stack Hub stamps for tests, the demo and benchmarks.
//!
//! A [`Simulator`] serves any number of stamps over HTTPS, each on its own `127.0.0.1` port with a
//! certificate signed by the simulator's throw-away CA ([`Simulator::ca_pem`]). A stamp serves what
//! the collector talks to, following `shared/reference/azure-stack-hub.md`:
//!
//! - the admin ARM metadata endpoint ([`discovery`]),
//! - an Azure AD or AD FS identity provider: OpenID configuration and the v1 token endpoint, with
//!   client secrets and verified certificate assertions ([`auth`]),
//! - the provider usage API and the tenant subscription list ([`usage`]), with deterministic
//!   data ([`data`]) and opaque paging ([`paging`]),
//! - faults injected at runtime ([`Fault`]) and counters ([`SimStats`]).
//!
//! [`SimStampHandle::ground_truth`] returns exactly the unique rows the API serves for a window.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use stamp_sim::{SimAuth, Simulator, SimulatorConfig, StampSpec};
//! let auth = SimAuth::Adfs { secret: Some("s3cret".into()), certificate_pem: None };
//! let sim = Simulator::start(SimulatorConfig {
//!     seed: 42,
//!     stamps: vec![StampSpec::generated(42, 0, auth)],
//!     ..SimulatorConfig::default()
//! })
//! .await?;
//! let client = reqwest::Client::builder()
//!     .tls_certs_only([reqwest::Certificate::from_pem(sim.ca_pem().as_bytes())?])
//!     .build()?;
//! let stamp = sim.stamp(0);
//! let url = format!("{}/metadata/endpoints?api-version=2015-01-01", stamp.admin_arm_endpoint());
//! let metadata: serde_json::Value = client.get(url).send().await?.json().await?;
//! assert_eq!(metadata["authentication"]["loginEndpoint"], stamp.login_endpoint());
//! # Ok(()) }
//! ```

pub mod auth;
mod certs;
mod config;
pub mod data;
pub mod discovery;
mod errors;
mod faults;
mod ids;
mod meters;
pub mod paging;
mod server;
pub mod usage;

use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

pub use certs::{TestCertificate, generate_test_certificate};
pub use config::{SimAuth, SimulatorConfig, StampSpec};
pub use data::TruthRow;
pub use faults::{Fault, RequestKind, SimStats};

use certs::{CertificateAuthority, RegisteredCertificate};
use data::{StampData, whole_hour};
use ids::{deterministic_guid, mix};
use paging::TokenSealer;
use server::StampState;

/// A running simulation. Dropping it stops every stamp's listener and connections.
pub struct Simulator {
    ca_pem: String,
    stamps: Vec<SimStampHandle>,
    tasks: Vec<JoinHandle<()>>,
}

impl Simulator {
    /// Binds one listener per stamp on `127.0.0.1:0` and starts serving. Must run inside a Tokio
    /// runtime. Fails on an invalid configuration (`page_size` 0, or below 2 with
    /// `duplicate_across_pages`; an unreadable or non-RSA registered certificate).
    pub async fn start(config: SimulatorConfig) -> anyhow::Result<Simulator> {
        if config.page_size == 0 {
            bail!("page_size must be at least 1");
        }
        if config.page_size < 2 && config.stamps.iter().any(|s| s.duplicate_across_pages) {
            bail!("duplicate_across_pages needs page_size >= 2 (the repeated row counts)");
        }
        let ca = CertificateAuthority::new()?;
        let sealer_key: [u8; 32] = rand::random();
        let mut stamps = Vec::with_capacity(config.stamps.len());
        let mut tasks = Vec::with_capacity(config.stamps.len());
        for (index, spec) in config.stamps.into_iter().enumerate() {
            let certificate = spec
                .auth
                .certificate_pem()
                .map(RegisteredCertificate::from_pem)
                .transpose()
                .with_context(|| format!("stamp {index}"))?;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
            let port = listener.local_addr()?.port();
            let audience_guid = deterministic_guid(mix(&[config.seed, index as u64, 0x61756469]), 0);
            let audience = if spec.auth.is_adfs() {
                format!("https://management.adfs.azurestack.local/{audience_guid}")
            } else {
                format!("https://management.stamp{index}sim.onmicrosoft.com/{audience_guid}")
            };
            let state = Arc::new(StampState {
                index,
                base_url: format!("https://127.0.0.1:{port}"),
                audience,
                page_size: config.page_size,
                data: Arc::new(StampData::new(config.seed, index, &spec)),
                certificate,
                sealer: TokenSealer::new(sealer_key),
                tokens: Mutex::default(),
                faults: Mutex::default(),
                deleted_subscriptions: Mutex::default(),
                stats: Default::default(),
                spec,
            });
            let tls = ca.server_config(&format!("stamp-sim stamp {index}"))?;
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            tasks.push(tokio::spawn(server::serve(listener, acceptor, state.clone())));
            stamps.push(SimStampHandle { state });
        }
        Ok(Simulator { ca_pem: ca.pem().to_owned(), stamps, tasks })
    }

    /// PEM of the CA that signed every stamp's server certificate: the only one to trust.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// Stamp `i`, in configuration order.
    ///
    /// # Panics
    /// When `i` is not below the number of stamps.
    pub fn stamp(&self, i: usize) -> SimStampHandle {
        self.stamps[i].clone()
    }

    /// All stamps, in configuration order.
    pub fn stamps(&self) -> &[SimStampHandle] {
        &self.stamps
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// One running stamp: its endpoints and identities, its ground truth, faults and counters.
#[derive(Clone)]
pub struct SimStampHandle {
    state: Arc<StampState>,
}

impl SimStampHandle {
    /// `https://127.0.0.1:PORT` (no trailing slash).
    pub fn admin_arm_endpoint(&self) -> String {
        self.state.base_url.clone()
    }

    /// `https://127.0.0.1:PORT/aad/` (Azure AD) or `https://127.0.0.1:PORT/adfs/` (AD FS).
    pub fn login_endpoint(&self) -> String {
        self.state.login_endpoint()
    }

    /// The token endpoint the OpenID configuration advertises; client assertions' `aud`.
    pub fn token_endpoint(&self) -> String {
        self.state.token_endpoint()
    }

    /// The token `resource` (`audiences[0]` of the metadata endpoint).
    pub fn audience(&self) -> String {
        self.state.audience.clone()
    }

    /// The specification the stamp runs with (ids, credentials, data shape).
    pub fn spec(&self) -> &StampSpec {
        &self.state.spec
    }

    /// The admin ("Default Provider") subscription of the usage API path.
    pub fn admin_subscription_id(&self) -> String {
        self.state.spec.admin_subscription_id.clone()
    }

    /// The tenant id of the identity provider.
    pub fn tenant_id(&self) -> String {
        self.state.spec.tenant_id.clone()
    }

    /// The app registration's client id.
    pub fn application_id(&self) -> String {
        self.state.spec.application_id.clone()
    }

    /// True for an AD FS stamp.
    pub fn is_adfs(&self) -> bool {
        self.state.spec.auth.is_adfs()
    }

    /// Deletes a tenant subscription from the stamp's subscription list. Its usage stays in the
    /// ground truth and is still served for `subscriberId` queries (and in all-tenants pages).
    pub fn delete_subscription(&self, subscription_id: &str) {
        self.state
            .deleted_subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(subscription_id.to_ascii_lowercase());
    }

    /// Tenant subscription GUIDs (lower case), in the order rows are served.
    pub fn tenant_subscriptions(&self) -> Vec<String> {
        self.state.data.tenants().to_vec()
    }

    /// The unique rows the usage API returns for reported times `[reported_start, reported_end)`
    /// (all tenants), in served order. Page-boundary repeats are not included.
    ///
    /// # Panics
    /// When a bound is not on the whole hour.
    pub fn ground_truth(&self, reported_start: DateTime<Utc>, reported_end: DateTime<Utc>) -> Vec<TruthRow> {
        let (start, end) = whole_hours(reported_start, reported_end);
        self.state.data.truth(start, end, None)
    }

    /// Like [`Self::ground_truth`] for a `subscriberId` query: that tenant's rows only (none when
    /// the subscription is not one of the stamp's tenants).
    ///
    /// # Panics
    /// When a bound is not on the whole hour.
    pub fn ground_truth_for_subscriber(
        &self,
        reported_start: DateTime<Utc>,
        reported_end: DateTime<Utc>,
        subscriber_id: &str,
    ) -> Vec<TruthRow> {
        let (start, end) = whole_hours(reported_start, reported_end);
        match self.state.data.tenant_index(subscriber_id) {
            Some(tenant) => self.state.data.truth(start, end, Some(tenant)),
            None => Vec::new(),
        }
    }

    /// Queues a fault (see [`Fault`] for what each does and how it is consumed).
    pub fn inject(&self, fault: Fault) {
        match fault {
            Fault::ExpireTokensAfter { usage_requests } => {
                lock(&self.state.tokens).expire_after_usage_requests(usage_requests)
            }
            fault => lock(&self.state.faults).push(fault),
        }
    }

    /// Drops every queued fault, including a pending token expiry.
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
        lock(&self.state.tokens).clear_fault();
    }

    /// The stamp's counters so far.
    pub fn stats(&self) -> SimStats {
        self.state.stats.snapshot()
    }
}

fn whole_hours(start: DateTime<Utc>, end: DateTime<Utc>) -> (i64, i64) {
    match (whole_hour(start), whole_hour(end)) {
        (Some(start), Some(end)) => (start, end),
        _ => panic!("ground truth bounds must be on the whole hour: {start} .. {end}"),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
