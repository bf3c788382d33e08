//! Reprocess: re-pull collected windows and replace their rows, each window in one fenced
//! transaction, refused where the re-pull would remove rows or lower quantities (unless the operator
//! allows it), and recorded with who asked, why and what changed.

use super::pull::Pull;
use super::verify::widened;
use super::{CollectError, CollectErrorKind, Collector, StampSummary};
use crate::drift::{HourComparison, HourDrift};
use crate::ports::WindowWrite;
use crate::stamp::StampId;
use crate::status::RunOutcome;
use crate::window::ReportedWindow;
use serde::Serialize;
use tracing::info;

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

impl Collector {
    /// Re-pulls `range` (already collected: it must end at or before the watermark) and replaces the
    /// stored rows window by window: hour by hour, except that an hour collected in a catch-up span is
    /// handled with its whole span (the range is widened to it; see [`crate::window::covering_windows`]).
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
            .leases
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
        let _ = self.leases.release(stamp_id, owner).await;
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
            .ledger
            .record_reprocess(stamp_id, range, &entry)
            .await
            .map_err(|e| fail(Some(range), e.into()));
        result?;
        logged?;
        report.summary.watermark =
            self.statuses.get_status(stamp_id).await.ok().flatten().map(|s| s.watermark);
        Ok(report)
    }
}
