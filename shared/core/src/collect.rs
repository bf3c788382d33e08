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

use crate::drift::{HourComparison, HourDrift};
use crate::ports::{
    CommitReceipt, ExportFilter, LimitExceeded, PageRows, PullError, PullStage, PullSummary, SecretStore,
    StampSession, Store, StoreError, UsageSource, WindowCommit, WindowWrite,
};
use crate::quarantine::{QuarantinedRow, RowLimits, reconstructed_json};
use crate::stamp::{Credential, Stamp, StampId};
use crate::status::{DriftCounts, LastVerified, RunOutcome, RunRecord};
use crate::usage::{RowKey, UsageRow};
use crate::window::{self, ReportedWindow};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

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

/// What one run did for one stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StampSummary {
    pub stamp_id: StampId,
    pub name: String,
    pub outcome: RunOutcome,
    pub windows_planned: usize,
    pub windows_committed: usize,
    pub rows_written: u64,
    pub duplicates: u64,
    pub unmapped_rows: u64,
    /// Rows this run put in quarantine (the store cannot hold them; see [`crate::quarantine`]).
    pub quarantined: u64,
    pub watermark: Option<DateTime<Utc>>,
    /// What this run's scheduled verify found; `None` when it verified nothing (not due, off, out of
    /// budget, or the verify itself failed: see the log).
    pub drift: Option<DriftCounts>,
    pub error: Option<String>,
    /// The run's time budget ran out in the middle of a window (the error says which): nothing of that
    /// window was committed, and a run with a fresh budget can still complete it.
    #[serde(skip)]
    pub budget_ran_out: bool,
}

impl StampSummary {
    /// Before anything is done: failed until shown otherwise, so that a summary cut short says so.
    fn starting(stamp_id: StampId, name: String) -> Self {
        Self {
            stamp_id,
            name,
            outcome: RunOutcome::Failed,
            windows_planned: 0,
            windows_committed: 0,
            rows_written: 0,
            duplicates: 0,
            unmapped_rows: 0,
            quarantined: 0,
            watermark: None,
            drift: None,
            error: None,
            budget_ran_out: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub stamps: Vec<StampSummary>,
}

impl RunSummary {
    pub fn failed(&self) -> impl Iterator<Item = &StampSummary> {
        self.stamps.iter().filter(|s| s.outcome == RunOutcome::Failed)
    }

    pub fn any_failed(&self) -> bool {
        self.failed().next().is_some()
    }

    pub fn rows_written(&self) -> u64 {
        self.stamps.iter().map(|s| s.rows_written).sum()
    }

    pub fn quarantined(&self) -> u64 {
        self.stamps.iter().map(|s| s.quarantined).sum()
    }
}

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
    store: Arc<dyn Store>,
    secrets: Arc<dyn SecretStore>,
    source: Arc<dyn UsageSource>,
    settings: CollectSettings,
}

impl Collector {
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<dyn SecretStore>,
        source: Arc<dyn UsageSource>,
        settings: CollectSettings,
    ) -> Self {
        Self { store, secrets, source, settings }
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
        self.store.subscriptions_seen(&stamp.id, Utc::now() - SEEN_SUBSCRIPTIONS).await
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
        let all = self.store.list_stamps().await?;
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
        if let Err(e) = self.store.record_run_finished(&stamp_id, &record).await {
            warn!(stamp_id = %stamp_id, error = %e, "could not record the run's status");
        }
        if let Err(e) = self.store.release(&stamp_id, owner).await {
            warn!(stamp_id = %stamp_id, error = %e, "could not release the lease");
        }
        let watermark = self.store.get_status(&stamp_id).await.ok().flatten().map(|s| s.watermark);
        StampSummary { watermark, error: Some(error), ..StampSummary::starting(stamp_id, name) }
    }

    /// Collects one stamp from its watermark; never returns an error: failures go into the summary and
    /// the stamp's status.
    async fn collect_stamp(
        &self,
        stamp: &Stamp,
        owner: &str,
        deadline: Option<Instant>,
        progress: &dyn Progress,
    ) -> StampSummary {
        let mut summary = StampSummary::starting(stamp.id.clone(), stamp.name.clone());
        match self.store.try_acquire(&stamp.id, owner, self.settings.lease_ttl).await {
            Ok(true) => {}
            Ok(false) => {
                info!("another run holds this stamp's lease; skipping it");
                summary.outcome = RunOutcome::Skipped;
                summary.watermark =
                    self.store.get_status(&stamp.id).await.ok().flatten().map(|s| s.watermark);
                return summary;
            }
            Err(e) => {
                summary.error = Some(error_text(stamp, None, e.into()));
                return summary;
            }
        }

        let started = Utc::now();
        let result = match self.store.record_run_started(&stamp.id, started).await {
            Ok(()) => self.collect_windows(stamp, owner, deadline, progress, &mut summary).await,
            Err(e) => Err(CollectError { stamp: stamp.id.clone(), window: None, kind: e.into() }),
        };
        summary.outcome = match &result {
            Ok(outcome) => *outcome,
            Err(e) => {
                warn!(window = ?e.window.map(|w| w.to_string()), error = %e, "stamp failed");
                summary.error = Some(e.to_string());
                summary.budget_ran_out = matches!(e.kind, CollectErrorKind::TimeBudget { .. });
                RunOutcome::Failed
            }
        };
        // Only a stamp brought up to date is verified: its trailing hours are all collected.
        if summary.outcome == RunOutcome::Succeeded {
            summary.drift = self.scheduled_verify(stamp, deadline).await;
        }
        let record = RunRecord {
            outcome: summary.outcome,
            finished: Utc::now(),
            rows_written: summary.rows_written,
            unmapped_rows: summary.unmapped_rows,
            duplicates: summary.duplicates,
            last_error: summary.error.clone(),
        };
        if let Err(e) = self.store.record_run_finished(&stamp.id, &record).await {
            warn!(error = %e, "could not record the run's status");
            summary.error.get_or_insert_with(|| format!("stamp {}: recording status: {e}", stamp.id));
        }
        summary.watermark = self.store.get_status(&stamp.id).await.ok().flatten().map(|s| s.watermark);
        if let Err(e) = self.store.release(&stamp.id, owner).await {
            // The lease expires on its own; the next run only waits for it.
            warn!(error = %e, "could not release the lease");
        }
        info!(outcome = %summary.outcome, windows = summary.windows_committed, rows = summary.rows_written, "stamp done");
        summary
    }

    /// The scheduled verify (see [`CollectSettings::verify_trailing_hours`]): when due, compares the
    /// trailing collected hours with what the stamp reports now and records the outcome in the status.
    /// It writes no rows and never fails the run: cut off by the run's budget or failing, it is logged
    /// and left for a later run (the status keeps the previous outcome, so it stays due).
    async fn scheduled_verify(&self, stamp: &Stamp, deadline: Option<Instant>) -> Option<DriftCounts> {
        let trailing = self.settings.verify_trailing_hours;
        if trailing == 0 {
            return None;
        }
        let status = self.store.get_status(&stamp.id).await.ok().flatten()?;
        let now = Utc::now();
        let today = now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
        if status.last_verified.is_some_and(|v| v.at >= today) {
            return None;
        }
        let end = status.watermark;
        let start = (end - chrono::Duration::hours(i64::from(trailing))).max(stamp.collect_from);
        if start >= end {
            return None;
        }
        let range = ReportedWindow { start, end };
        let compared = async {
            // Catch-up spans the range cuts are compared whole, as `verify` does.
            let windows = self.covering_windows(&stamp.id, range).await?;
            let range = widened(range, &windows);
            Ok::<_, CollectError>((range, self.compare_windows(stamp, range, &windows).await?))
        }
        .instrument(info_span!("verify", range = %range));
        let compared = match deadline {
            None => compared.await,
            Some(deadline) => {
                let cutoff = deadline.checked_sub(self.settings.commit_reserve).unwrap_or(deadline);
                match tokio::time::timeout_at(cutoff, compared).await {
                    Ok(result) => result,
                    Err(_) => {
                        info!(range = %range, "the run's time budget is too short for today's verify; a later run does it");
                        return None;
                    }
                }
            }
        };
        let (range, hours) = match compared {
            Ok(compared) => compared,
            Err(e) => {
                warn!(range = %range, error = %e, "the scheduled verify failed; a later run tries again");
                return None;
            }
        };
        let drift = DriftCounts::of(&hours);
        if drift.total() > 0 {
            warn!(range = %range, missing = drift.missing, extra = drift.extra, changed = drift.changed, "stored rows differ from what the stamp reports");
        } else {
            info!(range = %range, "verified: stored rows equal what the stamp reports");
        }
        let verified = LastVerified { at: now, range };
        if let Err(e) = self.store.record_verified(&stamp.id, &verified, &drift).await {
            warn!(error = %e, "could not record the verify's outcome");
        }
        Some(drift)
    }

    async fn collect_windows(
        &self,
        stamp: &Stamp,
        owner: &str,
        deadline: Option<Instant>,
        progress: &dyn Progress,
        summary: &mut StampSummary,
    ) -> Result<RunOutcome, CollectError> {
        let fail = |window: Option<ReportedWindow>, kind: CollectErrorKind| CollectError {
            stamp: stamp.id.clone(),
            window,
            kind,
        };
        let status = self
            .store
            .get_status(&stamp.id)
            .await
            .map_err(|e| fail(None, e.into()))?
            .ok_or_else(|| fail(None, StoreError::UnknownStamp(stamp.id.clone()).into()))?;
        let horizon = window::horizon(Utc::now(), self.settings.settle_delay);
        let max_span = self.settings.max_span_hours.clamp(1, window::LONGEST_SPAN_HOURS);
        let behind = if horizon > status.watermark { (horizon - status.watermark).num_hours() } else { 0 };
        let planned = usize::try_from(behind).unwrap_or(0).div_ceil(max_span as usize);
        summary.windows_planned = planned;
        progress.planned(stamp, planned);
        if planned == 0 {
            return Ok(RunOutcome::Succeeded);
        }

        let session = self.open_session(stamp).await.map_err(|kind| fail(None, kind))?;
        let also = self.recent_subscribers(stamp).await.map_err(|e| fail(None, e.into()))?;
        // The slowest committed hour of this run (a window's time over its hours): what the budget
        // check expects the next window to take per hour, twice over for safety.
        let mut slowest_hour: Option<Duration> = None;
        let mut rows_hint = 0;
        // Hours before this are pulled one at a time: a span that could not be committed as one (see
        // `SpanRefused`) is pulled again hour by hour, as without spans.
        let mut hourly_until = status.watermark;
        let mut start = status.watermark;
        while let Some(mut window) = window::next_window(start, horizon, max_span) {
            if window.start < hourly_until {
                window = ReportedWindow::hour(window.start);
            }
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                let reserve = self.settings.commit_reserve;
                let Some(hours) = hours_that_fit(left, reserve, slowest_hour, window.hours()) else {
                    info!(window = %window, "time budget nearly spent; stopping before this window");
                    return Ok(RunOutcome::Partial);
                };
                window = ReportedWindow { end: window.start + chrono::Duration::hours(hours), ..window };
            }
            let began = Instant::now();
            let pull = Pull { stamp, owner, deadline, write: WindowWrite::Advance, also: &also };
            let receipt = match self
                .pull_and_commit(&pull, session.as_ref(), window, &mut rows_hint)
                .instrument(info_span!("window", window = %window))
                .await
            {
                Ok(receipt) => receipt,
                Err(WindowFailure::SpanRefused(refusal)) => {
                    warn!(window = %window, reason = %refusal.why, "the span is pulled again hour by hour");
                    hourly_until = if refusal.stamp_repeats_pages { horizon } else { window.end };
                    continue;
                }
                Err(WindowFailure::Failed(kind)) => return Err(fail(Some(window), kind)),
            };
            let per_hour = began.elapsed() / u32::try_from(window.hours()).unwrap_or(1).max(1);
            slowest_hour = Some(slowest_hour.map_or(per_hour, |s| s.max(per_hour)));
            summary.windows_committed += 1;
            summary.rows_written += receipt.rows_written;
            summary.duplicates += receipt.duplicates;
            summary.unmapped_rows += receipt.unmapped_rows;
            summary.quarantined += receipt.quarantined;
            progress.window_committed(stamp, window, &receipt);
            self.renew_lease(&stamp.id, owner).await.map_err(|kind| fail(Some(window), kind))?;
            start = window.end;
        }
        Ok(RunOutcome::Succeeded)
    }

    async fn open_session(&self, stamp: &Stamp) -> Result<Box<dyn StampSession>, CollectErrorKind> {
        let pinned;
        let stamp = if stamp.connection.is_pinned() {
            stamp
        } else {
            pinned = self.pin(stamp).await?;
            &pinned
        };
        let secret = self
            .secrets
            .get_secret(&stamp.credential_secret_name)
            .await
            .map_err(|e| CollectErrorKind::Credential(e.to_string()))?
            .ok_or_else(|| {
                CollectErrorKind::Credential(format!(
                    "secret {:?} is not in the secret store",
                    stamp.credential_secret_name
                ))
            })?;
        // A document bound to another stamp is never sent (unbound ones predate binding: see
        // `Credential::bound_endpoint`).
        if !Credential::document_fits(&secret, &stamp.connection.admin_arm_endpoint, true) {
            return Err(CollectErrorKind::Credential(format!(
                "secret {:?} holds a credential provisioned for another adminArmEndpoint; nothing was sent",
                stamp.credential_secret_name
            )));
        }
        let credential = Credential::from_secret(&stamp.credential_secret_name, &secret)
            .map_err(|e| CollectErrorKind::Credential(e.to_string()))?;
        Ok(self.source.connect(stamp, &credential).await?)
    }

    /// A stamp stored before its login endpoint was known (registered without verification while it
    /// could not be reached, or before registration pinned it) is pinned on first use, by discovery
    /// alone (no credential is sent), before its credential goes anywhere: from then on its metadata
    /// cannot move the login host. Written only if nobody changed the stamp meanwhile.
    async fn pin(&self, stamp: &Stamp) -> Result<Stamp, CollectErrorKind> {
        let endpoints = self.source.discover(stamp).await?;
        let mut pinned = stamp.clone();
        pinned.connection.pin(&endpoints.login_endpoint, &endpoints.audience);
        if self.store.get_stamp(&stamp.id).await?.as_ref() == Some(stamp) {
            // A change like any other: on record, under the collector's name.
            let by = crate::audit::Attribution::now(crate::audit::Actor::new(COLLECTOR));
            self.store.change_stamp(&pinned, false, &by).await?;
            info!(login_endpoint = %endpoints.login_endpoint, "login endpoint pinned on first use");
        }
        Ok(pinned)
    }

    /// Extends the run's lease on the stamp; an error when another run has taken it.
    async fn renew_lease(&self, stamp: &StampId, owner: &str) -> Result<(), CollectErrorKind> {
        match self.store.renew(stamp, owner, self.settings.lease_ttl).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(CollectErrorKind::LeaseLost),
            Err(e) => Err(e.into()),
        }
    }

    /// Drives one window's pull while keeping the stamp's lease (renewed every third of its time to
    /// live, so a long pull never lets it lapse to another run) and watching the run's time budget (a
    /// pull still going when only the commit reserve is left is abandoned: dropping it drops its rows).
    async fn pull_under_lease(
        &self,
        pull: &Pull<'_>,
        work: impl std::future::Future<Output = Result<PullSummary, PullError>>,
    ) -> Result<PullSummary, CollectErrorKind> {
        tokio::pin!(work);
        let every = (self.settings.lease_ttl / 3).max(Duration::from_millis(50));
        let mut renew_at = Instant::now() + every;
        let cutoff = pull.deadline.map(|d| d.checked_sub(self.settings.commit_reserve).unwrap_or(d));
        loop {
            tokio::select! {
                done = &mut work => return Ok(done?),
                _ = tokio::time::sleep_until(renew_at) => {
                    self.renew_lease(&pull.stamp.id, pull.owner).await?;
                    renew_at = Instant::now() + every;
                }
                _ = tokio::time::sleep_until(cutoff.unwrap_or(renew_at)), if cutoff.is_some() => {
                    return Err(CollectErrorKind::TimeBudget {
                        reserve_secs: self.settings.commit_reserve.as_secs(),
                    });
                }
            }
        }
    }

    /// Pulls one window of a collection and commits it with the advanced watermark. A span (more
    /// than one hour) that cannot be committed as one is refused, not failed: the caller pulls its
    /// hours one by one instead, so a span never stops a stamp that hourly windows would not.
    async fn pull_and_commit(
        &self,
        pull: &Pull<'_>,
        session: &dyn StampSession,
        window: ReportedWindow,
        rows_hint: &mut usize,
    ) -> Result<CommitReceipt, WindowFailure> {
        // One window is buffered so that its rows and the watermark commit together; memory is
        // bounded by the largest window (and by the pull's row limit, which applies to a span as to
        // an hour), not by how many hours a run covers. Consecutive windows are about the same size:
        // reserving the last one's row count spares growing the buffer by doubling (a copy each time,
        // and up to twice the room).
        let span = window.hours() > 1;
        let (rows, pulled) = match self.pull_rows(pull, session, window, rows_hint, span).await {
            // The span is over a pull limit (rows, pages, bytes): its hours may each be within them.
            Err(CollectErrorKind::Pull(e)) if span && e.stage == PullStage::Limit => {
                return Err(WindowFailure::SpanRefused(SpanRefusal {
                    why: e.to_string(),
                    stamp_repeats_pages: false,
                }));
            }
            other => other?,
        };
        if span && rows.equal_rows > 0 {
            return Err(WindowFailure::SpanRefused(SpanRefusal {
                why: format!(
                    "{} row(s) of the span equal another of its rows ({} of them where a page repeats the \
                     one before); only the reported hour tells a late report from its on-time twin, and \
                     a span's rows do not carry it",
                    rows.equal_rows, rows.boundary_repeats
                ),
                stamp_repeats_pages: rows.boundary_repeats > 0,
            }));
        }
        Ok(self.commit_rows(pull, window, rows, pulled).await?)
    }

    /// One window's rows, pulled under the run's lease and budget (see [`Self::pull_under_lease`]).
    async fn pull_rows(
        &self,
        pull: &Pull<'_>,
        session: &dyn StampSession,
        window: ReportedWindow,
        rows_hint: &mut usize,
        watch_repeats: bool,
    ) -> Result<(PulledWindow, PullSummary), CollectErrorKind> {
        let mut pulled_window = PulledWindow::new(self.store.row_limits(), *rows_hint);
        pulled_window.max_quarantined = self.settings.max_quarantined_per_window;
        pulled_window.watch_repeats = watch_repeats;
        let pulled = self
            .pull_under_lease(
                pull,
                session.pull_pages(window, pull.also, &mut |page| pulled_window.take(page)),
            )
            .await?;
        *rows_hint = pulled_window.rows.len();
        let limit = self.settings.max_quarantined_per_window;
        if pulled_window.quarantine_overflow > 0 {
            let rows = pulled_window.quarantined.len() as u64 + pulled_window.quarantine_overflow;
            return Err(PullError::limit(LimitExceeded::Quarantined { rows, limit }).into());
        }
        Ok((pulled_window, pulled))
    }

    async fn commit_rows(
        &self,
        pull: &Pull<'_>,
        window: ReportedWindow,
        rows: PulledWindow,
        pulled: PullSummary,
    ) -> Result<CommitReceipt, CollectErrorKind> {
        if !rows.quarantined.is_empty() {
            for q in &rows.quarantined {
                warn!(reason = %q.reason, "a row the store cannot hold is quarantined with its window");
            }
        }
        let receipt = self
            .store
            .commit_window(WindowCommit {
                stamp: &pull.stamp.id,
                window,
                lease_owner: pull.owner,
                write: pull.write,
                rows: rows.rows,
                quarantined: rows.quarantined,
            })
            .await?;
        info!(
            pages = pulled.pages,
            rows = pulled.rows,
            retries = pulled.retries,
            written = receipt.rows_written,
            duplicates = receipt.duplicates,
            unmapped = receipt.unmapped_rows,
            quarantined = receipt.quarantined,
            "window committed"
        );
        Ok(receipt)
    }

    /// Re-pulls `range` (already collected: it must end at or before the watermark) and replaces the
    /// stored rows window by window: hour by hour, except that an hour collected in a catch-up span is
    /// handled with its whole span (the range is widened to it; see [`window::covering_windows`]).
    /// Each window is swapped atomically (its old rows are deleted and the new ones inserted in one
    /// transaction), so at no moment does a total count an hour twice or not at all.
    ///
    /// Before an hour is swapped, what it would change is compared with what is stored
    /// ([`crate::drift`]): an hour that would lose a row or a quantity is refused (and the run stops
    /// there) unless `allow_shrink`, because an empty or partial re-pull must never replace invoiced
    /// rows by accident. `dry_run` only compares: no lease, nothing written. Every real reprocess is
    /// recorded with who asked, why, and what it changed (also when refused).
    ///
    /// Replaced rows keep the billing subscription they were billed under unless `remap`: a mapping
    /// changed since must not move invoiced usage to another customer by a re-pull.
    pub async fn reprocess(
        &self,
        stamp_id: &StampId,
        range: ReportedWindow,
        request: &ReprocessRequest,
    ) -> Result<ReprocessReport, CollectError> {
        let fail = |window: Option<ReportedWindow>, kind: CollectErrorKind| CollectError {
            stamp: stamp_id.clone(),
            window,
            kind,
        };
        let stamp = self.collected_stamp(stamp_id, range).await?;
        let windows = self.covering_windows(&stamp.id, range).await?;
        let range = widened(range, &windows);
        let mut report = ReprocessReport {
            summary: StampSummary {
                outcome: RunOutcome::Succeeded,
                windows_planned: windows.len(),
                ..StampSummary::starting(stamp.id.clone(), stamp.name.clone())
            },
            dry_run: request.dry_run,
            hours: Vec::new(),
        };
        if request.dry_run {
            report.hours = self.compare_windows(&stamp, range, &windows).await?;
            return Ok(report);
        }
        let owner = &self.run_owner();
        if !self
            .store
            .try_acquire(stamp_id, owner, self.settings.lease_ttl)
            .await
            .map_err(|e| fail(None, e.into()))?
        {
            return Err(fail(
                None,
                CollectErrorKind::Invalid("another run holds this stamp's lease; try again later".into()),
            ));
        }
        let result = async {
            let session = self.open_session(&stamp).await.map_err(|k| fail(Some(range), k))?;
            let mut rows_hint = 0;
            let also = self.recent_subscribers(&stamp).await.map_err(|e| fail(Some(range), e.into()))?;
            let write = WindowWrite::Replace { remap: request.remap };
            let pull = Pull { stamp: &stamp, owner, deadline: None, write, also: &also };
            for &window in &windows {
                let (rows, pulled) = self
                    .pull_rows(&pull, session.as_ref(), window, &mut rows_hint, false)
                    .await
                    .map_err(|k| fail(Some(window), k))?;
                let mut comparison = HourComparison::new(window);
                self.compare_stored(&stamp.id, window, &mut comparison)
                    .await
                    .map_err(|e| fail(Some(window), e.into()))?;
                rows.rows.iter().for_each(|row| comparison.reported(row));
                let drift = comparison.finish();
                if drift.shrinks() && !request.allow_shrink {
                    let (_, removed, changed) = drift.totals();
                    report.hours.push(drift);
                    return Err(fail(
                        Some(window),
                        CollectErrorKind::Invalid(format!(
                            "the re-pull would remove {removed} stored row(s) or lower a quantity ({changed} row(s) changed); \
                             nothing of this hour was replaced. Check with --dry-run; pass --allow-shrink to replace anyway"
                        )),
                    ));
                }
                report.hours.push(drift);
                let receipt =
                    self.commit_rows(&pull, window, rows, pulled).await.map_err(|k| fail(Some(window), k))?;
                report.summary.windows_committed += 1;
                report.summary.rows_written += receipt.rows_written;
                report.summary.duplicates += receipt.duplicates;
                report.summary.unmapped_rows += receipt.unmapped_rows;
                report.summary.quarantined += receipt.quarantined;
                self.renew_lease(stamp_id, owner).await.map_err(|k| fail(Some(window), k))?;
            }
            Ok(())
        }
        .await;
        let _ = self.store.release(stamp_id, owner).await;
        // The log says who, why and what changed, whether the reprocess completed or was refused.
        let (added, removed, changed) = report.totals();
        let outcome = match &result {
            Ok(()) => "completed".to_owned(),
            Err(e) => format!("stopped: {e}"),
        };
        let entry = format!(
            "{} [by {}; {} of {} window(s) replaced{}; +{added} -{removed} ~{changed} rows; {outcome}]",
            request.reason,
            request.requested_by,
            report.summary.windows_committed,
            report.summary.windows_planned,
            if request.remap { " with --remap (current mappings)" } else { "" },
        );
        info!(stamp_id = %stamp_id, by = %request.requested_by, reason = %request.reason, remap = request.remap, added, removed, changed, "reprocess recorded");
        let logged = self
            .store
            .record_reprocess(stamp_id, range, &entry)
            .await
            .map_err(|e| fail(Some(range), e.into()));
        result?;
        logged?;
        report.summary.watermark = self.store.get_status(stamp_id).await.ok().flatten().map(|s| s.watermark);
        Ok(report)
    }

    /// Re-pulls `range` without writing and compares each hour with what is stored (the range must be
    /// collected already). Takes no lease: it changes nothing, so it never holds up a collection.
    pub async fn verify(
        &self,
        stamp_id: &StampId,
        range: ReportedWindow,
    ) -> Result<Vec<HourDrift>, CollectError> {
        let stamp = self.collected_stamp(stamp_id, range).await?;
        let windows = self.covering_windows(&stamp.id, range).await?;
        self.compare_windows(&stamp, widened(range, &windows), &windows).await
    }

    /// The windows `range` is stored in (see [`window::covering_windows`]): its hours, and whole the
    /// catch-up spans it overlaps, also where they reach outside it.
    async fn covering_windows(
        &self,
        stamp: &StampId,
        range: ReportedWindow,
    ) -> Result<Vec<ReportedWindow>, CollectError> {
        let stored = self.store.stored_windows(stamp, range).await.map_err(|e| CollectError {
            stamp: stamp.clone(),
            window: Some(range),
            kind: e.into(),
        })?;
        let windows = window::covering_windows(range, &stored);
        if windows.len() != range.hours() as usize {
            info!(range = %range, windows = windows.len(), "the range is stored in catch-up spans; each is handled whole");
        }
        Ok(windows)
    }

    /// Re-pulls each of `windows` (covering `range`) without writing and compares it with what is
    /// stored for it.
    async fn compare_windows(
        &self,
        stamp: &Stamp,
        range: ReportedWindow,
        windows: &[ReportedWindow],
    ) -> Result<Vec<HourDrift>, CollectError> {
        let fail = |window: Option<ReportedWindow>, kind: CollectErrorKind| CollectError {
            stamp: stamp.id.clone(),
            window,
            kind,
        };
        let session = self.open_session(stamp).await.map_err(|k| fail(Some(range), k))?;
        let also = self.recent_subscribers(stamp).await.map_err(|e| fail(Some(range), e.into()))?;
        let limits = self.store.row_limits();
        let mut hours = Vec::with_capacity(windows.len());
        for &window in windows {
            // Rows are compared as they stream in (see `HourComparison`): neither the re-pull nor the
            // stored rows are held. Rows the store cannot hold are quarantined, not in the ledger:
            // only what the ledger can hold is expected there.
            let mut comparison = HourComparison::new(window);
            session
                .pull_pages(window, &also, &mut |page| {
                    page.rows
                        .iter()
                        .filter(|row| limits.check(row).is_ok())
                        .for_each(|row| comparison.reported(row))
                })
                .await
                .map_err(|e| fail(Some(window), e.into()))?;
            self.compare_stored(&stamp.id, window, &mut comparison)
                .await
                .map_err(|e| fail(Some(window), e.into()))?;
            hours.push(comparison.finish());
        }
        Ok(hours)
    }

    /// Feeds the rows stored for one window of a stamp into `comparison`, one at a time.
    async fn compare_stored(
        &self,
        stamp: &StampId,
        window: ReportedWindow,
        comparison: &mut HourComparison,
    ) -> Result<(), StoreError> {
        let filter =
            ExportFilter { stamps: vec![stamp.clone()], from: Some(window.start), to: Some(window.end) };
        self.store
            .export_rows(&filter, &mut |stored| {
                comparison.stored(&stored.row);
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// The stamp, if `range` lies within what it has collected.
    async fn collected_stamp(
        &self,
        stamp_id: &StampId,
        range: ReportedWindow,
    ) -> Result<Stamp, CollectError> {
        let fail = |window: Option<ReportedWindow>, kind: CollectErrorKind| CollectError {
            stamp: stamp_id.clone(),
            window,
            kind,
        };
        let stamp = self
            .store
            .get_stamp(stamp_id)
            .await
            .map_err(|e| fail(None, e.into()))?
            .ok_or_else(|| fail(None, StoreError::UnknownStamp(stamp_id.clone()).into()))?;
        let status = self
            .store
            .get_status(stamp_id)
            .await
            .map_err(|e| fail(None, e.into()))?
            .ok_or_else(|| fail(None, StoreError::UnknownStamp(stamp_id.clone()).into()))?;
        if range.end > status.watermark {
            return Err(fail(
                Some(range),
                CollectErrorKind::Invalid(format!(
                    "only collected hours can be reprocessed or verified; the watermark is {}",
                    status.watermark.format("%Y-%m-%dT%H:%M:%SZ")
                )),
            ));
        }
        Ok(stamp)
    }
}

/// An operator's reprocess: who, why, and how careful.
#[derive(Debug, Clone, Default)]
pub struct ReprocessRequest {
    pub reason: String,
    /// Who asked (the CLI sends `--by`, or the OS user).
    pub requested_by: String,
    /// Compare only: print what would change, write nothing.
    pub dry_run: bool,
    /// Replace hours even where the re-pull has fewer rows or lower quantities than stored.
    pub allow_shrink: bool,
    /// Map the replaced rows with the current mappings; without it, rows keep the billing
    /// subscription they were billed under (see [`WindowWrite::Replace`]).
    pub remap: bool,
}

/// What a reprocess did (or, on a dry run, would do), hour by hour.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReprocessReport {
    pub summary: StampSummary,
    pub dry_run: bool,
    pub hours: Vec<HourDrift>,
}

impl ReprocessReport {
    /// Rows added, removed and changed over every compared hour.
    pub fn totals(&self) -> (u64, u64, u64) {
        self.hours.iter().map(HourDrift::totals).fold((0, 0, 0), |(a, r, c), (x, y, z)| (a + x, r + y, c + z))
    }
}

/// One window's rows as pulled, split by what the store can hold: `rows` go to the ledger,
/// `quarantined` (verbatim, with the reason) to the quarantine, in the same commit.
struct PulledWindow {
    limits: RowLimits,
    rows: Vec<UsageRow>,
    quarantined: Vec<QuarantinedRow>,
    /// Whether to look for rows equal to another row of the window (spans only, see `take`).
    watch_repeats: bool,
    /// Most rows `quarantined` keeps; the window fails past it (see `CollectSettings`).
    max_quarantined: u64,
    /// Rows past that cap: counted, not kept (a hostile stamp's verbatim rows never pile up).
    quarantine_overflow: u64,
    /// The page each row key was first seen on (only while `watch_repeats`).
    first_seen: HashMap<RowKey, u64>,
    pages: u64,
    /// Rows equal to an earlier row of the window (only while `watch_repeats`).
    equal_rows: u64,
    /// Of those, the ones that look like the stamp repeating the previous page's last rows: leading
    /// rows of a page, first seen on the page before.
    boundary_repeats: u64,
}

impl PulledWindow {
    fn new(limits: RowLimits, rows_hint: usize) -> Self {
        Self {
            limits,
            rows: Vec::with_capacity(rows_hint),
            quarantined: Vec::new(),
            watch_repeats: false,
            max_quarantined: DEFAULT_MAX_QUARANTINED_PER_WINDOW,
            quarantine_overflow: 0,
            first_seen: HashMap::new(),
            pages: 0,
            equal_rows: 0,
            boundary_repeats: 0,
        }
    }

    /// Takes a page: each row is checked against the store's limits here, in the core, so every
    /// store and every session quarantines by the same rule.
    fn take(&mut self, page: PageRows<'_>) {
        for row in page.unreadable {
            self.quarantine(row);
        }
        self.pages += 1;
        // Within an hour, a row equal to another is stored once: a page repeating the previous page's
        // last rows is a known paging artefact, and nothing else tells two equal rows apart. Within a
        // span, two equal rows may also be two reports of different hours (an on-time and a late row
        // alike in every field), which hourly windows keep apart by their reported hour, and no
        // position on the pages tells the two cases apart (a late row may follow its on-time twin
        // across a page boundary exactly like a repeat). So a span holding any two equal rows is
        // refused and pulled hour by hour; see `SpanRefusal`.
        let mut leading = true;
        for (index, row) in page.rows.into_iter().enumerate() {
            if self.watch_repeats {
                match self.first_seen.entry(row.key()) {
                    std::collections::hash_map::Entry::Vacant(first) => {
                        first.insert(self.pages);
                        leading = false;
                    }
                    std::collections::hash_map::Entry::Occupied(seen) => {
                        self.equal_rows += 1;
                        if leading && *seen.get() + 1 == self.pages {
                            self.boundary_repeats += 1;
                        }
                    }
                }
            }
            match self.limits.check(&row) {
                Ok(()) => self.rows.push(row),
                Err(why) => {
                    if self.quarantined.len() as u64 >= self.max_quarantined {
                        self.quarantine_overflow += 1;
                        continue;
                    }
                    let raw = (page.verbatim)(index).unwrap_or_else(|| reconstructed_json(&row));
                    self.quarantine(QuarantinedRow::new(raw, &why));
                }
            }
        }
    }
}

impl PulledWindow {
    /// Keeps a row for the quarantine while under the cap; past it, only counts it.
    fn quarantine(&mut self, row: QuarantinedRow) {
        if self.quarantined.len() as u64 >= self.max_quarantined {
            self.quarantine_overflow += 1;
        } else {
            self.quarantined.push(row);
        }
    }
}

/// Why one window of a collection was not committed.
enum WindowFailure {
    /// A span that cannot be committed as one: its hours are pulled one by one instead. Nothing of
    /// it was committed.
    SpanRefused(SpanRefusal),
    /// The window failed; the stamp's run stops here.
    Failed(CollectErrorKind),
}

impl From<CollectErrorKind> for WindowFailure {
    fn from(kind: CollectErrorKind) -> Self {
        WindowFailure::Failed(kind)
    }
}

/// Why a span was refused (over a pull limit, or holding equal rows that only their reported hour
/// could tell apart), and whether the stamp's later spans of this run would be refused too.
struct SpanRefusal {
    why: String,
    /// The stamp repeats rows across page boundaries: every later span of more than one page would
    /// hold equal rows again, so the rest of the run goes hour by hour rather than pull each span
    /// twice.
    stamp_repeats_pages: bool,
}

/// Who pulls a window, for whom, until when, and how its rows meet what is stored.
struct Pull<'a> {
    stamp: &'a Stamp,
    owner: &'a str,
    deadline: Option<Instant>,
    write: WindowWrite,
    /// Subscriptions seen on the stamp recently, asked for in per-subscriber mode beside its list.
    also: &'a [String],
}

/// How many hours (at most `wanted`) the next window may cover with `left` of the budget: no window
/// is started unless twice the slowest hour so far, times its hours, fits before the commit
/// `reserve`. The first window of a budgeted run is a single hour, which measures the stamp; a span
/// follows once it is known what an hour costs. `None`: not even one hour fits.
fn hours_that_fit(
    left: Duration,
    reserve: Duration,
    slowest_hour: Option<Duration>,
    wanted: i64,
) -> Option<i64> {
    let usable = left.checked_sub(reserve)?;
    let Some(per_hour) = slowest_hour else {
        return (!usable.is_zero()).then_some(1);
    };
    let per_hour = per_hour.saturating_mul(2);
    if per_hour.is_zero() {
        return Some(wanted);
    }
    let fit = (usable.as_nanos() / per_hour.as_nanos()).min(wanted.max(1) as u128) as i64;
    (fit >= 1).then_some(fit)
}

/// `range` widened to the windows that cover it (a stored span may reach outside it).
fn widened(range: ReportedWindow, windows: &[ReportedWindow]) -> ReportedWindow {
    let start = windows.first().map_or(range.start, |w| w.start.min(range.start));
    let end = windows.last().map_or(range.end, |w| w.end.max(range.end));
    ReportedWindow { start, end }
}

fn error_text(stamp: &Stamp, window: Option<ReportedWindow>, kind: CollectErrorKind) -> String {
    CollectError { stamp: stamp.id.clone(), window, kind }.to_string()
}

#[cfg(test)]
mod tests {
    use super::hours_that_fit;
    use std::time::Duration;

    const RESERVE: Duration = Duration::from_secs(10);

    #[test]
    fn the_first_window_of_a_budgeted_run_is_one_hour_that_measures_the_stamp() {
        assert_eq!(hours_that_fit(Duration::from_secs(600), RESERVE, None, 12), Some(1));
        assert_eq!(hours_that_fit(Duration::from_secs(5), RESERVE, None, 12), None);
    }

    #[test]
    fn a_span_is_cut_to_what_the_budget_holds_twice_over_and_none_starts_that_cannot_finish() {
        let hour = Some(Duration::from_secs(20));
        // 250 s usable after the reserve, 40 s per hour with the margin: 6 hours.
        assert_eq!(hours_that_fit(Duration::from_secs(260), RESERVE, hour, 12), Some(6));
        assert_eq!(hours_that_fit(Duration::from_secs(600), RESERVE, hour, 12), Some(12));
        // Less than two hours' time left: not even one hour is started (as before spans existed).
        assert_eq!(hours_that_fit(Duration::from_secs(49), RESERVE, hour, 12), None);
        assert_eq!(hours_that_fit(Duration::from_secs(50), RESERVE, hour, 12), Some(1));
    }
}
