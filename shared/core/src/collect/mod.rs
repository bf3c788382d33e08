//! The collection loop: for each enabled stamp, plan the reported windows from its watermark, pull each
//! window, and commit its rows together with the advanced watermark. Stamps run concurrently up to a
//! bound; one stamp's failure is recorded in its status and never stops the others.
//!
//! Flow for one stamp: lease -> status "running" -> credential -> connect (discovery, token) ->
//! for each window: pull pages -> commit rows + watermark (one transaction) -> renew lease ->
//! status with the outcome -> release lease.
//!
//! A window is one reported hour, or, for a stamp more than an hour behind, a catch-up span of up to
//! [`CollectSettings::max_span_hours`] hours pulled in one request chain. The API does not say which
//! hour of a span reported a row, so a span is stored, reprocessed and verified as one window (its
//! rows keyed by the span's start) and never reaches past the newest complete hour. A span that
//! cannot be committed as one (over a pull limit, or holding equal rows that only their reported
//! hours would tell apart) is pulled again hour by hour.
//!
//! One [`Collector`], one room per job, in the order a run meets them:
//!
//! - this file: the settings, the errors, and [`Collector::run`], the fan-out over stamps (a bounded
//!   number at once; a stamp whose task panics is reported failed and its lease freed);
//! - `stamp`: one stamp's run from lease to status, and its session (credential, pinning, connect);
//! - `windows`: the window loop from the watermark to the horizon (spans, the time budget);
//! - `pull`: one window pulled under the lease and the budget, quarantined, committed fenced;
//! - `verify`: re-pull and compare without writing (`verify` and the scheduled verify);
//! - `reprocess`: re-pull and replace collected windows, refusing to shrink them by accident;
//! - `summary`: what a run reports, per stamp and in all.
//!
//! Each room reaches the database only through the narrow port it calls (the `stamps`, `ledger`,
//! `leases` and `statuses` of [`Collector`]); `tests` drives every room through those ports with the
//! in-memory doubles of `doubles`.

mod pull;
mod reprocess;
mod stamp;
mod summary;
mod verify;
mod windows;

#[cfg(test)]
mod doubles;
#[cfg(test)]
mod tests;

pub use reprocess::{ReprocessReport, ReprocessRequest};
pub use summary::{RunSummary, StampSummary};

use crate::audit::AuditedStampRegistry;
use crate::ports::{
    CollectorStore, CommitReceipt, LeaseStore, PullError, SecretStore, StatusStore, StoreError, UsageLedger,
    UsageSource,
};
use crate::stamp::{Stamp, StampId};
use crate::status::{RunOutcome, RunRecord};
use crate::window::ReportedWindow;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{Instrument, info_span, warn};

/// The actor the audit trail names for a change the collector makes (pinning a stamp's login
/// endpoint on first use).
pub const COLLECTOR: &str = "collector";

/// How far back a subscription's stored usage keeps it asked for in per-subscriber mode after the
/// stamp stops listing it: longer than any stamp reports usage late (days) and than a billing month.
pub const SEEN_SUBSCRIPTIONS: chrono::Duration = chrono::Duration::days(35);

#[derive(Debug, Clone)]
pub struct CollectSettings {
    /// How many stamps are collected at once.
    pub concurrency: usize,
    /// How far behind now the last window ends (reported hours need time to settle).
    pub settle_delay: chrono::Duration,
    /// How long a stamp's lease lasts without renewal; renewed after every window and every third of
    /// it while a window is being pulled.
    pub lease_ttl: Duration,
    /// Who we are (this process); every run's lease owner is this plus its own run id, so that two
    /// runs in one process (a warm Lambda, an overlapping timer) never take each other's leases.
    pub owner: String,
    /// Time kept in reserve at the end of the budget for the last commit and status writes.
    pub commit_reserve: Duration,
    /// Most reported hours one window may cover when a stamp is behind (a catch-up span, 1 to
    /// [`crate::window::LONGEST_SPAN_HOURS`]); 1 pulls hour by hour. See [`Collector::collect_windows`].
    pub max_span_hours: u32,
    /// The scheduled verify: once per UTC day per stamp, a run that brought the stamp up to date also
    /// re-pulls the last this-many collected hours (ending at the watermark) without writing, and
    /// records what differs in the stamp's status (`lastVerified`, `drift`). 0 turns it off.
    pub verify_trailing_hours: u32,
    /// Most rows of one window that may go to the quarantine; a window with more fails (nothing of it
    /// is stored, the stamp's status says why) and is pulled again by the next run.
    pub max_quarantined_per_window: u64,
}

impl Default for CollectSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            settle_delay: chrono::Duration::hours(1),
            lease_ttl: Duration::from_secs(600),
            owner: format!("process-{}", uuid::Uuid::new_v4()),
            commit_reserve: Duration::from_secs(10),
            max_span_hours: 1,
            verify_trailing_hours: 0,
            max_quarantined_per_window: DEFAULT_MAX_QUARANTINED_PER_WINDOW,
        }
    }
}

/// [`CollectSettings::max_quarantined_per_window`] unless configured: far above the handful of
/// unholdable rows a healthy stamp ever sent, far below a window's rows.
pub const DEFAULT_MAX_QUARANTINED_PER_WINDOW: u64 = 1_000;

/// One collection run's request.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// Stamps to collect; empty means every enabled stamp.
    pub stamps: Vec<StampId>,
    /// When the platform cuts the run off; no window starts unless it can finish before.
    pub deadline: Option<Instant>,
}

/// Hears about progress (the CLI draws it; the functions log it).
pub trait Progress: Send + Sync {
    fn planned(&self, _stamp: &Stamp, _windows: usize) {}
    fn window_committed(&self, _stamp: &Stamp, _window: ReportedWindow, _receipt: &CommitReceipt) {}
}

/// Progress that goes nowhere.
pub struct Silent;
impl Progress for Silent {}

/// A failure while collecting one stamp, naming the stamp and (when there was one) the window.
#[derive(Debug, thiserror::Error)]
#[error("stamp {stamp}{}: {kind}", window.map(|w| format!(" window {w}")).unwrap_or_default())]
pub struct CollectError {
    pub stamp: StampId,
    pub window: Option<ReportedWindow>,
    pub kind: CollectErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectErrorKind {
    #[error("{0}")]
    Pull(#[from] PullError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("credential: {0}")]
    Credential(String),
    /// The run's time budget ran out while the window was being pulled; nothing of it was committed.
    #[error(
        "the run's time budget ran out while this window was being pulled ({reserve_secs} s are kept for the last writes); nothing of it was committed"
    )]
    TimeBudget { reserve_secs: u64 },
    #[error("lost the stamp's lease to another run; nothing more of this run is committed")]
    LeaseLost,
    #[error("{0}")]
    Invalid(String),
}

/// Runs collections. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Collector {
    /// Stamps as registered; written only to pin a login endpoint on first use.
    stamps: Arc<dyn AuditedStampRegistry>,
    /// Rows, quarantine and watermark: the fenced commit, and what verify and reprocess read back.
    ledger: Arc<dyn UsageLedger>,
    /// One run per stamp at a time.
    leases: Arc<dyn LeaseStore>,
    /// Where each stamp stands: the watermark read, the run's outcome written.
    statuses: Arc<dyn StatusStore>,
    secrets: Arc<dyn SecretStore>,
    source: Arc<dyn UsageSource>,
    settings: CollectSettings,
}

impl Collector {
    /// `store` is the database as the collector sees it (every port but the mappings, which the ledger
    /// applies inside its commit); each room keeps only the part it calls.
    pub fn new(
        store: Arc<dyn CollectorStore>,
        secrets: Arc<dyn SecretStore>,
        source: Arc<dyn UsageSource>,
        settings: CollectSettings,
    ) -> Self {
        Self {
            stamps: store.clone(),
            ledger: store.clone(),
            leases: store.clone(),
            statuses: store,
            secrets,
            source,
            settings,
        }
    }

    pub fn settings(&self) -> &CollectSettings {
        &self.settings
    }

    /// Subscriptions with usage on this stamp in the last [`SEEN_SUBSCRIPTIONS`] (per-subscriber mode
    /// only: all-tenants mode asks for everyone at once).
    async fn recent_subscribers(&self, stamp: &Stamp) -> Result<Vec<String>, StoreError> {
        if stamp.query_mode != crate::stamp::UsageQueryMode::PerSubscriber {
            return Ok(Vec::new());
        }
        self.ledger.subscriptions_seen(&stamp.id, Utc::now() - SEEN_SUBSCRIPTIONS).await
    }

    /// A lease owner for one run (or one reprocess) of this process.
    fn run_owner(&self) -> String {
        format!("{}/run-{}", self.settings.owner, uuid::Uuid::new_v4())
    }

    /// One run of the timer job over the requested (or all enabled) stamps.
    pub async fn run(
        &self,
        request: RunRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<RunSummary, StoreError> {
        let all = self.stamps.list_stamps().await?;
        let stamps: Vec<Stamp> = if request.stamps.is_empty() {
            all.into_iter().filter(|s| s.enabled).collect()
        } else {
            let mut chosen = Vec::new();
            for id in &request.stamps {
                match all.iter().find(|s| &s.id == id) {
                    Some(s) => chosen.push(s.clone()),
                    None => return Err(StoreError::UnknownStamp(id.clone())),
                }
            }
            chosen
        };

        let owner: Arc<str> = self.run_owner().into();
        let permits = Arc::new(tokio::sync::Semaphore::new(self.settings.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        // Which stamp each task collects, so that a task that panicked still gets a (failed) summary.
        let mut spawned = std::collections::HashMap::new();
        for (index, stamp) in stamps.into_iter().enumerate() {
            let who = (index, stamp.id.clone(), stamp.name.clone());
            let this = self.clone();
            let permits = permits.clone();
            let progress = progress.clone();
            let owner = owner.clone();
            let span = info_span!("stamp", stamp_id = %stamp.id, stamp_name = %stamp.name);
            let handle = tasks.spawn(
                async move {
                    let _permit = permits.acquire_owned().await.expect("semaphore never closes");
                    (index, this.collect_stamp(&stamp, &owner, request.deadline, progress.as_ref()).await)
                }
                .instrument(span),
            );
            spawned.insert(handle.id(), who);
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                // A panic in one stamp's task must not take the others down, nor vanish from the
                // summary: the stamp is reported failed, so the invocation fails and alarms fire.
                Err(e) => {
                    warn!(error = %e, "a stamp task ended abnormally");
                    if let Some((index, stamp_id, name)) = spawned.remove(&e.id()) {
                        let error = format!("stamp {stamp_id}: the collection task ended abnormally: {e}");
                        results.push((index, self.record_abnormal_end(stamp_id, name, &owner, error).await));
                    }
                }
            }
        }
        results.sort_by_key(|(i, _)| *i);
        Ok(RunSummary { stamps: results.into_iter().map(|(_, s)| s).collect() })
    }

    /// What is left to do for a stamp whose task panicked: its status says the run failed and why
    /// (instead of "running" until the next run), and its lease is freed for the next run instead of
    /// blocking the stamp until it expires. Committed windows stay committed; the watermark says where
    /// the next run resumes. The task's counts died with it, so the status records none.
    async fn record_abnormal_end(
        &self,
        stamp_id: StampId,
        name: String,
        owner: &str,
        error: String,
    ) -> StampSummary {
        let record = RunRecord {
            outcome: RunOutcome::Failed,
            finished: Utc::now(),
            rows_written: 0,
            unmapped_rows: 0,
            duplicates: 0,
            last_error: Some(error.clone()),
        };
        if let Err(e) = self.statuses.record_run_finished(&stamp_id, &record).await {
            warn!(stamp_id = %stamp_id, error = %e, "could not record the run's status");
        }
        if let Err(e) = self.leases.release(&stamp_id, owner).await {
            warn!(stamp_id = %stamp_id, error = %e, "could not release the lease");
        }
        let watermark = self.statuses.get_status(&stamp_id).await.ok().flatten().map(|s| s.watermark);
        StampSummary { watermark, error: Some(error), ..StampSummary::starting(stamp_id, name) }
    }
}
