//! What a simulation looks like: the simulator-wide settings and one [`StampSpec`] per stamp.
//!
//! Everything a stamp serves is derived from these values and the seed, so two simulators started
//! with equal configurations serve byte-identical usage data (only ports, certificates and access
//! tokens differ between runs).

use std::time::Duration;

use crate::ids::{deterministic_guid, splitmix64};

/// Settings for a whole [`Simulator`](crate::Simulator).
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    /// Seed of every generated identifier and usage value.
    pub seed: u64,
    /// Rows per usage page (the real API pages at 1,000). With
    /// [`StampSpec::duplicate_across_pages`] the repeated row counts towards the page size, so it
    /// must then be at least 2.
    pub page_size: usize,
    /// The stamps to serve, each on its own listener.
    pub stamps: Vec<StampSpec>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self { seed: 0, page_size: 1000, stamps: Vec::new() }
    }
}

/// How the stamp's identity provider authenticates the collector's app registration.
///
/// A stamp accepts the client secret when one is set and a certificate client assertion when a
/// certificate is set (both may be set).
#[derive(Clone, Debug)]
pub enum SimAuth {
    /// An Azure AD stamp: login endpoint `https://127.0.0.1:PORT/aad/`, per-tenant OpenID
    /// configuration and token endpoint (`/aad/{tenantId}/oauth2/token`).
    AzureAd {
        /// Accepted `client_secret`.
        secret: Option<String>,
        /// PEM of the app's registered certificate (RSA); assertions must be signed by its key.
        certificate_pem: Option<String>,
    },
    /// An AD FS stamp: login endpoint `https://127.0.0.1:PORT/adfs/`, OpenID configuration and
    /// token endpoint without a tenant segment (`/adfs/oauth2/token`).
    Adfs {
        /// Accepted `client_secret`.
        secret: Option<String>,
        /// PEM of the app's registered certificate (RSA); assertions must be signed by its key.
        certificate_pem: Option<String>,
    },
}

impl SimAuth {
    /// True for an AD FS stamp.
    pub fn is_adfs(&self) -> bool {
        matches!(self, SimAuth::Adfs { .. })
    }

    /// The accepted client secret, if any.
    pub fn secret(&self) -> Option<&str> {
        match self {
            SimAuth::AzureAd { secret, .. } | SimAuth::Adfs { secret, .. } => secret.as_deref(),
        }
    }

    /// The registered certificate PEM, if any.
    pub fn certificate_pem(&self) -> Option<&str> {
        match self {
            SimAuth::AzureAd { certificate_pem, .. } | SimAuth::Adfs { certificate_pem, .. } => {
                certificate_pem.as_deref()
            }
        }
    }
}

/// One simulated Azure Stack Hub stamp.
#[derive(Clone, Debug)]
pub struct StampSpec {
    /// The operator's admin ("Default Provider") subscription, the one in the usage API path.
    pub admin_subscription_id: String,
    /// The directory tenant (Azure AD) or `adfs`-style tenant id of the stamp's identity provider.
    pub tenant_id: String,
    /// The collector's app registration (`client_id`).
    pub application_id: String,
    /// Identity provider flavour and the app's credentials.
    pub auth: SimAuth,
    /// Number of tenant (user) subscriptions; their GUIDs derive from the seed.
    pub tenants: usize,
    /// Meters each tenant subscription uses per hour, taken from the meter table in a
    /// deterministic, seed-dependent order (wrapping around, with distinct resources, when larger
    /// than the table).
    pub meters_per_tenant: usize,
    /// Late rows each reported hour carries: rows whose usage hour is 1 to 6 hours before it.
    /// Capped at `tenants * meters_per_tenant * 6` (every possible late row of the hour).
    pub late_rows_per_window: usize,
    /// Repeat the last row of a page as the first row of the next page (an artifact: the repeat is
    /// not part of the ground truth).
    pub duplicate_across_pages: bool,
    /// Serve the data hygiene variants seen in the wild (see [`crate::data`]).
    pub variants: bool,
    /// Delay added before every usage page.
    pub page_delay: Duration,
    /// Lifetime of issued access tokens (`expires_in`); 3599 s by default.
    pub token_lifetime: Duration,
}

impl StampSpec {
    /// A stamp whose ids derive from `seed` and `index`, with small defaults: 3 tenants,
    /// 4 meters each, 2 late rows per hour, no duplicates, no variants, no delay.
    pub fn generated(seed: u64, index: usize, auth: SimAuth) -> Self {
        let base = splitmix64(seed ^ 0x5374_616d_7053_7065 ^ (index as u64).wrapping_mul(0x9e37));
        Self {
            admin_subscription_id: deterministic_guid(base, 1),
            tenant_id: deterministic_guid(base, 2),
            application_id: deterministic_guid(base, 3),
            auth,
            tenants: 3,
            meters_per_tenant: 4,
            late_rows_per_window: 2,
            duplicate_across_pages: false,
            variants: false,
            page_delay: Duration::ZERO,
            token_lifetime: Duration::from_secs(3599),
        }
    }
}
