//! The stamp port: opening a session with an Azure Stack Hub stamp and pulling a reported window's
//! usage pages, with the bounds that keep one window's pull finite.

use crate::quarantine::QuarantinedRow;
use crate::stamp::{Credential, Stamp};
use crate::usage::UsageRow;
use crate::window::ReportedWindow;
use async_trait::async_trait;
use serde::Serialize;

/// What went wrong talking to a stamp, without stamp or window (the caller adds those).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{stage}: {message}{}", upstream_code.as_ref().map(|c| format!(" (upstream {c})")).unwrap_or_default())]
pub struct PullError {
    pub stage: PullStage,
    /// HTTP status, when an answer arrived.
    pub http_status: Option<u16>,
    /// The upstream error code (`RequestEndTimeIsInFuture`, `MSIS9605`, `invalid_client`...).
    pub upstream_code: Option<String>,
    pub message: String,
    /// Whether a later run may succeed without operator action.
    pub transient: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullStage {
    Configuration,
    Discovery,
    Token,
    Usage,
    /// A bound on one window's pull was reached (see [`LimitExceeded`]); nothing of the window is kept.
    Limit,
}

impl std::fmt::Display for PullStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PullStage::Configuration => "configuration",
            PullStage::Discovery => "discovery",
            PullStage::Token => "token",
            PullStage::Usage => "usage",
            PullStage::Limit => "limit",
        })
    }
}

impl PullError {
    /// A window's pull stopped at one of its bounds. Not transient: the same stamp answers the same
    /// way on the next run until an operator raises the limit or the stamp is fixed.
    pub fn limit(limit: LimitExceeded) -> Self {
        PullError {
            stage: PullStage::Limit,
            http_status: None,
            upstream_code: None,
            message: limit.to_string(),
            transient: false,
        }
    }
}

/// How much one reported window's pull may take. A stamp that loops or floods is stopped here, so a
/// run's memory and time are bounded by these numbers and not by what the stamp sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullLimits {
    /// Pages per window, over every `nextLink` chain of the window (per-subscriber mode: one chain per
    /// subscription) and the tenant subscription list.
    pub max_pages: u64,
    /// Rows per window: the window is held in memory until its commit, so this bounds memory.
    pub max_rows: u64,
    /// Body bytes per window, over all its pages.
    pub max_bytes: u64,
    /// Bytes of one page body; reading stops at the cap, the rest is never buffered.
    pub max_page_bytes: u64,
}

impl Default for PullLimits {
    /// A page is about 1 MB per 1,000 rows and a row about 500 bytes in memory; the largest stamps
    /// seen report about 40,000 rows an hour. The defaults give such a stamp more than 6x headroom
    /// while keeping one window's rows under ~125 MiB.
    fn default() -> Self {
        Self {
            max_pages: 10_000,
            max_rows: 250_000,
            max_bytes: 512 * 1024 * 1024,
            max_page_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Which bound stopped a window's pull.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error(
        "the nextLink chain leads back to a page already read (after {pages} pages); stopped instead of looping"
    )]
    NextLinkCycle { pages: u64 },
    #[error("more than {limit} pages in one window (limit: pages per window)")]
    Pages { limit: u64 },
    #[error("more than {limit} rows in one window (limit: rows per window)")]
    Rows { limit: u64 },
    #[error("more than {limit} bytes in one window (limit: bytes per window)")]
    Bytes { limit: u64 },
    #[error("a page is larger than {limit} bytes (limit: bytes per page); stopped reading it at the cap")]
    PageBytes { limit: u64 },
    /// More rows the store cannot hold than a window may quarantine: a stamp that sends mostly such
    /// rows is failing, not reporting, and its verbatim rows would otherwise fill the database.
    #[error(
        "{rows} rows of one window cannot be stored exactly, more than the {limit} a window may quarantine \
         (limit: quarantined rows per window); the window was not stored"
    )]
    Quarantined { rows: u64, limit: u64 },
}

/// What discovery found out about a stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredEndpoints {
    pub audience: String,
    pub login_endpoint: String,
    pub is_adfs: bool,
    pub token_endpoint: String,
}

/// Opens sessions with stamps. An implementation caches tokens per stamp.
#[async_trait]
pub trait UsageSource: Send + Sync {
    /// Discovery and a token: everything needed before the first usage call.
    async fn connect(
        &self,
        stamp: &Stamp,
        credential: &Credential,
    ) -> Result<Box<dyn StampSession>, PullError>;

    /// Discovery only: the stamp's metadata and its identity provider's openid configuration, no
    /// credential sent. Registration pins what it finds (login endpoint, audience) whether or not it
    /// verifies, so that later runs never follow a stamp's metadata to another login host.
    async fn discover(&self, stamp: &Stamp) -> Result<DiscoveredEndpoints, PullError>;

    /// Whether the stamp's URLs may be called at all (the operator's allow-list of stamp hosts),
    /// checked at registration before anything is stored. Every implementation also enforces its
    /// rules on each call it makes; this default admits every connection.
    fn check_endpoints(
        &self,
        _connection: &crate::stamp::StampConnection,
    ) -> Result<(), crate::error::ValidationErrors> {
        Ok(())
    }
}

/// One page of a window, as a session read it.
pub struct PageRows<'a> {
    /// The page's usage rows, in page order.
    pub rows: Vec<UsageRow>,
    /// Entries of the page that are no usage row at all in this program (a quantity that no exact
    /// decimal holds), verbatim with the reason: quarantined whatever the store.
    pub unreadable: Vec<QuarantinedRow>,
    /// The JSON of `rows[i]` exactly as the stamp sent it, cut from the page only when asked (rarely:
    /// for a row the store cannot hold). `None` when the session has no verbatim text.
    pub verbatim: &'a (dyn Fn(usize) -> Option<String> + Sync),
}

/// A session with one stamp (discovery done, a token in hand): what the collector pulls windows
/// through. One pull method: rows, the entries no row could be read from, and each row's verbatim text
/// travel together page by page, so there is no second path that loses what quarantine needs.
#[async_trait]
pub trait StampSession: Send + Sync {
    fn endpoints(&self) -> &DiscoveredEndpoints;

    /// Pulls every page of `window` (following `nextLink` to the end), handing each page to `on_page`
    /// as it arrives, with what quarantine needs: the entries that could not be read as usage rows,
    /// and the verbatim JSON of each row. No more than one page is held at a time.
    ///
    /// In per-subscriber mode it asks also for each of `also_subscribers` that the stamp's current
    /// tenant list lacks (subscriptions deleted or moved since they last had usage); a session that
    /// asks for all tenants at once has nothing to add and ignores them.
    async fn pull_pages(
        &self,
        window: ReportedWindow,
        also_subscribers: &[String],
        on_page: &mut (dyn for<'p> FnMut(PageRows<'p>) + Send),
    ) -> Result<PullSummary, PullError>;

    /// A connection test's query of `window`, rows discarded: it proves discovery, the token and the
    /// usage API answer, not that the window is complete. By default the whole window; a session may ask
    /// less when the whole would take long (per-subscriber mode asks one round of subscribers).
    async fn probe(&self, window: ReportedWindow) -> Result<PullSummary, PullError> {
        self.pull_pages(window, &[], &mut |_| {}).await
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullSummary {
    pub pages: u64,
    pub rows: u64,
    pub retries: u64,
}
