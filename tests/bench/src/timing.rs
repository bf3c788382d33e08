//! Where a collection run spends its time: thin wrappers around the real store and stamp client that
//! note when each window's pull (HTTPS, paging, parsing) and each window's commit (mapping, inserting,
//! the watermark, the transaction) begin and end. They add two clock readings per window.

use async_trait::async_trait;
use azs_core::mapping::{SubscriptionMapping, UnmappedSubscription};
use azs_core::ports::{
    CommitReceipt, DiscoveredEndpoints, ExportFilter, LeaseStore, MappingStore, PullError, PullSummary,
    StampDirectory, StampRegistry, StampSession, StatusReader, StatusStore, Store, StoreError,
    StoredUsageRow, UsageLedger, UsageSource, WindowCommit,
};
use azs_core::stamp::{Credential, Stamp, StampId};
use azs_core::status::{DriftCounts, LastVerified, ProcessingStatus, RunRecord};
use azs_core::usage::UsageRow;
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Busy intervals of the two stages, in seconds since the timeline started.
pub struct Timeline {
    epoch: Instant,
    pulls: Mutex<Vec<(f64, f64)>>,
    commits: Mutex<Vec<(f64, f64)>>,
}

/// One stage's time: summed over windows (stamps overlap, so this can exceed the wall time) and as
/// the wall time during which at least one window was in that stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageTime {
    pub summed_seconds: f64,
    pub busy_seconds: f64,
}

impl Timeline {
    pub fn start() -> Arc<Self> {
        Arc::new(Self { epoch: Instant::now(), pulls: Mutex::default(), commits: Mutex::default() })
    }

    fn note(&self, into: &Mutex<Vec<(f64, f64)>>, began: Instant) {
        let at = |t: Instant| t.duration_since(self.epoch).as_secs_f64();
        into.lock().unwrap_or_else(|e| e.into_inner()).push((at(began), at(Instant::now())));
    }

    pub fn pulling(&self) -> StageTime {
        stage_time(&self.pulls.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn writing(&self) -> StageTime {
        stage_time(&self.commits.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn stage_time(intervals: &[(f64, f64)]) -> StageTime {
    let summed_seconds = intervals.iter().map(|(a, b)| b - a).sum();
    let mut sorted = intervals.to_vec();
    sorted.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut busy_seconds, mut reach) = (0.0, f64::NEG_INFINITY);
    for (a, b) in sorted {
        let a = a.max(reach);
        if b > a {
            busy_seconds += b - a;
            reach = b;
        }
    }
    StageTime { summed_seconds, busy_seconds }
}

/// The stamp client, timing every window's pull.
pub struct TimedSource {
    pub inner: Arc<dyn UsageSource>,
    pub timeline: Arc<Timeline>,
}

struct TimedSession {
    inner: Box<dyn StampSession>,
    timeline: Arc<Timeline>,
}

#[async_trait]
impl UsageSource for TimedSource {
    async fn connect(
        &self,
        stamp: &Stamp,
        credential: &Credential,
    ) -> Result<Box<dyn StampSession>, PullError> {
        let inner = self.inner.connect(stamp, credential).await?;
        Ok(Box::new(TimedSession { inner, timeline: self.timeline.clone() }))
    }
}

#[async_trait]
impl StampSession for TimedSession {
    fn endpoints(&self) -> &DiscoveredEndpoints {
        self.inner.endpoints()
    }

    async fn pull_window(
        &self,
        window: ReportedWindow,
        on_page: &mut (dyn FnMut(Vec<UsageRow>) + Send),
    ) -> Result<PullSummary, PullError> {
        let began = Instant::now();
        let pulled = self.inner.pull_window(window, on_page).await;
        self.timeline.note(&self.timeline.pulls, began);
        pulled
    }
}

/// The store, timing every window's commit; everything else passes straight through.
pub struct TimedStore {
    pub inner: Arc<dyn Store>,
    pub timeline: Arc<Timeline>,
}

#[async_trait]
impl azs_core::ports::QuarantineReader for TimedStore {
    async fn quarantine(
        &self,
        stamp: Option<&StampId>,
    ) -> Result<Vec<azs_core::quarantine::QuarantineEntry>, StoreError> {
        self.inner.quarantine(stamp).await
    }
}

#[async_trait]
impl UsageLedger for TimedStore {
    fn row_limits(&self) -> azs_core::quarantine::RowLimits {
        self.inner.row_limits()
    }

    async fn commit_window(&self, commit: WindowCommit<'_>) -> Result<CommitReceipt, StoreError> {
        let began = Instant::now();
        let receipt = self.inner.commit_window(commit).await;
        self.timeline.note(&self.timeline.commits, began);
        receipt
    }

    async fn export_rows(
        &self,
        filter: &ExportFilter,
        sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
    ) -> Result<u64, StoreError> {
        self.inner.export_rows(filter, sink).await
    }

    async fn subscriptions_seen(
        &self,
        stamp: &StampId,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.subscriptions_seen(stamp, since).await
    }

    async fn record_reprocess(
        &self,
        stamp: &StampId,
        window: ReportedWindow,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.inner.record_reprocess(stamp, window, reason).await
    }
}

#[async_trait]
impl StampDirectory for TimedStore {
    async fn get_stamp(&self, id: &StampId) -> Result<Option<Stamp>, StoreError> {
        self.inner.get_stamp(id).await
    }

    async fn list_stamps(&self) -> Result<Vec<Stamp>, StoreError> {
        self.inner.list_stamps().await
    }
}

#[async_trait]
impl StampRegistry for TimedStore {
    async fn insert_stamp(&self, stamp: &Stamp) -> Result<(), StoreError> {
        self.inner.insert_stamp(stamp).await
    }
    async fn update_stamp(&self, stamp: &Stamp) -> Result<(), StoreError> {
        self.inner.update_stamp(stamp).await
    }
    async fn delete_stamp(&self, id: &StampId) -> Result<bool, StoreError> {
        self.inner.delete_stamp(id).await
    }
    async fn tombstone(
        &self,
        connection: &azs_core::StampConnection,
    ) -> Result<Option<azs_core::stamp::Tombstone>, StoreError> {
        self.inner.tombstone(connection).await
    }
}

#[async_trait]
impl MappingStore for TimedStore {
    async fn set_mapping(&self, mapping: &SubscriptionMapping) -> Result<u64, StoreError> {
        self.inner.set_mapping(mapping).await
    }
    async fn set_mappings(&self, mappings: &[SubscriptionMapping]) -> Result<u64, StoreError> {
        self.inner.set_mappings(mappings).await
    }
    async fn remove_mapping(
        &self,
        stamp: &StampId,
        external_subscription_id: &str,
    ) -> Result<bool, StoreError> {
        self.inner.remove_mapping(stamp, external_subscription_id).await
    }
    async fn list_mappings(&self, stamp: Option<&StampId>) -> Result<Vec<SubscriptionMapping>, StoreError> {
        self.inner.list_mappings(stamp).await
    }
    async fn unmapped(&self, stamp: Option<&StampId>) -> Result<Vec<UnmappedSubscription>, StoreError> {
        self.inner.unmapped(stamp).await
    }
}

#[async_trait]
impl LeaseStore for TimedStore {
    async fn try_acquire(&self, stamp: &StampId, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.inner.try_acquire(stamp, owner, ttl).await
    }
    async fn renew(&self, stamp: &StampId, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.inner.renew(stamp, owner, ttl).await
    }
    async fn release(&self, stamp: &StampId, owner: &str) -> Result<(), StoreError> {
        self.inner.release(stamp, owner).await
    }
}

#[async_trait]
impl StatusReader for TimedStore {
    async fn get_status(&self, stamp: &StampId) -> Result<Option<ProcessingStatus>, StoreError> {
        self.inner.get_status(stamp).await
    }

    async fn list_statuses(&self) -> Result<Vec<ProcessingStatus>, StoreError> {
        self.inner.list_statuses().await
    }
}

#[async_trait]
impl StatusStore for TimedStore {
    async fn record_run_started(&self, stamp: &StampId, started: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.record_run_started(stamp, started).await
    }
    async fn record_run_finished(&self, stamp: &StampId, record: &RunRecord) -> Result<(), StoreError> {
        self.inner.record_run_finished(stamp, record).await
    }
    async fn record_verified(
        &self,
        stamp: &StampId,
        verified: &LastVerified,
        drift: &DriftCounts,
    ) -> Result<(), StoreError> {
        self.inner.record_verified(stamp, verified, drift).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_counts_overlapping_windows_once() {
        let t = stage_time(&[(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (5.5, 5.8)]);
        assert_eq!(t.summed_seconds, 2.0 + 2.0 + 1.0 + 0.3);
        assert!((t.busy_seconds - 4.0).abs() < 1e-9);
    }
}
