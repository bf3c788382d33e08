//! Per-stamp processing status: the seed's `AzsHubUsageRecordProcessingStatusData`.

use crate::drift::HourDrift;
use crate::stamp::StampId;
use crate::window::ReportedWindow;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    /// Never run.
    Pending,
    Running,
    /// Every planned window committed.
    Succeeded,
    /// Some windows committed, then the time budget ran out; the next run resumes.
    Partial,
    /// A window failed; the watermark stops before it and the next run retries it.
    Failed,
    /// Another run holds this stamp's lease.
    Skipped,
}

impl RunOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunOutcome::Pending => "pending",
            RunOutcome::Running => "running",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Partial => "partial",
            RunOutcome::Failed => "failed",
            RunOutcome::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => RunOutcome::Pending,
            "running" => RunOutcome::Running,
            "succeeded" => RunOutcome::Succeeded,
            "partial" => RunOutcome::Partial,
            "failed" => RunOutcome::Failed,
            "skipped" => RunOutcome::Skipped,
            _ => return None,
        })
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingStatus {
    pub stamp_id: StampId,
    /// Everything reported before this instant is committed; the next window starts here.
    pub watermark: DateTime<Utc>,
    pub last_run_started: Option<DateTime<Utc>>,
    pub last_run_finished: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    /// Rows written by the last run.
    pub rows_written: u64,
    /// Rows written by the last run that had no mapping.
    pub unmapped_rows: u64,
    /// Rows of this stamp held in quarantine (all runs): rows the stamp sent that the store cannot
    /// hold; `azs-usage quarantine list` shows them.
    pub quarantined_rows: u64,
    /// Exact duplicate rows the stamp sent and the store dropped (a row repeated within its window),
    /// over all runs: a stamp that repeats itself shows here instead of only in a log line.
    pub duplicate_rows: u64,
    /// When the scheduled verify last compared stored rows with the stamp, and which range.
    pub last_verified: Option<LastVerified>,
    /// What that verify found (all zero when stored equals reported); `None` before the first one.
    pub drift: Option<DriftCounts>,
    pub last_error: Option<String>,
}

/// When the timer job's scheduled verify ran for a stamp and what it compared (see
/// [`crate::collect::CollectSettings::verify_trailing_hours`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastVerified {
    pub at: DateTime<Utc>,
    /// The reported hours compared, `[start, end)`.
    pub range: ReportedWindow,
}

/// Rows that differ between the store and the stamp over a verified range, by key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftCounts {
    /// Reported by the stamp, not stored (lost, or deleted behind the tool's back).
    pub missing: u64,
    /// Stored, no longer reported by the stamp.
    pub extra: u64,
    /// Stored with another quantity than the stamp reports now.
    pub changed: u64,
}

impl DriftCounts {
    pub fn of(hours: &[HourDrift]) -> Self {
        hours.iter().map(HourDrift::totals).fold(Self::default(), |d, (added, removed, changed)| Self {
            missing: d.missing + added,
            extra: d.extra + removed,
            changed: d.changed + changed,
        })
    }

    /// Rows that differ, whichever way: what the drift metric publishes.
    pub fn total(&self) -> u64 {
        self.missing + self.extra + self.changed
    }
}

/// What a finished run records for one stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub outcome: RunOutcome,
    pub finished: DateTime<Utc>,
    pub rows_written: u64,
    pub unmapped_rows: u64,
    /// Exact duplicates the run's windows dropped; added to [`ProcessingStatus::duplicate_rows`].
    pub duplicates: u64,
    pub last_error: Option<String>,
}
