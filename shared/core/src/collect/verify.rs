//! Re-pull and compare without writing: `verify` (an operator's range) and the scheduled verify (the
//! trailing hours of a stamp brought up to date, once a UTC day). Rows are compared as they stream in
//! ([`HourComparison`]); catch-up spans the range cuts are compared whole.

use super::{CollectError, CollectErrorKind, Collector};
use crate::drift::{HourComparison, HourDrift};
use crate::ports::{ExportFilter, StoreError};
use crate::stamp::{Stamp, StampId};
use crate::status::{DriftCounts, LastVerified};
use crate::window::{self, ReportedWindow};
use chrono::Utc;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

impl Collector {
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

    /// The scheduled verify (see [`super::CollectSettings::verify_trailing_hours`]): when due, compares the
    /// trailing collected hours with what the stamp reports now and records the outcome in the status.
    /// It writes no rows and never fails the run: cut off by the run's budget or failing, it is logged
    /// and left for a later run (the status keeps the previous outcome, so it stays due).
    pub(super) async fn scheduled_verify(
        &self,
        stamp: &Stamp,
        deadline: Option<Instant>,
    ) -> Option<DriftCounts> {
        let trailing = self.settings.verify_trailing_hours;
        if trailing == 0 {
            return None;
        }
        let status = self.statuses.get_status(&stamp.id).await.ok().flatten()?;
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
        if let Err(e) = self.statuses.record_verified(&stamp.id, &verified, &drift).await {
            warn!(error = %e, "could not record the verify's outcome");
        }
        Some(drift)
    }

    /// The windows `range` is stored in (see [`crate::window::covering_windows`]): its hours, and whole the
    /// catch-up spans it overlaps, also where they reach outside it.
    pub(super) async fn covering_windows(
        &self,
        stamp: &StampId,
        range: ReportedWindow,
    ) -> Result<Vec<ReportedWindow>, CollectError> {
        let stored = self.ledger.stored_windows(stamp, range).await.map_err(|e| CollectError {
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
    pub(super) async fn compare_windows(
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
        let limits = self.ledger.row_limits();
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
    pub(super) async fn compare_stored(
        &self,
        stamp: &StampId,
        window: ReportedWindow,
        comparison: &mut HourComparison,
    ) -> Result<(), StoreError> {
        let filter =
            ExportFilter { stamps: vec![stamp.clone()], from: Some(window.start), to: Some(window.end) };
        self.ledger
            .export_rows(&filter, &mut |stored| {
                comparison.stored(&stored.row);
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// The stamp, if `range` lies within what it has collected.
    pub(super) async fn collected_stamp(
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
            .stamps
            .get_stamp(stamp_id)
            .await
            .map_err(|e| fail(None, e.into()))?
            .ok_or_else(|| fail(None, StoreError::UnknownStamp(stamp_id.clone()).into()))?;
        let status = self
            .statuses
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

/// `range` widened to the windows that cover it (a stored span may reach outside it).
pub(super) fn widened(range: ReportedWindow, windows: &[ReportedWindow]) -> ReportedWindow {
    let start = windows.first().map_or(range.start, |w| w.start.min(range.start));
    let end = windows.last().map_or(range.end, |w| w.end.max(range.end));
    ReportedWindow { start, end }
}
