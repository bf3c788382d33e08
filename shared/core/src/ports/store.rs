//! The database port: stamps, mappings, the usage ledger (rows, quarantine, watermark), leases and
//! statuses, each a small trait so that a consumer takes only what it calls. [`Store`] is their union,
//! what an adapter implements and the composition root hands out.

use crate::audit::{AuditedStampRegistry, AuditedStore};
use crate::mapping::{SubscriptionMapping, UnmappedSubscription};
use crate::quarantine::{QuarantineEntry, QuarantinedRow, RowLimits};
use crate::stamp::{Stamp, StampConnection, StampId, Tombstone};
use crate::status::{DriftCounts, LastVerified, ProcessingStatus, RunRecord};
use crate::usage::UsageRow;
use crate::window::ReportedWindow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

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
    /// The rows mapped to `billing_subscription_id` and reported in `[from, to)` (no end without
    /// `to`), streamed to `sink` in reported-start order (rows of one reported start in an order of
    /// the store's that is total and stable, so a narrower range yields the same rows in the same
    /// order): what that billing subscription's statements are built from. A store answers from an
    /// index on the billing subscription; this default filters [`UsageLedger::export_rows`], a read
    /// of every stamp's rows in the range, and sorts them.
    async fn billing_rows(
        &self,
        billing_subscription_id: &str,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
        sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
    ) -> Result<u64, StoreError> {
        let filter = ExportFilter { stamps: Vec::new(), from: Some(from), to };
        let mut rows = Vec::new();
        self.export_rows(&filter, &mut |stored| {
            if stored.billing_subscription_id.as_deref() == Some(billing_subscription_id) {
                rows.push(stored);
            }
            Ok(())
        })
        .await?;
        // Stable: export order (stamp, reported start, usage start) breaks the ties.
        rows.sort_by_key(|r| r.window.start);
        let mut sent = 0;
        for row in rows {
            sink(row)
                .map_err(|e| StoreError::Other(format!("billing rows stopped after {sent} rows: {e}")))?;
            sent += 1;
        }
        Ok(sent)
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

/// The database as the collector sees it: every port but the mappings, which the ledger applies
/// inside [`UsageLedger::commit_window`]. A test double of the collector implements these four.
pub trait CollectorStore: AuditedStampRegistry + UsageLedger + LeaseStore + StatusStore {}
impl<T: AuditedStampRegistry + UsageLedger + LeaseStore + StatusStore> CollectorStore for T {}

/// Everything the core needs from a database: what an adapter implements and the composition root
/// hands out, each consumer taking only the part it calls.
pub trait Store: CollectorStore + MappingStore + AuditedStore {}
impl<T: CollectorStore + MappingStore + AuditedStore> Store for T {}
