//! Per-stamp fan-out through the platform's queue (`AZS_USAGE_FAN_OUT=queue`): the timer enqueues one
//! [`StampWork`] per enabled stamp and returns; a queue-triggered worker collects that one stamp within
//! its own time budget and, when the stamp is still behind, enqueues its continuation (with a short
//! delay) instead of running past the limit.
//!
//! Delivery is at least once, and timers overlap: a message for a stamp whose lease another worker holds
//! is acknowledged (the holder carries on and enqueues its own continuation), and every window commit is
//! fenced by the lease owner and the expected watermark, so a redelivered or duplicated message never
//! writes a row twice. A message that keeps failing is dead-lettered on its last attempt with the stamp
//! and the error, and the stamp's status says so.
//!
//! A window still being pulled when the worker's budget runs out is not a failure of the stamp: nothing
//! of it was committed, and a fresh invocation with a whole budget continues from the watermark. So it
//! is continued like a stamp that is behind. Only when `max_attempts` invocations in a row commit
//! nothing because of it (one window needs more than a whole budget) is the message dead-lettered,
//! with an error that says so: retrying for ever would only spend compute.

use crate::collect::{Collector, RunRequest, Silent, StampSummary};
use crate::ports::{QueueError, StampDirectory, StampQueue, StatusStore, StoreError};
use crate::stamp::StampId;
use crate::status::{RunOutcome, RunRecord};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

// The messages live with the queue port that carries them; named here too, where they are made.
pub use crate::ports::{DeadLetter, StampWork, WorkReason};

#[derive(Debug, Clone)]
pub struct FanOutSettings {
    /// How long a continuation stays invisible: lets the lease of the worker that enqueued it go, and
    /// spreads a far-behind stamp's invocations out.
    pub continuation_delay: Duration,
    /// Deliveries of one message before it is dead-lettered (equals the platform's redrive
    /// `maxReceiveCount` / `maxDequeueCount` minus one: our named letter comes first).
    pub max_attempts: u32,
}

impl Default for FanOutSettings {
    fn default() -> Self {
        Self { continuation_delay: Duration::from_secs(30), max_attempts: 3 }
    }
}

/// A message as the platform delivered it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub body: &'a str,
    /// 1 on the first delivery (SQS `ApproximateReceiveCount`, Azure `DequeueCount`).
    pub attempt: u32,
}

/// What the platform must do with a delivered message.
// One per delivered message, moved once: the size of the Done variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkResult {
    /// Done with (collected, continued, skipped, or dead-lettered by us): delete the message.
    Done(WorkReport),
    /// Not done: leave the message for redelivery (the platform's retry, then its own redrive).
    Retry { stamp_id: Option<StampId>, error: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkReport {
    /// `None` for a message that named no readable stamp.
    pub stamp_id: Option<StampId>,
    pub summary: Option<StampSummary>,
    /// A continuation was enqueued: the stamp is still behind.
    pub continued: bool,
    pub dead_letter: Option<DeadLetter>,
}

#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    #[error("the stamps could not be listed: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Queue(#[from] QueueError),
}

/// The timer's and the worker's side of the fan-out. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct StampFanOut {
    /// Which stamps the timer enqueues.
    stamps: Arc<dyn StampDirectory>,
    /// Where a continued or dead-lettered stamp's status is relabelled.
    statuses: Arc<dyn StatusStore>,
    collector: Collector,
    settings: FanOutSettings,
}

impl StampFanOut {
    pub fn new(
        stamps: Arc<dyn StampDirectory>,
        statuses: Arc<dyn StatusStore>,
        collector: Collector,
        settings: FanOutSettings,
    ) -> Self {
        Self { stamps, statuses, collector, settings }
    }

    pub fn settings(&self) -> &FanOutSettings {
        &self.settings
    }

    /// The timer: one message per enabled stamp, visible at once. Returns the stamps enqueued.
    pub async fn enqueue_enabled(&self, queue: &dyn StampQueue) -> Result<Vec<StampId>, FanOutError> {
        let stamps: Vec<StampId> =
            self.stamps.list_stamps().await?.into_iter().filter(|s| s.enabled).map(|s| s.id).collect();
        let work: Vec<StampWork> =
            stamps.iter().map(|id| StampWork::new(id.clone(), WorkReason::Timer)).collect();
        queue.enqueue(&work, Duration::ZERO).await?;
        info!(stamps = stamps.len(), "stamp work enqueued");
        Ok(stamps)
    }

    /// The worker: collects the message's stamp until `deadline`, then continues or dead-letters.
    pub async fn work(
        &self,
        queue: &dyn StampQueue,
        delivery: Delivery<'_>,
        deadline: Option<Instant>,
    ) -> WorkResult {
        let work: StampWork = match serde_json::from_str(delivery.body) {
            Ok(work) => work,
            // Retrying cannot make it readable: aside at once.
            Err(e) => {
                let error = format!("the message is not stamp work: {e}");
                return self.dead_letter(queue, None, error, delivery.attempt).await;
            }
        };
        let stamp_id = work.stamp_id.clone();
        let request = RunRequest { stamps: vec![stamp_id.clone()], deadline };
        let summary = match self.collector.run(request, Arc::new(Silent)).await {
            Ok(mut run) => run.stamps.pop(),
            // Removed since it was enqueued: nothing to do.
            Err(StoreError::UnknownStamp(_)) => {
                info!(stamp_id = %stamp_id, "the stamp is no longer registered; message dropped");
                return WorkResult::Done(WorkReport {
                    stamp_id: Some(stamp_id),
                    summary: None,
                    continued: false,
                    dead_letter: None,
                });
            }
            Err(e) => return self.failed(queue, stamp_id, e.to_string(), delivery.attempt).await,
        };
        let Some(summary) = summary else {
            return self
                .failed(queue, stamp_id, "the run returned no summary".into(), delivery.attempt)
                .await;
        };
        match summary.outcome {
            RunOutcome::Partial => self.continue_later(queue, summary, 0).await,
            RunOutcome::Failed if summary.budget_ran_out => {
                let stalled = if summary.windows_committed > 0 { 0 } else { work.stalled + 1 };
                if stalled < self.settings.max_attempts {
                    return self.continue_later(queue, summary, stalled).await;
                }
                let error = format!(
                    "{}; {stalled} invocations in a row committed nothing: one window of this stamp needs more \
                     than a worker's whole time budget (raise the worker's timeout and AZS_USAGE_TIME_BUDGET, \
                     or AZS_USAGE_SUBSCRIBER_CONCURRENCY for a per-subscriber stamp)",
                    summary.error.as_deref().unwrap_or("the time budget ran out")
                );
                self.dead_letter(queue, Some(stamp_id), error, stalled).await
            }
            RunOutcome::Failed => {
                let error = summary.error.clone().unwrap_or_else(|| "failed".into());
                self.failed(queue, stamp_id, error, delivery.attempt).await
            }
            // Succeeded, or another worker holds the lease and carries on.
            _ => WorkResult::Done(WorkReport {
                stamp_id: Some(stamp_id),
                summary: Some(summary),
                continued: false,
                dead_letter: None,
            }),
        }
    }

    /// The budget is spent with the stamp still behind: a delayed continuation carries on from the
    /// watermark. A run cut off mid-window is shown as partial (its error says where it stopped), not
    /// failed: the continuation is already on its way.
    async fn continue_later(
        &self,
        queue: &dyn StampQueue,
        mut summary: StampSummary,
        stalled: u32,
    ) -> WorkResult {
        let stamp_id = summary.stamp_id.clone();
        let next = StampWork { stalled, ..StampWork::new(stamp_id.clone(), WorkReason::Continuation) };
        if let Err(e) = queue.enqueue(&[next], self.settings.continuation_delay).await {
            // The message comes back and continues from the watermark instead.
            warn!(stamp_id = %stamp_id, error = %e, "could not enqueue the continuation");
            return WorkResult::Retry { stamp_id: Some(stamp_id), error: e.to_string() };
        }
        if summary.outcome == RunOutcome::Failed {
            summary.outcome = RunOutcome::Partial;
            let record = RunRecord {
                outcome: RunOutcome::Partial,
                finished: Utc::now(),
                rows_written: summary.rows_written,
                unmapped_rows: summary.unmapped_rows,
                // Already added to the status when the run recorded its end; this only re-labels it.
                duplicates: 0,
                last_error: summary.error.clone(),
            };
            if let Err(e) = self.statuses.record_run_finished(&stamp_id, &record).await {
                warn!(stamp_id = %stamp_id, error = %e, "could not record the run as partial");
            }
        }
        info!(stamp_id = %stamp_id, stalled, "budget spent with the stamp behind; continuation enqueued");
        WorkResult::Done(WorkReport {
            stamp_id: Some(stamp_id),
            summary: Some(summary),
            continued: true,
            dead_letter: None,
        })
    }

    /// A failure: retried by the platform until the last attempt, which dead-letters.
    async fn failed(
        &self,
        queue: &dyn StampQueue,
        stamp_id: StampId,
        error: String,
        attempt: u32,
    ) -> WorkResult {
        if attempt < self.settings.max_attempts {
            return WorkResult::Retry { stamp_id: Some(stamp_id), error };
        }
        self.dead_letter(queue, Some(stamp_id), error, attempt).await
    }

    async fn dead_letter(
        &self,
        queue: &dyn StampQueue,
        stamp_id: Option<StampId>,
        error: String,
        attempts: u32,
    ) -> WorkResult {
        let letter = DeadLetter { stamp_id: stamp_id.clone(), error, attempts, dead_lettered_at: Utc::now() };
        if let Err(e) = queue.dead_letter(&letter).await {
            // The platform's own redrive moves it once the receive count runs out.
            warn!(error = %e, "could not dead-letter the message");
            return WorkResult::Retry { stamp_id, error: letter.error };
        }
        warn!(stamp_id = ?stamp_id.as_ref().map(|s| s.to_string()), attempts, error = %letter.error, "message dead-lettered");
        if let Some(id) = &stamp_id {
            // The status is where operators look: it names the dead letter, not only the last error.
            let record = RunRecord {
                outcome: RunOutcome::Failed,
                finished: Utc::now(),
                rows_written: 0,
                unmapped_rows: 0,
                duplicates: 0,
                last_error: Some(format!("dead-lettered after {attempts} attempts: {}", letter.error)),
            };
            if let Err(e) = self.statuses.record_run_finished(id, &record).await {
                warn!(stamp_id = %id, error = %e, "could not record the dead letter in the status");
            }
        }
        WorkResult::Done(WorkReport { stamp_id, summary: None, continued: false, dead_letter: Some(letter) })
    }
}
