//! The ports: the small traits through which the core reaches a database, a secret store and a stamp.
//! Each adapter crate implements some of them; the core and its tests depend only on these.

use crate::mapping::{SubscriptionMapping, UnmappedSubscription};
use crate::quarantine::{QuarantineEntry, QuarantinedRow, RowLimits};
use crate::secret::Secret;
use crate::stamp::{Credential, Stamp, StampConnection, StampId, Tombstone};
use crate::status::{DriftCounts, LastVerified, ProcessingStatus, RunRecord};
use crate::usage::UsageRow;
use crate::window::ReportedWindow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------------
// Database
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stamp with the same admin ARM endpoint and admin subscription exists.
    #[error("a stamp with this admin ARM endpoint and admin subscription is already registered as {0}")]
    DuplicateStamp(StampId),
    #[error("stamp {0} is not registered")]
    UnknownStamp(StampId),
    /// The commit was fenced off: another writer moved the watermark or holds the lease.
    #[error("stamp {stamp}: window {window} was not committed: {reason}")]
    Fenced { stamp: StampId, window: ReportedWindow, reason: String },
    /// The database could not be reached or refused the operation; nothing was written.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Other(String),
}

/// Finding registered stamps: all a service that only names stamps (mappings, exports) needs.
#[async_trait]
pub trait StampDirectory: Send + Sync {
    async fn get_stamp(&self, id: &StampId) -> Result<Option<Stamp>, StoreError>;
    async fn list_stamps(&self) -> Result<Vec<Stamp>, StoreError>;
}

/// Stamps: the seed's `Config.Connections`.
#[async_trait]
pub trait StampRegistry: StampDirectory {
    /// Stores a new stamp and its processing status (watermark = `collect_from`).
    /// `DuplicateStamp` when the admin ARM endpoint + admin subscription pair is taken.
    async fn insert_stamp(&self, stamp: &Stamp) -> Result<(), StoreError>;
    async fn update_stamp(&self, stamp: &Stamp) -> Result<(), StoreError>;
    /// Removes the stamp, its status, lease and mappings, and leaves a [`Tombstone`] with its watermark
    /// (in the same transaction). Collected usage rows stay. Inserting a stamp consumes its tombstone.
    async fn delete_stamp(&self, id: &StampId) -> Result<bool, StoreError>;
    /// The tombstone of a removed stamp with this admin ARM endpoint and admin subscription, if any.
    async fn tombstone(&self, connection: &StampConnection) -> Result<Option<Tombstone>, StoreError>;
}

/// The seed's `[dbo].[SubscriptionMapper]`.
#[async_trait]
pub trait MappingStore: Send + Sync {
    /// Upserts the mapping and back-fills this stamp's rows for that subscription that are still
    /// unmapped, in one transaction. Returns how many rows were back-filled.
    async fn set_mapping(&self, mapping: &SubscriptionMapping) -> Result<u64, StoreError>;
    /// Sets every mapping (each as [`MappingStore::set_mapping`]) in ONE transaction: all or nothing.
    /// Returns how many rows were back-filled in all.
    async fn set_mappings(&self, mappings: &[SubscriptionMapping]) -> Result<u64, StoreError>;
    async fn remove_mapping(
        &self,
        stamp: &StampId,
        external_subscription_id: &str,
    ) -> Result<bool, StoreError>;
    async fn list_mappings(&self, stamp: Option<&StampId>) -> Result<Vec<SubscriptionMapping>, StoreError>;
    async fn unmapped(&self, stamp: Option<&StampId>) -> Result<Vec<UnmappedSubscription>, StoreError>;
}

/// How a window's rows meet what is already stored for that window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowWrite {
    /// Normal collection: the window must start at the stamp's watermark, which moves to its end.
    Advance,
    /// Reprocessing: the window must lie before the watermark; its rows are replaced, the watermark stays.
    /// A tenant subscription that had mapped rows stored in the window keeps the billing subscription
    /// those rows were written with (they may be invoiced already), unless `remap`: then every row is
    /// mapped with the current mappings. Rows stored unmapped were never billed and take the current
    /// mapping either way.
    Replace { remap: bool },
}

/// One reported window's rows, committed with the watermark in a single transaction.
#[derive(Debug)]
pub struct WindowCommit<'a> {
    pub stamp: &'a StampId,
    pub window: ReportedWindow,
    /// The lease owner that pulled these rows; a commit by anyone else is fenced off.
    pub lease_owner: &'a str,
    pub write: WindowWrite,
    /// Handed over, not lent: a store that writes on another thread takes the rows along instead of
    /// copying the window, which would hold it twice at the collector's peak.
    pub rows: Vec<UsageRow>,
    /// The window's rows the store cannot hold (see [`crate::quarantine`]), kept verbatim in the same
    /// transaction as `rows`; replacing a window replaces its quarantine too.
    pub quarantined: Vec<QuarantinedRow>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitReceipt {
    /// Rows now stored for the window that were not stored before.
    pub rows_written: u64,
    /// Rows of the batch that were already stored (exact duplicates).
    pub duplicates: u64,
    /// Rows written without a billing subscription.
    pub unmapped_rows: u64,
    /// Rows of the window newly put in quarantine (a row already quarantined for the window is not
    /// counted again).
    pub quarantined: u64,
}

/// The quarantine: rows kept verbatim because the store cannot hold them (see [`crate::quarantine`]);
/// what `quarantine list` and `GET /quarantine` read.
#[async_trait]
pub trait QuarantineReader: Send + Sync {
    /// Quarantined rows of one stamp (or all stamps, deleted ones included), in (stamp, reported
    /// window, key) order.
    async fn quarantine(&self, stamp: Option<&StampId>) -> Result<Vec<QuarantineEntry>, StoreError>;
}

/// Raw usage rows and the watermark that says how far they are complete.
#[async_trait]
pub trait UsageLedger: QuarantineReader {
    /// What this store can hold of a row exactly; the collector quarantines rows over these limits
    /// instead of handing them to [`UsageLedger::commit_window`].
    fn row_limits(&self) -> RowLimits;
    /// Commits the window's rows, its quarantined rows and (when advancing) the watermark in one
    /// transaction. A row over [`UsageLedger::row_limits`] refuses the whole window, naming the field.
    async fn commit_window(&self, commit: WindowCommit<'_>) -> Result<CommitReceipt, StoreError>;
    /// Streams stored rows in (stamp, reported start, usage start) order to `sink`.
    async fn export_rows(
        &self,
        filter: &ExportFilter,
        sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
    ) -> Result<u64, StoreError>;
    /// The tenant subscriptions (normalised, lower case) that have usage stored for this stamp in a
    /// reported window starting at or after `since`: per-subscriber collection asks for these too, so
    /// a subscription deleted from the stamp's list still has its last hours collected.
    async fn subscriptions_seen(
        &self,
        stamp: &StampId,
        since: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError>;
    /// The reported windows this stamp's rows and quarantined rows are stored under that overlap
    /// `range`, in order: hours, and catch-up spans that may start before `range` (by less than
    /// [`crate::window::LONGEST_SPAN_HOURS`]) or end after it. Reprocess and verify re-pull these
    /// whole ([`crate::window::covering_windows`]). This default reads the rows through
    /// [`UsageLedger::export_rows`]; a store can answer from its index instead.
    async fn stored_windows(
        &self,
        stamp: &StampId,
        range: ReportedWindow,
    ) -> Result<Vec<ReportedWindow>, StoreError> {
        let lookback = chrono::Duration::hours(i64::from(crate::window::LONGEST_SPAN_HOURS) - 1);
        let filter = ExportFilter {
            stamps: vec![stamp.clone()],
            from: Some(range.start - lookback),
            to: Some(range.end),
        };
        let mut windows = std::collections::BTreeSet::new();
        self.export_rows(&filter, &mut |stored| {
            windows.insert(stored.window);
            Ok(())
        })
        .await?;
        windows.extend(self.quarantine(Some(stamp)).await?.into_iter().map(|q| q.window));
        Ok(windows.into_iter().filter(|w| w.start < range.end && w.end > range.start).collect())
    }
    /// Records an operator's reprocessing request (who asked, why, which range).
    async fn record_reprocess(
        &self,
        stamp: &StampId,
        window: ReportedWindow,
        reason: &str,
    ) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub stamps: Vec<StampId>,
    /// Reported time range `[from, to)`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A stored row: what the API sent, where it came from, and its billing subscription if mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredUsageRow {
    pub stamp_id: StampId,
    pub window: ReportedWindow,
    pub billing_subscription_id: Option<String>,
    #[serde(flatten)]
    pub row: UsageRow,
}

/// Per-stamp leases: one run works on a stamp at a time. The lease row is named by the stamp alone
/// (never by a window or watermark), expires, and carries its owner.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes the stamp's lease if it is free, expired, or already ours. One atomic conditional write.
    async fn try_acquire(&self, stamp: &StampId, owner: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Extends our lease; `false` when it is no longer ours.
    async fn renew(&self, stamp: &StampId, owner: &str, ttl: Duration) -> Result<bool, StoreError>;
    async fn release(&self, stamp: &StampId, owner: &str) -> Result<(), StoreError>;
}

/// Where each stamp stands: what administration shows next to a stamp.
#[async_trait]
pub trait StatusReader: Send + Sync {
    async fn get_status(&self, stamp: &StampId) -> Result<Option<ProcessingStatus>, StoreError>;
    async fn list_statuses(&self) -> Result<Vec<ProcessingStatus>, StoreError>;
}

/// Where each stamp stands, as the collector records it.
#[async_trait]
pub trait StatusStore: StatusReader {
    async fn record_run_started(&self, stamp: &StampId, started: DateTime<Utc>) -> Result<(), StoreError>;
    async fn record_run_finished(&self, stamp: &StampId, record: &RunRecord) -> Result<(), StoreError>;
    /// Records a scheduled verify's outcome (replacing the previous one).
    async fn record_verified(
        &self,
        stamp: &StampId,
        verified: &LastVerified,
        drift: &DriftCounts,
    ) -> Result<(), StoreError>;
}

/// Everything the core needs from a database.
pub trait Store:
    StampRegistry + MappingStore + UsageLedger + LeaseStore + StatusStore + crate::audit::AuditedStore
{
}
impl<T: StampRegistry + MappingStore + UsageLedger + LeaseStore + StatusStore + crate::audit::AuditedStore>
    Store for T
{
}

// ---------------------------------------------------------------------------------------------------
// Secret store
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    /// The store could not be reached or refused the call; retrying later may work.
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
    #[error("secret store refused the request: {0}")]
    Refused(String),
}

/// Where credentials live. Errors never contain a secret value.
#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn put_secret(&self, name: &str, value: &Secret) -> Result<(), SecretStoreError>;
    async fn get_secret(&self, name: &str) -> Result<Option<Secret>, SecretStoreError>;
    /// Deleting a secret that does not exist is not an error.
    async fn delete_secret(&self, name: &str) -> Result<(), SecretStoreError>;
    /// The secret name for a stamp's credential (the configured prefix + the stamp id).
    fn credential_name(&self, stamp: &StampId) -> String;
}

// ---------------------------------------------------------------------------------------------------
// Azure Stack Hub
// ---------------------------------------------------------------------------------------------------

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

#[async_trait]
pub trait StampSession: Send + Sync {
    fn endpoints(&self) -> &DiscoveredEndpoints;
    /// Pulls every page of `window` (following `nextLink` to the end), handing each page's rows to
    /// `on_page` as it arrives; no more than one page is held at a time.
    async fn pull_window(
        &self,
        window: ReportedWindow,
        on_page: &mut (dyn FnMut(Vec<UsageRow>) + Send),
    ) -> Result<PullSummary, PullError>;

    /// [`Self::pull_window`], asking in per-subscriber mode also for each of `also_subscribers` that
    /// the stamp's current tenant list lacks (subscriptions deleted or moved since they last had
    /// usage). A session that asks for all tenants at once has nothing to add and ignores them.
    async fn pull_window_including(
        &self,
        window: ReportedWindow,
        also_subscribers: &[String],
        on_page: &mut (dyn FnMut(Vec<UsageRow>) + Send),
    ) -> Result<PullSummary, PullError> {
        let _ = also_subscribers;
        self.pull_window(window, on_page).await
    }

    /// [`Self::pull_window_including`], handing over each page with what quarantine needs: the
    /// entries that could not be read as usage rows, and the verbatim JSON of each row. A session
    /// without verbatim text (a test double) hands over the rows alone.
    async fn pull_pages(
        &self,
        window: ReportedWindow,
        also_subscribers: &[String],
        on_page: &mut (dyn for<'p> FnMut(PageRows<'p>) + Send),
    ) -> Result<PullSummary, PullError> {
        self.pull_window_including(window, also_subscribers, &mut |rows| {
            on_page(PageRows { rows, unreadable: Vec::new(), verbatim: &|_| None })
        })
        .await
    }

    /// A connection test's query of `window`, rows discarded: it proves discovery, the token and the
    /// usage API answer, not that the window is complete. By default the whole window; a session may ask
    /// less when the whole would take long (per-subscriber mode asks one round of subscribers).
    async fn probe(&self, window: ReportedWindow) -> Result<PullSummary, PullError> {
        self.pull_window(window, &mut |_| {}).await
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullSummary {
    pub pages: u64,
    pub rows: u64,
    pub retries: u64,
}

// ---------------------------------------------------------------------------------------------------
// Stamp work queue (fan-out through the platform's queue)
// ---------------------------------------------------------------------------------------------------

/// The queue could not take a message; nothing about the stamp's data is affected.
#[derive(Debug, Clone, thiserror::Error)]
#[error("queue {queue}: {message}")]
pub struct QueueError {
    /// Which queue (its URL or name), never a credential.
    pub queue: String,
    pub message: String,
}

/// Where per-stamp work goes: SQS on AWS, a Storage Queue output binding on Azure. The platform
/// delivers the messages to workers (at least once) and moves those that keep failing aside.
#[async_trait]
pub trait StampQueue: Send + Sync {
    /// Adds `work`, each message becoming visible to workers after `delay`.
    async fn enqueue(&self, work: &[crate::fan_out::StampWork], delay: Duration) -> Result<(), QueueError>;
    /// Moves a message that cannot be done aside, naming its stamp and the error.
    async fn dead_letter(&self, letter: &crate::fan_out::DeadLetter) -> Result<(), QueueError>;
}
