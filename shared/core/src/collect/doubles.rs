//! In-memory doubles of the ports the collector calls, for its direct tests: a store that fences a
//! window's commit as every real store must (lease owner, then watermark; the real stores are held to
//! the same rules by `tests/store-conformance`), a secret store, and a scripted stamp whose answers a
//! test changes between runs.

use crate::audit::{Attribution, AuditedStampRegistry};
use crate::ports::{
    CommitReceipt, DiscoveredEndpoints, ExportFilter, LeaseStore, PageRows, PullError, PullSummary,
    QuarantineReader, SecretStore, SecretStoreError, StampDirectory, StampRegistry, StampSession,
    StatusReader, StatusStore, StoreError, StoredUsageRow, UsageLedger, UsageSource, WindowCommit,
    WindowWrite,
};
use crate::quarantine::{QuarantineEntry, RowLimits, TextUnit};
use crate::secret::Secret;
use crate::stamp::{Credential, Stamp, StampConnection, StampId, Tombstone, UsageQueryMode};
use crate::status::{DriftCounts, LastVerified, ProcessingStatus, RunOutcome, RunRecord};
use crate::usage::{Quantity, UsageRow};
use crate::window::ReportedWindow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Limits no test row reaches unless it means to.
pub(super) const ROOMY: RowLimits = RowLimits {
    text_unit: TextUnit::Utf8Bytes,
    subscription_id: 4000,
    meter_id: 4000,
    resource_uri: 4000,
    location: 4000,
    tags: 4000,
    additional_info: 4000,
    quantity_decimals: 12,
    quantity_integer_digits: 26,
};

/// A database in memory: stamps, statuses, leases (no expiry: a test takes one away explicitly), the
/// rows and quarantine of each committed window, and the reprocess log.
pub(super) struct MemoryStore {
    state: Mutex<State>,
    limits: RowLimits,
}

#[derive(Default)]
struct State {
    stamps: BTreeMap<StampId, Stamp>,
    statuses: BTreeMap<StampId, ProcessingStatus>,
    leases: BTreeMap<StampId, String>,
    rows: BTreeMap<(StampId, ReportedWindow), Vec<UsageRow>>,
    quarantine: Vec<QuarantineEntry>,
    reprocess_log: Vec<String>,
    /// Who changed which stamp through the audited writes: (actor, stamp).
    stamp_changes: Vec<(String, StampId)>,
}

impl MemoryStore {
    pub(super) fn new(limits: RowLimits) -> Self {
        Self { state: Mutex::new(State::default()), limits }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("no test panics holding the store")
    }

    /// Another run takes the stamp's lease (its own expired, say, while this one was slow).
    pub(super) fn take_lease(&self, stamp: &StampId, owner: &str) {
        self.state().leases.insert(stamp.clone(), owner.to_owned());
    }

    /// The audited stamp changes made so far, as (actor, stamp).
    pub(super) fn stamp_changes(&self) -> Vec<(String, StampId)> {
        self.state().stamp_changes.clone()
    }

    pub(super) fn lease_holder(&self, stamp: &StampId) -> Option<String> {
        self.state().leases.get(stamp).cloned()
    }

    pub(super) fn status(&self, stamp: &StampId) -> ProcessingStatus {
        self.state().statuses.get(stamp).cloned().expect("a registered stamp")
    }

    pub(super) fn stamp(&self, stamp: &StampId) -> Stamp {
        self.state().stamps.get(stamp).cloned().expect("a registered stamp")
    }

    /// The windows stored for a stamp, each with its rows, in order.
    pub(super) fn windows(&self, stamp: &StampId) -> Vec<(ReportedWindow, Vec<UsageRow>)> {
        let state = self.state();
        state.rows.iter().filter(|((s, _), _)| s == stamp).map(|((_, w), rows)| (*w, rows.clone())).collect()
    }

    pub(super) fn row_count(&self, stamp: &StampId) -> usize {
        self.windows(stamp).iter().map(|(_, rows)| rows.len()).sum()
    }

    /// Changes stored rows behind the collector's back.
    pub(super) fn tamper(
        &self,
        stamp: &StampId,
        window: ReportedWindow,
        change: impl FnOnce(&mut Vec<UsageRow>),
    ) {
        change(self.state().rows.get_mut(&(stamp.clone(), window)).expect("a stored window"));
    }

    pub(super) fn quarantined(&self, stamp: &StampId) -> Vec<QuarantineEntry> {
        self.state().quarantine.iter().filter(|q| &q.stamp_id == stamp).cloned().collect()
    }

    pub(super) fn reprocess_log(&self) -> Vec<String> {
        self.state().reprocess_log.clone()
    }
}

#[async_trait]
impl StampDirectory for MemoryStore {
    async fn get_stamp(&self, id: &StampId) -> Result<Option<Stamp>, StoreError> {
        Ok(self.state().stamps.get(id).cloned())
    }

    async fn list_stamps(&self) -> Result<Vec<Stamp>, StoreError> {
        Ok(self.state().stamps.values().cloned().collect())
    }
}

#[async_trait]
impl StampRegistry for MemoryStore {
    async fn insert_stamp(&self, stamp: &Stamp) -> Result<(), StoreError> {
        let mut state = self.state();
        let status = ProcessingStatus {
            stamp_id: stamp.id.clone(),
            watermark: stamp.collect_from,
            last_run_started: None,
            last_run_finished: None,
            outcome: RunOutcome::Pending,
            rows_written: 0,
            unmapped_rows: 0,
            quarantined_rows: 0,
            duplicate_rows: 0,
            last_verified: None,
            drift: None,
            last_error: None,
        };
        state.statuses.insert(stamp.id.clone(), status);
        state.stamps.insert(stamp.id.clone(), stamp.clone());
        Ok(())
    }

    async fn update_stamp(&self, stamp: &Stamp) -> Result<(), StoreError> {
        match self.state().stamps.get_mut(&stamp.id) {
            Some(stored) => {
                *stored = stamp.clone();
                Ok(())
            }
            None => Err(StoreError::UnknownStamp(stamp.id.clone())),
        }
    }

    async fn delete_stamp(&self, id: &StampId) -> Result<bool, StoreError> {
        let mut state = self.state();
        state.statuses.remove(id);
        state.leases.remove(id);
        Ok(state.stamps.remove(id).is_some())
    }

    async fn tombstone(&self, _: &StampConnection) -> Result<Option<Tombstone>, StoreError> {
        Ok(None)
    }
}

/// The audited writes as the plain ones, with who made them kept for the tests (a store keeps the
/// record in the change's transaction; here both happen under the one lock).
#[async_trait]
impl AuditedStampRegistry for MemoryStore {
    async fn register_stamp(&self, stamp: &Stamp, by: &Attribution) -> Result<(), StoreError> {
        self.insert_stamp(stamp).await?;
        self.state().stamp_changes.push((by.actor.to_string(), stamp.id.clone()));
        Ok(())
    }

    async fn change_stamp(&self, stamp: &Stamp, _: bool, by: &Attribution) -> Result<(), StoreError> {
        self.update_stamp(stamp).await?;
        self.state().stamp_changes.push((by.actor.to_string(), stamp.id.clone()));
        Ok(())
    }

    async fn remove_stamp(&self, id: &StampId, by: &Attribution) -> Result<bool, StoreError> {
        let removed = self.delete_stamp(id).await?;
        self.state().stamp_changes.push((by.actor.to_string(), id.clone()));
        Ok(removed)
    }
}

#[async_trait]
impl QuarantineReader for MemoryStore {
    async fn quarantine(&self, stamp: Option<&StampId>) -> Result<Vec<QuarantineEntry>, StoreError> {
        let state = self.state();
        Ok(state.quarantine.iter().filter(|q| stamp.is_none_or(|s| &q.stamp_id == s)).cloned().collect())
    }
}

#[async_trait]
impl UsageLedger for MemoryStore {
    fn row_limits(&self) -> RowLimits {
        self.limits
    }

    async fn commit_window(&self, commit: WindowCommit<'_>) -> Result<CommitReceipt, StoreError> {
        let mut state = self.state();
        let fenced = |reason: &str| StoreError::Fenced {
            stamp: commit.stamp.clone(),
            window: commit.window,
            reason: reason.to_owned(),
        };
        let Some(watermark) = state.statuses.get(commit.stamp).map(|s| s.watermark) else {
            return Err(StoreError::UnknownStamp(commit.stamp.clone()));
        };
        // The fence, checked inside the "transaction" (under the lock) before anything is written.
        if state.leases.get(commit.stamp).map(String::as_str) != Some(commit.lease_owner) {
            return Err(fenced("another run holds the stamp's lease"));
        }
        match commit.write {
            WindowWrite::Advance if watermark != commit.window.start => {
                return Err(fenced("the watermark is not at the window's start"));
            }
            WindowWrite::Replace { .. } if commit.window.end > watermark => {
                return Err(fenced("the window is not collected yet"));
            }
            _ => {}
        }
        let mut keys = HashSet::new();
        let mut rows = Vec::with_capacity(commit.rows.len());
        let mut duplicates = 0;
        for row in commit.rows {
            if keys.insert(row.key()) { rows.push(row) } else { duplicates += 1 }
        }
        let written = rows.len() as u64;
        let key = (commit.stamp.clone(), commit.window);
        state.rows.insert(key, rows);
        state.quarantine.retain(|q| !(&q.stamp_id == commit.stamp && q.window == commit.window));
        let quarantined = commit.quarantined.len() as u64;
        for q in commit.quarantined {
            state.quarantine.push(QuarantineEntry {
                stamp_id: commit.stamp.clone(),
                window: commit.window,
                field: q.field,
                reason: q.reason,
                raw: q.raw,
                quarantined_at: Utc::now(),
            });
        }
        if commit.write == WindowWrite::Advance {
            let status = state.statuses.get_mut(commit.stamp).expect("checked above");
            status.watermark = commit.window.end;
            status.quarantined_rows += quarantined;
        }
        Ok(CommitReceipt { rows_written: written, duplicates, unmapped_rows: written, quarantined })
    }

    async fn export_rows(
        &self,
        filter: &ExportFilter,
        sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
    ) -> Result<u64, StoreError> {
        let rows: Vec<StoredUsageRow> = {
            let state = self.state();
            state
                .rows
                .iter()
                .filter(|((stamp, window), _)| {
                    (filter.stamps.is_empty() || filter.stamps.contains(stamp))
                        && filter.from.is_none_or(|from| window.start >= from)
                        && filter.to.is_none_or(|to| window.start < to)
                })
                .flat_map(|((stamp, window), rows)| {
                    rows.iter().map(|row| StoredUsageRow {
                        stamp_id: stamp.clone(),
                        window: *window,
                        billing_subscription_id: None,
                        row: row.clone(),
                    })
                })
                .collect()
        };
        let count = rows.len() as u64;
        for row in rows {
            sink(row).map_err(StoreError::Other)?;
        }
        Ok(count)
    }

    async fn subscriptions_seen(
        &self,
        stamp: &StampId,
        since: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let state = self.state();
        let seen: std::collections::BTreeSet<String> = state
            .rows
            .iter()
            .filter(|((s, w), _)| s == stamp && w.start >= since)
            .flat_map(|(_, rows)| rows.iter().map(|r| r.subscription_id.to_lowercase()))
            .collect();
        Ok(seen.into_iter().collect())
    }

    async fn record_reprocess(
        &self,
        stamp: &StampId,
        window: ReportedWindow,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.state().reprocess_log.push(format!("{stamp} {window} {reason}"));
        Ok(())
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn try_acquire(&self, stamp: &StampId, owner: &str, _: Duration) -> Result<bool, StoreError> {
        let mut state = self.state();
        match state.leases.get(stamp) {
            Some(holder) if holder != owner => Ok(false),
            _ => {
                state.leases.insert(stamp.clone(), owner.to_owned());
                Ok(true)
            }
        }
    }

    async fn renew(&self, stamp: &StampId, owner: &str, _: Duration) -> Result<bool, StoreError> {
        Ok(self.state().leases.get(stamp).map(String::as_str) == Some(owner))
    }

    async fn release(&self, stamp: &StampId, owner: &str) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.leases.get(stamp).map(String::as_str) == Some(owner) {
            state.leases.remove(stamp);
        }
        Ok(())
    }
}

#[async_trait]
impl StatusReader for MemoryStore {
    async fn get_status(&self, stamp: &StampId) -> Result<Option<ProcessingStatus>, StoreError> {
        Ok(self.state().statuses.get(stamp).cloned())
    }

    async fn list_statuses(&self) -> Result<Vec<ProcessingStatus>, StoreError> {
        Ok(self.state().statuses.values().cloned().collect())
    }
}

#[async_trait]
impl StatusStore for MemoryStore {
    async fn record_run_started(&self, stamp: &StampId, started: DateTime<Utc>) -> Result<(), StoreError> {
        let mut state = self.state();
        let status = state.statuses.get_mut(stamp).ok_or_else(|| StoreError::UnknownStamp(stamp.clone()))?;
        status.outcome = RunOutcome::Running;
        status.last_run_started = Some(started);
        Ok(())
    }

    async fn record_run_finished(&self, stamp: &StampId, record: &RunRecord) -> Result<(), StoreError> {
        let mut state = self.state();
        let status = state.statuses.get_mut(stamp).ok_or_else(|| StoreError::UnknownStamp(stamp.clone()))?;
        status.outcome = record.outcome;
        status.last_run_finished = Some(record.finished);
        status.rows_written = record.rows_written;
        status.unmapped_rows = record.unmapped_rows;
        status.duplicate_rows += record.duplicates;
        status.last_error = record.last_error.clone();
        Ok(())
    }

    async fn record_verified(
        &self,
        stamp: &StampId,
        verified: &LastVerified,
        drift: &DriftCounts,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let status = state.statuses.get_mut(stamp).ok_or_else(|| StoreError::UnknownStamp(stamp.clone()))?;
        status.last_verified = Some(*verified);
        status.drift = Some(*drift);
        Ok(())
    }
}

/// Secrets in memory.
#[derive(Default)]
pub(super) struct MemorySecrets {
    secrets: Mutex<HashMap<String, Secret>>,
}

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn put_secret(&self, name: &str, value: &Secret) -> Result<(), SecretStoreError> {
        self.secrets.lock().unwrap().insert(name.to_owned(), value.clone());
        Ok(())
    }

    async fn get_secret(&self, name: &str) -> Result<Option<Secret>, SecretStoreError> {
        Ok(self.secrets.lock().unwrap().get(name).cloned())
    }

    async fn delete_secret(&self, name: &str) -> Result<(), SecretStoreError> {
        self.secrets.lock().unwrap().remove(name);
        Ok(())
    }

    fn credential_name(&self, stamp: &StampId) -> String {
        format!("credential-{stamp}")
    }
}

/// A hook a test runs as a window's pull starts.
type OnPull = Box<dyn FnMut(&StampId, ReportedWindow) + Send>;

/// What the scripted stamps report, changed by a test between (or during) runs: every hour, one page
/// of `rows_per_hour` rows of one tenant subscription, each with `quantity`.
pub(super) struct Script {
    pub(super) rows_per_hour: AtomicUsize,
    pub(super) quantity: Mutex<Quantity>,
    /// Of each hour's rows, how many carry a resource URI of 100 characters.
    pub(super) long_uri_rows: AtomicUsize,
    /// Each page starts with the previous page's last row (a known paging artefact of stamps).
    pub(super) repeat_across_pages: AtomicBool,
    /// How long each pull takes before its first page.
    pub(super) pull_delay: Mutex<Duration>,
    pub(super) panics_for: Mutex<Option<StampId>>,
    pub(super) on_pull: Mutex<Option<OnPull>>,
    /// Every window pulled, in order.
    pub(super) pulls: Mutex<Vec<ReportedWindow>>,
    pub(super) connects: AtomicUsize,
    pub(super) discoveries: AtomicUsize,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            rows_per_hour: AtomicUsize::new(3),
            quantity: Mutex::new(Quantity::ONE),
            long_uri_rows: AtomicUsize::new(0),
            repeat_across_pages: AtomicBool::new(false),
            pull_delay: Mutex::new(Duration::ZERO),
            panics_for: Mutex::new(None),
            on_pull: Mutex::new(None),
            pulls: Mutex::new(Vec::new()),
            connects: AtomicUsize::new(0),
            discoveries: AtomicUsize::new(0),
        }
    }
}

impl Script {
    /// What the stamp reports for one hour now.
    pub(super) fn hour_rows(&self, hour: ReportedWindow) -> Vec<UsageRow> {
        let quantity = *self.quantity.lock().unwrap();
        let long = self.long_uri_rows.load(Ordering::SeqCst);
        (0..self.rows_per_hour.load(Ordering::SeqCst) + long)
            .map(|i| UsageRow {
                subscription_id: "5e3a1f0c-0000-4000-8000-00000000000a".into(),
                meter_id: "6DAB500F-A4FD-49C4-956D-229BB9C8C793".into(),
                usage_start: hour.start,
                usage_end: hour.end,
                quantity,
                resource_uri: if i < long {
                    format!("/vm-{i}-{}", "x".repeat(94))
                } else {
                    format!("/vm-{i}")
                },
                location: "local".into(),
                tags: None,
                additional_info: None,
            })
            .collect()
    }

    pub(super) fn set_on_pull(&self, hook: impl FnMut(&StampId, ReportedWindow) + Send + 'static) {
        *self.on_pull.lock().unwrap() = Some(Box::new(hook));
    }

    pub(super) fn pulls(&self) -> Vec<ReportedWindow> {
        self.pulls.lock().unwrap().clone()
    }
}

/// Stamps that answer from a [`Script`].
pub(super) struct ScriptedSource(pub(super) Arc<Script>);

const ENDPOINTS: fn() -> DiscoveredEndpoints = || DiscoveredEndpoints {
    audience: "https://management.stamp.example/".into(),
    login_endpoint: "https://login.stamp.example/".into(),
    is_adfs: false,
    token_endpoint: "https://login.stamp.example/tenant/oauth2/token".into(),
};

#[async_trait]
impl UsageSource for ScriptedSource {
    async fn connect(&self, stamp: &Stamp, _: &Credential) -> Result<Box<dyn StampSession>, PullError> {
        self.0.connects.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(ScriptedSession {
            script: self.0.clone(),
            stamp: stamp.id.clone(),
            endpoints: ENDPOINTS(),
        }))
    }

    async fn discover(&self, _: &Stamp) -> Result<DiscoveredEndpoints, PullError> {
        self.0.discoveries.fetch_add(1, Ordering::SeqCst);
        Ok(ENDPOINTS())
    }
}

struct ScriptedSession {
    script: Arc<Script>,
    stamp: StampId,
    endpoints: DiscoveredEndpoints,
}

#[async_trait]
impl StampSession for ScriptedSession {
    fn endpoints(&self) -> &DiscoveredEndpoints {
        &self.endpoints
    }

    async fn pull_pages(
        &self,
        window: ReportedWindow,
        _: &[String],
        on_page: &mut (dyn for<'p> FnMut(PageRows<'p>) + Send),
    ) -> Result<PullSummary, PullError> {
        self.script.pulls.lock().unwrap().push(window);
        if let Some(hook) = self.script.on_pull.lock().unwrap().as_mut() {
            hook(&self.stamp, window);
        }
        if self.script.panics_for.lock().unwrap().as_ref() == Some(&self.stamp) {
            panic!("a bug in the stamp client");
        }
        let delay = *self.script.pull_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let repeat = self.script.repeat_across_pages.load(Ordering::SeqCst);
        let (mut pages, mut rows, mut last) = (0, 0, None::<UsageRow>);
        for hour in window.split_hours() {
            let mut page = self.script.hour_rows(hour);
            let next_last = page.last().cloned();
            if let Some(previous) = last.filter(|_| repeat) {
                page.insert(0, previous);
            }
            last = next_last;
            pages += 1;
            rows += page.len() as u64;
            on_page(PageRows { rows: page, unreadable: Vec::new(), verbatim: &|_| None });
        }
        Ok(PullSummary { pages, rows, retries: 0 })
    }
}

/// A stamp `behind` hours behind the horizon of the default settle delay, its login endpoint pinned.
pub(super) fn stamp(name: &str, behind: i64) -> Stamp {
    let horizon = crate::window::horizon(Utc::now(), chrono::Duration::hours(1));
    Stamp {
        id: StampId::new_random(),
        name: name.into(),
        connection: StampConnection {
            admin_subscription_id: "0f2a1e8c-0000-4000-8000-000000000001".into(),
            tenant_id: "0f2a1e8c-0000-4000-8000-000000000002".into(),
            application_id: "0f2a1e8c-0000-4000-8000-000000000003".into(),
            certificate_thumbprint: None,
            admin_arm_endpoint: format!("https://adminmanagement.{name}.stamp.example"),
            token_request_resource_url: Some(ENDPOINTS().audience),
            authority_endpoint_url: Some(ENDPOINTS().login_endpoint),
            is_adfs: false,
            ca_certificate_pem: None,
        },
        credential_secret_name: format!("credential-{name}"),
        enabled: true,
        collect_from: horizon - chrono::Duration::hours(behind),
        query_mode: UsageQueryMode::AllTenants,
        created_at: Utc::now(),
    }
}
