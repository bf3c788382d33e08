//! A store seen through a [`StoreObserver`]: every port call is announced before it reaches the store
//! (which the observer may refuse) and reported with its duration after. The benchmarks time window
//! commits this way and the webhook tests make the real store fail on demand, so neither needs its own
//! copy of every port method, and a port method added later is passed through for both.

use crate::audit::{
    Attribution, AuditAction, AuditEntry, AuditQuery, AuditTrail, AuditedMappingStore, AuditedStampRegistry,
};
use crate::mapping::{SubscriptionMapping, UnmappedSubscription};
use crate::ports::{
    CommitReceipt, ExportFilter, LeaseStore, MappingStore, QuarantineReader, StampDirectory, StampRegistry,
    StatusReader, StatusStore, Store, StoreError, StoredUsageRow, UsageLedger, WindowCommit,
};
use crate::quarantine::{QuarantineEntry, RowLimits};
use crate::stamp::{Stamp, StampConnection, StampId, Tombstone};
use crate::status::{DriftCounts, LastVerified, ProcessingStatus, RunRecord};
use crate::window::ReportedWindow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What is told about each call to an [`ObservedStore`]; `call` is the port method's name
/// (`"commit_window"`, `"insert_stamp"`, ...).
pub trait StoreObserver: Send + Sync {
    /// Before `call` reaches the store: an error is returned to the caller instead, and the store is
    /// not called.
    fn before(&self, _call: &'static str) -> Result<(), StoreError> {
        Ok(())
    }

    /// After the store answered `call`, `took` after it was called.
    fn after(&self, _call: &'static str, _took: Duration) {}
}

/// `inner`, with every port call shown to `observer`.
pub struct ObservedStore<O> {
    inner: Arc<dyn Store>,
    observer: O,
}

impl<O: StoreObserver> ObservedStore<O> {
    pub fn new(inner: Arc<dyn Store>, observer: O) -> Self {
        Self { inner, observer }
    }
}

/// `$call` on the inner store, announced to the observer before and timed after.
macro_rules! observe {
    ($self:ident, $name:literal, $call:expr) => {{
        $self.observer.before($name)?;
        let began = Instant::now();
        let answer = $call.await;
        $self.observer.after($name, began.elapsed());
        answer
    }};
}

#[async_trait]
impl<O: StoreObserver> StampDirectory for ObservedStore<O> {
    async fn get_stamp(&self, id: &StampId) -> Result<Option<Stamp>, StoreError> {
        observe!(self, "get_stamp", self.inner.get_stamp(id))
    }
    async fn list_stamps(&self) -> Result<Vec<Stamp>, StoreError> {
        observe!(self, "list_stamps", self.inner.list_stamps())
    }
}

#[async_trait]
impl<O: StoreObserver> StampRegistry for ObservedStore<O> {
    async fn insert_stamp(&self, stamp: &Stamp) -> Result<(), StoreError> {
        observe!(self, "insert_stamp", self.inner.insert_stamp(stamp))
    }
    async fn update_stamp(&self, stamp: &Stamp) -> Result<(), StoreError> {
        observe!(self, "update_stamp", self.inner.update_stamp(stamp))
    }
    async fn delete_stamp(&self, id: &StampId) -> Result<bool, StoreError> {
        observe!(self, "delete_stamp", self.inner.delete_stamp(id))
    }
    async fn tombstone(&self, connection: &StampConnection) -> Result<Option<Tombstone>, StoreError> {
        observe!(self, "tombstone", self.inner.tombstone(connection))
    }
}

#[async_trait]
impl<O: StoreObserver> MappingStore for ObservedStore<O> {
    async fn set_mapping(&self, mapping: &SubscriptionMapping) -> Result<u64, StoreError> {
        observe!(self, "set_mapping", self.inner.set_mapping(mapping))
    }
    async fn set_mappings(&self, mappings: &[SubscriptionMapping]) -> Result<u64, StoreError> {
        observe!(self, "set_mappings", self.inner.set_mappings(mappings))
    }
    async fn remove_mapping(&self, stamp: &StampId, external: &str) -> Result<bool, StoreError> {
        observe!(self, "remove_mapping", self.inner.remove_mapping(stamp, external))
    }
    async fn list_mappings(&self, stamp: Option<&StampId>) -> Result<Vec<SubscriptionMapping>, StoreError> {
        observe!(self, "list_mappings", self.inner.list_mappings(stamp))
    }
    async fn unmapped(&self, stamp: Option<&StampId>) -> Result<Vec<UnmappedSubscription>, StoreError> {
        observe!(self, "unmapped", self.inner.unmapped(stamp))
    }
}

#[async_trait]
impl<O: StoreObserver> AuditedStampRegistry for ObservedStore<O> {
    async fn register_stamp(&self, stamp: &Stamp, by: &Attribution) -> Result<(), StoreError> {
        observe!(self, "register_stamp", self.inner.register_stamp(stamp, by))
    }
    async fn change_stamp(
        &self,
        stamp: &Stamp,
        credential: bool,
        by: &Attribution,
    ) -> Result<(), StoreError> {
        observe!(self, "change_stamp", self.inner.change_stamp(stamp, credential, by))
    }
    async fn remove_stamp(&self, id: &StampId, by: &Attribution) -> Result<bool, StoreError> {
        observe!(self, "remove_stamp", self.inner.remove_stamp(id, by))
    }
}

#[async_trait]
impl<O: StoreObserver> AuditedMappingStore for ObservedStore<O> {
    async fn record_mappings(
        &self,
        mappings: &[SubscriptionMapping],
        action: AuditAction,
        by: &Attribution,
    ) -> Result<u64, StoreError> {
        observe!(self, "record_mappings", self.inner.record_mappings(mappings, action, by))
    }
    async fn unmap(&self, stamp: &StampId, external: &str, by: &Attribution) -> Result<bool, StoreError> {
        observe!(self, "unmap", self.inner.unmap(stamp, external, by))
    }
}

#[async_trait]
impl<O: StoreObserver> AuditTrail for ObservedStore<O> {
    async fn audit_records(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        observe!(self, "audit_records", self.inner.audit_records(query))
    }
}

#[async_trait]
impl<O: StoreObserver> QuarantineReader for ObservedStore<O> {
    async fn quarantine(&self, stamp: Option<&StampId>) -> Result<Vec<QuarantineEntry>, StoreError> {
        observe!(self, "quarantine", self.inner.quarantine(stamp))
    }
}

#[async_trait]
impl<O: StoreObserver> UsageLedger for ObservedStore<O> {
    fn row_limits(&self) -> RowLimits {
        self.inner.row_limits()
    }
    async fn commit_window(&self, commit: WindowCommit<'_>) -> Result<CommitReceipt, StoreError> {
        observe!(self, "commit_window", self.inner.commit_window(commit))
    }
    async fn export_rows(
        &self,
        filter: &ExportFilter,
        sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
    ) -> Result<u64, StoreError> {
        observe!(self, "export_rows", self.inner.export_rows(filter, sink))
    }
    async fn subscriptions_seen(
        &self,
        stamp: &StampId,
        since: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        observe!(self, "subscriptions_seen", self.inner.subscriptions_seen(stamp, since))
    }
    async fn stored_windows(
        &self,
        stamp: &StampId,
        range: ReportedWindow,
    ) -> Result<Vec<ReportedWindow>, StoreError> {
        observe!(self, "stored_windows", self.inner.stored_windows(stamp, range))
    }
    async fn record_reprocess(
        &self,
        stamp: &StampId,
        window: ReportedWindow,
        reason: &str,
    ) -> Result<(), StoreError> {
        observe!(self, "record_reprocess", self.inner.record_reprocess(stamp, window, reason))
    }
}

#[async_trait]
impl<O: StoreObserver> LeaseStore for ObservedStore<O> {
    async fn try_acquire(&self, stamp: &StampId, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        observe!(self, "try_acquire", self.inner.try_acquire(stamp, owner, ttl))
    }
    async fn renew(&self, stamp: &StampId, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        observe!(self, "renew", self.inner.renew(stamp, owner, ttl))
    }
    async fn release(&self, stamp: &StampId, owner: &str) -> Result<(), StoreError> {
        observe!(self, "release", self.inner.release(stamp, owner))
    }
}

#[async_trait]
impl<O: StoreObserver> StatusReader for ObservedStore<O> {
    async fn get_status(&self, stamp: &StampId) -> Result<Option<ProcessingStatus>, StoreError> {
        observe!(self, "get_status", self.inner.get_status(stamp))
    }
    async fn list_statuses(&self) -> Result<Vec<ProcessingStatus>, StoreError> {
        observe!(self, "list_statuses", self.inner.list_statuses())
    }
}

#[async_trait]
impl<O: StoreObserver> StatusStore for ObservedStore<O> {
    async fn record_run_started(&self, stamp: &StampId, started: DateTime<Utc>) -> Result<(), StoreError> {
        observe!(self, "record_run_started", self.inner.record_run_started(stamp, started))
    }
    async fn record_run_finished(&self, stamp: &StampId, record: &RunRecord) -> Result<(), StoreError> {
        observe!(self, "record_run_finished", self.inner.record_run_finished(stamp, record))
    }
    async fn record_verified(
        &self,
        stamp: &StampId,
        verified: &LastVerified,
        drift: &DriftCounts,
    ) -> Result<(), StoreError> {
        observe!(self, "record_verified", self.inner.record_verified(stamp, verified, drift))
    }
}
