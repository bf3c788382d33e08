//! The window loop: from the stamp's watermark to the horizon (now less the settle delay), one hour
//! or one catch-up span at a time, each started only when the time budget can still finish it, each
//! renewing the lease once committed. A span that cannot be committed as one is refused and its hours
//! pulled one by one.

use super::pull::Pull;
use super::{CollectError, CollectErrorKind, Collector, Progress, StampSummary};
use crate::ports::{CommitReceipt, PullStage, StampSession, StoreError, WindowWrite};
use crate::stamp::Stamp;
use crate::status::RunOutcome;
use crate::window::{self, ReportedWindow};
use chrono::Utc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

impl Collector {
    pub(super) async fn collect_windows(
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
            .statuses
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
